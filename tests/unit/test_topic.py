"""Topics in one process (threads allowed): factories and their checks, sequence
numbers, the three start positions, lapping and ``Lagged`` in overwrite mode, back
pressure in block mode, loans and views, statistics, closing, pickling and asyncio.

Cross-process behaviour (SIGKILLed publishers and subscribers, exits, fork) is in
tests/multiprocess/."""

from __future__ import annotations

import asyncio
import gc
import pickle
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import mapshare
from mapshare import Lagged, Subscriber, Topic, TopicEmpty, TopicFull

REC = 16  # record header: u32 length, u32 flags, u64 seq


def rsize(n: int) -> int:
    """Bytes of ring a message of n bytes takes."""
    return REC + ((n + 7) & ~7)


def msg(i: int) -> bytes:
    """An 8-byte message carrying its own number."""
    return i.to_bytes(8, "little")


def num(m: bytes) -> int:
    return int.from_bytes(m[:8], "little")


# A ring of exactly ten 8-byte messages (no padding record ever).
TEN = 10 * rsize(8)


@pytest.fixture
def topic(name: str) -> Iterator[Topic]:
    t = Topic.create(name, TEN)
    try:
        yield t
    finally:
        t.close()


@pytest.fixture
def block(name: str) -> Iterator[Topic]:
    t = Topic.create(name, TEN, overflow="block")
    try:
        yield t
    finally:
        t.close()


def drain(sub: Subscriber) -> list[int]:
    out = []
    while True:
        try:
            out.append(num(sub.receive_nowait()))
        except TopicEmpty:
            return out


# ---- factories -------------------------------------------------------------------------


def test_create_open_and_properties(name: str) -> None:
    with Topic.create(name, 1000, history=5, max_subscribers=3) as t:
        assert t.name == name
        assert t.capacity == 1000  # a multiple of 8 already
        assert t.history == 5
        assert t.overflow == "overwrite"
        assert t.max_subscribers == 3
        assert 0 < t.max_message <= t.capacity - REC
        assert t.segment.name == name
        with Topic.open(name) as other:
            assert (other.capacity, other.history, other.overflow, other.max_subscribers) == (
                1000, 5, "overwrite", 3,
            )
            assert other.publish(b"x") == 0
        assert "Topic" in repr(t) and name in repr(t)
    assert "closed" in repr(t)


def test_capacity_is_rounded_to_eight(name: str) -> None:
    with Topic.create(name, 1001) as t:
        assert t.capacity == 1008


