"""The topic's C core through its _core types, in one process: sequence numbers, lapping
with exact loss counts, the three start modes, views, loans, batches, block mode, the
subscriber table, statistics, and garbage written into the header, the table and the ring
(LayoutError, never a crash or a hang).  Cross-process and crash behaviour is tested with
real processes in tests/multiprocess/."""

from __future__ import annotations

import os
import random
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import mapshare
from mapshare import _core, _naming
from support import poke

KIND_AREA = 1024
# Tests that write garbage through the file system (/dev/shm): Windows has no path to
# its named mappings.
POKES = pytest.mark.posix_only("writes into the object through /dev/shm")
OFF_TAIL, OFF_NEXT_SEQ, OFF_INTENT, OFF_HEAD, OFF_HEAD_SEQ, OFF_HEAD_GEN = 64, 72, 80, 88, 96, 104
# loss records (issue 14): totals and what head stands for (line 2), origins published
OFF_LOST, OFF_LOSSES, OFF_HEAD_LOST, OFF_HEAD_LOSSES = 136, 144, 152, 160
REC_ORIGIN, REC_LOSS = 0x2, 0x4  # record flags (csrc/layout.h MS_REC_ORIGIN, MS_REC_LOSS)
OVERWRITE, BLOCK = _core.TOPIC_OVERWRITE, _core.TOPIC_BLOCK


class T:
    """A topic made with _core directly, and everything to take it apart again."""

    def __init__(self, name: str, capacity: int, history: int = 0, overflow: int = OVERWRITE,
                 max_subscribers: int = 8) -> None:
        self.name = name
        self.osname = _naming.os_name(name)
        size = max_subscribers * _core.TOPIC_SUB_SIZE + capacity
        self.seg = _core.create(self.osname, name, _core.KIND_TOPIC, size,
                                init=(capacity, history, overflow, max_subscribers))
        self.topic = _core.Topic(self.seg)
        self.subs: list[_core.Subscriber] = []
        self.ring = _core.HEADER_SIZE + max_subscribers * _core.TOPIC_SUB_SIZE

    def sub(self, mode: int = _core.SUB_LIVE, seq: int = 0) -> _core.Subscriber:
        s = _core.Subscriber(self.topic, mode, seq)
        self.subs.append(s)
        return s

    def poke64(self, field: int, value: int) -> None:
        poke(self.name, KIND_AREA + field, struct.pack("<Q", value % 2**64))

    def close(self) -> None:
        for s in self.subs:
            s.close()
        self.topic._detach()
        self.seg.close()
        _core.unlink(self.osname)


@pytest.fixture
def make(name: str) -> Iterator[Any]:
    made: list[T] = []

    def factory(capacity: int, **kw: Any) -> T:
        t = T(name + str(len(made)) if made else name, capacity, **kw)
        made.append(t)
        return t

    yield factory
    for t in made:
        t.close()


def drain(s: _core.Subscriber) -> tuple[list[bytes], list[tuple[int, int]]]:
    """Everything there is now: the messages, and the (missed, position) of each Lagged."""
    got: list[bytes] = []
    lags: list[tuple[int, int]] = []
    while True:
        try:
            got.append(s.receive_nowait())
        except mapshare.TopicEmpty:
            return got, lags
        except mapshare.Lagged as e:
            lags.append((e.missed, e.position))


# ---- publishing and receiving ------------------------------------------------------------

def test_sequence_numbers_are_dense_from_zero_and_a_subscriber_made_first_sees_message_0(
        make: Any) -> None:
    t = make(4096)
    s = t.sub()
    assert s.position == 0
    assert [t.topic.publish(b"m%d" % i) for i in range(5)] == [0, 1, 2, 3, 4]
    assert [s.receive(timeout=1) for _ in range(5)] == [b"m%d" % i for i in range(5)]
    assert s.position == 5 and s.received == 5 and s.missed == 0
    with pytest.raises(mapshare.TopicEmpty):
        s.receive_nowait()
    with pytest.raises(mapshare.WaitTimeout):
        s.receive(timeout=0.01)


def test_live_starts_at_the_next_message(make: Any) -> None:
    t = make(4096)
    t.topic.publish(b"before")
    s = t.sub()
    assert s.position == 1
    t.topic.publish(b"after")
    assert s.receive_nowait() == b"after"


