"""Side-by-side benchmark of mapshare against the IPC transports a Python user would pick instead.

Run from the repository root::

    python benchmarks/compare.py                      # full run, ~5-10 min on 2 cores
    python benchmarks/compare.py --quick              # smoke test, < ~1 min
    python benchmarks/compare.py --only pipe,shm,mapshare --repeat 5
    python benchmarks/compare.py --json out.json --markdown out.md --plot docs/img/benchmarks.png

What it measures, in one run and for every transport (see ``_transports.py`` for the rows):

* **64-byte round-trip latency** (p50, p99 in µs): an echo server process and a client
  process ping-pong one 64-byte message; ``--latency-n`` timed round trips after a warm-up,
  each timed on its own with ``time.perf_counter_ns``.
* **One-way streaming throughput** (messages/s) at 64 B, 4 KiB and 1 MiB: a sender sends M
  messages as fast as it can; the receiver receives them and makes a ``bytes`` object of
  each (the rule; only rows named "zero-copy" skip it). After a warm-up both meet at a
  barrier, and the time runs from the sender's first send to the receiver's last message
  (``perf_counter_ns`` is CLOCK_MONOTONIC, valid across processes). M is chosen so that a
  cell takes about ``--seconds`` (from a rough rate hint first, then from the rate measured
  in the previous repetition).

Every cell runs in two freshly spawned processes. **Pinned** (the headline): one process
per CPU (the first two CPUs this process may use, normally 0 and 1) via
``os.sched_setaffinity``; **unpinned**: both may run anywhere (skip with ``--no-unpinned``).
``--repeat K`` repetitions are interleaved (repetition is the outer loop, and the transport
order rotates), and the tables show the median of the K results.

The output is a markdown report on stdout (and ``--markdown FILE``): latency and throughput
tables (one row per transport), and ratio tables "mapshare vs each other transport".
The machine is noisy: compare numbers only within one run, as ratios. ``--json FILE``
writes every repetition; ``--plot FILE`` writes a PNG (needs matplotlib).

mapshare rows are skipped, with the reason printed, while ``import mapshare`` fails.
Nothing is left behind in /dev/shm or the temp directory; the run checks and warns.
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
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# benchmarks/ is sys.path[0] when this file is run as a script; spawned children inherit it.
from _harness import (
    CellResult,
    Mode,
    Transport,
    fmt_rate,
    fmt_ratio,
    fmt_size,
    fmt_us,
    leak_snapshot,
    md_table,
    median,
    progress,
    run_cell,
)
from _transports import all_transports

SIZES = (64, 4096, 1 << 20)
LATENCY_SIZE = 64


@dataclasses.dataclass
class Settings:
    repeat: int
    seconds: float
    latency_n: int
    sizes: tuple[int, ...]
    timeout: float
    pinned_modes: tuple[bool, ...]
    benches: tuple[str, ...]


@dataclasses.dataclass
class Summary:
    """Medians over repetitions for one transport and pinning mode."""

    key: str
    label: str
    pinned: bool
    p50_us: float | None = None
    p99_us: float | None = None
    rates: dict[int, float | None] = dataclasses.field(default_factory=dict)
    errors: list[str] = dataclasses.field(default_factory=list)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    keys = [t.key for t in all_transports()]
    p = argparse.ArgumentParser(
        description="Benchmark mapshare side by side with other Python IPC transports.",
        epilog="transport names: " + ", ".join(keys) + " (a prefix before '_' selects a family, "
        "e.g. iceoryx2 = iceoryx2_poll,iceoryx2_event; mapshare = mapshare,mapshare_zc)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: small counts, repeat 1 (< ~1 min)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="repetitions, interleaved (default 3; 1 with --quick)",
    )
    p.add_argument("--only", default=None, help="comma-separated transport names (default: all)")
    p.add_argument("--json", type=Path, default=None, help="write all results as JSON")
    p.add_argument("--markdown", type=Path, default=None, help="write the markdown report here too")
    p.add_argument("--plot", type=Path, default=None, help="write a PNG chart (needs matplotlib)")
    p.add_argument("--no-unpinned", action="store_true", help="only the pinned (headline) runs")
    p.add_argument(
        "--bench",
        default="latency,throughput",
        help="latency,throughput (default both)",
    )
    p.add_argument(
        "--sizes",
        default=None,
        help="throughput message sizes in bytes (default 64,4096,1048576)",
    )
    p.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="target seconds per throughput cell (0.6; 0.15 quick)",
    )
    p.add_argument(
        "--latency-n",
        type=int,
        default=None,
        help="timed round trips (10000; 2000 quick)",
    )
    p.add_argument("--timeout", type=float, default=60.0, help="seconds before a cell is killed")
    p.add_argument(
        "--mapshare-spin",
        type=float,
        default=None,
        help="pass spin=SECONDS to mapshare.Channel",
    )
    args = p.parse_args(argv)
    args.keys = keys
    return args


def select(transports: list[Transport], only: str | None) -> list[Transport]:
    if not only:
        return transports
    names = [n.strip() for n in only.split(",") if n.strip()]
    chosen: list[Transport] = []
    for n in names:
        hits = [t for t in transports if t.key == n or t.key.startswith(n + "_")]
        if not hits:
            raise SystemExit(
                f"unknown transport {n!r}; known: {', '.join(t.key for t in transports)}"
            )
        chosen += [t for t in hits if t not in chosen]
    return [t for t in transports if t in chosen]  # keep table order


def cpu_sets() -> tuple[tuple[list[int], list[int]] | None, tuple[list[int], list[int]]]:
    """(pinned, unpinned) affinities for (server|sender, client|receiver)."""
    allowed = sorted(os.sched_getaffinity(0))
    pinned = ([allowed[0]], [allowed[1]]) if len(allowed) >= 2 else None
    return pinned, (allowed, allowed)


def throughput_count(rate: float, seconds: float) -> int:
    return int(min(5_000_000, max(20, rate * seconds)))


def run_all(transports: list[Transport], st: Settings) -> list[CellResult]:
    pinned_cpus, free_cpus = cpu_sets()
    cells: list[tuple[str, int]] = []
    if "latency" in st.benches:
        cells.append(("latency", LATENCY_SIZE))
    if "throughput" in st.benches:
        cells += [("throughput", s) for s in st.sizes]
    modes = [m for m in st.pinned_modes if not (m and pinned_cpus is None)]
    if True in st.pinned_modes and pinned_cpus is None:
        print("warning: fewer than 2 CPUs available, pinned runs skipped", file=sys.stderr)
    total = st.repeat * len(modes) * len(cells) * len(transports)
    results: list[CellResult] = []
    measured: dict[tuple[str, int, bool], list[float]] = {}
    bar = progress(total, "benchmark")
    try:
        for rep in range(st.repeat):
            order = transports[rep % len(transports) :] + transports[: rep % len(transports)]
            for pinned in modes:
                cpus = pinned_cpus if pinned else free_cpus
                assert cpus is not None
                for mode, size in cells:
                    for t in order:
                        where = "pinned" if pinned else "unpinned"
                        bar.set_postfix_str(
                            f"rep {rep + 1} {where} {mode} {fmt_size(size)} {t.key}"
                        )
                        if mode == "latency":
                            count, warmup = st.latency_n, max(100, st.latency_n // 10)
                        else:
                            past = measured.get((t.key, size, pinned))
                            rate = median(past) if past else t.hint(size)
                            count = throughput_count(rate, st.seconds)
                            warmup = min(1000, max(5, count // 20))
                        m: Mode = "latency" if mode == "latency" else "throughput"
                        try:
                            r = run_cell(t, m, size, count, warmup, cpus, pinned, rep, st.timeout)
                        except Exception as exc:
                            r = CellResult(
                                t.key,
                                m,
                                size,
                                pinned,
                                rep,
                                count,
                                error=f"{type(exc).__name__}: {exc}",
                            )
                        if r.error:
                            bar.write(
                                f"FAILED {t.key} {where} {mode} {fmt_size(size)}: {r.error}",
                                file=sys.stderr,
                            )
                        elif r.rate is not None:
                            measured.setdefault((t.key, size, pinned), []).append(r.rate)
                        results.append(r)
                        bar.update(1)
    finally:
        bar.close()
    return results


def summarize(
    transports: list[Transport], results: list[CellResult], st: Settings
) -> list[Summary]:
    out: list[Summary] = []
    for pinned in st.pinned_modes:
        for t in transports:
            mine = [r for r in results if r.transport == t.key and r.pinned == pinned]
            if not mine:
                continue
            s = Summary(t.key, t.label, pinned)
            s.errors = sorted({r.error for r in mine if r.error})
            lat = [r for r in mine if r.mode == "latency" and r.error is None]
            if lat:
                s.p50_us = median([r.p50_us for r in lat if r.p50_us is not None])
                s.p99_us = median([r.p99_us for r in lat if r.p99_us is not None])
            for size in st.sizes:
                rates = [
                    r.rate
                    for r in mine
                    if r.mode == "throughput" and r.size == size and r.rate is not None
                ]
                s.rates[size] = median(rates) if rates else None
            out.append(s)
    return out


# --------------------------------------------------------------------------- report


def _metric_values(s: Summary, st: Settings) -> list[tuple[float | None, bool]]:
    """(value, higher_is_better) per ratio column."""
    vals: list[tuple[float | None, bool]] = []
    if "latency" in st.benches:
        vals += [(s.p50_us, False), (s.p99_us, False)]
    if "throughput" in st.benches:
        vals += [(s.rates.get(size), True) for size in st.sizes]
    return vals


def _ratio(mine: float | None, other: float | None, higher_better: bool) -> float | None:
    if not mine or not other:
        return None
    return mine / other if higher_better else other / mine


def ratio_table(ms: Summary, others: list[Summary], st: Settings) -> str:
    headers = [f"{ms.label} vs"]
    if "latency" in st.benches:
        headers += ["lat p50", "lat p99"]
    if "throughput" in st.benches:
        headers += [fmt_size(s) for s in st.sizes]
    mine = _metric_values(ms, st)
    rows: list[list[str]] = []
    best: list[tuple[float, str] | None] = [None] * len(mine)
    for o in others:
        theirs = _metric_values(o, st)
        row = [o.label]
        for i, ((m, hb), (v, _)) in enumerate(zip(mine, theirs)):
            row.append(fmt_ratio(_ratio(m, v, hb)))
            b = best[i]
            if v and (b is None or (v > b[0] if hb else v < b[0])):
                best[i] = (v, o.key)
        rows.append(row)
    last = ["**mapshare / best other**"]
    for (m, hb), b in zip(mine, best):
        r = _ratio(m, b[0], hb) if b else None
        last.append(f"**{fmt_ratio(r)}** ({b[1]})" if b and r is not None else "—")
    rows.append(last)
    return md_table(headers, rows)


def report(
    summaries: list[Summary],
    results: list[CellResult],
    skipped: dict[str, str],
    st: Settings,
    command: str,
    elapsed: float,
    leaks: list[str],
) -> str:
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# mapshare side-by-side benchmark",
        "",
        (
            f"`{command}` — {now}; {platform.system()} {platform.machine()}, "
            f"{os.cpu_count()} CPUs, "
            f"{platform.python_implementation()} {platform.python_version()}; "
            f"median of {st.repeat} interleaved repetition(s); run took {elapsed:.0f} s."
        ),
        "",
        (
            f"Latency: {LATENCY_SIZE}-byte round trip between two processes, {st.latency_n} timed "
            "round trips after a warm-up. Throughput: one-way messages/s, the receiver makes a "
            "`bytes` of every message (zero-copy rows only read the length and one byte), "
            f"~{st.seconds:g} s per cell."
        ),
        (
            'Ratios are "times better": other latency / mapshare latency and mapshare rate / '
            "other rate, so > 1 means mapshare wins. Compare only within one run; the machine "
            "is noisy."
        ),
    ]
    for pinned in st.pinned_modes:
        mine = [s for s in summaries if s.pinned == pinned]
        if not mine:
            continue
        title = (
            "Pinned: one process per CPU (headline)"
            if pinned
            else "Unpinned: the scheduler places both"
        )
        lines += ["", f"## {title}", ""]
        if "latency" in st.benches:
            lines += [f"### {LATENCY_SIZE}-byte round-trip latency (µs)", ""]
            lines.append(
                md_table(
                    ["transport", "p50", "p99"],
                    [[s.label, fmt_us(s.p50_us), fmt_us(s.p99_us)] for s in mine],
                )
            )
            lines.append("")
        if "throughput" in st.benches:
            lines += ["### One-way streaming throughput (messages/s)", ""]
            lines.append(
                md_table(
                    ["transport"] + [fmt_size(z) for z in st.sizes],
                    [[s.label] + [fmt_rate(s.rates.get(z)) for z in st.sizes] for s in mine],
                )
            )
            lines.append("")
        ms_rows = [s for s in mine if s.key.startswith("mapshare")]
        others = [s for s in mine if not s.key.startswith("mapshare")]
        if ms_rows and others:
            lines += ["### mapshare vs the others (x = times better)", ""]
            for ms in ms_rows:
                lines += [ratio_table(ms, others, st), ""]
    if skipped:
        lines += ["", "## Skipped", ""] + [f"- `{k}`: {v}" for k, v in skipped.items()]
    failed = [r for r in results if r.error]
    if failed:
        lines += ["", "## Failed cells", ""]
        lines += [
            f"- `{r.transport}` {'pinned' if r.pinned else 'unpinned'} {r.mode} "
            f"{fmt_size(r.size)} rep {r.rep + 1}: {r.error}"
            for r in failed
        ]
    if leaks:
        lines += ["", "## Left behind (leak!)", ""] + [f"- `{x}`" for x in leaks]
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.rstrip() + "\n"


def plot(path: Path, summaries: list[Summary], st: Settings, command: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pinned = True in st.pinned_modes and any(s.pinned for s in summaries)
    rows = [s for s in summaries if s.pinned == pinned][::-1]  # top-to-bottom = table order
    labels = [s.label for s in rows]
    fig, (ax_l, ax_t) = plt.subplots(1, 2, figsize=(15, 0.55 * len(rows) + 2.2), sharey=True)
    ys = list(range(len(rows)))

    def floor_decade(values: list[float]) -> float:
        finite = [v for v in values if v > 0 and not math.isnan(v)]
        return 10.0 ** math.floor(math.log10(min(finite))) if finite else 1.0

    if "latency" in st.benches:
        p50 = [s.p50_us or math.nan for s in rows]
        p99 = [s.p99_us or math.nan for s in rows]
        colors = ["tab:red" if s.key.startswith("mapshare") else "tab:blue" for s in rows]
        ax_l.barh(ys, p50, color=colors, label="p50")
        ax_l.plot(p99, ys, "k|", markersize=14, markeredgewidth=2, label="p99")
        for y, v in zip(ys, p50):
            if not math.isnan(v):
                ax_l.annotate(
                    fmt_us(v),
                    (v, y),
                    xytext=(3, -3),
                    textcoords="offset points",
                    fontsize=7,
                )
        ax_l.set_xscale("log")
        ax_l.set_xlim(left=floor_decade(p50))
        ax_l.set_xlabel(f"{LATENCY_SIZE}-byte round trip, µs (log; lower is better; | = p99)")
    ax_l.set_yticks(ys, labels, fontsize=8)
    if "throughput" in st.benches:
        h = 0.8 / len(st.sizes)
        every: list[float] = []
        for i, size in enumerate(st.sizes):
            vals = [s.rates.get(size) or math.nan for s in rows]
            every += vals
            off = [y + (len(st.sizes) - 1 - i - (len(st.sizes) - 1) / 2) * h for y in ys]
            ax_t.barh(off, vals, height=h, label=fmt_size(size))
        ax_t.set_xscale("log")
        ax_t.set_xlim(left=floor_decade(every))
        ax_t.set_xlabel("one-way messages/s (log; higher is better)")
        ax_t.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    for ax in (ax_l, ax_t):
        ax.grid(axis="x", which="both", alpha=0.3)
    where = "pinned, one process per CPU" if pinned else "unpinned"
    fig.suptitle(
        f"{command}\n{where}; median of {st.repeat}; {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- main


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # turn SIGTERM into SystemExit so that every finally: runs (children killed, teardown)
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    quick = args.quick
    sizes = tuple(int(x) for x in args.sizes.split(",")) if args.sizes else SIZES
    benches = tuple(b.strip() for b in args.bench.split(",") if b.strip())
    if not set(benches) <= {"latency", "throughput"} or not benches:
        raise SystemExit("--bench takes latency, throughput or both")
    st = Settings(
        repeat=args.repeat or (1 if quick else 3),
        seconds=args.seconds or (0.15 if quick else 0.6),
        latency_n=args.latency_n or (2000 if quick else 10000),
        sizes=sizes,
        timeout=args.timeout,
        pinned_modes=(True,) if args.no_unpinned else (True, False),
        benches=benches,
    )
    command = "python benchmarks/compare.py" + "".join(
        " " + shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    candidates = select(all_transports(args.mapshare_spin), args.only)
    skipped: dict[str, str] = {}
    transports: list[Transport] = []
    for t in candidates:
        reason = t.unavailable()
        if reason:
            skipped[t.key] = reason
            print(f"skipping {t.key}: {reason}", file=sys.stderr)
        else:
            transports.append(t)
    if not transports:
        print("nothing to run", file=sys.stderr)
        return 1

    before = leak_snapshot()
    start = time.monotonic()
    results = run_all(transports, st)
    elapsed = time.monotonic() - start
    time.sleep(0.2)  # let killed children's files go
    leaks = sorted(leak_snapshot() - before)
    if leaks:
        print("warning: left behind: " + ", ".join(leaks), file=sys.stderr)

    summaries = summarize(transports, results, st)
    md = report(summaries, results, skipped, st, command, elapsed, leaks)
    print(md)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(md, encoding="utf-8")
    if args.json:
        doc: dict[str, Any] = {
            "command": command,
            "date": dt.datetime.now(dt.timezone.utc).isoformat(),
            "machine": {
                "system": platform.system(),
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
                "affinity": sorted(os.sched_getaffinity(0)),
                "python": platform.python_version(),
            },
            "settings": dataclasses.asdict(st),
            "skipped": skipped,
            "leaks": leaks,
            "summary": [dataclasses.asdict(s) for s in summaries],
            "cells": [dataclasses.asdict(r) for r in results],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    if args.plot:
        try:
            plot(args.plot, summaries, st, command)
        except ImportError as exc:
            print(f"--plot needs matplotlib: {exc}", file=sys.stderr)
            return 1
    return 0 if not any(r.error for r in results) and not leaks else 2


if __name__ == "__main__":
    sys.exit(main())
