"""Objects and numpy arrays through a channel in one process: exact round trips,
read-only results, refusals, and the rule that only receive_object unpickles.
(The same cases across a process boundary are in tests/multiprocess.)"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from _channel_children import (
    MakeFileWhenUnpickled,
    array_cases,
    object_cases,
)

import mapshare
from mapshare import Channel


@pytest.fixture
def ch(name: str) -> Iterator[Channel]:
    c = Channel.create(name, 1 << 20)
    try:
        yield c
    finally:
        c.close()
        c.unlink()


def same(a: Any, b: Any) -> bool:
    """Deep equality that also compares numpy dtypes, shapes and exact bytes."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.dtype.str == b.dtype.str
            and a.shape == b.shape
            and a.tobytes() == b.tobytes()
        )
    # a PickleBuffer comes back as a memoryview over its bytes (as with pickle itself)
    if isinstance(a, (pickle.PickleBuffer, memoryview)):
        a = bytes(a.raw() if isinstance(a, pickle.PickleBuffer) else a)
    if isinstance(b, (pickle.PickleBuffer, memoryview)):
        b = bytes(b.raw() if isinstance(b, pickle.PickleBuffer) else b)
    if isinstance(a, (list, tuple)):
        return (
            type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
        )
    if isinstance(a, dict):
        return type(b) is dict and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def expected_object(obj: Any) -> Any:
    # a PickleBuffer over bytes unpickles as the bytes object it wraps
    return bytes(obj.raw()) if isinstance(obj, pickle.PickleBuffer) else obj


@pytest.mark.parametrize("i", range(len(object_cases())))
def test_object_round_trip(ch: Channel, i: int) -> None:
    obj = object_cases()[i]
    ch.send_object(obj)
    got = ch.receive_object(timeout=5)
    assert same(got, expected_object(obj)), (got, obj)


def test_bytes_keep_trailing_nuls_and_empty_values(ch: Channel) -> None:
    for m in (b"abc\x00", b"\x00", b"\x00" * 1000, b"", "😀 \U00010348".encode()):
        ch.send(m)
        got = ch.receive(timeout=5)
        assert type(got) is bytes and got == m
    text = "non-BMP: \U0001f600\U00010348\U0010ffff"
    ch.send(text.encode("utf-8"))
    assert ch.receive().decode("utf-8") == text


def test_send_object_puts_large_buffers_out_of_band(ch: Channel) -> None:
    """A 1 MiB-ish array travels as raw bytes next to the pickle, not inside it: the
    message is barely larger than the array itself and the array is intact."""
    a = np.arange(100_000, dtype=np.float64)  # 800 kB
    ch.send_object({"a": a, "b": pickle.PickleBuffer(b"\x00\x01" * 10)})
    s = ch.statistics()
    assert a.nbytes <= s.queued_bytes < a.nbytes + 1024
    with ch.receive_view() as v:
        raw = bytes(v)
    # the ring held: magic, buffer count and the array bytes, verbatim and 8-aligned
    assert raw[:4] == b"MSO1"
    assert a.tobytes() in raw
    ch.send_object({"a": a, "b": pickle.PickleBuffer(b"\x00\x01" * 10)})
    got = ch.receive_object()
    assert isinstance(got, dict)
    assert same(got["a"], a)
    assert got["b"] == b"\x00\x01" * 10


@pytest.mark.parametrize("i", range(len(array_cases())))
def test_array_round_trip(ch: Channel, i: int) -> None:
    a = array_cases()[i]
    ch.send_array(a)
    got = ch.receive_array(timeout=5)
    assert same(got, a)
    np.testing.assert_array_equal(got, a)
    assert not got.flags.writeable
    with pytest.raises(ValueError):
        got[...] = 0  # read-only
    if a.ndim > 1 and a.flags.f_contiguous and not a.flags.c_contiguous:
        assert got.flags.f_contiguous  # Fortran order kept
    # the zero-copy view gives the same array, read-only, inside the block
    ch.send_array(a)
    with ch.receive_array_view(timeout=5) as view:
        assert same(view, a)
        assert not view.flags.writeable
        copied = view.copy()
    assert same(copied, a)


def test_receive_array_result_does_not_alias_the_ring(ch: Channel) -> None:
    ch.send_array(np.full(64, 7, dtype=np.int64))
    got = ch.receive_array()
    ch.send_array(np.zeros(64, dtype=np.int64))  # reuses the ring bytes
    assert (got == 7).all()
    assert (ch.receive_array() == 0).all()


def test_object_dtype_arrays_are_refused(ch: Channel) -> None:
    with pytest.raises(ValueError, match=r"use send_object\(\)"):
        ch.send_array(np.array([1, "two", None], dtype=object))
    rec = np.zeros(2, dtype=[("a", "i4"), ("o", "O")])
    with pytest.raises(ValueError, match=r"use send_object\(\)"):
        ch.send_array(rec)
    assert ch.statistics().sent_messages == 0  # nothing was sent


