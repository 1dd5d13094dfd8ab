"""Another user of the object's group (the mechanism): every opener,
whatever its access, counts as attached.

A read-only opener cannot write the attach table (its header mapping is read-only); it is
counted by its opener lock instead.  Tested with a real second uid (65534) holding a
supplementary group that matches the object's group, forked from this (root) process.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

import mapshare
from support import exists, shm_path

NOBODY = 65534
GROUP = 4242  # any gid: the member gets it as a supplementary group, the object as its group
TIMEOUT = 60.0  # bounds a hang, never a speed assertion

pytestmark = [
    pytest.mark.needs_fork,
    pytest.mark.posix_only("uids, groups and mode bits"),
    pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0,
                       reason="acting as a second user needs root"),
]


class Member:
    """A forked process running as uid 65534 with supplementary group GROUP, which opens
    ``name`` read-only (allow_foreign=True: the object is root's) and holds it until
    released.  It first closes the handle it inherited from the creator."""

    def __init__(self, name: str, inherited: mapshare.Segment) -> None:
        report_r, report_w = os.pipe()
        release_r, self._release_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                os.close(report_r)
                os.close(self._release_w)
                inherited.close()  # the fork re-attached the creator's handle: not ours
                os.setgroups([GROUP])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                try:
                    seg = mapshare.Segment.open(name, access="r", allow_foreign=True)
                except Exception as exc:
                    os.write(report_w, f"error {type(exc).__name__}: {exc}".encode())
                    os._exit(1)
                try:
                    data = seg.read(4)
                    attached = seg._core.attached
                    os.write(report_w, f"ok {data.hex()} {int(attached)}".encode())
                    os.close(report_w)
                    os.read(release_r, 1)  # EOF: released
                    seg.close()
                    code = 0
                except BaseException as exc:
                    os.write(2, f"member: {type(exc).__name__}: {exc}\n".encode())
            finally:
                os._exit(code)
        os.close(report_w)
        os.close(release_r)
        with os.fdopen(report_r, "rb") as f:
            self.report = f.read().decode()

    def release(self) -> int:
        """Let the member close its handle and exit normally; its exit status."""
        os.close(self._release_w)
        _, status = os.waitpid(self.pid, 0)
        return os.waitstatus_to_exitcode(status)

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


@pytest.fixture
def group_segment(name: str) -> Iterator[mapshare.Segment]:
    """A 'shared' segment of root's with mode 0o640 and group GROUP."""
    seg = mapshare.Segment.create(name, 64, mode=0o640)
    seg.write(b"data")
    os.chown(shm_path(name), -1, GROUP)
    yield seg
    seg.close()


def _collected(name: str) -> bool:
    return any(r.name == name for r in mapshare.collect())


def test_group_reader_keeps_the_name_until_it_closes(name: str,
                                                     group_segment: mapshare.Segment) -> None:
    seg = group_segment
    member = Member(name, seg)
    try:
        assert member.report == f"ok {b'data'.hex()} 1", member.report
        info = seg.info()
        assert [p.pid for p in info.attached] == [os.getpid()]  # it cannot write the table
        assert info.read_only_openers == (member.pid,)  # but it is counted
        seg.close()  # the creator leaves first
        assert exists(name), "the creator's close removed the name under a reader"
        assert not _collected(name), "gc removed the name under a reader"
        assert exists(name)
        assert member.release() == 0  # its close may not remove root's name (sticky
    finally:                          # /dev/shm): nobody is left, so gc does
        member.kill()
    assert exists(name)
    assert _collected(name)
    assert not exists(name)


def test_group_reader_killed_then_the_next_closer_removes_the_name(
        name: str, group_segment: mapshare.Segment) -> None:
    seg = group_segment
    member = Member(name, seg)
    try:
        assert member.report.startswith("ok"), member.report
        seg.close()
        assert exists(name)
        member.kill()  # SIGKILL: the kernel drops its opener lock
        with mapshare.Segment.open(name) as again:
            assert again.read(4) == b"data"
            assert again.info().read_only_openers == ()
    finally:
        member.kill()
    assert not exists(name)  # that close was the last user's


def test_group_reader_killed_then_gc_removes_the_name(
        name: str, group_segment: mapshare.Segment) -> None:
    seg = group_segment
    member = Member(name, seg)
    try:
        assert member.report.startswith("ok"), member.report
        seg.close()
        assert exists(name)
        assert not _collected(name)
        member.kill()
        deadline = time.monotonic() + TIMEOUT
        while mapshare._core.process_alive(member.pid) == 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        member.kill()
    assert _collected(name)
    assert not exists(name)


def test_own_read_only_handle_keeps_the_name(name: str) -> None:
    """The same process's other handles count too (an opener lock per handle)."""
    seg = mapshare.Segment.create(name, 64, mode=0o600)
    reader = mapshare.Segment.open(name, access="r")
    try:
        seg.close()
        assert exists(name)
        assert reader.read(1) == b"\0"
    finally:
        reader.close()
    assert not exists(name)


def test_forked_read_only_handle_counts_for_the_child(name: str) -> None:
    """A read-only handle inherited by a forked child is the child's own count: the
    parent's close does not drop it (the child's inherited mappings do not keep the
    parent's either), the child's close does."""
    seg = mapshare.Segment.create(name, 64)
    reader = mapshare.Segment.open(name, access="r")
    to_child_r, to_child_w = os.pipe()
    to_parent_r, to_parent_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(to_child_w)
            os.close(to_parent_r)
            seg.close()  # the child keeps only the read-only handle
            os.write(to_parent_w, b"1")
            os.read(to_child_r, 1)  # the parent has closed both of its handles
            code = 0 if reader.read(1) == b"\0" and exists(name) else 2
            reader.close()
        finally:
            os._exit(code)
    os.close(to_child_r)
    os.close(to_parent_w)
    try:
        assert os.read(to_parent_r, 1) == b"1"
        reader.close()
        seg.close()
        assert exists(name), "the parent's close removed the name under the child"
    finally:
        os.close(to_child_w)
        os.close(to_parent_r)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert not exists(name)  # the child's close was the last
