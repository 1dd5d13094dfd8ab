"""The public C API (include/mapshare.h, libmapshare) against the Python package: the
library builds with its documented command (``make lib``), the header compiles as C99 and
C++17 without a warning, and C reproduces Python's policy -- the same OS names (long-name
hash included), the same objects opened from either side, the same refusals (foreign
modes, wrong kinds, a future layout version), the same waiting for a name -- with real
processes on real /dev/shm, and a C lock holder really SIGKILLed.

The C side is tests/c_api/capi_tool.c, a small program built against the header and the
static library; each test runs it as a subprocess.  Skipped on Windows (the library's
build is POSIX: docs/c-api.md) and where no C compiler or make is installed.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import string
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest

import mapshare
from mapshare import _core, _naming
from mapshare._inspect import segment_info
from support import OFF_VERSION, poke

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="libmapshare builds on Linux only "
                       "(docs/c-api.md); the Windows core ships inside the wheel"),
    pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                       reason="no C compiler (cc/gcc) on PATH"),
    pytest.mark.skipif(shutil.which("make") is None, reason="no make on PATH"),
    pytest.mark.skipif(not (REPO / "Makefile").exists(),
                       reason="not run from a source checkout (no Makefile)"),
]

Tool = Callable[..., "subprocess.CompletedProcess[str]"]

# The C side (compilers, make, the tool) runs without the sanitizer build's LD_PRELOAD
# of libasan (tools/sanitize.sh): none of it is instrumented.
C_ENV = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}


def _cc() -> str:
    return shutil.which("gcc") or shutil.which("cc") or "cc"


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """libmapshare built by the documented command, into a temporary directory."""
    build = tmp_path_factory.mktemp("libmapshare")
    subprocess.run(["make", "-s", "-C", str(REPO), "lib", f"BUILD={build}", f"CC={_cc()}"],
                   check=True, capture_output=True, text=True, timeout=300, env=C_ENV)
    assert (build / "libmapshare.a").exists() and (build / "libmapshare.so").exists()
    return build


@pytest.fixture(scope="module")
def tool_path(lib: Path) -> Path:
    exe = lib / "capi_tool"
    subprocess.run(
        [_cc(), "-std=c99", "-D_DEFAULT_SOURCE", "-Wall", "-Wextra", "-Werror", "-pedantic",
         f"-I{REPO / 'include'}", str(HERE / "capi_tool.c"), str(lib / "libmapshare.a"),
         "-lpthread", "-lrt", "-o", str(exe)],
        check=True, capture_output=True, text=True, timeout=120, env=C_ENV)
    return exe


@pytest.fixture
def tool(tool_path: Path) -> Tool:
    def run(*args: str, timeout: float = 30, input: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(tool_path), *args], capture_output=True, text=True,
                              timeout=timeout, input=input, env=C_ENV)
    return run


def _reap(p: subprocess.Popen[str]) -> None:
    """Kill (if still running) and wait for a C peer, and close its pipes."""
    p.kill()
    p.wait()
    for f in (p.stdin, p.stdout):
        if f is not None:
            f.close()


def _ok(cp: subprocess.CompletedProcess[str]) -> list[str]:
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    lines = cp.stdout.splitlines()
    assert lines and lines[0].startswith("ok"), cp.stdout
    return lines


def _err(cp: subprocess.CompletedProcess[str]) -> tuple[int, str]:
    assert cp.returncode == 1, (cp.stdout, cp.stderr)
    head, code, text = cp.stdout.split(" ", 2)
    assert head == "err", cp.stdout
    return int(code), text.strip()


# ---- the build ------------------------------------------------------------------------


@pytest.mark.parametrize("compiler,std,ext", [("gcc", "c99", "c"), ("g++", "c++17", "cpp")])
def test_the_header_compiles_as_c99_and_cpp17_without_warnings_and_links(
    lib: Path, tmp_path: Path, compiler: str, std: str, ext: str
) -> None:
    cc = shutil.which(compiler)
    if cc is None:
        pytest.skip(f"no {compiler} on PATH")
    src = tmp_path / f"use.{ext}"
    src.write_text(
        '#include "mapshare.h"\n'
        "#include <stdio.h>\n"
        "int main(void) {\n"
        "    mapshare_options o;\n"
        "    char buf[MAPSHARE_OS_NAME_MAX];\n"
        "    mapshare_options_init(&o);\n"
        "    if (mapshare_os_name(\"from-a-program\", buf, sizeof buf) != MAPSHARE_OK)\n"
        "        return 1;\n"
        "    puts(buf);\n"
        "    puts(mapshare_strerror(MAPSHARE_E_VERSION));\n"
        "    return o.mode == 0600 ? 0 : 2;\n"
        "}\n"
    )
    exe = tmp_path / "use"
    cp = subprocess.run([cc, f"-std={std}", "-Wall", "-Wextra", "-Werror", "-pedantic",
                         f"-I{mapshare.get_include()}", str(src), str(lib / "libmapshare.a"),
                         "-lpthread", "-lrt", "-o", str(exe)],
                        capture_output=True, text=True, timeout=120, env=C_ENV)
    assert cp.returncode == 0, cp.stderr
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True,
                         env=C_ENV).stdout.splitlines()
    assert out[0] == "/mapshare.from-a-program" and "layout version" in out[1]


def test_get_include_names_the_directory_of_the_header() -> None:
    inc = Path(mapshare.get_include())
    assert (inc / "mapshare.h").read_text() == (REPO / "include" / "mapshare.h").read_text()


def test_a_program_builds_from_get_sources_without_make(tmp_path: Path) -> None:
    """What docs/c-api.md tells a user of an installed package to run."""
    exe = tmp_path / "prog"
    subprocess.run([_cc(), "-O1", "-D_DEFAULT_SOURCE", f"-I{mapshare.get_include()}",
                    str(HERE / "capi_tool.c"), *mapshare.get_sources(), "-lpthread", "-lrt",
                    "-o", str(exe)],
                   check=True, capture_output=True, text=True, timeout=300, env=C_ENV)
    out = subprocess.run([str(exe), "osname", "x" * 40], capture_output=True, text=True,
                         check=True, env=C_ENV).stdout
    assert out.strip() == _naming.os_name("x" * 40)


def test_a_program_links_the_shared_library(lib: Path, tmp_path: Path) -> None:
    exe = tmp_path / "prog"
    subprocess.run([_cc(), "-D_DEFAULT_SOURCE", f"-I{REPO / 'include'}",
                    str(HERE / "capi_tool.c"), f"-L{lib}", "-lmapshare",
                    f"-Wl,-rpath,{lib}", "-o", str(exe)],
                   check=True, capture_output=True, text=True, timeout=120, env=C_ENV)
    out = subprocess.run([str(exe), "osname", "shared"], capture_output=True, text=True,
                         check=True, env=C_ENV).stdout
    assert out.strip() == "/mapshare.shared"


@pytest.mark.skipif(shutil.which("cmake") is None, reason="no cmake on PATH")
def test_the_cmake_build_makes_both_libraries(tmp_path: Path) -> None:
    build = tmp_path / "cmake"
    for cmd in (["cmake", "-S", str(REPO), "-B", str(build), f"-DCMAKE_C_COMPILER={_cc()}"],
                ["cmake", "--build", str(build)]):
        cp = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=C_ENV)
        assert cp.returncode == 0, cp.stdout + cp.stderr
    assert (build / "libmapshare.a").exists() and (build / "libmapshare.so").exists()


def test_the_shared_library_exports_the_api_and_nothing_else(lib: Path) -> None:
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("no nm on PATH")
    out = subprocess.run([nm, "-D", "--defined-only", str(lib / "libmapshare.so")],
                         capture_output=True, text=True, check=True, env=C_ENV).stdout
    syms = {line.split()[-1] for line in out.splitlines() if line.split()[1:2] == ["T"]}
    assert syms and all(s.startswith("mapshare_") for s in syms), sorted(syms)
    header = (REPO / "include" / "mapshare.h").read_text()
    for s in syms:
        assert f"{s}(" in header, s


def test_c_selftest_of_every_call_a_single_process_can_check(tool: Tool, name: str) -> None:
    """Loans, views, statistics and the end of a channel; views and read-only handles;
    timeouts, bounds and the statuses of misuse (tests/c_api/capi_tool.c selftest)."""
    cp = tool("selftest", name)
    assert cp.returncode == 0 and cp.stdout.strip() == "ok", cp.stdout + cp.stderr
    for suffix in (".ch", ".seg", ".sem", ".ev"):
        assert not os.path.exists("/dev/shm" + _naming.os_name(name + suffix))


# ---- naming ---------------------------------------------------------------------------


def test_os_names_agree_with_python_for_short_long_and_random_names(tool: Tool) -> None:
    rng = random.Random(13)
    alphabet = string.ascii_letters + string.digits + "._-"
    names = ["a", "x" * 20, "x" * 21, "q" * 255, "cam.front-left_0", "0123456789" * 3]
    for _ in range(200):
        n = rng.randint(1, 255)
        first = rng.choice(string.ascii_letters + string.digits + "_")
        names.append(first + "".join(rng.choice(alphabet) for _ in range(n - 1)))
    got = _ok_osnames(tool("osname", *names))
    assert got == [_naming.os_name(n) for n in names]


def _ok_osnames(cp: subprocess.CompletedProcess[str]) -> list[str]:
    assert cp.returncode == 0, cp.stdout + cp.stderr
    return cp.stdout.splitlines()


@pytest.mark.parametrize("bad", [".hidden", "-dash", "sp ace", "x" * 256, "slash/x", "é"])
def test_names_python_refuses_c_refuses(tool: Tool, bad: str) -> None:
    with pytest.raises(ValueError):
        _naming.os_name(bad)
    code, _ = _err(tool("osname", bad))
    assert code == 20  # MAPSHARE_E_INVALID


# ---- segments both ways ---------------------------------------------------------------


@pytest.fixture
def long_name(name: str) -> Iterator[str]:
    """A name over 20 characters (hashed OS name) that starts with the fixture's unique
    one, removed afterwards."""
    n = name + "-" + "long" * 8
    yield n
    try:
        os.unlink("/dev/shm" + _naming.os_name(n))
    except FileNotFoundError:
        pass


def test_c_creates_python_opens_a_long_name(tool_path: Path, long_name: str) -> None:
    p = subprocess.Popen([str(tool_path), "create", long_name, "4096", "from C"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=C_ENV)
    try:
        assert p.stdout is not None and p.stdin is not None
        line = p.stdout.readline().split()
        assert line == ["ok", _naming.os_name(long_name)]
        with mapshare.Segment.open(long_name) as seg:
            assert seg.size == 4096 and seg.read(6) == b"from C"
            assert seg.lifetime == "shared"
        p.stdin.close()
        assert p.wait(timeout=30) == 0
    finally:
        _reap(p)
    # 'shared': the last user (the C process) removed the name as Python would
    assert not os.path.exists("/dev/shm" + _naming.os_name(long_name))


def test_python_creates_c_opens_reads_and_writes(tool: Tool, long_name: str) -> None:
    with mapshare.Segment.create(long_name, 100) as seg:
        seg.write(b"from Python")
        since = seg.change_count
        lines = _ok(tool("open", long_name, "11"))
        assert lines[0].split() == ["ok", "100", "1", long_name] and lines[1] == "from Python"
        _ok(tool("write", long_name, "from C!"))
        assert seg.read(7) == b"from C!"
        assert seg.change_count != since  # the C notify moved the counter


def test_a_file_backed_segment_created_in_c_opens_in_python_by_name_and_path(
    tool_path: Path, name: str, tmp_path: Path
) -> None:
    f = tmp_path / "data.seg"
    p = subprocess.Popen([str(tool_path), "--path", str(f), "--persistent", "create", name,
                          "64", "on disk"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True, env=C_ENV)
    try:
        assert p.stdout is not None and p.stdin is not None
        assert p.stdout.readline().startswith("ok")
        with mapshare.Segment.open(name) as seg:  # through the link object
            assert seg.read(7) == b"on disk" and seg.path == str(f)
        p.stdin.close()
        assert p.wait(timeout=30) == 0
    finally:
        _reap(p)
    with mapshare.Segment.open(path=f) as seg:
        assert seg.name == name and seg.read(7) == b"on disk"
        seg.unlink()


def test_python_file_backed_segment_opens_in_c_by_name_and_by_path(
    tool: Tool, name: str, tmp_path: Path
) -> None:
    f = tmp_path / "py.seg"
    with mapshare.Segment.create(name, 32, path=f, lifetime="persistent") as seg:
        seg.write(b"py file")
        assert _ok(tool("open", name, "7"))[1] == "py file"
        lines = _ok(tool("--path", str(f), "open", "-", "7"))
        assert lines[0].split()[3] == name and lines[1] == "py file"
        # opened by path, C finds the name's link (it points at this file) and removes it
        _ok(tool("--path", str(f), "unlink", "-"))
        assert not os.path.exists("/dev/shm" + _naming.os_name(name))
        assert seg.read(7) == b"py file" and f.exists()  # the file is the data: it stays


def test_c_create_over_a_stale_link_removes_it_as_python_does(
    tool: Tool, name: str, tmp_path: Path
) -> None:
    """The name of a file-backed segment whose file was deleted is a stale link: C's
    create removes it (Python's reclaim_link) instead of reporting EXISTS; a live one is
    still EXISTS."""
    old, new = tmp_path / "old.seg", tmp_path / "new.seg"
    with mapshare.Segment.create(name, 16, path=old, lifetime="persistent"):
        pass
    assert _err(tool("--path", str(new), "create", name, "16", "x"))[0] == 3  # E_EXISTS
    old.unlink()
    _ok(tool("--path", str(new), "--persistent", "create", name, "16", "new file"))
    with mapshare.Segment.open(name) as seg:
        assert seg.path == str(new) and seg.read(8) == b"new file"
        # and the other way: C's link, its file deleted, is reclaimed by Python's create
        new.unlink()
        seg.unlink()
    _ok(tool("--path", str(new), "--persistent", "create", name, "16", "again"))
    new.unlink()
    with mapshare.Segment.create(name, 16, path=old, lifetime="persistent") as seg:
        assert seg.path == str(old)
        seg.unlink()


def test_c_create_over_the_link_of_a_shared_file_segment_whose_users_died(
    tool: Tool, name: str, tmp_path: Path
) -> None:
    """The link of a 'shared' file-backed segment whose every user was SIGKILLed is
    stale too (reclaim_link reaps the attach table): C creates over it."""
    f, g = tmp_path / "dead.seg", tmp_path / "next.seg"
    code = ("import mapshare, time\n"
            f"s = mapshare.Segment.create({name!r}, 16, path={str(f)!r})\n"
            "print('made', flush=True)\ntime.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "made"
        assert _err(tool("--path", str(g), "create", name, "16", "x"))[0] == 3  # alive
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    finally:
        _reap(p)
    _ok(tool("--path", str(g), "--persistent", "create", name, "16", "after"))
    with mapshare.Segment.open(name) as seg:
        assert seg.path == str(g) and seg.read(5) == b"after"
        seg.unlink()
    assert f.exists()  # the dead segment's file is data: it stays


def test_persistent_segment_from_c_outlives_it_and_unlink_removes_it(
    tool: Tool, name: str
) -> None:
    _ok(tool("--persistent", "create", name, "16", "kept"))
    with mapshare.Segment.open(name) as seg:
        assert seg.lifetime == "persistent" and seg.read(4) == b"kept"
    _ok(tool("unlink", name))
    with pytest.raises(mapshare.SegmentNotFoundError):
        mapshare.Segment.open(name)


def test_exclusive_create_refuses_a_taken_name_in_both_languages(tool: Tool, name: str) -> None:
    with mapshare.Segment.create(name, 8):
        code, _ = _err(tool("create", name, "8", "x"))
        assert code == 3  # MAPSHARE_E_EXISTS, as SegmentExistsError


def test_missing_names_and_wrong_kinds_are_refused_like_python(tool: Tool, name: str) -> None:
    code, _ = _err(tool("open", name, "0"))
    assert code == 2  # NOT_FOUND
    with mapshare.Channel.create(name, 1024):
        with pytest.raises(mapshare.LayoutError):
            mapshare.Segment.open(name)
        code, _ = _err(tool("open", name, "0"))
        assert code == 5  # LAYOUT: a channel opened as a plain segment
        lines = _ok(tool("--kind", "any", "open", name, "0"))
        assert lines[0].split()[2] == "5"


def test_foreign_modes_are_refused_unless_allowed_in_both_languages(
    tool: Tool, name: str
) -> None:
    with mapshare.Segment.create(name, 8, mode=0o606) as seg:
        seg.write(b"open")
        with pytest.raises(mapshare.PermissionDeniedError):
            mapshare.Segment.open(name)
        code, _ = _err(tool("open", name, "4"))
        assert code == 4  # PERMISSION
        assert _ok(tool("--allow-foreign", "open", name, "4"))[1] == "open"


def test_c_waits_for_a_name_python_creates_later(tool_path: Path, name: str) -> None:
    p = subprocess.Popen([str(tool_path), "--wait", "20", "open", name, "5"],
                         stdout=subprocess.PIPE, text=True, env=C_ENV)
    try:
        time.sleep(0.3)
        assert p.poll() is None  # still waiting
        with mapshare.Segment.create(name, 8):
            out, _ = p.communicate(timeout=30)
    finally:
        _reap(p)
    # What the C side found: the segment Python made (size 8, a plain segment, its name).
    # Not its contents: the C side may read the instant the name appears, before any
    # write of ours (the 3.12 matrix cell once read zeros there).
    assert p.returncode == 0
    assert out.splitlines()[0] == f"ok 8 {_core.KIND_SEGMENT} {name}"


def test_a_read_only_open_in_c_cannot_write(tool: Tool, name: str) -> None:
    with mapshare.Segment.create(name, 8):
        code, _ = _err(tool("--access", "r", "write", name, "x"))
        assert code == 4  # PERMISSION


# ---- channels, locks, events, semaphores -----------------------------------------------


def test_channel_python_to_c_to_the_end_of_the_stream(tool_path: Path, name: str) -> None:
    with mapshare.Channel.create(name, 4096) as ch:
        p = subprocess.Popen([str(tool_path), "recv", name], stdout=subprocess.PIPE,
                             text=True, env=C_ENV)
        try:
            for i in range(100):
                ch.send(f"m{i}".encode())
            ch.close_sending()
            out, _ = p.communicate(timeout=30)
        finally:
            _reap(p)
    lines = out.splitlines()
    assert lines[0] == "ok" and lines[1:-1] == [f"msg m{i}" for i in range(100)]
    assert lines[-1] == "end 11"  # MAPSHARE_E_CLOSED


def test_channel_c_to_python_with_close(tool: Tool, name: str) -> None:
    with mapshare.Channel.create(name, 4096) as ch:
        _ok(tool("send", name, "one", "two", "--close"))
        assert ch.receive(timeout=5) == b"one"
        assert ch.receive(timeout=5) == b"two"
        with pytest.raises(mapshare.EndOfChannel):
            ch.receive(timeout=5)


def test_a_c_program_that_ends_without_closing_detaches_like_close(
    tool: Tool, name: str
) -> None:
    # Returning from main runs the library's exit path: peers see a clean detach, not a
    # dead process (which `mapshare ls` shows and gc or recovery must deal with).
    with mapshare.Channel.create(name, 4096) as ch:
        _ok(tool("send", name, "one", "two", "--no-close"))
        assert ch.receive(timeout=5) == b"one"
        assert ch.receive(timeout=5) == b"two"
        info = segment_info(_naming.os_name(name))
        assert [p.pid for p in info.attached] == [os.getpid()], info.attached


def test_a_c_program_that_ends_as_the_last_user_removes_the_name(
    tool: Tool, name: str
) -> None:
    # (a killed creator would leave it behind for `mapshare gc`)
    _ok(tool("create", name, "4096", "hello", "--no-close"))
    with pytest.raises(mapshare.SegmentNotFoundError):
        mapshare.Segment.open(name)


def test_a_c_lock_holder_sigkilled_leaves_owner_died_to_python(
    tool_path: Path, name: str
) -> None:
    with mapshare.Segment.create(name, 8) as seg:
        p = subprocess.Popen([str(tool_path), "lock-hold", name], stdout=subprocess.PIPE,
                             text=True, env=C_ENV)
        try:
            assert p.stdout is not None and p.stdout.readline().strip() == "held"
            assert not seg.lock().acquire(timeout=0.05)
            os.kill(p.pid, signal.SIGKILL)
            p.wait(timeout=30)
        finally:
            _reap(p)
        with pytest.raises(mapshare.OwnerDiedError):
            seg.lock().acquire(timeout=10)
        seg.lock().release()


def test_a_python_lock_holder_killed_leaves_owner_died_to_c(
    tool: Tool, tool_path: Path, name: str
) -> None:
    lk = mapshare.Lock.create(name)  # (a Lock's `with` block acquires it: not wanted)
    try:
        code = ("import mapshare, sys, time\n"
                f"lk = mapshare.Lock.open({name!r})\n"
                "lk.acquire()\nprint('held', flush=True)\ntime.sleep(600)\n")
        p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        try:
            assert p.stdout is not None and p.stdout.readline().strip() == "held"
            os.kill(p.pid, signal.SIGKILL)
            p.wait(timeout=30)
        finally:
            _reap(p)
        assert _ok(tool("lock", name))[0] == "ok 8"  # MAPSHARE_E_OWNER_DIED: acquired
        assert _ok(tool("lock", name))[0] == "ok 0"
        assert lk.acquire(timeout=5)
        lk.release()
    finally:
        lk.close()


def test_events_and_semaphores_across_languages(tool: Tool, tool_path: Path,
                                                names: Callable[[], str]) -> None:
    ev_name, sem_name = names(), names()
    ev = mapshare.Event.create(ev_name)
    sem = mapshare.Semaphore.create(sem_name, 0, maximum=2)
    try:
        p = subprocess.Popen([str(tool_path), "event-wait", ev_name], stdout=subprocess.PIPE,
                             text=True, env=C_ENV)
        try:
            time.sleep(0.1)
            ev.set()
            out, _ = p.communicate(timeout=30)
        finally:
            _reap(p)
        assert p.returncode == 0 and out.strip() == "ok 1"
        ev.clear()
        _ok(tool("event-set", ev_name))
        assert ev.is_set()
        assert _ok(tool("sem-release", sem_name))[0] == "ok 1"
        assert sem.acquire(timeout=5)
        sem.release()
        assert _ok(tool("sem-acquire", sem_name))[0] == "ok 0"
    finally:
        ev.close()
        sem.close()


def test_events_and_semaphores_placed_in_a_segment_across_languages(
        tool: Tool, tool_path: Path, name: str) -> None:
    """Event/Semaphore.create_in and mapshare_*_create_in share one memory format: each
    language opens, waits on and wakes what the other placed in the same segment."""
    with mapshare.Segment.create(name, 128) as seg:
        ev = mapshare.Event.create_in(seg, 8)
        p = subprocess.Popen([str(tool_path), "in-event", name, "8", "wait"],
                             stdout=subprocess.PIPE, text=True, env=C_ENV)
        try:
            time.sleep(0.1)
            ev.set()  # wakes the C waiter: same word, same waiter count
            out, _ = p.communicate(timeout=30)
        finally:
            _reap(p)
        assert p.returncode == 0 and out.strip() == "ok 1"
        assert _ok(tool("in-event", name, "8", "clear"))[0] == "ok 0"
        assert not ev.is_set()
        # C places an event; Python opens it and waits for C to set it
        assert _ok(tool("in-event", name, "32", "create0"))[0] == "ok 0"
        ev2 = mapshare.Event.open_in(seg, 32)
        assert not ev2.is_set()
        _ok(tool("in-event", name, "32", "set"))
        assert ev2.wait(timeout=5)
        # semaphores, both ways
        assert _ok(tool("in-sem", name, "64", "create", "0", "3"))[0] == "ok 0"
        sem = mapshare.Semaphore.open_in(seg, 64)
        assert not sem.acquire(timeout=0)
        assert _ok(tool("in-sem", name, "64", "release"))[0] == "ok 1"
        assert sem.acquire(timeout=5)
        sem2 = mapshare.Semaphore.create_in(seg, 96, 2, maximum=2)
        assert _ok(tool("in-sem", name, "96", "acquire"))[0] == "ok 1"
        assert _ok(tool("in-sem", name, "96", "open"))[0] == "ok 1"
        assert sem2.acquire(timeout=0) and not sem2.acquire(timeout=0)
        sem2.release(2)
        assert _err(tool("in-sem", name, "96", "release"))[0] == MAPSHARE_E_VALUE


MAPSHARE_E_LAYOUT, MAPSHARE_E_PERMISSION, MAPSHARE_E_VALUE, MAPSHARE_E_INVALID = 5, 4, 21, 20


@pytest.mark.parametrize("offset, py_error, status", [
    ("4", ValueError, MAPSHARE_E_INVALID),     # not a multiple of 8
    ("120", ValueError, MAPSHARE_E_INVALID),   # its 16 bytes overrun the 128-byte segment
    ("128", ValueError, MAPSHARE_E_INVALID),
    ("0", mapshare.LayoutError, MAPSHARE_E_LAYOUT),  # nothing was placed there
])
def test_open_in_refuses_what_python_refuses(tool: Tool, name: str, offset: str,
                                             py_error: type[Exception], status: int) -> None:
    with mapshare.Segment.create(name, 128) as seg:
        for kind, cls in (("in-event", mapshare.Event), ("in-sem", mapshare.Semaphore)):
            with pytest.raises(py_error):
                cls.open_in(seg, int(offset))
            assert _err(tool(kind, name, offset, "open"))[0] == status


def test_create_in_refuses_read_only_segments_and_other_kinds_like_python(
        tool: Tool, name: str, names: Callable[[], str]) -> None:
    with mapshare.Segment.create(name, 128) as seg:
        with mapshare.Segment.open(name, access="r") as ro, pytest.raises(PermissionError):
            mapshare.Event.create_in(ro, 0)
        assert _err(tool("--access", "r", "in-event", name, "0", "create0"))[0] \
            == MAPSHARE_E_PERMISSION
        assert _err(tool("--access", "r", "in-sem", name, "0", "create", "1", "1"))[0] \
            == MAPSHARE_E_PERMISSION
        with pytest.raises(ValueError):
            mapshare.Semaphore.create_in(seg, 0, 2, maximum=1)
        assert _err(tool("in-sem", name, "0", "create", "2", "1"))[0] == MAPSHARE_E_INVALID
        ch_name = names()
        with mapshare.Channel.create(ch_name, 256):
            assert _err(tool("--kind", "any", "in-event", ch_name, "0", "create0"))[0] \
                == MAPSHARE_E_INVALID


# ---- mapshare_wait_any -------------------------------------------------------------------

WAKERS = ["notify", "event", "semaphore", "message", "close", "placed-event", "placed-sem"]


@pytest.mark.parametrize("waker", WAKERS)
def test_c_wait_any_is_woken_by_each_kind_of_python_object(
        tool_path: Path, names: Callable[[], str], waker: str) -> None:
    """A C process waits on seven objects at once; a Python process readies one of them:
    exactly that one is reported (ready is level: waking before the C waiter sleeps is
    reported too, so the test has no race)."""
    seg_n, ev_n, sem_n, ch_n = names(), names(), names(), names()
    ev = mapshare.Event.create(ev_n)
    sem = mapshare.Semaphore.create(sem_n, 0)
    try:
        with mapshare.Segment.create(seg_n, 64) as seg, mapshare.Channel.create(ch_n, 256) as ch:
            pev = mapshare.Event.create_in(seg, 8)
            psem = mapshare.Semaphore.create_in(seg, 24, 0, maximum=1)
            since = seg.change_count
            p = subprocess.Popen(
                [str(tool_path), "wait-any", "30", f"seg:{seg_n}:{since}", f"ev:{ev_n}",
                 f"sem:{sem_n}", f"ch:{ch_n}", f"ch:{ch_n}", f"in-ev:{seg_n}:8",
                 f"in-sem:{seg_n}:24"],
                stdout=subprocess.PIPE, text=True, env=C_ENV)
            try:
                time.sleep(0.2)
                if waker == "notify":
                    seg.notify()
                elif waker == "event":
                    ev.set()
                elif waker == "semaphore":
                    sem.release()
                elif waker == "message":
                    ch.send(b"hello")
                elif waker == "close":
                    ch.close_sending()
                elif waker == "placed-event":
                    pev.set()
                else:
                    psem.release()
                out, _ = p.communicate(timeout=30)
            finally:
                _reap(p)
            assert p.returncode == 0, out
            lines = out.splitlines()
            want = {"notify": "ok 0", "event": "ok 1", "semaphore": "ok 2", "message": "ok 3 4",
                    "close": "ok 3 4", "placed-event": "ok 5", "placed-sem": "ok 6"}[waker]
            assert lines[0] == want
            if waker == "message":  # one of the two receivers takes it, the other finds none
                assert sorted(lines[1:]) == ["ch 3 0", "ch 4 10"] or \
                    sorted(lines[1:]) == ["ch 3 10", "ch 4 0"]
            if waker == "close":
                assert lines[1:] == ["ch 3 11", "ch 4 11"]
            # nothing was taken by the wait itself
            if waker == "semaphore":
                assert sem.acquire(timeout=0)
            if waker == "placed-sem":
                assert psem.acquire(timeout=0)
    finally:
        ev.close()
        sem.close()


def test_c_wait_any_reports_a_channel_whose_python_sender_was_sigkilled(
        tool_path: Path, name: str) -> None:
    code = ("import mapshare, sys, time\n"
            f"ch = mapshare.Channel.open({name!r})\n"
            "ch.send(b'last words')\nprint('sent', flush=True)\ntime.sleep(60)\n")
    with mapshare.Channel.create(name, 256) as ch:
        sender = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                  text=True)
        try:
            assert sender.stdout is not None and sender.stdout.readline().strip() == "sent"
            assert ch.receive_nowait() == b"last words"
            os.kill(sender.pid, signal.SIGKILL)
            sender.wait()
        finally:
            _reap(sender)
        cp = subprocess.run([str(tool_path), "wait-any", "30", f"ch:{name}"],
                            capture_output=True, text=True, timeout=60, env=C_ENV)
        # ready, and its next receive (timeout 0) says broken: MAPSHARE_E_BROKEN
        assert _ok(cp) == ["ok 0", "ch 0 18"]


def test_c_wait_any_times_out_and_refuses_a_lock_like_python(
        tool: Tool, names: Callable[[], str]) -> None:
    seg_n, lk_n = names(), names()
    lk = mapshare.Lock.create(lk_n)
    try:
        with mapshare.Segment.create(seg_n, 64):
            assert _err(tool("wait-any", "0.05", f"seg:{seg_n}"))[0] == 6  # E_TIMEOUT
            assert _err(tool("wait-any", "0", f"seg:{seg_n}", f"lock:{lk_n}"))[0] \
                == MAPSHARE_E_INVALID
            with pytest.raises(TypeError):
                mapshare.wait([lk], timeout=0)
    finally:
        lk.close()


def test_python_wait_is_woken_by_c(tool: Tool, name: str) -> None:
    """The other way: mapshare.wait in Python, the C library readies the objects."""
    with mapshare.Segment.create(name, 64) as seg:
        pev = mapshare.Event.create_in(seg, 8)
        since = seg.change_count
        _ok(tool("write", name, "x"))  # writes and notifies
        assert mapshare.wait([(seg, since), pev], timeout=5) == [(seg, since)]
        _ok(tool("in-event", name, "8", "set"))
        assert mapshare.wait([pev], timeout=5) == [pev]


# ---- layout version (issue 13 part 4) ----------------------------------------------------


def test_a_future_layout_version_is_refused_by_python_and_by_c(tool: Tool, name: str) -> None:
    with mapshare.Segment.create(name, 64, lifetime="persistent") as seg:
        seg.write(b"v2 data")
    try:
        poke(name, OFF_VERSION, (3).to_bytes(4, "little"))
        with pytest.raises(mapshare.LayoutVersionError,
                           match=f"segment '{name}' was made with another mapshare layout "
                           "version") as exc:
            mapshare.Segment.open(name)
        assert isinstance(exc.value, mapshare.LayoutError)
        # never mistaken for an abandoned object and replaced
        with pytest.raises(mapshare.LayoutVersionError):
            mapshare.Segment.open_or_create(name, 64)
        code, text = _err(tool("open", name, "0"))
        assert code == 29  # MAPSHARE_E_VERSION
        assert "layout version" in text
        # what was refused is left alone: the right version opens it again
        poke(name, OFF_VERSION, (2).to_bytes(4, "little"))
        with mapshare.Segment.open(name) as seg:
            assert seg.read(7) == b"v2 data"
            seg.unlink()
    finally:
        try:
            os.unlink("/dev/shm" + _naming.os_name(name))
        except FileNotFoundError:
            pass
