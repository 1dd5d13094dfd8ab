"""Run one example's two roles as separate processes: python examples/run.py FOLDER."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROLES = {
    "segment": ("writer.py", "reader.py"),
    "channel": ("producer.py", "consumer.py"),
    "lock": ("worker.py", "worker.py"),
    "numpy": ("publisher.py", "subscriber.py"),
    "topic": ("publisher.py", "subscriber.py"),
    "array": ("writer.py", "reader.py"),
}


def main(folder: str) -> int:
    here = Path(__file__).parent / folder
    name = f"ex-{folder[:4]}-{os.getpid()}"
    first, second = ROLES[folder]
    # Both start at once: a second role that opens waits for the name with wait=, and
    # the lock workers wait for each other at a start line.
    a = subprocess.Popen([sys.executable, str(here / first), name])
    b = subprocess.Popen([sys.executable, str(here / second), name])
    codes = [b.wait(timeout=60), a.wait(timeout=60)]
    print(f"{folder}: exit codes {codes}")
    return 0 if codes == [0, 0] else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
