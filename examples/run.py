"""Run one example's two roles as separate processes: python examples/run.py FOLDER.

A role that is not a Python script is a program that the folder's Makefile builds
(examples/c: ``make -C examples/c``): it is built into a temporary directory first."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROLES = {
    "segment": ("writer.py", "reader.py"),
    "channel": ("producer.py", "consumer.py"),
    "lock": ("worker.py", "worker.py"),
    "numpy": ("publisher.py", "subscriber.py"),
    "topic": ("publisher.py", "subscriber.py"),
    "latest": ("writer.py", "reader.py"),
    "array": ("writer.py", "reader.py"),
    "c": ("c_side", "python_side.py"),
}


def command(here: Path, role: str, build: str) -> list[str]:
    """How to start a role: a script with this interpreter, else the built program."""
    if role.endswith(".py"):
        return [sys.executable, str(here / role)]
    return [os.path.join(build, role)]


def main(folder: str) -> int:
    here = Path(__file__).parent / folder
    name = f"ex-{folder[:4]}-{os.getpid()}"
    first, second = ROLES[folder]
    with tempfile.TemporaryDirectory() as build:
        if not (first.endswith(".py") and second.endswith(".py")):
            subprocess.run(["make", "-s", "-C", str(here), f"BUILD={build}"], check=True)
        # Both start at once: a second role that opens waits for the name with wait=, and
        # the lock workers wait for each other at a start line.
        a = subprocess.Popen([*command(here, first, build), name])
        b = subprocess.Popen([*command(here, second, build), name])
        codes = [b.wait(timeout=60), a.wait(timeout=60)]
    print(f"{folder}: exit codes {codes}")
    return 0 if codes == [0, 0] else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
