"""A normal exit is not a broken peer, and BrokenChannelError is an edge.

A producer that ends without ``close()`` (end of script, ``del``, scope exit, ``sys.exit``,
an uncaught exception, a multiprocessing child returning) leaves the channel's peer
tables; only a producer that dies without its exit path (SIGKILL, ``os._exit``) is a dead
sender, reported once per receiver handle, after which receiving waits normally."""

from __future__ import annotations

import multiprocessing as mp
import subprocess
import sys
import textwrap
import time
from typing import Any

import _channel_children as cc
import pytest

import mapshare
from mapshare import Channel
from support import mp_context

JOIN = 120  # seconds: bounds a hang, never a speed assertion

OPEN = "import sys, mapshare\nch = mapshare.Channel.open(sys.argv[1])\n"

# Producer scripts that end normally without closing their handle; each sends b"m".
NORMAL_EXITS = {
    "end_of_script": OPEN + "ch.send(b'm')\n",
    "del": OPEN + "ch.send(b'm')\ndel ch\nimport time; time.sleep(0.05)\n",
    "scope_exit": textwrap.dedent(
        """
        import sys, mapshare
        def produce():
            ch = mapshare.Channel.open(sys.argv[1])
            ch.send(b'm')
        produce()
        """
    ),
    "sys_exit": OPEN + "ch.send(b'm')\nsys.exit(3)\n",
    "uncaught_exception": OPEN + "ch.send(b'm')\nraise SystemError('boom')\n",
    "loan_left_open_at_exit": OPEN + "ch.send(b'm')\nl = ch.loan(8); l.__enter__()\n",
}

KILLED = OPEN + "ch.send(b'k')\nimport os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n"
OS_EXIT = OPEN + "ch.send(b'k')\nimport os\nos._exit(0)\n"


def run_script(source: str, name: str) -> int:
    return subprocess.run(
        [sys.executable, "-c", source, name], timeout=JOIN, capture_output=True
    ).returncode


def assert_waits_normally(ch: Channel) -> None:
    """Nothing queued, no sender alive: a receive waits out its timeout."""
    with pytest.raises(mapshare.WaitTimeout):
        ch.receive(timeout=0.3)


@pytest.mark.posix_only("SIGKILL of a subprocess by itself")
@pytest.mark.parametrize("how", sorted(NORMAL_EXITS))
def test_a_producer_that_exits_normally_is_not_a_broken_peer(name: str, how: str) -> None:
    with Channel.create(name, 4096) as ch:
        try:
            run_script(NORMAL_EXITS[how], name)
            assert ch.receive(timeout=JOIN) == b"m"
            assert_waits_normally(ch)
            assert ch.statistics().senders == 0
            assert ch.statistics().dead_senders == 0
        finally:
            ch.unlink()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_multiprocessing_child_that_returns_is_not_a_broken_peer(
    name: str, method: str
) -> None:
    ctx = mp_context(method)
    with Channel.create(name, 4096) as ch:
        try:
            p = ctx.Process(target=cc.send_and_return, args=(name, [b"a", b"b"]))
            p.start()
            p.join(JOIN)
            assert p.exitcode == 0
            assert [ch.receive(timeout=JOIN) for _ in range(2)] == [b"a", b"b"]
            assert_waits_normally(ch)
            assert ch.statistics().dead_senders == 0
        finally:
            ch.unlink()


@pytest.mark.needs_fork
def test_a_forked_child_sending_on_an_inherited_handle_is_not_a_broken_peer(
    name: str,
) -> None:
    ctx = mp.get_context("fork")
    with Channel.create(name, 4096) as ch:
        try:
            p = ctx.Process(target=cc.send_inherited_and_return, args=(ch, [b"x"]))
            p.start()
            p.join(JOIN)
            assert p.exitcode == 0
            assert ch.receive(timeout=JOIN) == b"x"
            assert_waits_normally(ch)
        finally:
            ch.unlink()


@pytest.mark.posix_only("SIGKILL")
@pytest.mark.parametrize("death", ["SIGKILL", "os._exit"])
def test_a_killed_producer_is_reported_once_then_receive_waits(name: str, death: str) -> None:
    """The pipeline: the consumer learns that its producer died (after draining what it
    sent), with the pid; then a catch-and-retry loop waits instead of spinning."""
    with Channel.create(name, 4096) as ch:
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", KILLED if death == "SIGKILL" else OS_EXIT, name]
            )
            proc.wait(JOIN)
            assert ch.receive(timeout=JOIN) == b"k"  # what it sent is delivered first
            with pytest.raises(
                mapshare.BrokenChannelError, match="a sender died without closing the channel"
            ) as info:
                ch.receive(timeout=JOIN)
            # The edge is gone: a receive loop that catches and retries makes one call
            # per timeout, not thousands (the old code raised at once, ~17,000/s).
            calls = 0
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                calls += 1
                try:
                    ch.receive(timeout=max(0.0, end - time.monotonic()))
                except (mapshare.BrokenChannelError, mapshare.WaitTimeout):
                    pass
            assert calls <= 3
            assert info.value.pid == proc.pid
            assert info.value.dead_senders == 1
            assert info.value.abandoned == 0
            # another receiver handle gets its own edge ... once
            with Channel.open(name) as other:
                other._statistics()  # opened after the death was found: nothing to report
                with pytest.raises(mapshare.WaitTimeout):
                    other.receive(timeout=0.2)
            # a new producer that ends normally is just a producer
            assert run_script(NORMAL_EXITS["end_of_script"], name) == 0
            assert ch.receive(timeout=JOIN) == b"m"
            assert_waits_normally(ch)
        finally:
            ch.unlink()


