"""Waiting on several objects at once: ``wait`` and ``wait_async`` (docs/wait.md).

One C call (``_core.wait_any``) sleeps on every object's futex word together -- Linux
``futex_waitv`` (kernel 5.16 or later), Windows ``WaitForMultipleObjects`` -- with the
GIL released; where the system cannot, it polls (sync.c says how).  Readiness is a
snapshot: another process may take a message (or a semaphore unit) before this one gets
to it, so a caller follows a ``wait`` with non-blocking calls (``receive_nowait``,
``acquire(timeout=0)``).
"""

from __future__ import annotations

from typing import Any, Iterable, Optional, TypeVar

from . import _core
from ._aio import wait_until
from ._errors import WaitTimeout
from ._handle import Handle

__all__ = ["wait", "wait_async"]

T = TypeVar("T")

_KINDS = (
    "a Channel, Event, Semaphore, Segment, (Segment, since) pair, Topic Subscriber, "
    "Latest or (Latest, since) pair"
)


def _describe(obj: object) -> str:
    name = getattr(obj, "name", None)
    return f"{type(obj).__name__} {name!r}" if isinstance(name, str) else type(obj).__name__


def _core_waitable(obj: object, i: int) -> tuple[Any, bool, Optional[Any]]:
    """What ``_core.wait_any`` waits on for ``obj``, whether ``obj`` is closed, and the
    object (a channel or subscriber) whose close() must be able to end the wait.  A
    Segment without ``since`` is a pair with the counter as of now: a change after this
    call, even one between two slices of ``wait_async``, is never missed."""
    if isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[0], _core.Latest):
        latest, since = obj
        if isinstance(since, bool) or not isinstance(since, int):
            raise TypeError(
                f"wait(): objects[{i}]: since must be an int, not {type(since).__name__}"
            )
        if not 0 <= since < 2**64:
            raise ValueError(f"wait(): objects[{i}]: since must be a version "
                             f"(0 <= since < 2**64), not {since}")
        return (latest, since), bool(latest.closed), None
    if isinstance(obj, _core.Latest):
        # like a Segment: ready once a version newer than the one of now is published
        if obj.closed:
            return obj, True, None
        return (obj, int(obj.version)), False, None
    if isinstance(obj, tuple):
        if len(obj) != 2 or not isinstance(obj[0], Handle):
            raise TypeError(f"wait(): objects[{i}]: a tuple must be (Segment, since)")
        seg, since = obj
        if isinstance(since, bool) or not isinstance(since, int):
            raise TypeError(
                f"wait(): objects[{i}]: since must be an int, not {type(since).__name__}"
            )
        if not 0 <= since < 2**32:
            raise ValueError(f"wait(): objects[{i}]: since must be a change count "
                             f"(0 <= since < 2**32), not {since}")
        return (seg._core, since), seg.closed, None
    if isinstance(obj, Handle):
        if obj.closed:
            return obj, True, None
        return (obj._core, int(obj._core.change_count())), False, None
    if isinstance(obj, _core.Channel):
        seg = getattr(obj, "_segment", None)
        return obj, seg is not None and seg.closed, obj
    if isinstance(obj, (_core.Event, _core.Semaphore)):
        seg = getattr(obj, "_segment", None)
        return obj, seg is not None and seg.closed, None
    sub_type = getattr(_core, "Subscriber", None)
    if sub_type is not None and isinstance(obj, sub_type):
        return obj, bool(getattr(obj, "closed", False)), obj
    raise TypeError(
        f"wait(): objects[{i}]: cannot wait on {type(obj).__name__} (wait on {_KINDS}; "
        "a Lock is acquired, not waited on)"
    )


def _prepare(objects: Iterable[T]) -> tuple[list[T], list[Any], list[Any]]:
    if isinstance(objects, (str, bytes)):
        raise TypeError("wait(): objects must be an iterable of objects to wait on")
    items = list(objects)
    if not items:
        raise ValueError("wait(): no objects to wait on")
    seen: set[Any] = set()
    core: list[Any] = []
    channels: list[Any] = []
    for i, obj in enumerate(items):
        key = (id(obj[0]), obj[1]) if isinstance(obj, tuple) and len(obj) == 2 else id(obj)
        if key in seen:
            raise ValueError(f"wait(): objects[{i}] ({_describe(obj)}) is listed twice")
        seen.add(key)
        target, closed, abortable = _core_waitable(obj, i)
        if closed:
            raise ValueError(f"wait(): objects[{i}] ({_describe(obj)}) is closed")
        core.append(target)
        # the Python classes keep a list of the waits in flight (channel.py, _topic.py)
        if abortable is not None and isinstance(getattr(abortable, "_waits", None), list):
            channels.append(abortable)
    return items, core, channels


def _block(core: list[Any], channels: list[Any], timeout: Optional[float],
           spin: Optional[float]) -> list[int]:
    # Counted in each channel's (and subscriber's) waits, like its own asyncio waits:
    # close() from another thread then ends this wait at once (the object is reported
    # ready, and its next use says it is closed) instead of refusing because a thread
    # waits inside.
    for ch in channels:
        ch._waits.append(None)
    try:
        return list(_core.wait_any(core, timeout, spin))
    finally:
        for ch in channels:
            ch._waits.pop()


def wait(objects: Iterable[T], timeout: Optional[float] = None) -> list[T]:
    """Wait until at least one of ``objects`` is ready and return the ready ones, in
    the order given; after ``timeout`` seconds (None: no limit; 0: just look) return an
    empty list -- a timeout is an answer here, not an exception.

    Ready means: a ``Channel`` has a message to receive, or is closed and drained
    (``EndOfChannel``), or its senders died (``BrokenChannelError``, which the handle's
    next receive -- ``receive_nowait`` included -- then raises once); a Topic
    ``Subscriber`` has a message (or a ``Lagged`` report) to receive; an ``Event`` is
    set; a ``Semaphore`` has a unit (not taken); a ``Segment``'s change counter moved
    since this call (or, for a ``(segment, since)`` pair, differs from ``since``); a
    ``Latest`` has a version newer than it had at this call (for a ``(latest, since)``
    pair: newer than ``since``).

    Readiness is a snapshot: another process may take the message or the unit first,
    so follow with non-blocking calls (``receive_nowait``, ``acquire(timeout=0)``) and
    wait again when they find nothing.  Each object may be listed once (``ValueError``
    otherwise); a closed one is a ``ValueError``; anything else is a ``TypeError``.
    Ctrl-C interrupts the wait in the main thread.
    """
    items, core, channels = _prepare(objects)
    return [items[i] for i in _block(core, channels, timeout, None)]


async def wait_async(objects: Iterable[T], timeout: Optional[float] = None) -> list[T]:
    """``wait`` for asyncio: never blocks the event loop (a worker thread sleeps for
    it, in slices -- see mapshare._aio); cancellable at once, and safe to cancel: the
    worker only waits, it never takes anything.  Returns an empty list on timeout."""
    items, core, channels = _prepare(objects)

    def attempt() -> Optional[list[int]]:
        ready = _block(core, channels, 0, 0.0)
        return ready or None

    def block(t: float) -> object:
        return _block(core, channels, t, 0.0)

    try:
        ready = await wait_until(attempt, block, timeout, what="wait")
    except WaitTimeout:
        return []
    return [items[i] for i in ready]
