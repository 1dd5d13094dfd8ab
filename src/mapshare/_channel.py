"""Channels: a bounded queue of variable-size byte messages between any number of
sending and receiving processes (MPMC), in one segment.

Each message goes to exactly one receiver; a single sender's messages arrive in order.
The C ring does the work in one call per message (reserve, copy, publish, wake).
"""

from __future__ import annotations

import os
import pickle
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional, cast

from . import _codec, _core, _registry
from ._aio import wait_until
from ._errors import (
    BrokenChannelError,
    ChannelEmpty,
    ChannelFull,
    EndOfChannel,
    MessageKindError,
)
from ._options import INIT_WAIT, Lifetime
from ._segment import Segment

if TYPE_CHECKING:
    import numpy as np
    from typing_extensions import Self

__all__ = ["Channel", "ChannelStatistics"]

class _ChannelSegment(Segment):
    _kind = _core.KIND_CHANNEL
    _channel: Optional[weakref.ref[Channel]] = None

    def _close(self, *, force: bool) -> None:
        """Leave the channel's peer tables first: whoever closes the segment (the
        channel, its finalizer, the interpreter's or a multiprocessing child's exit
        hook) makes a clean exit, never one that receivers take for a dead sender."""
        ref = self._channel
        ch = ref() if ref is not None else None
        if ch is not None and not self._core.closed:
            ch._detach()
        super()._close(force=force)


# Open channels of this process, so that a forked child does not believe it holds the
# parent's loan or view, nor that it is registered as a peer.
_live: weakref.WeakSet[Channel] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for ch in list(_live):
        ch._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _detach_live() -> None:
    """At interpreter exit: every channel handle leaves the peer tables (aborting a loan
    or view left open), so that a script that ends normally is never taken for a dead
    sender.  (A multiprocessing child, which ends with os._exit, gets the same through
    the segments' exit hook: closing a channel's segment detaches the channel first.)"""
    for ch in list(_live):
        try:
            if not ch._segment.closed:
                ch._detach()
        except Exception:  # a handle in an inconsistent state must not stop the others
            pass


# Run by the segments' exit path (atexit and a multiprocessing child's exit) before they
# close: a channel leaves its peer tables first.
_registry.exit_hooks.append(_detach_live)


@dataclass(frozen=True)
class ChannelStatistics:
    """Counters of a channel, read from shared memory (a consistent-enough snapshot:
    each field is exact, fields may be from slightly different instants)."""

    capacity: int
    """Ring size in bytes."""
    max_message: int
    """Largest message that can ever be sent, in bytes."""
    queued_bytes: int
    """Bytes of ring in use now (messages, their 8-byte headers and padding)."""
    queued_messages: int
    """Messages sent and not yet received."""
    sent_messages: int
    """Messages sent since creation.  The count follows the publication: a sender killed
    between the two leaves it one behind (the message itself is delivered)."""
    sent_bytes: int
    """Payload bytes sent since creation."""
    received_messages: int
    """Messages received since creation."""
    received_bytes: int
    """Payload bytes received since creation."""
    high_water: int
    """Most bytes ever queued at once (ring bytes: headers and padding included)."""
    redelivered: int
    """Messages offered again because a receiver died holding them (receive_view)."""
    abandoned: int
    """Sends and loans left unfinished by a sender that died: never visible to anyone."""
    dead_senders: int
    """Senders that died without closing (SIGKILL, ``os._exit``), found since creation."""
    senders: int
    """Processes alive that have sent on this channel and not closed it."""
    receivers: int
    """Processes alive that have received on this channel and not closed it."""
    send_waiters: int
    """Senders sleeping because the channel is full."""
    receive_waiters: int
    """Receivers sleeping because the channel is empty."""
    closed: bool
    """``close_sending()`` was called."""


