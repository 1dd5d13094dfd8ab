"""The Zenoh bridge between two hosts, side by side with zenoh-python's own pub/sub.

Run from the repository root, as root (it makes network namespaces)::

    python benchmarks/bridge.py --quick                # smoke test, < ~1 min
    python benchmarks/bridge.py                        # full run, 3 repetitions, ~5 min
    python benchmarks/bridge.py --json out.json --markdown out.md --plot docs/img/bridge.png

Two "hosts" are network namespaces joined by a veth pair through a switch namespace, each
with its own /dev/shm (tests/netns/_hosts.py).  Each host runs a ``mapshare bridge`` (peer
mode, ``--listen`` on its own address, host B ``--connect``-ing to host A's) bridging the
topics ``ping``, ``pong``, ``data`` and ``local1``.  Rows:

* ``zenoh``: zenoh-python's own publisher and subscriber, one process on each host, the
  same zenoh configuration file as the bridges (multicast scouting off, explicit
  endpoints on the veth addresses, CongestionControl.DROP like the bridge's puts);
* ``bridge``: a mapshare ``Topic`` on A -> bridge A -> zenoh -> bridge B -> ``Topic`` on B
  (and back, for the round trip).

Cells, at 64 B, 4 KiB and 1 MiB:

* ``rtt``: round trip, ping on A -> echo on B -> pong on A (p50, p99);
* ``tput``: one way, A -> B: the publisher publishes ``count`` messages as fast as it can
  (it never waits: overwrite mode / DROP), the subscriber on B counts what it receives and
  what it is told it lost; rate = messages received / (subscriber's last receive - the
  publisher's first publish), both on CLOCK_MONOTONIC, which namespaces share;
* ``local``: a publisher and a subscriber on A, on a topic no bridge reads (``alone``)
  and on one bridge A forwards to B (``bridged``): the local subscriber's rate.

Processes are not pinned (four of them share the machine's CPUs in a bridge cell). The
repetitions are interleaved (rep 1 of every cell, then rep 2, ...) and the median is
reported. Targets (issue 14, part 6): bridge round trip <= 1.2x zenoh's, bridge
throughput >= 0.8x zenoh's, local subscribers at full speed with a bridge attached.
Exit status: 0 when every cell ran and nothing was left behind, 2 otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import queue
import select
import shlex
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

# benchmarks/ is sys.path[0] when this file runs as a script; the hosts harness lives with
# the tests that use it too.
sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "tests" / "netns"))

from _harness import fmt_rate, fmt_ratio, fmt_size, fmt_us, md_table, median, percentile, progress

KiB = 1 << 10
MiB = 1 << 20
SIZES = (64, 4 * KiB, MiB)
BENCHES = ("rtt", "tput", "local")
ROWS = {"rtt": ("zenoh", "bridge"), "tput": ("zenoh", "bridge"), "local": ("alone", "bridged")}
BRIDGE_PORT, ZENOH_PORT = 7447, 7448
TOPIC_CAPACITY = 16 * MiB  # holds fifteen 1 MiB messages
# the bridge forces shared_memory off (a SIGKILLed zenoh process would leave a file in
# /dev/shm): the zenoh row gets the same, so both use the TCP link alone
ZENOH_CONFIG = {"scouting": {"multicast": {"enabled": False}},
                "transport": {"shared_memory": {"enabled": False}}}
COUNTER = struct.Struct("<Q")
WARM, DATA, STOP = b"W", b"D", b"S"
READY_TIMEOUT = 60.0


def _message(kind: bytes, counter: int, size: int) -> bytes:
    head = kind + COUNTER.pack(counter)
    return head + bytes(max(0, size - len(head)))


# --------------------------------------------------------------------------- child roles
# Each runs in its own process on one host (``--_role NAME JSON``), prints JSON lines on
# stdout and reads commands (one word a line) on stdin.


def _say(**kw: Any) -> None:
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


def _stdin_line(timeout: float) -> Optional[str]:
    r, _, _ = select.select([sys.stdin], [], [], timeout)
    return sys.stdin.readline().strip() if r else None


class _Endpoint:
    """Publish/receive on one stream, as a mapshare Topic or as a zenoh key."""

    def __init__(self, a: dict[str, Any], stream: str, publish: bool) -> None:
        self.zenoh = a["row"] == "zenoh"
        self.lagged: type[BaseException]
        if self.zenoh:
            import zenoh

            self.session = _zenoh_session(a)
            key = f"{a['key']}/{stream}"
            if publish:
                self.pub = self.session.declare_publisher(
                    key, congestion_control=zenoh.CongestionControl.DROP)
            else:
                self.sub = self.session.declare_subscriber(key)
            self.lagged = type("NeverRaised", (Exception,), {})
        else:
            import mapshare

            self.topic = mapshare.Topic.open(stream, wait=READY_TIMEOUT, spin=a.get("spin"))
            self.lagged = mapshare.Lagged
            if not publish:
                self.sub = self.topic.subscribe()

    def publish(self, data: bytes) -> None:
        if self.zenoh:
            self.pub.put(data)
        else:
            self.topic.publish_nowait(data)

    def receive(self) -> bytes:
        if self.zenoh:
            return bytes(self.sub.recv().payload.to_bytes())
        return bytes(self.sub.receive())

    def try_receive(self, timeout: float) -> Optional[bytes]:
        if self.zenoh:
            deadline = time.monotonic() + timeout
            while True:
                s = self.sub.try_recv()
                if s is not None:
                    return bytes(s.payload.to_bytes())
                if time.monotonic() > deadline:
                    return None
                time.sleep(0.0005)
        try:
            return bytes(self.sub.receive(timeout))
        except TimeoutError:
            return None

    def close(self) -> None:
        if self.zenoh:
            (self.pub if hasattr(self, "pub") else self.sub).undeclare()
        else:
            if hasattr(self, "sub"):
                self.sub.close()
            self.topic.close()


_session: Any = None


def _zenoh_session(a: dict[str, Any]) -> Any:
    """This process's one zenoh session (a second one could not listen on the port)."""
    global _session
    if _session is None:
        _session = _open_session(a)
    return _session


