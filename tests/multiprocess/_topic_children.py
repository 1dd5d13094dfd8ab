"""Module-level child functions for the topic process and crash tests (importable under
'spawn').

Nothing here mocks anything: every function runs in a real child process against a real
topic in /dev/shm.  Children take names, never handles, so that they work under 'spawn'
and 'fork' alike.

The message format every test uses (a torn message cannot pass it):

    <publisher id u32> <counter u32> <body length u32> <crc32 u32> body

where the crc covers the first three fields and the body, and the body is a slice of a
pool of random bytes picked by (publisher, counter), so that two different messages of
the same length differ almost everywhere.
"""

from __future__ import annotations

import mmap
import os
import random
import signal
import struct
import sys
import time
import zlib
from typing import Any, Optional

import mapshare

WINDOWS = sys.platform == "win32"

HEAD = struct.Struct("<IIII")
POOL_SIZE = 1 << 16
POOL = random.Random(20261201).randbytes(POOL_SIZE + (1 << 20))

# csrc/layout.h: the topic's control block (ms_topic) is the header's kind area; the
# subscriber table and the ring are in the user area, which starts at HEADER_SIZE.
KIND_AREA = 1024
USER_AREA = mapshare._core.HEADER_SIZE
# ms_topic field offsets (line 0 geometry, line 1 the publisher's, line 3 counters)
OFF_CAPACITY, OFF_MAX_MESSAGE, OFF_RING_OFFSET, OFF_SUBS_OFFSET = 0, 8, 16, 24
OFF_MAX_SUBSCRIBERS, OFF_HISTORY, OFF_OVERFLOW = 32, 36, 40
OFF_TAIL, OFF_NEXT_SEQ, OFF_INTENT, OFF_HEAD, OFF_HEAD_SEQ, OFF_HEAD_GEN = (
    64, 72, 80, 88, 96, 104)
SUB_ENTRY = 64  # ms_topic_sub: pid u32, state u32, start, position, pos, received, ...


def message(pub: int, counter: int, n: int) -> bytes:
    """Message ``counter`` of publisher ``pub`` with an ``n``-byte body."""
    off = (counter * 7919 + pub * 104729) % POOL_SIZE
    body = POOL[off : off + n]
    head3 = struct.pack("<III", pub, counter, n)
    return HEAD.pack(pub, counter, n, zlib.crc32(body, zlib.crc32(head3))) + body


def check(msg: Any) -> Optional[tuple[int, int]]:
    """(publisher, counter) if ``msg`` (bytes or a buffer) is intact, None if torn."""
    mv = memoryview(msg)
    if len(mv) < HEAD.size:
        return None
    pub, counter, n, crc = HEAD.unpack_from(mv, 0)
    if len(mv) != HEAD.size + n:
        return None
    if zlib.crc32(mv[HEAD.size :], zlib.crc32(mv[:12])) != crc:
        return None
    return pub, counter


def _error_name(exc: BaseException) -> str:
    return type(exc).__name__


# ---- publishers -----------------------------------------------------------------------


def publish_count(name: str, pub: int, count: int, size: int, ready: Any = None) -> None:
    """Open the topic, publish ``count`` messages of body ``size``, return normally."""
    with mapshare.Topic.open(name) as t:
        if ready is not None:
            ready.set()
        for i in range(count):
            t.publish(message(pub, i, size), timeout=60)


def publish_until(
    name: str, pub: int, stop: Any, ready: Any, lo: int, hi: int, q: Any = None,
    progress: Any = None,
) -> None:
    """Publish messages with bodies of ``lo``..``hi`` bytes as fast as possible until
    ``stop`` is set; report how many on ``q``.  ``progress`` (a RawValue) is kept at the
    number published, so that a parent can see the publisher is past a point."""
    rng = random.Random(pub)
    sizes = [rng.randint(lo, hi) for _ in range(4096)]
    with mapshare.Topic.open(name) as t:
        ready.set()
        i = 0
        while not stop.is_set():
            for _ in range(64):
                t.publish(message(pub, i, sizes[i & 4095]), timeout=60)
                i += 1
            if progress is not None:
                progress.value = i
        if q is not None:
            q.put(i)


def publish_then_wait(name: str, pub: int, count: int, size: int, ready: Any) -> None:
    """Publish ``count`` messages, say so, then sleep until killed."""
    with mapshare.Topic.open(name) as t:
        for i in range(count):
            t.publish(message(pub, i, size))
        ready.set()
        time.sleep(600)


