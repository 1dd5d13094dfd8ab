"""mapshare.Latest in one process: versions dense from 0, variable sizes up to max_size,
objects and arrays, zero-copy views that report being overwritten, waiting for an
update (threads and asyncio), the factories, pickling, and garbage written into the
header or the buffers (LayoutError, never a crash or a hang).  Other processes, torn
reads and killed writers: tests/multiprocess/test_latest_processes.py."""

from __future__ import annotations

import asyncio
import pickle
import random
import struct
import threading
import time
from typing import Any

import numpy as np
import pytest

import mapshare
from mapshare import (
    Latest,
    LayoutError,
    MapshareError,
    MessageKindError,
    MessageTooLargeError,
    Overwritten,
    Topic,
    WaitTimeout,
    _core,
)
from support import poke

KIND_AREA = 1024
# ms_latest fields (csrc/layout.h)
OFF_MAX_SIZE, OFF_BUF_OFFSET, OFF_STRIDE, OFF_BUFFERS = 0, 8, 16, 24
OFF_VERSION, OFF_WRITER_DEATHS = 64, 80
# an ms_latest_buf's fields, from the buffer's start
BUF_SEQ, BUF_LENGTH, BUF_KIND = 0, 8, 16


def stride(max_size: int) -> int:
    return 64 + (max_size + 63) // 64 * 64


def buf_at(i: int, max_size: int) -> int:
    """Offset of buffer ``i`` in the object."""
    return _core.HEADER_SIZE + i * stride(max_size)


def test_a_new_slot_holds_the_empty_value_at_version_0(name: str) -> None:
    with Latest.create(name, 64) as lt:
        assert lt.get() == (b"", 0)
        assert lt.version == 0
        assert lt.max_size == 64
        assert lt.buffers == 3


def test_versions_are_dense_and_every_reader_sees_the_newest(name: str) -> None:
    with Latest.create(name, 100) as w, Latest.open(name) as r:
        for i in range(1, 50):
            data = bytes([i]) * (i % 101)
            assert w.set(data) == i
            assert r.get() == (data, i)
            assert r.version == i


def test_variable_sizes_up_to_max_size(name: str) -> None:
    with Latest.create(name, 1000) as lt:
        for n in (0, 1, 7, 8, 63, 64, 65, 999, 1000, 3, 0):
            v = lt.set(b"x" * n)
            assert lt.get() == (b"x" * n, v)
        with pytest.raises(MessageTooLargeError):
            lt.set(b"x" * 1001)
        assert lt.get()[0] == b""  # the refused value changed nothing


