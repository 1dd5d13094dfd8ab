"""The .npy image of a SharedArray, read from untrusted memory: the descriptor value
parsed with a strict tokenizer (the C core, csrc/array.c, checked the grammar first),
the dtype numpy rebuilds from it, and the extent checked against the mapping.  A module
of its own so that inspection (``mapshare info``) reads arrays without importing the
handle classes."""

from __future__ import annotations

import os
import re
import struct
from typing import TYPE_CHECKING, Any, Optional

from . import _core
from ._errors import LayoutError

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "FILE_RECORD_MAX",
    "FILE_TAG",
    "check_file",
    "describe",
    "dtype_from_descr",
    "file_record",
    "image_info",
    "parse_file_record",
]

FILE_TAG = b"npy-file:"  # MS_ARRAY_FILE_TAG: a file-backed array's control record
# the longest record read back: the tag, a path of up to 4096 bytes, NUL, the identity
FILE_RECORD_MAX = len(FILE_TAG) + 4096 + 1 + 16


def file_record(path: str, ident: tuple[int, int]) -> bytes:
    """A file-backed array's control record (docs/design/layout.md, "Array control"):
    ``npy-file:``, the absolute path, a NUL, then the file's identity (st_dev, st_ino)
    as two little-endian uint64 -- so that an opener by name can tell that the file at
    that path is still the one the array was made with."""
    dev, ino = ident
    return FILE_TAG + os.fsencode(path) + b"\0" + struct.pack("<QQ", dev, ino)


def parse_file_record(rec: bytes) -> tuple[str, Optional[tuple[int, int]]]:
    """(path, identity or None) of a control record starting with ``FILE_TAG``; None
    when the record carries no identity (made before it was recorded) or an all-zero
    one (a platform that reports none).  LayoutError for anything malformed."""
    body = rec[len(FILE_TAG):]
    raw, sep, tail = body.partition(b"\0")
    ident: Optional[tuple[int, int]] = None
    if sep:
        if len(tail) != 16:
            raise LayoutError("invalid file-backed array record (identity)")
        dev, ino = struct.unpack("<QQ", tail)
        ident = (dev, ino) if (dev, ino) != (0, 0) else None
    path = os.fsdecode(raw)
    if not os.path.isabs(path):
        raise LayoutError("invalid file-backed array record (path)")
    return path, ident


def check_file(name: str, path: str, ident: Optional[tuple[int, int]],
               found: tuple[int, int]) -> None:
    """LayoutError unless the file mapped (identity ``found``) is the one the record
    names (``ident``; None: not recorded, nothing to check)."""
    if ident is not None and tuple(found) != tuple(ident):
        raise LayoutError(
            f"array {name!r}: its file {path!r} was replaced since the array was made "
            f"(device/inode {found[0]:x}/{found[1]:x}, recorded {ident[0]:x}/{ident[1]:x});"
            " open it with SharedArray.open(path=...) if the new file is meant"
        )
HEADER_READ = 65536 + 12  # MS_NPY_HEADER_MAX + the longest preamble
_PREAMBLE_MAX = 12        # magic (6), version (2), HEADER_LEN (2 in format 1, else 4)


# ---- the descr value: a strict literal parser (the C core checked the grammar) ------

_TOKEN = re.compile(r"\s*(?:('[ -&(-\[\]-~]*')|(\"[ -!#-\[\]-~]*\")|(\d+)|([\[\](),]))")


