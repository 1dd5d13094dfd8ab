"""Garbage collection of segments whose users all died (``mapshare gc``)."""

from __future__ import annotations

import os
import struct
import time
from dataclasses import dataclass
from typing import Optional

from . import _core
from ._errors import LayoutError, MapshareError, SegmentNotFoundError
from ._segment import _SHM_DIR, SegmentInfo, _list_os_names, segment_info

__all__ = ["Reclaimed", "collect"]

# An object that never got a header (creator died between shm_open and publishing) is
# removed once it is this old: a live creator publishes within microseconds.
UNFINISHED_GRACE = 10.0


@dataclass(frozen=True)
class Reclaimed:
    """One object ``collect`` removed (or would remove, with ``dry_run``)."""

    os_name: str
    """The OS name."""
    name: str
    """The logical name ('?' if the header was unreadable)."""
    reason: str
    """Why it was removed."""


def _age(os_name: str) -> Optional[float]:
    try:
        return time.time() - os.stat(_SHM_DIR + os_name).st_mtime
    except OSError:
        return None


def collect(*, dry_run: bool = False) -> list[Reclaimed]:
    """Remove 'shared' segments whose attached processes are all dead, and objects
    whose creator died before finishing the header.  Persistent segments and anything
    with a live (or undeterminable) user are kept.  Returns what was removed."""
    out: list[Reclaimed] = []
    for osn in _list_os_names():
        try:
            info = segment_info(osn)
        except SegmentNotFoundError:
            continue
        reason = _reason(info)
        if reason is None:
            continue
        if not dry_run and not _reclaim(osn, info):
            continue
        out.append(Reclaimed(os_name=osn, name=info.name, reason=reason))
    return out


def _reason(info: SegmentInfo) -> Optional[str]:
    if info.state in ("initializing", "corrupt"):
        age = _age(info.os_name)
        if info.state == "initializing" and age is not None and age > UNFINISHED_GRACE:
            return f"never finished by its creator ({age:.0f} s old)"
        return None
    if info.state == "destroyed":
        return "destroyed by its last user, name left behind"
    if info.lifetime != "shared":
        return None
    if info.attached and info.all_dead:
        pids = ", ".join(str(p.pid) for p in info.attached)
        return f"every attached process is dead ({pids})"
    if not info.attached and info.creator_alive is False:
        return f"no process attached and its creator {info.creator_pid} is dead"
    if not info.attached and info.read_only_openers == ():
        # its creator detached, read-only openers kept it, and they have gone (the
        # reap under the meta lock re-checks that nobody has it open)
        return "no process attached or open"
    return None


def _reclaim(osn: str, info: SegmentInfo) -> bool:
    """Remove under the segment's meta lock, re-checking liveness there so that a
    process attaching concurrently wins over the collector."""
    if info.state == "initializing":
        try:
            _core.unlink(osn)
        except SegmentNotFoundError:
            return False
        return True
    if info.state == "destroyed":
        return _reclaim_destroyed(osn)
    try:
        core = _core.open(osn, info.path if info.kind != "link" else None, 0,
                          _core.ACCESS_WRITE)
    except (SegmentNotFoundError, LayoutError):
        return False
    try:
        st = core.stat()
        if info.path is not None:
            # the name is a link; the attach table lives in the backing file
            try:
                target = _core.open(osn, info.path, 0, _core.ACCESS_WRITE)
            except (OSError, LayoutError):
                target = None
            if target is not None:
                try:
                    _, empty = target.reap()
                finally:
                    target.close(detach=False)
                if not empty and info.state != "destroyed":
                    return False
        else:
            _, empty = core.reap()
            if not empty and info.state != "destroyed":
                return False
    finally:
        core.close(detach=False)
    return bool(_core.unlink_if_same(osn, st["dev"], st["ino"]))


def _reclaim_destroyed(osn: str) -> bool:
    """Unlink an object whose last user marked it destroyed but died before removing
    its name -- that very object (re-checked through a raw mapping), never a new one
    created under the name since."""
    try:
        raw = _core.open(osn, None, 0, _core.ACCESS_READ, True)
    except (OSError, LayoutError):
        return False
    try:
        st = raw.stat()
        (state,) = struct.unpack("<I", raw.read(4, _STATE_OFFSET))
    except MapshareError:
        return False
    finally:
        raw.close(detach=False)
    if state != _core.STATE_DESTROYED:
        return False
    try:
        return bool(_core.unlink_if_same(osn, st["dev"], st["ino"]))
    except SegmentNotFoundError:
        return False


_STATE_OFFSET = 72  # ms_header.state (csrc/layout.h)
