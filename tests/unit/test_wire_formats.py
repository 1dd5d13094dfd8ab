"""docs/design/wire-formats.md says what a channel record holds, byte by byte; here its
tables are read from the page and checked against the bytes real ``send``,
``send_object`` and ``send_array`` calls put in the ring, so the page cannot drift from
the code (nor the code from the page)."""

from __future__ import annotations

import ast
import pickle
import re
import struct
from pathlib import Path
from typing import Any, Callable

import pytest

import mapshare

np = pytest.importorskip("numpy")

PAGE = Path(__file__).resolve().parents[2] / "docs" / "design" / "wire-formats.md"

pytestmark = pytest.mark.skipif(not PAGE.exists(), reason="run from a source checkout")


def pad8(n: int) -> int:
    return (n + 7) & ~7


def table(section: str) -> list[dict[str, str]]:
    """The first table after the heading that starts with ``section``."""
    text = PAGE.read_text(encoding="utf-8")
    start = re.search(rf"^## {re.escape(section)}.*$", text, re.M)
    assert start, f"no section '## {section}' in {PAGE.name}"
    rows = []
    header: list[str] = []
    for line in text[start.end():].splitlines():
        if not line.startswith("|"):
            if header:
                break
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not header:
            header = cells
        elif not set(cells[0]) <= set("-"):
            rows.append(dict(zip(header, cells)))
    assert rows, f"no table in section '{section}'"
    return rows


def _eval(expr: str, names: dict[str, Any]) -> int:
    """An offset or size as the page writes it: '16 + 8·n', 'pad8(...)', 'ndim'."""
    tree = ast.parse(expr.replace("·", "*"), mode="eval")
    allowed = (ast.Expression, ast.BinOp, ast.Add, ast.Mult, ast.Constant, ast.Name,
               ast.Load, ast.Call)
    for node in ast.walk(tree):
        assert isinstance(node, allowed), f"unexpected expression in the page: {expr!r}"
    value = eval(compile(tree, PAGE.name, "eval"), {"__builtins__": {}, "pad8": pad8}, names)
    assert isinstance(value, int)
    return value


def decode(rows: list[dict[str, str]], data: bytes, names: dict[str, Any]) -> dict[str, Any]:
    """Decode ``data`` field by field as the table says (little-endian, as the page
    says); each field's value is then usable in the later rows' offsets and sizes."""
    out: dict[str, Any] = {}
    for row in rows:
        field, kind = row["field"].strip("`"), row["type"]
        off = _eval(row["offset"], {**names, **out})
        if not row["size"]:
            out[field] = data[off:]
            continue
        size = _eval(row["size"], {**names, **out})
        assert off + size <= len(data), f"{field} runs past the payload"
        raw = data[off : off + size]
        if kind in ("u32", "u64"):
            assert size == {"u32": 4, "u64": 8}[kind], f"{field}: size and type disagree"
            out[field] = struct.unpack("<I" if kind == "u32" else "<Q", raw)[0]
        elif m := re.fullmatch(r"(u64|i64)\[(\w+)\]", kind):
            count: int = {**names, **out}[m.group(2)]
            assert size == 8 * count, f"{field}: size and type disagree"
            out[field] = struct.unpack(f"<{count}{'Q' if m.group(1) == 'u64' else 'q'}", raw)
        else:
            assert kind == "bytes", f"{field}: unknown type {kind!r} in the page"
            out[field] = raw
    return out


def sent_record(ch: mapshare.Channel, send: Callable[[], None]) -> tuple[dict[str, Any], bytes]:
    """Send one message on an empty new channel (it lands at ring offset 0); return
    its record header decoded per the page and its payload as ``receive()`` gives it."""
    send()
    ring = bytes(ch.segment.buf[: ch.capacity])
    header = decode(table("The record header"), ring[:8], {})
    payload = ch.receive(0)
    assert len(payload) == header["length"]
    assert ring[8 : 8 + header["length"]] == payload
    return header, payload


