"""Handles on mapshare objects: the file-mapping model (CreateFileMapping /
OpenFileMapping / MapViewOfFile) with explicit lifetimes, permissions and a
self-describing header, for every kind of object.

``Handle`` is what every kind shares: the factories (``create``, ``open``,
``open_or_create`` with one keyword set), names, lifetime, ownership checks, retries,
backing-file links, pickling and closing.  ``Segment`` (user bytes), the named
``Lock``/``Event``/``Semaphore`` and ``Channel`` build on it.  The mechanism (mapping,
header validation, the attach table) is in ``_core``.
"""

from __future__ import annotations

import errno
import os
import sys
import time
from typing import TYPE_CHECKING, Any, Optional

from . import _core, _link, _naming, _registry
from ._core import Segment as _CoreSegment
from ._errors import (
    LayoutError,
    LayoutVersionError,
    NameCollisionError,
    PermissionDeniedError,
    SegmentDestroyedError,
    SegmentExistsError,
    SegmentNotFoundError,
    UnsupportedError,
    _Initializing,
)
from ._gc import reclaim, reclaim_link
from ._inspect import SegmentInfo, info_from_header
from ._namewatch import NameWatch
from ._options import (
    INIT_WAIT,
    KIND_NAMES,
    LIFETIME_NAMES,
    Access,
    Lifetime,
    PathLike,
    access_code,
    check_mode,
    check_seconds,
    check_size,
    lifetime_code,
)
from ._platform import (
    HAS_DEV_SHM,
    HAS_LINK_OBJECTS,
    HAS_OWNER_UIDS,
    NAMES_OUTLIVE_HANDLES,
    SHM_DIR,
    SHM_NAMES_HAVE_SLASH,
)

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["Handle"]

_RECLAIM_TRIES = 3


def _open_core(
    osn: str, name: Optional[str], fspath: Optional[str], kind: int, acc: int, raw: bool,
    flags: int,
) -> _CoreSegment:
    """``_core.open``, with errors that name the logical name, not ``/mapshare.x``."""
    try:
        return _core.open(osn, fspath, kind, acc, raw, flags)
    except LayoutVersionError:
        if name is None or fspath is not None:
            raise
        raise LayoutVersionError(
            f"segment {name!r} was made with another mapshare layout version than the one "
            f"this mapshare reads (version {_core.LAYOUT_VERSION}): open it with the "
            "mapshare that made it, or upgrade"
        ) from None
    except OSError as exc:
        if name is None or fspath is not None or exc.filename != osn:
            raise
        missing = isinstance(exc, SegmentNotFoundError)
        what = "no segment named" if missing else "segment"
        detail = "" if missing else f": {exc.strerror}"
        raise type(exc)(exc.errno, f"{what} {name!r}{detail}") from None



