"""mapshare.Journal in one process: format, appending, reading, readers, durability,
retention, read-only access, and recovery from a damaged tail (simulated power loss)."""

from __future__ import annotations

import asyncio
import os
import random
import stat
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mapshare
from mapshare import _core
from mapshare._journal import M_READERS, REC_HDR, SEG_HDR

SEG = 4096


def payload(i: int) -> bytes:
    """A record whose content says which index it should be at."""
    return (b"%08d:" % i) * (1 + i % 13)


@pytest.fixture
def jpath(tmp_path: Path) -> Path:
    return tmp_path / "journal"


def fill(j: mapshare.Journal, n: int) -> None:
    for i in range(n):
        assert j.append(payload(i)) == i


def test_append_and_index_across_rolls(jpath: Path) -> None:
    with mapshare.Journal.create(jpath, segment_size=SEG) as j:
        fill(j, 300)
        assert len(j) == 300 and j.last == 299 and j.first == 0
        assert j.stats().files > 5  # it rolled
        for i in range(300):
            assert j[i] == payload(i)
        assert j[-1] == payload(299)
        assert bytes(j.view(7)) == payload(7)
        with pytest.raises(IndexError):
            j[300]
        assert j.kind(3) == "bytes"


def test_append_is_one_c_call_bound_at_open(jpath: Path) -> None:
    # "process" mode: j.append is the C method of a _core.JournalAppender (no Python
    # frame on the hot path); rolls, two handles taking turns and a closed handle go
    # through the Python policy and come back to the C path.
    with mapshare.Journal.create(jpath, segment_size=SEG) as j, mapshare.Journal.open(jpath) as k:
        assert type(j.append).__name__ == "builtin_function_or_method"
        for i in range(200):  # alternate handles: each finds the other's rolls (-2)
            assert (j if i % 2 else k).append(payload(i)) == i
        assert j.stats().files > 3
        assert [j[i] for i in range(200)] == [payload(i) for i in range(200)]
        with pytest.raises(mapshare.MessageTooLargeError, match="does not fit in a segment"):
            j.append(bytes(SEG))
        assert j.append(memoryview(b"abc")) == 200 and j[200] == b"abc"
        with pytest.raises(TypeError):
            j.append("text")
    with pytest.raises(ValueError, match="closed"):
        j.append(b"x")
    denied = pytest.raises(mapshare.PermissionDeniedError)
    with mapshare.Journal.open(jpath, access="r") as r, denied:
        r.append(b"x")
    with mapshare.Journal.open(jpath) as j:
        assert j.append(b"after") == 201 and len(j) == 202


@pytest.mark.parametrize("durability", ["process", "os-batch"])
def test_append_survives_its_segment_being_dropped(jpath: Path, durability: str) -> None:
    # Another handle rolls past this one's tail and truncates it away; this handle's
    # next read drops (unmaps) that segment while its append (the bound C append, or the
    # one-call path of "os-batch") still points at it: the append finds the tail again.
    d: Any = durability
    with mapshare.Journal.create(jpath, segment_size=SEG, durability=d) as a, \
            mapshare.Journal.open(jpath) as b:
        assert a.append(b"first") == 0
        fill_from = len(b)
        for i in range(fill_from, fill_from + 150):
            b.append(payload(i))
        assert b.truncate_before(len(b) - 1) > 0
        assert a[len(a) - 1] == payload(150)  # a's _refresh closes the removed segments
        assert a.append(b"again") == 151
        assert b[151] == b"again"


def test_dropped_handle_is_collected(jpath: Path) -> None:
    # The bound C append makes no reference cycle: dropping the handle closes it at once.
    import gc
    import weakref

    j = mapshare.Journal.create(jpath, segment_size=SEG)
    j.append(b"x")
    ref = weakref.ref(j)
    gc.disable()
    try:
        del j
        assert ref() is None
    finally:
        gc.enable()
    with mapshare.Journal.open(jpath) as j:
        assert j.append(b"y") == 1


def test_reopen_keeps_everything(jpath: Path) -> None:
    with mapshare.Journal.create(jpath, segment_size=SEG) as j:
        fill(j, 100)
    with mapshare.Journal.open(jpath) as j:
        assert j.recovered is None
        assert len(j) == 100
        assert j.append(b"more") == 100
        assert [j[i] for i in range(100)] == [payload(i) for i in range(100)]


