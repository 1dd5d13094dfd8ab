"""mapshare.multiprocessing in one process (and its threads): each class's semantics,
return values and exceptions as the standard library's, pickling by name, the private
attributes Pool and ProcessPoolExecutor use, big messages, nothing left behind."""

from __future__ import annotations

import ctypes
import multiprocessing
import multiprocessing.connection
import pickle
import queue
import threading
import time
from typing import Any

import pytest

from mapshare import multiprocessing as mp
from mapshare.multiprocessing import queues, shared_memory, synchronize
from mp_support import mp_prefix  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("mp_prefix")


def _later(delay: float, fn: Any, *args: Any) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        fn(*args)

    t = threading.Thread(target=run)
    t.start()
    return t


# ---------------------------------------------------------------- queues

def test_queue_put_get_in_order_and_nowait_forms() -> None:
    q = mp.Queue()
    for i in range(100):
        q.put(("item", i))
    q.put_nowait(None)
    assert q.qsize() == 101 and not q.empty() and not q.full()
    assert [q.get() for _ in range(100)] == [("item", i) for i in range(100)]
    assert q.get_nowait() is None
    assert q.empty()


def test_queue_empty_raises_queue_empty_after_timeout() -> None:
    q = mp.Queue()
    with pytest.raises(queue.Empty):
        q.get(False)
    with pytest.raises(queue.Empty):
        q.get_nowait()
    t0 = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.1)
    assert time.monotonic() - t0 >= 0.08  # Windows' clock ticks every ~15.6 ms
    with pytest.raises(queue.Empty):
        q.get(True, -1)  # a negative timeout is "don't wait", as in the standard queue


def test_queue_maxsize_counts_items() -> None:
    q = mp.Queue(maxsize=2)
    q.put(1)
    q.put(2)
    assert q.full() and q.qsize() == 2
    with pytest.raises(queue.Full):
        q.put(3, block=False)
    with pytest.raises(queue.Full):
        q.put_nowait(3)
    with pytest.raises(queue.Full):
        q.put(3, timeout=0.05)
    t = _later(0.1, q.get)
    q.put(3, timeout=10)  # room made by the thread's get
    t.join()
    assert not q.full() or q.qsize() == 2
    assert [q.get(), q.get()] == [2, 3]


def test_queue_closed_refuses_put_and_get() -> None:
    q = mp.Queue()
    with pytest.raises(AssertionError):
        q.join_thread()  # not closed yet
    q.close()
    with pytest.raises(ValueError):
        q.put(1)
    with pytest.raises(ValueError):
        q.get()
    q.join_thread()


def test_queue_empty_raises_oserror_after_close_of_a_used_queue() -> None:
    """As the standard queue (CPython 3.13's test_closed_queue_empty_exceptions): its
    close() becomes effective once the queue was used here (its feeder closes this
    process's pipe ends); before that, close() leaves empty() working."""
    for q in mp.Queue(), mp.JoinableQueue():
        q.close()
        q.join_thread()
        assert q.empty() is True
    for q in mp.Queue(), mp.JoinableQueue():
        q.put("foo")
        q.close()
        q.join_thread()
        with pytest.raises(OSError, match="handle is closed"):
            q.empty()
        assert q.qsize() == 1  # the standard qsize() counts with its semaphore: works too
        with pytest.raises(ValueError, match="is closed"):
            q.get()


