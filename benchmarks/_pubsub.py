"""The publish/subscribe transports compared by ``benchmarks/topic.py``, behind one interface.

Like ``_transports.py`` for ``compare.py``: a ``PubSub`` subclass per transport, whose
``setup`` runs in the parent (creates what must exist before the children start, returns a
``teardown``) and whose ``publisher`` / ``subscriber`` run inside each spawned child and
return the callables the measurement loops in ``topic.py`` call. Third-party modules are
imported lazily, so a missing package only skips its row (and this file imports under the
Python 3.12 interpreter that runs the Aeron row, where mapshare is not installed).

Rows (``--only`` key -> what is measured):

* ``topic``     ``mapshare.Topic``: ``publish`` / ``Subscriber.receive`` (bytes)
* ``channel``   ``mapshare.Channel`` ``send``/``receive`` (one receiver; the round-trip
                reference of the "<= 1.3x Channel" target, no fan-out cells)
* ``iceoryx2``  iceoryx2 0.10 publish-subscribe, subscribers busy-poll ``receive()``
* ``zmq``       pyzmq XPUB/SUB over ``ipc://`` (XPUB only to learn when every subscriber's
                subscription has arrived; it sends like PUB)
* ``aeron``     Aeron IPC (``aeron:ipc``) through ``pyaeron`` with an embedded C media
                driver, run under CPython >= 3.12 (see ``topic.py --aeron-python``)

Stream numbers: a round trip uses stream 0 (client -> server) and stream 1 (server ->
client); every other cell uses stream 0 only.
"""

from __future__ import annotations

import collections
import ctypes
import glob
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from _harness import NAME_PREFIX

KiB = 1 << 10
MiB = 1 << 20

#: One-byte control messages; every payload a cell measures is at least 64 bytes.
GO = b"+"  # the timed part starts: subscribers reset their count and acknowledge
STOP = b"!"  # the timed part is over: subscribers report and leave


@dataclass
class Cell:
    """One measurement: which bench, at what size, with how many subscribers, how long.

    ``bench`` is ``rtt`` (64-byte ping-pong over two streams), ``pubcost`` (publisher's ns
    per publish with ``subscribers`` reading), ``fanout`` (aggregate delivered messages/s
    with ``subscribers`` reading) or ``stall`` (per-publish latency percentiles in overwrite
    mode with ``subscribers`` = 0 or 1 subscriber that never reads).
    """

    bench: str
    size: int
    subscribers: int
    count: int
    warmup: int
    #: mapshare only: the segment's spin setting (``None`` = the library default)
    spin: float | None = None
    #: overrides for experiments by hand (the CLI sets none): ``overflow`` and
    #: ``capacity`` of the Topic row
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Pub:
    """A publisher inside a child: ``publish(bytes)`` blocks or retries until accepted
    (or drops, for transports that drop by design); ``ready(n)`` returns once ``n``
    subscribers are connected (messages published before may be lost otherwise)."""

    publish: Callable[[bytes], object]
    ready: Callable[[int], None] = lambda n: None
    #: called between repeated control messages (iceoryx2: connect late subscribers)
    refresh: Callable[[], object] = lambda: None
    close: Callable[[], None] = lambda: None


@dataclass
class Sub:
    """A subscriber inside a child: ``recv()`` blocks (or busy-polls) and returns ``bytes``.

    ``lagged`` are the exceptions that mean "you lost messages, carry on" (mapshare's
    ``Lagged``); the loops catch them and continue.
    """

    recv: Callable[[], bytes]
    lagged: tuple[type[BaseException], ...] = ()
    close: Callable[[], None] = lambda: None


