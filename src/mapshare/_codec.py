"""The object and array message encodings, shared by every kind that carries messages
(``Channel``, ``Topic``): one implementation, so that a message means the same bytes
whichever kind carries it.  Byte by byte: docs/design/wire-formats.md.

A message's kind travels in its ring record's flags (csrc/layout.h ``MS_REC_KIND_*``),
never sniffed from the payload.  Encoders return ``(total size, write)``: the caller
loans ``total`` bytes of ring and ``write`` fills them, so that the data is copied once,
straight into shared memory.  Decoders treat the payload as untrusted: any inconsistency
is a ``LayoutError``, never an out-of-range read.
"""

from __future__ import annotations

import ast
import pickle
import struct
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Callable, Literal

from ._errors import LayoutError

if TYPE_CHECKING:
    import numpy as np

    from ._core import Segment as CoreSegment
    from ._core import Window

__all__ = [
    "KIND_ARRAY",
    "KIND_BYTES",
    "KIND_CALLS",
    "KIND_NAMES",
    "KIND_OBJECT",
    "array_head_size",
    "array_view",
    "copy_array",
    "decode_object",
    "encode_array",
    "encode_object",
    "pad",
    "parse_array",
    "parse_array_head",
]

OBJ_MAGIC = b"MSO1"
OBJ_HEAD = struct.Struct("<4sIQ")  # magic, number of out-of-band buffers, pickle length
ARR_MAGIC = b"MSA1"
ARR_HEAD = struct.Struct("<4sIII")  # magic, descr length, ndim, order ('C' or 'F')
ALIGN = 8
MAX_NDIM = 64

KIND_BYTES = 0
KIND_OBJECT = 1
KIND_ARRAY = 2
KIND_NAMES = {KIND_BYTES: "bytes", KIND_OBJECT: "object", KIND_ARRAY: "array"}
KIND_CALLS = {
    KIND_BYTES: "receive()",
    KIND_OBJECT: "receive_object()",
    KIND_ARRAY: "receive_array()",
}

Writer = Callable[[memoryview], None]


def pad(n: int) -> int:
    """``n`` rounded up to the ring's alignment (8 bytes)."""
    return (n + ALIGN - 1) & ~(ALIGN - 1)


# ---- objects -------------------------------------------------------------------------


def encode_object(obj: Any) -> tuple[int, Writer]:
    """Pickle ``obj`` (protocol 5); out-of-band buffers are written after the pickle,
    each 8-byte aligned, so that they are copied once, straight into the ring."""
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    raws = [b.raw() for b in buffers]
    head = OBJ_HEAD.size + 8 * len(raws)
    total = pad(head + len(data)) + sum(pad(r.nbytes) for r in raws)

    def write(m: memoryview) -> None:
        OBJ_HEAD.pack_into(m, 0, OBJ_MAGIC, len(raws), len(data))
        for i, r in enumerate(raws):
            struct.pack_into("<Q", m, OBJ_HEAD.size + 8 * i, r.nbytes)
        m[head : head + len(data)] = data
        off = pad(head + len(data))
        for r in raws:
            m[off : off + r.nbytes] = r
            off += pad(r.nbytes)

    return total, write


def decode_object(m: memoryview) -> tuple[bytes, list[bytearray]]:
    """The pickle and its out-of-band buffers, copied out of ``m`` (unpickle them with
    ``pickle.loads(data, buffers=bufs)`` once the message's memory is released)."""
    if m.nbytes < OBJ_HEAD.size:
        raise LayoutError("object message too short")
    magic, nbuf, plen = OBJ_HEAD.unpack_from(m, 0)
    head = OBJ_HEAD.size + 8 * nbuf
    if magic != OBJ_MAGIC or head > m.nbytes or plen > m.nbytes - head:
        raise LayoutError("corrupt object message")
    sizes = [struct.unpack_from("<Q", m, OBJ_HEAD.size + 8 * i)[0] for i in range(nbuf)]
    data = bytes(m[head : head + plen])
    off = pad(head + plen)
    bufs = []
    for size in sizes:
        if off + size > m.nbytes:
            raise LayoutError("object message buffers run past its end")
        bufs.append(bytearray(m[off : off + size]))
        off += pad(size)
    return data, bufs


# ---- numpy arrays --------------------------------------------------------------------


def encode_array(array: Any, what: str = "send_object()") -> tuple[int, Writer]:
    """A numpy array with its dtype, shape and order; the data is copied once.  ``what``
    names the call that carries objects, for the refusal of an object dtype."""
    import numpy as np

    a = np.asanyarray(array)
    if a.dtype.hasobject:
        raise ValueError(f"arrays of Python objects cannot be shared; use {what}")
    order: Literal["C", "F"] = (
        "F" if (a.flags.f_contiguous and not a.flags.c_contiguous) else "C"
    )
    descr = repr(np.lib.format.dtype_to_descr(a.dtype)).encode()
    head = ARR_HEAD.size + len(descr) + 8 * a.ndim
    off = pad(head)

    def write(m: memoryview) -> None:
        ARR_HEAD.pack_into(m, 0, ARR_MAGIC, len(descr), a.ndim, ord(order))
        m[ARR_HEAD.size : ARR_HEAD.size + len(descr)] = descr
        struct.pack_into(f"<{a.ndim}q", m, ARR_HEAD.size + len(descr), *a.shape)
        if a.nbytes:
            dest = np.ndarray(a.shape, a.dtype, buffer=m[off:], order=order)
            np.copyto(dest, a, casting="no")
            del dest

    return off + a.nbytes, write


