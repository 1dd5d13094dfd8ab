"""Locks across real processes: exact counting under contention, SIGKILLed holders
(owner-died recovery), timeouts against a holder elsewhere, Ctrl-C while blocked,
ownership across fork and between processes, and ``mapshare info`` lock state."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, Optional

import _sync_children as children
import pytest
from _sync_children import FORK_OR_SPAWN, KILLED, WINDOWS, Child

import mapshare
from support import mp_context

CONTEXTS = ["spawn", "fork"]
# Lock operations per process in the counting test.  On Windows every contended lock
# operation is a wineserver round trip under Wine (named mutex), ~50x a futex: 10,000
# there keeps the run in minutes; Linux does the 100,000.
COUNT_PER_PROCESS = 10_000 if WINDOWS else 100_000
# Windows' time.monotonic (GetTickCount64 in CPython 3.11) ticks every ~15.6 ms, so a
# 0.2 s timeout can measure one tick short: the lower bounds below allow one tick there.
TICK = 0.016 if WINDOWS else 0.0


@pytest.fixture
def lock(name: str) -> Iterator[mapshare.Lock]:
    lk = mapshare.Lock.create(name)
    try:
        yield lk
    finally:
        while not lk._segment.closed:  # release whatever this thread still holds, then remove it
            try:
                lk.release()
            except mapshare.NotOwnerError:
                break
        lk.close()
        try:
            lk.unlink()
        except mapshare.SegmentNotFoundError:
            pass


def _held_by_child(holder: int, child: Child) -> bool:
    """Whether a lock's holder field (an OS thread id) names the single-threaded child:
    on Linux its tid is its pid.  Windows thread ids are not pids and the child does not
    report its own, so there: a thread id other than 0 and this thread's."""
    if WINDOWS:
        return holder not in (0, threading.get_native_id())
    return holder == child.proc.pid


def _counter(seg: mapshare.Segment) -> int:
    return int(children.COUNTER.unpack_from(seg.buf, 0)[0])


# ---- 1. exact total under the lock -------------------------------------------------------


@pytest.mark.parametrize("method", CONTEXTS)
@pytest.mark.parametrize("which", ["segment-lock", "named-lock"])
def test_four_processes_count_exactly(method: str, which: str, names: Any) -> None:
    """4 processes x 100,000 unprotected read-modify-write increments, each under the
    lock, give exactly 400,000 (a single lost update would show).  Windows: 4 x 10,000
    (COUNT_PER_PROCESS)."""
    seg_name = names()
    n, procs = COUNT_PER_PROCESS, 4

    start = mp_context(method).Event()
    with mapshare.Segment.create(seg_name, 64) as seg:
        named = mapshare.Lock.create(names()) if which == "named-lock" else None
        kids: list[Child] = []
        try:
            for _ in range(procs):
                kids.append(Child(method, children.count_under_lock, seg_name,
                                  named.name if named else None, n, start))
            start.set()
            done = [k.result(timeout=300) for k in kids]
        finally:
            for k in kids:
                k.stop()
            if named is not None:
                named.close()
                named.unlink()
        assert done == [n] * procs
        assert _counter(seg) == n * procs


# ---- 2. SIGKILLed holder, 200 times ---------------------------------------------------------


def _kill_round(lock: mapshare.Lock, method: str, mode: str, rng: random.Random,
                named: bool) -> Optional[bool]:
    """One round: a child holds (mode 'hold') or churns on (mode 'churn') the lock and is
    SIGKILLed after a random short delay; we then take the lock with timeout=1.
    Returns True if we were told the owner died, False if not."""
    if named:
        target = children.hold_named_then_sleep if mode == "hold" else children.churn_named
        child = Child(method, target, lock.name)
    else:
        target_with_lock = children.hold_then_sleep if mode == "hold" else children.churn
        child = Child(method, target_with_lock, lock)
    try:
        assert child.recv(30) in ("held", "started")
        time.sleep(rng.random() * 0.004)
        child.kill()
        assert child.proc.exitcode == KILLED
    finally:
        child.stop()
    # The child is reaped: the kernel has walked its robust list.  A lock it held is
    # marked owner-died; one it did not hold is free.  (What state() reports for the
    # dead holder is tested on its own, in test_state_after_sigkill_shows_dead_holder.)
    st = lock.state()
    t0 = time.monotonic()
    try:
        got = lock.acquire(timeout=1)
        died = False
    except mapshare.OwnerDiedError as exc:
        died = True
        got = True
        assert exc.lock is lock
    elapsed = time.monotonic() - t0
    assert got, f"lock not acquired within 1 s after killing a {mode} child ({st})"
    assert elapsed < 1.5
    if mode == "hold":
        assert died, "a child killed while holding the lock was not reported dead"
    if st.held:
        assert died, f"state said {st} but acquire reported no owner death"
    # held by us either way: the state says so, a second thread/process cannot take it
    s2 = lock.state()
    assert s2.held and s2.holder_alive is True
    lock.release()
    assert not lock.locked()
    return died