class PubSub:
    """Base class of a benchmarked publish/subscribe transport.

    ``benches`` lists the cells it takes part in; ``setup(cell)`` runs in the parent and
    returns ``(state, teardown)``; ``publisher`` and ``subscriber`` run in a child. Instances
    are pickled to the children, so keep them to plain attributes.
    """

    key: str = ""
    label: str = ""
    benches: frozenset[str] = frozenset({"rtt", "pubcost", "fanout", "stall"})
    #: what "publish" does when a subscriber is behind (printed under the tables)
    overflow: str = ""
    #: an interpreter other than this one that must run this row's cells (Aeron)
    python: str | None = None
    #: expected publishes/s by message size, only to size the first repetition's counts
    rate_hint: ClassVar[dict[int, float]] = {64: 500e3, 4 * KiB: 300e3, MiB: 3e3}

    def hint(self, size: int) -> float:
        """Expected publishes/s at ``size`` (nearest known size)."""
        best = min(self.rate_hint, key=lambda s: abs(math.log(s) - math.log(size)))
        return self.rate_hint[best]

    def unavailable(self) -> str | None:
        return None

    def why_not(self, bench: str) -> str | None:
        """Why this transport has no cell ``bench`` (None when it has)."""
        return None if bench in self.benches else "not measured"

    def setup(self, cell: Cell) -> tuple[Any, Callable[[], None]]:
        raise NotImplementedError

    def publisher(self, state: Any, cell: Cell, stream: int) -> Pub:
        raise NotImplementedError

    def subscriber(self, state: Any, cell: Cell, stream: int) -> Sub:
        raise NotImplementedError


def _missing(module: str) -> str | None:
    try:
        __import__(module)
    except Exception as exc:
        return f"import {module} failed: {type(exc).__name__}: {exc}"
    return None


def ring_capacity(cell: Cell) -> int:
    """Ring bytes for the shared-memory rows (the same rule as ``compare.py``)."""
    if cell.bench == "rtt":
        return 64 * KiB + 8 * cell.size
    return 2 * MiB if cell.size <= 64 * KiB else max(8 * MiB, 8 * cell.size)


def _short_name() -> str:
    # <= 20 characters: mapshare then uses /dev/shm/mapshare.<name> as is, which the leak
    # check recognises (mapshare.bench-)
    return f"bench-{os.getpid()}-{os.urandom(3).hex()}"


# --------------------------------------------------------------------------- mapshare


class TopicPubSub(PubSub):
    """``mapshare.Topic``; the parent creates it, every child ``open``s it by name.

    Overwrite mode for ``pubcost`` and ``stall`` (the publisher never waits), block mode for
    ``rtt`` and ``fanout`` (every subscriber gets every message, like the iceoryx2 and
    Aeron rows).
    """

    key = "topic"
    label = "mapshare Topic"
    overflow = "overwrite (pubcost, stall) / block (rtt, fanout)"

    def __init__(self, spin: float | None = None) -> None:
        self.spin = spin

    def unavailable(self) -> str | None:
        reason = _missing("mapshare")
        if reason:
            return reason
        import mapshare

        topic = getattr(mapshare, "Topic", None)
        if topic is None:
            return "mapshare has no Topic yet"
        missing = [m for m in ("create", "open", "publish", "subscribe") if not hasattr(topic, m)]
        return f"mapshare.Topic lacks {', '.join(missing)}" if missing else None

    def _kwargs(self) -> dict[str, Any]:
        return {} if self.spin is None else {"spin": self.spin}

    def setup(self, cell: Cell) -> tuple[Any, Callable[[], None]]:
        import mapshare

        overflow = cell.extra.get("overflow") or (
            "overwrite" if cell.bench in ("pubcost", "stall") else "block"
        )
        names = [_short_name() for _ in range(2 if cell.bench == "rtt" else 1)]
        topics: list[Any] = []

        def teardown() -> None:
            errors: list[BaseException] = []
            for t in topics:
                for step in (t.unlink, t.close):
                    try:
                        step()
                    except BaseException as exc:
                        errors.append(exc)
            if errors:
                raise errors[0]

        try:
            for n in names:
                topics.append(
                    mapshare.Topic.create(
                        n,
                        cell.extra.get("capacity") or ring_capacity(cell),
                        overflow=overflow,
                        max_subscribers=max(4, cell.subscribers),
                        **self._kwargs(),
                    )
                )
        except BaseException:
            teardown()
            raise
        return names, teardown

    def publisher(self, state: Any, cell: Cell, stream: int) -> Pub:
        import mapshare

        t = mapshare.Topic.open(state[stream], **self._kwargs())
        return Pub(publish=t.publish, close=t.close)

    def subscriber(self, state: Any, cell: Cell, stream: int) -> Sub:
        import mapshare

        t = mapshare.Topic.open(state[stream], **self._kwargs())
        s = t.subscribe(start="live")

        def close() -> None:
            s.close()
            t.close()

        return Sub(recv=s.receive, lagged=(mapshare.Lagged,), close=close)


