"""Topics: broadcast publish/subscribe over one shared log in one segment.

Every subscriber sees every message, in one total order (sequence numbers dense from
0), keeping its own position in the log: the payload is written once, whatever the
number of subscribers.  In ``overflow="overwrite"`` mode the publisher never waits and a
lapped subscriber is told exactly how many messages it missed (``Lagged``); in
``overflow="block"`` mode the publisher waits for the slowest live subscriber.  The C
core does the work in one call per message (csrc/topic.c; the protocol:
docs/design/layout.md).
"""

from __future__ import annotations

import asyncio
import os
import pickle
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Literal, NamedTuple, Optional, Union, cast

from . import _codec, _core, _registry
from ._aio import poll_until, wait_until
from ._errors import LayoutError, MapshareError, MessageKindError, TopicEmpty, TopicFull
from ._options import INIT_WAIT, Lifetime
from ._segment import Segment

if TYPE_CHECKING:
    import numpy as np
    from typing_extensions import Self

__all__ = ["Origin", "Subscriber", "SubscriberStatistics", "Topic", "TopicStatistics"]

Overflow = Literal["overwrite", "block"]
Start = Union[Literal["live", "history"], int]

_OVERFLOW = {"overwrite": _core.TOPIC_OVERWRITE, "block": _core.TOPIC_BLOCK}
_OVERFLOW_NAMES = {v: k for k, v in _OVERFLOW.items()}
# The smallest record: a header and an 8-byte (padded) payload.
_MIN_RECORD = _core.TOPIC_RECORD_HEADER + 8


class Origin(NamedTuple):
    """Where a message was first published: the host and its sequence number there.

    A bridge that brings a message in from another host publishes it with
    ``topic.publish(data, origin=Origin(host, seq))``; every subscriber then sees it in
    ``Subscriber.last_origin`` (``None`` for a message published on this host).  The
    origin travels with the message in its record (docs/design/layout.md, "Topic
    records"), so history replays it too."""

    host: str
    """The originating host's id: 1 to 64 bytes of UTF-8."""
    seq: int
    """The message's sequence number in that host's topic (0 to 2**64 - 1)."""


def _user_area(capacity: int, max_subscribers: int) -> int:
    """Bytes of user area a topic needs: the subscriber table (64-byte entries), then
    the ring (csrc/topic.c ms_topic_area_size)."""
    return _core.TOPIC_SUB_SIZE * max_subscribers + capacity


class _TopicSegment(Segment):
    _kind = _core.KIND_TOPIC
    _topic: Optional[weakref.ref[Topic]] = None

    def _close(self, *, force: bool) -> None:
        """Close the topic's subscribers and leave first: whoever closes the segment
        (the topic, its finalizer, the interpreter's or a multiprocessing child's exit
        hook) makes a clean exit, which a block-mode publisher never waits for."""
        ref = self._topic
        topic = ref() if ref is not None else None
        if topic is not None and not self._core.closed:
            topic._leave()
        super()._close(force=force)


# Open topics and subscribers of this process: a forked child must not believe it holds
# the parent's loan, view or subscriber-table entries.
_live_topics: weakref.WeakSet[Topic] = weakref.WeakSet()
_live_subscribers: weakref.WeakSet[Subscriber] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for topic in list(_live_topics):
        topic._after_fork()
    for sub in list(_live_subscribers):
        sub._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _leave_live() -> None:
    """At interpreter exit (and a multiprocessing child's): every subscriber frees its
    table entry and every topic handle leaves, so that a script that ends normally is
    never taken for a dead subscriber or publisher."""
    for sub in list(_live_subscribers):
        try:
            sub.close()
        except Exception:  # one handle in a bad state must not stop the others
            pass
    for topic in list(_live_topics):
        try:
            if not topic._segment.closed:
                topic._detach()
        except Exception:
            pass


_registry.exit_hooks.append(_leave_live)


