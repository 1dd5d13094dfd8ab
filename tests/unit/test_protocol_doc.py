"""docs/design/protocol.md is written for a second implementation; what it states exactly
and cheaply is checked here against what mapshare does:

* the OS name of a logical name, computed from the page's rule with a BLAKE2b written
  here from RFC 7693 (not mapshare's function, not hashlib), for the page's worked
  examples (read from the page) and for many other names, and against the object
  ``Segment.create`` really makes;
* the header values a creator writes, read back through /dev/shm;
* the channel rules a C programmer had to guess: a sender moves ``head`` past a lone
  padding record, a peer entry's ``count`` holds handles and sleeper marks, and a
  receiver killed asleep is taken off the waiter count;
* every link from a design page to a heading of a design page resolves.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

import mapshare
from mapshare import _naming
from mapshare.testing import unique_name
from support import LINUX, shm_path

DESIGN = Path(__file__).resolve().parents[2] / "docs" / "design"
PAGE = DESIGN / "protocol.md"

pytestmark = pytest.mark.skipif(not PAGE.exists(), reason="run from a source checkout")

# ---- BLAKE2b, from RFC 7693 (so that the page's "output length 6" is what is tested) ---

_M64 = (1 << 64) - 1
_IV = (
    0x6A09E667F3BCC908, 0xBB67AE8584CAA73B, 0x3C6EF372FE94F82B, 0xA54FF53A5F1D36F1,
    0x510E527FADE682D1, 0x9B05688C2B3E6C1F, 0x1F83D9ABFB41BD6B, 0x5BE0CD19137E2179,
)
_SIGMA = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
    (14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3),
    (11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4),
    (7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8),
    (9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13),
    (2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9),
    (12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11),
    (13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10),
    (6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5),
    (10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0),
)


def _rotr(x: int, n: int) -> int:
    return ((x >> n) | (x << (64 - n))) & _M64


def _compress(h: list[int], block: bytes, t: int, last: bool) -> None:
    m = struct.unpack("<16Q", block)
    v = h + list(_IV)
    v[12] ^= t & _M64
    v[13] ^= t >> 64
    if last:
        v[14] ^= _M64
    for i in range(12):
        s = _SIGMA[i % 10]
        for j, (a, b, c, d) in enumerate(
            ((0, 4, 8, 12), (1, 5, 9, 13), (2, 6, 10, 14), (3, 7, 11, 15),
             (0, 5, 10, 15), (1, 6, 11, 12), (2, 7, 8, 13), (3, 4, 9, 14))
        ):
            x, y = m[s[2 * j]], m[s[2 * j + 1]]
            v[a] = (v[a] + v[b] + x) & _M64
            v[d] = _rotr(v[d] ^ v[a], 32)
            v[c] = (v[c] + v[d]) & _M64
            v[b] = _rotr(v[b] ^ v[c], 24)
            v[a] = (v[a] + v[b] + y) & _M64
            v[d] = _rotr(v[d] ^ v[a], 16)
            v[c] = (v[c] + v[d]) & _M64
            v[b] = _rotr(v[b] ^ v[c], 63)
    for i in range(8):
        h[i] ^= v[i] ^ v[i + 8]


def blake2b(data: bytes, nn: int) -> bytes:
    """Unkeyed BLAKE2b with an output length of ``nn`` bytes (RFC 7693, section 3.3)."""
    h = list(_IV)
    h[0] ^= 0x01010000 ^ nn  # parameter block: depth 1, fanout 1, key length 0, nn
    blocks = [data[i : i + 128] for i in range(0, len(data), 128)] or [b""]
    t = 0
    for i, block in enumerate(blocks):
        t += len(block)
        _compress(h, block.ljust(128, b"\0"), t, i == len(blocks) - 1)
    return struct.pack("<8Q", *h)[:nn]


def os_name_from_the_page(name: str) -> str:
    """The page's rule, step by step ("The OS name")."""
    if len(name) <= 20:
        return "/mapshare." + name
    return "/mapshare." + name[:7] + "~" + blake2b(name.encode("ascii"), 6).hex()


# ---- the page ------------------------------------------------------------------------


def page_table(section: str) -> list[dict[str, str]]:
    """The first table after the heading that starts with ``section``."""
    text = PAGE.read_text(encoding="utf-8")
    start = re.search(rf"^#+ {re.escape(section)}.*$", text, re.M)
    assert start, f"no section '{section}' in {PAGE.name}"
    rows: list[dict[str, str]] = []
    header: list[str] = []
    for line in text[start.end():].splitlines():
        if not line.startswith("|"):
            if header:
                break
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not header:
            header = cells
        elif not set(cells[0]) <= set("-:"):
            rows.append(dict(zip(header, cells)))
    assert rows, f"no table in section '{section}'"
    return rows


