"""mapshare.multiprocessing across real processes started by fork, spawn and
forkserver: objects passed as Process arguments (and inherited by fork), a SIGKILLed
lock holder, big messages, Pool and ProcessPoolExecutor on a mapshare context, shared
memory outliving the children that used it -- and nothing left in /dev/shm."""

from __future__ import annotations

import concurrent.futures
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from multiprocessing import connection as mp_connection
from typing import Any

import _mp_children as children
import pytest

from mapshare import multiprocessing as mp
from mapshare.multiprocessing import queues, shared_memory
from mp_support import mp_prefix  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("mp_prefix")

METHODS = ["fork", "spawn"]
ALL_METHODS = [m for m in ("fork", "spawn", "forkserver") if m in mp.get_all_start_methods()]


def _run(ctx: Any, target: Any, *args: Any) -> Any:
    p = ctx.Process(target=target, args=args)
    p.start()
    return p


def _join(*procs: Any) -> None:
    for p in procs:
        p.join(60)
        assert p.exitcode == 0, f"child exit code {p.exitcode}"


@pytest.mark.parametrize("method", ALL_METHODS)
def test_queue_passed_to_child_including_a_big_message(method: str) -> None:
    ctx = mp.get_context(method)
    q = ctx.Queue()
    big = 3 * queues.CAPACITY
    p = _run(ctx, children.put_items, q, 500, big)
    got = [q.get(timeout=60) for _ in range(500)]
    assert got == [("item", i) for i in range(500)]
    assert q.get(timeout=60) == b"z" * big
    assert q.get(timeout=60) == "done"
    _join(p)


@pytest.mark.parametrize("method", METHODS)
def test_simple_and_joinable_queues_both_ways(method: str) -> None:
    ctx = mp.get_context(method)
    inq, outq = ctx.SimpleQueue(), ctx.Queue(maxsize=3)
    p = _run(ctx, children.echo, inq, outq)
    for i in range(50):
        inq.put({"i": i})
        assert outq.get(timeout=60) == {"i": i}
    inq.put(None)
    _join(p)
    jq = ctx.JoinableQueue()
    w = _run(ctx, children.joinable_worker, jq)
    for i in range(20):
        jq.put(i)
    jq.put(None)
    jq.join()  # every item marked done by the child
    _join(w)


@pytest.mark.parametrize("method", METHODS)
def test_value_and_array_counted_exactly_under_the_lock(method: str) -> None:
    ctx = mp.get_context(method)
    v = ctx.Value("i", 0)
    arr = ctx.RawArray("q", 1)
    lock = ctx.Lock()
    procs = [_run(ctx, children.count_with_lock, v, 2000) for _ in range(2)]
    procs += [_run(ctx, children.count_array, arr, lock, 2000) for _ in range(2)]
    _join(*procs)
    assert v.value == 4000
    assert arr[0] == 4000


@pytest.mark.posix_only("SIGKILL")
@pytest.mark.parametrize("method", ALL_METHODS)
@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_a_killed_holder_hands_the_lock_over(method: str, kind: str) -> None:
    """The standard lock would stay locked for ever; mapshare's next acquire gets it."""
    ctx = mp.get_context(method)
    lock, ready = getattr(ctx, kind)(), ctx.Event()
    p = _run(ctx, children.hold_lock_then_sleep, lock, ready)
    assert ready.wait(60)
    assert lock.acquire(timeout=0.05) is False  # held by the child
    os.kill(p.pid, signal.SIGKILL)
    p.join(60)
    assert p.exitcode == -signal.SIGKILL
    assert lock.acquire(timeout=30) is True
    lock.release()
    assert lock.acquire(False) is True  # consistent again: an ordinary lock
    lock.release()


@pytest.mark.parametrize("method", ALL_METHODS)
def test_event_barrier_condition_across_processes(method: str) -> None:
    ctx = mp.get_context(method)
    q = ctx.Queue()
    event = ctx.Event()
    procs = [_run(ctx, children.wait_event_then_put, event, q) for _ in range(2)]
    time.sleep(0.05)
    event.set()
    assert [q.get(timeout=60), q.get(timeout=60)] == [True, True]
    _join(*procs)

    barrier = ctx.Barrier(3, timeout=60)
    procs = [_run(ctx, children.wait_barrier, barrier, q) for _ in range(2)]
    mine = barrier.wait()
    assert sorted([mine, q.get(timeout=60), q.get(timeout=60)]) == [0, 1, 2]
    _join(*procs)

    cond, flag = ctx.Condition(), ctx.Value("i", 0, lock=False)
    p = _run(ctx, children.condition_waiter, cond, flag, q)
    with cond:
        flag.value = 1
        cond.notify_all()
    assert q.get(timeout=60) is True
    _join(p)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_pool_runs_on_mapshare_queues(method: str) -> None:
    ctx = mp.get_context(method)
    with ctx.Pool(2) as pool:
        assert isinstance(pool._inqueue, queues.SimpleQueue)
        assert isinstance(pool._outqueue, queues.SimpleQueue)
        assert isinstance(pool._change_notifier, queues.SimpleQueue)
        assert pool.map(children.square, range(1000)) == [x * x for x in range(1000)]
        assert pool.apply_async(children.square, (12,)).get(60) == 144
        assert sorted(pool.imap_unordered(children.square, range(10))) == [
            x * x for x in range(10)]
    pool.join()


