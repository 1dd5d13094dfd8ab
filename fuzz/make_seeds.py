"""Write the small seed corpus of the fuzz harnesses (committed under fuzz/corpus/).

python fuzz/make_seeds.py        # rewrites fuzz/corpus/{header,ring,interleave,topic,latest,journal}/seed-*
"""

from __future__ import annotations

import os
import struct
from typing import Union

HERE = os.path.dirname(os.path.abspath(__file__))
MAGIC = 0x0152485350414D00
KIND_SEGMENT, KIND_CHANNEL, KIND_EVENT = 1, 5, 3


def header(kind: int, size: int, magic: int = MAGIC, lifetime: int = 2,
           slots: int = 16, end: int = 2, hint: int = 2) -> tuple[int, bytes]:
    """(object size, the header area: header page + attach table of ``slots`` at 2048)."""
    data_offset = (2048 + 16 * slots + 4095) // 4096 * 4096
    total = data_offset + (size + 4095) // 4096 * 4096
    h = bytearray(data_offset)
    struct.pack_into("<QIIIIQQQ", h, 0, magic, 2, kind, data_offset, lifetime, size,
                     data_offset, total)
    struct.pack_into("<IIII", h, 72, 1, 0, 4, 0o600)
    # attach table, hints, entries with storage
    struct.pack_into("<QIIII", h, 88, 2048, slots, end, hint, min(slots, 128))
    h[128:132] = b"seed"
    if kind == KIND_CHANNEL:
        struct.pack_into("<QQ", h, 1024, size, size - 8)
    # one attached process (pid 1, which is alive) and one dead-looking one
    struct.pack_into("<IIQ", h, 2048, 1, 1, 1)
    struct.pack_into("<IIQ", h, 2064, 0x7FFFFFF0, 1, 12345)
    return total, bytes(h)


def header_seed(kind: int, size: int, **kw: int) -> bytes:
    total, h = header(kind, size, **kw)
    return struct.pack("<Q", total) + h


def ring_control(cap: int, head: int, tail: int) -> bytes:
    c = bytearray(256)
    struct.pack_into("<QQ", c, 0, cap, cap - 8)
    struct.pack_into("<Q", c, 64, tail)
    struct.pack_into("<Q", c, 128, head)
    return bytes(c)


def records(cap: int, msgs: list[bytes], start: int = 0) -> tuple[bytes, int]:
    ring = bytearray(cap)
    pos = start
    for m in msgs:
        rsize = 8 + (len(m) + 7) // 8 * 8
        off = pos % cap
        if off + rsize > cap:
            struct.pack_into("<II", ring, off, cap - off, 1)
            pos += cap - off
            off = 0
        struct.pack_into("<II", ring, off, len(m), 0)
        ring[off + 8 : off + 8 + len(m)] = m
        pos += rsize
    return bytes(ring), pos


def origin_block(host: bytes, seq: int) -> bytes:
    """An origin block (layout.h ms_topic_origin): seq, host length, 0, host padded."""
    return struct.pack("<QII", seq, len(host), 0) + host + bytes(-len(host) % 8)


