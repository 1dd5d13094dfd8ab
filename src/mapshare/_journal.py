"""Journals: a durable, crash-consistent message log on memory-mapped files, replayable by
index (issue 15).

A journal is a directory: ``meta`` (a small file mapped shared by every handle: format,
the robust append lock, the committed index and the futex word readers sleep on, the
durable index, the named readers' positions) and segment files ``<seq:016x>.seg`` of
``segment_size`` bytes each, preallocated when made (a full disk is ``NoSpaceError`` at
roll time, never SIGBUS).  The record format, checksums, the lock and the waits are C
(``csrc/journal.c``, ``csrc/binding/journal.c``); this module is the policy: files,
rolls, recovery, durability, readers.  docs/design/journal-format.md is the format.

Why the append lock is held for reserve + copy + commit: indices are then assigned in
commit order and stay dense whoever dies; a holder killed mid-append is found by the
kernel's robust-futex list (on Windows: an abandoned named mutex, or the holder the lock
area still names), with no timeout, and the next holder repairs the tail (zeroes the
partial record and rescans) before appending.  On Windows the lock and the readers' wait
are named kernel objects, named after the meta file's random wait id (M_WAIT_ID).
"""

from __future__ import annotations

import bisect
import errno
import mmap
import os
import pickle
import re
import struct
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Optional, Union

from . import _codec, _core
from ._aio import wait_until
from ._errors import (
    ChannelFull,
    InvalidArgumentError,
    LayoutError,
    MessageTooLargeError,
    NoSpaceError,
    PermissionDeniedError,
    SegmentExistsError,
    SegmentNotFoundError,
    WaitTimeout,
)
from ._options import check_mode
from ._platform import FILES_HAVE_MODE_BITS, MAPPED_FILES_REMOVABLE, MSYNC_IS_DATASYNC

__all__ = ["Journal", "JournalReader", "JournalStatistics", "ReaderPosition", "Recovery"]

Durability = Literal["process", "os", "os-batch"]
Start = Union[Literal["begin", "end", "committed"], int]
PathLike = Union[str, "os.PathLike[str]"]

_DURABILITY = {"process": 0, "os": 1, "os-batch": 2}
_DURABILITY_NAMES = {v: k for k, v in _DURABILITY.items()}

# ---- the meta file (docs/design/journal.md) ------------------------------------------
META_MAGIC = b"MSJMETA1"
META_VERSION = 1
META_SIZE = 8192
M_VERSION = 8           # u32
M_SEGMENT_SIZE = 16     # u64
M_DURABILITY = 24       # u32
M_MODE = 28             # u32: the permission given at creation (Windows: new files get its DACL)
M_WAIT_ID = 32          # u64: random, nonzero: names the lock and wait objects on Windows
M_LOCK = 64             # 64 bytes: the robust append lock
M_COMMITTED = 128       # u64: records 0 .. committed-1 are complete (the next index)
M_TAIL_SEQ = 136        # u64: the segment appends go to
M_TAIL_OFF = 144        # u64: where the next record goes in it
M_HEAD_SEQ = 160        # u64: the oldest segment kept
M_HEAD_INDEX = 168      # u64: its first index
M_NOTIFY = 192          # u32: bumped on every commit; readers sleep on it
M_WAITERS = 196         # u32: readers asleep on M_NOTIFY (writable handles only)
M_DURABLE = 256         # u64: records 0 .. durable-1 are on stable storage
M_READERS = 512         # the named-reader table
READER_SLOTS = 64
READER_SIZE = 64        # name: 48 bytes UTF-8, NUL-padded; u64 position; u64 in use
READER_NAME_MAX = 48

SEG_HDR = 64
REC_HDR = 24

# Platform calls (docs/platforms.md).  Resolved once here so that importing mapshare
# never fails where one is missing.
try:
    import fcntl as _fcntl
except ImportError:  # Windows
    _fcntl = None  # type: ignore[assignment]
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)
_fdatasync = getattr(os, "fdatasync", os.fsync)  # Windows: os.fsync is FlushFileBuffers
SEGMENT_SIZE_DEFAULT = 64 << 20
_SEG_RE = re.compile(r"^([0-9a-f]{16})\.seg$")

KIND_BYTES = 0
KIND_OBJECT = 1
KIND_ARRAY = 2
_PAGE = mmap.PAGESIZE

# Tests only (tests/multiprocess/_journal_children.py): called mid-roll, between making
# the new segment file and publishing it, to kill the process at exactly that point.
_ROLL_HOOK: Optional[Callable[[], None]] = None


def _seg_name(seq: int) -> str:
    return f"{seq:016x}.seg"


def _no_space(exc: OSError, what: str) -> NoSpaceError:
    return NoSpaceError(exc.errno or errno.ENOSPC, f"{what}: no space left ({exc.strerror})")


@dataclass(frozen=True)
class Recovery:
    """What ``open`` found and dropped after a crash or power loss (``Journal.recovered``)."""

    records_dropped: int
    """Records the meta file counted as committed that were not intact on disk."""
    bytes_cleared: int
    """Bytes of partial or invalid records zeroed after the last valid record."""
    last_index: int
    """The last valid index after recovery (-1: the journal is empty)."""


@dataclass(frozen=True)
class ReaderPosition:
    """A named reader in ``JournalStatistics.readers``."""

    name: str
    """The reader's name."""
    position: int
    """The next index it reads (one after its last ``commit``)."""
    lag: int
    """Records appended that it has not committed yet."""


@dataclass(frozen=True)
class JournalStatistics:
    """A snapshot of a journal (``Journal.stats()``)."""

    first: int
    """The first index still held (after ``truncate_before``)."""
    last: int
    """The last committed index (-1: none yet)."""
    durable: int
    """The last index known to be on stable storage (-1: none)."""
    files: int
    """Segment files."""
    bytes: int
    """Bytes of the segment files and the meta file."""
    segment_size: int
    """Bytes per segment file."""
    durability: str
    """The durability mode."""
    readers: tuple[ReaderPosition, ...]
    """Named readers with their positions and lag, in table order."""


class _SegmentGone(LayoutError):
    """A segment file is missing (removed by truncate_before meanwhile, or lost)."""


class _Seg:
    """One mapped segment file."""

    __slots__ = ("buf", "fd", "first", "map", "prefaulted", "seq")

    def __init__(self, seq: int, first: int, fd: int, m: mmap.mmap) -> None:
        self.prefaulted = False
        self.seq = seq
        self.first = first
        self.fd = fd
        self.map = m
        self.buf = m  # the buffer handed to _core (mmap exports it per call)

    def close(self) -> None:
        try:
            self.map.close()
        except BufferError:
            pass  # a view still uses it: the mapping goes with the last view (GC)
        os.close(self.fd)


