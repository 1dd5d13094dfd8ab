"""Exhausted and vanishing resources: a full /dev/shm, a full disk, a backing object
truncated under a peer, a low file-descriptor limit, and 10,000 create/open/close/unlink
cycles that must leak nothing.

Every victim runs in a child process whose exit status is checked, so a crash (SIGBUS,
SIGSEGV, abort) fails the test instead of killing pytest.  The full-filesystem tests
mount small tmpfs (and a loop ext4) in a private mount namespace (`unshare --mount`),
so nothing is mounted on the host; they need root and are skipped otherwise."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from mapshare import Channel, Segment
from support import LINUX, ROOT, shm_path

TIMEOUT = 180  # bounds a hang only

pytestmark = pytest.mark.skipif(not LINUX, reason="/dev/shm, /proc and mounts (Linux)")
needs_ns = pytest.mark.skipif(
    not ROOT or shutil.which("unshare") is None,
    reason="needs root and unshare(1) to mount a small tmpfs in a private namespace",
)


def run_py(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if "ASAN_OPTIONS" in env:
        # tools/sanitize.sh: ASan keeps freed memory in quarantine (256 MB) to catch
        # use-after-free, which would read as RSS growth in the leak test
        env["ASAN_OPTIONS"] += ":quarantine_size_mb=0:thread_local_quarantine_size_kb=0"
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
    )


def run_in_namespace(tmp_path: Path, shell: str, code: str) -> subprocess.CompletedProcess[str]:
    """Run `shell` (mounts) then the Python `code` in a private mount namespace.  The
    namespace's /dev/shm is a fresh tmpfs unless `shell` mounts a smaller one."""
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(code))
    sh = f"set -e\n{shell}\nexec {sys.executable} {script}\n"
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", sh],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def last_json(r: subprocess.CompletedProcess[str]) -> Any:
    assert r.returncode == 0, (r.returncode, r.stdout[-2000:], r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


# ---- a full /dev/shm ------------------------------------------------------------------

FULL_SHM = """
import errno, json, mapshare
res = {}
try:
    mapshare.Segment.create("big", 1 << 20)
    res["big"] = "created"
except mapshare.NoSpaceError as e:
    res["big"] = [type(e).__name__, isinstance(e, OSError), e.errno == errno.ENOSPC]
segs = []
while len(segs) < 1000:
    try:
        segs.append(mapshare.Segment.create(f"s{len(segs)}", 16384))
    except mapshare.NoSpaceError:
        break
res["made"] = len(segs)
# every byte of every segment was reserved at create: filling them never faults
for i, s in enumerate(segs):
    s.write(bytes([i % 256]) * s.size)
res["intact"] = all(s.read() == bytes([i % 256]) * s.size for i, s in enumerate(segs))
for what, make in [("channel", lambda: mapshare.Channel.create("ch", 65536)),
                   ("lock", lambda: mapshare.Lock.create("lk")),
                   ("event", lambda: mapshare.Event.create("ev"))]:
    try:
        make().close()
        res[what] = "created"
    except mapshare.NoSpaceError:
        res[what] = "NoSpaceError"
# nothing half-made is left behind by the failed creates
import os
res["entries"] = sorted(os.listdir("/dev/shm"))
segs.pop().close()  # lifetime 'shared': the last close removes it and frees its pages
again = mapshare.Segment.create("again", 4096)
res["again"] = again.size
again.close()
for s in segs:
    s.close()
res["left"] = os.listdir("/dev/shm")
print(json.dumps(res))
"""


@needs_ns
def test_a_full_dev_shm_raises_no_space_error_never_sigbus(tmp_path: Path) -> None:
    r = run_in_namespace(tmp_path, "mount -t tmpfs -o size=256k tmpfs /dev/shm", FULL_SHM)
    res = last_json(r)
    assert res["big"] == ["NoSpaceError", True, True]
    assert 3 <= res["made"] < 1000
    assert res["intact"] is True
    assert res["channel"] == "NoSpaceError"
    # a lock or event needs only its header page: it may or may not still fit
    assert res["lock"] in ("created", "NoSpaceError")
    assert res["entries"] == sorted(f"mapshare.s{i}" for i in range(res["made"]))
    assert res["again"] == 4096
    assert res["left"] == []


# ---- a full disk (file-backed segments) -------------------------------------------------

FULL_DISK = """
import json, os, sys, mapshare
d = sys.argv[1] if len(sys.argv) > 1 else "/mnt-small"
res = {}
try:
    mapshare.Segment.create("big", 8 << 20, path=d + "/big")
    res["big"] = "created"
except mapshare.NoSpaceError as e:
    res["big"] = "NoSpaceError"
res["big_left"] = os.path.exists(d + "/big") or os.path.exists("/dev/shm/mapshare.big")
segs = []
while len(segs) < 200:
    try:
        segs.append(mapshare.Segment.create(f"f{len(segs)}", 65536, path=f"{d}/f{len(segs)}",
                                            lifetime="persistent"))
    except mapshare.NoSpaceError:
        break
res["made"] = len(segs)
for i, s in enumerate(segs):
    s.write(bytes([i + 1]) * s.size)
    s.flush(durable=True)  # reserved blocks: the data reaches the disk
res["reopened"] = all(
    mapshare.Segment.open(path=f"{d}/f{i}").read(8) == bytes([i + 1]) * 8 for i in range(len(segs))
)
for s in segs:
    s.close()
    s.unlink()
print(json.dumps(res))
"""


@needs_ns
def test_a_full_filesystem_refuses_file_backed_segments_at_create(tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = run_in_namespace(
        tmp_path,
        f"mount -t tmpfs tmpfs /dev/shm && mount -t tmpfs -o size=1m tmpfs {mnt}",
        FULL_DISK.replace('"/mnt-small"', repr(str(mnt))),
    )
    res = last_json(r)
    assert res["big"] == "NoSpaceError"
    assert res["big_left"] is False  # neither the file nor the name's link object
    assert 3 <= res["made"] < 200
    assert res["reopened"] is True


DURABLE_FLUSH = """
import json, os, sys, mapshare
d = sys.argv[1] if len(sys.argv) > 1 else "/mnt-ext4"
res = {}
seg = mapshare.Segment.create("dur", 4 << 20, path=d + "/data", lifetime="persistent")
seg.write(os.urandom(4 << 20))
try:
    seg.flush(durable=True)
    res["flush"] = "ok"
except OSError as e:
    res["flush"] = [type(e).__name__, e.errno]
try:
    seg.close()
    seg.unlink()
except OSError:
    pass
print(json.dumps(res))
"""


@needs_ns
@pytest.mark.skipif(shutil.which("mkfs.ext4") is None, reason="needs mkfs.ext4")
def test_a_disk_that_fails_underneath_surfaces_in_durable_flush(tmp_path: Path) -> None:
    """ext4 on a loop device whose image lives on a 1 MiB tmpfs: ext4 reserves the
    segment's blocks, but writing them back overflows the real storage below.
    flush(durable=True) must report it (NoSpaceError or another OSError), not lose it."""
    small, mnt = tmp_path / "small", tmp_path / "ext4"
    small.mkdir()
    mnt.mkdir()
    shell = (
        f"mount -t tmpfs tmpfs /dev/shm && mount -t tmpfs -o size=1m tmpfs {small} && "
        f"truncate -s 16M {small}/img && mkfs.ext4 -q -F {small}/img && "
        f"mount -o loop {small}/img {mnt}"
    )
    r = run_in_namespace(tmp_path, shell, DURABLE_FLUSH.replace('"/mnt-ext4"', repr(str(mnt))))
    if r.returncode != 0 and "loop" in r.stderr:
        pytest.skip(f"no loop devices here: {r.stderr.strip()[-200:]}")
    res = last_json(r)
    assert res["flush"] != "ok", "a failed write-back was not reported by flush(durable=True)"
    assert res["flush"][0] in ("NoSpaceError", "OSError")


# ---- a peer truncates the object ------------------------------------------------------

VICTIM = """
import json, sys, mapshare
name, op = sys.argv[1], sys.argv[2]
if op in ("send", "receive", "receive_view", "loan"):
    obj = mapshare.Channel.open(name)
else:
    obj = mapshare.Segment.open(name)
since = 0 if op in ("send", "receive", "receive_view", "loan") else obj.change_count
print("ready", flush=True)
def attempt():
    if op == "read":
        return obj.read(100, 4096)
    if op == "write":
        return obj.write(b"x" * 100, 4096)
    if op == "wait_for_change":
        return obj.wait_for_change(since, timeout=30)  # may already be asleep: see below
    if op == "notify":
        return obj.notify()
    if op == "lock":
        with obj.lock():
            return None
    if op == "send":
        return obj.send(b"y" * 3000, timeout=5)
    if op == "receive":
        return obj.receive(timeout=5)
    if op == "receive_view":
        with obj.receive_view(timeout=5) as v:
            return bytes(v[:10])
    if op == "loan":
        with obj.loan(3000, timeout=5) as m:
            m[:3] = b"abc"
        return None
out = []
if op == "wait_for_change" and sys.argv[3] == "asleep":
    # already sleeping in the futex when the object is truncated
    out.append("asleep")
else:
    sys.stdin.readline()
for _ in range(3):  # the first call faults; later calls must keep raising, not crash
    try:
        attempt()
        out.append("ok")
    except mapshare.MapshareError as e:
        out.append(type(e).__name__)
    except Exception as e:
        out.append("unexpected " + type(e).__name__ + ": " + str(e))
try:
    obj.close()
except mapshare.MapshareError as e:
    out.append("close " + type(e).__name__)
print(json.dumps(out))
"""

SEG_OPS = ["read", "write", "wait_for_change", "notify", "lock"]
CHAN_OPS = ["send", "receive", "receive_view", "loan"]


@pytest.mark.parametrize("keep", [0, 4096], ids=["to-zero", "header-kept"])
@pytest.mark.parametrize("op", SEG_OPS + CHAN_OPS)
def test_truncation_under_a_peer_raises_never_crashes(name: str, op: str, keep: int) -> None:
    if op in ("wait_for_change", "notify", "lock") and keep:
        pytest.skip("these touch only the header, which is kept")
    # the creator closes first (persistent: the object stays); closing a handle after
    # the truncation is tested on its own below
    if op in CHAN_OPS:
        with Channel.create(name, 16384, lifetime="persistent") as owner:
            if op in ("receive", "receive_view"):
                owner.send(b"m" * 5000)
    else:
        Segment.create(name, 3 * 4096, lifetime="persistent").close()
    proc = subprocess.Popen(
        [sys.executable, "-c", VICTIM, name, op, "awake"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "ready"
        os.truncate(shm_path(name), keep)
        out, err = proc.communicate("go\n", timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.unlink(shm_path(name))
    assert proc.returncode == 0, (f"victim died: {exit_text(proc.returncode)}", err[-3000:])
    got = json.loads(out.strip().splitlines()[-1])
    assert got[0] in ("SegmentFaultError", "LayoutError"), got
    assert all(g in ("SegmentFaultError", "LayoutError") for g in got[1:3]), got


def exit_text(rc: int) -> str:
    return signal.Signals(-rc).name if rc < 0 else f"exit status {rc}"


CLOSE_AFTER = """
import json, os, sys, mapshare
name, kind, keep = sys.argv[1], sys.argv[2], int(sys.argv[3])
if kind == "channel":
    obj = mapshare.Channel.create(name, 16384, lifetime="persistent")
    obj.send(b"abc")
    obj.receive(timeout=5)  # registered as sender and receiver
elif kind == "lock":
    obj = mapshare.Lock.create(name, lifetime="persistent")
elif kind == "event":
    obj = mapshare.Event.create(name, lifetime="persistent")
else:
    obj = mapshare.Segment.create(name, 3 * 4096, lifetime="persistent")
os.truncate("/dev/shm" + mapshare._naming.os_name(name), keep)
out = []
try:
    obj.close()
    out.append("closed")
except mapshare.MapshareError as e:
    out.append(type(e).__name__)
print(json.dumps(out))
"""


@pytest.mark.parametrize("keep", [0, 4096], ids=["to-zero", "header-kept"])
@pytest.mark.parametrize("kind", ["segment", "channel", "lock", "event"])
def test_closing_a_handle_after_truncation_never_crashes(name: str, kind: str, keep: int) -> None:
    try:
        r = run_py(CLOSE_AFTER, name, kind, str(keep))
    finally:
        if os.path.exists(shm_path(name)):
            os.unlink(shm_path(name))
    assert r.returncode == 0, (f"close() crashed: {exit_text(r.returncode)}", r.stderr[-2000:])
    assert last_json(r)[0] in ("closed", "SegmentFaultError", "LayoutError")


def test_truncation_wakes_a_sleeping_waiter_with_an_error(name: str) -> None:
    Segment.create(name, 3 * 4096, lifetime="persistent").close()
    proc = subprocess.Popen(
        [sys.executable, "-c", VICTIM, name, "wait_for_change", "asleep"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        import time

        time.sleep(0.3)  # let it fall asleep (not a timing assertion: either way it must fault)
        os.truncate(shm_path(name), 0)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.unlink(shm_path(name))
    assert proc.returncode == 0, (f"victim died: {exit_text(proc.returncode)}", err[-3000:])
    got = json.loads(out.strip().splitlines()[-1])
    assert got[0] == "asleep"
    assert got[1] in ("SegmentFaultError", "LayoutError"), got


# ---- a low file-descriptor limit ------------------------------------------------------

LOW_FD = """
import json, os, resource, sys, mapshare
base = sys.argv[1]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 8, hard))
segs, res = [], {}
try:
    for i in range(100):
        segs.append(mapshare.Segment.create(f"{base}{i}", 4096))
    res["error"] = None
except OSError as e:
    res["error"] = [type(e).__name__, e.errno, str(e)]
res["made"] = len(segs)
try:
    if segs:
        mapshare.Segment.open(segs[0].name).close()
    res["open_at_limit"] = "ok"
except OSError as e:
    res["open_at_limit"] = [type(e).__name__, e.errno]
for s in segs:
    s.close()
with mapshare.Segment.create(base + "z", 4096) as s:  # usable again once fds are back
    res["after"] = s.size
print(json.dumps(res))
"""


def test_a_low_fd_limit_gives_a_clear_oserror(name: str) -> None:
    base = name[:14]
    try:
        r = run_py(LOW_FD, base)
        res = last_json(r)
    finally:
        for e in os.listdir("/dev/shm"):
            if e.startswith("mapshare." + base):
                os.unlink("/dev/shm/" + e)
    assert res["error"] is not None and 1 <= res["made"] < 100
    _cls, err_no, msg = res["error"]
    assert err_no == 24  # EMFILE
    assert "Too many open files" in msg or "EMFILE" in msg or "24" in msg
    assert res["open_at_limit"] == "ok" or res["open_at_limit"][1] == 24
    assert res["after"] == 4096


# ---- 10,000 cycles leak nothing -------------------------------------------------------

CYCLES = """
import json, os, sys, mapshare
name, n = sys.argv[1], int(sys.argv[2])
def fds(): return len(os.listdir("/proc/self/fd"))
def maps():
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
def cycle(i):
    s = mapshare.Segment.create(name, 8192, lifetime="persistent")
    o = mapshare.Segment.open(name)
    o.write(i.to_bytes(4, "little"))
    assert s.read(4) == i.to_bytes(4, "little")
    with o.view(4096, 100) as v:
        v[0] = 1
    o.close()
    s.close()
    s.unlink()
    if i % 10 == 0:
        c = mapshare.Channel.create(name, 4096)
        c.send(b"abc")
        assert c.receive(timeout=5) == b"abc"
        c.close()
for i in range(300):
    cycle(i)
before = (fds(), maps(), rss())
for i in range(n):
    cycle(i)
after = (fds(), maps(), rss())
print(json.dumps({"before": before, "after": after}))
"""


def test_ten_thousand_cycles_leak_no_fd_mapping_or_memory(name: str) -> None:
    r = run_py(CYCLES, name, "10000")
    res = last_json(r)
    (fd0, maps0, rss0), (fd1, maps1, rss1) = res["before"], res["after"]
    assert fd1 == fd0, res
    assert maps1 <= maps0 + 2, res  # malloc may add an arena; no per-cycle mapping
    assert rss1 - rss0 < 5 * 1024 * 1024, res
    assert not os.path.exists(shm_path(name))