def topic_log(cap: int, msgs: list[Union[bytes, tuple[int, bytes]]]) -> tuple[bytes, bytes]:
    """(topic control lines 0-3, ring) after publishing ``msgs`` into a topic of ``cap``
    bytes, as csrc/topic.c does: 16-byte headers with seqs, padding records (implicit
    below 16 bytes), records dropped from the head when overwritten.  A message given
    as (flags, body) is written with those record flags (an origin, a loss record)."""
    ring = bytearray(cap)
    tail = intent = head = head_seq = 0
    sizes: list[tuple[int, int]] = []  # (position, size) of what is held, pads too
    for seq, item in enumerate(msgs):
        mflags, m = item if isinstance(item, tuple) else (0, item)
        r = 16 + (len(m) + 7) // 8 * 8
        off = tail % cap
        pad = cap - off if cap - off < 16 or off + r > cap else 0
        start = tail + pad
        end = start + r
        low = end - cap
        while head < low:
            o = head % cap
            if cap - o < 16:
                head += cap - o
                continue
            length, flags, _ = struct.unpack_from("<IIQ", ring, o)
            head += length if flags == 1 else 16 + (length + 7) // 8 * 8
            head_seq += 0 if flags == 1 else 1
        intent = max(intent, end)
        if pad >= 16:
            struct.pack_into("<IIQ", ring, off, pad, 1, seq)
        struct.pack_into("<IIQ", ring, start % cap, len(m), mflags, seq)
        ring[start % cap + 16 : start % cap + 16 + len(m)] = m
        tail = end
        sizes.append((start, r))
    c = bytearray(256)
    struct.pack_into("<QQ", c, 0, cap, (cap // 2 - 16) & ~7)
    struct.pack_into("<QQQQQQ", c, 64, tail, len(msgs), intent, head, head_seq, 0)
    return bytes(c), bytes(ring)


def write(sub: str, name: str, data: bytes) -> None:
    d = os.path.join(HERE, "corpus", sub)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main() -> None:
    write("header", "seed-segment", header_seed(KIND_SEGMENT, 100))
    write("header", "seed-channel", header_seed(KIND_CHANNEL, 4096))
    write("header", "seed-event", header_seed(KIND_EVENT, 0))
    write("header", "seed-initializing", header_seed(KIND_SEGMENT, 1, magic=0))
    # a full table of 2 (the attach limit), garbage hints, the real table size
    write("header", "seed-full", header_seed(KIND_SEGMENT, 8, slots=2, end=2, hint=2))
    write("header", "seed-bad-hints", header_seed(KIND_SEGMENT, 8, end=0, hint=7))
    write("header", "seed-4096", header_seed(KIND_SEGMENT, 64, slots=4096))
    # rings: capacity selector byte (bit 7: keep capacity valid), control, peers, bytes
    for i, (sel, msgs, start) in enumerate(
        [
            (0, [b"hello"], 0),
            (0, [b"a" * 20, b"b" * 13, b"c"], 0),
            (1, [b"x" * 30, b"y" * 30], 40),  # wraps: a padding record at the end
            (4, [b"z" * 88], 0),  # exact fit of a 96-byte ring
        ]
    ):
        cap = 64 + 8 * sel
        ring, tail = records(cap, msgs, start)
        blob = bytes([sel | 0x80]) + ring_control(cap, start, tail) + bytes(512) + ring
        write("ring", f"seed-{i}", blob)
    # interleave programs: cap selector, then ops (see fuzz_interleave.c)
    progs = [
        bytes([2, 0, 10, 0, 20, 2, 2, 2]),  # send, send, receive x3
        bytes([0, 0, 40, 0, 30, 4, 0, 2, 5, 16, 0, 2, 8, 9, 0x42, 2]),  # wrap, view, loan
        bytes([8, 0, 50, 4, 1, 1, 5, 0, 0, 0, 0, 0, 0, 0, 0, 7, 2]),  # write while viewed
        bytes([1, 5, 20, 1, 0, 64, 0, 3, 0xFF] + [0] * 8 + [0, 10, 2]),  # write while loaned
    ]
    for i, p in enumerate(progs):
        write("interleave", f"seed-{i}", p)
    # topics: capacity selector (bit 7: keep line 0 valid), table size and mode, control
    # lines 0-3, the subscriber table (one live-looking entry), the ring
    for i, (sel, mode, msgs) in enumerate(
        [
            (0, 1, [b"hello", b"", b"world"]),
            (8, 1, [bytes([k]) * (k * 7 % 60) for k in range(40)]),  # wrapped, pads, drops
            (2, 5, [b"b" * 40] * 3),  # block mode, two entries
            (1, 1, [b"x" * 8 * k for k in range(1, 12)]),  # implicit pads
            # origins (MS_REC_ORIGIN 2) and loss records (MS_REC_LOSS 4), one with both
            (4, 1, [b"p", (2, origin_block(b"host-a", 7) + b"remote"),
                    (4, struct.pack("<Q", 5)), (6, origin_block(b"h", 9) + struct.pack("<Q", 2)),
                    b"q"]),
            (8, 1, [(2, origin_block(b"x" * (k % 64 + 1), k) + b"m" * (k % 9))
                    if k % 3 else (4, struct.pack("<Q", k + 1)) for k in range(30)]),  # drops
        ]
    ):
        cap = 128 + 8 * sel
        ctl, ring = topic_log(cap, msgs)
        nsubs = 1 + (mode & 3)
        table = bytearray(64 * nsubs)
        struct.pack_into("<IIQQQ", table, 0, 1, 0, 1, 0, 0)  # pid 1 (alive), at 0
        write("topic", f"seed-{i}", bytes([sel | 0x80, mode]) + ctl + bytes(table) + ring)
    # latest slots: max_size selector (bit 7: keep line 0 valid), buffer count, control
    # lines 0-1 after `sets` values were published as csrc/latest.c does, the buffers
    for i, (sel, nsel, sets) in enumerate([(0, 1, 0), (7, 1, 5), (3, 0, 2), (63, 3, 9)]):
        max_size, nbuf = 8 * (1 + sel), 2 + nsel
        stride = 64 + (max_size + 63) // 64 * 64
        ctl = bytearray(128)
        struct.pack_into("<QQQI", ctl, 0, max_size, 0, stride, nbuf)
        struct.pack_into("<Q", ctl, 64, sets)
        bufs = bytearray(stride * nbuf)
        for v in range(max(0, sets - nbuf + 1), sets + 1):
            off = (v % nbuf) * stride
            n = (v * 5) % (max_size + 1)
            struct.pack_into("<QQI", bufs, off, 2 * v, n, 0)
            bufs[off + 64 : off + 64 + n] = bytes([v]) * n
        write("latest", f"seed-{i}", bytes([sel | 0x80, nsel]) + ctl + bytes(bufs))
    # journal segments: append mode (bit 7: the harness builds the records, then writes the
    # rest of the input at the offset its first two bytes give) and a raw valid segment
    for i, (sel, nrec, tail) in enumerate([(0, 3, b""), (1, 9, b"\x00\x90" + b"\xff" * 40),
                                           (3, 31, b"\x0f\xf8" + b"\x01" * 8)]):
        write("journal", f"seed-{i}", bytes([sel | 0x80, nrec]) + struct.pack("<Q", 5)
              + bytes([7, 0, 200, 3, 1]) + tail)
    write("journal", "seed-raw", bytes([0, 0]) + struct.pack("<Q", 100)
          + journal_segment(4096, 7, 100, [b"", b"abc", b"x" * 40]))


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), bit by bit: the checksum of a journal record."""
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def journal_segment(size: int, seq: int, first: int, payloads: list[bytes]) -> bytes:
    """A journal segment file as csrc/journal.c writes it (docs/design/journal-format.md)."""
    seg = bytearray(size)
    struct.pack_into("<QQQQ", seg, 0, 0x31304745534A534D, seq, first, size)
    off = 64
    for k, p in enumerate(payloads):
        index = first + k
        kind = k % 3  # 0 bytes, 1 pickled object, 2 numpy array (the payload is not parsed)
        crc = crc32c(struct.pack("<IQI", len(p), index, kind) + p) or 1
        struct.pack_into("<IIQII", seg, off, len(p), crc, index, kind, 0)
        seg[off + 24 : off + 24 + len(p)] = p
        struct.pack_into("<I", seg, size - 4 * (k + 1), off)
        off += 24 + (len(p) + 7) // 8 * 8
    return bytes(seg)


if __name__ == "__main__":
    main()