def test_closed_queue_nobody_else_can_read_is_not_waited_for() -> None:
    """Objects buffered in a closed queue that no other process is attached to (and no
    child of this one could still open) can never be received: join_thread() -- and so
    this process's exit -- does not wait for room in the ring for them.  (The standard
    feeder blocks on the full pipe for ever here, unless the reader end is gone.)"""
    q = mp.Queue()
    chunk = b"w" * 60_000
    for _ in range(3 * queues.CAPACITY // len(chunk)):
        q.put(chunk)
    assert len(q._feeder.buffer) > 0  # the ring is full: the feeder holds the rest
    q.close()
    t = threading.Thread(target=q.join_thread, daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), "join_thread() waited for a reader that cannot come"


def test_queue_big_message_goes_through_a_spill_segment() -> None:
    from mapshare.multiprocessing import _util
    from mp_support import left_with

    prefix = _util.prefix

    q = mp.Queue()
    big = bytes(range(256)) * (4 * queues.CAPACITY // 256)  # 4x the ring
    q.put(big)
    q.put("after")
    assert len(left_with(prefix)) >= 2  # the channel and the spill segment
    assert q.get(timeout=10) == big
    assert q.get(timeout=10) == "after"
    q.close()
    q.join_thread()  # the spill was taken: returns


def test_queue_put_never_blocks_without_maxsize_when_the_ring_is_full() -> None:
    q = mp.Queue()
    chunk = b"x" * 60_000
    n = 3 * queues.CAPACITY // len(chunk)  # three rings' worth
    for i in range(n):
        q.put((i, chunk), block=False)  # the standard queue buffers: never queue.Full
    got = [q.get(timeout=10)[0] for _ in range(n)]
    assert got == list(range(n))
    q.close()
    q.join_thread()


def test_queue_cancel_join_thread_does_not_wait() -> None:
    q = mp.Queue()
    for _ in range(3 * queues.CAPACITY // 60_000):
        q.put(b"y" * 60_000)
    q.cancel_join_thread()
    q.close()
    q.join_thread()  # returns at once: buffered objects may be dropped


def test_joinable_queue_task_done_and_join() -> None:
    q = mp.JoinableQueue()
    with pytest.raises(ValueError):
        q.task_done()
    for i in range(3):
        q.put(i)
    done = threading.Event()

    def worker() -> None:
        for _ in range(3):
            q.get()
            q.task_done()
        done.set()

    t = threading.Thread(target=worker)
    t.start()
    q.join()
    assert done.wait(10)
    t.join()
    with pytest.raises(ValueError):
        q.task_done()


def test_simple_queue_and_its_private_ends() -> None:
    q = mp.SimpleQueue()
    assert q.empty()
    q.put({"a": 1})
    assert not q.empty()
    assert q._reader.poll() and q._poll(0)
    assert q._reader.recv() == {"a": 1}
    assert not q._reader.poll(0.01)
    q._writer.send(5)
    assert q.get() == 5
    assert q._rlock.acquire() and q._wlock.acquire()
    q._rlock.release()
    q._wlock.release()
    q.close()
    with pytest.raises(OSError):
        q.get()
    with pytest.raises(OSError):
        q.put(1)


@pytest.mark.posix_only("_reader.fileno() is a pipe handle on Windows: not yet verified "
                        "under Wine (docs/multiprocessing.md)")
def test_simple_queue_reader_fileno_works_with_connection_wait() -> None:
    """ProcessPoolExecutor waits on result_queue._reader with connection.wait."""
    q = mp.SimpleQueue()
    r = q._reader
    assert multiprocessing.connection.wait([r], timeout=0.05) == []
    t = _later(0.05, q.put, "x")
    assert multiprocessing.connection.wait([r], timeout=10) == [r]
    t.join()
    assert r.recv() == "x"
    # level-triggered, like the pipe: unreadable once drained, readable again later
    assert multiprocessing.connection.wait([r], timeout=0.05) == []
    q.put(1)
    q.put(2)
    assert multiprocessing.connection.wait([r], timeout=10) == [r]
    assert r.recv() == 1
    assert multiprocessing.connection.wait([r], timeout=10) == [r]
    assert r.recv() == 2
    assert multiprocessing.connection.wait([r], timeout=0.05) == []
    q.put(3)
    assert multiprocessing.connection.wait([r], timeout=10) == [r]
    assert not q.empty()
    assert q.get() == 3
    assert q.empty()
    assert multiprocessing.connection.wait([r], timeout=0.05) == []
    q.close()


@pytest.mark.posix_only("_reader.fileno() is a pipe handle on Windows: not yet verified "
                        "under Wine (docs/multiprocessing.md)")
def test_reader_fileno_is_not_left_readable_over_an_empty_queue() -> None:
    """A receive right after a put races the fd watcher thread, which woke for the
    message: the watcher must not make the pipe readable once the message is gone (it
    stayed so until the next receive; a Pool's worker handler waiting on it went round
    in a loop holding the GIL)."""
    q = mp.SimpleQueue()
    r = q._reader
    r.fileno()  # the watcher runs from here on
    stale = 0
    for i in range(50):
        q.put(i)
        assert r.recv() == i
        # the GIL is free while this waits: a watcher late for message i flags it now
        if multiprocessing.connection.wait([r], timeout=0.01):
            stale += 1
    assert q.empty()
    q.close()
    assert stale == 0


def test_an_unpicklable_object_is_reported_and_dropped(capsys: pytest.CaptureFixture[str]) -> None:
    """As the standard queue's feeder does: put returns, the error is printed, the
    object dropped, its maxsize unit given back."""

    class Unpicklable:
        def __reduce__(self) -> Any:
            raise AttributeError("no pickling")

    q = mp.Queue(maxsize=1)
    q.put(Unpicklable())
    assert "no pickling" in capsys.readouterr().err
    q.put(True, timeout=1)  # the unit came back
    assert q.qsize() == 1 and q.get(timeout=1) is True

    seen: list[Any] = []

    class Hooked(queues.Queue):
        @staticmethod
        def _on_queue_feeder_error(e: Exception, obj: object) -> None:
            seen.append((type(e), type(obj)))

    h = Hooked()
    h.put(Unpicklable())
    assert seen == [(AttributeError, Unpicklable)]
    with pytest.raises(AttributeError):
        mp.SimpleQueue().put(Unpicklable())  # SimpleQueue pickles in put, as standard


def test_queue_uses_forkingpickler_reducers() -> None:
    """Types registered with ForkingPickler (even after the queue exists) pickle with
    their reducer, as in the standard queue."""
    from multiprocessing.reduction import ForkingPickler

    class Special:
        pass

    q = mp.Queue()
    ForkingPickler.register(Special, lambda obj: (str, ("reduced",)))
    q.put(Special())
    assert q.get(timeout=10) == "reduced"


def test_queues_pickle_by_name() -> None:
    for q in (mp.Queue(3), mp.JoinableQueue(), mp.SimpleQueue()):
        other = pickle.loads(pickle.dumps(q))
        assert other.name == q.name
        other.put("via copy")
        assert q.get() == "via copy"


# ---------------------------------------------------------------- locks

def test_lock_semantics() -> None:
    lock = mp.Lock()
    assert lock.acquire() is True
    assert lock.acquire(False) is False  # not reentrant
    assert lock.acquire(timeout=0.01) is False
    with pytest.raises(RuntimeError):
        lock.acquire()  # would deadlock for ever
    assert lock.release() is None
    with pytest.raises(ValueError):
        lock.release()
    with lock:
        assert "MainProcess" in repr(lock)
    assert repr(lock) == "<Lock(owner=None)>"


def test_lock_blocks_another_thread_until_released() -> None:
    lock = mp.Lock()
    lock.acquire()
    got: list[bool] = []
    t = threading.Thread(target=lambda: got.append(lock.acquire(timeout=0.05)))
    t.start()
    t.join()
    assert got == [False]
    lock.release()
    t = threading.Thread(target=lambda: got.append(lock.acquire(timeout=10)))
    t.start()
    t.join()
    assert got == [False, True]  # that thread has ended holding it: taken over below
    assert lock.acquire(timeout=10) is True
    lock.release()


def test_lock_release_by_another_thread_is_refused() -> None:
    lock = mp.Lock()
    lock.acquire()
    errors: list[BaseException] = []

    def other() -> None:
        try:
            lock.release()
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
    lock.release()


def test_rlock_semantics() -> None:
    r = mp.RLock()
    assert r.acquire() and r.acquire()
    assert r._semlock._count() == 2 and r._semlock._is_mine()
    r.release()
    r.release()
    with pytest.raises(AssertionError):
        r.release()
    with r:
        got: list[bool] = []
        t = threading.Thread(target=lambda: got.append(r.acquire(False)))
        t.start()
        t.join()
        assert got == [False]
    assert repr(r) == "<RLock(None, 0)>"


def test_semaphores() -> None:
    s = mp.Semaphore(2)
    assert s.get_value() == 2
    assert s.acquire() and s.acquire(timeout=1)
    assert s.acquire(False) is False
    assert s.acquire(timeout=0.01) is False
    s.release()
    s.release()
    s.release()  # an unbounded semaphore goes above its initial value
    assert s.get_value() == 3
    b = mp.BoundedSemaphore(1)
    assert b.acquire()
    b.release()
    with pytest.raises(ValueError):
        b.release()
    assert repr(b) == "<BoundedSemaphore(value=1, maxvalue=1)>"
    with pytest.raises(ValueError):
        mp.Semaphore(-1)
    z = mp.BoundedSemaphore(0)
    assert z.acquire(False) is False
    with pytest.raises(ValueError):
        z.release()


def test_semlock_private_methods() -> None:
    """What code written against multiprocessing.synchronize reads through
    ``_semlock`` (CPython's tests, Condition-like helpers)."""
    lock, r, sem = mp.Lock(), mp.RLock(), mp.Semaphore(2)
    assert lock._semlock._get_value() == 1 and not lock._semlock._is_zero()
    lock.acquire()
    assert lock._semlock._get_value() == 0 and lock._semlock._is_zero()
    assert lock._semlock._is_mine() and lock._semlock._count() == 1
    lock.release()
    assert not lock._semlock._is_mine() and lock._semlock._count() == 0
    assert not r._semlock._is_mine() and r._semlock._count() == 0
    assert sem._semlock._get_value() == 2 and not sem._semlock._is_zero()
    sem.acquire()
    sem.acquire()
    assert sem._semlock._is_zero()


def test_event() -> None:
    e = mp.Event()
    assert not e.is_set()
    assert e.wait(0.01) is False
    assert e.wait(-1) is False
    t = _later(0.05, e.set)
    assert e.wait(10) is True
    t.join()
    assert e.is_set()
    e.clear()
    assert not e.is_set()


def test_condition() -> None:
    c = mp.Condition()
    with pytest.raises(AssertionError):
        c.wait(0.01)  # the lock must be held
    with c:
        assert c.wait(0.01) is False
    state: list[int] = []

    def waiter() -> None:
        with c:
            state.append(c.wait_for(lambda: len(state) == 1 and state[0] == 0, 10))

    with c:
        state.append(0)  # not yet what the waiter waits for? it is: len 1 and 0
    t = threading.Thread(target=waiter)
    t.start()
    t.join(10)
    assert state == [0, True]

    woken: list[bool] = []
    ts = [threading.Thread(target=lambda: woken.append(_wait_on(c))) for _ in range(3)]
    for t in ts:
        t.start()
    deadline = time.monotonic() + 10
    while _waiters(c) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    with c:
        c.notify()
    with c:
        c.notify_all()
    for t in ts:
        t.join(10)
    assert woken == [True, True, True]
    with pytest.raises(TypeError):
        mp.Condition(threading.Lock())


def _wait_on(c: Any) -> bool:
    with c:
        return bool(c.wait(10))


def _waiters(c: Any) -> int:
    return int(c._sleeping_count.get_value() - c._woken_count.get_value())


def test_barrier() -> None:
    b = mp.Barrier(3, timeout=10)
    assert b.parties == 3 and b.n_waiting == 0 and not b.broken
    results: list[int] = []
    ts = [threading.Thread(target=lambda: results.append(b.wait())) for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(10)
    assert sorted(results) == [0, 1, 2]
    b.abort()
    assert b.broken
    with pytest.raises(threading.BrokenBarrierError):
        b.wait()
    b.reset()
    assert not b.broken
    with pytest.raises(threading.BrokenBarrierError):
        mp.Barrier(2).wait(0.05)  # a timeout breaks the barrier


def test_value_and_array() -> None:
    v = mp.Value("i", 7)
    assert v.value == 7
    with v.get_lock():
        v.value += 1
    assert v.get_obj().value == 8
    raw = mp.Value(ctypes.c_double, 1.5, lock=False)
    assert raw.value == 1.5 and not hasattr(raw, "get_lock")
    a = mp.Array("d", [1.0, 2.0, 3.0])
    a[1] = 5.0
    assert a[:] == [1.0, 5.0, 3.0] and len(a) == 3
    assert isinstance(a.get_lock(), synchronize.RLock)
    z = mp.Array("i", 4, lock=mp.Lock())
    assert z[:] == [0, 0, 0, 0]
    assert mp.RawArray("b", 3)[:] == [0, 0, 0]
    assert mp.RawValue("h", 3).value == 3
    with pytest.raises(AttributeError):
        mp.Value("i", lock=object())


def test_sync_objects_pickle_by_name() -> None:
    lock, r, s, e = mp.Lock(), mp.RLock(), mp.BoundedSemaphore(2), mp.Event()
    c, b = mp.Condition(), mp.Barrier(2)
    lock2, r2, s2, e2, c2, b2 = pickle.loads(pickle.dumps((lock, r, s, e, c, b)))
    assert lock2.name == lock.name and r2.name == r.name and s2.name == s.name
    assert lock.acquire()
    assert lock2.acquire(timeout=0) is False  # same lock, held (by this thread)
    lock.release()
    s2.acquire()
    assert s.get_value() == 1
    s2.release()
    with pytest.raises(ValueError):
        s2.release()  # still bounded after the trip
    e2.set()
    assert e.is_set()
    assert c2._segment.name == c._segment.name
    assert b2.parties == 2


# ---------------------------------------------------------------- shared memory

def test_shared_memory_create_open_errors(name: str) -> None:
    with pytest.raises(ValueError):
        shared_memory.SharedMemory(name, create=True, size=0)
    with pytest.raises(ValueError):
        shared_memory.SharedMemory(name, create=True, size=-1)
    with pytest.raises(ValueError):
        shared_memory.SharedMemory(None)
    with pytest.raises(FileNotFoundError):
        shared_memory.SharedMemory(name)
    a = shared_memory.SharedMemory(name, create=True, size=100)
    try:
        with pytest.raises(FileExistsError):
            shared_memory.SharedMemory(name, create=True, size=100)
        assert a.name == name and a.size >= 100
        a.buf[:5] = b"hello"
        b = shared_memory.SharedMemory(name)
        assert bytes(b.buf[:5]) == b"hello"
        b.close()
        a.close()
        with pytest.raises(ValueError):
            _ = a.buf
        # closed, not unlinked: opened again later, as on POSIX with the standard one
        c = shared_memory.SharedMemory(name)
        assert bytes(c.buf[:5]) == b"hello"
        c2 = pickle.loads(pickle.dumps(c))
        assert c2.name == name
        c2.close()
        c.close()
    finally:
        a.unlink()
    with pytest.raises(FileNotFoundError):
        shared_memory.SharedMemory(name)


def test_shared_memory_unlink_keeps_existing_users(name: str) -> None:
    a = shared_memory.SharedMemory(name, create=True, size=10)
    b = shared_memory.SharedMemory(name)
    a.unlink()
    with pytest.raises(FileNotFoundError):
        shared_memory.SharedMemory(name)
    b.buf[0] = 9
    assert a.buf[0] == 9
    a.close()
    b.close()
    a.unlink()  # again: nothing left to remove, no error (like a second close)


def test_shared_memory_without_name() -> None:
    a = shared_memory.SharedMemory(create=True, size=8, track=False)  # 3.13's keyword
    assert a.name.startswith("psm_")
    a.close()
    a.unlink()


def test_shareable_list(name: str) -> None:
    sl = shared_memory.ShareableList([1, "two", 3.0, None, b"x"], name=name)
    try:
        other = shared_memory.ShareableList(name=name)
        assert list(other) == [1, "two", 3.0, None, b"x"]
        other[0] = 42
        assert sl[0] == 42 and sl.count(42) == 1 and sl.index("two") == 1
        assert isinstance(sl.shm, shared_memory.SharedMemory)
        again = pickle.loads(pickle.dumps(sl))
        assert list(again) == list(sl)
        again.shm.close()
        other.shm.close()
    finally:
        sl.shm.close()
        sl.shm.unlink()


# ---------------------------------------------------------------- contexts

def test_get_context() -> None:
    default = mp.get_context()
    assert default.get_start_method() == multiprocessing.get_start_method()
    for method in multiprocessing.get_all_start_methods():
        ctx = mp.get_context(method)
        assert ctx.get_start_method() == method
        assert isinstance(ctx, type(multiprocessing.get_context(method)))
        assert ctx.Process is multiprocessing.get_context(method).Process  # type: ignore[attr-defined]
        assert ctx.get_context() is ctx and ctx.get_context(method) is ctx
        assert isinstance(ctx.Queue(), queues.Queue)
        assert isinstance(ctx.SimpleQueue(), queues.SimpleQueue)
        assert isinstance(ctx.Lock(), synchronize.Lock)
    with pytest.raises(ValueError):
        mp.get_context("nonsense")
    assert mp.cpu_count() == multiprocessing.cpu_count()
    assert mp.current_process() is multiprocessing.current_process()
