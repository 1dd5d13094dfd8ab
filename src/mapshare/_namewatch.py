"""Waiting for a name to appear (``open(name, wait=...)``) without polling where the
platform can tell us (Linux: inotify on /dev/shm)."""

from __future__ import annotations

import os
import time
from typing import Optional

from ._platform import HAS_INOTIFY, SHM_DIR

__all__ = ["NameWatch"]


class NameWatch:
    """Sleep until something is created in /dev/shm (Linux inotify), so that
    ``open(name, wait=...)`` does not poll.  Elsewhere, or when inotify is unavailable
    (no /dev/shm, out of watches), it sleeps ``_POLL`` seconds per round instead."""

    _POLL = 0.005
    _SAFETY = 1.0  # even with inotify, look again at least this often (a missed event)

    def __init__(self) -> None:
        self._fd = -1
        if HAS_INOTIFY:
            try:
                self._fd = _inotify_watch(SHM_DIR)
            except OSError:
                self._fd = -1

    @classmethod
    def polling(cls) -> NameWatch:
        """A watch that only sleeps (for a backing file, which can be anywhere)."""
        self = object.__new__(cls)
        self._fd = -1
        return self

    def sleep(self, remaining: Optional[float]) -> None:
        """Wait for a creation in the directory, at most ``remaining`` seconds."""
        if self._fd < 0:
            time.sleep(self._POLL if remaining is None else min(self._POLL, remaining))
            return
        import select

        t = self._SAFETY if remaining is None else min(self._SAFETY, remaining)
        ready, _, _ = select.select([self._fd], [], [], t)
        if ready:
            try:
                os.read(self._fd, 65536)  # drain: we only care that something happened
            except OSError:
                pass

    def close(self) -> None:
        """Release the inotify descriptor."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _inotify_watch(directory: str) -> int:
    import ctypes

    # The C library this process already has loaded: find_library("c") would run
    # ldconfig (a child process) on every wait.
    libc = ctypes.CDLL(None, use_errno=True)
    in_nonblock_cloexec = 0o4000 | 0o2000000
    in_create_moved_to_attrib = 0x100 | 0x80 | 0x04
    fd = int(libc.inotify_init1(in_nonblock_cloexec))
    if fd < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1")
    if libc.inotify_add_watch(fd, os.fsencode(directory), in_create_moved_to_attrib) < 0:
        err = ctypes.get_errno()
        os.close(fd)
        raise OSError(err, "inotify_add_watch")
    return fd

