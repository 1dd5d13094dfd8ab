"""The transports compared by ``benchmarks/compare.py``, behind one interface.

Each transport is a small ``Transport`` subclass (see ``_harness.py``): ``setup`` runs in the
parent and creates whatever must exist before the two benchmark processes start (and a
``teardown`` that removes it again, even on failure); ``endpoint`` runs inside each spawned
child and returns the ``send``/``recv`` callables the measurement loops call. Third-party
modules are imported lazily, inside ``endpoint``/``unavailable``, so a missing optional
package only skips its row.

Rows (CLI key -> what is measured):

* ``pipe``            multiprocessing.Pipe, ``send_bytes``/``recv_bytes``
* ``queue``           multiprocessing.Queue, ``put``/``get`` (pickles the bytes)
* ``shm``             an SPSC byte ring in one ``multiprocessing.shared_memory`` block;
                      posix_ipc semaphores for latency, multiprocessing semaphores for
                      throughput
* ``zmq``             pyzmq PAIR sockets over ``ipc://`` in a private temp directory
* ``faster_fifo``     faster-fifo ``Queue.put``/``get``
* ``iceoryx2_poll``   iceoryx2 0.10 publish-subscribe, receiver busy-polls ``receive()``
* ``iceoryx2_event``  iceoryx2 publish-subscribe + an event service; receiver blocks
* ``mapshare``        ``mapshare.Channel`` ``send``/``receive`` (bytes)
* ``mapshare_zc``     ``mapshare.Channel`` with ``receive_view()`` (zero-copy receive)

Not runnable by itself; run ``python benchmarks/compare.py --help``.
"""

from __future__ import annotations

import ctypes
import glob
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Callable
from typing import Any, ClassVar

from _harness import (
    NAME_PREFIX,
    Endpoint,
    Mode,
    Role,
    Transport,
    spawn_context,
    unique_name,
)

KiB = 1 << 10
MiB = 1 << 20


def ring_capacity(size: int) -> int:
    """Ring size used by the shared-memory rows: 2 MiB for small messages, >= 8 MiB for big."""
    return 2 * MiB if size <= 64 * KiB else max(8 * MiB, 8 * size)


def _is_first(role: Role) -> bool:
    """Server (latency) and sender (throughput) are the "first" role."""
    return role in ("server", "sender")


def _missing(module: str) -> str | None:
    try:
        __import__(module)
    except Exception as exc:
        return f"import {module} failed: {type(exc).__name__}: {exc}"
    return None


# --------------------------------------------------------------------------- stdlib


class PipeTransport(Transport):
    key = "pipe"
    label = "multiprocessing.Pipe (send_bytes/recv_bytes)"
    rate_hint: ClassVar[dict[int, float]] = {64: 473e3, 4 * KiB: 305e3, MiB: 425}

    def setup(self, mode: Mode, size: int) -> tuple[Any, Callable[[], None]]:
        ctx = spawn_context()
        a, b = ctx.Pipe(duplex=True) if mode == "latency" else ctx.Pipe(duplex=False)[::-1]

        def teardown() -> None:
            a.close()
            b.close()

        return (a, b), teardown

    def endpoint(self, state: Any, role: Role, mode: Mode, size: int) -> Endpoint:
        conn = state[0] if _is_first(role) else state[1]
        return Endpoint(send=conn.send_bytes, recv=conn.recv_bytes, close=conn.close)


class QueueTransport(Transport):
    key = "queue"
    label = "multiprocessing.Queue"
    rate_hint: ClassVar[dict[int, float]] = {64: 170e3, 4 * KiB: 108e3, MiB: 343}

    def setup(self, mode: Mode, size: int) -> tuple[Any, Callable[[], None]]:
        ctx = spawn_context()
        queues = [ctx.Queue() for _ in range(2 if mode == "latency" else 1)]

        def teardown() -> None:
            for q in queues:
                q.close()

        return queues, teardown

    def endpoint(self, state: Any, role: Role, mode: Mode, size: int) -> Endpoint:
        fwd, back = (state[0], state[1]) if mode == "latency" else (state[0], state[0])
        out, inp = (back, fwd) if role == "server" else (fwd, back)

        def close() -> None:
            for q in state:
                q.close()

        return Endpoint(send=out.put, recv=inp.get, close=close)


# --------------------------------------------------------------------------- shm ring

