"""Segments: named blocks of shared memory, optionally backed by a file, with the data
calls (``buf``, ``read``, ``write``, ``view``, ``flush``), the built-in lock and change
notification.  Naming, factories, lifetime and closing are every kind's: ``_handle``.
"""

from __future__ import annotations

from typing import Any, Optional

from ._aio import wait_until
from ._handle import Handle
from ._options import Access, access_code
from ._sync import Lock

__all__ = ["Segment"]


class Segment(Handle):
    """A named block of shared memory, optionally backed by a file.

    Made by the factories ``create``, ``open`` and ``open_or_create`` (never by the
    constructor).  ``buf`` is the memory; ``close()`` detaches this handle and
    ``unlink()`` removes the name.  A Segment is a context manager (closing on exit)
    and pickles as its name, so a worker process reattaches.
    """

    @property
    def buf(self) -> memoryview:
        """The segment's memory (read-only for access='r').  Views and numpy arrays
        made from it keep it mapped, even after ``close()``: the mapping goes with the
        last of them."""
        if self._buf is None:
            self._check_open()
            self._buf = memoryview(self._core)
        return self._buf

    # ---- data ----------------------------------------------------------------------

    def read(self, n: Optional[int] = None, offset: int = 0) -> bytes:
        """Copy ``n`` bytes (default: to the end) starting at ``offset`` out of the
        segment.  Raises SegmentFaultError, never crashes, if the memory vanished."""
        self._check_open()
        return self._core.read(n, offset)

    def write(self, data: Any, offset: int = 0) -> int:
        """Copy a bytes-like object into the segment at ``offset`` (the seed's
        CopyMemory).  Returns the number of bytes written."""
        self._check_open()
        return int(self._core.write(data, offset))

    def view(self, offset: int, length: int, *, access: Optional[Access] = None) -> memoryview:
        """Map ``length`` bytes at any ``offset`` as a separate view (MapViewOfFile):
        alignment to the OS granularity is handled inside.  ``access`` may narrow the
        segment's access ('r') or ask for a private copy ('copy').  Release the
        memoryview (or use it in a ``with`` block) to unmap."""
        self._check_open()
        acc = -1 if access is None else access_code(access)
        return memoryview(self._core.map_view(offset, length, acc))

    def flush(self, *, durable: bool = False) -> None:
        """Write modified pages of a file-backed segment back to the file
        (FlushViewOfFile).  ``durable=True`` also waits until the data is on stable
        storage (fsync / FlushFileBuffers); errors such as a full disk are raised."""
        self._check_open()
        self._core.flush(0, None, durable)

    # ---- synchronization -----------------------------------------------------------

    def lock(self) -> Lock:
        """The segment's built-in robust lock (see ``mapshare.Lock``)."""
        self._check_open()
        return Lock._bind(self)

    def notify(self) -> None:
        """Tell waiters the segment changed: bumps the change counter and wakes every
        process in ``wait_for_change``."""
        self._check_open()
        self._core.notify()

    @property
    def change_count(self) -> int:
        """The change counter (a 32-bit value that wraps)."""
        self._check_open()
        return int(self._core.change_count())

    def wait_for_change(self, since: int, timeout: Optional[float] = None) -> int:
        """Block until the change counter differs from ``since`` and return its new
        value.  Read ``change_count`` before reading the data, then wait with it: a
        notify in between is never lost.  Raises ``WaitTimeout`` (a TimeoutError)."""
        self._check_open()
        return int(self._core.wait_change(since, timeout))

    async def wait_for_change_async(
        self, since: int, timeout: Optional[float] = None
    ) -> int:
        """``wait_for_change`` for asyncio: never blocks the event loop; cancellable."""
        self._check_open()
        core = self._core

        def poll() -> Optional[int]:
            now = int(core.change_count())
            return None if now == since else now

        def block(t: float) -> Optional[int]:
            try:
                return int(core.wait_change(since, t, 0.0))
            except TimeoutError:
                return None

        return await wait_until(poll, block, timeout, what="wait_for_change")

