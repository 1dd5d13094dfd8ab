"""Lock, Event, Semaphore and change notification inside one process, with real threads:
ownership rules, non-reentrancy, a holder thread that exits, timeouts, waking every
waiter, bounds, and the GIL being released while a thread waits."""

from __future__ import annotations

import pickle
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import mapshare

# Windows' time.monotonic (GetTickCount64 in CPython 3.11) ticks every ~15.6 ms: a timed
# wait can measure one tick short there.
TICK = 0.016 if sys.platform == "win32" else 0.0


@pytest.fixture
def lock(name: str) -> Iterator[mapshare.Lock]:
    lk = mapshare.Lock.create(name)
    try:
        yield lk
    finally:
        while not lk._segment.closed:
            try:
                lk.release()
            except mapshare.NotOwnerError:
                break
        lk.close()


def _in_thread(fn: Callable[[], Any]) -> Any:
    """Run fn in a new thread; return its result or the exception it raised."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:
            out.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join(30)
    assert not t.is_alive()
    return out[0]


# ---- locks -----------------------------------------------------------------------------------


def test_lock_basics(lock: mapshare.Lock) -> None:
    assert not lock.locked()
    st = lock.state()
    assert (st.held, st.holder, st.holder_alive) == (False, 0, None)
    assert lock.acquire() is True
    assert lock.locked()
    st = lock.state()
    assert st.held and st.holder == threading.get_native_id() and st.holder_alive is True
    lock.release()
    assert not lock.locked()
    with lock:
        assert lock.locked()
    assert not lock.locked()
    assert "unlocked" in repr(lock)
    assert lock.acquire(timeout=0) is True  # a free lock: one try succeeds
    lock.release()
    with pytest.raises(ValueError, match="timeout must be None or a number >= 0"):
        lock.acquire(timeout=-1)
    with pytest.raises(TypeError):
        lock.acquire(nonsense=1)  # type: ignore[call-arg]
    assert not lock.locked()


def test_lock_is_not_reentrant(lock: mapshare.Lock) -> None:
    lock.acquire()
    with pytest.raises(RuntimeError, match="reentrant"):
        lock.acquire()
    with pytest.raises(RuntimeError, match="reentrant"):
        lock.acquire(timeout=0)
    assert lock.locked()
    lock.release()
    with pytest.raises(mapshare.NotOwnerError, match="not held by this thread"):
        lock.release()  # released once already


def test_release_by_other_thread_raises(lock: mapshare.Lock) -> None:
    lock.acquire()
    exc = _in_thread(lock.release)
    assert isinstance(exc, mapshare.NotOwnerError)
    assert isinstance(exc, RuntimeError)
    assert lock.locked()
    assert _in_thread(lambda: lock.acquire(timeout=0)) is False
    lock.release()
    exc = _in_thread(lock.release)  # not held at all
    assert isinstance(exc, mapshare.NotOwnerError)


def test_lock_timeout_against_other_thread(lock: mapshare.Lock) -> None:
    lock.acquire()
    for spin in (None, 0.0):
        if spin is not None:
            lock.spin = spin

        def timed() -> tuple[bool, float]:
            t0 = time.monotonic()
            return lock.acquire(timeout=0.2), time.monotonic() - t0

        got, elapsed = _in_thread(timed)
        assert got is False
        assert 0.2 - TICK <= elapsed < 5.0
        assert _in_thread(lambda: lock.acquire(timeout=0)) is False
    lock.release()
    assert lock.spin == 0.0


def test_lock_handed_over_between_threads(lock: mapshare.Lock) -> None:
    lock.acquire()
    got: list[bool] = []

    def take_and_release() -> None:
        got.append(lock.acquire(timeout=30))
        lock.release()

    t = threading.Thread(target=take_and_release)
    t.start()
    time.sleep(0.05)
    assert not got  # still waiting
    lock.release()
    t.join(30)
    assert got == [True]
    assert not lock.locked()


def test_holder_thread_exits_while_holding(lock: mapshare.Lock) -> None:
    """A thread that ends while holding the lock is treated like a dead process: glibc
    registers every robust mutex on the thread's robust list, and the kernel marks the
    mutex owner-died when the thread exits.  The next acquirer gets OwnerDiedError with
    the lock held, recovers, and the lock (and its handle) keep working."""
    t = threading.Thread(target=lock.acquire)
    t.start()
    t.join(30)
    with pytest.raises(mapshare.OwnerDiedError, match="now held by you") as info:
        lock.acquire(timeout=5)
    assert info.value.lock is lock
    st = lock.state()
    assert st.held and st.holder == threading.get_native_id()
    lock.release()
    assert not lock.locked()
    assert lock.acquire(timeout=0) is True
    lock.release()
    # The handle must still be closable: nothing is held through it any more.
    lock.close()


def test_segment_lock_holder_thread_exits(name: str) -> None:
    with mapshare.Segment.create(name, 64) as seg:
        lk = seg.lock()
        t = threading.Thread(target=lk.acquire)
        t.start()
        t.join(30)
        with pytest.raises(mapshare.OwnerDiedError, match="now held by you"):
            lk.acquire(timeout=5)
        lk.release()
    assert seg.closed


def test_close_refused_while_held(lock: mapshare.Lock) -> None:
    lock.acquire()
    with pytest.raises(BufferError, match="a lock in this segment is held through this handle"):
        lock.close()
    lock.release()


def test_lock_pickles_as_name(lock: mapshare.Lock) -> None:
    other = pickle.loads(pickle.dumps(lock))
    try:
        assert isinstance(other, mapshare.Lock) and other.name == lock.name
        lock.acquire()
        assert other.locked()
        lock.release()
    finally:
        other.close()


def test_open_wrong_kind_and_missing(names: Any) -> None:
    ev = mapshare.Event.create(names())
    try:
        with pytest.raises(
            mapshare.LayoutError, match=f"'{re.escape(ev.name)}' is an? event, not a lock"
        ):
            mapshare.Lock.open(ev.name)
        with pytest.raises(mapshare.SegmentNotFoundError):
            mapshare.Lock.open(names())
        with pytest.raises(mapshare.SegmentExistsError, match=re.escape(ev.name)):
            mapshare.Event.create(ev.name)
        again = mapshare.Event.open_or_create(ev.name)
        ev.set()
        assert again.is_set()
        again.close()
    finally:
        ev.close()
    with pytest.raises(TypeError):
        mapshare.Lock()  # type: ignore[call-arg]


# ---- events ----------------------------------------------------------------------------------


def test_event_basics(name: str) -> None:
    ev = mapshare.Event.create(name)
    try:
        assert not ev.is_set()
        assert ev.wait(0) is False
        ev.set()
        assert ev.is_set() and ev.wait() is True and ev.wait(0) is True
        ev.set()  # idempotent
        ev.clear()
        assert not ev.is_set()
        assert "clear" in repr(ev)
    finally:
        ev.close()


def test_event_set_wakes_every_waiter(name: str) -> None:
    ev = mapshare.Event.create(name)
    ev.spin = 0
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(ev.wait(30)))
               for _ in range(5)]
    try:
        for t in threads:
            t.start()
        time.sleep(0.1)
        assert results == []
        ev.set()
        for t in threads:
            t.join(30)
        assert results == [True] * 5
    finally:
        ev.set()
        for t in threads:
            t.join(30)
        ev.close()


def test_event_in_segment(name: str) -> None:
    with mapshare.Segment.create(name, 64) as seg:
        a = mapshare.Event.create_in(seg, 16, initially_set=True)
        b = mapshare.Event.open_in(seg, 16)
        assert b.is_set()
        b.clear()
        assert not a.is_set()
        with pytest.raises(TypeError, match="no name of its own"):
            a.unlink()
        with pytest.raises(
            TypeError, match=r"pickle the segment instead, and reopen with open_in\(\)"
        ):
            pickle.dumps(a)
        a.close()  # leaves the segment open
        assert not seg.closed


# ---- semaphores ------------------------------------------------------------------------------


def test_semaphore_bounds(name: str) -> None:
    sem = mapshare.Semaphore.create(name, 2)
    try:
        assert (sem.value, sem.maximum) == (2, 2)
        with pytest.raises(mapshare.SemaphoreOverflowError, match="released above its maximum"):
            sem.release()
        assert sem.acquire(0) and sem.acquire(0)
        assert sem.acquire(0) is False
        with pytest.raises(mapshare.SemaphoreOverflowError, match="released above its maximum"):
            sem.release(3)
        assert sem.value == 0  # a refused release changes nothing
        sem.release(2)
        assert sem.value == 2
        with sem:
            assert sem.value == 1
        assert sem.value == 2
    finally:
        sem.close()


def test_semaphore_defaults_and_invalid(names: Any) -> None:
    s0 = mapshare.Semaphore.create(names(), 0)
    try:
        assert (s0.value, s0.maximum) == (0, 1)
    finally:
        s0.close()
    with pytest.raises(ValueError, match=r"value=3, maximum=2"):
        mapshare.Semaphore.create(names(), 3, maximum=2)


def test_semaphore_release_n_wakes_n_waiters(name: str) -> None:
    sem = mapshare.Semaphore.create(name, 0, maximum=4)
    sem.spin = 0
    got: list[bool] = []
    lock = threading.Lock()

    def take() -> None:
        ok = sem.acquire(timeout=30)
        with lock:
            got.append(ok)

    threads = [threading.Thread(target=take) for _ in range(3)]
    try:
        for t in threads:
            t.start()
        time.sleep(0.1)
        assert got == []
        sem.release(3)
        for t in threads:
            t.join(30)
        assert got == [True] * 3
        assert sem.value == 0
    finally:
        if sem.value < 4:
            sem.release(4 - sem.value)
        for t in threads:
            t.join(30)
        sem.close()


# ---- change notification ---------------------------------------------------------------------


def test_change_notification_in_threads(name: str) -> None:
    with mapshare.Segment.create(name, 64) as seg:
        since = seg.change_count
        seg.notify()
        assert seg.change_count == (since + 1) & 0xFFFFFFFF
        assert seg.wait_for_change(since, 0) == (since + 1) & 0xFFFFFFFF  # already moved
        now = seg.change_count
        t = threading.Timer(0.1, seg.notify)
        t.start()
        try:
            assert seg.wait_for_change(now, 30) == (now + 1) & 0xFFFFFFFF
        finally:
            t.join()


# ---- the GIL is released while waiting -------------------------------------------------------


def _ticks_while(block: Callable[[], Any]) -> tuple[int, Any]:
    """Run block() in the main thread while a counter thread counts; return the count
    reached during block() and block()'s result."""
    stop = threading.Event()
    ticks = [0]

    def count() -> None:
        while not stop.is_set():
            ticks[0] += 1

    t = threading.Thread(target=count)
    t.start()
    try:
        time.sleep(0.02)
        before = ticks[0]
        result = block()
        during = ticks[0] - before
    finally:
        stop.set()
        t.join(30)
    return during, result


