"""Shared numpy arrays: mapshare.SharedArray side by side with what users do without it.

Not ``benchmarks/array.py``: a script's own directory comes first on ``sys.path``, and a file
named ``array.py`` there would replace the stdlib ``array`` module (which ``socket``, and so
``multiprocessing``, import) for every benchmark in this directory.

Run from the repository root::

    python benchmarks/shared_array.py --quick  # smoke test, < ~1 min
    python benchmarks/shared_array.py  # full run (1 GiB pool cell), a few minutes
    python benchmarks/shared_array.py --json out.json --markdown out.md --plot docs/img/array.png
    python benchmarks/shared_array.py --only mapshare,sharedarray --bench open

Cells (issue 12, part 7), each in freshly spawned processes, pinned to the first CPU this
process may use (the pool cell's workers are not pinned: there are four of them):

* ``open``: opening a 64 MiB float64 array by name and getting an ``np.ndarray`` onto it,
  timed one open at a time in a child that did not create it (p50/p99): mapshare
  ``SharedArray.open(name).array``; PyPI ``SharedArray.attach("shm://name")``;
  ``np.load(path, mmap_mode="r")`` of a ``.npy`` file in /dev/shm; stdlib
  ``SharedMemory(name)`` + ``np.ndarray(buffer=)`` (shape and dtype passed out of band).
  Every row maps read-only where the API lets it choose (mapshare's default ``"r"``,
  ``attach(..., ro=True)``, ``mmap_mode="r"``; SharedMemory always maps read-write).
* ``pool``: a 1 GiB float64 array (64 MiB with ``--quick``) handed to 4
  ``ProcessPoolExecutor`` workers, each summing its quarter: mapshare passes the
  ``SharedArray`` (it pickles as its name; the worker reattaches), the alternative pickles
  each worker's quarter ``a[lo:hi]`` (the least a pickling user sends: every byte once).
  Timed from the first ``submit`` to the last result, on an already started pool.
* ``work``: element-wise work on ``SharedArray.array`` against the same work on a private
  ``np.ndarray`` of the same shape, in one process: ``np.add(x, 1.0, out=x)`` (read and
  write every element) and ``x.sum()`` (read every element); 64 MiB (16 MiB ``--quick``).

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

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
BENCHES = ("open", "pool", "work")
OPEN_ROWS = ("mapshare", "segment", "sharedarray", "npload", "shm")
POOL_ROWS = ("mapshare", "pickle")
WORK_OPS = ("add", "sum")
ROW_LABELS = {
    "mapshare": "mapshare SharedArray.open(name).array",
    "segment": "mapshare Segment.open(name) (the layer below; no array)",
    "sharedarray": 'PyPI SharedArray.attach("shm://name", ro=True)',
    "npload": 'np.load(path, mmap_mode="r") (.npy in /dev/shm)',
    "shm": "stdlib SharedMemory(name) + np.ndarray(buffer=)",
    "pickle": "pickle each worker's quarter (a[lo:hi])",
    "private": "private np.ndarray",
    "private4k": "private np.ndarray on 4 KiB pages",
}
WORKERS = 4


def shm_dir() -> str:
    """Where the ``.npy`` file of the np.load row lives: tmpfs, like the shared memory."""
    return "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()


def mapshare_name() -> str:
    """``bench-<pid>-<hex>``: at most 20 characters, so it maps to /dev/shm/mapshare.bench-…
    (the leak check's marker) rather than to a hashed name."""
    return f"bench-{os.getpid()}-{os.urandom(3).hex()}"


def why_not(row: str) -> str | None:
    """Why a row cannot run here (a missing package), else None."""
    need = {"mapshare": "mapshare", "segment": "mapshare", "sharedarray": "SharedArray"}.get(row)
    if need is None:
        return None
    try:
        mod = __import__(need)
    except ImportError as exc:
        return f"cannot import {need}: {exc}"
    if row == "mapshare" and not hasattr(mod, "SharedArray"):
        return "this mapshare has no SharedArray yet"
    return None


# --------------------------------------------------------------------------- objects


@dataclasses.dataclass
class Made:
    """What the parent created for one cell: names to open and how to remove them."""

    state: dict[str, Any]
    teardown: Callable[[], None]
    #: the parent's own mapshare handle (the pool cell submits it: it pickles as its name)
    handle: Any = None


def make_objects(rows: Sequence[str], nbytes: int, fill: bool) -> Made:
    """Create a float64 array of ``nbytes`` for every row that opens one by name."""
    import numpy as np

    n = nbytes // 8
    state: dict[str, Any] = {"shape": (n,), "dtype": "<f8"}
    handle: Any = None
    undo: list[Callable[[], None]] = []

    def teardown() -> None:
        for f in reversed(undo):
            try:
                f()
            except Exception as exc:  # keep removing the others; the leak check reports
                print(f"teardown: {type(exc).__name__}: {exc}", file=sys.stderr)

    try:
        src = np.arange(n, dtype="<f8") if fill else None
        if "mapshare" in rows:
            import mapshare

            name = mapshare_name()
            h = mapshare.SharedArray.create(name, (n,), "<f8")
            undo.append(h.unlink)
            if src is not None:
                a = h.array
                a[:] = src
                del a
            state["mapshare"] = name
            handle = h
            undo.append(h.close)
        if "segment" in rows:
            import mapshare

            segname = mapshare_name()
            seg = mapshare.Segment.create(segname, nbytes)
            undo.append(seg.unlink)
            undo.append(seg.close)
            state["segment"] = segname
        if "sharedarray" in rows:
            import SharedArray as psa

            sname = f"{NAME_PREFIX}-sa-{os.getpid()}-{os.urandom(3).hex()}"
            a = psa.create("shm://" + sname, (n,), "<f8")
            undo.append(lambda: psa.delete(sname))
            if src is not None:
                a[:] = src
            del a
            state["sharedarray"] = sname
        if "npload" in rows:
            path = os.path.join(shm_dir(), f"{NAME_PREFIX}-npy-{os.getpid()}.npy")
            np.save(path, src if src is not None else np.zeros(n, "<f8"))
            undo.append(lambda: os.unlink(path))
            state["npload"] = path
        if "shm" in rows:
            from multiprocessing import resource_tracker
            from multiprocessing.shared_memory import SharedMemory

            shname = f"{NAME_PREFIX}-shm-{os.getpid()}-{os.urandom(3).hex()}"
            import _posixshmem

            s = SharedMemory(shname, create=True, size=nbytes)
            # Python 3.11's resource tracker keeps one entry per name however many processes
            # register it (every attach does): the parent drops its own entry and unlinks
            # the name itself, and each child's open/close registers and unregisters once.
            resource_tracker.unregister(s._name, "shared_memory")  # type: ignore[attr-defined]
            undo.append(lambda: _posixshmem.shm_unlink("/" + shname))
            undo.append(s.close)
            state["shm"] = shname
        if "pickle" in rows:
            state["pickle"] = src if src is not None else np.zeros(n, "<f8")
    except BaseException:
        teardown()
        raise
    return Made(state, teardown, handle)


# --------------------------------------------------------------------------- open cell


def _opener(row: str, state: dict[str, Any]) -> Callable[[], Callable[[], None]]:
    """A function that opens the row's array once and returns how to close it again."""
    import numpy as np

    shape, dtype = state["shape"], state["dtype"]
    if row == "mapshare":
        import mapshare

        name = state["mapshare"]

        def open_mapshare() -> Callable[[], None]:
            h = mapshare.SharedArray.open(name)
            a = h.array

            def close() -> None:
                nonlocal a
                del a
                h.close()

            return close

        return open_mapshare
    if row == "segment":
        import mapshare

        segname = state["segment"]

        def open_segment() -> Callable[[], None]:
            return mapshare.Segment.open(segname).close  # type: ignore[no-any-return]

        return open_segment
    if row == "sharedarray":
        import SharedArray as psa

        url = "shm://" + state["sharedarray"]

        def open_sa() -> Callable[[], None]:
            a = psa.attach(url, ro=True)

            def close() -> None:
                nonlocal a
                del a  # the last reference: numpy unmaps it

            return close

        return open_sa
    if row == "npload":
        path = state["npload"]

        def open_npy() -> Callable[[], None]:
            a = np.load(path, mmap_mode="r")
            return lambda: a._mmap.close()  # type: ignore[attr-defined]

        return open_npy
    if row == "shm":
        from multiprocessing import resource_tracker
        from multiprocessing.shared_memory import SharedMemory

        shname = state["shm"]

        def open_shm() -> Callable[[], None]:
            s = SharedMemory(shname)
            a = np.ndarray(shape, dtype, buffer=s.buf)

            def close() -> None:
                nonlocal a
                del a
                s.close()
                # 3.11 registers an attach too; the parent owns the name
                resource_tracker.unregister(s._name, "shared_memory")  # type: ignore[attr-defined]

            return close

        return open_shm
    raise ValueError(row)


def role_open(
    row: str, state: dict[str, Any], n: int, warmup: int, barrier: Any
) -> list[int]:
    """Open and close the row's array ``warmup + n`` times; ns of each timed open."""
    opener = _opener(row, state)
    clock = time.perf_counter_ns
    for _ in range(warmup):
        opener()()
    samples = [0] * n
    for i in range(n):
        t0 = clock()
        close = opener()
        samples[i] = clock() - t0
        close()
    return samples


# --------------------------------------------------------------------------- pool cell


def _pool_init() -> None:
    import numpy  # noqa: F401

    try:
        import mapshare  # noqa: F401
    except ImportError:
        pass


def _noop(i: int) -> int:
    return i


def work_shared(handle: Any, lo: int, hi: int) -> float:
    """Worker: sum a slice of a SharedArray received by name."""
    a = handle.array
    s = float(a[lo:hi].sum())
    del a
    handle.close()
    return s


def work_pickled(part: Any) -> float:
    """Worker: sum a private copy that arrived pickled."""
    return float(part.sum())


def run_pool(
    rows: Sequence[str], nbytes: int, reps: int, timeout: float
) -> list[dict[str, Any]]:
    """Every row ``reps`` times on one started pool of 4 spawned workers."""
    import concurrent.futures as cf
    import pickle

    made = make_objects(rows, nbytes, fill=True)
    out: list[dict[str, Any]] = []
    try:
        n = made.state["shape"][0]
        bounds = [(i * n // WORKERS, (i + 1) * n // WORKERS) for i in range(WORKERS)]
        with cf.ProcessPoolExecutor(
            WORKERS, mp_context=spawn_context(), initializer=_pool_init
        ) as ex:
            list(ex.map(_noop, range(4 * WORKERS)))  # every worker started and imported
            expect = float(made.state["pickle"].sum()) if "pickle" in rows else None
            for rep in range(reps):
                order = list(rows) if rep % 2 == 0 else list(reversed(rows))
                for row in order:
                    cell: dict[str, Any] = {
                        "bench": "pool", "row": row, "size": nbytes, "rep": rep, "error": None,
                    }
                    try:
                        t0 = time.perf_counter_ns()
                        if row == "mapshare":
                            h = made.handle
                            futs = [ex.submit(work_shared, h, lo, hi) for lo, hi in bounds]
                            cell["pickled_bytes"] = len(pickle.dumps(h))
                        else:
                            a = made.state["pickle"]
                            futs = [ex.submit(work_pickled, a[lo:hi]) for lo, hi in bounds]
                        total = sum(f.result(timeout) for f in futs)
                        cell["seconds"] = (time.perf_counter_ns() - t0) / 1e9
                        if row == "pickle":
                            cell["pickled_bytes"] = len(pickle.dumps(a[bounds[0][0]:bounds[0][1]]))
                        # quarters summed apart: the same total up to rounding
                        if expect is not None and not math.isclose(total, expect, rel_tol=1e-9):
                            cell["error"] = f"wrong sum {total!r}, expected {expect!r}"
                    except Exception as exc:
                        cell["error"] = f"{type(exc).__name__}: {exc}"
                    out.append(cell)
    finally:
        made.teardown()
    return out


# --------------------------------------------------------------------------- work cell


def _hugepage_switch() -> Callable[[bool], object] | None:
    """numpy's switch for ``madvise(MADV_HUGEPAGE)`` on its large allocations (numpy >= 1.20;
    moved to ``numpy._core`` in 2.0), or None."""
    import numpy as np

    for mod in ("_core", "core"):
        f = getattr(getattr(getattr(np, mod, None), "multiarray", None),
                    "_set_madvise_hugepage", None)
        if f is not None:
            return f  # type: ignore[no-any-return]
    return None


def shmem_hugepages() -> str:
    """The kernel's transparent-huge-page policy for shared memory (tmpfs, /dev/shm)."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/shmem_enabled") as f:
            text = f.read()
    except OSError:
        return "unknown"
    return text[text.index("[") + 1:text.index("]")] if "[" in text else text.strip()


def role_work(state: dict[str, Any], reps: int, barrier: Any) -> dict[str, list[float]]:
    """Time each op on the shared array and on private ones, interleaved; seconds.

    ``private`` is what ``np.empty_like`` gives (numpy asks for transparent huge pages on
    large allocations); ``private4k`` is the same with that request switched off, i.e. on
    4 KiB pages as the shared mapping is where the kernel gives shared memory none.
    """
    import numpy as np

    import mapshare

    h = mapshare.SharedArray.open(state["mapshare"], access="rw")
    shared = h.array
    arrays = {"shared": shared, "private": np.empty_like(shared)}
    switch = _hugepage_switch()
    if switch is not None:
        old = switch(False)
        try:
            arrays["private4k"] = np.empty_like(shared)
        finally:
            switch(bool(old))
    for x in arrays.values():  # every page faulted in before the clock runs
        x[...] = 1.0
    ops: dict[str, Callable[[Any], object]] = {
        "add": lambda x: np.add(x, 1.0, out=x),
        "sum": lambda x: x.sum(),
    }
    res: dict[str, list[float]] = {f"{op}/{w}": [] for op in ops for w in arrays}
    clock = time.perf_counter_ns
    try:
        for rep in range(reps + 1):  # the first round is a warm-up
            for op, f in ops.items():
                order = list(arrays.items())
                k = rep % len(order)
                for which, x in order[k:] + order[:k]:
                    t0 = clock()
                    f(x)
                    t = (clock() - t0) / 1e9
                    if rep:
                        res[f"{op}/{which}"].append(t)
    finally:
        del shared
        arrays.clear()
        h.close()
    return res


# --------------------------------------------------------------------------- running


@dataclasses.dataclass
class Settings:
    """What this run measured, as the report and the JSON state it."""

    repeat: int
    open_n: int
    open_size: int
    pool_size: int
    pool_reps: int
    work_size: int
    work_reps: int
    benches: tuple[str, ...]
    rows: tuple[str, ...]
    timeout: float
    pinned: bool = True


def first_cpu() -> list[int] | None:
    if not hasattr(os, "sched_getaffinity"):
        return None
    return [min(os.sched_getaffinity(0))]


def run_all(st: Settings, cpu: list[int] | None) -> list[dict[str, Any]]:
    cells: list[dict[str, Any]] = []
    open_rows = [r for r in OPEN_ROWS if r in st.rows]
    total = (len(open_rows) * st.repeat if "open" in st.benches else 0) + (
        1 if "pool" in st.benches else 0
    ) + (1 if "work" in st.benches and "mapshare" in st.rows else 0)
    bar = progress(total, "array")
    try:
        if "open" in st.benches and open_rows:
            made = make_objects(open_rows, st.open_size, fill=False)
            try:
                for rep in range(st.repeat):
                    k = rep % len(open_rows)
                    for row in open_rows[k:] + open_rows[:k]:  # rotate: noise hits every row
                        bar.set_postfix_str(f"open {row}")
                        warm = max(20, st.open_n // 10)
                        g = run_group(
                            [ChildSpec(role_open, (row, made.state, st.open_n, warm), cpu,
                                       f"bench-open-{row}")],
                            st.timeout,
                        )
                        cell: dict[str, Any] = {
                            "bench": "open", "row": row, "size": st.open_size, "rep": rep,
                            "count": st.open_n, "error": g.error,
                        }
                        if g.error is None:
                            s = g.results[0]
                            cell["p50_us"] = percentile(s, 50) / 1e3
                            cell["p99_us"] = percentile(s, 99) / 1e3
                        cells.append(cell)
                        bar.update()
            finally:
                made.teardown()
        pool_rows = ["mapshare", "pickle"] if "mapshare" in st.rows else ["pickle"]
        if "pool" in st.benches:
            bar.set_postfix_str(f"pool {fmt_size(st.pool_size)}")
            cells += run_pool(pool_rows, st.pool_size, st.pool_reps, st.timeout)
            bar.update()
        if "work" in st.benches and "mapshare" in st.rows:
            bar.set_postfix_str(f"work {fmt_size(st.work_size)}")
            made = make_objects(["mapshare"], st.work_size, fill=True)
            g = run_group(
                [ChildSpec(role_work, (made.state, st.work_reps), cpu, "bench-work")],
                st.timeout,
                made.teardown,
            )
            for op in WORK_OPS:
                for which in ("shared", "private", "private4k"):
                    if g.error is None and f"{op}/{which}" not in g.results[0]:
                        continue  # no numpy hugepage switch: no 4 KiB private row
                    times = g.results[0][f"{op}/{which}"] if g.error is None else []
                    cells.append({
                        "bench": "work", "row": which, "op": op, "size": st.work_size,
                        "rep": 0, "seconds": times, "error": g.error,
                    })
            bar.update()
    finally:
        bar.close()
    return cells


def summarize(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over repetitions: open p50/p99 per row, pool seconds per row, work GB/s."""
    ok = [c for c in cells if not c["error"]]
    s: dict[str, Any] = {"open": {}, "pool": {}, "work": {}}
    for row in OPEN_ROWS:
        cs = [c for c in ok if c["bench"] == "open" and c["row"] == row]
        if cs:
            s["open"][row] = {
                "p50_us": median([c["p50_us"] for c in cs]),
                "p99_us": median([c["p99_us"] for c in cs]),
            }
    for row in POOL_ROWS:
        cs = [c for c in ok if c["bench"] == "pool" and c["row"] == row]
        if cs:
            s["pool"][row] = {
                "seconds": median([c["seconds"] for c in cs]),
                "pickled_bytes": cs[0].get("pickled_bytes"),
            }
    for c in ok:
        if c["bench"] == "work" and c["seconds"]:
            sec = median(c["seconds"])
            s["work"].setdefault(c["op"], {})[c["row"]] = {
                "seconds": sec, "gb_per_s": c["size"] / sec / 1e9,
            }
    return s


def targets(s: dict[str, Any]) -> list[tuple[str, str, float | None, bool | None]]:
    """(target, how the ratio is taken, ratio, met) for the SharedArray targets of part 7."""
    out: list[tuple[str, str, float | None, bool | None]] = []
    o = s["open"]
    r = (
        o["mapshare"]["p50_us"] / o["sharedarray"]["p50_us"]
        if "mapshare" in o and "sharedarray" in o
        else None
    )
    out.append((
        "SharedArray open <= 1.0x SharedArray.attach",
        "open p50: mapshare / SharedArray.attach",
        r,
        None if r is None else r <= 1.0,
    ))
    for op in WORK_OPS:
        w = s["work"].get(op, {})
        r = (
            w["private"]["seconds"] / w["shared"]["seconds"]
            if "private" in w and "shared" in w
            else None
        )
        out.append((
            f"work on .array >= 0.95x a private array ({op})",
            f"{op}: private time / shared time",
            r,
            None if r is None else r >= 0.95,
        ))
    for op in WORK_OPS:
        w = s["work"].get(op, {})
        if "private4k" in w and "shared" in w:
            r = w["private4k"]["seconds"] / w["shared"]["seconds"]
            out.append((
                f"the same against a private array on 4 KiB pages ({op})",
                f"{op}: private (no huge pages) time / shared time",
                r,
                r >= 0.95,
            ))
    return out


def report(
    cells: list[dict[str, Any]],
    s: dict[str, Any],
    st: Settings,
    skipped: dict[str, str],
    command: str,
    elapsed: float,
    leaks: list[str],
) -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    lines = [
        "# SharedArray benchmark",
        "",
        f"`{command}`",
        "",
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{'pinned' if st.pinned else 'not pinned'}, {elapsed:.0f} s"
        + (f", load average {load[0]:.1f}" if load else "")
        + ". Medians over repetitions; compare within this run only.",
    ]
    if s["open"]:
        base = s["open"].get("sharedarray", {}).get("p50_us")
        rows = [
            [
                ROW_LABELS[row],
                fmt_us(v["p50_us"]),
                fmt_us(v["p99_us"]),
                fmt_ratio(v["p50_us"] / base) if base else "—",
            ]
            for row, v in s["open"].items()
        ]
        lines += [
            "",
            f"## Open a {fmt_size(st.open_size)} float64 array by name "
            f"({st.open_n} opens, median of {st.repeat})",
            "",
            md_table(["row", "p50 µs", "p99 µs", "p50 / attach"], rows),
        ]
    if s["pool"]:
        p = s["pool"]
        rows = [
            [
                "mapshare SharedArray (pickles as its name)" if row == "mapshare"
                else ROW_LABELS[row],
                f"{v['seconds'] * 1e3:.1f}",
                f"{v['pickled_bytes']:,}" if v.get("pickled_bytes") else "—",
            ]
            for row, v in p.items()
        ]
        lines += [
            "",
            f"## A {fmt_size(st.pool_size)} array to {WORKERS} ProcessPoolExecutor workers, each "
            f"sums a quarter (median of {st.pool_reps})",
            "",
            md_table(["row", "ms, submit to last result", "bytes pickled per task"], rows),
        ]
        if "mapshare" in p and "pickle" in p:
            lines += [
                "",
                f"Pickling takes {p['pickle']['seconds'] / p['mapshare']['seconds']:.1f}x "
                "as long as handing over the SharedArray.",
            ]
    if s["work"]:
        rows = []
        for op, w in s["work"].items():
            sh, pr, p4 = w.get("shared"), w.get("private"), w.get("private4k")
            rows.append([
                {"add": "np.add(x, 1.0, out=x)", "sum": "x.sum()"}[op],
                f"{sh['gb_per_s']:.2f}" if sh else "—",
                f"{pr['gb_per_s']:.2f}" if pr else "—",
                f"{p4['gb_per_s']:.2f}" if p4 else "—",
                fmt_ratio(pr["seconds"] / sh["seconds"]) if sh and pr else "—",
                fmt_ratio(p4["seconds"] / sh["seconds"]) if sh and p4 else "—",
            ])
        lines += [
            "",
            f"## Element-wise work on a {fmt_size(st.work_size)} float64 array "
            f"(median of {st.work_reps})",
            "",
            md_table(["op", "SharedArray.array GB/s", "private GB/s", "private, 4 KiB pages GB/s",
                      "shared / private", "shared / private 4 KiB"], rows),
            "",
            "`private` is `np.empty_like`: numpy asks for transparent huge pages on large "
            "allocations (`madvise`), and gets them where the kernel's policy for private "
            "memory allows it; `private, 4 KiB pages` is the same with numpy's request "
            "switched off. Shared memory gets huge pages only under the kernel's shmem policy, "
            f"here `{shmem_hugepages()}` (/sys/kernel/mm/transparent_hugepage/shmem_enabled).",
        ]
    trows = []
    for name, how, r, met in targets(s):
        verdict = "—" if met is None else ("**met**" if met else "**not met**")
        trows.append([name, how, "—" if r is None else f"{r:.2f}", verdict])
    lines += ["", "## Targets (issue 12)", "", md_table(["target", "ratio of", "ratio", "verdict"],
                                                       trows, right_from=2)]
    if skipped:
        lines += ["", "## Skipped", ""] + [f"- `{k}`: {v}" for k, v in skipped.items()]
    failed = [c for c in cells if c["error"]]
    if failed:
        lines += ["", "## Failed cells", ""] + [
            f"- {c['bench']} `{c['row']}` rep {c['rep'] + 1}: {c['error']}" for c in failed
        ]
    if leaks:
        lines += ["", "## Left behind (leak!)", ""] + [f"- `{x}`" for x in leaks]
    return "\n".join(lines).rstrip() + "\n"


def plot(path: Path, s: dict[str, Any], st: Settings, command: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_o, ax_p, ax_w) = plt.subplots(1, 3, figsize=(16, 5))
    rows = list(s["open"])
    ax_o.barh(range(len(rows)), [s["open"][r]["p50_us"] for r in rows],
              color=["tab:blue" if r == "mapshare" else "tab:gray" for r in rows])
    ax_o.plot([s["open"][r]["p99_us"] for r in rows], range(len(rows)), "k|", markersize=14,
              markeredgewidth=2)
    ax_o.set_yticks(range(len(rows)), [ROW_LABELS[r] for r in rows], fontsize=7)
    ax_o.invert_yaxis()
    if rows:
        ax_o.set_xscale("log")
    ax_o.set_xlabel(f"open {fmt_size(st.open_size)}, µs (log; lower is better; | = p99)")
    rows = list(s["pool"])
    ax_p.bar(range(len(rows)), [s["pool"][r]["seconds"] * 1e3 for r in rows],
             color=["tab:blue" if r == "mapshare" else "tab:gray" for r in rows])
    ax_p.set_xticks(range(len(rows)), ["SharedArray" if r == "mapshare" else "pickle"
                                       for r in rows])
    ax_p.set_ylabel(f"{fmt_size(st.pool_size)} to {WORKERS} workers, each sums a quarter, ms "
                    "(lower is better)")
    ops = list(s["work"])
    work_rows = (("shared", "tab:blue", "SharedArray.array"),
                 ("private", "tab:gray", "private ndarray"),
                 ("private4k", "lightgray", "private, 4 KiB pages"))
    for i, (which, color, label) in enumerate(work_rows):
        ax_w.bar([j + 0.27 * i for j in range(len(ops))],
                 [s["work"][op].get(which, {}).get("gb_per_s", math.nan) for op in ops], 0.27,
                 color=color, label=label)
    ax_w.set_xticks([j + 0.27 for j in range(len(ops))],
                    [{"add": "np.add(x, 1, out=x)", "sum": "x.sum()"}[o] for o in ops])
    ax_w.set_ylabel("GB/s (higher is better)")
    ax_w.legend(fontsize=8)
    for ax, bench in ((ax_o, "open"), (ax_p, "pool"), (ax_w, "work")):
        ax.grid(which="both", alpha=0.3)
        if not s[bench]:
            ax.text(0.5, 0.5, f"{bench}: not run", ha="center", transform=ax.transAxes)
    fig.suptitle(f"{command}\n{os.cpu_count()} CPUs, Python {platform.python_version()}",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark mapshare.SharedArray against PyPI SharedArray, np.load "
        "(mmap) and stdlib SharedMemory, pickling to a process pool, and private arrays.",
        epilog="rows: " + ", ".join(OPEN_ROWS),
    )
    p.add_argument("--quick", action="store_true", help="smoke test: small sizes (< ~1 min)")
    p.add_argument("--repeat", type=int, default=None, help="repetitions of the open cell (3)")
    p.add_argument("--only", default=None, help="comma-separated rows (default: all)")
    p.add_argument("--bench", default=",".join(BENCHES), help="open,pool,work")
    p.add_argument("--open-n", type=int, default=None, help="timed opens per cell (2000)")
    p.add_argument("--pool-size", type=int, default=None, help="pool array bytes (1 GiB)")
    p.add_argument("--work-size", type=int, default=None, help="work array bytes (64 MiB)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds before a cell is killed")
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
    rows = list(OPEN_ROWS)
    if args.only:
        rows = [r.strip() for r in args.only.split(",") if r.strip()]
        unknown = set(rows) - set(OPEN_ROWS)
        if unknown:
            raise SystemExit(f"unknown rows {sorted(unknown)}; known: {', '.join(OPEN_ROWS)}")
    skipped = {r: why for r in rows if (why := why_not(r))}
    for r, why in skipped.items():
        print(f"skipping {r}: {why}", file=sys.stderr)
    rows = [r for r in rows if r not in skipped]
    st = Settings(
        repeat=args.repeat or (1 if q else 3),
        open_n=args.open_n or (200 if q else 2000),
        open_size=64 * MiB,
        pool_size=args.pool_size or (64 * MiB if q else GiB),
        pool_reps=2 if q else 3,
        work_size=args.work_size or (16 * MiB if q else 64 * MiB),
        work_reps=5 if q else 15,
        benches=benches,
        rows=tuple(rows),
        timeout=args.timeout,
    )
    cpu = first_cpu()
    st.pinned = cpu is not None
    command = "python benchmarks/shared_array.py" + "".join(
        " " + shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    before = leak_snapshot()
    start = time.monotonic()
    cells = run_all(st, cpu)
    elapsed = time.monotonic() - start
    time.sleep(0.2)
    leaks = sorted(leak_snapshot() - before)
    s = summarize(cells)
    md = report(cells, s, st, skipped, command, elapsed, leaks)
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
                "python": platform.python_version(),
                "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
                "shmem_hugepages": shmem_hugepages(),
            },
            "settings": dataclasses.asdict(st),
            "skipped": skipped,
            "leaks": leaks,
            "summary": s,
            "targets": [
                {"target": t, "ratio_of": how, "ratio": r, "met": m}
                for t, how, r, m in targets(s)
            ],
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
