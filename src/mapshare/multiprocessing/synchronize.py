"""``Lock``, ``RLock``, ``Semaphore``, ``BoundedSemaphore``, ``Condition``, ``Event`` and
``Barrier`` with the signatures, return values and exceptions of
``multiprocessing.synchronize``, on mapshare's robust locks, semaphores and events.

Each object is a small named mapshare object (``mp-<random>-<kind>``) with
``lifetime="shared"``: it lives while a process holds it, and is removed after the last
one closes it or ends, killed or not.  Pickling one (as a ``Process`` argument, or
through a queue) sends its name; unpickling opens it again.

Where these differ from the standard ones (a lock is owned by the thread that acquired
it; a dead holder's lock is taken over): docs/multiprocessing.md, "Compatibility".
"""

from __future__ import annotations

import os
import sys
import threading
import time
import weakref
from multiprocessing import process as _mp_process
from multiprocessing import synchronize as _mp_sync
from typing import Any, Callable, Optional

from .. import _core, _sync
from .._segment import Segment
from ._util import SegmentBuffer, close_at_child_exit, keep_for_child, new_name

__all__ = [
    "SEM_VALUE_MAX",
    "Barrier",
    "BoundedSemaphore",
    "Condition",
    "Event",
    "Lock",
    "RLock",
    "Semaphore",
]

SEM_VALUE_MAX: int = _mp_sync.SEM_VALUE_MAX  # type: ignore[attr-defined]
"""The largest value a ``Semaphore`` holds (the standard module's, 2**31 - 1 on Linux)."""


_me = threading.get_ident

# Locks of this process: a forked child holds none of them (mapshare's ownership is per
# thread, and the child's thread is new), so it forgets who held them here.
_locks: weakref.WeakSet[_LockBase] = weakref.WeakSet()


def _forget_owners() -> None:
    for lock in list(_locks):
        lock._owner = None
        if isinstance(lock, RLock):
            lock._level = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_owners)


def _owner_name(owner: Optional[int], locked: bool) -> str:
    """The owner shown by ``repr``, in the words the standard locks use."""
    if owner == _me():
        name = _mp_process.current_process().name
        if threading.current_thread().name != "MainThread":
            name += "|" + threading.current_thread().name
        return name
    if not locked:
        return "None"
    if owner is not None:
        return "SomeOtherThread"
    return "SomeOtherProcess"


class _LockBase(_core.MPLock):
    """A mapshare ``Lock`` (a robust lock: a holder's death never deadlocks the others)
    plus who holds it, as this process sees it (only the holder thread can release a
    mapshare lock, so this process's own record is exact).

    ``acquire(block=True, timeout=None)``, ``release()``, ``__enter__`` and ``__exit__``
    are the C methods of ``mapshare._core.MPLock`` (as the standard SemLock's are C): the
    uncontended ``with lock:`` runs no Python frame.  The C type keeps the holder thread
    (``_owner``) and, for an ``RLock``, the recursion (``_level``)."""

    _lock: _sync.Lock
    _recursive: bool = False

    def __init__(self, *, ctx: Any = None) -> None:
        self._lock = _sync.Lock.create(new_name("l"), lifetime="shared")
        self._bind(self._lock, self._recursive)
        _locks.add(self)

    @classmethod
    def _reopen(cls, name: str) -> Any:
        close_at_child_exit()
        self = cls.__new__(cls)
        self._lock = _sync.Lock.open(name)
        self._bind(self._lock, self._recursive)
        _locks.add(self)
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        keep_for_child(self)
        return (type(self)._reopen, (self._lock.name,))

    @property
    def name(self) -> str:
        """The mapshare name of the lock (``mapshare info <name>`` shows its holder)."""
        return self._lock.name

    # what multiprocessing.synchronize's SemLock offers through ``_semlock``
    @property
    def _semlock(self) -> Any:
        return self

    def _is_mine(self) -> bool:
        return self._owner == _me()

    def _count(self) -> int:
        return self._level if self._owner == _me() else 0

    def _is_zero(self) -> bool:
        return bool(self._lock.locked())

    def _get_value(self) -> int:
        return 0 if self._lock.locked() else 1


class Lock(_LockBase):
    """``multiprocessing.Lock`` on a robust mapshare lock.

    ``acquire(block=True, timeout=None)`` returns True, or False when ``block`` is false
    or ``timeout`` (seconds) passes; ``release()``; ``with lock:``.  Not reentrant: a
    thread that holds it and tries again gets False (after ``timeout``), and a blocking
    try with no timeout -- a certain deadlock with the standard lock -- raises
    RuntimeError.  Only the thread that acquired it may release it (RuntimeError
    otherwise); releasing an unlocked lock raises ValueError, as the standard one does.
    If the holder dies, the next ``acquire()`` gets the lock."""

    def __repr__(self) -> str:
        try:
            owner = _owner_name(self._owner, bool(self._lock.locked()))
        except Exception:
            owner = "unknown"
        return f"<Lock(owner={owner})>"


