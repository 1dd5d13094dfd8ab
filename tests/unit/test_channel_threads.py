"""Channels and locks shared by threads and asyncio tasks.

Threads sharing one handle wait (not fail) while another thread has a loan or a view
open; close() right after a cancelled asyncio wait works at once; tasks of one loop
queue up on a Lock.  The async forms of every send/receive call against a peer
process: tests/multiprocess/test_channel_processes.py."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import mapshare
from mapshare import Channel

JOIN = 60  # bounds a hang, never a speed assertion


def test_other_threads_wait_while_a_loan_is_open(name: str) -> None:
    with Channel.create(name, 4096) as ch:
        try:
            errors: list[BaseException] = []
            done = threading.Event()

            def other() -> None:
                try:
                    ch.send(b"second", timeout=JOIN)
                    with ch.loan(6, timeout=JOIN) as m:
                        m[:] = b"third!"
                except BaseException as exc:
                    errors.append(exc)
                done.set()

            with ch.loan(5) as m:
                m[:] = b"first"
                t = threading.Thread(target=other)
                t.start()
                assert not done.wait(0.3)  # it waits for our loan, it does not fail
                with pytest.raises(
                    mapshare.WindowOpenError, match="already has a loan open on this handle"
                ):
                    ch.loan(1)  # this thread already has one: refused, not a deadlock
            t.join(JOIN)
            assert errors == []
            assert [ch.receive_nowait() for _ in range(3)] == [b"first", b"second", b"third!"]
        finally:
            ch.unlink()


def test_other_threads_wait_while_a_view_is_open(name: str) -> None:
    with Channel.create(name, 4096) as ch:
        try:
            ch.send_many([b"a", b"b", b"c"])
            got: list[Any] = []
            done = threading.Event()

            def other() -> None:
                try:
                    got.append(ch.receive(timeout=JOIN))
                    with ch.receive_view(timeout=JOIN) as v:
                        got.append(bytes(v))
                except BaseException as exc:
                    got.append(exc)
                done.set()

            with ch.receive_view() as v:
                assert bytes(v) == b"a"
                t = threading.Thread(target=other)
                t.start()
                assert not done.wait(0.3)
                with pytest.raises(
                    mapshare.WindowOpenError, match="has a received view open on this handle"
                ):
                    ch.receive_view()
            t.join(JOIN)
            assert got == [b"b", b"c"]
        finally:
            ch.unlink()


@pytest.mark.parametrize("direction", ["receive", "send"])
def test_close_right_after_a_cancelled_async_wait(name: str, direction: str) -> None:
    """The worker thread of a cancelled wait is still inside the handle: close() makes
    it return instead of raising BufferError for up to a slice (~250 ms)."""
    ch = Channel.create(name, 64)
    try:
        if direction == "send":
            ch.send(b"x" * 48)  # full

        async def main() -> None:
            task: asyncio.Task[Any]
            if direction == "receive":
                task = asyncio.create_task(ch.receive_async())
            else:
                task = asyncio.create_task(ch.send_async(b"y" * 48))
            await asyncio.sleep(0.05)  # asleep in the worker thread
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            ch.close()  # at once: no BufferError

        asyncio.run(main())
        assert ch.segment.closed
    finally:
        if not ch.segment.closed:
            ch.close()
        ch.unlink()


def test_tasks_of_one_loop_queue_on_a_lock(name: str) -> None:
    lk = mapshare.Lock.create(name)
    try:
        order: list[str] = []

        async def worker(tag: str) -> None:
            async with lk:
                order.append(tag + "+")
                await asyncio.sleep(0.02)
                order.append(tag + "-")

        async def main() -> None:
            await asyncio.wait_for(asyncio.gather(*(worker(t) for t in "abc")), JOIN)

        asyncio.run(main())
        # each task held it alone: + and - alternate
        assert len(order) == 6
        assert all(order[i][1] == "+" and order[i + 1][1] == "-" and order[i][0] == order[i + 1][0]
                   for i in range(0, 6, 2))
        assert not lk.locked()
        # two acquire_async calls on one loop, plain release
        async def two() -> None:
            await lk.acquire_async()
            second = asyncio.create_task(lk.acquire_async(JOIN))
            await asyncio.sleep(0.05)
            assert not second.done()
            lk.release()
            assert await second is True
            lk.release()

        asyncio.run(two())
    finally:
        lk.close()


