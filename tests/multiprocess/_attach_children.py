"""A process that forks many attachers of one segment (run as a script by
test_attach_many.py, so that the children are forked from a small process that imported
only mapshare, not from pytest).

    python _attach_children.py hold NAME N

forks N children; each opens NAME (``Segment.open``) and reports one line to the
parent: ``ok``, ``limit <limit>`` (AttachLimitError) or ``error <class>: <message>``.
Once all N reported, prints one JSON line to stdout: ``{"pids": [...], "results": {...},
"limit_messages": [...], "seconds": ...}``, then waits for stdin to close; then every
child closes its handle and exits normally, and the script prints ``done`` after reaping
them.  A child killed with SIGKILL meanwhile is simply reaped.
"""

from __future__ import annotations

import collections
import json
import os
import sys
import time

import mapshare


def _child(name: str, report_w: int, release_r: int) -> None:
    seg = None
    try:
        seg = mapshare.Segment.open(name)
        msg = "ok"
    except Exception as exc:  # reported to the test, which fails on anything but these
        if type(exc).__name__ == "AttachLimitError":
            msg = f"limit {getattr(exc, 'limit', None)} {exc}"
        else:
            msg = f"error {type(exc).__name__}: {exc}"
    os.write(report_w, f"{os.getpid()} {msg}\n".encode())
    os.read(release_r, 1)  # EOF when the parent releases everyone
    if seg is not None:
        seg.close()


def hold(name: str, n: int) -> None:
    """Fork ``n`` attachers of ``name``, report, hold them until stdin closes."""
    report_r, report_w = os.pipe()
    release_r, release_w = os.pipe()
    started = time.monotonic()
    pids = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.close(report_r)
                os.close(release_w)
                _child(name, report_w, release_r)
            except BaseException:
                code = 1
            finally:
                os._exit(code)  # after an explicit close: the fork's exit path
        pids.append(pid)
    os.close(report_w)
    os.close(release_r)
    results: collections.Counter[str] = collections.Counter()
    limit_messages = []
    lines = 0
    with os.fdopen(report_r, "rb") as reports:
        while lines < n:
            line = reports.readline()
            if not line:
                break  # a child died before reporting
            lines += 1
            _, _, msg = line.decode().strip().partition(" ")
            kind = msg.split(" ", 1)[0]
            results[kind] += 1
            if kind != "ok":
                limit_messages.append(msg)
        seconds = time.monotonic() - started
        print(json.dumps({"pids": pids, "results": dict(results),
                          "limit_messages": limit_messages, "seconds": seconds}), flush=True)
        sys.stdin.read()  # until the test closes our stdin
    started = time.monotonic()
    os.close(release_w)
    failed = 0
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) != 0:
            failed += 1
    print(json.dumps({"done": True, "failed": failed,
                      "seconds": time.monotonic() - started}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "hold":
        hold(sys.argv[2], int(sys.argv[3]))
    else:
        raise SystemExit(f"unknown command {sys.argv[1]!r}")
