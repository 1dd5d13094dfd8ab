"""What every object of mapshare.multiprocessing shares: fresh names, keeping an object
alive while a spawned child has yet to reopen it, and a shared buffer on a segment."""

from __future__ import annotations

import os
import secrets
from multiprocessing import context as _mp_context
from multiprocessing import util as _mp_util
from typing import Any

from .._segment import Segment

__all__ = ["SegmentBuffer", "close_at_child_exit", "keep_for_child", "new_name"]


# The first characters of every name made here.  Tests set their own (7 characters
# keep it visible in a hashed OS name too) to find exactly what they made.
prefix = "mp-"


def new_name(kind: str) -> str:
    """A fresh logical name: ``mp-`` + 48 random bits + a kind letter.  At most 20
    characters, so the OS name is the name itself (``/dev/shm/mapshare.mp-...``), and
    ``mapshare ls`` shows which objects a multiprocessing program made."""
    return f"{prefix}{secrets.token_hex(6)}-{kind}"


def keep_for_child(obj: object) -> None:
    """Called by ``__reduce__``: when the object is pickled for a child being started
    (spawn, forkserver), tie it to that child's Popen object, which the parent's
    Process keeps.  The child reopens the object by name; without this, a parent that
    drops its last reference right after ``start()`` would remove the object before the
    child opened it (each object lives while a process holds it)."""
    popen = _mp_context.get_spawning_popen()
    if popen is not None:
        try:
            popen.__dict__.setdefault("_mapshare_keep", []).append(obj)
        except AttributeError:  # a Popen without __dict__: nothing to tie to
            pass


_registered_pid = 0


def close_at_child_exit() -> None:
    """Called when an object is unpickled (reopened by name).  In a child started by
    spawn or forkserver that happens before ``Process._bootstrap``, which clears the
    exit finalizers registered so far -- mapshare's closing of this process's handles
    among them -- and a forkserver child ends with ``os._exit`` (no atexit): its
    handles would be left open, and the parent would take the child for a dead peer.
    An after-fork hook runs after that clearing, in every start method: it registers
    the closing again."""
    global _registered_pid
    if _registered_pid == os.getpid():
        return
    _registered_pid = os.getpid()
    from .. import _registry

    _mp_util.register_after_fork(_registry._FORK_KEY, _registry._close_at_child_exit)


class SegmentBuffer:
    """``multiprocessing.heap.BufferWrapper``'s role on a mapshare segment: the memory
    behind a ``RawValue``/``RawArray``/``Barrier``, pickled by name (the child maps the
    same segment), alive while any process holds it."""

    def __init__(self, size: int, *, _segment: Segment | None = None) -> None:
        self.size = size
        self.segment = _segment if _segment is not None else Segment.create(
            new_name("b"), max(size, 1), lifetime="shared"
        )

    def create_memoryview(self) -> memoryview:
        """A writable view of the ``size`` bytes (it keeps the mapping alive)."""
        return self.segment.buf[: self.size]

    @classmethod
    def _reopen(cls, name: str, size: int) -> SegmentBuffer:
        close_at_child_exit()
        return cls(size, _segment=Segment.open(name))

    def __reduce__(self) -> tuple[Any, ...]:
        keep_for_child(self)
        return (SegmentBuffer._reopen, (self.segment.name, self.size))
