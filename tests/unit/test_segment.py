"""Segment behaviour within one process: backing files, access modes, views, big
segments, permissions, lifetimes, corrupt headers, a full tmpfs, raw mappings, kind and
size mismatches, and info().  Cross-process cases are in
tests/multiprocess/test_segment_processes.py."""

from __future__ import annotations

import datetime as dt
import gc
import os
import re
import stat
import struct
from multiprocessing import shared_memory
from pathlib import Path

import pytest

import mapshare
from mapshare import _naming
from support import (
    NO_PERSISTENT_SHM,
    OFF_DATA_OFFSET,
    OFF_MAGIC,
    OFF_SIZE,
    OFF_STATE,
    OFF_TOTAL,
    OFF_VERSION,
    ROOT,
    WINDOWS,
    exists,
    poke,
    shm_path,
)

HEADER = mapshare._core.HEADER_SIZE  # header page + attach table (csrc/layout.h)
NOBODY = 65534


def _remove(name: str) -> None:
    try:
        os.unlink(shm_path(name))
    except FileNotFoundError:
        pass


# ---- file-backed data -----------------------------------------------------------------


def test_file_backed_flush_puts_data_in_file(name: str, tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    data = os.urandom(3000)
    with mapshare.Segment.create(name, 10000, path=path) as seg:
        assert seg.path == str(path)
        seg.write(data, offset=123)
        seg.flush()
        raw = path.read_bytes()
        assert data in raw
        # the header is in the file, the user area follows it
        assert raw[HEADER + 123:HEADER + 123 + len(data)] == data
        # while the name exists, it opens by name and by path
        with mapshare.Segment.open(name) as by_name:
            assert by_name.read(len(data), offset=123) == data
            # Windows: a section opened by name does not say which file it maps
            assert by_name.path == (None if WINDOWS else str(path))
        with mapshare.Segment.open(path=path) as by_path:
            assert by_path.name == name
            assert by_path.read(len(data), offset=123) == data
    # closed everywhere: the file keeps the data and reopens by path
    assert data in path.read_bytes()
    with mapshare.Segment.open(path=path) as again:
        assert again.read(len(data), offset=123) == data
    assert not exists(name)


def test_file_backed_durable_flush(name: str, tmp_path: Path) -> None:
    path = tmp_path / "durable.bin"
    with mapshare.Segment.create(name, 4096, path=path) as seg:
        seg.buf[:5] = b"fsync"
        seg.flush(durable=True)
        with open(path, "rb") as f:
            f.seek(HEADER)
            assert f.read(5) == b"fsync"


def test_file_backed_create_refuses_existing_file(name: str, tmp_path: Path) -> None:
    path = tmp_path / "exists.bin"
    path.write_bytes(b"do not touch")
    with pytest.raises(FileExistsError, match=re.escape(repr(str(path)))):
        mapshare.Segment.create(name, 4096, path=path)
    assert path.read_bytes() == b"do not touch"
    assert not exists(name)


def test_open_by_path_with_wrong_name_is_layout_error(names: object, tmp_path: Path) -> None:
    a, b = names(), names()  # type: ignore[operator]
    path = tmp_path / "x.bin"
    with mapshare.Segment.create(a, 4096, path=path), pytest.raises(
        mapshare.LayoutError, match=f"{re.escape(a)}.*{re.escape(b)}"
    ):
        mapshare.Segment.open(b, path=path)


# ---- access modes ---------------------------------------------------------------------


def test_copy_access_is_private_to_the_handle(name: str, tmp_path: Path) -> None:
    path = tmp_path / "cow.bin"
    with mapshare.Segment.create(name, 8192, path=path) as seg:
        seg.write(b"original")
        seg.flush()
        with mapshare.Segment.open(name, access="copy") as cow:
            assert cow.access == "copy"
            assert cow.read(8) == b"original"
            cow.write(b"COPY")
            cow.buf[8:12] = b"more"
            cow.flush()  # flushing a private copy must not reach the file
            assert cow.read(12) == b"COPYinalmore"
            assert seg.read(12) == b"original\0\0\0\0"
            with mapshare.Segment.open(name) as other:
                assert other.read(8) == b"original"
        assert b"COPY" not in path.read_bytes()
        assert b"original" in path.read_bytes()


def test_copy_access_anonymous_shm(name: str) -> None:
    with mapshare.Segment.create(name, 4096) as seg:
        seg.write(b"shared")
        with mapshare.Segment.open(name, access="copy") as cow:
            cow.write(b"SECRET")
            assert cow.read(6) == b"SECRET"
            assert seg.read(6) == b"shared"


def test_read_only_access_refuses_writes(name: str) -> None:
    with mapshare.Segment.create(name, 4096) as seg:
        seg.write(b"abc")
        with mapshare.Segment.open(name, access="r") as ro:
            assert ro.access == "r"
            assert ro.read(3) == b"abc"
            with pytest.raises(mapshare.PermissionDeniedError, match="access='r'"):
                ro.write(b"x")
            assert ro.buf.readonly
            with pytest.raises(TypeError):
                ro.buf[0] = 1
            with pytest.raises(TypeError):
                ro.buf[0:3] = b"xyz"
            v = ro.view(1, 2)
            assert v.readonly and bytes(v) == b"bc"
            with pytest.raises(TypeError):
                v[0] = 0
            v.release()
            # a read-only handle cannot widen a view
            with pytest.raises((PermissionError, ValueError), match="read-only"):
                ro.view(0, 10, access="rw")
        assert seg.read(3) == b"abc"


def test_invalid_access_and_lifetime_and_mode(name: str) -> None:
    with pytest.raises(ValueError, match="lifetime must be 'shared' or 'persistent'"):
        mapshare.Segment.create(name, 10, lifetime="forever")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"mode must give the owner read and write \(0o600"):
        mapshare.Segment.create(name, 10, mode=0o400)
    with pytest.raises(ValueError, match="size must be >= 0"):
        mapshare.Segment.create(name, -1)
    with mapshare.Segment.create(name, 10) as seg:
        with pytest.raises(ValueError, match="access must be 'rw', 'r' or 'copy'"):
            mapshare.Segment.open(name, access="w")  # type: ignore[arg-type]
        assert seg.size == 10
    assert not exists(name)


