"""Module-level child functions for tests/multiprocess/test_array_processes.py
(importable under 'spawn').  Children report through a pipe and never raise into
multiprocessing: the parent asserts on what they sent."""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

import numpy as np

import mapshare


def digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).view(np.uint8).tobytes()).hexdigest()


def describe(name: str, conn: Any) -> None:
    """Open the array read-only; send its dtype descr, shape, order and data digest."""
    try:
        with mapshare.SharedArray.open(name) as a:
            arr = a.array
            conn.send(("ok", np.lib.format.dtype_to_descr(arr.dtype), arr.dtype.str,
                       arr.shape, bool(arr.flags.f_contiguous and not arr.flags.c_contiguous),
                       digest(arr), arr.dtype.isalignedstruct))
    except BaseException as exc:
        conn.send(("error", type(exc).__name__, str(exc)))


def open_forged(name: str, conn: Any) -> None:
    """Open an array whose header the parent forged: report the exception's type."""
    try:
        with mapshare.SharedArray.open(name) as a:
            conn.send(("opened", a.shape, str(a.dtype), int(a.array.view(np.uint8).sum())))
    except BaseException as exc:
        conn.send(("error", type(exc).__name__, str(exc)))


def race_open(name: str, expect: float, n: int, conn: Any) -> None:
    """Open the array as soon as its name appears; every element must already hold
    ``expect`` (the creator fills before it publishes)."""
    try:
        with mapshare.SharedArray.open(name, wait=30) as a:
            arr = a.array
            conn.send(("ok", arr.shape, int((arr == expect).sum()), n))
    except BaseException as exc:
        conn.send(("error", type(exc).__name__, str(exc)))


def create_file_backed(name: str, path: str, conn: Any) -> None:
    """Create a file-backed array, write into it, and exit (normally)."""
    try:
        a = mapshare.SharedArray.create(name, (4, 5), ">f4", path=path)
        a.array[:] = np.arange(20, dtype=">f4").reshape(4, 5)
        a.flush()
        a.close()
        conn.send("done")
    except BaseException as exc:
        conn.send(("error", type(exc).__name__, str(exc)))


def hold_lock(name: str, conn: Any) -> None:
    """Take the array's lock and hold it until killed."""
    a = mapshare.SharedArray.open(name, access="rw")
    a.lock().acquire()
    conn.send("held")
    time.sleep(60)


def wait_version(name: str, since: int, conn: Any) -> None:
    try:
        with mapshare.SharedArray.open(name) as a:
            conn.send("waiting")
            v = a.wait_for_version(since, timeout=30)
            conn.send(("ok", v, float(a.array[0])))
    except BaseException as exc:
        conn.send(("error", type(exc).__name__, str(exc)))


def worker_add(arr: mapshare.SharedArray, row: int) -> tuple[int, bool]:
    """ProcessPoolExecutor task: the array arrives pickled by name."""
    arr.array[row] += row
    return os.getpid(), arr.array.base is not None


def open_or_create_and_mark(name: str, index: int, n: int, go: Any, done: Any,
                            conn: Any) -> None:
    """Race the other children to ``open_or_create`` the array, then add 1 to element
    ``index`` under its lock; keep it open until ``done`` (the parent has opened it)."""
    try:
        go.wait(60)
        a = mapshare.SharedArray.open_or_create(name, (n,), "<i8")
        with a.lock():
            a.array[index] += 1
        conn.send(("ok", a.access))
        done.wait(60)
        a.close()
    except BaseException as exc:
        conn.send(("error", type(exc).__name__, str(exc)))