@pytest.mark.parametrize("kind", ["event", "change", "semaphore", "lock"])
def test_other_thread_runs_while_main_waits(kind: str, name: str) -> None:
    """A wait releases the GIL: another thread advances a counter many times meanwhile
    (with the GIL held, it would advance a few times at most per switch interval)."""
    if kind == "event":
        ev = mapshare.Event.create(name)
        during, res = _ticks_while(lambda: ev.wait(0.5))
        ev.close()
        assert res is False
    elif kind == "change":
        seg = mapshare.Segment.create(name, 64)

        def wait() -> Any:
            try:
                return seg.wait_for_change(seg.change_count, 0.5)
            except mapshare.WaitTimeout as exc:
                return exc

        during, res = _ticks_while(wait)
        seg.close()
        assert isinstance(res, mapshare.WaitTimeout)
    elif kind == "semaphore":
        sem = mapshare.Semaphore.create(name, 0)
        during, res = _ticks_while(lambda: sem.acquire(timeout=0.5))
        sem.close()
        assert res is False
    else:
        lk = mapshare.Lock.create(name)
        release = threading.Event()
        held = threading.Event()

        def hold() -> None:
            lk.acquire()
            held.set()
            release.wait(30)
            lk.release()

        h = threading.Thread(target=hold)
        h.start()
        try:
            assert held.wait(30)
            during, res = _ticks_while(lambda: lk.acquire(timeout=0.5))
        finally:
            release.set()
            h.join(30)
        assert res is False
        assert not lk.locked()
        lk.close()
    # 0.5 s of waiting: a free-running thread counts to millions; 10,000 is a floor that
    # only a wait holding the GIL (5 ms switch interval, ~100 switches) could miss
    assert during > 10_000, during
