"""Module-level child functions for the channel tests (importable under 'spawn').

Nothing here mocks anything: every function runs in a real child process against a
real channel in /dev/shm.
"""

from __future__ import annotations

import array
import contextlib
import json
import mmap
import os
import pickle
import random
import struct
import sys
import time
import zlib
from collections.abc import Iterator
from typing import Any, Optional

import mapshare

# ---- the stress protocol ------------------------------------------------------------
#
# A message is  <sender id u32> <sequence u32> <payload length u32> <crc32 u32> payload
# where the crc covers the first three fields and the payload, and the payload is a slice
# of a pool of random bytes that both sides can compute from (sender, sequence).

WINDOWS = sys.platform == "win32"

STRESS_HEAD = struct.Struct("<IIII")
POOL_SIZE = 1 << 18
MAX_PAYLOAD = 64 * 1024


def stress_pool() -> bytes:
    """The shared pool of random payload bytes (same in every process)."""
    return random.Random(20261127).randbytes(POOL_SIZE + 4 * MAX_PAYLOAD)


def stress_sizes(sender: int, count: int) -> list[int]:
    """Payload sizes of one sender's messages, skewed small, covering 0 and 64 KiB."""
    rng = random.Random(7777 * sender + 1)
    out = []
    for seq in range(count):
        r = rng.random()
        if seq % 997 == 0 or r < 0.02:
            out.append(0)
        elif seq % 1009 == 1 or r < 0.025:
            out.append(MAX_PAYLOAD)
        elif r < 0.90:
            out.append(rng.randint(1, 1024))
        elif r < 0.985:
            out.append(rng.randint(1025, 8192))
        else:
            out.append(rng.randint(8193, MAX_PAYLOAD))
    return out


def stress_offset(sender: int, seq: int) -> int:
    return (seq * 7919 + sender * 104729) % POOL_SIZE


def stress_message(pool: bytes, sender: int, seq: int, n: int) -> bytes:
    off = stress_offset(sender, seq)
    payload = pool[off : off + n]
    head = struct.pack("<III", sender, seq, n)
    crc = zlib.crc32(payload, zlib.crc32(head))
    return STRESS_HEAD.pack(sender, seq, n, crc) + payload


def stress_sender(name: str, sender: int, count: int, style: str) -> None:
    """Send ``count`` messages as sender ``sender``, with one of several send styles."""
    pool = stress_pool()
    sizes = stress_sizes(sender, count)
    with mapshare.Channel.open(name) as ch:
        if style == "send":
            for seq, n in enumerate(sizes):
                ch.send(stress_message(pool, sender, seq, n))
        elif style == "send_timeout":
            for seq, n in enumerate(sizes):
                ch.send(stress_message(pool, sender, seq, n), timeout=120)
        elif style == "send_many":
            batch = 16
            for start in range(0, count, batch):
                ch.send_many(
                    stress_message(pool, sender, seq, sizes[seq])
                    for seq in range(start, min(start + batch, count))
                )
        elif style == "loan":
            for seq, n in enumerate(sizes):
                msg = stress_message(pool, sender, seq, n)
                with ch.loan(len(msg)) as buf:
                    buf[:] = msg
        else:
            raise ValueError(style)


def check_stress_message(
    msg: bytes | memoryview, pool: bytes, sizes: list[list[int]]
) -> Optional[tuple[int, int]]:
    """(sender, seq) if ``msg`` is intact, None if it is torn or unknown."""
    if len(msg) < STRESS_HEAD.size:
        return None
    sender, seq, n, crc = STRESS_HEAD.unpack_from(msg, 0)
    if sender >= len(sizes) or seq >= len(sizes[sender]) or n != sizes[sender][seq]:
        return None
    if len(msg) != STRESS_HEAD.size + n:
        return None
    payload = bytes(msg[STRESS_HEAD.size :])
    if zlib.crc32(payload, zlib.crc32(bytes(msg[: STRESS_HEAD.size - 4]))) != crc:
        return None
    off = stress_offset(sender, seq)
    if payload != pool[off : off + n]:
        return None
    return sender, seq


