"""Topics across real processes (issue 11, part 11): a stopped subscriber gets exactly one
``Lagged`` with the exact count; 10^6 reads under constant overwrite are never torn
(``receive`` and ``receive_view``); the history -> live switch at full rate has no gap
and no duplicate; a subscriber made before the first publish sees message 0; normal
exits are not dead peers; statistics rows from several processes; a forked child's
subscriber.

Children are in ``_topic_children.py``; their messages carry a CRC (see there)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import _topic_children as tc
import pytest

import mapshare
from mapshare import Lagged, Topic
from support import mp_context, stop

JOIN = 120.0  # seconds: bounds a hang, never a speed assertion
METHODS = ["fork", "spawn"]
# 10^6 by default (issue 11); MAPSHARE_TOPIC_READS lowers it while iterating
READS = int(os.environ.get("MAPSHARE_TOPIC_READS", "1000000"))

pytestmark = pytest.mark.posix_only("SIGSTOP, fork and /dev/shm")


def published(t: Topic) -> int:
    """Messages published on ``t`` so far (the next sequence number)."""
    return int(t.statistics().published)


def rows_of(t: Topic) -> dict[int, Any]:
    """The statistics rows of ``t`` by pid."""
    return {r.pid: r for r in t.statistics().subscribers}


def wait_stopped(pid: int) -> None:
    """Until /proc says ``pid`` is stopped (SIGSTOP is asynchronous)."""
    deadline = time.monotonic() + JOIN
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] in ("T", "t"):
                return
        time.sleep(0.002)
    raise AssertionError(f"pid {pid} never stopped")


# ---- (a) a stopped subscriber: one Lagged, the exact count, the newest block ----------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("how", ["sigstop", "not-reading"])
def test_stopped_subscriber_gets_one_lagged_with_the_exact_count(
    name: str, method: str, how: str
) -> None:
    ctx = mp_context(method)
    n = 1000
    t = Topic.create(name, 4096)
    ready, go, q = ctx.Event(), ctx.Event(), ctx.Queue()
    p = ctx.Process(target=tc.subscribe_and_read,
                    args=(name, "live", ready, None if how == "sigstop" else go, q, 1.0))
    try:
        p.start()
        assert ready.wait(JOIN)
        if how == "sigstop":
            assert p.pid is not None
            os.kill(p.pid, signal.SIGSTOP)
            wait_stopped(p.pid)
        for i in range(n):
            assert t.publish(tc.message(0, i, 100)) == i
        if how == "sigstop":
            assert p.pid is not None
            os.kill(p.pid, signal.SIGCONT)
        else:
            go.set()
        out = q.get(timeout=JOIN)
        p.join(JOIN)
        assert p.exitcode == 0
        assert published(t) == n
    finally:
        if p.pid is not None and p.is_alive():
            os.kill(p.pid, signal.SIGCONT)
        stop([p])
        t.close()
        t.unlink()
    assert out["end"] == "WaitTimeout", out.get("error")
    assert out["first_position"] == 0
    assert out["bad"] == 0
    # exactly one Lagged, before the first message, carrying the exact count
    assert len(out["lags"]) == 1, out["lags"]
    index, missed, position = out["lags"][0]
    assert index == 0 and position == missed
    # what it receives is the newest contiguous block, after what it missed
    held = n - missed
    assert 1 <= held <= 4096 // (16 + 16 + 104)
    assert out["msgs"] == [(0, i, i) for i in range(missed, n)]
    assert out["received"] + out["missed"] == n
    assert (out["received"], out["missed"]) == (held, missed)


# ---- (b) 10^6 reads under constant overwrite: zero torn -------------------------------


@pytest.mark.parametrize("via", ["receive", "receive_view"])
def test_no_torn_read_under_constant_overwrite(name: str, via: str) -> None:
    """A publisher process overwrites an 8 KiB ring as fast as it can with messages of
    0..1 KiB carrying a CRC, while this process reads READS (10^6) of them.  Not one is
    torn: receive() validates after copying; a view that was overwritten while in use
    raises Lagged on leaving its block (its contents may be torn then, and are thrown
    away).  Sequence numbers only grow, every gap is a Lagged with exactly that count,
    and received + missed == published at the end."""
    ctx = mp_context("fork")
    t = Topic.create(name, 8192)
    sub = t.subscribe()  # before the publisher starts: sees message 0 on
    stop_ev, ready, q = ctx.Event(), ctx.Event(), ctx.Queue()
    p = ctx.Process(target=tc.publish_until, args=(name, 1, stop_ev, ready, 0, 1024, q))
    reads = torn = lags = missed = torn_views_caught = views_invalidated = 0
    expected = 0  # the seq the next message must have
    try:
        p.start()
        assert ready.wait(JOIN)
        deadline = time.monotonic() + 600
        while reads < READS:
            entered = False
            try:
                if via == "receive":
                    ok = tc.check(sub.receive(timeout=JOIN))
                else:
                    with sub.receive_view(timeout=JOIN) as v:
                        entered = True
                        ok = tc.check(v)
            except Lagged as lag:
                lags += 1
                missed += lag.missed
                if entered:
                    # overwritten while in use: what the view showed is discarded
                    views_invalidated += 1
                    torn_views_caught += ok is None
                    expected = lag.position
                else:
                    assert lag.missed == lag.position - expected, (lag.missed, lag.position,
                                                                   expected)
                    expected = lag.position
                continue
            seq = sub.position - 1
            if ok is None:
                torn += 1
            else:
                assert ok == (1, seq), (ok, seq)
            assert seq == expected, (seq, expected)
            expected = seq + 1
            reads += 1
            if reads % 65536 == 0:
                assert time.monotonic() < deadline, f"only {reads} reads in 600 s"
        stop_ev.set()
        total = q.get(timeout=JOIN)
        p.join(JOIN)
        assert p.exitcode == 0
        # drain what is left: the accounting closes exactly
        while True:
            try:
                if via == "receive":
                    sub.receive_nowait()
                else:
                    with sub.receive_view(timeout=0):
                        pass
                reads += 1
            except Lagged as lag:
                lags += 1
                missed += lag.missed
            except (mapshare.TopicEmpty, mapshare.WaitTimeout):
                break
        assert published(t) == total
        assert sub.received == reads
        assert sub.missed == missed
        assert reads + missed == total
    finally:
        stop_ev.set()
        stop([p])
        sub.close()
        t.close()
        t.unlink()
    print(f"\n{via}: {reads} reads, {lags} Lagged ({missed} missed), "
          f"{views_invalidated} views overwritten in use ({torn_views_caught} torn, caught)")
    assert torn == 0
    assert lags > 0  # the overwrite was constant: the test did exercise lapping


def test_view_overwritten_in_use_raises_lagged_on_exit(name: str) -> None:
    """A view of message 0 is held while another process overwrites the whole ring:
    leaving the block raises Lagged (the bytes seen inside were indeed changed)."""
    ctx = mp_context("spawn")
    t = Topic.create(name, 4096)
    sub = t.subscribe()
    try:
        t.publish(tc.message(0, 0, 200))
        with pytest.raises(Lagged) as info, sub.receive_view(timeout=5) as v:
            assert tc.check(v) == (0, 0)
            p = ctx.Process(target=tc.publish_count, args=(name, 5, 100, 200))
            p.start()
            p.join(JOIN)
            assert p.exitcode == 0
            assert tc.check(v) != (0, 0)  # it was overwritten under the view
        assert info.value.missed >= 1
        # and the subscriber goes on with what is held
        ok = tc.check(sub.receive(timeout=5))
        assert ok is not None and ok[0] == 5
        assert sub.received + sub.missed == sub.position
    finally:
        sub.close()
        t.close()
        t.unlink()


# ---- (c) the history -> live switch at full publishing rate ---------------------------


@pytest.mark.parametrize("overflow", ["overwrite", "block"])
def test_history_to_live_switch_at_full_rate(name: str, overflow: str) -> None:
    """While a publisher process publishes as fast as it can, subscribe with
    start="history" again and again: each replays exactly the last H messages (its first
    sequence number is within what was published around the subscribe call, minus H),
    then goes on live with no gap and no duplicate: sequence numbers and payload counters
    are contiguous.  In overwrite mode a reader that falls behind may be lapped: then the
    gap is exactly a Lagged's count, never silent."""
    h = 64
    ctx = mp_context("fork")
    t = Topic.create(name, 64 * 1024, history=h, overflow=overflow)
    stop_ev, ready, q = ctx.Event(), ctx.Event(), ctx.Queue()
    progress = ctx.RawValue("q", 0)
    p = ctx.Process(target=tc.publish_until,
                    args=(name, 2, stop_ev, ready, 32, 128, q, progress))
    trials = 100
    clean = 0  # switches read straight through (no Lagged)
    try:
        p.start()
        assert ready.wait(JOIN)
        deadline = time.monotonic() + JOIN
        while progress.value < 4 * h:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        for _ in range(trials):
            p0 = published(t)
            with t.subscribe(start="history") as sub:
                p1 = published(t)
                first = sub.position
                assert p0 - h <= first <= p1 - h, (p0, first, p1)
                expected = first
                lagged = False
                for _ in range(3 * h):
                    try:
                        msg = sub.receive(timeout=JOIN)
                    except Lagged as lag:
                        assert overflow == "overwrite"
                        assert lag.missed == lag.position - expected
                        expected = lag.position
                        lagged = True
                        continue
                    ok = tc.check(msg)
                    assert ok == (2, expected), (ok, expected)
                    assert sub.position == expected + 1
                    expected += 1
                clean += not lagged
        stop_ev.set()
        q.get(timeout=JOIN)
        p.join(JOIN)
        assert p.exitcode == 0
    finally:
        stop_ev.set()
        stop([p])
        t.close()
        t.unlink()
    print(f"\n{overflow}: {clean} of {trials} switches read without a Lagged")
    if overflow == "block":
        assert clean == trials


