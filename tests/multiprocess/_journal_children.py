"""Functions that child processes run for test_journal_processes.py (and
tools/soak_journal.py): appenders that report each index append returned, readers that
check every record, named readers that commit as they go."""

from __future__ import annotations

import os
import signal
import struct
import zlib
from typing import Any

import mapshare


def record(writer: int, n: int, size: int) -> bytes:
    """A self-checking payload: writer id, its counter, filler, and a CRC of all that."""
    body = struct.pack("<II", writer, n) + bytes((writer * 31 + n + k) & 0xFF for k in range(size))
    return body + struct.pack("<I", zlib.crc32(body))


def check(data: bytes) -> tuple[int, int]:
    """(writer, counter) of a payload made by record(); ValueError if it is damaged."""
    if len(data) < 12:
        raise ValueError(f"record too short ({len(data)} bytes)")
    body, crc = data[:-4], struct.unpack("<I", data[-4:])[0]
    if zlib.crc32(body) != crc:
        raise ValueError("record checksum does not hold")
    w, n = struct.unpack("<II", body[:8])
    return int(w), int(n)


def appender(path: str, writer: int, count: int, fd: int, size: int = 40) -> None:
    """Append `count` records (forever if count < 0), writing "index counter\\n" to the
    pipe `fd` after each append returns: what the parent knows was acknowledged."""
    j = mapshare.Journal.open(path)
    n = 0
    while count < 0 or n < count:
        i = j.append(record(writer, n, size + n % 50))
        os.write(fd, b"%d %d\n" % (i, n))
        n += 1
    j.close()
    os.close(fd)


def reader(path: str, total: int, q: Any) -> None:
    """Read `total` records from the start, checking each; put (count, writers' last
    counters) on q, or the error text."""
    try:
        with mapshare.Journal.open(path, access="r") as j:
            r = j.reader()
            last: dict[int, int] = {}
            for _ in range(total):
                idx, view = r.next(timeout=120)
                w, n = check(bytes(view))
                if n <= last.get(w, -1):
                    raise ValueError(f"writer {w}: counter {n} after {last[w]} at index {idx}")
                last[w] = n
            q.put((total, last))
    except Exception as exc:  # reported to the parent, which fails the test
        q.put(repr(exc))


def named_reader(path: str, name: str, fd: int) -> None:
    """Read forever under `name`, committing each record after reporting its index."""
    j = mapshare.Journal.open(path)
    r = j.reader(name)
    for idx, view in r:
        check(bytes(view))
        r.commit(idx)
        os.write(fd, b"%d\n" % idx)


def die_mid_reserve(path: str, before: int) -> None:
    """Append `before` records, then SIGKILL this process inside a reserve() block with
    half of the payload copied (holding the append lock)."""
    j = mapshare.Journal.open(path)
    for n in range(before):
        j.append(record(9, n, 30))
    with j.reserve(100) as buf:
        buf[:50] = b"\xee" * 50
        os.kill(os.getpid(), signal.SIGKILL)


def die_mid_roll(path: str) -> None:
    """Append until a roll, and SIGKILL this process when the new segment file exists but
    the roll is not published (holding the append lock)."""
    from mapshare import _journal

    _journal._ROLL_HOOK = lambda: os.kill(os.getpid(), signal.SIGKILL)
    j = mapshare.Journal.open(path)
    n = 0
    while True:
        j.append(record(8, n, 30))
        n += 1
