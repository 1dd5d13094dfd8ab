"""Type assertions over the public API, checked by mypy (tests/typing/test_typing.py).

Never run: mypy reads it.  Every ``assert_type`` fails the check if the expression's
type differs -- in particular if it is ``Any``, which would let any mistake through:
what a user gets from a factory, a ``with`` block, a receive call, a loan window or
``collect()`` is a concrete type.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from typing_extensions import assert_type

import mapshare
from mapshare import (
    Channel,
    ChannelStatistics,
    Event,
    Lock,
    LockState,
    OwnerDiedError,
    ProcessInfo,
    Reclaimed,
    Segment,
    SegmentInfo,
    Semaphore,
    Window,
)


class MySegment(Segment):
    """A subclass: the factories return it, not the base class."""


def factories() -> None:
    assert_type(Segment.create("a", 10), Segment)
    assert_type(Segment.open("a"), Segment)
    assert_type(Segment.open_or_create("a", 10), Segment)
    assert_type(MySegment.create("a", 10), MySegment)
    assert_type(MySegment.open("a", wait=1.0), MySegment)
    assert_type(MySegment.open_or_create("a", 10), MySegment)
    assert_type(Lock.create("l"), Lock)
    assert_type(Lock.open("l"), Lock)
    assert_type(Lock.open_or_create("l"), Lock)
    assert_type(Event.create("e"), Event)
    assert_type(Event.open("e"), Event)
    assert_type(Event.open_or_create("e"), Event)
    assert_type(Semaphore.create("s", 2), Semaphore)
    assert_type(Semaphore.open("s"), Semaphore)
    assert_type(Semaphore.open_or_create("s", 2), Semaphore)
    assert_type(Channel.create("c", 4096), Channel)
    assert_type(Channel.open("c"), Channel)
    assert_type(Channel.open_or_create("c", 4096), Channel)
    seg = Segment.open("a")
    assert_type(Event.create_in(seg, 0), Event)
    assert_type(Event.open_in(seg, 0), Event)
    assert_type(Semaphore.create_in(seg, 16), Semaphore)
    assert_type(Semaphore.open_in(seg, 16), Semaphore)
    assert_type(seg.lock(), Lock)


def context_managers() -> None:
    with Segment.open("a") as seg:
        assert_type(seg, Segment)
    with MySegment.create("a", 10) as mine:
        assert_type(mine, MySegment)
    with Lock.open("l") as lock:
        assert_type(lock, Lock)
    with Segment.open("a").lock() as builtin:
        assert_type(builtin, Lock)
    with Semaphore.open("s") as sem:
        assert_type(sem, Semaphore)
    with Channel.open("c") as ch:
        assert_type(ch, Channel)


async def async_context_managers() -> None:
    async with Lock.open("l") as lock:
        assert_type(lock, Lock)


def receiving(ch: Channel) -> None:
    assert_type(ch.receive(), bytes)
    assert_type(ch.receive(timeout=1.0), bytes)
    assert_type(ch.receive_nowait(), bytes)
    assert_type(ch.receive_many(10), list[bytes])
    assert_type(ch.receive_object(), object)
    assert_type(ch.receive_object_nowait(), object)
    assert_type(ch.receive_any(), object)
    assert_type(ch.receive_any_nowait(), object)
    assert_type(ch.receive_array(), np.ndarray)
    assert_type(ch.receive_array_nowait(), np.ndarray)
    assert_type(ch.receive_view(), Window)
    with ch.receive_view() as view:
        assert_type(view, memoryview)
    with ch.receive_array_view() as array:
        assert_type(array, np.ndarray)
    for message in ch:
        assert_type(message, bytes)


async def receiving_async(ch: Channel) -> None:
    assert_type(await ch.receive_async(), bytes)
    assert_type(await ch.receive_object_async(), object)
    assert_type(await ch.receive_any_async(), object)
    assert_type(await ch.receive_many_async(4), list[bytes])
    async for message in ch:
        assert_type(message, bytes)


def sending(ch: Channel) -> None:
    assert_type(ch.loan(100), Window)
    with ch.loan(100) as window:
        assert_type(window, memoryview)
    assert_type(ch.send_many([b"a", b"b"]), int)


def inspection(seg: Segment, lock: Lock, ch: Channel) -> None:
    assert_type(mapshare.collect(), list[Reclaimed])
    assert_type(mapshare.collect(dry_run=True)[0].reason, str)
    assert_type(mapshare.segments(), list[SegmentInfo])
    info = seg.info()
    assert_type(info, SegmentInfo)
    assert_type(info.attached, tuple[ProcessInfo, ...])
    assert_type(info.lock, Optional[LockState])
    assert_type(lock.state(), LockState)
    assert_type(ch.statistics(), ChannelStatistics)
    assert_type(ch.segment, Segment)
    assert_type(seg.buf, memoryview)
    assert_type(seg.view(0, 10), memoryview)
    assert_type(seg.read(), bytes)


def errors() -> None:
    try:
        Lock.open("l").acquire()
    except OwnerDiedError as exc:
        assert_type(exc.lock, Optional[Lock])
