"""``RawValue``, ``RawArray``, ``Value`` and ``Array`` of ``multiprocessing.sharedctypes``
on mapshare segments: ctypes objects over a segment's memory, with the standard
synchronized wrappers (``get_lock()``, ``get_obj()``, ``value``) around this package's
``RLock``.  A ctypes object made here pickles (to a child being started) as the name of
its segment; the child maps the same memory."""

from __future__ import annotations

import ctypes
from multiprocessing import sharedctypes as _mp_sharedctypes
from typing import Any

from ._util import SegmentBuffer

__all__ = ["Array", "RawArray", "RawValue", "Value"]

_typecode_to_type: dict[str, Any] = _mp_sharedctypes.typecode_to_type  # type: ignore[attr-defined]


def _type_of(typecode_or_type: Any) -> Any:
    return _typecode_to_type.get(typecode_or_type, typecode_or_type)


def _new_value(type_: Any) -> Any:
    wrapper = SegmentBuffer(ctypes.sizeof(type_))
    # the standard rebuild: ctype.from_buffer over the memory, registered with
    # ForkingPickler so that it pickles as (type, wrapper) -- our wrapper is a name
    return _mp_sharedctypes.rebuild_ctype(  # type: ignore[attr-defined]
        type_, wrapper, None)


def RawValue(typecode_or_type: Any, *args: Any) -> Any:
    """A ctypes object in shared memory (zeroed, then ``type(*args)``); no lock."""
    type_ = _type_of(typecode_or_type)
    obj = _new_value(type_)
    ctypes.memset(ctypes.addressof(obj), 0, ctypes.sizeof(obj))
    obj.__init__(*args)
    return obj


def RawArray(typecode_or_type: Any, size_or_initializer: Any) -> Any:
    """A ctypes array in shared memory: ``size`` zeros, or a copy of a sequence."""
    type_ = _type_of(typecode_or_type)
    if isinstance(size_or_initializer, int):
        type_ = type_ * size_or_initializer
        obj = _new_value(type_)
        ctypes.memset(ctypes.addressof(obj), 0, ctypes.sizeof(obj))
        return obj
    type_ = type_ * len(size_or_initializer)
    result = _new_value(type_)
    result.__init__(*size_or_initializer)
    return result


def _lock_for(lock: Any, ctx: Any) -> Any:
    if lock in (True, None):
        from .synchronize import RLock

        return RLock()
    if not hasattr(lock, "acquire"):
        raise AttributeError(f"{lock!r} has no method 'acquire'")
    return lock


def Value(typecode_or_type: Any, *args: Any, lock: Any = True, ctx: Any = None) -> Any:
    """A synchronized shared ctypes object (``lock=False``: the raw object; ``lock`` a
    lock: that one; else a new ``RLock``)."""
    obj = RawValue(typecode_or_type, *args)
    if lock is False:
        return obj
    return _mp_sharedctypes.synchronized(obj, _lock_for(lock, ctx))


def Array(typecode_or_type: Any, size_or_initializer: Any, *, lock: Any = True,
          ctx: Any = None) -> Any:
    """A synchronized shared ctypes array (``lock`` as for ``Value``)."""
    obj = RawArray(typecode_or_type, size_or_initializer)
    if lock is False:
        return obj
    return _mp_sharedctypes.synchronized(obj, _lock_for(lock, ctx))
