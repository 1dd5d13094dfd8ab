"""Named segments: the file-mapping model (CreateFileMapping / OpenFileMapping /
MapViewOfFile) with explicit lifetimes, permissions and a self-describing header.

Policy lives here (names, lifetime, ownership checks, retries, links to backing files);
the mechanism (mapping, header validation, the attach table) is in ``_core``.
"""

from __future__ import annotations

import atexit
import datetime as _dt
import errno
import os
import struct
import sys
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Literal, Optional, TypeVar, Union

from . import _core, _naming
from ._core import Segment as _CoreSegment
from ._errors import (
    LayoutError,
    MapshareError,
    NameCollisionError,
    PermissionDeniedError,
    SegmentDestroyedError,
    SegmentExistsError,
    SegmentNotFoundError,
    UnsupportedError,
    _Initializing,
)

if TYPE_CHECKING:
    from ._sync import Lock

__all__ = [
    "LockState",
    "ProcessInfo",
    "Segment",
    "SegmentInfo",
    "segments",
]

Access = Literal["rw", "r", "copy"]
Lifetime = Literal["shared", "persistent"]
PathLike = Union[str, "os.PathLike[str]"]

_ACCESS = {"rw": _core.ACCESS_WRITE, "r": _core.ACCESS_READ, "copy": _core.ACCESS_COPY}
_ACCESS_NAMES = {v: k for k, v in _ACCESS.items()}
_LIFETIME = {"persistent": _core.LIFETIME_PERSISTENT, "shared": _core.LIFETIME_SHARED}
_LIFETIME_NAMES = {v: k for k, v in _LIFETIME.items()}
KIND_NAMES = {
    _core.KIND_SEGMENT: "segment",
    _core.KIND_LOCK: "lock",
    _core.KIND_EVENT: "event",
    _core.KIND_SEMAPHORE: "semaphore",
    _core.KIND_CHANNEL: "channel",
    _core.KIND_LINK: "link",
}
_WINDOWS = _core.PLATFORM == "windows"
_SHM_DIR = "/dev/shm"
_LINK_FMT = "<QQ"  # dev, ino of the backing file; its path follows
_INIT_WAIT = 2.0   # seconds an opener waits for a creator to finish the header

# Every open Segment of this process, so that a forked child can register itself.
_live: weakref.WeakSet[Segment] = weakref.WeakSet()
_S = TypeVar("_S", bound="Segment")


def _after_fork_in_child() -> None:
    for seg in list(_live):
        seg._after_fork()
    # A multiprocessing child ends with os._exit: nothing would close the handles it
    # inherited (and registered above), so a 'shared' segment whose parent closed first
    # outlived everyone until `mapshare gc`.  Close them in multiprocessing's exit hook
    # (registered through an after-forker: the child clears finalizers made before).
    util = sys.modules.get("multiprocessing.util")
    if _live and util is not None:
        util.register_after_fork(_FORK_KEY, _close_at_child_exit)


class _ForkKey:
    """A weakref-able key for multiprocessing's after-fork registry."""


_FORK_KEY = _ForkKey()


_child_exit_pid = 0


def _register_child_exit() -> None:
    """A handle made inside a forked multiprocessing child (after the fork) must be
    closed by that child's exit path too: it ends with os._exit, which skips atexit."""
    global _child_exit_pid
    util = sys.modules.get("multiprocessing.util")
    if util is None or _child_exit_pid == os.getpid():
        return
    import multiprocessing

    if multiprocessing.parent_process() is None:
        return  # the main process: atexit closes its handles
    _child_exit_pid = os.getpid()
    util.Finalize(None, _close_live, exitpriority=0)


def _close_at_child_exit(_key: object) -> None:
    import multiprocessing.util as util

    util.Finalize(None, _close_live, exitpriority=0)


def _close_live() -> None:
    """Close every handle of this process (interpreter exit, a multiprocessing child's
    exit): a normal exit detaches like close(), even with views, arrays or held locks.
    Channels first, so they leave their peer tables before their segment goes."""
    for hook in _exit_hooks:
        try:
            hook()
        except Exception:
            pass
    for seg in list(_live):
        try:
            seg._close(force=True)
        except Exception:
            pass


# Called first by _close_live (the channel module registers its handles' closing here).
_exit_hooks: list[Callable[[], None]] = []
atexit.register(_close_live)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


_RECLAIM_TRIES = 3
# An object whose creator never published its header and whose creator cannot be
# identified is judged abandoned once it is this old (a live creator publishes within
# microseconds).
UNFINISHED_GRACE = 10.0


def _reclaim(osn: str, flags: int = 0) -> bool:
    """Remove the name ``osn`` if nobody can use its object any more, so that it can be
    created again (see ``ms_segment_reclaim``): a 'shared' object whose attached
    processes all died, one marked destroyed, or one whose creator died before publishing
    its header.  Never a persistent object (its data outlives its processes) and never
    one a live process uses.  True when the name is free now."""
    result = _core.reclaim(osn, flags, False)
    if result == _core.RECLAIM_UNFINISHED and _unfinished_age(osn) > UNFINISHED_GRACE:
        result = _core.reclaim(osn, flags, True)
    return result in (_core.RECLAIM_REMOVED, _core.RECLAIM_ABSENT)


