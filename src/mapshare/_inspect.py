"""Inspection: what is in shared memory, read without attaching.

``SegmentInfo`` (with ``ProcessInfo`` and ``LockState``) describes one object;
``segment_info`` reads it by OS name, ``segments`` lists them all (``mapshare ls``,
``mapshare info``, ``collect``).  An object that cannot be read -- corrupt, unfinished,
destroyed, another user's -- is reported with its state, never raised.  Header fields
come from the core (``header()``, ``peek_header()``): their offsets live only in
csrc/layout.h.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass
from typing import Any, Optional

from . import _core, _link, _naming, _npy
from ._errors import (
    LayoutError,
    LayoutVersionError,
    MapshareError,
    SegmentDestroyedError,
    SegmentNotFoundError,
    _Initializing,
)
from ._options import KIND_NAMES, LIFETIME_NAMES
from ._platform import HAS_DEV_SHM, SHM_DIR

__all__ = [
    "LockState",
    "ProcessInfo",
    "SegmentInfo",
    "list_os_names",
    "segment_info",
    "segments",
]


@dataclass(frozen=True)
class ProcessInfo:
    """A process attached to a segment."""

    pid: int
    """Process id (in the namespace of the process that attached)."""
    handles: int
    """How many handles this process holds on the segment."""
    alive: Optional[bool]
    """True if that process instance still runs, False if it died (or its pid now
    names another process), None if it cannot be told (another PID namespace)."""


@dataclass(frozen=True)
class LockState:
    """A snapshot of a lock."""

    held: bool
    """Somebody holds the lock."""
    holder: int
    """OS thread id of the holder (0 when free or unknown)."""
    holder_alive: Optional[bool]
    """False if the holder died holding it (the next acquirer is told); None if free."""


@dataclass(frozen=True)
class SegmentInfo:
    """What ``Segment.info()``, ``mapshare.segments()`` and ``mapshare info`` report."""

    name: str
    """The logical name."""
    os_name: str
    """The name the OS knows (``/mapshare....``)."""
    kind: str
    """segment, lock, event, semaphore, channel, topic, array or latest (link for a
    file-backed name)."""
    size: int
    """User area size in bytes, exactly as created."""
    lifetime: str
    """'shared' (removed when the last user detaches or dies) or 'persistent'."""
    state: str
    """'ready', 'destroyed', 'initializing', 'corrupt', 'other version' (made by a
    mapshare or libmapshare of another layout version: not corrupt, just not readable by
    this one), or 'no permission' (another
    user's object this process may not read)."""
    path: Optional[str]
    """Backing file, or None for anonymous shared memory."""
    creator_pid: int
    """Process that created it."""
    creator_alive: Optional[bool]
    """Whether that process instance still runs."""
    created: Optional[_dt.datetime]
    """Creation time (UTC)."""
    uid: int
    """Owner of the OS object."""
    mode: int
    """Permission bits of the OS object."""
    attached: tuple[ProcessInfo, ...]
    """Processes attached now (dead ones until reaped)."""
    lock: Optional[LockState]
    """The segment's built-in lock."""
    change_count: int
    """The change counter moved by ``notify()``."""
    extra: dict[str, Any]
    """Kind-specific details (channel depth and peers, event state, semaphore value; a
    topic's geometry, counters and ``subscribers`` rows: pid, alive, position, lag,
    missed, received; an array's ``dtype``, ``descr``, ``shape``, ``order``,
    ``nbytes``, ``version``, ``ready`` and ``file``)."""
    error: Optional[str] = None
    """Why the header could not be read, for state 'corrupt', 'other version' or
    'initializing'."""
    read_only_openers: Optional[tuple[int, ...]] = None
    """Pids of processes that have it open without being in ``attached`` (read-only
    openers, which cannot write the attach table but count as attached all the same);
    None where the OS cannot tell (Windows) or the header could not be read."""

    @property
    def all_dead(self) -> bool:
        """True when no attached process is alive (a 'shared' segment gc may remove)."""
        return all(p.alive is False for p in self.attached)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly dictionary."""
        return {
            "name": self.name,
            "os_name": self.os_name,
            "kind": self.kind,
            "size": self.size,
            "lifetime": self.lifetime,
            "state": self.state,
            "path": self.path,
            "creator_pid": self.creator_pid,
            "creator_alive": self.creator_alive,
            "created": self.created.isoformat() if self.created else None,
            "uid": self.uid,
            "mode": oct(self.mode),
            "attached": [
                {"pid": p.pid, "handles": p.handles, "alive": p.alive} for p in self.attached
            ],
            "lock": None
            if self.lock is None
            else {
                "held": self.lock.held,
                "holder": self.lock.holder,
                "holder_alive": self.lock.holder_alive,
            },
            "change_count": self.change_count,
            "extra": self.extra,
            "error": self.error,
            "read_only_openers": None
            if self.read_only_openers is None
            else list(self.read_only_openers),
        }


def _alive(code: int) -> Optional[bool]:
    return None if code < 0 else bool(code)


def lock_state(d: dict[str, Any]) -> LockState:
    """A ``LockState`` from the core's lock dictionary."""
    held = bool(d["held"])
    return LockState(
        held=held,
        holder=int(d["holder"]),
        holder_alive=(not d["holder_dead"]) if held else None,
    )


def info_from_header(
    h: dict[str, Any], os_name: str, st: dict[str, Any], path: Optional[str]
) -> SegmentInfo:
    """A ``SegmentInfo`` from a validated header (``_core.Segment.header()``)."""
    kind = KIND_NAMES.get(h["kind"], f"unknown({h['kind']})")
    extra: dict[str, Any] = {}
    for key in (
        "event_set", "value", "maximum", "waiters", "capacity", "queued_bytes",
        "queued_messages", "sent_messages", "received_messages", "high_water", "redelivered",
        "abandoned", "closed", "send_waiters", "receive_waiters",
    ):
        if key in h:
            extra[key] = h[key]
    for key in ("senders", "receivers"):
        if key in h:
            extra[key] = [
                {"pid": p["pid"], "alive": _alive(p["alive"])} for p in h[key]
            ]
    for key in ("send_lock", "recv_lock"):
        if key in h:
            s = lock_state(h[key])
            extra[key] = {"held": s.held, "holder": s.holder, "holder_alive": s.holder_alive}
    state = {_core.STATE_READY: "ready", _core.STATE_DESTROYED: "destroyed"}.get(
        h["state"], "corrupt"
    )
    return SegmentInfo(
        name=h["name"],
        os_name=os_name,
        kind=kind,
        size=h["size"],
        lifetime=LIFETIME_NAMES.get(h["lifetime"], "?"),
        state=state,
        path=path,
        creator_pid=h["creator_pid"],
        creator_alive=_alive(_core.process_alive(h["creator_pid"], h["creator_start"])),
        created=_dt.datetime.fromtimestamp(h["created_ns"] / 1e9, tz=_dt.timezone.utc),
        uid=st["uid"],
        mode=st["mode"],
        attached=tuple(
            ProcessInfo(pid=p["pid"], handles=p["count"], alive=_alive(p["alive"]))
            for p in h["attached"]
        ),
        lock=lock_state(h["lock"]),
        change_count=h["change_count"],
        extra=extra,
        read_only_openers=_read_only_openers(h),
    )


def _read_only_openers(h: dict[str, Any]) -> Optional[tuple[int, ...]]:
    openers = h.get("openers")
    if openers is None:
        return None
    in_table = {p["pid"] for p in h["attached"]}
    return tuple(sorted({p for p in openers if p not in in_table}))



def list_os_names() -> list[str]:
    """The OS names of the mapshare objects present now, sorted (Linux: the entries of
    /dev/shm; Windows: the named sections of this session, see ms_p_object_list)."""
    try:
        entries = _core.list_objects()
    except OSError:
        return []
    return [e for e in entries if _naming.is_os_name(e.lstrip("/"))]


def segment_info(os_name: str) -> SegmentInfo:
    """Read one OS object's header without attaching.  Never raises for a corrupt or
    unfinished object: its info has state 'corrupt' or 'initializing'."""
    try:
        core = _core.open(os_name, None, 0, _core.ACCESS_READ)
    except SegmentDestroyedError as exc:
        # its last user marked it destroyed and died (or is about to unlink it)
        return _destroyed_info(os_name, str(exc))
    except (LayoutError, OSError) as exc:
        state = "initializing" if isinstance(exc, _Initializing) else "corrupt"
        if isinstance(exc, LayoutVersionError):
            # a newer (or older) mapshare's object: intact, only unreadable here
            state = "other version"
        if isinstance(exc, SegmentNotFoundError):
            raise
        if isinstance(exc, PermissionError):
            # another user's object that we may not read: not a corrupt one
            return _broken_info(os_name, "no permission", exc.strerror or str(exc))
        return _broken_info(os_name, state, str(exc))
    try:
        h = core.header()
        st = core.stat()
        path = None
        if h["kind"] == _core.KIND_LINK:
            parsed = _link.parse(core.read())
            path = (parsed[2] if parsed is not None else "") or None
            if path:
                try:
                    target = _core.open(os_name, path, 0, _core.ACCESS_READ)
                except (LayoutError, OSError) as exc:
                    info = info_from_header(h, os_name, st, path)
                    return _replace(info, state="corrupt", error=f"backing file: {exc}")
                try:
                    return info_from_header(target.header(), os_name, target.stat(), path)
                finally:
                    target.close(detach=False)
        info = info_from_header(h, os_name, st, path)
        if h["kind"] == _core.KIND_TOPIC:
            info.extra.update(topic_details(core))
        elif h["kind"] == _core.KIND_LATEST:
            info.extra.update(latest_details(core))
        elif h["kind"] == _core.KIND_ARRAY:
            info.extra.update(array_details(core))
        return info
    finally:
        core.close(detach=False)


_OVERFLOW_NAMES = {1: "overwrite", 2: "block"}


def topic_details(core: Any) -> dict[str, Any]:
    """A topic's statistics as JSON-friendly ``extra`` fields, read through the core on
    the read-only mapping opened for inspection (nothing is written: no subscriber
    entry, no attach).  An unreadable topic gives ``{"error": why}``, never an
    exception."""
    try:
        d = dict(_core.Topic(core)._statistics())
    except (MapshareError, OSError, ValueError, TypeError, AttributeError) as exc:
        return {"error": str(exc) or type(exc).__name__}
    d["overflow"] = _OVERFLOW_NAMES.get(d.get("overflow", 0), f"unknown({d.get('overflow')})")
    if "oldest" not in d:  # the core's name for it
        d["oldest"] = d.get("oldest_held", d["published"])
    d["held"] = d["published"] - d["oldest"]
    d["subscribers"] = [
        {k: r[k] for k in ("pid", "alive", "position", "lag", "missed", "received",
                           "upstream_missed") if k in r}
        for r in d.get("subscribers", ())
    ]
    for r in d["subscribers"]:
        r["alive"] = _alive(int(r["alive"])) if not isinstance(r["alive"], bool) else r["alive"]
    return d


def latest_details(core: Any) -> dict[str, Any]:
    """A latest-value slot's state as JSON-friendly ``extra`` fields (version, size of
    the newest value, max_size, its kind, buffers, waiters, writer_deaths), read through
    the core from a mapping opened for inspection (nothing is written).  An unreadable
    slot gives ``{"error": why}``, never an exception."""
    from ._codec import KIND_NAMES as CODEC_KINDS

    try:
        version, max_size, size, kind, buffers, waiters, deaths = (
            _core.Latest(core)._statistics()
        )
    except (MapshareError, OSError, ValueError, TypeError) as exc:
        return {"error": str(exc) or type(exc).__name__}
    return {
        "version": version, "value_size": size, "max_size": max_size,
        "value_kind": CODEC_KINDS.get(kind, f"unknown({kind})"), "buffers": buffers,
        "waiters": waiters, "writer_deaths": deaths,
    }


def array_details(core: Any) -> dict[str, Any]:
    """An array's dtype, shape, order and version as JSON-friendly ``extra`` fields, read
    from a mapping opened for inspection (a file-backed array's .npy file is mapped
    read-only).  The header is validated as ``SharedArray.open`` does; an unreadable
    one gives ``{"error": why}``, never an exception."""
    try:
        return _npy.describe(core)
    except (MapshareError, OSError, ValueError, TypeError, ImportError) as exc:
        return {"error": str(exc) or type(exc).__name__}


def _replace(info: SegmentInfo, **changes: Any) -> SegmentInfo:
    import dataclasses

    return dataclasses.replace(info, **changes)


def _destroyed_info(os_name: str, error: str) -> SegmentInfo:
    """Info of an object whose header says 'destroyed' (open refuses those): the
    identity fields come from ``_core.peek_header`` (csrc/inspect.c), which reads them
    without attaching."""
    info = _broken_info(os_name, "destroyed", error)
    try:
        h = _core.peek_header(os_name)
    except (MapshareError, OSError):  # short, vanished, rewritten: keep the basics
        return info
    created: Optional[_dt.datetime]
    try:
        created = _dt.datetime.fromtimestamp(h["created_ns"] / 1e9, tz=_dt.timezone.utc)
    except (ValueError, OverflowError, OSError):
        created = info.created
    return _replace(
        info,
        name=h["name"],
        kind=KIND_NAMES.get(h["kind"], f"unknown({h['kind']})"),
        size=h["size"],
        lifetime=LIFETIME_NAMES.get(h["lifetime"], "?"),
        creator_pid=h["creator_pid"],
        created=created,
    )


def _broken_info(os_name: str, state: str, error: str) -> SegmentInfo:
    uid, mode, size = 0, 0, 0
    created = None
    if HAS_DEV_SHM:
        try:
            st = os.stat(SHM_DIR + os_name)
            uid, mode, size = st.st_uid, st.st_mode & 0o7777, st.st_size
            created = _dt.datetime.fromtimestamp(st.st_mtime, tz=_dt.timezone.utc)
        except OSError:
            pass
    # the logical name is in the header we could not read; a short one is also the OS
    # name's tail (a long one is hashed there: see _naming)
    tail = os_name.lstrip("/")[len(_naming.PREFIX):]
    name = tail if tail and "~" not in tail else "?"
    return SegmentInfo(
        name=name, os_name=os_name, kind="?", size=size, lifetime="?", state=state, path=None,
        creator_pid=0, creator_alive=None, created=created, uid=uid, mode=mode, attached=(),
        lock=None, change_count=0, extra={}, error=error,
    )


def segments() -> list[SegmentInfo]:
    """Every mapshare object in this machine's shared memory (Linux: ``/dev/shm``),
    with name, kind, size, lifetime, creator and attached processes (alive or dead).
    On Windows: the named sections of this logon session (``Local\\``)."""
    out = []
    for osn in list_os_names():
        try:
            out.append(segment_info(osn))
        except SegmentNotFoundError:
            continue  # removed while we looked
    return out
