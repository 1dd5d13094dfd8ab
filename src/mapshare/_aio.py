"""asyncio support: awaitable waits that never block the event loop.

How it works, and what it costs:

* An awaitable first tries the operation without waiting, on the event loop's thread.
* If it must wait, a worker thread blocks in the C wait (futex, GIL released) for at
  most ``SLICE`` seconds at a time, then the operation itself is retried **on the loop's
  thread**.  The worker thread only ever *waits*: it never receives, acquires or takes
  anything, so cancelling the awaitable can never lose a message or strand a lock.
* Cancellation takes effect at once for the awaiting task; the worker thread finishes
  its current slice (at most ``SLICE`` seconds) in the background.
* Each wake-up costs one thread hand-off (tens of microseconds) on top of the wake-up
  itself; waits run on a dedicated pool of ``MAX_WAITERS`` threads, so that many
  concurrent waits do not starve ``loop.run_in_executor`` users.
* Locks are owned by threads, so ``Lock.acquire_async`` does not use a worker: it
  retries a non-blocking acquire on the loop's thread with a back-off from 50 µs to
  ``POLL_MAX`` seconds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from typing import Callable, Optional, TypeVar

from ._errors import WaitTimeout

T = TypeVar("T")

SLICE = 0.25
POLL_MAX = 0.01
MAX_WAITERS = 64

_pool: Optional[concurrent.futures.ThreadPoolExecutor] = None
_pool_lock = threading.Lock()


def _reset_after_fork() -> None:
    # A forked child inherits the pool object but not its threads (nor, possibly, an
    # unlocked lock): start afresh.
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def shutdown() -> None:
    """Stop the wait threads (they are started again on demand).  Call it before
    forking from a process that used the asyncio helpers: forking a process that has
    other threads is fragile (their locks are copied in whatever state they were)."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True)


def _executor() -> concurrent.futures.ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=MAX_WAITERS, thread_name_prefix="mapshare-wait"
            )
        return _pool


async def wait_until(
    attempt: Callable[[], Optional[T]],
    block: Callable[[float], object],
    timeout: Optional[float],
    *,
    what: str,
) -> T:
    """Return ``attempt()`` as soon as it is not None.  ``block(seconds)`` waits (in
    a worker thread) until an attempt may succeed or the seconds pass."""
    result = attempt()
    if result is not None:
        return result
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    while True:
        remaining = None if deadline is None else deadline - loop.time()
        if remaining is not None and remaining <= 0:
            raise WaitTimeout(f"{what} timed out after {timeout} s")
        step = SLICE if remaining is None else min(SLICE, remaining)
        await loop.run_in_executor(_executor(), block, step)
        result = attempt()
        if result is not None:
            return result


async def poll_until(
    attempt: Callable[[], Optional[T]], timeout: Optional[float], *, what: str
) -> T:
    """Return ``attempt()`` once it is not None, retrying on the loop's thread with a
    back-off (for operations owned by the calling thread, such as locks)."""
    result = attempt()
    if result is not None:
        return result
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    delay = 50e-6
    while True:
        if deadline is not None and loop.time() >= deadline:
            raise WaitTimeout(f"{what} timed out after {timeout} s")
        await asyncio.sleep(delay)
        delay = min(delay * 2, POLL_MAX)
        result = attempt()
        if result is not None:
            return result
