"""Errors that need a second process: an opener that gives up with SegmentInUseError."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import mapshare
from mapshare import _naming


@pytest.mark.posix_only("flock on /dev/shm")
def test_open_gives_up_on_an_object_held_exclusively_with_in_use(name: str) -> None:
    """Another process holds the object's opener lock exclusively (as a last user
    removing it does, for microseconds) for longer than an opener waits (5 s)."""
    mapshare.Segment.create(name, 64, lifetime="persistent").close()
    path = "/dev/shm" + _naming.os_name(name)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import fcntl, os, sys
            fd = os.open({path!r}, os.O_RDONLY)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            print("held", flush=True)
            sys.stdin.readline()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(mapshare.SegmentInUseError, match=f"'{name}'") as info:
            mapshare.Segment.open(name)
        assert isinstance(info.value, OSError)
    finally:
        holder.stdin.close()
        holder.wait(30)
        holder.stdout.close()
        with mapshare.Segment.open(name) as seg:
            seg.unlink()