ARRAYS: dict[str, Callable[[], Any]] = {
    "float64 2-D": lambda: np.arange(12, dtype=np.float64).reshape(3, 4),
    "Fortran order": lambda: np.asfortranarray(np.arange(12, dtype=np.int16).reshape(3, 4)),
    "big-endian": lambda: np.arange(5, dtype=">i4"),
    "structured": lambda: np.array([(1, 2.5), (3, 4.5)], dtype=[("x", "<i4"), ("y", ">f8")]),
    "0-d": lambda: np.array(7, dtype=np.uint8),
    "empty": lambda: np.zeros((0, 3), dtype=np.float32),
    "bool 3-D": lambda: np.ones((2, 1, 3), dtype=bool),
    "non-contiguous": lambda: np.arange(20, dtype=np.int64).reshape(4, 5)[:, ::2],
}


@pytest.mark.parametrize("case", sorted(ARRAYS))
def test_array_record_is_as_documented(name: str, case: str) -> None:
    a = ARRAYS[case]()
    with mapshare.Channel.create(name, 4096) as ch:
        try:
            header, payload = sent_record(ch, lambda: ch.send_array(a))
        finally:
            ch.unlink()
    assert header["flags"] == 2 << 8  # kind 2 in bits 8-15, no other bit
    order = "F" if a.flags.f_contiguous and not a.flags.c_contiguous else "C"
    nbytes = a.size * a.dtype.itemsize
    fields = decode(table("Kind 2"), payload, {"nbytes": nbytes})
    descr = repr(np.lib.format.dtype_to_descr(a.dtype)).encode()
    assert fields["magic"] == b"MSA1"
    assert fields["descr_length"] == len(descr)
    assert fields["descr"] == descr
    assert fields["ndim"] == a.ndim
    assert fields["order"] == ord(order)
    assert fields["shape"] == a.shape
    assert fields["data"] == a.tobytes(order=order)  # the dtype's own byte order
    assert len(payload) == pad8(16 + len(descr) + 8 * a.ndim) + nbytes
    # and the page's description of descr is how a reader gets the dtype back
    dtype = np.lib.format.descr_to_dtype(ast.literal_eval(fields["descr"].decode()))
    assert dtype == a.dtype


OBJECTS: dict[str, Callable[[], object]] = {
    "no buffers": lambda: {"a": 1, "b": b"in-band bytes", "c": [1.5, "x"]},
    "one array": lambda: {"frame": np.arange(10, dtype=np.float64), "n": 3},
    "two buffers": lambda: (np.arange(3, dtype=np.int8), pickle.PickleBuffer(bytearray(b"xyz"))),
}


@pytest.mark.parametrize("case", sorted(OBJECTS))
def test_object_record_is_as_documented(name: str, case: str) -> None:
    obj = OBJECTS[case]()
    expected_buffers: list[pickle.PickleBuffer] = []
    expected_pickle = pickle.dumps(obj, protocol=5, buffer_callback=expected_buffers.append)
    with mapshare.Channel.create(name, 4096) as ch:
        try:
            header, payload = sent_record(ch, lambda: ch.send_object(obj))
        finally:
            ch.unlink()
    assert header["flags"] == 1 << 8  # kind 1
    fields = decode(table("Kind 1"), payload, {"n": len(expected_buffers)})
    assert fields["magic"] == b"MSO1"
    assert fields["buffer_count"] == len(expected_buffers)
    assert fields["pickle"] == expected_pickle
    raws = [b.raw() for b in expected_buffers]
    assert fields["buffer_sizes"] == tuple(r.nbytes for r in raws)
    # the buffers row: buffer i at the running offset, which grows by pad8(size)
    rest, off = fields["buffers"], 0
    for r in raws:
        assert rest[off : off + r.nbytes] == r.tobytes()
        off += pad8(r.nbytes)
    assert off == len(rest)
    assert pickle.loads(fields["pickle"], buffers=[bytearray(r) for r in raws]).__class__ is (
        obj.__class__
    )


def test_bytes_record_is_the_message(name: str) -> None:
    with mapshare.Channel.create(name, 4096) as ch:
        try:
            header, payload = sent_record(ch, lambda: ch.send(b"MSA1 looks like an array"))
        finally:
            ch.unlink()
    assert header["flags"] == 0  # kind 0: the magic inside does not make it an array
    assert payload == b"MSA1 looks like an array"
