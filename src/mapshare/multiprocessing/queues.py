"""``Queue``, ``JoinableQueue`` and ``SimpleQueue`` with the signatures, semantics and
exceptions of ``multiprocessing.queues``, on a mapshare ``Channel``.

* Objects are pickled with the standard pickler (``multiprocessing.reduction
  .ForkingPickler``, what the standard queues use), one channel message per object.
* A message too big for the ring goes into a temporary segment of its own
  (``lifetime="shared"``) whose name is sent instead; the receiver copies it out, marks
  it taken and removes it.  Never an error the standard queue would not raise.
* ``put`` writes straight into the ring; when the ring is full and the queue has no
  ``maxsize``, the object waits in a local buffer that a feeder thread writes out (the
  standard queue's design: its ``put`` never blocks then), so ``join_thread()``,
  ``cancel_join_thread()`` and the flush at exit mean what they mean there.
* ``maxsize`` counts objects, with a mapshare semaphore.
"""

from __future__ import annotations

import atexit
import collections
import copyreg
import io
import os
import pickle
import queue
import threading
import time
import traceback
import weakref
from multiprocessing import connection as _mp_connection
from multiprocessing import util as _mp_util
from multiprocessing.reduction import ForkingPickler
from typing import Any, Optional, cast

from .. import _core, _sync
from .._channel import Channel
from .._errors import (
    BrokenChannelError,
    ChannelEmpty,
    ChannelFull,
    SegmentNotFoundError,
    WaitTimeout,
)
from .._segment import Segment
from ._util import close_at_child_exit, keep_for_child, new_name
from .synchronize import SEM_VALUE_MAX, Condition, Lock, Semaphore

__all__ = ["CAPACITY", "JoinableQueue", "Queue", "SimpleQueue"]

CAPACITY = 512 * 1024
"""Bytes of ring each queue gets."""

_SPILL = b"S"  # a spilled message: b"S" + the segment's name (a pickle starts with 0x80)
_SPILL_BYTE = _SPILL[0]
_TAKEN = 1  # byte 0 of a spill segment once its receiver has copied the data out


class _Pickler(pickle.Pickler):
    """The standard pickler with ``ForkingPickler``'s reducers (a live view: types
    registered later count too), as the standard queues pickle."""

    dispatch_table: Any = collections.ChainMap(
        ForkingPickler._extra_reducers,  # type: ignore[attr-defined]
        cast(Any, copyreg.dispatch_table),
    )


_local = threading.local()


def _dumps(obj: object) -> bytes:
    """``ForkingPickler.dumps(obj)``, with one pickler per thread kept between calls
    (making a pickler costs more than pickling a small object)."""
    data = _dumps_plain(obj, _PROTOCOL, _REDUCERS)
    if data is not None:
        return data
    state = getattr(_local, "pickler", None)
    if state is None:
        buf = io.BytesIO()
        state = (buf, _Pickler(buf, _PROTOCOL))
    buf, pickler = state
    _local.pickler = None  # a reducer that pickles for a queue meanwhile gets its own
    pickler.dump(obj)  # on an error the pickler is dropped, never reused half-way
    data = buf.getvalue()
    buf.seek(0)
    buf.truncate()
    pickler.clear_memo()
    _local.pickler = state
    return data


_PROTOCOL = pickle.DEFAULT_PROTOCOL  # what ForkingPickler.dumps uses
# The ForkingPickler's own reducers (a registration there is seen at once): an object
# with none of their types, made of builtin scalars and containers only, pickles the
# same with pickle.dumps -- which _dumps_plain calls from C in one go.
_REDUCERS: dict[type, Any] = ForkingPickler._extra_reducers  # type: ignore[attr-defined]
_dumps_plain = _core._dumps_plain
# The reverse: a scalar's pickle read in C without an unpickler, anything else by
# ForkingPickler.loads (looked up per call: a program may replace it).
_loads_plain = _core._loads_plain


def _timeout(block: bool, timeout: Optional[float]) -> Optional[float]:
    if not block:
        return 0.0
    if timeout is None:
        return None
    return max(0.0, float(timeout))


