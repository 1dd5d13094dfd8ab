"""``SharedMemory`` and ``ShareableList`` with the signatures of
``multiprocessing.shared_memory``, on mapshare segments -- without a resource tracker.

Lifetime, the same on every OS: a block lives until ``unlink()`` or until every process
that created or opened it has ended (normally or killed: ``mapshare gc``, or the next
create of a name, reclaims it).  ``close()`` ends this handle's access; the process keeps
its hold on the block until ``unlink()`` or its exit, so a block created, closed and
opened again later (POSIX's behaviour) still works.  The standard module's resource
tracker instead unlinks a block when the process that created (or, before 3.13, merely
opened) it exits, even while other processes still use it; on Windows the standard block
vanishes with its last handle.  docs/multiprocessing.md says more.
"""

from __future__ import annotations

import secrets
import types
from multiprocessing import shared_memory as _mp_shm
from typing import Any, Optional

from .._errors import SegmentNotFoundError
from .._segment import Segment

__all__ = ["ShareableList", "SharedMemory"]

# This process's hold on each block it created or opened: its name -> a handle.
_held: dict[str, Segment] = {}


class SharedMemory:
    """``multiprocessing.shared_memory.SharedMemory(name=None, create=False, size=0)``
    on a mapshare segment: ``buf``, ``name``, ``size``, ``close()``, ``unlink()``.

    ``create=True`` makes a new block (FileExistsError if the name exists; a random
    name when ``name`` is None); otherwise the block ``name`` is opened
    (FileNotFoundError if there is none).  Names are mapshare names (1 to 255 of
    ``A-Za-z0-9._-``).  Owner-only permissions (0o600), as the standard module.
    ``track`` (Python 3.13's keyword) is accepted and changes nothing: there is no
    resource tracker to opt out of."""

    _segment: Optional[Segment] = None
    _buf: Optional[memoryview] = None

    def __init__(self, name: Optional[str] = None, create: bool = False, size: int = 0,
                 *, track: bool = True) -> None:
        if not size >= 0:
            raise ValueError("'size' must be a positive integer")
        if create:
            if size == 0:
                raise ValueError("'size' must be a positive number different from zero")
            if name is None:
                name = "psm_" + secrets.token_hex(8)
            seg = Segment.create(name, size, lifetime="shared")
        else:
            if name is None:
                raise ValueError("'name' can only be None if create=True")
            seg = Segment.open(name)
        self._segment = seg
        self._name = seg.name
        self._size = seg.size
        self._buf = seg.buf
        if seg.name not in _held:
            _held[seg.name] = Segment.open(seg.name)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.name, False))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, size={self.size})"

    @property
    def buf(self) -> memoryview:
        """A memoryview of the block's contents."""
        if self._buf is None:
            raise ValueError("operation on closed SharedMemory")
        return self._buf

    @property
    def name(self) -> str:
        """Unique name that identifies the block."""
        return self._name

    @property
    def size(self) -> int:
        """Size in bytes."""
        return self._size

    def close(self) -> None:
        """Close access to the block from this instance (release ``buf`` first: a
        view still exported keeps the mapping, as with the standard one)."""
        if self._buf is not None:
            self._buf.release()
            self._buf = None
        if self._segment is not None:
            self._segment.close()
            self._segment = None

    def unlink(self) -> None:
        """Remove the block's name now (every OS): no new process can open it; those
        that have it keep using it until they close it.  Also ends this process's hold
        on it, so the memory goes when the last user closes it."""
        held = _held.pop(self._name, None)
        try:
            if held is not None and not held.closed:
                held.unlink()
            else:
                Segment.open(self._name).unlink()
        except SegmentNotFoundError:
            pass
        finally:
            if held is not None:
                held.close()


def _shareable_list_init() -> Any:
    """The standard ``ShareableList.__init__``, with ``SharedMemory`` meaning ours."""
    std = _mp_shm.ShareableList.__init__
    env = dict(std.__globals__)
    env["SharedMemory"] = SharedMemory
    init = types.FunctionType(std.__code__, env, std.__name__, std.__defaults__,
                              std.__closure__)
    init.__kwdefaults__ = std.__kwdefaults__
    init.__doc__ = std.__doc__
    return init


class ShareableList(_mp_shm.ShareableList):  # type: ignore[type-arg]
    """``multiprocessing.shared_memory.ShareableList(sequence=None, *, name=None)``: the
    standard class, its block a ``SharedMemory`` of this module."""

    __init__ = _shareable_list_init()
