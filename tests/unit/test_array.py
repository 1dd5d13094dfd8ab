"""SharedArray in one process: factories, access modes, the header's strict parser,
coordination calls, pickling and the lifetime of ``.array`` (cross-process behaviour:
tests/multiprocess/test_array_processes.py)."""

from __future__ import annotations

import asyncio
import io
import pickle
import struct
import threading

import numpy as np
import pytest

import mapshare
from mapshare import SharedArray, _core
from support import poke

DATA = _core.HEADER_SIZE if hasattr(_core, "HEADER_SIZE") else 69632


def npy(a: np.ndarray) -> bytes:
    b = io.BytesIO()
    np.save(b, a)
    return b.getvalue()


def test_create_open_read_only_by_default(name: str) -> None:
    with SharedArray.create(name, (3, 4), "<i4") as a:
        assert a.array.flags.writeable and a.access == "rw"
        a.array[:] = np.arange(12).reshape(3, 4)
        with SharedArray.open(name) as b:
            assert b.access == "r"
            assert not b.array.flags.writeable
            assert b.shape == (3, 4) and b.dtype == np.dtype("<i4")
            assert (b.array == np.arange(12).reshape(3, 4)).all()
            with pytest.raises(ValueError, match="read-only"):
                b.array[0, 0] = 5
        with SharedArray.open(name, access="rw") as c:
            c.array[0, 0] = 99
        assert a.array[0, 0] == 99
        a.unlink()


def test_fill_and_from_array_keep_order(name: str, names) -> None:  # type: ignore[no-untyped-def]
    with SharedArray.create(name, 5, "f8", fill=2.5) as a:
        assert (a.array == 2.5).all()
    f = np.asfortranarray(np.arange(6, dtype=">i2").reshape(2, 3))
    other = names()
    with SharedArray.from_array(other, f) as b:
        assert b.array.flags.f_contiguous and not b.array.flags.c_contiguous
        assert b.dtype == np.dtype(">i2")
        with SharedArray.open(other) as c:
            assert c.array.flags.f_contiguous
            assert (c.array == f).all()


@pytest.mark.parametrize("dt", [object, [("a", "i4"), ("o", object)]])
def test_object_dtypes_refused(name: str, dt: object) -> None:
    with pytest.raises(TypeError, match="Python objects"):
        SharedArray.create(name, 3, dt)


def test_field_names_that_need_escapes_refused(name: str) -> None:
    # one kind of quote is written with the other (accepted); both, or a backslash,
    # would need escapes, which the header grammar does not have
    with SharedArray.create(name, 2, [("it's", "i4")]) as a:
        assert a.dtype.names == ("it's",)
    for bad in ("it's \"x\"", "back\\slash"):
        with pytest.raises(ValueError, match="cannot be stored"):
            SharedArray.create(name, 2, [(bad, "i4")])
    with pytest.raises(ValueError, match="ASCII"):
        SharedArray.create(name, 2, [("\u00e9t\u00e9", "i4")])


def test_subarray_dtype_extends_shape(name: str) -> None:
    with SharedArray.create(name, 4, ("f4", (2, 3))) as a:
        assert a.shape == (4, 2, 3) and a.dtype == np.dtype("f4")


def test_open_wrong_kind_is_layout_error(name: str) -> None:
    with mapshare.Segment.create(name, 100), pytest.raises(mapshare.LayoutError):
        SharedArray.open(name)


def test_array_outlives_close(name: str) -> None:
    a = SharedArray.create(name, 1000, "u1", fill=7)
    arr = a.array
    view = arr[10:20]
    a.close()
    assert a.closed
    with pytest.raises(ValueError, match="closed"):
        a.array  # noqa: B018
    # the mapping stays until the last array made from it goes
    assert (view == 7).all() and arr.sum() == 7000
    del arr, view


def test_pickles_as_its_name(name: str) -> None:
    with SharedArray.create(name, (1000, 1000), "f8") as a:
        data = pickle.dumps(a)
        assert len(data) < 200
        with pickle.loads(data) as b:
            assert b.shape == (1000, 1000) and b.access == "rw"