class _Feeder:
    """The sending side of one queue handle in this process: the local buffer, its
    thread, and the spill segments not yet taken.  Holds no reference to the queue
    object, so a dropped queue is finalized (and its feeder told to finish)."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.buffer: collections.deque[Any] = collections.deque()
        self.cond = threading.Condition(threading.Lock())
        self.thread: Optional[threading.Thread] = None
        self.closed = False
        self.cancelled = False
        self.spills: list[Segment] = []
        # A forked child has a copy of this object whose lock another thread of the
        # parent may have held at the fork: the child never touches it (pid check).
        self.pid = os.getpid()
        # an object's pickle above this goes into a segment of its own (a quarter of
        # the ring: one big message never fills the ring for everyone)
        self.limit = int(channel.max_message) // 4
        _feeders.add(self)

    def send(self, data: Any) -> None:
        if len(data) > self.limit:
            data = self.spill(data)
        with self.cond:
            if not self.buffer:
                try:
                    self.channel.send_nowait(data)
                    return
                except ChannelFull:
                    pass
            self.buffer.append(data)
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self.feed, name="mapshare-queue-feeder", daemon=True
                )
                self.thread.start()
            self.cond.notify()

    def spill(self, data: Any) -> bytes:
        """Put ``data`` in a segment of its own; the message names it.  This handle
        keeps the segment until the receiver has taken it (so the data outlives a
        sender that exits first: join_thread() waits for that, as the standard queue
        waits for its pipe to take the data)."""
        self.reap()
        seg = Segment.create(new_name("x"), 8 + len(data), lifetime="shared")
        seg.buf[8 : 8 + len(data)] = data
        self.spills.append(seg)
        return _SPILL + seg.name.encode()

    def reap(self) -> None:
        """Close the spill segments their receivers have taken."""
        keep = []
        for seg in self.spills:
            if seg.closed or seg.buf[0] == _TAKEN:
                seg.close()
            else:
                keep.append(seg)
        self.spills = keep

    def feed(self) -> None:
        while True:
            with self.cond:
                while not self.buffer and not self.closed:
                    self.cond.wait()
                if not self.buffer:
                    return
                data = self.buffer[0]
            try:
                # in slices: a closed queue stops waiting for room when cancelled, or
                # when no process is left that could make room (the standard feeder
                # gets EPIPE once every reader end is closed, and ends)
                while not self.channel._wait_writable(len(data), 0.1):
                    if self.closed and (self.cancelled or self.unread()):
                        return
                self.channel.send(data)
            except Exception as e:  # the standard feeder reports and goes on
                if not self.cancelled:
                    traceback.print_exception(type(e), e, e.__traceback__)
            with self.cond:
                self.buffer.popleft()
                self.cond.notify_all()

    def unread(self) -> bool:
        """True when no process but this one can ever receive from the channel: none
        other alive is attached to it, and this process has no child alive (a spawned
        child may not have attached yet).  What is still buffered then can never be
        read, and waiting for room would hang this process's exit."""
        try:
            attached = self.channel.segment._core.header()["attached"]
        except Exception:
            return True  # the channel is closed in this process: nothing to wait for
        me = os.getpid()
        if any(p["pid"] != me and p["alive"] != 0 for p in attached):
            return False
        import multiprocessing.process as _mp_process

        for child in list(_mp_process._children):  # type: ignore[attr-defined]
            try:
                if child._popen is not None and child._popen.poll() is None:
                    return False
            except Exception:
                return False
        return True

    def close(self) -> None:
        if self.pid != os.getpid():
            return
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def join(self) -> None:
        """Wait until the buffer is in the ring and every spill taken (not when
        cancelled: then unsent data is dropped, as with the standard queue)."""
        if self.cancelled or self.pid != os.getpid():
            return
        t = self.thread
        if t is not None and t is not threading.current_thread():
            t.join()
        polls = 0
        while not self.cancelled:
            self.reap()
            if not self.spills:
                break
            polls += 1
            if polls % 20 == 0 and self.unread():
                break  # no process left to take them: they go when this one closes
            time.sleep(0.005)