# ---- (f) a subscriber made before the first publish sees message 0 --------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("who", ["child-subscribes", "child-publishes"])
def test_subscribe_before_first_publish_sees_message_0(
    name: str, method: str, who: str
) -> None:
    ctx = mp_context(method)
    t = Topic.create(name, 4096)
    procs: list[Any] = []
    try:
        if who == "child-subscribes":
            ready, q = ctx.Event(), ctx.Queue()
            p = ctx.Process(target=tc.subscribe_and_read,
                            args=(name, "live", ready, None, q, JOIN, False, 5))
            procs.append(p)
            p.start()
            assert ready.wait(JOIN)
            for i in range(5):
                assert t.publish(tc.message(0, i, 10)) == i
            out = q.get(timeout=JOIN)
            assert out["first_position"] == 0
            assert out["msgs"] == [(0, i, i) for i in range(5)]
            assert out["lags"] == [] and out["bad"] == 0
        else:
            with t.subscribe() as sub:
                assert sub.position == 0
                p = ctx.Process(target=tc.publish_count, args=(name, 3, 5, 10))
                procs.append(p)
                p.start()
                got = [tc.check(sub.receive(timeout=JOIN)) for _ in range(5)]
                assert got == [(3, i) for i in range(5)]
                assert sub.position == 5 and sub.received == 5 and sub.missed == 0
        for p in procs:
            p.join(JOIN)
            assert p.exitcode == 0
    finally:
        stop(procs)
        t.close()
        t.unlink()


