"""Segment costs side by side: mapshare.Segment vs multiprocessing.shared_memory vs a
plain mmap of a /dev/shm file, in one run, with ratios.

Run from the repository root::

    python benchmarks/segment.py            # ~1 minute on 2 cores
    python benchmarks/segment.py --quick    # smoke test, a few seconds
    python benchmarks/segment.py --json out.json

What it measures (one process; the machine is noisy, so compare only within a run):

* **create / open / close cost** (µs per operation, median of N): ``create`` makes a new
  named object of SIZE bytes and maps it (mapshare also reserves its storage, writes the
  header and registers in the attach table; ``SharedMemory`` registers with the resource
  tracker); ``open`` maps an existing one by name; ``close`` unmaps (and for mapshare
  detaches).  Each is timed alone with ``perf_counter_ns``; the unlink that follows each
  create/close pair is not timed.  Rows: 4 KiB and 1 MiB.
* **bulk copy bandwidth** (GB/s, median of K repetitions): 64 MiB in (``seg.write(data)``,
  ``seg.buf[:] = data``, ``shm.buf[:n] = data``, ``mm[:] = data``) and 64 MiB out into a
  new ``bytes`` (``seg.read()``, ``bytes(seg.buf)``, ``bytes(shm.buf)``, ``mm[:]``), with
  the pages already faulted in (a warm-up pass), the operations interleaved.

Ratios are mapshare / stdlib: for costs below 1 is faster, for bandwidth above 1 is faster.
The aims: open no slower than ``SharedMemory``; bulk copy within 10 % of a plain
memoryview copy into ``SharedMemory.buf``.  Exit status 0 unless something leaked.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import platform
import sys
import time
from collections.abc import Callable
from multiprocessing import shared_memory
from typing import Any

import mapshare
from _harness import fmt_ratio, fmt_us, leak_snapshot, md_table, median, percentile, unique_name

COPY_SIZE = 64 << 20
OBJECT_SIZES = (4096, 1 << 20)

Timer = Callable[[], int]


# ---------------------------------------------------------------- create / open / close


def _mapshare_cycle(size: int, n: int) -> dict[str, list[int]]:
    clock = time.perf_counter_ns
    out: dict[str, list[int]] = {"create": [], "open": [], "close": []}
    base = unique_name("seg")
    held = mapshare.Segment.create(base + "-held", size, lifetime="persistent")
    try:
        for i in range(n):
            name = f"{base}-{i}"
            t0 = clock()
            seg = mapshare.Segment.create(name, size, lifetime="persistent")
            t1 = clock()
            seg.close()
            t2 = clock()
            mapshare.Segment.open(name).unlink()  # not timed
            out["create"].append(t1 - t0)
            out["close"].append(t2 - t1)
            t0 = clock()
            h = mapshare.Segment.open(base + "-held")
            t1 = clock()
            h.close()
            out["open"].append(t1 - t0)
    finally:
        held.unlink()
        held.close()
    return out


def _shm_cycle(size: int, n: int) -> dict[str, list[int]]:
    clock = time.perf_counter_ns
    out: dict[str, list[int]] = {"create": [], "open": [], "close": []}
    base = unique_name("shm")
    held = shared_memory.SharedMemory(base + "-held", create=True, size=size)
    try:
        for i in range(n):
            name = f"{base}-{i}"
            t0 = clock()
            shm = shared_memory.SharedMemory(name, create=True, size=size)
            t1 = clock()
            shm.close()
            t2 = clock()
            shm.unlink()  # not timed
            out["create"].append(t1 - t0)
            out["close"].append(t2 - t1)
            t0 = clock()
            h = shared_memory.SharedMemory(base + "-held")
            t1 = clock()
            h.close()
            out["open"].append(t1 - t0)
    finally:
        held.close()
        held.unlink()
    return out


def _mmap_cycle(size: int, n: int) -> dict[str, list[int]]:
    clock = time.perf_counter_ns
    out: dict[str, list[int]] = {"create": [], "open": [], "close": []}
    base = "/dev/shm/" + unique_name("mmap")
    fd = os.open(base + "-held", os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    os.ftruncate(fd, size)
    os.close(fd)
    try:
        for i in range(n):
            path = f"{base}-{i}"
            t0 = clock()
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
            os.ftruncate(fd, size)
            mm = mmap.mmap(fd, size)
            os.close(fd)
            t1 = clock()
            mm.close()
            t2 = clock()
            os.unlink(path)  # not timed
            out["create"].append(t1 - t0)
            out["close"].append(t2 - t1)
            t0 = clock()
            fd = os.open(base + "-held", os.O_RDWR)
            mm = mmap.mmap(fd, size)
            os.close(fd)
            t1 = clock()
            mm.close()
            out["open"].append(t1 - t0)
    finally:
        os.unlink(base + "-held")
    return out


CYCLES = {"mapshare": _mapshare_cycle, "shared_memory": _shm_cycle, "mmap": _mmap_cycle}


def bench_lifecycle(n: int, rounds: int) -> dict[str, Any]:
    """{size: {impl: {op: (p50 µs, p90 µs)}}}; the implementations take turns in rounds."""
    res: dict[str, Any] = {}
    for size in OBJECT_SIZES:
        samples: dict[str, dict[str, list[int]]] = {
            k: {"create": [], "open": [], "close": []} for k in CYCLES
        }
        order = list(CYCLES)
        for r in range(rounds):
            for impl in order[r % len(order) :] + order[: r % len(order)]:
                got = CYCLES[impl](size, max(1, n // rounds))
                for op, vals in got.items():
                    samples[impl][op].extend(vals)
        res[str(size)] = {
            impl: {op: (median(v) / 1e3, percentile(v, 90) / 1e3) for op, v in ops.items()}
            for impl, ops in samples.items()
        }
    return res


# ---------------------------------------------------------------- bulk copy


def bench_copy(reps: int) -> dict[str, float]:
    """GB/s (median of ``reps``) for each way of copying 64 MiB in and out."""
    data = os.urandom(1 << 20) * (COPY_SIZE >> 20)
    seg = mapshare.Segment.create(unique_name("copy"), COPY_SIZE)
    shm = shared_memory.SharedMemory(unique_name("copy"), create=True, size=COPY_SIZE)
    path = "/dev/shm/" + unique_name("copy")
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    os.ftruncate(fd, COPY_SIZE)
    mm = mmap.mmap(fd, COPY_SIZE)
    os.close(fd)
    sbuf = shm.buf[:COPY_SIZE]  # SharedMemory.buf is page-rounded: slice to the size
    mbuf = memoryview(mm)
    seg_buf = seg.buf

    def seg_write() -> None:
        seg.write(data)

    def seg_buf_in() -> None:
        seg_buf[:] = data

    def shm_in() -> None:
        sbuf[:] = data

    def mmap_in() -> None:
        mm[:] = data

    def seg_read() -> None:
        seg.read()

    def seg_buf_out() -> None:
        bytes(seg_buf)

    def shm_out() -> None:
        bytes(sbuf)

    def mmap_out() -> None:
        mm[:]

    ops: dict[str, Callable[[], None]] = {
        "in: mapshare seg.write(data)": seg_write,
        "in: mapshare seg.buf[:] = data": seg_buf_in,
        "in: shared_memory buf[:] = data": shm_in,
        "in: mmap mm[:] = data": mmap_in,
        "out: mapshare seg.read()": seg_read,
        "out: mapshare bytes(seg.buf)": seg_buf_out,
        "out: shared_memory bytes(buf)": shm_out,
        "out: mmap mm[:]": mmap_out,
    }
    times: dict[str, list[float]] = {k: [] for k in ops}
    try:
        for f in ops.values():  # warm-up: fault every page in, size the allocator
            f()
        keys = list(ops)
        for r in range(reps):
            for k in keys[r % len(keys) :] + keys[: r % len(keys)]:
                t0 = time.perf_counter()
                ops[k]()
                times[k].append(time.perf_counter() - t0)
    finally:
        sbuf.release()
        mbuf.release()
        seg_buf.release()
        seg.close()
        shm.close()
        shm.unlink()
        mm.close()
        os.unlink(path)
    return {k: COPY_SIZE / median(v) / 1e9 for k, v in times.items()}


# ---------------------------------------------------------------- report


def report(life: dict[str, Any], copy: dict[str, float]) -> tuple[str, list[str]]:
    lines: list[str] = []
    verdicts: list[str] = []
    lines.append("### create / open / close (µs per operation, median; p90 in brackets)\n")
    rows = []
    for size, impls in life.items():
        for op in ("create", "open", "close"):
            m, s, p = (impls[k][op] for k in ("mapshare", "shared_memory", "mmap"))
            rows.append(
                [
                    f"{op} {int(size) >> 10} KiB",
                    f"{fmt_us(m[0])} [{fmt_us(m[1])}]",
                    f"{fmt_us(s[0])} [{fmt_us(s[1])}]",
                    f"{fmt_us(p[0])} [{fmt_us(p[1])}]",
                    fmt_ratio(m[0] / s[0]),
                    fmt_ratio(m[0] / p[0]),
                ]
            )
            if op == "open":
                ok = m[0] <= s[0]
                verdicts.append(
                    f"open {int(size) >> 10} KiB: mapshare {fmt_us(m[0])} µs vs shared_memory "
                    f"{fmt_us(s[0])} µs -> {'MET' if ok else 'NOT MET'} (aim: no slower)"
                )
    lines.append(
        md_table(
            [
                "operation",
                "mapshare",
                "shared_memory",
                "mmap /dev/shm",
                "mapshare / shared_memory",
                "mapshare / mmap",
            ],
            rows,
        )
    )
    lines.append("\nRatios are time ratios: below 1x mapshare is faster.\n")

    lines.append("### bulk copy, 64 MiB (GB/s, median)\n")
    rows = []
    for direction, ref in (
        ("in", "in: shared_memory buf[:] = data"),
        ("out", "out: shared_memory bytes(buf)"),
    ):
        mm_key = "in: mmap mm[:] = data" if direction == "in" else "out: mmap mm[:]"
        for k, v in copy.items():
            if not k.startswith(direction + ":"):
                continue
            rows.append([k, f"{v:.2f}", fmt_ratio(v / copy[ref]), fmt_ratio(v / copy[mm_key])])
            if "mapshare" in k:
                ok = v >= 0.9 * copy[ref]
                verdicts.append(
                    f"{k}: {v / copy[ref]:.2f}x of shared_memory -> "
                    f"{'MET' if ok else 'NOT MET'} (aim: within 10 %)"
                )
    lines.append(md_table(["operation", "GB/s", "vs shared_memory", "vs mmap"], rows))
    lines.append("\nRatios are bandwidth ratios: above 1x mapshare is faster.\n")
    lines.append("### aims\n")
    lines.extend(f"- {v}" for v in verdicts)
    return "\n".join(lines), verdicts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="few iterations (smoke test)")
    p.add_argument("--json", metavar="FILE", help="write the raw results as JSON")
    p.add_argument("--n", type=int, default=None, help="create/open/close cycles per row")
    p.add_argument("--reps", type=int, default=None, help="bulk copy repetitions")
    args = p.parse_args(argv)
    n = args.n or (200 if args.quick else 3000)
    reps = args.reps or (3 if args.quick else 15)
    before = leak_snapshot()
    t0 = time.monotonic()
    print(
        f"# mapshare segment benchmark ({platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, n={n}, reps={reps})\n"
    )
    life = bench_lifecycle(n, rounds=5)
    copy = bench_copy(reps)
    text, verdicts = report(life, copy)
    print(text)
    print(f"\n(ran in {time.monotonic() - t0:.1f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "lifecycle_us": life,
                    "copy_gbps": copy,
                    "n": n,
                    "reps": reps,
                    "aims": verdicts,
                    "python": sys.version,
                },
                f,
                indent=2,
            )
    leaked = leak_snapshot() - before
    # only ours (names carry our pid): other benchmark runs may be going on at once
    leaked = {x for x in leaked if "bench" in x and f"-{os.getpid()}-" in x}
    if leaked:
        print(f"LEAKED: {sorted(leaked)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