_feeders: weakref.WeakSet[_Feeder] = weakref.WeakSet()


def _flush_all() -> None:
    """At exit (main process: atexit, registered after mapshare's own exit hook so it
    runs first; a multiprocessing child: a finalizer above the handles' one): send
    what is buffered, as the standard queue's feeder does before the process ends; then
    wait (bounded) until a reader that waits on ``_reader.fileno()`` can see it."""
    for f in list(_feeders):
        try:
            f.close()
            f.join()
        except Exception:
            pass
    deadline = time.monotonic() + _SEEN_WAIT
    for link in list(_sent_links):
        try:
            link.wait_seen(deadline)
        except Exception:
            pass


atexit.register(_flush_all)


def _register_child_flush() -> None:
    _mp_util.Finalize(None, _flush_all, exitpriority=1)


# The longest a process's exit waits for fd watchers to flag what it sent (their thread
# is late only when the machine is loaded; a watcher that is stopped or stuck costs this).
_SEEN_WAIT = 2.0


def _seen_name(channel: Channel) -> str:
    """The name of a channel's seen counter: 8 bytes, the channel's ``sent_messages``
    count at the last time a ``_Watch`` of a reader had made its pipe readable (or knew
    it still was).  It exists while a reader process waits on ``_reader.fileno()``."""
    return channel.name + "w"


class _Link:
    """A queue's channel handle and feeder in this process: what the queue object and
    its ``_reader``/``_writer`` share (they point here, not at each other, so a dropped
    queue is freed at once by reference counting, with no cycle to wait for)."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.feeder = _Feeder(channel)
        self.generation = -1  # the _forks count this link last sent in

    def __del__(self) -> None:
        # The queue and its _reader/_writer are gone in this process: its feeder ends
        # once it has sent what it holds (or at once, when no process is left that
        # could receive it), and lets go of the channel.  (A SimpleQueue dropped with
        # a full ring, as a terminated Pool drops its task queue, kept it for ever.)
        try:
            self.feeder.close()
        except Exception:
            pass

    def _forked(self) -> None:
        """The first send of this process through this link (after a fork too): a
        feeder of its own, and the flush at a multiprocessing child's exit."""
        self.generation = _forks[0]
        if self.feeder.pid != os.getpid():  # forked (os.fork: no after-forkers ran)
            self.feeder = _Feeder(self.channel)
        _sent_links.add(self)
        import multiprocessing

        if multiprocessing.parent_process() is not None:
            _register_child_flush()

    def send(self, obj: object) -> None:
        self.send_data(_dumps(obj))

    def send_data(self, data: Any) -> None:
        if self.generation != _forks[0]:
            self._forked()
        feeder = self.feeder
        # the fast path, one C call: nothing of ours buffered (so this thread's order
        # holds) and small enough for the ring
        if not feeder.buffer and len(data) <= feeder.limit:
            try:
                self.channel.send_nowait(data)
                return
            except ChannelFull:
                pass
        feeder.send(data)

    def wait_seen(self, deadline: float) -> None:
        """At exit, after the flush: wait until what this process sent is received, or a
        reader's fd watcher has flagged it (its seen counter has reached the count of
        messages sent by now), or ``deadline``.  Without it, a process that puts and
        exits at once could have its exit (its sentinel) seen before its message on
        ``_reader.fileno()`` -- the watcher is a thread of the *reading* process, and
        may run late -- which ``ProcessPoolExecutor`` takes for a crash
        (BrokenProcessPool).  The standard queue's pipe is readable when ``send``
        returns.  No wait at all when no reader watches by fd (no seen counter): a
        process that puts while nobody reads exits at once."""
        if self.generation != _forks[0]:  # not sent on in this process (a fork's copy)
            return
        try:
            seg = Segment.open(_seen_name(self.channel))
        except (SegmentNotFoundError, OSError):
            return
        try:
            seen = seg.buf[:8].cast("Q")
            try:
                stats = self.channel._statistics
                target = stats()["sent_messages"]
                while seen[0] < target and stats()["received_messages"] < target:
                    if time.monotonic() >= deadline:
                        break
                    time.sleep(0.002)
            finally:
                seen.release()
        finally:
            seg.close()

    def receive(self, t: Optional[float]) -> bytes:
        """One message's pickle (spill taken), waiting up to ``t`` (queue.Empty)."""
        channel = self.channel
        deadline = None if not t else time.monotonic() + t
        while True:
            try:
                if t == 0:
                    data = channel.receive_nowait()
                elif deadline is None:
                    data = channel.receive(None)
                else:
                    data = channel.receive(max(0.0, deadline - time.monotonic()))
            except (ChannelEmpty, WaitTimeout):
                raise queue.Empty from None
            except BrokenChannelError:
                # a sender died; what it had sent is still delivered, so go on
                continue
            if not data or data[0] != _SPILL_BYTE:
                return data
            out = self.unspill(data)
            if out is not None:
                return out

    def receive_blocking(self) -> bytes:
        """``receive(None)`` in one C call when nothing unusual happens."""
        try:
            data = self.channel.receive(None)
        except BrokenChannelError:
            return self.receive(None)
        if data and data[0] == _SPILL_BYTE:
            return self.unspill(data) or self.receive(None)
        return data

    @staticmethod
    def unspill(data: bytes) -> Optional[bytes]:
        """The object a spill message names (None: its sender was killed before anyone
        took it, and it went with that sender)."""
        try:
            seg = Segment.open(data[1:].decode())
        except SegmentNotFoundError:
            return None
        try:
            out = bytes(seg.buf[8:])
            seg.buf[0] = _TAKEN
            seg.unlink()
        finally:
            seg.close()
        return out