class Journal:
    """A durable, crash-consistent message log in a directory of memory-mapped files.

    Made by ``create``, ``open`` and ``open_or_create``.  ``append(data)`` returns the
    record's index: dense from 0, never reused or skipped, across file rolls, in one total
    order across every appender process.  ``j[i]`` reads any record (O(1): each segment
    has an offset table), ``reader()`` follows the tail (blocking, or ``async for``).
    Closing: ``close()`` (or ``with``); files stay until ``unlink()``.

    An appender killed at any point (SIGKILL mid-copy, mid-commit, mid-roll) leaves no
    partial record visible and no hole: the append lock is a robust lock, and the next
    appender repairs the tail before its own append.  ``open`` (read-write) also repairs a
    tail damaged by power loss: it keeps every record up to the first whose index or
    checksum does not hold and reports what it dropped in ``recovered``.
    """

    _path: str
    _access: str
    _writable: bool
    _closed: bool
    _segs: dict[int, _Seg]
    _firsts: list[int]
    _seqs: list[int]
    recovered: Optional[Recovery]
    """What a read-write ``open`` repaired (None: nothing was dropped or cleared)."""
    _tlock: threading.Lock
    _meta_fd: int
    _meta: mmap.mmap
    _segment_size: int
    _durability: str
    _tail: Optional[_Seg]
    _appender: Optional[_core.JournalAppender]

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError("use Journal.create(), Journal.open() or Journal.open_or_create()")

    # ---- factories -------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: PathLike,
        *,
        segment_size: int = SEGMENT_SIZE_DEFAULT,
        durability: Durability = "process",
        mode: int = 0o600,
    ) -> Journal:
        """Create a journal at ``path`` (a new directory; ``SegmentExistsError`` if the path
        exists).  ``segment_size``: bytes per segment file (a multiple of 8 from 4096 to
        4 GiB; a record must fit in one).  ``durability``: ``"process"`` (survives any
        process crash), ``"os"`` (each append is on stable storage when it returns) or
        ``"os-batch"`` (appenders share one flush).  ``mode``: permission bits of the
        files (owner-only by default; the directory gets x where it has r)."""
        mode = check_mode(mode)
        if isinstance(segment_size, bool) or not isinstance(segment_size, int) or not (
            4096 <= segment_size <= 1 << 32 and segment_size % 8 == 0
        ):
            raise InvalidArgumentError(
                f"segment_size must be a multiple of 8 from 4096 to 2**32, not {segment_size!r}"
            )
        if durability not in _DURABILITY:
            raise InvalidArgumentError(
                f"durability must be 'process', 'os' or 'os-batch', not {durability!r}"
            )
        path = os.path.abspath(os.fspath(path))
        try:
            os.mkdir(path, mode | ((mode & 0o444) >> 2))
        except FileExistsError:
            raise SegmentExistsError(errno.EEXIST, f"journal {path!r} already exists") from None
        _restrict(path, None, mode | ((mode & 0o444) >> 2))  # umask-proof
        try:
            _make_segment(path, 0, 0, segment_size, mode, durable=durability != "process")
            tmp = os.path.join(path, "meta.tmp")
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | _O_CLOEXEC, mode)
            try:
                _restrict(tmp, fd, mode)
                _allocate(fd, META_SIZE, "journal meta file")
                with mmap.mmap(fd, META_SIZE) as m:
                    struct.pack_into("<8sI", m, 0, META_MAGIC, META_VERSION)
                    struct.pack_into("<Q", m, M_SEGMENT_SIZE, segment_size)
                    struct.pack_into("<I", m, M_DURABILITY, _DURABILITY[durability])
                    struct.pack_into("<I", m, M_MODE, mode)
                    wait_id = int.from_bytes(os.urandom(8), "little") or 1
                    struct.pack_into("<Q", m, M_WAIT_ID, wait_id)
                    _core.journal_lock_init(m, M_LOCK)
                    struct.pack_into("<Q", m, M_TAIL_OFF, SEG_HDR)
                    if durability != "process":
                        m.flush()
                if durability != "process":
                    os.fsync(fd)
            finally:
                os.close(fd)
            # Published by the rename: an opener sees no meta file or a complete one.
            os.rename(tmp, os.path.join(path, "meta"))
            if durability != "process":
                _fsync_dir(path)
        except BaseException:
            _remove_tree(path)
            raise
        return cls._open(path, "rw")

    @classmethod
    def open(cls, path: PathLike, *, access: Literal["rw", "r"] = "rw") -> Journal:
        """Open an existing journal (``SegmentNotFoundError`` if there is none).
        ``access="r"`` needs only read permission: files are opened read-only and mapped
        read-only (appending raises ``PermissionDeniedError``; no recovery is done)."""
        if access not in ("rw", "r"):
            raise InvalidArgumentError(f"access must be 'rw' or 'r', not {access!r}")
        return cls._open(os.path.abspath(os.fspath(path)), access)

    @classmethod
    def open_or_create(
        cls,
        path: PathLike,
        *,
        segment_size: int = SEGMENT_SIZE_DEFAULT,
        durability: Durability = "process",
        mode: int = 0o600,
        init_timeout: float = 2.0,
    ) -> Journal:
        """Open the journal at ``path``, or create it; safe when processes race (an
        opener waits up to ``init_timeout`` seconds for a racing creator's meta file).
        The keywords are used only when creating."""
        import time

        deadline = time.monotonic() + init_timeout
        while True:
            try:
                return cls.create(
                    path, segment_size=segment_size, durability=durability, mode=mode
                )
            except SegmentExistsError:
                pass
            try:
                return cls.open(path)
            except SegmentNotFoundError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.005)

    @classmethod
    def _open(cls, path: str, access: str) -> Journal:
        self = cls.__new__(cls)
        self._path = path
        self._access = access
        self._writable = access == "rw"
        self._closed = True
        self._segs = {}
        self._tail = None
        self._appender = None
        self._firsts = []   # first index of each known segment, by seq order
        self._seqs = []
        self.recovered = None
        self._tlock = threading.Lock()
        flags = (os.O_RDWR if self._writable else os.O_RDONLY) | _O_CLOEXEC
        meta = os.path.join(path, "meta")
        try:
            fd = os.open(meta, flags | _O_NOFOLLOW)
        except FileNotFoundError:
            raise SegmentNotFoundError(errno.ENOENT, f"no journal at {path!r}") from None
        except PermissionError as exc:
            raise PermissionDeniedError(errno.EACCES, f"journal {path!r}: {exc.strerror}") from None
        try:
            if os.fstat(fd).st_size != META_SIZE:
                raise LayoutError(f"journal {path!r}: the meta file has the wrong size")
            m = mmap.mmap(
                fd, META_SIZE, access=mmap.ACCESS_WRITE if self._writable else mmap.ACCESS_READ
            )
        except BaseException:
            os.close(fd)
            raise
        self._meta_fd = fd
        self._meta = m
        magic, version = struct.unpack_from("<8sI", m, 0)
        if magic != META_MAGIC:
            self._release()
            raise LayoutError(f"{path!r} is not a mapshare journal (bad magic)")
        if version != META_VERSION:
            self._release()
            raise LayoutError(
                f"journal {path!r}: format version {version}, expected {META_VERSION}"
            )
        (self._segment_size,) = struct.unpack_from("<Q", m, M_SEGMENT_SIZE)
        (dcode,) = struct.unpack_from("<I", m, M_DURABILITY)
        if dcode not in _DURABILITY_NAMES or not (
            4096 <= self._segment_size <= 1 << 32 and self._segment_size % 8 == 0
        ):
            self._release()
            raise LayoutError(f"journal {path!r}: corrupt meta header")
        self._durability = _DURABILITY_NAMES[dcode]
        self._closed = False
        try:
            if self._writable:
                self._lock()
                try:
                    self.recovered = self._recover(power_loss=True)
                finally:
                    self._unlock()
            self._refresh()
            self._prefault()
            if self._writable and self._durability == "process":
                self._bind_append()
        except BaseException:
            self.close()
            raise
        return self

    def _bind_append(self) -> None:
        """Make ``self.append`` the C method of a ``_core.JournalAppender``: one C call
        from Python to a committed record, no Python frame around it (as ``Channel.send``).
        Everything off the hot path (a roll, a dead lock holder, errors) comes back to
        ``_append_slow`` through a weak reference, so the handle and its appender make no
        reference cycle and a dropped handle still closes in ``__del__``."""
        s = self._seg(self._load(M_TAIL_SEQ))
        self._tail = s
        ref = weakref.ref(self)

        def slow(data: Any, code: int) -> int:
            j = ref()
            if j is None:
                raise ValueError("journal is closed")
            return j._append_slow(data, code)

        self._appender = _core.JournalAppender(self._meta, s.map, s.first, s.seq, slow)
        self.__dict__["append"] = self._appender.append

    def _append_slow(self, data: Any, code: int) -> int:
        # code -3: the lock's previous holder died and we hold the lock: repair first
        if code == -3:
            try:
                self._recover(power_loss=False)
            finally:
                self._unlock()
        return self._append(data, KIND_BYTES)

    def _set_tail(self, s: _Seg) -> None:
        self._tail = s
        if self._appender is not None:
            self._appender.retarget(s.map, s.first, s.seq)

    # ---- properties ------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The journal's directory (absolute)."""
        return self._path

    @property
    def segment_size(self) -> int:
        """Bytes per segment file."""
        return self._segment_size

    @property
    def durability(self) -> str:
        """``"process"``, ``"os"`` or ``"os-batch"`` (fixed at creation)."""
        return self._durability

    @property
    def access(self) -> str:
        """``"rw"`` or ``"r"``."""
        return self._access

    @property
    def closed(self) -> bool:
        """True after ``close()``."""
        return self._closed

    # ---- meta words ------------------------------------------------------------------

    def _load(self, off: int) -> int:
        return int(_core.journal_load(self._meta, off))

    def _store(self, off: int, value: int) -> None:
        _core.journal_store(self._meta, off, value)

    def _check(self) -> None:
        if self._closed:
            raise ValueError("journal is closed")

    def _check_writable(self) -> None:
        self._check()
        if not self._writable:
            raise PermissionDeniedError(
                errno.EACCES, f"journal {self._path!r} was opened read-only (access='r')"
            )

    def _lock(self) -> None:
        got = _core.journal_lock(self._meta, M_LOCK, None)
        if got == 1:
            # Its previous holder died holding it, maybe mid-append or mid-roll: repair the
            # tail before anything else (we hold the lock; an exception releases it).
            try:
                self._recover(power_loss=False)
            except BaseException:
                self._unlock()
                raise

    def _unlock(self) -> None:
        _core.journal_unlock(self._meta, M_LOCK)

    # ---- segments --------------------------------------------------------------------

    def _seg(self, seq: int) -> _Seg:
        s = self._segs.get(seq)
        if s is not None:
            return s
        name = os.path.join(self._path, _seg_name(seq))
        flags = (os.O_RDWR if self._writable else os.O_RDONLY) | _O_CLOEXEC | _O_NOFOLLOW
        try:
            fd = os.open(name, flags)
        except FileNotFoundError:
            raise _SegmentGone(
                f"journal {self._path!r}: segment file {_seg_name(seq)} is missing"
            ) from None
        try:
            if os.fstat(fd).st_size != self._segment_size:
                raise LayoutError(
                    f"journal {self._path!r}: segment file {_seg_name(seq)} has the wrong size"
                )
            m = mmap.mmap(
                fd,
                self._segment_size,
                access=mmap.ACCESS_WRITE if self._writable else mmap.ACCESS_READ,
            )
        except BaseException:
            os.close(fd)
            raise
        try:
            first = int(_core.journal_seg_check(m, seq))
        except BaseException:
            m.close()
            os.close(fd)
            raise
        s = _Seg(seq, first, fd, m)
        self._segs[seq] = s
        return s

    def _refresh(self) -> None:
        """Learn the segments made since (rolls) and forget the removed ones."""
        while True:
            head = self._load(M_HEAD_SEQ)
            tail = self._load(M_TAIL_SEQ)
            while self._seqs and self._seqs[0] < head:
                seq = self._seqs.pop(0)
                self._firsts.pop(0)
                s = self._segs.pop(seq, None)
                if s is not None:
                    s.close()
            nxt = self._seqs[-1] + 1 if self._seqs else head
            try:
                for seq in range(nxt, tail + 1):
                    s = self._seg(seq)
                    self._seqs.append(seq)
                    self._firsts.append(s.first)
                return
            except _SegmentGone:
                # another process's truncate_before removed it after we read the head:
                # start again from the new head; a file missing above it is damage
                if self._load(M_HEAD_SEQ) <= seq:
                    raise

    def _prefault(self) -> None:
        """Map the offset tables' pages into this process now (``MADV_POPULATE_READ``,
        Linux 5.14+; ``MADV_WILLNEED`` where it is missing): a random ``j[i]`` then takes
        no page fault for its table entry, only for its record's page.  The used part of
        each table only (4 bytes per record), once per segment; the tail's grows, and is
        topped up as ``_refresh`` finds new segments."""
        for k, seq in enumerate(self._seqs):
            s = self._segs.get(seq)
            if s is None or s.prefaulted:
                continue
            last = k + 1 == len(self._seqs)
            count = (self._load(M_COMMITTED) if last else self._firsts[k + 1]) - s.first
            lo = self._segment_size - 4 * max(count, 0)
            lo -= lo % _PAGE
            _populate(s.map, lo, self._segment_size - lo)
            s.prefaulted = not last

    def _locate(self, index: int) -> _Seg:
        """The segment holding committed record `index` (which is >= the head index)."""
        if not self._firsts or index >= self._firsts[-1] or index < self._firsts[0]:
            self._refresh()
        k = bisect.bisect_right(self._firsts, index) - 1
        if k < 0:
            raise IndexError(f"journal index {index} was removed by truncate_before")
        return self._seg(self._seqs[k])

    def _roll(self, seq: int, first: int) -> _Seg:
        """Make segment seq+1 starting at index `first` and make it the tail (lock held)."""
        new = seq + 1
        # a file left by an appender that died mid-roll: unmapped before it is replaced
        # (Windows refuses to replace a mapped file)
        old = self._segs.pop(new, None)
        if old is not None:
            old.close()
        if self._durability != "process":
            # The full segment's offset table becomes durable with the roll (appends flush
            # only their records' pages; only the tail's table is rebuilt by recovery).
            full = self._seg(seq)
            lo = self._segment_size - 4 * (first - full.first)
            lo -= lo % _PAGE
            _flush_range(full, lo, self._segment_size)
        _make_segment(self._path, new, first, self._segment_size, self._file_mode(),
                      durable=self._durability != "process")
        if _ROLL_HOOK is not None:
            _ROLL_HOOK()  # tests: a process killed here, the new file made, not published
        s = self._seg(new)
        # One store publishes the roll; the offset is re-derived by a repair if we die here.
        self._store(M_TAIL_OFF, SEG_HDR)
        self._store(M_TAIL_SEQ, new)
        if self._durability != "process":
            # the roll itself must survive power loss, or recovery would look at the old
            # tail and miss the durable records of the new one
            self._meta.flush()
            _fdatasync(self._meta_fd)
        return s

    def _file_mode(self) -> int:
        """The permission of new segment files: the meta file's (POSIX: a chmod of it
        applies to later segments); on Windows, whose files have no mode bits, the one
        given at creation."""
        if not FILES_HAVE_MODE_BITS:
            return int(struct.unpack_from("<I", self._meta, M_MODE)[0]) & 0o777
        return _file_mode(self._meta_fd)

    # ---- recovery --------------------------------------------------------------------

    def _recover(self, power_loss: bool) -> Optional[Recovery]:
        """Make the tail consistent (append lock held): scan the tail segment from its
        start, keep every record whose index and checksum hold, zero what follows."""
        committed = self._load(M_COMMITTED)
        seq = self._load(M_TAIL_SEQ)
        tail_path = os.path.join(self._path, _seg_name(seq))
        cleared = 0
        if power_loss and not self._segs:  # an open: nothing mapped yet
            cleared += _fix_size(tail_path, self._segment_size)
        s = self._seg(seq)
        start_off, start_index = SEG_HDR, s.first
        if not power_loss and committed > s.first:
            # A dead appender: every record below `committed` is complete, so start at the
            # last one (found through the offset table, O(1)) instead of the segment's
            # start; a table entry that does not hold falls back to the full scan.
            try:
                _o, payload, length, _k = _core.journal_find(s.map, s.first, committed - 1, 0, 0)
                start_off, start_index = payload + ((length + 7) & ~7), committed
            except LayoutError:
                pass
        end_off, end_index = _core.journal_scan(s.map, s.first, start_off, start_index, 2**64 - 1)
        count = end_index - s.first
        region_end = self._segment_size - 4 * count
        zero_end = region_end
        if not power_loss and end_off + REC_HDR <= region_end:
            # A dead appender wrote at most the one record it had reserved at end_off:
            # clear that (its length field bounds it), not the whole rest of the segment,
            # whose untouched pages reading would fault in.
            (length,) = struct.unpack_from("<I", s.map, end_off)
            zero_end = min(region_end, end_off + REC_HDR + ((length + 7) & ~7))
            zero_end -= (zero_end - end_off) % 8 if zero_end < region_end else 0
        cleared += int(_core.journal_zero(s.map, end_off, zero_end))
        retabled = 0
        if power_loss:
            # offset-table entries are flushed with their segment's roll, not per append:
            # the tail's may be lost or stale after power loss; the records define them
            retabled = int(_core.journal_retable(s.map, s.first, end_index))
        dropped = max(0, committed - end_index)
        self._store(M_TAIL_OFF, end_off)
        if end_index != committed:
            self._store(M_COMMITTED, end_index)
            if self._load(M_DURABLE) > end_index:
                self._store(M_DURABLE, end_index)
            _core.journal_wake(self._meta, M_NOTIFY, M_WAITERS)
        if retabled and self._durability != "process":
            _flush_segment(s)
        if not (dropped or cleared):
            return None
        if self._durability != "process":
            _flush_segment(s)
        return Recovery(records_dropped=dropped, bytes_cleared=cleared, last_index=end_index - 1)

    # ---- appending -------------------------------------------------------------------

    def append(self, data: Any) -> int:
        """Append a bytes-like object as one record; returns its index.  Returns once the
        record is as durable as the journal's mode promises.  ``MessageTooLargeError`` if
        it can never fit in a segment; ``NoSpaceError`` if a new segment file cannot be
        allocated."""
        return self._append(data, KIND_BYTES)

    def append_object(self, obj: Any) -> int:
        """Pickle ``obj`` (protocol 5, the encoding of ``Channel.send_object``) and append
        it; read it back with ``get_object``."""
        total, write = _codec.encode_object(obj)
        buf = bytearray(total)
        write(memoryview(buf))
        return self._append(buf, KIND_OBJECT)

    def append_array(self, array: Any) -> int:
        """Append a numpy array with its dtype, shape and order (the encoding of
        ``Channel.send_array``); read it back with ``get_array``."""
        total, write = _codec.encode_array(array, "append_array()")
        buf = bytearray(total)
        write(memoryview(buf))
        return self._append(buf, KIND_ARRAY)

    def _too_large(self, n: int) -> MessageTooLargeError:
        limit = int(_core.journal_max_payload(self._segment_size))
        return MessageTooLargeError(
            f"a record of {n} bytes does not fit in a segment of journal {self._path!r} "
            f"(at most {limit} bytes with segment_size={self._segment_size})"
        )

    def _append(self, data: Any, kind: int) -> int:
        try:
            return self._append_any(data, kind)
        except MessageTooLargeError:
            raise self._too_large(memoryview(data).nbytes) from None

    def _append_any(self, data: Any, kind: int) -> int:
        self._check_writable()
        if self._durability != "os":
            # the hot path: one C call locks, writes, commits, publishes and wakes
            meta = self._meta
            s = self._tail
            if s is None or self._segs.get(s.seq) is not s:
                # none yet, or _refresh closed it (truncate_before removed it meanwhile)
                s = self._seg(self._load(M_TAIL_SEQ))
            while True:
                index = int(_core.journal_append(meta, s.map, s.first, s.seq, data, kind))
                if index >= 0:
                    break
                if index == -3:  # its previous holder died: repair, then try again
                    try:
                        self._recover(power_loss=False)
                    finally:
                        self._unlock()
                elif index == -1:  # full: the general path rolls
                    index = self._append_locked(data, kind)
                    break
                s = self._seg(self._load(M_TAIL_SEQ))  # -2 (rolled) or after a repair
                self._set_tail(s)
            if s is not self._tail:
                self._set_tail(s)
            if self._durability == "os-batch":
                self._group_flush(index + 1)
            return index
        return self._append_locked(data, kind)

    def _append_locked(self, data: Any, kind: int) -> int:
        meta = self._meta
        self._lock()
        try:
            index = self._load(M_COMMITTED)
            seq = self._load(M_TAIL_SEQ)
            off = self._load(M_TAIL_OFF)
            s = self._segs.get(seq) or self._seg(seq)
            try:
                nxt = _core.journal_put(s.map, s.first, off, index, data, kind)
            except ChannelFull:  # this segment is full: roll
                s = self._roll(seq, index)
                off = SEG_HDR
                nxt = _core.journal_put(s.map, s.first, off, index, data, kind)
            self._store(M_TAIL_OFF, nxt)
            if self._durability == "os":
                _flush_range(s, off, nxt)
                self._store(M_COMMITTED, index + 1)
                _core.journal_store_max(self._meta, M_DURABLE, index + 1)
            else:
                self._store(M_COMMITTED, index + 1)
        finally:
            self._unlock()
        _core.journal_wake(meta, M_NOTIFY, M_WAITERS)
        if self._durability == "os-batch":
            self._group_flush(index + 1)
        return index

    @contextmanager
    def reserve(self, n: int) -> Iterator[memoryview]:
        """``with j.reserve(n) as buf:`` fill ``n`` bytes in place (zero copy); the record
        is committed on leaving the block and discarded on an exception.  The index is
        ``j.last`` after the block.  The append lock is held for the whole block: other
        appenders wait (readers do not), so keep it short.  Do not keep ``buf`` or a view
        of it past the block."""
        self._check_writable()
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise InvalidArgumentError(f"reserve() needs a size >= 0, not {n!r}")
        self._lock()
        committed = False
        try:
            index = self._load(M_COMMITTED)
            seq = self._load(M_TAIL_SEQ)
            off = self._load(M_TAIL_OFF)
            s = self._seg(seq)
            try:
                payload = _core.journal_reserve(s.map, s.first, off, index, n, KIND_BYTES)
            except MessageTooLargeError:
                raise self._too_large(n) from None
            except ChannelFull:
                s = self._roll(seq, index)
                off = SEG_HDR
                payload = _core.journal_reserve(s.map, s.first, off, index, n, KIND_BYTES)
            view = memoryview(s.map)[payload : payload + n]
            try:
                yield view
            except BaseException:
                view.release()
                _core.journal_zero(s.map, off, min(payload + ((n + 7) & ~7), self._segment_size))
                raise
            view.release()  # BufferError here: a view of it outlived the block
            nxt = _core.journal_commit(s.map, s.first, off, index)
            self._store(M_TAIL_OFF, nxt)
            if self._durability == "os":
                _flush_range(s, off, nxt)
            self._store(M_COMMITTED, index + 1)
            if self._durability == "os":
                _core.journal_store_max(self._meta, M_DURABLE, index + 1)
            committed = True
        finally:
            self._unlock()
        if committed:
            _core.journal_wake(self._meta, M_NOTIFY, M_WAITERS)
            if self._durability == "os-batch":
                self._group_flush(index + 1)

    # ---- durability ------------------------------------------------------------------

    def _flush_all(self, upto: int) -> None:
        """Make records [durable, upto) durable: one msync of the byte range they cover
        (from the first record not yet durable to the end of record upto-1); a segment
        that filled meanwhile is flushed whole with its offset table (see _flush_range)."""
        start = max(self._load(M_DURABLE), self._load(M_HEAD_INDEX))
        if start >= upto:
            return
        first_seg, last_seg = self._locate(start), self._locate(upto - 1)
        lo_off = _core.journal_find(first_seg.map, first_seg.first, start, 0, 1)[0]
        _o, payload, length, _k = _core.journal_find(last_seg.map, last_seg.first, upto - 1, 0, 1)
        hi_off = payload + ((length + 7) & ~7)
        for seq in range(first_seg.seq, last_seg.seq + 1):
            s = self._seg(seq)
            if seq == last_seg.seq:
                _flush_range(s, lo_off if seq == first_seg.seq else SEG_HDR, hi_off)
            else:
                _flush_segment(s)

    def _group_flush(self, upto: int) -> int:
        """Group commit: return once records below `upto` are durable.  Whoever finds no
        flush in progress (an flock on the meta file, released by the kernel if its
        holder dies) flushes everything committed so far, for every waiting appender."""
        with self._tlock:
            while True:
                durable = self._load(M_DURABLE)
                if durable >= upto:
                    return durable
                _flock(self._meta_fd, True)
                try:
                    durable = self._load(M_DURABLE)
                    if durable >= upto:
                        return durable
                    target = self._load(M_COMMITTED)
                    # the meta file is not flushed: the durable index it keeps is advice,
                    # and recovery after power loss re-derives the tail from the records
                    self._flush_all(target)
                    _core.journal_store_max(self._meta, M_DURABLE, target)
                    return target
                finally:
                    _flock(self._meta_fd, False)

    def sync(self) -> int:
        """Force a durability point in any mode: every record committed so far reaches
        stable storage.  Returns the last durable index (-1 if none)."""
        self._check_writable()
        return self._group_flush(self._load(M_COMMITTED)) - 1

    # ---- reading ---------------------------------------------------------------------

    def __len__(self) -> int:
        """The number of records ever appended (the next index); truncation does not
        lower it."""
        self._check()
        return self._load(M_COMMITTED)

    @property
    def first(self) -> int:
        """The first index still held (0 unless ``truncate_before`` removed files)."""
        self._check()
        return self._load(M_HEAD_INDEX)

    @property
    def last(self) -> int:
        """The last committed index (-1 if empty)."""
        return len(self) - 1

    def _find(self, index: int) -> tuple[_Seg, int, int, int]:
        self._check()
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"journal indices are ints, not {type(index).__name__}")
        committed = self._load(M_COMMITTED)
        if index < 0:
            index += committed
        if not 0 <= index < committed:
            raise IndexError(f"journal index {index} out of range (0..{committed - 1})")
        if index < self._load(M_HEAD_INDEX):
            raise IndexError(f"journal index {index} was removed by truncate_before")
        s = self._locate(index)
        _off, payload, length, kind = _core.journal_find(s.map, s.first, index, 0, 1)
        return s, payload, length, kind

    def __getitem__(self, index: int) -> bytes:
        """The payload of record ``index`` (a copy; negative indices count from the end).
        ``IndexError`` if it is not committed yet or was removed; ``LayoutError`` if the
        record on disk does not hold its checksum."""
        s, payload, length, _kind = self._find(index)
        return s.map[payload : payload + length]

    def view(self, index: int) -> memoryview:
        """Record ``index`` as a read-only view into the mapping (zero copy)."""
        s, payload, length, _kind = self._find(index)
        return memoryview(s.map)[payload : payload + length].toreadonly()

    def kind(self, index: int) -> str:
        """How record ``index`` was appended: ``"bytes"``, ``"object"`` or ``"array"``."""
        return _KIND_NAMES.get(self._find(index)[3], "unknown")

    def get_object(self, index: int) -> object:
        """Unpickle a record appended with ``append_object``.  Unpickling can run code:
        only for journals whose appenders you trust."""
        s, payload, length, kind = self._find(index)
        if kind != KIND_OBJECT:
            raise InvalidArgumentError(f"journal record {index} is not an object record")
        data, bufs = _codec.decode_object(memoryview(s.map)[payload : payload + length])
        return pickle.loads(data, buffers=bufs)

    def get_array(self, index: int) -> Any:
        """A read-only copy of an array appended with ``append_array``."""
        s, payload, length, kind = self._find(index)
        if kind != KIND_ARRAY:
            raise InvalidArgumentError(f"journal record {index} is not an array record")
        return _codec.copy_array(memoryview(s.map)[payload : payload + length])

    def reader(self, name: Optional[str] = None, *, start: Start = "begin") -> JournalReader:
        """A reader from ``start``: ``"begin"`` (the first index held), ``"end"`` (only
        records appended from now on), ``"committed"`` (a named reader's stored position;
        ``"begin"`` for a new name) or an index.  A named reader (``name``, up to 48 bytes
        of UTF-8) that exists already resumes at its stored position whatever ``start``
        says: one after its last ``commit(i)``."""
        self._check()
        return JournalReader(self, name, start)

    # ---- named readers ---------------------------------------------------------------

    def _reader_slot(self, name: str, create: bool, position: int) -> int:
        raw = name.encode()
        if not raw or len(raw) > READER_NAME_MAX or b"\0" in raw:
            raise InvalidArgumentError(
                f"a reader name is 1 to {READER_NAME_MAX} bytes of UTF-8 without NUL, not {name!r}"
            )
        key = raw.ljust(READER_NAME_MAX, b"\0")
        free = -1
        for k in range(READER_SLOTS):
            off = M_READERS + k * READER_SIZE
            if self._load(off + 56) == 1:
                if bytes(self._meta[off : off + READER_NAME_MAX]) == key:
                    return off
            elif free < 0:
                free = off
        if not create:
            return -1
        self._check_writable()
        if free < 0:
            raise InvalidArgumentError(
                f"journal {self._path!r}: all {READER_SLOTS} named-reader slots are in use"
            )
        self._meta[free : free + READER_NAME_MAX] = key
        self._store(free + 48, position)
        self._store(free + 56, 1)  # published last: the name and position are in place
        return free

    def readers(self) -> tuple[ReaderPosition, ...]:
        """The named readers with their positions and lag."""
        self._check()
        committed = self._load(M_COMMITTED)
        out = []
        for k in range(READER_SLOTS):
            off = M_READERS + k * READER_SIZE
            if self._load(off + 56) != 1:
                continue
            raw = bytes(self._meta[off : off + READER_NAME_MAX]).rstrip(b"\0")
            name = raw.decode("utf-8", "replace")
            pos = self._load(off + 48)
            out.append(ReaderPosition(name, pos, max(0, committed - pos)))
        return tuple(out)

    def remove_reader(self, name: str) -> bool:
        """Forget a named reader (its position no longer holds back ``truncate_before``).
        False if there was none of that name."""
        self._check_writable()
        self._lock()
        try:
            off = self._reader_slot(name, False, 0)
            if off < 0:
                return False
            self._store(off + 56, 0)
            self._meta[off : off + READER_SIZE] = bytes(READER_SIZE)
            return True
        finally:
            self._unlock()

    # ---- retention and inspection ----------------------------------------------------

    def truncate_before(self, index: int) -> int:
        """Delete whole segment files holding only records below
        ``min(index, every named reader's position)``; the tail segment is never removed.
        Returns the new first index held."""
        self._check_writable()
        self._lock()
        try:
            limit = min([index, self._load(M_COMMITTED)] + [r.position for r in self.readers()])
            self._refresh()
            head = self._load(M_HEAD_SEQ)
            tail = self._load(M_TAIL_SEQ)
            new_head = head
            for k, seq in enumerate(self._seqs):
                if seq == tail or k + 1 >= len(self._seqs):
                    break
                if self._firsts[k + 1] <= limit:
                    new_head = self._seqs[k + 1]
                else:
                    break
            if new_head == head:
                return self._load(M_HEAD_INDEX)
            first = self._seg(new_head).first
            # Published before the files go: a reader never looks for a removed file.
            self._store(M_HEAD_INDEX, first)
            self._store(M_HEAD_SEQ, new_head)
            for seq in range(head, new_head):
                s = self._segs.pop(seq, None)
                if s is not None:
                    s.close()
                _remove_segment(self._path, seq)
            if not MAPPED_FILES_REMOVABLE:
                _sweep_below(self._path, new_head)
            self._refresh()
            return first
        finally:
            self._unlock()

    def stats(self) -> JournalStatistics:
        """First, last and durable index, files, bytes, and the named readers' lag."""
        self._check()
        head = self._load(M_HEAD_SEQ)
        tail = self._load(M_TAIL_SEQ)
        files = tail - head + 1
        return JournalStatistics(
            first=self._load(M_HEAD_INDEX),
            last=self._load(M_COMMITTED) - 1,
            durable=self._load(M_DURABLE) - 1,
            files=files,
            bytes=files * self._segment_size + META_SIZE,
            segment_size=self._segment_size,
            durability=self._durability,
            readers=self.readers(),
        )

    # ---- lifetime --------------------------------------------------------------------

    def _release(self) -> None:
        if self._appender is not None:
            self._appender.release()  # its mmaps are closed next
            self._appender = None
        self.__dict__.pop("append", None)
        for s in self._segs.values():
            s.close()
        self._segs.clear()
        try:
            self._meta.close()
        except BufferError:
            pass
        os.close(self._meta_fd)

    def close(self) -> None:
        """Unmap and close this handle's files (the journal stays).  Views handed out
        keep their mapping alive until they are released.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._release()

    def __del__(self) -> None:
        # A handle dropped without close(): give its descriptors back (the mappings go
        # with their last view).  Never raises: this runs in the garbage collector.
        try:
            if not getattr(self, "_closed", True):
                self.close()
        except Exception:
            pass

    def unlink(self) -> None:
        """Remove the journal's directory and files (handles still open keep their
        mappings; new opens fail)."""
        _remove_tree(self._path)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._closed:
            return f"<Journal {self._path!r} closed>"
        return f"<Journal {self._path!r} {self._durability} records={len(self)}>"


_KIND_NAMES = {KIND_BYTES: "bytes", KIND_OBJECT: "object", KIND_ARRAY: "array"}


class JournalReader:
    """Reads a journal in order from a position, blocking for new records.

    ``for index, view in reader:`` yields each record as a read-only view into the
    mapping (copy what must outlive the next step), and blocks when it reaches the tail
    until the next append (a futex wait, no polling for a read-write handle; a read-only
    handle, which cannot count itself as a sleeper, re-checks every 2 ms).  ``async for``
    works too.  A named reader keeps its position in the journal: ``commit(i)`` stores
    "everything up to i is done", and a reader of that name made later (after a crash,
    say) resumes at i + 1.  If ``truncate_before`` removed the record an unnamed reader
    would read next, ``next()`` raises IndexError (``seek(journal.first)`` goes on).
    """

    def __init__(self, journal: Journal, name: Optional[str], start: Start) -> None:
        self._j = journal
        self._name = name
        self._slot = -1
        j = journal
        if name is not None:
            if not isinstance(name, str):
                raise TypeError(f"a reader name is a str, not {type(name).__name__}")
            off = j._reader_slot(name, False, 0)
            if off < 0:
                j._check_writable()
                pos = self._start_of(start)
                j._lock()
                try:
                    off = j._reader_slot(name, True, pos)
                finally:
                    j._unlock()
            self._slot = off
            self._pos = j._load(off + 48)
        else:
            if start == "committed":
                raise InvalidArgumentError("start='committed' needs a named reader")
            self._pos = self._start_of(start)
        self._seg: Optional[_Seg] = None
        self._hint = 0

    def _start_of(self, start: Start) -> int:
        j = self._j
        if start in ("begin", "committed"):
            return j._load(M_HEAD_INDEX)
        if start == "end":
            return j._load(M_COMMITTED)
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise InvalidArgumentError(
                f"start must be 'begin', 'end', 'committed' or an index >= 0, not {start!r}"
            )
        return start

    @property
    def name(self) -> Optional[str]:
        """The reader's name (None: not stored in the journal)."""
        return self._name

    @property
    def position(self) -> int:
        """The index the next ``next()`` returns."""
        return self._pos

    def seek(self, index: int) -> None:
        """Continue from ``index`` (does not change the stored position: ``commit`` does)."""
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise InvalidArgumentError(f"seek() needs an index >= 0, not {index!r}")
        self._pos = index
        self._seg = None

    def commit(self, index: Optional[int] = None) -> None:
        """Store in the journal that records up to ``index`` (default: the last one
        returned) are done: a reader of this name made later resumes at ``index + 1``."""
        if self._slot < 0:
            raise InvalidArgumentError("commit() needs a named reader (journal.reader(name=...))")
        self._j._check_writable()
        if index is None:
            index = self._pos - 1
        if isinstance(index, bool) or not isinstance(index, int) or index < -1:
            raise InvalidArgumentError(f"commit() needs an index >= -1, not {index!r}")
        self._j._store(self._slot + 48, index + 1)

    def _try(self) -> Optional[tuple[int, memoryview]]:
        j = self._j
        j._check()
        pos = self._pos
        if pos >= j._load(M_COMMITTED):
            return None
        head = j._load(M_HEAD_INDEX)
        if pos < head:
            raise IndexError(f"journal index {pos} was removed by truncate_before")
        s = self._seg
        if s is None or pos < s.first or j._segs.get(s.seq) is not s:
            s = j._locate(pos)
            self._hint = 0
        try:
            _off, payload, length, _kind = _core.journal_find(s.map, s.first, pos, self._hint, 0)
        except LayoutError:
            # past this segment's last record: the next segment (a roll) holds it
            s = j._locate(pos)
            _off, payload, length, _kind = _core.journal_find(s.map, s.first, pos, 0, 1)
        self._seg = s
        self._hint = payload + ((length + 7) & ~7)
        self._pos = pos + 1
        return pos, memoryview(s.map)[payload : payload + length].toreadonly()

    def next(self, timeout: Optional[float] = None) -> tuple[int, memoryview]:
        """The next record as (index, read-only view), waiting up to ``timeout`` seconds
        (None: forever) for it to be appended; ``WaitTimeout`` (a TimeoutError) then."""
        import time

        j = self._j
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            word = j._load(M_NOTIFY) & 0xFFFFFFFF  # read before the check: no lost wake-up
            got = self._try()
            if got is not None:
                return got
            left = None
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WaitTimeout(f"no journal record {self._pos} within {timeout} s")
            _core.journal_wait(j._meta, M_NOTIFY, M_WAITERS, word, left)

    def _batch(self) -> list[tuple[int, memoryview]]:
        """The committed records from the position on that one segment holds, up to 256,
        from one C call (journal_batch); empty at the tail."""
        j = self._j
        j._check()
        pos = self._pos
        if pos >= j._load(M_COMMITTED):
            return []
        if pos < j._load(M_HEAD_INDEX):
            raise IndexError(f"journal index {pos} was removed by truncate_before")
        s = self._seg
        if s is None or pos < s.first or j._segs.get(s.seq) is not s:
            s = j._locate(pos)
            self._hint = 0
        recs, hint = _core.journal_batch(j._meta, s.map, s.first, pos, self._hint, 256)
        if not recs:
            # pos is committed but not in this segment: the next one (a roll) holds it
            s = j._locate(pos)
            recs, hint = _core.journal_batch(j._meta, s.map, s.first, pos, 0, 256)
            if not recs:  # not found through the table: scan, or LayoutError if damaged
                self._seg, self._hint = None, 0
                got = self._try()
                self._pos = pos  # the caller's loop moves it as it yields
                return [got] if got is not None else []
        self._seg = s
        self._hint = hint
        return recs

    def __iter__(self) -> Iterator[tuple[int, memoryview]]:
        """Yield (index, read-only view) forever, blocking at the tail.  Records come in
        batches from one C call each (every committed record one segment holds, up to
        256); the position moves one record per step, so ``commit()`` and ``position``
        inside the loop mean what they mean with ``next()``."""
        j = self._j
        while True:
            word = j._load(M_NOTIFY) & 0xFFFFFFFF  # read before the check: no lost wake-up
            batch = self._batch()
            if not batch:
                _core.journal_wait(j._meta, M_NOTIFY, M_WAITERS, word, None)
                continue
            for rec in batch:
                if rec[0] != self._pos:
                    break  # seek() or next() meanwhile: fetch again from the new position
                self._pos = rec[0] + 1
                yield rec

    def __aiter__(self) -> AsyncIterator[tuple[int, memoryview]]:
        """``async for index, view in reader:`` (never blocks the event loop)."""
        return self

    async def __anext__(self) -> tuple[int, memoryview]:
        """The next record, for ``async for``: never blocks the event loop."""
        j = self._j

        def block(t: float) -> object:
            word = j._load(M_NOTIFY) & 0xFFFFFFFF
            if self._pos < j._load(M_COMMITTED):
                return True
            return _core.journal_wait(j._meta, M_NOTIFY, M_WAITERS, word, t)

        return await wait_until(self._try, block, None, what="journal reader")

    def __repr__(self) -> str:
        return f"<JournalReader {self._name!r} at {self._pos}>"