def test_block_mode_is_reported(block: Topic) -> None:
    assert block.overflow == "block"
    assert block.statistics().overflow == "block"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"capacity": 127}, ValueError, "capacity must be an int >= 128"),
        ({"capacity": True}, TypeError, "capacity must be an int"),
        ({"capacity": 240, "history": 11}, ValueError,
         r"cannot hold history=11 messages .* use capacity >= 264"),
        ({"capacity": 240, "history": -1}, ValueError, "history must be >= 0"),
        ({"capacity": 240, "overflow": "drop"}, ValueError,
         "overflow must be 'overwrite' or 'block'"),
        ({"capacity": 240, "max_subscribers": 0}, ValueError,
         "max_subscribers must be between 1 and"),
    ],
)
def test_create_checks_its_arguments(
    name: str, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        Topic.create(name, **kwargs)
    with Topic.create(name, 240):  # nothing was created: the name is free
        pass


def test_history_that_just_fits_is_accepted(name: str) -> None:
    with Topic.create(name, 240, history=10) as t:
        assert t.history == 10


def test_open_or_create_opens_the_same_topic_and_refuses_another_shape(name: str) -> None:
    with Topic.open_or_create(name, 512, history=2) as a:
        with Topic.open_or_create(name, 512, history=2) as b:
            b.publish(b"one")
            assert a.statistics().published == 1
        with pytest.raises(mapshare.LayoutError, match=r"history=2.*asked for.*history=3"):
            Topic.open_or_create(name, 512, history=3)
        with pytest.raises(mapshare.LayoutError, match="overflow='overwrite'"):
            Topic.open_or_create(name, 512, history=2, overflow="block")
        with pytest.raises(mapshare.LayoutError):
            Topic.open_or_create(name, 1024, history=2)


def test_open_refuses_what_is_not_a_topic(names: Any) -> None:
    a, b = names(), names()
    with mapshare.Channel.create(a, 256), pytest.raises(
        mapshare.LayoutError, match="is a channel, not a topic"
    ):
        Topic.open(a)
    with Topic.create(b, 256):
        with pytest.raises(mapshare.LayoutError, match="is a topic, not a segment"):
            mapshare.Segment.open(b)
        with pytest.raises(mapshare.LayoutError, match="is a topic, not a channel"):
            mapshare.Channel.open(b)


def test_open_waits_for_the_name(name: str) -> None:
    with pytest.raises(mapshare.SegmentNotFoundError):
        Topic.open(name)
    made: list[Topic] = []
    timer = threading.Timer(0.1, lambda: made.append(Topic.create(name, 256)))
    timer.start()
    try:
        with Topic.open(name, wait=10) as t:
            assert t.capacity == 256
    finally:
        timer.join()
        for t in made:
            t.close()


def test_constructors_are_refused(topic: Topic) -> None:
    with pytest.raises(TypeError, match=r"Topic\.create"):
        Topic(topic.segment._core)
    with pytest.raises(TypeError, match=r"Topic\.subscribe"):
        Subscriber(topic)
    assert topic.statistics().subscribers == ()  # the refused one took no row


# ---- sequence numbers and start positions ------------------------------------------------


def test_publish_returns_dense_sequence_numbers_from_zero(topic: Topic) -> None:
    assert [topic.publish(msg(i)) for i in range(5)] == [0, 1, 2, 3, 4]
    assert topic.publish_nowait(b"") == 5  # zero-byte messages are messages too
    assert topic.statistics().published == 6


def test_a_subscriber_made_before_anything_is_published_sees_message_zero(
    topic: Topic,
) -> None:
    with topic.subscribe() as sub:
        assert sub.position == 0
        topic.publish(msg(0))
        assert sub.receive(timeout=5) == msg(0)
        assert sub.position == 1


def test_live_starts_at_the_next_message(topic: Topic) -> None:
    for i in range(3):
        topic.publish(msg(i))
    with topic.subscribe("live") as sub:
        assert sub.position == 3
        with pytest.raises(TopicEmpty):
            sub.receive_nowait()
        topic.publish(msg(3))
        assert num(sub.receive(timeout=5)) == 3


def test_history_replays_the_newest_then_goes_live(name: str) -> None:
    with Topic.create(name, 4096, history=4) as t:
        with t.subscribe("history") as early:
            assert early.position == 0  # nothing held yet: the same as live
        for i in range(10):
            t.publish(msg(i))
        with t.subscribe("history") as sub:
            assert sub.position == 6
            t.publish(msg(10))
            assert drain(sub) == [6, 7, 8, 9, 10]  # no gap, no duplicate at the switch


def test_history_is_limited_by_what_the_ring_holds(name: str) -> None:
    # history=10 in a ring of ten 8-byte messages: larger messages mean fewer held
    with Topic.create(name, TEN, history=10) as t:
        for i in range(4):
            t.publish(msg(i) * 4)  # 32 bytes: 48 of ring each, 5 fit
        with t.subscribe("history") as sub:
            assert drain(sub) == [0, 1, 2, 3]
        for i in range(4, 12):
            t.publish(msg(i) * 4)
        s = t.statistics()
        assert s.held == 5 and s.oldest == 7
        with t.subscribe("history") as sub:
            assert drain(sub) == [7, 8, 9, 10, 11]


def test_start_at_a_held_sequence_number(topic: Topic) -> None:
    for i in range(5):
        topic.publish(msg(i))
    with topic.subscribe(2) as sub:
        assert sub.position == 2
        assert drain(sub) == [2, 3, 4]


def test_start_at_a_future_sequence_number_skips_to_it(topic: Topic) -> None:
    topic.publish(msg(0))
    with topic.subscribe(4) as sub:
        for i in range(1, 6):
            topic.publish(msg(i))
        assert drain(sub) == [4, 5]  # 1-3 skipped, not missed
        assert sub.missed == 0 and sub.received == 2


def test_start_before_the_oldest_held_raises_lagged_once(topic: Topic) -> None:
    for i in range(25):
        topic.publish(msg(i))
    oldest = topic.statistics().oldest
    assert oldest == 15
    with topic.subscribe(3) as sub:
        with pytest.raises(Lagged) as info:
            sub.receive_nowait()
        assert info.value.missed == oldest - 3
        assert info.value.position == oldest
        assert drain(sub) == list(range(oldest, 25))
        assert sub.missed == oldest - 3


@pytest.mark.parametrize(
    ("start", "error"), [("now", ValueError), (-1, ValueError), (True, ValueError),
                         (1.5, ValueError)]
)
def test_subscribe_checks_start(topic: Topic, start: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="start must be"):
        topic.subscribe(start)


# ---- overwrite mode: loss is counted, never silent ---------------------------------------


def test_a_lapped_subscriber_gets_lagged_once_with_the_exact_count(topic: Topic) -> None:
    with topic.subscribe() as sub:
        topic.publish(msg(0))
        assert num(sub.receive_nowait()) == 0
        for i in range(1, 48):  # the subscriber is stopped meanwhile
            topic.publish(msg(i))
        oldest = topic.statistics().oldest
        with pytest.raises(Lagged) as info:
            sub.receive(timeout=5)
        lag = info.value
        assert lag.missed == oldest - 1
        assert lag.position == oldest == sub.position
        got = drain(sub)  # the newest contiguous block, no second Lagged
        assert got == list(range(oldest, 48))
        assert sub.received + sub.missed == 48
        row = topic.statistics().subscribers[0]
        assert (row.received, row.missed, row.position, row.lag) == (
            sub.received, sub.missed, 48, 0,
        )


def test_lagged_carries_missed_and_position_and_pickles() -> None:
    e = Lagged(7, 42)
    assert (e.missed, e.position) == (7, 42)
    assert isinstance(e, mapshare.MapshareError)
    copy = pickle.loads(pickle.dumps(e))
    assert type(copy) is Lagged and (copy.missed, copy.position) == (7, 42)


def test_the_publisher_never_waits_in_overwrite_mode(topic: Topic) -> None:
    with topic.subscribe(), topic.subscribe():  # two subscribers that never read
        for i in range(1000):
            topic.publish_nowait(msg(i))
    assert topic.statistics().published == 1000


def test_received_plus_missed_equals_published_under_constant_overwrite(
    name: str,
) -> None:
    # a publisher thread laps a slow subscriber again and again
    with Topic.create(name, 4096) as t:
        sub = t.subscribe()
        total = 20_000
        done = threading.Event()

        def publish() -> None:
            for i in range(total):
                t.publish(msg(i) * 8)
            done.set()

        th = threading.Thread(target=publish)
        th.start()
        received: list[int] = []
        lags = 0
        while True:
            try:
                m = sub.receive(timeout=0.05)
            except Lagged as e:
                lags += 1
                assert e.position == sub.position
                continue
            except mapshare.WaitTimeout:
                if done.is_set() and sub.position == total:
                    break
                continue
            assert m == msg(num(m)) * 8, "torn message"
            received.append(num(m))
            if len(received) % 64 == 0:
                time.sleep(0.0005)  # slower than the publisher
        th.join()
        assert received == sorted(received) and len(set(received)) == len(received)
        assert sub.received == len(received)
        assert sub.received + sub.missed == total
        sub.close()


# ---- receiving ---------------------------------------------------------------------------


def test_receive_nowait_and_timeouts(topic: Topic) -> None:
    with topic.subscribe() as sub:
        with pytest.raises(TopicEmpty) as empty:
            sub.receive_nowait()
        assert isinstance(empty.value, queue.Empty)
        with pytest.raises(mapshare.WaitTimeout):
            sub.receive(timeout=0.05)
        with pytest.raises(TopicEmpty):
            sub.receive(timeout=0)


def test_a_blocked_receive_wakes_on_publish(topic: Topic) -> None:
    with topic.subscribe() as sub:
        timer = threading.Timer(0.05, lambda: topic.publish(b"late"))
        timer.start()
        assert sub.receive(timeout=10) == b"late"
        timer.join()


def test_every_subscriber_sees_every_message(topic: Topic) -> None:
    subs = [topic.subscribe() for _ in range(4)]
    for i in range(5):
        topic.publish(msg(i))
    for s in subs:
        assert drain(s) == [0, 1, 2, 3, 4]
        s.close()


def test_receive_many_and_publish_many(topic: Topic) -> None:
    with topic.subscribe() as sub:
        assert topic.publish_many([]) == -1
        assert topic.publish_many(msg(i) for i in range(5)) == 4
        assert [num(m) for m in sub.receive_many(3, timeout=5)] == [0, 1, 2]
        assert [num(m) for m in sub.receive_many(10)] == [3, 4]
        with pytest.raises(mapshare.WaitTimeout):
            sub.receive_many(10, timeout=0.02)


def test_many_threads_publish_one_total_order(name: str) -> None:
    with Topic.create(name, 1 << 16) as t:
        sub = t.subscribe()
        seqs: list[list[int]] = [[] for _ in range(4)]

        def publish(k: int) -> None:
            for i in range(200):
                seqs[k].append(t.publish(bytes([k]) + msg(i)))

        threads = [threading.Thread(target=publish, args=(k,)) for k in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        everything = sorted(s for part in seqs for s in part)
        assert everything == list(range(800))
        got = [sub.receive_nowait() for _ in range(800)]
        for k in range(4):  # each thread's messages in its order, at its seqs
            assert [num(m[1:]) for m in got if m[0] == k] == list(range(200))
            assert [i for i, m in enumerate(got) if m[0] == k] == seqs[k]
        sub.close()


def test_iteration_until_lagged(topic: Topic) -> None:
    sub = topic.subscribe()
    for i in range(3):
        topic.publish(msg(i))
    seen = []
    for m in sub:
        seen.append(num(m))
        if len(seen) == 3:
            break
    assert seen == [0, 1, 2]
    for i in range(3, 30):
        topic.publish(msg(i))
    with pytest.raises(Lagged) as lag:
        for m in sub:
            seen.append(num(m))
    assert lag.value.position == 20 and seen == [0, 1, 2]
    seen = []
    for m in sub:  # iterating again goes on from the oldest held
        seen.append(num(m))
        if seen[-1] == 29:
            break
    assert seen == list(range(20, 30)) and sub.received + sub.missed == 30
    sub.close()


# ---- zero copy ---------------------------------------------------------------------------


def test_loan_publishes_on_leaving_and_discards_on_exception(topic: Topic) -> None:
    with topic.subscribe() as sub:
        loan = topic.loan(5)
        with loan as buf:
            buf[:] = b"hello"
        assert loan.seq == 0
        with pytest.raises(RuntimeError, match="boom"), topic.loan(3) as buf:
            buf[:] = b"abc"
            raise RuntimeError("boom")
        assert sub.receive_nowait() == b"hello"
        with pytest.raises(TopicEmpty):
            sub.receive_nowait()
        assert topic.publish(b"next") == 1  # the discarded loan took no sequence number


def test_receive_view_is_read_only_and_consumed_at_the_end(topic: Topic) -> None:
    with topic.subscribe() as sub:
        topic.publish(b"viewed")
        with sub.receive_view(timeout=5) as v:
            assert bytes(v) == b"viewed" and v.readonly
            assert sub.position == 0
        assert sub.position == 1 and sub.received == 1


def test_a_view_overwritten_while_in_use_raises_lagged_on_leaving(topic: Topic) -> None:
    with topic.subscribe() as sub:
        topic.publish(msg(0))
        with pytest.raises(Lagged) as info, sub.receive_view() as v:
            assert num(bytes(v)) == 0
            for i in range(1, 30):  # laps the ring under the open view
                topic.publish(msg(i))
        assert info.value.position == topic.statistics().oldest
        assert sub.received + sub.missed + len(drain(sub)) == 30


# ---- objects and arrays ------------------------------------------------------------------


def test_objects_and_the_kinds(name: str) -> None:
    with Topic.create(name, 1 << 14) as t, t.subscribe() as sub:
        assert t.publish_object({"a": [1, 2]}) == 0
        assert sub.receive_object(timeout=5) == {"a": [1, 2]}
        t.publish(b"raw")
        with pytest.raises(mapshare.MessageKindError, match="found a message of kind bytes") as e:
            sub.receive_object_nowait()
        assert e.value.kind == "bytes"
        t.publish_object(("x", 1))
        assert sub.receive_any_nowait() == ("x", 1)
        t.publish(b"raw2")
        assert sub.receive_any(timeout=5) == b"raw2"


def test_arrays(name: str) -> None:
    np = pytest.importorskip("numpy")
    with Topic.create(name, 1 << 16) as t, t.subscribe() as sub:
        a = np.arange(12, dtype=">i4").reshape(3, 4)
        f = np.asfortranarray(np.arange(6.0).reshape(2, 3))
        assert t.publish_array(a) == 0
        t.publish_array(f)
        t.publish_array(a[:, ::2])
        got = sub.receive_array(timeout=5)
        assert got.dtype == a.dtype and (got == a).all() and not got.flags.writeable
        with sub.receive_array_view() as view:
            assert view.flags.f_contiguous and (view == f).all()
        assert (sub.receive_array_nowait() == a[:, ::2]).all()
        t.publish_array(a)
        assert (sub.receive_any_nowait() == a).all()
        with pytest.raises(ValueError, match="use publish_object"):
            t.publish_array(np.array([object()]))


# ---- block mode --------------------------------------------------------------------------


def test_block_mode_waits_for_the_slowest_live_subscriber(block: Topic) -> None:
    sub = block.subscribe()
    for i in range(10):
        block.publish_nowait(msg(i))
    with pytest.raises(TopicFull) as full:
        block.publish_nowait(msg(10))
    assert isinstance(full.value, queue.Full)
    with pytest.raises(mapshare.WaitTimeout):
        block.publish(msg(10), timeout=0.05)
    assert num(sub.receive_nowait()) == 0
    assert block.publish_nowait(msg(10)) == 10  # one read made room for one
    timer = threading.Timer(0.05, lambda: sub.receive_many(5))
    timer.start()
    assert block.publish(msg(11), timeout=10) == 11
    timer.join()
    assert drain(sub) == list(range(6, 12))
    assert sub.missed == 0
    sub.close()


def test_a_subscriber_that_closes_releases_a_blocked_publisher_at_once(block: Topic) -> None:
    slow = block.subscribe()
    fast = block.subscribe()
    for i in range(10):
        block.publish(msg(i))
    drain(fast)
    timer = threading.Timer(0.1, slow.close)
    timer.start()
    t0 = time.monotonic()
    assert block.publish(msg(10), timeout=30) == 10
    assert time.monotonic() - t0 < 25  # released by the close, not the timeout
    timer.join()
    assert drain(fast) == [10]
    fast.close()


def test_block_mode_without_subscribers_overwrites(block: Topic) -> None:
    for i in range(30):
        block.publish_nowait(msg(i))
    with block.subscribe("history") as sub:
        assert sub.position == 30  # history=0: nothing replayed


def test_a_subscriber_garbage_collected_releases_the_publisher(block: Topic) -> None:
    sub = block.subscribe()
    for i in range(10):
        block.publish(msg(i))
    del sub
    gc.collect()
    assert block.publish_nowait(msg(10)) == 10
    assert block.statistics().subscribers == ()


# ---- subscriber table, statistics --------------------------------------------------------


def test_subscriber_limit(name: str) -> None:
    with Topic.create(name, 256, max_subscribers=2) as t:
        a, b = t.subscribe(), t.subscribe()
        with pytest.raises(mapshare.SubscriberLimitError):
            t.subscribe()
        a.close()
        c = t.subscribe()
        b.close()
        c.close()


def test_statistics_fields(name: str) -> None:
    with Topic.create(name, TEN, history=3, max_subscribers=8) as t:
        sub = t.subscribe()
        for i in range(4):
            t.publish(msg(i))
        sub.receive_nowait()
        s = t.statistics()
        assert (s.capacity, s.history, s.overflow, s.max_subscribers) == (
            TEN, 3, "overwrite", 8,
        )
        assert s.max_message == t.max_message
        assert (s.published, s.published_bytes, s.oldest, s.held) == (4, 32, 0, 4)
        assert (s.publisher_deaths, s.abandoned, s.subscriber_deaths) == (0, 0, 0)
        assert len(s.subscribers) == 1
        row = s.subscribers[0]
        assert isinstance(row, mapshare.SubscriberStatistics)
        assert (row.pid, row.alive, row.position, row.lag, row.missed, row.received) == (
            __import__("os").getpid(), True, 1, 3, 0, 1,
        )
        with pytest.raises(AttributeError):
            s.published = 0  # type: ignore[misc]  # frozen: the test checks it refuses
        sub.close()
        assert t.statistics().subscribers == ()


def test_subscriber_repr_and_counters(topic: Topic) -> None:
    sub = topic.subscribe()
    topic.publish(b"x")
    sub.receive_nowait()
    assert (sub.position, sub.received, sub.missed, sub.closed) == (1, 1, 0, False)
    assert repr(sub) == f"<Subscriber of {topic.name!r} at 1, 1 received, 0 missed>"
    assert sub.topic is topic
    sub.close()
    sub.close()  # idempotent
    assert sub.closed and "closed" in repr(sub)


# ---- closing and pickling ----------------------------------------------------------------


def test_closing_the_topic_closes_its_subscribers(name: str) -> None:
    t = Topic.create(name, 256)
    sub = t.subscribe()
    t.close()
    assert sub.closed
    t.close()  # idempotent


def test_topic_pickles_by_name_subscriber_does_not(topic: Topic) -> None:
    topic.publish(b"a")
    with pickle.loads(pickle.dumps(topic)) as again:
        assert isinstance(again, Topic) and again.name == topic.name
        assert again.statistics().published == 1
    with topic.subscribe() as sub, pytest.raises(TypeError, match="subscribe in the other"):
        pickle.dumps(sub)


# ---- asyncio -----------------------------------------------------------------------------


def test_async_receive_and_iteration(topic: Topic) -> None:
    async def main() -> list[bytes]:
        sub = topic.subscribe()
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, topic.publish, b"one")
        first = await sub.receive_async(timeout=10)
        topic.publish_object(2)
        topic.publish(b"three")
        second = await sub.receive_object_async(timeout=10)
        assert second == 2
        got = [first]
        async for m in sub:
            got.append(m)
            break
        topic.publish_many([b"4", b"5"])
        got += await sub.receive_many_async(10, timeout=10)
        topic.publish(b"later")
        assert await sub.receive_any_async(timeout=10) == b"later"
        sub.close()
        return got

    assert asyncio.run(main()) == [b"one", b"three", b"4", b"5"]


def test_async_receive_times_out_and_cancel_loses_nothing(topic: Topic) -> None:
    async def main() -> None:
        sub = topic.subscribe()
        with pytest.raises(mapshare.WaitTimeout):
            await sub.receive_async(timeout=0.05)
        task = asyncio.ensure_future(sub.receive_async())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        topic.publish(b"kept")
        assert await sub.receive_async(timeout=5) == b"kept"
        sub.close()  # right after a cancelled wait: at once

    asyncio.run(main())


def test_async_publish_in_block_mode_waits_for_room(block: Topic) -> None:
    async def main() -> None:
        sub = block.subscribe()
        for i in range(10):
            assert await block.publish_async(msg(i)) == i
        with pytest.raises(mapshare.WaitTimeout):
            await block.publish_async(msg(10), timeout=0.05)
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, sub.receive_nowait)
        assert await block.publish_async(msg(10), timeout=10) == 10
        loop.call_later(0.05, sub.receive_many, 5)
        assert await block.publish_object_async("obj", timeout=10) == 11
        assert drain_any(sub)[-1] == "obj"
        sub.close()

    asyncio.run(main())


