"""Broadcast publish/subscribe: mapshare.Topic side by side with iceoryx2, pyzmq and Aeron.

Run from the repository root::

    python benchmarks/topic.py --quick                # smoke test, < ~1 min
    python benchmarks/topic.py                        # full run, 3 repetitions, <= ~8 min
    python benchmarks/topic.py --json out.json --markdown out.md --plot docs/img/topic.png
    python benchmarks/topic.py --only topic,channel --bench rtt

Cells (issue 11, part 10), each in freshly spawned processes, pinned: the publisher (or the
echo server) on the first CPU this process may use, every subscriber (or the client) on
the second:

* ``rtt``: 64-byte publish -> receive round trip, a ping-pong over two topics (p50/p99);
  mapshare ``Channel`` runs it too, as the reference of the "<= 1.3x Channel" target.
* ``pubcost``: the publisher's cost per message, timed in the publisher (total time of M
  publishes / M), with 1, 4 and 16 subscribers receiving as fast as they can.
* ``fanout``: aggregate delivered messages/s (the sum over subscribers of the messages each
  received and made ``bytes`` of, divided by the time from the first publish to the last
  subscriber's last message) with 1 and 4 subscribers at 64 B, 4 KiB and 1 MiB.
* ``stall``: in overwrite mode, per-publish latency percentiles (p50, p99, p99.9) with no
  subscriber and with one subscriber that never reads.

How each row publishes and what it does with a subscriber that is behind is in
``_pubsub.py``. The Aeron row needs CPython >= 3.12 (``pyaeron``): its cells run under
``--aeron-python`` (default ``/work/venv-aeron/bin/python`` if it exists, or
``$MAPSHARE_BENCH_AERON_PYTHON``), which runs this same file with ``--_cell``; the row is
skipped, with the reason printed, when that interpreter cannot import ``pyaeron``.

The report prints every target of the issue as met / not met with its ratio. Compare
numbers only within one run; the machine is noisy. Exit status: 0 when every cell ran and
nothing leaked, 2 otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# benchmarks/ is sys.path[0] when this file is run as a script; spawned children inherit it.
from _harness import (
    ChildSpec,
    fmt_rate,
    fmt_ratio,
    fmt_size,
    fmt_us,
    leak_snapshot,
    md_table,
    median,
    percentile,
    progress,
    run_group,
    spawn_context,
)
from _pubsub import GO, STOP, Cell, PubSub, all_pubsubs

KiB = 1 << 10
MiB = 1 << 20
SIZES = (64, 4 * KiB, MiB)
PUBCOST_SUBS = (1, 4, 16)
FANOUT_SUBS = (1, 4)
BENCHES = ("rtt", "pubcost", "fanout", "stall")
DEFAULT_AERON_PYTHON = "/work/venv-aeron/bin/python"
BARRIER_TIMEOUT = 120.0


def _payload(size: int) -> bytes:
    pattern = bytes(range(256))
    return (pattern * (size // 256 + 1))[:size]


# --------------------------------------------------------------------------- child roles
# Module-level functions: run_group pickles them by name to the spawned children.


def role_rtt_server(ps: PubSub, state: Any, cell: Cell, barrier: Any) -> None:
    """Echo every message of stream 0 back on stream 1."""
    sub = ps.subscriber(state, cell, 0)
    pub = ps.publisher(state, cell, 1)
    try:
        barrier.wait(BARRIER_TIMEOUT)  # every endpoint exists
        pub.ready(1)
        recv, publish = sub.recv, pub.publish
        for _ in range(cell.warmup + cell.count):
            publish(recv())
        barrier.wait(BARRIER_TIMEOUT)
    finally:
        pub.close()
        sub.close()


def role_rtt_client(ps: PubSub, state: Any, cell: Cell, barrier: Any) -> list[int]:
    """Publish on stream 0, wait for the echo on stream 1; time each round trip (ns)."""
    pub = ps.publisher(state, cell, 0)
    sub = ps.subscriber(state, cell, 1)
    try:
        barrier.wait(BARRIER_TIMEOUT)
        pub.ready(1)
        publish, recv, clock = pub.publish, sub.recv, time.perf_counter_ns
        payload = _payload(cell.size)
        for _ in range(cell.warmup):
            publish(payload)
            recv()
        samples = [0] * cell.count
        for i in range(cell.count):
            t0 = clock()
            publish(payload)
            recv()
            samples[i] = clock() - t0
        barrier.wait(BARRIER_TIMEOUT)
        return samples
    finally:
        pub.close()
        sub.close()


def _bump(counter: Any) -> None:
    with counter.get_lock():
        counter.value += 1


def role_publisher(
    ps: PubSub, state: Any, cell: Cell, go: Any, done: Any, barrier: Any
) -> tuple[int, int]:
    """Warm up, start everyone with GO, time ``count`` publishes, end everyone with STOP.

    GO and STOP are published again every millisecond until every subscriber has
    acknowledged them (lossy transports may drop one). Returns (start, end) in
    ``perf_counter_ns`` of the timed publishes.
    """
    n = cell.subscribers
    pub = ps.publisher(state, cell, 0)
    try:
        barrier.wait(BARRIER_TIMEOUT)
        pub.ready(n)
        publish, clock = pub.publish, time.perf_counter_ns
        payload = _payload(cell.size)
        for _ in range(cell.warmup):
            publish(payload)
        while go.value < n:
            publish(GO)
            pub.refresh()
            time.sleep(0.001)
        t0 = clock()
        for _ in range(cell.count):
            publish(payload)
        t1 = clock()
        while done.value < n:
            publish(STOP)
            time.sleep(0.001)
        barrier.wait(BARRIER_TIMEOUT)
        return t0, t1
    finally:
        pub.close()


def role_subscriber(
    ps: PubSub, state: Any, cell: Cell, go: Any, done: Any, barrier: Any
) -> tuple[int, int, int]:
    """Receive (making ``bytes`` of each) from GO to STOP; count messages and losses.

    Returns (messages received, ``perf_counter_ns`` when STOP arrived, messages reported
    missed through the transport's lag exception).
    """
    sub = ps.subscriber(state, cell, 0)
    try:
        barrier.wait(BARRIER_TIMEOUT)
        recv, lagged = sub.recv, sub.lagged
        while True:  # the warm-up, up to GO
            try:
                if recv() == GO:
                    break
            except lagged:
                pass
        _bump(go)
        received = missed = 0
        while True:
            try:
                m = recv()
            except lagged as exc:
                missed += getattr(exc, "missed", 0)
                continue
            if len(m) == 1:
                if m == STOP:
                    break
                continue  # a repeated GO
            received += 1
        t = time.perf_counter_ns()
        _bump(done)
        barrier.wait(BARRIER_TIMEOUT)  # nobody leaves while the publisher still counts
        return received, t, missed
    finally:
        sub.close()


def role_stall_publisher(ps: PubSub, state: Any, cell: Cell, barrier: Any) -> dict[str, float]:
    """Time each of ``count`` publishes on its own; return percentiles in ns."""
    pub = ps.publisher(state, cell, 0)
    try:
        barrier.wait(BARRIER_TIMEOUT)
        pub.ready(cell.subscribers)
        publish, clock = pub.publish, time.perf_counter_ns
        payload = _payload(cell.size)
        for _ in range(cell.warmup):
            publish(payload)
        samples = [0] * cell.count
        for i in range(cell.count):
            t0 = clock()
            publish(payload)
            samples[i] = clock() - t0
        barrier.wait(BARRIER_TIMEOUT)
        return {
            "p50_ns": percentile(samples, 50),
            "p99_ns": percentile(samples, 99),
            "p999_ns": percentile(samples, 99.9),
            "max_ns": float(max(samples)),
            "mean_ns": sum(samples) / len(samples),
        }
    finally:
        pub.close()


def role_stalled_subscriber(ps: PubSub, state: Any, cell: Cell, barrier: Any) -> None:
    """Subscribe, then never read until the publisher is done."""
    sub = ps.subscriber(state, cell, 0)
    try:
        barrier.wait(BARRIER_TIMEOUT)
        barrier.wait(BARRIER_TIMEOUT)
    finally:
        sub.close()


# --------------------------------------------------------------------------- one cell


@dataclasses.dataclass
class Result:
    """What one cell measured (the fields its bench fills); ``error`` when it failed."""

    transport: str
    bench: str
    size: int
    subscribers: int
    rep: int
    count: int
    p50_us: float | None = None  # rtt
    p99_us: float | None = None  # rtt
    ns_per_publish: float | None = None  # pubcost
    rate: float | None = None  # fanout: delivered messages/s over all subscribers
    delivered: int | None = None  # pubcost, fanout: messages received, all subscribers
    missed: int | None = None  # pubcost, fanout: reported lost (mapshare Lagged)
    publish_rate: float | None = None  # pubcost, fanout: publishes/s
    stall: dict[str, float] | None = None  # stall: p50_ns, p99_ns, p999_ns, max_ns, mean_ns
    error: str | None = None
    traceback: str | None = None


def run_one(
    ps: PubSub,
    cell: Cell,
    cpus: tuple[list[int] | None, list[int] | None],
    rep: int,
    timeout: float,
) -> Result:
    """Run ``cell`` for ``ps`` in spawned processes (in this interpreter)."""
    res = Result(ps.key, cell.bench, cell.size, cell.subscribers, rep, cell.count)
    first, second = cpus
    state, teardown = ps.setup(cell)
    ctx = spawn_context()
    go, done = ctx.Value("i", 0), ctx.Value("i", 0)
    if cell.bench == "rtt":
        specs = [
            ChildSpec(role_rtt_server, (ps, state, cell), first, f"bench-{ps.key}-server"),
            ChildSpec(role_rtt_client, (ps, state, cell), second, f"bench-{ps.key}-client"),
        ]
    elif cell.bench == "stall":
        specs = [ChildSpec(role_stall_publisher, (ps, state, cell), first, f"bench-{ps.key}-pub")]
        specs += [
            ChildSpec(role_stalled_subscriber, (ps, state, cell), second, f"bench-{ps.key}-stalled")
            for _ in range(cell.subscribers)
        ]
    else:
        args = (ps, state, cell, go, done)
        specs = [ChildSpec(role_publisher, args, first, f"bench-{ps.key}-pub")]
        specs += [
            ChildSpec(role_subscriber, args, second, f"bench-{ps.key}-sub{i}")
            for i in range(cell.subscribers)
        ]
    group = run_group(specs, timeout, teardown)
    if group.error is not None:
        res.error, res.traceback = group.error, group.traceback
        return res
    out = group.results
    if cell.bench == "rtt":
        samples: list[int] = out[1]
        res.p50_us = percentile(samples, 50) / 1e3
        res.p99_us = percentile(samples, 99) / 1e3
    elif cell.bench == "stall":
        res.stall = out[0]
    else:
        t0, t1 = out[0]
        subs = out[1:]
        res.ns_per_publish = (t1 - t0) / cell.count
        res.publish_rate = cell.count / ((t1 - t0) / 1e9) if t1 > t0 else None
        res.delivered = sum(s[0] for s in subs)
        res.missed = sum(s[2] for s in subs)
        last = max(s[1] for s in subs)
        res.rate = res.delivered / ((last - t0) / 1e9) if last > t0 else None
    return res


def run_elsewhere(
    ps: PubSub,
    cell: Cell,
    cpus: tuple[list[int] | None, list[int] | None],
    rep: int,
    timeout: float,
) -> Result:
    """Run ``cell`` under ``ps.python`` (this file with ``--_cell``) and parse its result."""
    assert ps.python is not None
    job = {
        "transport": ps.key,
        "cell": dataclasses.asdict(cell),
        "cpus": list(cpus),
        "rep": rep,
        "timeout": timeout,
    }
    try:
        proc = subprocess.run(
            [ps.python, os.path.abspath(__file__), "--_cell", json.dumps(job)],
            capture_output=True,
            text=True,
            timeout=timeout + 30,
        )
    except subprocess.TimeoutExpired:
        return Result(
            ps.key,
            cell.bench,
            cell.size,
            cell.subscribers,
            rep,
            cell.count,
            error=f"{ps.python} timed out",
        )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return Result(
            ps.key,
            cell.bench,
            cell.size,
            cell.subscribers,
            rep,
            cell.count,
            error=f"{ps.python} exited {proc.returncode}: {tail}",
            traceback=proc.stderr,
        )
    return Result(**json.loads(lines[-1]))


def _cell_main(job_json: str, aeron_python: str | None) -> int:
    """``--_cell``: run one cell in this interpreter, print its Result as JSON."""
    job = json.loads(job_json)
    ps = next(p for p in all_pubsubs(aeron_python=None) if p.key == job["transport"])
    cpus = tuple(job["cpus"])
    res = run_one(ps, Cell(**job["cell"]), (cpus[0], cpus[1]), job["rep"], job["timeout"])
    print(json.dumps(dataclasses.asdict(res)))
    return 0


# --------------------------------------------------------------------------- all cells


@dataclasses.dataclass
class Settings:
    repeat: int
    seconds: float
    rtt_n: int
    stall_n: int
    sizes: tuple[int, ...]
    pubcost_subs: tuple[int, ...]
    fanout_subs: tuple[int, ...]
    benches: tuple[str, ...]
    timeout: float
    pinned: bool = True


def cell_plan(st: Settings) -> list[tuple[str, int, int]]:
    """(bench, size, subscribers) of every cell of one repetition, in run order."""
    plan: list[tuple[str, int, int]] = []
    if "rtt" in st.benches:
        plan.append(("rtt", 64, 1))
    if "pubcost" in st.benches:
        plan += [("pubcost", 64, n) for n in st.pubcost_subs]
    if "fanout" in st.benches:
        plan += [("fanout", z, n) for n in st.fanout_subs for z in st.sizes]
    if "stall" in st.benches:
        plan += [("stall", 64, n) for n in (0, 1)]
    return plan


def run_all(
    pubsubs: list[PubSub],
    st: Settings,
    cpus: tuple[list[int] | None, list[int] | None],
    spin: float | None,
) -> list[Result]:
    plan = cell_plan(st)
    jobs = [(b, z, n, ps) for b, z, n in plan for ps in pubsubs if ps.why_not(b) is None]
    total = st.repeat * len(jobs)
    results: list[Result] = []
    measured: dict[tuple[str, str, int, int], list[float]] = {}
    bar = progress(total, "topic benchmark")
    try:
        for rep in range(st.repeat):
            k = rep % len(pubsubs)
            order = pubsubs[k:] + pubsubs[:k]
            for bench, size, nsubs in plan:
                for ps in order:
                    if ps.why_not(bench) is not None:
                        continue
                    bar.set_postfix_str(f"rep {rep + 1} {bench} {fmt_size(size)} x{nsubs} {ps.key}")
                    if bench == "rtt":
                        count, warmup = st.rtt_n, max(100, st.rtt_n // 10)
                    elif bench == "stall":
                        count, warmup = st.stall_n, max(100, st.stall_n // 10)
                    else:
                        past = measured.get((ps.key, bench, size, nsubs))
                        rate = median(past) if past else ps.hint(size)
                        count = int(min(5_000_000, max(20, rate * st.seconds)))
                        warmup = min(1000, max(5, count // 20))
                    cell = Cell(bench, size, nsubs, count, warmup, spin)
                    runner = run_elsewhere if ps.python else run_one
                    try:
                        r = runner(ps, cell, cpus, rep, st.timeout)
                    except Exception as exc:
                        r = Result(
                            ps.key,
                            bench,
                            size,
                            nsubs,
                            rep,
                            count,
                            error=f"{type(exc).__name__}: {exc}",
                        )
                    if r.error:
                        bar.write(
                            f"FAILED {ps.key} {bench} {fmt_size(size)} x{nsubs}: {r.error}",
                            file=sys.stderr,
                        )
                    elif r.publish_rate:
                        measured.setdefault((ps.key, bench, size, nsubs), []).append(r.publish_rate)
                    results.append(r)
                    bar.update(1)
    finally:
        bar.close()
    return results


# --------------------------------------------------------------------------- summary


def _med(
    results: list[Result], key: str, bench: str, size: int, nsubs: int, get: Any
) -> float | None:
    vals = [
        get(r)
        for r in results
        if r.transport == key
        and r.bench == bench
        and r.size == size
        and r.subscribers == nsubs
        and r.error is None
    ]
    vals = [v for v in vals if v is not None]
    return median(vals) if vals else None


def summarize(pubsubs: list[PubSub], results: list[Result], st: Settings) -> dict[str, Any]:
    """Medians per (transport, cell) over the repetitions, as plain dicts (for the JSON)."""
    out: dict[str, Any] = {}
    for ps in pubsubs:
        k = ps.key
        row: dict[str, Any] = {"label": ps.label}
        row["rtt_p50_us"] = _med(results, k, "rtt", 64, 1, lambda r: r.p50_us)
        row["rtt_p99_us"] = _med(results, k, "rtt", 64, 1, lambda r: r.p99_us)
        row["pubcost_ns"] = {
            n: _med(results, k, "pubcost", 64, n, lambda r: r.ns_per_publish)
            for n in st.pubcost_subs
        }
        row["fanout_rate"] = {
            f"{n}x{z}": _med(results, k, "fanout", z, n, lambda r: r.rate)
            for n in st.fanout_subs
            for z in st.sizes
        }
        row["fanout_lost"] = {
            f"{n}x{z}": _med(
                results,
                k,
                "fanout",
                z,
                n,
                lambda r, n=n: None if r.delivered is None else n * r.count - r.delivered,
            )
            for n in st.fanout_subs
            for z in st.sizes
        }
        row["stall"] = {
            n: {
                q: _med(
                    results,
                    k,
                    "stall",
                    64,
                    n,
                    lambda r, q=q: None if r.stall is None else r.stall[q],
                )
                for q in ("p50_ns", "p99_ns", "p999_ns", "max_ns")
            }
            for n in (0, 1)
        }
        out[k] = row
    return out


def targets(
    summary: dict[str, Any], st: Settings
) -> list[tuple[str, str, float | None, bool | None]]:
    """(target, how measured, ratio, met) for every target of issue 11 part 10."""
    topic = summary.get("topic", {})
    chan = summary.get("channel", {})
    iox = summary.get("iceoryx2", {})
    aeron = summary.get("aeron", {})
    rows: list[tuple[str, str, float | None, bool | None]] = []

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a and b else None

    def row(name: str, how: str, r: float | None, limit: float, at_most: bool) -> None:
        met = None if r is None else (r <= limit if at_most else r >= limit)
        rows.append((name, how, r, met))

    tp50 = topic.get("rtt_p50_us")
    row(
        "round trip p50 <= 1.3x Channel",
        "Topic p50 / Channel p50",
        ratio(tp50, chan.get("rtt_p50_us")),
        1.3,
        True,
    )
    row(
        "round trip p50 <= 0.25x iceoryx2 busy-poll",
        "Topic p50 / iceoryx2 p50",
        ratio(tp50, iox.get("rtt_p50_us")),
        0.25,
        True,
    )
    cost = topic.get("pubcost_ns", {})
    hi = max(st.pubcost_subs) if st.pubcost_subs else None
    lo = min(st.pubcost_subs) if st.pubcost_subs else None
    row(
        f"publisher cost, {hi} subscribers <= 1.2x 1",
        f"ns/publish x{hi} / x{lo}",
        ratio(cost.get(hi), cost.get(lo)),
        1.2,
        True,
    )
    stall = topic.get("stall", {})
    row(
        "overwrite: publish p99.9 with a stopped subscriber <= 1.5x none",
        "p99.9 stalled / p99.9 none",
        ratio(stall.get(1, {}).get("p999_ns"), stall.get(0, {}).get("p999_ns")),
        1.5,
        True,
    )
    n = max(st.fanout_subs) if st.fanout_subs else 0
    for z in st.sizes:
        key = f"{n}x{z}"
        mine = topic.get("fanout_rate", {}).get(key)
        row(
            f"delivery, {n} subscribers, {fmt_size(z)}: >= 2x iceoryx2",
            "Topic / iceoryx2",
            ratio(mine, iox.get("fanout_rate", {}).get(key)),
            2.0,
            False,
        )
        row(
            f"delivery, {n} subscribers, {fmt_size(z)}: >= 1x Aeron",
            "Topic / Aeron",
            ratio(mine, aeron.get("fanout_rate", {}).get(key)),
            1.0,
            False,
        )
    return rows


# --------------------------------------------------------------------------- report


def fmt_ns(v: float | None) -> str:
    if v is None or math.isnan(v):
        return "—"
    if v >= 10_000:
        return f"{v / 1e3:.0f} µs"
    if v >= 1_000:
        return f"{v / 1e3:.2f} µs"
    return f"{v:.0f} ns"


def report(
    pubsubs: list[PubSub],
    summary: dict[str, Any],
    results: list[Result],
    skipped: dict[str, str],
    st: Settings,
    command: str,
    elapsed: float,
    leaks: list[str],
) -> str:
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# mapshare Topic benchmark",
        "",
        f"`{command}` — {now}; {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"{platform.python_implementation()} {platform.python_version()}; median of "
        f"{st.repeat} interleaved repetition(s); run took {elapsed:.0f} s. "
        + (
            "Pinned: publisher (echo server) on one CPU, every subscriber (client) on the other. "
            if st.pinned
            else "Not pinned (fewer than 2 CPUs, or no sched_setaffinity). "
        )
        + "Compare only within one run.",
    ]
    ran = [ps for ps in pubsubs if ps.key in summary]
    if "rtt" in st.benches:
        lines += ["", "## 64-byte publish -> receive round trip (µs)", ""]
        lines.append(
            md_table(
                ["transport", "p50", "p99"],
                [
                    [
                        ps.label,
                        fmt_us(summary[ps.key]["rtt_p50_us"]),
                        fmt_us(summary[ps.key]["rtt_p99_us"]),
                    ]
                    for ps in ran
                    if ps.why_not("rtt") is None
                ],
            )
        )
    if "pubcost" in st.benches:
        lo, hi = min(st.pubcost_subs), max(st.pubcost_subs)
        lines += [
            "",
            "## Publisher cost per 64-byte message (ns/publish, timed in the "
            "publisher; subscribers receive as fast as they can)",
            "",
        ]
        rows = []
        for ps in ran:
            if ps.why_not("pubcost") is not None:
                continue
            c = summary[ps.key]["pubcost_ns"]
            r = c.get(hi) / c.get(lo) if c.get(hi) and c.get(lo) else None
            rows.append([ps.label] + [fmt_ns(c.get(n)) for n in st.pubcost_subs] + [fmt_ratio(r)])
        lines.append(
            md_table(["transport"] + [f"{n} sub" for n in st.pubcost_subs] + [f"{hi} / {lo}"], rows)
        )
    if "fanout" in st.benches:
        lines += ["", "## Aggregate delivered messages/s (sum over subscribers)", ""]
        heads = [f"{n} sub {fmt_size(z)}" for n in st.fanout_subs for z in st.sizes]
        rows = []
        for ps in ran:
            if ps.why_not("fanout") is not None:
                continue
            f = summary[ps.key]["fanout_rate"]
            rows.append(
                [ps.label] + [fmt_rate(f.get(f"{n}x{z}")) for n in st.fanout_subs for z in st.sizes]
            )
        lines.append(md_table(["transport", *heads], rows))
        lossy = []
        for ps in ran:
            lost = {k: v for k, v in summary[ps.key]["fanout_lost"].items() if v}
            if lost:
                lossy.append(
                    f"{ps.label}: "
                    + ", ".join(
                        f"{k.split('x')[0]} sub {fmt_size(int(k.split('x')[1]))}: {v:.0f}"
                        for k, v in lost.items()
                    )
                )
        if lossy:
            lines += [
                "",
                "Messages lost (median per cell, not counted as delivered): "
                + "; ".join(lossy)
                + ".",
            ]
    if "stall" in st.benches:
        lines += [
            "",
            "## Publish latency, 64 B, with a subscriber that never reads "
            "(overwrite / non-blocking modes)",
            "",
        ]
        rows = []
        for ps in ran:
            if ps.why_not("stall") is not None:
                continue
            s = summary[ps.key]["stall"]
            a, b = s[0].get("p999_ns"), s[1].get("p999_ns")
            rows.append(
                [
                    ps.label,
                    fmt_ns(s[0]["p50_ns"]),
                    fmt_ns(s[0]["p999_ns"]),
                    fmt_ns(s[1]["p50_ns"]),
                    fmt_ns(s[1]["p999_ns"]),
                    fmt_ratio(b / a if a and b else None),
                ]
            )
        lines.append(
            md_table(
                [
                    "transport",
                    "p50 none",
                    "p99.9 none",
                    "p50 stopped sub",
                    "p99.9 stopped sub",
                    "p99.9 ratio",
                ],
                rows,
            )
        )
    lines += ["", "## Targets (issue 11)", ""]
    trows = []
    for name, how, r, met in targets(summary, st):
        verdict = "—" if met is None else ("**met**" if met else "**not met**")
        trows.append([name, how, "—" if r is None else f"{r:.2f}", verdict])
    lines.append(md_table(["target", "ratio of", "ratio", "verdict"], trows, right_from=2))
    lines += ["", "## What each row does with a subscriber that is behind", ""]
    lines += [f"- {ps.label}: {ps.overflow}" for ps in ran]
    not_run = [
        (ps, b, ps.why_not(b))
        for ps in ran
        for b in st.benches
        if ps.why_not(b) is not None and ps.why_not(b) != "not measured"
    ]
    if not_run:
        lines += ["", "Cells not run: "] + [f"- {ps.label}, {b}: {why}" for ps, b, why in not_run]
    if skipped:
        lines += ["", "## Skipped", ""] + [f"- `{k}`: {v}" for k, v in skipped.items()]
    failed = [r for r in results if r.error]
    if failed:
        lines += ["", "## Failed cells", ""]
        lines += [
            f"- `{r.transport}` {r.bench} {fmt_size(r.size)} x{r.subscribers} rep "
            f"{r.rep + 1}: {r.error}"
            for r in failed
        ]
    if leaks:
        lines += ["", "## Left behind (leak!)", ""] + [f"- `{x}`" for x in leaks]
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.rstrip() + "\n"


def plot(
    path: Path, pubsubs: list[PubSub], summary: dict[str, Any], st: Settings, command: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ran = [ps for ps in pubsubs if ps.key in summary]
    colors = {
        ps.key: c
        for ps, c in zip(ran, ["tab:red", "tab:orange", "tab:blue", "tab:green", "tab:purple"])
    }
    fig, axes = plt.subplots(2, 2, figsize=(14, 9))
    (ax_r, ax_c), (ax_f, ax_s) = axes

    rows = [ps for ps in ran if summary[ps.key]["rtt_p50_us"]]
    ax_r.barh(
        range(len(rows)),
        [summary[p.key]["rtt_p50_us"] for p in rows],
        color=[colors[p.key] for p in rows],
    )
    ax_r.plot(
        [summary[p.key]["rtt_p99_us"] or math.nan for p in rows],
        range(len(rows)),
        "k|",
        markersize=14,
        markeredgewidth=2,
    )
    ax_r.set_yticks(range(len(rows)), [p.label for p in rows], fontsize=8)
    ax_r.invert_yaxis()
    ax_r.set_xscale("log")
    ax_r.set_xlabel("64 B round trip, µs (log; lower is better; | = p99)")

    for ps in ran:
        c = summary[ps.key]["pubcost_ns"]
        xs = [n for n in st.pubcost_subs if c.get(n)]
        if xs:
            ax_c.plot(xs, [c[n] for n in xs], "o-", color=colors[ps.key], label=ps.label)
    ax_c.set_xscale("log", base=2)
    ax_c.set_yscale("log")
    ax_c.set_xticks(list(st.pubcost_subs), [str(n) for n in st.pubcost_subs])
    ax_c.set_xlabel("subscribers")
    ax_c.set_ylabel("ns per 64 B publish (log; lower is better)")
    ax_c.legend(fontsize=8)

    n = max(st.fanout_subs) if st.fanout_subs else 1
    fan = [ps for ps in ran if ps.why_not("fanout") is None]
    width = 0.8 / max(1, len(fan))
    for i, ps in enumerate(fan):
        vals = [summary[ps.key]["fanout_rate"].get(f"{n}x{z}") or math.nan for z in st.sizes]
        ax_f.bar(
            [j + i * width for j in range(len(st.sizes))],
            vals,
            width,
            color=colors[ps.key],
            label=ps.label,
        )
    ax_f.set_xticks(
        [j + width * (len(fan) - 1) / 2 for j in range(len(st.sizes))],
        [fmt_size(z) for z in st.sizes],
    )
    ax_f.set_yscale("log")
    ax_f.set_ylabel(f"delivered messages/s, {n} subscribers (log; higher is better)")
    ax_f.legend(fontsize=8)

    st_rows = [
        ps
        for ps in ran
        if ps.why_not("stall") is None and summary[ps.key]["stall"][0].get("p999_ns")
    ]
    for i, ps in enumerate(st_rows):
        s = summary[ps.key]["stall"]
        ax_s.bar(
            [i - 0.2, i + 0.2],
            [s[0]["p999_ns"] or math.nan, s[1]["p999_ns"] or math.nan],
            0.4,
            color=[colors[ps.key], colors[ps.key]],
            alpha=1.0,
            hatch=None,
            edgecolor="black",
        )
    ax_s.set_xticks(range(len(st_rows)), [p.label for p in st_rows], fontsize=8)
    ax_s.set_yscale("log")
    ax_s.set_ylabel("publish p99.9, ns (log; lower is better)")
    ax_s.set_title("left: no subscriber, right: one that never reads", fontsize=9)
    for ax in (ax_r, ax_c, ax_f, ax_s):
        ax.grid(which="both", alpha=0.3)
    fig.suptitle(
        f"{command}\n{'pinned' if st.pinned else 'not pinned'}; median of {st.repeat}; "
        f"{os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark mapshare.Topic against iceoryx2, pyzmq PUB/SUB and Aeron IPC.",
        epilog="rows: topic, channel, iceoryx2, zmq, aeron",
    )
    p.add_argument("--quick", action="store_true", help="smoke test: small counts (< ~1 min)")
    p.add_argument("--repeat", type=int, default=None, help="repetitions (3; 1 with --quick)")
    p.add_argument("--only", default=None, help="comma-separated rows (default: all)")
    p.add_argument("--bench", default=",".join(BENCHES), help="rtt,pubcost,fanout,stall")
    p.add_argument("--sizes", default=None, help="fanout sizes in bytes (64,4096,1048576)")
    p.add_argument("--subscribers", default=None, help="pubcost subscriber counts (1,4,16)")
    p.add_argument("--fanout-subscribers", default=None, help="fanout subscriber counts (1,4)")
    p.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="target seconds per pubcost/fanout cell (0.4; 0.1 quick)",
    )
    p.add_argument("--rtt-n", type=int, default=None, help="timed round trips (10000; 2000 quick)")
    p.add_argument(
        "--stall-n",
        type=int,
        default=None,
        help="timed publishes per stall cell (100000; 20000 quick)",
    )
    p.add_argument("--timeout", type=float, default=60.0, help="seconds before a cell is killed")
    p.add_argument(
        "--mapshare-spin", type=float, default=None, help="spin=SECONDS for mapshare's segments"
    )
    p.add_argument(
        "--aeron-python",
        default=None,
        help="CPython >= 3.12 with pyaeron for the Aeron row (default "
        f"$MAPSHARE_BENCH_AERON_PYTHON or {DEFAULT_AERON_PYTHON})",
    )
    p.add_argument("--json", type=Path, default=None, help="write all results as JSON")
    p.add_argument("--markdown", type=Path, default=None, help="write the report here too")
    p.add_argument("--plot", type=Path, default=None, help="write a PNG (needs matplotlib)")
    p.add_argument("--_cell", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def aeron_python(arg: str | None) -> str | None:
    """The interpreter for the Aeron row: None when this one can import pyaeron."""
    try:
        import pyaeron  # noqa: F401
    except ImportError:
        pass
    else:
        return None
    cand = arg or os.environ.get("MAPSHARE_BENCH_AERON_PYTHON") or DEFAULT_AERON_PYTHON
    return cand


def aeron_unavailable(python: str | None) -> str | None:
    if python is None:
        return None
    if not os.path.exists(python):
        return (
            f"pyaeron needs CPython >= 3.12 and {python} does not exist (make it: "
            "python3.12 -m venv /work/venv-aeron && /work/venv-aeron/bin/pip install "
            "pyaeron, or pass --aeron-python)"
        )
    r = subprocess.run([python, "-c", "import pyaeron"], capture_output=True, text=True)
    if r.returncode:
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        return f"{python} cannot import pyaeron: {last}"
    return None


def cpu_pair() -> tuple[list[int] | None, list[int] | None]:
    """(publisher's, subscribers') CPUs: the first two this process may use, or no
    pinning where there are fewer or the OS cannot pin (macOS)."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) >= 2:
        return [allowed[0]], [allowed[1]]
    return None, None


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args._cell is not None:
        return _cell_main(args._cell, None)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    quick = args.quick
    benches = tuple(b.strip() for b in args.bench.split(",") if b.strip())
    if not benches or not set(benches) <= set(BENCHES):
        raise SystemExit(f"--bench takes {', '.join(BENCHES)}")
    st = Settings(
        repeat=args.repeat or (1 if quick else 3),
        seconds=args.seconds or (0.1 if quick else 0.4),
        rtt_n=args.rtt_n or (2000 if quick else 10000),
        stall_n=args.stall_n or (20000 if quick else 100000),
        sizes=tuple(int(x) for x in args.sizes.split(",")) if args.sizes else SIZES,
        pubcost_subs=(
            tuple(int(x) for x in args.subscribers.split(",")) if args.subscribers else PUBCOST_SUBS
        ),
        fanout_subs=(
            tuple(int(x) for x in args.fanout_subscribers.split(","))
            if args.fanout_subscribers
            else FANOUT_SUBS
        ),
        benches=benches,
        timeout=args.timeout,
    )
    command = "python benchmarks/topic.py" + "".join(
        " " + shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    apy = aeron_python(args.aeron_python)
    candidates = all_pubsubs(args.mapshare_spin, apy)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = set(names) - {p.key for p in candidates}
        if unknown:
            raise SystemExit(
                f"unknown rows {sorted(unknown)}; known: " + ", ".join(p.key for p in candidates)
            )
        candidates = [p for p in candidates if p.key in names]
    skipped: dict[str, str] = {}
    pubsubs: list[PubSub] = []
    for ps in candidates:
        reason = aeron_unavailable(apy) if ps.key == "aeron" and apy else ps.unavailable()
        if reason:
            skipped[ps.key] = reason
            print(f"skipping {ps.key}: {reason}", file=sys.stderr)
        else:
            pubsubs.append(ps)
    if not pubsubs:
        print("nothing to run", file=sys.stderr)
        return 1
    cpus = cpu_pair()
    if cpus[0] is None:
        st.pinned = False
        print("warning: nothing is pinned (fewer than 2 CPUs or no affinity)", file=sys.stderr)

    before = leak_snapshot()
    start = time.monotonic()
    results = run_all(pubsubs, st, cpus, args.mapshare_spin)
    elapsed = time.monotonic() - start
    time.sleep(0.2)
    leaks = sorted(leak_snapshot() - before)
    if leaks:
        print("warning: left behind: " + ", ".join(leaks), file=sys.stderr)

    summary = summarize(pubsubs, results, st)
    md = report(pubsubs, summary, results, skipped, st, command, elapsed, leaks)
    print(md)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(md, encoding="utf-8")
    if args.json:
        doc = {
            "command": command,
            "date": dt.datetime.now(dt.timezone.utc).isoformat(),
            "machine": {
                "system": platform.system(),
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
                "affinity": sorted(os.sched_getaffinity(0))
                if hasattr(os, "sched_getaffinity")
                else None,
                "python": platform.python_version(),
                "loadavg": os.getloadavg(),
            },
            "settings": dataclasses.asdict(st),
            "skipped": skipped,
            "leaks": leaks,
            "summary": summary,
            "targets": [
                {"target": t, "ratio_of": how, "ratio": r, "met": m}
                for t, how, r, m in targets(summary, st)
            ],
            "cells": [dataclasses.asdict(r) for r in results],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    if args.plot:
        try:
            plot(args.plot, pubsubs, summary, st, command)
        except ImportError as exc:
            print(f"--plot needs matplotlib: {exc}", file=sys.stderr)
            return 1
    return 0 if not any(r.error for r in results) and not leaks else 2


if __name__ == "__main__":
    sys.exit(main())
