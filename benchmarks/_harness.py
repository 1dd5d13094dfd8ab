"""Reusable pieces for the mapshare benchmarks (not a benchmark by itself).

What is here:

* ``Endpoint`` and ``Transport``: the uniform interface every transport in
  ``_transports.py`` implements (parent-side setup/teardown, child-side endpoints).
* ``run_cell``: runs one measurement ("cell") in two freshly spawned processes
  (``multiprocessing`` *spawn* context), each optionally pinned to one CPU with
  ``os.sched_setaffinity``, and returns what the two roles measured.
* The measurement loops themselves (echo server, ping-pong client, sender, receiver),
  timed with ``time.perf_counter_ns`` (CLOCK_MONOTONIC, comparable across processes).
* Statistics (``percentile``, ``median``), number formatting, markdown tables, a progress
  bar on stderr (``tqdm`` when importable, else a tiny built-in one) and a leak check of
  ``/dev/shm`` and the temp directory.

Run a benchmark instead of this file, e.g. ``python benchmarks/compare.py --quick``.
"""

from __future__ import annotations

import math
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TextIO

Mode = Literal["latency", "throughput"]
Role = Literal["server", "client", "sender", "receiver"]

#: Every file, directory or named object the benchmarks create starts with this prefix,
#: so that a leak is easy to attribute (and to clean by hand).
NAME_PREFIX = "mapshare-bench"

#: Seconds a child waits at a barrier before giving up (the peer probably died).
BARRIER_TIMEOUT = 120.0

_CTX = multiprocessing.get_context("spawn")


def spawn_context() -> Any:
    """The multiprocessing context used for everything (``spawn`` on every OS)."""
    return _CTX


def unique_name(kind: str) -> str:
    """A name unique to this process and call: ``mapshare-bench-<kind>-<pid>-<hex>``.

    Only ``[A-Za-z0-9._-]`` characters, so it is valid for mapshare, POSIX shm and semaphores.
    """
    return f"{NAME_PREFIX}-{kind}-{os.getpid()}-{os.urandom(4).hex()}"


# --------------------------------------------------------------------------- transports


@dataclass
class Endpoint:
    """One side of a transport, as seen inside a child process.

    ``send`` and ``recv`` should be the library's own bound methods where possible, so the
    measurement loops add no wrapper call. ``recv`` must return a ``bytes`` object (the
    receiver materializes every message) unless the transport is an explicit zero-copy row.
    """

    send: Callable[[bytes], object]
    recv: Callable[[], object]
    #: Optional fused "receive one message and send it back" for echo servers.
    echo_one: Callable[[], object] | None = None
    #: Called once after the start barrier, before the first message (e.g. refresh connections).
    started: Callable[[], object] | None = None
    close: Callable[[], object] = lambda: None


class Transport:
    """Base class of a benchmarked transport.

    Subclasses set ``key`` (CLI name), ``label`` (table row) and ``rate_hint`` (expected
    messages/s per size, only used to size the first repetition), and implement:

    * ``unavailable()`` -> reason string if the transport cannot run here, else ``None``;
    * ``setup(mode, size)`` in the parent -> ``(state, teardown)``: ``state`` is pickled to
      both children, ``teardown()`` runs in the parent afterwards, even on failure;
    * ``endpoint(state, role, mode, size)`` in a child -> ``Endpoint``.

    Instances are pickled to the children, so keep them to plain attributes.
    """

    key: str = ""
    label: str = ""
    rate_hint: ClassVar[dict[int, float]] = {}
    #: True for rows that are allowed to skip the "receiver makes bytes" rule.
    zero_copy: bool = False

    def unavailable(self) -> str | None:
        return None

    def setup(self, mode: Mode, size: int) -> tuple[Any, Callable[[], None]]:
        raise NotImplementedError

    def endpoint(self, state: Any, role: Role, mode: Mode, size: int) -> Endpoint:
        raise NotImplementedError

    def hint(self, size: int) -> float:
        """Expected messages/s at ``size`` (nearest known size)."""
        if not self.rate_hint:
            return 100_000.0
        best = min(self.rate_hint, key=lambda s: abs(math.log(s) - math.log(size)))
        return self.rate_hint[best]