def worked_examples() -> list[tuple[str, int, str]]:
    rows = [r for r in page_table("The OS name") if "logical name" in r]
    return [(r["logical name"].strip("`"), int(r["length"]), r["OS name"].strip("`"))
            for r in rows]


def test_own_blake2b_is_rfc_7693() -> None:
    """The test's BLAKE2b agrees with hashlib's for several lengths and sizes (so the
    comparisons below test the page's rule, not a bug of this file)."""
    for data in (b"", b"abc", b"x" * 127, b"y" * 128, b"z" * 129, bytes(range(256))):
        for nn in (6, 32, 64):
            assert blake2b(data, nn) == hashlib.blake2b(data, digest_size=nn).digest()


def test_worked_examples_follow_the_rule() -> None:
    examples = worked_examples()
    assert len(examples) >= 5
    assert any(n <= 20 for _, n, _ in examples) and any(n > 20 for _, n, _ in examples)
    for logical, length, osn in examples:
        assert len(logical) == length, logical
        assert os_name_from_the_page(logical) == osn, logical
        assert _naming.os_name(logical) == osn, logical


def test_the_hash_is_not_truncated_blake2b_512() -> None:
    """The page warns that the first 6 bytes of BLAKE2b-512 are wrong, and says what
    they would be for its first long example."""
    text = PAGE.read_text(encoding="utf-8")
    m = re.search(r"For `([A-Za-z0-9._-]+)` the first 6 bytes of BLAKE2b-512 would give "
                  r"`([0-9a-f]{12})`", text)
    assert m, "the page's BLAKE2b-512 warning is gone"
    name, wrong = m.group(1), m.group(2)
    assert hashlib.blake2b(name.encode()).digest()[:6].hex() == wrong
    assert not _naming.os_name(name).endswith(wrong)


def test_the_rule_agrees_with_mapshare_for_many_names() -> None:
    alphabet = "ABCXYZabcxyz0189._-"
    names = []
    for length in [*range(1, 40), 63, 64, 127, 128, 129, 200, 254, 255]:
        for k in range(3):
            body = "".join(alphabet[(i * 7 + k * 5 + length) % len(alphabet)]
                           for i in range(length - 1))
            names.append("n" + body)
    for name in names:
        _naming.validate(name)
        expected = os_name_from_the_page(name)
        assert _naming.os_name(name) == expected, name
        assert len(expected) <= 31  # macOS's limit, as the page promises


def test_names_the_page_refuses_are_refused() -> None:
    for bad in ("", ".hidden", "-dash", "a/b", "a b", "é", "a" * 256, "a\\b", "a#b"):
        with pytest.raises(ValueError):
            _naming.validate(bad)


# ---- what a creator writes (Creating, step 4-7) ----------------------------------------


@pytest.mark.posix_only("reads the object through /dev/shm")
@pytest.mark.skipif(not LINUX, reason="reads the object through /dev/shm")
def test_created_object_has_the_pages_name_and_header() -> None:
    logical = unique_name() + "-protocol-doc"  # longer than 20: hashed
    assert len(logical) > 20
    path = "/dev/shm" + os_name_from_the_page(logical)
    seg = mapshare.Segment.create(logical, 5000)
    try:
        assert os.path.exists(path)
        with open(path, "rb") as f:
            head = f.read(2048 + 32)
        magic, version, kind, header_size, lifetime = struct.unpack_from("<QIIII", head, 0)
        assert head[:8] == b"\0MAPSHR\x01" and magic == 0x0152485350414D00
        assert (version, kind, header_size, lifetime) == (2, 1, 69632, 2)
        size, data_offset, total = struct.unpack_from("<QQQ", head, 24)
        assert (size, data_offset) == (5000, 69632)
        assert total == 69632 + 8192 == os.stat(path).st_size
        creator_pid, = struct.unpack_from("<I", head, 48)
        state, flags, name_len, mode = struct.unpack_from("<IIII", head, 72)
        assert creator_pid == os.getpid()
        assert (state, flags, name_len, mode) == (1, 0, len(logical), 0o600)
        attach_offset, slots, end, hint, reserved = struct.unpack_from("<QIIII", head, 88)
        assert (attach_offset, slots, end, hint, reserved) == (2048, 4096, 1, 1, 128)
        assert head[128 : 128 + name_len].decode() == logical
        pid, count, start = struct.unpack_from("<IIQ", head, 2048)
        assert (pid, count) == (os.getpid(), 1) and start > 0
        with open(f"/proc/{os.getpid()}/stat") as f:
            starttime = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22
        assert start == (starttime or 1)
    finally:
        seg.close()
    assert not os.path.exists(path)  # shared: the last user removed the name


# ---- channels ------------------------------------------------------------------------

