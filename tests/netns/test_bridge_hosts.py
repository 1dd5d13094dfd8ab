"""The Zenoh bridge between real "hosts" on this machine (issue 14, part 5).

Three network namespaces, each with its own private /dev/shm, joined by a switch
(tests/netns/_hosts.py); on each host a ``mapshare bridge`` process (peer mode, explicit
listen/connect endpoints on the veth addresses) and an agent process holding the topics
and channels, publishing and receiving (tests/netns/_agent.py).  Every message carries a
counter, so a receiver checks order, duplicates and the exact size of every gap: a
``Lagged`` must stand for exactly the messages missing between the two messages around
it, whether they were lost on the network, in a dead bridge or in the receiver's ring.

Needs root, iproute2, util-linux and eclipse-zenoh; skipped with the reason otherwise.
Run alone: ``python -m pytest -m netns`` (about a minute).
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any, Optional

import _hosts
import pytest

pytestmark = [pytest.mark.netns, pytest.mark.root, pytest.mark.posix_only("network namespaces")]

AGENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_agent.py")
PORT = 7447
# A session whose peer is gone is closed after LEASE ms (zenoh's default is 10 s), and a
# lost connection is retried every 200-1000 ms, so a cut link is noticed and healed
# within a few seconds.  Multicast scouting is off: the endpoints are explicit.
ZENOH_CONFIG = {
    "scouting": {"multicast": {"enabled": False}},
    "transport": {"link": {"tx": {"lease": 1000, "keep_alive": 4}},
                  "shared_memory": {"enabled": False}},
    "connect": {"retry": {"period_init_ms": 200, "period_max_ms": 1000,
                          "period_increase_factor": 2}},
    "listen": {"retry": {"period_init_ms": 200, "period_max_ms": 1000,
                         "period_increase_factor": 2}},
}
WAIT = 30.0  # seconds for anything that should happen "soon" (a loaded CI machine)


def _bridge_missing() -> Optional[str]:
    if importlib.util.find_spec("zenoh") is None:
        return "eclipse-zenoh is not installed (pip install '.[test]')"
    if importlib.util.find_spec("mapshare.bridge") is None:
        return "mapshare.bridge is not available"
    return None


class Proc:
    """A process on a host whose stdout lines are read by a thread (so a chatty bridge
    never blocks on a full pipe) into a queue."""

    def __init__(self, host: _hosts.Host, argv: list[str], name: str) -> None:
        self.name = name
        self.host = host
        self.argv = argv
        self.p = host.popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, bufsize=1)
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._pump, args=(self.p.stdout, self.lines.put),
                         daemon=True).start()
        threading.Thread(target=self._pump, args=(self.p.stderr, self.stderr.append),
                         daemon=True).start()

    @staticmethod
    def _pump(stream: Any, put: Any) -> None:
        with contextlib.suppress(ValueError, OSError):
            for line in stream:
                put(line)

    def line(self, timeout: float = WAIT) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"{self.name}: no output within {timeout} s (exit {self.p.poll()}); "
                f"stderr: {''.join(self.stderr)[-3000:]}"
            ) from None

    def describe(self) -> str:
        return f"{self.name} exit {self.p.poll()}, stderr: {''.join(self.stderr)[-3000:]}"


class Agent(Proc):
    """tests/netns/_agent.py on a host: ``call(op, **args)`` returns its answer."""

    def __init__(self, host: _hosts.Host, name: str) -> None:
        super().__init__(host, [sys.executable, AGENT], name)

    def call(self, op: str, timeout: float = 120, **args: Any) -> Any:
        assert self.p.stdin is not None
        self.p.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.p.stdin.flush()
        reply = json.loads(self.line(timeout))
        if "error" in reply:
            raise AssertionError(f"{self.name} {op}: {reply['error']}\n{reply['traceback']}")
        return reply["ok"]


class Bridge(Proc):
    """``mapshare bridge --json`` on a host; returns once it has printed its "started"
    event (statistics lines that follow are read and dropped by the pump)."""

    def __init__(self, host: _hosts.Host, argv: list[str], name: str) -> None:
        super().__init__(host, argv, name)
        deadline = time.monotonic() + WAIT
        while not any(e.get("event") == "started" for e in json_objects(self.line())):
            assert time.monotonic() < deadline, f"{name} never said started"


def json_objects(line: str) -> list[dict[str, Any]]:
    """The JSON objects on one line (a line is one object; tolerate two run together)."""
    dec, out, i = json.JSONDecoder(), [], 0
    line = line.strip()
    while i < len(line):
        obj, i = dec.raw_decode(line, i)
        out.append(obj)
    return out


_counter = itertools.count()


class Net:
    """The hosts of the module plus what one test started on them: an agent per host,
    bridges, and names unique to the test (topics, keys, host ids)."""

    def __init__(self, hosts: _hosts.Hosts, tmp: str) -> None:
        self.hosts = hosts
        n = next(_counter)
        self.tag = f"{os.getpid() % 10000}x{n}"
        self.ids = [f"h{h.index}t{self.tag}" for h in hosts]
        self.agents = [Agent(h, f"agent@{h.netns}") for h in hosts]
        self.bridges: dict[int, Bridge] = {}
        self.config = os.path.join(tmp, f"zenoh-{self.tag}.json5")
        with open(self.config, "w") as f:
            json.dump(ZENOH_CONFIG, f)

    def origin(self, at: int, of: int) -> Optional[str]:
        """The origin host id host ``at``'s subscribers see on messages of host ``of``."""
        return None if at == of else self.ids[of]

    def name(self, what: str) -> str:
        return f"n{self.tag}{what}"

    def bridge(self, i: int, topics: Optional[dict[str, str]] = None,
               channels: Optional[dict[str, str]] = None) -> Bridge:
        """Start host i's bridge: it listens on its own address and connects to host 0's
        (host 0 connects to nobody); returns once it says it has started."""
        h = self.hosts[i]
        argv = [sys.executable, "-m", "mapshare", "bridge", "--mode", "peer",
                "--listen", h.endpoint(PORT), "--config", self.config,
                "--host-id", self.ids[i], "--json", "--stats-interval", "0.2"]
        if i != 0:
            argv += ["--connect", self.hosts[0].endpoint(PORT)]
        for name, key in (topics or {}).items():
            argv += ["--topic", f"{name}={key}"]
        for name, key in (channels or {}).items():
            argv += ["--channel", f"{name}={key}"]
        b = Bridge(h, argv, f"bridge@{h.netns}")
        self.bridges[i] = b
        return b

    def kill_bridge(self, i: int) -> None:
        b = self.bridges.pop(i)
        b.p.kill()
        b.p.wait(10)

    def stat(self, i: int) -> Any:
        """The statistics host i's bridge last wrote (``mapshare bridge stat --json``)."""
        r = self.hosts[i].run([sys.executable, "-m", "mapshare", "bridge", "stat",
                               f"bridge.{self.ids[i]}", "--json"])
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def where_lost(self, sender: int, receiver: int) -> str:
        """Where messages of ``sender``'s topics were lost on their way to ``receiver``,
        from both bridges' statistics (for an assertion's message)."""
        out = []
        for i in (sender, receiver):
            try:
                st = self.stat(i)
            except Exception as exc:  # a diagnosis must not hide the failure itself
                out.append(f"host {i}: no statistics ({exc})")
                continue
            for t in st["topics"]:
                out.append(f"host {i} {t['name']}: out {t['messages_out']} dropped in its "
                           f"ring {t['dropped']}, in {t['messages_in']} lost on the way "
                           f"{t['lost']}; peers {len(st['peers'])}")
        return "; ".join(out)

    def close(self) -> None:
        for b in self.bridges.values():
            if b.p.poll() is None:
                b.p.terminate()  # a clean stop (exit 0) is part of what is tested
        for a in self.agents:
            with contextlib.suppress(Exception):
                a.call("exit", timeout=10)
        for i, b in self.bridges.items():
            try:
                code = b.p.wait(10)
            except subprocess.TimeoutExpired:
                b.p.kill()
                raise AssertionError(f"bridge on host {i} ignored SIGTERM") from None
            assert code == 0, b.describe()


