"""Garbage collection of segments whose users all died (``mapshare gc``)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Optional

from . import _core
from ._errors import SegmentNotFoundError
from ._segment import (
    _SHM_DIR,
    UNFINISHED_GRACE,
    SegmentInfo,
    _list_os_names,
    _reclaim_link,
    segment_info,
)

__all__ = ["Reclaimed", "collect"]



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
    """Remove through the same rule ``create`` applies to a name it finds taken
    (``ms_segment_reclaim``): decided again under the object's meta lock, so a process
    attaching concurrently wins over the collector, and only that very object's name is
    removed, never one re-created since."""
    if info.path is not None:
        return _reclaim_link(osn)
    unfinished_ok = info.state == "initializing"
    return bool(_core.reclaim(osn, 0, unfinished_ok) == _core.RECLAIM_REMOVED)
