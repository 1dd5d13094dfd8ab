"""mapshare.wait and wait_async in one process, with real threads: each kind of object
wakes a waiter, several ready at once, timeouts, argument checking, closed handles, and
the same on the polling path (``_core._wait_polling(True)``) that systems without
futex_waitv take."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import mapshare
from mapshare import _aio, _core
from support import WINDOWS


@pytest.fixture(params=["native", "polling"])
def mode(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test with the platform's multi-object sleep and with forced polling."""
    before = _core._wait_polling(None)
    _core._wait_polling(request.param == "polling")
    try:
        yield str(request.param)
    finally:
        _core._wait_polling(before)


@dataclass
class Objects:
    event: mapshare.Event
    semaphore: mapshare.Semaphore
    channel: mapshare.Channel
    segment: mapshare.Segment

    def all(self) -> list[Any]:
        return [self.event, self.semaphore, self.channel, self.segment]


@pytest.fixture
def objs(names: Callable[[], str]) -> Iterator[Objects]:
    o = Objects(
        mapshare.Event.create(names()),
        mapshare.Semaphore.create(names(), 0, maximum=4),
        mapshare.Channel.create(names(), 256),
        mapshare.Segment.create(names(), 4096),
    )
    try:
        yield o
    finally:
        for x in o.all():
            x.close()
            x.unlink()


def _later(delay: float, fn: Callable[[], object]) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        fn()

    t = threading.Thread(target=run)
    t.start()
    return t


def _make_ready(o: Objects, kind: str) -> Callable[[], object]:
    return {
        "event": o.event.set,
        "semaphore": o.semaphore.release,
        "channel": lambda: o.channel.send(b"m"),
        "segment": o.segment.notify,
    }[kind]


KINDS = ["event", "semaphore", "channel", "segment"]


def test_timeout_returns_an_empty_list(objs: Objects, mode: str) -> None:
    t0 = time.monotonic()
    assert mapshare.wait(objs.all(), timeout=0.05) == []
    assert time.monotonic() - t0 >= 0.04
    assert mapshare.wait(objs.all(), timeout=0) == []


@pytest.mark.parametrize("kind", KINDS)
def test_a_change_in_another_thread_wakes_the_waiter(objs: Objects, mode: str,
                                                     kind: str) -> None:
    t = _later(0.05, _make_ready(objs, kind))
    ready = mapshare.wait(objs.all(), timeout=30)
    t.join()
    assert ready == [getattr(objs, kind)]


def test_ready_ones_in_input_order(objs: Objects, mode: str) -> None:
    objs.semaphore.release()
    objs.channel.send(b"x")
    objs.event.set()
    assert mapshare.wait(objs.all()) == [objs.event, objs.semaphore, objs.channel]
    assert mapshare.wait(objs.all()[::-1], timeout=0) == [
        objs.channel, objs.semaphore, objs.event
    ]


def test_readiness_takes_nothing(objs: Objects) -> None:
    objs.semaphore.release()
    objs.channel.send(b"x")
    for _ in range(3):
        assert mapshare.wait([objs.semaphore, objs.channel]) == [objs.semaphore, objs.channel]
    assert objs.semaphore.value == 1
    assert objs.channel.receive_nowait() == b"x"
    assert mapshare.wait([objs.semaphore, objs.channel], timeout=0) == [objs.semaphore]


def test_segment_pair_since(objs: Objects, mode: str) -> None:
    seg = objs.segment
    before = seg.change_count
    seg.notify()
    # a plain Segment counts from the call: the notify before it does not count
    assert mapshare.wait([seg], timeout=0) == []
    # a pair counts from `since`
    assert mapshare.wait([(seg, before)], timeout=0) == [(seg, before)]
    now = seg.change_count
    t = _later(0.05, seg.notify)
    assert mapshare.wait([(seg, now)], timeout=30) == [(seg, now)]
    t.join()


def test_ten_objects_the_last_one_wakes(names: Callable[[], str], mode: str) -> None:
    events = [mapshare.Event.create(names()) for _ in range(10)]
    try:
        t = _later(0.05, events[-1].set)
        assert mapshare.wait(events, timeout=30) == [events[-1]]
        t.join()
    finally:
        for e in events:
            e.close()
            e.unlink()


