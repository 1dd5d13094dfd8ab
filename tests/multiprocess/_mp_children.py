"""Module-level child functions for tests/multiprocess/test_mp_processes.py
(importable under spawn and forkserver)."""

from __future__ import annotations

import os
import time
from typing import Any


def put_items(q: Any, n: int, big: int) -> None:
    for i in range(n):
        q.put(("item", i))
    q.put(b"z" * big)
    q.put("done")


def echo(inq: Any, outq: Any) -> None:
    while True:
        obj = inq.get()
        if obj is None:
            break
        outq.put(obj)


def count_with_lock(value: Any, n: int) -> None:
    for _ in range(n):
        with value.get_lock():
            value.value += 1


def count_array(arr: Any, lock: Any, n: int) -> None:
    for _ in range(n):
        with lock:
            arr[0] += 1


def hold_lock_then_sleep(lock: Any, ready: Any) -> None:
    lock.acquire()
    ready.set()
    time.sleep(600)


def wait_event_then_put(event: Any, q: Any) -> None:
    q.put(event.wait(30))


def wait_barrier(barrier: Any, q: Any) -> None:
    q.put(barrier.wait())


def condition_waiter(cond: Any, flag: Any, q: Any) -> None:
    with cond:
        q.put(cond.wait_for(lambda: flag.value == 1, 30))


def joinable_worker(q: Any) -> None:
    while True:
        item = q.get()
        q.task_done()
        if item is None:
            break


def shm_write(name: str, data: bytes) -> None:
    from mapshare.multiprocessing import shared_memory

    block = shared_memory.SharedMemory(name)
    block.buf[: len(data)] = data
    block.close()


def square(x: int) -> int:
    return x * x


def pid_of(_: int) -> int:
    return os.getpid()


def put_then_sleep(q: Any, n: int, ready: Any) -> None:
    for i in range(n):
        q.put(i)
    ready.set()
    time.sleep(600)


def send_on_connection(q: Any) -> None:
    conn = q.get(timeout=60)
    conn.send("through a pipe end that came through a mapshare queue")
    conn.close()


def get_all_then_report(q: Any, n: int, out: Any) -> None:
    got = [q.get(timeout=60) for _ in range(n)]
    out.put((len(got), got[0][0], got[-1][0]))


def put_and_return(q: Any, i: int) -> None:
    """Put and end at once (what a ProcessPoolExecutor worker at its max_tasks_per_child
    does): a normal exit, finalizers and all."""
    q.put(i)