def _parse_descr(text: str) -> Any:
    """The descr value of a header as Python data: str, list of tuples, int tuples.
    Only the literal forms numpy writes are recognised; nothing is evaluated."""
    tokens: list[tuple[str, Any]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise LayoutError(f"invalid dtype descriptor near {text[pos:pos + 20]!r}")
        s1, s2, num, punct = m.groups()
        if s1 is not None or s2 is not None:
            tokens.append(("s", (s1 or s2)[1:-1]))
        elif num is not None:
            tokens.append(("i", int(num)))
        else:
            tokens.append(("p", punct))
        pos = m.end()
    i = 0

    def value(depth: int) -> Any:
        nonlocal i
        if depth > 32 or i >= len(tokens):
            raise LayoutError("invalid dtype descriptor")
        kind, v = tokens[i]
        i += 1
        if kind in ("s", "i"):
            return v
        if v == "[":
            out: list[Any] = []
            while True:
                if tokens[i] == ("p", "]"):
                    i += 1
                    return out
                out.append(value(depth + 1))
                if tokens[i] == ("p", ","):
                    i += 1
        if v == "(":
            items: list[Any] = []
            while True:
                if tokens[i] == ("p", ")"):
                    i += 1
                    return tuple(items)
                items.append(value(depth + 1))
                if tokens[i] == ("p", ","):
                    i += 1
        raise LayoutError("invalid dtype descriptor")

    try:
        result = value(0)
    except IndexError:
        raise LayoutError("invalid dtype descriptor (truncated)") from None
    if i != len(tokens):
        raise LayoutError("invalid dtype descriptor (trailing data)")
    return result


# descr text -> dtype: numpy rebuilds a dtype in tens of microseconds, and opening an
# array by name is meant to cost about one attach.  Only dtypes nothing can change in
# place are kept (``dt.names = ...`` renames a structured dtype's fields in place).
_DTYPES: dict[str, np.dtype[Any]] = {}
_DTYPES_MAX = 256


# exact header bytes -> (npy_parse's fields, dtype): the same bytes always parse the same
# way, so a header seen before is not parsed again (the extent check still runs)
_HEADERS: dict[bytes, tuple[dict[str, Any], np.dtype[Any]]] = {}


def dtype_from_descr(text: str) -> np.dtype[Any]:
    """The dtype of a header's descr value (validated text, from ``npy_parse``)."""
    dt = _DTYPES.get(text)
    if dt is not None:
        return dt
    import numpy as np

    descr = _parse_descr(text)
    try:
        dt = np.lib.format.descr_to_dtype(descr)
    except Exception as exc:  # numpy raises TypeError/ValueError/KeyError on nonsense
        raise LayoutError(f"invalid dtype descriptor {text[:80]!r}: {exc}") from None
    if dt.hasobject:
        raise LayoutError("the array's dtype holds Python objects: refused")
    if dt.names is None:
        if len(_DTYPES) >= _DTYPES_MAX:
            _DTYPES.clear()
        _DTYPES[text] = dt
    return dt


def header_bytes(data: Any, pre: bytes = b"") -> bytes:
    """The header of the .npy image at the start of ``data`` (a _core.Segment): the
    preamble (magic, version, HEADER_LEN) and then exactly HEADER_LEN bytes, never the
    largest header allowed.  ``pre``: the image's first bytes, if already read.  The
    length is untrusted: bounded by the mapping and HEADER_READ here, and every byte is
    checked by ``npy_parse``."""
    size = int(data.size)
    if len(pre) < _PREAMBLE_MAX:
        pre = data.read(min(size, _PREAMBLE_MAX), 0)
    if len(pre) >= 10 and pre[6] == 1:
        total = 10 + int.from_bytes(pre[8:10], "little")
    elif len(pre) >= 12 and pre[6] in (2, 3):
        total = 12 + int.from_bytes(pre[8:12], "little")
    else:
        return pre  # not a .npy preamble: npy_parse says what is wrong
    total = min(total, size, HEADER_READ)
    return pre[:total] if total <= len(pre) else data.read(total, 0)


def image_info(data: Any, pre: bytes = b"") -> tuple[dict[str, Any], np.dtype[Any]]:
    """The validated header of the .npy image at the start of ``data`` (a _core.Segment):
    its parsed fields and dtype; LayoutError if the data would not fit the mapping.
    ``pre``: the image's first bytes, if the caller read them already.  The fields dict
    may be shared with earlier calls: read it, never change it."""
    size = int(data.size)
    head = header_bytes(data, pre)
    hit = _HEADERS.get(head)
    if hit is not None:
        info, dt = hit
    else:
        info = _core.npy_parse(head)
        dt = dtype_from_descr(info["descr"])
        if dt.names is None:
            if len(_HEADERS) >= _DTYPES_MAX:
                _HEADERS.clear()
            _HEADERS[head] = (info, dt)
    if info["data_offset"] + info["count"] * dt.itemsize > size:
        raise LayoutError(
            f"array of shape {tuple(info['shape'])} and dtype {dt} needs "
            f"{info['data_offset'] + info['count'] * dt.itemsize} bytes; the mapping has {size}"
        )
    return info, dt


def describe(core: Any) -> dict[str, Any]:
    """What ``mapshare info`` / ``ls`` show of an array object (``core``: a _core.Segment
    of kind array, opened for inspection): dtype, shape, order, version, backing file."""
    ready, version = _core.array_state(core)
    out: dict[str, Any] = {"ready": bool(ready), "version": int(version)}
    if not ready:
        return out
    rec = core.read(min(int(core.size), FILE_RECORD_MAX), 0)
    data = core
    if rec.startswith(FILE_TAG):
        out["file"], ident = parse_file_record(rec)
        data = _core.open("", out["file"], 0, _core.ACCESS_READ, True)
        try:
            st = data.stat()
            check_file(core.name, out["file"], ident, (st["dev"], st["ino"]))
        except BaseException:
            data.close(detach=False)
            raise
    try:
        info, dt = image_info(data)
    finally:
        if data is not core:
            data.close(detach=False)
    out.update(
        dtype=str(dt), descr=info["descr"], shape=list(info["shape"]),
        order="F" if info["fortran_order"] else "C", nbytes=info["count"] * dt.itemsize,
    )
    return out
