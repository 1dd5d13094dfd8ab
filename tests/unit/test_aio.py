"""asyncio waits: Lock.acquire_async, Event.wait_async, Segment.wait_for_change_async and
Semaphore.acquire_async complete when another thread acts, never block the event loop, time out with
WaitTimeout, and cancel cleanly (nothing held or consumed).  When another process
acts: tests/multiprocess/test_aio_processes.py."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from typing import Any

import pytest

import mapshare
from support import WAITABLE_KINDS, async_waiter, make_waitable, with_ticker

# Windows' time.monotonic (GetTickCount64 in CPython 3.11) ticks every ~15.6 ms: a timed
# wait can measure one tick short there.
TICK = 0.016 if sys.platform == "win32" else 0.0


@pytest.mark.parametrize("kind", WAITABLE_KINDS)
def test_async_wait_completes_when_other_thread_acts(kind: str, name: str) -> None:
    obj = make_waitable(kind, name)
    held = threading.Event()
    go = threading.Event()

    def act() -> None:
        if kind == "lock":
            obj.acquire()
            held.set()
            go.wait(30)
            time.sleep(0.2)
            obj.release()
            return
        held.set()
        go.wait(30)
        time.sleep(0.2)
        if kind == "event":
            obj.set()
        elif kind == "change":
            obj.notify()
        else:
            obj.release()

    t = threading.Thread(target=act)
    t.start()
    try:
        assert held.wait(30)
        waiter = async_waiter(kind, obj, 30)

        async def main() -> Any:
            go.set()
            return await with_ticker(waiter())

        result, ticks, _ = asyncio.run(main())
        assert result is not None and result is not False
        assert ticks >= 5
        if kind == "lock":
            obj.release()
    finally:
        go.set()
        t.join(30)
        obj.close()


@pytest.mark.parametrize("kind", WAITABLE_KINDS)
def test_async_timeout_raises_wait_timeout(kind: str, name: str) -> None:
    obj = make_waitable(kind, name)
    holder = None
    release = threading.Event()
    if kind == "lock":
        held = threading.Event()

        def hold() -> None:
            obj.acquire()
            held.set()
            release.wait(30)
            obj.release()

        holder = threading.Thread(target=hold)
        holder.start()
        assert held.wait(30)
    try:
        t0 = time.monotonic()
        with pytest.raises(mapshare.WaitTimeout, match=r"timed out after 0\.3 s"):
            asyncio.run(with_ticker(async_waiter(kind, obj, 0.3)()))
        elapsed = time.monotonic() - t0
        assert 0.3 - TICK <= elapsed < 5.0
        with pytest.raises(TimeoutError, match="timed out after 0 s"):
            asyncio.run(async_waiter(kind, obj, 0)())
    finally:
        release.set()
        if holder is not None:
            holder.join(30)
        obj.close()


@pytest.mark.parametrize("kind", WAITABLE_KINDS)
def test_async_cancel_is_prompt_and_clean(kind: str, name: str) -> None:
    """task.cancel() ends the await with CancelledError at once; afterwards the lock is
    not held by us and no semaphore unit was consumed, even once the resource becomes
    available while the background wait slice is still running."""
    obj = make_waitable(kind, name)
    release = threading.Event()
    holder = None
    if kind == "lock":
        held = threading.Event()

        def hold() -> None:
            obj.acquire()
            held.set()
            release.wait(30)
            obj.release()

        holder = threading.Thread(target=hold)
        holder.start()
        assert held.wait(30)

    async def main() -> float:
        task = asyncio.create_task(async_waiter(kind, obj, None)())
        await asyncio.sleep(0.1)
        assert not task.done()
        t0 = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        cancelled_after = time.monotonic() - t0
        # make the resource available while any background slice may still be waiting
        if kind == "lock":
            release.set()
        elif kind == "semaphore":
            obj.release()
        elif kind == "event":
            obj.set()
        else:
            obj.notify()
        await asyncio.sleep(0.6)  # longer than a background wait slice
        return cancelled_after

    try:
        cancelled_after = asyncio.run(main())
        assert cancelled_after < 1.0
        if kind == "lock":
            holder.join(30)  # type: ignore[union-attr]
            assert not obj.locked()
            assert obj.acquire(timeout=0) is True
            obj.release()
        elif kind == "semaphore":
            assert obj.value == 1
    finally:
        release.set()
        if holder is not None:
            holder.join(30)
        obj.close()


def test_many_concurrent_async_waits(name: str) -> None:
    """Several tasks wait on one event at once; one set() completes all of them."""
    ev = mapshare.Event.create(name)
    try:
        async def main() -> list[bool]:
            tasks = [asyncio.create_task(ev.wait_async(30)) for _ in range(10)]
            await asyncio.sleep(0.1)
            assert not any(t.done() for t in tasks)
            threading.Timer(0.05, ev.set).start()
            return await asyncio.gather(*tasks)

        assert asyncio.run(main()) == [True] * 10
    finally:
        ev.close()


def test_async_lock_already_free_and_owner_died(name: str) -> None:
    lk = mapshare.Lock.create(name)
    try:
        assert asyncio.run(lk.acquire_async(0)) is True
        lk.release()
        t = threading.Thread(target=lk.acquire)
        t.start()
        t.join(30)
        with pytest.raises(mapshare.OwnerDiedError):
            asyncio.run(lk.acquire_async(5))
        assert lk.locked()
        lk.release()
    finally:
        lk.close()
