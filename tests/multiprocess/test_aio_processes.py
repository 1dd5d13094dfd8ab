"""asyncio waits across processes: Lock.acquire_async, Event.wait_async,
Segment.wait_for_change_async and Semaphore.acquire_async complete when another process
acts, without blocking the event loop (the one-process half: tests/unit/test_aio.py)."""

from __future__ import annotations

import asyncio
import threading

import _sync_children as children
import pytest
from _sync_children import Child

from support import WAITABLE_KINDS, async_waiter, make_waitable, with_ticker


@pytest.mark.parametrize("method", ["fork", "spawn"])
@pytest.mark.parametrize("kind", WAITABLE_KINDS)
def test_async_wait_completes_when_other_process_acts(method: str, kind: str,
                                                      name: str) -> None:
    obj = make_waitable(kind, name)
    child = Child(method, children.act_later, kind, name, 0.5)
    try:
        assert child.recv() == "ready"
        since = obj.change_count if kind == "change" else None
        result, ticks, _gap = asyncio.run(with_ticker(async_waiter(kind, obj, 30)()))
        if kind == "change":
            assert since is not None
            assert result == (since + 1) & 0xFFFFFFFF
        else:
            assert result is True
        # the loop kept running during ~0.5 s of waiting: a blocked loop ticks ~once
        assert ticks >= 10, ticks
        assert child.result() is None
        if kind == "lock":
            assert obj.locked() and obj.state().holder == threading.get_native_id()
            obj.release()
        if kind == "semaphore":
            assert obj.value == 0
    finally:
        child.stop()
        obj.close()