class ChannelPubSub(PubSub):
    """``mapshare.Channel`` as the round-trip reference (point to point, no fan-out)."""

    key = "channel"
    label = "mapshare Channel (reference)"
    benches = frozenset({"rtt"})
    overflow = "block (point to point)"

    def __init__(self, spin: float | None = None) -> None:
        self.spin = spin

    def unavailable(self) -> str | None:
        return _missing("mapshare")

    def why_not(self, bench: str) -> str | None:
        return None if bench == "rtt" else "point to point: no fan-out"

    def _kwargs(self) -> dict[str, Any]:
        return {} if self.spin is None else {"spin": self.spin}

    def setup(self, cell: Cell) -> tuple[Any, Callable[[], None]]:
        import mapshare

        names = [_short_name() for _ in range(2)]
        chans: list[Any] = []

        def teardown() -> None:
            for ch in chans:
                ch.unlink()
                ch.close()

        try:
            for n in names:
                chans.append(mapshare.Channel.create(n, ring_capacity(cell), **self._kwargs()))
        except BaseException:
            teardown()
            raise
        return names, teardown

    def publisher(self, state: Any, cell: Cell, stream: int) -> Pub:
        import mapshare

        ch = mapshare.Channel.open(state[stream], **self._kwargs())
        return Pub(publish=ch.send, close=ch.close)

    def subscriber(self, state: Any, cell: Cell, stream: int) -> Sub:
        import mapshare

        ch = mapshare.Channel.open(state[stream], **self._kwargs())
        return Sub(recv=ch.receive, close=ch.close)


# --------------------------------------------------------------------------- iceoryx2


class Iceoryx2PubSub(PubSub):
    """iceoryx2 0.10 publish-subscribe with ``Slice[c_uint8]`` payloads, busy-poll receivers.

    The publisher loans a slice of the message's length, ``memmove``s the bytes in and
    sends; subscribers spin on ``receive()`` and copy out with ``ctypes.string_at``.
    ``rtt``/``fanout``: no overflow (``RetryUntilDelivered``): lossless, like the Topic's
    block mode. ``pubcost``/``stall``: safe overflow (a full subscriber buffer loses its
    oldest sample), the closest to the Topic's overwrite mode. ``max_subscribers`` is set
    to the cell's subscriber count.
    """

    key = "iceoryx2"
    label = "iceoryx2 pub/sub, busy-poll"
    overflow = "safe overflow (pubcost, stall) / RetryUntilDelivered (rtt, fanout)"

    def unavailable(self) -> str | None:
        return _missing("iceoryx2")

    def setup(self, cell: Cell) -> tuple[Any, Callable[[], None]]:
        root = tempfile.mkdtemp(prefix=f"{NAME_PREFIX}-iox2-")
        prefix = f"iox2bench{os.getpid()}x{os.urandom(4).hex()}_"
        service = f"{NAME_PREFIX}/{os.getpid()}/{os.urandom(4).hex()}"

        def teardown() -> None:
            shutil.rmtree(root, ignore_errors=True)
            for f in glob.glob(f"/dev/shm/{prefix}*"):
                try:
                    os.unlink(f)
                except FileNotFoundError:
                    pass

        return (root, prefix, service), teardown

    def _service(self, state: Any, cell: Cell, stream: int) -> tuple[Any, Any, Any]:
        import iceoryx2 as iox2

        iox2.set_log_level(iox2.LogLevel.Error)
        root, prefix, service = state
        cfg = iox2.config.default()
        cfg.global_cfg.root_path = iox2.Path.new(root + "/")
        cfg.global_cfg.prefix = iox2.FileName.new(prefix)
        node = iox2.NodeBuilder.new().config(cfg).create(iox2.ServiceType.Ipc)
        lossy = cell.bench in ("pubcost", "stall")
        buffer = 4 if cell.bench == "rtt" else (8 if cell.size >= 256 * KiB else 256)
        name = iox2.ServiceName.new(f"{service}/{stream}")
        last: Exception | None = None
        # every child open_or_creates the same service at once; a loser may see "is being
        # created" and just has to try again
        for _ in range(300):
            try:
                svc = (
                    node.service_builder(name)
                    .publish_subscribe(iox2.Slice[ctypes.c_uint8])
                    .enable_safe_overflow(lossy)
                    .subscriber_max_buffer_size(buffer)
                    .max_publishers(1)
                    .max_subscribers(max(1, cell.subscribers))
                    .open_or_create()
                )
                return iox2, node, (svc, buffer, lossy)
            except Exception as exc:
                last = exc
                time.sleep(0.01)
        raise RuntimeError(f"iceoryx2 service not ready: {last}")

    def publisher(self, state: Any, cell: Cell, stream: int) -> Pub:
        iox2, node, (svc, _buffer, lossy) = self._service(state, cell, stream)
        strategy = (
            iox2.BackpressureStrategy.DiscardData
            if lossy
            else iox2.BackpressureStrategy.RetryUntilDelivered
        )
        pub = (
            svc.publisher_builder()
            .initial_max_slice_len(max(1, cell.size))
            .allocation_strategy(iox2.AllocationStrategy.Static)
            .backpressure_strategy(strategy)
            .create()
        )
        loan, memmove, update = pub.loan_slice_uninit, ctypes.memmove, pub.update_connections

        def publish(data: bytes) -> None:
            n = len(data)
            sample = loan(n)
            memmove(sample.payload_ptr, data, n)
            sample.assume_init().send()

        def publish_rtt(data: bytes) -> None:
            # send() can report 0 receivers right after start-up although the subscriber
            # exists (_transports.py): refresh the connections and send it again
            n = len(data)
            while True:
                sample = loan(n)
                memmove(sample.payload_ptr, data, n)
                if sample.assume_init().send():
                    return
                update()

        def ready(n: int) -> None:
            update()

        def close() -> None:
            nonlocal node
            pub.delete()
            node = None

        return Pub(
            publish=publish_rtt if cell.bench == "rtt" else publish,
            ready=ready,
            refresh=update,
            close=close,
        )

    def subscriber(self, state: Any, cell: Cell, stream: int) -> Sub:
        _iox2, node, (svc, buffer, _lossy) = self._service(state, cell, stream)
        sub = svc.subscriber_builder().buffer_size(buffer).create()
        receive, string_at = sub.receive, ctypes.string_at

        def recv() -> bytes:
            sample = receive()
            while sample is None:
                sample = receive()
            data = string_at(sample.payload_ptr, sample.header.number_of_elements)
            sample.delete()
            return data

        def close() -> None:
            nonlocal node
            sub.delete()
            node = None

        return Sub(recv=recv, close=close)