# ---- files ---------------------------------------------------------------------------


def _allocate(fd: int, size: int, what: str) -> None:
    """Reserve the file's blocks now: a full disk fails here, never as SIGBUS later."""
    if not hasattr(os, "posix_fallocate"):
        # Windows: the platform layer (FileAllocationInfo, then SetEndOfFile's end of file)
        try:
            _core.journal_allocate(fd, size)
        except NoSpaceError as exc:
            raise _no_space(exc, what) from None
        return
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _no_space(exc, what) from None
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
        os.ftruncate(fd, size)  # a file system without fallocate (rare): best effort


def _make_segment(path: str, seq: int, first: int, size: int, mode: int, durable: bool) -> None:
    """Write segment `seq` complete under a temporary name, then rename it in place."""
    name = os.path.join(path, _seg_name(seq))
    tmp = name + ".tmp"
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | _O_CLOEXEC | _O_NOFOLLOW, mode)
    try:
        _restrict(tmp, fd, mode)
        try:
            _allocate(fd, size, f"journal {path!r}: new segment file")
            with mmap.mmap(fd, size) as m:
                _core.journal_seg_init(m, seq, first)
                if durable:
                    m.flush(0, _PAGE)
            if durable:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            fd = -1
            os.unlink(tmp)
            raise
    finally:
        if fd >= 0:
            os.close(fd)
    os.replace(tmp, name)  # over a file left by an appender that died mid-roll
    if durable:
        _fsync_dir(path)


