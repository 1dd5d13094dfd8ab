"""Where the OSes differ, across processes (docs/platforms.md): a 'persistent' segment
outlives every process only with a backing file on Windows, so the portable way is a
file-backed segment reopened by its path."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import mapshare
from mapshare import _naming
from mapshare.testing import shm_entries
from support import WINDOWS

TIMEOUT = 60.0


def _write_persistent_file_segment(name: str, path: str, data: bytes) -> None:
    """(child) Create a persistent file-backed segment, write ``data`` and exit."""
    seg = mapshare.Segment.create(name, 4096, path=path, lifetime="persistent")
    seg.write(data)
    seg.flush()
    seg.close()


def test_persistent_file_backed_segment_reopens_by_path_after_every_process_exited(
    name: str, tmp_path: Path
) -> None:
    """The portable way to keep data with no process running: a file-backed segment,
    reopened by its path (on Windows the name went with the creator's last handle)."""
    path = str(tmp_path / "kept.bin")
    data = os.urandom(300)
    ctx = multiprocessing.get_context("spawn")
    p = ctx.Process(target=_write_persistent_file_segment, args=(name, path, data))
    p.start()
    p.join(TIMEOUT)
    if p.is_alive():
        p.kill()
        p.join(5)
    assert p.exitcode == 0
    if WINDOWS:
        assert _naming.os_name(name) not in shm_entries()
    with mapshare.Segment.open(path=path) as seg:
        assert seg.name == name and seg.lifetime == "persistent"
        assert seg.read(len(data)) == data
        seg.unlink()  # the name (POSIX: a link object), never the file
    assert os.path.exists(path)
