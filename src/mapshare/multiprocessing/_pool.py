"""The ``Pool`` that mapshare's contexts make: ``multiprocessing.pool.Pool`` with one
change to what its worker handler thread waits on."""

from __future__ import annotations

from multiprocessing import pool as _mp_pool
from typing import Any


class Pool(_mp_pool.Pool):
    """``multiprocessing.pool.Pool`` (every method and semantic its own) whose worker
    handler thread waits on its workers' sentinels and the change notifier only, not
    also on the result queue's ``_reader``.

    Why: the standard handler's wait returns while the result queue's fd is readable --
    from a result's arrival until the result handler thread has taken every result --
    and each return is a round of ``_maintain_pool`` in Python, holding the GIL.  With
    the default chunksize the results are lists of thousands of objects whose unpickling
    takes a while, so the handler went round hundreds of times per ``map`` (measured:
    up to 750 rounds in a 100,000-task map), keeping the GIL from the result and task
    handler threads that do the map's work (the standard pool does the same, 100-300
    rounds).  The wake-up is not needed: whatever that loop checks changes with a
    worker's exit (its sentinel), ``close``/``terminate`` or the cache becoming empty
    (both put to the change notifier) -- ``multiprocessing.pool.ThreadPool`` waits on
    the change notifier alone for the same reason.  Not waiting on the result queue's
    fd also spares it the fd watcher thread ``_Reader.fileno`` would start."""

    def _get_sentinels(self) -> list[Any]:
        return [self._change_notifier._reader]  # type: ignore[attr-defined]