# --------------------------------------------------------------------------- pyzmq


class ZmqPubSub(PubSub):
    """pyzmq PUB/SUB over ``ipc://``: the publisher binds an XPUB socket (a PUB that also
    hands up each subscription, with ``XPUB_VERBOSE``, so ``ready(n)`` can wait for all
    ``n`` instead of sleeping against ZeroMQ's "slow joiner"), subscribers connect a SUB
    subscribed to everything. Default high-water marks: a subscriber that falls 1000
    messages behind loses messages (ZeroMQ drops them silently)."""

    key = "zmq"
    label = "pyzmq PUB/SUB ipc://"
    overflow = "drops at the high-water mark (1000 messages), silently"

    def unavailable(self) -> str | None:
        return _missing("zmq")

    def setup(self, cell: Cell) -> tuple[Any, Callable[[], None]]:
        d = tempfile.mkdtemp(prefix=f"{NAME_PREFIX}-zmq-")
        return d, lambda: shutil.rmtree(d, ignore_errors=True)

    def publisher(self, state: Any, cell: Cell, stream: int) -> Pub:
        import zmq

        ctx = zmq.Context()
        sock = ctx.socket(zmq.XPUB)
        sock.setsockopt(zmq.XPUB_VERBOSE, 1)
        sock.bind(f"ipc://{state}/s{stream}")

        def ready(n: int) -> None:
            seen = 0
            while seen < n:
                if sock.recv()[:1] == b"\x01":  # a subscription (b"\x00" unsubscribes)
                    seen += 1

        def close() -> None:
            sock.close(linger=0)
            ctx.term()

        return Pub(publish=sock.send, ready=ready, close=close)

    def subscriber(self, state: Any, cell: Cell, stream: int) -> Sub:
        import zmq

        ctx = zmq.Context()
        sock = ctx.socket(zmq.SUB)
        # the publisher's socket may not be bound yet: ZeroMQ reconnects by itself
        sock.connect(f"ipc://{state}/s{stream}")
        sock.setsockopt(zmq.SUBSCRIBE, b"")

        def close() -> None:
            sock.close(linger=0)
            ctx.term()

        return Sub(recv=sock.recv, close=close)