def _open_session(a: dict[str, Any]) -> Any:
    import zenoh

    conf = zenoh.Config.from_file(a["config"])
    conf.insert_json5("mode", '"peer"')
    if a.get("listen"):
        conf.insert_json5("listen/endpoints", json.dumps([a["listen"]]))
    if a.get("connect"):
        conf.insert_json5("connect/endpoints", json.dumps([a["connect"]]))
    return zenoh.open(conf)


def role_hold(a: dict[str, Any]) -> None:
    """Create the topics (so they are large enough for 1 MiB messages) and hold them."""
    import mapshare

    topics = [mapshare.Topic.create(n, TOPIC_CAPACITY) for n in a["topics"]]
    _say(ready=True)
    sys.stdin.readline()
    for t in topics:
        t.close()


def role_rtt_server(a: dict[str, Any]) -> None:
    """Echo every ping back as a pong until a STOP ping."""
    sub = _Endpoint(a, "ping", publish=False)
    pub = _Endpoint(a, "pong", publish=True)
    _say(ready=True)
    while True:
        try:
            m = sub.receive()
        except sub.lagged:  # a ping lost on the way: the client sends it again
            continue
        if m[:1] == STOP:
            break
        pub.publish(m)
    sub.close()
    pub.close()


RESEND_AFTER = 1.0  # seconds without a pong before the ping is sent again