@dataclass(frozen=True)
class SubscriberStatistics:
    """One row of a topic's subscriber table, read from shared memory."""

    pid: int
    """The process the subscriber belongs to."""
    alive: bool
    """Whether that process is alive (pid and start time checked); a dead one's row is
    freed by the next subscribe or block-mode publish that needs it."""
    position: int
    """Sequence number of the next message it will read."""
    lag: int
    """Messages published that it has not read yet (``published - position``)."""
    missed: int
    """Messages it lost by being lapped (the sum of its ``Lagged.missed``)."""
    received: int
    """Messages it has received."""
    upstream_missed: int
    """Of ``missed``, the messages lost upstream, before they reached this topic (loss
    records a bridge published; the sum of its ``Lagged.upstream``)."""


@dataclass(frozen=True)
class TopicStatistics:
    """Counters of a topic, read from shared memory (each field exact, fields possibly
    from slightly different instants)."""

    capacity: int
    """Ring size in bytes."""
    max_message: int
    """Largest message that can ever be published, in bytes."""
    history: int
    """How many messages ``subscribe(start="history")`` replays (at most)."""
    overflow: Overflow
    """``"overwrite"`` (the publisher never waits) or ``"block"``."""
    max_subscribers: int
    """Rows of the subscriber table: how many subscribers can exist at once."""
    published: int
    """Messages published since creation: also the sequence number of the next one."""
    published_bytes: int
    """Payload bytes published since creation."""
    oldest: int
    """Sequence number of the oldest message still held in the ring (``published`` if
    none is)."""
    held: int
    """Messages held in the ring now (``published - oldest``): what a late joiner can
    still read.  Large messages reduce it."""
    publisher_deaths: int
    """Publishers that died holding the publish lock (SIGKILL mid-publish)."""
    abandoned: int
    """Messages or loans left unfinished by a dead publisher: never visible to anyone."""
    subscriber_deaths: int
    """Subscriber-table rows of dead processes freed since creation."""
    origin_published: int
    """Messages published with an origin (brought in from another host by a bridge);
    included in ``published``."""
    loss_records: int
    """Loss records published (``publish_loss``); each takes a sequence number, so
    ``published`` counts them too."""
    lost_upstream: int
    """Messages those loss records stand for: lost upstream, before this topic."""
    subscribers: tuple[SubscriberStatistics, ...]
    """One row per subscriber in the table (dead ones included until freed)."""


def _check_start(start: object) -> tuple[int, int]:
    """(start mode, sequence number) of a ``subscribe(start=...)`` argument."""
    if start == "live" and isinstance(start, str):
        return _core.SUB_LIVE, 0
    if start == "history" and isinstance(start, str):
        return _core.SUB_HISTORY, 0
    if isinstance(start, int) and not isinstance(start, bool):
        if start < 0:
            raise ValueError(f"start must be a sequence number >= 0, not {start!r}")
        return _core.SUB_SEQ, start
    raise ValueError(f"start must be 'live', 'history' or a sequence number, not {start!r}")