_HDR = 128  # ring header: head counter at +0, tail counter at +64 (separate cache lines)
_TAIL = 64
_WRAP = 0xFFFF_FFFF_FFFF_FFFF  # record length meaning "skip to the start of the ring"
_U64 = struct.Struct("<Q")


def ring_bytes(cap: int) -> int:
    """Bytes one ring of data capacity ``cap`` occupies in the segment."""
    return _HDR + cap


def ring_writer(
    buf: memoryview, base: int, cap: int, items: Any, space: Any
) -> Callable[[bytes], None]:
    """The producer side of an SPSC byte ring at ``buf[base:]``.

    Records are ``u64 length`` + data, padded to 8 bytes, never split across the end (a
    ``_WRAP`` record skips the tail end). ``items`` is released once per message; ``space``
    is acquired (and the free space re-checked) only while the ring is too full.
    """
    pack, unpack = _U64.pack_into, _U64.unpack_from
    data0, tail_at = base + _HDR, base + _TAIL
    head = 0

    def send(data: bytes) -> None:
        nonlocal head
        n = len(data)
        rec = 8 + ((n + 7) & ~7)
        if rec > cap:
            raise ValueError(f"message of {n} bytes does not fit a ring of {cap}")
        pos = head % cap
        room = cap - pos
        need = rec if rec <= room else room + rec
        while cap - (head - unpack(buf, tail_at)[0]) < need:
            space.acquire()
        if rec > room:
            pack(buf, data0 + pos, _WRAP)
            head += room
            pos = 0
        off = data0 + pos
        pack(buf, off, n)
        buf[off + 8 : off + 8 + n] = data
        head += rec
        pack(buf, base, head)
        items.release()

    return send


def ring_reader(
    buf: memoryview, base: int, cap: int, items: Any, space: Any
) -> Callable[[], bytes]:
    """The consumer side of the ring made by ``ring_writer``; returns a new ``bytes``."""
    pack, unpack = _U64.pack_into, _U64.unpack_from
    data0, tail_at = base + _HDR, base + _TAIL
    tail = 0

    def recv() -> bytes:
        nonlocal tail
        items.acquire()
        pos = tail % cap
        off = data0 + pos
        n = unpack(buf, off)[0]
        if n == _WRAP:
            tail += cap - pos
            off = data0
            n = unpack(buf, off)[0]
        data = buf[off + 8 : off + 8 + n].tobytes()
        tail += 8 + ((n + 7) & ~7)
        pack(buf, tail_at, tail)
        space.release()
        return data

    return recv


class ShmRingTransport(Transport):
    key = "shm"
    label = "shared_memory ring + semaphores"
    rate_hint: ClassVar[dict[int, float]] = {64: 1.01e6, 4 * KiB: 938e3, MiB: 35.6e3}

    def unavailable(self) -> str | None:
        return _missing("posix_ipc")  # needed for the latency half

    def setup(self, mode: Mode, size: int) -> tuple[Any, Callable[[], None]]:
        from multiprocessing import shared_memory

        import posix_ipc

        nrings = 2 if mode == "latency" else 1
        cap = 64 * KiB + 8 * size if mode == "latency" else ring_capacity(size)
        shm = shared_memory.SharedMemory(
            unique_name("shm"), create=True, size=nrings * ring_bytes(cap)
        )
        sems: list[Any] = []
        try:
            if mode == "latency":
                # items/space per direction, as named POSIX semaphores
                sems = [
                    posix_ipc.Semaphore("/" + unique_name("sem"), posix_ipc.O_CREX, initial_value=0)
                    for _ in range(2 * nrings)
                ]
                sem_state: list[Any] = [s.name for s in sems]
            else:
                ctx = spawn_context()
                sem_state = [ctx.Semaphore(0), ctx.Semaphore(0)]
        except BaseException:
            shm.close()
            shm.unlink()
            for s in sems:
                s.unlink()
            raise

        def teardown() -> None:
            for s in sems:
                s.unlink()
                s.close()
            shm.close()
            shm.unlink()

        return (shm.name, cap, sem_state), teardown

    def endpoint(self, state: Any, role: Role, mode: Mode, size: int) -> Endpoint:
        from multiprocessing import shared_memory

        name, cap, sem_state = state
        shm = shared_memory.SharedMemory(name)
        buf = shm.buf
        assert buf is not None
        opened: list[Any] = []
        if mode == "latency":
            import posix_ipc

            opened = [posix_ipc.Semaphore(n) for n in sem_state]
            sems = opened
        else:
            sems = sem_state
        rb = ring_bytes(cap)
        # ring 0 carries server<-client (or the only stream), ring 1 server->client
        if mode == "throughput":
            ring_in = ring_out = (0, sems[0], sems[1])
        else:
            to_server, to_client = (0, sems[0], sems[1]), (rb, sems[2], sems[3])
            ring_out, ring_in = (
                (to_client, to_server) if role == "server" else (to_server, to_client)
            )
        send = ring_writer(buf, ring_out[0], cap, ring_out[1], ring_out[2])
        recv = ring_reader(buf, ring_in[0], cap, ring_in[1], ring_in[2])

        def close() -> None:
            for s in opened:
                s.close()
            try:
                shm.close()
            except BufferError:  # a view is still alive; the process exits soon anyway
                pass

        del buf
        return Endpoint(send=send, recv=recv, close=close)


