"""Channels in one process: ring geometry at the wrap-around point, full and empty with
timeouts, end of stream, loans and views, statistics and asyncio.

Positions are checked against the ring itself (``ch.segment.read`` of the user area,
which is the ring) and against ``statistics().queued_bytes`` (tail - head)."""

from __future__ import annotations

import asyncio
import queue
import re
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import mapshare
from mapshare import Channel

REC = 8  # record header: u32 length, u32 flags
PAD_FLAG = 1


def rsize(n: int) -> int:
    """Bytes of ring a message of n bytes takes."""
    return REC + ((n + 7) & ~7)


@pytest.fixture
def ch(name: str) -> Iterator[Channel]:
    c = Channel.create(name, 256)
    try:
        yield c
    finally:
        c.close()
        c.unlink()


def record_at(c: Channel, off: int) -> tuple[int, int]:
    length, flags = struct.unpack("<II", c.segment.read(8, offset=off))
    return length, flags


class Tracked:
    """A channel wrapper that tracks the tail position (every record and pad it adds)
    so tests can place messages at exact ring offsets."""

    def __init__(self, c: Channel) -> None:
        self.c = c
        self.tail = 0

    @property
    def off(self) -> int:
        return self.tail % self.c.capacity

    def send(self, data: bytes, **kw: float) -> None:
        n = rsize(len(data))
        if self.off + n > self.c.capacity:
            self.tail += self.c.capacity - self.off  # a padding record
        if "timeout" in kw:
            self.c.send(data, timeout=kw["timeout"])
        else:
            self.c.send_nowait(data)
        self.tail += n

    def move_to(self, off: int) -> None:
        """Empty channel: send and receive small messages until the tail is at ``off``."""
        assert self.c.statistics().queued_bytes == 0
        while self.off != off:
            step = (off - self.off) % self.c.capacity
            n = min(step, self.c.capacity - self.off) - REC
            if n < 0:
                n = 0
            self.send(b"m" * min(n, 64))
            self.c.receive(timeout=5)
        assert self.c.statistics().queued_bytes == 0


# ---- geometry at the wrap-around point -----------------------------------------------


def test_zero_byte_messages_fill_the_ring_with_headers(ch: Channel) -> None:
    n = ch.capacity // REC
    for _ in range(n):
        ch.send_nowait(b"")
    assert ch.statistics().queued_bytes == ch.capacity
    assert ch.statistics().queued_messages == n
    with pytest.raises(mapshare.ChannelFull):
        ch.send_nowait(b"")
    assert [ch.receive_nowait() for _ in range(n)] == [b""] * n
    with pytest.raises(mapshare.ChannelEmpty):
        ch.receive_nowait()
    # and after a full lap they still work, across the wrap
    for _ in range(3):
        ch.send_nowait(b"")
        assert ch.receive_nowait() == b""


def test_record_ending_exactly_at_the_end_needs_no_padding(ch: Channel) -> None:
    t = Tracked(ch)
    t.move_to(120)
    exact = bytes(range(128))  # 8 + 128 = 136 = 256 - 120: ends at the ring's end
    t.send(exact)
    assert ch.statistics().queued_bytes == 136  # no pad record
    assert record_at(ch, 120) == (128, 0)
    after = b"first at offset zero"
    t.send(after)
    assert record_at(ch, 0) == (len(after), 0)  # the next record starts at offset 0
    assert ch.statistics().queued_bytes == 136 + rsize(len(after))
    assert ch.receive_nowait() == exact
    assert ch.receive_nowait() == after
    assert ch.statistics().queued_bytes == 0


def test_record_that_does_not_fit_before_the_end_gets_a_padding_record(ch: Channel) -> None:
    t = Tracked(ch)
    t.move_to(120)
    a = b"A" * 64  # 72 bytes at 120..192
    b = b"B" * 80  # 88 bytes: does not fit in 192..256, so a 64-byte pad, then 0..88
    t.send(a)
    t.send(b)
    assert record_at(ch, 192) == (64, PAD_FLAG)
    assert record_at(ch, 0) == (80, 0)
    assert ch.statistics().queued_bytes == 72 + 64 + 88
    assert ch.statistics().queued_messages == 2
    assert ch.receive_nowait() == a
    assert ch.receive_nowait() == b  # the pad is skipped, never delivered
    with pytest.raises(mapshare.ChannelEmpty):
        ch.receive_nowait()
    assert ch.statistics().queued_bytes == 0


