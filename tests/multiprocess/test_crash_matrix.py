"""The crash matrix: for each operation, SIGKILL the process doing it at random points,
N times, and check what the survivors see.

Operations: segment create, lock acquire/release, event set/wait, channel send,
receive, loan and receive_view.  After every kill:

* nothing deadlocks: every call the survivor makes completes within a (generous)
  timeout;
* channel messages: every message the survivors saw is intact (length + CRC32 + exact
  contents), in order, none twice; committed sends reconcile with receives (a sender
  killed inside loan()/send() holding the send lock is counted in ``abandoned``, a
  receiver killed inside receive_view() has its message redelivered);
* capacity is not leaked: drained, ``queued_bytes == 0`` and a ``max_message`` send
  succeeds at once;
* ``mapshare.collect()`` reclaims the 'shared' segments the dead left behind.

N is ``MAPSHARE_CRASH_N`` (default 100 kills per operation: the matrix then takes
about a minute on 2 cores).  A summary of the counts is printed (``-s``) and written as JSON to
``MAPSHARE_CRASH_REPORT`` if set; docs/reliability.md quotes it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable

import _crash_children as cc
import pytest

import mapshare
from mapshare import Channel, Event, Segment
from mapshare._inspect import segment_info
from support import mp_context

N = int(os.environ.get("MAPSHARE_CRASH_N", "100"))
TIMEOUT = 30.0  # bounds a hang (a deadlock), never a speed assertion
RESULTS: dict[str, dict[str, int]] = {}

pytestmark = pytest.mark.skipif(
    not hasattr(os, "fork") or not os.path.isdir("/dev/shm"), reason="POSIX processes"
)


def contexts() -> Iterator[tuple[int, Any]]:
    """N iterations, one in ten (and the first) with 'spawn', the others with 'fork'."""
    rng = random.Random(os.environ.get("MAPSHARE_CRASH_SEED", "mapshare"))
    for i in range(N):
        method = "spawn" if i % 10 == 0 else "fork"
        yield i, (mp_context(method), rng)


def run_and_kill(
    ctx: Any, rng: random.Random, target: Callable[..., None], *args: Any, max_delay: float = 0.03
) -> None:
    """Start the actor, let it work for a random moment, SIGKILL it, reap it."""
    ready = ctx.Event()
    p = ctx.Process(target=target, args=(*args, ready), daemon=True)
    p.start()
    try:
        deadline = time.monotonic() + TIMEOUT
        while not ready.wait(0.05):
            assert p.is_alive(), f"actor died before it started (exit code {p.exitcode})"
            assert time.monotonic() < deadline, "actor never started"
        time.sleep(rng.uniform(0.0, max_delay))
        assert p.is_alive(), f"actor died on its own (exit code {p.exitcode})"
        os.kill(p.pid, signal.SIGKILL)
        p.join(TIMEOUT)
        assert p.exitcode == -signal.SIGKILL, p.exitcode
    finally:
        if p.is_alive():
            p.kill()
            p.join(TIMEOUT)


def record(op: str, **counts: int) -> None:
    r = RESULTS.setdefault(op, {})
    for k, v in counts.items():
        r[k] = r.get(k, 0) + v


@pytest.fixture(scope="module", autouse=True)
def report() -> Iterator[None]:
    yield
    text = json.dumps({"n": N, "operations": RESULTS}, indent=2, sort_keys=True)
    print("\ncrash matrix results:\n" + text)
    path = os.environ.get("MAPSHARE_CRASH_REPORT")
    if path:
        with open(path, "w") as f:
            f.write(text + "\n")


def short_base() -> str:
    return "c" + os.urandom(4).hex()  # + up to 5 digits: a direct (readable) OS name


def state_of(osn: str) -> str:
    """segment_info(osn).state; a killed last user can leave a name whose header says
    'destroyed' (between marking it and unlinking it)."""
    try:
        return segment_info(osn).state
    except mapshare.SegmentDestroyedError:
        return "destroyed (segment_info raised)"


def ours(base: str) -> list[str]:
    return sorted("/" + e for e in os.listdir("/dev/shm") if e.startswith("mapshare." + base))


# ---- segment create -------------------------------------------------------------------


def test_kill_during_segment_create() -> None:
    for _, (ctx, rng) in contexts():
        base = short_base()
        try:
            run_and_kill(ctx, rng, cc.actor_create, base)
            left = ours(base)
            assert left, "the actor created nothing before it was killed"
            states = {osn: state_of(osn) for osn in left}
            reclaimed = {r.os_name for r in mapshare.collect()}
            after = ours(base)
            # everything ready and attached only by the dead, or destroyed by its last
            # user but not yet unlinked, is reclaimed; what remains can only be an object
            # whose creator died before publishing its header (collect removes those after
            # a grace period, UNFINISHED_GRACE)
            for osn in after:
                assert state_of(osn) == "initializing", (osn, states)
                with pytest.raises(mapshare.LayoutError, match="never finished"):
                    Segment.open(osn[len("/mapshare.") :], init_timeout=0.05)
            assert reclaimed >= {o for o in left if states[o] != "initializing"}
            # a reclaimed name is free again, at once
            for osn in sorted(reclaimed & set(left))[:1]:
                Segment.create(osn[len("/mapshare.") :], 100).close()
            record(
                "segment create",
                kills=1,
                left_behind=len(left),
                destroyed_not_unlinked=sum(st.startswith("destroyed") for st in states.values()),
                reclaimed_by_collect=len(reclaimed & set(left)),
                unfinished_headers=len(after),
            )
        finally:
            for osn in ours(base):
                os.unlink("/dev/shm" + osn)


# ---- lock -----------------------------------------------------------------------------


def test_kill_during_lock_acquire_and_release(name: str) -> None:
    seg = Segment.create(name, 4096, lifetime="persistent")
    try:
        lock = seg.lock()
        for _, (ctx, rng) in contexts():
            run_and_kill(ctx, rng, cc.actor_lock, name)
            t0 = time.monotonic()
            try:
                got = lock.acquire(timeout=TIMEOUT)
                died = False
            except mapshare.OwnerDiedError:
                got, died = True, True
            assert got, "lock not acquired after its holder died: deadlock"
            a, b = struct.unpack_from("<QQ", seg.buf, 0)
            if not died:
                assert a == b, "the lock was free but the invariant it protects is broken"
            torn = int(a != b)
            struct.pack_into("<QQ", seg.buf, 0, b, b)  # repair (owner-died protocol)
            lock.release()
            assert time.monotonic() - t0 < TIMEOUT
            record(
                "lock acquire/release",
                kills=1,
                owner_died=int(died),
                invariant_broken_and_reported=torn,
            )
        # still a working lock: free, and usable by another process
        assert not lock.locked()
        assert lock.acquire(timeout=TIMEOUT)
        lock.release()
    finally:
        seg.close()
        seg.unlink()


# ---- event ----------------------------------------------------------------------------


def test_kill_during_event_set_and_wait(name: str) -> None:
    ev = Event.create(name, lifetime="persistent")
    try:
        for _, (ctx, rng) in contexts():
            run_and_kill(ctx, rng, cc.actor_event, name)
            ev.set()
            assert ev.wait(TIMEOUT)
            ev.clear()
            assert not ev.wait(0.01)
            # a live waiter in another thread is woken by set()
            woke: list[bool] = []
            t = threading.Thread(target=lambda w=woke: w.append(ev.wait(TIMEOUT)))
            t.start()
            time.sleep(0.005)
            ev.set()
            t.join(TIMEOUT)
            assert woke == [True]
            ev.clear()
            record("event set/wait", kills=1)
    finally:
        ev.close()
        ev.unlink()


# ---- channel --------------------------------------------------------------------------


class Receiver(threading.Thread):
    """Receives in this process while an actor sends."""

    def __init__(self, ch: Channel) -> None:
        super().__init__(daemon=True)
        self.ch = ch
        self.got: list[int] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                try:
                    self.got.append(cc.check(self.ch.receive(timeout=0.05)))
                except (mapshare.WaitTimeout, mapshare.BrokenChannelError):
                    pass
        except BaseException as e:  # reported by the test
            self.error = e


def drain(ch: Channel) -> list[int]:
    out = []
    while True:
        try:
            out.append(cc.check(ch.receive_nowait()))
        except (mapshare.ChannelEmpty, mapshare.BrokenChannelError):
            return out


def check_capacity(ch: Channel) -> None:
    st = ch.statistics()
    assert st.queued_bytes == 0, st
    big = os.urandom(ch.max_message)
    ch.send_nowait(big)  # the whole ring is free again
    assert ch.receive_nowait() == big


@pytest.mark.parametrize("loan", [False, True], ids=["send", "loan"])
def test_kill_during_channel_send(name: str, loan: bool) -> None:
    op = "channel loan" if loan else "channel send"
    ch = Channel.create(name, 4096, lifetime="persistent")
    try:
        for _, (ctx, rng) in contexts():
            before = ch.statistics()
            rx = Receiver(ch)
            rx.start()
            try:
                run_and_kill(ctx, rng, cc.actor_send, name, loan)
            finally:
                rx.stop.set()
                rx.join(TIMEOUT)
            assert not rx.is_alive(), "receiver stuck: deadlock"
            if rx.error:
                raise rx.error
            got = rx.got + drain(ch)
            # in order, none twice, none missing: one sender, numbered from 0
            assert got == list(range(len(got))), got[:50]
            # the next send notices a sender that died holding the send lock (abandoned)
            check_capacity(ch)
            st = ch.statistics()
            committed = st.sent_messages - before.sent_messages - 1  # minus check_capacity's
            # the counter is bumped just after the tail moves: a kill in between leaves it
            # one behind the messages actually published
            assert 0 <= len(got) - committed <= 1, (len(got), committed)
            abandoned = st.abandoned - before.abandoned
            assert abandoned in (0, 1)
            record(
                op,
                kills=1,
                messages_verified=len(got),
                abandoned=abandoned,
                counter_one_behind=len(got) - committed,
            )
    finally:
        ch.close()
        ch.unlink()


def feed(ch: Channel, stop: threading.Event, sent: list[int]) -> None:
    """Send numbered messages until stopped; sent[0] counts those sent."""
    while not stop.is_set():
        try:
            ch.send(cc.message(sent[0]), timeout=0.05)
            sent[0] += 1
        except mapshare.WaitTimeout:
            pass


@pytest.mark.parametrize("view", [False, True], ids=["receive", "receive_view"])
def test_kill_during_channel_receive(names: Callable[[], str], view: bool) -> None:
    op = "channel receive_view" if view else "channel receive"
    name, log_name = names(), names()
    ch = Channel.create(name, 4096, lifetime="persistent")
    log = Segment.create(log_name, 8 * 200_000, lifetime="persistent")
    try:
        for _, (ctx, rng) in contexts():
            log.buf[:16] = bytes(16)
            before = ch.statistics()
            stop = threading.Event()
            sent = [0]

            feeder = threading.Thread(target=feed, args=(ch, stop, sent), daemon=True)
            feeder.start()
            try:
                run_and_kill(ctx, rng, cc.actor_receive, name, log_name, view)
            finally:
                stop.set()
                feeder.join(TIMEOUT)
            assert not feeder.is_alive(), "sender stuck: deadlock"
            logged = cc.log_read(log)
            rest = drain(ch)
            assert logged == list(range(len(logged))), logged[:50]  # in order, once
            # what the dead actor consumed and logged, then what is left, in order; a
            # kill between consuming and logging loses one from the log (not from the
            # channel): at most one gap, none twice
            assert rest == list(range(rest[0], sent[0])) if rest else True, rest[:50]
            start = rest[0] if rest else sent[0]
            gap = start - len(logged)
            assert gap in (0, 1), (len(logged), start, sent[0])
            assert not set(logged) & set(rest)
            st = ch.statistics()
            redelivered = st.redelivered - before.redelivered
            assert redelivered in (0, 1)
            # receive() copies out and consumes under the lock: nothing of it can be
            # redelivered.  The counter still says 1 when the receiver died after moving
            # the head but before unlocking, with more messages queued (a statistics bug
            # in the C core: lock_recv counts any owner death as a redelivery);
            # counted here, not asserted, so the message checks above stay the verdict.
            miscounted = int(not view and redelivered == 1)
            check_capacity(ch)
            record(
                op,
                kills=1,
                messages_verified=len(logged) + len(rest),
                redelivered=redelivered - miscounted,
                redelivered_counter_miscounted=miscounted,
                consumed_not_logged=gap,
            )
    finally:
        ch.close()
        ch.unlink()
        log.close()
        log.unlink()


# ---- topic ----------------------------------------------------------------------------


class TopicReader(threading.Thread):
    """Subscribes in this process and reads while an actor publishes: (counter, missed
    before it) per message."""

    def __init__(self, sub: Any) -> None:
        super().__init__(daemon=True)
        self.sub = sub
        self.got: list[tuple[int, int]] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        missed = 0
        try:
            while True:
                try:
                    self.got.append((cc.check(self.sub.receive(timeout=0.05)), missed))
                    missed = 0
                except mapshare.Lagged as lag:
                    missed += lag.missed
                except mapshare.WaitTimeout:
                    if self.stop.is_set():
                        return
        except BaseException as e:  # reported by the test
            self.error = e


@pytest.mark.parametrize("loan", [False, True], ids=["publish", "loan"])
def test_kill_during_topic_publish(name: str, loan: bool) -> None:
    """A publisher killed anywhere: the subscriber sees the actor's messages intact and
    in order, every gap a Lagged of exactly that size; the next publish goes through
    (recovering the lock: publisher_deaths, abandoned); a max_message publish fits."""
    op = "topic loan" if loan else "topic publish"
    t = mapshare.Topic.create(name, 64 * 1024, lifetime="persistent")
    try:
        for _, (ctx, rng) in contexts():
            before = t.statistics()
            sub = t.subscribe()
            rx = TopicReader(sub)
            rx.start()
            try:
                run_and_kill(ctx, rng, cc.actor_publish, name, loan)
            finally:
                rx.stop.set()
                rx.join(TIMEOUT)
            assert not rx.is_alive(), "subscriber stuck: deadlock"
            if rx.error:
                raise rx.error
            seq = t.publish(b"probe", timeout=TIMEOUT)  # recovers the lock
            assert sub.receive(timeout=TIMEOUT) == b"probe"
            got = rx.got
            expected = 0
            for counter, missed in got:
                assert counter == expected + missed, (counter, expected, missed)
                expected = counter + 1
            st = t.statistics()
            assert seq == st.published - 1
            assert sub.received + sub.missed == st.published - before.published
            sub.close()
            big = os.urandom(t.max_message)
            t.publish_nowait(big)
            deaths = st.publisher_deaths - before.publisher_deaths
            abandoned = st.abandoned - before.abandoned
            assert deaths in (0, 1) and abandoned in (0, deaths)
            record(op, kills=1, messages_verified=len(got), publisher_deaths=deaths,
                   abandoned=abandoned, lagged_missed=sub.missed)
    finally:
        t.close()
        t.unlink()


def topic_feed(t: Any, stop: threading.Event, sent: list[int]) -> None:
    """Publish numbered messages until stopped; sent[0] counts those published."""
    while not stop.is_set():
        try:
            t.publish(cc.message(sent[0]), timeout=0.05)
            sent[0] += 1
        except mapshare.WaitTimeout:
            pass


@pytest.mark.parametrize("view", [False, True], ids=["receive", "receive_view"])
def test_kill_during_topic_receive_block_mode(name: str, view: bool) -> None:
    """A subscriber killed anywhere (inside a view too) of a block-mode topic: the
    publisher here keeps publishing, never stuck past the kill (the dead entry is
    reaped when it would block: subscriber_deaths)."""
    op = "topic receive_view (block)" if view else "topic receive (block)"
    t = mapshare.Topic.create(name, 8192, overflow="block", lifetime="persistent")
    try:
        for _, (ctx, rng) in contexts():
            before = t.statistics()
            stop = threading.Event()
            sent = [0]

            feeder = threading.Thread(target=topic_feed, args=(t, stop, sent), daemon=True)
            feeder.start()
            try:
                run_and_kill(ctx, rng, cc.actor_subscribe, name, view)
            finally:
                stop.set()
                feeder.join(TIMEOUT)
            assert not feeder.is_alive(), "publisher stuck: deadlock"
            # a ring's worth more goes through: the dead subscriber holds nothing
            t0 = time.monotonic()
            for _ in range(2 * 8192 // 64):
                t.publish(b"m" * 40, timeout=TIMEOUT)
            assert time.monotonic() - t0 < TIMEOUT
            st = t.statistics()
            assert st.subscribers == ()
            deaths = st.subscriber_deaths - before.subscriber_deaths
            assert deaths == 1
            record(op, kills=1, published_meanwhile=sent[0], subscriber_deaths=deaths)
    finally:
        t.close()
        t.unlink()
