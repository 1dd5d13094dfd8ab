"""Logical names: the validation rule, OS-name derivation, long and case-variant names,
and detection of two long names that share an OS name."""

from __future__ import annotations

import os
import re

import pytest

import mapshare
from mapshare import _naming
from mapshare.testing import shm_entries
from support import exists


def _tag() -> str:
    return f"{os.getpid() % 100000:05d}{os.urandom(3).hex()}"


@pytest.mark.parametrize(
    "bad",
    ["", "/", "a/b", "/abs", "nul\0byte", "caf\u00e9", "\u65e5\u672c", ".hidden", "-dash",
     "sp ace", "tab\t", "x" * 256, "a:b", "back\\slash"],
)
def test_invalid_names_state_the_rule(bad: str) -> None:
    with pytest.raises(ValueError) as err:
        _naming.validate(bad)
    assert "1 to 255 characters" in str(err.value)
    with pytest.raises(ValueError, match="1 to 255 characters"):
        _naming.os_name(bad)
    with pytest.raises(ValueError, match="1 to 255 characters"):
        mapshare.Segment.create(bad, 10)
    with pytest.raises(ValueError, match="1 to 255 characters"):
        mapshare.Segment.open(bad)
    with pytest.raises(ValueError, match="1 to 255 characters"):
        mapshare.Segment.open_or_create(bad, 10)


@pytest.mark.parametrize("bad", [None, 5, b"bytes", ["x"]])
def test_non_str_names_are_type_errors(bad: object) -> None:
    with pytest.raises(TypeError, match="name must be str, not "):
        _naming.validate(bad)
    with pytest.raises(TypeError, match="name must be str, not "):
        mapshare.Segment.create(bad, 10)  # type: ignore[arg-type]


@pytest.mark.parametrize("good", ["a", "A", "0", "_x", "a.b", "a-b", "a_b.c-D9", "x" * 255])
def test_valid_names(good: str) -> None:
    assert _naming.validate(good) == good


def test_os_name_direct_up_to_20_then_hashed() -> None:
    n20 = "abcdefghij" * 2
    assert _naming.os_name(n20) == "/mapshare." + n20
    n21 = n20 + "k"
    osn = _naming.os_name(n21)
    assert osn.startswith("/mapshare.abcdefg~") and len(osn) == len("/mapshare.abcdefg~") + 12
    assert osn != _naming.os_name(n20 + "l")
    n255 = "y" * 255
    assert len(_naming.os_name(n255)) <= 31  # fits macOS's POSIX shm limit
    assert _naming.os_name(n255) == _naming.os_name(n255)  # deterministic
    assert all(len(_naming.os_name("z" * k)) <= 31 for k in range(1, 256))


@pytest.mark.parametrize("length", [20, 21, 255])
def test_names_of_20_21_255_chars_work_end_to_end(length: int) -> None:
    tag = _tag()
    name = (tag + "n" * 300)[:length]
    with mapshare.Segment.create(name, 100) as seg:
        assert seg.name == name
        assert exists(name)
        seg.write(b"long")
        with mapshare.Segment.open(name) as other:
            assert other.name == name and other.read(4) == b"long"
            assert other.info().name == name
        assert [i.name for i in mapshare.segments() if i.os_name == seg.os_name] == [name]
    assert not exists(name)


def test_256_chars_is_refused() -> None:
    with pytest.raises(ValueError, match="1 to 255 characters"):
        mapshare.Segment.create("n" * 256, 10)


@pytest.mark.parametrize("length", [10, 30])
def test_case_variants_are_distinct(length: int) -> None:
    base = ("case" + _tag() + "q" * 40)[:length]
    upper, lower = base.upper(), base.lower()
    assert upper != lower
    with mapshare.Segment.create(upper, 64) as a, mapshare.Segment.create(lower, 64) as b:
        assert a.os_name != b.os_name
        a.write(b"UPPER")
        b.write(b"lower")
        with mapshare.Segment.open(upper) as a2, mapshare.Segment.open(lower) as b2:
            assert a2.read(5) == b"UPPER" and b2.read(5) == b"lower"
    assert not exists(upper) and not exists(lower)


@pytest.mark.posix_only("moves an object to another name through /dev/shm")
def test_long_names_sharing_an_os_name_are_detected() -> None:
    prefix = "collide" + _tag()  # the first 7 characters are shared
    name_a = prefix + "-aaaaaaaaaaaaaaaa"
    name_b = prefix + "-bbbbbbbbbbbbbbbb"
    osn_a, osn_b = _naming.os_name(name_a), _naming.os_name(name_b)
    assert osn_a != osn_b and osn_a[:17] == osn_b[:17]
    before = shm_entries()
    with mapshare.Segment.create(name_a, 4096, lifetime="persistent") as seg:
        seg.write(b"A's data")
    # Put A's object where B's OS name is: to the OS, B now holds A's header.
    os.rename("/dev/shm" + osn_a, "/dev/shm" + osn_b)
    try:
        with pytest.raises(mapshare.LayoutError) as err:
            mapshare.Segment.open(name_b)
        assert name_a in str(err.value)
        with pytest.raises(mapshare.NameCollisionError) as err2:
            mapshare.Segment.create(name_b, 4096)
        assert isinstance(err2.value, mapshare.SegmentExistsError)
        assert isinstance(err2.value, FileExistsError)
        assert name_a in str(err2.value)
        with pytest.raises(mapshare.LayoutError, match=re.escape(name_a)):
            mapshare.Segment.open_or_create(name_b, 4096)
        with pytest.raises(mapshare.SegmentNotFoundError, match=re.escape(name_a)):
            mapshare.Segment.open(name_a)
        # A's data is untouched by the failed attempts
        info = [i for i in mapshare.segments() if i.os_name == osn_b]
        assert len(info) == 1 and info[0].name == name_a
    finally:
        for osn in (osn_a, osn_b):
            try:
                os.unlink("/dev/shm" + osn)
            except FileNotFoundError:
                pass
    # only what this test could have made (other sessions may create objects meanwhile)
    shared = osn_a[:17].lstrip("/")
    assert {e for e in shm_entries() - before if e.lstrip("/").startswith(shared)} == set()


def test_is_os_name() -> None:
    assert _naming.is_os_name("mapshare.x")
    assert not _naming.is_os_name("mapshare.")
    assert not _naming.is_os_name("psm_123")