# --------------------------------------------------------------------------- child side


def pin_to(cpus: Iterable[int] | None) -> None:
    """Restrict the calling process to ``cpus`` (no-op if ``None`` or unsupported)."""
    if cpus is None or not hasattr(os, "sched_setaffinity"):
        return
    os.sched_setaffinity(0, set(cpus))


def _payload(size: int) -> bytes:
    pattern = bytes(range(256))
    return (pattern * (size // 256 + 1))[:size]


def _loop_server(ep: Endpoint, total: int) -> None:
    if ep.echo_one is not None:
        echo = ep.echo_one
        for _ in range(total):
            echo()
        return
    send, recv = ep.send, ep.recv
    for _ in range(total):
        send(recv())  # type: ignore[arg-type]


def _loop_client(ep: Endpoint, payload: bytes, warmup: int, n: int) -> list[int]:
    send, recv, clock = ep.send, ep.recv, time.perf_counter_ns
    for _ in range(warmup):
        send(payload)
        recv()
    samples = [0] * n
    for i in range(n):
        t0 = clock()
        send(payload)
        recv()
        samples[i] = clock() - t0
    return samples


def _two_party_role(
    transport: Transport,
    state: Any,
    role: Role,
    mode: Mode,
    size: int,
    count: int,
    warmup: int,
    barrier: Any,
) -> Any:
    """One role of a two-process cell (``run_cell``): open the endpoint, run the loop, report."""
    ep = transport.endpoint(state, role, mode, size)
    result: Any = None
    try:
        barrier.wait(BARRIER_TIMEOUT)  # both endpoints exist
        if ep.started is not None:
            ep.started()
        if mode == "latency":
            if role == "server":
                _loop_server(ep, warmup + count)
            else:
                result = _loop_client(ep, _payload(size), warmup, count)
        elif role == "sender":
            payload = _payload(size)
            send = ep.send
            for _ in range(warmup):
                send(payload)
            barrier.wait(BARRIER_TIMEOUT)  # receiver drained the warm-up
            result = time.perf_counter_ns()
            for _ in range(count):
                send(payload)
        else:
            recv = ep.recv
            for _ in range(warmup):
                recv()
            barrier.wait(BARRIER_TIMEOUT)
            for _ in range(count):
                recv()
            result = time.perf_counter_ns()
        barrier.wait(BARRIER_TIMEOUT)  # nobody closes while the peer still works
    finally:
        ep.close()
    return result


def _group_child(
    target: Callable[..., Any],
    args: tuple[Any, ...],
    cpus: list[int] | None,
    barrier: Any,
    out: multiprocessing.connection.Connection,
) -> None:
    """Entry point of every benchmark child: pin, run ``target(*args, barrier)``, report."""
    try:
        pin_to(cpus)
        out.send(("ok", target(*args, barrier)))
    except BaseException:
        out.send(("error", f"{getattr(target, '__name__', target)}: {traceback.format_exc()}"))
    finally:
        out.close()


# --------------------------------------------------------------------------- parent side


@dataclass
class CellResult:
    """What one cell measured; ``error`` is set instead when it failed."""

    transport: str
    mode: Mode
    size: int
    pinned: bool
    rep: int
    count: int
    p50_us: float | None = None
    p99_us: float | None = None
    rate: float | None = None
    seconds: float | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ChildSpec:
    """One process of a group: ``target(*args, barrier)`` runs in it, pinned to ``cpus``.

    ``target`` must be a module-level function (it is pickled to a *spawned* child); what
    it returns is pickled back to the parent. ``barrier`` is one ``Barrier`` shared by every
    process of the group, for the start/stop rendezvous the measurement needs.
    """

    target: Callable[..., Any]
    args: tuple[Any, ...]
    cpus: list[int] | None = None
    name: str = "bench-child"


@dataclass
class GroupResult:
    """What ``run_group`` collected: one result per child, or the first error."""

    results: list[Any]
    error: str | None = None
    traceback: str | None = None


def run_group(
    children: Sequence[ChildSpec],
    timeout: float,
    teardown: Callable[[], None] | None = None,
) -> GroupResult:
    """Run ``children`` in freshly spawned processes at once and collect their results.

    Every child gets the same ``Barrier(len(children))``. Children that have not reported
    within ``timeout`` seconds (or that are left when one of them failed) are killed;
    ``teardown`` then runs in the parent, whatever happened, with SIGTERM/SIGINT held back
    until it is done so that an interrupted run still removes what it created.
    """
    out = GroupResult(results=[None] * len(children))
    procs: list[Any] = []
    finished = False
    try:
        barrier = _CTX.Barrier(len(children))
        conns: list[multiprocessing.connection.Connection] = []
        for spec in children:
            r, w = _CTX.Pipe(duplex=False)
            p = _CTX.Process(
                target=_group_child,
                args=(spec.target, spec.args, spec.cpus, barrier, w),
                name=spec.name,
                daemon=True,
            )
            p.start()
            w.close()
            procs.append(p)
            conns.append(r)
        reported: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(reported) < len(children) and out.error is None:
            left = deadline - time.monotonic()
            if left <= 0:
                out.error = f"timed out after {timeout:.0f} s"
                break
            ready = multiprocessing.connection.wait(
                [c for i, c in enumerate(conns) if i not in reported], left
            )
            for i, c in enumerate(conns):
                if c not in ready:
                    continue
                reported.add(i)
                try:
                    status, value = c.recv()
                except EOFError:
                    status, value = (
                        "error",
                        f"{children[i].name}: died (exit code {procs[i].exitcode})",
                    )
                if status == "error":
                    out.error = out.error or str(value).strip().splitlines()[-1]
                    out.traceback = out.traceback or str(value)
                else:
                    out.results[i] = value
        finished = out.error is None
    finally:
        # no SIGTERM/SIGINT handling in the middle of the cleanup; delivered right after it
        masked = {signal.SIGTERM, signal.SIGINT}
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, masked)
        try:
            for p in procs:
                p.join(timeout=10 if finished else 0.5)
                if p.is_alive():
                    p.kill()
                    p.join(timeout=5)
            if teardown is not None:
                try:
                    teardown()
                except Exception as exc:
                    out.error = out.error or f"teardown failed: {type(exc).__name__}: {exc}"
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    return out


def run_cell(
    transport: Transport,
    mode: Mode,
    size: int,
    count: int,
    warmup: int,
    cpus: tuple[list[int] | None, list[int] | None],
    pinned: bool,
    rep: int,
    timeout: float,
) -> CellResult:
    """Run one measurement in two fresh spawned processes and collect the result.

    ``cpus`` gives the affinity of (server or sender, client or receiver). Children that do
    not report within ``timeout`` seconds are killed and the cell is marked failed.
    """
    roles: tuple[Role, Role] = ("server", "client") if mode == "latency" else ("sender", "receiver")
    res = CellResult(transport.key, mode, size, pinned, rep, count)
    state, teardown = transport.setup(mode, size)
    group = run_group(
        [
            ChildSpec(
                _two_party_role,
                (transport, state, role, mode, size, count, warmup),
                cpu,
                f"bench-{transport.key}-{role}",
            )
            for role, cpu in zip(roles, cpus)
        ],
        timeout,
        teardown,
    )
    if group.error is not None:
        res.error = group.error
        if group.traceback:
            res.extra["traceback"] = group.traceback
        return res
    a, b = group.results
    if mode == "latency":
        samples: list[int] = b
        res.p50_us = percentile(samples, 50) / 1e3
        res.p99_us = percentile(samples, 99) / 1e3
        res.seconds = sum(samples) / 1e9
    else:
        elapsed = (b - a) / 1e9
        res.seconds = elapsed
        res.rate = count / elapsed if elapsed > 0 else float("inf")
    return res


# --------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation, like numpy's default."""
    if not values:
        raise ValueError("percentile of an empty sequence")
    s = sorted(values)
    k = (len(s) - 1) * q / 100.0
    lo = math.floor(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


# --------------------------------------------------------------------------- formatting


def fmt_us(v: float | None) -> str:
    """Microseconds with three significant digits, as the report's tables show them."""
    if v is None or math.isnan(v):
        return "—"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def fmt_rate(v: float | None) -> str:
    """Messages per second as ``473 k`` / ``1.43 M`` / ``425``."""
    if v is None or math.isnan(v):
        return "—"
    for div, unit in ((1e6, " M"), (1e3, " k")):
        if v >= div:
            x = v / div
            return f"{x:.3g}{unit}" if x < 100 else f"{x:.0f}{unit}"
    return f"{v:.3g}" if v < 100 else f"{v:.0f}"


def fmt_ratio(v: float | None) -> str:
    if v is None or math.isnan(v) or math.isinf(v):
        return "—"
    return f"{v:.2f}x" if v < 10 else f"{v:.1f}x"


def fmt_size(size: int) -> str:
    if size >= 1 << 20 and size % (1 << 20) == 0:
        return f"{size >> 20} MiB"
    if size >= 1 << 10 and size % (1 << 10) == 0:
        return f"{size >> 10} KiB"
    return f"{size} B"


def md_table(headers: Sequence[str], rows: Iterable[Sequence[str]], right_from: int = 1) -> str:
    """A GitHub markdown table; columns from ``right_from`` on are right-aligned."""
    align = ["---" if i < right_from else "---:" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- progress


class _TinyBar:
    """Minimal stand-in for ``tqdm`` (same calls used here) writing to stderr."""

    def __init__(self, total: int, desc: str = "", file: TextIO = sys.stderr) -> None:
        self.total, self.n, self.desc, self.file = total, 0, desc, file
        self.start = time.monotonic()
        self.postfix = ""
        self._draw()

    def _draw(self) -> None:
        width = 30
        done = int(width * self.n / self.total) if self.total else width
        elapsed = time.monotonic() - self.start
        eta = elapsed / self.n * (self.total - self.n) if self.n else 0.0
        line = (
            f"\r{self.desc} [{'#' * done}{'.' * (width - done)}] {self.n}/{self.total}"
            f" {elapsed:4.0f}s<{eta:4.0f}s {self.postfix}"
        )
        self.file.write(line[:160].ljust(100))
        self.file.flush()

    def set_postfix_str(self, s: str) -> None:
        self.postfix = s
        self._draw()

    def update(self, n: int = 1) -> None:
        self.n += n
        self._draw()

    def write(self, s: str, file: TextIO | None = None) -> None:
        self.file.write("\r" + " " * 100 + "\r")
        print(s, file=file or self.file)
        self._draw()

    def close(self) -> None:
        self.file.write("\n")
        self.file.flush()


def progress(total: int, desc: str) -> Any:
    """A progress bar on stderr: ``tqdm`` if importable, else a built-in one."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _TinyBar(total, desc)
    return tqdm(total=total, desc=desc, file=sys.stderr, dynamic_ncols=True, leave=True)


# --------------------------------------------------------------------------- leak check


#: Markers of names the benchmarks create: ours, iceoryx2's files (own prefix) and mapshare
#: channels (``/dev/shm/mapshare.bench-<pid>-<hex>``).
_OURS = (NAME_PREFIX, "iox2bench", "mapshare.bench-")


def leak_snapshot() -> set[str]:
    """Our entries in ``/dev/shm`` and in the temp directory.

    Only names carrying one of our markers count, so that other programs (or tests running
    next to the benchmark) creating and removing their own segments are not reported.
    """
    names: set[str] = set()
    for d in ("/dev/shm", tempfile.gettempdir()):
        if os.path.isdir(d):
            names |= {os.path.join(d, n) for n in os.listdir(d) if any(m in n for m in _OURS)}
    return names
