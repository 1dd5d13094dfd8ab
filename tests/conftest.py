"""Test fixtures: unique names that are cleaned up, and a session that fails if any
test leaves a mapshare object in /dev/shm."""

from __future__ import annotations

import os
import sys

import pytest

from mapshare import _naming
from mapshare.testing import leftover, remove, session_token, shm_entries, unique_name

ROOT = os.getuid() == 0 if hasattr(os, "getuid") else False
LINUX = sys.platform.startswith("linux")

_session_before: set[str] = set()
_leaks: set[str] = set()


_token = ""


def pytest_sessionstart(session: pytest.Session) -> None:
    # Names made by this session (and its child processes) carry this token, so that
    # the leak check below blames only this session, not a concurrent one.
    global _token
    _token = session_token()
    _session_before.update(shm_entries())


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A fresh segment name; whatever is left under it is reported and removed."""
    n = unique_name()
    yield n
    osn = _naming.os_name(n)
    if osn in shm_entries():
        _leaks.add(f"{osn} (test {request.node.nodeid})")
        remove([osn])


@pytest.fixture
def names() -> NameFactory:
    """Several fresh names: names() returns a new one each call."""
    made: list[str] = []

    def make() -> str:
        n = unique_name()
        made.append(n)
        return n

    yield make
    left = [_naming.os_name(n) for n in made if _naming.os_name(n) in shm_entries()]
    _leaks.update(left)
    remove(left)


NameFactory = object


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    left = {x for x in leftover(_session_before) if _token in x} | _leaks
    if left:
        remove(x.split(" ")[0] for x in left)
        sys.stderr.write(
            "\nmapshare objects left in /dev/shm by the tests:\n  "
            + "\n  ".join(sorted(left))
            + "\n"
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
