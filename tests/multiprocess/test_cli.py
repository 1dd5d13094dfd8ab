"""The ``mapshare`` command: ls, info, rm, gc and demo, both as a real subprocess
(``python -m mapshare``) and in-process through ``mapshare._cli.main``."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

import mapshare
from mapshare import _cli, _naming
from mapshare.testing import shm_entries
from support import NO_PERSISTENT_SHM, WINDOWS, exists, shm_path

TIMEOUT = 60.0

HOLDER = """
import sys, time, mapshare
seg = mapshare.Segment.create(sys.argv[1], 4096)
seg.write(b"held")
print("READY", flush=True)
time.sleep(600)
"""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mapshare", *args],
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = _cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def killed_holder(name: str) -> Iterator[str]:
    """A 'shared' segment whose only holder was SIGKILLed."""
    if WINDOWS:
        pytest.skip("a killed last holder leaves nothing behind on Windows (the name "
                    "vanishes with its handles): nothing for gc")
    p = subprocess.Popen([sys.executable, "-c", HOLDER, name], stdout=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "READY"
        os.kill(p.pid, signal.SIGKILL)
        assert p.wait(TIMEOUT) == -signal.SIGKILL
        assert exists(name)
        yield name
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        if p.stdout is not None:
            p.stdout.close()


# ---- ls ---------------------------------------------------------------------------------


def test_ls_subprocess(name: str) -> None:
    with mapshare.Segment.create(name, 5000):
        r = cli("ls")
        assert r.returncode == 0, r.stderr
        line = next(ln for ln in r.stdout.splitlines() if ln.startswith(name + " "))
        assert "segment" in line and "shared" in line and "ready" in line
        assert f"{os.getpid()} (alive)" in line
        assert "NAME" in r.stdout.splitlines()[0]
    r = cli("ls")
    assert name not in r.stdout


@pytest.mark.posix_only(NO_PERSISTENT_SHM)
def test_ls_json_subprocess(name: str, tmp_path: object) -> None:
    with mapshare.Segment.create(name, 5000, lifetime="persistent") as seg:
        r = cli("ls", "--json")
        assert r.returncode == 0, r.stderr
        data = json.loads(r.stdout)
        assert isinstance(data, list)
        mine = [d for d in data if d["name"] == name]
        assert len(mine) == 1
        d = mine[0]
        assert d["kind"] == "segment" and d["size"] == 5000
        assert d["lifetime"] == "persistent" and d["state"] == "ready"
        assert d["creator_pid"] == os.getpid() and d["creator_alive"] is True
        assert d["os_name"] == _naming.os_name(name)
        assert d["mode"] == "0o600"
        assert {"pid": os.getpid(), "handles": 1, "alive": True} in d["attached"]
        assert d["created"]
        seg.unlink()


def test_ls_in_process(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with mapshare.Segment.create(name, 100):
        code, out, _ = run_main(capsys, "ls", "--json")
        assert code == 0
        assert [d["size"] for d in json.loads(out) if d["name"] == name] == [100]
        code, out, _ = run_main(capsys, "ls")
        assert code == 0 and name in out


# ---- info -------------------------------------------------------------------------------


def test_info_subprocess(name: str) -> None:
    with mapshare.Segment.create(name, 4096) as seg, mapshare.Segment.open(name):
        seg.notify()
        r = cli("info", name)
        assert r.returncode == 0, r.stderr
        out = r.stdout
        assert f"name:        {name}" in out
        assert "kind:        segment" in out
        assert "size:        4096 bytes" in out
        assert "lifetime:    shared" in out
        assert "mode 0o600" in out
        assert f"creator:     pid {os.getpid()} (alive)" in out
        assert f"pid {os.getpid()}: 2 handle(s), alive" in out
        assert "changes:     1" in out
        assert "lock:        free" in out
        r = cli("info", name, "--json")
        assert r.returncode == 0, r.stderr
        d = json.loads(r.stdout)
        assert d["name"] == name and d["size"] == 4096 and d["change_count"] == 1
        assert d["attached"] == [{"pid": os.getpid(), "handles": 2, "alive": True}]


def test_info_in_process_and_missing(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(capsys, "info", name)
    assert code == _cli.EXIT_NOT_FOUND and name in err and out == ""
    r = cli("info", name)
    assert r.returncode == _cli.EXIT_NOT_FOUND and name in r.stderr
    with mapshare.Channel.create(name, 4096) as ch:
        ch.send(b"queued")
        code, out, _ = run_main(capsys, "info", name, "--json")
        assert code == 0
        d = json.loads(out)
        assert d["kind"] == "channel" and d["extra"]["queued_messages"] == 1
        code, out, _ = run_main(capsys, "info", name)
        assert code == 0 and "depth:       1 message(s)" in out
        ch.unlink()


# ---- rm ---------------------------------------------------------------------------------


@pytest.mark.posix_only(NO_PERSISTENT_SHM)
def test_rm_subprocess(names: object) -> None:
    a, b = names(), names()  # type: ignore[operator]
    for n in (a, b):
        mapshare.Segment.create(n, 64, lifetime="persistent").close()
    r = cli("rm", a, b)
    assert r.returncode == 0, r.stderr
    assert f"removed {a}" in r.stdout and f"removed {b}" in r.stdout
    assert not exists(a) and not exists(b)
    r = cli("rm", a)
    assert r.returncode == _cli.EXIT_NOT_FOUND and "no segment named" in r.stderr


@pytest.mark.posix_only("rm removes the name at once (Windows: marks it destroyed; the name "
                        "goes with the last handle, see test_platform.py)")
def test_rm_in_process(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with mapshare.Segment.create(name, 64) as seg:
        code, out, _ = run_main(capsys, "rm", name)
        assert code == 0 and f"removed {name}" in out
        assert not exists(name)
        seg.write(b"still mapped")  # removing the name does not unmap anyone
        assert seg.read(12) == b"still mapped"
        with pytest.raises(mapshare.SegmentNotFoundError, match=re.escape(name)):
            mapshare.Segment.open(name)
    code, _, err = run_main(capsys, "rm", name)
    assert code == _cli.EXIT_NOT_FOUND and name in err


# ---- gc ---------------------------------------------------------------------------------


def test_gc_subprocess(killed_holder: str) -> None:
    name = killed_holder
    r = cli("gc", "--dry-run")
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if f" {name} " in ln)
    assert line.startswith("would remove") and "dead" in line
    assert exists(name)
    r = cli("gc", "--dry-run", "--json")
    assert any(d["name"] == name for d in json.loads(r.stdout))
    r = cli("gc")
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if f" {name} " in ln]
    assert len(lines) == 1, (r.stdout, exists(name))
    line = lines[0]
    assert line.startswith("removed") and "dead" in line
    assert not exists(name)
    r = cli("gc")
    assert name not in r.stdout


def test_gc_in_process(killed_holder: str, capsys: pytest.CaptureFixture[str]) -> None:
    name = killed_holder
    code, out, _ = run_main(capsys, "gc", "--dry-run", "--json")
    assert code == 0
    assert [d["os_name"] for d in json.loads(out) if d["name"] == name] == [
        _naming.os_name(name)
    ]
    assert exists(name)
    code, out, _ = run_main(capsys, "gc")
    assert code == 0 and f"removed {name}" in out
    assert not exists(name)


@pytest.mark.posix_only(NO_PERSISTENT_SHM)
def test_gc_leaves_live_and_persistent(names: object, capsys: pytest.CaptureFixture[str]) -> None:
    live, pers = names(), names()  # type: ignore[operator]
    with mapshare.Segment.create(live, 64):
        mapshare.Segment.create(pers, 64, lifetime="persistent").close()
        try:
            code, out, _ = run_main(capsys, "gc")
            assert code == 0
            assert live not in out and pers not in out
            assert exists(live) and exists(pers)
        finally:
            os.unlink(shm_path(pers))


# ---- demo and usage ---------------------------------------------------------------------


def test_demo_subprocess_leaves_nothing() -> None:
    before = shm_entries()
    r = cli("demo")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "demo ok" in r.stdout
    assert "Hello from process" in r.stdout
    assert not {e for e in shm_entries() - before if ".demo-" in e}


def test_demo_in_process_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    before = shm_entries()
    code, _, _ = run_main(capsys, "demo", "--quiet")
    assert code == 0
    assert not {e for e in shm_entries() - before if ".demo-" in e}


def test_usage_errors() -> None:
    r = cli()
    assert r.returncode == 2 and "usage" in r.stderr
    r = cli("nonsense")
    assert r.returncode == 2
    with pytest.raises(SystemExit) as exc:
        _cli.main(["info"])
    assert exc.value.code == 2


def test_cli_version() -> None:
    r = subprocess.run([sys.executable, "-m", "mapshare", "--version"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"mapshare {mapshare.__version__}"