@pytest.mark.needs_fork  # test_sigkill_holder_spawn covers Windows
def test_sigkill_holder_200_times_fork(lock: mapshare.Lock) -> None:
    """200 SIGKILLs at random points (half while holding, half while the child loops on
    acquire/release): each time the next acquirer gets the lock within a second and is
    told exactly when the dead child held it; the lock stays usable."""
    rng = random.Random(1234)
    outcomes = []
    for i in range(200):
        outcomes.append(_kill_round(lock, "fork", "hold" if i % 2 == 0 else "churn", rng,
                                    named=False))
    assert outcomes[0::2] == [True] * 100  # every holding child was reported dead
    assert lock.acquire(timeout=0) is True
    lock.release()


def test_sigkill_holder_spawn(lock: mapshare.Lock) -> None:
    """The same with spawned children that open the lock by name."""
    rng = random.Random(99)
    outcomes = [
        _kill_round(lock, "spawn", mode, rng, named=True)
        for mode in ("hold", "churn", "hold", "churn")
    ]
    assert outcomes[0] is True and outcomes[2] is True


def test_sigkill_holder_of_segment_lock(name: str) -> None:
    """The built-in lock of a segment is robust too."""
    with mapshare.Segment.create(name, 64) as seg:
        lk = seg.lock()
        if WINDOWS:  # no fork: the child opens the segment by name
            child = Child("spawn", children.hold_segment_lock_then_sleep, name)
        else:
            child = Child("fork", children.hold_then_sleep, lk)
        try:
            assert child.recv() == "held"
            assert lk.acquire(timeout=0) is False
            child.kill()
        finally:
            child.stop()
        with pytest.raises(mapshare.OwnerDiedError, match="now held by you"):
            lk.acquire(timeout=5)
        assert lk.locked()
        lk.release()
        assert lk.acquire(timeout=0)
        lk.release()


def test_state_after_sigkill_shows_dead_holder(lock: mapshare.Lock) -> None:
    """After the holder is SIGKILLed (and reaped), state() says held by a dead holder,
    until the next acquire takes it over."""
    child = Child(FORK_OR_SPAWN, children.hold_then_sleep, lock)
    try:
        assert child.recv() == "held"
        st = lock.state()
        assert st.held and _held_by_child(st.holder, child) and st.holder_alive is True
        child.kill()
    finally:
        child.stop()
    st = lock.state()
    assert lock.locked(), st
    assert st.held and st.holder_alive is False, st
    with pytest.raises(mapshare.OwnerDiedError):
        lock.acquire(timeout=5)
    st = lock.state()
    assert st.held and st.holder_alive is True
    lock.release()
    assert not lock.locked()


# ---- 3. timeouts against a holder in another process --------------------------------------


@pytest.mark.parametrize("method", CONTEXTS)
def test_lock_timeout_against_other_process(method: str, lock: mapshare.Lock,
                                            names: Any) -> None:
    ev = mapshare.Event.create(names())
    child = Child(method, children.hold_named_until_event, lock.name, ev.name)
    try:
        assert child.recv() == "held"
        t0 = time.monotonic()
        assert lock.acquire(timeout=0.2) is False
        elapsed = time.monotonic() - t0
        assert 0.2 - TICK <= elapsed < 5.0
        assert lock.acquire(timeout=0) is False  # tries once
        lock.spin = 0
        t0 = time.monotonic()
        assert lock.acquire(timeout=0.2) is False
        assert 0.2 - TICK <= time.monotonic() - t0 < 5.0
        st = lock.state()
        assert st.held and st.holder_alive and st.holder != 0
        ev.set()
        assert lock.acquire(timeout=30) is True
        child.result()
        lock.release()
    finally:
        child.stop()
        ev.close()


# ---- 4. Ctrl-C while blocked ----------------------------------------------------------------


