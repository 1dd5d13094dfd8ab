"""What several test files share: the platform flags, where a name lives in the file
system and the header offsets of csrc/layout.h (for corrupting one on purpose), how to
start and stop the processes a test needs, and the asyncio-wait helpers.

Importable as ``support`` from every test file: pyproject's pytest ``pythonpath`` puts
tests/ (this file) and tests/multiprocess/ (the ``_*_children`` modules) on ``sys.path``,
and multiprocessing hands that path to the children it spawns.  The ``_*_children``
modules do not import this one: some of them also run as scripts by path.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, Union, cast

import mapshare
from mapshare import _naming
from mapshare.testing import shm_entries

if TYPE_CHECKING:
    from multiprocessing.context import ForkContext, SpawnContext

    MPContext = Union[ForkContext, SpawnContext]

WINDOWS = sys.platform == "win32"
LINUX = sys.platform.startswith("linux")
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

NO_PERSISTENT_SHM = ("lifetime='persistent' needs a backing file on Windows "
                     "(UnsupportedError, see docs/platforms.md)")

# header field offsets (csrc/layout.h), for tests that corrupt a header on purpose
OFF_MAGIC, OFF_VERSION, OFF_SIZE, OFF_TOTAL = 0, 8, 24, 40
OFF_DATA_OFFSET, OFF_CREATOR_PID, OFF_CREATOR_START, OFF_STATE = 32, 48, 56, 72
OFF_ATTACH_END, OFF_ATTACH_RESERVED = 100, 108  # ms_header.attach_end, attach_reserved

# The exit code of a multiprocessing child we killed (Windows has no SIGKILL: kill()
# is TerminateProcess, which the exit code reports as SIGTERM).
KILLED = -signal.SIGTERM if WINDOWS else -signal.SIGKILL


def shm_path(name: str) -> str:
    """The /dev/shm path of the OS object behind the logical ``name`` (POSIX)."""
    return "/dev/shm" + _naming.os_name(name)


def exists(name: str) -> bool:
    """Whether the OS object of ``name`` exists (Windows: a listed named section)."""
    if WINDOWS:
        return _naming.os_name(name) in shm_entries()
    return os.path.exists(shm_path(name))


def section_tagname(name: str) -> str:
    """Windows: the name of the section behind the logical ``name`` (``Local\\...``)."""
    return "Local\\" + _naming.os_name(name).lstrip("/")


def poke(name: str, offset: int, data: bytes) -> None:
    """Write raw bytes into the OS object behind ``name``, as any process with write
    access could: through the file system (/dev/shm), or on Windows through its named
    section (Python's mmap with a tagname; no mapshare mapping)."""
    if WINDOWS:
        import mmap

        # tagname is Windows-only: mypy checks this file as Linux
        with mmap.mmap(-1, offset + len(data),
                       tagname=section_tagname(name)) as m:  # type: ignore[call-arg]
            m[offset : offset + len(data)] = data
        return
    fd = os.open(shm_path(name), os.O_RDWR)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped (free, or reused later)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def mp_context(method: str) -> MPContext:
    """``multiprocessing.get_context(method)`` for 'fork' or 'spawn', typed as the
    context it is (get_context(str) is typed BaseContext, which has no Process)."""
    if method not in ("fork", "spawn"):
        raise ValueError(f"not a start method the tests use: {method!r}")
    return cast("MPContext", multiprocessing.get_context(method))


def stop(procs: Iterable[Any]) -> None:
    """SIGKILL (Windows: TerminateProcess) and reap whichever of these multiprocessing
    processes still run; processes never started are skipped."""
    started = [p for p in procs if p.pid is not None]
    for p in started:
        if p.is_alive():
            p.kill()
    for p in started:
        p.join(30)


# ---- asyncio waits (tests/unit/test_aio.py and its cross-process half) ----------------

# what an asyncio wait can wait on: Lock, Event, a Segment's change count, Semaphore
WAITABLE_KINDS = ["lock", "event", "change", "semaphore"]


def make_waitable(kind: str, name: str) -> Any:
    """A new object of ``kind`` (one of WAITABLE_KINDS) named ``name``, nothing to wait
    for yet."""
    if kind == "lock":
        return mapshare.Lock.create(name)
    if kind == "event":
        return mapshare.Event.create(name)
    if kind == "change":
        return mapshare.Segment.create(name, 64)
    return mapshare.Semaphore.create(name, 0, maximum=1)


def async_waiter(
    kind: str, obj: Any, timeout: Any = None
) -> Callable[[], Coroutine[Any, Any, Any]]:
    """A function making the coroutine that waits on ``obj`` (made by make_waitable)."""
    if kind == "lock":
        return lambda: obj.acquire_async(timeout)
    if kind == "event":
        return lambda: obj.wait_async(timeout)
    if kind == "change":
        since = obj.change_count
        return lambda: obj.wait_for_change_async(since, timeout)
    return lambda: obj.acquire_async(timeout)


async def with_ticker(aw: Awaitable[Any]) -> tuple[Any, int, float]:
    """Await aw while a task ticks every 5 ms; return (result, ticks, longest gap)."""
    ticks = 0
    gap = 0.0
    stop = False

    async def tick() -> None:
        nonlocal ticks, gap
        last = time.monotonic()
        while not stop:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            gap = max(gap, now - last)
            last = now
            ticks += 1

    t = asyncio.create_task(tick())
    try:
        result = await aw
    finally:
        stop = True
        await t
    return result, ticks, gap