def _reclaim_link(osn: str) -> bool:
    """The name of a file-backed segment is a persistent link object; it is stale when
    its file is gone or replaced, or when that segment is 'shared' and every process
    attached to it died.  Remove such a link (under its meta lock); True when the name
    is free now.  The file itself is data and always stays."""
    try:
        link = _core.open(osn, None, _core.KIND_LINK, _core.ACCESS_WRITE)
    except SegmentNotFoundError:
        return True
    except (LayoutError, OSError):
        return _reclaim(osn)  # not a link: the ordinary rules
    try:
        data = link.read()
        n = struct.calcsize(_LINK_FMT)
        if len(data) < n:
            return False
        ident = struct.unpack_from(_LINK_FMT, data)
        path = os.fsdecode(data[n:].split(b"\0", 1)[0])
        if ident == (0, 0):
            return False  # being written
        stale = False
        try:
            target = _core.open(osn, path, 0, _core.ACCESS_WRITE)
        except SegmentNotFoundError:
            stale = True
        except (LayoutError, OSError):
            return False
        else:
            try:
                st = target.stat()
                if (st["dev"], st["ino"]) != ident:
                    stale = True
                elif target.lifetime == _core.LIFETIME_SHARED:
                    _, stale = target.reap()
            finally:
                target.close(False)
        if not stale:
            return False
        link.remove_name(osn)
        return True
    finally:
        link.close(False)


def _unfinished_age(osn: str) -> float:
    try:
        return time.time() - os.stat(_SHM_DIR + osn).st_mtime
    except OSError:
        return 0.0


def _lifetime_code(lifetime: str) -> int:
    try:
        return _LIFETIME[lifetime]
    except KeyError:
        raise ValueError(
            f"lifetime must be 'shared' or 'persistent', not {lifetime!r}"
        ) from None


def _access_code(access: str) -> int:
    try:
        return _ACCESS[access]
    except KeyError:
        raise ValueError(f"access must be 'rw', 'r' or 'copy', not {access!r}") from None


def _check_mode(mode: int) -> int:
    if not isinstance(mode, int) or not 0 <= mode <= 0o777:
        raise ValueError(f"mode must be permission bits between 0 and 0o777, not {mode!r}")
    if not mode & 0o600 == 0o600:
        raise ValueError("mode must give the owner read and write (0o600 at least)")
    return mode


def _check_size(size: object, what: str = "size") -> int:
    # bool is an int to Python, but size=True is a mistake, never a size of 1
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"{what} must be an int, not {type(size).__name__}")
    if size < 0:
        raise ValueError(f"{what} must be >= 0, not {size!r}")
    return size


def _check_seconds(value: object, what: str, *, none_ok: bool = True) -> Optional[float]:
    """A duration argument: None (when allowed: forever) or a number of seconds >= 0."""
    if value is None and none_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{what} must be {'None or ' if none_ok else ''}a number of seconds, "
            f"not {type(value).__name__}"
        )
    if not value >= 0:  # also refuses NaN
        raise ValueError(f"{what} must be >= 0 seconds, not {value!r}")
    return float(value)


