"""Module-level child functions for the lock / event / semaphore / notify tests
(importable under 'spawn').  Children report through a pipe (``conn``) and never raise
into multiprocessing: the parent asserts on what they sent."""

from __future__ import annotations

import signal
import struct
import sys
import time
from typing import TYPE_CHECKING, Any, Optional, Union, cast

import mapshare

if TYPE_CHECKING:
    from multiprocessing.context import ForkContext, SpawnContext

COUNTER = struct.Struct("<q")

WINDOWS = sys.platform == "win32"
# The exit code multiprocessing reports for a child ended by Child.kill(): -SIGKILL on
# POSIX; on Windows TerminateProcess, which multiprocessing reports as -SIGTERM.
KILLED = -signal.SIGTERM if WINDOWS else -signal.SIGKILL
# A child context that holds on every OS: 'fork' where it exists (the tests' default,
# children may take handles), else 'spawn' (children then reopen handles by name).
FORK_OR_SPAWN = "spawn" if WINDOWS else "fork"


def _report_exc(conn: Any, exc: BaseException) -> None:
    try:
        conn.send(("error", type(exc).__name__, str(exc)))
    except (OSError, ValueError):
        pass


# ---- 1. counting under the lock ---------------------------------------------------------


def count_under_lock(seg_name: str, lock_name: Optional[str], n: int, start: Any,
                     conn: Any) -> None:
    """``n`` read-modify-write increments of the int64 at offset 0 of ``seg_name``,
    each under ``seg.lock()`` (lock_name None) or the named Lock ``lock_name``."""
    try:
        seg = mapshare.Segment.open(seg_name)
        lock = seg.lock() if lock_name is None else mapshare.Lock.open(lock_name)
        buf = seg.buf
        unpack, pack = COUNTER.unpack_from, COUNTER.pack_into
        acquire, release = lock.acquire, lock.release
        start.wait(60)
        for _ in range(n):
            acquire()
            (v,) = unpack(buf, 0)
            pack(buf, 0, v + 1)
            release()
        del buf
        if lock_name is not None:
            lock.close()
        seg.close()
        conn.send(("ok", n))
    except BaseException as exc:
        _report_exc(conn, exc)
    finally:
        conn.close()


# ---- 2. the holder is killed -----------------------------------------------------------


def hold_then_sleep(lock: mapshare.Lock, conn: Any) -> None:
    """Acquire, say so, and hold the lock until killed."""
    lock.acquire()
    conn.send("held")
    while True:
        time.sleep(1)


def hold_segment_lock_then_sleep(seg_name: str, conn: Any) -> None:
    """``hold_then_sleep`` with the built-in lock of the segment ``seg_name`` (for
    spawn: a segment's lock is not picklable, its segment is opened by name)."""
    seg = mapshare.Segment.open(seg_name)
    hold_then_sleep(seg.lock(), conn)


def hold_named_then_sleep(lock_name: str, conn: Any) -> None:
    """``hold_then_sleep`` for spawn: open the lock by name first."""
    hold_then_sleep(mapshare.Lock.open(lock_name), conn)


def churn(lock: mapshare.Lock, conn: Any) -> None:
    """Say "started", then acquire and release in a tight loop until killed (kills land
    inside acquire, inside release, while holding and while not holding)."""
    acquire, release = lock.acquire, lock.release
    conn.send("started")
    while True:
        acquire()
        release()


def churn_named(lock_name: str, conn: Any) -> None:
    churn(mapshare.Lock.open(lock_name), conn)


# ---- 3. timeouts against a holder in another process ------------------------------------


def hold_named_until_event(lock_name: str, event_name: str, conn: Any) -> None:
    """Hold ``lock_name`` until ``event_name`` is set, then release and exit."""
    try:
        lock = mapshare.Lock.open(lock_name)
        ev = mapshare.Event.open(event_name)
        lock.acquire()
        conn.send("held")
        ev.wait(60)
        lock.release()
        lock.close()
        ev.close()
        conn.send(("ok", None))
    except BaseException as exc:
        _report_exc(conn, exc)
    finally:
        conn.close()


# ---- 4. Ctrl-C while blocked -------------------------------------------------------------