def test_more_objects_than_one_system_call_takes(names: Callable[[], str]) -> None:
    # futex_waitv takes at most 128 words, WaitForMultipleObjects 64: beyond, it polls
    seg = mapshare.Segment.create(names(), 200 * 16)
    events = [mapshare.Event.create_in(seg, 16 * i) for i in range(200)]
    try:
        t = _later(0.05, events[150].set)
        assert mapshare.wait(events, timeout=30) == [events[150]]
        t.join()
    finally:
        del events
        seg.close()
        seg.unlink()


def test_end_of_channel_is_ready(objs: Objects, mode: str) -> None:
    t = _later(0.05, objs.channel.close_sending)
    assert mapshare.wait([objs.event, objs.channel], timeout=30) == [objs.channel]
    t.join()
    with pytest.raises(mapshare.EndOfChannel):
        objs.channel.receive_nowait()


def test_events_inside_a_segment(names: Callable[[], str], mode: str) -> None:
    seg = mapshare.Segment.create(names(), 64)
    try:
        a = mapshare.Event.create_in(seg, 0)
        b = mapshare.Event.create_in(seg, 16)
        t = _later(0.05, b.set)
        assert mapshare.wait([a, b], timeout=30) == [b]
        t.join()
        del a, b
    finally:
        seg.close()
        seg.unlink()


# ---- arguments ------------------------------------------------------------------------


def test_what_cannot_be_waited_on(objs: Objects, name: str) -> None:
    with pytest.raises(ValueError, match="no objects to wait on"):
        mapshare.wait([])
    with pytest.raises(ValueError, match=r"objects\[1\] \(Event '.*'\) is listed twice"):
        mapshare.wait([objs.event, objs.event])
    with mapshare.Lock.create(name) as lk:
        with pytest.raises(TypeError, match=r"objects\[1\]: cannot wait on Lock"):
            mapshare.wait([objs.event, lk], timeout=0)
        lk.unlink()
    with pytest.raises(TypeError, match="cannot wait on int"):
        mapshare.wait([3])
    with pytest.raises(TypeError, match="iterable"):
        mapshare.wait("abc")
    with pytest.raises(TypeError, match=r"a tuple must be \(Segment, since\)"):
        mapshare.wait([(objs.event, 1)])
    with pytest.raises(TypeError, match="since must be an int"):
        mapshare.wait([(objs.segment, "1")])
    with pytest.raises(ValueError, match="since must be a change count"):
        mapshare.wait([(objs.segment, 2**32)])
    with pytest.raises(ValueError, match="timeout"):
        mapshare.wait([objs.event], timeout=-1)
    # the two pairs of one segment with different `since` are two objects
    s = objs.segment.change_count
    assert mapshare.wait([(objs.segment, s), (objs.segment, s + 1)], timeout=0) == [
        (objs.segment, s + 1)
    ]
    # any iterable
    objs.event.set()
    assert mapshare.wait(iter([objs.semaphore, objs.event])) == [objs.event]


@pytest.mark.parametrize("kind", KINDS)
def test_a_closed_handle_is_refused(objs: Objects, kind: str) -> None:
    obj = getattr(objs, kind)
    obj.close()
    with pytest.raises(ValueError, match=r"objects\[0\] \(.*\) is closed"):
        mapshare.wait([obj, objs.event if kind != "event" else objs.semaphore])


def test_core_wait_any_checks_its_arguments(objs: Objects) -> None:
    with pytest.raises(ValueError, match="at least one"):
        _core.wait_any([])
    with pytest.raises(TypeError, match=r"objects\[0\]: cannot wait on"):
        _core.wait_any([objs.segment])  # the Python Segment: _wait passes its _core
    with pytest.raises(TypeError, match=r"a tuple must be"):
        _core.wait_any([(objs.segment._core,)])
    objs.event.close()
    with pytest.raises(ValueError, match="closed"):
        _core.wait_any([objs.event])


def test_closing_a_channel_ends_a_wait_in_another_thread(objs: Objects, mode: str) -> None:
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(mapshare.wait([objs.event, objs.channel])))
    t.start()
    deadline = time.monotonic() + 10
    while not objs.channel._waits and time.monotonic() < deadline:
        time.sleep(0.001)
    time.sleep(0.02)
    objs.channel.close()  # does not refuse: the wait ends at once
    t.join(10)
    assert not t.is_alive()
    assert out == [[objs.channel]]
    with pytest.raises(ValueError, match="closed"):
        objs.channel.receive_nowait()