# Forks of this process so far, as this process sees it (bumped in a forked child).
_forks = [0]
# The links this process has sent on (their exit waits for fd watchers: _flush_all).
_sent_links: weakref.WeakSet[_Link] = weakref.WeakSet()


def _count_fork() -> None:
    _forks[0] += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_count_fork)


class _Base:
    """One channel handle; pickled by name."""

    _link: _Link
    _closed: bool
    _reader_closed: bool
    _opid: int

    def _open(self, channel: Channel) -> None:
        self._link = _Link(channel)
        self._closed = False
        self._opid = os.getpid()
        self._reader_closed = False
        self._rlock: Optional[Lock] = None
        self._wlock: Optional[Lock] = None
        _mp_util.register_after_fork(self, _Base._after_fork)

    def _after_fork(self) -> None:
        # the child starts with its own (empty) buffer, as the standard queue does
        self._link.feeder = _Feeder(self._link.channel)
        self._closed = False
        self._reader_closed = False

    @property
    def _channel(self) -> Channel:
        return self._link.channel

    @property
    def _feeder(self) -> _Feeder:
        return self._link.feeder

    @property
    def name(self) -> str:
        """The mapshare name of the channel under this queue."""
        return self._link.channel.name

    def _send(self, obj: object) -> None:
        self._link.send(obj)

    def _receive(self, t: Optional[float]) -> bytes:
        return self._link.receive(t)

    def _qsize(self) -> int:
        return int(self._channel.statistics().queued_messages) + len(self._feeder.buffer)

    def _empty(self) -> bool:
        return not self._channel._wait_readable(0)