def role_rtt_client(a: dict[str, Any]) -> None:
    """Ping until a pong comes back (the path is up), warm up, then time ``count``
    round trips; each ping carries a counter so a late pong is never taken for another.

    Both rows' publishers drop rather than wait (zenoh's DROP: a 1 MiB message whose
    fragments do not fit its queue in time is dropped whole), so a ping or pong can be
    lost: a watchdog thread sends the ping again after RESEND_AFTER, the receive stays a
    plain blocking one (no polling in the timed path), and a round trip that needed a
    resend is not a latency sample (the report counts them)."""
    pub = _Endpoint(a, "ping", publish=True)
    sub = _Endpoint(a, "pong", publish=False)
    size, counter = a["size"], 0
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        counter += 1
        pub.publish(_message(WARM, counter, size))
        m = sub.try_receive(0.2)
        if m is not None:
            break
        if time.monotonic() > deadline:
            raise TimeoutError("no pong: the path between the hosts is not up")

    lock = threading.Lock()
    current: list[Any] = [None, 0.0]  # the ping in flight, when it was (re)sent
    resent: set[int] = set()
    done = threading.Event()

    def watchdog() -> None:
        while not done.wait(0.1):
            with lock:
                i, since = current
                if i is not None and time.monotonic() - since > RESEND_AFTER:
                    resent.add(i)
                    current[1] = time.monotonic()
                    pub.publish(_message(DATA, i, size))

    threading.Thread(target=watchdog, daemon=True).start()

    def round_trip(i: int) -> None:
        with lock:
            current[0], current[1] = i, time.monotonic()
        pub.publish(_message(DATA, i, size))
        while True:
            try:
                m = sub.receive()
            except sub.lagged:
                continue
            if m[:1] == DATA and COUNTER.unpack_from(m, 1)[0] == i:
                with lock:
                    current[0] = None
                return

    base = counter + 1000
    for i in range(a["warmup"]):
        round_trip(base + i)
    base += a["warmup"]
    clock = time.perf_counter_ns
    samples = []
    for i in range(a["count"]):
        t0 = clock()
        round_trip(base + i)
        t = clock() - t0
        if base + i not in resent:
            samples.append(t)
    done.set()
    pub.publish(_message(STOP, 0, 16))
    _say(p50_us=percentile(samples, 50) / 1e3 if samples else None,
         p99_us=percentile(samples, 99) / 1e3 if samples else None, resent=len(resent))
    time.sleep(0.2)  # let the STOP leave before the session closes
    pub.close()
    sub.close()


def role_publisher(a: dict[str, Any]) -> None:
    """WARM every 10 ms until told ``go``; then ``count`` messages as fast as it can;
    then STOP every 10 ms until told ``done``.  Says when the timed publishes began."""
    pub = _Endpoint(a, a["stream"], publish=True)
    _say(ready=True)
    while _stdin_line(0.01) != "go":
        pub.publish(_message(WARM, 0, a["size"]))
    data = _message(DATA, 0, a["size"])
    publish, n = pub.publish, a["count"]
    t0 = time.perf_counter_ns()
    for _ in range(n):
        publish(data)
    t1 = time.perf_counter_ns()
    while _stdin_line(0.01) != "done":
        pub.publish(_message(STOP, 0, 16))
    _say(t0=t0, t1=t1)
    pub.close()


def role_subscriber(a: dict[str, Any]) -> None:
    """Say ``warm`` at the first WARM; count DATA messages and reported losses until
    STOP; say the counts and the time of the last DATA message."""
    sub = _Endpoint(a, a["stream"], publish=False)
    _say(ready=True)
    received = missed = 0
    warm = False
    t_last = 0
    lagged, receive, clock = sub.lagged, sub.receive, time.perf_counter_ns
    while True:
        try:
            m = receive()
        except lagged as exc:
            missed += getattr(exc, "missed", 0)
            continue
        kind = m[:1]
        if kind == DATA:
            received += 1
            t_last = clock()
        elif kind == WARM and not warm:
            warm = True
            _say(warm=True)
        elif kind == STOP:
            break
    _say(received=received, missed=missed, t_last=t_last)
    sub.close()


ROLES = {"hold": role_hold, "rtt_server": role_rtt_server, "rtt_client": role_rtt_client,
         "publisher": role_publisher, "subscriber": role_subscriber}


# --------------------------------------------------------------------------- the parent


