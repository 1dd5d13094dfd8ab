"""Security properties (docs/security.md): owner-only modes, foreign owners refused, a
name pre-created by another user detected, symlinks refused, a hostile writer cannot
crash a peer, and only receive_object unpickles.

Tests that need a second uid run as root and drop privileges to nobody (65534) in a
child; they are skipped otherwise."""

from __future__ import annotations

import atexit
import functools
import os
import pickle
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import zlib
from pathlib import Path

import pytest

import mapshare
from mapshare import (
    Channel,
    Event,
    Lock,
    PermissionDeniedError,
    Segment,
    SegmentExistsError,
    Semaphore,
)
from support import LINUX, ROOT, shm_path

NOBODY = 65534
TIMEOUT = 120  # bounds a hang only

pytestmark = pytest.mark.skipif(not LINUX, reason="POSIX modes and /dev/shm (Linux)")


def mode_of(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# The test interpreter may live where nobody cannot read it (/root/.pyenv): the second
# user runs the system Python 3 with this mapshare on its path (same ABI when the
# versions match, checked below).
SYSTEM_PY = "/usr/bin/python3"


@functools.cache
def pkg_dir() -> str:
    """A copy of the installed package that another user can read: the package may live
    in a private directory (a CI venv made by mktemp -d is 0700)."""
    d = tempfile.mkdtemp(prefix="mapshare-nobody-")
    shutil.copytree(os.path.dirname(os.path.abspath(mapshare.__file__)),
                    os.path.join(d, "mapshare"))
    for root, _dirs, files in os.walk(d):
        os.chmod(root, 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    atexit.register(shutil.rmtree, d, True)
    return d


def _system_python_usable() -> bool:
    try:
        out = subprocess.run(
            [SYSTEM_PY, "-c", "import sys; print(sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        ).stdout.strip()
    except OSError:
        return False
    return out == str(sys.version_info[:2])


needs_root = pytest.mark.skipif(
    not ROOT or not _system_python_usable(),
    reason="needs root (to act as a second user) and a system Python of the same version",
)


def run_as_nobody(code: str) -> subprocess.CompletedProcess[str]:
    """Run Python code as uid/gid 65534 (a different user)."""

    def drop() -> None:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)

    env = dict(os.environ, PYTHONPATH=pkg_dir())
    return subprocess.run(
        [SYSTEM_PY, "-c", textwrap.dedent(code)],
        env=env,
        preexec_fn=drop,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd="/",
    )


# ---- modes ----------------------------------------------------------------------------


def test_every_object_is_owner_only_by_default(names: object, tmp_path: Path) -> None:
    made: list[tuple[object, str]] = []
    old = os.umask(0)  # a permissive umask must not widen the default
    try:
        n1, n2, n3, n4, n5, n6 = (names() for _ in range(6))  # type: ignore[operator]
        made.append((Segment.create(n1, 100), n1))
        made.append((Channel.create(n2, 1024), n2))
        made.append((Lock.create(n3), n3))
        made.append((Event.create(n4), n4))
        made.append((Semaphore.create(n5, 1), n5))
        fb = Segment.create(n6, 100, path=tmp_path / "backing")
        made.append((fb, n6))
        for _, n in made:
            assert mode_of(shm_path(n)) == 0o600, n
        assert mode_of(str(tmp_path / "backing")) == 0o600
    finally:
        os.umask(old)
        for obj, _ in made:
            obj.close()  # type: ignore[attr-defined]
            try:
                obj.unlink()  # type: ignore[attr-defined]
            except mapshare.SegmentNotFoundError:
                pass


def test_the_mode_asked_for_is_exact_whatever_the_umask(name: str) -> None:
    old = os.umask(0o077)
    try:
        seg = Segment.create(name, 10, mode=0o640, lifetime="persistent")
    finally:
        os.umask(old)
    try:
        assert mode_of(shm_path(name)) == 0o640
    finally:
        seg.close()
        seg.unlink()


def test_a_world_writable_segment_is_refused_unless_allowed(name: str) -> None:
    seg = Segment.create(name, 10, mode=0o666, lifetime="persistent")
    try:
        with pytest.raises(PermissionDeniedError, match="writable by every user"):
            Segment.open(name)
        with Segment.open(name, allow_foreign=True) as other:
            assert other.size == 10
    finally:
        seg.close()
        seg.unlink()


# ---- other users ----------------------------------------------------------------------


@needs_root
def test_a_segment_owned_by_another_uid_is_refused_unless_allowed(name: str) -> None:
    seg = Segment.create(name, 64, lifetime="persistent")
    try:
        seg.write(b"mine")
        os.chown(shm_path(name), NOBODY, NOBODY)
        with pytest.raises(PermissionDeniedError, match=f"uid {NOBODY}"):
            Segment.open(name)
        with pytest.raises(PermissionDeniedError, match=f"uid {NOBODY}.*allow_foreign=True"):
            Segment.open(name, access="r")
        with Segment.open(name, allow_foreign=True) as other:
            assert other.read(4) == b"mine"
    finally:
        seg.close()
        seg.unlink()


@needs_root
def test_another_user_cannot_open_an_owner_only_segment(name: str) -> None:
    seg = Segment.create(name, 64, lifetime="persistent")
    try:
        r = run_as_nobody(
            f"""
            import mapshare
            try:
                mapshare.Segment.open({name!r})
            except PermissionError as e:
                print("refused", type(e).__name__)
            else:
                print("OPENED")
            """
        )
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("refused PermissionDeniedError"), r.stdout + r.stderr
    finally:
        seg.close()
        seg.unlink()


@needs_root
def test_a_name_precreated_by_another_user_is_detected_at_create(name: str) -> None:
    """The attacker makes a valid-looking segment under our name first (so that we
    would write our data into memory they control): create() refuses and names them."""
    decoy = Segment.create(name, 64, lifetime="persistent", mode=0o644)
    header = Path(shm_path(name)).read_bytes()
    decoy.close()
    decoy.unlink()
    r = run_as_nobody(
        f"""
        import os, zlib
        fd = os.open({shm_path(name)!r}, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o666)
        os.fchmod(fd, 0o666)
        # compressed: the header with its attach table is longer than one argument may be
        os.write(fd, zlib.decompress(bytes.fromhex({zlib.compress(header).hex()!r})))
        os.close(fd)
        print("planted")
        """
    )
    try:
        assert r.stdout.strip() == "planted", r.stderr
        assert os.stat(shm_path(name)).st_uid == NOBODY
        with pytest.raises(SegmentExistsError, match=f"owned by uid {NOBODY}"):
            Segment.create(name, 64)
        # nor is it opened by mistake
        with pytest.raises(PermissionDeniedError, match=f"uid {NOBODY}"):
            Segment.open(name)
    finally:
        os.unlink(shm_path(name))


@needs_root
def test_an_empty_object_precreated_by_another_user_is_detected_at_create(name: str) -> None:
    """The cheaper attack: an empty /dev/shm file under our name, never a valid header.
    create() must still say who owns it."""
    r = run_as_nobody(
        f"""
        import os
        os.close(os.open({shm_path(name)!r}, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o666))
        print("planted")
        """
    )
    try:
        assert r.stdout.strip() == "planted", r.stderr
        with pytest.raises(SegmentExistsError, match=f"owned by uid {NOBODY}"):
            Segment.create(name, 64)
    finally:
        os.unlink(shm_path(name))


# ---- symlinks -------------------------------------------------------------------------


def test_create_refuses_a_symlink_planted_at_the_path(name: str, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    link = tmp_path / "segment"
    link.symlink_to(victim)
    with pytest.raises(SegmentExistsError, match=re.escape(str(link))):
        Segment.create(name, 4096, path=link)
    assert victim.read_bytes() == b"precious"
    assert os.path.islink(link)
    assert not os.path.exists(shm_path(name))  # nothing left under the name
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "not-there")
    with pytest.raises(SegmentExistsError, match=re.escape(str(dangling))):
        Segment.create(name, 4096, path=dangling)
    assert not (tmp_path / "not-there").exists()


def test_open_by_path_refuses_a_symlink_unless_asked(name: str, tmp_path: Path) -> None:
    real = tmp_path / "real"
    seg = Segment.create(name, 100, path=real, lifetime="persistent")
    try:
        seg.write(b"data")
        seg.flush()
        link = tmp_path / "link"
        link.symlink_to(real)
        with pytest.raises(PermissionDeniedError, match=re.escape(str(link))):
            Segment.open(path=link)
        with Segment.open(path=link, follow_symlinks=True) as other:
            assert other.read(4) == b"data"
    finally:
        seg.close()
        seg.unlink()


# ---- a hostile writer -----------------------------------------------------------------

# A writer's power over a peer is covered in depth elsewhere: fuzz/ (libFuzzer on every
# path that reads a header or ring state, including writes between validation and use),
# tests/c/test_core.c (ring_corruption, ring_scribble_while_viewed,
# lock_corrupt_list_pointers, header_validation), tests/multiprocess/test_resources.py
# (truncation under a peer) and the corruption tests of the channel suite.  Here: one
# end-to-end run with a real process scribbling while a peer works.

VICTIM = """
import sys, mapshare
ch = mapshare.Channel.open(sys.argv[1])
print("ready", flush=True)
seen = {}
for i in range(3000):
    for op in (lambda: ch.send_nowait(b"x" * (i % 200)), ch.receive_nowait):
        try:
            op()
            seen["ok"] = seen.get("ok", 0) + 1
        except mapshare.MapshareError as e:
            seen[type(e).__name__] = seen.get(type(e).__name__, 0) + 1
    try:
        ch.statistics()
    except mapshare.MapshareError:
        pass
print(sorted(seen.items()))
ch.close()
"""


def test_a_scribbling_writer_cannot_crash_a_peer(name: str) -> None:
    import mmap
    import random

    ch = Channel.create(name, 4096, lifetime="persistent")
    rng = random.Random(1234)
    proc = subprocess.Popen(
        [sys.executable, "-c", VICTIM, name],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        with open(shm_path(name), "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
            # everything but the robust mutexes (their bytes are glibc's to parse; see
            # docs/security.md, residual risks): header fields, ring control, records
            spans = [
                (0, 384),
                (512, 1024),
                (1024, 1024 + 256),
                (1024 + 384, 4096),
                (4096, 4096 + 4096),
            ]
            while proc.poll() is None:
                lo, hi = rng.choice(spans)
                off = rng.randrange(lo, hi - 8)
                m[off : off + 8] = rng.randbytes(8)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ch.close()
        ch.unlink()
    assert proc.returncode == 0, (proc.returncode, err[-2000:])
    assert "ok" in out or "LayoutError" in out, out


# ---- unpickling -----------------------------------------------------------------------


class _Marker:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, ...]:
        return (open, (self.path, "x"))


def test_only_receive_object_unpickles(name: str, tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    evil = pickle.dumps(_Marker(str(marker)), protocol=5)
    with Channel.create(name, 1 << 16) as ch:
        for _ in range(4):
            ch.send(evil)
        assert ch.receive(timeout=TIMEOUT) == evil
        with ch.receive_view(timeout=TIMEOUT) as v:
            assert bytes(v) == evil
        assert ch.receive_many(1, timeout=TIMEOUT) == [evil]
        assert not marker.exists()
        with pytest.raises(mapshare.MessageKindError, match="kind bytes; it was left queued"):
            ch.receive_array(timeout=TIMEOUT)  # not an array message: refused, left queued
        with pytest.raises(mapshare.MessageKindError, match="kind bytes; it was left queued"):
            ch.receive_object(timeout=TIMEOUT)  # a bytes message is never unpickled
        assert ch.receive(timeout=TIMEOUT) == evil
        assert not marker.exists()
        # the explicit call does unpickle (which is why it is documented as trusted-only)
        ch.send_object(_Marker(str(marker)))
        opened = ch.receive_object(timeout=TIMEOUT)  # unpickling opened a file
        assert hasattr(opened, "close")
        opened.close()
        assert marker.exists()
