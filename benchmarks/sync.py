"""Synchronization benchmark: mapshare Lock / Event side by side with the stdlib and
posix_ipc, in one run, with ratios.

    python benchmarks/sync.py            # ~1 minute on 2 cores
    python benchmarks/sync.py --quick    # smoke test, ~15 s
    python benchmarks/sync.py --json out.json

Three measurements:

(a) **Uncontended acquire + release in one process** (ns per pair, median of 5 timed
    batches): ``mapshare.Lock`` vs ``multiprocessing.Lock`` vs ``posix_ipc.Semaphore``
    (initial value 1).  Aim: mapshare at most half of multiprocessing.Lock's cost.  A
    last row times the same loop calling two C methods that do nothing (``dict.__len__``):
    the floor any Python-callable lock pays.
(b) **Wake-up latency between two processes** (µs, p50 / p99), each pinned to its own CPU
    with ``os.sched_setaffinity``: a ping-pong of two events (``set`` in one process wakes
    the ``wait`` in the other, and back); one-way latency = round trip / 2, every round
    trip timed with ``time.perf_counter_ns``.  mapshare.Event with the default spin and
    with ``spin=0`` (pure futex sleep), multiprocessing.Event, posix_ipc semaphores
    (post / acquire).
(c) **Contended lock throughput**: 2 processes (pinned, one per CPU) each loop on
    acquire + release for a fixed time; total acquisitions per second.  mapshare.Lock vs
    multiprocessing.Lock.

Every process is freshly spawned.  Ratios are "times better" (> 1: mapshare wins).  The
VM is noisy: compare within one run only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any, Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mapshare
from _harness import (
    fmt_rate,
    fmt_ratio,
    fmt_us,
    md_table,
    median,
    percentile,
    pin_to,
    spawn_context,
)
from _harness import unique_name as bench_name
from mapshare.testing import unique_name

try:
    import posix_ipc
except ImportError:  # pragma: no cover - optional
    posix_ipc = None

CTX = spawn_context()
TIMEOUT = 300.0


def _cpus() -> tuple[Optional[list[int]], Optional[list[int]]]:
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None, None
    return [allowed[0]], [allowed[1]]


# ---- objects: made in the parent, opened in the children ---------------------------------


class Objects:
    """The pair of waitable objects (or the lock) for one row, made in the parent."""

    def __init__(self, kind: str, spin: Optional[float] = None) -> None:
        self.kind = kind
        self.spin = spin
        self.keep: list[Any] = []
        if kind == "mapshare":
            self.a = mapshare.Event.create(unique_name("b"))
            self.b = mapshare.Event.create(unique_name("b"))
            self.lock = mapshare.Lock.create(unique_name("b"))
            self.keep = [self.a, self.b, self.lock]
            self.state: Any = (self.a.name, self.b.name, self.lock.name)
        elif kind == "multiprocessing":
            self.state = (CTX.Event(), CTX.Event(), CTX.Lock())
        elif kind == "posix_ipc":
            na, nb = "/" + bench_name("sa"), "/" + bench_name("sb")
            self.a = posix_ipc.Semaphore(na, posix_ipc.O_CREX, initial_value=0)
            self.b = posix_ipc.Semaphore(nb, posix_ipc.O_CREX, initial_value=0)
            self.state = (na, nb, None)
        else:
            raise ValueError(kind)

    def close(self) -> None:
        if self.kind == "mapshare":
            for o in self.keep:
                o.close()
        elif self.kind == "posix_ipc":
            for s in (self.a, self.b):
                s.unlink()
                s.close()


def _open(kind: str, state: Any, spin: Optional[float]) -> tuple[Any, Any, Any, list[Any]]:
    """(ping, pong, lock, closers) inside a child."""
    if kind == "mapshare":
        a, b, lk = (mapshare.Event.open(state[0]), mapshare.Event.open(state[1]),
                    mapshare.Lock.open(state[2]))
        if spin is not None:
            a.spin = b.spin = lk.spin = spin
        return a, b, lk, [a, b, lk]
    if kind == "multiprocessing":
        return state[0], state[1], state[2], []
    a, b = posix_ipc.Semaphore(state[0]), posix_ipc.Semaphore(state[1])
    return a, b, None, [a, b]


# ---- child roles -------------------------------------------------------------------------


def _pingpong_child(kind: str, state: Any, spin: Optional[float], role: str, n: int,
                    warmup: int, cpus: Optional[list[int]], barrier: Any, out: Any) -> None:
    try:
        pin_to(cpus)
        ping, pong, _, closers = _open(kind, state, spin)
        if kind == "posix_ipc":
            post_ping, wait_ping = ping.release, ping.acquire
            post_pong, wait_pong = pong.release, pong.acquire

            def serve() -> None:
                wait_ping()
                post_pong()

            def call() -> None:
                post_ping()
                wait_pong()
        else:
            def serve() -> None:
                ping.wait()
                ping.clear()
                pong.set()

            def call() -> None:
                ping.set()
                pong.wait()
                pong.clear()

        barrier.wait(120)
        result: Any = None
        if role == "server":
            for _ in range(warmup + n):
                serve()
        else:
            clock = time.perf_counter_ns
            for _ in range(warmup):
                call()
            samples = [0] * n
            for i in range(n):
                t0 = clock()
                call()
                samples[i] = clock() - t0
            result = samples
        for c in closers:
            c.close()
        out.send(("ok", result))
    except BaseException as exc:
        out.send(("error", f"{role}: {type(exc).__name__}: {exc}"))
    finally:
        out.close()


def _contend_child(kind: str, state: Any, seconds: float, cpus: Optional[list[int]],
                   barrier: Any, out: Any) -> None:
    try:
        pin_to(cpus)
        _, _, lk, closers = _open(kind, state, None)
        acquire, release = lk.acquire, lk.release
        clock = time.perf_counter
        barrier.wait(120)
        end = clock() + seconds
        count = 0
        t0 = clock()
        while True:
            for _ in range(256):
                acquire()
                release()
            count += 256
            if clock() >= end:
                break
        elapsed = clock() - t0
        barrier.wait(120)  # nobody closes while the peer still works
        for c in closers:
            c.close()
        out.send(("ok", (count, elapsed)))
    except BaseException as exc:
        out.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        out.close()


def _run_pair(target: Callable[..., None], args_for: Callable[[int, Any, Any], tuple]) -> list:
    """Run two children of ``target`` and return their two results (or raise)."""
    barrier = CTX.Barrier(2)
    procs, conns = [], []
    try:
        for i in range(2):
            r, w = CTX.Pipe(duplex=False)
            p = CTX.Process(target=target, args=args_for(i, barrier, w), daemon=True)
            p.start()
            w.close()
            procs.append(p)
            conns.append(r)
        results = []
        for r in conns:
            if not r.poll(TIMEOUT):
                raise RuntimeError("child timed out")
            msg = r.recv()
            if msg[0] != "ok":
                raise RuntimeError(msg[1])
            results.append(msg[1])
        return results
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join(5)
        for r in conns:
            r.close()


# ---- (a) uncontended ---------------------------------------------------------------------


def bench_uncontended(n: int) -> dict[str, float]:
    """ns per acquire+release pair, median of 5 batches of n."""
    rows: dict[str, float] = {}
    makers: list[tuple[str, Callable[[], tuple[Any, Any, Callable[[], None]]]]] = []

    def m_mapshare() -> tuple[Any, Any, Callable[[], None]]:
        lk = mapshare.Lock.create(unique_name("b"))
        return lk.acquire, lk.release, lk.close

    def m_mp() -> tuple[Any, Any, Callable[[], None]]:
        lk = CTX.Lock()
        return lk.acquire, lk.release, lambda: None

    def m_floor() -> tuple[Any, Any, Callable[[], None]]:
        d: dict[int, int] = {}
        return d.__len__, d.__len__, lambda: None

    makers.append(("mapshare.Lock", m_mapshare))
    makers.append(("multiprocessing.Lock", m_mp))
    if posix_ipc is not None:
        def m_pipc() -> tuple[Any, Any, Callable[[], None]]:
            nm = "/" + bench_name("su")
            s = posix_ipc.Semaphore(nm, posix_ipc.O_CREX, initial_value=1)

            def done() -> None:
                s.unlink()
                s.close()
            return s.acquire, s.release, done
        makers.append(("posix_ipc.Semaphore", m_pipc))
    makers.append(("floor: two no-op C method calls", m_floor))

    for label, make in makers:
        acquire, release, done = make()
        try:
            clock = time.perf_counter_ns
            for _ in range(n // 10):
                acquire()
                release()
            batches = []
            for _ in range(5):
                t0 = clock()
                for _ in range(n):
                    acquire()
                    release()
                batches.append((clock() - t0) / n)
            rows[label] = median(batches)
        finally:
            done()
    return rows


# ---- (b) wake-up latency -----------------------------------------------------------------


def bench_latency(n: int) -> dict[str, tuple[float, float]]:
    """One-way wake-up latency p50/p99 in µs (round trip / 2)."""
    cpus = _cpus()
    rows: dict[str, tuple[float, float]] = {}
    cases: list[tuple[str, str, Optional[float]]] = [
        ("mapshare.Event (default spin)", "mapshare", None),
        ("mapshare.Event (spin=0)", "mapshare", 0.0),
        ("multiprocessing.Event", "multiprocessing", None),
    ]
    if posix_ipc is not None:
        cases.append(("posix_ipc.Semaphore post/acquire", "posix_ipc", None))
    warmup = max(100, n // 10)
    for label, kind, spin in cases:
        objs = Objects(kind, spin)
        try:
            res = _run_pair(
                _pingpong_child,
                lambda i, barrier, w, kind=kind, objs=objs, spin=spin: (
                    kind, objs.state, spin, ("server", "client")[i], n, warmup, cpus[i],
                    barrier, w),
            )
        finally:
            objs.close()
        samples = res[1]
        rows[label] = (percentile(samples, 50) / 2e3, percentile(samples, 99) / 2e3)
    return rows


# ---- (c) contended throughput ------------------------------------------------------------


def bench_contended(seconds: float) -> dict[str, float]:
    cpus = _cpus()
    rows: dict[str, float] = {}
    for label, kind in (("mapshare.Lock", "mapshare"),
                        ("multiprocessing.Lock", "multiprocessing")):
        objs = Objects(kind)
        try:
            res = _run_pair(
                _contend_child,
                lambda i, barrier, w, kind=kind, objs=objs: (
                    kind, objs.state, seconds, cpus[i], barrier, w),
            )
        finally:
            objs.close()
        rows[label] = sum(c for c, _ in res) / max(e for _, e in res)
    return rows


# ---- report ------------------------------------------------------------------------------


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller counts (smoke test)")
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON")
    args = ap.parse_args(argv)

    n_unc = 50_000 if args.quick else 300_000
    n_lat = 2_000 if args.quick else 10_000
    secs = 0.5 if args.quick else 2.0
    before = {e for e in os.listdir("/dev/shm")} if os.path.isdir("/dev/shm") else set()

    print(f"# mapshare sync benchmark ({'quick' if args.quick else 'full'})\n")
    print(f"Python {platform.python_version()}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs, pinned CPUs {_cpus()}\n", flush=True)

    unc = bench_uncontended(n_unc)
    base = unc["multiprocessing.Lock"]
    print("## (a) Uncontended acquire + release, one process (ns per pair)\n")
    print(md_table(
        ["primitive", "ns", "vs mapshare"],
        [[k, f"{v:.0f}", fmt_ratio(v / unc["mapshare.Lock"])] for k, v in unc.items()],
    ))
    share = unc["mapshare.Lock"] / base
    print(f"\nmapshare / multiprocessing.Lock cost = {share:.2f} "
          f"(aim <= 0.50: {'met' if share <= 0.5 else 'MISSED'})\n", flush=True)

    lat = bench_latency(n_lat)
    ms = lat["mapshare.Event (default spin)"]
    print("## (b) Wake-up latency, set() in one process -> waiter runs in the other "
          "(µs, one way = round trip / 2, pinned)\n")
    print(md_table(
        ["primitive", "p50", "p99", "p50 vs mapshare (default spin)"],
        [[k, fmt_us(a), fmt_us(b), fmt_ratio(a / ms[0])] for k, (a, b) in lat.items()],
    ))
    print(flush=True)

    con = bench_contended(secs)
    print("\n## (c) Contended lock, 2 processes pinned to 2 CPUs (acquire+release per s, "
          "total)\n")
    print(md_table(
        ["lock", "rate", "mapshare vs"],
        [[k, fmt_rate(v), fmt_ratio(con["mapshare.Lock"] / v)] for k, v in con.items()],
    ))

    after = {e for e in os.listdir("/dev/shm")} if os.path.isdir("/dev/shm") else set()
    mine = {e for e in after - before if e.startswith(("mapshare.b", "sem.mapshare-bench"))}
    if mine:
        print(f"\nLEFT BEHIND in /dev/shm: {sorted(mine)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({
                "argv": sys.argv, "quick": args.quick, "python": platform.python_version(),
                "uncontended_ns": unc,
                "latency_us": {k: {"p50": a, "p99": b} for k, (a, b) in lat.items()},
                "contended_per_s": con,
                "leaked": sorted(mine),
            }, f, indent=2)
    return 2 if mine else 0


if __name__ == "__main__":
    sys.exit(main())