class Child:
    """A role running on a host; its stdout lines go to a queue (read by a thread)."""

    def __init__(self, host: Any, role: str, args: dict[str, Any]) -> None:
        self.role = role
        self.p = host.popen([sys.executable, os.path.abspath(__file__), "--_role", role,
                             json.dumps(args)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, bufsize=1)
        self.q: queue.Queue[str] = queue.Queue()
        self.err: list[str] = []
        threading.Thread(target=self._pump, args=(self.p.stdout, self.q.put), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.p.stderr, self.err.append),
                         daemon=True).start()

    @staticmethod
    def _pump(stream: Any, put: Any) -> None:
        try:
            for line in stream:
                put(line)
        except (ValueError, OSError):
            pass

    def read(self, timeout: float) -> dict[str, Any]:
        try:
            line = self.q.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"{self.role}: nothing within {timeout:.0f} s (exit "
                               f"{self.p.poll()}): {''.join(self.err)[-2000:]}") from None
        return dict(json.loads(line))

    def send(self, word: str) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write(word + "\n")
        self.p.stdin.flush()

    def finish(self, timeout: float) -> None:
        try:
            code = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            raise RuntimeError(f"{self.role} did not exit") from None
        if code != 0:
            raise RuntimeError(f"{self.role} exited {code}: {''.join(self.err)[-2000:]}")


@dataclasses.dataclass
class Result:
    bench: str
    row: str
    size: int
    rep: int
    count: int
    p50_us: Optional[float] = None
    p99_us: Optional[float] = None
    rate: Optional[float] = None  # messages received per second
    received: Optional[int] = None
    missed: Optional[int] = None  # reported lost (mapshare Lagged)
    publish_rate: Optional[float] = None
    resent: Optional[int] = None  # rtt: round trips whose ping or pong was lost (resent)
    error: Optional[str] = None
    traceback: Optional[str] = None


class Setup:
    """The two hosts, the topics held on each, the two bridges."""

    def __init__(self, tmp: str, spin: Optional[float] = None) -> None:
        import _hosts

        self.spin = spin
        reason = _hosts.unavailable()
        if reason:
            raise SystemExit(f"cannot make hosts here: {reason}")
        self.hosts = _hosts.Hosts(2)
        self.holders: list[Child] = []
        self.bridges: list[_BridgeProc] = []
        try:
            self._start(tmp)
        except BaseException:
            self.close()
            raise

    def _start(self, tmp: str) -> None:
        self.a, self.b = self.hosts[0], self.hosts[1]
        self.config = os.path.join(tmp, "zenoh.json5")
        with open(self.config, "w") as f:
            json.dump(ZENOH_CONFIG, f)
        self.key = f"mapshare-bench/{self.hosts.id}"
        self.hosts.check_private_shm()
        topics = ["ping", "pong", "data", "local0", "local1"]
        self.holders = [Child(h, "hold", {"topics": topics}) for h in (self.a, self.b)]
        for c in self.holders:
            c.read(READY_TIMEOUT)
        for h, peer in ((self.a, None), (self.b, self.a)):
            argv = [sys.executable, "-m", "mapshare", "bridge", "--mode", "peer",
                    "--listen", h.endpoint(BRIDGE_PORT), "--config", self.config,
                    "--host-id", f"bench{h.index}", "--json"]
            if peer is not None:
                argv += ["--connect", peer.endpoint(BRIDGE_PORT)]
            for t in ("ping", "pong", "data", "local1"):
                argv += ["--topic", f"{t}={self.key}/{t}"]
            self.bridges.append(_BridgeProc(h, argv))

    def close(self) -> None:
        for b in self.bridges:
            b.stop()
        for c in self.holders:
            try:
                c.send("")
                c.finish(10)
            except (RuntimeError, OSError):
                pass
        self.hosts.close()


class _BridgeProc(Child):
    """``mapshare bridge --json`` (not a role of this file); ready at its first line."""

    def __init__(self, host: Any, argv: list[str]) -> None:
        self.role = "bridge"
        self.p = host.popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, bufsize=1)
        self.q = queue.Queue()
        self.err = []
        threading.Thread(target=self._pump, args=(self.p.stdout, self.q.put), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.p.stderr, self.err.append),
                         daemon=True).start()
        # its first line is {"event": "started", ...}; statistics lines follow (dropped)
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            line = self.q.get(timeout=READY_TIMEOUT)
            if '"started"' in line:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the bridge never said started: {''.join(self.err)}")

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.terminate()
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