class RLock(_LockBase):
    """``multiprocessing.RLock``: a reentrant robust lock.  The holder thread may acquire
    it again; it is free after as many ``release()`` calls.  Releasing it from a thread
    that does not hold it raises AssertionError, as the standard one does."""

    _recursive = True

    def __repr__(self) -> str:
        try:
            locked = bool(self._lock.locked())
            return f"<RLock({_owner_name(self._owner, locked)}, {self._count() if locked else 0})>"
        except Exception:
            return "<RLock(unknown, unknown)>"


class Semaphore(_core.MPSemaphore):
    """``multiprocessing.Semaphore`` on a mapshare semaphore: ``acquire(block=True,
    timeout=None)``, ``release()``, ``get_value()``, ``with sem:``.  A unit taken by a
    process that dies is not given back (as with the standard one).

    ``acquire``, ``release``, ``__enter__`` and ``__exit__`` are the C methods of
    ``mapshare._core.MPSemaphore`` (as the standard SemLock's are C)."""

    _maxvalue: int = SEM_VALUE_MAX
    _bounded: bool = False
    _sem: _sync.Semaphore

    def __init__(self, value: int = 1, *, ctx: Any = None) -> None:
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        self._sem = _sync.Semaphore.create(
            new_name("s"), value, maximum=max(self._limit(value), 1), lifetime="shared"
        )
        self._bind(self._sem, self._bounded, self._maxvalue)

    def _limit(self, value: int) -> int:
        return SEM_VALUE_MAX

    @classmethod
    def _reopen(cls, name: str, maxvalue: int) -> Any:
        close_at_child_exit()
        self = cls.__new__(cls)
        self._sem = _sync.Semaphore.open(name)
        self._maxvalue = maxvalue
        self._bind(self._sem, self._bounded, maxvalue)
        return self

    @classmethod
    def _placed(cls, sem: _sync.Semaphore) -> Semaphore:
        """One of a Condition's counters: a semaphore placed in the Condition's segment
        (pickled with the Condition, never alone)."""
        self = cls.__new__(cls)
        self._sem = sem
        self._bind(sem, False, SEM_VALUE_MAX)
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        keep_for_child(self)
        return (type(self)._reopen, (self._sem.name, self._maxvalue))

    @property
    def name(self) -> str:
        """The mapshare name of the semaphore."""
        return self._sem.name

    def get_value(self) -> int:
        """Units available now."""
        return int(self._sem.value)

    @property
    def _semlock(self) -> Any:
        return self

    def _get_value(self) -> int:
        return int(self.get_value())

    def _is_zero(self) -> bool:
        return self._sem.value == 0

    def __repr__(self) -> str:
        try:
            value: object = self.get_value()
        except Exception:
            value = "unknown"
        return f"<{type(self).__name__}(value={value})>"


class BoundedSemaphore(Semaphore):
    """``multiprocessing.BoundedSemaphore``: a ``Semaphore`` whose ``release()`` raises
    ValueError when it would go above the initial value."""

    _bounded = True

    def _limit(self, value: int) -> int:
        self._maxvalue = value
        return value

    def __repr__(self) -> str:
        try:
            value: object = self.get_value()
        except Exception:
            value = "unknown"
        return f"<BoundedSemaphore(value={value}, maxvalue={self._maxvalue})>"


# the Condition's three counters, each a 16-byte semaphore in one small segment
_SLEEPING, _WOKEN, _WAIT = 0, 16, 32