def test_smallest_padding_record_is_a_bare_header(ch: Channel) -> None:
    t = Tracked(ch)
    t.move_to(240)
    t.send(b"")  # 240..248
    t.send(b"x")  # 16 bytes, 8 left before the end: an 8-byte pad, then 0..16
    assert record_at(ch, 248) == (8, PAD_FLAG)
    assert ch.receive_nowait() == b""
    assert ch.receive_nowait() == b"x"


@pytest.mark.parametrize("offset", [0, 8, 120, 128, 248])
def test_max_message_into_an_empty_ring_at_any_offset_without_waiting(
    ch: Channel, offset: int
) -> None:
    """An empty channel takes a message of max_message bytes at once wherever its
    head is, even with no receiver around to skip the padding record."""
    t = Tracked(ch)
    t.move_to(offset)
    big = bytes((i * 7) % 251 for i in range(ch.max_message))
    ch.send_nowait(big)
    assert ch.statistics().queued_messages == 1
    assert ch.receive_nowait() == big
    # and the ring is usable afterwards, from any offset
    ch.send_nowait(b"after")
    assert ch.receive_nowait() == b"after"


@pytest.mark.parametrize("offset", [8, 136, 248])
def test_max_message_at_an_offset_with_a_receiver_waiting(ch: Channel, offset: int) -> None:
    t = Tracked(ch)
    t.move_to(offset)
    big = bytes(range(248))
    got: list[bytes] = []
    th = threading.Thread(target=lambda: got.append(ch.receive(timeout=30)))
    th.start()
    try:
        ch.send(big, timeout=30)
    finally:
        th.join(60)
    assert got == [big]


@pytest.mark.parametrize("extra", [1, 7, 8, 9, 1000])
def test_message_larger_than_max_message_fails_at_once(ch: Channel, extra: int) -> None:
    n = ch.max_message + extra
    calls: list[Callable[[], object]] = [
        lambda: ch.send(b"x" * n),  # timeout=None: must not wait for room
        lambda: ch.send_nowait(b"x" * n),
        lambda: ch.send(b"x" * n, timeout=30),
    ]
    for call in calls:
        t0 = time.monotonic()
        with pytest.raises(
            mapshare.MessageTooLargeError, match="larger than the channel can ever hold"
        ):
            call()
        assert time.monotonic() - t0 < 10  # bound a hang only
    with pytest.raises(
        mapshare.MessageTooLargeError, match="larger than the channel can ever hold"
    ), ch.loan(n):
        pass
    assert issubclass(mapshare.MessageTooLargeError, ValueError)
    assert ch.statistics().sent_messages == 0


def test_message_of_capacity_fails_even_on_a_busy_ring(ch: Channel) -> None:
    ch.send_nowait(b"q" * 200)
    with pytest.raises(
        mapshare.MessageTooLargeError, match="larger than the channel can ever hold"
    ):
        ch.send(b"x" * ch.capacity)  # no wait for the queued message to leave
    assert ch.receive_nowait() == b"q" * 200


def test_capacity_and_max_message() -> None:
    with pytest.raises(ValueError, match=r"capacity must be an int >= 64 bytes, not 32"):
        Channel.create("never-made", 32)


def test_capacity_is_rounded_to_eight(name: str) -> None:
    with Channel.create(name, 1001) as c:
        assert c.capacity == 1008
        assert c.max_message == 1000
        c.unlink()


@pytest.mark.slow
def test_channel_over_4_gib_limits_messages_to_what_a_record_length_holds(name: str) -> None:
    """A record's length is a uint32: in a ring over 4 GiB a larger message must be
    refused, not sent with its length truncated (it used to arrive as 8 bytes, followed
    by 4 GiB of garbage read as records).  Needs 4 GiB of /dev/shm for about a second."""
    with Channel.create(name, (1 << 32) + 65536) as c:
        try:
            assert c.max_message <= 0xFFFFFFFF
            with pytest.raises(
                mapshare.MessageTooLargeError, match="larger than the channel can ever hold"
            ), c.loan((1 << 32) + 8) as buf:
                buf[:8] = b"ABCDEFGH"
            c.send(b"next")
            assert c.receive_nowait() == b"next"
            assert c.statistics().queued_bytes == 0
        finally:
            c.unlink()