class _NameWatch:
    """Sleep until something is created in /dev/shm (Linux inotify), so that
    ``open(name, wait=...)`` does not poll.  Elsewhere, or when inotify is unavailable
    (no /dev/shm, out of watches), it sleeps ``_POLL`` seconds per round instead."""

    _POLL = 0.005
    _SAFETY = 1.0  # even with inotify, look again at least this often (a missed event)

    def __init__(self) -> None:
        self._fd = -1
        if sys.platform.startswith("linux"):
            try:
                self._fd = _inotify_watch(_SHM_DIR)
            except OSError:
                self._fd = -1

    @classmethod
    def polling(cls) -> _NameWatch:
        """A watch that only sleeps (for a backing file, which can be anywhere)."""
        self = object.__new__(cls)
        self._fd = -1
        return self

    def sleep(self, remaining: Optional[float]) -> None:
        """Wait for a creation in the directory, at most ``remaining`` seconds."""
        if self._fd < 0:
            time.sleep(self._POLL if remaining is None else min(self._POLL, remaining))
            return
        import select

        t = self._SAFETY if remaining is None else min(self._SAFETY, remaining)
        ready, _, _ = select.select([self._fd], [], [], t)
        if ready:
            try:
                os.read(self._fd, 65536)  # drain: we only care that something happened
            except OSError:
                pass

    def close(self) -> None:
        """Release the inotify descriptor."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _open_core(
    osn: str, name: Optional[str], fspath: Optional[str], kind: int, acc: int, raw: bool,
    flags: int,
) -> _CoreSegment:
    """``_core.open``, with errors that name the logical name, not ``/mapshare.x``."""
    try:
        return _core.open(osn, fspath, kind, acc, raw, flags)
    except OSError as exc:
        if name is None or fspath is not None or exc.filename != osn:
            raise
        missing = isinstance(exc, SegmentNotFoundError)
        what = "no segment named" if missing else "segment"
        detail = "" if missing else f": {exc.strerror}"
        raise type(exc)(exc.errno, f"{what} {name!r}{detail}") from None


def _inotify_watch(directory: str) -> int:
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    in_nonblock_cloexec = 0o4000 | 0o2000000
    in_create_moved_to_attrib = 0x100 | 0x80 | 0x04
    fd = int(libc.inotify_init1(in_nonblock_cloexec))
    if fd < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1")
    if libc.inotify_add_watch(fd, os.fsencode(directory), in_create_moved_to_attrib) < 0:
        err = ctypes.get_errno()
        os.close(fd)
        raise OSError(err, "inotify_add_watch")
    return fd


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
    """segment, lock, event, semaphore or channel (link for a file-backed name)."""
    size: int
    """User area size in bytes, exactly as created."""
    lifetime: str
    """'shared' (removed when the last user detaches or dies) or 'persistent'."""
    state: str
    """'ready', 'destroyed', 'initializing', 'corrupt', or 'no permission' (another
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
    """Kind-specific details (channel depth and peers, event state, semaphore value)."""
    error: Optional[str] = None
    """Why the header could not be read, for state 'corrupt' or 'initializing'."""
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


def _lock_state(d: dict[str, Any]) -> LockState:
    held = bool(d["held"])
    return LockState(
        held=held,
        holder=int(d["holder"]),
        holder_alive=(not d["holder_dead"]) if held else None,
    )


def _info_from_header(
    h: dict[str, Any], os_name: str, st: dict[str, Any], path: Optional[str]
) -> SegmentInfo:
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
            s = _lock_state(h[key])
            extra[key] = {"held": s.held, "holder": s.holder, "holder_alive": s.holder_alive}
    state = {_core.STATE_READY: "ready", _core.STATE_DESTROYED: "destroyed"}.get(
        h["state"], "corrupt"
    )
    return SegmentInfo(
        name=h["name"],
        os_name=os_name,
        kind=kind,
        size=h["size"],
        lifetime=_LIFETIME_NAMES.get(h["lifetime"], "?"),
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
        lock=_lock_state(h["lock"]),
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


class Segment:
    """A named block of shared memory, optionally backed by a file.

    Made by the factories ``create``, ``open`` and ``open_or_create`` (never by the
    constructor).  ``buf`` is the memory; ``close()`` detaches this handle and
    ``unlink()`` removes the name.  A Segment is a context manager (closing on exit)
    and pickles as its name, so a worker process reattaches.
    """

    _kind: int = _core.KIND_SEGMENT
    _core: _CoreSegment
    _name: str
    _os_name: str
    _path: Optional[str]
    _access: str
    _raw: bool
    _unlinked: bool
    _buf: Optional[memoryview]
    _ident: tuple[int, int]
    _link_ident: Optional[tuple[int, int]]

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError(
            f"use {type(self).__name__}.create(), .open() or .open_or_create()"
        )

    # ---- construction --------------------------------------------------------------

    @classmethod
    def _wrap(
        cls: type[_S],
        core: _CoreSegment,
        name: str,
        os_name: str,
        path: Optional[str],
        access: str,
        raw: bool,
    ) -> _S:
        self = object.__new__(cls)
        self._core = core
        self._name = name
        self._os_name = os_name
        self._path = path
        self._access = access
        self._raw = raw
        self._unlinked = False
        self._buf = None
        st = core.stat()
        self._ident = (st["dev"], st["ino"])
        self._link_ident = None
        _live.add(self)
        _register_child_exit()
        return self

    @classmethod
    def create(
        cls: type[_S],
        name: str,
        size: int,
        *,
        path: Optional[PathLike] = None,
        mode: int = 0o600,
        lifetime: Lifetime = "shared",
        global_namespace: bool = False,
        spin: Optional[float] = None,
    ) -> _S:
        """Create a new segment of ``size`` bytes, exclusively.

        ``path``: back it by a new file at that path (created exclusively, never through
        a symlink) instead of anonymous shared memory.  ``mode``: permission bits,
        owner-only by default (``0o660`` lets the file's group in: they open it with
        ``allow_foreign=True``).  ``lifetime``: ``"shared"`` (default) removes the
        segment when the last attached process closes it or dies; ``"persistent"`` keeps
        it until ``unlink()``.  ``global_namespace``: Windows ``Global\\`` names.
        ``spin``: seconds a blocked wait busy-waits before sleeping.  Storage is
        reserved now, so a full ``/dev/shm`` or disk raises ``NoSpaceError`` here rather
        than SIGBUS later.

        Raises ``SegmentExistsError`` if the name is taken.
        """
        seg: _S = cls._create(
            name, size, path=path, mode=mode, lifetime=lifetime, init=None,
            global_namespace=global_namespace,
        )
        return seg._with_spin(spin)

    def _with_spin(self: _S, spin: Optional[float]) -> _S:
        if spin is not None:
            self.spin = spin
        return self

    @classmethod
    def _create(
        cls,
        name: str,
        size: int,
        *,
        path: Optional[PathLike],
        mode: int,
        lifetime: str,
        init: object,
        global_namespace: bool = False,
    ) -> Any:
        _naming.validate(name)
        _check_size(size)
        mode = _check_mode(mode)
        lt = _lifetime_code(lifetime)
        if _WINDOWS and path is None and lt == _core.LIFETIME_PERSISTENT:
            # A paging-file section dies with its last handle: nothing can keep the
            # name alive once every process has closed it (no unlink, no /dev/shm).
            raise UnsupportedError(
                f"segment {name!r}: lifetime='persistent' needs a backing file on "
                "Windows (a paging-file section vanishes with its last handle); create it "
                "with path=... and reopen it later with Segment.open(path=...)"
            )
        osn = _naming.os_name(name)
        flags = _core.OBJ_GLOBAL if global_namespace else 0
        if path is None or _WINDOWS:
            fspath = None if path is None else os.fspath(path)
            for attempt in range(_RECLAIM_TRIES):
                try:
                    core = _core.create(
                        osn, name, cls._kind, size, fspath, mode, lt, flags, init
                    )
                    break
                except SegmentExistsError:
                    # (Windows names vanish with their last handle: nothing to reclaim.)
                    if (attempt + 1 < _RECLAIM_TRIES and path is None and not _WINDOWS
                            and _reclaim(osn, flags)):
                        continue  # the old object was abandoned and is gone: create anew
                    cls._raise_exists(name, osn)
                    raise
            return cls._wrap(core, name, osn, fspath, "rw", False)
        return cls._create_file_backed(name, osn, os.fspath(path), size, mode, lt, init)

    @classmethod
    def _raise_exists(cls, name: str, osn: str) -> None:
        """Turn EEXIST into a precise message (collision, other owner)."""
        if sys.platform.startswith("linux"):
            # first, without parsing anything: an object pre-created by another user may
            # have no valid header at all
            try:
                uid = os.stat(_SHM_DIR + osn).st_uid
            except OSError:
                uid = os.geteuid()
            if uid != os.geteuid():
                raise SegmentExistsError(
                    errno.EEXIST,
                    f"segment {name!r} already exists and is owned by uid {uid} "
                    "(possibly pre-created by another user)",
                )
        try:
            core = _core.open(osn, None, 0, _core.ACCESS_READ)
        except Exception:
            return
        try:
            st = core.stat()
            try:
                other = core.header()["name"]
            except Exception:
                other = name
        finally:
            core.close(detach=False)
        if other != name:
            raise NameCollisionError(
                f"{name!r} and the existing {other!r} share the OS name {osn!r}; "
                "choose a name that differs in its first 7 characters or is shorter"
            )
        if not _WINDOWS and st["uid"] != os.geteuid():
            raise SegmentExistsError(
                f"segment {name!r} already exists and is owned by uid {st['uid']} "
                "(possibly pre-created by another user)"
            )

    @classmethod
    def _create_file_backed(
        cls, name: str, osn: str, path: str, size: int, mode: int, lt: int, init: object
    ) -> Any:
        # The name is a small 'link' object pointing at the file, so the segment can be
        # opened by name like any other; the file carries the real header and data.  The
        # link holds the absolute path: it is opened from any working directory.
        path = os.path.abspath(path)
        for attempt in range(_RECLAIM_TRIES):
            try:
                link = cls._new_link(osn, name, path, mode)
                break
            except SegmentExistsError:
                if attempt + 1 < _RECLAIM_TRIES and _reclaim_link(osn):
                    continue  # a link left by a killed process to a segment nobody uses
                cls._raise_exists(name, osn)
                raise
        try:
            core = _core.create(osn, name, cls._kind, size, path, mode, lt, 0, init)
        except BaseException:
            link.close()
            _core.unlink(osn)
            raise
        st = core.stat()
        self = cls._wrap(core, name, osn, path, "rw", False)
        self._link_ident = cls._fill_link(link, path, (st["dev"], st["ino"]))
        return self

    @staticmethod
    def _new_link(osn: str, name: str, path: str, mode: int) -> _CoreSegment:
        payload_len = struct.calcsize(_LINK_FMT) + len(os.fsencode(path)) + 1
        return _core.create(
            osn, name, _core.KIND_LINK, payload_len + 4096, None, mode,
            _core.LIFETIME_PERSISTENT, 0, None,
        )

    @staticmethod
    def _fill_link(link: _CoreSegment, path: str, ident: tuple[int, int]) -> tuple[int, int]:
        """Write the file's identity and absolute path into a new link; its identity."""
        link.write(struct.pack(_LINK_FMT, *ident) + os.fsencode(path) + b"\0")
        link_st = link.stat()
        link.close()
        return (link_st["dev"], link_st["ino"])

    def _register_link(self) -> None:
        """Opened by path while its name is missing (every process had exited, so the
        last one removed it): register the name again, so that others open it by name
        and ``mapshare ls`` shows it.  A name that exists is left alone."""
        if _WINDOWS or self._path is None:
            return
        mode = self._core.stat()["mode"] & 0o777
        try:
            link = self._new_link(self._os_name, self._name, self._path, mode | 0o600)
        except (SegmentExistsError, PermissionError):
            return
        self._link_ident = self._fill_link(link, self._path, self._ident)

    @classmethod
    def open(
        cls: type[_S],
        name: Optional[str] = None,
        *,
        path: Optional[PathLike] = None,
        access: Access = "rw",
        raw: bool = False,
        kind: str = "segment",
        allow_foreign: bool = False,
        follow_symlinks: bool = False,
        global_namespace: bool = False,
        wait: Optional[float] = 0,
        init_timeout: float = _INIT_WAIT,
        spin: Optional[float] = None,
    ) -> _S:
        """Open an existing segment by name, or by the path of its backing file.

        ``access``: ``"rw"``, ``"r"`` (writes raise) or ``"copy"`` (copy-on-write:
        writes stay private to this handle, never reach the file or other processes).
        ``raw=True`` maps a foreign object with no mapshare header: ``name`` is then the
        exact POSIX shm name (``"/foo"``) or use ``path=`` for a plain file.
        ``kind``: a name holding a channel, lock, event or semaphore is refused
        (``LayoutError``: writing into it would corrupt it) unless you ask for it by its
        kind (``"channel"``...) or with ``"any"``.
        ``allow_foreign``: accept a segment owned by another user or writable by
        everyone (refused by default).
        ``wait``: seconds to wait for the name to appear (``0``, the default: don't;
        ``None``: forever); ``SegmentNotFoundError`` after that.  On Linux the wait
        sleeps on inotify events of ``/dev/shm``, elsewhere it looks every 5 ms.
        ``init_timeout``: how long to wait for a creator that is still writing the
        header (then ``LayoutError``).  ``spin``: see the ``spin`` property.

        Raises ``SegmentNotFoundError`` if it does not exist, ``LayoutError`` if it is
        not a valid mapshare segment of the expected kind.
        """
        if name is None and path is None:
            raise TypeError("open() needs a name or a path")
        acc = _access_code(access)
        flags = (_core.OBJ_FOLLOW_SYMLINKS if follow_symlinks else 0) | (
            _core.OBJ_GLOBAL if global_namespace else 0
        )
        want = cls._wanted_kind(kind)
        wait_s = _check_seconds(wait, "wait")
        init_s = _check_seconds(init_timeout, "init_timeout", none_ok=False)
        assert init_s is not None
        fspath = None if path is None else os.fspath(path)
        if name is not None and not raw:
            _naming.validate(name)
        what = name if name is not None else fspath
        watch: Optional[_NameWatch] = None
        start = time.monotonic()
        try:
            while True:
                try:
                    if raw:
                        raw_seg: _S = cls._open_raw(name, path, access, acc, flags)
                        return raw_seg._with_spin(spin)
                    seg: _S = cls._open_initialized(
                        name, fspath, access, acc, flags, allow_foreign, want, init_s
                    )
                    return seg._with_spin(spin)
                except SegmentNotFoundError:
                    waited = time.monotonic() - start
                    if wait_s is not None and waited >= wait_s:
                        if wait_s == 0:
                            raise
                        raise SegmentNotFoundError(
                            errno.ENOENT,
                            f"no segment named {what!r} appeared within {wait_s:g} s",
                        ) from None
                    if watch is None:
                        # watch before the next look: a creation in between still wakes us
                        watch = _NameWatch() if fspath is None else _NameWatch.polling()
                        continue
                    watch.sleep(None if wait_s is None else wait_s - waited)
        finally:
            if watch is not None:
                watch.close()

    @classmethod
    def _wanted_kind(cls, kind: str) -> Optional[int]:
        """The kind code ``open`` insists on (None: any)."""
        if cls._kind != _core.KIND_SEGMENT:
            return cls._kind
        if kind == "any":
            return None
        for code, kname in KIND_NAMES.items():
            if kname == kind and code != _core.KIND_LINK:
                return code
        names = ", ".join(repr(k) for k in KIND_NAMES.values() if k != "link")
        raise ValueError(f"kind must be 'any' or one of {names}, not {kind!r}")

    @classmethod
    def _open_initialized(
        cls,
        name: Optional[str],
        fspath: Optional[str],
        access: str,
        acc: int,
        flags: int,
        allow_foreign: bool,
        want: Optional[int],
        init_timeout: float,
    ) -> Any:
        """Open once the creator has finished the header (waits up to ``init_timeout``)."""
        deadline = time.monotonic() + init_timeout
        while True:
            try:
                return cls._open_once(name, fspath, access, acc, flags, allow_foreign, want)
            except (_Initializing, SegmentDestroyedError) as exc:
                if time.monotonic() >= deadline:
                    if isinstance(exc, SegmentDestroyedError):
                        raise SegmentNotFoundError(
                            2, f"segment {name!r} was destroyed by its last user"
                        ) from None
                    raise LayoutError(
                        f"segment {name or fspath!r} was never finished by its creator "
                        "(it is still initializing, or its creator died half-way; "
                        "`mapshare gc` removes abandoned ones)"
                    ) from None
                time.sleep(0.005)

    @classmethod
    def _open_raw(
        cls, name: Optional[str], path: Optional[PathLike], access: str, acc: int, flags: int
    ) -> Any:
        fspath = None if path is None else os.fspath(path)
        osn = ""
        if fspath is None:
            assert name is not None
            osn = name if name.startswith("/") or _WINDOWS else "/" + name
        core = _core.open(osn, fspath, 0, acc, True, flags)
        return cls._wrap(core, name or os.path.basename(fspath or ""), osn, fspath, access, True)

    @classmethod
    def _open_once(
        cls,
        name: Optional[str],
        fspath: Optional[str],
        access: str,
        acc: int,
        flags: int,
        allow_foreign: bool,
        want: Optional[int] = None,
    ) -> Any:
        link_ident = None
        by_path = fspath is not None
        if fspath is None:
            assert name is not None
            osn = _naming.os_name(name)
            core = _open_core(osn, name, None, 0, acc, False, flags)
            if core.kind == _core.KIND_LINK and not _WINDOWS:
                fspath, dev, ino, link_ident = cls._read_link(core, name)
                core = _core.open(osn, fspath, 0, acc, False, flags)
                st = core.stat()
                if (st["dev"], st["ino"]) != (dev, ino):
                    core.close(detach=False)
                    raise LayoutError(
                        f"the file behind segment {name!r} was replaced: {fspath!r}"
                    )
        else:
            # The OS name (needed for waiting on Windows) comes from the file's header.
            peek = _core.open("", fspath, 0, _core.ACCESS_READ, False, flags)
            try:
                header_name = peek.name
            finally:
                peek.close(detach=False)
            if name is not None and header_name != name:
                raise LayoutError(f"{fspath!r} holds segment {header_name!r}, not {name!r}")
            name = header_name
            osn = _naming.os_name(name)
            core = _core.open(osn, fspath, 0, acc, False, flags)
        try:
            cls._check_opened(core, name, osn, allow_foreign, want)
            core.attach()  # every opener counts, read-only ones included
        except BaseException:
            core.close(detach=False)
            raise
        self = cls._wrap(
            core, name, osn, None if fspath is None else os.path.abspath(fspath), access, False
        )
        self._link_ident = link_ident
        if by_path:
            self._register_link()
        return self

    @staticmethod
    def _read_link(core: _CoreSegment, name: str) -> tuple[str, int, int, tuple[int, int]]:
        try:
            data = core.read()
            st = core.stat()
        finally:
            core.close(detach=False)
        n = struct.calcsize(_LINK_FMT)
        dev, ino = struct.unpack_from(_LINK_FMT, data)
        raw_path = data[n:].split(b"\0", 1)[0]
        if dev == 0 and ino == 0:
            raise _Initializing("link not yet written")
        return os.fsdecode(raw_path), dev, ino, (st["dev"], st["ino"])

    @classmethod
    def _check_opened(
        cls, core: _CoreSegment, name: str, osn: str, allow_foreign: bool,
        want: Optional[int] = None,
    ) -> None:
        header_name = core.name
        if header_name != name:
            raise LayoutError(
                f"{osn!r} holds segment {header_name!r}, not {name!r} "
                "(two names that share an OS name)"
            )
        if want is not None and core.kind != want:
            hint = ""
            if cls._kind == _core.KIND_SEGMENT:
                hint = " (Segment.open(name, kind='any') maps it anyway: writes can corrupt it)"
            raise LayoutError(
                f"{name!r} is a {KIND_NAMES.get(core.kind, '?')}, not a "
                f"{KIND_NAMES.get(want, '?')}{hint}"
            )
        if not allow_foreign and not _WINDOWS:
            st = core.stat()
            if st["uid"] != os.geteuid():
                raise PermissionDeniedError(
                    1,
                    f"segment {name!r} is owned by uid {st['uid']}, not by you "
                    f"(uid {os.geteuid()}); pass allow_foreign=True (mapshare: --allow-foreign) "
                    "to trust it",
                )
            if st["mode"] & 0o002:
                raise PermissionDeniedError(
                    1,
                    f"segment {name!r} is writable by every user (mode {oct(st['mode'])}); "
                    "pass allow_foreign=True to trust it",
                )

    @classmethod
    def open_or_create(
        cls: type[_S],
        name: str,
        size: int,
        *,
        path: Optional[PathLike] = None,
        mode: int = 0o600,
        lifetime: Lifetime = "shared",
        allow_foreign: bool = False,
        global_namespace: bool = False,
        init_timeout: float = _INIT_WAIT,
        spin: Optional[float] = None,
    ) -> _S:
        """Open ``name`` if it exists, else create it; safe when many processes race.
        The keywords mean what they mean for ``create`` and ``open`` (there is no
        ``wait``: a missing name is created).

        Raises ``LayoutError`` if the existing segment differs in size or kind.
        """
        seg: _S = cls._open_or_create(
            name, size, path=path, mode=mode, lifetime=lifetime, init=None,
            init_timeout=init_timeout, allow_foreign=allow_foreign,
            global_namespace=global_namespace,
        )
        return seg._with_spin(spin)

    @classmethod
    def _open_or_create(
        cls, name: str, size: int, *, path: Optional[PathLike], mode: int, lifetime: str,
        init: object, init_timeout: float, allow_foreign: bool = False,
        global_namespace: bool = False,
    ) -> Any:
        _check_size(size)
        init_s = _check_seconds(init_timeout, "init_timeout", none_ok=False)
        assert init_s is not None
        deadline = time.monotonic() + init_s
        if path is None and not _WINDOWS:
            # An object abandoned by processes that all died is not opened but replaced,
            # exactly as create() would (racing callers all end up with the new one).
            _naming.validate(name)
            try:
                _reclaim(_naming.os_name(name))
            except OSError:
                pass
        while True:
            try:
                seg = cls.open(
                    name, init_timeout=max(0.0, deadline - time.monotonic()), kind="any",
                    allow_foreign=allow_foreign, global_namespace=global_namespace,
                )
            except SegmentNotFoundError:
                if path is not None and os.path.exists(path):
                    # A file-backed segment whose name went with its last process: the
                    # file is the segment; reopening it registers the name again.
                    try:
                        seg = cls.open(
                            name, path=path,
                            init_timeout=max(0.0, deadline - time.monotonic()), kind="any",
                            allow_foreign=allow_foreign, global_namespace=global_namespace,
                        )
                    except SegmentNotFoundError:
                        continue
                    return cls._check_same(seg, name, size)
                try:
                    return cls._create(
                        name, size, path=path, mode=mode, lifetime=lifetime, init=init,
                        global_namespace=global_namespace,
                    )
                except SegmentExistsError:
                    if time.monotonic() >= deadline:
                        raise
                    continue  # lost the race, or a destroyed one is going away
            return cls._check_same(seg, name, size)

    @classmethod
    def _check_same(cls, seg: Any, name: str, size: int) -> Any:
        if seg.size != size or seg._core.kind != cls._kind:
            kind = KIND_NAMES.get(seg._core.kind, "?")
            got = seg.size
            seg.close()
            raise LayoutError(
                f"existing segment {name!r} is a {kind} of {got} bytes; asked for a "
                f"{KIND_NAMES[cls._kind]} of {size} bytes"
            )
        return seg

    # ---- attributes ----------------------------------------------------------------

    @property
    def name(self) -> str:
        """The logical name."""
        return self._name

    @property
    def os_name(self) -> str:
        """The OS-level name (see ``mapshare._naming``)."""
        return self._os_name

    @property
    def path(self) -> Optional[str]:
        """The backing file, or None for anonymous shared memory."""
        return self._path

    @property
    def size(self) -> int:
        """The user area's size in bytes: exactly what was asked for at creation."""
        return int(self._core.size)

    @property
    def access(self) -> str:
        """'rw', 'r' or 'copy'."""
        return self._access

    @property
    def lifetime(self) -> str:
        """'shared' or 'persistent' ('persistent' for raw objects)."""
        if self._raw:
            return "persistent"
        return _LIFETIME_NAMES[self._core.lifetime]

    @property
    def closed(self) -> bool:
        """True after ``close()``."""
        return bool(self._core.closed)

    @property
    def raw(self) -> bool:
        """True for a foreign object mapped without a header."""
        return self._raw

    @property
    def buf(self) -> memoryview:
        """The segment's memory (read-only for access='r').  Views and numpy arrays
        made from it keep it mapped, even after ``close()``: the mapping goes with the
        last of them."""
        if self._buf is None:
            self._check_open()
            self._buf = memoryview(self._core)
        return self._buf

    def _check_open(self) -> None:
        if self._core.closed:
            raise ValueError(f"segment {self._name!r} is closed")

    # ---- data ----------------------------------------------------------------------

    def read(self, n: Optional[int] = None, offset: int = 0) -> bytes:
        """Copy ``n`` bytes (default: to the end) starting at ``offset`` out of the
        segment.  Raises SegmentFaultError, never crashes, if the memory vanished."""
        self._check_open()
        return self._core.read(n, offset)

    def write(self, data: Any, offset: int = 0) -> int:
        """Copy a bytes-like object into the segment at ``offset`` (the seed's
        CopyMemory).  Returns the number of bytes written."""
        self._check_open()
        return int(self._core.write(data, offset))

    def view(self, offset: int, length: int, *, access: Optional[Access] = None) -> memoryview:
        """Map ``length`` bytes at any ``offset`` as a separate view (MapViewOfFile):
        alignment to the OS granularity is handled inside.  ``access`` may narrow the
        segment's access ('r') or ask for a private copy ('copy').  Release the
        memoryview (or use it in a ``with`` block) to unmap."""
        self._check_open()
        acc = -1 if access is None else _access_code(access)
        return memoryview(self._core.map_view(offset, length, acc))

    def flush(self, *, durable: bool = False) -> None:
        """Write modified pages of a file-backed segment back to the file
        (FlushViewOfFile).  ``durable=True`` also waits until the data is on stable
        storage (fsync / FlushFileBuffers); errors such as a full disk are raised."""
        self._check_open()
        self._core.flush(0, None, durable)

    # ---- synchronization -----------------------------------------------------------

    def lock(self) -> Lock:
        """The segment's built-in robust lock (see ``mapshare.Lock``)."""
        from ._sync import Lock

        self._check_open()
        return Lock._bind(self)

    def notify(self) -> None:
        """Tell waiters the segment changed: bumps the change counter and wakes every
        process in ``wait_for_change``."""
        self._check_open()
        self._core.notify()

    @property
    def change_count(self) -> int:
        """The change counter (a 32-bit value that wraps)."""
        self._check_open()
        return int(self._core.change_count())

    def wait_for_change(self, since: int, timeout: Optional[float] = None) -> int:
        """Block until the change counter differs from ``since`` and return its new
        value.  Read ``change_count`` before reading the data, then wait with it: a
        notify in between is never lost.  Raises ``WaitTimeout`` (a TimeoutError)."""
        self._check_open()
        return int(self._core.wait_change(since, timeout))

    async def wait_for_change_async(
        self, since: int, timeout: Optional[float] = None
    ) -> int:
        """``wait_for_change`` for asyncio: never blocks the event loop; cancellable."""
        from ._aio import wait_until

        self._check_open()
        core = self._core

        def poll() -> Optional[int]:
            now = int(core.change_count())
            return None if now == since else now

        def block(t: float) -> Optional[int]:
            try:
                return int(core.wait_change(since, t, 0.0))
            except TimeoutError:
                return None

        return await wait_until(poll, block, timeout, what="wait_for_change")

    @property
    def spin(self) -> float:
        """Seconds to busy-wait before sleeping in waits on this handle (default
        50 µs).  0 sleeps at once: lowest CPU use, highest wake-up latency."""
        return float(self._core.spin)

    @spin.setter
    def spin(self, seconds: float) -> None:
        self._core.spin = seconds

    # ---- inspection ----------------------------------------------------------------

    def info(self) -> SegmentInfo:
        """A snapshot of the header: kind, sizes, creator, attached processes, lock."""
        self._check_open()
        if self._raw:
            st = self._core.stat()
            return SegmentInfo(
                name=self._name, os_name=self._os_name, kind="raw", size=self.size,
                lifetime="persistent", state="ready", path=self._path, creator_pid=0,
                creator_alive=None, created=None, uid=st["uid"], mode=st["mode"],
                attached=(), lock=None, change_count=0, extra={},
            )
        info = _info_from_header(self._core.header(), self._os_name, self._core.stat(), self._path)
        return info

    # ---- lifetime ------------------------------------------------------------------

    def close(self) -> None:
        """Detach this handle: the name goes when the last user of a 'shared' segment
        closes.  Memoryviews and numpy arrays of the memory stay valid: the mapping is
        unmapped when the last of them is released, never under them.  Raises
        BufferError while this handle holds the segment's lock or another thread waits
        inside it."""
        self._close(force=False)

    def _close(self, *, force: bool) -> None:
        """force: the exit path (interpreter exit, a collected handle, a multiprocessing
        child returning): locks this thread holds are released, never refused."""
        core = self._core
        if core.closed:
            return
        # Drop, never release, our memoryview: a numpy array may use it as its base.
        self._buf = None
        # numpy 2 keeps the exporting object itself as an array's base, with no buffer
        # export: anything referencing the core object beyond this handle (self._core,
        # the local, getrefcount's argument) may point into the mapping, so it is then
        # unmapped only when the core object goes.  This package's own Lock and Channel
        # objects do not point in (they go through the core's open checks): they don't
        # count, or a channel's or a named lock's mapping -- and on Windows its name,
        # which lives as long as a view of it -- would outlast close().
        defer = sys.getrefcount(core) - core.internal_refs > 3
        # The last user removes an anonymous segment's name inside close(), under its
        # meta lock (a reclaimer that already replaced the name keeps its new object).
        remove = None
        if not self._unlinked and self._path is None and not _WINDOWS:
            remove = self._os_name
        last = core.close(True, force, defer, remove)
        _live.discard(self)
        if last and not self._unlinked and remove is None:
            self._remove_name()

    def unlink(self) -> None:
        """Remove the name now: nobody can open it any more; processes that have it
        open keep using it.  For a file-backed segment the file stays (it is the data);
        only the name goes."""
        if self._raw:
            if self._path is None:
                _core.unlink(self._os_name)
            return
        if not self._core.closed and self._core.header_writable:
            self._core.mark_destroyed()
        self._remove_name()
        self._unlinked = True

    def _remove_name(self) -> None:
        if _WINDOWS:
            return  # Windows names vanish with their last handle
        if self._path is None and not self._raw and not self._core.closed:
            # under the meta lock, like a reclaimer (see ms_segment_remove_name)
            self._core.remove_name(self._os_name)
            return
        ident = self._link_ident if self._path is not None else self._ident
        if ident is None and self._path is not None:
            ident = self._find_link()
        if ident is None:
            return
        try:
            _core.unlink_if_same(self._os_name, ident[0], ident[1])
        except SegmentNotFoundError:
            pass
        except PermissionDeniedError:
            # Only the owner may remove a name from /dev/shm (sticky): a group member
            # who was the last user leaves it to the owner's next close or `mapshare gc`
            # (nobody is attached any more, so either removes it).
            pass

    def _find_link(self) -> Optional[tuple[int, int]]:
        """Opened by path: the identity of the name's link object, if it still points at
        our file (a name re-created for another file must not be taken away)."""
        try:
            link = _core.open(self._os_name, None, _core.KIND_LINK, _core.ACCESS_READ)
        except (LayoutError, OSError):
            return None
        try:
            data = link.read()
            st = link.stat()
        finally:
            link.close(detach=False)
        if len(data) < struct.calcsize(_LINK_FMT):
            return None
        if struct.unpack_from(_LINK_FMT, data) != self._ident:
            return None
        return (st["dev"], st["ino"])

    def _after_fork(self) -> None:
        if not self._core.closed:
            self._core.after_fork()

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            core = self._core
        except AttributeError:
            return
        try:
            if not core.closed:
                self._close(force=True)
        except Exception:
            pass

    def __reduce__(self) -> tuple[Any, ...]:
        if self._raw:
            return (_reopen_raw, (type(self), self._name, self._path, self._access))
        return (_reopen, (type(self), self._name, self._path, self._access))

    def __repr__(self) -> str:
        state = "closed" if self._core.closed else f"{self.size} bytes, {self._access}"
        backing = f", path={self._path!r}" if self._path else ""
        return f"<{type(self).__name__} {self._name!r} ({state}{backing})>"


def _reopen(cls: type[Segment], name: str, path: Optional[str], access: Access) -> Segment:
    if path is not None and name is None:
        return cls.open(path=path, access=access, kind="any")
    try:
        return cls.open(name, access=access, kind="any")
    except SegmentNotFoundError:
        if path is None:
            raise
        return cls.open(path=path, access=access, kind="any")


def _reopen_raw(cls: type[Segment], name: str, path: Optional[str], access: Access) -> Segment:
    return cls.open(name, path=path, access=access, raw=True)


def _list_os_names() -> list[str]:
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
            data = core.read()
            n = struct.calcsize(_LINK_FMT)
            path = os.fsdecode(data[n:].split(b"\0", 1)[0]) or None
            if path:
                try:
                    target = _core.open(os_name, path, 0, _core.ACCESS_READ)
                except (LayoutError, OSError) as exc:
                    info = _info_from_header(h, os_name, st, path)
                    return _replace(info, state="corrupt", error=f"backing file: {exc}")
                try:
                    return _info_from_header(target.header(), os_name, target.stat(), path)
                finally:
                    target.close(detach=False)
        return _info_from_header(h, os_name, st, path)
    finally:
        core.close(detach=False)


def _replace(info: SegmentInfo, **changes: Any) -> SegmentInfo:
    import dataclasses

    return dataclasses.replace(info, **changes)


def _destroyed_info(os_name: str, error: str) -> SegmentInfo:
    """Info of an object whose header says 'destroyed' (open refuses those): the
    identity fields are read through a raw mapping."""
    info = _broken_info(os_name, "destroyed", error)
    try:
        raw = _core.open(os_name, None, 0, _core.ACCESS_READ, True)
    except (LayoutError, OSError):
        return info
    try:
        head = raw.read(_HEAD_LEN, 0)
    except (MapshareError, ValueError):  # a short or vanished object: keep the basics
        return info
    finally:
        raw.close(detach=False)
    kind, _header_size, lifetime, size = struct.unpack_from("<IIIQ", head, 12)
    creator_pid, _, _, created_ns = struct.unpack_from("<IIQQ", head, 48)
    name_len = min(struct.unpack_from("<I", head, 80)[0], _naming.NAME_MAX + 1)
    created: Optional[_dt.datetime]
    try:
        created = _dt.datetime.fromtimestamp(created_ns / 1e9, tz=_dt.timezone.utc)
    except (ValueError, OverflowError, OSError):
        created = info.created
    return _replace(
        info,
        name=head[128:128 + name_len].decode("utf-8", "replace"),
        kind=KIND_NAMES.get(kind, f"unknown({kind})"),
        size=size,
        lifetime=_LIFETIME_NAMES.get(lifetime, "?"),
        creator_pid=creator_pid,
        created=created,
    )


_HEAD_LEN = 384  # header bytes up to the end of the name (csrc/layout.h)


def _broken_info(os_name: str, state: str, error: str) -> SegmentInfo:
    uid, mode, size = 0, 0, 0
    created = None
    try:
        st = os.stat(_SHM_DIR + os_name)
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
    for osn in _list_os_names():
        try:
            out.append(segment_info(osn))
        except SegmentNotFoundError:
            continue  # removed while we looked
    return out