def test_publish_and_wait_for_version(name: str) -> None:
    with SharedArray.create(name, 4) as a, SharedArray.open(name) as b:
        assert a.version == 0
        with pytest.raises(mapshare.WaitTimeout):
            b.wait_for_version(0, timeout=0.05)
        assert a.publish() == 1 and b.version == 1
        assert b.wait_for_version(0, timeout=0) == 1

        async def main() -> int:
            task = asyncio.ensure_future(b.wait_for_version_async(1, timeout=10))
            await asyncio.sleep(0.05)
            a.publish()
            return await task

        assert asyncio.run(main()) == 2


def test_lock_is_the_objects_robust_lock(name: str) -> None:
    with SharedArray.create(name, 4) as a, SharedArray.open(name) as b:
        with a.lock():
            assert b.lock().locked()
            got: list[bool] = []  # another thread: taking it again here is AlreadyHeldError
            t = threading.Thread(target=lambda: got.append(b.lock().acquire(timeout=0)))
            t.start()
            t.join()
            assert got == [False]
        assert not b.lock().locked()


# ---- the header parser ---------------------------------------------------------------

GOOD = npy(np.zeros((2, 3), dtype=[("a", "<i4"), ("b", [("c", ">f8")], (2,))]))


def header_with(text: bytes) -> bytes:
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


@pytest.mark.parametrize("text", [
    b"{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }\n",
    b"{'shape': (), 'descr': [('x', '|b1')], 'fortran_order': True}",
    b"{'descr': [(('title', 'n'), '<M8[ms]', (2, 2))], 'fortran_order': False, 'shape': (0, 5)}",
])
def test_parser_accepts_what_numpy_writes(text: bytes) -> None:
    info = _core.npy_parse(header_with(text))
    assert info["data_offset"] == 10 + len(text)


@pytest.mark.parametrize("text", [
    b"{'descr': '<f8', 'fortran_order': False}",                          # no shape
    b"{'descr': '<f8', 'fortran_order': False, 'shape': (2,), 'x': 1}",  # extra key
    b"{'descr': '<f8', 'descr': '<f8', 'fortran_order': False, 'shape': (2,)}",
    b"{'descr': __import__('os'), 'fortran_order': False, 'shape': (2,)}",
    b"{'descr': '<f8', 'fortran_order': 1, 'shape': (2,)}",
    b"{'descr': '<f8', 'fortran_order': False, 'shape': (-2,)}",
    b"{'descr': '<f8', 'fortran_order': False, 'shape': (2)}",
    b"{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999,)}",
    b"{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296)}",
    b"{'descr': '<f8', 'fortran_order': False, 'shape': (" + b"1," * 65 + b")}",
    b"{'descr': '\\x41', 'fortran_order': False, 'shape': (2,)}",
    b"{'descr': [], 'fortran_order': False, 'shape': (2,)}",
    b"{'descr': " + b"[('a', " * 40 + b"'<i4'" + b")]" * 40
    + b", 'fortran_order': False, 'shape': ()}",
    b"{'descr': '<f8', 'fortran_order': False, 'shape': (2,)} junk",
    b"{'descr': '<f8', 'fortran_order': False, 'shape': (2,)",
])
def test_parser_refuses_forged_headers(text: bytes) -> None:
    with pytest.raises(mapshare.LayoutError):
        _core.npy_parse(header_with(text))


def test_parser_refuses_bad_preamble() -> None:
    for bad in (b"", GOOD[:9], b"\x93NUMPX" + GOOD[6:], GOOD[:6] + b"\x04\x00" + GOOD[8:],
                GOOD[:8] + b"\xff\xff" + GOOD[10:]):
        with pytest.raises(mapshare.LayoutError):
            _core.npy_parse(bad)


@pytest.mark.parametrize("field,forged", [
    ("shape", b"(1000000000,)"),
    ("descr", b"'<c32'"),            # not a numpy type
    ("descr", b"'|O'"),              # object pointers from another process
    ("descr", b"[('a', '|O')]"),
])
def test_forged_header_in_segment_is_layout_error(name: str, field: str, forged: bytes) -> None:
    with SharedArray.create(name, (2, 3), "<f8"):
        old = npy(np.zeros((2, 3)))[:128]
        text = {"descr": b"'<f8'", "fortran_order": b"False", "shape": b"(2, 3)"}
        text[field] = forged
        body = b"{" + b", ".join(b"'%s': %s" % (k.encode(), v) for k, v in text.items()) + b"}"
        body = body.ljust(128 - 10 - 1) + b"\n"
        assert len(old) == 128
        poke(name, DATA, b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body)
        with pytest.raises(mapshare.LayoutError):
            SharedArray.open(name)


