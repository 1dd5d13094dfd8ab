"""The Zenoh bridge: mapshare topics and channels across hosts (docs/bridge.md).

A :class:`Bridge` connects local mapshare objects to Eclipse Zenoh key expressions, so
that a ``Topic`` published on host A is subscribed on host B with the same mapshare API
while local traffic stays on mapshare's rings.  Several bridges on several hosts form one
system.  ``mapshare bridge`` (src/mapshare/_cli.py) runs one as a process.

Topic mode (``topics={name: key}``): the bridge subscribes to the local topic
(``start="live"``) and puts every message published *on this host* to ``key``, with an
attachment carrying this host's id, its stream epoch and the message's stream number
(what is backlogged goes out as one batch: one put, consecutive numbers).
Samples arriving on ``key`` from other hosts are published locally with
``origin=Origin(host, number)``; a message the bridge brought in carries an origin and is
never sent back out (no loops).  Per remote host the bridge keeps the next stream number
it expects: a gap (lost on the network, or lost by the remote bridge's own local
subscriber, which it announces with a loss sample) becomes ``Topic.publish_loss(gap)``, so
a local subscriber gets ``Lagged`` with the exact count; a number already seen is a
duplicate and is dropped (and counted).  Stream positions are kept in shared memory
(``<stats_name>.cursors``), so a restarted bridge resumes its streams.

Channel mode (``channels={name: key}``): every message sent into the local channel is
delivered to exactly one receiver, here or on one remote host, **at most once**: a host
whose channel has receivers of its own declares a liveliness token and a queryable
``key/rx/<host>``; a bridge whose channel has no local receiver takes a message only when a
remote receiving host is known, and hands it over with one ``get`` to one chosen host,
whose bridge sends it into its channel and replies with an acknowledgement (a query
zenoh brings twice is recognised by its id).  No acknowledgement in time: the message is
counted ``unacknowledged`` and never sent again.

eclipse-zenoh is an optional dependency (``pip install "mapshare[bridge]"``): this module
imports it only when a bridge starts.
"""

from __future__ import annotations

import atexit
import json
import os
import random
import re
import socket
import struct
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Union

from ._channel import Channel
from ._errors import (
    ChannelEmpty,
    ChannelFull,
    Lagged,
    MapshareError,
    MessageTooLargeError,
    SegmentExistsError,
    SegmentNotFoundError,
    TopicEmpty,
    WaitTimeout,
)
from ._latest import Latest
from ._topic import Subscriber, Topic

if TYPE_CHECKING:
    import zenoh
    from typing_extensions import Self

__all__ = [
    "Bridge",
    "BridgeStatistics",
    "ChannelMappingStatistics",
    "RemoteHostStatistics",
    "TopicMappingStatistics",
    "default_host_id",
    "read_statistics",
]

HOST_ID_MAX = 64
"""Longest host id, in bytes (the limit of ``Origin.host``)."""
_HOST_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}\Z")

# The attachment of every sample a bridge puts: version, kind, 6 bytes of padding, the
# sender's stream epoch, the stream number, a count (loss samples), then the host id.
_ATTACH = struct.Struct("<BB6xQQQ")
_VERSION = 1
_KIND_MESSAGE = 0
_KIND_LOSS = 1
_REFUSED = b"refused:"  # a receiving host's error replies start so: certainly not taken
_KIND_LOSS_UNHEARD = 2  # lost while no remote host subscribed: a new stream starts after it
# Several messages in one put (what was backlogged when the bridge looked): the attachment's
# number is the first one's, its count how many; the payload is ``count`` little-endian
# u32 lengths, then the messages back to back.  One put and one remote callback for the
# lot, instead of one each: zenoh's per-sample cost, not the bytes, bounds small messages.
_KIND_BATCH = 3
# A batch is put once it holds this many bytes of messages: well under zenoh's 64 KiB
# transport batch, so a batch is never fragmented (a fragmented put is dropped whole
# under congestion far more often: measured, 4 KiB messages were lost in 64 KiB batches).
_BATCH_BYTES = 1 << 14
_BATCH_MAX = 4096  # ... or this many messages
_BIG = 1 << 14  # after a message this large, read the next through a view (no copy if skipped)

DEFAULT_CAPACITY = 1 << 20
"""Ring size of a topic or channel the bridge creates because it does not exist yet."""
_STATS_MAX = 1 << 16
SESSION_CLOSE_TIMEOUT = 2.0
"""Default of ``Bridge(close_timeout=)``: how long ``stop()`` waits for zenoh to close the
session before it goes on with the local cleanup.  A close waits on the peers: a peer
that does not read (stopped, its link cut) holds zenoh's TCP close for its linger time
(measured: ~5 s and more), so the close goes on in a thread of its own."""
# At interpreter exit, how long the closes still going on may take before Python's
# finalization goes on (a thread inside zenoh that comes back into Python during the
# finalization is ended by it mid-Rust-call: the process aborts).
EXIT_CLOSE_TIMEOUT = 10.0
_CURSORS_MAX = 1 << 16
# zenoh's transmit queue per link, in 64 KiB transport batches, for data (zenoh's default
# is 2).  With DROP, a put finding its link's queue full waits ``wait_before_drop`` (1 ms)
# and is then dropped *for that link*.  Two batches are ~30 ms of a 4 MB/s stream: a
# healthy link whose transmit task is off the CPU that long on a loaded machine dropped
# messages -- measured: host C lost 2-4 of A's 4 KiB messages on the hop (A's ring lost
# none) while host B's bridge was stopped, 2 runs in 4 under load; none in 6 with 16.
# The queue is memory per link only: a link that does not drain fills its own and drops
# its own (after ``wait_before_drop``), and costs the others nothing.  Only zenoh's
# default is replaced (a configuration cannot tell a 2 it chose from the default).
_TX_QUEUE_BATCHES = 16
_POLL = 0.1  # seconds a bridge thread waits before looking at its stop flag again
_RECEIVER_HOLD = 1.0  # seconds a channel's host stays a receiving host after its last receiver


