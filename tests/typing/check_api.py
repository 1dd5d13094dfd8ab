"""Type assertions over the public API, checked by mypy (tests/typing/test_typing.py).

Never run: mypy reads it.  Every ``assert_type`` fails the check if the expression's
type differs -- in particular if it is ``Any``, which would let any mistake through:
what a user gets from a factory, a ``with`` block, a receive call, a loan window or
``collect()`` is a concrete type.
"""

from __future__ import annotations

from typing import Literal, Optional

import numpy as np
from typing_extensions import assert_type

import mapshare
from mapshare import (
    Channel,
    ChannelStatistics,
    Event,
    Lagged,
    Lock,
    LockState,
    OwnerDiedError,
    ProcessInfo,
    Reclaimed,
    Segment,
    SegmentInfo,
    Semaphore,
    Subscriber,
    SubscriberStatistics,
    Topic,
    TopicStatistics,
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
    assert_type(Topic.create("t", 4096, history=10, overflow="block"), Topic)
    assert_type(Topic.open("t", wait=1.0), Topic)
    assert_type(Topic.open_or_create("t", 4096), Topic)
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
    with Topic.open("t") as topic:
        assert_type(topic, Topic)
        with topic.subscribe() as sub:
            assert_type(sub, Subscriber)


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


def publishing(topic: Topic) -> None:
    assert_type(topic.publish(b"x"), int)
    assert_type(topic.publish_nowait(b"x"), int)
    assert_type(topic.publish_many([b"a", b"b"]), int)
    assert_type(topic.publish_object({"a": 1}), int)
    assert_type(topic.publish_array(np.zeros(3)), int)
    assert_type(topic.loan(100), Window)
    with topic.loan(100) as window:
        assert_type(window, memoryview)
    assert_type(topic.overflow, Literal["overwrite", "block"])
    assert_type(topic.subscribe(start="history"), Subscriber)
    assert_type(topic.subscribe(start=12), Subscriber)


def subscribing(sub: Subscriber) -> None:
    assert_type(sub.receive(), bytes)
    assert_type(sub.receive(timeout=1.0), bytes)
    assert_type(sub.receive_nowait(), bytes)
    assert_type(sub.receive_many(10), list[bytes])
    assert_type(sub.receive_object(), object)
    assert_type(sub.receive_any(), object)
    assert_type(sub.receive_array(), np.ndarray)
    assert_type(sub.receive_view(), Window)
    with sub.receive_view() as view:
        assert_type(view, memoryview)
    with sub.receive_array_view() as array:
        assert_type(array, np.ndarray)
    for message in sub:
        assert_type(message, bytes)
    assert_type(sub.position, int)
    assert_type(sub.missed, int)
    assert_type(sub.received, int)
    assert_type(sub.topic, Topic)


async def topic_async(topic: Topic, sub: Subscriber) -> None:
    assert_type(await topic.publish_async(b"x"), int)
    assert_type(await sub.receive_async(), bytes)
    assert_type(await sub.receive_object_async(), object)
    assert_type(await sub.receive_many_async(4), list[bytes])
    async for message in sub:
        assert_type(message, bytes)


def topic_inspection(topic: Topic) -> None:
    stats = topic.statistics()
    assert_type(stats, TopicStatistics)
    assert_type(stats.subscribers, tuple[SubscriberStatistics, ...])
    assert_type(stats.subscribers[0].lag, int)
    assert_type(topic.segment, Segment)
    try:
        topic.subscribe().receive()
    except Lagged as lag:
        assert_type(lag.missed, int)
        assert_type(lag.position, int)


def errors() -> None:
    try:
        Lock.open("l").acquire()
    except OwnerDiedError as exc:
        assert_type(exc.lock, Optional[Lock])