def drain_any(sub: Subscriber) -> list[object]:
    out: list[object] = []
    while True:
        try:
            out.append(sub.receive_any_nowait())
        except TopicEmpty:
            return out


# ---- the documentation's examples run as printed -----------------------------------------


def test_the_snippets_of_docs_topic_md_run(names: Any) -> None:
    import re
    from pathlib import Path

    page = Path(__file__).resolve().parents[2] / "docs" / "topic.md"
    if not page.exists():
        pytest.skip("run from a source checkout (docs/topic.md)")
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 6
    scope: dict[str, Any] = {"mapshare": mapshare}
    made: dict[str, str] = {}

    def rename(m: re.Match[str]) -> str:
        if m.group(2) not in made:
            made[m.group(2)] = names()
        return f'{m.group(1)}"{made[m.group(2)]}"'

    try:
        for code in blocks:
            code = re.sub(r'(Topic\.(?:create|open|open_or_create)\()"([\w-]+)"', rename, code)
            exec(compile(code, str(page), "exec"), scope)
    finally:
        for value in scope.values():
            if isinstance(value, (Topic, Subscriber)):
                value.close()
    assert len(made) >= 6


def test_async_arrays(name: str) -> None:
    np = pytest.importorskip("numpy")

    async def main() -> None:
        with Topic.create(name, 1 << 14, overflow="block") as t, t.subscribe() as sub:
            a = np.arange(6, dtype=np.int16).reshape(2, 3)
            assert await t.publish_array_async(a, timeout=10) == 0
            got = await sub.receive_array_async(timeout=10)
            assert (got == a).all() and got.dtype == a.dtype

    asyncio.run(main())


