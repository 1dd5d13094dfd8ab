"""Link objects: the name of a file-backed segment (POSIX).

A POSIX shm name can only name shared memory, so the name of a segment backed by a
file is a small persistent object of kind 'link' whose user area holds the file's
identity and absolute path: ``<QQ`` (st_dev, st_ino) then the path, NUL-terminated.
An all-zero identity means the link is still being written.  The file carries the real
header and data; the link only lets others open the segment by name and lets
``mapshare ls`` show it.  (Windows names the file mapping itself: no links.)
"""

from __future__ import annotations

import os
import struct
from typing import Optional

from . import _core
from ._core import Segment as _CoreSegment
from ._errors import _Initializing

__all__ = ["LINK_FMT", "fill", "new", "parse", "read"]

LINK_FMT = "<QQ"  # dev, ino of the backing file; its path follows
_HEAD = struct.calcsize(LINK_FMT)


def parse(data: bytes) -> Optional[tuple[int, int, str]]:
    """(dev, ino, path) of a link's user area; None if it is too short to be one."""
    if len(data) < _HEAD:
        return None
    dev, ino = struct.unpack_from(LINK_FMT, data)
    return dev, ino, os.fsdecode(data[_HEAD:].split(b"\0", 1)[0])


def new(osn: str, name: str, path: str, mode: int) -> _CoreSegment:
    """Create the link object ``osn`` for ``path`` (exclusively), still empty."""
    payload_len = _HEAD + len(os.fsencode(path)) + 1
    return _core.create(
        osn, name, _core.KIND_LINK, payload_len + 4096, None, mode,
        _core.LIFETIME_PERSISTENT, 0, None,
    )


def fill(link: _CoreSegment, path: str, ident: tuple[int, int]) -> tuple[int, int]:
    """Write the file's identity and absolute path into a new link and close it; the
    link's own identity (dev, ino)."""
    link.write(struct.pack(LINK_FMT, *ident) + os.fsencode(path) + b"\0")
    link_st = link.stat()
    link.close()
    return (link_st["dev"], link_st["ino"])


def read(core: _CoreSegment) -> tuple[str, int, int, tuple[int, int]]:
    """(path, dev, ino, the link's own identity) of an opened link, which this closes.
    ``_Initializing`` while its creator is still writing it."""
    try:
        data = core.read()
        st = core.stat()
    finally:
        core.close(detach=False)
    parsed = parse(data)
    if parsed is None or parsed[:2] == (0, 0):
        raise _Initializing("link not yet written")
    dev, ino, path = parsed
    return path, dev, ino, (st["dev"], st["ino"])