def test_factories(jpath: Path) -> None:
    with pytest.raises(mapshare.SegmentNotFoundError):
        mapshare.Journal.open(jpath)
    j = mapshare.Journal.open_or_create(jpath, segment_size=SEG)
    with pytest.raises(mapshare.SegmentExistsError, match="already exists"):
        mapshare.Journal.create(jpath)
    with mapshare.Journal.open_or_create(jpath) as k:
        assert k.segment_size == SEG
    j.close()
    assert j.closed
    with pytest.raises(ValueError, match="closed"):
        len(j)
    with pytest.raises(TypeError):
        mapshare.Journal()
    with pytest.raises(mapshare.InvalidArgumentError, match="segment_size"):
        mapshare.Journal.create(jpath.parent / "x", segment_size=1000)
    with pytest.raises(mapshare.InvalidArgumentError, match="durability"):
        mapshare.Journal.create(jpath.parent / "y", durability="disk")  # type: ignore[arg-type]


@pytest.mark.posix_only("permission bits")
def test_owner_only_by_default(jpath: Path) -> None:
    with mapshare.Journal.create(jpath, segment_size=SEG) as j:
        j.append(b"x")
    assert stat.S_IMODE(os.stat(jpath).st_mode) == 0o700
    for f in os.listdir(jpath):
        assert stat.S_IMODE(os.stat(jpath / f).st_mode) == 0o600, f


def test_objects_and_arrays(jpath: Path) -> None:
    with mapshare.Journal.create(jpath, segment_size=SEG) as j:
        a = j.append_object({"k": [1, 2]})
        arr = np.arange(12, dtype=np.int32).reshape(3, 4)
        b = j.append_array(arr)
        assert j.get_object(a) == {"k": [1, 2]}
        got = j.get_array(b)
        assert got.dtype == np.int32 and (got == arr).all()
        assert j.kind(a) == "object" and j.kind(b) == "array"
        with pytest.raises(mapshare.InvalidArgumentError, match="not an object"):
            j.get_object(b)


def test_too_large(jpath: Path) -> None:
    with mapshare.Journal.create(jpath, segment_size=SEG) as j:
        too_large = r"4096 bytes does not fit .* \(at most 4000 bytes with segment_size=4096\)"
        with pytest.raises(mapshare.MessageTooLargeError, match=too_large):
            j.append(bytes(SEG))
        with pytest.raises(mapshare.MessageTooLargeError, match=too_large), j.reserve(SEG):
            pass
        assert j.append(bytes(SEG - SEG_HDR - REC_HDR - 8)) == 0  # the largest fits
        assert len(j) == 1


def test_reserve_commits_or_discards(jpath: Path) -> None:
    with mapshare.Journal.create(jpath, segment_size=SEG) as j:
        with j.reserve(5) as buf:
            buf[:] = b"hello"
        assert j.last == 0 and j[0] == b"hello"
        with pytest.raises(ZeroDivisionError), j.reserve(3) as buf:
            buf[:] = b"abc"
            1 / 0  # noqa: B018
        assert len(j) == 1  # discarded, no index used
        assert j.append(b"next") == 1
        for _ in range(100):  # reserve rolls too
            with j.reserve(100) as buf:
                buf[:] = bytes(range(100))
        assert j[101] == bytes(range(100))


def test_blocking_reader(jpath: Path) -> None:
    with mapshare.Journal.create(jpath, segment_size=SEG) as j:
        r = j.reader()
        with pytest.raises(mapshare.WaitTimeout):
            r.next(timeout=0.05)

        errors: list[BaseException] = []

        def produce() -> None:
            try:
                for i in range(200):
                    j.append(payload(i))
            except BaseException as exc:  # reported by the reader's assertion below
                errors.append(exc)
                raise

        t = threading.Thread(target=produce)
        t.start()
        got: list[tuple[int, bytes]] = []
        while len(got) < 200:
            try:
                idx, view = r.next(timeout=60)
            except mapshare.WaitTimeout:
                raise AssertionError(f"reader stuck at {r.position}: {errors!r}") from None
            got.append((idx, bytes(view)))
        t.join()
        assert got == [(i, payload(i)) for i in range(200)]
        end = j.reader(start="end")
        assert end.position == 200
        mid = j.reader(start=150)
        assert mid.next()[0] == 150