def test_spin_unlink_and_the_segment(name: str) -> None:
    t = Topic.create(name, 256, spin=0.0)
    try:
        assert t.spin == 0.0
        t.spin = 1e-4
        assert t.spin == pytest.approx(1e-4)
        assert t.segment.closed is False
        t.unlink()
        with pytest.raises(mapshare.SegmentNotFoundError):
            Topic.open(name)
        assert t.publish(b"still usable") == 0  # unlinking removes the name only
    finally:
        t.close()


def test_a_message_of_another_kind_is_skipped_and_counted(topic: Topic) -> None:
    with topic.subscribe() as sub:
        topic.publish(b"raw")
        topic.publish_object("obj")
        with pytest.raises(mapshare.MessageKindError, match=r"sequence number 0\); it was skipped"):
            sub.receive_object()
        assert (sub.position, sub.received) == (1, 1)
        assert sub.receive_object() == "obj"


def test_a_decoding_error_inside_an_overwritten_view_is_reported_as_lagged(
    topic: Topic,
) -> None:
    # receive_object/receive_array decode inside the view: garbage read from a record
    # that was being overwritten must surface as Lagged (the cause), not as the error
    # the garbage caused
    with topic.subscribe() as sub:
        topic.publish(msg(0))
        with pytest.raises(Lagged) as info, sub.receive_view():
            for i in range(1, 30):
                topic.publish(msg(i))
            raise mapshare.LayoutError("corrupt object message")
        assert isinstance(info.value.__context__, mapshare.LayoutError)