# --------------------------------------------------------------------------- Aeron


class AeronPubSub(PubSub):
    """Aeron IPC through ``pyaeron`` (CPython >= 3.12 only).

    The parent of the cell (itself running under the 3.12 interpreter, see ``topic.py``)
    starts an embedded C media driver (``pyaeron.MediaDriver``, shared threading) in a
    private directory under /dev/shm; every child connects a client to it
    (``pyaeron.Aeron(dir=...)``). The publisher ``offer``s and retries while back-pressured
    (Aeron is lossless: the slowest subscriber bounds the publisher); subscribers busy-poll
    ``Subscription.poll`` with a handler that copies each message out (``bytes(buf)``).
    Messages above the MTU are fragmented and reassembled (``assemble=True``).
    """

    key = "aeron"
    label = "Aeron IPC (pyaeron), busy-poll"
    overflow = "back-pressure (the publisher waits for the slowest subscriber)"

    #: Aeron's IPC media with its log pre-faulted (``sparse=false``): with the default
    #: sparse term files, the first pass over the 3 x 64 MiB log pays a page fault per
    #: page, and a short cell never gets past it (measured, one process: a 1 MiB offer
    #: took 644 µs sparse, 212 µs pre-faulted; ``mtu=65504`` changed nothing: 886 vs
    #: 876 µs per offer + poll)
    channel = "aeron:ipc?sparse=false"

    def __init__(self, python: str | None) -> None:
        self.python = python

    def why_not(self, bench: str) -> str | None:
        if bench == "stall":
            return (
                "no overwrite mode: a subscriber that never reads back-pressures the "
                "publisher for as long as its client lives (seen here: 349,526 64-byte "
                "offers accepted, 32 MiB, the term window, then BACK_PRESSURED for the rest "
                "of a 3 s run); a stopped process's subscriber is dropped only after the "
                "driver's client liveness timeout (10 s by default)"
            )
        return None

    def unavailable(self) -> str | None:
        return _missing("pyaeron")

    def setup(self, cell: Cell) -> tuple[Any, Callable[[], None]]:
        import pyaeron

        d = f"/dev/shm/{NAME_PREFIX}-aeron-{os.getpid()}-{os.urandom(4).hex()}"
        driver = pyaeron.MediaDriver(dir=d, threading="shared")

        def teardown() -> None:
            driver.close()
            shutil.rmtree(d, ignore_errors=True)

        return d, teardown

    def _client(self, state: Any) -> Any:
        import pyaeron

        return pyaeron.Aeron(dir=state)

    def publisher(self, state: Any, cell: Cell, stream: int) -> Pub:
        import pyaeron

        aeron = self._client(state)
        pub = aeron.add_publication(self.channel, 1000 + stream)
        offer, not_connected = pub.offer, pyaeron.NOT_CONNECTED

        def publish(data: bytes) -> None:
            # retry while back-pressured (or on an admin action); with no subscriber
            # connected (before ready(), or after the last one left) Aeron drops the message
            while True:
                r = offer(data)
                if r is True or r is not_connected:
                    return

        def ready(n: int) -> None:
            pub.await_connected()

        def close() -> None:
            pub.close()
            aeron.close()

        return Pub(publish=publish, ready=ready, close=close)

    def subscriber(self, state: Any, cell: Cell, stream: int) -> Sub:

        aeron = self._client(state)
        sub = aeron.add_subscription(self.channel, 1000 + stream)
        got: collections.deque[bytes] = collections.deque()
        pop, poll, push = got.popleft, sub.poll, got.append

        def handler(buf: Any, header: Any) -> None:
            push(bytes(buf))

        # poll as Aeron's examples do (up to 10 fragments per call), hand out one at a time
        def recv() -> bytes:
            while not got:
                poll(handler, 10)
            return pop()

        def close() -> None:
            sub.close()
            aeron.close()

        return Sub(recv=recv, close=close)


def all_pubsubs(spin: float | None = None, aeron_python: str | None = None) -> list[PubSub]:
    """Every row, in table order (mapshare first)."""
    return [
        TopicPubSub(spin),
        ChannelPubSub(spin),
        Iceoryx2PubSub(),
        ZmqPubSub(),
        AeronPubSub(aeron_python),
    ]