@pytest.mark.posix_only("SIGINT to another process (Windows has no per-process Ctrl-C)")
@pytest.mark.parametrize("method", CONTEXTS)
@pytest.mark.parametrize("kind", ["lock", "event", "change", "semaphore"])
def test_sigint_interrupts_blocked_wait(method: str, kind: str, name: str) -> None:
    """SIGINT to a child blocked (main thread, no timeout) ends the wait with
    KeyboardInterrupt within a second."""
    obj: Any
    if kind == "lock":
        obj = mapshare.Lock.create(name)
        obj.acquire()
    elif kind == "event":
        obj = mapshare.Event.create(name)
    elif kind == "change":
        obj = mapshare.Segment.create(name, 64)
    else:
        obj = mapshare.Semaphore.create(name, 0, maximum=1)
    child = Child(method, children.block_until_interrupted, kind, name)
    try:
        assert child.recv() == "ready"
        time.sleep(0.3)  # let it get past spinning, into the sleep
        assert child.proc.is_alive() and not child.conn.poll(0)
        assert child.proc.pid is not None
        t0 = time.monotonic()
        os.kill(child.proc.pid, signal.SIGINT)
        msg = child.recv(10)
        elapsed = time.monotonic() - t0
        assert msg[:2] == ("error", "KeyboardInterrupt"), msg
        assert elapsed < 1.0, f"KeyboardInterrupt took {elapsed:.3f} s"
        child.proc.join(10)
    finally:
        child.stop()
        if kind == "lock":
            assert obj.locked()  # the interrupted child did not take it
            obj.release()
        if kind == "semaphore":
            assert obj.value == 0  # nothing was consumed
        obj.close()


# ---- 7. a lock held at fork is not held by the child ----------------------------------------


@pytest.mark.needs_fork
@pytest.mark.parametrize("which", ["named-lock", "segment-lock"])
def test_lock_held_at_fork_not_held_by_child(which: str, name: str) -> None:
    import multiprocessing

    seg: Optional[mapshare.Segment] = None
    if which == "named-lock":
        lk = mapshare.Lock.create(name)
    else:
        seg = mapshare.Segment.create(name, 64)
        lk = seg.lock()
    released = multiprocessing.get_context("fork").Event()
    lk.acquire()
    child = Child("fork", children.after_fork_ownership, lk, released)
    try:
        step = child.recv()
        assert step[0] == "step1", step
        assert step[1] == {"release": "NotOwnerError", "locked": True, "try": False}
        assert lk.locked()  # the child's failed release changed nothing
        lk.release()
        released.set()
        out = child.result()
        assert out["acquire_after"] is True
        assert lk.acquire(timeout=5)  # the child released it on its way out
        lk.release()
    finally:
        child.stop()
        if seg is not None:
            seg.close()
        else:
            lk.close()


# ---- 8. release by another process ----------------------------------------------------------


@pytest.mark.parametrize("method", CONTEXTS)
def test_release_by_other_process_raises(method: str, lock: mapshare.Lock) -> None:
    lock.acquire()
    child = Child(method, children.release_foreign, lock.name)
    try:
        out = child.result()
    finally:
        child.stop()
    assert out == ("NotOwnerError", True, False)
    assert lock.locked()
    lock.release()


# ---- 11. mapshare info shows lock state -----------------------------------------------------


def _info(name: str) -> tuple[dict[str, Any], str]:
    env = dict(os.environ)
    run = [sys.executable, "-m", "mapshare", "info", name]
    js = subprocess.run([*run, "--json"], capture_output=True, text=True, timeout=60, env=env)
    assert js.returncode == 0, js.stderr
    txt = subprocess.run(run, capture_output=True, text=True, timeout=60, env=env)
    assert txt.returncode == 0, txt.stderr
    return json.loads(js.stdout), txt.stdout


def _lock_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.startswith("lock:")]
    assert len(lines) == 1, text
    return lines[0]


def test_info_shows_lock_free_held_and_dead(lock: mapshare.Lock) -> None:
    d, text = _info(lock.name)
    assert d["kind"] == "lock"
    assert d["lock"]["held"] is False
    assert _lock_line(text).split() == ["lock:", "free"]

    child = Child(FORK_OR_SPAWN, children.hold_then_sleep, lock)
    try:
        assert child.recv() == "held"
        d, text = _info(lock.name)
        assert d["lock"]["held"] is True
        assert _held_by_child(d["lock"]["holder"], child)  # single-threaded: tid == pid
        assert d["lock"]["holder_alive"] is True
        line = _lock_line(text)
        assert f"held by thread {d['lock']['holder']}" in line and "(alive)" in line
        child.kill()
    finally:
        child.stop()
    d, text = _info(lock.name)
    assert d["lock"]["held"] is True
    assert d["lock"]["holder_alive"] is False
    assert "(dead)" in _lock_line(text)
    with pytest.raises(mapshare.OwnerDiedError):
        lock.acquire(timeout=5)
    lock.release()
    d, text = _info(lock.name)
    assert d["lock"]["held"] is False
    assert "free" in _lock_line(text)


def test_info_shows_segment_lock(name: str) -> None:
    with mapshare.Segment.create(name, 64) as seg:
        lk = seg.lock()
        lk.acquire()
        try:
            d, text = _info(name)
            assert d["kind"] == "segment"
            assert d["lock"] == {"held": True, "holder": d["lock"]["holder"],
                                 "holder_alive": True}
            assert d["lock"]["holder"] == lk.state().holder
            assert "held by thread" in _lock_line(text)
        finally:
            lk.release()