def _row_args(s: Setup, row: str, side: str, **kw: Any) -> dict[str, Any]:
    """Arguments of a role on host A (``side="a"``) or B for ``row``.  The zenoh rows
    use their own port: A listens, B connects (the bridges do the same)."""
    a: dict[str, Any] = {"row": row, "config": s.config, "key": f"{s.key}/z",
                         "spin": s.spin, **kw}
    if row == "zenoh":
        if side == "a":
            a["listen"] = s.a.endpoint(ZENOH_PORT)
        else:
            a["connect"] = s.a.endpoint(ZENOH_PORT)
    return a


def run_rtt(s: Setup, row: str, size: int, count: int, warmup: int, timeout: float) -> Result:
    res = Result("rtt", row, size, 0, count)
    server = Child(s.b, "rtt_server", _row_args(s, row, "b"))
    server.read(READY_TIMEOUT)
    client = Child(s.a, "rtt_client", _row_args(s, row, "a", size=size, count=count,
                                                   warmup=warmup))
    try:
        out = client.read(timeout)
        res.p50_us, res.p99_us, res.resent = out["p50_us"], out["p99_us"], out["resent"]
        client.finish(timeout)
        server.finish(timeout)
    finally:
        for c in (client, server):
            if c.p.poll() is None:
                c.p.kill()
                c.p.wait()
    return res


def run_stream(s: Setup, bench: str, row: str, size: int, count: int, timeout: float) -> Result:
    """tput (A -> B) or local (A -> A; ``alone``: topic local0, ``bridged``: local1)."""
    res = Result(bench, row, size, 0, count)
    if bench == "tput":
        stream, sub_host = "data", s.b
        pub_args = _row_args(s, row, "a", stream=stream, size=size, count=count)
        sub_args = _row_args(s, row, "b", stream=stream)
    else:
        stream, sub_host = ("local0" if row == "alone" else "local1"), s.a
        pub_args = _row_args(s, "mapshare", "a", stream=stream, size=size, count=count)
        sub_args = _row_args(s, "mapshare", "a", stream=stream)
    sub = Child(sub_host, "subscriber", sub_args)
    pub: Optional[Child] = None
    try:
        sub.read(READY_TIMEOUT)
        pub = Child(s.a, "publisher", pub_args)
        pub.read(READY_TIMEOUT)
        sub.read(READY_TIMEOUT)  # {"warm": true}: the path is up
        pub.send("go")
        out = sub.read(timeout)
        pub.send("done")
        times = pub.read(timeout)
        pub.finish(timeout)
        sub.finish(timeout)
        res.received, res.missed = out["received"], out["missed"]
        if out["t_last"] > times["t0"]:
            res.rate = out["received"] / ((out["t_last"] - times["t0"]) / 1e9)
        res.publish_rate = count / ((times["t1"] - times["t0"]) / 1e9)
    finally:
        for c in (pub, sub):
            if c is not None and c.p.poll() is None:
                c.p.kill()
                c.p.wait()
    return res


@dataclasses.dataclass
class Settings:
    repeat: int
    sizes: tuple[int, ...]
    benches: tuple[str, ...]
    rtt_n: int
    tput_n: dict[int, int]
    timeout: float