# descr text -> dtype, for the dtypes a structured-field rename cannot change in place
# (``dt.names = ...`` mutates a structured dtype; every other dtype is immutable)
_DTYPES: dict[bytes, Any] = {}
_DTYPES_MAX = 256


def _dtype_of(text: bytes) -> Any:
    import numpy as np

    dtype = _DTYPES.get(text)
    if dtype is not None:
        return dtype
    try:
        descr = ast.literal_eval(text.decode())
        dtype = np.lib.format.descr_to_dtype(descr)
    except (ValueError, SyntaxError, TypeError, UnicodeDecodeError) as exc:
        raise LayoutError(f"array message has an invalid dtype: {exc}") from None
    if dtype.hasobject:
        raise LayoutError("array message with an object dtype refused")
    if dtype.names is None:
        if len(_DTYPES) >= _DTYPES_MAX:
            _DTYPES.clear()
        _DTYPES[text] = dtype
    return dtype


def array_head_size(m: Any) -> int:
    """Bytes of the header (magic, descr, shape) of the array message starting ``m``, by
    its first ``ARR_HEAD.size`` bytes (0 if ``m`` is shorter); untrusted: the caller
    bounds it, ``parse_array`` checks it."""
    if len(m) < ARR_HEAD.size:
        return 0
    _magic, dlen, ndim, _order = ARR_HEAD.unpack_from(m, 0)
    return int(ARR_HEAD.size + dlen + 8 * ndim)


def parse_array(
    m: Any, length: int = -1
) -> tuple[Any, tuple[int, ...], Literal["C", "F"], int]:
    """(dtype, shape, order, offset of the data) of an array message, checked against
    its length.  ``m``: the message, or (with ``length``, the message's length) at least
    its first ``array_head_size`` bytes."""
    have = m.nbytes if isinstance(m, memoryview) else len(m)
    n = have if length < 0 else length
    if have < ARR_HEAD.size:
        raise LayoutError("array message too short")
    magic, dlen, ndim, order = ARR_HEAD.unpack_from(m, 0)
    if magic != ARR_MAGIC or ndim > MAX_NDIM or order not in (ord("C"), ord("F")):
        raise LayoutError("corrupt array message")
    head = ARR_HEAD.size + dlen + 8 * ndim
    if head > have or head > n:
        raise LayoutError("array message header runs past its end")
    dtype = _dtype_of(bytes(m[ARR_HEAD.size : ARR_HEAD.size + dlen]))
    shape = struct.unpack_from(f"<{ndim}q", m, ARR_HEAD.size + dlen)
    if any(s < 0 for s in shape):
        raise LayoutError("array message with a negative dimension")
    count = 1
    for s in shape:
        count *= s
    off = pad(head)
    if count * dtype.itemsize > n - min(off, n):
        raise LayoutError("array message shorter than its shape and dtype say")
    return dtype, tuple(shape), "F" if order == ord("F") else "C", off


# header bytes -> (dtype, shape, order, data offset, data bytes): a reader of a slot that
# keeps publishing arrays of one shape parses the same header every time
_HEADS: dict[bytes, tuple[Any, tuple[int, ...], Literal["C", "F"], int, int]] = {}


def parse_array_head(
    head: bytes, length: int
) -> tuple[Any, tuple[int, ...], Literal["C", "F"], int]:
    """``parse_array(head, length)`` for a header read on its own (``head``: the first
    bytes of a message of ``length`` bytes), reusing the result for the same header
    bytes.  The length check runs every time; structured dtypes are never reused (they
    can be renamed in place)."""
    need = array_head_size(head)
    key = head[:need] if ARR_HEAD.size <= need <= len(head) else b""
    hit = _HEADS.get(key) if key else None
    if hit is not None:
        dtype, shape, order, off, nbytes = hit
        if nbytes > length - min(off, length):
            raise LayoutError("array message shorter than its shape and dtype say")
        return dtype, shape, order, off
    dtype, shape, order, off = parse_array(head, length)
    if key and dtype.names is None:
        if len(_HEADS) >= _DTYPES_MAX:
            _HEADS.clear()
        count = 1
        for n in shape:
            count *= n
        _HEADS[key] = (dtype, shape, order, off, count * dtype.itemsize)
    return dtype, shape, order, off


def copy_array(m: memoryview) -> np.ndarray:
    """A read-only copy of the array message in ``m``."""
    import numpy as np

    dtype, shape, order, off = parse_array(m)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    data = bytearray(m[off : off + nbytes])
    a = np.ndarray(shape, dtype, buffer=data, order=order)
    a.flags.writeable = False
    return a


def array_view(window: Window, core: CoreSegment) -> Iterator[np.ndarray]:
    """The body of a ``receive_array_view`` context manager (run it with ``yield from``
    inside a ``@contextmanager``): yields the array in ``window`` (an open received view
    of an array message) as a read-only array inside the mapping, then finishes the
    window and raises BufferError if an array derived from it outlived the block."""
    import numpy as np

    with window as m:
        dtype, shape, order, off = parse_array(m)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        start = window.offset + off
        # The array's base is a read-only window on the segment's own mapping: it
        # keeps the mapping alive even after close(), and cannot be made writable.
        base: Any = core.subview(start, nbytes) if nbytes else b""
        a = np.ndarray(shape, dtype, buffer=base, order=order)
        del m
        yield a
        # Ours (a, getrefcount's argument) and the `with ... as` name: anything more
        # is an array or reference that outlived the block.
        escaped = sys.getrefcount(a) > 3 or bool(nbytes and sys.getrefcount(base) > 3)
        del a, base
    if escaped:
        raise BufferError(
            "an array or view of the received message outlived its block; the "
            "message was consumed and its memory will be reused (copy it instead)"
        )