def test_pool_worker_handler_does_not_wake_on_results(monkeypatch: pytest.MonkeyPatch) -> None:
    """The context's Pool: its worker handler thread waits on the workers and the change
    notifier only -- the standard one also wakes while results are queued, and goes
    round holding the GIL until the result handler has taken them (hundreds of times a
    map).  Results, close() with tasks pending, and join() are as before."""
    from mapshare.multiprocessing import _pool

    wakeups = [0]
    wait_for_updates = _pool.Pool._wait_for_updates  # type: ignore[attr-defined]

    def counting(*args: Any, **kwargs: Any) -> Any:
        wakeups[0] += 1
        return wait_for_updates(*args, **kwargs)

    monkeypatch.setattr(_pool.Pool, "_wait_for_updates", staticmethod(counting))
    ctx = mp.get_context("fork" if "fork" in ALL_METHODS else "spawn")
    pool = ctx.Pool(2)
    try:
        assert isinstance(pool, _pool.Pool)
        assert pool.map(children.square, range(3000), chunksize=1) == [
            x * x for x in range(3000)]
        # one wait per map's end (the cache emptied) and a few spare: not one per result
        assert wakeups[0] <= 10, wakeups[0]
        assert pool._outqueue._reader._watch is None  # type: ignore[attr-defined]  # no fd wait
        pending = pool.map_async(children.square, range(100), chunksize=1)
        pool.close()  # the handler must still see the cache drain after close
        pool.join()
        assert pending.get(0) == [x * x for x in range(100)]
    finally:
        pool.terminate()
        pool.join()


@pytest.mark.parametrize("method", ALL_METHODS)
def test_pool_with_maxtasksperchild_replaces_workers(method: str) -> None:
    """Workers that end after their tasks (normally: under spawn and forkserver too,
    whose children reopened the queues before multiprocessing cleared their exit
    hooks) detach cleanly: the result queue counts no dead sender."""
    ctx = mp.get_context(method)
    pool = ctx.Pool(2, maxtasksperchild=2)
    pids = pool.map(children.pid_of, range(12), chunksize=1)
    pool.close()
    pool.join()
    assert len(set(pids)) > 2  # workers were replaced (the change notifier woke the pool)
    assert pool._outqueue._channel.statistics().dead_senders == 0
    assert pool._inqueue._channel.statistics().dead_senders == 0


@pytest.mark.parametrize("method", ALL_METHODS)
def test_process_pool_executor_with_the_context(method: str) -> None:
    ctx = mp.get_context(method)
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as ex:
        assert list(ex.map(children.square, range(200))) == [x * x for x in range(200)]
        assert ex.submit(children.square, 9).result(60) == 81
        assert isinstance(ex._result_queue, queues.SimpleQueue)


@pytest.mark.skipif(sys.platform == "win32", reason="not yet run under Wine (the fix is "
                    "not POSIX-specific; this test is verified on Linux only)")
@pytest.mark.parametrize("method", ALL_METHODS)
def test_an_object_put_is_on_the_readers_fileno_before_the_putter_has_exited(
    method: str,
) -> None:
    """A child that puts and returns at once: whenever its sentinel is ready, the
    queue's ``_reader`` is ready too, as with the standard queue's pipe --
    ``ProcessPoolExecutor(max_tasks_per_child=...)`` takes a sentinel ready alone for a
    crashed worker (BrokenProcessPool).  The parent keeps the GIL busy with a long
    switch interval, so that its fd watcher thread runs late: without the putter's
    wait at exit, its sentinel comes first."""
    ctx = mp.get_context(method)
    q = ctx.SimpleQueue()
    busy = threading.Event()  # set: the spinner holds the GIL all it can
    done: list[bool] = []

    def spin() -> None:
        while busy.wait() and not done:
            while busy.is_set() and not done:
                pass

    old = sys.getswitchinterval()
    sys.setswitchinterval(0.05)
    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        for i in range(12):
            p = _run(ctx, children.put_and_return, q, i)
            busy.set()  # only while waiting: starting a child with it would be slow
            try:
                ready = mp_connection.wait([q._reader, p.sentinel], timeout=60)
            finally:
                busy.clear()
            assert ready, "neither the queue nor the child's exit within 60 s"
            if p.sentinel in ready:
                assert q._reader in ready, f"iteration {i}: exit seen before the object"
            assert q.get() == i
            _join(p)
    finally:
        busy.clear()
        done.append(True)
        busy.set()
        spinner.join()
        sys.setswitchinterval(old)
        q.close()