def test_closing_a_segment_under_a_waiting_thread_refuses(objs: Objects) -> None:
    t = threading.Thread(target=lambda: mapshare.wait([objs.event, objs.segment], timeout=30))
    t.start()
    time.sleep(0.1)
    try:
        with pytest.raises(BufferError, match="waiting in this segment"):
            objs.event.close()
    finally:
        objs.event.set()
        t.join(10)
    assert not t.is_alive()


def test_the_gil_is_released_while_waiting(objs: Objects) -> None:
    counted = 0
    stop = threading.Event()

    def count() -> None:
        nonlocal counted
        while not stop.is_set():
            counted += 1

    t = threading.Thread(target=count)
    t.start()
    try:
        assert mapshare.wait(objs.all(), timeout=0.2) == []
    finally:
        stop.set()
        t.join()
    assert counted > 1000


@pytest.mark.skipif(WINDOWS, reason="the polling choice is a Linux concern")
def test_the_platform_sleeps_on_every_word_at_once() -> None:
    # this machine's kernel has futex_waitv (Linux >= 5.16): no polling unless forced
    import platform

    major, minor = (int(x) for x in platform.release().split(".")[:2])
    if (major, minor) < (5, 16):
        pytest.skip("kernel without futex_waitv")
    assert _core._wait_polling(None) is False
    _core._wait_polling(True)
    try:
        assert _core._wait_polling(None) is True
    finally:
        _core._wait_polling(False)


# ---- asyncio --------------------------------------------------------------------------


def test_wait_async(objs: Objects, mode: str) -> None:
    async def main() -> tuple[list[Any], list[Any], list[Any]]:
        t = _later(0.05, objs.event.set)
        woken = await mapshare.wait_async(objs.all(), timeout=30)
        t.join()
        objs.event.clear()
        timed_out = await mapshare.wait_async(objs.all(), timeout=0.05)
        objs.channel.send(b"x")
        at_once = await mapshare.wait_async(objs.all())
        return woken, timed_out, at_once

    woken, timed_out, at_once = asyncio.run(main())
    assert woken == [objs.event]
    assert timed_out == []
    assert at_once == [objs.channel]


def test_wait_async_does_not_block_the_loop_and_cancels(objs: Objects) -> None:
    async def main() -> int:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        ticker = asyncio.create_task(tick())
        waiter = asyncio.create_task(mapshare.wait_async([objs.semaphore, objs.channel]))
        await asyncio.sleep(0.2)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        ticker.cancel()
        return ticks

    assert asyncio.run(main()) > 10
    # the worker thread ends its slice in the background (mapshare._aio): let it finish
    # before the fixture closes the semaphore it still waits on
    _aio.shutdown()
    # cancelling took nothing: the unit and the message released afterwards are there
    objs.semaphore.release()
    objs.channel.send(b"y")
    assert objs.semaphore.acquire(timeout=0)
    assert objs.channel.receive_nowait() == b"y"


# ---- topic subscribers ----------------------------------------------------------------


def test_a_publish_wakes_a_subscriber_waiter(objs: Objects, name: str, mode: str) -> None:
    topic = mapshare.Topic.create(name, 4096)
    try:
        sub = topic.subscribe()
        t = _later(0.05, lambda: topic.publish(b"a"))
        assert mapshare.wait([objs.event, sub, objs.channel], timeout=30) == [sub]
        t.join()
        # ready takes nothing: the message is still there, then gone
        assert mapshare.wait([sub], timeout=0) == [sub]
        assert sub.receive_nowait() == b"a"
        assert mapshare.wait([sub], timeout=0) == []
        # a second subscriber of the same topic is a second object
        other = topic.subscribe()
        topic.publish(b"b")
        assert mapshare.wait([sub, other], timeout=0) == [sub, other]
        other.close()
        with pytest.raises(ValueError, match="is closed"):
            mapshare.wait([sub, other])
        sub.close()
    finally:
        topic.close()
        topic.unlink()


def test_closing_a_subscriber_ends_a_wait_in_another_thread(name: str) -> None:
    topic = mapshare.Topic.create(name, 4096)
    try:
        sub = topic.subscribe()
        out: list[Any] = []
        t = threading.Thread(target=lambda: out.append(mapshare.wait([sub])))
        t.start()
        deadline = time.monotonic() + 10
        while not sub._waits and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(0.02)
        sub.close()
        t.join(10)
        assert not t.is_alive()
        assert out == [[sub]]
    finally:
        topic.close()
        topic.unlink()
