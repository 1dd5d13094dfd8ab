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
from pathlib import Path
from typing import Any, Optional

import _c_interop_children as xc
import pytest

import mapshare
from mapshare import Channel, Event, Lock, Segment, Semaphore
from support import mp_context, stop

pytestmark = pytest.mark.posix_only("the C peer is built with a native compiler and killed "
                                    "with SIGKILL")

ROOT = Path(__file__).resolve().parents[2]
JOIN = 120  # seconds: bounds a hang, never a speed assertion
CTX = mp_context("fork") if sys.platform != "win32" else None


# ---- the C peer ------------------------------------------------------------------------


def _compiler() -> Optional[str]:
    for cc in (os.environ.get("CC"), "gcc", "cc"):
        if cc and shutil.which(cc):
            return cc
    return None


@pytest.fixture(scope="session")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/c_interop/peer.c compiled against include/mapshare.h and the C library
    (built from this checkout by tools/build_clib.py into a temporary directory)."""
    if sys.platform == "win32":
        pytest.skip("the C peer needs POSIX (fork, SIGKILL) and a native compiler")
    cc = _compiler()
    if cc is None:
        pytest.skip("no C compiler (gcc or cc, or $CC) on PATH: the C peer cannot be built")
    out = tmp_path_factory.mktemp("c_interop")
    return build_peer(cc, out)


def build_peer(cc: str, out: Path) -> Path:
    """Build the library and the peer into ``out``; fail (not skip) if either does not
    compile: with a compiler present, a broken header or library is a bug."""
    raise NotImplementedError  # filled in once the library's build command exists


class Peer:
    """A running C peer: its stdout read line by line with a deadline."""

    def __init__(self, exe: Path, *args: object) -> None:
        self.args = [str(exe), *map(str, args)]
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
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

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(JOIN)
        assert self.proc.returncode == -signal.SIGKILL
        self._close()

    def finish(self, check: bool = True) -> list[str]:
        """Wait for it to exit; the rest of its stdout as lines.  check: assert it
        exited 0 (with its stderr in the message)."""
        out, err = self.proc.communicate(timeout=JOIN)
        rest = (self._buf + out).decode().splitlines()
        self._buf = b""
        self.lines += rest
        if check:
            assert self.proc.returncode == 0, (
                f"{self.args} exited {self.proc.returncode}: {err.decode()}")
        return rest

    def _close(self) -> None:
        for f in (self.proc.stdout, self.proc.stderr):
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
            seen = seg.change_count()
            seg.buf[0:4] = struct.pack("<I", 3)
            seg.buf[4:7] = b"ack"
            seg.notify()
            assert seg.change_count() == seen + 1
            assert c.finish() == [f"read {len(data)}", "acked"]