def _send_as_array(ch: Channel, raw: bytes) -> None:
    """Send raw bytes marked as an array message (what a buggy or hostile sender could
    write into the ring)."""
    with ch.loan(len(raw), _kind=2) as m:
        m[:] = raw


def test_receive_array_refuses_a_corrupt_array_message(ch: Channel) -> None:
    _send_as_array(ch, b"MSA1 but garbage after the magic")
    with pytest.raises(mapshare.LayoutError, match="corrupt array message"):
        ch.receive_array()
    _send_as_array(ch, b"")
    with pytest.raises(mapshare.LayoutError, match="array message too short"):
        ch.receive_array()
    # an array header claiming more data than the message holds
    ch.send_array(np.arange(10, dtype=np.int64))
    with ch.receive_view() as v:
        raw = bytearray(v)
    _send_as_array(ch, bytes(raw[:-8]))
    with pytest.raises(
        mapshare.LayoutError, match="array message shorter than its shape and dtype say"
    ):
        ch.receive_array()
    # an object dtype forged into an array message is refused, never unpickled
    forged = raw.replace(b"'<i8'", b"'|O' ")
    assert forged != raw
    _send_as_array(ch, bytes(forged))
    with pytest.raises(mapshare.LayoutError, match="object dtype refused"):
        ch.receive_array()
    assert ch.statistics().queued_messages == 0


@pytest.mark.parametrize("call", ["receive_array", "receive_array_view", "receive_object"])
def test_the_wrong_receive_call_leaves_the_message_queued(ch: Channel, call: str) -> None:
    """receive_object() on a bytes or array message (and receive_array()
    on a non-array) used to consume it and raise LayoutError.  Now the message stays
    queued and a MessageKindError (a TypeError) names the kind found."""
    arr = np.arange(4, dtype=np.int32)
    messages: list[Any] = [b"MSO1 looks like an object", b"MSA1 looks like an array"]
    if call != "receive_object":
        messages.append({"an": "object"})
    else:
        messages.append(arr)
    for m in messages:
        if isinstance(m, bytes):
            ch.send(m)
        elif isinstance(m, np.ndarray):
            ch.send_array(m)
        else:
            ch.send_object(m)
        with pytest.raises(mapshare.MessageKindError, match="it was left queued") as info:
            if call == "receive_array_view":
                with ch.receive_array_view(timeout=0):
                    pass
            else:
                getattr(ch, call)(timeout=0)
        assert isinstance(info.value, TypeError)
        assert info.value.kind in ("bytes", "object", "array")
        assert ch.statistics().queued_messages == 1
        got = ch.receive_any(timeout=0)
        if isinstance(m, np.ndarray):
            assert isinstance(got, np.ndarray)
            assert np.array_equal(got, m)
        else:
            assert got == m
    assert ch.statistics().queued_messages == 0


def test_receive_any_decodes_each_kind(ch: Channel) -> None:
    arr = np.arange(6, dtype=">f8").reshape(2, 3)
    ch.send(b"MSO1 raw bytes are bytes")
    ch.send_object({"k": [1, 2]})
    ch.send_array(arr)
    ch.send_many([b"a", b"b"])
    with ch.loan(3) as m:
        m[:] = b"xyz"
    assert ch.receive_any() == b"MSO1 raw bytes are bytes"
    assert ch.receive_any() == {"k": [1, 2]}
    got: Any = ch.receive_any()
    assert got.dtype == arr.dtype and np.array_equal(got, arr)
    assert [ch.receive_any_nowait() for _ in range(3)] == [b"a", b"b", b"xyz"]
    with pytest.raises(mapshare.ChannelEmpty):
        ch.receive_any_nowait()


def test_receive_object_refuses_a_plain_message(ch: Channel) -> None:
    ch.send(pickle.dumps("a pickle, but not sent with send_object"))
    with pytest.raises(
        mapshare.MessageKindError, match="found a message of kind bytes; it was left queued"
    ):
        ch.receive_object()
    assert ch.receive() == pickle.dumps("a pickle, but not sent with send_object")


def test_receive_and_receive_view_never_unpickle(ch: Channel, tmp_path: Any) -> None:
    marker = tmp_path / "unpickled"
    payload = pickle.dumps(MakeFileWhenUnpickled(str(marker)))
    # sanity: this payload does create the file when unpickled
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(MakeFileWhenUnpickled(str(probe)))).close()
    assert probe.exists()

    ch.send(payload)
    got = ch.receive()
    assert type(got) is bytes and got == payload
    ch.send(payload)
    with ch.receive_view() as v:
        assert bytes(v) == payload
    ch.send(payload)
    assert ch.receive_many(5) == [payload]
    assert not marker.exists()