def stress_receiver(name: str, senders: int, per_sender: int, style: str, out: str) -> None:
    """Receive until the end of the channel; write what arrived, in arrival order, to
    ``out`` (u32 pairs) and a summary to ``out + '.json'``."""
    pool = stress_pool()
    sizes = [stress_sizes(s, per_sender) for s in range(senders)]
    got = array.array("I")
    torn: list[str] = []

    def take(msg: bytes | memoryview) -> None:
        r = check_stress_message(msg, pool, sizes)
        if r is None:
            if len(torn) < 20:
                torn.append(bytes(msg[:32]).hex())
            got.extend((0xFFFFFFFF, 0xFFFFFFFF))
        else:
            got.extend(r)

    with mapshare.Channel.open(name) as ch:
        if style == "iterate":
            for msg in ch:
                take(msg)
        elif style == "view":
            while True:
                try:
                    with ch.receive_view() as v:
                        take(v)
                except mapshare.EndOfChannel:
                    break
        elif style == "many":
            while True:
                try:
                    for msg in ch.receive_many(32):
                        take(msg)
                except mapshare.EndOfChannel:
                    break
        elif style == "timeout":
            while True:
                try:
                    take(ch.receive(timeout=0.05))
                except mapshare.WaitTimeout:
                    continue
                except mapshare.EndOfChannel:
                    break
        else:
            raise ValueError(style)
    with open(out, "wb") as f:
        got.tofile(f)
    with open(out + ".json", "w") as meta:
        json.dump({"torn": torn, "count": len(got) // 2}, meta)


# ---- crashes ------------------------------------------------------------------------


def crash_sender(name: str, instance: int, seed: int, ready: Any, phase: Any) -> None:
    """Send forever (small and big messages, messages that need a padding record, and
    loans filled in two halves) until SIGKILLed.  Messages are checksummed like the
    stress messages, with sender id 1000 + instance and a running sequence.

    ``phase`` (a shared int) tells the parent where a kill landed: 0 between messages
    (no lock held), 1 inside send()/loan() or the commit (maybe holding the send lock),
    2 inside a loan's block (certainly holding it)."""
    rng = random.Random(seed)
    pool = stress_pool()
    sender = 1000 + instance
    with mapshare.Channel.open(name) as ch:
        biggest = min(ch.max_message - STRESS_HEAD.size, 4 * MAX_PAYLOAD)
        ready.set()
        seq = 0
        while True:
            r = rng.random()
            if r < 0.3:
                n = rng.randint(0, 256)
            elif r < 0.7:
                n = rng.randint(16 * 1024, biggest)
            else:
                n = rng.randint(0, biggest)
            msg = stress_message(pool, sender, seq, n)
            try:
                if rng.random() < 0.35:
                    phase.value = 1
                    with ch.loan(len(msg), timeout=5) as buf:
                        phase.value = 2
                        half = len(msg) // 2
                        buf[:half] = msg[:half]
                        if rng.random() < 0.5:
                            time.sleep(rng.random() * 0.002)
                        buf[half:] = msg[half:]
                        phase.value = 1
                else:
                    phase.value = 1
                    ch.send(msg, timeout=5)
                phase.value = 0
            except mapshare.WaitTimeout:
                phase.value = 0
                continue
            seq += 1


def steady_sender_until(name: str, stop: Any, ready: Any, q: Any) -> None:
    """Send b'steady <i>' until ``stop`` is set; report how many were sent."""
    i = 0
    with mapshare.Channel.open(name) as ch:
        ready.set()
        while not stop.is_set():
            ch.send(b"steady %d" % i, timeout=60)
            i += 1
            if i % 16 == 0:
                time.sleep(0.001)
    q.put(i)


def crash_receiver(name: str, q: Any) -> None:
    """Receive until b'STOP'; check every message; report per-source sequences."""
    pool = stress_pool()
    steady: list[int] = []
    probes: list[int] = []
    crashes: dict[int, list[int]] = {}
    bad: list[str] = []
    with mapshare.Channel.open(name) as ch:
        while True:
            m = ch.receive(timeout=120)
            if m == b"STOP":
                break
            if m.startswith(b"steady "):
                steady.append(int(m[7:]))
            elif m.startswith(b"probe "):
                probes.append(int(m[6:]))
            elif check_crash_message(m, pool):
                sender, seq = struct.unpack_from("<II", m)
                crashes.setdefault(sender - 1000, []).append(seq)
            elif len(bad) < 20:
                bad.append(m[:32].hex() + f" ({len(m)} bytes)")
    q.put((steady, probes, crashes, bad))


def check_crash_message(msg: bytes, pool: bytes) -> bool:
    """True if ``msg`` is an intact message of crash_sender."""
    if len(msg) < STRESS_HEAD.size:
        return False
    sender, seq, n, crc = STRESS_HEAD.unpack_from(msg, 0)
    if not 1000 <= sender < 2000 or len(msg) != STRESS_HEAD.size + n:
        return False
    payload = msg[STRESS_HEAD.size :]
    if zlib.crc32(payload, zlib.crc32(msg[:12])) != crc:
        return False
    off = stress_offset(sender, seq)
    return payload == pool[off : off + n]


def hold_view(name: str, ready: Any, report: Any) -> None:
    """Take a message with receive_view, report it, and wait (to be SIGKILLed) inside
    the block."""
    with mapshare.Channel.open(name) as ch, ch.receive_view(timeout=60) as v:
        report.put(bytes(v))
        ready.set()
        time.sleep(600)


def hold_loan(name: str, n: int, ready: Any) -> None:
    """Open a loan, write into it, and wait (to be SIGKILLed) inside the block."""
    with mapshare.Channel.open(name) as ch, ch.loan(n, timeout=60) as buf:
        buf[:] = b"\xee" * n
        ready.set()
        time.sleep(600)


def send_then_wait(name: str, messages: list[bytes], ready: Any) -> None:
    """Send messages, then wait (to be SIGKILLed) without closing anything."""
    ch = mapshare.Channel.open(name)
    for m in messages:
        ch.send(m)
    ready.set()
    time.sleep(600)


def send_and_close_handle(name: str, messages: list[bytes]) -> None:
    """Send messages, then close the handle normally and exit (no close_sending)."""
    with mapshare.Channel.open(name) as ch:
        for m in messages:
            ch.send(m)


def receive_all_report(name: str, timeout: Optional[float], q: Any) -> None:
    """Receive until something other than a message happens; report the messages and
    the exception class name that ended it."""
    got: list[bytes] = []
    end = "none"
    try:
        with mapshare.Channel.open(name) as ch:
            while True:
                got.append(ch.receive(timeout=timeout))
    except Exception as exc:
        end = type(exc).__name__
    q.put((got, end))


def iterate_report(name: str, q: Any) -> None:
    """``for msg in ch`` until it stops; report the messages."""
    with mapshare.Channel.open(name) as ch:
        q.put([bytes(m) for m in ch])


# ---- fidelity -----------------------------------------------------------------------


def object_cases() -> list[Any]:
    """Objects whose round trip through send_object/receive_object must be exact."""
    import numpy as np

    return [
        b"trailing NULs\x00\x00\x00",
        b"",
        "",
        "non-BMP \U0001f600 \U00010348 \U0010ffff and NUL \x00",
        bytearray(b"\x00" * 17),
        {"bytes": b"\x00" * 1000 + b"x", "empty": [], "none": None, "t": (1, 2.5, -3)},
        np.arange(12, dtype=">i4").reshape(3, 4),
        np.asfortranarray(np.arange(30, dtype=np.float64).reshape(5, 6)),
        [np.zeros(0), np.array(3.5), np.arange(1000, dtype=np.complex128)[::7]],
        pickle.PickleBuffer(b"out of band bytes " * 100),
    ]


def send_objects(name: str) -> None:
    """Send each object case with send_object."""
    with mapshare.Channel.open(name) as ch:
        for obj in object_cases():
            ch.send_object(obj, timeout=60)


def array_cases() -> list[Any]:
    """numpy arrays whose round trip through send_array must be exact."""
    import numpy as np

    base = np.arange(2 * 3 * 4, dtype=np.int64).reshape(2, 3, 4)
    rec = np.dtype([("id", "<u4"), ("pos", ">f8", (3,)), ("name", "S5"), ("flag", "?")])
    structured = np.zeros(4, dtype=rec)
    structured["id"] = [1, 2, 3, 4]
    structured["pos"] = np.arange(12).reshape(4, 3) / 7
    structured["name"] = [b"a", b"bb\x00", b"ccccc", b""]
    structured["flag"] = [True, False, True, False]
    return [
        base,
        np.asfortranarray(base),
        base[:, ::2, 1::2],
        base.T,
        np.arange(100, dtype=np.float32)[::-3],
        structured,
        structured[::2],
        np.arange(10, dtype=">f8"),
        np.arange(10, dtype=">i2").reshape(2, 5).T,
        np.array(42, dtype=np.int16),
        np.array(1.5 + 2j),
        np.zeros((0,), dtype=np.float64),
        np.zeros((3, 0, 2), dtype=np.uint8),
        np.array([True, False, True]),
        (np.arange(6) + 1j * np.arange(6)).astype(np.complex64).reshape(2, 3),
        np.array(["\u03b1", "\U0001f600", ""], dtype="<U3"),
        np.array([b"\x00\x00", b"a\x00"], dtype="S2"),
        np.datetime64("2026-11-27T04:40") + np.arange(3).astype("m8[s]"),
    ]


def send_arrays(name: str) -> None:
    """Send each array case with send_array."""
    with mapshare.Channel.open(name) as ch:
        for a in array_cases():
            ch.send_array(a, timeout=60)


def receive_objects_and_arrays_report(name: str, n_obj: int, n_arr: int, q: Any) -> None:
    """Receive objects then arrays; report them pickled back (arrays as (dtype.str,
    dtype.descr, shape, bytes, writeable))."""
    out_obj = []
    out_arr = []
    with mapshare.Channel.open(name) as ch:
        for _ in range(n_obj):
            o = ch.receive_object(timeout=60)
            # a PickleBuffer arrives as a memoryview, which a Queue cannot carry
            out_obj.append(bytes(o) if isinstance(o, memoryview) else o)
        for _ in range(n_arr):
            a = ch.receive_array(timeout=60)
            out_arr.append((a, bool(a.flags.writeable)))
    # protocol 5: numpy pickles a big-endian array as native-endian with protocol 4,
    # which is what a Queue would use
    q.put(pickle.dumps((out_obj, out_arr), protocol=5))


def receive_raw_report(name: str, q: Any) -> None:
    """Receive one message with receive() and one with receive_view(); report their
    types and contents."""
    with mapshare.Channel.open(name) as ch:
        a = ch.receive(timeout=60)
        with ch.receive_view(timeout=60) as v:
            b = (type(v).__name__, bytes(v), v.readonly)
    q.put((type(a).__name__, a, b))


class MakeFileWhenUnpickled:
    """Unpickling this calls open(path, 'x'): the file's existence proves it ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "x"))


# ---- corruption ---------------------------------------------------------------------

RING_CONTROL = 1024  # ms_header.kind_area: the ms_ring
RING_DATA = mapshare._core.HEADER_SIZE  # MS_HEADER_SIZE: the ring itself
OFF_CAPACITY = 0
OFF_MAX_MESSAGE = 8
OFF_TAIL = 64
OFF_HEAD = 128
OFF_FLAGS = 192


def shm_path(name: str) -> str:
    from mapshare import _naming

    return "/dev/shm" + _naming.os_name(name)


@contextlib.contextmanager
def _windows_raw_map(name: str) -> Iterator[mmap.mmap]:
    """Windows: the whole object behind ``name`` through its named section (Python's
    mmap with a tagname, no mapshare mapping).  A section's size cannot be read by name
    without mapshare, so a short-lived raw read-only handle measures it first."""
    from mapshare import _naming

    osn = _naming.os_name(name)
    with mapshare.Segment.open(osn, raw=True, access="r") as seg:
        size = seg.size
    # tagname is Windows-only: mypy checks this file as Linux
    with mmap.mmap(-1, size, tagname="Local\\" + osn.lstrip("/")) as m:  # type: ignore[call-arg]
        yield m


def poke(name: str, offset: int, data: bytes) -> None:
    """Write ``data`` at ``offset`` of the object behind ``name``, through a raw mapping
    of /dev/shm (no mapshare call at all; Windows: of its named section)."""
    if WINDOWS:
        with _windows_raw_map(name) as m:
            m[offset : offset + len(data)] = data
        return
    fd = os.open(shm_path(name), os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        with mmap.mmap(fd, size) as m:
            m[offset : offset + len(data)] = data
    finally:
        os.close(fd)


def flip(name: str, seconds: float, seed: int, control: bool, flipping: Any = None) -> None:
    """Scribble random bytes over the ring (and, if ``control``, over tail/head and the
    capacity line) for ``seconds``; ``flipping`` (an Event) is set when it begins."""
    rng = random.Random(seed)
    if WINDOWS:
        with _windows_raw_map(name) as m:
            if flipping is not None:
                flipping.set()
            _scribble(m, len(m), rng, seconds, control)
        return
    fd = os.open(shm_path(name), os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        with mmap.mmap(fd, size) as m:
            if flipping is not None:
                flipping.set()
            _scribble(m, size, rng, seconds, control)
    finally:
        os.close(fd)


def _scribble(m: mmap.mmap, size: int, rng: random.Random, seconds: float,
              control: bool) -> None:
    ring_len = size - RING_DATA
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(200):
            if control and rng.random() < 0.1:
                off = RING_CONTROL + rng.choice(
                    [OFF_CAPACITY, OFF_MAX_MESSAGE, OFF_TAIL, OFF_HEAD]
                )
                m[off : off + 8] = rng.randbytes(8)
            else:
                off = RING_DATA + rng.randrange(ring_len)
                n = min(rng.randint(1, 64), size - off)
                m[off : off + n] = rng.randbytes(n)
        time.sleep(0.0002)


def receive_loop_catching(name: str, seconds: float, q: Any, started: Any = None,
                          flipping: Any = None) -> None:
    """For ``seconds``: send_nowait twice, then receive(timeout=0.01) or receive_view
    once (so the ring stays full of records), catching every MapshareError; report how
    many of each outcome.  ``started`` (an Event) is set once the channel is open.  With
    ``flipping`` (an Event), the ``seconds`` count from when it is set, so that the loop
    overlaps the scribbling however slowly the scribbler started (spawn under Wine on a
    busy machine: over 2 s); the loop gives up 120 s after the start if it never is."""
    outcomes: dict[str, int] = {}

    def count(key: str) -> None:
        outcomes[key] = outcomes.get(key, 0) + 1

    with mapshare.Channel.open(name) as ch:
        if started is not None:
            started.set()
        end = time.monotonic() + (seconds if flipping is None else 120.0)
        i = 0
        while time.monotonic() < end:
            if flipping is not None and flipping.is_set():
                end, flipping = time.monotonic() + seconds, None
            i += 1
            for j in range(2):
                try:
                    ch.send_nowait(b"s" * ((i * 7 + j) % 300))
                    count("ok")
                except mapshare.MapshareError as exc:
                    count(type(exc).__name__)
            try:
                if i % 2:
                    with ch.receive_view(timeout=0.01) as v:
                        bytes(v[:16])
                else:
                    ch.receive(timeout=0.01)
                count("ok")
            except mapshare.MapshareError as exc:
                count(type(exc).__name__)
    q.put(outcomes)


def receive_expect_error(name: str, timeout: float, q: Any) -> None:
    """One receive(timeout) in a fresh process; report what happened."""
    t0 = time.monotonic()
    try:
        with mapshare.Channel.open(name) as ch:
            r: Any = ch.receive(timeout=timeout)
        q.put(("ok", r, time.monotonic() - t0))
    except Exception as exc:
        q.put((type(exc).__name__, str(exc), time.monotonic() - t0))


def send_expect_error(name: str, size: int, timeout: float, q: Any) -> None:
    """One send(timeout) in a fresh process; report what happened."""
    t0 = time.monotonic()
    try:
        with mapshare.Channel.open(name) as ch:
            ch.send(b"z" * size, timeout=timeout)
        q.put(("ok", None, time.monotonic() - t0))
    except Exception as exc:
        q.put((type(exc).__name__, str(exc), time.monotonic() - t0))




# ---- handles inherited through fork ---------------------------------------------------


def use_inherited_handle(ch: mapshare.Channel, ready: Any, q: Any) -> None:
    """In a forked child, with the parent's own Channel object (whose parent holds a
    loan or a view): this handle holds neither here, so a send/receive waits for the
    parent's lock (WaitTimeout) instead of failing as 'busy'; then send one message and
    stay alive (a registered sender) until killed."""
    out = []
    for call in (lambda: ch.send(b"child", timeout=0.3), lambda: ch.receive(timeout=0.3)):
        try:
            call()
            out.append("ok")
        except Exception as exc:
            out.append(type(exc).__name__)
    q.put(out)
    ready.wait(60)
    ch.send(b"from child %d" % os.getpid(), timeout=60)
    q.put("sent")
    time.sleep(600)


def async_receive_report(name: str, q: Any, timeout: float = 60) -> None:
    """receive_async until an exception; report messages and the exception's name."""
    import asyncio

    async def main() -> tuple[list[bytes], str]:
        got: list[bytes] = []
        with mapshare.Channel.open(name) as ch:
            try:
                while True:
                    got.append(await ch.receive_async(timeout=timeout))
            except Exception as exc:
                return got, type(exc).__name__

    q.put(asyncio.run(main()))


def blocked_send_report(name: str, q: Any) -> None:
    """send() with no timeout on a channel the parent filled; report how it ended."""
    with mapshare.Channel.open(name) as ch:
        try:
            ch.send(b"blocked" * 10)
            q.put("sent")
        except Exception as exc:
            q.put(type(exc).__name__)


# ---- normal exits ----------------------------------------------------------------------


def send_and_return(name: str, messages: list[bytes]) -> None:
    """A multiprocessing child that sends and returns, closing nothing explicitly."""
    ch = mapshare.Channel.open(name)
    for m in messages:
        ch.send(m)


def send_inherited_and_return(ch: Any, messages: list[bytes]) -> None:
    """A forked child that sends on the handle it inherited, then returns."""
    for m in messages:
        ch.send(m)


def echo_kinds(name: str, n: int) -> None:
    """Receive n messages of any kind from `name` and send each back, same kind, on
    `name + '.back'` (created here), then wait for it to be drained and remove it."""
    import numpy as np

    back_name = name + ".back"
    with mapshare.Channel.open(name) as ch, mapshare.Channel.create(back_name, 1 << 16) as back:
        try:
            for _ in range(n):
                m = ch.receive_any(timeout=60)
                if isinstance(m, bytes):
                    back.send(m)
                elif isinstance(m, np.ndarray):
                    back.send_array(m)
                else:
                    back.send_object(m)
            deadline = time.monotonic() + 60
            while back.statistics().queued_messages and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            back.unlink()


def big_ring_sender(name: str, sizes: list[int]) -> None:
    """Send one message per size, each tagged with its sequence number and a CRC, so the
    receiver can check order, integrity and that nothing is lost."""
    import zlib

    with mapshare.Channel.open(name, wait=10) as ch:
        for seq, n in enumerate(sizes):
            body = bytes([(seq * 7 + i) & 0xFF for i in range(256)]) * (n // 256 + 1)
            body = body[: max(0, n - 8)]
            ch.send(struct.pack("<II", seq, zlib.crc32(body)) + body, timeout=60)
