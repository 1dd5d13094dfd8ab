"""Latest: the newest value of something (a pose, a config, a model version) in one
segment, read without locks and never torn.

A writer publishes whole values with ``set``; readers ``get`` the newest complete one
with its version.  The C core (csrc/latest.c) keeps a few buffers under a seqlock: the
writer fills the buffer after the published one and then publishes it; a reader copies
the published buffer and checks its sequence word did not move, retrying if it did.
Readers never write shared memory and never block the writer; writers are serialised by
a robust lock, so one killed mid-write leaves the last complete value and the next
writer simply takes over.  The protocol: docs/design/layout.md, "Latest".
"""

from __future__ import annotations

import errno
import pickle
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, cast

from . import _codec, _core
from ._aio import wait_until
from ._errors import (
    LayoutError,
    MapshareError,
    MessageKindError,
    MessageTooLargeError,
    PermissionDeniedError,
    WaitTimeout,
)
from ._options import INIT_WAIT, Access, Lifetime
from ._segment import Segment

if TYPE_CHECKING:
    import numpy as np
    from typing_extensions import Self

__all__ = ["Latest", "LatestStatistics"]

_KIND_NAMES = _codec.KIND_NAMES


def _user_area(max_size: int, buffers: int) -> int:
    """Bytes of user area a slot needs: ``buffers`` buffers of a 64-byte header plus
    ``max_size`` rounded up to 64 (csrc/latest.c ms_latest_area_size)."""
    return buffers * (_core.LATEST_BUF_HEADER + (max_size + 63) // 64 * 64)


# Bytes of a value read to find an array's header (dtype, shape): most headers fit, a
# longer one is read again whole.
_GET_ARRAY_HEAD = 256


class _LatestSegment(Segment):
    _kind = _core.KIND_LATEST


@dataclass(frozen=True)
class LatestStatistics:
    """The state of a latest-value slot, read from shared memory."""

    version: int
    """The newest version: 0 before the first ``set``, then one more per ``set``."""
    max_size: int
    """Largest value, in bytes."""
    size: int
    """Bytes of the newest value."""
    kind: str
    """How the newest value is encoded: ``"bytes"`` (``set``), ``"object"``
    (``set_object``) or ``"array"`` (``set_array``)."""
    buffers: int
    """Value buffers the slot rotates through."""
    waiters: int
    """Threads asleep in ``wait_for_update`` now."""
    writer_deaths: int
    """Writers that died holding the write lock (killed mid-``set``); each left the
    previous value in place."""


class Latest(_core.Latest):
    """A slot holding the newest value of something, in shared memory.

    ``Latest.create(name, max_size)`` makes one for values of up to ``max_size`` bytes;
    any process ``Latest.open(name)``s it.  ``set(data)`` publishes a new value and
    returns its version (dense from 1; version 0 is the empty value a new slot holds);
    ``get()`` returns ``(bytes, version)`` of the newest complete value.

    Readers never write shared memory, never take a lock and never block the writer: a
    read that raced a write retries, so it never returns a torn value.  Writers are
    serialised by a robust lock; one killed mid-``set`` leaves readers the previous value
    and the next writer takes over.  Versions never go backwards.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError("use Latest.create(), Latest.open() or Latest.open_or_create()")

    # set, get, version, max_size and buffers are the C members of _core.Latest: one C
    # call each, no Python frame in between.

    _segment: Segment
    # waits in flight on this handle (threads inside _wait): close() ends them first
    _waits: list[None]

    @classmethod
    def _wrap(cls, seg: Segment, spin: Optional[float]) -> Self:
        try:
            self = cast("Self", _core.Latest.__new__(cls, seg._core))
        except BaseException:
            seg.close()
            raise
        self._segment = seg
        self._waits = []
        if spin is not None:
            seg.spin = spin
        return self

    @staticmethod
    def _layout(max_size: int) -> tuple[int, tuple[int, int]]:
        if isinstance(max_size, bool) or not isinstance(max_size, int):
            raise TypeError(f"max_size must be an int, not {type(max_size).__name__}")
        if not 0 < max_size <= _core.LATEST_SIZE_MAX:
            raise ValueError(
                f"max_size must be between 1 and {_core.LATEST_SIZE_MAX} bytes, "
                f"not {max_size!r}"
            )
        buffers = _core.LATEST_BUFFERS
        return _user_area(max_size, buffers), (max_size, buffers)

    @classmethod
    def create(
        cls, name: str, max_size: int, *, mode: int = 0o600, lifetime: Lifetime = "shared",
        global_namespace: bool = False, spin: Optional[float] = None,
    ) -> Self:
        """Create a slot for values of up to ``max_size`` bytes (it takes about three
        times that: the buffers a reader and the writer rotate through).  It starts at
        version 0 holding the empty value ``b""``.  The keywords mean what they mean for
        ``Segment.create``; ``spin``: seconds ``wait_for_update`` busy-waits before
        sleeping (default 50 µs)."""
        size, init = cls._layout(max_size)
        seg = _LatestSegment._create(
            name, size, path=None, mode=mode, lifetime=lifetime, init=init,
            global_namespace=global_namespace,
        )
        return cls._wrap(seg, spin)

    @classmethod
    def open(
        cls, name: str, *, access: Access = "rw", allow_foreign: bool = False,
        global_namespace: bool = False, wait: Optional[float] = 0,
        init_timeout: float = INIT_WAIT, spin: Optional[float] = None,
    ) -> Self:
        """Open an existing slot (``LayoutError`` if the name is not one).

        ``access``: ``"rw"`` (the default: readers and writers alike) or ``"r"``: the
        values are mapped read-only, ``get``, ``view``, ``version`` and
        ``wait_for_update`` work, and ``set``, ``set_object`` and ``set_array`` raise
        ``PermissionDeniedError`` (nothing is written).  The other keywords mean what
        they mean for ``Segment.open``: ``wait`` waits that many seconds for the name to
        appear (None: forever), ``allow_foreign`` trusts a slot of another user."""
        if access not in ("r", "rw"):
            raise ValueError(f"access must be 'r' or 'rw', not {access!r}")
        seg = _LatestSegment.open(
            name, access=access, allow_foreign=allow_foreign,
            global_namespace=global_namespace, wait=wait, init_timeout=init_timeout,
        )
        return cls._wrap(seg, spin)

    @classmethod
    def open_or_create(
        cls, name: str, max_size: int, *, mode: int = 0o600, lifetime: Lifetime = "shared",
        allow_foreign: bool = False, global_namespace: bool = False,
        init_timeout: float = INIT_WAIT, spin: Optional[float] = None,
    ) -> Self:
        """Open the slot, or create it; safe when many processes race.  ``LayoutError``
        if it exists with another ``max_size``."""
        size, init = cls._layout(max_size)
        seg = _LatestSegment._open_or_create(
            name, size, path=None, mode=mode, lifetime=lifetime, init=init,
            init_timeout=init_timeout, allow_foreign=allow_foreign,
            global_namespace=global_namespace,
        )
        self = cls._wrap(seg, spin)
        if self.max_size != max_size:
            found = self.max_size
            self.close()
            raise LayoutError(
                f"existing latest {name!r} has max_size={found}; asked for {max_size}"
            )
        return self

    # ---- attributes ----------------------------------------------------------------

    @property
    def name(self) -> str:
        """The slot's name."""
        return self._segment.name

    @property
    def access(self) -> str:
        """``"rw"``, or ``"r"`` for a read-only handle (``Latest.open(access="r")``)."""
        return self._segment.access

    @property
    def segment(self) -> Segment:
        """The segment holding the slot."""
        return self._segment

    @property
    def spin(self) -> float:
        """Seconds ``wait_for_update`` busy-waits before sleeping."""
        return self._segment.spin

    @spin.setter
    def spin(self, seconds: float) -> None:
        self._segment.spin = seconds

    # ---- encoded values --------------------------------------------------------------

    def _set_encoded(self, total: int, write: _codec.Writer, kind: int) -> int:
        if self._segment.access != "rw":
            # refused before encoding (set() itself is refused by the C core)
            raise PermissionDeniedError(
                errno.EACCES, f"latest {self.name!r}: a read-only Latest cannot be set"
            )
        if total > self.max_size:
            raise MessageTooLargeError(
                f"latest {self.name!r}: the encoded value of {total} bytes is larger "
                f"than max_size={self.max_size}"
            )
        # Encoded into private memory first, then published by one C call: the writer
        # must not hold the write lock while Python code (pickling, numpy) runs, or a
        # slow encoder would stall every other writer.  That costs a second copy.
        buf = bytearray(total)
        write(memoryview(buf))
        version: int = self._set_kind(buf, kind)
        return version

    def _get_of_kind(self, kind: int, call: str) -> tuple[bytes, int]:
        data, version, found = self._get_kind()
        if found != kind:
            exc = MessageKindError(
                f"{call} found a value of kind {_KIND_NAMES.get(found, str(found))!r} "
                f"(version {version}); get() reads any kind as bytes"
            )
            exc.kind = _KIND_NAMES.get(found, str(found))
            raise exc
        return data, version

    def set_object(self, obj: object) -> int:
        """Publish a picklable object (protocol 5, encoded as ``Channel.send_object``
        does); returns its version."""
        total, write = _codec.encode_object(obj)
        return self._set_encoded(total, write, _codec.KIND_OBJECT)

    def get_object(self) -> tuple[Any, int]:
        """``(object, version)`` of the newest value, which ``set_object`` must have
        written (``MessageKindError`` otherwise).  Unpickles: trusted writers only."""
        data, version = self._get_of_kind(_codec.KIND_OBJECT, "get_object()")
        payload, bufs = _codec.decode_object(memoryview(data))
        return pickle.loads(payload, buffers=bufs), version

    def set_array(self, array: Any) -> int:
        """Publish a numpy array with its dtype, shape and order (as
        ``Channel.send_array``); returns its version."""
        total, write = _codec.encode_array(array, "set_object()")
        return self._set_encoded(total, write, _codec.KIND_ARRAY)

    def get_array(self) -> tuple[np.ndarray, int]:
        """``(array, version)``: a read-only copy of the newest value, which
        ``set_array`` must have written (``MessageKindError`` otherwise)."""
        import numpy as np

        # One copy: the value's header is read first, the result allocated from it, and
        # the data copied from the slot straight into the result.  The whole of it is
        # one seqlock read spanning three C calls: _peek takes the buffer's sequence
        # word, _copy_into checks it again after the data copy, and anything read in
        # between (the header) belongs to that value only if it did not move.  A value
        # replaced meanwhile is read again (never torn); a header that fails to parse is
        # corrupt only if the value did not move either.
        core = self._segment._core
        started = 0.0
        while True:
            offset, length, version, kind, buffer, seq = self._peek()
            try:
                if kind != _codec.KIND_ARRAY:
                    raise MessageKindError(
                        f"get_array() found a value of kind "
                        f"{_KIND_NAMES.get(kind, str(kind))!r} (version {version}); "
                        "get() reads any kind as bytes"
                    )
                head = core.read(min(length, _GET_ARRAY_HEAD), offset)
                need = _codec.array_head_size(head)
                if len(head) < need <= length:
                    head = core.read(need, offset)
                dtype, shape, order, off = _codec.parse_array_head(head, length)
            except (LayoutError, MessageKindError) as exc:
                if not self._copy_into(buffer, seq, 0, None):
                    continue  # the value moved under the header read: not corrupt
                if isinstance(exc, MessageKindError):
                    exc.kind = _KIND_NAMES.get(kind, str(kind))
                raise
            a = np.empty(shape, dtype, order=order)
            if self._copy_into(buffer, seq, off, a):
                a.setflags(write=False)
                return a, version
            # replaced during the copy: read the newer value, for at most the budget the
            # C read has (MS_LATEST_READ_BUDGET_NS)
            now = time.monotonic()
            if not started:
                started = now
            elif now - started > 1.0:
                raise WaitTimeout(
                    f"latest {self.name!r}: no complete copy of the value could be made: "
                    "it was replaced faster than it could be copied for 1 s"
                )

    # ---- zero copy -------------------------------------------------------------------

    @contextmanager
    def view(self) -> Iterator[memoryview]:
        """``with latest.view() as mv:`` a read-only memoryview of the newest value in
        shared memory, copied nowhere.  The writer is never held back: if it replaced
        the value while the block ran, leaving the block raises ``Overwritten`` (what
        the block read may then mix two values).  ``view_version()`` also gives the
        version viewed.  Closing the handle inside the block keeps the memory mapped,
        but the block's end then raises ``ValueError`` (nothing left to validate with)."""
        with self.view_version() as (mv, _version):
            yield mv

    @contextmanager
    def view_version(self) -> Iterator[tuple[memoryview, int]]:
        """Like ``view()``, yielding ``(memoryview, version)``."""
        offset, length, version, _kind, buffer, seq = self._peek()
        # A read-only window on this handle's own mapping: whatever is derived from the
        # memoryview (a slice, np.frombuffer) keeps the mapping alive, even past close().
        mv = memoryview(self._segment._core.subview(offset, length))
        try:
            yield mv, version
        finally:
            mv.release()
        self._check(buffer, seq)

    # ---- waiting ---------------------------------------------------------------------

    def wait_for_update(self, since: int, timeout: Optional[float] = None) -> int:
        """Wait until the version is greater than ``since`` (the version of the value
        you have); returns the version now.  ``WaitTimeout`` after ``timeout`` seconds
        (None: forever).  Costs the writer nothing while nobody waits."""
        if isinstance(since, bool) or not isinstance(since, int) or since < 0:
            raise ValueError(f"since must be a version >= 0, not {since!r}")
        self._waits.append(None)
        try:
            version: int = self._wait(since, timeout)
        finally:
            self._waits.pop()
        return version

    async def wait_for_update_async(self, since: int, timeout: Optional[float] = None) -> int:
        """``wait_for_update`` for asyncio (the event loop is never blocked)."""
        if isinstance(since, bool) or not isinstance(since, int) or since < 0:
            raise ValueError(f"since must be a version >= 0, not {since!r}")

        def attempt() -> Optional[int]:
            v: int = self.version
            return v if v > since else None

        def block(seconds: float) -> None:
            # counted, so that close() after a cancelled call ends this worker's wait
            self._waits.append(None)
            try:
                self._wait(since, seconds)
            except WaitTimeout:
                pass
            finally:
                self._waits.pop()

        return await wait_until(attempt, block, timeout, what="wait_for_update")

    # ---- the rest --------------------------------------------------------------------

    def statistics(self) -> LatestStatistics:
        """The slot's version, sizes and counters."""
        version, max_size, size, kind, buffers, waiters, deaths = self._statistics()
        return LatestStatistics(
            version=version, max_size=max_size, size=size,
            kind=_KIND_NAMES.get(kind, str(kind)), buffers=buffers, waiters=waiters,
            writer_deaths=deaths,
        )

    def close(self) -> None:
        """Detach this handle (the slot lives on for the others).  A wait on it in
        another thread (or one that a cancelled ``wait_for_update_async`` left in a
        worker thread) ends at once with ``ValueError``."""
        if not self._segment.closed:
            if self._waits:
                self._abort_waits()
                deadline = time.monotonic() + 2.0
                while self._waits and time.monotonic() < deadline:
                    time.sleep(0.0005)
            self._detach()
        self._segment.close()

    def unlink(self) -> None:
        """Remove the name (handles already open keep working)."""
        self._segment.unlink()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> tuple[Any, ...]:
        if self.access == "rw":
            return (Latest.open, (self.name,))
        return (_reopen, (self.name, self.access))

    def __repr__(self) -> str:
        try:
            s = self.statistics()
        except ValueError:
            return f"<Latest {self.name!r} closed>"
        except MapshareError as exc:
            return f"<Latest {self.name!r} ({type(exc).__name__})>"
        return f"<Latest {self.name!r} version {s.version}, {s.size} of {s.max_size} bytes>"



def _reopen(name: str, access: Access) -> Latest:
    """Unpickle a read-only handle: reopen it read-only."""
    return Latest.open(name, access=access)