def test_open_refuses_what_is_not_a_channel(names: Any) -> None:
    seg_name = names()
    with mapshare.Segment.create(seg_name, 4096) as seg:
        with pytest.raises(
            mapshare.LayoutError, match=f"'{re.escape(seg_name)}' is a segment, not a channel"
        ):
            Channel.open(seg_name)
        seg.unlink()
    ch_name = names()
    with Channel.create(ch_name, 4096) as c:
        with pytest.raises(
            mapshare.LayoutError,
            match="is a channel of 4096 bytes; asked for a channel of 8192 bytes",
        ):
            Channel.open_or_create(ch_name, 8192)
        with Channel.open_or_create(ch_name, 4096) as same:
            same.send(b"hi")
        assert c.receive_nowait() == b"hi"
        with pytest.raises(mapshare.SegmentExistsError, match=re.escape(ch_name)):
            Channel.create(ch_name, 4096)
        c.unlink()
    with pytest.raises(mapshare.SegmentNotFoundError, match=re.escape(ch_name)):
        Channel.open(ch_name)


def test_wrap_many_laps_with_random_sizes_keeps_every_byte(ch: Channel) -> None:
    import random

    rng = random.Random(5)
    pending: list[bytes] = []
    for i in range(3000):
        if pending and (rng.random() < 0.5 or ch.statistics().queued_bytes > 180):
            assert ch.receive_nowait() == pending.pop(0)
            continue
        m = rng.randbytes(rng.choice([0, 1, 7, 8, 9, rng.randint(0, 120)]))
        try:
            ch.send_nowait(m)
        except mapshare.ChannelFull:
            continue
        pending.append(m)
        assert i < 3000
    while pending:
        assert ch.receive_nowait() == pending.pop(0)
    s = ch.statistics()
    assert s.sent_messages == s.received_messages > 1000
    assert s.queued_bytes == 0


# ---- full and empty -------------------------------------------------------------------


def test_send_on_a_full_channel_times_out(ch: Channel) -> None:
    ch.send_nowait(b"f" * 240)
    t0 = time.monotonic()
    with pytest.raises(mapshare.WaitTimeout) as ei:
        ch.send(b"g" * 16, timeout=0.3)
    assert time.monotonic() - t0 >= 0.29
    assert isinstance(ei.value, TimeoutError)
    with pytest.raises(mapshare.ChannelFull) as ef:
        ch.send_nowait(b"g")
    assert isinstance(ef.value, queue.Full)
    assert ch.statistics().queued_messages == 1
    assert ch.receive_nowait() == b"f" * 240


def test_receive_on_an_empty_channel_times_out(ch: Channel) -> None:
    t0 = time.monotonic()
    with pytest.raises(mapshare.WaitTimeout) as ei:
        ch.receive(timeout=0.3)
    assert time.monotonic() - t0 >= 0.29
    assert isinstance(ei.value, TimeoutError)
    with pytest.raises(mapshare.ChannelEmpty) as ee:
        ch.receive_nowait()
    assert isinstance(ee.value, queue.Empty)
    with pytest.raises(mapshare.WaitTimeout), ch.receive_view(timeout=0.05):
        pass
    with pytest.raises(mapshare.ChannelEmpty):
        ch.receive(timeout=0)


def test_blocked_send_completes_when_a_receiver_makes_room(ch: Channel) -> None:
    ch.send_nowait(b"1" * 200)
    timer = threading.Timer(0.2, ch.receive)
    timer.start()
    try:
        ch.send(b"2" * 200, timeout=30)
    finally:
        timer.join()
    assert ch.receive_nowait() == b"2" * 200


def test_receive_many_and_send_many(ch: Channel) -> None:
    assert ch.send_many([b"a", b"", b"ccc"]) == 3
    assert ch.receive_many(10, timeout=1) == [b"a", b"", b"ccc"]
    with pytest.raises(mapshare.WaitTimeout):
        ch.receive_many(10, timeout=0.05)
    ch.send_many(b"%d" % i for i in range(5))
    assert ch.receive_many(2) == [b"0", b"1"]
    assert ch.receive_many(5) == [b"2", b"3", b"4"]


# ---- loans and views ------------------------------------------------------------------


def test_loan_is_sent_on_leaving_and_discarded_on_exception(ch: Channel) -> None:
    with ch.loan(5) as buf:
        assert not buf.readonly
        buf[:] = b"hello"
    with pytest.raises(RuntimeError), ch.loan(5) as buf:
        buf[:] = b"nope!"
        raise RuntimeError("discard")
    with ch.loan(0):
        pass
    assert ch.receive_nowait() == b"hello"
    assert ch.receive_nowait() == b""
    with pytest.raises(mapshare.ChannelEmpty):
        ch.receive_nowait()
    assert ch.statistics().sent_messages == 2