class Queue(_Base):
    """``multiprocessing.Queue(maxsize=0)`` on a mapshare channel.

    ``put(obj, block=True, timeout=None)`` (queue.Full), ``get(block=True,
    timeout=None)`` (queue.Empty), ``put_nowait``, ``get_nowait``, ``qsize()``,
    ``empty()``, ``full()``, ``close()``, ``join_thread()``, ``cancel_join_thread()``.
    Objects are pickled with the standard pickler; unlike the standard queue, an object
    is in the queue when ``put`` returns (unless the ring is full and it waits in the
    feeder's buffer)."""

    def __init__(self, maxsize: int = 0, *, ctx: Any = None) -> None:
        self._maxsize = maxsize if maxsize > 0 else SEM_VALUE_MAX
        self._sem: Optional[_sync.Semaphore] = None
        channel = Channel.create(new_name("q"), CAPACITY, lifetime="shared")
        if maxsize > 0:
            self._sem = _sync.Semaphore.create(
                new_name("m"), maxsize, maximum=maxsize, lifetime="shared")
        self._open(channel)
        self._ignore_epipe = False
        _mp_util.Finalize(self, _Feeder.close, [self._feeder], exitpriority=10)

    def __reduce__(self) -> tuple[Any, ...]:
        keep_for_child(self)
        return (_reopen_queue, (type(self), self._state()))

    def _state(self) -> tuple[Any, ...]:
        return (self._channel.name, self._sem.name if self._sem else None, self._maxsize)

    def _setstate(self, state: tuple[Any, ...]) -> None:
        name, sem, self._maxsize = state[:3]
        self._sem = _sync.Semaphore.open(sem) if sem else None
        self._open(Channel.open(name))
        self._ignore_epipe = False
        _mp_util.Finalize(self, _Feeder.close, [self._feeder], exitpriority=10)

    def put(self, obj: object, block: bool = True, timeout: Optional[float] = None) -> None:
        """Put ``obj`` (pickled now); queue.Full if ``maxsize`` objects are queued and
        none left within ``timeout`` (or at once when ``block`` is false)."""
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")
        sem = self._sem
        if sem is not None and not sem.acquire(_timeout(block, timeout)):
            raise queue.Full
        # a small plain object in one C call; anything else by the reused pickler
        data = _dumps_plain(obj, _PROTOCOL, _REDUCERS)
        if data is None:
            try:
                data = _dumps(obj)
            except Exception as e:
                self._unpicklable(e, obj)
                return
        link = self._link
        feeder = link.feeder
        # the fast path inline (the same as _Link.send_data's): one C call
        if link.generation == _forks[0] and not feeder.buffer and len(data) <= feeder.limit:
            try:
                link.channel.send_nowait(data)
                return
            except ChannelFull:
                pass
        self._send_counted(data)

    def _unpicklable(self, e: Exception, obj: object) -> None:
        """An object that cannot be pickled goes to ``_on_queue_feeder_error`` and is
        dropped, its ``maxsize`` unit given back -- what the standard queue's feeder
        thread does (it pickles there, after put returned)."""
        if self._sem is not None:
            self._sem.release()
        self._on_queue_feeder_error(e, obj)

    def _send_counted(self, data: Any) -> None:
        try:
            self._link.send_data(data)
        except BaseException:
            if self._sem is not None:
                self._sem.release()
            raise

    def _put_counted(self, obj: object) -> bool:
        """Send ``obj`` (its ``maxsize`` unit taken); False if it could not be
        pickled (reported and dropped, see ``_unpicklable``)."""
        try:
            data = _dumps(obj)
        except Exception as e:
            self._unpicklable(e, obj)
            return False
        self._send_counted(data)
        return True

    @staticmethod
    def _on_queue_feeder_error(e: Exception, obj: object) -> None:
        """Called with an object that could not be pickled (for overriding, as in the
        standard queue; concurrent.futures does): prints the traceback."""
        traceback.print_exception(type(e), e, e.__traceback__)

    def get(self, block: bool = True, timeout: Optional[float] = None) -> Any:
        """Remove and return an object; queue.Empty if none came within ``timeout`` (or
        at once when ``block`` is false)."""
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")
        link = self._link
        if block and timeout is None:
            # _Link.receive_blocking inline (one Python frame less): one C call when
            # nothing unusual happens
            try:
                data = link.channel.receive(None)
            except BrokenChannelError:
                data = link.receive(None)
            else:
                if data and data[0] == _SPILL_BYTE:
                    data = link.unspill(data) or link.receive(None)
        else:
            data = link.receive(_timeout(block, timeout))
        if self._sem is not None:
            try:
                self._sem.release()
            except ValueError:
                pass  # a count lost to a receiver killed after taking: never above maxsize
        return _loads_plain(data, ForkingPickler.loads)

    def put_nowait(self, obj: object) -> None:
        """``put(obj, False)``."""
        return self.put(obj, False)

    def get_nowait(self) -> Any:
        """``get(False)``."""
        return self.get(False)

    def qsize(self) -> int:
        """Objects queued now (approximate when others put or get meanwhile)."""
        return self._qsize()

    def empty(self) -> bool:
        """True if nothing is queued now (approximate, as with the standard queue);
        OSError after ``close()`` of a queue this process has put to."""
        if self._reader_closed:
            raise OSError("handle is closed")
        return self._empty()

    def full(self) -> bool:
        """True if ``maxsize`` objects are queued now (never without a maxsize)."""
        return self._sem is not None and self._sem.value == 0

    def close(self) -> None:
        """No more ``put``/``get`` through this handle; the feeder sends what is
        buffered and ends.  Once this process has put to the queue, ``empty()`` then
        raises OSError, as the standard queue's does (its feeder closes this process's
        pipe ends); an unused queue's close() changes nothing else there either."""
        self._closed = True
        if self._link.generation == _forks[0]:  # this process has sent on it
            self._reader_closed = True
        self._feeder.close()

    def join_thread(self) -> None:
        """Wait until the objects this process put are in the queue (after
        ``close()``; AssertionError before)."""
        assert self._closed, f"Queue {self!r} not closed"
        self._feeder.join()

    def cancel_join_thread(self) -> None:
        """Do not wait at exit (or in ``join_thread``) for unsent objects: they may be
        lost."""
        self._feeder.cancelled = True

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._channel.name!r}>"


