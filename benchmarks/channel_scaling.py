"""Channels in ordinary configurations: many sender processes, and large rings.

Run from the repository root::

    python benchmarks/channel_scaling.py              # ~1-2 min on 2 cores
    python benchmarks/channel_scaling.py --json out.json --repeat 3

What it measures, in one run, and the ratios it prints:

* **Many senders, one receiver**, 64-byte messages: 1, 8 and 64 sender processes (forked)
  each send their share of M messages with ``send()`` as fast as they can; one receiver
  takes them with ``receive()`` (a ``bytes`` each).  The same with
  ``multiprocessing.Queue`` (``put``/``get``).  The time runs from the start signal to the
  receiver's last message.  Ratios: mapshare N senders / Queue N senders (target >= 3x
  at 8 and 64), and mapshare 8 senders / mapshare 1 sender (target >= 50 %).
* **Large ring**: one sender and one receiver stream 1 MiB messages through an 8 MiB and a
  64 MiB ring.  Ratio 64 MiB / 8 MiB (target >= 0.85).

Each cell runs ``--repeat`` times (interleaved) and reports the median.  The machine is
noisy: compare numbers within one run, as ratios.  Nothing is left in /dev/shm.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))
import mapshare

CTX = mp.get_context("fork")
SMALL = b"x" * 64
BIG = b"y" * (1 << 20)


def _mapshare_sender(name: str, n: int, payload: bytes, go: Any) -> None:
    ch = mapshare.Channel.open(name)
    send = ch.send
    go.wait()
    for _ in range(n):
        send(payload)
    ch.close()


def _queue_sender(q: Any, n: int, payload: bytes, go: Any) -> None:
    put = q.put
    go.wait()
    for _ in range(n):
        put(payload)
    q.close()
    q.join_thread()


def _start(target: Any, args_for: Any, senders: int) -> tuple[list[Any], Any]:
    go = CTX.Event()
    procs = [CTX.Process(target=target, args=(*args_for(i), go)) for i in range(senders)]
    for p in procs:
        p.start()
    return procs, go


def many_senders_mapshare(senders: int, total: int, capacity: int = 1 << 20) -> float:
    name = f"bench-scaling-{os.getpid()}-{senders}"
    per = total // senders
    with mapshare.Channel.create(name, capacity) as ch:
        try:
            procs, go = _start(_mapshare_sender, lambda i: (name, per, SMALL), senders)
            time.sleep(0.2 + senders * 0.01)  # every sender is up and waiting
            receive = ch.receive
            t0 = time.perf_counter()
            go.set()
            for _ in range(per * senders):
                receive()
            dt = time.perf_counter() - t0
            for p in procs:
                p.join()
        finally:
            ch.unlink()
    return per * senders / dt


def many_senders_queue(senders: int, total: int) -> float:
    q = CTX.Queue()
    per = total // senders
    procs, go = _start(_queue_sender, lambda i: (q, per, SMALL), senders)
    time.sleep(0.2 + senders * 0.01)
    get = q.get
    t0 = time.perf_counter()
    go.set()
    for _ in range(per * senders):
        get()
    dt = time.perf_counter() - t0
    for p in procs:
        p.join()
    return per * senders / dt


def big_ring(capacity: int, count: int) -> float:
    name = f"bench-bigring-{os.getpid()}-{capacity}"
    with mapshare.Channel.create(name, capacity) as ch:
        try:
            procs, go = _start(_mapshare_sender, lambda i: (name, count, BIG), 1)
            time.sleep(0.2)
            receive = ch.receive
            t0 = time.perf_counter()
            go.set()
            for _ in range(count):
                receive()
            dt = time.perf_counter() - t0
            for p in procs:
                p.join()
        finally:
            ch.unlink()
    return count / dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="repetitions per cell (median)")
    ap.add_argument("--messages", type=int, default=200_000, help="64 B messages per cell")
    ap.add_argument("--big", type=int, default=4000, help="1 MiB messages per cell")
    ap.add_argument("--senders", default="1,8,64", help="sender counts")
    ap.add_argument("--capacity", type=int, default=1 << 20,
                    help="ring bytes for the many-senders cells (default 1 MiB)")
    ap.add_argument("--json", metavar="FILE", help="write every repetition as JSON")
    args = ap.parse_args()
    counts = [int(x) for x in args.senders.split(",")]
    runs: dict[str, list[float]] = {}
    cells: list[tuple[str, Any]] = []
    for n in counts:
        cells.append((
            f"mapshare {n} senders",
            lambda n=n: many_senders_mapshare(n, args.messages, args.capacity),
        ))
        cells.append((f"Queue {n} senders", lambda n=n: many_senders_queue(n, args.messages)))
    cells.append(("mapshare 1 MiB, 8 MiB ring", lambda: big_ring(8 << 20, args.big)))
    cells.append(("mapshare 1 MiB, 64 MiB ring", lambda: big_ring(64 << 20, args.big)))
    for _ in range(args.repeat):
        for label, fn in cells:
            runs.setdefault(label, []).append(fn())
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(f"| cell | messages/s (median of {args.repeat}) |")
    print("|---|---:|")
    for label, _ in cells:
        print(f"| {label} | {med[label]:,.0f} |")
    print()
    ratios: dict[str, float] = {}
    for n in counts:
        ratios[f"mapshare/Queue, {n} senders (target >= 3)"] = (
            med[f"mapshare {n} senders"] / med[f"Queue {n} senders"]
        )
    if 1 in counts:
        for n in counts:
            if n != 1:
                ratios[f"mapshare {n} senders / 1 sender (target >= 0.5 at 8)"] = (
                    med[f"mapshare {n} senders"] / med["mapshare 1 senders"]
                )
    ratios["1 MiB: 64 MiB ring / 8 MiB ring (target >= 0.85)"] = (
        med["mapshare 1 MiB, 64 MiB ring"] / med["mapshare 1 MiB, 8 MiB ring"]
    )
    print("| ratio | value |")
    print("|---|---:|")
    for k, v in ratios.items():
        print(f"| {k} | {v:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": runs, "median": med, "ratios": ratios,
                       "cpus": os.cpu_count(), "argv": sys.argv}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
