"""The Python peers of tests/multiprocess/test_c_interop.py, and the message format that
the C peer (tests/c_interop/peer.c) shares with them.

Stress messages (mirrored in peer.c, ``stress_*``): a 16-byte header of little-endian
uint32 ``sender, seq, n, crc`` then ``n`` payload bytes, byte ``i`` being
``(sender * 131 + seq * 7 + i) & 0xFF``; ``crc`` is zlib's CRC-32 of the payload and ``n``
comes from ``stress_size`` (mostly small, every 97th message a few KiB, so that a ring of
a few tens of KiB wraps and pads often).  A receiver checks all of it, so a torn,
misrouted or foreign message is never counted as delivered.
"""

from __future__ import annotations

import struct
import time
import zlib
from typing import Any, Optional

import mapshare

STRESS_HEADER = struct.Struct("<IIII")


def stress_size(sender: int, seq: int) -> int:
    """Payload bytes of message ``seq`` of ``sender`` (peer.c: stress_size)."""
    r = (seq * 2654435761 + sender * 40503) & 0xFFFFFFFF
    if seq % 97 == 0:
        return 3000 + r % 1000
    return r % 300


def stress_payload(sender: int, seq: int) -> bytes:
    """The payload of message ``seq`` of ``sender`` (peer.c: stress_fill)."""
    base = sender * 131 + seq * 7
    return bytes((base + i) & 0xFF for i in range(stress_size(sender, seq)))


def stress_message(sender: int, seq: int) -> bytes:
    """The whole message: header then payload."""
    p = stress_payload(sender, seq)
    return STRESS_HEADER.pack(sender, seq, len(p), zlib.crc32(p)) + p


def stress_check(msg: bytes) -> Optional[tuple[int, int]]:
    """(sender, seq) of a well-formed stress message, None for anything else."""
    if len(msg) < STRESS_HEADER.size:
        return None
    sender, seq, n, crc = STRESS_HEADER.unpack_from(msg)
    payload = msg[STRESS_HEADER.size:]
    if len(payload) != n or zlib.crc32(payload) != crc:
        return None
    if n != stress_size(sender, seq) or payload != stress_payload(sender, seq):
        return None
    return sender, seq


def stress_sender(name: str, sender: int, count: int) -> None:
    """Send ``count`` stress messages as ``sender``, in order (every other one written
    in place through a loan, as peer.c does), then close the handle (not the channel:
    other senders are still sending)."""
    with mapshare.Channel.open(name, wait=30) as ch:
        for seq in range(count):
            msg = stress_message(sender, seq)
            if seq % 2:
                with ch.loan(len(msg), timeout=120) as buf:
                    buf[:] = msg
            else:
                ch.send(msg, timeout=120)


def stress_receiver(name: str, out: str) -> None:
    """Receive until the end of the stream; write one line per message to ``out``:
    ``sender seq`` for a good one, ``BAD <length>`` for anything that fails the check
    (the format peer.c's stress-receive writes)."""
    lines: list[str] = []
    with mapshare.Channel.open(name, wait=30) as ch:
        while True:  # every other message through a zero-copy view, as peer.c does
            try:
                if len(lines) % 2:
                    with ch.receive_view(timeout=120) as v:
                        msg = bytes(v)
                else:
                    msg = ch.receive(timeout=120)
            except mapshare.EndOfChannel:
                break
            got = stress_check(msg)
            lines.append(f"{got[0]} {got[1]}" if got else f"BAD {len(msg)}")
    with open(out, "w") as f:
        f.write("".join(line + "\n" for line in lines))


# ---- victims: Python peers SIGKILLed while a C peer survives -----------------------------


def receive_forever(name: str) -> None:
    """Sleep in a receive with no timeout (to be SIGKILLed in it)."""
    with mapshare.Channel.open(name, wait=30) as ch:
        ch.receive()


def hold_half_written_loan(name: str, n: int, ready: Any) -> None:
    """Open a loan of ``n`` bytes, write its first half, and wait (to be SIGKILLed)
    inside the block: the message is never committed."""
    with mapshare.Channel.open(name, wait=30) as ch, ch.loan(n, timeout=60) as buf:
        buf[: n // 2] = b"\xee" * (n // 2)
        ready.set()
        time.sleep(600)


def hold_lock(name: str, seg_name: str, ready: Any) -> None:
    """Take the named lock, write half of an update the lock protects (the u64 pair at
    offset 0 of ``seg_name`` becomes (1, 0)), and wait (to be SIGKILLed) holding it."""
    lock = mapshare.Lock.open(name, wait=30)
    seg = mapshare.Segment.open(seg_name, wait=30)
    lock.acquire()
    struct.pack_into("<Q", seg.buf, 0, 1)
    ready.set()
    time.sleep(600)
