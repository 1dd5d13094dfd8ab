"""A normal exit is not a dead subscriber: a subscriber process that ends without
``close()`` (end of script, ``del``, scope exit, ``sys.exit``, an uncaught exception, a
view left open, a multiprocessing child returning) frees its table row at once, so a
block-mode publisher never waits for it and nothing is counted as a death; only a
process killed without its exit path is a dead subscriber.  A forked child that uses an
inherited subscriber gets a row of its own, at the same position."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import _topic_exit_children as tc
import pytest

from mapshare import Topic
from support import mp_context

JOIN = 120  # seconds: bounds a hang, never a speed assertion
RING = 10 * 24  # ten 8-byte messages

SUB = (
    "import sys, mapshare\n"
    "t = mapshare.Topic.open(sys.argv[1])\n"
    "sub = t.subscribe(start=0)\n"
    "sub.receive(timeout=60)\n"
)

# Subscriber scripts that end normally without closing anything.
NORMAL_EXITS = {
    "end_of_script": SUB,
    "del": SUB + "del sub, t\nimport gc; gc.collect()\nimport time; time.sleep(0.05)\n",
    "scope_exit": textwrap.dedent(
        """
        import sys, mapshare
        def follow():
            t = mapshare.Topic.open(sys.argv[1])
            sub = t.subscribe(start=0)
            sub.receive(timeout=60)
        follow()
        """
    ),
    "sys_exit": SUB + "sys.exit(3)\n",
    "uncaught_exception": SUB + "raise SystemError('boom')\n",
    "view_left_open": SUB + "v = sub.receive_view(timeout=60); v.__enter__()\n",
}

KILLED = SUB + "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n"


def run_script(source: str, name: str) -> int:
    return subprocess.run(
        [sys.executable, "-c", source, name], timeout=JOIN, capture_output=True
    ).returncode


def fill(topic: Topic) -> None:
    """Publish until the ring is full of messages nobody has read."""
    for i in range(10):
        topic.publish_nowait(i.to_bytes(8, "little"))


@pytest.mark.posix_only("a subprocess killing itself with SIGKILL is the contrast case")
@pytest.mark.parametrize("how", [*sorted(NORMAL_EXITS), "SIGKILL"])
def test_a_subscriber_that_exits_normally_leaves_at_once(name: str, how: str) -> None:
    with Topic.create(name, RING, overflow="block") as topic:
        fill(topic)
        code = run_script(KILLED if how == "SIGKILL" else NORMAL_EXITS[how], name)
        assert code != 0 if how in ("SIGKILL", "sys_exit", "uncaught_exception") else code == 0
        rows = topic.statistics().subscribers
        if how == "SIGKILL":
            # a dead subscriber's row stays behind (the publisher finds it dead and goes
            # on): what a normal exit must never look like
            assert [r.alive for r in rows] == [False]
            assert topic.publish(b"x", timeout=JOIN) == 10
        else:
            assert rows == ()  # freed by the exit path, not reaped later
            assert topic.publish_nowait(b"x") == 10  # nothing holds the publisher
            assert topic.statistics().subscriber_deaths == 0


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_multiprocessing_child_that_returns_frees_its_row(name: str, method: str) -> None:
    ctx = mp_context(method)
    with Topic.create(name, RING, overflow="block") as topic:
        fill(topic)
        p = ctx.Process(target=tc.subscribe_and_return, args=(name, 3))
        p.start()
        p.join(JOIN)
        assert p.exitcode == 0
        stats = topic.statistics()
        assert stats.subscribers == () and stats.subscriber_deaths == 0
        assert topic.publish_nowait(b"x") == 10


@pytest.mark.needs_fork
def test_a_forked_child_gets_its_own_row_at_the_same_position(name: str) -> None:
    ctx = mp_context("fork")
    with Topic.create(name, 4096) as topic, topic.subscribe() as sub:
        for i in range(5):
            topic.publish(bytes([i]))
        assert sub.receive_nowait() == b"\x00"
        out = ctx.Queue()
        p = ctx.Process(target=tc.receive_inherited_and_return, args=(sub, 3, out))
        p.start()
        got, child_position, rows = out.get(timeout=JOIN)
        p.join(JOIN)
        assert p.exitcode == 0
        out.close()
        out.join_thread()
        assert got == [b"\x01", b"\x02", b"\x03"] and child_position == 4
        # the child had a row of its own (the parent's stayed at 1), freed when it returned
        assert (os.getpid(), 1) in rows and (p.pid, 4) in rows
        assert [(r.pid, r.position) for r in topic.statistics().subscribers] == [
            (os.getpid(), 1)
        ]
        assert sub.position == 1 and sub.receive_nowait() == b"\x01"
