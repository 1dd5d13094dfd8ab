"""What the platform under this process can do, as named capabilities.

Policy code branches on what a platform offers (``if HAS_OWNER_UIDS:``), never on its
name, so that a new platform is described here once rather than found in every
``if windows`` of the package.  The C core reports the platform it was built for
(``_core.PLATFORM``); its own differences live behind csrc/platform/platform.h.
"""

from __future__ import annotations

import sys

from . import _core

__all__ = [
    "FILES_HAVE_MODE_BITS",
    "HAS_C_LIBRARY",
    "HAS_DEV_SHM",
    "HAS_INOTIFY",
    "HAS_LINK_OBJECTS",
    "HAS_OWNER_UIDS",
    "MAPPED_FILES_REMOVABLE",
    "MSYNC_IS_DATASYNC",
    "NAMES_OUTLIVE_HANDLES",
    "PLATFORM",
    "SHM_DIR",
    "SHM_NAMES_HAVE_SLASH",
]

PLATFORM: str = _core.PLATFORM
"""'linux' (also generic POSIX), 'darwin' or 'windows': the backend the core was built
with.  For messages; branch on the capabilities below."""

_POSIX = PLATFORM != "windows"

HAS_OWNER_UIDS: bool = _POSIX
"""Objects have an owner uid and permission bits, which an opener checks before it
trusts them (``allow_foreign``).  Windows sections carry an ACL instead, set at
creation from ``mode``."""

NAMES_OUTLIVE_HANDLES: bool = _POSIX
"""A name stays until somebody removes it (POSIX ``shm_unlink``): the last user removes
a 'shared' object's name, ``gc`` reclaims names whose users died, and a 'persistent'
anonymous segment can exist with nobody attached.  Windows names vanish with their
last handle, so none of that applies there."""

HAS_LINK_OBJECTS: bool = _POSIX
"""A file-backed segment's name is a small 'link' object pointing at the file (a POSIX
shm name can only name shared memory).  Windows names the file mapping itself."""

FILES_HAVE_MODE_BITS: bool = _POSIX
"""Files carry permission bits (``fchmod``).  Windows files carry a DACL, which the
platform layer builds from the same POSIX-style ``mode`` (``_core.journal_restrict``);
``os.stat`` there reports no mode worth keeping."""

MAPPED_FILES_REMOVABLE: bool = _POSIX
"""A file can be removed or replaced while a process maps it (the mapping lives on).
Windows refuses both until every view and handle of it is closed."""

SHM_NAMES_HAVE_SLASH: bool = _POSIX
"""POSIX shm names start with '/' (``Segment.open(name, raw=True)`` adds one)."""

HAS_DEV_SHM: bool = sys.platform.startswith("linux")
"""Shared-memory names are files in ``SHM_DIR``, which can be stat()ed and watched."""

HAS_INOTIFY: bool = sys.platform.startswith("linux")
"""``open(name, wait=...)`` can sleep on inotify events instead of polling."""

MSYNC_IS_DATASYNC: bool = sys.platform.startswith("linux")
"""``msync(MS_SYNC)`` of a shared file mapping makes its range durable with the metadata
needed to read it back (``vfs_fsync_range(datasync=1)``, mm/msync.c): no ``fdatasync``
needs to follow.  Elsewhere (Windows: ``FlushViewOfFile`` does not flush the disk's
cache) the file is synced after the flush."""

HAS_C_LIBRARY: bool = PLATFORM == "linux"
"""libmapshare (the C API, docs/c-api.md) builds here from ``mapshare.get_sources()``:
its build uses the Linux backend only for now."""

SHM_DIR = "/dev/shm"
"""Where Linux keeps shared-memory objects (``HAS_DEV_SHM``)."""