class Topic(_core.Topic):
    """A broadcast log of byte messages in shared memory: every subscriber receives
    every message, in the one order of their sequence numbers.

    ``Topic.create(name, capacity)`` makes one whose ring holds ``capacity`` bytes; any
    process ``Topic.open(name)``s it.  ``publish`` returns the message's sequence number
    (dense from 0, one order across all publishers); ``subscribe()`` returns a
    ``Subscriber`` with its own position in the log.

    ``overflow="overwrite"`` (default): the publisher never waits; a subscriber that was
    lapped gets one ``Lagged`` saying exactly how many messages it missed, then goes on
    with the oldest one still held.  ``overflow="block"``: the publisher waits for the
    slowest live subscriber (``WaitTimeout`` after ``timeout``, ``TopicFull`` from
    ``publish_nowait``); a subscriber process that dies releases it at once.

    Crash safety: a message becomes visible only when completely written, so a
    publisher killed mid-write exposes nothing and never blocks the others; a
    subscriber killed anywhere never blocks a publisher.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError("use Topic.create(), Topic.open() or Topic.open_or_create()")

    # publish, publish_nowait, publish_loss, publish_many, loan and the read-only
    # properties capacity,
    # max_message, history and max_subscribers are the C methods of _core.Topic: one C
    # call per message, no Python frame in between.

    _segment: Segment
    _subscribers: weakref.WeakSet[Subscriber]

    @classmethod
    def _wrap(cls, seg: Segment, spin: Optional[float]) -> Self:
        self = cast("Self", _core.Topic.__new__(cls, seg._core))
        self._segment = seg
        self._subscribers = weakref.WeakSet()
        if isinstance(seg, _TopicSegment):
            seg._topic = weakref.ref(self)
        if spin is not None:
            seg.spin = spin
        _live_topics.add(self)
        return self

    @staticmethod
    def _layout(
        capacity: int, history: int, overflow: str, max_subscribers: int
    ) -> tuple[int, tuple[int, int, int, int]]:
        """(user area size, the core's init tuple) of the creation arguments."""
        for what, value in (("capacity", capacity), ("history", history),
                            ("max_subscribers", max_subscribers)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{what} must be an int, not {type(value).__name__}")
        if capacity < _core.TOPIC_CAPACITY_MIN:
            raise ValueError(
                f"capacity must be an int >= {_core.TOPIC_CAPACITY_MIN} bytes, "
                f"not {capacity!r}"
            )
        capacity = _codec.pad(capacity)
        if history < 0:
            raise ValueError(f"history must be >= 0 messages, not {history!r}")
        if history * _MIN_RECORD > capacity:
            raise ValueError(
                f"a ring of {capacity} bytes cannot hold history={history} messages "
                f"(each takes {_MIN_RECORD} bytes at least: a header and the payload "
                f"padded to 8); use capacity >= {history * _MIN_RECORD}"
            )
        if not 1 <= max_subscribers <= _core.TOPIC_SUBSCRIBERS_MAX:
            raise ValueError(
                f"max_subscribers must be between 1 and {_core.TOPIC_SUBSCRIBERS_MAX}, "
                f"not {max_subscribers!r}"
            )
        try:
            code = _OVERFLOW[overflow]
        except (KeyError, TypeError):
            raise ValueError(
                f"overflow must be 'overwrite' or 'block', not {overflow!r}"
            ) from None
        return (_user_area(capacity, max_subscribers),
                (capacity, history, code, max_subscribers))

    @classmethod
    def create(
        cls, name: str, capacity: int, *, history: int = 0, overflow: Overflow = "overwrite",
        max_subscribers: int = 64, mode: int = 0o600, lifetime: Lifetime = "shared",
        global_namespace: bool = False, spin: Optional[float] = None,
    ) -> Self:
        """Create a topic whose ring holds ``capacity`` bytes (rounded up to a multiple
        of 8; each message takes 16 bytes of header plus its length rounded up to 8).

        ``history``: how many of the newest messages ``subscribe(start="history")``
        replays to a late joiner (the ring must hold them: ``capacity`` at least
        ``24 * history``; larger messages mean fewer are held).  ``overflow``:
        ``"overwrite"`` (the publisher never waits; lapped subscribers get ``Lagged``)
        or ``"block"`` (the publisher waits for the slowest live subscriber).
        ``max_subscribers``: rows of the subscriber table (``SubscriberLimitError``
        beyond).  The other keywords mean what they mean for ``Segment.create``;
        ``spin``: seconds a blocked call busy-waits before sleeping (default 50 µs)."""
        size, init = cls._layout(capacity, history, overflow, max_subscribers)
        seg = _TopicSegment._create(
            name, size, path=None, mode=mode, lifetime=lifetime, init=init,
            global_namespace=global_namespace,
        )
        return cls._wrap(seg, spin)

    @classmethod
    def open(
        cls, name: str, *, allow_foreign: bool = False, global_namespace: bool = False,
        wait: Optional[float] = 0, init_timeout: float = INIT_WAIT,
        spin: Optional[float] = None,
    ) -> Self:
        """Open an existing topic (``LayoutError`` if the name is not a topic).  The
        keywords mean what they mean for ``Segment.open``: ``wait`` waits that many
        seconds for the name to appear (None: forever), ``allow_foreign`` trusts a topic
        of another user (a group member opening a ``mode=0o660`` topic)."""
        seg = _TopicSegment.open(
            name, allow_foreign=allow_foreign, global_namespace=global_namespace, wait=wait,
            init_timeout=init_timeout,
        )
        return cls._wrap(seg, spin)

    @classmethod
    def open_or_create(
        cls, name: str, capacity: int, *, history: int = 0, overflow: Overflow = "overwrite",
        max_subscribers: int = 64, mode: int = 0o600, lifetime: Lifetime = "shared",
        allow_foreign: bool = False, global_namespace: bool = False,
        init_timeout: float = INIT_WAIT, spin: Optional[float] = None,
    ) -> Self:
        """Open the topic, or create it; safe when many processes race.  ``LayoutError``
        if it exists with another capacity, history, overflow or max_subscribers."""
        size, init = cls._layout(capacity, history, overflow, max_subscribers)
        seg = _TopicSegment._open_or_create(
            name, size, path=None, mode=mode, lifetime=lifetime, init=init,
            init_timeout=init_timeout, allow_foreign=allow_foreign,
            global_namespace=global_namespace,
        )
        self = cls._wrap(seg, spin)
        found = (self.capacity, self.history, _OVERFLOW[self.overflow], self.max_subscribers)
        if found != init:
            self.close()
            raise LayoutError(
                f"existing topic {name!r} has capacity={found[0]}, history={found[1]}, "
                f"overflow={_OVERFLOW_NAMES.get(found[2], '?')!r}, "
                f"max_subscribers={found[3]}; asked for capacity={init[0]}, "
                f"history={init[1]}, overflow={overflow!r}, max_subscribers={init[3]}"
            )
        return self

    # ---- attributes ----------------------------------------------------------------

    @property
    def name(self) -> str:
        """The topic's name."""
        return self._segment.name

    @property
    def overflow(self) -> Overflow:  # type: ignore[override]  # the core's is the code
        """``"overwrite"`` (the publisher never waits) or ``"block"`` (it waits for the
        slowest live subscriber)."""
        return cast(Overflow, _OVERFLOW_NAMES.get(super().overflow, "overwrite"))

    @property
    def spin(self) -> float:
        """Seconds a blocked call busy-waits before sleeping."""
        return self._segment.spin

    @spin.setter
    def spin(self, seconds: float) -> None:
        self._segment.spin = seconds

    @property
    def segment(self) -> Segment:
        """The segment holding the topic."""
        return self._segment

    # ---- publishing ----------------------------------------------------------------

    def _publish_encoded(
        self, total: int, write: Callable[[memoryview], None], kind: int,
        timeout: Optional[float], origin: Optional[Origin] = None,
    ) -> int:
        if origin is not None:
            # a loan carries no origin: encode into a buffer, publish it with one (the
            # one extra copy is the price of bridging an object)
            buf = bytearray(total)
            write(memoryview(buf))
            return self.publish(buf, timeout, origin=origin, _kind=kind)
        loan = self.loan(total, timeout, _kind=kind)
        with loan as m:
            write(m)
        return loan.seq

    def publish_object(
        self, obj: Any, timeout: Optional[float] = None, *, origin: Optional[Origin] = None
    ) -> int:
        """Pickle ``obj`` (protocol 5) and publish it; returns its sequence number.
        Out-of-band buffers (numpy arrays, ``pickle.PickleBuffer``s) are copied once
        straight into the ring.  The encoding is ``Channel.send_object``'s
        (docs/design/wire-formats.md); ``receive_object()`` takes it.  ``origin``: as
        for ``publish`` (then encoded into a buffer first: one copy more)."""
        total, write = _codec.encode_object(obj)
        return self._publish_encoded(total, write, _codec.KIND_OBJECT, timeout, origin)

    def publish_array(
        self, array: Any, timeout: Optional[float] = None, *, origin: Optional[Origin] = None
    ) -> int:
        """Publish a numpy array (any shape, order, byte order or structured dtype; not
        object dtype) with its dtype, shape and order, copied once into the ring;
        returns its sequence number.  ``receive_array()`` takes it.  ``origin``: as for
        ``publish``."""
        total, write = _codec.encode_array(array, "publish_object()")
        return self._publish_encoded(total, write, _codec.KIND_ARRAY, timeout, origin)

    # ---- subscribing ---------------------------------------------------------------

    def subscribe(self, start: Start = "live") -> Subscriber:
        """A new subscriber with its own position in the log.

        ``start="live"``: from the next message published (a subscriber made before
        anything was published sees message 0).  ``"history"``: the newest messages
        still held, up to the topic's ``history``, then live ones, with no gap and no
        duplicate at the switch.  A sequence number ``N``: from message ``N`` if it is
        still held; if it is newer than any, the first message seen is ``N`` (the ones
        before it are skipped, not missed); if it is older than any held, the first
        receive raises ``Lagged`` for those lost, then goes on with the oldest held.

        ``SubscriberLimitError`` when ``max_subscribers`` live subscribers exist."""
        mode, seq = _check_start(start)
        sub = Subscriber._new(self, mode, seq)
        self._subscribers.add(sub)
        return sub

    # ---- asyncio -------------------------------------------------------------------

    async def _publish_when_room(
        self, attempt: Callable[[], Optional[int]], timeout: Optional[float], what: str
    ) -> int:
        # A block-mode publisher waits for subscribers to read: retried on the loop's
        # thread (the worker threads only ever wait), so a cancelled call publishes
        # nothing.
        return await poll_until(attempt, timeout, what=what)

    async def publish_async(
        self, data: Any, timeout: Optional[float] = None, *, origin: Optional[Origin] = None
    ) -> int:
        """``publish`` for asyncio; returns the sequence number.  In ``"block"`` mode it
        waits for room without blocking the event loop (a cancelled call publishes
        nothing); in ``"overwrite"`` mode it never waits.  ``origin``: as for
        ``publish``."""

        def attempt() -> Optional[int]:
            try:
                return self.publish_nowait(data, origin=origin)
            except TopicFull:
                return None

        return await self._publish_when_room(attempt, timeout, "publish")

    def _encoded_attempt(
        self, total: int, write: Callable[[memoryview], None], kind: int
    ) -> Callable[[], Optional[int]]:
        def attempt() -> Optional[int]:
            try:
                return self._publish_encoded(total, write, kind, 0)
            except TopicFull:
                return None

        return attempt

    async def publish_object_async(self, obj: Any, timeout: Optional[float] = None) -> int:
        """``publish_object`` for asyncio (pickled once, published when there is room)."""
        total, write = _codec.encode_object(obj)
        attempt = self._encoded_attempt(total, write, _codec.KIND_OBJECT)
        return await self._publish_when_room(attempt, timeout, "publish_object")

    async def publish_array_async(self, array: Any, timeout: Optional[float] = None) -> int:
        """``publish_array`` for asyncio."""
        total, write = _codec.encode_array(array, "publish_object()")
        attempt = self._encoded_attempt(total, write, _codec.KIND_ARRAY)
        return await self._publish_when_room(attempt, timeout, "publish_array")

    # ---- inspection and lifetime ---------------------------------------------------

    def statistics(self) -> TopicStatistics:
        """Counters, what the ring holds, and one row per subscriber (pid, alive,
        position, lag, missed, received)."""
        d = self._statistics()
        rows = tuple(
            SubscriberStatistics(
                pid=r["pid"], alive=bool(r["alive"]), position=r["position"],
                lag=r["lag"], missed=r["missed"], received=r["received"],
                upstream_missed=r["upstream_missed"],
            )
            for r in d["subscribers"]
        )
        return TopicStatistics(
            capacity=d["capacity"], max_message=d["max_message"], history=d["history"],
            overflow=cast(Overflow, _OVERFLOW_NAMES.get(d["overflow"], "overwrite")),
            max_subscribers=d["max_subscribers"], published=d["published"],
            published_bytes=d["published_bytes"], oldest=d["oldest_held"],
            held=d["held"], publisher_deaths=d["publisher_deaths"],
            abandoned=d["abandoned"], subscriber_deaths=d["subscriber_deaths"],
            origin_published=d["origin_published"], loss_records=d["loss_records"],
            lost_upstream=d["lost_upstream"], subscribers=rows,
        )

    def _leave(self) -> None:
        """Close this handle's subscribers, then leave the topic (an open loan is
        discarded): a clean exit, never taken for a crash."""
        for sub in list(self._subscribers):
            try:
                sub.close()
            except Exception:  # one subscriber in a bad state must not keep the others
                pass
        self._detach()

    def close(self) -> None:
        """Detach this handle (the topic lives on for the others); the subscribers made
        from it are closed too.  Leaving is never taken for a crash.  The same happens
        when the handle is garbage-collected and at interpreter or multiprocessing-child
        exit."""
        if not self._segment.closed:
            self._leave()
        self._segment.close()

    def __del__(self) -> None:
        # Runs before the instance's attributes are cleared (and with them the segment,
        # whose own finalizer would close it without leaving cleanly).
        try:
            seg = self._segment
        except AttributeError:
            return
        try:
            if not seg.closed:
                self._leave()
        except Exception:
            pass

    def unlink(self) -> None:
        """Remove the topic's name (processes that have it open keep using it)."""
        self._segment.unlink()

    def _after_fork(self) -> None:
        if not self._segment.closed:
            super()._after_fork()  # the C method of the same name

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> tuple[Any, ...]:
        return (Topic.open, (self.name,))

    def __repr__(self) -> str:
        try:
            s = self.statistics()
        except ValueError:  # closed, or left at interpreter exit
            return f"<Topic {self.name!r} closed>"
        except MapshareError as exc:  # a corrupt topic still has a repr
            return f"<Topic {self.name!r} ({type(exc).__name__})>"
        return (
            f"<Topic {self.name!r} {s.overflow}, {s.published} published, {s.held} held, "
            f"{len(s.subscribers)} subscriber(s)>"
        )


class Subscriber(_core.Subscriber):
    """One reader of a topic, with its own position in the log (made by
    ``Topic.subscribe``).

    ``receive`` waits for the next message (``timeout=None``) or gives up after
    ``timeout`` seconds (``WaitTimeout``); ``receive_nowait`` never waits
    (``TopicEmpty``).  ``position`` is the sequence number of the next message it will
    read; ``received`` and ``missed`` count what it got and what it lost.

    In ``"overwrite"`` mode a subscriber that falls a whole ring behind is lapped: its
    next receive raises ``Lagged`` once, with ``missed`` (exactly how many messages it
    lost) and ``position`` (where it resumes, the oldest message still held); the call
    after that returns that message.  So ``received + missed`` always equals the
    messages published since it started.  No torn message ever reaches it: every copy
    is validated after it is made, and a ``receive_view`` overwritten while in use
    raises ``Lagged`` when its block ends.

    A subscriber belongs to one process: a forked child that uses it gets a fresh
    table row at the same position.  It does not pickle (subscribe in the child).
    """

    # receive, receive_nowait, receive_many, receive_view, position, missed, received
    # and closed are the C methods and properties of _core.Subscriber.

    _topic: Topic
    _waits: list[None]  # one entry per asyncio wait running in a worker thread

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError("use Topic.subscribe()")

    @classmethod
    def _new(cls, topic: Topic, mode: int, seq: int) -> Subscriber:
        self = cast("Subscriber", _core.Subscriber.__new__(cls, topic, mode, seq))
        self._topic = topic
        self._waits = []
        _live_subscribers.add(self)
        return self

    @property
    def topic(self) -> Topic:
        """The topic handle this subscriber was made from."""
        return self._topic

    @property
    def last_origin(self) -> Optional[Origin]:
        """The origin of the message most recently returned by any receive call on this
        subscriber (or shown by the ``receive_view`` open now): an ``Origin(host, seq)``
        for a message a bridge brought in from another host, ``None`` for one published
        here without an origin (and before the first message).  A ``Lagged`` leaves it
        as it was."""
        o = self._last_origin
        return None if o is None else Origin(*o)

    # ---- objects and arrays --------------------------------------------------------

    def _view_of(self, kind: int, call: str, timeout: Optional[float]) -> Any:
        """The next message as an open view, if it is of ``kind``; else skip it and
        raise MessageKindError (it counts as received)."""
        view = self.receive_view(timeout)
        found = self._view_kind()
        if found != kind:
            self._release(view)
            name = _codec.KIND_NAMES.get(found, f"unknown ({found})")
            err = MessageKindError(
                f"{call} found a message of kind {name} (sequence number "
                f"{self.position - 1}); it was skipped "
                f"(use {_codec.KIND_CALLS.get(found, 'receive()')} or receive_any())"
            )
            err.kind = name
            raise err
        return view

    def receive_object(self, timeout: Optional[float] = None) -> object:
        """Receive and unpickle an object published with ``publish_object``.  A message
        of another kind raises ``MessageKindError``.  This and ``receive_any``/their
        async forms are the only calls that unpickle: only use them on a topic whose
        publishers you trust, as unpickling can run code."""
        with self._view_of(_codec.KIND_OBJECT, "receive_object()", timeout) as m:
            data, bufs = _codec.decode_object(m)
        # unpickled only once the view was validated (a lapped copy raised Lagged)
        return pickle.loads(data, buffers=bufs)

    def receive_object_nowait(self) -> object:
        """``receive_object`` without waiting: ``TopicEmpty`` if there is nothing."""
        return self.receive_object(0)

    def receive_array(self, timeout: Optional[float] = None) -> np.ndarray:
        """Receive an array published with ``publish_array``: same dtype, shape and
        order, read-only, its data copied once out of the ring.  A message of another
        kind raises ``MessageKindError``."""
        with self._view_of(_codec.KIND_ARRAY, "receive_array()", timeout) as m:
            return _codec.copy_array(m)

    def receive_array_nowait(self) -> np.ndarray:
        """``receive_array`` without waiting: ``TopicEmpty`` if there is nothing."""
        return self.receive_array(0)

    @contextmanager
    def receive_array_view(self, timeout: Optional[float] = None) -> Iterator[np.ndarray]:
        """Yield the next array as a read-only view inside the ring (zero copy), valid
        only inside the block.  In ``"overwrite"`` mode the publisher may overwrite it
        meanwhile: leaving the block then raises ``Lagged`` (what was read cannot be
        trusted).  An array derived from it still alive when the block ends raises
        BufferError; the array never dangles (it keeps the mapping alive)."""
        window = self._view_of(_codec.KIND_ARRAY, "receive_array_view()", timeout)
        yield from _codec.array_view(window, self._topic._segment._core)

    def receive_any(self, timeout: Optional[float] = None) -> object:
        """Receive the next message whatever its kind, decoded by it: ``bytes`` for
        ``publish``/``publish_many``/``loan``, the object for ``publish_object``
        (unpickled: trusted publishers only), a read-only numpy array for
        ``publish_array``."""
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
        """``receive_any`` without waiting: ``TopicEmpty`` if there is nothing."""
        return self.receive_any(0)

    # ---- iteration -----------------------------------------------------------------

    def __iter__(self) -> Iterator[bytes]:
        """Receive messages for as long as the subscriber is open.  ``Lagged`` is
        raised out of the loop (loss is never silent): catch it around the loop and
        iterate again to go on from the oldest message held."""
        receive = self.receive
        while not self.closed:
            yield receive(None)

    # ---- asyncio -------------------------------------------------------------------

    def _block_readable(self, t: float) -> object:
        # runs in a worker thread; close() waits for (and wakes) the ones in flight
        self._waits.append(None)
        try:
            return self._wait_readable(t)
        finally:
            self._waits.pop()

    async def _receive_async(self, call: Callable[[], Any], timeout: Optional[float],
                             what: str) -> Any:
        # A subscriber is used by one thread at a time: a wait that a cancelled call left
        # in a worker thread ends within one slice; let it, rather than collide with it.
        while self._waits:
            await asyncio.sleep(0.001)

        def attempt() -> Any:
            try:
                return (call(),)
            except TopicEmpty:
                return None

        result = await wait_until(attempt, self._block_readable, timeout, what=what)
        return result[0]

    async def receive_async(self, timeout: Optional[float] = None) -> bytes:
        """``receive`` for asyncio; the message is taken on the loop's thread, so a
        cancelled call never loses one.  Raises ``Lagged`` like ``receive``."""
        result: bytes = await self._receive_async(self.receive_nowait, timeout, "receive")
        return result

    async def receive_object_async(self, timeout: Optional[float] = None) -> object:
        """``receive_object`` for asyncio (unpickles: trusted publishers only)."""
        return await self._receive_async(self.receive_object_nowait, timeout, "receive_object")

    async def receive_array_async(self, timeout: Optional[float] = None) -> np.ndarray:
        """``receive_array`` for asyncio."""
        result: np.ndarray = await self._receive_async(
            self.receive_array_nowait, timeout, "receive_array"
        )
        return result

    async def receive_any_async(self, timeout: Optional[float] = None) -> object:
        """``receive_any`` for asyncio (unpickles objects: trusted publishers only)."""
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
        """``async for msg in sub``: for as long as the subscriber is open; ``Lagged``
        is raised out of the loop, like ``for``."""
        while not self.closed:
            yield await self.receive_async()

    # ---- lifetime ------------------------------------------------------------------

    def close(self) -> None:
        """Leave the topic: the table row is freed at once, and a block-mode publisher
        waiting for this subscriber goes on.  The same happens when the subscriber is
        garbage-collected, its topic handle closed, and at interpreter or
        multiprocessing-child exit."""
        if self.closed:
            return
        if self._waits:
            # An asyncio wait that was cancelled may still run in a worker thread: make
            # it return now instead of at the end of its slice.
            self._abort_waits()
            deadline = time.monotonic() + 2.0
            while self._waits and time.monotonic() < deadline:
                time.sleep(0.0005)
        super().close()
        _live_subscribers.discard(self)

    def _after_fork(self) -> None:
        if not self.closed:
            super()._after_fork()  # the C method of the same name

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError(
            "a Subscriber belongs to its process and does not pickle: pass the Topic "
            "(it pickles by name) and subscribe in the other process, with "
            "start=<position> to resume where this one is"
        )

    def __repr__(self) -> str:
        if self.closed:
            return f"<Subscriber of {self._topic.name!r} closed>"
        return (
            f"<Subscriber of {self._topic.name!r} at {self.position}, "
            f"{self.received} received, {self.missed} missed>"
        )