_RING = 1024  # the kind area
_TAIL, _RECV_WAITERS, _HEAD = _RING + 64, _RING + 76, _RING + 128
_SEND_WAITERS = _RING + 140
_RECEIVERS = _RING + 640


def _read(path: str, offset: int, n: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, n, offset)
    finally:
        os.close(fd)


def _u64(path: str, offset: int) -> int:
    return int(struct.unpack("<Q", _read(path, offset, 8))[0])


def _u32(path: str, offset: int) -> int:
    return int(struct.unpack("<I", _read(path, offset, 4))[0])


def _receivers(path: str) -> list[tuple[int, int, int]]:
    raw = _read(path, _RECEIVERS, 256)
    return [struct.unpack_from("<IIQ", raw, 16 * i) for i in range(16)]


@pytest.mark.posix_only("reads the ring through /dev/shm")
@pytest.mark.skipif(not LINUX, reason="reads the ring through /dev/shm")
def test_a_sender_moves_head_past_a_lone_pad(name: str) -> None:
    """Channels, Sending step 6: in an empty ring whose tail is not at offset 0, a
    message of max_message bytes fits only because the sender skips its own padding
    record; no receiver runs meanwhile."""
    path = shm_path(name)
    with mapshare.Channel.create(name, 4096) as ch:
        assert ch.max_message == 4088  # capacity - 8
        ch.send_nowait(b"a" * 3000)  # record: 8 + 3000 = 3008 bytes
        assert ch.receive_nowait() == b"a" * 3000
        assert _u64(path, _HEAD) == _u64(path, _TAIL) == 3008
        ch.send_nowait(b"b" * 4088)  # a pad of 1088 bytes, then the whole ring
        assert _u64(path, _HEAD) == 4096  # moved by the sender
        assert _u64(path, _TAIL) == 8192
        assert ch.receive_nowait() == b"b" * 4088
        st = ch.statistics()
        # Statistics and their units: payload bytes, ring bytes for the high-water mark
        assert st.sent_bytes == st.received_bytes == 3000 + 4088
        assert st.high_water == 4096 and st.queued_bytes == 0


_SLEEPING_RECEIVER = """
import sys, mapshare
ch = mapshare.Channel.open(sys.argv[1])
print("open", flush=True)
ch.receive()
"""


@pytest.mark.posix_only("SIGKILL, and reads the ring through /dev/shm")
@pytest.mark.skipif(not LINUX, reason="SIGKILL, and reads the ring through /dev/shm")
def test_peer_count_holds_handles_and_sleeper_marks(name: str) -> None:
    """Channels, Peer tables and Sleeper marks: a receiver asleep has count = 1 handle +
    0x10000 and is counted in recv_waiters; killed in its sleep, whoever finds it dead
    frees its entry and takes its sleeper off the waiter count."""
    path = shm_path(name)
    with mapshare.Channel.create(name, 4096) as ch:
        child = subprocess.Popen(
            [sys.executable, "-c", _SLEEPING_RECEIVER, name],
            stdout=subprocess.PIPE, text=True,
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "open"
            deadline = time.monotonic() + 30
            while True:
                entries = [e for e in _receivers(path) if e[0] == child.pid]
                if entries and entries[0][1] == 0x10001 and _u32(path, _RECV_WAITERS) == 1:
                    break
                assert time.monotonic() < deadline, (entries, _u32(path, _RECV_WAITERS))
                time.sleep(0.01)
            assert ch.statistics().receive_waiters == 1
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(30)
            if child.stdout is not None:
                child.stdout.close()
        assert child.returncode == -signal.SIGKILL
        st = ch.statistics()  # repairs: the dead sleeper is given back
        assert st.receive_waiters == 0 and _u32(path, _RECV_WAITERS) == 0
        ch.send_nowait(b"still works")
        assert ch.receive_nowait() == b"still works"
        # freed by statistics() (it had a sleeper) or, had the kill landed between two
        # sleeps, by this process registering as a receiver (a registration frees the dead)
        assert all(pid != child.pid for pid, _, _ in _receivers(path))


# ---- links between the design pages --------------------------------------------------


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to '-'."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def test_links_between_design_pages_resolve() -> None:
    anchors = {}
    for page in DESIGN.glob("*.md"):
        heads = re.findall(r"^#+ (.+)$", page.read_text(encoding="utf-8"), re.M)
        anchors[page.name] = {_slug(h) for h in heads}
    broken = []
    for page in DESIGN.glob("*.md"):
        for target, anchor in re.findall(r"\]\(([\w.-]*\.md|)#([^)\s]+)\)",
                                         page.read_text(encoding="utf-8")):
            target = target or page.name
            if target in anchors and anchor not in anchors[target]:
                broken.append(f"{page.name} -> {target}#{anchor}")
    assert not broken, broken
