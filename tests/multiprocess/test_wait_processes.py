"""mapshare.wait across real processes: a message sent, an event set, a semaphore
released or a segment notified in another process wakes a waiter on all of them (with
futex_waitv and on the polling path); a waiter on 10 objects is woken by the last;
Ctrl-C interrupts a wait; a channel whose last sender was SIGKILLed is reported ready and
its next receive_nowait raises BrokenChannelError once."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Optional

import _wait_children as children
import pytest
from _sync_children import FORK_OR_SPAWN, Child

import mapshare

MODES = ["native", "polling"]
KINDS = ["event", "semaphore", "channel", "segment"]


@pytest.fixture
def four(names: Callable[[], str]) -> Iterator[dict[str, Any]]:
    objs: dict[str, Any] = {
        "event": mapshare.Event.create(names()),
        "semaphore": mapshare.Semaphore.create(names(), 0, maximum=4),
        "channel": mapshare.Channel.create(names(), 256),
        "segment": mapshare.Segment.create(names(), 4096),
    }
    try:
        yield objs
    finally:
        for x in objs.values():
            x.close()
            x.unlink()


def _make_ready(objs: dict[str, Any], kind: str) -> None:
    x = objs[kind]
    if kind == "event":
        x.set()
    elif kind == "semaphore":
        x.release()
    elif kind == "channel":
        x.send(b"hello")
    else:
        x.notify()


def _start_waiter(objects: list[tuple[str, str]], mode: str,
                  timeout: Optional[float] = 30) -> Child:
    child = Child(FORK_OR_SPAWN, children.wait_on, objects, mode == "polling", timeout)
    assert child.recv() == "ready"
    time.sleep(0.3)  # past the spin, into the sleep
    assert child.proc.is_alive() and not child.conn.poll(0)
    return child


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", KINDS)
def test_a_change_in_another_process_wakes_the_waiter(four: dict[str, Any], kind: str,
                                                      mode: str) -> None:
    child = _start_waiter([(k, four[k].name) for k in KINDS], mode)
    try:
        _make_ready(four, kind)
        assert child.result() == [KINDS.index(kind)]
    finally:
        child.stop()


@pytest.mark.parametrize("mode", MODES)
def test_a_waiter_on_ten_objects_is_woken_by_the_last(names: Callable[[], str],
                                                      mode: str) -> None:
    events = [mapshare.Event.create(names()) for _ in range(10)]
    try:
        child = _start_waiter([("event", e.name) for e in events], mode)
        try:
            events[-1].set()
            assert child.result() == [9]
        finally:
            child.stop()
    finally:
        for e in events:
            e.close()
            e.unlink()


@pytest.mark.parametrize("mode", MODES)
def test_timeout_returns_an_empty_list(four: dict[str, Any], mode: str) -> None:
    child = Child(FORK_OR_SPAWN, children.wait_on, [(k, four[k].name) for k in KINDS],
                  mode == "polling", 0.2)
    try:
        assert child.recv() == "ready"
        assert child.result() == []
    finally:
        child.stop()


@pytest.mark.posix_only("SIGINT to another process (Windows has no per-process Ctrl-C)")
@pytest.mark.parametrize("mode", MODES)
def test_sigint_interrupts_a_wait(four: dict[str, Any], mode: str) -> None:
    child = _start_waiter([(k, four[k].name) for k in KINDS], mode, timeout=None)
    try:
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
    # nothing was taken, and the waiter's counts are gone with it
    assert four["semaphore"].value == 0
    assert four["channel"].statistics().receive_waiters == 0


def test_a_sender_killed_during_the_wait_makes_the_channel_ready(
    four: dict[str, Any],
) -> None:
    ch = four["channel"]
    child = Child(FORK_OR_SPAWN, children.send_and_linger, ch.name)
    try:
        assert child.recv() == "sent"
        assert ch.receive_nowait() == b"last words"
        killer = threading.Timer(0.3, child.kill)
        killer.start()
        t0 = time.monotonic()
        assert mapshare.wait([four["event"], ch], timeout=30) == [ch]
        assert time.monotonic() - t0 >= 0.25  # it was the death, not something before
        killer.join()
    finally:
        child.stop()
    # the edge the wait found is the next receive's, even a non-blocking one, once
    with pytest.raises(mapshare.BrokenChannelError):
        ch.receive_nowait()
    with pytest.raises(mapshare.ChannelEmpty):
        ch.receive_nowait()
    assert mapshare.wait([four["event"], ch], timeout=0.2) == []



@pytest.mark.parametrize("mode", MODES)
def test_a_publish_in_another_process_wakes_a_subscriber_waiter(
    four: dict[str, Any], name: str, mode: str
) -> None:
    topic = mapshare.Topic.create(name, 4096)
    try:
        objects = [(k, four[k].name) for k in KINDS] + [("subscriber", name)]
        child = _start_waiter(objects, mode)
        try:
            topic.publish(b"news")
            assert child.result() == [len(KINDS)]
        finally:
            child.stop()
    finally:
        topic.close()
        topic.unlink()


@pytest.mark.parametrize("mode", MODES)
def test_a_waiter_killed_in_its_sleep_is_not_counted_for_ever(four: dict[str, Any],
                                                              mode: str) -> None:
    """The waiter marks its sleep in its receiver entry (ms_waitable.mark), so whoever
    finds it dead (statistics() here, a sender after idle wake-ups) gives its count back;
    else every later send would pay a futex system call for ever."""
    ch = four["channel"]
    child = _start_waiter([("event", four["event"].name), ("channel", ch.name)], mode)
    try:
        # the waiter counts itself out and in again between two 100 ms slices of its
        # sleep: look until it is seen counted (a CI run once looked in that gap)
        deadline = time.monotonic() + 5
        while ch.statistics().receive_waiters != 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ch.statistics().receive_waiters == 1
        child.kill()
    finally:
        child.stop()
    assert ch.statistics().receive_waiters == 0