class Condition:
    """``multiprocessing.Condition(lock=None)``: ``wait(timeout=None)``,
    ``wait_for(predicate, timeout=None)``, ``notify(n=1)``, ``notify_all()``, and the
    lock's ``acquire``/``release``/``with``.  The standard algorithm (three counting
    semaphores), with the semaphores placed in one mapshare segment.  ``lock`` must be a
    ``Lock`` or ``RLock`` of this package (default: a new ``RLock``)."""

    def __init__(self, lock: Optional[_LockBase] = None, *, ctx: Any = None) -> None:
        if lock is None:
            lock = RLock()
        elif not isinstance(lock, _LockBase):
            raise TypeError(
                "Condition(lock): the lock must be a mapshare.multiprocessing Lock or "
                f"RLock, not {type(lock).__name__}"
            )
        seg = Segment.create(new_name("c"), 48, lifetime="shared")
        sems = [_sync.Semaphore.create_in(seg, off, 0, maximum=SEM_VALUE_MAX)
                for off in (_SLEEPING, _WOKEN, _WAIT)]
        self._setup(lock, seg, sems)

    def _setup(self, lock: _LockBase, seg: Segment, sems: list[_sync.Semaphore]) -> None:
        self._lock = lock
        self._segment = seg
        self._sleeping_count, self._woken_count, self._wait_semaphore = (
            Semaphore._placed(sem) for sem in sems)
        self.acquire: Callable[..., bool] = lock.acquire
        self.release: Callable[[], None] = lock.release

    @classmethod
    def _reopen(cls, lock: _LockBase, name: str) -> Condition:
        close_at_child_exit()
        self = cls.__new__(cls)
        seg = Segment.open(name)
        self._setup(lock, seg, [_sync.Semaphore.open_in(seg, off)
                                for off in (_SLEEPING, _WOKEN, _WAIT)])
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        keep_for_child(self)
        return (Condition._reopen, (self._lock, self._segment.name))

    def __enter__(self) -> bool:
        return self._lock.__enter__()

    def __exit__(self, *args: object) -> None:
        return self._lock.__exit__(*args)

    def __repr__(self) -> str:
        try:
            waiters: object = (self._sleeping_count.get_value()
                               - self._woken_count.get_value())
        except Exception:
            waiters = "unknown"
        return f"<{type(self).__name__}({self._lock}, {waiters})>"

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Release the lock, sleep until notified or ``timeout``, take the lock back;
        False if the timeout passed."""
        assert self._lock._is_mine(), "must acquire() condition before using wait()"
        self._sleeping_count.release()
        count = self._lock._count()
        for _ in range(count):
            self._lock.release()
        try:
            return self._wait_semaphore.acquire(True, timeout)
        finally:
            self._woken_count.release()
            for _ in range(count):
                self._lock.acquire()

    def notify(self, n: int = 1) -> None:
        """Wake up to ``n`` waiters (the lock must be held)."""
        assert self._lock._is_mine(), "lock is not owned"
        assert not self._wait_semaphore.acquire(False), (
            "notify: Should not have been able to acquire _wait_semaphore")
        # account for the waiters that timed out since the last notify
        while self._woken_count.acquire(False):
            res = self._sleeping_count.acquire(False)
            assert res, "notify: Bug in sleeping_count.acquire - res should not be False"
        sleepers = 0
        while sleepers < n and self._sleeping_count.acquire(False):
            self._wait_semaphore.release()
            sleepers += 1
        if sleepers:
            for _ in range(sleepers):
                self._woken_count.acquire()
            while self._wait_semaphore.acquire(False):
                pass

    def notify_all(self) -> None:
        """Wake every waiter (the lock must be held)."""
        self.notify(n=sys.maxsize)

    def wait_for(self, predicate: Callable[[], Any], timeout: Optional[float] = None) -> Any:
        """Wait until ``predicate()`` is true or ``timeout`` passes; its last result."""
        result = predicate()
        if result:
            return result
        endtime = None if timeout is None else time.monotonic() + timeout
        waittime = None
        while not result:
            if endtime is not None:
                waittime = endtime - time.monotonic()
                if waittime <= 0:
                    break
            self.wait(waittime)
            result = predicate()
        return result


class Event:
    """``multiprocessing.Event`` on a mapshare event: ``set()``, ``clear()``,
    ``is_set()``, ``wait(timeout=None)`` (True once set, False on timeout)."""

    _event: _sync.Event

    def __init__(self, *, ctx: Any = None) -> None:
        self._event = _sync.Event.create(new_name("e"), lifetime="shared")

    @classmethod
    def _reopen(cls, name: str) -> Event:
        close_at_child_exit()
        self = cls.__new__(cls)
        self._event = _sync.Event.open(name)
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        keep_for_child(self)
        return (Event._reopen, (self._event.name,))

    def is_set(self) -> bool:
        """Whether the flag is set."""
        return bool(self._event.is_set())

    def set(self) -> None:
        """Set the flag and wake every waiter."""
        self._event.set()

    def clear(self) -> None:
        """Clear the flag."""
        self._event.clear()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Sleep until the flag is set (True) or ``timeout`` seconds pass (False)."""
        t = None if timeout is None else max(0.0, float(timeout))
        return bool(self._event.wait(t))

    def __repr__(self) -> str:
        try:
            state = "set" if self.is_set() else "unset"
        except Exception:
            state = "unknown"
        return f"<Event at {id(self):#x} {state}>"


class Barrier(_mp_sync.Barrier):
    """``multiprocessing.Barrier(parties, action=None, timeout=None)``: ``wait``,
    ``abort``, ``reset``, ``broken``, ``n_waiting``, ``parties`` and
    ``threading.BrokenBarrierError`` -- the standard class itself (threading.Barrier's
    algorithm), over this package's ``Condition`` and its state in a mapshare segment."""

    def __init__(self, parties: int, action: Optional[Callable[[], object]] = None,
                 timeout: Optional[float] = None, *, ctx: Any = None) -> None:
        self.__setstate__(  # type: ignore[attr-defined]
            (parties, action, timeout, Condition(), SegmentBuffer(8)))
        self._state = 0
        self._count = 0

    def __reduce_ex__(self, protocol: Any) -> Any:
        keep_for_child(self)
        return super().__reduce_ex__(protocol)
