"""Garbage collection of segments whose users all died (``mapshare gc``), and the one
rule that decides whether a name can be taken back (``create`` over an abandoned name
applies it too)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Optional

from . import _core, _link
from ._errors import LayoutError, SegmentNotFoundError, WaitTimeout
from ._inspect import SegmentInfo, list_os_names, segment_info
from ._platform import HAS_DEV_SHM, SHM_DIR

__all__ = ["UNFINISHED_GRACE", "Reclaimed", "collect", "reclaim", "reclaim_link"]

# An object whose creator never published its header and whose creator cannot be
# identified is judged abandoned once it is this old (a live creator publishes within
# microseconds).
UNFINISHED_GRACE = 10.0


def reclaim(osn: str, flags: int = 0) -> bool:
    """Remove the name ``osn`` if nobody can use its object any more, so that it can be
    created again (see ``ms_segment_reclaim``): a 'shared' object whose attached
    processes all died, one marked destroyed, or one whose creator died before publishing
    its header.  Never a persistent object (its data outlives its processes) and never
    one a live process uses.  True when the name is free now."""
    result = _core.reclaim(osn, flags, False)
    if result == _core.RECLAIM_UNFINISHED and (_age(osn) or 0.0) > UNFINISHED_GRACE:
        result = _core.reclaim(osn, flags, True)
    return result in (_core.RECLAIM_REMOVED, _core.RECLAIM_ABSENT)


def reclaim_link(osn: str) -> bool:
    """The name of a file-backed segment is a persistent link object; it is stale when
    its file is gone or replaced, or when that segment is 'shared' and every process
    attached to it died.  Remove such a link (under its meta lock); True when the name
    is free now.  The file itself is data and always stays."""
    try:
        link = _core.open(osn, None, _core.KIND_LINK, _core.ACCESS_WRITE)
    except SegmentNotFoundError:
        return True
    except (LayoutError, OSError):
        return reclaim(osn)  # not a link: the ordinary rules
    try:
        parsed = _link.parse(link.read())
        if parsed is None:
            return False
        dev, ino, path = parsed
        ident = (dev, ino)
        if ident == (0, 0):
            return False  # being written
        stale = False
        try:
            target = _core.open(osn, path, 0, _core.ACCESS_WRITE)
        except SegmentNotFoundError:
            stale = True
        except (LayoutError, OSError):
            return False
        else:
            try:
                st = target.stat()
                if (st["dev"], st["ino"]) != ident:
                    stale = True
                elif target.lifetime == _core.LIFETIME_SHARED:
                    _, stale = target.reap()
            finally:
                target.close(False)
        if not stale:
            return False
        link.remove_name(osn)
        return True
    finally:
        link.close(False)


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
    """Seconds since the object was last modified (None where that cannot be told)."""
    if not HAS_DEV_SHM:
        return None
    try:
        return time.time() - os.stat(SHM_DIR + os_name).st_mtime
    except OSError:
        return None


def collect(*, dry_run: bool = False) -> list[Reclaimed]:
    """Remove 'shared' segments whose attached processes are all dead, and objects
    whose creator died before finishing the header.  Persistent segments and anything
    with a live (or undeterminable) user are kept.  Returns what was removed."""
    out: list[Reclaimed] = []
    for osn in list_os_names():
        try:
            info = segment_info(osn)
        except SegmentNotFoundError:
            continue
        reason = _reason(info)
        if reason is None:
            continue
        try:
            if not dry_run and not _collect_one(osn, info):
                continue
        except (WaitTimeout, LayoutError):
            # its meta lock stuck (a holder stuck inside, or dead unmarked) or its header
            # changed under us: keep it and go on with the others
            continue
        out.append(Reclaimed(os_name=osn, name=info.name, reason=reason))
    return out


def _reason(info: SegmentInfo) -> Optional[str]:
    if info.state in ("initializing", "corrupt", "other version"):
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


def _collect_one(osn: str, info: SegmentInfo) -> bool:
    """Remove through the same rule ``create`` applies to a name it finds taken
    (``ms_segment_reclaim``): decided again under the object's meta lock, so a process
    attaching concurrently wins over the collector, and only that very object's name is
    removed, never one re-created since."""
    if info.path is not None:
        return reclaim_link(osn)
    unfinished_ok = info.state == "initializing"
    return bool(_core.reclaim(osn, 0, unfinished_ok) == _core.RECLAIM_REMOVED)