@pytest.mark.posix_only("SIGKILL")
def test_a_receiver_asleep_when_the_producer_is_killed_gets_the_edge(name: str) -> None:
    ctx = mp.get_context("spawn")
    with Channel.create(name, 4096) as ch:
        q = ctx.Queue()
        ev = ctx.Event()
        tx = ctx.Process(target=cc.send_then_wait, args=(name, [b"1"], ev))
        rx = ctx.Process(target=cc.receive_all_report, args=(name, None, q))
        try:
            tx.start()
            assert ev.wait(JOIN)
            rx.start()
            deadline = time.monotonic() + JOIN
            while ch.statistics().receive_waiters == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            tx.kill()
            tx.join(JOIN)
            got, end = q.get(timeout=JOIN)
            rx.join(JOIN)
            assert (got, end) == ([b"1"], "BrokenChannelError")
        finally:
            for p in (tx, rx):
                if p.is_alive():
                    p.kill()
                p.join(30)
            ch.unlink()


JOB_CONSUMER = textwrap.dedent(
    """
    import sys, mapshare
    ch = mapshare.Channel.open(sys.argv[1])
    print("ready", flush=True)
    for msg in ch:
        print(msg.decode(), flush=True)
    print("end", flush=True)
    """
)


def _job_producer(tag: str, kill: bool = False) -> str:
    src = OPEN + f"ch.send(b'{tag}')\n"
    if kill:
        src += "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n"
    return src


def _run_job_queue(name: str, consumer: list[str]) -> tuple[list[str], int]:
    """One long-lived consumer; short-lived producer scripts that start, send and end
    normally, one of them SIGKILLed; then the channel is closed for sending."""
    with Channel.create(name, 4096) as ch:
        try:
            proc = subprocess.Popen(
                [*consumer, name], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            assert proc.stdout is not None
            if consumer[-1] == JOB_CONSUMER:
                assert proc.stdout.readline().strip() == "ready"
            sent = []
            for i in range(6):
                tag = f"job{i}"
                rc = run_script(_job_producer(tag, kill=(i == 2)), name)
                assert rc == (-9 if i == 2 else 0)
                sent.append(tag)
                # let the consumer reach the empty channel with no sender left
                deadline = time.monotonic() + JOIN
                while ch.statistics().queued_messages and time.monotonic() < deadline:
                    time.sleep(0.01)
                time.sleep(0.15)
            ch.close_sending()
            out, err = proc.communicate(timeout=JOIN)
            lines = [ln for ln in out.splitlines() if ln not in ("ready", "end")]
            assert lines == sent, (out, err)
            return lines, proc.returncode
        finally:
            ch.unlink()


@pytest.mark.posix_only("SIGKILL")
def test_job_queue_consumer_survives_normal_exits_and_a_killed_producer(name: str) -> None:
    """The service pattern: ``for msg in ch`` keeps receiving everything."""
    _, rc = _run_job_queue(name, [sys.executable, "-c", JOB_CONSUMER])
    assert rc == 0


@pytest.mark.posix_only("SIGKILL")
def test_cli_receive_follow_survives_normal_exits_and_a_killed_producer(name: str) -> None:
    _, rc = _run_job_queue(name, [sys.executable, "-m", "mapshare", "receive", "--follow"])
    assert rc == 0


@pytest.mark.posix_only("SIGKILL")
def test_more_senders_than_the_peer_table_holds(name: str) -> None:
    """20 sender processes (the table lists 16): killing the 16 listed ones while 4
    unlisted ones live is no broken channel, and statistics count every live sender."""
    ctx = mp_context("spawn" if sys.platform == "win32" else "fork")
    with Channel.create(name, 1 << 16) as ch:
        procs: list[Any] = []
        try:
            for i in range(20):  # one at a time: the first 16 take the table's entries
                ev = ctx.Event()
                p = ctx.Process(target=cc.send_then_wait, args=(name, [b"%d" % i], ev))
                p.start()
                assert ev.wait(JOIN)
                procs.append(p)
            assert ch.statistics().senders == 20
            for p in procs[:16]:
                p.kill()
                p.join(JOIN)
            assert sorted(ch.receive(timeout=JOIN) for _ in range(20)) == sorted(
                b"%d" % i for i in range(20)
            )
            with pytest.raises(mapshare.WaitTimeout):  # 4 senders live: no BrokenChannelError
                ch.receive(timeout=0.3)
            assert ch.statistics().senders == 4
        finally:
            for p in procs:
                if p.is_alive():
                    p.kill()
                p.join(30)
            ch.unlink()
