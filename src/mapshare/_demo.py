"""``mapshare demo``: the seed's two programs.

Process 1 (the writer) creates a named segment and copies a message in; process 2 (the
reader) opens the segment by name, sleeps until the writer's change notification wakes
it (no polling), and prints the message.  Both are real, separate processes.  The segment
has the 'shared' lifetime, so it disappears when the last of them closes it.

Run a role by hand in two terminals with
``python -m mapshare._demo writer NAME`` and ``python -m mapshare._demo reader NAME``.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time

from ._segment import Segment

SIZE = 4096
TIMEOUT = 30.0


def _say(role: str, text: str) -> None:
    print(f"[{role} {os.getpid()}] {text}", flush=True)


def writer(name: str) -> int:
    """Create the segment, wait until a reader says hello, write, notify."""
    with Segment.create(name, SIZE) as seg:
        _say("writer", f"created segment {name!r}: {seg.size} bytes, lifetime {seg.lifetime},"
                       f" mode 0600")
        print("READY", flush=True)  # tells the demo driver it may start the reader
        seg.wait_for_change(0, timeout=TIMEOUT)  # the reader's hello
        message = f"Hello from process {os.getpid()}, through shared memory".encode()
        seg.write(struct.pack("<I", len(message)) + message)
        mine = (seg.change_count + 1) & 0xFFFFFFFF  # the count once our notify lands
        seg.notify()
        _say("writer", f"copied {len(message)} bytes in and notified the reader")
        seg.wait_for_change(mine, timeout=TIMEOUT)  # the reader's thanks
        _say("writer", "reader confirmed; closing")
    return 0


def reader(name: str) -> int:
    """Open by name, wait for the notification, read and print the message."""
    with Segment.open(name) as seg:
        _say("reader", f"opened {name!r} by name; waiting for the writer's notification")
        # Read the count before saying hello: the writer may answer before we could
        # read it afterwards, and waiting on its answer's count would then never wake.
        mine = (seg.change_count + 1) & 0xFFFFFFFF  # the count once our hello lands
        seg.notify()  # hello: the writer writes only once a reader is attached
        start = time.perf_counter()
        seg.wait_for_change(mine, timeout=TIMEOUT)
        waited = time.perf_counter() - start
        (length,) = struct.unpack_from("<I", seg.buf)
        message = seg.read(length, offset=4).decode()
        _say("reader", f"woke after {waited * 1e3:.2f} ms and read: {message!r}")
        seg.notify()  # thanks
    return 0 if message.startswith("Hello from process") else 1


def run(verbose: bool = True) -> int:
    """Run writer and reader as two processes; 0 when the message arrived and nothing
    was left behind."""
    name = f"demo-{os.getpid()}-{os.urandom(3).hex()}"
    cmd = [sys.executable, "-m", "mapshare._demo"]
    out = None if verbose else subprocess.DEVNULL
    w = subprocess.Popen([*cmd, "writer", name], stdout=subprocess.PIPE, text=True)
    assert w.stdout is not None
    try:
        for line in w.stdout:
            if line.strip() == "READY":
                break
            if verbose:
                print(line, end="", flush=True)
        try:
            rcode = subprocess.run(
                [*cmd, "reader", name], stdout=out, timeout=TIMEOUT, check=False
            ).returncode
        except subprocess.TimeoutExpired:
            rcode = -1  # run() killed the reader; report it below instead of a traceback
        if rcode != 0:
            w.kill()  # the writer would only wait for a reader that is gone
        rest = w.stdout.read()
        if verbose:
            print(rest, end="", flush=True)
        wcode = w.wait(timeout=TIMEOUT)
    finally:
        if w.poll() is None:
            w.kill()
            w.wait()
        w.stdout.close()  # else a ResourceWarning when the Popen object is collected
    try:
        Segment.open(name).close()  # also removes what killed processes left behind
        left = True
    except FileNotFoundError:
        left = False
    ok = rcode == 0 and wcode == 0 and not left
    if verbose:
        if ok:
            print(f"demo ok: the segment {name!r} is gone with its last user")
        else:
            print(f"demo FAILED: writer {wcode}, reader {rcode}, left behind: {left}")
    return 0 if ok else 1


if __name__ == "__main__":
    role, seg_name = sys.argv[1], sys.argv[2]
    raise SystemExit({"writer": writer, "reader": reader}[role](seg_name))