class JoinableQueue(Queue):
    """``multiprocessing.JoinableQueue``: a ``Queue`` with ``task_done()`` (ValueError
    when called more times than objects were put) and ``join()``."""

    def __init__(self, maxsize: int = 0, *, ctx: Any = None) -> None:
        super().__init__(maxsize)
        self._unfinished_tasks = Semaphore(0)
        self._cond = Condition()

    def _state(self) -> tuple[Any, ...]:
        return (*super()._state(), self._unfinished_tasks, self._cond)

    def _setstate(self, state: tuple[Any, ...]) -> None:
        super()._setstate(state)
        self._unfinished_tasks, self._cond = state[3:]

    def put(self, obj: object, block: bool = True, timeout: Optional[float] = None) -> None:
        """``Queue.put``, counting one more unfinished task."""
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")
        if self._sem is not None and not self._sem.acquire(_timeout(block, timeout)):
            raise queue.Full
        with self._cond:
            if self._put_counted(obj):
                self._unfinished_tasks.release()

    def task_done(self) -> None:
        """One object taken by ``get`` is processed."""
        with self._cond:
            if not self._unfinished_tasks.acquire(False):
                raise ValueError("task_done() called too many times")
            if self._unfinished_tasks.get_value() == 0:
                self._cond.notify_all()

    def join(self) -> None:
        """Wait until every object put has been marked done."""
        with self._cond:
            if self._unfinished_tasks.get_value() != 0:
                self._cond.wait()


def _reopen_queue(cls: type[Queue], state: tuple[Any, ...]) -> Queue:
    close_at_child_exit()
    self = cls.__new__(cls)
    self._setstate(state)
    return self


class _Reader:
    """``SimpleQueue._reader``, what ``multiprocessing.Pool`` and
    ``ProcessPoolExecutor`` use: ``recv()``, ``poll(timeout=0.0)``, ``close()``,
    ``closed`` and ``fileno()`` -- a pipe that is readable while the queue holds a
    message, for ``multiprocessing.connection.wait``."""

    def __init__(self, link: _Link) -> None:
        self._link = link
        self.closed = False
        self._watch: Optional[_Watch] = None

    def _check(self) -> None:
        if self.closed:
            raise OSError("handle is closed")

    def recv(self) -> Any:
        """Remove and return an object, waiting for one."""
        if self.closed:
            raise OSError("handle is closed")
        obj = _loads_plain(self._link.receive_blocking(), ForkingPickler.loads)
        if self._watch is not None:
            self._watch.settle()
        return obj

    def poll(self, timeout: Optional[float] = 0.0) -> bool:
        """Whether an object can be received, waiting up to ``timeout`` (None: no
        limit)."""
        self._check()
        t = None if timeout is None else max(0.0, float(timeout))
        ready = bool(self._link.channel._wait_readable(t))
        if not ready and self._watch is not None:
            self._watch.settle()
        return ready

    def fileno(self) -> int:
        """A file descriptor readable while the queue holds a message (started on the
        first call: a pipe and a thread that waits on the channel for it)."""
        self._check()
        if self._watch is None or self._watch.pid != os.getpid():
            self._watch = _Watch(self._link.channel)
            weakref.finalize(self, self._watch.stop)
        return self._watch.r.fileno()

    def close(self) -> None:
        """Close this end in this process (the queue lives on for the others)."""
        self.closed = True
        if self._watch is not None:
            self._watch.stop()


