"""Inspecting objects without attaching: a destroyed object whose name was left behind is
read through the core (csrc/inspect.c, ``_core.peek_header``), which checks what it
reads instead of assuming this version's offsets."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator

import pytest

import mapshare
from mapshare import _core, _naming
from mapshare._inspect import segment_info

# header field offsets (csrc/layout.h): what a test pokes to forge another writer's header
OFF_MAGIC, OFF_VERSION, OFF_KIND, OFF_STATE, OFF_NAME_LEN = 0, 8, 12, 72, 80
# Windows: no name outlives its last handle, so there is no destroyed object left behind
# to inspect, and a paging-file section cannot be persistent (docs/platforms.md)
POSIX = "a destroyed persistent object left in /dev/shm, created and poked through it"


def _poke(name: str, offset: int, data: bytes) -> None:
    fd = os.open("/dev/shm" + _naming.os_name(name), os.O_RDWR)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


@pytest.fixture
def destroyed(name: str) -> Iterator[str]:
    """A persistent segment whose last user marked it destroyed and died before
    removing the name (removed afterwards: nobody else would)."""
    mapshare.Segment.create(name, 5000, lifetime="persistent").close()
    try:
        _poke(name, OFF_STATE, struct.pack("<I", 2))  # MS_STATE_DESTROYED
        yield name
    finally:
        try:
            os.unlink("/dev/shm" + _naming.os_name(name))
        except FileNotFoundError:
            pass


@pytest.mark.posix_only(POSIX)
def test_destroyed_object_identity_comes_from_peek_header(destroyed: str) -> None:
    osn = _naming.os_name(destroyed)
    h = _core.peek_header(osn)
    assert (h["name"], h["size"], h["kind"], h["state"]) == (
        destroyed, 5000, _core.KIND_SEGMENT, _core.STATE_DESTROYED
    )
    assert h["creator_pid"] == os.getpid()
    info = segment_info(osn)
    assert (info.state, info.name, info.size, info.kind, info.lifetime) == (
        "destroyed", destroyed, 5000, "segment", "persistent"
    )


@pytest.mark.posix_only(POSIX)
def test_a_header_of_another_layout_version_is_not_read_with_these_offsets(
    destroyed: str,
) -> None:
    # Its fields may be anywhere: reporting them as this version's would be a guess.
    osn = _naming.os_name(destroyed)
    _poke(destroyed, OFF_VERSION, struct.pack("<I", _core.LAYOUT_VERSION + 1))
    with pytest.raises(mapshare.LayoutError):
        _core.peek_header(osn)
    # (open refuses it before looking at its state: listed as another version's object,
    # not a corrupt one, with what the OS tells and nothing read from the header)
    info = segment_info(osn)
    assert info.state == "other version" and info.kind == "?" and info.lifetime == "?"
    assert str(_core.LAYOUT_VERSION + 1) in (info.error or "")
    # gc never removes what a newer mapshare may be using
    assert osn not in {r.os_name for r in mapshare.collect(dry_run=True)}
    assert info.size == os.stat("/dev/shm" + osn).st_size


@pytest.mark.posix_only(POSIX)
def test_a_forged_name_length_is_clamped(destroyed: str) -> None:
    _poke(destroyed, OFF_NAME_LEN, struct.pack("<I", 0xFFFFFFFF))
    h = _core.peek_header(_naming.os_name(destroyed))
    assert h["name"].startswith(destroyed) and len(h["name"].encode()) <= 256


@pytest.mark.posix_only(POSIX)
def test_peek_header_refuses_what_is_not_a_published_header(name: str) -> None:
    osn = _naming.os_name(name)
    with pytest.raises(mapshare.SegmentNotFoundError):
        _core.peek_header(osn)
    fd = os.open("/dev/shm" + osn, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with pytest.raises(mapshare.LayoutError):  # empty: shorter than a header
            _core.peek_header(osn)
        os.ftruncate(fd, 4096)
        with pytest.raises(mapshare.LayoutError):  # magic 0: never published
            _core.peek_header(osn)
        os.pwrite(fd, b"not ours", OFF_MAGIC)
        with pytest.raises(mapshare.LayoutError):
            _core.peek_header(osn)
    finally:
        os.close(fd)
        os.unlink("/dev/shm" + osn)