def test_every_subscriber_sees_every_message(make: Any) -> None:
    t = make(8192)
    subs = [t.sub() for _ in range(5)]
    msgs = [os.urandom(random.randrange(0, 200)) for _ in range(40)]
    for m in msgs:
        t.topic.publish(m)
    for s in subs:
        assert drain(s) == (msgs, [])


def test_records_pad_at_the_end_of_the_ring_and_never_wrap(make: Any) -> None:
    """Varied sizes over many laps with a subscriber that keeps up: all arrive intact."""
    t = make(1024)
    s = t.sub()
    rnd = random.Random(7)
    for i in range(3000):
        m = bytes([i % 251]) * rnd.randrange(0, t.topic.max_message + 1)
        assert t.topic.publish(m) == i
        assert s.receive_nowait() == m
    assert s.received == 3000 and s.missed == 0


def test_max_message_is_half_the_ring_less_a_header(make: Any) -> None:
    t = make(1024)
    assert t.topic.max_message == 512 - 16
    s = t.sub()
    t.topic.publish(b"x" * t.topic.max_message)
    with pytest.raises(mapshare.MessageTooLargeError):
        t.topic.publish(b"x" * (t.topic.max_message + 1))
    assert s.receive_nowait() == b"x" * t.topic.max_message


def test_large_messages_copy_without_the_gil(make: Any) -> None:
    t = make(1 << 20)
    s = t.sub()
    m = os.urandom(300_000)
    t.topic.publish(m)
    assert s.receive(timeout=1) == m


def test_receive_wakes_when_a_message_is_published(make: Any) -> None:
    t = make(4096)
    s = t.sub()
    threading.Timer(0.05, t.topic.publish, args=(b"late",)).start()
    assert s.receive(timeout=5) == b"late"


# ---- lapping ------------------------------------------------------------------------------

def test_a_lapped_subscriber_gets_one_lagged_with_the_exact_count(make: Any) -> None:
    t = make(1024)
    s = t.sub()
    n = 500
    for i in range(n):
        t.topic.publish(struct.pack("<Q", i) + b"." * 24)
    with pytest.raises(mapshare.Lagged) as info:
        s.receive_nowait()
    missed, position = info.value.missed, info.value.position
    assert missed > 0 and position == missed and s.position == position
    got, lags = drain(s)
    assert lags == []  # exactly once
    seqs = [struct.unpack("<Q", m[:8])[0] for m in got]
    assert seqs == list(range(position, n))  # the newest contiguous block
    assert s.received + s.missed == n


def test_lagged_pickles_with_its_numbers() -> None:
    import pickle
    e = pickle.loads(pickle.dumps(mapshare.Lagged(5, 12)))
    assert (e.missed, e.position) == (5, 12) and "5 message" in str(e)


