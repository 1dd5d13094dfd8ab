"""C and Python together: a C program built against the public header
(include/mapshare.h) and its library talks to Python processes through segments,
channels, locks, events and semaphores; either side is SIGKILLed asleep, mid-send and
holding a lock while the other goes on; and C and Python senders and receivers share one
channel under stress.

The C peer is tests/c_interop/peer.c, one program with a sub-command per role (its
header comment lists them), compiled once per session into a temporary directory.  It
says what it did on stdout, one line per fact, and "ready" when it reached the state a
test waits for (a held loan, a held lock); it exits non-zero with the reason on stderr
when anything is not as expected.  The Python peers are in _c_interop_children.py.
"""

from __future__ import annotations

import os
import random
import selectors
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any, Optional

import _c_interop_children as xc
import _channel_children as chc
import pytest

import mapshare
from mapshare import Channel, Event, Lock, Segment, Semaphore, _naming
from mapshare.testing import remove
from support import mp_context, stop

pytestmark = pytest.mark.posix_only("the C peer is built with a native compiler and killed "
                                    "with SIGKILL")

ROOT = Path(__file__).resolve().parents[2]
JOIN = 120  # seconds: bounds a hang, never a speed assertion
CTX = mp_context("fork") if sys.platform != "win32" else None
# The C side (compiler, make, the peer) runs without the sanitizer build's LD_PRELOAD of
# libasan (tools/sanitize.sh): none of it is instrumented.
C_ENV = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}


# ---- the C peer ------------------------------------------------------------------------


def _compiler() -> Optional[str]:
    """$CC if it is a program on PATH, else gcc, else cc, else None."""
    for cc in (os.environ.get("CC"), "gcc", "cc"):
        if cc and shutil.which(cc):
            return cc
    return None


@pytest.fixture(scope="session")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/c_interop/peer.c compiled against include/mapshare.h and libmapshare, both
    built from this checkout into a temporary directory (once per session)."""
    if sys.platform == "win32":
        pytest.skip("the C peer needs POSIX (SIGKILL, pause) and a native compiler")
    cc = _compiler()
    if cc is None:
        pytest.skip("no C compiler (gcc or cc, or $CC) on PATH: the C peer cannot be built")
    if shutil.which("make") is None:
        pytest.skip("no make on PATH: libmapshare is built by 'make lib' (docs/c-api.md)")
    return build_peer(cc, tmp_path_factory.mktemp("c_interop"))


def build_peer(cc: str, out: Path) -> Path:
    """Build the library with its documented command (``make lib BUILD=...``) and the
    peer against the public header only, as strict C99: with a compiler present, a
    header or library that does not build is a failure, not a skip."""
    def run(cmd: list[str]) -> None:
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False,
                           timeout=600, env=C_ENV)
        assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout}{r.stderr}"

    run(["make", "-s", "lib", f"BUILD={out}", f"CC={cc}"])
    exe = out / "peer"
    run([cc, "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-O1", "-g",
         "-I", str(ROOT / "include"), str(ROOT / "tests" / "c_interop" / "peer.c"),
         str(out / "libmapshare.a"), "-lpthread", "-lrt", "-o", str(exe)])
    return exe


class Peer:
    """A running C peer: its stdout read line by line with a deadline."""

    def __init__(self, exe: Path, *args: object) -> None:
        self.args = [str(exe), *map(str, args)]
        self.proc = subprocess.Popen(self.args, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=C_ENV)
        assert self.proc.stdout is not None
        self._fd = self.proc.stdout.fileno()
        self._buf = b""
        self.lines: list[str] = []

    def line(self, timeout: float = JOIN) -> str:
        """The next line of its stdout (AssertionError at the deadline or at its end)."""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self._fd, selectors.EVENT_READ)
            while b"\n" not in self._buf:
                left = deadline - time.monotonic()
                assert left > 0, f"{self.args}: no line within {timeout} s"
                if sel.select(left):
                    chunk = os.read(self._fd, 65536)
                    assert chunk, f"{self.args} ended: {self.finish(check=False)}"
                    self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        text = line.decode()
        self.lines.append(text)
        return text

    def expect(self, text: str, timeout: float = JOIN) -> None:
        got = self.line(timeout)
        assert got == text, f"{self.args}: expected {text!r}, got {got!r}"

    def tell(self, text: str) -> None:
        """Write a line to its stdin."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(JOIN)
        assert self.proc.returncode == -signal.SIGKILL
        self._close()

    def finish(self, check: bool = True) -> list[str]:
        """Wait for it to exit; the rest of its stdout as lines.  check: assert it
        exited 0 (with its stderr in the message)."""
        out, err = self.proc.communicate(timeout=JOIN)  # closes its stdin
        rest = (self._buf + out).decode().splitlines()
        self._buf = b""
        self.lines += rest
        if check:
            assert self.proc.returncode == 0, (
                f"{self.args} exited {self.proc.returncode}: {err.decode()}")
        return rest

    def _close(self) -> None:
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()

    def stop(self) -> None:
        """Kill it if it still runs (test clean-up)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(JOIN)
        self._close()


@pytest.fixture
def start(peer: Path) -> Iterator[Any]:
    """start(*args) runs the C peer with those arguments; whatever still runs at the end
    of the test is killed."""
    running: list[Peer] = []

    def go(*args: object) -> Peer:
        p = Peer(peer, *args)
        running.append(p)
        return p

    yield go
    for p in running:
        p.stop()


def until(cond: Any, what: str, timeout: float = JOIN) -> None:
    """Poll cond() until it is true; AssertionError naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def raw_waiters(ch: Channel) -> tuple[int, int]:
    """(receive_waiters, send_waiters) as the header stores them: the counts a sender and
    a receiver read to decide on a wake-up system call (statistics() repairs them first,
    so it would hide what these tests look at)."""
    extra = ch.segment.info().extra
    return extra["receive_waiters"], extra["send_waiters"]