class _Watch:
    """The pipe behind ``_Reader.fileno()``: readable while the channel holds a message,
    level-triggered like the standard queue's pipe.  A thread waits on the channel
    (GIL released, in slices so that it ends soon after ``stop``) and sends one byte;
    a receive that finds the channel empty takes the byte back.  The pipe is a
    ``multiprocessing.connection.Pipe``, so ``fileno()`` is what
    ``multiprocessing.connection.wait`` takes on every OS (an fd; a pipe handle on
    Windows).

    The standard pipe is readable before its writer can exit; this one only once the
    thread has run, so each flag also records the channel's ``sent_messages`` count in
    the seen counter (``_seen_name``), a segment this watch holds, and a process that
    has sent waits at its exit until the counter (or the receive count) has reached
    its messages (``_Link.wait_seen``).  Chosen over a real pipe per queue written by
    every putter: that needs the fd to cross to each child (inheritance, ``DupFd``
    only while spawning -- a queue here is pickled by name, at any time) and a byte
    per put in the putter's path; this costs nothing on put or get, one segment per
    queue that some process waits on by fd, and a wait at exit only then."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.r, self.w = _mp_connection.Pipe(duplex=False)
        self.cond = threading.Condition(threading.Lock())
        self.flagged = False
        self.stopped = False
        self.pid = os.getpid()  # a forked child's copy is inert (its lock may be held)
        self.seg: Optional[Segment] = None
        self.seen: Optional[memoryview] = None
        try:
            self.seg = Segment.open_or_create(_seen_name(channel), 8, lifetime="shared")
            self.seen = self.seg.buf[:8].cast("Q")
        except Exception:
            pass  # no counter (no room for one): senders do not wait, as before it
        # what is queued already is flagged before fileno() returns (its sender may
        # have exited before this counter existed)
        with self.cond:
            try:
                if self.channel._wait_readable(0):
                    self.flag()
            except BrokenChannelError:
                pass  # a sender died: the thread flags what is queued
        self.thread = threading.Thread(target=self.run, name="mapshare-queue-fd", daemon=True)
        self.thread.start()

    def flag(self) -> None:
        """Make the pipe readable (the channel holds a message; ``cond`` held)."""
        self.w.send_bytes(b"m")
        self.flagged = True
        self.publish()

    def ready(self) -> bool:
        """The channel holds a message now."""
        try:
            return bool(self.channel._wait_readable(0))
        except BrokenChannelError:  # (a zero wait does not look for dead senders)
            return False

    def publish(self) -> None:
        """The pipe is readable and stays so until the channel is empty (``cond``
        held): every message sent by now is covered -- record their count."""
        seen = self.seen
        if seen is None:
            return
        sent = self.channel._statistics()["sent_messages"]
        if sent > seen[0]:
            seen[0] = sent

    def run(self) -> None:
        try:
            while True:
                with self.cond:
                    while self.flagged and not self.stopped:
                        # while readable, messages that come are covered too: publish
                        # their count now and then (a sender's exit waits for it when
                        # nobody receives meanwhile; ~200 cheap wakeups a second, and
                        # only while the queue holds messages)
                        if not self.cond.wait(0.005) and self.flagged and not self.stopped:
                            self.publish()
                    if self.stopped:
                        return
                try:
                    readable = self.channel._wait_readable(0.1)
                except BrokenChannelError:
                    # a sender died: not our business (the queue's receive skips it)
                    continue
                if readable:
                    with self.cond:
                        # again, under the lock: a receiver may have taken the message
                        # (and settled) since the wait returned -- flagged then, the
                        # pipe would stay readable over an empty channel until the next
                        # receive, and a thread that waits on the fd in a loop (the
                        # standard Pool's worker handler does, on its result queue)
                        # would go round holding the GIL all that while
                        if not self.flagged and not self.stopped and self.ready():
                            self.flag()
        except Exception:
            return  # the channel was closed under us (exit): nothing more to watch
        finally:
            with self.cond:
                self.stopped = True
                try:
                    if self.seen is not None:
                        self.seen.release()
                        self.seen = None
                    if self.seg is not None:
                        self.seg.close()
                except Exception:
                    pass
            for end in (self.r, self.w):
                try:
                    end.close()
                except OSError:
                    pass

    def settle(self) -> None:
        """After a receive: if the channel is empty now, make the pipe unreadable."""
        if self.pid != os.getpid():
            return
        with self.cond:
            if not self.flagged or self.stopped:
                return
            if self.channel._wait_readable(0):
                self.publish()  # still readable: what came since is covered too
                return
            try:
                if self.r.poll():
                    self.r.recv_bytes()
            except OSError:
                pass
            self.flagged = False
            self.cond.notify_all()

    def stop(self) -> None:
        if self.pid != os.getpid():
            return
        with self.cond:
            self.stopped = True
            self.cond.notify_all()


class _Writer:
    """``SimpleQueue._writer``: ``send(obj)``, ``close()``, ``closed``."""

    def __init__(self, link: _Link) -> None:
        self._link = link
        self.closed = False

    def send(self, obj: object) -> None:
        """Put an object."""
        if self.closed:
            raise OSError("handle is closed")
        self._link.send(obj)

    def close(self) -> None:
        """Close this end in this process (the queue lives on for the others)."""
        self.closed = True


class SimpleQueue(_Base):
    """``multiprocessing.SimpleQueue``: ``put(obj)``, ``get()``, ``empty()``,
    ``close()``, and the private ``_reader``/``_writer``/``_rlock``/``_wlock`` that
    ``multiprocessing.Pool`` and ``concurrent.futures.ProcessPoolExecutor`` use."""

    def __init__(self, *, ctx: Any = None) -> None:
        self._setup(Channel.create(new_name("q"), CAPACITY, lifetime="shared"),
                    Lock(), Lock())

    def _setup(self, channel: Channel, rlock: Lock, wlock: Lock) -> None:
        self._open(channel)
        self._rlock, self._wlock = rlock, wlock
        self._reader = _Reader(self._link)
        self._writer = _Writer(self._link)
        self._poll = self._reader.poll

    def __reduce__(self) -> tuple[Any, ...]:
        keep_for_child(self)
        return (_reopen_simple, (self._channel.name, self._rlock, self._wlock))

    def _after_fork(self) -> None:
        super()._after_fork()
        self._reader = _Reader(self._link)  # the parent's fd watcher thread is not ours
        self._writer = _Writer(self._link)
        self._poll = self._reader.poll

    def put(self, obj: object) -> None:
        """Put an object (pickled now)."""
        self._writer.send(obj)

    def get(self) -> Any:
        """Remove and return an object, waiting for one."""
        return self._reader.recv()

    def empty(self) -> bool:
        """True if nothing is queued now."""
        self._reader._check()
        empty = self._empty()
        if empty and self._reader._watch is not None:
            self._reader._watch.settle()
        return empty

    def close(self) -> None:
        """Close both ends in this process (OSError on later use, as the standard one)."""
        self._reader.close()
        self._writer.close()

    def __repr__(self) -> str:
        return f"<SimpleQueue {self._channel.name!r}>"


def _reopen_simple(name: str, rlock: Lock, wlock: Lock) -> SimpleQueue:
    close_at_child_exit()
    self = SimpleQueue.__new__(SimpleQueue)
    self._setup(Channel.open(name), rlock, wlock)
    return self
