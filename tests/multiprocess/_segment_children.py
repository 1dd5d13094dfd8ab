"""Module-level child functions for the segment tests (importable under 'spawn')."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import mapshare


def read_and_report(name: str, n: int, conn: Any) -> None:
    """Open ``name`` and send back its first ``n`` bytes (or the exception's class name)."""
    try:
        with mapshare.Segment.open(name) as seg:
            conn.send(("ok", seg.read(n)))
    except Exception as exc:
        conn.send(("error", type(exc).__name__))
    finally:
        conn.close()


def open_with_access(name: str, access: str, data: bytes, conn: Any) -> None:
    """Open with ``access``, write ``data`` at 0, report what this handle reads back."""
    try:
        with mapshare.Segment.open(name, access=access) as seg:  # type: ignore[arg-type]
            seg.write(data)
            conn.send(("ok", seg.read(len(data))))
    except Exception as exc:
        conn.send(("error", type(exc).__name__))
    finally:
        conn.close()


def create_file_backed(name: str, path: str, data: bytes, lifetime: str) -> None:
    """Create a file-backed segment, write, flush, close and exit."""
    seg = mapshare.Segment.create(name, len(data) + 100, path=path, lifetime=lifetime)  # type: ignore[arg-type]
    seg.write(data)
    seg.flush()
    seg.close()


def create_persistent(name: str, data: bytes) -> None:
    """Create a persistent segment, write and exit without unlinking."""
    seg = mapshare.Segment.create(name, 4096, lifetime="persistent")
    seg.write(data)
    seg.close()


def race_create(name: str, barrier: Any, q: Any) -> None:
    """Wait at the barrier, then try to create ``name``; report the outcome."""
    try:
        barrier.wait(60)
    except Exception:
        q.put((os.getpid(), "barrier", "", False))
        return
    try:
        seg = mapshare.Segment.create(name, 4096, lifetime="persistent")
    except mapshare.SegmentExistsError as exc:
        q.put((os.getpid(), "exists", type(exc).__name__, isinstance(exc, FileExistsError)))
        return
    except Exception as exc:
        q.put((os.getpid(), "error", f"{type(exc).__name__}: {exc}", False))
        return
    seg.write(os.getpid().to_bytes(8, "little"))
    seg.close()
    q.put((os.getpid(), "created", "", False))


def race_open_or_create(name: str, barrier: Any, q: Any, done: Any) -> None:
    """Wait at the barrier, open_or_create ``name``, register our pid in the segment,
    report its inode, and stay attached until ``done`` is set."""
    try:
        barrier.wait(60)
        seg = mapshare.Segment.open_or_create(name, 8192, init_timeout=30.0)
    except Exception as exc:
        q.put((os.getpid(), "error", f"{type(exc).__name__}: {exc}"))
        return
    try:
        st = os.stat("/dev/shm" + seg.os_name)
        with seg.lock():
            count = int.from_bytes(seg.read(8), "little")
            seg.write((count + 1).to_bytes(8, "little"))
        q.put((os.getpid(), "ok", (st.st_dev, st.st_ino)))
        done.wait(60)
    finally:
        seg.close()


def hold_segment(name: str, ready: Any, release: Any) -> None:
    """Open ``name``, signal ``ready`` and hold it until ``release`` (or a SIGKILL)."""
    seg = mapshare.Segment.open(name)
    ready.set()
    release.wait(120)
    seg.close()


def wait_for(ready: Any, release: Any) -> None:
    """Signal ``ready`` and wait for ``release`` (holding whatever was inherited)."""
    ready.set()
    release.wait(120)


def create_and_hold(name: str, size: int, lifetime: str, ready: Any) -> None:
    """Create ``name`` and hold it forever (the parent SIGKILLs us)."""
    seg = mapshare.Segment.create(name, size, lifetime=lifetime)  # type: ignore[arg-type]
    seg.write(b"held")
    ready.set()
    time.sleep(600)
    seg.close()


def drop_privileges_and_open(name: str, conn: Any) -> None:
    """(forked, as root) become uid/gid 65534 and try to open ``name``."""
    try:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
        try:
            seg = mapshare.Segment.open(name)
        except mapshare.PermissionDeniedError as exc:
            conn.send(("denied", type(exc).__name__, isinstance(exc, PermissionError)))
            return
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}", False))
            return
        seg.close()
        conn.send(("opened", "", False))
    finally:
        conn.close()


def use_pickled(seg: mapshare.Segment, data: bytes) -> tuple[str, int, bytes]:
    """Receive a pickled Segment, write ``data`` after what it reads, return both."""
    try:
        head = seg.read(len(data))
        seg.write(data, offset=len(data))
        return seg.name, seg.size, head
    finally:
        seg.close()


if __name__ == "__main__":
    # python _segment_children.py read NAME N  -> prints hex of the first N bytes
    # python _segment_children.py write NAME HEX -> writes bytes at offset 0
    cmd, seg_name = sys.argv[1], sys.argv[2]
    with mapshare.Segment.open(seg_name) as s:
        if cmd == "read":
            print(s.read(int(sys.argv[3])).hex())
        elif cmd == "write":
            s.write(bytes.fromhex(sys.argv[3]))
        else:
            raise SystemExit(f"unknown command {cmd!r}")