# ---- data both ways ----------------------------------------------------------------------


def test_segment_both_ways(start: Any, names: Any) -> None:
    """Python creates a segment and writes; C opens it by name, waits for the change
    notification, reads, creates a segment of its own with a reply and notifies; Python
    opens that, reads the reply, answers in the first segment; C reads the answer."""
    a, b = names(), names()
    data = bytes(random.Random(1).randrange(256) for _ in range(3000))
    with Segment.create(a, 8192) as seg:
        c = start("segment", a, b)
        seg.buf[0:4] = struct.pack("<I", len(data))
        seg.buf[4 : 4 + len(data)] = data
        seg.notify()
        with Segment.open(b, wait=JOIN) as reply:
            assert reply.wait_for_change(0, timeout=JOIN) != 0
            (n,) = struct.unpack_from("<I", reply.buf, 0)
            # the C peer's reply: the bytes it read, reversed, and the size it saw
            assert n == len(data)
            assert bytes(reply.buf[4 : 4 + n]) == data[::-1]
            assert reply.size == 4096
            seen = seg.change_count
            seg.buf[0:4] = struct.pack("<I", 3)
            seg.buf[4:7] = b"ack"
            seg.notify()
            assert seg.change_count == seen + 1
            assert c.finish() == [f"read {len(data)}", "acked"]


def test_long_names_meet(start: Any, names: Any) -> None:
    """Names longer than 20 characters (whose OS names carry a hash) mean the same object
    in both languages: C computes the same OS names, opens Python's segment by its long
    name and creates one under another long name that Python opens."""
    a, b = names() + "-a-rather-long-name-1", names() + "-a-rather-long-name-22"
    c = start("os-name", a, b, "short")
    assert c.finish() == [_naming.os_name(a), _naming.os_name(b), _naming.os_name("short")]
    assert "~" in _naming.os_name(a)  # hashed: the case a C program could not open before
    try:
        with Segment.create(a, 4096) as seg:
            c = start("segment", a, b)
            seg.buf[0:4] = struct.pack("<I", 5)
            seg.buf[4:9] = b"hello"
            seg.notify()
            with Segment.open(b, wait=JOIN) as reply:
                reply.wait_for_change(0, timeout=JOIN)
                assert bytes(reply.buf[0:9]) == struct.pack("<I", 5) + b"olleh"
                assert reply.name == b
                seg.buf[0:7] = struct.pack("<I", 3) + b"ack"
                seg.notify()
                assert c.finish() == ["read 5", "acked"]
    finally:
        remove([_naming.os_name(a), _naming.os_name(b)])  # after a failure only