class Handle:
    """One process's handle on a mapshare object of any kind (the base of ``Segment``
    and of the segments behind named locks, events, semaphores and channels).

    Made by the factories ``create``, ``open`` and ``open_or_create`` (never by the
    constructor), which return an instance of the class they are called on.
    ``close()`` detaches this handle and ``unlink()`` removes the name.  A handle is a
    context manager (closing on exit) and pickles as its name, so a worker process
    reattaches.

    The factories of every kind take the same keywords for the same meaning (``mode``,
    ``lifetime``, ``global_namespace``, ``spin``; ``allow_foreign``, ``wait``,
    ``init_timeout`` when opening).  A keyword that cannot apply to a kind is not
    accepted by it, never accepted and ignored: ``path``, ``access``, ``raw``, ``kind``
    and ``follow_symlinks`` are ``Segment.open``'s alone, and ``open_or_create`` has no
    ``wait`` (a missing name is created).
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
        cls,
        core: _CoreSegment,
        name: str,
        os_name: str,
        path: Optional[str],
        access: str,
        raw: bool,
        st: Optional[dict[str, int]] = None,
    ) -> Self:
        self = object.__new__(cls)
        self._core = core
        self._name = name
        self._os_name = os_name
        self._path = path
        self._access = access
        self._raw = raw
        self._unlinked = False
        self._buf = None
        if st is None:
            st = core.stat()
        self._ident = (st["dev"], st["ino"])
        self._link_ident = None
        _registry.add(self)
        return self

    @classmethod
    def create(
        cls,
        name: str,
        size: int,
        *,
        path: Optional[PathLike] = None,
        mode: int = 0o600,
        lifetime: Lifetime = "shared",
        global_namespace: bool = False,
        spin: Optional[float] = None,
    ) -> Self:
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
        seg = cls._create(
            name, size, path=path, mode=mode, lifetime=lifetime, init=None,
            global_namespace=global_namespace,
        )
        return seg._with_spin(spin)

    def _with_spin(self, spin: Optional[float]) -> Self:
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
    ) -> Self:
        _naming.validate(name)
        check_size(size)
        mode = check_mode(mode)
        lt = lifetime_code(lifetime)
        if not NAMES_OUTLIVE_HANDLES and path is None and lt == _core.LIFETIME_PERSISTENT:
            # A paging-file section dies with its last handle: nothing can keep the
            # name alive once every process has closed it (no unlink, no /dev/shm).
            raise UnsupportedError(
                f"segment {name!r}: lifetime='persistent' needs a backing file on "
                "Windows (a paging-file section vanishes with its last handle); create it "
                "with path=... and reopen it later with Segment.open(path=...)"
            )
        osn = _naming.os_name(name)
        flags = _core.OBJ_GLOBAL if global_namespace else 0
        if path is None or not HAS_LINK_OBJECTS:
            fspath = None if path is None else os.fspath(path)
            for attempt in range(_RECLAIM_TRIES):
                try:
                    core = _core.create(
                        osn, name, cls._kind, size, fspath, mode, lt, flags, init
                    )
                    break
                except SegmentExistsError:
                    # (Windows names vanish with their last handle: nothing to reclaim.)
                    if (attempt + 1 < _RECLAIM_TRIES and path is None and NAMES_OUTLIVE_HANDLES
                            and reclaim(osn, flags)):
                        continue  # the old object was abandoned and is gone: create anew
                    cls._raise_exists(name, osn)
                    raise
            return cls._wrap(core, name, osn, fspath, "rw", False)
        return cls._create_file_backed(name, osn, os.fspath(path), size, mode, lt, init)

    @classmethod
    def _raise_exists(cls, name: str, osn: str) -> None:
        """Turn EEXIST into a precise message (collision, other owner)."""
        if HAS_DEV_SHM:
            # first, without parsing anything: an object pre-created by another user may
            # have no valid header at all
            try:
                uid = os.stat(SHM_DIR + osn).st_uid
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
        if HAS_OWNER_UIDS and st["uid"] != os.geteuid():
            raise SegmentExistsError(
                f"segment {name!r} already exists and is owned by uid {st['uid']} "
                "(possibly pre-created by another user)"
            )

    @classmethod
    def _create_file_backed(
        cls, name: str, osn: str, path: str, size: int, mode: int, lt: int, init: object
    ) -> Self:
        # The name is a small 'link' object pointing at the file, so the segment can be
        # opened by name like any other; the file carries the real header and data.  The
        # link holds the absolute path: it is opened from any working directory.
        path = os.path.abspath(path)
        for attempt in range(_RECLAIM_TRIES):
            try:
                link = _link.new(osn, name, path, mode)
                break
            except SegmentExistsError:
                if attempt + 1 < _RECLAIM_TRIES and reclaim_link(osn):
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
        self._link_ident = _link.fill(link, path, (st["dev"], st["ino"]))
        return self

    def _register_link(self) -> None:
        """Opened by path while its name is missing (every process had exited, so the
        last one removed it): register the name again, so that others open it by name
        and ``mapshare ls`` shows it.  A name that exists is left alone."""
        if not HAS_LINK_OBJECTS or self._path is None:
            return
        mode = self._core.stat()["mode"] & 0o777
        try:
            link = _link.new(self._os_name, self._name, self._path, mode | 0o600)
        except (SegmentExistsError, PermissionError):
            return
        self._link_ident = _link.fill(link, self._path, self._ident)

    @classmethod
    def open(
        cls,
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
        init_timeout: float = INIT_WAIT,
        spin: Optional[float] = None,
    ) -> Self:
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
        acc = access_code(access)
        flags = (_core.OBJ_FOLLOW_SYMLINKS if follow_symlinks else 0) | (
            _core.OBJ_GLOBAL if global_namespace else 0
        )
        want = cls._wanted_kind(kind)
        wait_s = check_seconds(wait, "wait")
        init_s = check_seconds(init_timeout, "init_timeout", none_ok=False)
        assert init_s is not None
        fspath = None if path is None else os.fspath(path)
        if name is not None and not raw:
            _naming.validate(name)
            if fspath is None:
                # The common case first, without the retry loop's clocks and frames: an
                # object that is there and finished.  Anything else (missing, still
                # being created, being destroyed) goes through the loop below, which
                # makes this same attempt again and waits as asked.
                try:
                    seg = cls._open_once(name, None, access, acc, flags, allow_foreign, want)
                    return seg._with_spin(spin)
                except (SegmentNotFoundError, _Initializing, SegmentDestroyedError):
                    pass
        what = name if name is not None else fspath
        watch: Optional[NameWatch] = None
        start = time.monotonic()
        try:
            while True:
                try:
                    if raw:
                        raw_seg = cls._open_raw(name, path, access, acc, flags)
                        return raw_seg._with_spin(spin)
                    seg = cls._open_initialized(
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
                        watch = NameWatch() if fspath is None else NameWatch.polling()
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
    ) -> Self:
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
    ) -> Self:
        fspath = None if path is None else os.fspath(path)
        osn = ""
        if fspath is None:
            assert name is not None
            slash = SHM_NAMES_HAVE_SLASH and not name.startswith("/")
            osn = "/" + name if slash else name
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
    ) -> Self:
        link_ident = None
        by_path = fspath is not None
        if fspath is None:
            assert name is not None
            osn = _naming.os_name(name)
            core = _open_core(osn, name, None, 0, acc, False, flags)
            if core.kind == _core.KIND_LINK and HAS_LINK_OBJECTS:
                fspath, dev, ino, link_ident = _link.read(core)
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
            # one fstat for the owner check and the identity (not one each)
            st = core.stat()
            cls._check_opened(core, name, osn, allow_foreign, want, st)
            core.attach()  # every opener counts, read-only ones included
        except BaseException:
            core.close(detach=False)
            raise
        self = cls._wrap(
            core, name, osn, None if fspath is None else os.path.abspath(fspath), access,
            False, st,
        )
        self._link_ident = link_ident
        if by_path:
            self._register_link()
        return self

    @classmethod
    def _check_opened(
        cls, core: _CoreSegment, name: str, osn: str, allow_foreign: bool,
        want: Optional[int] = None, st: Optional[dict[str, int]] = None,
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
        if not allow_foreign and HAS_OWNER_UIDS:
            if st is None:
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
        cls,
        name: str,
        size: int,
        *,
        path: Optional[PathLike] = None,
        mode: int = 0o600,
        lifetime: Lifetime = "shared",
        allow_foreign: bool = False,
        global_namespace: bool = False,
        init_timeout: float = INIT_WAIT,
        spin: Optional[float] = None,
    ) -> Self:
        """Open ``name`` if it exists, else create it; safe when many processes race.
        The keywords mean what they mean for ``create`` and ``open`` (there is no
        ``wait``: a missing name is created).

        Raises ``LayoutError`` if the existing segment differs in size or kind.
        """
        seg = cls._open_or_create(
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
    ) -> Self:
        check_size(size)
        init_s = check_seconds(init_timeout, "init_timeout", none_ok=False)
        assert init_s is not None
        deadline = time.monotonic() + init_s
        if path is None and NAMES_OUTLIVE_HANDLES:
            # An object abandoned by processes that all died is not opened but replaced,
            # exactly as create() would (racing callers all end up with the new one).
            _naming.validate(name)
            try:
                reclaim(_naming.os_name(name))
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
    def _check_same(cls, seg: Self, name: str, size: int) -> Self:
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
        return LIFETIME_NAMES[self._core.lifetime]

    @property
    def closed(self) -> bool:
        """True after ``close()``."""
        return bool(self._core.closed)

    @property
    def raw(self) -> bool:
        """True for a foreign object mapped without a header."""
        return self._raw

    def _check_open(self) -> None:
        if self._core.closed:
            raise ValueError(f"segment {self._name!r} is closed")

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
        info = info_from_header(self._core.header(), self._os_name, self._core.stat(), self._path)
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
        if not self._unlinked and self._path is None and NAMES_OUTLIVE_HANDLES:
            remove = self._os_name
        last = core.close(True, force, defer, remove)
        _registry.discard(self)
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
        if not NAMES_OUTLIVE_HANDLES:
            return  # (Windows) the name vanishes with its last handle
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
        parsed = _link.parse(data)
        if parsed is None or parsed[:2] != self._ident:
            return None
        return (st["dev"], st["ino"])

    def _after_fork(self) -> None:
        if not self._core.closed:
            self._core.after_fork()

    def __enter__(self) -> Self:
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


def _reopen(cls: type[Handle], name: str, path: Optional[str], access: Access) -> Handle:
    if path is not None and name is None:
        return cls.open(path=path, access=access, kind="any")
    try:
        return cls.open(name, access=access, kind="any")
    except SegmentNotFoundError:
        if path is None:
            raise
        return cls.open(path=path, access=access, kind="any")


def _reopen_raw(
    cls: type[Handle], name: str, path: Optional[str], access: Access
) -> Handle:
    return cls.open(name, path=path, access=access, raw=True)

