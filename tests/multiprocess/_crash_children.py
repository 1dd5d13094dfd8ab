"""Actors of the crash matrix (tests/multiprocess/test_crash_matrix.py).

Each actor repeats one operation forever until it is SIGKILLed at a random point.  They
are module-level so that the 'spawn' context can import them."""

from __future__ import annotations

import struct
import zlib
from typing import Any

import mapshare

HEAD = struct.Struct("<QII")  # seq, payload length, crc32 of the payload
LOG_HEAD = 16  # log segment: u64 count, then u64 entries
U64 = struct.Struct("<Q")


def payload(seq: int) -> bytes:
    n = 16 + (seq * 37) % 500
    return bytes((seq * 7 + i * 13) & 0xFF for i in range(n))


def message(seq: int) -> bytes:
    p = payload(seq)
    return HEAD.pack(seq, len(p), zlib.crc32(p)) + p


def check(msg: bytes) -> int:
    """The message's sequence number; raises AssertionError if it is torn."""
    seq, n, crc = HEAD.unpack_from(msg)
    p = msg[HEAD.size :]
    assert len(p) == n, f"message {seq}: length {len(p)} != {n}"
    assert zlib.crc32(p) == crc, f"message {seq}: checksum mismatch (torn)"
    assert p == payload(seq), f"message {seq}: wrong contents"
    return int(seq)


def log_append(log: mapshare.Segment, seq: int) -> None:
    """Append one entry, then publish the new count: a kill anywhere leaves the old
    count or the new one.  Each field is stored whole, by one 8-byte copy: never with
    struct.pack_into, which zero-fills its destination before it writes the value (a
    kill between the two left the count 0 -- the crash matrix's rare 'empty log')."""
    count = U64.unpack_from(log.buf, 0)[0]
    at = LOG_HEAD + 8 * count
    log.buf[at : at + 8] = U64.pack(seq)
    log.buf[0:8] = U64.pack(count + 1)  # published after the entry


def log_read(log: mapshare.Segment) -> list[int]:
    count = struct.unpack_from("<Q", log.buf, 0)[0]
    return list(struct.unpack_from(f"<{count}Q", log.buf, LOG_HEAD))


# ---- actors -------------------------------------------------------------------------


def actor_create(base: str, ready: Any) -> None:
    """Create, fill and close 'shared' segments, keeping the last three open."""
    kept: list[mapshare.Segment] = []
    k = 0
    while True:
        seg = mapshare.Segment.create(f"{base}{k % 100000}", 8192)
        seg.write(b"x" * 8192)
        kept.append(seg)
        if len(kept) > 3:
            kept.pop(0).close()
        if k == 0:
            # only once something exists: a slow start (a sanitizer build) must not let
            # the kill land before the first create
            ready.set()
        k += 1


def actor_lock(name: str, ready: Any) -> None:
    """Under the segment's lock, write the pair (k, k) field by field."""
    seg = mapshare.Segment.open(name)
    lock = seg.lock()
    k = 0
    ready.set()
    while True:
        try:
            lock.acquire()
        except mapshare.OwnerDiedError:
            pass
        struct.pack_into("<Q", seg.buf, 0, k)
        struct.pack_into("<Q", seg.buf, 8, k)
        lock.release()
        k += 1


def actor_event(name: str, ready: Any) -> None:
    """Set, wait (already set), clear, and wait with a short timeout, in a loop."""
    ev = mapshare.Event.open(name)
    ready.set()
    while True:
        ev.set()
        ev.wait(1.0)
        ev.clear()
        ev.wait(0.0005)


def actor_send(name: str, loan: bool, ready: Any) -> None:
    """Send numbered, checksummed messages, with send() or with loan()."""
    ch = mapshare.Channel.open(name)
    seq = 0
    ready.set()
    while True:
        if loan:
            # the message is built inside the loan, so that most kills land while this
            # process holds the send lock with a half-written record
            n = 16 + (seq * 37) % 500  # len(payload(seq))
            with ch.loan(HEAD.size + n) as buf:
                p = payload(seq)
                buf[HEAD.size :] = p
                buf[: HEAD.size] = HEAD.pack(seq, len(p), zlib.crc32(p))
        else:
            ch.send(message(seq))
        seq += 1


def actor_receive(name: str, log_name: str, view: bool, ready: Any) -> None:
    """Receive messages (receive() or receive_view()) and log each sequence number
    after the message is consumed."""
    ch = mapshare.Channel.open(name)
    log = mapshare.Segment.open(log_name)
    ready.set()
    while True:
        if view:
            with ch.receive_view() as v:
                seq = check(bytes(v))
        else:
            seq = check(ch.receive())
        log_append(log, seq)


def actor_publish(name: str, loan: bool, ready: Any) -> None:
    """Publish numbered, checksummed messages on a topic, with publish() or loan()."""
    t = mapshare.Topic.open(name)
    seq = 0
    ready.set()
    while True:
        if loan:
            # built inside the loan: most kills land holding the publish lock
            n = 16 + (seq * 37) % 500
            with t.loan(HEAD.size + n) as buf:
                p = payload(seq)
                buf[HEAD.size :] = p
                buf[: HEAD.size] = HEAD.pack(seq, len(p), zlib.crc32(p))
        else:
            t.publish(message(seq))
        seq += 1


def actor_subscribe(name: str, view: bool, ready: Any) -> None:
    """Subscribe to a topic and read (receive() or receive_view()), checking each
    message, forever."""
    t = mapshare.Topic.open(name)
    sub = t.subscribe()
    ready.set()
    while True:
        try:
            if view:
                with sub.receive_view() as v:
                    check(bytes(v))
            else:
                check(sub.receive())
        except mapshare.Lagged:
            pass