# ---- views ----------------------------------------------------------------------------


SIZE = 3 * 4096 + 17


@pytest.mark.parametrize(
    ("offset", "length"),
    [(0, 1), (1, 100), (4095, 2), (4096, 4096), (4097, 5000), (SIZE - 1, 1), (1, SIZE - 1)],
)
def test_unaligned_views_alias_buf(name: str, offset: int, length: int) -> None:
    with mapshare.Segment.create(name, SIZE) as seg:
        pattern = os.urandom(SIZE)
        seg.buf[:] = pattern
        v = seg.view(offset, length)
        try:
            assert len(v) == length
            assert bytes(v) == pattern[offset:offset + length]
            new = os.urandom(length)
            v[:] = new
            assert bytes(seg.buf[offset:offset + length]) == new
            assert seg.read(length, offset) == new
            seg.buf[offset] = (new[0] + 1) % 256
            assert v[0] == (new[0] + 1) % 256
        finally:
            v.release()
        seg.close()  # works once the view is released


def test_view_bounds(name: str) -> None:
    with mapshare.Segment.create(name, 100) as seg:
        for offset, length in [(0, 101), (100, 1), (99, 2), (-1, 1), (0, 0)]:
            with pytest.raises((ValueError, OverflowError)):
                seg.view(offset, length)
        with pytest.raises(ValueError, match=r"outside the segment \(size 100\)"):
            seg.read(10, offset=95)
        with pytest.raises(ValueError, match=r"outside the segment \(size 100\)"):
            seg.write(b"0123456789", offset=95)


def test_view_narrowed_to_read_only(name: str) -> None:
    with mapshare.Segment.create(name, 8192) as seg:
        seg.write(b"xyz", offset=4097)
        with seg.view(4097, 3, access="r") as v:
            assert v.readonly
            assert bytes(v) == b"xyz"
            with pytest.raises(TypeError):
                v[0] = 0


