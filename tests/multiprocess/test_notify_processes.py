"""Change notification, events and semaphores across real processes: 100,000 notify/wait
ping-pongs with no lost wake-up, an Event ping-pong, bounded semaphores shared by several
processes, objects placed in a segment and used by another process, timeouts, and
``mapshare info`` for event and semaphore waiters."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import _sync_children as children
import pytest
from _sync_children import FORK_OR_SPAWN, WINDOWS, Child

import mapshare

CONTEXTS = ["spawn", "fork"]
# Windows' time.monotonic (GetTickCount64 in CPython 3.11) ticks every ~15.6 ms, so a
# 0.2 s timeout can measure one tick short: the lower bounds below allow one tick there.
TICK = 0.016 if WINDOWS else 0.0
WAIT = 30.0  # bound on one wait: only a hang or a lost wake-up with no re-check reaches it


# ---- 6. ping-pong ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method,rounds", [("fork", 100_000), ("spawn", 10_000)], ids=["fork-100k", "spawn-10k"]
)
def test_notify_wait_ping_pong(method: str, rounds: int, name: str) -> None:
    """Each side waits for the other's notify and answers it: every wait returns exactly
    the next count, the total is exact, and (almost) no wait lasts a whole re-check
    slice, which is what a lost wake-up would cost."""
    with mapshare.Segment.create(name, 64) as seg:
        base = seg.change_count
        child = Child(method, children.change_pong, name, rounds, WAIT)
        try:
            assert child.recv() == "ready"
            slow = 0
            clock = time.monotonic
            for i in range(rounds):
                seg.notify()
                t0 = clock()
                got = seg.wait_for_change((base + 2 * i + 1) & 0xFFFFFFFF, WAIT)
                if clock() - t0 >= 0.09:
                    slow += 1
                assert got == (base + 2 * i + 2) & 0xFFFFFFFF
            peer_rounds, peer_slow = child.result(timeout=120)
        finally:
            child.stop()
        assert peer_rounds == rounds
        assert seg.change_count == (base + 2 * rounds) & 0xFFFFFFFF
        # a systematically lost wake-up would make thousands of waits last a full slice;
        # a handful may on a loaded VM (descheduling)
        assert slow + peer_slow < 20, (slow, peer_slow)


@pytest.mark.parametrize(
    "method,rounds", [("fork", 50_000), ("spawn", 10_000)], ids=["fork-50k", "spawn-10k"]
)
def test_event_ping_pong(method: str, rounds: int, names: Any) -> None:
    ping = mapshare.Event.create(names())
    pong = mapshare.Event.create(names())
    child = Child(method, children.event_pong, ping.name, pong.name, rounds, WAIT)
    try:
        assert child.recv() == "ready"
        slow = 0
        clock = time.monotonic
        for i in range(rounds):
            ping.set()
            t0 = clock()
            assert pong.wait(WAIT), f"round {i}: pong never came"
            if clock() - t0 >= 0.09:
                slow += 1
            pong.clear()
        peer_rounds, peer_slow = child.result(timeout=120)
    finally:
        child.stop()
        ping.close()
        pong.close()
    assert peer_rounds == rounds
    assert slow + peer_slow < 20, (slow, peer_slow)


@pytest.mark.parametrize("method", CONTEXTS)
def test_spin_zero_ping_pong(method: str, name: str) -> None:
    """Pure sleeping waits (spin=0 on both sides via the same handle settings) lose
    nothing either."""
    rounds = 3_000
    with mapshare.Segment.create(name, 64) as seg:
        seg.spin = 0
        base = seg.change_count
        child = Child(method, children.change_pong, name, rounds, WAIT)
        try:
            assert child.recv() == "ready"
            for i in range(rounds):
                seg.notify()
                assert seg.wait_for_change((base + 2 * i + 1) & 0xFFFFFFFF, WAIT) == (
                    base + 2 * i + 2
                ) & 0xFFFFFFFF
            assert child.result(timeout=120)[0] == rounds
        finally:
            child.stop()


# ---- 3. timeouts: event, change, semaphore ----------------------------------------------------


def test_wait_timeouts(names: Any) -> None:
    ev = mapshare.Event.create(names())
    sem = mapshare.Semaphore.create(names(), 0, maximum=2)
    seg = mapshare.Segment.create(names(), 64)
    try:
        for spin in (None, 0.0):
            if spin is not None:
                ev.spin = sem.spin = seg.spin = spin
            t0 = time.monotonic()
            assert ev.wait(0.2) is False
            assert 0.2 - TICK <= time.monotonic() - t0 < 5.0
            assert ev.wait(0) is False
            since = seg.change_count
            t0 = time.monotonic()
            with pytest.raises(mapshare.WaitTimeout) as info:
                seg.wait_for_change(since, 0.2)
            assert isinstance(info.value, TimeoutError)
            assert 0.2 - TICK <= time.monotonic() - t0 < 5.0
            with pytest.raises(mapshare.WaitTimeout):
                seg.wait_for_change(since, 0)
            t0 = time.monotonic()
            assert sem.acquire(timeout=0.2) is False
            assert 0.2 - TICK <= time.monotonic() - t0 < 5.0
            assert sem.acquire(timeout=0) is False
        with pytest.raises(ValueError, match="timeout must be None or a number >= 0"):
            ev.wait(-1)
        with pytest.raises(ValueError, match="timeout must be None or a number >= 0"):
            sem.acquire(timeout=-1)
        # timeout=0 still succeeds when the wait is already satisfied
        ev.set()
        assert ev.wait(0) is True
        sem.release()
        assert sem.acquire(timeout=0) is True
        seg.notify()
        assert seg.wait_for_change(since, 0) == (since + 1) & 0xFFFFFFFF
    finally:
        ev.close()
        sem.close()
        seg.close()


@pytest.mark.parametrize("method", CONTEXTS)
@pytest.mark.parametrize("kind", ["event", "change", "semaphore", "lock"])
def test_wait_completes_when_other_process_acts(method: str, kind: str, name: str) -> None:
    """A blocking wait with no timeout returns once another process acts."""
    obj: Any
    if kind == "event":
        obj = mapshare.Event.create(name)
    elif kind == "change":
        obj = mapshare.Segment.create(name, 64)
    elif kind == "semaphore":
        obj = mapshare.Semaphore.create(name, 0, maximum=1)
    else:
        obj = mapshare.Lock.create(name)
    child = Child(method, children.act_later, kind, name, 0.2)
    try:
        assert child.recv() == "ready"
        if kind == "event":
            assert obj.wait() is True
        elif kind == "change":
            since = obj.change_count
            assert obj.wait_for_change(since) == (since + 1) & 0xFFFFFFFF
        else:
            assert obj.acquire() is True
            if kind == "semaphore":
                assert obj.value == 0
        assert child.result() is None
    finally:
        child.stop()
        if kind == "lock" and obj.locked():
            obj.release()
        obj.close()


# ---- 9. semaphores across processes; objects placed in a segment -------------------------------


@pytest.mark.parametrize("method", CONTEXTS)
def test_semaphore_bounds_concurrency(method: str, names: Any) -> None:
    """4 processes share 2 units: never more than 2 inside at once; all units come back;
    a release above the maximum is refused."""
    sem = mapshare.Semaphore.create(names(), 2)
    seg = mapshare.Segment.create(names(), 64)
    kids: list[Child] = []
    try:
        for _ in range(4):
            kids.append(Child(method, children.bounded_worker, sem.name, seg.name, 25))
        assert [k.result(timeout=120) for k in kids] == [25] * 4
        inside, peak = children.COUNTER.unpack_from(seg.buf, 0)[0], \
            children.COUNTER.unpack_from(seg.buf, 8)[0]
        assert inside == 0
        assert 1 <= peak <= 2
        assert (sem.value, sem.maximum) == (2, 2)
        with pytest.raises(mapshare.SemaphoreOverflowError, match="released above its maximum"):
            sem.release()
        assert sem.value == 2
    finally:
        for k in kids:
            k.stop()
        sem.close()
        seg.close()


@pytest.mark.parametrize("method", CONTEXTS)
def test_objects_placed_in_segment_shared_with_other_process(method: str, name: str) -> None:
    with mapshare.Segment.create(name, 64) as seg:
        ev = mapshare.Event.create_in(seg, 0)
        sem = mapshare.Semaphore.create_in(seg, 16, 0, maximum=5)
        child = Child(method, children.placed_objects_peer, name, 0, 16, 3)
        try:
            assert child.recv() == "ready"
            assert sem.acquire(timeout=0.05) is False
            ev.set()
            for _ in range(3):
                assert sem.acquire(timeout=30) is True
            value_after, over = child.result()
        finally:
            child.stop()
        assert value_after in (0, 1, 2, 3)  # what was left when the child looked
        assert over == "ValueError"
        assert sem.value == 0
        assert sem.acquire(timeout=0) is False
        assert ev.is_set()
        with pytest.raises(ValueError, match="offset 3 must be a multiple of 8"):
            mapshare.Event.create_in(seg, 3)  # not a multiple of 8
        with pytest.raises(
            ValueError, match="offset 56 must be a multiple of 8 with 16 bytes inside the segment"
        ):
            mapshare.Semaphore.create_in(seg, 56, 1)  # 16 bytes do not fit at 56 of 64


# ---- 11. mapshare info: event and semaphore waiters -------------------------------------------


def _info(name: str) -> tuple[dict[str, Any], str]:
    run = [sys.executable, "-m", "mapshare", "info", name]
    js = subprocess.run([*run, "--json"], capture_output=True, text=True, timeout=60)
    assert js.returncode == 0, js.stderr
    txt = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert txt.returncode == 0, txt.stderr
    return json.loads(js.stdout), txt.stdout


def _until(pred: Callable[[], object], timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return bool(pred())


@pytest.mark.parametrize("kind", ["event", "semaphore"])
def test_info_shows_waiters(kind: str, name: str) -> None:
    obj: Any = (mapshare.Event.create(name) if kind == "event"
                else mapshare.Semaphore.create(name, 0, maximum=3))
    kids: list[Child] = []
    try:
        d, text = _info(name)
        assert d["kind"] == kind and d["extra"]["waiters"] == 0
        for _ in range(2):
            kids.append(Child(FORK_OR_SPAWN, children.wait_forever, kind, name))
        for k in kids:
            assert k.recv() == "ready"
        assert _until(lambda: _info(name)[0]["extra"]["waiters"] == 2)
        d, text = _info(name)
        if kind == "event":
            assert d["extra"]["event_set"] is False
            assert "event:       clear, 2 waiter(s)" in text
        else:
            assert d["extra"]["value"] == 0 and d["extra"]["maximum"] == 3
            assert "semaphore:   0 of 3, 2 waiter(s)" in text
    finally:
        for k in kids:
            k.stop()
        obj.close()