def block_until_interrupted(kind: str, name: str, conn: Any) -> None:
    """Block forever in the main thread in one kind of wait; report what ended it."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    closers: list[Any] = []
    try:
        if kind == "event":
            ev = mapshare.Event.open(name)
            closers.append(ev)
            conn.send("ready")
            ev.wait()
        elif kind == "change":
            seg = mapshare.Segment.open(name)
            closers.append(seg)
            since = seg.change_count
            conn.send("ready")
            while True:
                seg.wait_for_change(since)
        elif kind == "lock":
            lock = mapshare.Lock.open(name)
            closers.append(lock)
            conn.send("ready")
            lock.acquire()
        elif kind == "semaphore":
            sem = mapshare.Semaphore.open(name)
            closers.append(sem)
            conn.send("ready")
            sem.acquire()
        conn.send(("returned", None, ""))
    except BaseException as exc:
        conn.send(("error", type(exc).__name__, str(exc)))
    finally:
        for c in closers:
            c.close()
        conn.close()


# ---- 6. ping-pong ------------------------------------------------------------------------


def change_pong(seg_name: str, rounds: int, timeout: float, conn: Any) -> None:
    """The odd side of a notify/wait ping-pong: wait for the peer's change, answer it.

    Reports the number of rounds, and waits that lasted a whole wait slice or more (a
    lost wake-up is rescued only by the slice's periodic re-check)."""
    try:
        seg = mapshare.Segment.open(seg_name)
        base = seg.change_count
        slow = 0
        clock = time.monotonic
        wait, notify = seg.wait_for_change, seg.notify
        conn.send("ready")
        for i in range(rounds):
            expect = (base + 2 * i + 1) & 0xFFFFFFFF
            t0 = clock()
            got = wait((base + 2 * i) & 0xFFFFFFFF, timeout)
            if clock() - t0 >= 0.09:
                slow += 1
            if got != expect:
                raise AssertionError(f"round {i}: count {got}, expected {expect}")
            notify()
        seg.close()
        conn.send(("ok", (rounds, slow)))
    except BaseException as exc:
        _report_exc(conn, exc)
    finally:
        conn.close()


def event_pong(ping_name: str, pong_name: str, rounds: int, timeout: float,
               conn: Any) -> None:
    """The answering side of an Event ping-pong."""
    try:
        ping = mapshare.Event.open(ping_name)
        pong = mapshare.Event.open(pong_name)
        slow = 0
        clock = time.monotonic
        conn.send("ready")
        for i in range(rounds):
            t0 = clock()
            if not ping.wait(timeout):
                raise AssertionError(f"round {i}: ping never came")
            if clock() - t0 >= 0.09:
                slow += 1
            ping.clear()
            pong.set()
        ping.close()
        pong.close()
        conn.send(("ok", (rounds, slow)))
    except BaseException as exc:
        _report_exc(conn, exc)
    finally:
        conn.close()


# ---- 7/8. ownership across fork and processes ---------------------------------------------


def after_fork_ownership(lock: mapshare.Lock, parent_released: Any, conn: Any) -> None:
    """Run in a child forked while the parent holds ``lock``: report what release(),
    acquire(0), and (after the parent released) acquire(5) do here."""
    out: dict[str, Any] = {}
    try:
        try:
            lock.release()
            out["release"] = "no error"
        except BaseException as exc:
            out["release"] = type(exc).__name__
        out["locked"] = lock.locked()
        out["try"] = lock.acquire(timeout=0)
        conn.send(("step1", out))
        parent_released.wait(30)
        got = lock.acquire(timeout=5)
        out["acquire_after"] = got
        if got:
            lock.release()
        lock.close()
        conn.send(("ok", out))
    except BaseException as exc:
        _report_exc(conn, exc)
    finally:
        conn.close()


def release_foreign(lock_name: str, conn: Any) -> None:
    """Try to release a named lock another process holds; report the outcome."""
    try:
        lock = mapshare.Lock.open(lock_name)
        try:
            lock.release()
            out = "no error"
        except BaseException as exc:
            out = type(exc).__name__
        conn.send(("ok", (out, lock.locked(), lock.acquire(timeout=0))))
        lock.close()
    except BaseException as exc:
        _report_exc(conn, exc)
    finally:
        conn.close()


# ---- 9. semaphores and objects placed in a segment ------------------------------------------


def bounded_worker(sem_name: str, seg_name: str, rounds: int, conn: Any) -> None:
    """Take a unit, note how many holders are inside (int64 at 0; max at 8, both under
    the segment lock), dwell briefly, leave, return the unit."""
    try:
        sem = mapshare.Semaphore.open(sem_name)
        seg = mapshare.Segment.open(seg_name)
        lock = seg.lock()
        buf = seg.buf
        for _ in range(rounds):
            if not sem.acquire(timeout=30):
                raise AssertionError("no unit within 30 s")
            with lock:
                (inside,) = COUNTER.unpack_from(buf, 0)
                inside += 1
                COUNTER.pack_into(buf, 0, inside)
                (peak,) = COUNTER.unpack_from(buf, 8)
                COUNTER.pack_into(buf, 8, max(peak, inside))
            time.sleep(0.002)
            with lock:
                (inside,) = COUNTER.unpack_from(buf, 0)
                COUNTER.pack_into(buf, 0, inside - 1)
            sem.release()
        del buf
        sem.close()
        seg.close()
        conn.send(("ok", rounds))
    except BaseException as exc:
        _report_exc(conn, exc)
    finally:
        conn.close()


def placed_objects_peer(seg_name: str, ev_off: int, sem_off: int, units: int,
                        conn: Any) -> None:
    """Open an Event and a Semaphore another process placed in ``seg_name``: wait for the
    event, then release ``units`` units; then try to release more than the maximum."""
    try:
        seg = mapshare.Segment.open(seg_name)
        ev = mapshare.Event.open_in(seg, ev_off)
        sem = mapshare.Semaphore.open_in(seg, sem_off)
        conn.send("ready")
        if not ev.wait(30):
            raise AssertionError("event never set")
        sem.release(units)
        value_after = sem.value
        try:
            sem.release(sem.maximum + 1)
            over = "no error"
        except ValueError:
            over = "ValueError"
        seg.close()
        conn.send(("ok", (value_after, over)))
    except BaseException as exc:
        _report_exc(conn, exc)
    finally:
        conn.close()


# ---- 10/11. actors for asyncio and CLI tests ---------------------------------------------


def act_later(kind: str, name: str, delay: float, conn: Any) -> None:
    """After ``delay`` seconds: set the event / notify the segment / release one unit of
    the semaphore / release the lock held since start (kind 'lock')."""
    try:
        if kind == "lock":
            obj: Any = mapshare.Lock.open(name)
            obj.acquire()
            conn.send("ready")
            time.sleep(delay)
            obj.release()
        elif kind == "event":
            obj = mapshare.Event.open(name)
            conn.send("ready")
            time.sleep(delay)
            obj.set()
        elif kind == "change":
            obj = mapshare.Segment.open(name)
            conn.send("ready")
            time.sleep(delay)
            obj.notify()
        elif kind == "semaphore":
            obj = mapshare.Semaphore.open(name)
            conn.send("ready")
            time.sleep(delay)
            obj.release()
        else:
            raise ValueError(kind)
        obj.close()
        conn.send(("ok", None))
    except BaseException as exc:
        _report_exc(conn, exc)
    finally:
        conn.close()


def wait_forever(kind: str, name: str, conn: Any) -> None:
    """Block in a wait on an event or semaphore (to be counted as a waiter; killed)."""
    if kind == "event":
        ev = mapshare.Event.open(name)
        ev.spin = 0
        conn.send("ready")
        ev.wait()
    else:
        sem = mapshare.Semaphore.open(name)
        sem.spin = 0
        conn.send("ready")
        sem.acquire()
    while True:
        time.sleep(1)


# ---- parent-side helper ------------------------------------------------------------------


class Child:
    """A child process with a pipe back to the parent; always reaped by ``stop()``."""

    def __init__(self, method: str, target: Any, *args: Any) -> None:
        import multiprocessing

        # get_context(str) is typed BaseContext, which has no Process
        ctx = cast("Union[ForkContext, SpawnContext]", multiprocessing.get_context(method))
        self.conn, w = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=target, args=(*args, w), daemon=True)
        self.proc.start()
        w.close()

    def recv(self, timeout: float = 30.0) -> Any:
        """The next report; AssertionError if none comes in ``timeout`` seconds."""
        if not self.conn.poll(timeout):
            raise AssertionError(f"child sent nothing within {timeout} s "
                                 f"(alive={self.proc.is_alive()}, exit={self.proc.exitcode})")
        try:
            return self.conn.recv()
        except EOFError:
            self.proc.join(5)
            raise AssertionError(f"child died (exit code {self.proc.exitcode})") from None

    def result(self, timeout: float = 60.0) -> Any:
        """The final ("ok", value) report's value; fails on an ("error", ...) report."""
        msg = self.recv(timeout)
        assert msg[0] == "ok", f"child failed: {msg}"
        self.proc.join(30)
        assert self.proc.exitcode == 0, f"child exit code {self.proc.exitcode}"
        return msg[1]

    def kill(self) -> None:
        """SIGKILL (Windows: TerminateProcess, its equivalent) and reap."""
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(10)

    def stop(self) -> None:
        """Reap the child (SIGKILL if it still runs) and close the pipe."""
        self.proc.join(0.05)
        if self.proc.is_alive():
            self.kill()
        self.conn.close()
