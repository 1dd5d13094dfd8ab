"""``mapshare get``, ``ls`` and ``info`` on a Latest slot, as a real subprocess and
through ``_cli.main``."""

from __future__ import annotations

import json
import struct
import subprocess
import sys

import pytest

from mapshare import Latest, _cli
from support import poke


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mapshare", *args], capture_output=True, text=True, timeout=60
    )


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = _cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_get_prints_the_value_raw_hex_and_json(name: str) -> None:
    with Latest.create(name, 64) as lt:
        lt.set(b"pose 1 2 3")
        r = cli("get", name)
        assert r.returncode == 0, r.stderr
        assert r.stdout == "pose 1 2 3\n"
        assert cli("get", name, "--hex").stdout == b"pose 1 2 3".hex() + "\n"
        assert json.loads(cli("get", name, "--json").stdout) == {
            "size": 10, "text": "pose 1 2 3", "version": 1}
        lt.set(b"\xff\x00")
        assert json.loads(cli("get", name, "--json").stdout) == {
            "size": 2, "base64": "/wA=", "version": 2}


def test_get_waits_for_a_newer_version(name: str) -> None:
    with Latest.create(name, 64) as lt:
        lt.set(b"one")
        p = subprocess.Popen([sys.executable, "-m", "mapshare", "get", name, "--wait-since",
                              "1", "--timeout", "60"], stdout=subprocess.PIPE, text=True)
        try:
            assert p.stdout is not None
            import time

            time.sleep(0.3)
            lt.set(b"two")
            assert p.stdout.read() == "two\n"
            assert p.wait(60) == 0
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(60)
            if p.stdout is not None:
                p.stdout.close()
        r = cli("get", name, "--wait-since", "2", "--timeout", "0.05")
        assert r.returncode == 1
        assert "no newer version" in r.stderr


def test_get_of_a_missing_or_other_kind_fails_cleanly(name: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run_main(capsys, "get", name)
    assert code != 0 and name in err
    from mapshare import Segment

    with Segment.create(name, 64):
        code, _out, err = run_main(capsys, "get", name)
        assert code != 0 and "Traceback" not in err


def test_ls_and_info_show_version_and_size(name: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    with Latest.create(name, 64) as lt:
        lt.set_object({"x": 1})
        code, out, _ = run_main(capsys, "ls")
        assert code == 0
        line = next(ln for ln in out.splitlines() if ln.startswith(name))
        assert "latest v1" in line
        code, out, _ = run_main(capsys, "info", name)
        assert code == 0
        assert "version:     1 (" in out and "of 64, object)" in out
        code, out, _ = run_main(capsys, "info", name, "--json")
        extra = json.loads(out)["extra"]
        assert extra["version"] == 1 and extra["max_size"] == 64
        assert extra["value_kind"] == "object" and extra["writer_deaths"] == 0


def test_info_of_a_corrupt_slot_says_so(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with Latest.create(name, 64) as lt:
        lt.set(b"a")
        poke(name, 1024 + 64, struct.pack("<Q", 7))  # a version its buffer does not hold
        code, out, _ = run_main(capsys, "info", name)
        assert code == 0
        assert "latest:      unreadable" in out
        r = cli("get", name)
        assert r.returncode != 0 and "Traceback" not in r.stderr
