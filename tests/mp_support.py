"""What the mapshare.multiprocessing tests share: a fixture that gives this test's
objects a name prefix of their own and fails the test if any is left in /dev/shm."""

from __future__ import annotations

import gc
import secrets
import sys
import time
from collections.abc import Iterator

import pytest

from mapshare.multiprocessing import _util
from mapshare.testing import shm_entries


def left_with(prefix: str) -> list[str]:
    """OS entries of objects named with ``prefix`` (a 7-character prefix stays visible
    in the hashed OS name of a long name too)."""
    want = "mapshare." + prefix[:7]
    return sorted(e for e in shm_entries() if e.lstrip("/").startswith(want))


@pytest.fixture
def mp_prefix() -> Iterator[str]:
    """This test's name prefix; after the test, nothing named with it may remain (the
    objects are dropped, collected, and -- for those a child held -- given a moment)."""
    old = _util.prefix
    prefix = "t" + secrets.token_hex(2) + "x-"
    _util.prefix = prefix
    try:
        yield prefix
    finally:
        _util.prefix = old
    left: list[str] = []
    for _ in range(100):
        gc.collect()
        left = left_with(prefix)
        if not left:
            break
        time.sleep(0.05)
    assert not left, f"left in /dev/shm: {left}"


SKIP_WINDOWS = pytest.mark.skipif(sys.platform == "win32", reason="POSIX /dev/shm check")
