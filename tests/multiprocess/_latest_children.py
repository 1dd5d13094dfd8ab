"""Child processes of the Latest process and crash tests (importable under 'spawn', and
runnable as a script: ``python _latest_children.py writer NAME`` is the writer the crash
test SIGKILLs).

Nothing here mocks anything: every child runs against a real slot in /dev/shm.  The
value format (a torn or mixed value cannot pass it):

    <version u64> <body length u32> <crc32 u32> body

where version is the version the value was published as (the writer knows it: it is the
only writer, so the next set returns version + 1), the crc covers the first two fields
and the body, and the body is a slice of a random pool picked by the version.
"""

from __future__ import annotations

import random
import struct
import sys
import time
import zlib
from typing import Any, Optional

import mapshare

HEAD = struct.Struct("<QII")
POOL_SIZE = 1 << 16
POOL = random.Random(20261201).randbytes(POOL_SIZE + (1 << 16))


def value(version: int, max_size: int) -> bytes:
    """The value published as ``version`` in a slot of ``max_size`` bytes (its length
    varies with the version)."""
    n = (version * 7919) % (max_size - HEAD.size + 1)
    off = (version * 104729) % POOL_SIZE
    body = POOL[off : off + n]
    head2 = struct.pack("<QI", version, n)
    return HEAD.pack(version, n, zlib.crc32(body, zlib.crc32(head2))) + body


def check(data: Any, version: int) -> Optional[str]:
    """None if ``data`` is the intact value of ``version``, else what is wrong.  The
    empty value is version 0's."""
    mv = memoryview(data)
    if version == 0 and len(mv) == 0:
        return None
    if len(mv) < HEAD.size:
        return f"short value ({len(mv)} bytes) at version {version}"
    v, n, crc = HEAD.unpack_from(mv, 0)
    body = mv[HEAD.size :]
    if len(body) != n:
        return f"length {len(body)} != {n} at version {version}"
    if zlib.crc32(body, zlib.crc32(struct.pack("<QI", v, n))) != crc:
        return f"torn value at version {version}"
    if v != version:
        return f"value of version {v} returned as version {version}"
    return None


def write_forever(name: str, max_size: int, ready: Any = None, stop: Any = None,
                  count: Optional[int] = None) -> int:
    """Set values as fast as possible until ``stop`` is set (or ``count`` sets)."""
    lt = mapshare.Latest.open(name)
    v = lt.version
    if ready is not None:
        ready.set()
    done = 0
    while (count is None or done < count) and (stop is None or not stop.is_set()):
        for _ in range(256):
            got = lt.set(value(v + 1, max_size))
            if got != v + 1:
                raise AssertionError(f"set returned {got}, expected {v + 1}")
            v = got
            done += 1
    lt.close()
    return done


def read_and_check(name: str, reads: int, views: int, ready: Any, q: Any) -> None:
    """``reads`` get() and ``views`` view() calls, each checked; puts
    (reads, views, overwritten views, torn list, backwards count, last version)."""
    lt = mapshare.Latest.open(name)
    ready.set()
    torn: list[str] = []
    backwards = 0
    last = 0
    get = lt.get
    for _ in range(reads):
        data, version = get()
        if version < last:
            backwards += 1
        last = version
        bad = check(data, version)
        if bad is not None and len(torn) < 10:
            torn.append(bad)
    overwritten = 0
    for _ in range(views):
        try:
            with lt.view_version() as (mv, version):
                bad = check(mv, version)
        except mapshare.Overwritten:
            overwritten += 1
            continue
        if bad is not None and len(torn) < 10:
            torn.append("view: " + bad)
    lt.close()
    q.put((reads, views, overwritten, torn, backwards, last))


def array_value(version: int) -> Any:
    """The array published as ``version``: its shape (and so its header and length)
    varies with the version, and every element holds the version."""
    import numpy as np

    n = 1 + (version * 7919) % 4096
    shape = (n,) if version % 2 else (1, n)
    return np.full(shape, version, dtype="<u8" if version % 3 else ">u8")


def write_arrays_forever(name: str, ready: Any, stop: Any) -> None:
    """set_array(array_value(v)) as fast as possible until ``stop`` is set."""
    lt = mapshare.Latest.open(name)
    v = lt.version
    ready.set()
    while not stop.is_set():
        for _ in range(64):
            v = lt.set_array(array_value(v + 1))
    lt.close()


def read_arrays_and_check(name: str, reads: int, ready: Any, q: Any) -> None:
    """``reads`` get_array() calls, each checked against array_value; puts (reads, torn
    list, backwards count, last version)."""
    lt = mapshare.Latest.open(name)
    ready.set()
    torn: list[str] = []
    backwards = last = 0
    for _ in range(reads):
        a, version = lt.get_array()
        if version < last:
            backwards += 1
        last = version
        want = array_value(version)
        if (a.shape != want.shape or a.dtype != want.dtype or not (a == version).all()
                or a.flags.writeable) and len(torn) < 10:
            torn.append(f"version {version}: {a.dtype} {a.shape} {a[:4]!r}")
    lt.close()
    q.put((reads, torn, backwards, last))


def garbage_writer(name: str, seconds: float, seed: int, ready: Any) -> None:
    """Write random words into the slot's control line and buffer headers (through the
    file system, as any process with write access could; Windows: through the named
    section, Python's mmap with a tagname) for ``seconds``."""
    import mmap
    import os

    osn = mapshare._naming.os_name(name)
    if sys.platform == "win32":
        with mapshare.Segment.open(osn, raw=True, access="r") as seg:
            size = seg.size  # the whole object: a raw read-only handle measures it
        # tagname is Windows-only: mypy checks this file as Linux
        m = mmap.mmap(-1, size, tagname="Local\\" + osn.lstrip("/"))  # type: ignore[call-arg]

        def pwrite(data: bytes, off: int) -> None:
            m[off : off + len(data)] = data

        def done() -> None:
            m.close()
    else:
        fd = os.open("/dev/shm" + osn, os.O_RDWR)

        def pwrite(data: bytes, off: int) -> None:
            os.pwrite(fd, data, off)

        def done() -> None:
            os.close(fd)
    rnd = random.Random(seed)
    header = mapshare._core.HEADER_SIZE
    stride = 64 + (256 + 63) // 64 * 64
    ready.set()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if rnd.random() < 0.5:
            off = 1024 + 64 + rnd.randrange(3) * 8
        else:
            off = header + rnd.randrange(3) * stride + rnd.randrange(3) * 8
        word = rnd.choice([0, 1, 2, 3, 2**64 - 1, 257, rnd.getrandbits(64), rnd.randrange(9)])
        pwrite(struct.pack("<Q", word), off)
    done()


if __name__ == "__main__":
    # writer NAME MAX_SIZE: print "ready", then set forever (until SIGKILLed)
    if sys.argv[1] == "writer":
        lt_name, size = sys.argv[2], int(sys.argv[3])
        lt = mapshare.Latest.open(lt_name)
        current = lt.version
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        while True:
            got = lt.set(value(current + 1, size))
            if got != current + 1:
                sys.exit(3)
            current = got