@pytest.fixture(scope="module")
def hosts() -> Iterator[_hosts.Hosts]:
    reason = _hosts.unavailable()
    if reason:
        pytest.skip(reason)
    hs = _hosts.Hosts(3)
    try:
        yield hs
    finally:
        hid = hs.id
        hs.close()
        assert not _hosts.leftover_namespaces(hid), "namespaces left behind"


@pytest.fixture
def net(hosts: _hosts.Hosts) -> Iterator[Net]:
    reason = _bridge_missing()
    if reason:
        pytest.skip(reason)
    with tempfile.TemporaryDirectory() as tmp:
        n = Net(hosts, tmp)
        try:
            yield n
        finally:
            n.close()


# --------------------------------------------------------------------------- checks


def messages(log: list[list[Any]]) -> list[list[Any]]:
    """The messages of a receiver's log; AssertionError if its thread failed."""
    errors = [e[1] for e in log if e[0] == "error"]
    assert not errors, f"the receiving thread failed: {errors[0]}"
    return [e for e in log if e[0] == "m"]


def delivered_in(log: list[list[Any]]) -> list[int]:
    """The counters of the messages in a receiver's log, in arrival order."""
    return [e[1] for e in messages(log)]


def check_gaps(log: list[list[Any]], host: Optional[str] = None) -> tuple[int, int]:
    """Every Lagged in ``log`` (from its first message on) stands for exactly the
    messages of ``host`` missing around it, counters arrive in increasing order with no
    duplicate, origin seqs increase.  Returns (messages received, sum of missed)."""
    messages(log)  # no receiving thread failed
    events = [e for e in log if e[0] == "lag" or (e[0] == "m" and e[2] == host)]
    start = next((k for k, e in enumerate(events) if e[0] == "m"), len(events))
    prev: Optional[list[Any]] = None
    lost = received = 0
    pending = 0
    for e in events[start:]:
        if e[0] == "lag":
            pending += e[1]
            continue
        if prev is not None:
            assert e[1] > prev[1], f"out of order or duplicate: {prev} then {e}"
            gap = e[1] - prev[1] - 1
            assert pending == gap, (
                f"between counters {prev[1]} and {e[1]} {gap} message(s) are missing, "
                f"Lagged said {pending}"
            )
            if host is not None:
                assert e[3] > prev[3], f"origin seqs not increasing: {prev} then {e}"
        lost += pending
        pending = 0
        received += 1
        prev = e
    assert pending == 0, f"a Lagged of {pending} after the last message"
    return received, lost


