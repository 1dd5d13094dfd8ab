"""Segments across real processes: spawn, fork and plain subprocess; file-backed data
outliving processes; copy-on-write isolation; create races; other users; shared
lifetime with SIGKILLed holders; pickling into workers."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import mapshare
from mapshare import _naming
from mapshare.testing import shm_entries

sys.path.insert(0, os.path.dirname(__file__))
import _segment_children as children

CHILDREN = os.path.join(os.path.dirname(__file__), "_segment_children.py")
TIMEOUT = 60.0
CONTEXTS = ["spawn", "fork"]
WINDOWS = sys.platform == "win32"
NO_PERSISTENT_SHM = ("lifetime='persistent' needs a backing file on Windows "
                     "(UnsupportedError, see docs/platforms.md)")


def _shm(name: str) -> str:
    return "/dev/shm" + _naming.os_name(name)


def _exists(name: str) -> bool:
    """Whether the OS object of ``name`` exists (Windows: a listed named section)."""
    if WINDOWS:
        return _naming.os_name(name) in shm_entries()
    return os.path.exists(_shm(name))


def _finish(*procs: Any) -> None:
    for p in procs:
        p.join(TIMEOUT)
        if p.is_alive():
            p.kill()
            p.join(5)


def _run_child(ctx_name: str, target: Any, *args: Any) -> tuple[Any, ...]:
    """Run ``target(*args, conn)`` in a child and return what it sent."""
    ctx = multiprocessing.get_context(ctx_name)
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=target, args=(*args, w))
    p.start()
    w.close()
    try:
        assert r.poll(TIMEOUT), "child did not answer"
        msg = r.recv()
    finally:
        _finish(p)
    assert p.exitcode == 0
    return tuple(msg)


@pytest.fixture
def tmp_file(tmp_path: Path) -> Iterator[str]:
    yield str(tmp_path / "backing.bin")


# ---- writer and reader in separate processes -----------------------------------------


@pytest.mark.parametrize("ctx_name", CONTEXTS)
def test_reader_process_sees_writers_bytes(ctx_name: str, name: str) -> None:
    data = os.urandom(4096)
    with mapshare.Segment.create(name, 10000) as seg:
        seg.write(data, offset=0)
        assert _run_child(ctx_name, children.read_and_report, name, 4096) == ("ok", data)


@pytest.mark.parametrize("ctx_name", CONTEXTS)
def test_writer_process_reader_parent(ctx_name: str, name: str) -> None:
    data = b"written by the child " + os.urandom(32)
    with mapshare.Segment.create(name, 4096) as seg:
        msg = _run_child(ctx_name, children.open_with_access, name, "rw", data)
        assert msg == ("ok", data)
        assert seg.read(len(data)) == data


def test_plain_subprocess_reads_and_writes(name: str) -> None:
    data = os.urandom(64)
    with mapshare.Segment.create(name, 4096) as seg:
        seg.write(data)
        out = subprocess.run(
            [sys.executable, CHILDREN, "read", name, "64"],
            capture_output=True, text=True, timeout=TIMEOUT, check=True,
        )
        assert bytes.fromhex(out.stdout.strip()) == data
        other = os.urandom(16)
        subprocess.run(
            [sys.executable, CHILDREN, "write", name, other.hex()],
            timeout=TIMEOUT, check=True,
        )
        assert seg.read(16) == other
        assert seg.read(48, offset=16) == data[16:]


# ---- file-backed data outlives processes ---------------------------------------------


@pytest.mark.parametrize("ctx_name", CONTEXTS)
def test_file_backed_survives_process_exit(ctx_name: str, name: str, tmp_file: str) -> None:
    data = os.urandom(1000)
    ctx = multiprocessing.get_context(ctx_name)
    p = ctx.Process(target=children.create_file_backed, args=(name, tmp_file, data, "shared"))
    p.start()
    _finish(p)
    assert p.exitcode == 0
    # every process that had it is gone: the data is in the file and reopens by path
    with open(tmp_file, "rb") as f:
        assert data in f.read()
    with mapshare.Segment.open(path=tmp_file) as seg:
        assert seg.name == name
        assert seg.read(len(data)) == data
        assert seg.size == len(data) + 100
    # the last user of a 'shared' file-backed segment took the name with it
    assert not _exists(name)
    with pytest.raises(mapshare.SegmentNotFoundError):
        mapshare.Segment.open(name)


@pytest.mark.posix_only("reopens by name after every process exited (Windows: the name "
                        "goes with the last handle; reopen by path, see test_platform.py)")
def test_file_backed_persistent_reopens_by_name_after_exit(name: str, tmp_file: str) -> None:
    data = os.urandom(500)
    ctx = multiprocessing.get_context("spawn")
    p = ctx.Process(
        target=children.create_file_backed, args=(name, tmp_file, data, "persistent")
    )
    p.start()
    _finish(p)
    assert p.exitcode == 0
    try:
        with mapshare.Segment.open(name) as seg:
            assert seg.path == os.path.abspath(tmp_file)
            assert seg.read(len(data)) == data
            seg.unlink()
    finally:
        if _exists(name):
            os.unlink(_shm(name))
    assert os.path.exists(tmp_file)  # unlink removes the name, never the data


# ---- copy-on-write isolation across processes ----------------------------------------


@pytest.mark.parametrize("ctx_name", CONTEXTS)
def test_copy_access_in_child_is_private(ctx_name: str, name: str, tmp_file: str) -> None:
    original = b"O" * 64
    with mapshare.Segment.create(name, 4096, path=tmp_file) as seg:
        seg.write(original)
        seg.flush()
        msg = _run_child(ctx_name, children.open_with_access, name, "copy", b"C" * 64)
        assert msg == ("ok", b"C" * 64)  # the child saw its own write...
        assert seg.read(64) == original  # ...which never reached us
        with open(tmp_file, "rb") as f:
            assert b"C" * 64 not in f.read()  # nor the file


@pytest.mark.parametrize("ctx_name", CONTEXTS)
def test_read_only_child_cannot_write(ctx_name: str, name: str) -> None:
    with mapshare.Segment.create(name, 4096) as seg:
        seg.write(b"keep")
        msg = _run_child(ctx_name, children.open_with_access, name, "r", b"XXXX")
        assert msg == ("error", "PermissionDeniedError")
        assert seg.read(4) == b"keep"


# ---- create races ---------------------------------------------------------------------


RACERS = 20


@pytest.mark.posix_only("fork, and children that use persistent shm or /dev/shm inodes")
def test_twenty_processes_race_to_create(name: str) -> None:
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(RACERS)
    q = ctx.Queue()
    procs = [ctx.Process(target=children.race_create, args=(name, barrier, q))
             for _ in range(RACERS)]
    try:
        for p in procs:
            p.start()
        results = [q.get(timeout=TIMEOUT) for _ in procs]
    finally:
        _finish(*procs)
    try:
        outcomes = [r[1] for r in results]
        assert outcomes.count("created") == 1, results
        assert outcomes.count("exists") == RACERS - 1, results
        assert all(r[2] == "SegmentExistsError" and r[3] for r in results if r[1] == "exists")
        winner = next(r[0] for r in results if r[1] == "created")
        with mapshare.Segment.open(name) as seg:
            assert int.from_bytes(seg.read(8), "little") == winner
            assert seg.info().creator_pid == winner
    finally:
        try:
            with mapshare.Segment.open(name) as seg:
                seg.unlink()
        except mapshare.SegmentNotFoundError:
            pass


@pytest.mark.posix_only("fork, and children that use persistent shm or /dev/shm inodes")
def test_twenty_processes_race_open_or_create(name: str) -> None:
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(RACERS)
    q = ctx.Queue()
    done = ctx.Event()
    procs = [ctx.Process(target=children.race_open_or_create, args=(name, barrier, q, done))
             for _ in range(RACERS)]
    try:
        for p in procs:
            p.start()
        results = [q.get(timeout=TIMEOUT) for _ in procs]
        assert all(r[1] == "ok" for r in results), results
        # all on the same OS object
        assert len({r[2] for r in results}) == 1, results
        with mapshare.Segment.open(name) as seg:
            assert int.from_bytes(seg.read(8), "little") == RACERS
            alive = {p.pid for p in seg.info().attached if p.alive}
            assert {r[0] for r in results} <= alive
    finally:
        done.set()
        _finish(*procs)
    assert all(p.exitcode == 0 for p in procs)
    # 'shared' lifetime: the last of them took it away
    assert not _exists(name)


# ---- another user ---------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0,
                    reason="dropping privileges to uid 65534 needs root")
def test_other_uid_cannot_open(name: str) -> None:
    with mapshare.Segment.create(name, 4096) as seg:
        assert os.stat(_shm(name)).st_mode & 0o777 == 0o600
        msg = _run_child("fork", children.drop_privileges_and_open, name)
        assert msg == ("denied", "PermissionDeniedError", True)
        assert seg.read(4) == b"\0" * 4


@pytest.mark.needs_fork
def test_forked_child_closes_inherited_handles_at_exit(name: str) -> None:
    ctx = multiprocessing.get_context("fork")
    seg = mapshare.Segment.create(name, 4096)
    ready, release = ctx.Event(), ctx.Event()
    p = ctx.Process(target=children.wait_for, args=(ready, release))
    p.start()
    try:
        assert ready.wait(TIMEOUT)
        attached = {q.pid: q.handles for q in seg.info().attached}
        assert attached == {os.getpid(): 1, p.pid: 1}  # the child holds the inherited one
        seg.close()  # the parent leaves first
        assert _exists(name)
    finally:
        release.set()
        _finish(p)
    assert p.exitcode == 0
    assert not _exists(name)  # the child's exit was the last close


# ---- 'shared' and 'persistent' lifetimes across processes -----------------------------


def test_shared_survives_first_close_with_two_processes(name: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    seg = mapshare.Segment.create(name, 4096)
    seg.write(b"still here")
    p = ctx.Process(target=children.hold_segment, args=(name, ready, release))
    p.start()
    try:
        assert ready.wait(TIMEOUT)
        seg.close()  # first close: the child still holds it
        assert _exists(name)
        with mapshare.Segment.open(name) as again:
            assert again.read(10) == b"still here"
        assert _exists(name)
    finally:
        release.set()
        _finish(p)
    assert p.exitcode == 0
    assert not _exists(name)  # the child's close was the last
    with pytest.raises(mapshare.SegmentNotFoundError):
        mapshare.Segment.open(name)


@pytest.mark.posix_only("a killed last holder leaves the name behind only on POSIX (Windows: "
                        "the name vanishes with the dead process's handles)")
@pytest.mark.parametrize("ctx_name", CONTEXTS)
def test_sigkilled_last_holder_is_collected(ctx_name: str, name: str) -> None:
    ctx = multiprocessing.get_context(ctx_name)
    ready = ctx.Event()
    p = ctx.Process(target=children.create_and_hold, args=(name, 4096, "shared", ready))
    p.start()
    try:
        assert ready.wait(TIMEOUT)
        os.kill(p.pid, signal.SIGKILL)
        p.join(TIMEOUT)
        assert p.exitcode == -signal.SIGKILL
        assert _exists(name)  # nobody closed it
        infos = [i for i in mapshare.segments() if i.name == name]
        assert len(infos) == 1
        assert infos[0].attached and infos[0].all_dead
        assert infos[0].creator_alive is False
        dry = [r for r in mapshare.collect(dry_run=True) if r.name == name]
        assert len(dry) == 1 and _exists(name)
        removed = [r for r in mapshare.collect() if r.name == name]
        assert len(removed) == 1
        assert str(p.pid) in removed[0].reason
        assert removed[0].os_name == _naming.os_name(name)
        assert not _exists(name)
    finally:
        _finish(p)


@pytest.mark.parametrize("ctx_name", CONTEXTS)
def test_collect_keeps_segment_with_live_holder(ctx_name: str, name: str) -> None:
    # fork: the child also inherits (and registers) the parent's handle, and must close
    # it when it exits, so that the last one out removes the segment
    ctx = multiprocessing.get_context(ctx_name)
    ready, release = ctx.Event(), ctx.Event()
    seg = mapshare.Segment.create(name, 4096)
    p = ctx.Process(target=children.hold_segment, args=(name, ready, release))
    p.start()
    try:
        assert ready.wait(TIMEOUT)
        seg.close()
        assert not [r for r in mapshare.collect() if r.name == name]
        assert _exists(name)
    finally:
        release.set()
        _finish(p)
    assert not _exists(name)


@pytest.mark.posix_only("fork, and " + NO_PERSISTENT_SHM)
def test_sigkilled_persistent_holder_is_kept(name: str) -> None:
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    p = ctx.Process(target=children.create_and_hold, args=(name, 4096, "persistent", ready))
    p.start()
    try:
        assert ready.wait(TIMEOUT)
        os.kill(p.pid, signal.SIGKILL)
        p.join(TIMEOUT)
        assert not [r for r in mapshare.collect() if r.name == name]
        with mapshare.Segment.open(name) as seg:
            assert seg.read(4) == b"held"
            assert seg.lifetime == "persistent"
            seg.unlink()
        assert not _exists(name)
    finally:
        _finish(p)


@pytest.mark.posix_only(NO_PERSISTENT_SHM)
@pytest.mark.parametrize("ctx_name", CONTEXTS)
def test_persistent_outlives_every_process(ctx_name: str, name: str) -> None:
    ctx = multiprocessing.get_context(ctx_name)
    p = ctx.Process(target=children.create_persistent, args=(name, b"persist"))
    p.start()
    _finish(p)
    assert p.exitcode == 0
    try:
        assert _exists(name)
        assert not [r for r in mapshare.collect() if r.name == name]
        with mapshare.Segment.open(name) as seg:
            assert seg.read(7) == b"persist"
        assert _exists(name)  # closing it did not remove it either
        with mapshare.Segment.open(name) as seg:
            seg.unlink()
        assert not _exists(name)
        with pytest.raises(mapshare.SegmentNotFoundError):
            mapshare.Segment.open(name)
    finally:
        if _exists(name):
            os.unlink(_shm(name))


# ---- pickling into workers ------------------------------------------------------------


@pytest.mark.parametrize("ctx_name", CONTEXTS)
def test_pickled_segment_reattaches_in_pool_worker(ctx_name: str, name: str) -> None:
    ctx = multiprocessing.get_context(ctx_name)
    data = os.urandom(16)
    with mapshare.Segment.create(name, 4096) as seg:
        seg.write(data)
        with ctx.Pool(1) as pool:
            got = pool.apply_async(children.use_pickled, (seg, data)).get(TIMEOUT)
        assert got == (name, 4096, data)
        assert seg.read(16, offset=16) == data


def test_pickled_segment_reattaches_in_process_pool_executor(name: str) -> None:
    data = os.urandom(16)
    ctx = multiprocessing.get_context("spawn")
    with mapshare.Segment.create(name, 4096) as seg:
        seg.write(data)
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as ex:
            got = ex.submit(children.use_pickled, seg, data).result(TIMEOUT)
        assert got == (name, 4096, data)
        assert seg.read(16, offset=16) == data


def test_pickled_file_backed_segment_reattaches(name: str, tmp_file: str) -> None:
    data = os.urandom(16)
    ctx = multiprocessing.get_context("spawn")
    with mapshare.Segment.create(name, 4096, path=tmp_file) as seg:
        seg.write(data)
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as ex:
            got = ex.submit(children.use_pickled, seg, data).result(TIMEOUT)
        assert got == (name, 4096, data)
        assert seg.read(16, offset=16) == data


# ---- the attach table -----------------------------------------------------------------

ATTACH_OFFSET, ATTACH_SLOTS = 2048, mapshare._core.ATTACH_SLOTS  # csrc/layout.h
OFF_ATTACH_END, OFF_ATTACH_RESERVED = 100, 108  # ms_header.attach_end, attach_reserved


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _fill_attach_table(name: str, first: int, last: int, pid: int) -> None:
    """Write entries for ``pid`` (count 1, start 1) into slots first..last-1, and move
    the table's end hint and reserved count past them, as attaching processes would
    have."""
    import struct

    entries = b"".join(struct.pack("<IIQ", pid, 1, 1) for _ in range(first, last))
    if WINDOWS:  # no /dev/shm: through the named section (Python's mmap, not mapshare)
        import mmap

        tag = "Local\\" + _naming.os_name(name).lstrip("/")
        with mmap.mmap(-1, ATTACH_OFFSET + 16 * last, tagname=tag) as m:
            m[ATTACH_OFFSET + 16 * first:ATTACH_OFFSET + 16 * last] = entries
            for off in (OFF_ATTACH_END, OFF_ATTACH_RESERVED):
                (v,) = struct.unpack_from("<I", m, off)
                struct.pack_into("<I", m, off, max(v, last))
        return
    fd = os.open(_shm(name), os.O_RDWR)
    try:
        os.pwrite(fd, entries, ATTACH_OFFSET + 16 * first)
        for off in (OFF_ATTACH_END, OFF_ATTACH_RESERVED):
            (v,) = struct.unpack("<I", os.pread(fd, 4, off))
            os.pwrite(fd, struct.pack("<I", max(v, last)), off)
    finally:
        os.close(fd)


def test_full_table_of_dead_processes_is_reaped_on_open(name: str) -> None:
    with mapshare.Segment.create(name, 4096) as seg:
        seg.write(b"room")
        _fill_attach_table(name, 1, ATTACH_SLOTS, _dead_pid())
        info = seg.info()
        assert len(info.attached) == ATTACH_SLOTS
        assert sum(p.alive is False for p in info.attached) == ATTACH_SLOTS - 1
        # a new process finds no free slot: it must reap the dead, not fail
        out = subprocess.run(
            [sys.executable, CHILDREN, "read", name, "4"],
            capture_output=True, text=True, timeout=TIMEOUT, check=True,
        )
        assert bytes.fromhex(out.stdout.strip()) == b"room"
        assert [p.pid for p in seg.info().attached] == [os.getpid()]


def test_dead_entries_do_not_keep_a_shared_segment(name: str) -> None:
    seg = mapshare.Segment.create(name, 4096)
    other = mapshare.Segment.open(name)
    _fill_attach_table(name, 1, 6, _dead_pid())
    assert len(seg.info().attached) == 6
    seg.close()
    assert _exists(name)  # our other handle is still open
    other.close()  # the last live user: the dead entries do not count
    assert not _exists(name)


def test_close_with_live_peer_keeps_segment_and_reaps_dead_before_it(name: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    seg = mapshare.Segment.create(name, 4096)
    p = ctx.Process(target=children.hold_segment, args=(name, ready, release))
    p.start()
    try:
        assert ready.wait(TIMEOUT)
        # the peer sits in slot 1; put dead entries after it
        _fill_attach_table(name, 2, 10, _dead_pid())
        mine = mapshare.Segment.open(name)
        mine.close()
        seg.close()
        assert _exists(name)  # the live peer holds it
        info = next(i for i in mapshare.segments() if i.name == name)
        assert p.pid in [q.pid for q in info.attached if q.alive]
    finally:
        release.set()
        _finish(p)
    assert p.exitcode == 0
    assert not _exists(name)  # the peer was last; dead entries did not count
