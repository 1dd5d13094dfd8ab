"""``mapshare.Journal`` against ``Channel``, sqlite3 (WAL), lmdb and a raw
``os.write`` + ``os.fdatasync`` loop, in one run, with ratios (issue 15, part 7).

Run from the repository root::

    python benchmarks/journal.py --quick            # smoke test, ~1 min
    python benchmarks/journal.py                    # full run, 3 interleaved repetitions
    python benchmarks/journal.py --json out.json --markdown out.md --plot docs/img/journal.png
    python benchmarks/journal.py --only append,durable --impl journal,sqlite3-wal

Every file lives under ``--dir`` (default: a fresh directory in the temp directory); the
report names its filesystem, because the durable cells measure that disk, not mapshare.

Cells, each in freshly spawned processes pinned one per CPU:

* ``append``: 64 B appends per second by one process, for ``seconds`` (time-bounded
  loop; the rate is appends per second of time spent appending): ``Journal.append`` in
  ``"process"`` mode vs ``Channel.send_nowait`` into a 64 MiB ring that nobody receives
  from during the timed batches (the pure cost of a send; before the ring would fill, the
  clock stops and the same process drains it) vs sqlite3 in WAL
  mode, one ``INSERT`` per transaction, with ``synchronous=NORMAL`` (what survives a
  process crash, like ``"process"``) and ``synchronous=OFF``, vs lmdb (integer keys, one
  ``put`` per write transaction) with ``sync=False``.
* ``durable``: the same 64 B appends, each on stable storage before the call returns:
  ``Journal.append`` in ``"os"`` mode vs a plain ``os.write`` + ``os.fdatasync`` loop on a
  preallocated file on the same disk vs sqlite3 WAL with ``synchronous=FULL`` (Python's
  default) vs lmdb with ``sync=True``.
* ``group``: 8 appender processes at once, each appending 64 B for ``seconds``: the
  journal in ``"os-batch"`` (group commit) vs ``"os"``; total appends/s.
* ``tail``: one process appends N 64 B records (``"process"`` mode), another follows the
  tail with a blocking reader (``for i, view in reader``), making ``bytes`` of each;
  records/s from the first append to the last record read, vs ``Channel.send`` /
  ``Channel.receive`` of N 64 B messages between two processes.
* ``index``: ``j[i]`` (random access) at 10 000 positions spread uniformly through a
  journal of ``--index-records`` records (10**8 in the full run), each read timed
  separately (p50/p99, µs), plus the first, the middle and the last record. The journal is
  built by appending 8-byte records (the index, little-endian) in ``"process"`` mode, which
  the read checks; ``--index-dir DIR`` keeps it between runs (built once when missing).

Repetitions are interleaved (repetition 1 of every cell, then repetition 2, ...), and the
report gives the median of each cell over them, the ratios, and every target of the issue
as met / not met. Compare numbers only within one run: the machine is shared.
Exit status: 0 when every cell ran and nothing was left behind, 2 otherwise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import shlex
import shutil
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

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

SIZE = 64
BENCHES = ("append", "durable", "group", "tail", "index")
IMPLS = ("journal", "channel", "sqlite3-wal", "lmdb", "raw-fdatasync")
TIMEOUT = 900.0
APPENDERS = 8
SEGMENT_SIZE = 64 << 20  # journal segment files in the timed cells
INDEX_SEGMENT_SIZE = 1 << 30  # the 10**8-record journal: fewer, larger files
CHANNEL_RING = 1 << 20  # the tail cell's channel
CHANNEL_SEND_RING = 64 << 20  # the send-cost cell's channel, drained when nearly full


def _unavailable(impl: str) -> str | None:
    """Why this implementation cannot run here, or None."""
    try:
        if impl == "journal":
            from mapshare import Journal  # noqa: F401
        elif impl == "lmdb":
            import lmdb  # noqa: F401
    except ImportError as exc:
        return f"{impl}: {exc} (pip install '.[bench]')"
    return None


def _run_tag() -> str:
    """This run's mark in the names it makes (spawned children inherit it through the
    environment), so that the leak check counts only this run's leftovers, not those of
    another benchmark running next to it."""
    return os.environ.setdefault("MAPSHARE_JOURNAL_BENCH_RUN", str(os.getpid()))


def _leaks(base: str) -> set[str]:
    """This run's channel names left in /dev/shm, and its working directory if it is
    still there."""
    left: set[str] = set()
    mark = f"bench-journal-{_run_tag()}-"
    if os.path.isdir("/dev/shm"):
        left |= {f"/dev/shm/{n}" for n in os.listdir("/dev/shm") if mark in n}
    if os.path.exists(base):
        left.add(base)
    return left


def _cpus(k: int) -> list[int] | None:
    """The CPU the k-th process of a cell is pinned to (round robin), or None."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    return [allowed[k % len(allowed)]]