@pytest.mark.posix_only("forges the header through /dev/shm")
@pytest.mark.parametrize("preamble", [
    b"\x93NUMPY\x01\x00" + struct.pack("<H", 200),         # HEADER_LEN past the real end
    b"\x93NUMPY\x01\x00" + struct.pack("<H", 0xFFFF),      # past the mapping's header room
    b"\x93NUMPY\x02\x00" + struct.pack("<I", 0xFFFFFFFF),  # format 2: 4 GiB of header
    b"\x93NUMPY\x01\x00" + struct.pack("<H", 20),          # cuts the dict short
    b"\x93NUMPY\x07\x00" + struct.pack("<H", 118),         # an unknown format
])
def test_open_reads_the_header_length_the_preamble_gives_and_checks_it(
    name: str, preamble: bytes
) -> None:
    """open reads the preamble, then exactly HEADER_LEN bytes (not the largest header
    allowed): a forged HEADER_LEN is bounded by the mapping and refused by the parser."""
    with SharedArray.create(name, 4, "<f8"):
        poke(name, DATA, preamble)
        with pytest.raises(mapshare.LayoutError):
            SharedArray.open(name)


@pytest.mark.posix_only("forges the header through /dev/shm")
def test_a_header_seen_before_is_still_checked_against_the_mapping(names) -> None:  # type: ignore[no-untyped-def]
    """open reuses the parse of header bytes it has seen; the data's extent is checked
    against this mapping on every open (a big array's header copied into a small one:
    LayoutError)."""
    big, small = names(), names()
    with SharedArray.create(big, 1000, "<f8"), SharedArray.create(small, 10, "<f8"):
        with SharedArray.open(big):
            pass  # its header is now known
        head = npy(np.zeros(1000))[:128]
        assert len(npy(np.zeros(10))[:128]) == 128  # same header length: only the shape
        poke(small, DATA, head)
        with pytest.raises(mapshare.LayoutError):
            SharedArray.open(small)


def test_open_of_a_format_2_header_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A .npy file np.save wrote with format 2.0 (4-byte HEADER_LEN) opens by path."""
    p = str(tmp_path / "v2.npy")
    a = np.arange(6.0).reshape(2, 3)
    with open(p, "wb") as f:
        np.lib.format.write_array(f, a, version=(2, 0))
    with SharedArray.open(path=p) as arr:
        assert arr.array.tolist() == a.tolist()
        arr.unlink()


def test_open_cannot_be_changed_through_a_returned_dtype(name: str) -> None:
    """open reuses dtypes parsed before; a structured dtype can be renamed in place
    (``dt.names = ...``), so it is never shared between opens."""
    with SharedArray.create(name, 2, [("a", "<i4"), ("b", ">f8")]):
        with SharedArray.open(name) as first:
            first.array.dtype.names = ("x", "y")
        with SharedArray.open(name) as second:
            assert second.dtype.names == ("a", "b")


@pytest.mark.parametrize("file_backed", [False, True])
def test_failed_fill_leaves_nothing_behind(name: str, tmp_path, file_backed: bool) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "a.npy" if file_backed else None
    with pytest.raises(ValueError):
        SharedArray.create(name, (3,), "<f8", fill=[1.0, 2.0], path=path)
    with pytest.raises(mapshare.SegmentNotFoundError):
        SharedArray.open(name)
    assert path is None or not path.exists()


def test_file_record_round_trips_and_forged_records_are_layout_errors() -> None:
    from mapshare._npy import FILE_TAG, file_record, parse_file_record

    assert parse_file_record(file_record("/a/b.npy", (3, 7))) == ("/a/b.npy", (3, 7))
    assert parse_file_record(file_record("/a/b.npy", (0, 0))) == ("/a/b.npy", None)
    assert parse_file_record(FILE_TAG + b"/old/record.npy") == ("/old/record.npy", None)
    for bad in (FILE_TAG + b"relative.npy\0" + bytes(16), FILE_TAG + b"/x.npy\0short",
                FILE_TAG + b"/x.npy\0" + bytes(17), FILE_TAG):
        with pytest.raises(mapshare.LayoutError):
            parse_file_record(bad)
