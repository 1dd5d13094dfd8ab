"""Latest-value slots: mapshare.Latest side by side with iceoryx2's blackboard.

Run from the repository root::

    python benchmarks/latest.py --quick              # smoke test, < ~1 min
    python benchmarks/latest.py                      # full run, 3 repetitions, ~2 min
    python benchmarks/latest.py --json out.json --markdown out.md --plot docs/img/latest.png
    python benchmarks/latest.py --only mapshare --bench readers

Cells (issue 12, part 7), each in freshly spawned processes pinned to CPUs this process may
use:

* ``getset``: the cost of one ``get`` and one ``set`` of an 8-byte and a 4 KiB value, in
  one process (ns per call: the mean over a batch of calls, median of the batches):
  mapshare ``Latest.get()`` -> ``(bytes, version)`` and ``Latest.set(data)``; iceoryx2 0.10
  blackboard from Python, ``EntryHandle.get()`` (a ``BlackboardValue`` holding the value as
  ``bytes`` and its generation) and ``EntryHandleMut.update_with_copy(value)`` with a
  ``ctypes`` value (``c_uint64``; a 4096-byte ``Structure``) -- the blackboard stores
  fixed-size C types only.
* ``readers``: reads per second of each reader process calling ``get()`` (8 B) in a loop,
  with 1 and then 2 reader processes, while a writer process keeps setting new values.
  Every reader has a CPU of its own. The writer needs one more: where there are not enough
  CPUs (2-CPU machine, 2 readers) the writer is *paced* in every cell of the run (one
  ``set`` then ``time.sleep(--writer-period)``, default 100 µs) and shares the last
  reader's CPU; otherwise it sets flat out on its own CPU. The report says which.
* ``copy``: ``Latest.get_array()`` of a 1 MiB float64 array (a new private array each call)
  against the memcpy floor: ``ctypes.memmove`` (libc ``memcpy``, the same call
  ``benchmarks/floors.c`` times) of 1 MiB from a shared mapping into a reused private buffer,
  in the same process; both as GB/s.

The report prints every target of the issue as met / not met with its ratio. Compare
numbers only within one run; the machine is noisy. Exit status: 0 when every cell ran and
nothing leaked, 2 otherwise.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import datetime as dt
import glob
import json
import math
import os
import platform
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# benchmarks/ is sys.path[0] when this file is run as a script; spawned children inherit it.
from _harness import (
    NAME_PREFIX,
    ChildSpec,
    fmt_rate,
    fmt_ratio,
    fmt_size,
    leak_snapshot,
    md_table,
    median,
    progress,
    run_group,
)

KiB = 1 << 10
MiB = 1 << 20
BENCHES = ("getset", "readers", "copy")
ROWS = ("mapshare", "iceoryx2")
LABELS = {
    "mapshare": "mapshare Latest",
    "iceoryx2": "iceoryx2 0.10 blackboard (Python)",
}
SIZES = (8, 4 * KiB)
BARRIER_TIMEOUT = 120.0


def why_not(row: str) -> str | None:
    """Why a row cannot run here (a missing package), else None."""
    if row == "mapshare":
        try:
            import mapshare
        except ImportError as exc:
            return f"cannot import mapshare: {exc}"
        return None if hasattr(mapshare, "Latest") else "this mapshare has no Latest yet"
    try:
        import iceoryx2

        iceoryx2.ServiceBuilder.blackboard_creator  # noqa: B018
    except (ImportError, AttributeError) as exc:
        return f"no iceoryx2 blackboard from Python: {exc}"
    return None


def mapshare_name() -> str:
    """``bench-<pid>-<hex>``: at most 20 characters, so it maps to /dev/shm/mapshare.bench-…
    (the leak check's marker) rather than to a hashed name."""
    return f"bench-{os.getpid()}-{os.urandom(3).hex()}"


def _value(size: int, counter: int = 0) -> bytes:
    """A ``size``-byte value whose first 8 bytes are ``counter``."""
    return counter.to_bytes(8, "little") + bytes(size - 8)


# --------------------------------------------------------------------------- the two rows


class _Big(ctypes.Structure):
    """The 4 KiB blackboard value (the blackboard holds fixed-size C types only)."""

    _fields_ = [("data", ctypes.c_uint8 * (4 * KiB))]

    @staticmethod
    def type_name() -> str:
        return "MapshareBench4KiB"


def _iox_types(size: int) -> Any:
    return ctypes.c_uint64 if size == 8 else _Big


class Slots:
    """The objects of one cell, made in the parent: one value slot per size.

    ``state`` is what the children get; ``reader(size)`` / ``writer(size)`` run in a child
    and return ``get()`` / ``set(bytes)`` callables bound as tightly as the API allows.
    """

    def __init__(self, row: str, sizes: Sequence[int]) -> None:
        self.row = row
        self.sizes = tuple(sizes)
        self._keep: list[Any] = []
        self._undo: list[Callable[[], None]] = []
        try:
            self.state = self._make()
        except BaseException:
            self.teardown()
            raise

    def _make(self) -> dict[str, Any]:
        if self.row == "mapshare":
            import mapshare

            names = {}
            for size in self.sizes:
                name = mapshare_name()
                lat = mapshare.Latest.create(name, size)
                self._undo += [lat.unlink, lat.close]
                lat.set(_value(size))
                names[size] = name
            return {"row": "mapshare", "names": names}
        import iceoryx2 as iox2

        iox2.set_log_level(iox2.LogLevel.Error)
        root = tempfile.mkdtemp(prefix=f"{NAME_PREFIX}-iox2-")
        prefix = f"iox2bench{os.getpid()}x{os.urandom(4).hex()}_"

        def rm() -> None:
            shutil.rmtree(root, ignore_errors=True)
            for f in glob.glob(f"/dev/shm/{prefix}*"):
                try:
                    os.unlink(f)
                except FileNotFoundError:
                    pass

        self._undo.append(rm)
        service = f"{NAME_PREFIX}/bb/{os.getpid()}/{os.urandom(4).hex()}"
        node = _iox_node(root, prefix)
        b = node.service_builder(iox2.ServiceName.new(service)).blackboard_creator(
            ctypes.c_uint64
        )
        for i, size in enumerate(self.sizes):
            b = b.add(ctypes.c_uint64(i), _iox_types(size)())
        svc = b.create()  # the parent owns the service for the whole cell
        self._keep += [node, svc]
        self._undo.append(self._drop)
        return {"row": "iceoryx2", "root": root, "prefix": prefix, "service": service,
                "keys": {size: i for i, size in enumerate(self.sizes)}}

    def _drop(self) -> None:
        for o in reversed(self._keep):
            if hasattr(o, "delete"):
                o.delete()
        self._keep.clear()

    def teardown(self) -> None:
        for f in reversed(self._undo):
            try:
                f()
            except Exception as exc:  # keep removing the others; the leak check reports
                print(f"teardown: {type(exc).__name__}: {exc}", file=sys.stderr)
        self._undo.clear()


def _iox_node(root: str, prefix: str) -> Any:
    import iceoryx2 as iox2

    iox2.set_log_level(iox2.LogLevel.Error)
    cfg = iox2.config.default()
    cfg.global_cfg.root_path = iox2.Path.new(root + "/")
    cfg.global_cfg.prefix = iox2.FileName.new(prefix)
    return iox2.NodeBuilder.new().config(cfg).create(iox2.ServiceType.Ipc)


class Ends:
    """A child's handles on the cell's slots (kept alive here; ``close`` drops them)."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state
        self._keep: list[Any] = []
        self._svc: Any = None
        self._ports: dict[str, Any] = {}

    def _iox_service(self) -> Any:
        if self._svc is None:
            import iceoryx2 as iox2

            st = self.state
            node = _iox_node(st["root"], st["prefix"])
            self._svc = (
                node.service_builder(iox2.ServiceName.new(st["service"]))
                .blackboard_opener(ctypes.c_uint64)
                .open()
            )
            self._keep += [node, self._svc]
        return self._svc

    def _iox_port(self, kind: str) -> Any:
        """This process's one reader or writer port (a blackboard allows one writer)."""
        if kind not in self._ports:
            svc = self._iox_service()
            b = svc.reader_builder() if kind == "reader" else svc.writer_builder()
            self._ports[kind] = b.create()
            self._keep.append(self._ports[kind])
        return self._ports[kind]

    def reader(self, size: int) -> Callable[[], object]:
        """``get()`` of the slot holding ``size``-byte values."""
        if self.state["row"] == "mapshare":
            import mapshare

            lat = mapshare.Latest.open(self.state["names"][size])
            self._keep.append(lat)
            return lat.get  # type: ignore[no-any-return]
        e = self._iox_port("reader").entry(ctypes.c_uint64(self.state["keys"][size]),
                                           _iox_types(size))
        self._keep.append(e)
        return e.get  # type: ignore[no-any-return]

    def writer(self, size: int) -> Callable[[bytes], object]:
        """``set(value)`` of the slot holding ``size``-byte values."""
        if self.state["row"] == "mapshare":
            import mapshare

            lat = mapshare.Latest.open(self.state["names"][size])
            self._keep.append(lat)
            return lat.set  # type: ignore[no-any-return]
        typ = _iox_types(size)
        em = self._iox_port("writer").entry(ctypes.c_uint64(self.state["keys"][size]), typ)
        self._keep.append(em)
        update = em.update_with_copy
        # the blackboard takes a ctypes value, not bytes: convert outside the timed call
        # where the caller reuses one value (getset), inside where it changes (readers)
        return lambda data: update(typ.from_buffer_copy(data))

    def close(self) -> None:
        for o in reversed(self._keep):
            if hasattr(o, "close"):
                o.close()
            elif hasattr(o, "delete"):
                o.delete()
        self._keep.clear()


# --------------------------------------------------------------------------- getset cell


def _per_call(f: Callable[..., object], arg: tuple[Any, ...], batch: int, batches: int) -> float:
    """ns per call of ``f(*arg)``: the median over ``batches`` of the mean of a batch."""
    clock = time.perf_counter_ns
    for _ in range(batch):  # warm-up
        f(*arg)
    per: list[float] = []
    rng = range(batch)
    for _ in range(batches):
        t0 = clock()
        for _ in rng:
            f(*arg)
        per.append((clock() - t0) / batch)
    return median(per)


def role_getset(
    state: dict[str, Any], sizes: Sequence[int], batch: int, batches: int, barrier: Any
) -> dict[str, float]:
    """ns per get and per set, for every size."""
    ends = Ends(state)
    out: dict[str, float] = {}
    try:
        for size in sizes:
            get = ends.reader(size)
            if state["row"] == "mapshare":
                set_, value = ends.writer(size), _value(size, 1)
            else:  # time the blackboard's own call on a ready ctypes value
                typ = _iox_types(size)
                em = ends._iox_port("writer").entry(ctypes.c_uint64(state["keys"][size]), typ)
                ends._keep.append(em)
                set_, value = em.update_with_copy, typ.from_buffer_copy(_value(size, 1))
            out[f"set/{size}"] = _per_call(set_, (value,), batch, batches)
            out[f"get/{size}"] = _per_call(get, (), batch, batches)
    finally:
        ends.close()
    return out


# --------------------------------------------------------------------------- readers cell


def role_writer(
    state: dict[str, Any], period: float, done: Any, n: int, barrier: Any
) -> dict[str, float]:
    """Set new 8-byte values until every reader is done; flat out if ``period`` is 0."""
    ends = Ends(state)
    try:
        set_ = ends.writer(8)
        barrier.wait(BARRIER_TIMEOUT)
        sets = 0
        t0, c0 = time.perf_counter(), time.process_time()
        sleep = time.sleep
        while done.value < n:
            for _ in range(1 if period else 256):
                sets += 1
                set_(sets.to_bytes(8, "little"))
            if period:
                sleep(period)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        return {"sets": sets, "seconds": wall, "cpu_share": cpu / wall if wall else 0.0}
    finally:
        ends.close()


def role_reader(
    state: dict[str, Any], seconds: float, done: Any, barrier: Any
) -> dict[str, float]:
    """``get()`` in a loop for ``seconds`` (after a short warm-up); reads/s and updates seen."""
    ends = Ends(state)
    try:
        get = ends.reader(8)
        barrier.wait(BARRIER_TIMEOUT)
        clock = time.perf_counter
        end = clock() + 0.05
        while clock() < end:
            get()
        first = get()
        reads = 0
        t0, c0 = clock(), time.process_time()
        end = t0 + seconds
        rng = range(1000)
        while True:
            for _ in rng:
                get()
            reads += 1000
            t = clock()
            if t >= end:
                break
        cpu = time.process_time() - c0
        last = get()
        with done.get_lock():
            done.value += 1
        seen = None
        if state["row"] == "mapshare":
            seen = last[1] - first[1]  # versions the writer published meanwhile
        return {"reads": reads, "seconds": t - t0, "rate": reads / (t - t0),
                "cpu_rate": reads / cpu if cpu > 0 else float("nan"),
                "cpu_share": cpu / (t - t0), "versions_seen": seen}
    finally:
        ends.close()


# --------------------------------------------------------------------------- copy cell


def role_copy(name: str, batch: int, batches: int, barrier: Any) -> dict[str, float]:
    """s per 1 MiB ``get_array()`` and per 1 MiB memcpy out of a shared mapping."""
    import mmap

    import mapshare

    lat = mapshare.Latest.open(name)
    path = f"/dev/shm/{NAME_PREFIX}-floor-{os.getpid()}"
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.unlink(path)
        os.ftruncate(fd, MiB)
        mm = mmap.mmap(fd, MiB)
        mm[:] = b"\x01" * MiB
        src = ctypes.c_char.from_buffer(mm)
        dst = ctypes.create_string_buffer(MiB)
        out = {
            "get_array": _per_call(lat.get_array, (), batch, batches) / 1e9,
            "memcpy": _per_call(ctypes.memmove, (dst, ctypes.addressof(src), MiB), batch,
                                batches) / 1e9,
        }
        del src
        mm.close()
        return out
    finally:
        os.close(fd)
        lat.close()


# --------------------------------------------------------------------------- running


@dataclasses.dataclass
class Settings:
    """What this run measured, as the report and the JSON state it."""

    repeat: int
    batch: int
    batches: int
    reader_seconds: float
    readers: tuple[int, ...]
    writer_period: float
    copy_batch: int
    benches: tuple[str, ...]
    rows: tuple[str, ...]
    timeout: float
    writer_paced: bool = False
    cpus: tuple[int, ...] = ()


def allowed_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def run_all(st: Settings) -> list[dict[str, Any]]:
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    cells: list[dict[str, Any]] = []
    cpus = list(st.cpus)
    first = [cpus[0]] if cpus else None
    plan: list[tuple[str, str, int]] = []
    for rep in range(st.repeat):
        k = rep % len(st.rows)
        rows = list(st.rows[k:] + st.rows[:k])
        if "getset" in st.benches:
            plan += [("getset", r, 0) for r in rows]
        if "readers" in st.benches:
            plan += [("readers", r, n) for r in rows for n in st.readers]
        if "copy" in st.benches and "mapshare" in st.rows:
            plan.append(("copy", "mapshare", 0))
    bar = progress(len(plan), "latest")
    rep_of: dict[tuple[str, str, int], int] = {}
    try:
        for bench, row, n in plan:
            rep = rep_of[(bench, row, n)] = rep_of.get((bench, row, n), -1) + 1
            bar.set_postfix_str(f"{bench} {row}" + (f" x{n}" if n else ""))
            cell: dict[str, Any] = {"bench": bench, "row": row, "readers": n, "rep": rep,
                                    "error": None}
            if bench == "copy":
                slots = None
                import numpy as np

                import mapshare

                name = mapshare_name()
                lat = mapshare.Latest.create(name, MiB + 4096)

                def undo(lat: Any = lat) -> None:
                    lat.close()
                    lat.unlink()

                lat.set_array(np.ones(MiB // 8))
                g = run_group([ChildSpec(role_copy, (name, st.copy_batch, 20), first,
                                         "bench-copy")], st.timeout, undo)
                if g.error is None:
                    cell.update(g.results[0])
            else:
                slots = Slots(row, SIZES if bench == "getset" else (8,))
                if bench == "getset":
                    g = run_group([ChildSpec(role_getset, (slots.state, SIZES, st.batch,
                                                           st.batches), first,
                                             f"bench-getset-{row}")], st.timeout,
                                  slots.teardown)
                    if g.error is None:
                        cell.update(g.results[0])
                else:
                    done = ctx.Value("i", 0)
                    period = st.writer_period if st.writer_paced else 0.0
                    reader_cpus = [[c] for c in cpus[:n]] if len(cpus) >= n else [None] * n
                    wcpu = [cpus[n]] if len(cpus) > n else ([cpus[-1]] if cpus else None)
                    specs = [ChildSpec(role_writer, (slots.state, period, done, n), wcpu,
                                       f"bench-writer-{row}")]
                    specs += [ChildSpec(role_reader, (slots.state, st.reader_seconds, done),
                                        c, f"bench-reader{i}-{row}")
                              for i, c in enumerate(reader_cpus)]
                    g = run_group(specs, st.timeout, slots.teardown)
                    if g.error is None:
                        w, *rs = g.results
                        cell["writer"] = w
                        cell["reader_rates"] = [r["rate"] for r in rs]
                        cell["reader_cpu_rates"] = [r["cpu_rate"] for r in rs]
                        cell["reader_cpu_shares"] = [r["cpu_share"] for r in rs]
                        cell["versions_seen"] = [r["versions_seen"] for r in rs]
            cell["error"] = g.error
            if g.traceback:
                cell["traceback"] = g.traceback
            cells.append(cell)
            bar.update()
    finally:
        bar.close()
    return cells


def summarize(cells: list[dict[str, Any]], st: Settings) -> dict[str, Any]:
    ok = [c for c in cells if not c["error"]]
    s: dict[str, Any] = {"getset": {}, "readers": {}, "copy": {}}
    for row in st.rows:
        cs = [c for c in ok if c["bench"] == "getset" and c["row"] == row]
        if cs:
            s["getset"][row] = {
                k: median([c[k] for c in cs])
                for k in (f"{op}/{z}" for op in ("get", "set") for z in SIZES)
            }
        for n in st.readers:
            cs = [c for c in ok if c["bench"] == "readers" and c["row"] == row
                  and c["readers"] == n]
            if cs:
                s["readers"].setdefault(row, {})[str(n)] = {
                    # per repetition the slowest reader; then the median over repetitions
                    "min_rate": median([min(c["reader_rates"]) for c in cs]),
                    "mean_rate": median([sum(c["reader_rates"]) / n for c in cs]),
                    # reads per second of CPU the reader actually got: what is left when
                    # the other engineers' load and a paced writer sharing the CPU are
                    # taken out (cache-line traffic between readers still shows here)
                    "min_cpu_rate": median([min(c["reader_cpu_rates"]) for c in cs]),
                    "mean_cpu_rate": median([sum(c["reader_cpu_rates"]) / n for c in cs]),
                    "min_cpu_share": median([min(c["reader_cpu_shares"]) for c in cs]),
                    "writer_sets_per_s": median(
                        [c["writer"]["sets"] / c["writer"]["seconds"] for c in cs]
                    ),
                    "writer_cpu_share": median([c["writer"]["cpu_share"] for c in cs]),
                }
    cs = [c for c in ok if c["bench"] == "copy"]
    if cs:
        ga, mc = median([c["get_array"] for c in cs]), median([c["memcpy"] for c in cs])
        s["copy"] = {"get_array_gb_s": MiB / ga / 1e9, "memcpy_gb_s": MiB / mc / 1e9,
                     "get_array_us": ga * 1e6, "memcpy_us": mc * 1e6}
    return s


def targets(s: dict[str, Any], st: Settings) -> list[tuple[str, str, float | None, bool | None]]:
    """(target, how the ratio is taken, ratio, met) for the Latest targets of part 7."""
    out: list[tuple[str, str, float | None, bool | None]] = []
    g = s["getset"]
    r = (g["mapshare"]["get/8"] / g["iceoryx2"]["get/8"]
         if "mapshare" in g and "iceoryx2" in g else None)
    out.append(("Latest 8 B get <= 0.2x iceoryx2 blackboard's",
                "ns per get: mapshare / iceoryx2", r, None if r is None else r <= 0.2))
    rd = s["readers"].get("mapshare", {})
    both = "1" in rd and "2" in rd
    r = rd["2"]["min_rate"] / rd["1"]["mean_rate"] if both else None
    out.append(("with 2 readers each reader keeps >= 0.9x the single-reader rate",
                "reads/s: slowest of 2 readers / the single reader"
                + (" (writer paced, shares a reader's CPU)" if st.writer_paced else ""),
                r, None if r is None else r >= 0.9))
    r = rd["2"]["min_cpu_rate"] / rd["1"]["mean_cpu_rate"] if both else None
    out.append(("the same, per CPU-second each reader got",
                "reads per CPU-second: slowest of 2 readers / the single reader",
                r, None if r is None else r >= 0.9))
    c = s["copy"]
    r = c["get_array_gb_s"] / c["memcpy_gb_s"] if c else None
    out.append(("1 MiB get_array copy >= 0.8x memcpy bandwidth", "GB/s: get_array / memcpy",
                r, None if r is None else r >= 0.8))
    return out


def fmt_ns(v: float | None) -> str:
    if v is None or math.isnan(v):
        return "—"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}"


def report(
    cells: list[dict[str, Any]], s: dict[str, Any], st: Settings, skipped: dict[str, str],
    command: str, elapsed: float, leaks: list[str],
) -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    lines = [
        "# Latest benchmark", "", f"`{command}`", "",
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"{os.cpu_count()} CPUs (allowed: {list(st.cpus)}), Python "
        f"{platform.python_version()}, {elapsed:.0f} s"
        + (f", load average {load[0]:.1f}" if load else "")
        + f". Medians of {st.repeat} repetitions; compare within this run only.",
    ]
    g = s["getset"]
    if g:
        rows = [[LABELS[row]] + [fmt_ns(v[f"{op}/{z}"]) for op in ("get", "set") for z in SIZES]
                for row, v in g.items()]
        if "mapshare" in g and "iceoryx2" in g:
            m, i = g["mapshare"], g["iceoryx2"]
            rows.append(["mapshare / iceoryx2"] + [fmt_ratio(m[f"{op}/{z}"] / i[f"{op}/{z}"])
                                                   for op in ("get", "set") for z in SIZES])
        lines += ["", f"## get and set, one process (ns per call; {st.batches} batches of "
                  f"{st.batch})", "",
                  md_table(["row"] + [f"{op} {fmt_size(z)}" for op in ("get", "set")
                                      for z in SIZES], rows)]
    rd = s["readers"]
    if rd:
        how = (f"paced: one set every {st.writer_period * 1e6:.0f} µs, on the last reader's CPU"
               if st.writer_paced else "flat out on its own CPU")
        rows = []
        for row, per in rd.items():
            for n, v in per.items():
                rows.append([LABELS[row], n, fmt_rate(v["min_rate"]), fmt_rate(v["mean_rate"]),
                             fmt_rate(v["min_cpu_rate"]), f"{v['min_cpu_share'] * 100:.0f} %",
                             fmt_rate(v["writer_sets_per_s"]),
                             f"{v['writer_cpu_share'] * 100:.0f} %"])
        lines += ["", f"## Reads per second per reader (8 B, {st.reader_seconds:g} s; "
                  f"writer {how})", "",
                  md_table(["row", "readers", "slowest reader", "mean per reader",
                            "slowest, per CPU-s", "least CPU share", "writer sets/s",
                            "writer CPU"], rows)]
    c = s["copy"]
    if c:
        lines += ["", "## 1 MiB copy out", "",
                  md_table(["copy", "µs", "GB/s"], [
                      ["Latest.get_array() (new array each call)", f"{c['get_array_us']:.1f}",
                       f"{c['get_array_gb_s']:.1f}"],
                      ["memcpy from a shared mapping (ctypes.memmove)", f"{c['memcpy_us']:.1f}",
                       f"{c['memcpy_gb_s']:.1f}"]])]
    trows = []
    for name, how, r, met in targets(s, st):
        verdict = "—" if met is None else ("**met**" if met else "**not met**")
        trows.append([name, how, "—" if r is None else f"{r:.2f}", verdict])
    lines += ["", "## Targets (issue 12)", "",
              md_table(["target", "ratio of", "ratio", "verdict"], trows, right_from=2)]
    if skipped:
        lines += ["", "## Skipped", ""] + [f"- `{k}`: {v}" for k, v in skipped.items()]
    failed = [c for c in cells if c["error"]]
    if failed:
        lines += ["", "## Failed cells", ""] + [
            f"- {c['bench']} `{c['row']}` rep {c['rep'] + 1}: {c['error']}" for c in failed]
    if leaks:
        lines += ["", "## Left behind (leak!)", ""] + [f"- `{x}`" for x in leaks]
    return "\n".join(lines).rstrip() + "\n"


def plot(path: Path, s: dict[str, Any], st: Settings, command: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_g, ax_r, ax_c) = plt.subplots(1, 3, figsize=(16, 5))
    colors = {"mapshare": "tab:blue", "iceoryx2": "tab:orange"}
    keys = [f"{op}/{z}" for op in ("get", "set") for z in SIZES]
    g = s["getset"]
    for i, (row, v) in enumerate(g.items()):
        ax_g.bar([j + 0.4 * i for j in range(len(keys))], [v[k] for k in keys], 0.4,
                 color=colors[row], label=LABELS[row])
    ax_g.set_xticks([j + 0.2 for j in range(len(keys))],
                    [f"{k.split('/')[0]} {fmt_size(int(k.split('/')[1]))}" for k in keys])
    if g:
        ax_g.set_yscale("log")
    ax_g.set_ylabel("ns per call (log; lower is better)")
    ax_g.legend(fontsize=8)
    for row, per in s["readers"].items():
        ns = sorted(int(n) for n in per)
        ax_r.plot(ns, [per[str(n)]["min_rate"] for n in ns], "o-", color=colors[row],
                  label=f"{LABELS[row]}, slowest reader, per second")
        ax_r.plot(ns, [per[str(n)]["min_cpu_rate"] for n in ns], "s--", color=colors[row],
                  label=f"{LABELS[row]}, slowest reader, per CPU-second")
    ax_r.set_xticks(list(st.readers))
    ax_r.set_xlabel("reader processes")
    ax_r.set_ylabel("reads/s per reader (higher is better)")
    if s["readers"]:
        ax_r.set_yscale("log")
    ax_r.legend(fontsize=8)
    c = s["copy"]
    if c:
        ax_c.bar([0, 1], [c["get_array_gb_s"], c["memcpy_gb_s"]],
                 color=["tab:blue", "tab:gray"])
        ax_c.set_xticks([0, 1], ["Latest.get_array()", "memcpy"])
    ax_c.set_ylabel("1 MiB copy, GB/s (higher is better)")
    for ax, bench in ((ax_g, "getset"), (ax_r, "readers"), (ax_c, "copy")):
        ax.grid(which="both", alpha=0.3)
        if not s[bench]:
            ax.text(0.5, 0.5, f"{bench}: not run", ha="center", transform=ax.transAxes)
    fig.suptitle(f"{command}\n{os.cpu_count()} CPUs, Python {platform.python_version()}"
                 + ("; writer paced" if st.writer_paced else ""), fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark mapshare.Latest against iceoryx2's blackboard.",
        epilog="rows: " + ", ".join(ROWS),
    )
    p.add_argument("--quick", action="store_true", help="smoke test (< ~1 min)")
    p.add_argument("--repeat", type=int, default=None, help="repetitions (3; 1 with --quick)")
    p.add_argument("--only", default=None, help="comma-separated rows (default: all)")
    p.add_argument("--bench", default=",".join(BENCHES), help="getset,readers,copy")
    p.add_argument("--readers", default="1,2", help="reader process counts (1,2)")
    p.add_argument("--seconds", type=float, default=None,
                   help="seconds each reader reads (1.0; 0.2 quick)")
    p.add_argument("--writer-period", type=float, default=100e-6,
                   help="seconds between a paced writer's sets (100e-6)")
    p.add_argument("--batch", type=int, default=None, help="calls per timed batch (10000)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds before a cell is killed")
    p.add_argument("--json", type=Path, default=None, help="write all results as JSON")
    p.add_argument("--markdown", type=Path, default=None, help="write the report here too")
    p.add_argument("--plot", type=Path, default=None, help="write a PNG (needs matplotlib)")
    return p.parse_args(argv)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    q = args.quick
    benches = tuple(b.strip() for b in args.bench.split(",") if b.strip())
    if not benches or not set(benches) <= set(BENCHES):
        raise SystemExit(f"--bench takes {', '.join(BENCHES)}")
    rows = list(ROWS)
    if args.only:
        rows = [r.strip() for r in args.only.split(",") if r.strip()]
        if set(rows) - set(ROWS):
            raise SystemExit(f"unknown rows {sorted(set(rows) - set(ROWS))}; known: {ROWS}")
    skipped = {r: why for r in rows if (why := why_not(r))}
    for r, why in skipped.items():
        print(f"skipping {r}: {why}", file=sys.stderr)
    rows = [r for r in rows if r not in skipped]
    if not rows:
        print("nothing to run", file=sys.stderr)
        return 1
    readers = tuple(int(x) for x in args.readers.split(","))
    cpus = allowed_cpus()
    st = Settings(
        repeat=args.repeat or (1 if q else 3),
        batch=args.batch or (2000 if q else 10000),
        batches=10 if q else 30,
        reader_seconds=args.seconds or (0.2 if q else 1.0),
        readers=readers,
        writer_period=args.writer_period,
        copy_batch=20 if q else 50,
        benches=benches,
        rows=tuple(rows),
        timeout=args.timeout,
        # the writer sets flat out only where it has a CPU of its own in every cell
        writer_paced=len(cpus) < max(readers) + 1,
        cpus=tuple(cpus),
    )
    command = "python benchmarks/latest.py" + "".join(
        " " + shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    before = leak_snapshot()
    start = time.monotonic()
    cells = run_all(st)
    elapsed = time.monotonic() - start
    time.sleep(0.2)
    leaks = sorted(leak_snapshot() - before)
    s = summarize(cells, st)
    md = report(cells, s, st, skipped, command, elapsed, leaks)
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
                        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None},
            "settings": dataclasses.asdict(st),
            "skipped": skipped,
            "leaks": leaks,
            "summary": s,
            "targets": [{"target": t, "ratio_of": how, "ratio": r, "met": m}
                        for t, how, r, m in targets(s, st)],
            "cells": cells,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    if args.plot:
        try:
            plot(args.plot, s, st, command)
        except ImportError as exc:
            print(f"--plot needs matplotlib: {exc}", file=sys.stderr)
            return 1
    return 0 if not any(c["error"] for c in cells) and not leaks else 2


if __name__ == "__main__":
    sys.exit(main())