def test_close_leaves_live_views_valid(name: str) -> None:
    """close() detaches at once; memory still referenced stays mapped until released."""
    np = pytest.importorskip("numpy")
    seg = mapshare.Segment.create(name, 8192)
    try:
        v = seg.view(4097, 10)
        m = seg.buf[10:20]
        a = np.frombuffer(seg.buf, dtype=np.uint8)
        a[5] = 42
        seg.close()
        assert seg.closed
        v[0] = 1
        m[0] = 2
        assert a[5] == 42 and a[10] == 2
        with pytest.raises(ValueError, match=f"'{re.escape(name)}' is closed"):
            seg.read(1)
        with pytest.raises(ValueError, match=f"'{re.escape(name)}' is closed"):
            _ = seg.buf
        v.release()
        m.release()
        del a
    finally:
        if not seg.closed:
            seg.unlink()
    # Windows: a name lives while any view of it is mapped, and numpy 2 keeps the
    # handle's core object (not an export) as the array's base, so the mapping goes with
    # the handle itself (Linux removed the name at close())
    del seg
    gc.collect()
    assert not exists(name)


# ---- a segment over 4 GiB -------------------------------------------------------------


BIG = (4 << 30) + 8192


def test_segment_over_4_gib(name: str) -> None:
    if not WINDOWS:  # Windows: the paging file (Wine: no commit limit)
        st = os.statvfs("/dev/shm")
        if st.f_bavail * st.f_frsize < BIG + (1 << 30):
            pytest.skip("not enough room in /dev/shm for a 4 GiB segment")
    seg = mapshare.Segment.create(name, BIG)
    try:
        assert seg.size == BIG
        assert len(seg.buf) == BIG
        seg.write(b"L", offset=BIG - 1)
        seg.write(b"P", offset=(4 << 30) + 1)
        seg.buf[(4 << 30) - 1] = ord("E")
        with mapshare.Segment.open(name) as other:
            assert other.size == BIG
            assert other.read(1, BIG - 1) == b"L"
            assert other.read(1, (4 << 30) + 1) == b"P"
            assert other.buf[(4 << 30) - 1] == ord("E")
            v = other.view((4 << 30) + 1, 8191)
            try:
                assert v[0] == ord("P") and v[-1] == ord("L")
            finally:
                v.release()
        with pytest.raises(ValueError):
            seg.write(b"xx", offset=BIG - 1)
    finally:
        seg.close()
    assert not exists(name)  # 'shared': the 4 GiB are given back


# ---- permissions ----------------------------------------------------------------------


@pytest.mark.posix_only("POSIX mode bits (Windows: a DACL, which Wine does not enforce)")
def test_default_mode_is_0600(name: str) -> None:
    with mapshare.Segment.create(name, 64) as seg:
        assert stat.S_IMODE(os.stat(shm_path(name)).st_mode) == 0o600
        assert seg.info().mode & 0o777 == 0o600


@pytest.mark.posix_only("POSIX mode bits (Windows: a DACL, which Wine does not enforce)")
def test_explicit_mode_is_not_cut_by_umask(name: str) -> None:
    old = os.umask(0o077)
    try:
        with mapshare.Segment.create(name, 64, mode=0o640):
            assert stat.S_IMODE(os.stat(shm_path(name)).st_mode) == 0o640
    finally:
        os.umask(old)


@pytest.mark.posix_only("POSIX mode bits (Windows: a DACL, which Wine does not enforce)")
def test_file_backed_default_mode(name: str, tmp_path: Path) -> None:
    path = tmp_path / "m.bin"
    with mapshare.Segment.create(name, 64, path=path):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


@pytest.mark.skipif(not ROOT, reason="chown to another uid needs root")
def test_foreign_owner_is_refused(persistent: str) -> None:
    os.chown(shm_path(persistent), NOBODY, NOBODY)
    with pytest.raises(mapshare.PermissionDeniedError, match=r"allow_foreign=True") as err:
        mapshare.Segment.open(persistent)
    assert isinstance(err.value, PermissionError)
    assert str(NOBODY) in str(err.value)
    with mapshare.Segment.open(persistent, allow_foreign=True) as seg:
        assert seg.read(7) == b"payload"
    with pytest.raises(mapshare.SegmentExistsError, match="owned by uid 65534"):
        mapshare.Segment.create(persistent, 8192)