# --------------------------------------------------------------------------- pyzmq


class ZmqTransport(Transport):
    key = "zmq"
    label = "pyzmq PAIR ipc://"
    rate_hint: ClassVar[dict[int, float]] = {64: 1.43e6, 4 * KiB: 194e3, MiB: 2.4e3}

    def unavailable(self) -> str | None:
        return _missing("zmq")

    def setup(self, mode: Mode, size: int) -> tuple[Any, Callable[[], None]]:
        d = tempfile.mkdtemp(prefix=f"{NAME_PREFIX}-zmq-")
        return f"ipc://{d}/pair", lambda: shutil.rmtree(d, ignore_errors=True)

    def endpoint(self, state: Any, role: Role, mode: Mode, size: int) -> Endpoint:
        import zmq

        ctx = zmq.Context()
        sock = ctx.socket(zmq.PAIR)
        if role in ("server", "receiver"):
            sock.bind(state)
        else:
            sock.connect(state)

        def close() -> None:
            sock.close(linger=0)
            ctx.term()

        return Endpoint(send=sock.send, recv=sock.recv, close=close)


# --------------------------------------------------------------------------- faster-fifo


class FasterFifoTransport(Transport):
    key = "faster_fifo"
    label = "faster-fifo"
    rate_hint: ClassVar[dict[int, float]] = {64: 173e3, 4 * KiB: 198e3, MiB: 4.4e3}

    def unavailable(self) -> str | None:
        return _missing("faster_fifo")

    def setup(self, mode: Mode, size: int) -> tuple[Any, Callable[[], None]]:
        import faster_fifo

        cap = max(1_000_000, 8 * size)
        queues = [
            faster_fifo.Queue(max_size_bytes=cap) for _ in range(2 if mode == "latency" else 1)
        ]

        def teardown() -> None:
            for q in queues:
                q.close()

        return queues, teardown

    def endpoint(self, state: Any, role: Role, mode: Mode, size: int) -> Endpoint:
        fwd, back = (state[0], state[1]) if mode == "latency" else (state[0], state[0])
        out, inp = (back, fwd) if role == "server" else (fwd, back)
        return Endpoint(send=out.put, recv=inp.get)


# --------------------------------------------------------------------------- iceoryx2