class Channel(_core.Channel):
    """A bounded MPMC queue of byte messages in shared memory.

    ``Channel.create(name, capacity)`` makes one of ``capacity`` bytes; any process
    ``Channel.open(name)``s it.  ``send``/``receive`` block (``timeout=None``), give up
    after ``timeout`` seconds (``WaitTimeout``, a TimeoutError), or never wait
    (``send_nowait``/``receive_nowait``: ``ChannelFull``/``ChannelEmpty``).  A message
    larger than ``max_message`` raises ``MessageTooLargeError`` at once.

    Crash safety: a message becomes visible only when completely written, so a sender
    killed mid-write exposes nothing; a receiver killed inside ``receive_view`` leaves
    the message queued, and it is delivered again (counted in ``redelivered``).
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError("use Channel.create(), Channel.open() or Channel.open_or_create()")

    # send, send_nowait, receive, receive_nowait, close_sending, capacity and
    # max_message are the C methods of _core.Channel themselves: one C call per message,
    # no Python frame in between.

    _segment: Segment
    _waits: list[None]  # one entry per asyncio wait running in a worker thread

    @classmethod
    def _wrap(cls, seg: Segment, spin: Optional[float]) -> Self:
        self = cast("Self", _core.Channel.__new__(cls, seg._core))
        self._segment = seg
        self._waits = []
        if isinstance(seg, _ChannelSegment):
            seg._channel = weakref.ref(self)
        if spin is not None:
            seg.spin = spin
        _live.add(self)
        return self

    @staticmethod
    def _capacity(capacity: int) -> int:
        if isinstance(capacity, bool) or not isinstance(capacity, int):
            raise TypeError(f"capacity must be an int, not {type(capacity).__name__}")
        if capacity < 64:
            raise ValueError(f"capacity must be an int >= 64 bytes, not {capacity!r}")
        return _codec.pad(capacity)

    @classmethod
    def create(
        cls, name: str, capacity: int, *, mode: int = 0o600, lifetime: Lifetime = "shared",
        global_namespace: bool = False, spin: Optional[float] = None,
    ) -> Self:
        """Create a channel whose ring holds ``capacity`` bytes (rounded up to a
        multiple of 8; each message takes its length rounded up to 8, plus 8).
        The keywords mean what they mean for ``Segment.create``; ``spin``: seconds a
        blocked call busy-waits before sleeping (default 50 µs)."""
        seg = _ChannelSegment._create(
            name, cls._capacity(capacity), path=None, mode=mode, lifetime=lifetime,
            init=None, global_namespace=global_namespace,
        )
        return cls._wrap(seg, spin)

    @classmethod
    def open(
        cls, name: str, *, allow_foreign: bool = False, global_namespace: bool = False,
        wait: Optional[float] = 0, init_timeout: float = INIT_WAIT,
        spin: Optional[float] = None,
    ) -> Self:
        """Open an existing channel (``LayoutError`` if the name is not a channel).
        The keywords mean what they mean for ``Segment.open``: ``wait`` waits that many
        seconds for the name to appear (None: forever), ``allow_foreign`` trusts a
        channel of another user (a group member opening a ``mode=0o660`` channel)."""
        seg = _ChannelSegment.open(
            name, allow_foreign=allow_foreign, global_namespace=global_namespace, wait=wait,
            init_timeout=init_timeout,
        )
        return cls._wrap(seg, spin)

    @classmethod
    def open_or_create(
        cls, name: str, capacity: int, *, mode: int = 0o600, lifetime: Lifetime = "shared",
        allow_foreign: bool = False, global_namespace: bool = False,
        init_timeout: float = INIT_WAIT, spin: Optional[float] = None,
    ) -> Self:
        """Open the channel, or create it; ``LayoutError`` if it exists with another
        capacity."""
        seg = _ChannelSegment._open_or_create(
            name, cls._capacity(capacity), path=None, mode=mode, lifetime=lifetime, init=None,
            init_timeout=init_timeout, allow_foreign=allow_foreign,
            global_namespace=global_namespace,
        )
        return cls._wrap(seg, spin)

    # ---- attributes ----------------------------------------------------------------

    @property
    def name(self) -> str:
        """The channel's name."""
        return self._segment.name

    @property
    def spin(self) -> float:
        """Seconds a blocked call busy-waits before sleeping."""
        return self._segment.spin

    @spin.setter
    def spin(self, seconds: float) -> None:
        self._segment.spin = seconds

    @property
    def segment(self) -> Segment:
        """The segment holding the channel."""
        return self._segment

    # ---- bytes ---------------------------------------------------------------------

    # send_many and receive_many are C methods too (one lock per batch).

    # ---- zero copy -----------------------------------------------------------------

    # loan() and receive_view() are C methods too: they return a context manager whose
    # __enter__ gives the memoryview and whose __exit__ sends or consumes.

    # ---- objects -------------------------------------------------------------------

    def send_object(self, obj: Any, timeout: Optional[float] = None) -> None:
        """Pickle ``obj`` (protocol 5) and send it; out-of-band buffers (numpy arrays,
        ``pickle.PickleBuffer``s; not ``bytes``) are copied once straight into the ring.  The
        message is marked as an object: ``receive_object()`` or ``receive_any()`` take it."""
        total, write = _codec.encode_object(obj)
        with self.loan(total, timeout, _kind=_codec.KIND_OBJECT) as m:
            write(m)

    def _view_of(self, kind: int, call: str, timeout: Optional[float]) -> Any:
        """The next message as an open view, if it is of ``kind``; else leave it queued
        and raise MessageKindError."""
        view = self.receive_view(timeout)
        found = self._view_kind()
        if found != kind:
            self._consume(view, True)  # keep it queued
            name = _codec.KIND_NAMES.get(found, f"unknown ({found})")
            err = MessageKindError(
                f"{call} found a message of kind {name}; it was left queued "
                f"(use {_codec.KIND_CALLS.get(found, 'receive()')} or receive_any())"
            )
            err.kind = name
            raise err
        return view

    def receive_object(self, timeout: Optional[float] = None) -> object:
        """Receive and unpickle an object sent with ``send_object``.  A message of
        another kind is left queued (``MessageKindError``).  This and
        ``receive_any``/their async forms are the only calls that unpickle: only use
        them on a channel whose senders you trust, as unpickling can run code."""
        with self._view_of(_codec.KIND_OBJECT, "receive_object()", timeout) as m:
            data, bufs = _codec.decode_object(m)
        return pickle.loads(data, buffers=bufs)

    def receive_object_nowait(self) -> object:
        """``receive_object`` without waiting: ``ChannelEmpty`` if there is nothing."""
        return self.receive_object(0)

    # ---- numpy ---------------------------------------------------------------------

    def send_array(self, array: Any, timeout: Optional[float] = None) -> None:
        """Send a numpy array (any shape, order, byte order or structured dtype; not
        object dtype) with its dtype, shape and order, copied once into the ring."""
        total, write = _codec.encode_array(array)
        with self.loan(total, timeout, _kind=_codec.KIND_ARRAY) as m:
            write(m)

    def receive_array(self, timeout: Optional[float] = None) -> np.ndarray:
        """Receive an array sent with ``send_array``: same dtype, shape and order,
        read-only, its data copied once out of the ring.  For no copy at all, use
        ``receive_array_view``.  A message of another kind is left queued
        (``MessageKindError``)."""
        with self._view_of(_codec.KIND_ARRAY, "receive_array()", timeout) as m:
            return _codec.copy_array(m)

    def receive_array_nowait(self) -> np.ndarray:
        """``receive_array`` without waiting: ``ChannelEmpty`` if there is nothing."""
        return self.receive_array(0)

    @contextmanager
    def receive_array_view(self, timeout: Optional[float] = None) -> Iterator[np.ndarray]:
        """Yield the next array as a read-only view inside the ring (zero copy), valid
        only inside the block; copy what must outlive it.  A message of another kind is
        left queued (``MessageKindError``).  Like ``receive_view``, an array derived from
        it (a slice, a transpose, another reference) still alive when the block ends
        raises BufferError: the message is consumed and its memory will be reused.  Never
        a dangling pointer: the array keeps the mapping alive even after ``close()``."""
        window = self._view_of(_codec.KIND_ARRAY, "receive_array_view()", timeout)
        yield from _codec.array_view(window, self._segment._core)

    # ---- any kind ------------------------------------------------------------------

    def receive_any(self, timeout: Optional[float] = None) -> object:
        """Receive the next message whatever its kind, decoded by it: ``bytes`` for
        ``send``/``send_many``/``loan``, the object for ``send_object`` (unpickled: trusted
        senders only), a read-only numpy array for ``send_array``."""
        with self.receive_view(timeout) as m:
            kind = self._view_kind()
            if kind == _codec.KIND_OBJECT:
                data, bufs = _codec.decode_object(m)
            elif kind == _codec.KIND_ARRAY:
                return _codec.copy_array(m)
            else:
                return bytes(m)
        return pickle.loads(data, buffers=bufs)

    def receive_any_nowait(self) -> object:
        """``receive_any`` without waiting: ``ChannelEmpty`` if there is nothing."""
        return self.receive_any(0)

    # ---- end of stream -------------------------------------------------------------

    def __iter__(self) -> Iterator[bytes]:
        """Receive messages until the channel is closed for sending and drained.

        A sender that died (``BrokenChannelError``) does not end the loop: it waits for the
        next sender, as a service does; a pipeline that must learn of its producer's
        death calls ``receive()`` and catches ``BrokenChannelError`` (docs/channel.md)."""
        receive = self.receive
        while True:
            try:
                yield receive(None)
            except EndOfChannel:
                return
            except BrokenChannelError:
                continue

    # ---- asyncio -------------------------------------------------------------------

    def _block_readable(self, t: float) -> object:
        # runs in a worker thread; close() waits for (and wakes) the ones in flight
        self._waits.append(None)
        try:
            return self._wait_readable(t)
        finally:
            self._waits.pop()

    def _block_writable(self, n: int) -> Callable[[float], object]:
        def block(t: float) -> object:
            self._waits.append(None)
            try:
                return self._wait_writable(n, t)
            finally:
                self._waits.pop()

        return block

    async def _receive_async(self, call: Callable[[], Any], timeout: Optional[float],
                             what: str) -> Any:
        def attempt() -> Any:
            try:
                return (call(),)
            except ChannelEmpty:
                return None

        result = await wait_until(attempt, self._block_readable, timeout, what=what)
        return result[0]

    async def send_async(self, data: Any, timeout: Optional[float] = None) -> None:
        """``send`` for asyncio: waits for room without blocking the event loop."""
        n = memoryview(data).nbytes

        def attempt() -> Optional[bool]:
            try:
                self.send_nowait(data)
                return True
            except ChannelFull:
                return None

        await wait_until(attempt, self._block_writable(n), timeout, what="send")

    async def _send_encoded_async(
        self, total: int, write: Callable[[memoryview], None], kind: int,
        timeout: Optional[float], what: str,
    ) -> None:
        def attempt() -> Optional[bool]:
            try:
                loan = self.loan(total, 0, _kind=kind)
            except ChannelFull:
                return None
            with loan as m:
                write(m)
            return True

        await wait_until(attempt, self._block_writable(total), timeout, what=what)

    async def send_object_async(self, obj: Any, timeout: Optional[float] = None) -> None:
        """``send_object`` for asyncio (pickled once, sent when there is room)."""
        total, write = _codec.encode_object(obj)
        await self._send_encoded_async(total, write, _codec.KIND_OBJECT, timeout, "send_object")

    async def send_array_async(self, array: Any, timeout: Optional[float] = None) -> None:
        """``send_array`` for asyncio."""
        total, write = _codec.encode_array(array)
        await self._send_encoded_async(total, write, _codec.KIND_ARRAY, timeout, "send_array")

    async def send_many_async(self, messages: Any, timeout: Optional[float] = None) -> int:
        """``send_many`` for asyncio: sends in order, waiting for room as needed;
        returns how many were sent.  ``timeout`` applies to each wait."""
        count = 0
        for m in messages:
            try:
                self.send_nowait(m)
            except ChannelFull:
                await self.send_async(m, timeout)
            count += 1
        return count

    async def receive_async(self, timeout: Optional[float] = None) -> bytes:
        """``receive`` for asyncio; the message is taken on the loop's thread, so a
        cancelled call never loses one."""
        result: bytes = await self._receive_async(self.receive_nowait, timeout, "receive")
        return result

    async def receive_object_async(self, timeout: Optional[float] = None) -> object:
        """``receive_object`` for asyncio (unpickles: trusted senders only)."""
        return await self._receive_async(self.receive_object_nowait, timeout, "receive_object")

    async def receive_array_async(self, timeout: Optional[float] = None) -> np.ndarray:
        """``receive_array`` for asyncio."""
        result: np.ndarray = await self._receive_async(
            self.receive_array_nowait, timeout, "receive_array"
        )
        return result

    async def receive_any_async(self, timeout: Optional[float] = None) -> object:
        """``receive_any`` for asyncio (unpickles objects: trusted senders only)."""
        return await self._receive_async(self.receive_any_nowait, timeout, "receive_any")

    async def receive_many_async(
        self, max_messages: int, timeout: Optional[float] = None
    ) -> list[bytes]:
        """``receive_many`` for asyncio: waits for at least one message, then takes up
        to ``max_messages`` that are there."""
        if max_messages < 1:
            raise ValueError("max_messages must be >= 1")
        result: list[bytes] = await self._receive_async(
            lambda: self.receive_many(max_messages, 0), timeout, "receive_many"
        )
        return result

    async def __aiter__(self) -> AsyncIterator[bytes]:
        """``async for msg in channel``: until closed for sending and drained; like
        ``for``, a sender's death does not end it."""
        while True:
            try:
                yield await self.receive_async()
            except EndOfChannel:
                return
            except BrokenChannelError:
                continue

    # ---- inspection and lifetime ---------------------------------------------------

    def statistics(self) -> ChannelStatistics:
        """Depth, capacity, peers, waiters and loss counters."""
        return ChannelStatistics(**self._statistics())

    def close(self) -> None:
        """Detach this handle (the channel lives on for the others).  Leaving is never
        taken for a crash: receivers do not get ``BrokenChannelError`` for this sender.  The
        same happens when the handle is garbage-collected and at interpreter or
        multiprocessing-child exit."""
        if not self._segment.closed:
            if self._waits:
                # An asyncio wait that was cancelled may still run in a worker thread:
                # make it return now instead of at the end of its slice.
                self._abort_waits()
                deadline = time.monotonic() + 2.0
                while self._waits and time.monotonic() < deadline:
                    time.sleep(0.0005)
            self._detach()
        self._segment.close()

    def __del__(self) -> None:
        # Runs before the instance's attributes are cleared (and with them the segment,
        # whose own finalizer would close it without leaving the peer tables).
        try:
            seg = self._segment
        except AttributeError:
            return
        try:
            if not seg.closed:
                self._detach()
        except Exception:
            pass

    def unlink(self) -> None:
        """Remove the channel's name."""
        self._segment.unlink()

    def _after_fork(self) -> None:
        if not self._segment.closed:
            super()._after_fork()  # the C method of the same name

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> tuple[Any, ...]:
        return (Channel.open, (self.name,))

    def __repr__(self) -> str:
        if self._segment.closed:
            return f"<Channel {self.name!r} closed>"
        s = self.statistics()
        return (
            f"<Channel {self.name!r} {s.queued_messages} queued, "
            f"{s.queued_bytes}/{s.capacity} bytes>"
        )