def test_a_loan_still_exported_at_the_end_is_not_sent(ch: Channel) -> None:
    kept = []
    with pytest.raises(BufferError, match="the message was not sent"), ch.loan(4) as buf:
        buf[:] = b"leak"
        kept.append(memoryview(buf)[1:3])  # a view that would outlive the block
    with pytest.raises(mapshare.ChannelEmpty):
        ch.receive_nowait()  # never published: it could still change
    ch.send(b"ok")  # the send lock was given back
    assert ch.receive_nowait() == b"ok"


def test_a_view_that_outlives_its_block_is_reported(ch: Channel) -> None:
    ch.send(b"short-lived")
    kept = []
    with pytest.raises(BufferError, match="the message was consumed"), ch.receive_view() as v:
        kept.append(v[0:5])
    assert ch.statistics().queued_messages == 0  # consumed all the same
    ch.send(b"next")
    assert ch.receive_nowait() == b"next"


def test_receive_view_is_read_only_and_consumed_at_the_end(ch: Channel) -> None:
    ch.send_nowait(b"view me")
    ch.send_nowait(b"second")
    with ch.receive_view() as v:
        assert v.readonly
        assert bytes(v) == b"view me"
        with pytest.raises(TypeError):
            v[0] = 0
    with pytest.raises(KeyError), ch.receive_view() as v:
        assert bytes(v) == b"second"
        raise KeyError("consumed anyway")
    with pytest.raises(mapshare.ChannelEmpty):
        ch.receive_nowait()


def test_a_view_held_by_one_handle_blocks_other_receivers_not_senders(name: str) -> None:
    with Channel.create(name, 4096) as a, Channel.open(name) as b:
        a.send(b"one")
        a.send(b"two")
        with a.receive_view() as v:
            assert bytes(v) == b"one"
            got: list[object] = []
            th = threading.Thread(target=lambda: got.append(b.receive(timeout=30)))
            th.start()
            time.sleep(0.1)
            assert not got  # waits for the receive lock
            a.send(b"three", timeout=5)  # senders are not blocked by a view
        th.join(30)
        assert got == [b"two"]
        assert a.receive_nowait() == b"three"
        a.unlink()


# ---- end of stream --------------------------------------------------------------------


def test_close_sending_drains_then_end_of_channel(ch: Channel) -> None:
    ch.send_many([b"x", b"y"])
    ch.close_sending()
    with pytest.raises(mapshare.EndOfChannel):
        ch.send(b"z")
    with pytest.raises(mapshare.EndOfChannel):
        ch.send_nowait(b"z")
    assert list(ch) == [b"x", b"y"]
    for _ in range(2):
        with pytest.raises(mapshare.EndOfChannel):
            ch.receive(timeout=5)
        with pytest.raises(mapshare.EndOfChannel):
            ch.receive_nowait()
    assert ch.statistics().closed
    ch.close_sending()  # idempotent


def test_close_sending_releases_a_sender_blocked_on_a_full_channel(name: str) -> None:
    with Channel.create(name, 256) as c, Channel.open(name) as other:
        c.send(b"x" * 240)
        out: list[object] = []

        def tx() -> None:
            try:
                other.send(b"y" * 100)  # no timeout: only the close can end this
                out.append("sent")
            except mapshare.EndOfChannel as exc:
                out.append(exc)

        th = threading.Thread(target=tx)
        th.start()
        time.sleep(0.2)
        c.close_sending()
        th.join(30)
        alive = th.is_alive()
        if alive:  # unblock it before failing
            c.receive()
            th.join(30)
        assert not alive, "a blocked send ignored close_sending()"
        assert len(out) == 1 and isinstance(out[0], mapshare.EndOfChannel)
        assert c.receive() == b"x" * 240  # what was queued is still delivered
        c.unlink()


def test_close_sending_wakes_a_blocked_receiver(ch: Channel) -> None:
    out: list[object] = []

    def rx() -> None:
        try:
            out.append(ch.receive())
        except mapshare.EndOfChannel as exc:
            out.append(exc)

    th = threading.Thread(target=rx)
    th.start()
    time.sleep(0.1)
    ch.close_sending()
    th.join(30)
    assert not th.is_alive()
    assert len(out) == 1 and isinstance(out[0], mapshare.EndOfChannel)


# ---- statistics -----------------------------------------------------------------------