def _file_mode(fd: int) -> int:
    return os.fstat(fd).st_mode & 0o777


def _fix_size(name: str, size: int) -> int:
    """A tail file cut short or grown by garbage (power loss): back to `size` bytes.
    Returns the bytes cut off."""
    try:
        fd = os.open(name, os.O_RDWR | _O_CLOEXEC | _O_NOFOLLOW)
    except FileNotFoundError:
        raise LayoutError(f"journal segment {name!r} is missing") from None
    try:
        have = os.fstat(fd).st_size
        if have == size:
            return 0
        if have < SEG_HDR:
            raise LayoutError(f"journal segment {name!r} lost its header ({have} bytes)")
        os.ftruncate(fd, size)
        if have < size:
            _allocate(fd, size, f"journal segment {name!r}")
            return 0
        return have - size
    finally:
        os.close(fd)


def _flush_range(s: _Seg, start: int, end: int) -> None:
    """Make bytes [start, end) of segment `s` durable: one msync(MS_SYNC) of their pages.

    On Linux, msync(MS_SYNC) of a shared file mapping is vfs_fsync_range(file, range,
    datasync=1) (mm/msync.c): the same as fdatasync restricted to the range, including the
    metadata needed to read the data back (an unwritten extent of the preallocated file
    converted to written).  The file's size never changes (segments are preallocated), so an
    fdatasync after it would flush nothing more.  The offset-table entry at the other end of
    the file is not flushed: the table is an index the records define, rebuilt by recovery
    for the tail segment (journal_retable) and flushed whole when a segment rolls."""
    if end <= start:
        return
    lo = start - start % _PAGE
    s.map.flush(lo, end - lo)
    if not MSYNC_IS_DATASYNC:
        _fdatasync(s.fd)  # e.g. Windows: FlushViewOfFile does not flush the disk's cache