def echo_messages(seed: int, n: int, max_message: int) -> list[bytes]:
    """Messages whose sizes sweep 0..~1.5 KiB (every record size modulo 8, so the ring
    wraps at every offset and pads often), plus an empty one and one of the largest size
    the C side's echo channel can carry back (its reply is 2 bytes longer)."""
    rng = random.Random(seed)
    msgs = [rng.randbytes(rng.choice([0, 1, 7, 8, 9, 100, 1000, 1500]) + rng.randrange(8))
            for _ in range(n)]
    msgs[n // 2] = b""
    msgs[n // 3] = rng.randbytes(max_message - 2)
    return msgs


def test_channel_both_ways(start: Any, names: Any) -> None:
    """Python sends through a small channel (wrap-around, padding, an empty message, a
    message as large as the reply channel takes) and closes it; C receives each one
    (copied and viewed in turn) until the end of stream and sends it back prefixed through
    a channel it created (sent and loaned in turn), then closes that one; Python gets the
    same messages back, in order, then the end of stream."""
    to_c, from_c = names(), names()
    with Channel.create(to_c, 4096) as ch:
        msgs = echo_messages(2, 600, min(ch.max_message, 4096 - 64))
        c = start("chan-echo", to_c, from_c, 4096)
        back = Channel.open(from_c, wait=JOIN)
        sent: list[BaseException] = []

        def send_all() -> None:
            try:
                for m in msgs:
                    ch.send(m, timeout=JOIN)
                ch.close_sending()
            except BaseException as exc:  # reported by the test thread below
                sent.append(exc)

        t = threading.Thread(target=send_all)
        t.start()
        try:
            got = [bytes(m) for m in back]  # until C's close_sending, drained
        finally:
            t.join(JOIN)
            back.close()
        assert not sent, sent
        assert c.finish() == [f"echoed {len(msgs)}"]
        assert len(got) == len(msgs)
        for i, (g, m) in enumerate(zip(got, msgs)):
            assert g == b"C>" + m, f"message {i} ({len(m)} bytes) came back wrong"
        s = ch.statistics()
        assert s.received_messages == len(msgs) and s.queued_messages == 0
        assert s.closed


@pytest.mark.parametrize("which", ["named", "segment"])
def test_lock_shared_by_c_and_python(start: Any, names: Any, which: str) -> None:
    """A counter in a segment, incremented N times by C and N times by Python, each
    read-yield-write under one lock (a named Lock, or the segment's built-in lock:
    Python's seg.lock(), C's mapshare_lock_acquire on the segment): nothing lost (without
    the lock, the yield between read and write loses updates)."""
    n = 3000
    lname, sname = names(), names()
    with Segment.create(sname, 64) as seg, closing(
        Lock.create(lname) if which == "named" else seg.lock()
    ) as lock:
        c = start("lock-count", lname if which == "named" else "-", sname, n)
        for _ in range(n):
            with lock:
                (v,) = struct.unpack_from("<Q", seg.buf, 0)
                os.sched_yield()
                struct.pack_into("<Q", seg.buf, 0, v + 1)
        assert c.finish() == [f"counted {n}"]
        assert struct.unpack_from("<Q", seg.buf, 0)[0] == 2 * n
        assert not lock.locked()


def test_event_ping_pong(start: Any, names: Any) -> None:
    """Python sets PING and waits for PONG; C waits for PING, clears it, sets PONG:
    500 rounds, each wake-up crossing the language boundary."""
    n = 500
    a, b = names(), names()
    with closing(Event.create(a)) as ping, closing(Event.create(b)) as pong:
        c = start("event-pingpong", a, b, n)
        for i in range(n):
            ping.set()
            assert pong.wait(JOIN), f"round {i}: no pong"
            pong.clear()
        assert c.finish() == [f"rounds {n}"]
        assert not ping.is_set() and not pong.is_set()


def test_semaphore_units_cross_both_ways(start: Any, names: Any) -> None:
    """C releases 5 units, Python takes exactly 5 (a sixth is not there); Python releases
    5, C takes exactly 5 (its sixth try times out)."""
    n = 5
    sname = names()
    with closing(Semaphore.create(sname, 0, maximum=10)) as sem:
        c = start("semaphore", sname, n)
        c.expect(f"released {n}")
        for i in range(n):
            assert sem.acquire(timeout=JOIN), f"unit {i} from C missing"
        assert not sem.acquire(timeout=0)
        sem.release(n)
        c.tell("go")
        assert c.finish() == [f"acquired {n} value 0"]
        assert not sem.acquire(timeout=0)


# ---- a C peer SIGKILLed -----------------------------------------------------------------


def test_c_receiver_killed_asleep(start: Any, name: str) -> None:
    """A C receiver SIGKILLed asleep in a receive leaves its count in the waiter count;
    Python's traffic notices it (no permanent wake-up system call per send: the stored
    count returns to 0) and nothing is lost: the next sleeper, C or Python, wakes for the
    next message."""
    with Channel.create(name, 4096) as ch:
        ch.send(b"keep me registered")  # a live sender: the receivers see no broken channel
        ch.receive()
        victim = start("receive-forever", name)
        until(lambda: raw_waiters(ch)[0] == 1, "the C receiver to sleep")
        victim.kill()
        assert raw_waiters(ch)[0] == 1  # the header still counts the dead sleeper
        for i in range(100):
            ch.send(b"%d" % i)
            assert ch.receive() == b"%d" % i
        assert raw_waiters(ch) == (0, 0)
        # no lost wake-up: a new C sleeper gets the next message
        c = start("receive-forever", name)
        until(lambda: raw_waiters(ch)[0] == 1, "the second C receiver to sleep")
        ch.send(b"wake up")
        assert c.finish() == ["got " + b"wake up".hex()]
        assert raw_waiters(ch) == (0, 0)
        assert ch.statistics().queued_messages == 0


def test_c_sender_killed_asleep(start: Any, name: str) -> None:
    """A C sender SIGKILLed asleep in a send to a full channel: Python's receiving traffic
    takes it out of the stored send-waiter count, and a new C sender asleep on the full
    channel is woken by the next receive and delivers its message whole."""
    with Channel.create(name, 4096) as ch:
        fill = b"f" * (ch.max_message - 64)
        ch.send(fill)
        victim = start("send-forever", name, 1000)
        until(lambda: raw_waiters(ch)[1] == 1, "the C sender to sleep")
        victim.kill()
        assert raw_waiters(ch)[1] == 1
        assert ch.receive() == fill
        for i in range(100):
            ch.send(b"%d" % i)
            assert ch.receive() == b"%d" % i
        assert raw_waiters(ch) == (0, 0)
        ch.send(fill)
        c = start("send-forever", name, 1000)
        until(lambda: raw_waiters(ch)[1] == 1, "the second C sender to sleep")
        assert ch.receive(timeout=JOIN) == fill
        c.expect("sent 1000")
        assert ch.receive(timeout=JOIN) == b"\xab" * 1000
        assert c.finish() == []
        with pytest.raises(mapshare.ChannelEmpty):
            ch.receive_nowait()


def test_c_sender_killed_holding_a_half_written_loan(start: Any, name: str) -> None:
    """A C sender SIGKILLed with a loan half written: Python never sees any of it, its
    next send recovers the send lock and goes through, and the loan counts as abandoned."""
    with Channel.create(name, 8192) as ch:
        ch.send(b"before")
        victim = start("hold-loan", name, 3000)
        victim.expect("ready")
        assert ch.statistics().queued_messages == 1  # the loan is not visible
        victim.kill()
        ch.send(b"after", timeout=JOIN)
        assert ch.receive(timeout=JOIN) == b"before"
        assert ch.receive(timeout=JOIN) == b"after"
        with pytest.raises(mapshare.ChannelEmpty):
            ch.receive_nowait()
        s = ch.statistics()
        assert (s.abandoned, s.sent_messages, s.received_messages) == (1, 2, 2)
        for i in range(50):  # and the ring goes on working across its end
            ch.send(bytes([i]) * 700)
            assert ch.receive() == bytes([i]) * 700


def test_c_senders_killed_at_random_moments(start: Any, name: str) -> None:
    """20 C senders, each SIGKILLed at a random moment of a stream of checksummed
    messages (some sent by copy, some through loans) while Python receives on a thread:
    nothing torn or foreign arrives, each killed sender's messages are a gap-free prefix
    of its stream in order, and a Python send after each kill goes through."""
    kills = 20
    rng = random.Random(13)
    got: dict[int, list[int]] = {}
    bad: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()
    with Channel.create(name, 32 * 1024) as ch:
        ch.send(xc.stress_message(1, 0))  # a live sender: a dead one never breaks it

        def receive_all() -> None:
            try:
                while True:
                    try:
                        msg = ch.receive(timeout=0.05)
                    except mapshare.WaitTimeout:
                        if done.is_set():
                            return
                        continue
                    key = xc.stress_check(msg)
                    if key is None:
                        bad.append(len(msg))
                    else:
                        got.setdefault(key[0], []).append(key[1])
            except BaseException as exc:
                errors.append(exc)

        t = threading.Thread(target=receive_all)
        t.start()
        try:
            for i in range(kills):
                before = ch.statistics().sent_messages
                c = start("stress-send", name, 100 + i, 10**7)
                until(lambda b=before: ch.statistics().sent_messages > b + 10,
                      "the C sender to send")
                time.sleep(rng.uniform(0, 0.02))
                c.kill()
                ch.send(xc.stress_message(1, i + 1), timeout=JOIN)
        finally:
            until(lambda: ch.statistics().queued_messages == 0, "the queue to drain")
            done.set()
            t.join(JOIN)
        s = ch.statistics()
    assert not errors, errors
    assert not bad, f"torn or foreign messages of sizes {bad[:10]}"
    assert got.pop(1) == list(range(kills + 1))  # every probe, in order
    assert sorted(got) == [100 + i for i in range(kills)]
    for sender, seqs in got.items():
        assert seqs == list(range(len(seqs))), f"C sender {sender}: gap or disorder"
    assert s.abandoned <= kills
    assert s.received_messages == 1 + kills + sum(map(len, got.values()))


def test_c_receiver_killed_holding_a_view(start: Any, name: str) -> None:
    """A C receiver SIGKILLed while it holds a received message in a view (not yet
    consumed): the message is offered again, whole, to the next receiver (Python), once."""
    with Channel.create(name, 8192) as ch:
        msg = bytes(range(256)) * 10
        ch.send(msg)
        ch.send(b"second")
        victim = start("hold-view", name)
        assert victim.line() == "viewing " + msg.hex()
        victim.expect("ready")
        victim.kill()
        assert ch.receive(timeout=JOIN) == msg
        assert ch.receive(timeout=JOIN) == b"second"
        with pytest.raises(mapshare.ChannelEmpty):
            ch.receive_nowait()
        assert ch.statistics().redelivered == 1


def test_c_holder_killed_holding_the_lock(start: Any, names: Any) -> None:
    """A C process SIGKILLed holding a named lock halfway through an update: Python's
    acquire gets the lock with OwnerDiedError, repairs, releases; then the lock is an
    ordinary lock again for both languages."""
    lname, sname = names(), names()
    with closing(Lock.create(lname)) as lock, Segment.create(sname, 64) as seg:
        victim = start("hold-lock", lname, sname)
        victim.expect("ready")
        assert not lock.acquire(timeout=0)  # really held
        victim.kill()
        with pytest.raises(mapshare.OwnerDiedError) as info:
            lock.acquire(timeout=JOIN)
        assert info.value.lock is not None
        assert lock.locked()  # acquired with the error
        assert struct.unpack_from("<QQ", seg.buf, 0) == (1, 0)  # the half-written update
        struct.pack_into("<Q", seg.buf, 8, 1)
        lock.release()
        assert lock.acquire(timeout=JOIN)  # no error now
        lock.release()
        c = start("lock-count", lname, sname, 10)
        assert c.finish() == ["counted 10"]
        assert struct.unpack_from("<Q", seg.buf, 0)[0] == 11


# ---- a Python peer SIGKILLed, C surviving -------------------------------------------------


def test_python_receiver_killed_asleep_c_recovers(start: Any, name: str) -> None:
    """A Python receiver SIGKILLed asleep: the C peer's traffic repairs the waiter count
    (the stored count returns to 0), and a C sleeper then wakes for Python's message."""
    assert CTX is not None
    with Channel.create(name, 4096) as ch:
        ch.send(b"keep me registered")
        ch.receive()
        victim = CTX.Process(target=xc.receive_forever, args=(name,))
        try:
            victim.start()
            until(lambda: raw_waiters(ch)[0] == 1, "the Python receiver to sleep")
            victim.kill()
            victim.join(JOIN)
            assert victim.exitcode == -signal.SIGKILL
        finally:
            stop([victim])
        assert raw_waiters(ch)[0] == 1
        c = start("traffic", name, 100)
        c.expect("traffic 100")
        assert raw_waiters(ch) == (0, 0)  # repaired by C's sends, not by a statistics read
        c.tell("quit")
        assert c.finish() == []
        c = start("receive-forever", name)
        until(lambda: raw_waiters(ch)[0] == 1, "the C receiver to sleep")
        ch.send(b"\x00\xff")
        assert c.finish() == ["got 00ff"]


def test_python_sender_killed_holding_a_half_written_loan_c_goes_on(
    start: Any, name: str
) -> None:
    """A Python sender SIGKILLed inside a loan it half wrote: the C peer's send recovers
    the send lock and goes through, C receives exactly the two complete messages, and
    counts the loan as abandoned."""
    assert CTX is not None
    with Channel.create(name, 8192) as ch:
        ch.send(b"before")
        ready = CTX.Event()
        victim = CTX.Process(target=xc.hold_half_written_loan, args=(name, 3000, ready))
        try:
            victim.start()
            assert ready.wait(JOIN)
            victim.kill()
            victim.join(JOIN)
            assert victim.exitcode == -signal.SIGKILL
        finally:
            stop([victim])
        c = start("send-after", name, "from C")
        assert c.finish() == [
            "got " + b"before".hex(), "got " + b"from C".hex(), "abandoned 1 queued 0",
        ]
        ch.send(b"python again", timeout=JOIN)
        assert ch.receive(timeout=JOIN) == b"python again"


def test_python_receiver_killed_holding_a_view_c_gets_it(start: Any, name: str) -> None:
    """A Python receiver SIGKILLed inside receive_view(): the C peer receives that message
    whole, then the rest, each once."""
    assert CTX is not None
    with Channel.create(name, 8192) as ch:
        msg = bytes(range(256)) * 10
        ch.send(msg)
        ch.send(b"second")
        ready, report = CTX.Event(), CTX.Queue()
        victim = CTX.Process(target=chc.hold_view, args=(name, ready, report))
        try:
            victim.start()
            assert ready.wait(JOIN)
            assert report.get(timeout=JOIN) == msg
            victim.kill()
            victim.join(JOIN)
        finally:
            stop([victim])
            report.close()
        c = start("send-after", name, "from C")
        assert c.finish() == [
            "got " + msg.hex(), "got " + b"second".hex(), "got " + b"from C".hex(),
            "abandoned 0 queued 0",
        ]
        assert ch.statistics().redelivered == 1


def test_python_holder_killed_holding_the_lock_c_goes_on(start: Any, names: Any) -> None:
    """A Python process SIGKILLed holding a named lock halfway through an update: the C
    peer's acquire returns MAPSHARE_E_OWNER_DIED with the lock held, it repairs and
    releases; then both languages use the lock normally."""
    assert CTX is not None
    lname, sname = names(), names()
    with closing(Lock.create(lname)) as lock, Segment.create(sname, 64) as seg:
        ready = CTX.Event()
        victim = CTX.Process(target=xc.hold_lock, args=(lname, sname, ready))
        try:
            victim.start()
            assert ready.wait(JOIN)
            victim.kill()
            victim.join(JOIN)
        finally:
            stop([victim])
        c = start("lock-after", lname, sname)
        assert c.finish() == ["owner died; pair 1 0", "acquired; pair 1 1"]
        assert lock.acquire(timeout=JOIN)  # no OwnerDiedError: C released it properly
        assert struct.unpack_from("<QQ", seg.buf, 0) == (1, 1)
        lock.release()


# ---- C and Python on one channel, under stress ------------------------------------------


def test_stress_c_and_python_senders_and_receivers(
    start: Any, name: str, tmp_path: Path
) -> None:
    """Two C and two Python senders, two C and two Python receivers on one 32 KiB channel
    (messages up to 4 KiB: it wraps and pads all the time; each sender sends every other
    message through a loan, each receiver takes every other one through a view).  Every message is
    checksummed; each is delivered exactly once; each receiver sees each sender's
    messages in the order they were sent."""
    assert CTX is not None
    per_sender = 1500
    c_senders, py_senders = [1, 2], [3, 4]
    outs = [tmp_path / f"recv{i}.txt" for i in range(4)]
    with Channel.create(name, 32 * 1024) as ch:
        receivers_c = [start("stress-receive", name, outs[i]) for i in (0, 1)]
        receivers_py = [CTX.Process(target=xc.stress_receiver, args=(name, str(outs[i])))
                        for i in (2, 3)]
        senders_py = [CTX.Process(target=xc.stress_sender, args=(name, s, per_sender))
                      for s in py_senders]
        procs = receivers_py + senders_py
        try:
            for p in procs:
                p.start()
            senders_c = [start("stress-send", name, s, per_sender) for s in c_senders]
            for c in senders_c:
                assert c.finish() == [f"sent {per_sender}"]
            for p in senders_py:
                p.join(JOIN)
                assert p.exitcode == 0
            ch.close_sending()  # every sender is done: the end of the stream
            counts = [int(c.finish()[0].split()[1]) for c in receivers_c]
            for p in receivers_py:
                p.join(JOIN)
                assert p.exitcode == 0
        finally:
            stop(procs)
        s = ch.statistics()

    total = per_sender * 4
    seen: dict[int, list[int]] = {}
    for i, out in enumerate(outs):
        lines = out.read_text().splitlines()
        if i < 2:
            assert len(lines) == counts[i]
        bad = [line for line in lines if line.startswith("BAD")]
        assert not bad, f"receiver {i}: {bad[:5]}"
        per: dict[int, list[int]] = {}
        for line in lines:
            sender, seq = map(int, line.split())
            per.setdefault(sender, []).append(seq)
        for sender, seqs in per.items():
            assert seqs == sorted(seqs), f"receiver {i} saw sender {sender} out of order"
            seen.setdefault(sender, []).extend(seqs)
        assert lines, f"receiver {i} got nothing (no contention tested)"
    assert sorted(seen) == sorted(c_senders + py_senders)
    for sender, seqs in seen.items():
        assert sorted(seqs) == list(range(per_sender)), f"sender {sender}: lost or doubled"
    assert s.sent_messages == s.received_messages == total
