"""Segments across real processes: spawn, fork and plain subprocess; file-backed data
outliving processes; copy-on-write isolation; create races; other users; shared
lifetime with SIGKILLed holders; pickling into workers."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import re
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _segment_children as children
import pytest

import mapshare
from mapshare import _naming
from support import (
    NO_PERSISTENT_SHM,
    OFF_ATTACH_END,
    OFF_ATTACH_RESERVED,
    OFF_CREATOR_PID,
    OFF_MAGIC,
    ROOT,
    WINDOWS,
    dead_pid,
    exists,
    mp_context,
    poke,
    shm_path,
)

CHILDREN = os.path.join(os.path.dirname(__file__), "_segment_children.py")
TIMEOUT = 60.0
CONTEXTS = ["spawn", "fork"]


def _finish(*procs: Any) -> None:
    for p in procs:
        p.join(TIMEOUT)
        if p.is_alive():
            p.kill()
            p.join(5)


def _run_child(ctx_name: str, target: Any, *args: Any) -> tuple[Any, ...]:
    """Run ``target(*args, conn)`` in a child and return what it sent."""
    ctx = mp_context(ctx_name)
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
    ctx = mp_context(ctx_name)
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
    assert not exists(name)
    with pytest.raises(mapshare.SegmentNotFoundError, match=re.escape(name)):
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
        if exists(name):
            os.unlink(shm_path(name))
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
    assert not exists(name)


# ---- another user ---------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0,
                    reason="dropping privileges to uid 65534 needs root")
def test_other_uid_cannot_open(name: str) -> None:
    with mapshare.Segment.create(name, 4096) as seg:
        assert os.stat(shm_path(name)).st_mode & 0o777 == 0o600
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
        assert exists(name)
    finally:
        release.set()
        _finish(p)
    assert p.exitcode == 0
    assert not exists(name)  # the child's exit was the last close


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
        assert exists(name)
        with mapshare.Segment.open(name) as again:
            assert again.read(10) == b"still here"
        assert exists(name)
    finally:
        release.set()
        _finish(p)
    assert p.exitcode == 0
    assert not exists(name)  # the child's close was the last
    with pytest.raises(mapshare.SegmentNotFoundError, match=re.escape(name)):
        mapshare.Segment.open(name)


@pytest.mark.posix_only("a killed last holder leaves the name behind only on POSIX (Windows: "
                        "the name vanishes with the dead process's handles)")
@pytest.mark.parametrize("ctx_name", CONTEXTS)
def test_sigkilled_last_holder_is_collected(ctx_name: str, name: str) -> None:
    ctx = mp_context(ctx_name)
    ready = ctx.Event()
    p = ctx.Process(target=children.create_and_hold, args=(name, 4096, "shared", ready))
    p.start()
    try:
        assert ready.wait(TIMEOUT) and p.pid is not None
        os.kill(p.pid, signal.SIGKILL)
        p.join(TIMEOUT)
        assert p.exitcode == -signal.SIGKILL
        assert exists(name)  # nobody closed it
        infos = [i for i in mapshare.segments() if i.name == name]
        assert len(infos) == 1
        assert infos[0].attached and infos[0].all_dead
        assert infos[0].creator_alive is False
        dry = [r for r in mapshare.collect(dry_run=True) if r.name == name]
        assert len(dry) == 1 and exists(name)
        removed = [r for r in mapshare.collect() if r.name == name]
        assert len(removed) == 1
        assert str(p.pid) in removed[0].reason
        assert removed[0].os_name == _naming.os_name(name)
        assert not exists(name)
    finally:
        _finish(p)


@pytest.mark.posix_only("the meta lock is a glibc robust mutex: its word is forged here")
def test_collect_skips_an_object_whose_meta_lock_a_dead_thread_holds_unmarked(
    name: str,
) -> None:
    # A lock word naming a dead thread without the kernel's owner-died bit is never
    # handed over: collect() gives up on that object after two 5 s slices (it hung) and
    # goes on; the object stays, listed, for a human to look at.
    ctx = mp_context("spawn")
    ready = ctx.Event()
    p = ctx.Process(target=children.create_and_hold, args=(name, 4096, "shared", ready))
    p.start()
    try:
        assert ready.wait(TIMEOUT) and p.pid is not None
        os.kill(p.pid, signal.SIGKILL)
        p.join(TIMEOUT)
        gone = dead_pid()
        poke(name, 384 + 8, struct.pack("<I", gone))  # ms_header.meta_lock: __owner
        poke(name, 384, struct.pack("<I", gone))  # __lock: the tid, no FUTEX_OWNER_DIED
        t0 = time.monotonic()
        assert not [r for r in mapshare.collect() if r.name == name]
        assert time.monotonic() - t0 < 40
        assert exists(name)
    finally:
        _finish(p)
        if exists(name):
            os.unlink(shm_path(name))


@pytest.mark.parametrize("ctx_name", CONTEXTS)
def test_collect_keeps_segment_with_live_holder(ctx_name: str, name: str) -> None:
    # fork: the child also inherits (and registers) the parent's handle, and must close
    # it when it exits, so that the last one out removes the segment
    ctx = mp_context(ctx_name)
    ready, release = ctx.Event(), ctx.Event()
    seg = mapshare.Segment.create(name, 4096)
    p = ctx.Process(target=children.hold_segment, args=(name, ready, release))
    p.start()
    try:
        assert ready.wait(TIMEOUT)
        seg.close()
        assert not [r for r in mapshare.collect() if r.name == name]
        assert exists(name)
    finally:
        release.set()
        _finish(p)
    assert not exists(name)


@pytest.mark.posix_only("fork, and " + NO_PERSISTENT_SHM)
def test_sigkilled_persistent_holder_is_kept(name: str) -> None:
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    p = ctx.Process(target=children.create_and_hold, args=(name, 4096, "persistent", ready))
    p.start()
    try:
        assert ready.wait(TIMEOUT) and p.pid is not None
        os.kill(p.pid, signal.SIGKILL)
        p.join(TIMEOUT)
        assert not [r for r in mapshare.collect() if r.name == name]
        with mapshare.Segment.open(name) as seg:
            assert seg.read(4) == b"held"
            assert seg.lifetime == "persistent"
            seg.unlink()
        assert not exists(name)
    finally:
        _finish(p)


@pytest.mark.posix_only(NO_PERSISTENT_SHM)
@pytest.mark.parametrize("ctx_name", CONTEXTS)
def test_persistent_outlives_every_process(ctx_name: str, name: str) -> None:
    ctx = mp_context(ctx_name)
    p = ctx.Process(target=children.create_persistent, args=(name, b"persist"))
    p.start()
    _finish(p)
    assert p.exitcode == 0
    try:
        assert exists(name)
        assert not [r for r in mapshare.collect() if r.name == name]
        with mapshare.Segment.open(name) as seg:
            assert seg.read(7) == b"persist"
        assert exists(name)  # closing it did not remove it either
        with mapshare.Segment.open(name) as seg:
            seg.unlink()
        assert not exists(name)
        with pytest.raises(mapshare.SegmentNotFoundError, match=re.escape(name)):
            mapshare.Segment.open(name)
    finally:
        if exists(name):
            os.unlink(shm_path(name))


# ---- pickling into workers ------------------------------------------------------------


@pytest.mark.parametrize("ctx_name", CONTEXTS)
def test_pickled_segment_reattaches_in_pool_worker(ctx_name: str, name: str) -> None:
    ctx = mp_context(ctx_name)
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


def _fill_attach_table(name: str, first: int, last: int, pid: int) -> None:
    """Write entries for ``pid`` (count 1, start 1) into slots first..last-1, and move
    the table's end hint and reserved count past them, as attaching processes would
    have."""
    import struct

    entries = b"".join(struct.pack("<IIQ", pid, 1, 1) for _ in range(first, last))
    if WINDOWS:  # no /dev/shm: through the named section (Python's mmap, not mapshare)
        import mmap

        tag = "Local\\" + _naming.os_name(name).lstrip("/")
        # tagname is Windows-only: mypy checks this file as Linux
        with mmap.mmap(-1, ATTACH_OFFSET + 16 * last, tagname=tag) as m:  # type: ignore[call-arg]
            m[ATTACH_OFFSET + 16 * first:ATTACH_OFFSET + 16 * last] = entries
            for off in (OFF_ATTACH_END, OFF_ATTACH_RESERVED):
                (v,) = struct.unpack_from("<I", m, off)
                struct.pack_into("<I", m, off, max(v, last))
        return
    fd = os.open(shm_path(name), os.O_RDWR)
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
        _fill_attach_table(name, 1, ATTACH_SLOTS, dead_pid())
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
    _fill_attach_table(name, 1, 6, dead_pid())
    assert len(seg.info().attached) == 6
    seg.close()
    assert exists(name)  # our other handle is still open
    other.close()  # the last live user: the dead entries do not count
    assert not exists(name)


def test_close_with_live_peer_keeps_segment_and_reaps_dead_before_it(name: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    seg = mapshare.Segment.create(name, 4096)
    p = ctx.Process(target=children.hold_segment, args=(name, ready, release))
    p.start()
    try:
        assert ready.wait(TIMEOUT)
        # the peer sits in slot 1; put dead entries after it
        _fill_attach_table(name, 2, 10, dead_pid())
        mine = mapshare.Segment.open(name)
        mine.close()
        seg.close()
        assert exists(name)  # the live peer holds it
        info = next(i for i in mapshare.segments() if i.name == name)
        assert p.pid in [q.pid for q in info.attached if q.alive]
    finally:
        release.set()
        _finish(p)
    assert p.exitcode == 0
    assert not exists(name)  # the peer was last; dead entries did not count


def test_never_finished_header(persistent: str) -> None:
    poke(persistent, OFF_MAGIC, b"\0" * 8)
    poke(persistent, OFF_CREATOR_PID, struct.pack("<I", dead_pid()))
    t0 = time.monotonic()
    with pytest.raises(mapshare.LayoutError) as err:
        mapshare.Segment.open(persistent, init_timeout=0.2)
    assert time.monotonic() - t0 < 30  # it gave up instead of hanging
    assert "never finished" in str(err.value)
    info = [i for i in mapshare.segments() if i.os_name == _naming.os_name(persistent)]
    assert info[0].state == "initializing"
    # young: gc leaves it (its creator might still be writing); old: gc removes it
    assert not [r for r in mapshare.collect() if r.os_name == info[0].os_name]
    past = time.time() - 3600
    os.utime(shm_path(persistent), (past, past))
    removed = [r for r in mapshare.collect() if r.os_name == info[0].os_name]
    assert len(removed) == 1 and "never finished" in removed[0].reason
    assert not os.path.exists(shm_path(persistent))


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    if not ROOT:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_full_tmpfs_raises_no_space_at_create(name: str, small_tmpfs: Path) -> None:
    path = small_tmpfs / "big.bin"
    with pytest.raises(mapshare.NoSpaceError, match=re.escape(str(path))) as err:
        mapshare.Segment.create(name, 2 << 20, path=path)
    assert isinstance(err.value, OSError)
    assert not path.exists()
    assert os.listdir(small_tmpfs) == []
    assert not exists(name)
    # exactly the limit fits (header page + user area == 1 MiB: the rest of the attach
    # table is reserved page by page, only once more than 128 processes attach)...
    exact = small_tmpfs / "exact.bin"
    with mapshare.Segment.create(name, (1 << 20) - 4096, path=exact) as seg:
        seg.write(b"E", offset=seg.size - 1)  # touching the last page is safe
        assert os.stat(exact).st_blocks * 512 == 1 << 20
        # ...and then nothing more does
        with pytest.raises(mapshare.NoSpaceError, match=re.escape(str(small_tmpfs / "one.bin"))):
            mapshare.Segment.create(name + "x", 1, path=small_tmpfs / "one.bin")
        assert os.listdir(small_tmpfs) == ["exact.bin"]
        assert not os.path.exists(shm_path(name + "x"))
        assert seg.read(1, seg.size - 1) == b"E"
        # the 129th attached process needs a table page that cannot be had: a clear
        # NoSpaceError when it opens, never SIGBUS
        start = mapshare._core.process_start(1)
        with open(exact, "r+b") as f:
            f.seek(2048 + 16)
            f.write(struct.pack("<IIQ", 1, 1, start) * 127)  # slots 1-127: pid 1, alive
            f.seek(100)
            f.write(struct.pack("<II", 128, 128))  # attach_end, attach_hint
        assert len(seg.info().attached) == 128
        out = subprocess.run(
            [sys.executable, "-c",
             "import sys, mapshare\n"
             "try:\n    mapshare.Segment.open(sys.argv[1])\n"
             "except mapshare.NoSpaceError as e:\n    print('NoSpaceError', e)\n",
             name],
            capture_output=True, text=True, timeout=60,
        )
        assert out.returncode == 0 and out.stdout.startswith("NoSpaceError"), out
        assert len(seg.info().attached) == 128
        assert seg.read(1, seg.size - 1) == b"E"
        # the forged entries look alive, so closing would rightly keep the name
        seg.unlink()
