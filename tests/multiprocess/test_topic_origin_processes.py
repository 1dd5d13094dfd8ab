"""Topic origins and upstream-loss records across real processes (issue 14, parts 2 and
3): a subscriber in another process (spawn and fork) sees every origin, and one
``Lagged`` with the exact count per loss, merged with its own lap; a publisher in another
process (a bridge) publishes origins and loss records that a subscriber here reads.

One-process behaviour: tests/unit/test_topic_origin.py.  Children: _topic_children.py."""

from __future__ import annotations

import json
import subprocess
import sys

import _topic_children as tc
import pytest

from mapshare import Lagged, Origin, Topic, TopicEmpty
from support import mp_context, stop

JOIN = 120.0  # seconds: bounds a hang, never a speed assertion
METHODS = ["fork", "spawn"]

pytestmark = pytest.mark.posix_only("fork and /dev/shm")


@pytest.mark.parametrize("method", METHODS)
def test_a_subscriber_in_another_process_sees_origins_and_exact_losses(
    name: str, method: str
) -> None:
    ctx = mp_context(method)
    t = Topic.create(name, 1 << 16)
    ready, go, q = ctx.Event(), ctx.Event(), ctx.Queue()
    # 6 messages, a loss record of 40, 2 messages, two adjacent loss records (one Lagged)
    p = ctx.Process(target=tc.read_origins, args=(name, ready, go, q, 8, 40 + 7))
    try:
        p.start()
        assert ready.wait(JOIN)
        for i in range(6):
            t.publish(b"r%d" % i, origin=Origin("host-a", 100 + i))
        t.publish_loss(40, origin=Origin("host-a", 106))
        t.publish(b"local")
        t.publish(b"r146", origin=Origin("host-a", 146))
        t.publish_loss(5)
        t.publish_loss(2, origin=Origin("host-b", 0))
        go.set()
        out = q.get(timeout=JOIN)
        p.join(JOIN)
    finally:
        stop([p])
        t.close()
    assert "error" not in out, out
    assert out["events"] == (
        [("msg", b"r%d" % i, ("host-a", 100 + i)) for i in range(6)]
        + [("lagged", 40, 40, 7), ("msg", b"local", None),
           ("msg", b"r146", ("host-a", 146)), ("lagged", 7, 7, 11)]
    )
    assert (out["received"], out["missed"], out["upstream"]) == (8, 47, 47)


@pytest.mark.parametrize("method", METHODS)
def test_a_lapped_subscriber_in_another_process_gets_one_exact_lagged(
    name: str, method: str
) -> None:
    ctx = mp_context(method)
    # five 8-byte messages with a 3-byte host: 16 header + 24 origin block + 8
    t = Topic.create(name, 240)
    ready, go, q = ctx.Event(), ctx.Event(), ctx.Queue()
    stood_for = 0
    p = ctx.Process(target=tc.read_origins, args=(name, ready, go, q, 5, 1))
    try:
        p.start()
        assert ready.wait(JOIN)
        for i in range(25):  # the child does not read yet: lapped
            if i == 12:
                t.publish_loss(1000)
                stood_for += 1000
            else:
                t.publish(i.to_bytes(8, "little"), origin=Origin("far", i))
                stood_for += 1
        go.set()
        out = q.get(timeout=JOIN)
        p.join(JOIN)
    finally:
        stop([p])
        t.close()
    assert "error" not in out, out
    events = out["events"]
    # records 20..24 are held: the lap lost messages 0..11, 13..19 and the loss record
    assert events[0] == ("lagged", 19 + 1000, 1000, 20)
    assert events[1:] == [("msg", i.to_bytes(8, "little"), ("far", i)) for i in range(20, 25)]
    assert out["received"] + out["missed"] == stood_for


@pytest.mark.parametrize("method", METHODS)
def test_origins_and_losses_published_by_another_process(name: str, method: str) -> None:
    ctx = mp_context(method)
    with Topic.create(name, 1 << 16) as t, t.subscribe() as sub:
        p = ctx.Process(target=tc.publish_with_origins, args=(name, "bridge-x", 10))
        try:
            p.start()
            p.join(JOIN)
            assert p.exitcode == 0
        finally:
            stop([p])
        got: list[object] = []
        while True:
            try:
                m = sub.receive_nowait()
            except Lagged as e:
                got.append((e.missed, e.upstream))
                continue
            except TopicEmpty:
                break
            got.append((m, sub.last_origin))
        expected: list[object] = []
        for i in range(10):
            expected.append((f"m{i}".encode(), Origin("bridge-x", i)))
            if i % 5 == 4:
                expected.append((3, 3))
        assert got == expected
        s = t.statistics()
        assert (s.origin_published, s.loss_records, s.lost_upstream) == (10, 2, 6)
        assert sub.received + sub.missed == 10 + 6


def test_mapshare_info_shows_the_bridge_counters(name: str) -> None:
    with Topic.create(name, 4096) as t:
        t.publish(b"plain")
        plain = subprocess.run([sys.executable, "-m", "mapshare", "info", name],
                               capture_output=True, text=True, timeout=JOIN)
        assert plain.returncode == 0, plain.stderr
        assert "bridged:" not in plain.stdout  # a topic no bridge feeds: as before
        t.publish(b"r", origin=Origin("host-a", 3))
        t.publish_loss(9, origin=Origin("host-a", 4))
        text = subprocess.run([sys.executable, "-m", "mapshare", "info", name],
                              capture_output=True, text=True, timeout=JOIN)
        assert text.returncode == 0, text.stderr
        assert ("bridged:     1 message(s) with an origin; 1 loss record(s) for 9 "
                "message(s) lost upstream") in text.stdout
        js = subprocess.run([sys.executable, "-m", "mapshare", "info", "--json", name],
                            capture_output=True, text=True, timeout=JOIN)
        extra = json.loads(js.stdout)["extra"]
        assert (extra["origin_published"], extra["loss_records"], extra["lost_upstream"]) == (
            1, 1, 9)