def counts_for(size: int, quick: bool) -> tuple[int, int]:
    """(round trips, streamed messages) for a size: about a second of work each for
    zenoh's row (the bridge row takes longer or reports more lost)."""
    rtt = {64: 3000, 4 * KiB: 3000, MiB: 300}.get(size, 500)
    tput = {64: 300000, 4 * KiB: 100000, MiB: 1500}.get(size, 2000)
    return (rtt // 10, tput // 10) if quick else (rtt, tput)


def run_all(s: Setup, st: Settings, quick: bool) -> list[Result]:
    plan = [(b, r, z) for b in st.benches for z in st.sizes for r in ROWS[b]]
    bar = progress(len(plan) * st.repeat, "bridge")
    results: list[Result] = []
    for rep in range(st.repeat):
        for bench, row, size in plan:
            n_rtt, n_stream = counts_for(size, quick)
            bar.set_postfix_str(f"{bench} {row} {fmt_size(size)}")
            try:
                if bench == "rtt":
                    r = run_rtt(s, row, size, n_rtt, max(10, n_rtt // 10), st.timeout)
                else:
                    r = run_stream(s, bench, row, size, n_stream, st.timeout)
            except Exception as exc:
                r = Result(bench, row, size, rep, 0, error=f"{type(exc).__name__}: {exc}",
                           traceback=traceback.format_exc())
                bar.write(f"{bench} {row} {fmt_size(size)}: {r.error}")
            r.rep = rep
            results.append(r)
            bar.update(1)
    bar.close()
    return results


def summarize(results: list[Result]) -> dict[tuple[str, str, int], dict[str, Optional[float]]]:
    out: dict[tuple[str, str, int], dict[str, Optional[float]]] = {}
    keys = {(r.bench, r.row, r.size) for r in results}
    for k in keys:
        rs = [r for r in results if (r.bench, r.row, r.size) == k and r.error is None]

        def med(field: str, rs: list[Result] = rs) -> Optional[float]:
            v = [getattr(r, field) for r in rs if getattr(r, field) is not None]
            return median(v) if v else None

        # lost: published but not received (told or not); silent: of those, the ones
        # the subscriber was never told about (zenoh's DROP says nothing; the bridge must
        # account for every one with a Lagged)
        lost = [1 - r.received / r.count for r in rs if r.received is not None and r.count]
        # (missed may also count a WARM or STOP message the network dropped: clamp at 0)
        silent = [max(0, r.count - r.received - (r.missed or 0)) / r.count for r in rs
                  if r.received is not None and r.count]
        out[k] = {"p50_us": med("p50_us"), "p99_us": med("p99_us"), "rate": med("rate"),
                  "resent": sum(r.resent for r in rs if r.resent is not None),
                  "publish_rate": med("publish_rate"),
                  "loss": median(lost) if lost else None,
                  "silent_loss": median(silent) if silent else None}
    return out


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return a / b if a is not None and b else None


def targets(summary: Any, st: Settings) -> list[dict[str, Any]]:
    """Every target of the issue at every size: ratio and met / not met."""
    out = []
    for z in st.sizes:
        if "rtt" in st.benches:
            r = _ratio(summary.get(("rtt", "bridge", z), {}).get("p50_us"),
                       summary.get(("rtt", "zenoh", z), {}).get("p50_us"))
            out.append({"target": f"round trip p50, {fmt_size(z)}: bridge <= 1.2x zenoh",
                        "ratio": r, "met": None if r is None else r <= 1.2})
        if "tput" in st.benches:
            r = _ratio(summary.get(("tput", "bridge", z), {}).get("rate"),
                       summary.get(("tput", "zenoh", z), {}).get("rate"))
            out.append({"target": f"throughput, {fmt_size(z)}: bridge >= 0.8x zenoh",
                        "ratio": r, "met": None if r is None else r >= 0.8})
        if "local" in st.benches:
            r = _ratio(summary.get(("local", "bridged", z), {}).get("rate"),
                       summary.get(("local", "alone", z), {}).get("rate"))
            out.append({"target": f"local subscriber, {fmt_size(z)}: bridged / alone",
                        "ratio": r, "met": None})
    return out


def _pct(v: Optional[float]) -> str:
    return "—" if v is None else f"{100 * v:.1f} %"


def report(summary: Any, results: list[Result], st: Settings, command: str, elapsed: float,
           load: str) -> str:
    lines = [f"`{command}` — {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, "
             f"{os.cpu_count()} CPUs, Python {platform.python_version()}, median of "
             f"{st.repeat}, not pinned; load average before the run: {load}; "
             f"{elapsed:.0f} s", ""]

    def g(b: str, r: str, z: int, f: str) -> Optional[float]:
        v = summary.get((b, r, z), {}).get(f)
        return v if isinstance(v, (int, float)) else None

    if "rtt" in st.benches:
        lines += ["### Round trip A -> B -> A (µs, p50 / p99)", ""]
        rows = []
        for z in st.sizes:
            rows.append([fmt_size(z),
                         f"{fmt_us(g('rtt', 'zenoh', z, 'p50_us'))} / "
                         f"{fmt_us(g('rtt', 'zenoh', z, 'p99_us'))}",
                         f"{fmt_us(g('rtt', 'bridge', z, 'p50_us'))} / "
                         f"{fmt_us(g('rtt', 'bridge', z, 'p99_us'))}",
                         fmt_ratio(_ratio(g("rtt", "bridge", z, "p50_us"),
                                          g("rtt", "zenoh", z, "p50_us")))])
        lines += [md_table(["size", "zenoh-python pub/sub", "mapshare bridge",
                            "bridge / zenoh (p50)"], rows), ""]
        resent = {(r, z): summary.get(("rtt", r, z), {}).get("resent") for r in ROWS["rtt"]
                  for z in st.sizes}
        if any(resent.values()):
            lines += ["Pings sent again after 1 s without a pong (a ping or pong dropped; not "
                      "a latency sample), all repetitions: " + ", ".join(
                          f"{r} {fmt_size(z)}: {v}" for (r, z), v in resent.items() if v), ""]
    if "tput" in st.benches:
        lines += ["### One way A -> B (messages/s received; in brackets: lost, and of those "
                  "how many the subscriber was never told about)", ""]
        rows = []
        for z in st.sizes:
            zr, br = g("tput", "zenoh", z, "rate"), g("tput", "bridge", z, "rate")
            rows.append([fmt_size(z),
                         f"{fmt_rate(zr)} ({_pct(g('tput', 'zenoh', z, 'loss'))}, "
                         f"silent {_pct(g('tput', 'zenoh', z, 'silent_loss'))})",
                         f"{fmt_rate(br)} ({_pct(g('tput', 'bridge', z, 'loss'))}, "
                         f"silent {_pct(g('tput', 'bridge', z, 'silent_loss'))})",
                         fmt_ratio(_ratio(br, zr)),
                         "—" if br is None else f"{br * z / 1e6:.0f} MB/s"])
        lines += [md_table(["size", "zenoh-python pub/sub", "mapshare bridge",
                            "bridge / zenoh", "bridge MB/s"], rows), ""]
        lines += ["Both publishers never wait (zenoh: CongestionControl.DROP; mapshare: an "
                  "overwrite-mode topic), so what the path cannot carry is lost; zenoh's "
                  "subscriber is not told, the bridge's gets a Lagged for every lost message "
                  "(silent loss 0).", ""]
    if "local" in st.benches:
        lines += ["### Local subscriber on A (messages/s; lost in brackets): topic not "
                  "bridged / bridged", ""]
        rows = []
        for z in st.sizes:
            al, bd = g("local", "alone", z, "rate"), g("local", "bridged", z, "rate")
            rows.append([fmt_size(z), f"{fmt_rate(al)} ({_pct(g('local', 'alone', z, 'loss'))})",
                         f"{fmt_rate(bd)} ({_pct(g('local', 'bridged', z, 'loss'))})",
                         fmt_ratio(_ratio(bd, al))])
        lines += [md_table(["size", "alone", "with the bridge reading it", "ratio"], rows), ""]
    lines += ["### Targets (issue 14)", ""]
    rows = [[t["target"], fmt_ratio(t["ratio"]),
             "—" if t["met"] is None else ("met" if t["met"] else "**not met**")]
            for t in targets(summary, st)]
    lines += [md_table(["target", "ratio", ""], rows, right_from=1), ""]
    errors = [r for r in results if r.error]
    if errors:
        lines += ["### Errors", ""] + [f"- {r.bench} {r.row} {fmt_size(r.size)} rep {r.rep}: "
                                      f"{r.error}" for r in errors] + [""]
    return "\n".join(lines)


def plot(summary: Any, st: Settings, path: Path, command: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    benches = [b for b in BENCHES if b in st.benches]
    fig, axes = plt.subplots(1, len(benches), figsize=(5 * len(benches), 4.2), squeeze=False)
    labels = [fmt_size(z) for z in st.sizes]
    titles = {"rtt": "round trip p50, µs (lower is better)",
              "tput": "A -> B, messages/s (higher is better)",
              "local": "local subscriber on A, messages/s"}
    field = {"rtt": "p50_us", "tput": "rate", "local": "rate"}
    for ax, b in zip(axes[0], benches):
        for k, row in enumerate(ROWS[b]):
            vals = [summary.get((b, row, z), {}).get(field[b]) or float("nan")
                    for z in st.sizes]
            ax.bar([i + (k - 0.5) * 0.4 for i in range(len(labels))], vals, 0.4, label=row)
        ax.set_xticks(range(len(labels)), labels)
        ax.set_yscale("log")
        ax.set_title(titles[b], fontsize=9)
        ax.legend(fontsize=8)
        ax.grid(which="both", alpha=0.3)
    fig.suptitle(f"{command}\nmedian of {st.repeat}; {os.cpu_count()} CPUs, not pinned",
                 fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark the mapshare Zenoh bridge between two network namespaces "
                    "against zenoh-python's own pub/sub (needs root).")
    p.add_argument("--quick", action="store_true", help="smoke test: a tenth of the counts")
    p.add_argument("--repeat", type=int, default=None, help="repetitions (3; 1 with --quick)")
    p.add_argument("--bench", default=",".join(BENCHES), help="rtt,tput,local")
    p.add_argument("--sizes", default=None, help="sizes in bytes (64,4096,1048576)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds before a cell fails")
    p.add_argument("--mapshare-spin", type=float, default=None,
                   help="spin=SECONDS for the benchmark's own topics (not the bridges')")
    p.add_argument("--json", type=Path, default=None, help="write all results as JSON")
    p.add_argument("--markdown", type=Path, default=None, help="write the report here too")
    p.add_argument("--plot", type=Path, default=None, help="write a PNG (needs matplotlib)")
    p.add_argument("--_role", nargs=2, default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args._role is not None:
        ROLES[args._role[0]](json.loads(args._role[1]))
        return 0
    # SIGTERM (a timeout, CI) unwinds like Ctrl-C: the finally below deletes the hosts
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    benches = tuple(b.strip() for b in args.bench.split(",") if b.strip())
    if not benches or not set(benches) <= set(BENCHES):
        raise SystemExit(f"--bench takes {', '.join(BENCHES)}")
    st = Settings(
        repeat=args.repeat or (1 if args.quick else 3),
        sizes=tuple(int(x) for x in args.sizes.split(",")) if args.sizes else SIZES,
        benches=benches, rtt_n=0, tput_n={}, timeout=args.timeout)
    command = "python benchmarks/bridge.py" + "".join(
        " " + shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mapshare-bench-bridge-") as tmp:
        s = Setup(tmp, args.mapshare_spin)
        hosts_id = s.hosts.id
        try:
            results = run_all(s, st, args.quick)
        finally:
            s.close()
    elapsed = time.monotonic() - start
    import _hosts

    left = _hosts.leftover_namespaces(hosts_id)
    summary = summarize(results)
    md = report(summary, results, st, command, elapsed, load)
    print(md)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(md, encoding="utf-8")
    if args.json:
        doc = {
            "command": command,
            "date": dt.datetime.now(dt.timezone.utc).isoformat(),
            "machine": {"system": platform.system(), "machine": platform.machine(),
                        "cpus": os.cpu_count(), "python": platform.python_version(),
                        "load_before": load},
            "settings": dataclasses.asdict(st),
            "cells": [dataclasses.asdict(r) for r in results],
            "summary": [{"bench": k[0], "row": k[1], "size": k[2], **v}
                        for k, v in sorted(summary.items())],
            "targets": targets(summary, st),
            "leftover_namespaces": left,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    if args.plot:
        plot(summary, st, args.plot, command)
    return 0 if not left and not any(r.error for r in results) else 2


if __name__ == "__main__":
    sys.exit(main())
