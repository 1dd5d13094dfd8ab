"""Where a ``Pool.map`` with the default chunksize spends its time: wall clock per map and
CPU time per map of the parent and of each worker, on a warmed-up ``Pool(2)`` of the
mapshare context vs the standard one (issue 16, part 5).  Linux only (reads
``/proc/<pid>/stat``; CPU times have the kernel's clock-tick resolution, so it averages
over many maps).

Run from the repository root::

    python benchmarks/pool_cpu.py                 # 40 maps of 100,000 tasks per context
    python benchmarks/pool_cpu.py --maps 100 --chunksize 1000

CPU per map is the figure the load on a shared machine moves least: the wall clock of one
map (~10-20 ms) moves with every other process on the CPUs.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from typing import Any


def _trivial(x: int) -> int:
    return x


def _ticks(pid: int) -> int:
    """utime + stime of a process, in clock ticks."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def measure(impl: str, n: int, maps: int, chunksize: int | None) -> dict[str, Any]:
    """Wall clock (median, min) and CPU per map of the parent and the two workers."""
    if impl == "mapshare":
        import mapshare.multiprocessing as msmp

        ctx = msmp.get_context("spawn")
    else:
        ctx = multiprocessing.get_context("spawn")
    hz = os.sysconf("SC_CLK_TCK")
    with ctx.Pool(2) as pool:
        pool.map(_trivial, range(1000), chunksize=1)  # workers up, imports done
        pids = [os.getpid()] + [p.pid for p in pool._pool]
        before = [_ticks(p) for p in pids]
        walls = []
        for _ in range(maps):
            t0 = time.perf_counter()
            pool.map(_trivial, range(n), chunksize=chunksize)
            walls.append(time.perf_counter() - t0)
        after = [_ticks(p) for p in pids]
    walls.sort()
    cpu = [(b - a) / hz / maps * 1e3 for a, b in zip(before, after)]
    return {"wall_median_ms": walls[len(walls) // 2] * 1e3, "wall_min_ms": walls[0] * 1e3,
            "cpu_parent_ms": cpu[0], "cpu_workers_ms": cpu[1:]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=100_000, help="tasks per map")
    p.add_argument("--maps", type=int, default=40, help="maps per context")
    p.add_argument("--chunksize", type=int, default=None, help="default: Pool's own")
    args = p.parse_args(argv)
    if not sys.platform.startswith("linux"):
        print("pool_cpu.py reads /proc: Linux only", file=sys.stderr)
        return 2
    command = " ".join(["python", "benchmarks/pool_cpu.py", *(argv or sys.argv[1:])])
    print(f"`{command}` -- load average before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("| context | wall per map, median / min (ms) | CPU per map: parent (ms) "
          "| workers (ms) |")
    print("|---|---:|---:|---:|")
    for impl in ("mapshare", "multiprocessing"):
        r = measure(impl, args.tasks, args.maps, args.chunksize)
        workers = " + ".join(f"{w:.2f}" for w in r["cpu_workers_ms"])
        print(f"| {impl} | {r['wall_median_ms']:.2f} / {r['wall_min_ms']:.2f} "
              f"| {r['cpu_parent_ms']:.2f} | {workers} |", flush=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