class Iceoryx2Transport(Transport):
    """iceoryx2 0.10 publish-subscribe with ``Slice[c_uint8]`` payloads.

    The sender loans a slice of exactly the message length, ``memmove``s the bytes in and
    sends; the receiver copies the payload out with ``ctypes.string_at`` (one copy into a new
    ``bytes``). ``RetryUntilDelivered`` back-pressure with safe overflow disabled, so no
    message is dropped. With ``event=True`` every send is followed by ``Notifier.notify()``
    and the receiver sleeps in ``Listener.blocking_wait()`` whenever the subscriber is empty;
    otherwise it spins on ``Subscriber.receive()``.

    All iceoryx2 files go under a private root directory with a unique file prefix, both
    removed in ``teardown`` (iceoryx2 otherwise leaves ``/dev/shm/iox2_*global_mgmt`` and
    ``/tmp/iceoryx2/`` behind).
    """

    rate_hint: ClassVar[dict[int, float]] = {64: 430e3, 4 * KiB: 307e3, MiB: 33.7e3}

    def __init__(self, event: bool) -> None:
        self.event = event
        self.key = "iceoryx2_event" if event else "iceoryx2_poll"
        self.label = (
            "iceoryx2 publish-subscribe + event (blocking)"
            if event
            else "iceoryx2 publish-subscribe, receiver busy-polls"
        )

    def unavailable(self) -> str | None:
        return _missing("iceoryx2")

    def setup(self, mode: Mode, size: int) -> tuple[Any, Callable[[], None]]:
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

    def endpoint(self, state: Any, role: Role, mode: Mode, size: int) -> Endpoint:
        import iceoryx2 as iox2

        iox2.set_log_level(iox2.LogLevel.Error)
        root, prefix, service = state
        cfg = iox2.config.default()
        cfg.global_cfg.root_path = iox2.Path.new(root + "/")
        cfg.global_cfg.prefix = iox2.FileName.new(prefix)
        node = iox2.NodeBuilder.new().config(cfg).create(iox2.ServiceType.Ipc)
        buffer = 4 if mode == "latency" else (8 if size >= 256 * KiB else 256)
        ports: list[Any] = []

        def retry(make: Callable[[], Any]) -> Any:
            # both children open_or_create the same service at once; a loser may see
            # "is being created" and just has to try again
            for _ in range(200):
                try:
                    return make()
                except Exception:
                    time.sleep(0.01)
            return make()

        def pubsub(name: str) -> Any:
            return retry(
                lambda: (
                    node.service_builder(iox2.ServiceName.new(name))
                    .publish_subscribe(iox2.Slice[ctypes.c_uint8])
                    .enable_safe_overflow(False)
                    .subscriber_max_buffer_size(buffer)
                    .max_publishers(1)
                    .max_subscribers(1)
                    .open_or_create()
                )
            )

        def event(name: str) -> Any:
            return retry(
                lambda: node.service_builder(iox2.ServiceName.new(name)).event().open_or_create()
            )

        def make_send(name: str) -> Callable[[bytes], None]:
            pub = (
                pubsub(name)
                .publisher_builder()
                .initial_max_slice_len(size)
                .allocation_strategy(iox2.AllocationStrategy.Static)
                .backpressure_strategy(iox2.BackpressureStrategy.RetryUntilDelivered)
                .create()
            )
            ports.append(pub)
            loan, memmove, update = pub.loan_slice_uninit, ctypes.memmove, pub.update_connections

            # send() returns how many subscribers got the sample. Right after start-up it can
            # be 0 even though the subscriber exists (seen unpinned, ~1 run in 10): the
            # sample is then lost, so refresh the connections and send it again.
            def send(data: bytes) -> None:
                n = len(data)
                while True:
                    sample = loan(n)
                    memmove(sample.payload_ptr, data, n)
                    if sample.assume_init().send():
                        return
                    update()

            if not self.event:
                return send
            notifier = event(name).notifier_builder().create()
            ports.append(notifier)
            notify = notifier.notify

            def send_notify(data: bytes) -> None:
                send(data)
                notify()

            return send_notify

        def make_recv(name: str) -> Callable[[], bytes]:
            sub = pubsub(name).subscriber_builder().buffer_size(buffer).create()
            ports.append(sub)
            receive, string_at = sub.receive, ctypes.string_at
            if not self.event:

                def recv() -> bytes:
                    sample = receive()
                    while sample is None:
                        sample = receive()
                    data = string_at(sample.payload_ptr, sample.header.number_of_elements)
                    sample.delete()
                    return data

                return recv
            listener = event(name).listener_builder().create()
            ports.append(listener)
            # Not blocking_wait(): right after start-up the subscriber can miss samples that
            # are already queued (its connection to the publisher is set up lazily), go back
            # to sleep, and once its buffer is full the publisher stops sending and notifying:
            # both sleep forever (seen ~1 cell in 20 under load). A timed wait re-polls after
            # 10 ms; in steady state it always returns on a notification well before that.
            wait, tick = listener.timed_wait, iox2.Duration.from_millis(10)

            def recv_wait() -> bytes:
                sample = receive()
                while sample is None:
                    wait(tick)
                    sample = receive()
                data = string_at(sample.payload_ptr, sample.header.number_of_elements)
                sample.delete()
                return data

            return recv_wait

        if mode == "throughput":
            # each role creates only its own port (publisher or subscriber)
            send = make_send(service) if role == "sender" else None
            recv = make_recv(service) if role == "receiver" else None
        else:
            ping, pong = f"{service}/ping", f"{service}/pong"
            if role == "server":
                recv, send = make_recv(ping), make_send(pong)
            else:
                send, recv = make_send(ping), make_recv(pong)

        def started() -> None:
            for p in ports:
                if hasattr(p, "update_connections"):
                    p.update_connections()

        def close() -> None:
            nonlocal node
            for p in reversed(ports):
                p.delete()
            ports.clear()
            node = None

        def no_send(data: bytes) -> None:
            raise RuntimeError("the receiver does not send")

        def no_recv() -> bytes:
            raise RuntimeError("the sender does not receive")

        return Endpoint(
            send=send or no_send,
            recv=recv or no_recv,
            started=started,
            close=close,
        )