def wait_for(cond: Any, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def warm_up(net: Net, publisher: int, topic: str, readers: list[tuple[int, str]],
            first: int = 0) -> int:
    """Publish from ``publisher`` (one message every 20 ms, counters from ``first``)
    until every (host, receiver id) in ``readers`` has received one of them: the
    bridges found each other.  Returns the next counter to publish."""
    a = net.agents[publisher]
    counter = first
    deadline = time.monotonic() + WAIT
    pending = list(readers)
    while pending:
        assert time.monotonic() < deadline, f"no message reached {pending}"
        a.call("publish", topic=topic, first=counter, count=1)
        counter += 1
        time.sleep(0.02)
        pending = [(h, r) for h, r in pending
                   if last_counter(net, h, r, net.origin(h, publisher)) < first]
    return counter


def publish_until_received(net: Net, publisher: int, topic: str, counter: int, host: int,
                           rid: str, after: str) -> int:
    """Publish batches of 10 from ``counter`` on until (host, rid) receives one of them;
    returns the next counter."""
    resumed_from = counter
    deadline = time.monotonic() + WAIT
    while last_counter(net, host, rid, net.origin(host, publisher)) < resumed_from:
        assert time.monotonic() < deadline, f"host {host} never received after {after}"
        net.agents[publisher].call("publish", topic=topic, first=counter, count=10,
                                   pace=0.01, batch=1)
        counter += 10
    return counter


def last_counter(net: Net, host: int, rid: str, origin: Optional[str]) -> int:
    ms = [e for e in messages(net.agents[host].call("report", id=rid)) if e[2] == origin]
    return ms[-1][1] if ms else -1


# --------------------------------------------------------------------------- tests


def test_hosts_have_private_shm_and_are_torn_down() -> None:
    """The harness itself: each host's /dev/shm is its own; close() leaves nothing."""
    reason = _hosts.unavailable()
    if reason:
        pytest.skip(reason)
    hs = _hosts.Hosts(2)
    hid = hs.id
    try:
        hs.check_private_shm()
        assert hs[0].shm() == [] and hs[1].shm() == []
        sleeper = hs[1].popen(["sleep", "600"])
        assert hs[1].run(["cat", "/sys/class/net/eth0/address"]).returncode == 0
    finally:
        hs.close()
    assert sleeper.returncode is not None
    assert not _hosts.leftover_namespaces(hid)


def test_topic_three_hosts_every_message_once_in_order_with_origins(net: Net) -> None:
    """A and B publish; subscribers on A, B and C each get every message once, in order
    per origin, marked with its origin (None for their own host's); nothing comes back
    to its origin (no loops with three bridges)."""
    topic, key = net.name("t"), f"msh/{net.tag}/t"
    for a in net.agents:
        a.call("topic", name=topic)
        a.call("subscribe", id="s", topic=topic)
    for i in range(3):
        net.bridge(i, topics={topic: key})
    start_a = warm_up(net, 0, topic, [(1, "s"), (2, "s")])
    start_b = warm_up(net, 1, topic, [(0, "s"), (2, "s")], first=1 << 32)
    n = 1500
    # A and B publish at the same time (B from a thread of the test), paced so that
    # zenoh's queues do not overflow (DROP congestion control would count a loss).
    tb = threading.Thread(target=net.agents[1].call, args=("publish",),
                          kwargs={"topic": topic, "first": start_b, "count": n,
                                  "pace": 0.002, "batch": 10})
    tb.start()
    res = net.agents[0].call("publish", topic=topic, first=start_a, count=n, pace=0.002,
                             batch=10)
    tb.join()
    assert res["raised"] == {}
    ends = {0: start_a + n - 1, 1: start_b + n - 1}
    ida, idb = net.ids[0], net.ids[1]
    wait_for(lambda: last_counter(net, 2, "s", ida) == ends[0]
             and last_counter(net, 2, "s", idb) == ends[1]
             and last_counter(net, 1, "s", ida) == ends[0]
             and last_counter(net, 0, "s", idb) == ends[1], "the last messages")
    time.sleep(0.5)  # any duplicate or echo would arrive now
    logs = [a.call("stop", id="s") for a in net.agents]
    for h, log in enumerate(logs):
        assert not [e for e in log if e[0] == "lag"], f"host {h} lost messages: {log[:5]}"
        origins = {e[2] for e in messages(log)}
        own = {0: ida, 1: idb}.get(h)
        assert own not in origins, f"host {h} got its own messages back from the network"
        for src, origin in ((0, ida), (1, idb)):
            got = [e[1] for e in messages(log) if e[2] == (None if src == h else origin)]
            main = [c for c in got if c >= (start_a if src == 0 else start_b)]
            first = start_a if src == 0 else start_b
            want = list(range(first, first + n))
            wrong = next((k for k, (x, y) in enumerate(zip(main, want)) if x != y), None)
            assert main == want, f"host {h} from {src}: {len(main)} of {n}, wrong at {wrong}"
        for origin in {ida, idb} - {own}:
            check_gaps(log, origin)  # origin seqs of remote messages increase strictly
    # statistics: A's bridge sent each of A's messages once and nothing it brought in
    def a_sent_all() -> bool:
        t = net.stat(0)["topics"][0]
        return bool(t["messages_out"] == start_a + n)

    wait_for(a_sent_all, "A's statistics to count its messages out")
    st = net.stat(0)
    assert set(st["remote_hosts"]) == {net.ids[1]}, st  # the hosts it got messages from
    assert len(st["peers"]) == 2, st  # B and C connected to it
    assert st["topics"][0]["lost"] == 0 and st["topics"][0]["duplicates"] == 0, st


def test_link_cut_counts_the_loss_exactly(net: Net) -> None:
    """B's link is cut while A publishes, then restored: B's subscriber gets Lagged for
    exactly the messages it missed (counted from the origin seqs across the hop), C's
    gets everything."""
    topic, key = net.name("t"), f"msh/{net.tag}/t"
    for a in net.agents:
        a.call("topic", name=topic)
    for h in (1, 2):
        net.agents[h].call("subscribe", id="s", topic=topic)
    for i in range(3):
        net.bridge(i, topics={topic: key})
    counter = warm_up(net, 0, topic, [(1, "s"), (2, "s")])
    a = net.agents[0]
    a.call("publish", topic=topic, first=counter, count=200, pace=0.01, batch=5)
    counter += 200
    net.hosts[1].cut()
    try:
        # 3 s at ~500/s: longer than the 1 s lease, so B's session is closed and A's
        # bridge has nobody to send these to: they are lost for B.
        a.call("publish", topic=topic, first=counter, count=1500, pace=0.01, batch=5)
        counter += 1500
    finally:
        net.hosts[1].restore()
    # after the restore, publish until B receives again (zenoh reconnects within seconds)
    counter = publish_until_received(net, 0, topic, counter, 1, "s", "the link came back")
    a.call("publish", topic=topic, first=counter, count=100, pace=0.01, batch=5)
    counter += 100
    end = counter - 1
    wait_for(lambda: last_counter(net, 1, "s", net.ids[0]) == end
             and last_counter(net, 2, "s", net.ids[0]) == end, "the last message")
    log_b = net.agents[1].call("stop", id="s")
    log_c = net.agents[2].call("stop", id="s")
    received, lost = check_gaps(log_b, net.ids[0])
    assert lost > 0, "the cut lost nothing: the test did not test the loss count"
    first_b = messages(log_b)[0][1]
    assert received + lost == end - first_b + 1
    received_c, lost_c = check_gaps(log_c, net.ids[0])
    assert lost_c == 0, f"C lost {lost_c} while B's link was cut: {net.where_lost(0, 2)}"
    assert received_c == end - messages(log_c)[0][1] + 1


def test_remote_that_never_reads_costs_the_other_remote_nothing(net: Net) -> None:
    """B's bridge is stopped (SIGSTOP: its sockets are never read, its zenoh queues and
    TCP buffers fill, then its lease runs out) while A publishes fast, 4 KiB messages;
    C, whose link is fine, gets every one of them (no shared fate across remote hosts),
    A's publisher never waits; B, resumed, is told exactly what it missed."""
    topic, key = net.name("t"), f"msh/{net.tag}/t"
    for a in net.agents:
        # 16 MiB: each ring holds the whole burst, so a loss at C can only be A's
        # numbers missing there (the network hop), not C's reader lapped under load
        a.call("topic", name=topic, capacity=16 << 20)
    for h in (1, 2):
        net.agents[h].call("subscribe", id="s", topic=topic)
    for i in range(3):
        net.bridge(i, topics={topic: key})
    counter = warm_up(net, 0, topic, [(1, "s"), (2, "s")])
    a = net.agents[0]
    stopped = net.bridges[1].p
    stopped.send_signal(signal.SIGSTOP)
    try:
        # ~4 MB/s for 3 s: far more than B's socket buffers and zenoh queue hold, and
        # longer than the 1 s lease
        res = a.call("publish", topic=topic, first=counter, count=3000, size=4096,
                     pace=0.01, batch=10)
        counter += 3000
    finally:
        stopped.send_signal(signal.SIGCONT)
    assert res["raised"] == {}, "A's publisher was held up by a remote that does not read"
    counter = publish_until_received(net, 0, topic, counter, 1, "s", "its bridge resumed")
    end = counter - 1
    wait_for(lambda: last_counter(net, 1, "s", net.ids[0]) == end
             and last_counter(net, 2, "s", net.ids[0]) == end, "the last message")
    log_c = net.agents[2].call("stop", id="s")
    received_c, lost_c = check_gaps(log_c, net.ids[0])
    assert lost_c == 0, f"C lost {lost_c} while B did not read: {net.where_lost(0, 2)}"
    assert received_c == end - messages(log_c)[0][1] + 1
    log_b = net.agents[1].call("stop", id="s")
    received, lost = check_gaps(log_b, net.ids[0])
    assert received + lost == end - messages(log_b)[0][1] + 1


def test_slow_subscriber_lapped_on_remote_host_exact_and_others_unaffected(net: Net) -> None:
    """A slow subscriber on B is lapped in B's ring: its Lagged are exact; a fast
    subscriber on B and a local subscriber on A get every message (no shared fate)."""
    topic, key = net.name("t"), f"msh/{net.tag}/t"
    for a in net.agents[:2]:
        a.call("topic", name=topic)
    net.agents[0].call("subscribe", id="local", topic=topic)
    net.agents[1].call("subscribe", id="fast", topic=topic)
    net.agents[1].call("subscribe", id="slow", topic=topic, delay=0.005)
    for i in range(2):
        net.bridge(i, topics={topic: key})
    counter = warm_up(net, 0, topic, [(1, "fast"), (1, "slow")])
    n = 3000
    # 4 KiB messages: B's 1 MiB ring holds ~250, the slow reader takes 5 ms each while
    # ~1000/s arrive: it is lapped many times
    res = net.agents[0].call("publish", topic=topic, first=counter, count=n, size=4096,
                             pace=0.02, batch=20)
    assert res["raised"] == {}
    end = counter + n - 1
    wait_for(lambda: last_counter(net, 1, "fast", net.ids[0]) == end
             and last_counter(net, 1, "slow", net.ids[0]) == end
             and last_counter(net, 0, "local", None) == end, "the last message")
    slow = net.agents[1].call("stop", id="slow")
    fast = net.agents[1].call("stop", id="fast")
    local = net.agents[0].call("stop", id="local")
    received, lost = check_gaps(slow, net.ids[0])
    assert lost > 0, "the slow subscriber was never lapped: the test tested nothing"
    assert received + lost == end - messages(slow)[0][1] + 1
    assert check_gaps(fast, net.ids[0])[1] == 0
    assert check_gaps(local, None) == (end + 1, 0)


def test_killed_remote_bridge_never_blocks_and_restart_resumes(net: Net) -> None:
    """SIGKILL B's bridge: A's publisher never waits (publish_nowait never raises), A's
    local subscriber and C get everything; B's bridge restarted: traffic to B resumes
    and B's subscriber is told exactly what it missed while its bridge was dead."""
    topic, key = net.name("t"), f"msh/{net.tag}/t"
    for a in net.agents:
        a.call("topic", name=topic)
    net.agents[0].call("subscribe", id="local", topic=topic)
    for h in (1, 2):
        net.agents[h].call("subscribe", id="s", topic=topic)
    for i in range(3):
        net.bridge(i, topics={topic: key})
    counter = warm_up(net, 0, topic, [(1, "s"), (2, "s")])
    a = net.agents[0]
    a.call("publish", topic=topic, first=counter, count=100, pace=0.01, batch=10)
    counter += 100
    net.kill_bridge(1)
    res = a.call("publish", topic=topic, first=counter, count=2000, pace=0.01, batch=20)
    counter += 2000
    assert res["raised"] == {}, "A's publisher was held up by a dead remote bridge"
    assert net.bridges[0].p.poll() is None, net.bridges[0].describe()
    wait_for(lambda: last_counter(net, 2, "s", net.ids[0]) == counter - 1, "C's last message")
    net.bridge(1, topics={topic: key})
    counter = publish_until_received(net, 0, topic, counter, 1, "s", "its bridge restarted")
    end = counter - 1
    wait_for(lambda: last_counter(net, 1, "s", net.ids[0]) == end
             and last_counter(net, 2, "s", net.ids[0]) == end
             and last_counter(net, 0, "local", None) == end, "the last message")
    log_b = net.agents[1].call("stop", id="s")
    received, lost = check_gaps(log_b, net.ids[0])
    assert lost > 0
    assert received + lost == end - messages(log_b)[0][1] + 1
    assert check_gaps(net.agents[2].call("stop", id="s"), net.ids[0])[1] == 0
    assert check_gaps(net.agents[0].call("stop", id="local"), None) == (end + 1, 0)


def test_channel_across_hosts_exactly_one_delivery(net: Net) -> None:
    """Messages sent into a channel on A are delivered once each, to one of the
    receivers on B and C: none twice, none lost (nothing is faulted here)."""
    chan, key = net.name("c"), f"msh/{net.tag}/c"
    for a in net.agents:
        a.call("channel", name=chan)
    for h in (1, 2):
        net.agents[h].call("receiver", id="r", channel=chan)
    for i in range(3):
        net.bridge(i, channels={chan: key})
    n = 300
    net.agents[0].call("send", channel=chan, first=0, count=n, pace=0.001)

    def got() -> list[int]:
        return sorted(e[1] for h in (1, 2)
                      for e in messages(net.agents[h].call("report", id="r")))

    wait_for(lambda: len(got()) >= n, f"{n} deliveries")
    time.sleep(1.0)  # a duplicate would arrive now
    logs = {h: net.agents[h].call("stop", id="r") for h in (1, 2)}
    all_ = sorted(e[1] for log in logs.values() for e in messages(log))
    assert all_ == list(range(n)), "a message delivered twice or not at all"
    wait_for(lambda: net.stat(0)["channels"][0]["messages_out"] == n,
             "A's statistics to count its hand-overs")
    c = net.stat(0)["channels"][0]
    assert c["unacknowledged"] == 0 and c["lost"] == 0, c
    assert sum(net.stat(h)["channels"][0]["messages_in"] for h in (1, 2)) == n


def test_channel_receiving_host_cut_mid_stream_at_most_once(net: Net) -> None:
    """B's link is cut while A's channel messages are being handed to B and C: no message
    is delivered twice, every one A's bridge took was handed over once (acknowledged or
    counted unacknowledged), every one not delivered is among the unacknowledged, and
    delivery goes on (to C, then to B again once its link is back)."""
    chan, key = net.name("c"), f"msh/{net.tag}/c"
    for a in net.agents:
        a.call("channel", name=chan)
    for h in (1, 2):
        net.agents[h].call("receiver", id="r", channel=chan)
    for i in range(3):
        net.bridge(i, channels={chan: key})
    sender = net.agents[0]

    def delivered(h: int) -> list[int]:
        return [e[1] for e in messages(net.agents[h].call("report", id="r"))]

    sender.call("send", channel=chan, first=0, count=100, pace=0.005)
    wait_for(lambda: len(delivered(1)) + len(delivered(2)) == 100, "the first 100")
    assert delivered(1) and delivered(2), "one receiving host got nothing: no spread"
    def handed_over() -> int:
        c = net.stat(0)["channels"][0]
        return int(c["messages_out"] + c["unacknowledged"])

    c_before = len(delivered(2))
    net.hosts[1].cut()
    try:
        sender.call("send", channel=chan, first=100, count=200, pace=0.01)
        wait_for(lambda: handed_over() == 300, "A's bridge to hand over 300 while B is cut")
        assert len(delivered(2)) > c_before + 100, "C did not take over while B was cut"
    finally:
        net.hosts[1].restore()
    # after the restore: send until B receives again (zenoh reconnects within seconds)
    n = 300
    deadline = time.monotonic() + WAIT
    while not [x for x in delivered(1) if x >= 300]:
        assert time.monotonic() < deadline, "B got nothing after its link came back"
        sender.call("send", channel=chan, first=n, count=20, pace=0.01)
        n += 20
    wait_for(lambda: handed_over() == n, f"A's bridge to hand over all {n}")
    time.sleep(1.0)  # a late or duplicate delivery would arrive now
    got = {h: net.agents[h].call("stop", id="r") for h in (1, 2)}
    all_ = sorted(e[1] for log in got.values() for e in messages(log))
    c = net.stat(0)["channels"][0]
    twice = sorted({x for x in all_ if all_.count(x) > 1})
    assert not twice, (
        f"delivered twice: {twice}; on B: {[x for x in twice if x in delivered_in(got[1])]}"
        f", on C: {[x for x in twice if x in delivered_in(got[2])]}; A's bridge: {c}; "
        f"B's: {net.stat(1)['channels'][0]}; C's: {net.stat(2)['channels'][0]}"
    )
    assert set(all_) <= set(range(n))
    assert c["lost"] == 0, c
    assert c["messages_out"] <= len(all_), c  # each acknowledged one was delivered
    assert n - len(all_) <= c["unacknowledged"], (n - len(all_), c)
