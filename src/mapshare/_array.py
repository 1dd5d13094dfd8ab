"""SharedArray: a named numpy array in shared memory (or in a .npy file) that describes
itself.

The object's user area is a complete ``.npy`` image (docs/design/layout.md, "Array"):
the header numpy's ``np.lib.format`` writes (dtype descriptor, order, shape), padded so
the data starts 64-byte aligned, then the data.  So the dtype travels exactly (byte
order, structured fields with offsets, datetime units) and a file-backed array *is* a
``.npy`` file.  The header is untrusted input: the C core parses it against a strict
grammar (csrc/array.c, never ``eval``), numpy rebuilds the dtype from the parsed value,
and the data's extent is checked against the mapping before an ndarray is made.
"""

from __future__ import annotations

import errno
import os
import time
from typing import TYPE_CHECKING, Any, Optional, Union

from . import _core
from ._aio import wait_until
from ._errors import (
    LayoutError,
    NoSpaceError,
    PermissionDeniedError,
    SegmentDestroyedError,
    SegmentExistsError,
    SegmentNotFoundError,
    WaitTimeout,
)
from ._npy import (
    _PREAMBLE_MAX,
    FILE_RECORD_MAX,
    FILE_TAG,
    check_file,
    dtype_from_descr,
    file_record,
    image_info,
    parse_file_record,
)
from ._options import INIT_WAIT, Access, Lifetime, PathLike, check_seconds
from ._segment import Segment
from ._sync import Lock

if TYPE_CHECKING:
    import numpy as np
    from typing_extensions import Self

__all__ = ["SharedArray"]

_MAGIC = b"\x93NUMPY"
_ALIGN = 64               # numpy's ARRAY_ALIGN: the data starts on a 64-byte boundary
Shape = Union[int, "tuple[int, ...]", "list[int]"]


class _ArraySegment(Segment):
    _kind = _core.KIND_ARRAY


# ---- building a header --------------------------------------------------------------


def _normalise(shape: Shape, dtype: Any, order: str) -> tuple[tuple[int, ...], np.dtype[Any]]:
    import numpy as np

    dt = np.dtype(dtype)
    if isinstance(shape, int):
        shape = (shape,)
    shape_t = tuple(int(operator_index(s)) for s in shape)
    if any(s < 0 for s in shape_t):
        raise ValueError(f"shape must not be negative: {shape_t}")
    if order not in ("C", "F"):
        raise ValueError(f"order must be 'C' or 'F', not {order!r}")
    if dt.subdtype is not None:
        # as numpy does for an ndarray: a subarray dtype extends the shape
        base, sub = dt.subdtype
        shape_t, dt = shape_t + tuple(sub), base
    if dt.hasobject:
        raise TypeError(
            f"dtype {dt} holds Python objects, which cannot live in shared memory"
        )
    if dt.itemsize == 0 and dt.names is None:
        raise TypeError(f"dtype {dt} has no size (give e.g. 'U10' or 'S8')")
    return shape_t, dt


def operator_index(v: object) -> int:
    import operator

    return operator.index(v)  # type: ignore[arg-type]