def test_set_takes_any_buffer(name: str) -> None:
    with Latest.create(name, 64) as lt:
        lt.set(bytearray(b"ab"))
        assert lt.get()[0] == b"ab"
        lt.set(memoryview(b"xyz")[1:])
        assert lt.get()[0] == b"yz"
        lt.set(np.arange(3, dtype=np.uint8))
        assert lt.get()[0] == b"\x00\x01\x02"
        with pytest.raises(TypeError):
            lt.set("text")


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, 2**41])
def test_bad_max_size_is_refused(name: str, bad: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        Latest.create(name, bad)


def test_objects_round_trip_and_kinds_are_checked(name: str) -> None:
    with Latest.create(name, 4096) as lt:
        obj = {"pose": (1.0, 2.0, 3.0), "frame": 7, "blob": b"\x00" * 100}
        v = lt.set_object(obj)
        assert lt.get_object() == (obj, v)
        with pytest.raises(MessageKindError) as e:
            lt.get_array()
        assert e.value.kind == "object"
        lt.set(b"raw")
        with pytest.raises(MessageKindError):
            lt.get_object()
        with pytest.raises(MessageTooLargeError):
            lt.set_object(b"x" * 5000)


@pytest.mark.parametrize("dtype", ["<i4", ">i8", "<f8", "c16", "?", "M8[ms]", "U5",
                                   [("a", "<i2"), ("b", ">f4", (2,))]])
@pytest.mark.parametrize("order", ["C", "F"])
def test_arrays_round_trip(name: str, dtype: Any, order: str) -> None:
    dt = np.dtype(dtype)
    raw = (np.arange(12 * dt.itemsize) % (2 if dt == np.bool_ else 251)).astype(np.uint8)
    base = np.frombuffer(raw.tobytes(), dt).reshape(3, 4)
    a = np.asfortranarray(base) if order == "F" else base.copy()
    with Latest.create(name, 4096) as lt:
        v = lt.set_array(a)
        b, version = lt.get_array()
        assert version == v
        assert b.dtype == a.dtype and b.shape == a.shape
        assert b.tobytes(order="A") == a.tobytes(order="A")
        assert not b.flags.writeable


def test_get_array_cannot_be_changed_through_a_returned_dtype(name: str) -> None:
    """get_array reuses dtypes parsed before; a structured dtype can be renamed in place
    (``dt.names = ...``), so it is never shared between results."""
    a = np.zeros(3, [("a", "<i2"), ("b", ">f4")])
    with Latest.create(name, 4096) as lt:
        lt.set_array(a)
        b, _ = lt.get_array()
        b.dtype.names = ("x", "y")
        c, _ = lt.get_array()
        assert c.dtype.names == ("a", "b")


@pytest.mark.posix_only("writes the object through /dev/shm")
@pytest.mark.parametrize("where,data", [
    (0, b"MSX1"),                                  # magic
    (4, struct.pack("<I", 4000)),                  # descr length past the value
    (8, struct.pack("<I", 65)),                    # ndim
    (12, struct.pack("<I", ord("X"))),             # order
    (20, b"[[[["),                                 # the descr text
    (16 + len(repr("<f8")), struct.pack("<q", 10**12)),  # shape: far more than the value
    (16 + len(repr("<f8")), struct.pack("<q", -1)),
])
def test_get_array_refuses_a_corrupt_header(name: str, where: int, data: bytes) -> None:
    """The result is allocated from the value's header: a forged header is a
    LayoutError (never a huge allocation, never data read past the value) while the
    value itself is intact (its sequence word did not move), not a retry forever."""
    with Latest.create(name, 4096) as lt:
        lt.set_array(np.arange(10.0))  # version 1: buffer 1
        poke(name, buf_at(1, 4096) + 64 + where, data)
        start = time.monotonic()
        with pytest.raises(LayoutError):
            lt.get_array()
        assert time.monotonic() - start < 5  # bounds a hang, not a speed assertion
        lt.set_array(np.arange(3.0))
        b, version = lt.get_array()
        assert version == 2 and b.tolist() == [0.0, 1.0, 2.0]


@pytest.mark.posix_only("writes the object through /dev/shm")
def test_a_header_parsed_before_is_still_checked_against_the_length(name: str) -> None:
    """get_array reuses the parse of a header it has seen; the value's length is checked
    on every call (a forged short length with a familiar header: LayoutError)."""
    with Latest.create(name, 4096) as lt:
        lt.set_array(np.arange(10.0))
        lt.get_array()  # the header is now known
        lt.set_array(np.arange(10.0))  # version 2: buffer 2
        poke(name, buf_at(2, 4096) + BUF_LENGTH, struct.pack("<Q", 40))
        with pytest.raises(LayoutError):
            lt.get_array()


def test_a_value_replaced_after_the_peek_is_never_copied_as_valid(name: str) -> None:
    """get_array's copy (_copy_into) validates the peeked value's sequence word: once the
    writer reused its buffer, the copy reports it (get_array then reads the new value)."""
    with Latest.create(name, 64) as lt:
        lt.set(b"a" * 8)
        _off, _length, version, _kind, buffer, seq = lt._peek()
        dest = bytearray(8)
        assert lt._copy_into(buffer, seq, 0, dest)
        assert dest == b"a" * 8
        for i in range(lt.buffers):  # the writer comes round to the same buffer
            lt.set(b"%d" % i * 8)
        assert not lt._copy_into(buffer, seq, 0, dest)
        assert not lt._copy_into(buffer, seq, 0, None)
        with pytest.raises(ValueError):
            lt._copy_into(buffer, seq, 60, bytearray(8))  # beyond max_size
        lt.set_array(np.arange(4))
        b, v = lt.get_array()
        assert v == version + lt.buffers + 1 and b.tolist() == [0, 1, 2, 3]


def test_object_arrays_are_refused(name: str) -> None:
    with Latest.create(name, 4096) as lt, pytest.raises(ValueError):
        lt.set_array(np.array([object()]))


def test_view_is_zero_copy_and_read_only(name: str) -> None:
    with Latest.create(name, 64) as lt:
        lt.set(b"hello")
        with lt.view() as mv:
            assert bytes(mv) == b"hello"
            assert mv.readonly
            with pytest.raises(TypeError):
                mv[0] = 0
        with lt.view_version() as (mv, version):
            assert bytes(mv) == b"hello" and version == 1


def test_a_view_survives_fewer_sets_than_buffers_and_reports_more(name: str) -> None:
    with Latest.create(name, 64) as lt:
        lt.set(b"first")
        with lt.view() as mv:
            lt.set(b"second")
            lt.set(b"third")  # the writer never touched the viewed buffer
            assert bytes(mv) == b"first"
        with pytest.raises(Overwritten), lt.view() as mv:
            for i in range(3):  # the third set reuses the viewed buffer
                lt.set(b"v%d" % i)
        assert lt.get() == (b"v2", 6)


def test_the_writer_is_never_held_back_by_a_view(name: str) -> None:
    with Latest.create(name, 64) as lt, pytest.raises(Overwritten), lt.view():
        for i in range(100):
            assert lt.set(b"%d" % i) == i + 1


def test_wait_for_update_times_out_and_wakes(name: str) -> None:
    with Latest.create(name, 64) as lt:
        with pytest.raises(WaitTimeout):
            lt.wait_for_update(0, timeout=0.05)
        assert lt.wait_for_update(0, timeout=0) if lt.set(b"a") else False
        assert lt.wait_for_update(0) == 1  # already newer: no wait
        got: list[int] = []
        t = threading.Thread(target=lambda: got.append(lt.wait_for_update(1, timeout=30)))
        t.start()
        time.sleep(0.05)
        lt.set(b"b")
        t.join(30)
        assert got == [2]
        with pytest.raises(ValueError):
            lt.wait_for_update(-1)


def test_wait_for_update_async(name: str) -> None:
    with Latest.create(name, 64) as lt:

        async def main() -> int:
            waiter = asyncio.ensure_future(lt.wait_for_update_async(0, timeout=30))
            await asyncio.sleep(0.02)
            assert not waiter.done()
            lt.set(b"x")
            return await waiter

        assert asyncio.run(main()) == 1

        async def times_out() -> None:
            await lt.wait_for_update_async(5, timeout=0.05)

        with pytest.raises(WaitTimeout):
            asyncio.run(times_out())


def test_open_or_create_races_and_checks_max_size(name: str) -> None:
    with Latest.open_or_create(name, 64) as a, Latest.open_or_create(name, 64) as b:
        a.set(b"shared")
        assert b.get() == (b"shared", 1)
        with pytest.raises(LayoutError):
            Latest.open_or_create(name, 65)


def test_other_kinds_are_not_latest(name: str) -> None:
    with Topic.create(name, 4096), pytest.raises(LayoutError):
        Latest.open(name)
    with pytest.raises(mapshare.SegmentNotFoundError):
        Latest.open(name)


def test_pickles_as_its_name(name: str) -> None:
    with Latest.create(name, 64) as lt:
        lt.set(b"p")
        with pickle.loads(pickle.dumps(lt)) as again:
            assert again.get() == (b"p", 1)


def test_statistics_and_repr(name: str) -> None:
    with Latest.create(name, 64) as lt:
        lt.set_object([1, 2])
        s = lt.statistics()
        assert (s.version, s.max_size, s.kind, s.buffers, s.writer_deaths) == (
            1, 64, "object", 3, 0)
        assert s.size > 0
        assert "version 1" in repr(lt)
    assert "closed" in repr(lt)


def test_a_closed_handle_refuses(name: str) -> None:
    lt = Latest.create(name, 64)
    lt.close()
    with pytest.raises(ValueError):
        lt.get()
    with pytest.raises(ValueError):
        lt.set(b"x")
    with pytest.raises(ValueError):
        lt.version  # noqa: B018


def test_a_view_keeps_the_memory_after_close(name: str) -> None:
    """The memory stays mapped; the block's end cannot validate it any more and says so."""
    lt = Latest.create(name, 64)
    lt.set(b"kept")
    with pytest.raises(ValueError, match="closed"), lt.view() as mv:
        lt.close()
        assert bytes(mv) == b"kept"


# ---- garbage in shared memory: LayoutError, never a crash or a hang ---------------------


@pytest.mark.parametrize("field,value", [
    (OFF_MAX_SIZE, 2**62), (OFF_MAX_SIZE, 10**9), (OFF_STRIDE, 64), (OFF_BUF_OFFSET, 8),
    (OFF_BUF_OFFSET, 2**63), (OFF_BUFFERS, 0), (OFF_BUFFERS, 1), (OFF_BUFFERS, 17),
    (OFF_BUFFERS, 2**32 - 1),
])
def test_a_corrupt_control_line_is_refused_at_open(name: str, field: int, value: int) -> None:
    with Latest.create(name, 64) as lt:
        fmt = "<I" if field == OFF_BUFFERS else "<Q"
        poke(name, KIND_AREA + field, struct.pack(fmt, value))
        with pytest.raises(LayoutError):
            Latest.open(name)
        lt.set(b"still fine")  # the handle bound before keeps its validated copies


def test_a_version_its_buffer_does_not_hold_is_a_layout_error(name: str) -> None:
    with Latest.create(name, 64) as lt:
        lt.set(b"a")
        poke(name, KIND_AREA + OFF_VERSION, struct.pack("<Q", 7))
        with pytest.raises(LayoutError):
            lt.get()
        with pytest.raises(LayoutError), lt.view():
            pass
        lt.set(b"b")  # a writer repairs it: version 8 into buffer 2
        assert lt.get() == (b"b", 8)


def test_a_length_beyond_max_size_is_a_layout_error(name: str) -> None:
    with Latest.create(name, 64) as lt:
        lt.set(b"a")
        poke(name, buf_at(1, 64) + BUF_LENGTH, struct.pack("<Q", 2**40))
        with pytest.raises(LayoutError):
            lt.get()
        poke(name, buf_at(1, 64) + BUF_LENGTH, struct.pack("<Q", 65))
        with pytest.raises(LayoutError):
            lt.get_object()


def test_random_garbage_never_crashes_or_hangs(name: str) -> None:
    """Random words written into the control line and the buffer headers: every call
    returns or raises a MapshareError (or the codec's refusal), quickly."""
    rnd = random.Random(12)
    max_size = 128
    with Latest.create(name, max_size) as lt:
        for i in range(2000):
            if rnd.random() < 0.5:
                off = KIND_AREA + 64 + rnd.randrange(0, 3) * 8
            else:
                off = buf_at(rnd.randrange(3), max_size) + rnd.randrange(0, 3) * 8
            value = rnd.choice([0, 1, 2, 3, 5, 2**63, 2**64 - 1, rnd.getrandbits(64),
                                max_size, max_size + 1, rnd.randrange(16)])
            poke(name, off, struct.pack("<Q", value))
            start = time.monotonic()
            for call in (lt.get, lt.get_object, lt.get_array, lt.statistics):
                try:
                    call()
                except (MapshareError, ValueError, EOFError, pickle.UnpicklingError):
                    pass
            try:
                with lt.view() as mv:
                    bytes(mv)
            except MapshareError:
                pass
            if i % 10 == 0:
                lt.set(b"%d" % i)
            assert time.monotonic() - start < 5


def test_mapshare_wait_on_a_latest(name: str) -> None:
    ev = mapshare.Event.create(name + "e")
    try:
        _wait_on_a_latest(name, ev)
    finally:
        ev.close()
        ev.unlink()


def _wait_on_a_latest(name: str, ev: mapshare.Event) -> None:
    with Latest.create(name, 64) as lt:
        assert mapshare.wait([lt], timeout=0.02) == []
        assert mapshare.wait([(lt, 0)], timeout=0) == []
        lt.set(b"a")
        assert mapshare.wait([(lt, 0), ev], timeout=0) == [(lt, 0)]
        assert mapshare.wait([(lt, 1)], timeout=0) == []
        t = threading.Timer(0.05, lambda: lt.set(b"b"))
        t.start()
        assert mapshare.wait([lt, ev], timeout=30) == [lt]
        t.join()

        async def main() -> list[Any]:
            return await mapshare.wait_async([(lt, 1)], timeout=5)

        assert asyncio.run(main()) == [(lt, 1)]
        with pytest.raises(TypeError):
            mapshare.wait([(lt, "x")])
        with pytest.raises(ValueError):
            mapshare.wait([(lt, -1)])
    with pytest.raises(ValueError, match="closed"):
        mapshare.wait([lt])


# ---- the one factory keyword set (as tests/unit/test_factories.py checks the others) ----


def test_factories_take_the_shared_keywords_with_the_shared_defaults() -> None:
    import inspect

    create_kw = {"mode", "lifetime", "global_namespace", "spin"}
    open_kw = {"allow_foreign", "global_namespace", "wait", "init_timeout", "spin"}
    defaults = {"mode": 0o600, "lifetime": "shared", "global_namespace": False,
                "spin": None, "allow_foreign": False, "wait": 0, "init_timeout": 2.0}
    for fn, need in ((Latest.create, create_kw), (Latest.open, open_kw),
                     (Latest.open_or_create, (create_kw | open_kw) - {"wait"})):
        params = inspect.signature(fn).parameters
        kw = {p.name for p in params.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}
        assert kw >= need, fn
        for k, v in defaults.items():
            if k in params:
                assert params[k].default == v, (fn, k)


def test_factories_return_the_class_and_open_waits_for_the_name(name: str) -> None:
    made: list[Latest] = []
    t = threading.Timer(0.2, lambda: made.append(Latest.create(name, 64, spin=0.0)))
    t.start()
    try:
        opened = Latest.open(name, wait=30, init_timeout=1.0, spin=0.001)
        assert type(opened) is Latest and opened.spin == 0.001
        opened.close()
    finally:
        t.join()
    assert type(made[0]) is Latest and made[0].spin == 0.0
    made[0].close()


@pytest.mark.posix_only("mode bits of /dev/shm objects")
def test_allow_foreign_is_needed_for_a_world_writable_slot(name: str) -> None:
    import os

    from mapshare import _naming

    with Latest.create(name, 64, mode=0o666):
        os.chmod("/dev/shm" + _naming.os_name(name), 0o666)
        with pytest.raises(mapshare.PermissionDeniedError, match="allow_foreign=True"):
            Latest.open(name)
        Latest.open(name, allow_foreign=True).close()


def test_close_ends_a_wait_left_by_a_cancelled_async_call(name: str) -> None:
    lt = Latest.create(name, 64)

    async def main() -> None:
        t = asyncio.ensure_future(lt.wait_for_update_async(0, timeout=30))
        await asyncio.sleep(0.05)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t

    asyncio.run(main())
    lt.close()  # refused ("a thread is waiting") before the wait could be ended
    assert lt.closed


def test_close_from_another_thread_ends_a_wait(name: str) -> None:
    lt = Latest.create(name, 64)
    errors: list[BaseException] = []

    def waiter() -> None:
        try:
            lt.wait_for_update(0, timeout=30)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.1)
    lt.close()
    t.join(10)
    assert not t.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], ValueError)