# ---- (j) a normal exit is not a dead peer ---------------------------------------------


@pytest.mark.parametrize("overflow", ["overwrite", "block"])
@pytest.mark.parametrize("how", ["end", "exit", "raise", "gc"])
def test_script_that_ends_is_not_a_dead_subscriber(name: str, how: str, overflow: str) -> None:
    """A script that subscribes and publishes, then ends (end of script, sys.exit, an
    uncaught exception, or drops its handles to the GC): its subscriber entry is freed,
    nothing is counted as a death, and a block-mode publisher is not held by it."""
    t = Topic.create(name, 4096, overflow=overflow)
    p = subprocess.Popen([sys.executable, "-c", tc.EXIT_SCRIPT, name, how],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout is not None and p.stdin is not None
        assert p.stdout.readline().strip() == b"READY"
        if how == "gc":
            deadline = time.monotonic() + JOIN
            while p.pid in rows_of(t):
                assert time.monotonic() < deadline, "the GC did not free the entry"
                time.sleep(0.01)
            assert p.poll() is None  # freed while the process still runs
            p.stdin.close()
        p.wait(JOIN)
        assert p.returncode == {"end": 0, "exit": 3, "raise": 1, "gc": 0}[how], p.stderr.read() if p.stderr else ""
        s = t.statistics()
        assert p.pid not in rows_of(t)
        assert s.subscriber_deaths == 0
        assert s.publisher_deaths == 0
        assert published(t) == 1
        # nobody holds a block-mode publisher: the whole ring can be written at once
        for _ in range(4096 // 64):
            t.publish_nowait(b"x" * 40)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for f in (p.stdin, p.stdout, p.stderr):
            if f is not None:
                f.close()
        t.close()
        t.unlink()


@pytest.mark.parametrize("how", ["_exit", "kill"])
def test_script_that_dies_is_a_dead_subscriber(name: str, how: str) -> None:
    """The counterpart of the test above (so that it can fail): os._exit and SIGKILL
    leave the entry behind, shown dead, until it is reaped."""
    t = Topic.create(name, 4096)
    p = subprocess.Popen([sys.executable, "-c", tc.EXIT_SCRIPT, name, how],
                         stdout=subprocess.PIPE)
    try:
        p.wait(JOIN)
        rows = rows_of(t)
        s = t.statistics()
        assert (p.pid in rows and rows[p.pid].alive is False) or s.subscriber_deaths == 1
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        if p.stdout is not None:
            p.stdout.close()
        t.close()
        t.unlink()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("pub", [False, True], ids=["subscriber", "publisher-and-subscriber"])
def test_multiprocessing_child_returning_is_not_a_dead_peer(
    name: str, method: str, pub: bool
) -> None:
    ctx = mp_context(method)
    t = Topic.create(name, 4096, overflow="block")
    p = ctx.Process(target=tc.subscriber_returns, args=(name, pub))
    try:
        if not pub:
            t.publish(tc.message(0, 0, 10))
        p.start()
        p.join(JOIN)
        assert p.exitcode == 0
        s = t.statistics()
        assert p.pid not in rows_of(t)
        assert (s.subscriber_deaths, s.publisher_deaths) == (0, 0)
        for _ in range(4096 // 64):
            t.publish_nowait(b"y" * 40)  # no entry left to block on
    finally:
        stop([p])
        t.close()
        t.unlink()


# ---- (k) statistics rows from several processes ---------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_statistics_rows_from_several_processes(name: str, method: str) -> None:
    ctx = mp_context(method)
    t = Topic.create(name, 64 * 1024, history=100)
    for i in range(10):
        t.publish(tc.message(0, i, 10))
    procs: list[Any] = []
    # one event per child: a multiprocessing Event some SIGKILLed process was waiting
    # on can no longer be set (its condition waits for the dead sleeper)
    closers: list[Any] = []
    reads = [0, 3, 7]
    try:
        for r in reads:
            ready, close_now = ctx.Event(), ctx.Event()
            p = ctx.Process(target=tc.subscribe_until_told,
                            args=(name, 0, ready, close_now, r))
            procs.append(p)
            closers.append(close_now)
            p.start()
            assert ready.wait(JOIN)
        with t.subscribe(start="live") as mine:
            rows = rows_of(t)
            assert set(rows) == {os.getpid(), *(p.pid for p in procs)}
            for p, r in zip(procs, reads):
                row = rows[p.pid]
                assert (row.alive, row.position, row.lag, row.missed, row.received) == (
                    True, r, 10 - r, 0, r)
            assert (rows[os.getpid()].position, rows[os.getpid()].lag) == (10, 0)
            t.publish(tc.message(0, 10, 10))
            assert rows_of(t)[procs[0].pid].lag == 11
            assert mine.receive(timeout=5)
            # one is killed: shown dead (overwrite mode never reaps on its own)
            victim = procs[2]
            victim.kill()
            victim.join(JOIN)
            rows = rows_of(t)
            s = t.statistics()
            assert (victim.pid in rows and rows[victim.pid].alive is False) or (
                s.subscriber_deaths == 1)
            # the others close: their rows go
            for ev in closers[:2]:
                ev.set()
            for p in procs[:2]:
                p.join(JOIN)
                assert p.exitcode == 0
            rows = rows_of(t)
            assert procs[0].pid not in rows and procs[1].pid not in rows
            assert rows[os.getpid()].position == 11
    finally:
        for ev in closers[:2]:
            ev.set()
        stop(procs)
        t.close()
        t.unlink()


# ---- fork: a subscriber used in a forked child ----------------------------------------


def _forked_reader(sub: Any, q: Any) -> None:
    out: list[Any] = []
    for _ in range(3):
        out.append((tc.check(sub.receive(timeout=30)), sub.position))
    q.put(out)


def test_forked_child_subscriber_gets_its_own_entry(name: str) -> None:
    """The parent read 2 of 5; a forked child that uses the inherited Subscriber reads
    from message 2 on its own entry; the parent's position is not moved by it."""
    ctx = mp_context("fork")
    t = Topic.create(name, 4096)
    sub = t.subscribe()
    q = ctx.Queue()
    try:
        for i in range(5):
            t.publish(tc.message(0, i, 10))
        assert [tc.check(sub.receive(timeout=5)) for _ in range(2)] == [(0, 0), (0, 1)]
        p = ctx.Process(target=_forked_reader, args=(sub, q))
        p.start()
        got = q.get(timeout=JOIN)
        p.join(JOIN)
        assert p.exitcode == 0
        assert got == [((0, 2), 3), ((0, 3), 4), ((0, 4), 5)]
        assert sub.position == 2
        assert rows_of(t)[os.getpid()].position == 2
        assert p.pid not in rows_of(t)  # the child's entry went with it (a normal exit)
        assert t.statistics().subscriber_deaths == 0
        assert [tc.check(sub.receive(timeout=5)) for _ in range(3)] == [
            (0, 2), (0, 3), (0, 4)]
    finally:
        sub.close()
        t.close()
        t.unlink()