def test_world_writable_is_refused(persistent: str) -> None:
    os.chmod(shm_path(persistent), 0o666)
    with pytest.raises(
        mapshare.PermissionDeniedError,
        match=r"writable by every user \(mode 0o666\).*allow_foreign=True",
    ):
        mapshare.Segment.open(persistent)
    with mapshare.Segment.open(persistent, allow_foreign=True) as seg:
        assert seg.read(7) == b"payload"
    # creating one world-writable on purpose is allowed, and then it opens with consent
    os.unlink(shm_path(persistent))
    with mapshare.Segment.create(persistent, 64, mode=0o666) as seg:
        with pytest.raises(
            mapshare.PermissionDeniedError,
            match=r"writable by every user \(mode 0o666\).*allow_foreign=True",
        ):
            mapshare.Segment.open(persistent)
        mapshare.Segment.open(persistent, allow_foreign=True).close()


# ---- lifetimes ------------------------------------------------------------------------


def test_shared_gone_after_last_close(name: str) -> None:
    seg = mapshare.Segment.create(name, 100)
    other = mapshare.Segment.open(name)
    seg.close()
    assert exists(name)
    assert other.read(1) == b"\0"
    other.close()
    assert not exists(name)
    with pytest.raises(mapshare.SegmentNotFoundError, match=re.escape(name)) as err:
        mapshare.Segment.open(name)
    assert isinstance(err.value, FileNotFoundError)


@pytest.mark.posix_only("unlink frees the name at once (Windows: it lives while a handle is open)")
def test_shared_unlinked_while_open_keeps_working(name: str) -> None:
    with mapshare.Segment.create(name, 100) as seg:
        seg.unlink()
        assert not exists(name)
        seg.write(b"ok")
        assert seg.read(2) == b"ok"
        with pytest.raises(mapshare.SegmentNotFoundError, match=re.escape(name)):
            mapshare.Segment.open(name)
        # the name is free for a new segment
        with mapshare.Segment.create(name, 50) as fresh:
            assert fresh.read(2) == b"\0\0"
            fresh.unlink()


@pytest.mark.posix_only(NO_PERSISTENT_SHM)
def test_persistent_until_unlink(name: str) -> None:
    seg = mapshare.Segment.create(name, 100, lifetime="persistent")
    seg.write(b"stay")
    seg.close()
    try:
        assert exists(name)
        with mapshare.Segment.open(name) as again:
            assert again.lifetime == "persistent"
            assert again.read(4) == b"stay"
            again.unlink()
        assert not exists(name)
        with pytest.raises(mapshare.SegmentNotFoundError, match=re.escape(name)):
            mapshare.Segment.open(name)
    finally:
        _remove(name)


# ---- corrupt headers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("what", "offset", "data"),
    [
        ("bad magic", OFF_MAGIC, struct.pack("<Q", 0x1122334455667788)),
        ("future version", OFF_VERSION, struct.pack("<I", 3)),
        ("version 1 (attach table inside the header page)", OFF_VERSION,
         struct.pack("<I", 1)),
        ("old version", OFF_VERSION, struct.pack("<I", 0)),
        ("attach table beyond the header", 88, struct.pack("<Q", 1 << 20)),
        ("attach table over the kind area", 88, struct.pack("<Q", 1024)),
        ("attach table misaligned", 88, struct.pack("<Q", 2048 + 8)),
        ("no attach slots", 96, struct.pack("<I", 0)),
        ("more attach slots than fit", 96, struct.pack("<I", 4096 + 129)),
        ("absurd attach slots", 96, struct.pack("<I", 0xFFFFFFFF)),
        ("size beyond the mapping", OFF_SIZE, struct.pack("<Q", 1 << 40)),
        ("size overflowing", OFF_SIZE, struct.pack("<Q", (1 << 64) - 1)),
        ("total beyond the object", OFF_TOTAL, struct.pack("<Q", 1 << 40)),
        ("data offset beyond", OFF_DATA_OFFSET, struct.pack("<Q", 1 << 62)),
    ],
)
def test_corrupt_header_is_layout_error(persistent: str, what: str, offset: int,
                                        data: bytes) -> None:
    poke(persistent, offset, data)
    with pytest.raises(mapshare.LayoutError):
        mapshare.Segment.open(persistent)
    with pytest.raises(mapshare.LayoutError):
        mapshare.Segment.open(persistent, access="r")
    # the tools report it instead of crashing
    info = [i for i in mapshare.segments() if i.os_name == _naming.os_name(persistent)]
    # (another layout version's header is intact, only not readable by this mapshare)
    other = offset == OFF_VERSION and struct.unpack("<I", data)[0] != 0
    expected = "other version" if other else "corrupt"
    assert len(info) == 1 and info[0].state == expected
    assert not [r for r in mapshare.collect(dry_run=True) if r.os_name == info[0].os_name]