def test_statistics_fields(name: str) -> None:
    with Channel.create(name, 1024) as c:
        s = c.statistics()
        assert (s.capacity, s.max_message) == (1024, 1016)
        assert (s.queued_bytes, s.queued_messages, s.high_water) == (0, 0, 0)
        assert (s.senders, s.receivers) == (0, 0)
        assert not s.closed
        c.send(b"a" * 10)  # 24 bytes
        c.send(b"b" * 100)  # 112 bytes
        s = c.statistics()
        assert (s.queued_messages, s.queued_bytes) == (2, 136)
        assert (s.sent_messages, s.sent_bytes) == (2, 110)
        assert s.high_water == 136
        assert s.senders == 1 and s.receivers == 0
        c.receive()
        c.receive()
        s = c.statistics()
        assert (s.queued_messages, s.queued_bytes) == (0, 0)
        assert (s.received_messages, s.received_bytes) == (2, 110)
        assert s.high_water == 136  # the most ever queued
        assert s.receivers == 1
        assert (s.redelivered, s.abandoned) == (0, 0)
        assert (s.send_waiters, s.receive_waiters) == (0, 0)
        with pytest.raises(dataclasses_frozen()):
            s.capacity = 5  # type: ignore[misc]
        assert "queued" in repr(c)
        c.unlink()


def test_high_water_is_the_most_ever_queued(ch: Channel) -> None:
    """One message in flight at a time, many laps: the high-water mark is one record,
    not an estimate that grows with the tail."""
    for _ in range(60):
        ch.send(b"x" * 100)  # 112 bytes
        assert ch.statistics().queued_bytes == 112
        ch.receive()
    assert ch.statistics().high_water == 112
    t = Tracked(ch)
    t.tail = 60 * 112
    t.move_to(0)
    t.send(b"a" * 100)
    t.send(b"b" * 100)
    assert ch.statistics().high_water == 224
    ch.receive()
    ch.receive()
    assert ch.statistics().high_water == 224


def dataclasses_frozen() -> type[Exception]:
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_waiters_are_counted(ch: Channel) -> None:
    th = threading.Thread(target=lambda: ch.receive(timeout=30))
    th.start()
    try:
        deadline = time.monotonic() + 10
        while ch.statistics().receive_waiters != 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ch.statistics().receive_waiters == 1
    finally:
        ch.send(b"go")
        th.join(30)
    assert ch.statistics().receive_waiters == 0


# ---- asyncio --------------------------------------------------------------------------


def test_async_send_receive_and_iteration(name: str) -> None:
    async def main() -> list[bytes]:
        with Channel.create(name, 256) as c:
            await c.send_async(b"a")
            assert await c.receive_async(timeout=5) == b"a"

            async def producer() -> None:
                for i in range(50):  # more than the ring holds: send_async must wait
                    await c.send_async(b"%03d" % i + b"." * 40, timeout=30)
                c.close_sending()

            task = asyncio.ensure_future(producer())
            got = [m async for m in c]
            await task
            c.unlink()
            return got

    got = asyncio.run(main())
    assert got == [b"%03d" % i + b"." * 40 for i in range(50)]


def test_async_send_blocked_on_a_full_channel_ends_at_close_sending(ch: Channel) -> None:
    async def main() -> None:
        ch.send(b"x" * 240)
        task = asyncio.ensure_future(ch.send_async(b"y" * 100))
        await asyncio.sleep(0.1)
        ch.close_sending()
        with pytest.raises(mapshare.EndOfChannel):
            await asyncio.wait_for(task, 30)

    asyncio.run(main())
    assert ch.receive() == b"x" * 240


def test_async_receive_times_out(ch: Channel) -> None:
    async def main() -> None:
        t0 = time.monotonic()
        with pytest.raises(mapshare.WaitTimeout, match=r"timed out after 0\.3 s"):
            await ch.receive_async(timeout=0.3)
        assert time.monotonic() - t0 >= 0.29

    asyncio.run(main())


def test_cancelled_receive_async_loses_no_message(ch: Channel) -> None:
    async def main() -> None:
        for round_ in range(5):
            task = asyncio.ensure_future(ch.receive_async())
            await asyncio.sleep(0.05)  # now waiting in a worker thread
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            ch.send(b"after cancel %d" % round_)
            # the worker's wait may still be running: it must not take the message
            await asyncio.sleep(0.3)
            assert await ch.receive_async(timeout=5) == b"after cancel %d" % round_

    asyncio.run(main())
    with pytest.raises(mapshare.ChannelEmpty):
        ch.receive_nowait()
