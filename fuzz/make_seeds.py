"""Write the small seed corpus of the fuzz harnesses (committed under fuzz/corpus/).

python fuzz/make_seeds.py        # rewrites fuzz/corpus/{header,ring,interleave}/seed-*
"""

from __future__ import annotations

import os
import struct

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


if __name__ == "__main__":
    main()