def _header(shape: tuple[int, ...], dt: np.dtype[Any], order: str) -> bytes:
    """A .npy header (format 1.0, or 2.0 when long) for the array, padded so that the data
    starts 64-byte aligned, exactly as np.save writes it; ValueError for a dtype whose
    descriptor mapshare cannot carry faithfully."""
    import numpy as np

    descr = np.lib.format.dtype_to_descr(dt)
    d = {"descr": descr, "fortran_order": order == "F", "shape": shape}
    text = "{" + "".join(f"{k!r}: {v!r}, " for k, v in d.items()) + "}"
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(f"dtype {dt}: field names must be ASCII") from None
    for major, fmt in ((1, 2), (2, 4)):
        pre = len(_MAGIC) + 2 + fmt
        total = -(-(pre + len(raw) + 1) // _ALIGN) * _ALIGN
        hlen = total - pre
        if hlen < 1 << (8 * fmt):
            body = raw + b" " * (hlen - len(raw) - 1) + b"\n"
            head = _MAGIC + bytes([major, 0]) + hlen.to_bytes(fmt, "little") + body
            break
    else:  # pragma: no cover - 4 GiB of header text
        raise ValueError("dtype descriptor too long")
    try:
        parsed = _core.npy_parse(head)
        back = dtype_from_descr(parsed["descr"])
    except LayoutError:
        raise ValueError(
            f"dtype {dt} cannot be stored: its descriptor {descr!r} uses a form mapshare "
            "refuses (quotes or backslashes in field names, nesting deeper than 32)"
        ) from None
    if back != dt or back.itemsize != dt.itemsize:
        raise ValueError(
            f"dtype {dt} does not survive its .npy descriptor (metadata, overlapping "
            "fields): refused rather than stored differently"
        )
    return head


# ---- the array ------------------------------------------------------------------------


class SharedArray:
    """A named numpy array in shared memory, or in a ``.npy`` file, shared by processes.

    Made by ``create``, ``from_array`` and ``open`` (never by the constructor).
    ``.array`` is an ``np.ndarray`` onto the shared memory itself; ``lock()`` is a
    robust cross-process lock, ``publish()`` / ``wait_for_version()`` tell readers that
    the data changed.  The header (dtype, shape, order) travels with the data, so
    ``open`` needs only the name.  Pickles as its name: a worker process reattaches
    without copying the data.
    """

    _seg: Segment            # the mapshare object: control block (+ image if not a file)
    _data: Segment           # where the .npy image lives (== _seg unless file-backed)
    _path: Optional[str]
    _array: Optional[np.ndarray[Any, Any]]

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError(
            "use SharedArray.create(), SharedArray.from_array() or SharedArray.open()"
        )

    # ---- factories -------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        name: str,
        shape: Shape,
        dtype: Any = float,
        *,
        order: str = "C",
        fill: Any = None,
        path: Optional[PathLike] = None,
        mode: int = 0o600,
        lifetime: Lifetime = "shared",
        global_namespace: bool = False,
        spin: Optional[float] = None,
    ) -> Self:
        """Create a new array ``name`` of ``shape`` and ``dtype`` (any numpy dtype
        without Python objects), zero-filled, or filled with ``fill``.

        ``order``: ``"C"`` or ``"F"`` (Fortran).  ``path``: back it by a new ``.npy``
        file there (readable by ``np.load(path, mmap_mode="r")`` in any program; reopen
        it later with ``open(path=...)``).  Storage is reserved now: a full
        ``/dev/shm`` or disk raises ``NoSpaceError`` here, never SIGBUS later.  The
        other keywords mean what they mean for ``Segment.create`` (owner-only mode,
        ``lifetime="shared"`` removes the name with its last user).  Raises
        ``SegmentExistsError`` if the name is taken, ``TypeError`` for object dtypes.
        """
        shape_t, dt = _normalise(shape, dtype, order)
        head = _header(shape_t, dt, order)
        nbytes = dt.itemsize
        for s in shape_t:
            nbytes *= s
        if path is None:
            seg = _ArraySegment._create(
                name, len(head) + nbytes, path=None, mode=mode, lifetime=lifetime,
                init=None, global_namespace=global_namespace,
            )
            try:
                seg._core.write(head, 0)
                self = cls._wrap(seg, seg, None, spin)
                if fill is not None:
                    self.array[...] = fill
                _core.array_ready(seg._core)
            except BaseException:
                seg.unlink()
                seg.close()
                raise
            return self
        fspath = os.path.abspath(os.fspath(path))
        _write_npy_file(fspath, head, nbytes, mode)
        try:
            data = Segment.open(path=fspath, raw=True, access="rw")
        except BaseException:
            os.unlink(fspath)
            raise
        # the identity of the file just made (of the mapping, not of the path): openers
        # by name check it, so a file replaced at that path is never taken for this one
        rec = file_record(fspath, data._ident)
        try:
            seg = _ArraySegment._create(
                name, len(rec), path=None, mode=mode,
                lifetime=lifetime, init=None, global_namespace=global_namespace,
            )
        except BaseException:
            data.close()
            os.unlink(fspath)
            raise
        try:
            seg._core.write(rec, 0)
            self = cls._wrap(seg, data, fspath, spin)
            if fill is not None:
                self.array[...] = fill
            _core.array_ready(seg._core)
        except BaseException:
            # nothing half-made stays behind: neither the name nor the file
            data.close()
            seg.unlink()
            seg.close()
            os.unlink(fspath)
            raise
        return self

    @classmethod
    def from_array(
        cls,
        name: str,
        a: Any,
        *,
        path: Optional[PathLike] = None,
        mode: int = 0o600,
        lifetime: Lifetime = "shared",
        global_namespace: bool = False,
        spin: Optional[float] = None,
    ) -> Self:
        """Create ``name`` as a copy of the array ``a`` (its dtype, shape, and Fortran
        order if ``a`` is Fortran-contiguous); other keywords as for ``create``."""
        import numpy as np

        src = np.asarray(a)
        order = "F" if src.ndim > 1 and src.flags.f_contiguous and not src.flags.c_contiguous \
            else "C"
        return cls.create(
            name, src.shape, src.dtype, order=order, fill=src, path=path, mode=mode,
            lifetime=lifetime, global_namespace=global_namespace, spin=spin,
        )

    @classmethod
    def open_or_create(
        cls,
        name: str,
        shape: Shape,
        dtype: Any = float,
        *,
        order: str = "C",
        fill: Any = None,
        mode: int = 0o600,
        lifetime: Lifetime = "shared",
        allow_foreign: bool = False,
        global_namespace: bool = False,
        init_timeout: float = INIT_WAIT,
        spin: Optional[float] = None,
    ) -> Self:
        """Open the array ``name`` read-write, or create it (as ``create``) if it does
        not exist; safe when many processes race: they all end up on one array, and
        only its creator applies ``fill``.

        An existing array must have exactly this dtype (byte order, fields, units),
        shape and order: anything else is a ``LayoutError`` naming both, never a
        reinterpretation of its memory.  (In shared memory only: a file-backed array
        is created with ``create(path=...)`` and reopened with ``open(path=...)``.)
        The keywords mean what they mean for ``create`` and ``open``.
        """
        shape_t, dt = _normalise(shape, dtype, order)
        init_s = check_seconds(init_timeout, "init_timeout", none_ok=False)
        assert init_s is not None
        deadline = time.monotonic() + init_s
        while True:
            left = max(0.0, deadline - time.monotonic())
            try:
                self = cls.open(
                    name, access="rw", allow_foreign=allow_foreign,
                    global_namespace=global_namespace, init_timeout=left, spin=spin,
                )
            except (SegmentNotFoundError, SegmentDestroyedError):
                try:
                    return cls.create(
                        name, shape_t, dt, order=order, fill=fill, mode=mode,
                        lifetime=lifetime, global_namespace=global_namespace, spin=spin,
                    )
                except SegmentExistsError:
                    # another process created it first (or a dying one is going away):
                    # open theirs
                    if time.monotonic() >= deadline:
                        raise
                    continue
            return self._check_same(shape_t, dt, order)

    def _check_same(self, shape: tuple[int, ...], dt: np.dtype[Any], order: str) -> Self:
        arr = self.array
        got_order = "F" if arr.ndim > 1 and arr.flags.f_contiguous \
            and not arr.flags.c_contiguous else "C"
        # a 0-d or 1-d array is both C and F contiguous: order only matters above 1-d
        same_order = got_order == order or arr.ndim <= 1 or arr.size <= 1
        if arr.dtype != dt or arr.dtype.itemsize != dt.itemsize or arr.shape != shape \
                or not same_order:
            import numpy as np

            descr = np.lib.format.dtype_to_descr
            found = f"shape={arr.shape} dtype={descr(arr.dtype)!r} order={got_order!r}"
            self.close()
            raise LayoutError(
                f"existing array {self.name!r} has {found}; asked for shape={shape} "
                f"dtype={descr(dt)!r} order={order!r}"
            )
        return self

    @classmethod
    def open(
        cls,
        name: Optional[str] = None,
        *,
        path: Optional[PathLike] = None,
        access: Access = "r",
        allow_foreign: bool = False,
        global_namespace: bool = False,
        wait: Optional[float] = 0,
        init_timeout: float = INIT_WAIT,
        spin: Optional[float] = None,
    ) -> Self:
        """Open an existing array by name, or a ``.npy`` file by ``path``.

        ``access``: ``"r"`` (default: a read-only mapping, ``.array`` is not writeable
        and a write raises numpy's ``ValueError``), ``"rw"``, or ``"copy"`` (writes
        stay private).  ``path=``: a ``.npy`` file (one a file-backed array left, or
        any ``np.save`` output); its control block (lock, version) is the object
        ``name``, or, without a name, one named after the file's identity, made again
        if every process had exited.  ``wait``, ``init_timeout``, ``allow_foreign`` and
        ``global_namespace`` mean what they mean for ``Segment.open``.

        Raises ``SegmentNotFoundError``, and ``LayoutError`` for anything that is not a
        valid array (a forged header, a wrong kind, data beyond the mapping).
        """
        if path is not None:
            return cls._open_path(
                name, os.path.abspath(os.fspath(path)), access, allow_foreign,
                global_namespace, init_timeout, spin,
            )
        if name is None:
            raise TypeError("open() needs a name or a path")
        seg = _ArraySegment.open(
            name, access=access, allow_foreign=allow_foreign,
            global_namespace=global_namespace, wait=wait, init_timeout=init_timeout,
        )
        try:
            _wait_ready(seg, init_timeout)
            # The first bytes tell a file record from a .npy image, and are the image's
            # preamble: the header is then read exactly, not a page or 64 KiB of it.
            core = seg._core
            pre = core.read(min(core.size, _PREAMBLE_MAX), 0)
            if pre.startswith(FILE_TAG):
                rec = core.read(min(core.size, FILE_RECORD_MAX), 0)
                fspath, ident = parse_file_record(rec)
                data = Segment.open(path=fspath, raw=True, access=access)
                try:
                    # the mapped file must be the one the array was made with (its
                    # size is checked against the header by _wrap, as for any array)
                    check_file(name, fspath, ident, data._ident)
                except BaseException:
                    data.close()
                    raise
                try:
                    return cls._wrap(seg, data, fspath, spin)
                except LayoutError as exc:
                    raise LayoutError(
                        f"array {name!r}: its file {fspath!r} no longer holds the array "
                        f"(truncated or rewritten since it was made?): {exc}"
                    ) from None
            return cls._wrap(seg, seg, None, spin, pre)
        except BaseException:
            seg.close()
            raise

    @classmethod
    def _open_path(
        cls, name: Optional[str], fspath: str, access: Access, allow_foreign: bool,
        global_namespace: bool, init_timeout: float, spin: Optional[float],
    ) -> Self:
        data = Segment.open(path=fspath, raw=True, access=access)
        try:
            if name is None:
                dev, ino = data._ident  # the file mapped, not whatever the path holds now
                name = f"npy-{dev:x}-{ino:x}"
            rec = file_record(fspath, data._ident)
            seg = _ArraySegment._open_or_create(
                name, len(rec), path=None, mode=0o600, lifetime="shared", init=None,
                init_timeout=init_timeout, allow_foreign=allow_foreign,
                global_namespace=global_namespace,
            )
        except BaseException:
            data.close()
            raise
        try:
            ready, _ = _core.array_state(seg._core)
            if not ready:
                # we made it, or a racing opener is writing the same record
                seg._core.write(rec, 0)
                _core.array_ready(seg._core)
            else:
                got = seg._core.read(None, 0)
                found, ident = parse_file_record(got) if got.startswith(FILE_TAG) \
                    else ("", None)
                if found != fspath:
                    raise LayoutError(f"array {name!r} is not backed by {fspath!r}")
                # the same path, but maybe another file than the live array's
                check_file(name, fspath, ident, data._ident)
            return cls._wrap(seg, data, fspath, spin)
        except BaseException:
            data.close()
            seg.close()
            raise

    @classmethod
    def _wrap(
        cls, seg: Segment, data: Segment, path: Optional[str], spin: Optional[float],
        pre: bytes = b"",
    ) -> Self:
        import numpy as np

        self = object.__new__(cls)
        self._seg = seg
        self._data = data
        self._path = path
        self._array = None
        if spin is not None:
            seg.spin = spin
        try:
            info, dt = image_info(data._core, pre)
            shape = tuple(info["shape"])
            order = "F" if info["fortran_order"] else "C"
            self._array = np.ndarray(
                shape, dt, buffer=data.buf, offset=info["data_offset"], order=order
            )
        except BaseException:
            if data is not seg:
                data.close()
            raise
        return self

    # ---- attributes ------------------------------------------------------------------

    @property
    def array(self) -> np.ndarray[Any, Any]:
        """The ``np.ndarray`` onto the shared memory (not writeable for access='r').
        It keeps the mapping alive after ``close()``: unmapped when the last array or
        view made from it goes, never under it."""
        if self._array is None:
            raise ValueError(f"array {self.name!r} is closed")
        return self._array

    @property
    def name(self) -> str:
        """The array's name (of its control block, for a file opened by path)."""
        return self._seg.name

    @property
    def path(self) -> Optional[str]:
        """The ``.npy`` file behind a file-backed array, else None."""
        return self._path

    @property
    def dtype(self) -> np.dtype[Any]:
        """The dtype, exactly as created (byte order, fields, units)."""
        dt: np.dtype[Any] = self.array.dtype
        return dt

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape."""
        return tuple(self.array.shape)

    @property
    def access(self) -> str:
        """'r', 'rw' or 'copy'."""
        return self._data.access

    @property
    def closed(self) -> bool:
        """True after ``close()``."""
        return self._seg.closed

    # ---- coordination ----------------------------------------------------------------

    def lock(self) -> Lock:
        """The array's robust cross-process lock (``with arr.lock():``); taking it after
        a holder died raises ``OwnerDiedError`` (the lock is then held: repair the
        data, then release).  Any handle may take it, a read-only one (``access="r"``)
        too: a reader holds it to copy data a writer changes under the same lock."""
        return self._seg.lock()

    @property
    def version(self) -> int:
        """How many times ``publish()`` was called on this array (64-bit, from 0)."""
        self._check_open()
        return int(_core.array_state(self._seg._core)[1])

    def publish(self) -> int:
        """Tell readers the data changed: add 1 to ``version`` and wake every process in
        ``wait_for_version``.  Returns the new version.  Only a handle that can write
        the data may: ``PermissionDeniedError`` for ``access="r"`` or ``"copy"`` (its
        writes, if any, stay private: announcing them would announce nothing)."""
        self._check_open()
        if self.access != "rw":
            raise PermissionDeniedError(
                errno.EACCES,
                f"array {self.name!r}: publish() needs access='rw', this handle has "
                f"access={self.access!r}",
            )
        return int(_core.array_publish(self._seg._core))

    def wait_for_version(self, since: int, timeout: Optional[float] = None) -> int:
        """Block until ``version`` differs from ``since``; return it.  Read ``version``
        before reading the data, then wait with it: a publish in between is never
        lost.  Raises ``WaitTimeout`` (a TimeoutError) after ``timeout`` seconds."""
        self._check_open()
        t = check_seconds(timeout, "timeout")
        deadline = None if t is None else time.monotonic() + t
        core = self._seg._core
        while True:
            seq = core.change_count()
            now = int(_core.array_state(core)[1])
            if now != since:
                return now
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise WaitTimeout(f"wait_for_version timed out after {timeout} s")
            core.wait_change(seq, left)

    async def wait_for_version_async(
        self, since: int, timeout: Optional[float] = None
    ) -> int:
        """``wait_for_version`` for asyncio: never blocks the event loop; cancellable."""
        self._check_open()
        core = self._seg._core

        def poll() -> Optional[int]:
            now = int(_core.array_state(core)[1])
            return None if now == since else now

        def block(t: float) -> Optional[int]:
            seq = core.change_count()
            if poll() is not None:
                return None
            try:
                core.wait_change(seq, t, 0.0)
            except TimeoutError:
                pass
            return None

        return await wait_until(poll, block, timeout, what="wait_for_version")

    def flush(self, *, durable: bool = False) -> None:
        """Write a file-backed array's modified pages to its file (``durable=True``: and
        wait for stable storage).  Nothing to do for an array in shared memory."""
        self._check_open()
        if self._path is not None:
            self._data.flush(durable=durable)

    # ---- lifetime --------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._seg.closed:
            raise ValueError(f"array {self.name!r} is closed")

    def close(self) -> None:
        """Detach this handle.  ``.array`` and views of it stay valid (they keep the
        mapping; it goes with the last of them), never a dangling pointer."""
        self._array = None
        if self._data is not self._seg:
            self._data.close()
        self._seg.close()

    def unlink(self) -> None:
        """Remove the name (processes that have it open keep using it).  A file-backed
        array's ``.npy`` file stays: it is the data."""
        self._seg.unlink()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> tuple[Any, ...]:
        return (_reopen, (self.name, self._path, self.access))

    def __repr__(self) -> str:
        if self.closed:
            return f"<SharedArray {self.name!r} (closed)>"
        where = f", path={self._path!r}" if self._path else ""
        return (f"<SharedArray {self.name!r} shape={self.shape} dtype={self.dtype} "
                f"{self.access}{where}>")