def publish_then_hold_loan(name: str, pub: int, count: int, ready: Any) -> None:
    """Publish ``count`` messages, take a loan and write half of it, say so, then sleep
    (holding the loan and so the publish lock) until killed."""
    with mapshare.Topic.open(name) as t:
        for i in range(count):
            t.publish(message(pub, i, 1000 + 100 * i))
        msg = message(pub, count, 64 * 1024)
        loan = t.loan(len(msg))
        with loan as buf:
            buf[: len(msg) // 2] = msg[: len(msg) // 2]
            ready.set()
            time.sleep(600)


def publish_large_until_killed(name: str, pub: int, ready: Any, phase: Any) -> None:
    """Publish large messages (32..256 KiB) forever, one in three through a loan written
    in eight pieces; ``phase`` says where it is: 1 inside publish(), 2 inside a loan's
    block, 0 in between (the parent kills it at a random moment and reads the phase).
    The 64 messages are built before ``ready`` and published in a cycle, so that nearly
    all of the time goes to publishing, and a kill lands mid-write."""
    rng = random.Random(pub)
    msgs = [message(pub, i, rng.randint(32 * 1024, 256 * 1024)) for i in range(64)]
    with mapshare.Topic.open(name) as t:
        ready.set()
        i = 0
        while True:
            msg = msgs[i & 63]
            if i % 3 == 2:
                with t.loan(len(msg)) as buf:
                    phase.value = 2  # the loan is held from here to its commit
                    step = len(msg) // 8 + 1
                    for off in range(0, len(msg), step):
                        buf[off : off + step] = msg[off : off + step]
            else:
                phase.value = 1
                t.publish(msg, timeout=60)
            phase.value = 0
            i += 1


# ---- subscribers ----------------------------------------------------------------------


def subscribe_and_read(
    name: str, start: Any, ready: Any, go: Any, q: Any, timeout: float,
    stop_self: bool = False, limit: Optional[int] = None,
) -> None:
    """Subscribe at ``start``, set ``ready``; wait for ``go`` (if given; with
    ``stop_self`` the parent SIGSTOPs us instead); then receive until a receive times
    out (or ``limit`` messages), and report what happened:

    {"pid", "first_position", "msgs": [(pub, counter, seq)], "lags": [(index, missed,
    position)], "bad": n torn, "missed", "received", "position", "end": exception}.
    """
    out: dict[str, Any] = {"pid": os.getpid(), "msgs": [], "lags": [], "bad": 0}
    try:
        with mapshare.Topic.open(name) as t, t.subscribe(start=start) as sub:
            out["first_position"] = sub.position
            ready.set()
            if go is not None:
                go.wait(120)
            while limit is None or len(out["msgs"]) < limit:
                try:
                    msg = sub.receive(timeout=timeout)
                except mapshare.Lagged as lag:
                    out["lags"].append((len(out["msgs"]), lag.missed, lag.position))
                    continue
                except mapshare.WaitTimeout:
                    out["end"] = "WaitTimeout"
                    break
                ok = check(msg)
                if ok is None:
                    out["bad"] += 1
                else:
                    out["msgs"].append((ok[0], ok[1], sub.position - 1))
            out.setdefault("end", "limit")
            out["missed"] = sub.missed
            out["received"] = sub.received
            out["position"] = sub.position
    except Exception as exc:
        out["end"] = _error_name(exc)
        out["error"] = str(exc)
    q.put(out)


def subscribe_and_hold(name: str, start: Any, ready: Any, mode: str) -> None:
    """Subscribe and never read: sleep until killed (``mode`` 'sleep'), or hold a view
    of the first message until killed ('view')."""
    with mapshare.Topic.open(name) as t, t.subscribe(start=start) as sub:
        if mode == "view":
            with sub.receive_view(timeout=120):
                ready.set()
                time.sleep(600)
        ready.set()
        time.sleep(600)


def subscribe_until_told(
    name: str, start: Any, ready: Any, close_now: Any, reads: int, q: Any = None
) -> None:
    """Subscribe, read ``reads`` messages, set ``ready``; when ``close_now`` is set,
    close the subscriber (timing the close on ``q``), then keep the topic open a moment."""
    with mapshare.Topic.open(name) as t:
        sub = t.subscribe(start=start)
        for _ in range(reads):
            sub.receive(timeout=60)
        ready.set()
        close_now.wait(120)
        sub.close()
        if q is not None:
            q.put(time.monotonic())
        time.sleep(0.5)


def read_forever_killable(name: str, ready: Any, phase: Any, use_views: bool) -> None:
    """Receive forever (receive(), and views held a little if ``use_views``), catching
    Lagged; the parent kills it at random.  ``phase``: 1 receiving, 2 inside a view."""
    with mapshare.Topic.open(name) as t, t.subscribe() as sub:
        ready.set()
        i = 0
        while True:
            i += 1
            try:
                if use_views and i % 2:
                    with sub.receive_view(timeout=60) as v:
                        phase.value = 2
                        check(v)
                else:
                    phase.value = 1
                    sub.receive(timeout=60)
            except mapshare.Lagged:
                pass
            phase.value = 0


def late_joiner(name: str, q: Any) -> None:
    """Open the topic in a fresh process and replay its history without waiting."""
    out: dict[str, Any] = {"msgs": []}
    try:
        with mapshare.Topic.open(name) as t, t.subscribe(start="history") as sub:
            out["first_position"] = sub.position
            while True:
                try:
                    msg = sub.receive_nowait()
                except mapshare.TopicEmpty:
                    break
                ok = check(msg)
                out["msgs"].append(None if ok is None else (ok[0], ok[1], sub.position - 1))
        out["end"] = "empty"
    except Exception as exc:
        out["end"] = _error_name(exc)
        out["error"] = str(exc)
    q.put(out)


# ---- normal exits ---------------------------------------------------------------------


def subscriber_returns(name: str, pub: bool) -> None:
    """A multiprocessing child that subscribes (and publishes, if ``pub``), reads what
    there is, and returns with everything still open: the exit path must leave cleanly."""
    t = mapshare.Topic.open(name)
    sub = t.subscribe(start=0)
    if pub:
        t.publish(message(9, 0, 10))
    sub.receive(timeout=30)
    globals()["_keep"] = (t, sub)  # alive until the process ends


EXIT_SCRIPT = """
import os, sys, mapshare
how = sys.argv[2]
t = mapshare.Topic.open(sys.argv[1])
sub = t.subscribe(start=0)
t.publish(b"from %d" % os.getpid())
sub.receive(timeout=30)
print("READY", flush=True)
if how == "end":
    pass
elif how == "exit":
    sys.exit(3)
elif how == "raise":
    raise RuntimeError("an uncaught exception ends the script")
elif how == "gc":
    del sub, t
    import gc; gc.collect()
    sys.stdin.read()
elif how == "_exit":
    os._exit(0)
elif how == "kill":
    os.kill(os.getpid(), 9)
"""


# ---- corruption -----------------------------------------------------------------------


def shm_path(name: str) -> str:
    from mapshare import _naming

    return "/dev/shm" + _naming.os_name(name)


def poke(name: str, offset: int, data: bytes) -> None:
    """Write ``data`` at ``offset`` of the object behind ``name`` through a raw mapping
    of /dev/shm (no mapshare call at all)."""
    fd = os.open(shm_path(name), os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        with mmap.mmap(fd, size) as m:
            m[offset : offset + len(data)] = data
    finally:
        os.close(fd)


def scribble(name: str, seconds: float, seed: int, lo: int, hi: int) -> None:
    """Write random bytes (1..64 at a time) at random offsets in [lo, hi) of the object
    for ``seconds``."""
    rng = random.Random(seed)
    fd = os.open(shm_path(name), os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        hi = min(hi, size)
        with mmap.mmap(fd, size) as m:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                for _ in range(200):
                    off = rng.randrange(lo, hi)
                    n = min(rng.randint(1, 64), hi - off)
                    m[off : off + n] = rng.randbytes(n)
                time.sleep(0.0002)
    finally:
        os.close(fd)


def loop_catching(name: str, seconds: float, q: Any, started: Any) -> None:
    """For ``seconds``: publish_nowait, receive(timeout=0.01) and a view in turn, and
    subscribe anew now and then, catching every MapshareError; report the outcomes."""
    outcomes: dict[str, int] = {}

    def count(key: str) -> None:
        outcomes[key] = outcomes.get(key, 0) + 1

    with mapshare.Topic.open(name) as t:
        sub: Any = t.subscribe(start="history")
        started.set()
        end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < end:
            i += 1
            try:
                t.publish_nowait(b"s" * ((i * 7) % 300))
                count("ok")
            except mapshare.MapshareError as exc:
                count(_error_name(exc))
            if sub is not None:
                try:
                    if i % 2:
                        with sub.receive_view(timeout=0.01) as v:
                            bytes(v[:16])
                    else:
                        sub.receive(timeout=0.01)
                    count("ok")
                except mapshare.MapshareError as exc:
                    count(_error_name(exc))
            if i % 50 == 0 or sub is None:
                try:
                    if sub is not None:
                        sub.close()
                    sub = None
                    sub = t.subscribe(start=random.choice(["live", "history", i]))
                    count("ok")
                except mapshare.MapshareError as exc:
                    count(_error_name(exc))
            try:
                t.statistics()
            except mapshare.MapshareError as exc:
                count(_error_name(exc))
        try:
            if sub is not None:
                sub.close()
        except mapshare.MapshareError:
            pass
    q.put(outcomes)


def expect_error(name: str, what: str, q: Any) -> None:
    """In a fresh process: open the topic and do one thing (``what``: 'open',
    'history' (subscribe at start="history" and receive until a 1 s timeout), 'live'
    (the same from start=0), 'publish' (one 16-byte message), 'statistics');
    report (outcome, detail, messages received)."""
    got: list[bytes] = []
    try:
        with mapshare.Topic.open(name) as t:
            if what == "publish":
                t.publish(b"x" * 16, timeout=5)
            elif what == "statistics":
                t.statistics()
            elif what != "open":
                with t.subscribe(start="history" if what == "history" else 0) as sub:
                    while len(got) < 10:
                        got.append(sub.receive(timeout=1))
        q.put(("ok", "", got))
    except Exception as exc:
        q.put((_error_name(exc), str(exc), got))


def stop_self() -> None:
    os.kill(os.getpid(), signal.SIGSTOP)


STOP_PUB = 999  # a message of this publisher id ends read_until_stop


def read_until_stop(name: str, ready: Any, q: Any) -> None:
    """Subscribe live, set ``ready``, receive (catching Lagged) until a message of
    publisher STOP_PUB; report like subscribe_and_read."""
    out: dict[str, Any] = {"pid": os.getpid(), "msgs": [], "lags": [], "bad": 0}
    try:
        with mapshare.Topic.open(name) as t, t.subscribe() as sub:
            out["first_position"] = sub.position
            ready.set()
            while True:
                try:
                    msg = sub.receive(timeout=120)
                except mapshare.Lagged as lag:
                    out["lags"].append((len(out["msgs"]), lag.missed, lag.position))
                    continue
                ok = check(msg)
                if ok is None:
                    out["bad"] += 1
                    continue
                out["msgs"].append((ok[0], ok[1], sub.position - 1))
                if ok[0] == STOP_PUB:
                    break
            out["end"] = "stop"
            out["missed"] = sub.missed
            out["received"] = sub.received
            out["position"] = sub.position
    except Exception as exc:
        out["end"] = _error_name(exc)
        out["error"] = str(exc)
    q.put(out)


def read_origins(name: str, ready: Any, go: Any, q: Any, until_received: int,
                 until_missed: int) -> None:
    """Subscribe live, set ``ready``, wait for ``go``; then (not reading meanwhile, so
    that a lap can happen) receive until ``until_received`` messages and
    ``until_missed`` missed are counted, and report
    {"events": [("msg", bytes, origin tuple or None) | ("lagged", missed, upstream,
    position)], "received", "missed", "upstream"} (issue 14's origins and loss records)."""
    out: dict[str, Any] = {"events": []}
    try:
        with mapshare.Topic.open(name) as t, t.subscribe() as sub:
            ready.set()
            go.wait(120)
            while sub.received < until_received or sub.missed < until_missed:
                try:
                    m = sub.receive(timeout=60)
                except mapshare.Lagged as lag:
                    out["events"].append(("lagged", lag.missed, lag.upstream, lag.position))
                    continue
                o = sub.last_origin
                out["events"].append(("msg", m, None if o is None else tuple(o)))
            out["received"], out["missed"] = sub.received, sub.missed
            out["upstream"] = sub.upstream_missed
    except Exception as exc:
        out["end"] = _error_name(exc)
        out["error"] = str(exc)
    q.put(out)


def publish_with_origins(name: str, host: str, n: int) -> None:
    """Publish ``n`` messages with origins (``host``, i), a loss record of 3 after each
    fifth, then exit normally (issue 14: a bridge in another process)."""
    with mapshare.Topic.open(name) as t:
        for i in range(n):
            t.publish(f"m{i}".encode(), origin=mapshare.Origin(host, i))
            if i % 5 == 4:
                t.publish_loss(3, origin=mapshare.Origin(host, i + 1))
