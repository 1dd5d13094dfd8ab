"""Every open handle of this process: re-counted in a forked child, closed at exit.

A normal exit (end of script, ``sys.exit``, an uncaught exception, a multiprocessing
child returning) detaches like ``close()``; only a killed process is a crashed peer.
Handles register here when they are made (``add``) and leave when they close
(``discard``); other modules add ``exit_hooks`` that must run before any handle closes.
"""

from __future__ import annotations

import atexit
import os
import sys
import weakref
from typing import Callable, Protocol

__all__ = ["add", "discard", "exit_hooks"]


class _Handle(Protocol):
    def _after_fork(self) -> None: ...
    def _close(self, *, force: bool) -> None: ...


# Every open handle of this process, so that a forked child can register itself.
_live: weakref.WeakSet[_Handle] = weakref.WeakSet()

# Called first by _close_live (the channel module registers its handles' closing here).
exit_hooks: list[Callable[[], None]] = []


def add(handle: _Handle) -> None:
    """Register a new handle (closed at exit, re-counted in a forked child)."""
    _live.add(handle)
    _register_child_exit()


def discard(handle: _Handle) -> None:
    """Forget a closed handle."""
    _live.discard(handle)


def _after_fork_in_child() -> None:
    for seg in list(_live):
        seg._after_fork()
    # A multiprocessing child ends with os._exit: nothing would close the handles it
    # inherited (and registered above), so a 'shared' segment whose parent closed first
    # outlived everyone until `mapshare gc`.  Close them in multiprocessing's exit hook
    # (registered through an after-forker: the child clears finalizers made before).
    util = sys.modules.get("multiprocessing.util")
    if _live and util is not None:
        util.register_after_fork(_FORK_KEY, _close_at_child_exit)


class _ForkKey:
    """A weakref-able key for multiprocessing's after-fork registry."""


_FORK_KEY = _ForkKey()


_child_exit_pid = 0


def _register_child_exit() -> None:
    """A handle made inside a forked multiprocessing child (after the fork) must be
    closed by that child's exit path too: it ends with os._exit, which skips atexit."""
    global _child_exit_pid
    util = sys.modules.get("multiprocessing.util")
    if util is None or _child_exit_pid == os.getpid():
        return
    import multiprocessing

    if multiprocessing.parent_process() is None:
        return  # the main process: atexit closes its handles
    _child_exit_pid = os.getpid()
    util.Finalize(None, _close_live, exitpriority=0)


def _close_at_child_exit(_key: object) -> None:
    import multiprocessing.util as util

    util.Finalize(None, _close_live, exitpriority=0)


def _close_live() -> None:
    """Close every handle of this process (interpreter exit, a multiprocessing child's
    exit): a normal exit detaches like close(), even with views, arrays or held locks.
    Channels first, so they leave their peer tables before their segment goes."""
    for hook in exit_hooks:
        try:
            hook()
        except Exception:
            pass
    for seg in list(_live):
        try:
            seg._close(force=True)
        except Exception:
            pass


atexit.register(_close_live)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