def test_iteration_in_batches_keeps_positions(jpath: Path) -> None:
    # Iteration takes records in batches (one C call each) but moves the position one
    # record per step: commit() inside the loop stores exactly what was handled, seek()
    # and next() inside the loop are obeyed, and rolls are followed.
    with mapshare.Journal.create(jpath, segment_size=SEG) as j:
        fill(j, 300)
        r = j.reader("worker")
        seen: list[int] = []
        for i, view in r:
            assert i == len(seen) and bytes(view) == payload(i)
            seen.append(i)
            assert r.position == i + 1
            if i == 149:
                r.commit()
                break
        assert j.reader("worker").position == 150  # resumes after its last commit
        it = iter(r)
        assert next(it)[0] == 150
        r.seek(20)
        assert next(it)[0] == 20
        assert r.next()[0] == 21
        assert next(it)[0] == 22
        rest = [next(it)[0] for _ in range(300 - 23)]
        assert rest == list(range(23, 300))
        got: list[int] = []

        def follow() -> None:
            for i, _v in r:
                got.append(i)
                if i == 349:
                    return

        t = threading.Thread(target=follow)
        t.start()
        for i in range(300, 350):  # appended while it waits at the tail
            j.append(payload(i))
        t.join(30)
        assert not t.is_alive() and got == list(range(300, 350))


def test_named_reader_resumes(jpath: Path) -> None:
    with mapshare.Journal.create(jpath, segment_size=SEG) as j:
        fill(j, 50)
        r = j.reader("billing")
        for _ in range(20):
            r.next()
        r.commit()  # 0..19 done
        r.next()
        assert j.readers() == (mapshare.ReaderPosition("billing", 20, 30),)
    with mapshare.Journal.open(jpath) as j:
        again = j.reader("billing", start="end")  # an existing name resumes, start ignored
        assert again.next()[0] == 20
        again.commit(44)
        assert j.reader("billing").position == 45
        with pytest.raises(mapshare.InvalidArgumentError, match="named reader"):
            j.reader().commit(1)
        assert j.remove_reader("billing") and not j.remove_reader("billing")
        assert j.readers() == ()
        with pytest.raises(mapshare.InvalidArgumentError, match="reader name"):
            j.reader("x" * 49)


def test_truncate_before_keeps_what_a_named_reader_needs(jpath: Path) -> None:
    with mapshare.Journal.create(jpath, segment_size=SEG) as j:
        r = j.reader("slow")
        fill(j, 400)
        files = j.stats().files
        assert j.truncate_before(300) == 0  # the reader is at 0: nothing removed
        assert j.stats().files == files
        r.commit(199)
        first = j.truncate_before(300)
        assert 0 < first <= 200
        assert j.stats().files < files
        with pytest.raises(IndexError, match="truncate_before"):
            j[first - 1]
        assert j[first] == payload(first)
        assert j.reader("slow").next()[0] == 200
        j.remove_reader("slow")
        first2 = j.truncate_before(10**9)
        assert first2 > first and j[399] == payload(399)  # the tail segment stays
        assert len(j) == 400


def test_stats(jpath: Path) -> None:
    with mapshare.Journal.create(jpath, segment_size=SEG, durability="os-batch") as j:
        s = j.stats()
        assert (s.first, s.last, s.durable, s.files) == (0, -1, -1, 1)
        fill(j, 30)
        j.reader("a").commit(9)
        s = j.stats()
        assert s.last == 29 and s.durable == 29 and s.durability == "os-batch"
        assert s.readers == (mapshare.ReaderPosition("a", 10, 20),)
        assert s.bytes == s.files * SEG + 8192


@pytest.mark.parametrize("durability", ["process", "os", "os-batch"])
def test_durability_modes(jpath: Path, durability: str) -> None:
    with mapshare.Journal.create(jpath, segment_size=SEG, durability=durability) as j:  # type: ignore[arg-type]
        fill(j, 40)
        assert j.durability == durability
        expect = -1 if durability == "process" else 39
        assert j.stats().durable == expect
        assert j.sync() == 39
        assert j.stats().durable == 39


