"""Contexts like ``multiprocessing.get_context(method)``'s -- the same ``Process``, start
method, ``Pool``, ``Manager``, ``Pipe`` and the rest -- whose queues, locks, semaphores,
conditions, events, barriers and shared ctypes are mapshare's.  ``ctx.Pool(...)`` and
``ProcessPoolExecutor(mp_context=ctx)`` therefore run their task and result
``SimpleQueue``s on mapshare channels."""

from __future__ import annotations

import multiprocessing
from multiprocessing import context as _mp_context
from typing import Any, Callable, Optional

__all__ = ["MapshareContext", "get_context"]


class MapshareContext:
    """The factories of ``multiprocessing.context.BaseContext`` that mapshare backs.
    Mixed into one subclass of each standard concrete context (fork, spawn,
    forkserver), which gives ``Process``, the start method and everything else."""

    _name: str

    def Lock(self) -> Any:
        """A ``Lock`` (robust: see docs/multiprocessing.md)."""
        from .synchronize import Lock

        return Lock()

    def RLock(self) -> Any:
        """A reentrant ``RLock``."""
        from .synchronize import RLock

        return RLock()

    def Condition(self, lock: Any = None) -> Any:
        """A ``Condition`` over ``lock`` (default: a new ``RLock``)."""
        from .synchronize import Condition

        return Condition(lock)

    def Semaphore(self, value: int = 1) -> Any:
        """A ``Semaphore`` holding ``value`` units."""
        from .synchronize import Semaphore

        return Semaphore(value)

    def BoundedSemaphore(self, value: int = 1) -> Any:
        """A ``BoundedSemaphore`` holding (at most) ``value`` units."""
        from .synchronize import BoundedSemaphore

        return BoundedSemaphore(value)

    def Event(self) -> Any:
        """An ``Event``."""
        from .synchronize import Event

        return Event()

    def Barrier(self, parties: int, action: Optional[Callable[[], object]] = None,
                timeout: Optional[float] = None) -> Any:
        """A ``Barrier`` for ``parties`` threads or processes."""
        from .synchronize import Barrier

        return Barrier(parties, action, timeout)

    def Queue(self, maxsize: int = 0) -> Any:
        """A ``Queue`` on a mapshare channel."""
        from .queues import Queue

        return Queue(maxsize)

    def JoinableQueue(self, maxsize: int = 0) -> Any:
        """A ``JoinableQueue`` on a mapshare channel."""
        from .queues import JoinableQueue

        return JoinableQueue(maxsize)

    def SimpleQueue(self) -> Any:
        """A ``SimpleQueue`` on a mapshare channel."""
        from .queues import SimpleQueue

        return SimpleQueue()

    def Pool(self, processes: Optional[int] = None,
             initializer: Optional[Callable[..., object]] = None, initargs: Any = (),
             maxtasksperchild: Optional[int] = None) -> Any:
        """A process pool (``multiprocessing.pool.Pool``) whose task and result queues
        are mapshare's; its worker handler does not wake on results (see
        ``mapshare.multiprocessing._pool``)."""
        from ._pool import Pool

        return Pool(processes, initializer, initargs, maxtasksperchild,
                    context=self.get_context())

    def RawValue(self, typecode_or_type: Any, *args: Any) -> Any:
        """A shared ctypes object, no lock."""
        from .sharedctypes import RawValue

        return RawValue(typecode_or_type, *args)

    def RawArray(self, typecode_or_type: Any, size_or_initializer: Any) -> Any:
        """A shared ctypes array, no lock."""
        from .sharedctypes import RawArray

        return RawArray(typecode_or_type, size_or_initializer)

    def Value(self, typecode_or_type: Any, *args: Any, lock: Any = True) -> Any:
        """A synchronized shared ctypes object."""
        from .sharedctypes import Value

        return Value(typecode_or_type, *args, lock=lock, ctx=self)

    def Array(self, typecode_or_type: Any, size_or_initializer: Any, *,
              lock: Any = True) -> Any:
        """A synchronized shared ctypes array."""
        from .sharedctypes import Array

        return Array(typecode_or_type, size_or_initializer, lock=lock, ctx=self)

    def get_context(self, method: Optional[str] = None) -> Any:
        """This context (``method`` None), or mapshare's context of ``method``."""
        if method is None:
            return self
        return get_context(method)


def _make(base: Any) -> Any:
    cls = type(f"Mapshare{type(base).__name__}", (MapshareContext, type(base)), {
        "__doc__": f"``multiprocessing.get_context({base._name!r})`` with mapshare's "
                   "queues and synchronization primitives."
    })
    return cls()


_contexts: dict[str, Any] = {}
for _method in multiprocessing.get_all_start_methods():
    _contexts[_method] = _make(_mp_context._concrete_contexts[_method])  # type: ignore[attr-defined]


def get_context(method: Optional[str] = None) -> Any:
    """Like ``multiprocessing.get_context(method)`` (None: the start method the standard
    default context uses), with mapshare's queues and synchronization primitives;
    ValueError for an unknown or unavailable method."""
    if method is None:
        method = multiprocessing.get_start_method()
    try:
        ctx = _contexts[method]
    except KeyError:
        raise ValueError(f"cannot find context for {method!r}") from None
    ctx._check_available()
    return ctx
