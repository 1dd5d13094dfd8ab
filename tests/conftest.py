"""Test fixtures: unique names that are cleaned up, and a session that fails if any
test leaves a mapshare object in /dev/shm (Windows: a named section of this session).

Windows (the suite also runs there, under Wine: tools/wine/run-tests.sh):

* a test parametrized with a 'fork' multiprocessing context, or marked
  ``@pytest.mark.needs_fork``, is skipped ("no fork on Windows");
* ``@pytest.mark.posix_only("why")`` skips a test whose subject does not exist there
  (POSIX signals, uids and mode bits, /dev/shm), with that reason.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator

import pytest

from mapshare import _naming
from mapshare.testing import leftover, remove, session_token, shm_entries, unique_name
from support import NO_PERSISTENT_SHM, WINDOWS

NO_FORK = "no fork on Windows"


def _uses_fork(item: pytest.Item) -> bool:
    if item.get_closest_marker("needs_fork") is not None:
        return True
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return False
    return any(  # a parameter "fork", or a multiprocessing context object of that kind
        (isinstance(v, str) and v == "fork") or getattr(v, "_name", None) == "fork"
        for v in callspec.params.values()
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not WINDOWS:
        return
    for item in items:
        if _uses_fork(item):
            item.add_marker(pytest.mark.skip(reason=NO_FORK))
        else:
            mark = item.get_closest_marker("posix_only")
            if mark is not None:
                why = mark.args[0] if mark.args else mark.kwargs.get("reason", "")
                item.add_marker(pytest.mark.skip(reason=f"POSIX only: {why}"))


@pytest.fixture(autouse=True, scope="module")
def _no_leftover_wait_threads() -> Iterator[None]:
    """After each module, stop the asyncio helpers' wait threads: a later test that forks
    must not fork a multithreaded process (a deadlock source, seen under ASan)."""
    yield
    from mapshare import _aio

    _aio.shutdown()


_session_before: set[str] = set()
_leaks: set[str] = set()


_token = ""


def pytest_sessionstart(session: pytest.Session) -> None:
    # Names made by this session (and its child processes) carry this token, so that
    # the leak check below blames only this session, not a concurrent one.
    global _token
    _token = session_token()
    _session_before.update(shm_entries())


def _settle(os_names: list[str]) -> list[str]:
    """Which of these names are still present.  On Windows a name lives as long as any
    handle or mapped view of it, so a handle closed by the test but whose mapping is
    still referenced from an uncollected cycle (an exception's traceback) or by a worker
    thread finishing its last wait slice is not a leak yet: collect, and give such
    threads a moment, before calling it one.  On Linux close() removed the name."""
    present = [o for o in os_names if o in shm_entries()]
    if not WINDOWS or not present:
        return present
    import gc
    import time

    deadline = time.monotonic() + 2.0
    while present and time.monotonic() < deadline:
        gc.collect()
        present = [o for o in present if o in shm_entries()]
        if present:
            time.sleep(0.05)
    return present


NameFactory = Callable[[], str]


@pytest.fixture
def name(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh segment name; whatever is left under it is reported and removed."""
    n = unique_name()
    yield n
    osn = _naming.os_name(n)
    if _settle([osn]):
        _leaks.add(f"{osn} (test {request.node.nodeid})")
        remove([osn])


@pytest.fixture
def names() -> Iterator[NameFactory]:
    """Several fresh names: names() returns a new one each call."""
    made: list[str] = []

    def make() -> str:
        n = unique_name()
        made.append(n)
        return n

    yield make
    left = _settle([_naming.os_name(n) for n in made])
    _leaks.update(left)
    remove(left)


@pytest.fixture
def persistent(name: str) -> Iterator[str]:
    """A closed persistent segment of 8192 bytes holding b'payload' at 0; removed after."""
    import mapshare

    if WINDOWS:
        pytest.skip(NO_PERSISTENT_SHM)
    with mapshare.Segment.create(name, 8192, lifetime="persistent") as seg:
        seg.write(b"payload")
    try:
        yield name
    finally:
        remove([_naming.os_name(name)])


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if WINDOWS:
        _reap_children(session)
    left = {x for x in leftover(_session_before) if _token in x} | _leaks
    if left:
        remove(x.split(" ")[0] for x in left)
        sys.stderr.write(
            "\nmapshare objects left in /dev/shm by the tests:\n  "
            + "\n  ".join(sorted(left))
            + "\n"
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _reap_children(session: pytest.Session) -> None:
    """Windows: a multiprocessing child a failed test left running would make the
    interpreter wait for it at exit (no SIGKILL in a finally block can reach it if the
    test died first): kill it, name it, and fail the session."""
    import multiprocessing

    kids = multiprocessing.active_children()
    for k in kids:
        k.kill()
        k.join(10)
    if kids:
        sys.stderr.write(
            "\nchild processes left running by the tests (killed): "
            + ", ".join(f"{k.name} pid {k.pid}" for k in kids) + "\n"
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
