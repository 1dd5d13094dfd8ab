"""docs/design/journal-format.md is true: a reader written from that page alone (plain
``struct`` and a bit-by-bit CRC-32C, no mapshare code) reads what ``mapshare.Journal``
wrote, record for record, across segment files, and tells a damaged record apart."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Optional

import pytest

from mapshare import Journal

DOC = Path(__file__).resolve().parents[2] / "docs" / "design" / "journal-format.md"


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def pad8(n: int) -> int:
    return (n + 7) // 8 * 8


class DocReader:
    """The page's "Reading a record", step by step."""

    def __init__(self, path: str) -> None:
        with open(os.path.join(path, "meta"), "rb") as f:
            self.meta = f.read()
        assert len(self.meta) == 8192
        magic, version = struct.unpack_from("<8sI", self.meta, 0)
        assert (magic, version) == (b"MSJMETA1", 1)
        (self.size,) = struct.unpack_from("<Q", self.meta, 16)
        (self.durability,) = struct.unpack_from("<I", self.meta, 24)
        (self.committed, self.tail_seq, self.tail_off) = struct.unpack_from("<QQQ", self.meta, 128)
        self.head_seq, self.head_index = struct.unpack_from("<QQ", self.meta, 160)
        (self.durable,) = struct.unpack_from("<Q", self.meta, 256)
        self.segs: list[tuple[int, bytes]] = []
        for seq in range(self.head_seq, self.tail_seq + 1):
            with open(os.path.join(path, f"{seq:016x}.seg"), "rb") as f:
                seg = f.read()
            assert len(seg) == self.size
            m, s, first, size = struct.unpack_from("<QQQQ", seg, 0)
            assert m == 0x31304745534A534D and seg[:8] == b"MSJSEG01"
            assert (s, size) == (seq, self.size) and seg[32:64] == bytes(32)
            self.segs.append((first, seg))

    def readers(self) -> list[tuple[str, int]]:
        out = []
        for k in range(64):
            off = 512 + 64 * k
            (in_use,) = struct.unpack_from("<Q", self.meta, off + 56)
            if in_use == 1:
                name = self.meta[off : off + 48].rstrip(b"\0").decode()
                (pos,) = struct.unpack_from("<Q", self.meta, off + 48)
                out.append((name, pos))
        return out

    def _trusted(self, seg: bytes, first: int, off: int, index: int
                 ) -> Optional[tuple[int, bytes, int]]:
        """(kind, payload, next offset) if the record at ``off`` is record ``index``."""
        size = self.size
        if off < 64 or off % 8 or off + 24 > size:
            return None
        length, crc, idx, kind, reserved = struct.unpack_from("<IIQII", seg, off)
        k = index - first
        if idx != index or crc == 0 or k >= (size - 64) // 28:
            return None
        end = off + 24 + pad8(length)
        if end > size - 4 * (k + 1):
            return None
        payload = seg[off + 24 : off + 24 + length]
        want = crc32c(struct.pack("<IQI", length, index, kind) + payload) or 1
        if want != crc:
            return None
        assert reserved == 0 and seg[off + 24 + length : end] == bytes(end - off - 24 - length)
        return kind, payload, end

    def read(self, i: int) -> tuple[int, bytes]:
        assert self.head_index <= i < self.committed
        first, seg = [s for s in self.segs if s[0] <= i][-1]
        k = i - first
        (off,) = struct.unpack_from("<I", seg, self.size - 4 * (k + 1))
        got = self._trusted(seg, first, off, i)
        if got is None:  # the walk from offset 64
            off, j = 64, first
            while j < i:
                step = self._trusted(seg, first, off, j)
                if step is None:
                    raise ValueError(f"record {i}: no trusted chain to it")
                off, j = step[2], j + 1
            got = self._trusted(seg, first, off, i)
            if got is None:
                raise ValueError(f"record {i} is damaged")
        return got[0], got[1]


def test_the_page_exists_and_states_the_constants() -> None:
    text = DOC.read_text(encoding="utf-8")
    for s in ("MSJMETA1", "0x31304745534a534d", "0x82F63B78", "0xE3069283",
              "size - 4 * (k + 1)", "(size - 64) / 28", "24 + pad8(length)"):
        assert s in text, s
    assert crc32c(b"123456789") == 0xE3069283


def test_a_reader_from_the_page_reads_what_mapshare_wrote(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    path = str(tmp_path / "j")
    payloads: list[bytes] = []
    with Journal.create(path, segment_size=4096, durability="os") as j:
        for i in range(400):
            data = bytes([i % 251]) * (i % 97)
            payloads.append(data)
            assert j.append(data) == i
        obj_i = j.append_object({"k": [1, 2]})
        arr_i = j.append_array(np.arange(5, dtype=np.int32))
        with j.reserve(3) as buf:
            buf[:] = b"abc"
        r = j.reader("audit")
        r.commit(41)
        j.sync()
        stats = j.stats()
        expected = [bytes(j[i]) for i in range(stats.last + 1)]
    doc = DocReader(path)
    assert doc.size == 4096 and doc.durability == 1
    assert len(doc.segs) == stats.files > 3  # several rolls
    assert doc.committed == stats.last + 1 == 403
    assert doc.durable == doc.committed
    assert doc.head_index == 0
    assert doc.readers() == [("audit", 42)]
    # every segment's first_index continues the previous one's records without a gap
    for (a, _), (b, _) in zip(doc.segs, doc.segs[1:]):
        assert b > a
    for i in range(doc.committed):
        kind, payload = doc.read(i)
        assert payload == expected[i]
        if i < 400:
            assert kind == 0 and payload == payloads[i]
    assert doc.read(obj_i)[0] == 1 and doc.read(arr_i)[0] == 2
    assert doc.read(402) == (0, b"abc")


def test_the_walk_from_offset_64_when_a_table_entry_is_lost(tmp_path: Path) -> None:
    path = str(tmp_path / "j")
    with Journal.create(path, segment_size=4096) as j:
        for i in range(20):
            j.append(b"r%d" % i)
    seg = os.path.join(path, "0000000000000000.seg")
    with open(seg, "r+b") as f:
        f.seek(4096 - 4 * (7 + 1))  # record 7's offset-table entry
        f.write(b"\0\0\0\0")
    assert DocReader(path).read(7) == (0, b"r7")
    with Journal.open(path, access="r") as j:
        assert j[7] == b"r7"  # mapshare walks too
    # a damaged payload: the page's checks refuse it, and so does mapshare
    with open(seg, "r+b") as f:
        f.seek(64 + 24)  # record 0's payload
        f.write(b"X")
    with pytest.raises(ValueError):
        DocReader(path).read(0)
    from mapshare import LayoutError

    with Journal.open(path, access="r") as j, pytest.raises(LayoutError):
        j[0]