def test_loss_is_counted_under_constant_overwriting(make: Any) -> None:
    """received + sum(missed) == published, with a reader that reads now and then."""
    t = make(2048)
    s = t.sub()
    rnd = random.Random(3)
    published = 0
    missed = 0
    last = -1
    for _ in range(200):
        for _ in range(rnd.randrange(0, 120)):
            t.topic.publish(struct.pack("<Q", published) * rnd.randrange(1, 12))
            published += 1
        for _ in range(rnd.randrange(0, 60)):
            try:
                m = s.receive_nowait()
            except mapshare.TopicEmpty:
                break
            except mapshare.Lagged as e:
                missed += e.missed
                assert e.position == last + 1 + e.missed
                last = e.position - 1
                continue
            seq = struct.unpack("<Q", m[:8])[0]
            assert seq == last + 1 and m == struct.pack("<Q", seq) * (len(m) // 8)
            last = seq
    assert missed == s.missed
    _, lags = drain(s)
    assert lags == [] or sum(m for m, _ in lags) == s.missed - missed
    assert s.received + s.missed == published


# ---- start modes --------------------------------------------------------------------------

def test_history_replays_the_newest_messages_then_goes_live(make: Any) -> None:
    t = make(4096, history=3)
    for i in range(10):
        t.topic.publish(b"%d" % i)
    h = t.sub(_core.SUB_HISTORY)
    assert h.position == 7
    t.topic.publish(b"10")
    assert drain(h) == ([b"7", b"8", b"9", b"10"], [])


def test_history_is_what_is_held_when_less(make: Any) -> None:
    t = make(4096, history=100)
    t.topic.publish(b"a")
    t.topic.publish(b"b")
    assert drain(t.sub(_core.SUB_HISTORY)) == ([b"a", b"b"], [])


def test_history_smaller_than_asked_when_large_messages_push_it_out(make: Any) -> None:
    t = make(1024, history=8)
    for i in range(20):
        t.topic.publish(bytes([i]) * 300)
    got, lags = drain(t.sub(_core.SUB_HISTORY))
    held = t.topic._statistics()["held"]
    assert lags == [] and 1 <= len(got) == held < 8
    assert got[-1] == bytes([19]) * 300


def test_start_at_a_held_sequence_number(make: Any) -> None:
    t = make(4096)
    for i in range(10):
        t.topic.publish(b"%d" % i)
    s = t.sub(_core.SUB_SEQ, 4)
    assert s.position == 4
    assert drain(s) == ([b"%d" % i for i in range(4, 10)], [])


def test_start_before_the_oldest_held_reports_the_loss_first(make: Any) -> None:
    t = make(1024)
    for i in range(300):
        t.topic.publish(struct.pack("<Q", i))
    oldest = t.topic._statistics()["oldest_held"]
    assert oldest > 10
    s = t.sub(_core.SUB_SEQ, 10)
    with pytest.raises(mapshare.Lagged) as info:
        s.receive_nowait()
    assert (info.value.missed, info.value.position) == (oldest - 10, oldest)
    got, lags = drain(s)
    assert lags == [] and [struct.unpack("<Q", m)[0] for m in got] == list(range(oldest, 300))
    assert s.missed + s.received == 300 - 10


def test_start_beyond_the_newest_skips_what_comes_before(make: Any) -> None:
    t = make(4096)
    t.topic.publish(b"0")
    s = t.sub(_core.SUB_SEQ, 5)
    assert s.position == 5
    for i in range(1, 8):
        t.topic.publish(b"%d" % i)
    assert drain(s) == ([b"5", b"6", b"7"], [])
    assert s.missed == 0 and s.received == 3


# ---- views and loans ----------------------------------------------------------------------

def test_a_view_reads_in_place_and_is_consumed_on_exit(make: Any) -> None:
    t = make(4096)
    s = t.sub()
    t.topic.publish(b"hello")
    t.topic.publish(b"world")
    w = s.receive_view(timeout=1)
    with w as v:
        assert bytes(v) == b"hello" and v.readonly
        assert s._view_kind() == 0
        with pytest.raises(mapshare.WindowOpenError):
            s.receive_nowait()
    assert s.receive_nowait() == b"world"


def test_a_view_overwritten_while_open_raises_lagged_on_exit(make: Any) -> None:
    t = make(1024)
    s = t.sub()
    t.topic.publish(b"first")
    with pytest.raises(mapshare.Lagged) as info, s.receive_view() as v:
        assert bytes(v) == b"first"
        for _ in range(100):
            t.topic.publish(b"x" * 40)
    assert info.value.missed >= 1 and s.position == info.value.position
    _, lags = drain(s)
    assert lags == [] and s.received + s.missed == 101


def test_a_loan_publishes_on_exit_and_commit_returns_the_seq(make: Any) -> None:
    t = make(4096)
    s = t.sub()
    with t.topic.loan(8) as buf:
        buf[:] = b"12345678"
    assert s.receive_nowait() == b"12345678"
    w = t.topic.loan(100)
    buf = memoryview(w)
    buf[:2] = b"xy"
    buf.release()
    assert t.topic._commit(w, 2) == 1  # only the bytes used are published
    assert t.topic.publish(b"after") == 2
    assert drain(s) == ([b"xy", b"after"], [])


def test_an_aborted_loan_publishes_nothing(make: Any) -> None:
    t = make(4096)
    s = t.sub()
    with pytest.raises(RuntimeError), t.topic.loan(10) as buf:
        buf[:] = b"0123456789"
        raise RuntimeError
    assert t.topic.publish(b"next") == 0
    assert drain(s) == ([b"next"], [])


def test_publish_while_this_thread_holds_a_loan_is_refused(make: Any) -> None:
    t = make(4096)
    w = t.topic.loan(4)
    with pytest.raises(mapshare.WindowOpenError):
        t.topic.publish(b"x")
    t.topic._abort(w)
    assert t.topic.publish(b"x") == 0


# ---- batches ------------------------------------------------------------------------------

def test_publish_many_returns_the_last_seq_and_receive_many_takes_what_is_there(
        make: Any) -> None:
    t = make(4096)
    s = t.sub()
    assert t.topic.publish_many([]) == -1
    assert t.topic.publish_many([b"a", bytearray(b"b"), memoryview(b"c")]) == 2
    assert s.receive_many(2) == [b"a", b"b"]
    assert s.receive_many(10) == [b"c"]
    with pytest.raises(mapshare.WaitTimeout):
        s.receive_many(10, timeout=0.01)


def test_receive_many_keeps_a_lagged_for_the_next_call(make: Any) -> None:
    t = make(1024)
    s = t.sub()
    t.topic.publish(b"0")
    first = s.receive_many(1)
    assert first == [b"0"]
    for _ in range(200):
        t.topic.publish(b"y" * 24)
    with pytest.raises(mapshare.Lagged):
        s.receive_many(1000)
    got = s.receive_many(1000)
    assert len(got) + 1 + s.missed == 201


# ---- block mode ---------------------------------------------------------------------------

def test_block_mode_waits_for_the_slowest_live_subscriber(make: Any) -> None:
    t = make(1024, overflow=BLOCK)
    s = t.sub()
    n = 0
    with pytest.raises(mapshare.TopicFull):
        while True:
            t.topic.publish_nowait(b"z" * 40)
            n += 1
    assert n > 10
    with pytest.raises(mapshare.WaitTimeout):
        t.topic.publish(b"z" * 40, timeout=0.05)
    assert s.receive_nowait() == b"z" * 40
    t.topic.publish_nowait(b"z" * 40)  # room again
    got, lags = drain(s)
    assert lags == [] and len(got) == n  # nothing lost


def test_block_mode_publisher_sleeps_until_a_subscriber_reads(make: Any) -> None:
    t = make(1024, overflow=BLOCK)
    s = t.sub()
    while True:
        try:
            t.topic.publish_nowait(b"q" * 40)
        except mapshare.TopicFull:
            break
    threading.Timer(0.05, s.receive_many, args=(100,)).start()
    assert t.topic.publish(b"last", timeout=5) >= 0


def test_closing_a_subscriber_releases_a_blocked_publisher_at_once(make: Any) -> None:
    t = make(1024, overflow=BLOCK)
    s = t.sub()
    while True:
        try:
            t.topic.publish_nowait(b"q" * 40)
        except mapshare.TopicFull:
            break
    threading.Timer(0.05, s.close).start()
    start = time.monotonic()
    t.topic.publish(b"last", timeout=5)
    assert time.monotonic() - start < 4  # a bound on a hang, not a speed assertion
    assert s.closed


def test_overwrite_mode_never_waits_for_subscribers(make: Any) -> None:
    t = make(1024)
    t.sub()
    for _ in range(1000):
        t.topic.publish_nowait(b"w" * 40)


# ---- subscriber table and statistics ------------------------------------------------------

def test_the_subscriber_table_has_a_limit_and_closing_frees_entries(make: Any) -> None:
    t = make(1024, max_subscribers=2)
    a = t.sub()
    t.sub()
    with pytest.raises(mapshare.SubscriberLimitError):
        _core.Subscriber(t.topic, _core.SUB_LIVE, 0)
    a.close()
    t.sub()
    with pytest.raises(ValueError, match="closed"):
        a.receive_nowait()


def test_statistics_have_one_row_per_subscriber(make: Any) -> None:
    t = make(1024, history=2)
    fast, slow = t.sub(), t.sub()
    for _ in range(300):
        t.topic.publish(b"s" * 24)
        fast.receive_nowait()
    with pytest.raises(mapshare.Lagged):
        slow.receive_nowait()
    st = t.topic._statistics()
    assert st["published"] == 300 and st["subscriber_count"] == 2
    assert st["capacity"] == 1024 and st["history"] == 2 and st["overflow"] == OVERWRITE
    assert st["oldest_held"] + st["held"] == 300
    rows = {r["position"]: r for r in st["subscribers"]}
    assert rows[300]["received"] == 300 and rows[300]["lag"] == 0 and rows[300]["alive"]
    r = rows[slow.position]
    assert r["missed"] == slow.missed and r["lag"] == 300 - slow.position
    assert r["pid"] == os.getpid()


def test_invalid_parameters_are_refused(name: str) -> None:
    osn = _naming.os_name(name)
    for init in [(1004, 0, 1, 8), (64, 0, 1, 8), (4096, 0, 3, 8), (4096, 0, 1, 0),
                 (4096, 1000, 1, 8)]:
        with pytest.raises(mapshare.InvalidArgumentError):
            _core.create(osn, name, _core.KIND_TOPIC, 8 * 64 + 4096, init=init)
    with pytest.raises(mapshare.InvalidArgumentError):  # the user area is too small
        _core.create(osn, name, _core.KIND_TOPIC, 4096, init=(4096, 0, 1, 8))


def test_a_subscriber_keeps_its_topic_alive_and_refuses_after_detach(make: Any) -> None:
    t = make(1024)
    s = t.sub()
    t.topic._detach()
    with pytest.raises(ValueError, match="closed"):
        s.receive_nowait()
    with pytest.raises(ValueError, match="closed"):
        t.topic.publish(b"x")


def test_another_thread_cannot_use_a_subscriber_that_is_waiting(make: Any) -> None:
    t = make(1024)
    s = t.sub()
    def wait() -> None:
        with pytest.raises(mapshare.WaitTimeout):
            s.receive(timeout=0.5)

    th = threading.Thread(target=wait)
    th.start()
    time.sleep(0.1)
    with pytest.raises(RuntimeError, match="another thread"):
        s.receive_nowait()
    th.join()


# ---- garbage ------------------------------------------------------------------------------

@POKES
@pytest.mark.parametrize("field,value", [
    (OFF_TAIL, 2**63 + 8), (OFF_TAIL, 12), (OFF_TAIL, 2**64 - 8), (OFF_INTENT, 1 << 40),
    (OFF_HEAD, 2**63), (OFF_HEAD_SEQ, 2**64 - 1), (OFF_NEXT_SEQ, 0),
])
def test_garbage_in_the_header_is_a_layout_error(make: Any, field: int, value: int) -> None:
    t = make(1024)
    s = t.sub()
    for _ in range(40):
        t.topic.publish(b"g" * 24)
    t.poke64(field, value)
    with pytest.raises((mapshare.LayoutError, mapshare.Lagged, mapshare.TopicEmpty)):
        for _ in range(100):
            s.receive_nowait()
    with pytest.raises(mapshare.LayoutError):
        for _ in range(100):
            t.topic.publish(b"g" * 24)
            t.sub(_core.SUB_HISTORY).close()


@POKES
def test_a_corrupt_record_header_is_a_layout_error(make: Any) -> None:
    t = make(1024)
    s = t.sub()
    t.topic.publish(b"ok")
    t.topic.publish(b"next")
    assert s.receive_nowait() == b"ok"
    # the second record starts at 16 + 8: give it an impossible length, then a wrong seq
    poke(t.name, t.ring + 24, struct.pack("<I", 0xFFFFFF00))
    with pytest.raises(mapshare.LayoutError):
        s.receive_nowait()
    poke(t.name, t.ring + 24, struct.pack("<IIQ", 4, 0, 77))
    with pytest.raises(mapshare.LayoutError):
        s.receive_nowait()
    poke(t.name, t.ring + 24, struct.pack("<IIQ", 4, 1 << 20, 1))  # unknown flag bits
    with pytest.raises(mapshare.LayoutError):
        s.receive_nowait()
    poke(t.name, t.ring + 24, struct.pack("<IIQ", 4, 0, 1))
    assert s.receive_nowait() == b"next"


@POKES
@pytest.mark.parametrize("body", [
    struct.pack("<QII", 7, 0, 0),          # an empty host
    struct.pack("<QII", 7, 65, 0),         # a host over 64 bytes
    struct.pack("<QII", 7, 2**32 - 1, 0),  # a host length far past the record
    struct.pack("<QII", 7, 17, 0),         # a block (16 + 24) longer than the body (32)
])
def test_a_forged_origin_length_is_a_layout_error(make: Any, body: bytes) -> None:
    t = make(1024)
    s = t.sub()
    h = t.sub(_core.SUB_SEQ, 0)
    t.topic.publish(b"12345678", origin=("abc", 7))  # header 16, body: block 24 + 8
    poke(t.name, t.ring + 16, body)
    with pytest.raises(mapshare.LayoutError):
        s.receive_nowait()
    with pytest.raises(mapshare.LayoutError), h.receive_view(0):
        pass
    with pytest.raises(mapshare.LayoutError):
        t.sub(_core.SUB_HISTORY)
    assert s.position == 0 and s.received == 0


@POKES
@pytest.mark.parametrize("length,flags,count", [
    (8, REC_LOSS, 0),                  # a loss of nothing
    (8, REC_LOSS, 2**48),              # beyond the limit
    (8, REC_LOSS, 2**64 - 1),
    (16, REC_LOSS, 3),                 # the wrong length for a loss record
    (8, REC_LOSS | (1 << 8), 3),       # a loss record with a kind
    (8, REC_LOSS | 0x10, 3),           # an unknown bit
])
def test_a_forged_loss_count_is_a_layout_error(
    make: Any, length: int, flags: int, count: int
) -> None:
    t = make(1024)
    s = t.sub()
    t.topic.publish_loss(5)
    poke(t.name, t.ring, struct.pack("<IIQQ", length, flags, 0, count))
    with pytest.raises(mapshare.LayoutError):
        s.receive_nowait()
    assert s.missed == 0
    # the publisher's drop walk meets it too: LayoutError, not a wrong head
    with pytest.raises(mapshare.LayoutError):
        for _ in range(100):
            t.topic.publish(b"p" * 40)


@POKES
@pytest.mark.parametrize("field,value", [
    (OFF_HEAD_LOSSES, 1000),  # more loss records dropped than sequence numbers
    (OFF_HEAD_LOST, 5),       # messages lost upstream with no loss record
    (OFF_HEAD_LOST, 2**64 - 1),
])
def test_forged_loss_totals_give_a_layout_error_or_a_clean_lagged(
    make: Any, field: int, value: int
) -> None:
    t = make(1024)
    s = t.sub()
    for _ in range(40):
        t.topic.publish(b"g" * 24)
    t.poke64(field, value)
    with pytest.raises(mapshare.LayoutError):
        s.receive_nowait()
    t.poke64(field, 0)
    with pytest.raises(mapshare.Lagged) as info:
        s.receive_nowait()
    assert info.value.upstream == 0


@POKES
def test_random_garbage_never_crashes_or_hangs(make: Any) -> None:
    """Scribble random bytes over the control lines, the table and the ring between
    calls: every call either works or raises a mapshare error, and returns."""
    rnd = random.Random(11)
    t = make(1024, history=4)
    subs = [t.sub(), t.sub(_core.SUB_HISTORY)]
    table = _core.HEADER_SIZE
    for round_ in range(400):
        for _ in range(rnd.randrange(1, 4)):
            what = rnd.randrange(4)
            if what == 0:
                off = KIND_AREA + 64 + rnd.randrange(0, 48) // 8 * 8
                val = rnd.choice([rnd.randrange(2**64), rnd.randrange(4096),
                                  rnd.randrange(2**20) * 8])
                poke(t.name, off, struct.pack("<Q", val))
            elif what == 1:
                poke(t.name, t.ring + rnd.randrange(0, 1024 - 16),
                     bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 24))))
            elif what == 2:
                poke(t.name, table + rnd.randrange(0, 8 * 64 - 8),
                     struct.pack("<Q", rnd.randrange(2**64)))
            else:
                # a record header, maybe claiming an origin block or a loss count,
                # with a forged host length / count after it
                poke(t.name, t.ring + rnd.randrange(0, 1024 - 40) // 8 * 8,
                     struct.pack("<IIQQII", rnd.randrange(600),
                                 rnd.choice([0, 1, REC_ORIGIN, REC_LOSS, REC_ORIGIN | REC_LOSS,
                                             REC_ORIGIN | 0x100]),
                                 rnd.randrange(64), rnd.choice([0, 1, 2**48, 2**64 - 1]),
                                 rnd.choice([0, 1, 64, 65, 2**32 - 1]), 0))
            if rnd.randrange(8) == 0:
                off = rnd.choice([OFF_LOST, OFF_LOSSES, OFF_HEAD_LOST, OFF_HEAD_LOSSES])
                t.poke64(off, rnd.choice([0, 1, rnd.randrange(2**64)]))
        for _ in range(5):
            op = rnd.randrange(8)
            try:
                if op == 0:
                    t.topic.publish(os.urandom(rnd.randrange(0, 200)), timeout=0)
                elif op == 6:
                    t.topic.publish(os.urandom(rnd.randrange(0, 100)), timeout=0,
                                    origin=("h" * rnd.randrange(1, 65), rnd.randrange(2**64)))
                elif op == 7:
                    t.topic.publish_loss(rnd.randrange(1, 2**48), 0,
                                         origin=rnd.choice([None, ("host", 3)]))
                elif op == 1:
                    rnd.choice(subs).receive_nowait()
                elif op == 2:
                    with rnd.choice(subs).receive_view(timeout=0) as v:
                        bytes(v)
                elif op == 3:
                    t.topic.publish_many([b"m" * rnd.randrange(100) for _ in range(5)],
                                         timeout=0)
                elif op == 4:
                    t.sub(rnd.randrange(3), rnd.randrange(100)).close()
                else:
                    t.topic._statistics()
            except (mapshare.MapshareError, ValueError):
                pass
        if round_ % 50 == 49:
            # repair, so that the next rounds test the paths of a working topic too
            for field in (OFF_TAIL, OFF_NEXT_SEQ, OFF_INTENT, OFF_HEAD, OFF_HEAD_SEQ,
                          OFF_HEAD_GEN, OFF_LOST, OFF_LOSSES, OFF_HEAD_LOST, OFF_HEAD_LOSSES):
                t.poke64(field, 0)
            for s in subs:
                s.close()
            subs = [t.sub(), t.sub(_core.SUB_HISTORY)]