def _flush_segment(s: _Seg) -> None:
    """Make a whole segment durable (records and offset table)."""
    s.map.flush()
    if not MSYNC_IS_DATASYNC:
        _fdatasync(s.fd)


_MADV_POPULATE_READ = 22  # linux/mman.h (Linux 5.14); Python 3.11's mmap does not name it


def _populate(m: mmap.mmap, start: int, length: int) -> None:
    """Fault pages [start, start+length) of a mapping in now, without touching them one
    by one; best effort (advice only)."""
    if length <= 0 or not hasattr(m, "madvise"):
        return
    try:
        m.madvise(_MADV_POPULATE_READ, start, length)
    except OSError:
        try:
            m.madvise(mmap.MADV_WILLNEED, start, length)
        except (OSError, AttributeError):
            pass


def _restrict(path: str, fd: Optional[int], mode: int) -> None:
    """Give a new file or directory exactly `mode` (umask-proof).  Windows: the owner-only
    DACL (plus Everyone for group/other bits) that every mapshare object gets."""
    if not FILES_HAVE_MODE_BITS:
        _core.journal_restrict(path, mode)
    elif fd is not None:
        os.fchmod(fd, mode)
    else:
        os.chmod(path, mode)


def _flock(fd: int, exclusive: bool) -> None:
    """The group-commit flush lock: a whole-file lock on the meta file (flock; LockFileEx
    on Windows), which the OS releases if its holder dies (no timeout)."""
    if _fcntl is None:
        _core.journal_flock(fd, exclusive)
        return
    _fcntl.flock(fd, _fcntl.LOCK_EX if exclusive else _fcntl.LOCK_UN)


def _remove_segment(path: str, seq: int) -> None:
    """Remove a segment file below the head.  Windows refuses while another process
    still maps it (its reader moves on at its next refresh): it stays, and a later
    truncate_before sweeps it (``_sweep_below``); nothing reads below the head."""
    try:
        os.unlink(os.path.join(path, _seg_name(seq)))
    except FileNotFoundError:
        pass
    except PermissionError:
        if MAPPED_FILES_REMOVABLE:
            raise


def _sweep_below(path: str, head: int) -> None:
    """Windows: remove segment files left below the head by an earlier truncate_before."""
    for entry in os.listdir(path):
        m = _SEG_RE.match(entry)
        if m and int(m.group(1), 16) < head:
            _remove_segment(path, int(m.group(1), 16))


def _fsync_dir(path: str) -> None:
    if not hasattr(os, "O_DIRECTORY"):
        return  # Windows: a rename is made durable by the file system's own journal
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | _O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_tree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
