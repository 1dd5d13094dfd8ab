"""Locks, events and semaphores shared between processes, named or inside a segment.

All of them spin briefly, then sleep on a futex-style word with the GIL released;
Ctrl-C interrupts a wait in the main thread; timeouts use the monotonic clock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, cast

from . import _core
from ._aio import poll_until, wait_until
from ._handle import Handle
from ._inspect import LockState, lock_state
from ._options import INIT_WAIT, Lifetime

if TYPE_CHECKING:
    from typing_extensions import Self

    # Only for annotations: _segment imports this module (Segment.lock() returns a
    # Lock), never the other way round at run time.
    from ._segment import Segment

__all__ = ["Event", "Lock", "Semaphore"]


class _LockSegment(Handle):
    _kind = _core.KIND_LOCK


class _EventSegment(Handle):
    _kind = _core.KIND_EVENT


class _SemaphoreSegment(Handle):
    _kind = _core.KIND_SEMAPHORE


class _Named:
    """Shared plumbing: a synchronization object is a small segment of its own kind,
    or lives inside another segment."""

    _segment_cls: type[Handle] = Handle
    _segment: Handle
    _owns: bool
    _offset: Optional[int]

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError(f"use {type(self).__name__}.create(), .open() or .open_or_create()")

    @classmethod
    def _wrap(cls, seg: Handle, owns: bool) -> Self:
        self = object.__new__(cls)
        self._segment = seg
        self._owns = owns
        self._offset = None
        return self

    @classmethod
    def open(
        cls,
        name: str,
        *,
        allow_foreign: bool = False,
        global_namespace: bool = False,
        wait: Optional[float] = 0,
        init_timeout: float = INIT_WAIT,
        spin: Optional[float] = None,
    ) -> Self:
        """Open an existing one by name (``SegmentNotFoundError`` if missing,
        ``LayoutError`` if the name holds another kind of object).  The keywords mean
        what they mean for ``Segment.open``: ``allow_foreign`` trusts an object of
        another user (a group member opening a ``mode=0o660`` object), ``wait`` waits
        that many seconds for the name to appear (None: forever)."""
        seg = cls._segment_cls.open(
            name, allow_foreign=allow_foreign, global_namespace=global_namespace, wait=wait,
            init_timeout=init_timeout, spin=spin,
        )
        return cls._wrap(seg, True)

    @classmethod
    def _create_named(
        cls, name: str, init: object, mode: int, lifetime: str,
        global_namespace: bool, spin: Optional[float],
    ) -> Self:
        seg = cls._segment_cls._create(
            name, 0, path=None, mode=mode, lifetime=lifetime, init=init,
            global_namespace=global_namespace,
        )
        return cls._wrap(seg._with_spin(spin), True)

    @classmethod
    def _open_or_create_named(
        cls, name: str, init: object, mode: int, lifetime: str,
        allow_foreign: bool, global_namespace: bool, init_timeout: float,
        spin: Optional[float],
    ) -> Self:
        seg = cls._segment_cls._open_or_create(
            name, 0, path=None, mode=mode, lifetime=lifetime, init=init,
            init_timeout=init_timeout, allow_foreign=allow_foreign,
            global_namespace=global_namespace,
        )
        return cls._wrap(seg._with_spin(spin), True)

    @staticmethod
    def _check_in(segment: Segment, offset: object) -> None:
        """create_in/open_in take a plain segment and an int offset."""
        # a Handle of the plain segment kind is a Segment (not a channel's, a lock's...)
        if not isinstance(segment, Handle) or type(segment)._kind != _core.KIND_SEGMENT:
            raise TypeError(
                "events and semaphores can be placed only in a plain Segment's user area, "
                f"not in {type(segment).__name__}"
                + (f" {segment.name!r}" if isinstance(segment, Handle) else "")
            )
        if isinstance(offset, bool) or not isinstance(offset, int):
            raise TypeError(f"offset must be an int, not {type(offset).__name__}")

    @property
    def name(self) -> str:
        """The name (of the segment that holds it, for one placed in a segment)."""
        return self._segment.name

    @property
    def spin(self) -> float:
        """Seconds to busy-wait before sleeping (default 50 µs)."""
        return self._segment.spin

    @spin.setter
    def spin(self, seconds: float) -> None:
        self._segment.spin = seconds

    def close(self) -> None:
        """Detach (a named object's segment is closed; one inside a segment leaves it
        open)."""
        if self._owns:
            self._segment.close()

    def unlink(self) -> None:
        """Remove the name of a named object."""
        if not self._owns:
            raise TypeError("an object placed inside a segment has no name of its own")
        self._segment.unlink()

    def __reduce__(self) -> tuple[Any, ...]:
        if not self._owns:
            raise TypeError("pickle the segment instead, and reopen with open_in()")
        return (type(self).open, (self._segment.name,))


class Lock(_core.Lock, _Named):
    """A mutual-exclusion lock between processes that survives a killed holder.

    ``Lock.create(name)`` makes a named lock; ``segment.lock()`` is the lock built into
    every segment.  ``acquire(timeout=None)`` (None waits forever, 0 tries once, else
    seconds; True, or False on timeout), ``release()``, ``locked()``, and ``with lock:``
    are C methods: acquiring and releasing run no Python code.

    Not reentrant: a thread that acquires twice gets RuntimeError.  Ownership is per
    thread: only the acquiring thread may ``release()`` (``NotOwnerError`` otherwise), and
    a child process forked while the parent holds it does not hold it.

    Robustness: when a holder dies while holding the lock (any cause, including SIGKILL),
    the next ``acquire()`` gets the lock and raises ``OwnerDiedError`` **with the lock
    held** (its ``.lock`` is this lock), so the caller can repair what it protects and then
    ``release()``.  On Linux this is the kernel's robust-futex mechanism (a process-shared
    robust pthread mutex), which holds across PID reuse and PID namespaces.
    """

    _segment_cls = _LockSegment

    @classmethod
    def create(
        cls, name: str, *, mode: int = 0o600, lifetime: Lifetime = "shared",
        global_namespace: bool = False, spin: Optional[float] = None,
    ) -> Self:
        """Create a named lock (exclusive: ``SegmentExistsError`` if the name exists).
        The keywords mean what they mean for ``Segment.create``."""
        return cls._create_named(name, None, mode, lifetime, global_namespace, spin)

    @classmethod
    def open_or_create(
        cls, name: str, *, mode: int = 0o600, lifetime: Lifetime = "shared",
        allow_foreign: bool = False, global_namespace: bool = False,
        init_timeout: float = INIT_WAIT, spin: Optional[float] = None,
    ) -> Self:
        """Open the named lock, or create it; safe when processes race."""
        return cls._open_or_create_named(
            name, None, mode, lifetime, allow_foreign, global_namespace, init_timeout, spin
        )

    @classmethod
    def _bind(cls, seg: Segment) -> Self:
        return cls._wrap(seg, False)

    @classmethod
    def _wrap(cls, seg: Handle, owns: bool) -> Self:
        self = cast("Self", _core.Lock.__new__(cast(Any, cls), seg._core))
        self._segment = seg
        self._owns = owns
        self._offset = None
        return self

    def state(self) -> LockState:
        """Holder thread id and whether the holder is alive."""
        return lock_state(self._segment._core.lock_state())

    async def acquire_async(self, timeout: Optional[float] = None) -> bool:
        """``acquire`` for asyncio (see mapshare._aio: polls with back-off on the loop's
        thread, which then owns the lock).  Raises ``WaitTimeout`` on timeout.

        Tasks of one event loop share its thread, so to the lock they are one owner:
        while one task holds it, the others wait their turn here (they do not get the
        RuntimeError a thread acquiring twice gets); a task that acquires twice waits
        forever, as with ``asyncio.Lock``."""

        def attempt() -> Optional[bool]:
            try:
                return True if self.acquire(0) else None
            except RuntimeError:
                # held by this thread, so by another task of this loop (which releases
                # it on this thread too): wait like any other contender
                return None

        return await poll_until(attempt, timeout, what="lock acquire")

    async def __aenter__(self) -> Self:
        """``async with lock:``: ``acquire_async()`` on entry, ``release()`` on exit."""
        await self.acquire_async()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<Lock {self.name!r} {'locked' if self.locked() else 'unlocked'}>"


class Event(_core.Event, _Named):
    """A flag that processes wait on: ``set()``, ``clear()``, ``is_set()``,
    ``wait(timeout=None)`` (True, or False on timeout), like ``threading.Event`` but shared
    by name.  All four are C methods: the event's place is checked once, when this object
    is made."""

    _segment_cls = _EventSegment

    @classmethod
    def _wrap(
        cls, seg: Handle, owns: bool, offset: Optional[int] = None,
        init: Optional[bool] = None,
    ) -> Self:
        self = cast("Self", _core.Event.__new__(cast(Any, cls), seg._core, offset, init))
        self._segment = seg
        self._owns = owns
        self._offset = offset
        return self

    @classmethod
    def create(
        cls, name: str, *, initially_set: bool = False, mode: int = 0o600,
        lifetime: Lifetime = "shared", global_namespace: bool = False,
        spin: Optional[float] = None,
    ) -> Self:
        """Create a named event (exclusive).  The keywords mean what they mean for
        ``Segment.create``."""
        return cls._create_named(
            name, bool(initially_set), mode, lifetime, global_namespace, spin
        )

    @classmethod
    def open_or_create(
        cls, name: str, *, initially_set: bool = False, mode: int = 0o600,
        lifetime: Lifetime = "shared", allow_foreign: bool = False,
        global_namespace: bool = False, init_timeout: float = INIT_WAIT,
        spin: Optional[float] = None,
    ) -> Self:
        """Open the named event, or create it (set if ``initially_set``)."""
        return cls._open_or_create_named(
            name, bool(initially_set), mode, lifetime, allow_foreign, global_namespace,
            init_timeout, spin,
        )

    @classmethod
    def create_in(cls, segment: Segment, offset: int, *, initially_set: bool = False) -> Self:
        """Place a new event in 16 bytes of ``segment`` at ``offset`` (a multiple of 8).
        ``segment`` must be a plain ``Segment`` (not a channel's).  Naming, permissions,
        lifetime and ``spin`` are that segment handle's: no keywords for them here."""
        cls._check_in(segment, offset)
        return cls._wrap(segment, False, offset, bool(initially_set))

    @classmethod
    def open_in(cls, segment: Segment, offset: int) -> Self:
        """Use the event another process placed at ``offset`` of ``segment``
        (``LayoutError`` if no event was created there: every event carries a tag)."""
        cls._check_in(segment, offset)
        return cls._wrap(segment, False, offset)

    async def wait_async(self, timeout: Optional[float] = None) -> bool:
        """``wait`` for asyncio; raises ``WaitTimeout`` on timeout; cancellable."""

        def attempt() -> Optional[bool]:
            return True if self.is_set() else None

        def block(t: float) -> object:
            return self._wait(t, 0.0)

        return await wait_until(attempt, block, timeout, what="event wait")

    def __repr__(self) -> str:
        return f"<Event {self.name!r} {'set' if self.is_set() else 'clear'}>"


class Semaphore(_core.Semaphore, _Named):
    """A bounded counting semaphore shared between processes.

    ``acquire(timeout=None)`` takes a unit (waiting while there is none; True, or False
    on timeout), ``release(n=1)`` returns units; releasing above ``maximum`` raises
    ``SemaphoreOverflowError``, a ValueError (like ``threading.BoundedSemaphore``).
    ``with sem:`` acquires and releases one unit.  ``value`` and ``maximum`` read the
    current state.  All of these are C methods and attributes.  A unit taken by a process
    that dies is not returned: use ``Lock`` for exclusion that must survive crashes."""

    _segment_cls = _SemaphoreSegment

    @classmethod
    def _wrap(
        cls, seg: Handle, owns: bool, offset: Optional[int] = None,
        init: Optional[tuple[int, int]] = None,
    ) -> Self:
        self = cast("Self", _core.Semaphore.__new__(cast(Any, cls), seg._core, offset, init))
        self._segment = seg
        self._owns = owns
        self._offset = offset
        return self

    @staticmethod
    def _init(value: int, maximum: Optional[int]) -> tuple[int, int]:
        for what, v in (("value", value), ("maximum", maximum)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                raise TypeError(f"{what} must be an int, not {type(v).__name__}")
        maximum = maximum if maximum is not None else max(value, 1)
        if not 0 <= value <= maximum or maximum < 1 or maximum > 0xFFFFFFFF:
            raise ValueError(
                f"need 0 <= value <= maximum, 1 <= maximum < 2**32 (value={value}, "
                f"maximum={maximum})"
            )
        return value, maximum

    @classmethod
    def create(
        cls, name: str, value: int = 1, *, maximum: Optional[int] = None, mode: int = 0o600,
        lifetime: Lifetime = "shared", global_namespace: bool = False,
        spin: Optional[float] = None,
    ) -> Self:
        """Create a named semaphore holding ``value`` units, at most ``maximum``
        (default: ``value``, or 1 if value is 0).  The keywords mean what they mean
        for ``Segment.create``."""
        return cls._create_named(
            name, cls._init(value, maximum), mode, lifetime, global_namespace, spin
        )

    @classmethod
    def open_or_create(
        cls, name: str, value: int = 1, *, maximum: Optional[int] = None, mode: int = 0o600,
        lifetime: Lifetime = "shared", allow_foreign: bool = False,
        global_namespace: bool = False, init_timeout: float = INIT_WAIT,
        spin: Optional[float] = None,
    ) -> Self:
        """Open the named semaphore, or create it with ``value``."""
        return cls._open_or_create_named(
            name, cls._init(value, maximum), mode, lifetime, allow_foreign,
            global_namespace, init_timeout, spin,
        )

    @classmethod
    def create_in(
        cls, segment: Segment, offset: int, value: int = 1, *, maximum: Optional[int] = None
    ) -> Self:
        """Place a new semaphore in 16 bytes of ``segment`` at ``offset`` (multiple of 8).
        ``segment`` must be a plain ``Segment`` (not a channel's).  Naming, permissions,
        lifetime and ``spin`` are that segment handle's: no keywords for them here."""
        cls._check_in(segment, offset)
        return cls._wrap(segment, False, offset, cls._init(value, maximum))

    @classmethod
    def open_in(cls, segment: Segment, offset: int) -> Self:
        """Use the semaphore another process placed at ``offset`` of ``segment``
        (``LayoutError`` if no semaphore was created there -- every semaphore carries a
        tag -- or what is there cannot be one: a maximum of 0, or a value above it)."""
        cls._check_in(segment, offset)
        return cls._wrap(segment, False, offset)

    async def acquire_async(self, timeout: Optional[float] = None) -> bool:
        """``acquire`` for asyncio; raises ``WaitTimeout`` on timeout; cancellable (a
        unit is only ever taken on the loop's thread)."""

        def attempt() -> Optional[bool]:
            return True if self.acquire(0) else None

        def block(t: float) -> object:
            # wait (in the worker thread) for a unit to be there, without taking it
            return self._wait_available(t, 0.0)

        return await wait_until(attempt, block, timeout, what="semaphore acquire")

    def __repr__(self) -> str:
        return f"<Semaphore {self.name!r} value={self.value}/{self.maximum}>"