def test_group_commit_threads(jpath: Path) -> None:
    with mapshare.Journal.create(jpath, segment_size=SEG, durability="os-batch") as j:
        handles = [mapshare.Journal.open(jpath) for _ in range(4)]

        def work(h: mapshare.Journal) -> None:
            for i in range(25):
                h.append(payload(i))

        ts = [threading.Thread(target=work, args=(h,)) for h in handles]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert len(j) == 100 and j.stats().durable == 99
        for h in handles:
            h.close()


def test_read_only(jpath: Path) -> None:
    with mapshare.Journal.create(jpath, segment_size=SEG) as j:
        fill(j, 10)
        j.reader("n").commit(4)
        with mapshare.Journal.open(jpath, access="r") as ro:
            assert ro.access == "r" and ro[3] == payload(3)
            with pytest.raises(mapshare.PermissionDeniedError, match="read-only"):
                ro.append(b"x")
            with pytest.raises(mapshare.PermissionDeniedError):
                ro.sync()
            assert ro.reader("n").position == 5  # a named reader reads its position
            r = ro.reader(start="end")
            t = threading.Timer(0.05, lambda: j.append(b"late"))
            t.start()
            assert r.next(timeout=30) == (10, memoryview(b"late"))
            t.join()


def test_async_reader(jpath: Path) -> None:
    with mapshare.Journal.create(jpath, segment_size=SEG) as j:
        async def main() -> list[int]:
            out = []
            r = j.reader()
            loop = asyncio.get_running_loop()
            loop.call_later(0.02, j.append, b"a")
            loop.call_later(0.04, j.append, b"b")
            async for idx, view in r:
                out.append(idx)
                assert bytes(view) in (b"a", b"b")
                if idx == 1:
                    break
            return out

        assert asyncio.run(main()) == [0, 1]


def test_corrupt_record_is_layout_error(jpath: Path) -> None:
    with mapshare.Journal.create(jpath, segment_size=SEG) as j:
        fill(j, 100)
        # flip a payload byte of record 0, in the first (not tail) segment file
        seg0 = jpath / "0000000000000000.seg"
        with open(seg0, "r+b") as f:
            f.seek(SEG_HDR + REC_HDR)
            b = f.read(1)
            f.seek(SEG_HDR + REC_HDR)
            f.write(bytes([b[0] ^ 0xFF]))
        with pytest.raises(mapshare.LayoutError):
            j[0]
        assert j[1] == payload(1)


def test_meta_garbage_is_refused(jpath: Path) -> None:
    with mapshare.Journal.create(jpath, segment_size=SEG):
        pass
    with open(jpath / "meta", "r+b") as f:
        f.write(b"NOTAJRNL")
    with pytest.raises(mapshare.LayoutError, match="not a mapshare journal"):
        mapshare.Journal.open(jpath)
    assert M_READERS % 64 == 0


# ---- simulated power loss: the tail cut at any byte, or garbage written -------------


def _layout(j: mapshare.Journal) -> tuple[Path, int, list[tuple[int, int]]]:
    """The tail file, its first index and each of its records' (offset, end)."""
    st = j.stats()
    seq = st.files - 1
    tail = Path(j.path) / f"{seq:016x}.seg"
    with open(tail, "rb") as f:
        data = f.read()
    first = int(_core.journal_seg_check(data, seq))
    recs = []
    for i in range(first, len(j)):
        off, pl, n, _k = _core.journal_find(data, first, i, 0, 1)
        recs.append((off, pl + ((n + 7) & ~7)))
    return tail, first, recs


@pytest.mark.parametrize("durability", ["os", "os-batch"])
def test_lost_offset_table_is_rebuilt(jpath: Path, durability: str) -> None:
    # Durable appends flush only their records' pages: after power loss the tail's
    # offset-table entries may be lost or stale.  open() rebuilds them from the records,
    # so every record is found through the table again (no scan fallback).
    with mapshare.Journal.create(jpath, segment_size=SEG, durability=durability) as j:  # type: ignore[arg-type]
        fill(j, 60)
        tail, first, recs = _layout(j)
        count = len(recs)
    assert count >= 4
    with open(tail, "r+b") as f:
        f.seek(SEG - 4 * count)
        f.write(bytes(4 * (count - 1)) + b"\xff\xff\xff\x7f")  # all lost, one stale
    data = tail.read_bytes()
    with pytest.raises(mapshare.LayoutError):
        _core.journal_find(data, first, first, 0, 0)
    with mapshare.Journal.open(jpath) as j:
        assert len(j) == 60
        data = tail.read_bytes()
        for i in range(first, 60):
            off, _pl, _n, _k = _core.journal_find(data, first, i, 0, 0)  # the table alone
            assert off == recs[i - first][0]
        assert [j[i] for i in range(60)] == [payload(i) for i in range(60)]
        assert j.append(b"next") == 60


