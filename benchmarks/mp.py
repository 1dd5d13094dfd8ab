"""The multiprocessing drop-in: ``mapshare.multiprocessing`` against ``multiprocessing`` and
faster-fifo, in one run, with ratios (issue 16, part 5).

Run from the repository root::

    python benchmarks/mp.py --quick             # smoke test, ~1 min
    python benchmarks/mp.py                     # full run, 3 interleaved repetitions
    python benchmarks/mp.py --json out.json --markdown out.md --plot docs/img/multiprocessing.png
    python benchmarks/mp.py --only queue --impl mapshare,multiprocessing

(The file is not called ``multiprocessing.py``: run as a script, benchmarks/ is
``sys.path[0]`` and such a file would shadow the standard library's package.)

Cells, every process freshly spawned; producer and consumer pinned one per CPU:

* ``queue``: one producer process ``put``\\ s N objects, one consumer process ``get``\\ s them
  (objects/s from the producer's first ``put`` to the consumer's last ``get``; both clocks
  are CLOCK_MONOTONIC), for an int, a short tuple ``(1, "ab", 2.5)`` and 4 KiB ``bytes``:
  ``mapshare.multiprocessing.Queue`` vs ``multiprocessing.Queue`` vs ``faster_fifo.Queue``
  (the drop-in faster-fifo users switch to: ``put``/``get``, pickled; 1 MB ring).
* ``pool``: ``ctx.Pool(2).map(f, range(100_000))`` of a trivial ``f``, with the mapshare
  context vs the standard one (same start method), with ``chunksize=1`` (every task is one
  message each way: the queues' cost) and the default chunksize (a few big messages: the
  pickling's cost). The pool is started and warmed up before the clock starts; its workers
  are not pinned (two workers on two CPUs, the parent's threads beside them).
* ``executor``: ``ProcessPoolExecutor(2, mp_context=ctx).map(f, range(N))`` likewise.
* ``lock``: ``Lock`` acquire + release, uncontended in one process (ns per pair), and
  contended by two pinned processes (pairs/s, total).
* ``event``: ``Event`` set/wait ping-pong between two pinned processes over two events
  (one-way latency = round trip / 2, p50 and p99).

Repetitions are interleaved (repetition 1 of every implementation, then repetition 2, ...),
and the report gives the median of each cell over them, the ratios, and every target of the
issue as met / not met. Compare numbers only within one run: the machine is shared.
Exit status: 0 when every cell ran and nothing was left in /dev/shm, 2 otherwise.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import gc
import json
import multiprocessing
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# benchmarks/ is sys.path[0] when this file is run as a script; spawned children inherit it.
from _harness import (
    ChildSpec,
    fmt_rate,
    fmt_ratio,
    fmt_us,
    md_table,
    median,
    percentile,
    progress,
    run_group,
)

KiB = 1 << 10
PAYLOADS = ("int", "tuple", "4KiB")
QUEUE_IMPLS = ("mapshare", "multiprocessing", "faster-fifo")
CTX_IMPLS = ("mapshare", "multiprocessing")
BENCHES = ("queue", "pool", "executor", "lock", "event")
FF_BYTES = 1_000_000  # faster-fifo's ring, bytes (its default is 200 KB)
TIMEOUT = 600.0
START_METHOD = "spawn"


def _payload(kind: str) -> Any:
    if kind == "int":
        return 12345
    if kind == "tuple":
        return (1, "ab", 2.5)
    return b"\x5a" * (4 * KiB)


def _cpus() -> tuple[list[int] | None, list[int] | None]:
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None, None
    return [allowed[0]], [allowed[1]]


def _context(impl: str) -> Any:
    if impl == "mapshare":
        import mapshare.multiprocessing as msmp

        return msmp.get_context(START_METHOD)
    return multiprocessing.get_context(START_METHOD)


def _unavailable(impl: str) -> str | None:
    """Why this implementation cannot run here, or None."""
    try:
        if impl == "mapshare":
            import mapshare.multiprocessing  # noqa: F401
        elif impl == "faster-fifo":
            import faster_fifo  # noqa: F401
            import faster_fifo_reduction  # noqa: F401
    except ImportError as exc:
        return f"{impl}: {exc} (pip install '.[bench]')"
    return None


# ---- queue: producer and consumer in two pinned processes ---------------------------------


def _make_queue(impl: str) -> Any:
    if impl == "faster-fifo":
        import faster_fifo
        import faster_fifo_reduction  # noqa: F401  (makes the queue picklable to children)

        return faster_fifo.Queue(max_size_bytes=FF_BYTES)
    return _context(impl).Queue()


def _producer(impl: str, q: Any, kind: str, n: int, warmup: int, barrier: Any) -> int:
    obj = _payload(kind)
    put = q.put
    if impl == "faster-fifo":
        import faster_fifo_reduction  # noqa: F401

        def put(x: Any, _put: Callable[..., None] = q.put) -> None:
            _put(x, timeout=TIMEOUT)  # its default timeout is 10 s

    for _ in range(warmup):
        put(obj)
    barrier.wait(TIMEOUT)  # the consumer drained the warm-up
    t0 = time.perf_counter_ns()
    for _ in range(n):
        put(obj)
    barrier.wait(TIMEOUT)  # nobody closes while the peer still works
    return t0


def _consumer(impl: str, q: Any, kind: str, n: int, warmup: int, barrier: Any) -> int:
    get = q.get
    if impl == "faster-fifo":
        import faster_fifo_reduction  # noqa: F401

        def get(_get: Callable[..., Any] = q.get) -> Any:
            return _get(timeout=TIMEOUT)

    for _ in range(warmup):
        get()
    barrier.wait(TIMEOUT)
    for _ in range(n - 1):
        get()
    last = get()
    t1 = time.perf_counter_ns()
    if last != _payload(kind):
        raise AssertionError(f"received {last!r:.40}")
    barrier.wait(TIMEOUT)
    return t1


def cell_queue(impl: str, kind: str, n: int) -> float:
    """Objects per second through one queue, producer -> consumer."""
    q = _make_queue(impl)
    cpu_p, cpu_c = _cpus()
    warmup = max(100, n // 20)
    try:
        res = run_group(
            [
                ChildSpec(_producer, (impl, q, kind, n, warmup), cpu_p, "producer"),
                ChildSpec(_consumer, (impl, q, kind, n, warmup), cpu_c, "consumer"),
            ],
            TIMEOUT,
        )
    finally:
        if impl != "faster-fifo":
            q.close()
            q.join_thread()
    if res.error:
        raise RuntimeError(f"{res.error}\n{res.traceback or ''}")
    t0, t1 = res.results
    return n / ((t1 - t0) / 1e9)


# ---- pool and executor: the context's task and result queues -----------------------------


def _trivial(x: int) -> int:
    return x


def cell_pool(impl: str, n: int, chunksize: int | None) -> float:
    """Tasks per second of ``Pool(2).map`` (pool started and warmed up first)."""
    ctx = _context(impl)
    with ctx.Pool(2) as pool:
        pool.map(_trivial, range(1000), chunksize=1)  # workers up, imports done
        t0 = time.perf_counter()
        out = pool.map(_trivial, range(n), chunksize=chunksize)
        elapsed = time.perf_counter() - t0
    if len(out) != n or out[-1] != n - 1:
        raise AssertionError("wrong results")
    return n / elapsed


def cell_executor(impl: str, n: int) -> float:
    """Tasks per second of ``ProcessPoolExecutor(2).map`` (warmed up first)."""
    ctx = _context(impl)
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as ex:
        list(ex.map(_trivial, range(200)))
        t0 = time.perf_counter()
        count, last = 0, None
        for value in ex.map(_trivial, range(n)):
            count += 1
            last = value
        elapsed = time.perf_counter() - t0
    if count != n or last != n - 1:
        raise AssertionError("wrong results")
    return n / elapsed


# ---- lock and event ----------------------------------------------------------------------


def cell_lock_uncontended(impl: str, n: int) -> float:
    """ns per acquire + release pair in one process (median of 5 batches)."""
    lock = _context(impl).Lock()
    acquire, release = lock.acquire, lock.release
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
    return median(batches)


def _contend(lock: Any, seconds: float, barrier: Any) -> tuple[int, float]:
    acquire, release = lock.acquire, lock.release
    clock = time.perf_counter
    barrier.wait(TIMEOUT)
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
    barrier.wait(TIMEOUT)
    return count, elapsed


def cell_lock_contended(impl: str, seconds: float) -> float:
    """acquire + release pairs per second, two pinned processes on one lock."""
    lock = _context(impl).Lock()
    a, b = _cpus()
    res = run_group([ChildSpec(_contend, (lock, seconds), a, "contender-1"),
                     ChildSpec(_contend, (lock, seconds), b, "contender-2")], TIMEOUT)
    if res.error:
        raise RuntimeError(f"{res.error}\n{res.traceback or ''}")
    return sum(c for c, _ in res.results) / max(e for _, e in res.results)


def _pingpong(role: str, ping: Any, pong: Any, n: int, warmup: int, barrier: Any) -> Any:
    barrier.wait(TIMEOUT)
    if role == "server":
        for _ in range(warmup + n):
            ping.wait()
            ping.clear()
            pong.set()
        return None
    clock = time.perf_counter_ns
    for _ in range(warmup):
        ping.set()
        pong.wait()
        pong.clear()
    samples = [0] * n
    for i in range(n):
        t0 = clock()
        ping.set()
        pong.wait()
        pong.clear()
        samples[i] = clock() - t0
    return samples


def cell_event(impl: str, n: int) -> tuple[float, float]:
    """One-way set -> wait latency (µs, p50 and p99), two pinned processes."""
    ctx = _context(impl)
    ping, pong = ctx.Event(), ctx.Event()
    a, b = _cpus()
    warmup = max(100, n // 10)
    res = run_group([ChildSpec(_pingpong, ("server", ping, pong, n, warmup), a, "server"),
                     ChildSpec(_pingpong, ("client", ping, pong, n, warmup), b, "client")],
                    TIMEOUT)
    if res.error:
        raise RuntimeError(f"{res.error}\n{res.traceback or ''}")
    samples = res.results[1]
    return percentile(samples, 50) / 2e3, percentile(samples, 99) / 2e3


# ---- the run -----------------------------------------------------------------------------


def plan(args: argparse.Namespace) -> list[tuple[str, str, Callable[[], Any]]]:
    """(cell, implementation, measure) for one repetition, in run order."""
    q = args.quick

    def n(quick: int, full: int) -> int:
        return max(10, int((quick if q else full) * args.scale))

    n_queue = {"int": n(20_000, 200_000), "tuple": n(20_000, 200_000),
               "4KiB": n(10_000, 100_000)}
    n_pool = n(10_000, 100_000)
    n_exec = n(5_000, 50_000)
    n_lock = n(50_000, 300_000)
    n_event = n(1_000, 10_000)
    secs = (0.5 if q else 2.0) * min(1.0, args.scale)
    cells: list[tuple[str, str, Callable[[], Any]]] = []
    impls = [i for i in args.impls if i in QUEUE_IMPLS]
    if "queue" in args.only:
        for kind in PAYLOADS:
            for impl in impls:
                cells.append((f"queue {kind}", impl,
                              lambda impl=impl, kind=kind: cell_queue(impl, kind,
                                                                      n_queue[kind])))
    ctx_impls = [i for i in impls if i in CTX_IMPLS]
    if "pool" in args.only:
        for chunk in (1, None):
            label = f"pool chunksize={chunk or 'default'}"
            for impl in ctx_impls:
                cells.append((label, impl,
                              lambda impl=impl, chunk=chunk: cell_pool(impl, n_pool, chunk)))
    if "executor" in args.only:
        for impl in ctx_impls:
            cells.append(("executor", impl, lambda impl=impl: cell_executor(impl, n_exec)))
    if "lock" in args.only:
        for impl in ctx_impls:
            cells.append(("lock uncontended", impl,
                          lambda impl=impl: cell_lock_uncontended(impl, n_lock)))
        for impl in ctx_impls:
            cells.append(("lock contended", impl,
                          lambda impl=impl: cell_lock_contended(impl, secs)))
    if "event" in args.only:
        for impl in ctx_impls:
            cells.append(("event", impl, lambda impl=impl: cell_event(impl, n_event)))
    return cells


#: how each cell's value reads: (unit, higher is better)
UNITS = {"queue": ("objects/s", True), "pool": ("tasks/s", True),
         "executor": ("tasks/s", True), "lock uncontended": ("ns per pair", False),
         "lock contended": ("pairs/s", True), "event": ("µs one way, p50", False)}


def _unit(cell: str) -> tuple[str, bool]:
    for prefix, u in UNITS.items():
        if cell.startswith(prefix):
            return u
    raise KeyError(cell)


def summarize(raw: dict[str, dict[str, list[Any]]]) -> dict[str, dict[str, Any]]:
    """Median per (cell, implementation) over the repetitions; events: p50 and p99."""
    out: dict[str, dict[str, Any]] = {}
    for cell, per_impl in raw.items():
        out[cell] = {}
        for impl, values in per_impl.items():
            if not values:
                continue
            if cell == "event":
                out[cell][impl] = {"p50": median([v[0] for v in values]),
                                   "p99": median([v[1] for v in values])}
            else:
                out[cell][impl] = median(values)
    return out


def _value(cell: str, v: Any) -> float:
    return float(v["p50"]) if cell == "event" else float(v)


def ratio(summary: dict[str, dict[str, Any]], cell: str, other: str) -> float | None:
    """Times better mapshare is than ``other`` in this cell (> 1: mapshare wins)."""
    row = summary.get(cell, {})
    if "mapshare" not in row or other not in row:
        return None
    a, b = _value(cell, row["mapshare"]), _value(cell, row[other])
    return a / b if _unit(cell)[1] else b / a


def targets(summary: dict[str, dict[str, Any]]) -> list[tuple[str, float | None, float]]:
    """(target, measured ratio, required ratio) for every target of the issue."""
    out: list[tuple[str, float | None, float]] = []
    for kind in ("int", "tuple"):
        out.append((f"Queue {kind}: >= 10x multiprocessing.Queue",
                    ratio(summary, f"queue {kind}", "multiprocessing"), 10.0))
        out.append((f"Queue {kind}: >= 3x faster-fifo",
                    ratio(summary, f"queue {kind}", "faster-fifo"), 3.0))
    out.append(("Pool.map chunksize=1: >= 2x the standard context",
                ratio(summary, "pool chunksize=1", "multiprocessing"), 2.0))
    out.append(("Pool.map default chunksize: >= 2x the standard context",
                ratio(summary, "pool chunksize=default", "multiprocessing"), 2.0))
    for cell in ("executor", "queue 4KiB", "lock uncontended", "lock contended", "event"):
        out.append((f"{cell}: not slower than the standard one",
                    ratio(summary, cell, "multiprocessing"), 1.0))
    return out


def _fmt(cell: str, v: Any) -> str:
    if cell == "event":
        return f"{fmt_us(v['p50'])} / {fmt_us(v['p99'])}"
    unit, _ = _unit(cell)
    return f"{v:.0f}" if unit == "ns per pair" else fmt_rate(v)


def report(summary: dict[str, dict[str, Any]], impls: list[str]) -> str:
    lines = []
    rows = []
    for cell, row in summary.items():
        unit, _ = _unit(cell)
        if cell == "event":
            unit = "µs one way, p50 / p99"
        cells = [_fmt(cell, row[i]) if i in row else "-" for i in impls]
        ratios = [fmt_ratio(ratio(summary, cell, o)) if o in row and "mapshare" in row
                  else "-" for o in impls if o != "mapshare"]
        rows.append([cell, unit, *cells, *ratios])
    others = [f"mapshare vs {o}" for o in impls if o != "mapshare"]
    lines.append(md_table(["cell", "unit", *impls, *others], rows, right_from=2))
    lines.append("")
    lines.append("Targets (x = times better; > 1: mapshare wins):\n")
    trows = []
    for name, got, need in targets(summary):
        verdict = "n/a" if got is None else ("met" if got >= need else "**not met**")
        trows.append([name, fmt_ratio(got), verdict])
    lines.append(md_table(["target", "measured", ""], trows))
    return "\n".join(lines) + "\n"


def plot(path: Path, summary: dict[str, dict[str, Any]], impls: list[str],
         command: str) -> None:
    """One bar group per cell: each implementation's value relative to the standard one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = [c for c in summary if "multiprocessing" in summary[c]]
    fig, ax = plt.subplots(figsize=(12, 5))
    width = 0.8 / max(1, len(impls))
    colors = {"mapshare": "#1f77b4", "multiprocessing": "#7f7f7f", "faster-fifo": "#ff7f0e"}
    for k, impl in enumerate(impls):
        xs, ys = [], []
        for i, cell in enumerate(cells):
            if impl not in summary[cell]:
                continue
            base = _value(cell, summary[cell]["multiprocessing"])
            v = _value(cell, summary[cell][impl])
            xs.append(i + (k - (len(impls) - 1) / 2) * width)
            ys.append(v / base if _unit(cell)[1] else base / v)
        ax.bar(xs, ys, width, label=impl, color=colors.get(impl))
        for x, y in zip(xs, ys):
            ax.annotate(f"{y:.1f}x", (x, y), ha="center", va="bottom", fontsize=7)
    ax.set_yscale("log")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(cells)))
    ax.set_xticklabels(cells, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("times the standard multiprocessing (higher is better, log)")
    ax.set_title("mapshare.multiprocessing vs multiprocessing and faster-fifo\n" + command,
                 fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _ours_left(names: set[str]) -> set[str]:
    """Which of these new names this run left behind. One that a live process other than
    this one holds is another program's (tests of mapshare.multiprocessing may run
    meanwhile); one whose every holder died is reclaimed (what ``mapshare gc`` does)."""
    from mapshare._gc import reclaim
    from mapshare._inspect import segment_info

    left = set()
    for osn in names:
        holders = {p.pid for p in segment_info(osn).attached if p.alive}
        if holders - {os.getpid()}:
            continue
        if holders or not reclaim(osn):
            left.add(osn)
    return left


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller counts, 1 repetition")
    p.add_argument("--repeat", type=int, default=None, help="repetitions (3; 1 with --quick)")
    p.add_argument("--only", default=",".join(BENCHES), help=f"cells, from {BENCHES}")
    p.add_argument("--impl", default=",".join(QUEUE_IMPLS), help=f"from {QUEUE_IMPLS}")
    p.add_argument("--scale", type=float, default=1.0,
                   help="multiply every count by this (the test suite's smoke run: 0.02)")
    p.add_argument("--json", type=Path, default=None, help="write the results as JSON")
    p.add_argument("--markdown", type=Path, default=None, help="write the report (Markdown)")
    p.add_argument("--plot", type=Path, default=None, help="write a PNG (needs matplotlib)")
    args = p.parse_args(argv)
    args.only = [b for b in args.only.split(",") if b]
    args.impls = [i for i in args.impl.split(",") if i]
    bad = [b for b in args.only if b not in BENCHES] + [
        i for i in args.impls if i not in QUEUE_IMPLS]
    if bad:
        p.error(f"unknown: {bad}")
    for impl in list(args.impls):
        why = _unavailable(impl)
        if why:
            print(f"skipping {why}", file=sys.stderr)
            args.impls.remove(impl)
    repeat = args.repeat or (1 if args.quick else 3)
    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/mp.py", *sys.argv[1:]])

    from mapshare.testing import shm_entries

    before = shm_entries()
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    started = time.monotonic()
    cells = plan(args)
    raw: dict[str, dict[str, list[Any]]] = {}
    errors: list[str] = []
    bar = progress(len(cells) * repeat, "mp bench")
    for rep in range(repeat):
        for cell, impl, measure in cells:
            bar.set_postfix_str(f"rep {rep + 1} {cell} {impl}")
            try:
                raw.setdefault(cell, {}).setdefault(impl, []).append(measure())
            except Exception as exc:  # report every failed cell, run the others
                errors.append(f"{cell} / {impl}: {type(exc).__name__}: {exc}")
            bar.update(1)
    bar.close()
    elapsed = time.monotonic() - started
    # a Pool's queues are held by reference cycles of the standard Pool until collected
    gc.collect()
    left: set[str] = set()
    for _ in range(20):
        # only what this run can make (mapshare.multiprocessing's ``mp-`` objects): other
        # programs on the machine make and remove their own names meanwhile
        left = {e for e in shm_entries() - before if e.lstrip("/").startswith("mapshare.mp-")}
        if not left:
            break
        time.sleep(0.1)
    left = _ours_left(left)

    summary = summarize(raw)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None

    def fmt_load(x: tuple[float, float, float] | None) -> str:
        return " ".join(f"{v:.2f}" for v in x) if x else "n/a"

    head = (f"`{command}` — {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, "
            f"Python {platform.python_version()}, {os.cpu_count()} CPUs, start method "
            f"{START_METHOD}, {repeat} interleaved repetition(s), medians; run took "
            f"{elapsed:.0f} s; load average (1, 5, 15 min) before: {fmt_load(load_before)}, "
            f"after: {fmt_load(load)}.\n")
    text = head + "\n" + report(summary, args.impls)
    if errors:
        text += "\nFailed cells:\n\n" + "\n".join(f"- {e}" for e in errors) + "\n"
    if left:
        text += f"\nLeft in /dev/shm: {sorted(left)}\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text, encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps({
            "command": command, "python": platform.python_version(), "repeat": repeat,
            "start_method": START_METHOD, "loadavg_before": load_before,
            "loadavg_after": load, "seconds": elapsed,
            "raw": raw, "summary": summary,
            "targets": [{"target": t, "measured": m, "required": r}
                        for t, m, r in targets(summary)],
            "errors": errors, "left_in_dev_shm": sorted(left)}, indent=1), encoding="utf-8")
    if args.plot:
        try:
            plot(args.plot, summary, args.impls, command)
        except ImportError as exc:
            print(f"--plot needs matplotlib: {exc}", file=sys.stderr)
    return 2 if errors or left else 0


if __name__ == "__main__":
    sys.exit(main())