def _zenoh() -> Any:
    """The zenoh module, or ImportError saying how to install it."""
    try:
        import zenoh
    except ImportError as exc:  # pragma: no cover - the test extra installs it
        raise ImportError(
            'the bridge needs eclipse-zenoh: pip install "mapshare[bridge]"'
        ) from exc
    return zenoh


def default_host_id() -> str:
    """This host's default id: the host name and the device number of /dev/shm.

    Two network namespaces on one machine often share a host name; each with its own
    /dev/shm (a private tmpfs) has its own device number, so their ids differ, and two
    bridges of one mapshare namespace agree.  Pass ``host_id=`` to choose one."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname() or "host").lstrip(".-")
    try:
        dev = os.stat("/dev/shm").st_dev
    except OSError:  # no /dev/shm (Windows): the host name alone
        return (name or "host")[:HOST_ID_MAX]
    suffix = f"-{dev:x}"
    return (name or "host")[: HOST_ID_MAX - len(suffix)] + suffix


def _check_host_id(host_id: str) -> str:
    if not isinstance(host_id, str) or not _HOST_RE.match(host_id):
        raise ValueError(
            f"invalid host id {host_id!r}: 1 to {HOST_ID_MAX} characters from "
            "A-Z a-z 0-9 '.' '_' '-', not starting with '.' or '-'"
        )
    return host_id


def _pack(kind: int, epoch: int, number: int, count: int, host: bytes) -> bytes:
    return _ATTACH.pack(_VERSION, kind, epoch, number, count) + host


def _unpack(att: bytes) -> Optional[tuple[int, int, int, int, str]]:
    """(kind, epoch, number, count, host) of an attachment; None if it is not one of
    ours (another zenoh application putting on the key): such samples are ignored."""
    if len(att) <= _ATTACH.size or len(att) > _ATTACH.size + HOST_ID_MAX:
        return None
    version, kind, epoch, number, count = _ATTACH.unpack_from(att)
    if version != _VERSION or kind not in (_KIND_MESSAGE, _KIND_LOSS, _KIND_LOSS_UNHEARD,
                                           _KIND_BATCH):
        return None
    raw = att[_ATTACH.size:]
    host = _hosts.get(raw)
    if host is None:  # a host id not met yet: check it once
        try:
            host = raw.decode()
        except UnicodeDecodeError:
            return None
        if not _HOST_RE.match(host):
            return None
        if len(_hosts) < 4096:  # bounded: a flood of forged ids is checked every time
            _hosts[raw] = host
    return kind, epoch, number, count, host


_hosts: dict[bytes, str] = {}  # host ids already checked (their UTF-8 bytes)


def _split_batch(payload: bytes, count: int) -> Optional[list[memoryview]]:
    """The messages of a batch's payload (views into it), or None if it is not a
    well-formed batch of ``count`` messages (untrusted: another application's put)."""
    head = 4 * count
    if count < 2 or head > len(payload):
        return None
    lens = struct.unpack_from(f"<{count}I", payload)
    if head + sum(lens) != len(payload):
        return None
    view = memoryview(payload)
    out = []
    off = head
    for n in lens:
        out.append(view[off:off + n])
        off += n
    return out


def _local_count(st: Any) -> int:
    """Messages published on this host (not brought in, not loss records) since the
    topic's creation, from its statistics."""
    return int(st.published - st.origin_published - st.loss_records)


def _local_missed(lag: Lagged) -> int:
    """Of a ``Lagged`` the bridge's own subscriber got, the messages lost in this host's
    ring: not the ones loss records stand for (``Lagged.upstream``), which the bridge
    published itself for another host's loss, announced by that host: they must not
    echo back."""
    return max(0, int(lag.missed) - int(lag.upstream))


# ---------------------------------------------------------------------------------------
# Interpreter exit

_exit_lock = threading.Lock()
_running: weakref.WeakSet[Bridge] = weakref.WeakSet()  # started, not stopped
_closing: set[threading.Thread] = set()  # zenoh session closes still going on


def _at_exit() -> None:
    """A script that ends with a bridge running stops it (its peers see it leave), and
    Python's finalization does not begin while zenoh still closes a session: a zenoh
    thread coming back into Python then would be ended mid-call (the process aborts)."""
    with _exit_lock:
        bridges = list(_running)
    for b in bridges:
        try:
            b.stop()
        except Exception as exc:  # one bridge's failure must not keep the others up
            print(f"mapshare bridge: stopping at exit: {exc}", file=sys.stderr)
    deadline = time.monotonic() + EXIT_CLOSE_TIMEOUT
    with _exit_lock:
        closers = list(_closing)
    for th in closers:
        th.join(max(0.0, deadline - time.monotonic()))


# It must run before Python joins its non-daemon threads at exit: zenoh-python's
# callback threads are such threads, and they end only when the session closes, so a
# plain atexit hook (which runs after that join) never ran -- a script that ended with a
# bridge running hung.  threading._register_atexit runs its hooks before the join.
_register_exit = getattr(threading, "_register_atexit", None)
if _register_exit is not None:
    _register_exit(_at_exit)
else:  # pragma: no cover - CPython 3.9+ has it
    atexit.register(_at_exit)


# ---------------------------------------------------------------------------------------
# Statistics


@dataclass(frozen=True)
class RemoteHostStatistics:
    """What a topic mapping has received from one remote host."""

    host: str
    """The remote host's id."""
    epoch: int
    """The remote stream's epoch (a new one when the remote bridge lost its cursors)."""
    next: int
    """The stream number expected next from that host."""
    messages_in: int
    """Messages from that host published locally (since this bridge started)."""
    lost: int
    """Messages from that host counted lost upstream (network, or the remote ring)."""
    duplicates: int
    """Messages (and loss samples) from that host dropped because their number was
    already seen."""
    too_large: int = 0
    """Messages from that host larger than the local topic takes (counted in ``lost``)."""


@dataclass(frozen=True)
class TopicMappingStatistics:
    """Counters of one ``topic=key`` mapping, since this bridge started."""

    name: str
    """The local topic."""
    key: str
    """The zenoh key expression."""
    messages_out: int
    """Messages published on this host that the bridge put to the key."""
    messages_in: int
    """Messages from other hosts that the bridge published locally."""
    lost: int
    """Messages counted lost upstream (sum over remote hosts; each became a loss
    record, so local subscribers got it as ``Lagged``)."""
    duplicates: int
    """Messages (and loss samples) dropped because their stream number was already seen."""
    dropped: int
    """Messages published here that the bridge's own subscriber lost (it was lapped):
    never sent, announced to the other hosts by a loss sample."""
    skipped: int
    """Messages read locally that carried an origin (brought in by a bridge): not sent
    back out."""
    matched: bool = False
    """Whether a bridge on another host subscribes to the key now (zenoh's matching
    status): until then what is published here reaches nobody."""
    remote_hosts: tuple[RemoteHostStatistics, ...] = ()
    """Per remote host seen on the key."""


@dataclass(frozen=True)
class ChannelMappingStatistics:
    """Counters of one ``channel=key`` mapping, since this bridge started."""

    name: str
    """The local channel."""
    key: str
    """The zenoh key expression (receiving hosts answer on ``key/rx/<host>``)."""
    messages_out: int
    """Messages taken from the local channel and acknowledged by a remote host."""
    messages_in: int
    """Messages from other hosts sent into the local channel (and acknowledged)."""
    unacknowledged: int
    """Messages handed to a remote host that did not acknowledge in time: maybe
    delivered, maybe lost, never sent again (at most once)."""
    refused: int
    """Hand-overs a remote host refused (no receiver there now, or its channel full);
    the message was offered to another host."""
    returned: int
    """Messages taken but not delivered when the bridge stopped: sent back into the
    local channel (``lost`` counts those that did not fit)."""
    lost: int
    """Messages taken that could be neither delivered nor returned."""
    duplicates: int
    """Hand-overs that arrived here a second time (zenoh brought one query twice):
    acknowledged again, not sent into the channel again."""
    receiving: bool
    """Whether this host announces itself as a receiving host (its channel has a
    receiver other than the bridge)."""
    remote_hosts: tuple[str, ...] = ()
    """Remote receiving hosts known now."""


@dataclass(frozen=True)
class BridgeStatistics:
    """A bridge's counters: what ``Bridge.statistics()`` returns and what the bridge
    writes into its statistics object (``mapshare bridge stat`` reads it)."""

    host: str
    """This bridge's host id."""
    pid: int
    """The bridge's process."""
    zid: str
    """Its zenoh session id."""
    running: bool
    """False once the bridge stopped (the last statistics it wrote)."""
    updated: float
    """``time.time()`` when these were taken."""
    peers: tuple[str, ...] = ()
    """Zenoh ids of the peers and routers this session is connected to now."""
    remote_hosts: tuple[str, ...] = ()
    """Ids of every remote host seen on any mapping since the bridge started."""
    topics: tuple[TopicMappingStatistics, ...] = ()
    """One per topic mapping."""
    channels: tuple[ChannelMappingStatistics, ...] = ()
    """One per channel mapping."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (what ``mapshare bridge stat --json`` prints)."""
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> BridgeStatistics:
        """The statistics back from ``to_json()``'s dict."""
        topics = tuple(
            TopicMappingStatistics(**{
                **t, "remote_hosts": tuple(RemoteHostStatistics(**r) for r in t["remote_hosts"])
            })
            for t in d.get("topics", ())
        )
        channels = tuple(
            ChannelMappingStatistics(**{**c, "remote_hosts": tuple(c["remote_hosts"])})
            for c in d.get("channels", ())
        )
        return cls(
            host=d["host"], pid=d["pid"], zid=d["zid"], running=d["running"],
            updated=d["updated"], peers=tuple(d.get("peers", ())),
            remote_hosts=tuple(d.get("remote_hosts", ())), topics=topics, channels=channels,
        )


def read_statistics(name: str) -> BridgeStatistics:
    """The statistics a bridge wrote into the ``Latest`` called ``name`` (its
    ``stats_name``): ``SegmentNotFoundError`` if there is none, ``ValueError`` if the
    bridge has not written any yet or the value is not a bridge's."""
    with Latest.open(name) as slot:
        data, version = slot.get()
    if version == 0:
        raise ValueError(f"bridge statistics {name!r}: nothing written yet")
    try:
        return BridgeStatistics.from_json(json.loads(data))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{name!r} does not hold bridge statistics: {exc}") from None


# ---------------------------------------------------------------------------------------
# Mappings


@dataclass
class _Remote:
    epoch: int
    next: int
    messages_in: int = 0
    lost: int = 0
    duplicates: int = 0
    too_large: int = 0


@dataclass
class _TopicMap:
    name: str
    key: str
    topic: Topic
    sub: Subscriber
    epoch: int
    next: int  # the stream number of the next message this host sends
    publisher: Any = None
    subscriber: Any = None
    thread: Optional[threading.Thread] = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    remotes: dict[str, _Remote] = field(default_factory=dict)
    out_cursor: tuple[int, int] = (0, 0)  # (next number, local position): one assignment
    matching: Any = None  # zenoh's matching listener, which keeps ``matched`` up to date
    matched: bool = False  # a bridge on another host subscribes to the key now
    matched_at: int = 0  # the topic's next sequence number when ``matched`` last became true
    hold: bool = False  # leave messages in the ring while nobody remote subscribes
    local_base: int = 0  # a lower bound of the messages published here before ``sub`` began
    local_read: int = 0  # messages published here the bridge has sent or counted lost
    messages_out: int = 0
    dropped: int = 0
    skipped: int = 0


class _Seen:
    """The newest hand-over ids taken from one sender (a bounded set)."""

    KEEP = 4096

    def __init__(self) -> None:
        self.ids: set[int] = set()
        self.order: deque[int] = deque()

    def add(self, number: int) -> None:
        self.ids.add(number)
        self.order.append(number)
        if len(self.order) > self.KEEP:
            self.ids.discard(self.order.popleft())


@dataclass
class _ChannelMap:
    name: str
    key: str
    channel: Channel
    queryable: Any = None
    token: Any = None
    liveliness: Any = None
    thread: Optional[threading.Thread] = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    remotes: set[str] = field(default_factory=set)
    rr: int = 0
    took: bool = False  # the bridge has received on the channel: it counts as a receiver
    waiting: bool = False  # the bridge is in a receive on it: it may count as a waiter
    seen_receiver: float = -1e9  # time.monotonic() when a local receiver was last seen
    epoch: int = field(default_factory=lambda: random.getrandbits(63))
    next: int = 0  # the id of the next message this bridge hands over
    seen: dict[tuple[str, int], _Seen] = field(default_factory=dict)
    duplicates: int = 0
    receiving: bool = False
    messages_out: int = 0
    messages_in: int = 0
    unacknowledged: int = 0
    refused: int = 0
    returned: int = 0
    lost: int = 0


def _parse_mappings(arg: Optional[Mapping[str, str]], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, key in (arg or {}).items():
        if not isinstance(key, str) or not key or any(c in key for c in "*$?#") \
                or key.startswith("/") or key.endswith("/") or "//" in key:
            raise ValueError(f"{what} {name!r}: invalid zenoh key {key!r} (no wildcards)")
        out[name] = key
    return out


class Bridge:
    """A bridge between this host's mapshare topics and channels and Zenoh.

    ``topics`` and ``channels`` map local names to zenoh keys (no wildcards).  Zenoh's
    configuration comes from ``config`` (a JSON5 file's path or a ``zenoh.Config``), then
    ``mode`` (``"peer"``, ``"router"`` or ``"client"``), ``listen`` and ``connect``
    (endpoints such as ``"tcp/10.0.0.1:7447"``) and ``multicast_scouting`` override it.
    ``host_id`` names this host to the others (default: :func:`default_host_id`);
    ``stats_name`` is the ``Latest`` the bridge writes its statistics into every
    ``stats_interval`` seconds (default ``bridge.<host_id>``), and ``<stats_name>.cursors``
    the persistent ``Latest`` holding its stream positions, so that a restarted bridge
    resumes its streams (see docs/bridge.md).  A topic or channel that does not exist is
    created with ``capacity`` bytes of ring.

    ``start()`` opens the zenoh session and starts the bridge's threads (zenoh's own
    ``zenoh.ZError`` if it cannot: a bad configuration, an endpoint in use); ``stop()``
    (or leaving the ``with`` block) stops them and closes everything.  ``ack_timeout`` is
    how long a channel hand-over waits for the remote host's acknowledgement;
    ``close_timeout`` how long ``stop()`` waits for zenoh to close the session (the close
    goes on in the background; at interpreter exit Python waits up to
    ``EXIT_CLOSE_TIMEOUT`` more for it).  A bridge still running at interpreter exit is
    stopped then."""

    def __init__(
        self,
        topics: Optional[Mapping[str, str]] = None,
        channels: Optional[Mapping[str, str]] = None,
        *,
        config: Union[str, os.PathLike[str], zenoh.Config, None] = None,
        mode: Optional[str] = None,
        listen: tuple[str, ...] | list[str] = (),
        connect: tuple[str, ...] | list[str] = (),
        multicast_scouting: Optional[bool] = None,
        host_id: Optional[str] = None,
        stats_name: Optional[str] = None,
        stats_interval: float = 1.0,
        capacity: int = DEFAULT_CAPACITY,
        ack_timeout: float = 2.0,
        close_timeout: float = SESSION_CLOSE_TIMEOUT,
    ) -> None:
        self._topic_keys = _parse_mappings(topics, "topic")
        self._channel_keys = _parse_mappings(channels, "channel")
        if not self._topic_keys and not self._channel_keys:
            raise ValueError("a bridge needs at least one topic or channel mapping")
        if mode not in (None, "peer", "router", "client"):
            raise ValueError(f"mode must be 'peer', 'router' or 'client', not {mode!r}")
        if stats_interval <= 0:
            raise ValueError("stats_interval must be > 0")
        if ack_timeout <= 0:
            raise ValueError("ack_timeout must be > 0")
        if close_timeout < 0:
            raise ValueError("close_timeout must be >= 0")
        self._config = config
        self._mode = mode
        self._listen = list(listen)
        self._connect = list(connect)
        self._scouting = multicast_scouting
        self.host_id = _check_host_id(host_id if host_id is not None else default_host_id())
        """This host's id, carried by every message the bridge sends."""
        self.stats_name = stats_name if stats_name is not None else f"bridge.{self.host_id}"
        """The ``Latest`` the statistics are written into."""
        self.stats_interval = stats_interval
        """Seconds between two statistics writes."""
        self._capacity = capacity
        self._ack_timeout = ack_timeout
        self._close_timeout = close_timeout
        self._host_bytes = self.host_id.encode()
        self._session: Any = None
        self._topics: list[_TopicMap] = []
        self._channels: list[_ChannelMap] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._stats: Optional[Latest] = None
        self._cursors: Optional[Latest] = None
        self._cursor_lock = threading.Lock()
        self._seen: set[str] = set()
        self._started = False
        self._closed = False
        self._on_stats: Optional[Any] = None
        self.error: Optional[BaseException] = None
        """Why the bridge stopped by itself (a thread of it failed), else None."""

    read_statistics = staticmethod(read_statistics)
    default_host_id = staticmethod(default_host_id)

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the bridge has started and not stopped."""
        return self._started and not self._closed

    def start(self) -> Self:
        """Open the zenoh session, the local objects and the bridge's threads; returns
        the bridge.  Messages published locally from now on are sent out."""
        if self._started:
            raise RuntimeError("a bridge starts once")
        zenoh = _zenoh()
        self._started = True
        with _exit_lock:
            _running.add(self)
        try:
            self._stats = Latest.open_or_create(
                self.stats_name, _STATS_MAX, lifetime="persistent")
            self._cursors = Latest.open_or_create(
                self.stats_name + ".cursors", _CURSORS_MAX, lifetime="persistent")
            saved = self._load_cursors()
            self._session = zenoh.open(self._zenoh_config(zenoh))
            for name, key in self._topic_keys.items():
                self._topics.append(self._open_topic(zenoh, name, key, saved.get(name, {})))
            for name, key in self._channel_keys.items():
                self._channels.append(self._open_channel(zenoh, name, key))
            self._save_cursors()
            for t in self._topics:  # every mapping is in the cursors before any sample
                self._listen_topic(zenoh, t)
            for t in self._topics:
                self._spawn(self._send_topic, t, f"bridge-out-{t.name}")
            for c in self._channels:
                self._spawn(self._forward_channel, c, f"bridge-fwd-{c.name}")
            self._spawn(self._housekeeping, None, "bridge-stats")
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, target: Any, arg: Any, name: str) -> None:
        def run() -> None:
            try:
                target(arg) if arg is not None else target()
            except BaseException as exc:
                # a bridge whose thread died must not go on looking healthy: it stops,
                # and ``error`` says why (``mapshare bridge`` exits with status 1)
                if self.error is None:
                    self.error = exc
                self._stop.set()
                raise

        th = threading.Thread(target=run, name=name, daemon=True)
        self._threads.append(th)
        th.start()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait until the bridge stops by itself (a thread of it failed: ``error``) or
        ``stop()`` is called; True if it has, False on timeout."""
        return self._stop.wait(timeout)

    def _zenoh_config(self, zenoh: Any) -> Any:
        if self._config is None:
            conf = zenoh.Config()
        elif isinstance(self._config, (str, os.PathLike)):
            conf = zenoh.Config.from_file(os.fspath(self._config))
        else:
            conf = self._config
        # Zenoh's own shared-memory transport is off: on this host mapshare carries the
        # traffic, and a zenoh process that is killed leaves its /dev/shm file behind.
        conf.insert_json5("transport/shared_memory/enabled", "false")
        queue = "transport/link/tx/queue/size/data"
        if json.loads(conf.get_json(queue)) == 2:  # zenoh's default: not chosen by the user
            conf.insert_json5(queue, str(_TX_QUEUE_BATCHES))
        if self._mode is not None:
            conf.insert_json5("mode", json.dumps(self._mode))
        if self._listen:
            conf.insert_json5("listen/endpoints", json.dumps(self._listen))
        if self._connect:
            conf.insert_json5("connect/endpoints", json.dumps(self._connect))
        if self._scouting is not None:
            conf.insert_json5("scouting/multicast/enabled", json.dumps(self._scouting))
        return conf

    def stop(self) -> None:
        """Stop the threads, write the last statistics and cursors, close the zenoh
        session and the local handles.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        with _exit_lock:
            _running.discard(self)
        for th in self._threads:
            if th is not threading.current_thread():
                th.join()
        if self._session is not None:
            self._write_stats()
            # Closing a session can wait on zenoh's own tasks (a connect endpoint whose
            # peer is gone, on a loaded machine): the local cleanup below must not wait
            # with it, so the close gets its own thread and a bounded wait.
            closer = threading.Thread(target=self._close_session, daemon=True,
                                      name="mapshare-bridge-close")
            with _exit_lock:
                _closing.add(closer)
            closer.start()
            closer.join(self._close_timeout)
        self._save_cursors()
        for t in self._topics:
            t.sub.close()
            t.topic.close()
        for c in self._channels:
            c.channel.close()
        for slot in (self._stats, self._cursors):
            if slot is not None:
                slot.close()

    def _close_session(self) -> None:
        try:
            if self._session is not None:
                self._session.close()
        except Exception:  # a session already gone must not stop the cleanup
            pass
        finally:
            with _exit_lock:
                _closing.discard(threading.current_thread())

    def __enter__(self) -> Self:
        if not self._started:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else ("stopped" if self._closed else "new")
        return f"<mapshare.bridge.Bridge host={self.host_id!r} {state}>"

    # -- cursors: where each stream stands, kept in shared memory ----------------------

    def _load_cursors(self) -> dict[str, Any]:
        assert self._cursors is not None
        data, version = self._cursors.get()
        if version == 0:
            return {}
        try:
            saved = json.loads(data)
            return saved if isinstance(saved, dict) else {}
        except ValueError:  # untrusted memory: a garbled value is a fresh start
            return {}

    def _save_cursors(self) -> None:
        """Write every mapping's stream positions (called after each message brought
        in, and by the statistics thread for the outgoing side)."""
        if self._cursors is None or self._cursors.closed:
            return
        with self._cursor_lock:
            state = {}
            for t in self._topics:
                with t.lock:
                    remotes = {h: [r.epoch, r.next] for h, r in t.remotes.items()}
                state[t.name] = {"epoch": t.epoch, "out": list(t.out_cursor),
                                 "remotes": remotes}
            self._cursors.set(json.dumps(state, separators=(",", ":")).encode())

    # -- topics ------------------------------------------------------------------------

    # The bridge's handles do not spin before sleeping (spin=0): a network hop costs
    # hundreds of microseconds anyway, and a spinning bridge would take CPU from the
    # local processes it serves.
    def _open_local_topic(self, name: str) -> Topic:
        try:
            return Topic.open(name, spin=0)
        except SegmentNotFoundError:
            try:
                return Topic.create(name, self._capacity, spin=0)
            except SegmentExistsError:
                return Topic.open(name, spin=0)

    def _open_topic(self, zenoh: Any, name: str, key: str, saved: Mapping[str, Any]) -> _TopicMap:
        topic = self._open_local_topic(name)
        epoch, number, start = random.getrandbits(63), 0, None
        try:
            if isinstance(saved.get("epoch"), int):
                epoch = saved["epoch"]
                number, pos = (int(x) for x in saved["out"])
                start = pos
        except (KeyError, TypeError, ValueError):
            epoch, number, start = random.getrandbits(63), 0, None
        st = topic.statistics()
        if start is None or not 0 <= start <= st.published:
            start = None  # a different topic under this name: start afresh
        # Resuming at the saved position sends what was published while the bridge was
        # away (numbers the receivers already have are dropped there as duplicates).
        sub = topic.subscribe(start if start is not None else "live")
        m = _TopicMap(name, key, topic, sub, epoch, number)
        # at most this many messages before the subscriber's position were published here
        m.local_base = _local_count(st) - (st.published - sub.position)
        m.out_cursor = (number, sub.position)
        for host, v in dict(saved.get("remotes") or {}).items():
            try:
                m.remotes[str(host)] = _Remote(int(v[0]), int(v[1]))
            except (TypeError, ValueError, IndexError):
                continue
        self._recover_remotes(m)
        # DROP: a congested link never makes the bridge (or anyone) wait; what zenoh
        # drops shows as a gap in the numbers, counted lost by the receiving bridges.
        # REMOTE: the bridge's own subscriber on the key is no match (``matched``).
        # Not express: measured between two namespaces (benchmarks/bridge.py), express
        # puts did not shorten the round trip, and each one takes a slot of zenoh's small
        # transmit queue, so under load DROP drops more; the bridge batches a backlog
        # itself (_KIND_BATCH).
        m.publisher = self._session.declare_publisher(
            key, congestion_control=zenoh.CongestionControl.DROP,
            allowed_destination=zenoh.Locality.REMOTE)
        m.hold = topic.overflow == "overwrite"
        m.matching = m.publisher.declare_matching_listener(
            lambda st, m=m: self._matching(m, bool(st.matching)))
        self._matching(m, bool(m.publisher.matching_status.matching))
        return m

    def _matching(self, m: _TopicMap, matched: bool) -> None:
        """A remote host subscribes to the key (or none does any more)."""
        if matched and not m.matched:
            # what was published before this is from before anyone remote listened
            m.matched_at = m.topic.statistics().published
        m.matched = matched

    def _listen_topic(self, zenoh: Any, m: _TopicMap) -> None:
        m.subscriber = self._session.declare_subscriber(
            m.key, lambda s, m=m: self._receive_sample(m, s),
            allowed_origin=zenoh.Locality.REMOTE)

    def _recover_remotes(self, m: _TopicMap) -> None:
        """The cursors are saved every stats interval, so a killed bridge's are behind
        what it had published: the topic itself says which numbers arrived (their
        origins), so read back what it holds."""
        if not m.remotes:
            return
        oldest = m.topic.statistics().oldest
        with m.topic.subscribe(oldest) as scan:
            while True:
                try:
                    scan.receive_nowait()
                except TopicEmpty:
                    break
                except Lagged:
                    continue
                origin = scan.last_origin
                if origin is None:
                    continue
                r = m.remotes.get(origin.host)
                if r is not None and origin.seq >= r.next:
                    r.next = origin.seq + 1

    def _send_topic(self, m: _TopicMap) -> None:
        """Put every message published on this host to the key; never what came in.

        The thread sleeps in a receive until a message is there; then it takes what else
        is already there without waiting (up to ``_BATCH_BYTES`` / ``_BATCH_MAX``) and
        puts it all at once: a lone message goes out alone at once (latency), a backlog
        goes out in few puts (throughput)."""
        sub, put = m.sub, m.publisher.put
        batch: list[bytes] = []  # messages published here, taken but not put yet
        size = 0
        big = False
        while not self._stop.is_set():
            if not batch and m.hold and not m.matched:
                # Nobody remote subscribes (not yet, or the link is down): what is
                # published stays in the ring and goes out once someone does; what the
                # ring overwrites meanwhile goes out as a loss.  An overwrite-mode topic
                # never waits for the bridge, so holding back costs local publishers
                # nothing (a block-mode topic would wait: there the bridge reads on).
                self._stop.wait(_POLL / 10)
                continue
            before = sub.position
            try:
                if not batch or big:
                    # A view: what came in (it has an origin) is skipped without a copy.
                    # The copy is used only once the view ends cleanly (no Lagged: not
                    # torn).  With a batch open it does not wait (timeout 0).
                    with sub.receive_view(timeout=0 if batch else _POLL) as view:
                        data = bytes(view) if sub._last_origin is None else None
                else:  # small messages: a copy costs less than a view
                    data = sub.receive_nowait()
                    if sub._last_origin is not None:
                        data = None
            except (WaitTimeout, TopicEmpty):
                if batch:  # nothing more is there: what was taken goes out now
                    self._put_batch(m, batch)
                    batch, size = [], 0
                continue
            except Lagged as lag:
                if batch:  # what was taken before the loss comes first
                    self._put_batch(m, batch)
                    batch, size = [], 0
                # Of the records lost, at most as many were published here as this host
                # has published and the bridge has not yet accounted for: a bridge that
                # is lapped by what it brings in itself announces no loss of its own.
                missed = min(_local_missed(lag), max(
                    0, _local_count(m.topic.statistics()) - m.local_base - m.local_read))
                m.local_read += missed
                if missed:
                    # The remote hosts count these as lost: a loss sample says so.  The
                    # part published before a remote host subscribed goes in a sample of
                    # its own, which a host hearing this stream for the first time skips
                    # (its count starts after it).
                    unheard = min(missed, max(0, min(lag.position, m.matched_at) - before))
                    for kind, n in ((_KIND_LOSS_UNHEARD, unheard),
                                    (_KIND_LOSS, missed - unheard)):
                        if n:
                            put(b"", attachment=_pack(kind, m.epoch, m.next, n,
                                                      self._host_bytes))
                            m.next += n
                    m.dropped += missed
                m.out_cursor = (m.next, sub.position)
                continue
            except MapshareError:
                if self._stop.is_set():
                    break
                raise
            if data is None:  # brought in by a bridge: never back out
                m.skipped += 1
                if not batch:
                    m.out_cursor = (m.next, sub.position)
                continue
            if batch and size + len(data) > _BATCH_BYTES:  # it would not fit: put first
                self._put_batch(m, batch)
                batch, size = [], 0
            batch.append(data)
            size += len(data)
            big = len(data) > _BIG
            if size >= _BATCH_BYTES or len(batch) >= _BATCH_MAX:
                self._put_batch(m, batch)
                batch, size = [], 0
        if batch:
            self._put_batch(m, batch)

    def _put_batch(self, m: _TopicMap, batch: list[bytes]) -> None:
        """Put messages taken from the local topic: one alone as a message, several as a
        batch (one put); they take the next stream numbers."""
        n = len(batch)
        if n == 1:
            m.publisher.put(batch[0], attachment=_pack(_KIND_MESSAGE, m.epoch, m.next, 0,
                                                       self._host_bytes))
        else:
            payload = b"".join([struct.pack(f"<{n}I", *map(len, batch)), *batch])
            m.publisher.put(payload, attachment=_pack(_KIND_BATCH, m.epoch, m.next, n,
                                                      self._host_bytes))
        m.next += n
        m.messages_out += n
        m.local_read += n
        m.out_cursor = (m.next, m.sub.position)

    def _receive_sample(self, m: _TopicMap, sample: Any) -> None:
        """A sample from another host: publish it locally (a batch: each of its
        messages), count gaps and duplicates."""
        att = sample.attachment
        parsed = _unpack(att.to_bytes()) if att is not None else None
        if parsed is None or self._stop.is_set():
            return
        kind, epoch, number, count, host = parsed
        if host == self.host_id:
            return
        unheard = kind == _KIND_LOSS_UNHEARD
        if unheard:
            kind = _KIND_LOSS
        messages: Optional[list[memoryview]] = None
        if kind == _KIND_MESSAGE:
            messages = [memoryview(sample.payload.to_bytes())]
        elif kind == _KIND_BATCH:
            messages = _split_batch(sample.payload.to_bytes(), count)
            if messages is None:  # malformed: not ours after all
                return
        self._seen.add(host)
        end = number + (count if messages is None else len(messages))
        with m.lock:
            r = m.remotes.get(host)
            fresh = r is None or r.epoch != epoch
            if fresh:
                # a new stream: the first number seen starts the count -- a loss from
                # before any remote host subscribed is not reported (the count starts
                # after it); one that happened while a host did subscribe is
                r = m.remotes[host] = _Remote(epoch, end if unheard else number)
        if fresh:
            # A new stream's epoch is saved before anything of it is published here: a
            # bridge killed once a subscriber has a batch of it must know the stream when
            # restarted, or it would take the stream for new and skip the loss that came
            # while it was away (the numbers are saved every stats interval; a restarted
            # bridge reads the newer ones back from the origins its topic holds).
            self._save_cursors()
        with m.lock:
            r = m.remotes[host]
            if fresh and unheard:
                pass  # nothing to publish: the count starts after it
            elif end <= r.next:  # all seen already (a loss or batch may overlap: its rest)
                r.duplicates += 1 if messages is None else len(messages)
                return
            gap = (end if messages is None else number) - r.next
            topic = m.topic
            try:
                if gap > 0:  # the loss record comes first: it stands for what came before
                    topic.publish_loss(gap, origin=(host, r.next))
                    r.lost += gap
                if messages is not None:
                    # a batch that overlaps what was already seen: only its new part
                    first = max(0, r.next - number)
                    r.duplicates += first
                    publish = topic.publish
                    seq = number + first
                    for data in messages[first:]:
                        try:
                            publish(data, origin=(host, seq))
                            r.messages_in += 1
                        except MessageTooLargeError:
                            # larger than this host's ring takes: lost here, counted
                            topic.publish_loss(1, origin=(host, seq))
                            r.lost += 1
                            r.too_large += 1
                        seq += 1
            except MapshareError as exc:
                if not self._stop.is_set():  # a broken local topic: the bridge stops
                    self.error = self.error or exc
                    self._stop.set()
                return
            r.next = end

    # -- channels ----------------------------------------------------------------------

    def _open_local_channel(self, name: str) -> Channel:
        try:
            return Channel.open(name, spin=0)
        except SegmentNotFoundError:
            try:
                return Channel.create(name, self._capacity, spin=0)
            except SegmentExistsError:
                return Channel.open(name, spin=0)

    def _open_channel(self, zenoh: Any, name: str, key: str) -> _ChannelMap:
        c = _ChannelMap(name, key, self._open_local_channel(name))
        c.queryable = self._session.declare_queryable(
            f"{key}/rx/{self.host_id}", lambda q, c=c: self._hand_in(c, q),
            allowed_origin=zenoh.Locality.REMOTE)
        c.liveliness = self._session.liveliness().declare_subscriber(
            f"{key}/rx/*", lambda s, c=c: self._receiver_event(zenoh, c, s), history=True)
        self._update_receiving(c)
        return c

    def _local_receivers(self, c: _ChannelMap) -> int:
        """Receivers of the local channel other than this bridge: processes that have
        received on it, or (one that has not received yet) waiting in a receive."""
        st = c.channel.statistics()
        return max(st.receivers - (1 if c.took else 0),
                   st.receive_waiters - (1 if c.waiting else 0))

    def _update_receiving(self, c: _ChannelMap) -> None:
        """Announce this host as a receiving host while its channel has a receiver (and
        for ``_RECEIVER_HOLD`` seconds after the last one was seen: a receiver between
        two receive calls is not a host without receivers, whose bridge would start
        forwarding what it was just handed)."""
        now = time.monotonic()
        if self._local_receivers(c) > 0:
            c.seen_receiver = now
        receiving = now - c.seen_receiver < _RECEIVER_HOLD
        if receiving and c.token is None:
            c.token = self._session.liveliness().declare_token(
                f"{c.key}/rx/{self.host_id}")
        elif not receiving and c.token is not None:
            c.token.undeclare()
            c.token = None
        c.receiving = receiving

    def _receiver_event(self, zenoh: Any, c: _ChannelMap, sample: Any) -> None:
        host = str(sample.key_expr).rsplit("/", 1)[-1]
        if host == self.host_id:
            return
        with c.lock:
            if sample.kind == zenoh.SampleKind.PUT:
                c.remotes.add(host)
                self._seen.add(host)
            else:
                c.remotes.discard(host)

    def _hand_in(self, c: _ChannelMap, query: Any) -> None:
        """A remote host hands a message over: send it into the local channel and
        acknowledge, or refuse (no receiver here now, channel full) so it goes
        elsewhere."""
        payload = query.payload
        att = query.attachment
        parsed = _unpack(att.to_bytes()) if att is not None else None
        if self._stop.is_set() or payload is None or parsed is None:
            query.reply_err(_REFUSED + (b" stopping" if self._stop.is_set()
                                        else b" not a hand-over"))
            return
        _, epoch, number, _, host = parsed
        with c.lock:
            # zenoh may bring one query twice (a link cut and restored, two routes): a
            # hand-over id seen before is acknowledged again, never sent in twice
            seen = c.seen.setdefault((host, epoch), _Seen())
            if number in seen.ids:
                c.duplicates += 1
                query.reply(query.key_expr, b"ack")
                return
            if not c.receiving:
                query.reply_err(_REFUSED + b" no receiver")
                return
            try:
                c.channel.send_nowait(payload.to_bytes())
            except (ChannelFull, MapshareError) as exc:
                query.reply_err(_REFUSED + b" " + str(exc).encode())
                return
            seen.add(number)
            c.messages_in += 1
        query.reply(query.key_expr, b"ack")

    def _forward_channel(self, c: _ChannelMap) -> None:
        """Take messages from the local channel while it has no receiver of its own
        and a remote receiving host is known; hand each to one host."""
        held: Optional[bytes] = None
        while not self._stop.is_set():
            if held is None:
                if c.receiving or not c.remotes:
                    self._stop.wait(_POLL / 2)
                    continue
                # A receive call -- even one that times out -- makes this process count
                # among the channel's receivers: say so first, or this host would take
                # itself for a receiving host and never forward again.
                c.took = True
                c.waiting = True
                try:
                    held = c.channel.receive(timeout=_POLL)
                except (WaitTimeout, ChannelEmpty):
                    continue
                except MapshareError:  # closed for sending and drained
                    self._stop.wait(_POLL)
                    continue
                finally:
                    c.waiting = False
                if c.receiving:
                    # this host got a receiver while the bridge was in that receive (the
                    # message may even be one a remote host just handed in): it is theirs
                    try:
                        c.channel.send_nowait(held)
                        held = None
                        continue
                    except MapshareError:  # full: hand it over after all (still once)
                        pass
            if self._hand_over(c, held):
                held = None
            else:
                self._stop.wait(_POLL / 2)  # nobody took it: try again shortly
        if held is not None:  # taken but not delivered: give it back
            try:
                c.channel.send_nowait(held)
                c.returned += 1
            except MapshareError:
                c.lost += 1

    def _hand_over(self, c: _ChannelMap, data: bytes) -> bool:
        """Offer ``data`` to the known receiving hosts in turn: True once one host took
        it (acknowledged) or may have taken it (no answer: unacknowledged)."""
        with c.lock:
            hosts = sorted(c.remotes)
        if not hosts:
            return False
        for i in range(len(hosts)):
            host = hosts[(c.rr + i) % len(hosts)]
            replies = self._session.get(f"{c.key}/rx/{host}", payload=data,
                                        attachment=_pack(_KIND_MESSAGE, c.epoch, c.next,
                                                         0, self._host_bytes),
                                        timeout=self._ack_timeout)
            refused = False
            for reply in replies:
                if reply.ok is not None:
                    c.rr = (c.rr + i + 1) % len(hosts)
                    c.messages_out += 1
                    c.next += 1
                    return True
                err = reply.err
                if err is not None and err.payload.to_bytes().startswith(_REFUSED):
                    refused = True
                # anything else -- zenoh's own "Timeout" error reply, a transport error --
                # says nothing about whether the message arrived
            if refused:  # certainly not taken there: offer it to the next host
                c.refused += 1
                continue
            # No answer, or no acknowledgement in time: it may have arrived.  At most
            # once means it is never offered again.
            c.rr = (c.rr + i + 1) % len(hosts)
            c.unacknowledged += 1
            c.next += 1
            return True
        return False

    # -- statistics --------------------------------------------------------------------

    def statistics(self) -> BridgeStatistics:
        """The bridge's counters now."""
        peers: tuple[str, ...] = ()
        zid = ""
        if self._session is not None and not self._closed:
            try:
                info = self._session.info
                zid = str(info.zid())
                peers = tuple(str(z) for z in (*info.peers_zid(), *info.routers_zid()))
            except Exception:  # the session is closing: no peers to report
                pass
        topics = []
        for t in self._topics:
            with t.lock:
                remotes = tuple(
                    RemoteHostStatistics(h, r.epoch, r.next, r.messages_in, r.lost,
                                         r.duplicates, r.too_large)
                    for h, r in sorted(t.remotes.items())
                )
            topics.append(TopicMappingStatistics(
                name=t.name, key=t.key, messages_out=t.messages_out,
                messages_in=sum(r.messages_in for r in remotes),
                lost=sum(r.lost for r in remotes),
                duplicates=sum(r.duplicates for r in remotes),
                dropped=t.dropped, skipped=t.skipped, matched=t.matched,
                remote_hosts=remotes,
            ))
        channels = []
        for c in self._channels:
            with c.lock:
                hosts = tuple(sorted(c.remotes))
            channels.append(ChannelMappingStatistics(
                name=c.name, key=c.key, messages_out=c.messages_out,
                messages_in=c.messages_in, unacknowledged=c.unacknowledged,
                refused=c.refused, returned=c.returned, lost=c.lost,
                duplicates=c.duplicates,
                receiving=c.receiving, remote_hosts=hosts,
            ))
        return BridgeStatistics(
            host=self.host_id, pid=os.getpid(), zid=zid, running=self.running,
            updated=time.time(), peers=peers, remote_hosts=tuple(sorted(self._seen)),
            topics=tuple(topics), channels=tuple(channels),
        )

    def _write_stats(self) -> BridgeStatistics:
        stats = self.statistics()
        if self._stats is not None and not self._stats.closed:
            data = json.dumps(stats.to_json(), separators=(",", ":")).encode()
            if len(data) <= _STATS_MAX:
                self._stats.set(data)
        if self._on_stats is not None:
            self._on_stats(stats)
        return stats

    def _housekeeping(self) -> None:
        """Every ``stats_interval``: statistics and cursors; every poll: whether each
        channel's host is a receiving host."""
        next_stats = time.monotonic()
        while not self._stop.is_set():
            for c in self._channels:
                try:
                    self._update_receiving(c)
                except Exception as exc:  # keep the bridge alive; say what failed
                    print(f"mapshare bridge: channel {c.name!r}: {exc}", file=sys.stderr)
            if time.monotonic() >= next_stats:
                self._write_stats()
                self._save_cursors()
                next_stats = time.monotonic() + self.stats_interval
            self._stop.wait(_POLL / 2)
