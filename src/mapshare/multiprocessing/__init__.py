"""A drop-in for ``multiprocessing``'s queues, locks and shared memory on mapshare.

    from mapshare import multiprocessing as mp   # instead of: import multiprocessing as mp

``Queue``, ``SimpleQueue``, ``JoinableQueue``, ``Lock``, ``RLock``, ``Semaphore``,
``BoundedSemaphore``, ``Condition``, ``Event``, ``Barrier``, ``Value``, ``Array``,
``RawValue``, ``RawArray`` (and ``shared_memory.SharedMemory``/``ShareableList``) have
the standard signatures, semantics and exceptions, on mapshare channels, robust locks,
semaphores, events and segments.  ``get_context(method)`` gives a context whose
``Pool`` and whose use by ``concurrent.futures.ProcessPoolExecutor(mp_context=ctx)`` run
on them.  ``Process``, ``Pool``, ``Manager``, ``Pipe``, ``cpu_count``,
``current_process`` and the other functions are the standard ones (of the default start
method's context).  What differs from the standard library, and why:
docs/multiprocessing.md.
"""

from __future__ import annotations

import atexit as _atexit
import multiprocessing as _std
import sys as _sys
from typing import Any

from . import queues as _queues  # noqa: F401  (its exit flush registers before ours)
from . import shared_memory as shared_memory
from .context import MapshareContext as MapshareContext
from .context import get_context as get_context

__all__ = [
    "Array",
    "Barrier",
    "BoundedSemaphore",
    "Condition",
    "Event",
    "JoinableQueue",
    "Lock",
    "Manager",
    "MapshareContext",
    "Pipe",
    "Pool",
    "Process",
    "Queue",
    "RLock",
    "RawArray",
    "RawValue",
    "Semaphore",
    "SimpleQueue",
    "Value",
    "active_children",
    "cpu_count",
    "current_process",
    "get_all_start_methods",
    "get_context",
    "get_start_method",
    "parent_process",
    "set_start_method",
    "shared_memory",
]

Process = _std.Process
Manager = _std.Manager
Pipe = _std.Pipe
cpu_count = _std.cpu_count
current_process = _std.current_process
parent_process = _std.parent_process
active_children = _std.active_children
get_all_start_methods = _std.get_all_start_methods
get_start_method = _std.get_start_method
set_start_method = _std.set_start_method
freeze_support = _std.freeze_support
TimeoutError = _std.TimeoutError
ProcessError = _std.ProcessError
AuthenticationError = _std.AuthenticationError
BufferTooShort = _std.BufferTooShort


def _ctx() -> Any:
    return get_context()


def Lock() -> Any:
    """A ``Lock`` (robust: a holder's death hands it over; docs/multiprocessing.md)."""
    return _ctx().Lock()


def RLock() -> Any:
    """A reentrant ``RLock``."""
    return _ctx().RLock()


def Condition(lock: Any = None) -> Any:
    """A ``Condition`` over ``lock`` (default: a new ``RLock``)."""
    return _ctx().Condition(lock)


def Semaphore(value: int = 1) -> Any:
    """A ``Semaphore`` holding ``value`` units."""
    return _ctx().Semaphore(value)


def BoundedSemaphore(value: int = 1) -> Any:
    """A ``BoundedSemaphore`` holding (at most) ``value`` units."""
    return _ctx().BoundedSemaphore(value)


def Event() -> Any:
    """An ``Event``."""
    return _ctx().Event()


def Barrier(parties: int, action: Any = None, timeout: Any = None) -> Any:
    """A ``Barrier`` for ``parties`` threads or processes."""
    return _ctx().Barrier(parties, action, timeout)


def Queue(maxsize: int = 0) -> Any:
    """A ``Queue`` on a mapshare channel (``maxsize`` counts objects; 0: no limit)."""
    return _ctx().Queue(maxsize)


def JoinableQueue(maxsize: int = 0) -> Any:
    """A ``JoinableQueue`` on a mapshare channel."""
    return _ctx().JoinableQueue(maxsize)


def SimpleQueue() -> Any:
    """A ``SimpleQueue`` on a mapshare channel."""
    return _ctx().SimpleQueue()


def RawValue(typecode_or_type: Any, *args: Any) -> Any:
    """A shared ctypes object, no lock."""
    return _ctx().RawValue(typecode_or_type, *args)


def RawArray(typecode_or_type: Any, size_or_initializer: Any) -> Any:
    """A shared ctypes array, no lock."""
    return _ctx().RawArray(typecode_or_type, size_or_initializer)


def Value(typecode_or_type: Any, *args: Any, lock: Any = True) -> Any:
    """A synchronized shared ctypes object (``get_lock()``, ``get_obj()``, ``value``)."""
    return _ctx().Value(typecode_or_type, *args, lock=lock)


def Array(typecode_or_type: Any, size_or_initializer: Any, *, lock: Any = True) -> Any:
    """A synchronized shared ctypes array (``get_lock()``, ``get_obj()``)."""
    return _ctx().Array(typecode_or_type, size_or_initializer, lock=lock)


def Pool(processes: Any = None, initializer: Any = None, initargs: Any = (),
         maxtasksperchild: Any = None) -> Any:
    """``multiprocessing.Pool`` whose task and result queues are mapshare's."""
    return _ctx().Pool(processes, initializer, initargs, maxtasksperchild)


def _end_children_first() -> None:
    """At the main process's exit, before mapshare closes this process's handles (an
    atexit hook registered earlier, so run later): multiprocessing's own exit step --
    terminate the daemonic children (a Pool's workers), join the others.  Otherwise
    the parent could close its handles first and the children, then killed by that
    step, would be the last holders: their objects would stay in /dev/shm until
    ``mapshare gc``.  The step runs once (multiprocessing guards it)."""
    util = _sys.modules.get("multiprocessing.util")
    if util is not None and _std.parent_process() is None:
        try:
            util._exit_function()
        except Exception:
            pass


_atexit.register(_end_children_first)