def _damage_trials(jpath: Path, trials: int, garbage: bool, seed: int) -> None:
    rng = random.Random(seed)
    with mapshare.Journal.create(jpath, segment_size=SEG) as j:
        fill(j, 120)  # several rolls; the tail holds a few dozen records
        tail, first, recs = _layout(j)
    with open(tail, "rb") as f:
        original = f.read()
    end = recs[-1][1]
    for _ in range(trials):
        cut = rng.randrange(SEG_HDR, end + 64)
        with open(tail, "r+b") as f:
            if garbage:
                junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
                f.seek(cut)
                f.write(junk)
            else:
                f.truncate(cut)
        with open(tail, "rb") as f:
            damaged = f.read().ljust(SEG, b"\0")[:SEG]
        # records that survive: the leading ones whose bytes are unchanged
        keep = 0
        for off, rend in recs:
            if damaged[off:rend] != original[off:rend]:
                break
            keep += 1
        with mapshare.Journal.open(jpath) as j:
            assert len(j) == first + keep, (cut, garbage)
            rec = j.recovered
            if keep < len(recs):
                assert rec is not None and rec.records_dropped == len(recs) - keep
                assert rec.last_index == first + keep - 1
            for i in range(first + keep):
                assert j[i] == payload(i)
            # the journal goes on from there, dense
            assert j.append(payload(first + keep)) == first + keep
        with mapshare.Journal.open(jpath) as j:
            assert j.recovered is None  # the repair held
            assert j[first + keep] == payload(first + keep)
        with open(tail, "r+b") as f:  # restore for the next trial
            f.truncate(SEG)
            f.seek(0)
            f.write(original)
        with mapshare.Journal.open(jpath) as j:  # meta back to the full count
            assert len(j) >= first + keep


@pytest.mark.parametrize("garbage", [False, True], ids=["truncated", "garbage"])
def test_power_loss_recovery(jpath: Path, garbage: bool) -> None:
    _damage_trials(jpath, 60, garbage, seed=1234 + garbage)


def test_grown_tail_is_cut_back(jpath: Path) -> None:
    with mapshare.Journal.create(jpath, segment_size=SEG) as j:
        fill(j, 5)
    with open(jpath / "0000000000000000.seg", "ab") as f:
        f.write(os.urandom(1000))
    with mapshare.Journal.open(jpath) as j:
        assert len(j) == 5 and j.recovered is not None
        assert j.recovered.records_dropped == 0 and j.recovered.bytes_cleared == 1000
    assert os.path.getsize(jpath / "0000000000000000.seg") == SEG


def test_file_platform_calls_allocate_lock_and_restrict(tmp_path: Path) -> None:
    """The journal's file calls of the platform layer (posix_fallocate / flock / chmod on
    Linux; FileAllocationInfo or zeros + end of file / LockFileEx / a DACL on Windows):
    a file grows to the size asked with its bytes zero, the whole-file lock is taken
    and dropped (twice: it was really dropped), and a permission is applied."""
    name = str(tmp_path / "f")
    fd = os.open(name, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o600)
    try:
        os.write(fd, b"head")
        _core.journal_allocate(fd, 3 * 65536 + 8)
        assert os.fstat(fd).st_size == 3 * 65536 + 8
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, 3 * 65536 + 8)
        assert data[:4] == b"head" and data[4:] == bytes(len(data) - 4)
        for _ in range(2):
            _core.journal_flock(fd, True)
            _core.journal_flock(fd, False)
        with pytest.raises(TypeError):
            _core.journal_flock(fd)  # type: ignore[call-arg]
    finally:
        os.close(fd)
    _core.journal_restrict(name, 0o600)
    if os.name != "nt":  # Windows files have a DACL, not mode bits (Wine ignores DACLs)
        assert stat.S_IMODE(os.stat(name).st_mode) == 0o600
    with pytest.raises(mapshare.SegmentNotFoundError):
        _core.journal_restrict(str(tmp_path / "missing"), 0o600)