@pytest.mark.parametrize("method", METHODS)
def test_shared_memory_outlives_the_children_that_used_it(method: str, name: str) -> None:
    """The standard module's resource tracker removes a block when a process that used it
    ends (3.11-3.12: even one that only opened it); this one stays until unlink()."""
    ctx = mp.get_context(method)
    block = shared_memory.SharedMemory(name, create=True, size=64)
    try:
        _join(_run(ctx, children.shm_write, name, b"from child"))
        _join(_run(ctx, children.shm_write, name, b"FROM"))
        again = shared_memory.SharedMemory(name)
        assert bytes(again.buf[:10]) == b"FROMchild"[:4] + b" child"
        again.close()
    finally:
        block.close()
        block.unlink()


@pytest.mark.skipif(sys.platform == "win32", reason="fork")
def test_objects_inherited_by_fork_without_pickling() -> None:
    ctx = mp.get_context("fork")
    q, lock, v = ctx.Queue(), ctx.Lock(), ctx.Value("d", 0.0)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            with lock:
                v.value = 2.5
            q.put("from forked child")
            q.close()
            q.join_thread()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert q.get(timeout=60) == "from forked child"
    assert v.value == 2.5
    assert lock.acquire(False)
    lock.release()


@pytest.mark.posix_only("SIGKILL")
@pytest.mark.parametrize("method", METHODS)
def test_a_killed_sender_is_not_an_error_for_the_receiver(method: str) -> None:
    """What a killed sender had put is delivered; then the queue is just empty (the
    channel's dead-sender report never reaches a Queue user)."""
    ctx = mp.get_context(method)
    q, ready = ctx.Queue(), ctx.Event()
    p = _run(ctx, children.put_then_sleep, q, 100, ready)
    assert ready.wait(60)
    os.kill(p.pid, signal.SIGKILL)
    p.join(60)
    assert [q.get(timeout=60) for _ in range(100)] == list(range(100))
    with pytest.raises(queue.Empty):
        q.get(timeout=0.2)
    q.put("still usable")
    assert q.get(timeout=60) == "still usable"


@pytest.mark.posix_only("the standard Connection reducer passes fds")
@pytest.mark.parametrize("method", METHODS)
def test_objects_pickled_with_forkingpickler_reducers(method: str) -> None:
    """A Connection goes through a mapshare Queue as through the standard one (the
    ForkingPickler reducers apply: the fd is passed to the receiver)."""
    ctx = mp.get_context(method)
    q = ctx.Queue()
    p = _run(ctx, children.send_on_connection, q)
    reader, writer = ctx.Pipe(duplex=False)
    q.put(writer)
    assert reader.poll(60)
    assert reader.recv() == "through a pipe end that came through a mapshare queue"
    _join(p)
    writer.close()
    reader.close()


@pytest.mark.parametrize("method", ALL_METHODS)
def test_objects_put_before_close_reach_a_child_started_after(method: str) -> None:
    """The standard join_thread() semantics: what was put before close() -- three rings'
    worth, so the feeder holds most of it -- reaches a reader that is alive, even one
    started after the puts (under spawn and forkserver it opens the queue only once it
    runs: the feeder must not take the queue for unread meanwhile)."""
    ctx = mp.get_context(method)
    q, out = ctx.Queue(), ctx.SimpleQueue()
    chunk = b"c" * 60_000
    n = 3 * queues.CAPACITY // len(chunk)
    for i in range(n):
        q.put((i, chunk))
    p = _run(ctx, children.get_all_then_report, q, n, out)
    q.close()
    q.join_thread()  # returns once the child has made room for all of it
    assert out.get() == (n, 0, n - 1)
    _join(p)


_EXIT_SCRIPT = textwrap.dedent("""
    import sys, time
    from mapshare import multiprocessing as mp
    from mapshare.multiprocessing import _util, queues
    _util.prefix = sys.argv[1]
    if __name__ == "__main__":
        ctx = mp.get_context(sys.argv[2])
        # a Queue three rings full that nobody reads, left unclosed ...
        q = ctx.Queue()
        for i in range(3 * queues.CAPACITY // 60_000):
            q.put(b"e" * 60_000)
        assert q._feeder.buffer
        # ... and a Pool terminated with its task queue full (the 3.13 hang: the
        # dropped SimpleQueue's feeder waited for room at exit for ever)
        pool = ctx.Pool(2)
        pool.map_async(time.sleep, [0.01] * 20_000, chunksize=1)
        time.sleep(0.2)
        pool.terminate()
        pool.join()
        print("end of script", flush=True)
""")


@pytest.mark.posix_only("the script's Pool on fork")
def test_a_script_that_ends_with_unread_full_queues_exits(tmp_path: Any) -> None:
    """A normal exit is never a hang: buffered objects that no process can receive any
    more are dropped at exit (as the standard queue's are once its pipe's reader ends are
    gone), and nothing is left in /dev/shm (the fixture checks)."""
    script = tmp_path / "ends.py"
    script.write_text(_EXIT_SCRIPT)
    from mapshare.multiprocessing import _util

    # the script names its objects with this test's prefix (mp_prefix checks them)
    r = subprocess.run([sys.executable, str(script), _util.prefix, "fork"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "end of script" in r.stdout
