"""Many processes on one object: thousands of real forked attachers,
the limit error when the attach table is really full, SIGKILLed attachers reaped.

The durations printed (``-s``) are for information; nothing here asserts speed.
"""

from __future__ import annotations

import json
import os
import select
import signal
import struct
import subprocess
import sys
import time
from typing import Any

import pytest

import mapshare
from mapshare import _core
from support import exists, shm_path

HELPER = os.path.join(os.path.dirname(__file__), "_attach_children.py")
CHILDREN = os.path.join(os.path.dirname(__file__), "_segment_children.py")
TIMEOUT = 600.0  # bounds a hang (4,096 forks on 2 busy cores), never a speed assertion
OFF_ATTACH_END, OFF_ATTACH_HINT = 100, 104  # csrc/layout.h

pytestmark = [pytest.mark.needs_fork, pytest.mark.posix_only("os.fork and /dev/shm")]


class Holder:
    """``_attach_children.py hold NAME N``: N forked processes attached to NAME."""

    def __init__(self, name: str, n: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, HELPER, "hold", name, str(n)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], TIMEOUT)
        if not ready:
            self.proc.kill()
            self.proc.wait(TIMEOUT)
            self.proc.stdin.close()  # type: ignore[union-attr]
            self.proc.stdout.close()
            pytest.fail("the attachers did not report (a child died before reporting?)")
        line = self.proc.stdout.readline()
        assert line, "the holder died before its children reported"
        self.report: dict[str, Any] = json.loads(line)
        self.pids: list[int] = self.report["pids"]

    def release(self) -> dict[str, Any]:
        """Let every child close its handle and exit; wait for all of them."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        line = self.proc.stdout.readline()
        self.proc.wait(TIMEOUT)
        self.proc.stdout.close()
        assert line, "the holder died while releasing its children"
        done: dict[str, Any] = json.loads(line)
        return done

    def kill(self) -> None:
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.kill()
        self.proc.wait(TIMEOUT)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


def test_thousand_forked_attachers(name: str) -> None:
    seg = mapshare.Segment.create(name, 64)
    holder = Holder(name, 1000)
    try:
        assert holder.report["results"] == {"ok": 1000}, holder.report["limit_messages"]
        print(f"\n1,000 attachers forked and attached in {holder.report['seconds']:.2f} s")
        info = seg.info()
        alive = {p.pid for p in info.attached if p.alive}
        assert alive == set(holder.pids) | {os.getpid()}
        assert len(info.attached) == 1001
        seg.close()  # the creator leaves first: the 1,000 keep it
        assert exists(name)
        started = time.monotonic()
        done = holder.release()
        print(f"1,000 attachers detached in {time.monotonic() - started:.2f} s")
        assert done["failed"] == 0
    except BaseException:
        holder.kill()
        raise
    finally:
        seg.close()
    assert not exists(name)  # the last child's close removed it


def test_attach_limit_error_at_n_plus_one(name: str) -> None:
    slots = _core.ATTACH_SLOTS
    assert slots >= 4096
    seg = mapshare.Segment.create(name, 64)  # this process takes slot 1 of `slots`
    holder = Holder(name, slots)  # slots - 1 fit, the last one must get the limit error
    try:
        print(f"\n{slots} attachers forked in {holder.report['seconds']:.2f} s")
        assert holder.report["results"] == {"ok": slots - 1, "limit": 1}, \
            holder.report["limit_messages"][:3]
        (msg,) = holder.report["limit_messages"]
        limit, text = msg.split(" ", 2)[1:]
        assert int(limit) == slots  # AttachLimitError.limit
        assert str(slots) in text and "attach table is full" in text
        assert len(seg.info().attached) == slots
        # one of them dies: its slot is taken by the next opener, whose open reaps it
        os.kill(holder.pids[0], signal.SIGKILL)
        deadline = time.monotonic() + TIMEOUT
        while mapshare._core.process_alive(holder.pids[0]) == 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        out = subprocess.run([sys.executable, CHILDREN, "read", name, "4"],
                             capture_output=True, text=True, timeout=TIMEOUT)
        assert out.returncode == 0, out.stderr
        assert holder.pids[0] not in {p.pid for p in seg.info().attached}
        done = holder.release()
        assert done["failed"] == 0
    except BaseException:
        holder.kill()
        raise
    finally:
        seg.close()
    assert not exists(name)


def test_attach_limit_error_is_documented_and_picklable() -> None:
    import pickle

    exc = mapshare.AttachLimitError("full", 4096)
    assert isinstance(exc, mapshare.MapshareError)
    assert exc.limit == 4096
    again = pickle.loads(pickle.dumps(exc))
    assert again.limit == 4096 and str(again) == "full"
    assert mapshare.AttachLimitError.__doc__


def test_sigkilled_attachers_are_reaped(name: str) -> None:
    seg = mapshare.Segment.create(name, 64)
    holder = Holder(name, 60)
    try:
        assert holder.report["results"] == {"ok": 60}
        killed = holder.pids[::3]
        for pid in killed:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + TIMEOUT
        while any(mapshare._core.process_alive(pid) == 1 for pid in killed):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        info = seg.info()
        dead = {p.pid for p in info.attached if p.alive is False}
        assert dead == set(killed)
        removed, empty = seg._core.reap()
        assert removed == len(killed) and not empty
        assert {p.pid for p in seg.info().attached} == (
            set(holder.pids) - set(killed)) | {os.getpid()}
        # new attachers reuse the freed slots (the first-free hint went back)
        again = Holder(name, len(killed))
        try:
            assert again.report["results"] == {"ok": len(killed)}
            assert len(seg.info().attached) == 61
            again.release()
        except BaseException:
            again.kill()
            raise
        seg.close()
        assert exists(name)
        holder.release()
    except BaseException:
        holder.kill()
        raise
    finally:
        seg.close()
    assert not exists(name)


def test_sigkilled_last_attachers_do_not_keep_the_name(name: str) -> None:
    seg = mapshare.Segment.create(name, 64)
    holder = Holder(name, 20)
    try:
        seg.close()
        assert exists(name)
        holder.kill()  # every attacher dies without detaching
        assert exists(name)
        # the next opener to close is the last live user: it removes the name
        out = subprocess.run([sys.executable, CHILDREN, "read", name, "4"],
                             capture_output=True, text=True, timeout=TIMEOUT)
        assert out.returncode == 0, out.stderr
    finally:
        holder.kill()
    assert not exists(name)


@pytest.mark.parametrize(
    ("end", "hint"),
    [(0, 0), (0xFFFFFFFF, 0), (5, 0xFFFFFFFF), (0, 3), (4096, 4096), (1, 0)],
)
def test_garbage_table_hints_are_rebuilt(name: str, end: int, hint: int) -> None:
    """The end and first-free hints are written by every attacher: garbage in them
    (another process, or one that died half-way) must not lose or duplicate entries."""
    seg = mapshare.Segment.create(name, 64)
    holder = Holder(name, 3)
    try:
        fd = os.open(shm_path(name), os.O_RDWR)
        try:
            os.pwrite(fd, struct.pack("<II", end, hint), OFF_ATTACH_END)
        finally:
            os.close(fd)
        with mapshare.Segment.open(name) as other:  # this process: its entry's count
            assert [p.handles for p in other.info().attached if p.pid == os.getpid()] == [2]
        more = Holder(name, 2)
        try:
            assert more.report["results"] == {"ok": 2}
            attached = [p.pid for p in seg.info().attached]
            assert sorted(attached) == sorted(holder.pids + more.pids + [os.getpid()])
            more.release()
        except BaseException:
            more.kill()
            raise
        seg.close()
        assert exists(name)
        holder.release()
    except BaseException:
        holder.kill()
        raise
    finally:
        seg.close()
    assert not exists(name)