@POKES
def test_a_corrupt_intent_is_a_layout_error_not_a_loop(make: Any) -> None:
    """An intent far above every record says the subscriber was lapped, but head has not
    moved past it: a jump to where it already is would read again forever (found by
    fuzz/fuzz_topic.c)."""
    t = make(1024)
    s = t.sub()
    t.topic.publish(b"a" * 24)
    t.poke64(OFF_INTENT, 1 << 30)
    with pytest.raises(mapshare.LayoutError):
        s.receive(timeout=2)


# ---- waiting ------------------------------------------------------------------------------

def test_wait_readable_says_whether_a_message_came(make: Any) -> None:
    t = make(1024)
    s = t.sub()
    assert s._wait_readable(0.01) is False
    threading.Timer(0.05, t.topic.publish, args=(b"m",)).start()
    assert s._wait_readable(5) is True
    assert s.receive_nowait() == b"m"


def test_abort_waits_ends_a_wait_at_once(make: Any) -> None:
    t = make(1024)
    s = t.sub()
    threading.Timer(0.05, s._abort_waits).start()
    start = time.monotonic()
    assert s._wait_readable(10) is True
    assert time.monotonic() - start < 5  # bounds a hang only


def test_a_read_only_mapping_gives_statistics_and_refuses_writes(make: Any) -> None:
    """What `mapshare info` does: statistics through a read-only mapping, which writes
    nothing; publishing and subscribing need read-write access."""
    t = make(1024)
    s = t.sub()
    t.topic.publish(b"x")
    ro = _core.open(t.osname, None, _core.KIND_TOPIC, _core.ACCESS_READ)
    try:
        topic = _core.Topic(ro)
        st = topic._statistics()
        assert st["published"] == 1 and [r["position"] for r in st["subscribers"]] == [0]
        assert topic.capacity == 1024
        with pytest.raises(mapshare.PermissionDeniedError, match="read-write"):
            topic.publish(b"y")
        with pytest.raises(mapshare.PermissionDeniedError):
            topic.publish_many([b"y"])
        with pytest.raises(mapshare.PermissionDeniedError):
            topic.loan(4)
        with pytest.raises(mapshare.PermissionDeniedError):
            _core.Subscriber(topic, _core.SUB_LIVE, 0)
        topic._detach()
    finally:
        ro.close(detach=False)
    assert s.receive_nowait() == b"x"