# --------------------------------------------------------------------------- mapshare


class MapshareTransport(Transport):
    """``mapshare.Channel``: the creator is the parent, the two children ``open`` by name.

    ``zero_copy=False``: the receiver calls ``receive()`` and gets a ``bytes``.
    ``zero_copy=True``: the receiver uses ``with ch.receive_view() as v`` and only reads
    ``len(v)`` and one byte (the echo server sends the view straight back).
    """

    rate_hint: ClassVar[dict[int, float]] = {64: 1.5e6, 4 * KiB: 1.0e6, MiB: 30e3}

    def __init__(self, zero_copy: bool, spin: float | None = None) -> None:
        self.zero_copy = zero_copy
        self.spin = spin
        self.key = "mapshare_zc" if zero_copy else "mapshare"
        self.label = "mapshare Channel zero-copy" if zero_copy else "mapshare Channel"

    def _kwargs(self) -> dict[str, Any]:
        return {} if self.spin is None else {"spin": self.spin}

    def unavailable(self) -> str | None:
        reason = _missing("mapshare")
        if reason:
            return reason
        import mapshare

        channel = getattr(mapshare, "Channel", None)
        if channel is None:
            return "mapshare has no Channel yet"
        needed = ["create", "open"] + (["receive_view"] if self.zero_copy else [])
        missing = [m for m in needed if not hasattr(channel, m)]
        return f"mapshare.Channel lacks {', '.join(missing)}" if missing else None

    def setup(self, mode: Mode, size: int) -> tuple[Any, Callable[[], None]]:
        import mapshare

        cap = 64 * KiB + 8 * size if mode == "latency" else ring_capacity(size)
        # short enough (<= 20 chars) that mapshare uses it directly as /dev/shm/mapshare.<name>,
        # which keeps the leak check able to see it
        names = [
            f"bench-{os.getpid()}-{os.urandom(3).hex()}"
            for _ in range(2 if mode == "latency" else 1)
        ]
        chans: list[Any] = []

        def teardown() -> None:
            errors: list[BaseException] = []
            for ch in chans:
                for step in (ch.unlink, ch.close):
                    try:
                        step()
                    except BaseException as exc:
                        errors.append(exc)
            if errors:
                raise errors[0]

        try:
            for n in names:
                chans.append(mapshare.Channel.create(n, cap, **self._kwargs()))
        except BaseException:
            teardown()
            raise
        return names, teardown

    def endpoint(self, state: Any, role: Role, mode: Mode, size: int) -> Endpoint:
        import mapshare

        chans = [mapshare.Channel.open(n, **self._kwargs()) for n in state]
        to_server, to_client = (chans[0], chans[1]) if mode == "latency" else (chans[0], chans[0])
        out, inp = (to_client, to_server) if role == "server" else (to_server, to_client)
        recv: Callable[[], object] = inp.receive
        echo_one: Callable[[], object] | None = None
        if self.zero_copy:
            view, send_out = inp.receive_view, out.send

            def recv_view() -> int:
                with view() as v:
                    touched = len(v) + v[0]  # the length and one byte, no copy
                return touched

            def echo_view() -> None:
                with view() as v:
                    send_out(v)

            recv, echo_one = recv_view, echo_view

        def close() -> None:
            for ch in chans:
                ch.close()

        return Endpoint(send=out.send, recv=recv, echo_one=echo_one, close=close)


def all_transports(mapshare_spin: float | None = None) -> list[Transport]:
    """Every row, in table order (mapshare first)."""
    return [
        MapshareTransport(zero_copy=False, spin=mapshare_spin),
        MapshareTransport(zero_copy=True, spin=mapshare_spin),
        PipeTransport(),
        QueueTransport(),
        ShmRingTransport(),
        ZmqTransport(),
        FasterFifoTransport(),
        Iceoryx2Transport(event=False),
        Iceoryx2Transport(event=True),
    ]