def _reopen(name: str, path: Optional[str], access: Access) -> SharedArray:
    try:
        return SharedArray.open(name, access=access)
    except FileNotFoundError:
        if path is None:
            raise
        return SharedArray.open(name, path=path, access=access)


def _wait_ready(seg: Segment, init_timeout: float) -> None:
    """Wait (up to init_timeout) for the creator to finish the header and the data."""
    if _core.array_state(seg._core)[0]:
        return
    deadline = time.monotonic() + init_timeout
    while True:
        ready, _ = _core.array_state(seg._core)
        if ready:
            return
        if time.monotonic() >= deadline:
            raise LayoutError(
                f"array {seg.name!r} is still being built after {init_timeout:g} s "
                "(or its creator died before finishing it)"
            )
        time.sleep(0.001)


def _write_npy_file(path: str, head: bytes, nbytes: int, mode: int) -> None:
    """A new .npy file (exclusive, never through a symlink) with its storage reserved."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) \
        | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError:
        raise SegmentExistsError(errno.EEXIST, f"file {path!r} already exists") from None
    try:
        os.fchmod(fd, mode) if hasattr(os, "fchmod") else None
        os.write(fd, head)
        total = len(head) + nbytes
        try:
            if hasattr(os, "posix_fallocate") and total:
                os.posix_fallocate(fd, 0, total)
            else:
                os.ftruncate(fd, total)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise NoSpaceError(exc.errno, f"no space for {total} bytes at {path!r}") \
                    from None
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
            os.ftruncate(fd, total)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)
