"""Topic origins and upstream-loss records in one process (issue 14, parts 2 and 3):
``publish(origin=)`` and ``Subscriber.last_origin`` through every receive call, views,
objects, arrays, history and asyncio; ``publish_loss`` and the one ``Lagged`` it gives
(merged with adjacent loss records and with a local lap), its exact ``missed`` and
``upstream``, and the reconciliation ``received + missed == messages stood for``;
statistics; arguments refused.

Other processes (spawn and fork) seeing origins and losses:
tests/multiprocess/test_topic_origin_processes.py.  Forged records: test_topic_core.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import mapshare
from mapshare import Lagged, MessageTooLargeError, Origin, Topic, TopicEmpty


def msg(i: int) -> bytes:
    """An 8-byte message carrying its own number."""
    return i.to_bytes(8, "little")


@pytest.fixture
def topic(name: str) -> Iterator[Topic]:
    t = Topic.create(name, 4096, history=16)
    try:
        yield t
    finally:
        t.close()


def drain(sub: mapshare.Subscriber) -> list[object]:
    """Everything ``sub`` can read now: (bytes, origin) per message, ("lagged", missed,
    upstream, position) per Lagged."""
    out: list[object] = []
    while True:
        try:
            m = sub.receive_nowait()
        except Lagged as e:
            out.append(("lagged", e.missed, e.upstream, e.position))
            continue
        except TopicEmpty:
            return out
        out.append((m, sub.last_origin))


# ---- Origin -------------------------------------------------------------------------


def test_origin_is_a_named_tuple_exported_by_the_package() -> None:
    o = Origin("host-a", 7)
    assert (o.host, o.seq) == ("host-a", 7)
    assert o == ("host-a", 7)
    assert mapshare.Origin is Origin
    assert "Origin" in mapshare.__all__


def test_origin_round_trip_receive(topic: Topic) -> None:
    sub = topic.subscribe()
    assert sub.last_origin is None  # nothing received yet
    assert topic.publish(b"local") == 0
    assert topic.publish(b"remote", origin=Origin("host-a", 41)) == 1
    assert topic.publish_nowait(b"remote too", origin=Origin("hôte-b", 2**64 - 1)) == 2
    assert topic.publish(b"", 0, origin=Origin("h", 0)) == 3
    assert topic.publish(b"local again") == 4
    assert drain(sub) == [
        (b"local", None),
        (b"remote", Origin("host-a", 41)),
        (b"remote too", Origin("hôte-b", 2**64 - 1)),
        (b"", Origin("h", 0)),
        (b"local again", None),
    ]
    assert sub.received == 5 and sub.missed == 0


def test_receive_many_sets_the_origin_of_the_last(topic: Topic) -> None:
    sub = topic.subscribe()
    topic.publish(b"a", origin=Origin("x", 1))
    topic.publish(b"b", origin=Origin("y", 2))
    assert sub.receive_many(10, 0) == [b"a", b"b"]
    assert sub.last_origin == Origin("y", 2)


def test_origin_is_valid_inside_a_view(topic: Topic) -> None:
    sub = topic.subscribe()
    topic.publish(b"viewed", origin=Origin("host-v", 9))
    topic.publish(b"plain")
    with sub.receive_view(0) as v:
        assert bytes(v) == b"viewed"  # the payload only: no origin block
        assert sub.last_origin == Origin("host-v", 9)
    assert sub.last_origin == Origin("host-v", 9)
    with sub.receive_view(0) as v:
        assert bytes(v) == b"plain"
        assert sub.last_origin is None


def test_origin_with_objects_and_arrays(topic: Topic) -> None:
    np = pytest.importorskip("numpy")
    sub = topic.subscribe()
    topic.publish_object({"k": [1, 2]}, origin=Origin("obj-host", 5))
    arr = np.arange(12, dtype=np.int32).reshape(3, 4)
    topic.publish_array(arr, origin=Origin("arr-host", 6))
    topic.publish_object("plain")
    assert sub.receive_object(0) == {"k": [1, 2]}
    assert sub.last_origin == Origin("obj-host", 5)
    got = sub.receive_array(0)
    assert got.dtype == arr.dtype and (got == arr).all()
    assert sub.last_origin == Origin("arr-host", 6)
    assert sub.receive_any(0) == "plain"
    assert sub.last_origin is None
    topic.publish_array(arr, origin=Origin("arr-host", 7))
    with sub.receive_array_view(0) as view:
        assert (view == arr).all()
        assert sub.last_origin == Origin("arr-host", 7)


def test_history_replays_origins_and_losses(topic: Topic) -> None:
    topic.publish(b"m0")
    topic.publish(b"m1", origin=Origin("a", 10))
    topic.publish_loss(4, origin=Origin("a", 11))
    topic.publish(b"m3", origin=Origin("a", 15))
    late = topic.subscribe(start="history")
    assert drain(late) == [
        (b"m0", None),
        (b"m1", Origin("a", 10)),
        ("lagged", 4, 4, 3),
        (b"m3", Origin("a", 15)),
    ]
    from_seq = topic.subscribe(start=2)
    assert drain(from_seq) == [("lagged", 4, 4, 3), (b"m3", Origin("a", 15))]


def test_origin_with_async_receive(topic: Topic) -> None:
    sub = topic.subscribe()

    async def main() -> tuple[bytes, object, bytes, object]:
        task = asyncio.ensure_future(sub.receive_async(5.0))
        await asyncio.sleep(0.01)
        await topic.publish_async(b"async", origin=Origin("aio", 3))
        got = await task
        origin = sub.last_origin
        topic.publish(b"next")
        got2 = await sub.receive_async(5.0)
        return got, origin, got2, sub.last_origin

    assert asyncio.run(main()) == (b"async", Origin("aio", 3), b"next", None)


# ---- loss records -------------------------------------------------------------------


def test_a_loss_record_gives_one_lagged_with_the_exact_count(topic: Topic) -> None:
    sub = topic.subscribe()
    topic.publish(msg(0))
    assert topic.publish_loss(7) == 1  # takes a sequence number like a message
    topic.publish(msg(8))
    assert sub.receive_nowait() == msg(0)
    with pytest.raises(Lagged, match=r"lost upstream: 7 message\(s\) lost") as info:
        sub.receive_nowait()
    assert (info.value.missed, info.value.upstream, info.value.position) == (7, 7, 2)
    assert sub.last_origin is None  # a Lagged is not a message
    assert sub.receive_nowait() == msg(8)
    assert (sub.received, sub.missed, sub.upstream_missed) == (2, 7, 7)


def test_adjacent_loss_records_are_one_lagged(topic: Topic) -> None:
    sub = topic.subscribe()
    topic.publish_loss(3, origin=Origin("a", 1))
    topic.publish_loss(2)
    topic.publish_loss(1, origin=Origin("b", 9))
    topic.publish(b"x")
    topic.publish_loss(5)
    assert drain(sub) == [("lagged", 6, 6, 3), (b"x", None), ("lagged", 5, 5, 5)]
    assert sub.received + sub.missed == 1 + 6 + 5


def test_a_local_lap_and_the_loss_records_it_meets_are_one_exact_lagged(name: str) -> None:
    # a ring of exactly ten 8-byte messages (24 bytes each; a loss record takes 24 too)
    t = Topic.create(name, 240)
    try:
        sub = t.subscribe()
        stood_for = 0
        for i in range(30):
            if i % 7 == 3:
                t.publish_loss(100 + i)  # lost upstream
                stood_for += 100 + i
            else:
                t.publish(msg(i))
                stood_for += 1
        # lapped: the oldest ten records are held, among them loss records too
        out = drain(sub)
        lags = [x for x in out if isinstance(x, tuple) and x[0] == "lagged"]
        assert len(lags) >= 1
        first = lags[0]
        assert isinstance(first, tuple) and first[1] > first[2] > 0  # local + upstream
        assert sub.received + sub.missed == stood_for  # the reconciliation, exact
        assert sub.upstream_missed == sum(100 + i for i in range(30) if i % 7 == 3)
        s = t.statistics()
        assert (s.loss_records, s.lost_upstream) == (4, sub.upstream_missed)
        row = s.subscribers[0]
        assert (row.missed, row.upstream_missed) == (sub.missed, sub.upstream_missed)
    finally:
        t.close()


def test_a_lap_ending_at_a_loss_record_is_merged(name: str) -> None:
    t = Topic.create(name, 240)
    try:
        sub = t.subscribe()
        for i in range(10):
            t.publish(msg(i))
        t.publish_loss(50)  # drops message 0; the oldest held is now message 1
        for i in range(9):
            t.publish(msg(100 + i))  # drops 1..9: the loss record is the oldest held
        with pytest.raises(Lagged) as info:
            sub.receive_nowait()
        # ten messages overwritten here, then the loss record of 50: one Lagged
        assert (info.value.missed, info.value.upstream) == (60, 50)
        assert info.value.position == 11
        assert sub.receive_nowait() == msg(100)
    finally:
        t.close()


def test_statistics_count_origins_and_losses(topic: Topic) -> None:
    topic.publish(b"a")
    topic.publish(b"b", origin=Origin("h", 1))
    topic.publish_nowait(b"c", origin=Origin("h", 2))
    topic.publish_loss(10)
    topic.publish_loss(2, origin=Origin("h", 13))
    s = topic.statistics()
    assert s.published == 5  # loss records take sequence numbers
    assert s.origin_published == 2
    assert (s.loss_records, s.lost_upstream) == (2, 12)
    assert s.published_bytes == 3  # payloads only: no origin blocks, nothing for losses


def test_lagged_pickles_with_upstream() -> None:
    import pickle

    e = pickle.loads(pickle.dumps(Lagged(9, 4, 3)))
    assert (e.missed, e.position, e.upstream) == (9, 4, 3)
    assert "overwritten and 3 were lost upstream" in str(e)
    assert Lagged(5, 1).upstream == 0


def test_block_mode_publish_loss_waits_like_publish(name: str) -> None:
    t = Topic.create(name, 240, overflow="block")
    try:
        sub = t.subscribe()
        for i in range(10):
            t.publish(msg(i))
        with pytest.raises(mapshare.TopicFull):
            t.publish_loss(3, 0)
        with pytest.raises(mapshare.WaitTimeout):
            t.publish_loss(3, 0.01)
        assert sub.receive_nowait() == msg(0)
        assert t.publish_loss(3, 0) == 10
    finally:
        t.close()


# ---- arguments refused --------------------------------------------------------------


def test_bad_origins_and_counts_are_refused(topic: Topic) -> None:
    with pytest.raises(ValueError, match="host must be 1 to 64 bytes"):
        topic.publish(b"x", origin=Origin("", 1))
    with pytest.raises(ValueError, match="host must be 1 to 64 bytes of UTF-8, not 66"):
        topic.publish(b"x", origin=Origin("é" * 33, 1))
    topic.publish(b"x", origin=Origin("h" * 64, 1))  # exactly the limit
    with pytest.raises(ValueError, match="seq must be an int from 0"):
        topic.publish(b"x", origin=Origin("h", -1))
    with pytest.raises(ValueError, match="seq must be an int from 0"):
        topic.publish(b"x", origin=Origin("h", 2**64))
    with pytest.raises(TypeError, match=r"origin must be a mapshare\.Origin"):
        topic.publish(b"x", origin="host")  # type: ignore[arg-type]  # refused at run time
    with pytest.raises(TypeError, match="keyword-only"):
        topic.publish(b"x", None, Origin("h", 1))  # type: ignore[misc]  # refused at run time
    with pytest.raises(ValueError, match=r"missed must be from 1 to 281474976710655"):
        topic.publish_loss(0)
    with pytest.raises(ValueError, match="missed must be from 1"):
        topic.publish_loss(2**48)
    with pytest.raises(TypeError, match="missed must be an int"):
        topic.publish_loss(True)
    with pytest.raises(MessageTooLargeError, match="with an origin of 4 bytes does not fit"):
        topic.publish(bytes(topic.max_message - 16), origin=Origin("host", 0))
    # the largest payload with an origin: max_message less the block (16 + host padded)
    topic.publish(bytes(topic.max_message - 24), origin=Origin("host", 0))
    assert topic.statistics().published == 2


def test_receive_many_keeps_a_loss_record_for_the_next_call(topic: Topic) -> None:
    sub = topic.subscribe()
    for i in range(3):
        topic.publish(msg(i), origin=Origin("b", i))
    topic.publish_loss(4, origin=Origin("b", 3))
    topic.publish(msg(7))
    assert sub.receive_many(100, 0) == [msg(0), msg(1), msg(2)]
    assert sub.last_origin == Origin("b", 2)
    with pytest.raises(Lagged) as info:
        sub.receive_many(100, 0)
    assert (info.value.missed, info.value.upstream, info.value.position) == (4, 4, 4)
    assert sub.receive_many(100, 0) == [msg(7)]
    assert sub.last_origin is None


def test_a_large_message_with_an_origin_goes_without_the_gil(name: str) -> None:
    with Topic.create(name, 1 << 20) as t, t.subscribe() as sub:
        big = bytes(range(256)) * 1000  # over the 64 KiB copied with the GIL held
        t.publish(big, origin=Origin("big", 1))
        t.publish(big, 1.0, origin=Origin("big", 2))
        assert sub.receive(1.0) == big
        assert sub.last_origin == Origin("big", 1)
        with sub.receive_view(1.0) as v:
            assert bytes(v) == big
            assert sub.last_origin == Origin("big", 2)