def _fresh(base: str, label: str) -> str:
    """A path under ``base`` that does not exist yet (the journal creates its directory)."""
    return tempfile.mkdtemp(prefix=f"{label}-", dir=base) + "/data"


# ---- one process appending 64 B for a while -----------------------------------------------


#: what _open_appender returns: append(payload), close(), and for a row whose store fills
#: up (the channel, which nobody receives from): (room in appends, drain()) to empty it
#: with the clock stopped
Appender = tuple[Callable[[bytes], Any], Callable[[], None],
                 Optional[tuple[int, Callable[[], None]]]]


def _open_appender(impl: str, variant: str, where: str) -> Appender:
    """The appender of one implementation / variant, files under ``where``."""
    if impl == "journal":
        from mapshare import Journal

        j = Journal.open_or_create(where, segment_size=SEGMENT_SIZE, durability=variant)
        return j.append, j.close, None
    if impl == "channel":
        from mapshare import Channel, ChannelEmpty

        # The cost of a send that never waits: nobody receives during the timed batches;
        # before the ring would fill, the clock stops and this process drains it.
        name = f"bench-journal-{_run_tag()}-{os.urandom(4).hex()}"
        ch = Channel.create(name, CHANNEL_SEND_RING)
        ch.unlink()  # the name goes now; the mapping lives until close
        room = CHANNEL_SEND_RING // (8 + SIZE) - 64

        def drain() -> None:
            while True:
                try:
                    ch.receive_nowait()
                except ChannelEmpty:
                    return

        return ch.send_nowait, ch.close, (room, drain)
    if impl == "sqlite3-wal":
        os.makedirs(where, exist_ok=True)
        # isolation_level=None: autocommit, so every INSERT is its own transaction
        db = sqlite3.connect(os.path.join(where, "bench.db"), isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={variant}")
        db.execute("CREATE TABLE IF NOT EXISTS log (id INTEGER PRIMARY KEY, data BLOB)")
        stmt = "INSERT INTO log (data) VALUES (?)"
        ex = db.execute

        def sql_append(data: bytes) -> None:
            ex(stmt, (data,))

        return sql_append, db.close, None
    if impl == "lmdb":
        import lmdb

        os.makedirs(where, exist_ok=True)
        env = lmdb.open(where, map_size=8 << 30, sync=(variant == "sync"),
                        metasync=(variant == "sync"), max_dbs=1)
        db = env.open_db(b"log", integerkey=True)
        pack = struct.Struct("=Q").pack  # integerkey: native-endian unsigned integers
        counter = [0]

        def lmdb_append(data: bytes) -> None:
            with env.begin(write=True, db=db) as txn:
                txn.put(pack(counter[0]), data, append=True)
            counter[0] += 1

        return lmdb_append, env.close, None
    if impl == "raw-fdatasync":
        os.makedirs(where, exist_ok=True)
        fd = os.open(os.path.join(where, "raw.log"), os.O_WRONLY | os.O_CREAT, 0o600)
        # preallocated, like a journal segment: fdatasync then flushes the data, not the
        # file's growing size
        os.posix_fallocate(fd, 0, SEGMENT_SIZE)
        pos = [0]
        pwrite, fdatasync = os.pwrite, os.fdatasync

        def raw_append(data: bytes) -> None:
            pwrite(fd, data, pos[0])
            fdatasync(fd)
            pos[0] = (pos[0] + len(data)) % SEGMENT_SIZE

        return raw_append, lambda: os.close(fd), None
    raise ValueError(impl)


def _appender(impl: str, variant: str, where: str, seconds: float, barrier: Any
              ) -> tuple[int, int, int, int]:
    """Append 64 B for ``seconds`` of appending after the group's barrier:
    (count, t0 ns, t1 ns, ns spent appending)."""
    append, close, fills = _open_appender(impl, variant, where)
    payload = b"\x5a" * SIZE
    clock = time.perf_counter_ns
    room, drain = fills if fills else (1 << 62, lambda: None)
    try:
        for _ in range(8):  # first pages touched, statements prepared
            append(payload)
        drain()
        barrier.wait(TIMEOUT)
        budget = int(seconds * 1e9)
        count = active = since_drain = 0
        t0 = t1 = clock()
        while active < budget:
            if since_drain + 16 > room:
                drain()  # outside the timed batches
                since_drain = 0
            ts = clock()
            for _ in range(16):
                append(payload)
            t1 = clock()
            active += t1 - ts
            count += 16
            since_drain += 16
        barrier.wait(TIMEOUT)  # nobody closes while a peer still appends
    finally:
        close()
    return count, t0, t1, active


def cell_append(base: str, impl: str, variant: str, procs: int, seconds: float) -> float:
    """Total appends per second of ``procs`` appender processes (one shared store)."""
    where = _fresh(base, f"{impl}-{variant}")
    res = run_group(
        [ChildSpec(_appender, (impl, variant, where, seconds), _cpus(k), f"appender-{k}")
         for k in range(procs)],
        TIMEOUT,
        teardown=lambda: shutil.rmtree(os.path.dirname(where), ignore_errors=True),
    )
    if res.error:
        raise RuntimeError(f"{res.error}\n{res.traceback or ''}")
    count = sum(r[0] for r in res.results)
    if procs == 1:
        return count / (res.results[0][3] / 1e9)  # the time spent appending
    t0 = min(r[1] for r in res.results)
    t1 = max(r[2] for r in res.results)
    return count / ((t1 - t0) / 1e9)  # appenders at once: first start to last stop


# ---- tail: one appender, one reader following it -----------------------------------------


def _tail_writer(impl: str, where: str, n: int, barrier: Any) -> int:
    payload = b"\x5a" * SIZE
    if impl == "journal":
        from mapshare import Journal

        j = Journal.open(where)
        send: Callable[[bytes], Any] = j.append
        close = j.close
    else:
        from mapshare import Channel

        ch = Channel.open(where, wait=30)
        send, close = ch.send, ch.close
    try:
        barrier.wait(TIMEOUT)  # the reader is waiting for record 0
        t0 = time.perf_counter_ns()
        for _ in range(n):
            send(payload)
        barrier.wait(TIMEOUT)
    finally:
        close()
    return t0


def _tail_reader(impl: str, where: str, n: int, barrier: Any) -> int:
    if impl == "journal":
        from mapshare import Journal

        j = Journal.open(where, access="r")
        try:
            r = j.reader(start="begin")
            barrier.wait(TIMEOUT)
            for got, (_, view) in enumerate(r, 1):
                data = bytes(view)  # the rule of every receive benchmark: copy it out
                if got == n:
                    break
            t1 = time.perf_counter_ns()
        finally:
            j.close()
    else:
        from mapshare import Channel

        ch = Channel.open(where, wait=30)
        try:
            receive = ch.receive
            barrier.wait(TIMEOUT)
            for _ in range(n):
                data = receive()
            t1 = time.perf_counter_ns()
        finally:
            ch.close()
    if len(data) != SIZE:
        raise AssertionError(f"read {len(data)} bytes")
    barrier.wait(TIMEOUT)
    return t1


def cell_tail(base: str, impl: str, n: int) -> float:
    """Records per second from the writer's first append to the reader's last read."""
    teardown: Callable[[], None]
    if impl == "journal":
        from mapshare import Journal

        where = _fresh(base, "tail")
        Journal.create(where, segment_size=SEGMENT_SIZE, durability="process").close()

        def teardown() -> None:
            shutil.rmtree(os.path.dirname(where), ignore_errors=True)
    else:
        from mapshare import Channel

        where = f"bench-journal-{_run_tag()}-{os.urandom(4).hex()}"
        ch = Channel.create(where, CHANNEL_RING)

        def teardown() -> None:
            ch.unlink()
            ch.close()
    res = run_group([ChildSpec(_tail_writer, (impl, where, n), _cpus(0), "writer"),
                     ChildSpec(_tail_reader, (impl, where, n), _cpus(1), "reader")],
                    TIMEOUT, teardown)
    if res.error:
        raise RuntimeError(f"{res.error}\n{res.traceback or ''}")
    t0, t1 = res.results
    return n / ((t1 - t0) / 1e9)


# ---- index: j[i] through a large journal --------------------------------------------------


def build_index_journal(path: str, records: int, say: Callable[[str], None]) -> float:
    """Append ``records`` 8-byte records (each its own index) unless ``path`` holds them.

    Returns the seconds the build took (0 when reused)."""
    from mapshare import Journal

    if os.path.isdir(path):
        with Journal.open(path, access="r") as j:
            if len(j) >= records:
                return 0.0
        shutil.rmtree(path)
    t0 = time.monotonic()
    pack = struct.Struct("<Q").pack
    with Journal.create(path, segment_size=INDEX_SEGMENT_SIZE, durability="process") as j:
        append = j.append
        step = max(1, records // 100)
        for start in range(0, records, step):
            for i in range(start, min(records, start + step)):
                append(pack(i))
            say(f"built {min(records, start + step):,} / {records:,} records")
    return time.monotonic() - t0


def _du(path: str) -> int:
    """Bytes the files under ``path`` take on disk (allocated blocks)."""
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.stat(os.path.join(root, f)).st_blocks * 512
    return total


def _index_reader(path: str, records: int, samples: int, barrier: Any) -> dict[str, float]:
    from mapshare import Journal

    unpack = struct.Struct("<Q").unpack
    rng = random.Random(15)
    positions = [rng.randrange(records) for _ in range(samples)]
    clock = time.perf_counter_ns
    with Journal.open(path, access="r") as j:
        barrier.wait(TIMEOUT)
        first = {}
        for label, i in (("first", 0), ("middle", records // 2), ("last", records - 1)):
            t0 = clock()
            v = j[i]
            first[label] = (clock() - t0) / 1e3
            if unpack(bytes(v)[:8])[0] != i:
                raise AssertionError(f"j[{i}] holds the wrong record")
        times = [0] * samples
        for k, i in enumerate(positions):
            t0 = clock()
            v = j[i]
            times[k] = clock() - t0
            if unpack(bytes(v)[:8])[0] != i:
                raise AssertionError(f"j[{i}] holds the wrong record")
        # the same positions again, now that their pages are resident
        warm = [0] * samples
        for k, i in enumerate(positions):
            t0 = clock()
            j[i]
            warm[k] = clock() - t0
    return {"p50_us": percentile(times, 50) / 1e3, "p99_us": percentile(times, 99) / 1e3,
            "max_us": max(times) / 1e3, "warm_p50_us": percentile(warm, 50) / 1e3,
            "warm_p99_us": percentile(warm, 99) / 1e3,
            **{f"{k}_us": v for k, v in first.items()}}


def cell_index(path: str, records: int, samples: int) -> dict[str, float]:
    res = run_group([ChildSpec(_index_reader, (path, records, samples), _cpus(0), "reader")],
                    TIMEOUT)
    if res.error:
        raise RuntimeError(f"{res.error}\n{res.traceback or ''}")
    out: dict[str, float] = res.results[0]
    return out


# ---- the run -----------------------------------------------------------------------------

#: (cell, row label) -> (implementation, variant, appender processes)
APPEND_ROWS = {
    "journal process": ("journal", "process", 1),
    "Channel.send": ("channel", "", 1),
    "sqlite3 WAL synchronous=NORMAL": ("sqlite3-wal", "NORMAL", 1),
    "sqlite3 WAL synchronous=OFF": ("sqlite3-wal", "OFF", 1),
    "lmdb sync=False": ("lmdb", "nosync", 1),
}
DURABLE_ROWS = {
    "journal os": ("journal", "os", 1),
    "os.write + os.fdatasync": ("raw-fdatasync", "", 1),
    "sqlite3 WAL synchronous=FULL": ("sqlite3-wal", "FULL", 1),
    "lmdb sync=True": ("lmdb", "sync", 1),
}
GROUP_ROWS = {
    f"journal os-batch, {APPENDERS} appenders": ("journal", "os-batch", APPENDERS),
    f"journal os, {APPENDERS} appenders": ("journal", "os", APPENDERS),
}
TAIL_ROWS = {"journal reader": "journal", "Channel.receive": "channel"}


def plan(args: argparse.Namespace, base: str) -> list[tuple[str, str, Callable[[], Any]]]:
    """(cell, row, measure) for one repetition, in run order."""
    cells: list[tuple[str, str, Callable[[], Any]]] = []
    secs = args.seconds
    for bench, rows in (("append", APPEND_ROWS), ("durable", DURABLE_ROWS),
                        ("group", GROUP_ROWS)):
        if bench not in args.only:
            continue
        for row, (impl, variant, procs) in rows.items():
            if impl in args.impls:
                cells.append((bench, row, lambda impl=impl, variant=variant, procs=procs:
                              cell_append(base, impl, variant, procs, secs)))
    if "tail" in args.only:
        for row, impl in TAIL_ROWS.items():
            if impl in args.impls:
                cells.append(("tail", row,
                              lambda impl=impl: cell_tail(base, impl, args.tail_n)))
    if "index" in args.only and "journal" in args.impls:
        cells.append(("index", f"journal j[i], {args.index_records:,} records",
                      lambda: cell_index(args.index_path, args.index_records, args.samples)))
    return cells


UNITS = {"append": "appends/s", "durable": "appends/s", "group": "appends/s, total",
         "tail": "records/s", "index": "µs per j[i], p50 / p99"}


def summarize(raw: dict[tuple[str, str], list[Any]]) -> dict[tuple[str, str], Any]:
    """Median per (cell, row) over the repetitions (the index cell: per field)."""
    out: dict[tuple[str, str], Any] = {}
    for key, values in raw.items():
        if not values:
            continue
        if key[0] == "index":
            out[key] = {f: median([v[f] for v in values]) for f in values[0]}
        else:
            out[key] = median(values)
    return out


def _get(summary: dict[tuple[str, str], Any], bench: str, row: str) -> float | None:
    v = summary.get((bench, row))
    return None if v is None else float(v)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def targets(summary: dict[tuple[str, str], Any]
            ) -> list[tuple[str, float | None, float, str]]:
    """(target, measured, required, how) for every target of the issue (> required: met)."""
    g = lambda b, r: _get(summary, b, r)  # noqa: E731
    jp = g("append", "journal process")
    out = [
        # cost = 1 / rate, so "journal's cost <= 1.5x send's cost" is rate_j / rate_ch >= 1/1.5
        ("64 B append, process mode: cost <= 1.5x Channel.send",
         _ratio(jp, g("append", "Channel.send")), 1 / 1.5, "rate ratio, needs >= 0.67"),
        ("64 B append, process mode: >= 20x sqlite3 WAL inserts (synchronous=FULL)",
         _ratio(jp, g("durable", "sqlite3 WAL synchronous=FULL")), 20.0, "rate ratio"),
        ("64 B append, process mode: >= 20x sqlite3 WAL inserts (synchronous=NORMAL)",
         _ratio(jp, g("append", "sqlite3 WAL synchronous=NORMAL")), 20.0, "rate ratio"),
        ("64 B append, process mode: >= 20x sqlite3 WAL inserts (synchronous=OFF)",
         _ratio(jp, g("append", "sqlite3 WAL synchronous=OFF")), 20.0, "rate ratio"),
        ("os mode >= 0.8x os.write + os.fdatasync",
         _ratio(g("durable", "journal os"), g("durable", "os.write + os.fdatasync")), 0.8,
         "rate ratio"),
        (f"os-batch, {APPENDERS} appenders >= 5x os, {APPENDERS} appenders",
         _ratio(g("group", f"journal os-batch, {APPENDERS} appenders"),
                g("group", f"journal os, {APPENDERS} appenders")), 5.0, "rate ratio"),
        (f"os-batch, {APPENDERS} appenders >= 5x os, 1 appender",
         _ratio(g("group", f"journal os-batch, {APPENDERS} appenders"),
                g("durable", "journal os")), 5.0, "rate ratio"),
        ("reader following the tail >= 1x Channel.receive",
         _ratio(g("tail", "journal reader"), g("tail", "Channel.receive")), 1.0, "rate ratio"),
    ]
    idx = [v for (b, _), v in summary.items() if b == "index"]
    if idx:
        # expressed as "times under the bound" so that >= 1 means met, like the others
        out.append(("j[i] <= 10 µs at any position (p99 of random positions)",
                    10.0 / idx[0]["p99_us"] if idx[0]["p99_us"] else None, 1.0,
                    f"10 µs / p99 ({fmt_us(idx[0]['p99_us'])} µs)"))
    return out


def report(summary: dict[tuple[str, str], Any]) -> str:
    rows = []
    base_of = {"append": "journal process", "durable": "journal os",
               "group": f"journal os, {APPENDERS} appenders", "tail": "journal reader"}
    for (bench, row), v in summary.items():
        if bench == "index":
            rows.append([bench, row, UNITS[bench],
                         f"{fmt_us(v['p50_us'])} / {fmt_us(v['p99_us'])} (max "
                         f"{fmt_us(v['max_us'])}; resident: {fmt_us(v['warm_p50_us'])} / "
                         f"{fmt_us(v['warm_p99_us'])}; first/middle/last "
                         f"{fmt_us(v['first_us'])}/{fmt_us(v['middle_us'])}/"
                         f"{fmt_us(v['last_us'])})", "-", "-"])
            continue
        ref = _get(summary, bench, base_of[bench])
        per_op = 1e9 / v if bench in ("append", "durable") and v else None
        ns = f"{per_op:,.0f} ns" if per_op is not None else "-"
        rows.append([bench, row, UNITS[bench], fmt_rate(v), ns,
                     fmt_ratio(_ratio(ref, v)) if ref is not None else "-"])
    lines = [md_table(["cell", "row", "unit", "value", "per append", "journal / row"],
                      rows, right_from=3), "",
             "Targets (measured >= required: met):\n"]
    trows = []
    for name, got, need, how in targets(summary):
        verdict = "n/a" if got is None else ("met" if got >= need else "**not met**")
        trows.append([name, fmt_ratio(got), f"{need:.2f}", how, verdict])
    lines.append(md_table(["target", "measured", "required", "how", ""], trows, right_from=1))
    return "\n".join(lines) + "\n"


def plot(path: Path, summary: dict[tuple[str, str], Any], command: str) -> None:
    """One bar per row (log scale, appends or records per second), grouped by cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = [(b, r, float(v)) for (b, r), v in summary.items() if b != "index"]
    fig, ax = plt.subplots(figsize=(12, 5.5))
    colors = {"append": "#1f77b4", "durable": "#d62728", "group": "#2ca02c",
              "tail": "#9467bd"}
    xs = list(range(len(items)))
    ax.bar(xs, [v for _, _, v in items], color=[colors[b] for b, _, _ in items])
    for x, (_, _, v) in zip(xs, items):
        ax.annotate(fmt_rate(v), (x, v), ha="center", va="bottom", fontsize=7)
    ax.set_yscale("log")
    ax.set_xticks(xs)
    ax.set_xticklabels([f"{b}: {r}" for b, r, _ in items], rotation=30, ha="right",
                       fontsize=7)
    ax.set_ylabel("per second (higher is better, log)")
    idx = [(r, v) for (b, r), v in summary.items() if b == "index"]
    extra = (f"; {idx[0][0]}: p50 {fmt_us(idx[0][1]['p50_us'])} µs, "
             f"p99 {fmt_us(idx[0][1]['p99_us'])} µs") if idx else ""
    ax.set_title(f"mapshare.Journal, 64 B records{extra}\n{command}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _filesystem(path: str) -> str:
    """``df``'s device and type for ``path`` (what the durable cells measure)."""
    try:
        out = subprocess.run(["df", "-T", path], capture_output=True, text=True, timeout=10,
                             check=True).stdout.splitlines()[-1].split()
        return f"{path} on {out[0]} ({out[1]})"
    except (OSError, subprocess.SubprocessError, IndexError):
        return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller counts, 1 repetition")
    p.add_argument("--repeat", type=int, default=None, help="repetitions (3; 1 with --quick)")
    p.add_argument("--only", default=",".join(BENCHES), help=f"cells, from {BENCHES}")
    p.add_argument("--impl", default=",".join(IMPLS), help=f"rows, from {IMPLS}")
    p.add_argument("--seconds", type=float, default=None,
                   help="per append cell (2.0; 0.5 with --quick)")
    p.add_argument("--tail-n", type=int, default=None,
                   help="records of the tail cell (500 000; 50 000 with --quick)")
    p.add_argument("--index-records", type=int, default=None,
                   help="records of the index cell's journal (10**8; 10**5 with --quick)")
    p.add_argument("--index-dir", type=Path, default=None,
                   help="keep the index cell's journal here (reused when it is complete)")
    p.add_argument("--samples", type=int, default=10_000, help="j[i] reads of the index cell")
    p.add_argument("--dir", type=Path, default=None,
                   help="where the files go (default: a new directory in the temp directory)")
    p.add_argument("--json", type=Path, default=None, help="write the results as JSON")
    p.add_argument("--markdown", type=Path, default=None, help="write the report (Markdown)")
    p.add_argument("--plot", type=Path, default=None, help="write a PNG (needs matplotlib)")
    args = p.parse_args(argv)
    q = args.quick
    args.only = [b for b in args.only.split(",") if b]
    args.impls = [i for i in args.impl.split(",") if i]
    bad = [b for b in args.only if b not in BENCHES] + [
        i for i in args.impls if i not in IMPLS]
    if bad:
        p.error(f"unknown: {bad}")
    skipped = []
    for impl in list(args.impls):
        why = _unavailable(impl)
        if why:
            print(f"skipping {why}", file=sys.stderr)
            skipped.append(why)
            args.impls.remove(impl)
    args.seconds = args.seconds or (0.5 if q else 2.0)
    args.tail_n = args.tail_n or (50_000 if q else 500_000)
    args.index_records = args.index_records or (10**5 if q else 10**8)
    repeat = args.repeat or (1 if q else 3)
    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/journal.py",
                                                              *sys.argv[1:]])

    base_parent = str(args.dir) if args.dir else None
    if base_parent:
        os.makedirs(base_parent, exist_ok=True)
    _run_tag()  # before any child is spawned: they inherit it
    base = tempfile.mkdtemp(prefix="mapshare-bench-journal-", dir=base_parent)
    args.index_path = str(args.index_dir) if args.index_dir else os.path.join(base, "index")
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    started = time.monotonic()
    raw: dict[tuple[str, str], list[Any]] = {}
    errors: list[str] = []
    info: dict[str, Any] = {"filesystem": _filesystem(base)}
    try:
        cells = plan(args, base)
        if any(c == "index" for c, _, _ in cells):
            bar0 = progress(1, "journal index build")
            build_s = build_index_journal(args.index_path, args.index_records,
                                          bar0.set_postfix_str)
            bar0.update(1)
            bar0.close()
            info["index_build_seconds"] = build_s
            info["index_bytes_on_disk"] = _du(args.index_path)
        bar = progress(len(cells) * repeat, "journal bench")
        for rep in range(repeat):
            for cell, row, measure in cells:
                bar.set_postfix_str(f"rep {rep + 1} {cell} {row}")
                try:
                    raw.setdefault((cell, row), []).append(measure())
                except Exception as exc:  # report every failed cell, run the others
                    errors.append(f"{cell} / {row}: {type(exc).__name__}: {exc}")
                bar.update(1)
        bar.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    elapsed = time.monotonic() - started
    left: set[str] = set()
    for _ in range(20):
        left = _leaks(base)
        if not left:
            break
        time.sleep(0.1)
    summary = summarize(raw)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None

    def fmt_load(x: tuple[float, float, float] | None) -> str:
        return " ".join(f"{v:.2f}" for v in x) if x else "n/a"

    head = (f"`{command}` — {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, "
            f"Python {platform.python_version()}, {os.cpu_count()} CPUs, files on "
            f"{info['filesystem']}, {repeat} interleaved repetition(s), medians; run took "
            f"{elapsed:.0f} s; load average (1, 5, 15 min) before: {fmt_load(load_before)}, "
            f"after: {fmt_load(load)}.\n")
    if "index_bytes_on_disk" in info:
        built = info["index_build_seconds"]
        head += (f"\nThe index cell's journal: {args.index_records:,} records of 8 B, "
                 f"{info['index_bytes_on_disk'] / 2**30:.2f} GiB on disk, "
                 + (f"built by appending in {built:.0f} s" if built else "reused from "
                    f"{args.index_path}") + ".\n")
    text = head + "\n" + report(summary)
    if skipped:
        text += "\nSkipped rows:\n\n" + "\n".join(f"- {s}" for s in skipped) + "\n"
    if errors:
        text += "\nFailed cells:\n\n" + "\n".join(f"- {e}" for e in errors) + "\n"
    if left:
        text += f"\nLeft behind: {sorted(left)}\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text, encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps({
            "command": command, "python": platform.python_version(), "repeat": repeat,
            "loadavg_before": load_before, "loadavg_after": load, "seconds": elapsed,
            **info,
            "raw": [{"cell": c, "row": r, "values": v} for (c, r), v in raw.items()],
            "summary": [{"cell": c, "row": r, "value": v} for (c, r), v in summary.items()],
            "targets": [{"target": t, "measured": m, "required": r, "how": h,
                         "met": None if m is None else m >= r}
                        for t, m, r, h in targets(summary)],
            "skipped": skipped, "errors": errors, "leaks": sorted(left)},
            indent=1), encoding="utf-8")
    if args.plot:
        try:
            plot(args.plot, summary, command)
        except ImportError as exc:
            print(f"--plot needs matplotlib: {exc}", file=sys.stderr)
    return 2 if errors or left else 0


if __name__ == "__main__":
    sys.exit(main())