def test_corrupt_header_through_raw_mapping(persistent: str) -> None:
    with mapshare.Segment.open(_naming.os_name(persistent), raw=True) as raw:
        assert raw.raw and raw.size == HEADER + 8192
        assert raw.read(7, offset=HEADER) == b"payload"
        raw.write(b"\xff" * 8, offset=OFF_MAGIC)
    with pytest.raises(mapshare.LayoutError):
        mapshare.Segment.open(persistent)


def test_truncated_object_is_layout_error(persistent: str) -> None:
    os.truncate(shm_path(persistent), HEADER + 100)  # shorter than total_size says
    with pytest.raises(mapshare.LayoutError):
        mapshare.Segment.open(persistent)


@pytest.mark.posix_only("makes an empty object through /dev/shm")
def test_empty_object_is_initializing(name: str) -> None:
    fd = os.open(shm_path(name), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    os.close(fd)
    try:
        with pytest.raises(mapshare.LayoutError, match="never finished"):
            mapshare.Segment.open(name, init_timeout=0.1)
        with pytest.raises(mapshare.SegmentExistsError, match=re.escape(name)):
            mapshare.Segment.create(name, 10)
    finally:
        _remove(name)


@pytest.mark.posix_only(NO_PERSISTENT_SHM)
def test_destroyed_but_still_named_is_listed_and_collected(name: str,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    # The last user marked it destroyed, then died before removing the name.
    with mapshare.Segment.create(name, 5000, lifetime="persistent"):
        pass
    try:
        poke(name, OFF_STATE, struct.pack("<I", 2))  # MS_STATE_DESTROYED
        with pytest.raises(mapshare.SegmentNotFoundError, match=f"{re.escape(name)}.* destroyed"):
            mapshare.Segment.open(name, init_timeout=0.1)
        # the tools list it instead of crashing
        info = [i for i in mapshare.segments() if i.os_name == _naming.os_name(name)]
        assert len(info) == 1
        assert info[0].state == "destroyed"
        assert info[0].name == name and info[0].size == 5000 and info[0].kind == "segment"
        assert info[0].creator_pid == os.getpid()
        from mapshare import _cli

        assert _cli.main(["ls"]) == 0
        assert name in capsys.readouterr().out
        removed = [r for r in mapshare.collect() if r.os_name == _naming.os_name(name)]
        assert len(removed) == 1 and "destroyed" in removed[0].reason
        assert removed[0].name == name
        assert not exists(name)
        # the name is free again
        mapshare.Segment.create(name, 10).close()
        # and create() itself reclaims a destroyed one (no gc needed)
        with mapshare.Segment.create(name, 5000, lifetime="persistent"):
            pass
        poke(name, OFF_STATE, struct.pack("<I", 2))
        mapshare.Segment.create(name, 10).close()
    finally:
        _remove(name)


# ---- raw mappings of foreign objects --------------------------------------------------


@pytest.mark.posix_only("a foreign POSIX shm object made through /dev/shm")
def test_raw_posix_shm_made_with_os_open() -> None:
    shm_name = f"foreign-{os.getpid()}-{os.urandom(3).hex()}"
    fd = os.open("/dev/shm/" + shm_name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.ftruncate(fd, 10000)
        os.pwrite(fd, b"from os.open", 5000)
        with mapshare.Segment.open("/" + shm_name, raw=True) as seg:
            assert seg.raw and seg.size == 10000
            assert seg.read(12, offset=5000) == b"from os.open"
            seg.write(b"back", offset=9996)
            assert seg.info().kind == "raw"
        assert os.pread(fd, 4, 9996) == b"back"
    finally:
        os.close(fd)
        os.unlink("/dev/shm/" + shm_name)


def test_raw_multiprocessing_shared_memory() -> None:
    shm = shared_memory.SharedMemory(create=True, size=4096)
    assert shm.buf is not None  # typed Optional: None only after close()
    try:
        shm.buf[:5] = b"stdlb"
        with mapshare.Segment.open(shm.name, raw=True) as seg:
            assert seg.read(5) == b"stdlb"
            seg.buf[5:10] = b"mshar"
            with mapshare.Segment.open(shm.name, raw=True, access="r") as ro, \
                    pytest.raises(mapshare.PermissionDeniedError, match="access='r'"):
                ro.write(b"x")
        assert bytes(shm.buf[:10]) == b"stdlbmshar"
    finally:
        shm.close()
        shm.unlink()


def test_raw_plain_file(tmp_path: Path) -> None:
    path = tmp_path / "plain.dat"
    path.write_bytes(b"plain file contents" + b"\0" * 5000)
    with mapshare.Segment.open(path=path, raw=True) as seg:
        assert seg.size == 5019
        assert seg.read(19) == b"plain file contents"
        with seg.view(4097, 10) as v:
            v[:3] = b"abc"
        seg.flush()
    assert path.read_bytes()[4097:4100] == b"abc"


def test_raw_missing_and_empty(tmp_path: Path) -> None:
    with pytest.raises(
        mapshare.SegmentNotFoundError, match=re.escape(repr(str(tmp_path / "nope")))
    ):
        mapshare.Segment.open(path=tmp_path / "nope", raw=True)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(mapshare.LayoutError, match=re.escape(str(empty))):
        mapshare.Segment.open(path=empty, raw=True)


# ---- size and kind mismatches ---------------------------------------------------------


def test_open_or_create_with_other_size_is_layout_error(name: str) -> None:
    with mapshare.Segment.open_or_create(name, 1000) as seg:
        with mapshare.Segment.open_or_create(name, 1000) as same:
            assert same.size == 1000
        with pytest.raises(
            mapshare.LayoutError, match="of 1000 bytes; asked for a segment of 2000 bytes"
        ) as err:
            mapshare.Segment.open_or_create(name, 2000)
        assert "1000" in str(err.value)
        assert seg.info().attached[0].handles == 1  # the failed attempt let go
    assert not exists(name)


def test_other_kinds_are_layout_errors(names: object) -> None:
    lname, cname = names(), names()  # type: ignore[operator]
    lock = mapshare.Lock.create(lname)
    ch = mapshare.Channel.create(cname, 4096)
    try:
        with pytest.raises(
            mapshare.LayoutError, match=f"'{re.escape(lname)}' is a lock, not a channel"
        ):
            mapshare.Channel.open(lname)
        with pytest.raises(
            mapshare.LayoutError, match=f"'{re.escape(cname)}' is a channel, not a lock"
        ):
            mapshare.Lock.open(cname)
        with pytest.raises(
            mapshare.LayoutError, match=f"'{re.escape(lname)}' is a lock, not an? event"
        ):
            mapshare.Event.open(lname)
        with pytest.raises(
            mapshare.LayoutError, match=f"'{re.escape(cname)}' is a channel, not a semaphore"
        ):
            mapshare.Semaphore.open(cname)
        with pytest.raises(mapshare.LayoutError, match=f"'{re.escape(lname)}' is a lock"):
            mapshare.Segment.open_or_create(lname, 0)
        with pytest.raises(
            mapshare.LayoutError, match=f"'{re.escape(cname)}' is a channel, not a lock"
        ):
            mapshare.Lock.open_or_create(cname)
        with pytest.raises(mapshare.SegmentExistsError, match=re.escape(lname)):
            mapshare.Segment.create(lname, 10)
    finally:
        lock.close()
        ch.close()


def test_plain_segment_open_refuses_other_kinds(names: object) -> None:
    # Segment.open of a channel used to hand out write access to its ring.  Other
    # kinds are refused unless asked for (kind='any' or by their kind), and then the
    # handle says what it is.
    lname, cname = names(), names()  # type: ignore[operator]
    lock = mapshare.Lock.create(lname)
    ch = mapshare.Channel.create(cname, 4096)
    try:
        for n, kind in ((lname, "lock"), (cname, "channel")):
            with pytest.raises(mapshare.LayoutError, match=f"is a {kind}, not a segment"):
                mapshare.Segment.open(n)
            with pytest.raises(mapshare.LayoutError, match=f"is a {kind}, not a segment"):
                mapshare.Segment.open(n, access="r")
        with mapshare.Segment.open(lname, kind="any") as seg:
            assert seg.info().kind == "lock" and seg.size == 0
        with mapshare.Segment.open(cname, kind="channel") as seg:
            assert seg.info().kind == "channel"
        with pytest.raises(mapshare.LayoutError, match="is a channel, not a lock"):
            mapshare.Segment.open(cname, kind="lock")
        with pytest.raises(ValueError, match="kind must be"):
            mapshare.Segment.open(cname, kind="ring")
    finally:
        lock.close()
        ch.close()


# ---- info and segments() --------------------------------------------------------------


def test_info_and_segments(name: str) -> None:
    before = dt.datetime.now(dt.timezone.utc)
    with mapshare.Segment.create(name, 12345) as seg:
        other = mapshare.Segment.open(name)
        try:
            info = seg.info()
            assert info.name == name
            assert info.os_name == _naming.os_name(name)
            assert info.kind == "segment"
            assert info.size == 12345
            assert info.lifetime == "shared"
            assert info.state == "ready"
            assert info.path is None
            assert info.creator_pid == os.getpid()
            assert info.creator_alive is True
            assert info.uid == (0 if WINDOWS else os.geteuid())  # Windows: no uid, 0
            assert info.created is not None
            assert before - dt.timedelta(seconds=5) <= info.created
            assert info.created <= dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=5)
            mine = [p for p in info.attached if p.pid == os.getpid()]
            assert len(mine) == 1 and mine[0].handles == 2 and mine[0].alive is True
            assert not info.all_dead
            assert info.lock is not None and not info.lock.held
            d = info.as_dict()
            assert d["name"] == name and d["size"] == 12345 and d["kind"] == "segment"
            listed = [i for i in mapshare.segments() if i.name == name]
            assert len(listed) == 1
            assert listed[0].size == 12345 and listed[0].creator_pid == os.getpid()
            assert listed[0].attached == info.attached
        finally:
            other.close()
        assert [p.handles for p in seg.info().attached if p.pid == os.getpid()] == [1]
    assert not [i for i in mapshare.segments() if i.name == name]


def test_info_of_file_backed_and_persistent(name: str, tmp_path: Path) -> None:
    path = tmp_path / "i.bin"
    with mapshare.Segment.create(name, 100, path=path, lifetime="persistent") as seg:
        info = seg.info()
        assert info.path == str(path)
        assert info.lifetime == "persistent"
        listed = [i for i in mapshare.segments() if i.name == name]
        assert len(listed) == 1
        # Windows: a section listed by name does not say which file it maps
        assert listed[0].path == (None if WINDOWS else str(path)) and listed[0].size == 100
        assert listed[0].kind == "segment"
        seg.unlink()
    assert not exists(name)
    assert path.exists()


def test_repr_and_pickle_roundtrip_in_process(name: str) -> None:
    import pickle

    with mapshare.Segment.create(name, 64) as seg:
        seg.write(b"pickled")
        assert name in repr(seg)
        with pickle.loads(pickle.dumps(seg)) as again:
            assert again.name == name and again.read(7) == b"pickled"
    assert "closed" in repr(seg)


def test_constructor_is_refused() -> None:
    with pytest.raises(
        TypeError, match=r"use Segment\.create\(\), \.open\(\) or \.open_or_create\(\)"
    ):
        mapshare.Segment()
