"""The hardware floors behind the mapshare figures, measured in plain C on this machine.

    python benchmarks/floors.py

Builds benchmarks/floors.c with the system C compiler into a temporary directory and runs
it pinned to one CPU: the cost of copying 1 MiB into an 8 MiB shared-memory ring (the
least a 1 MiB send can cost), with ordinary and non-temporal stores, and a robust
process-shared mutex lock+unlock against a plain one.  docs/benchmarks.md quotes it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> int:
    """Build and run floors.c; returns its exit status."""
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        print("floors: no C compiler found", file=sys.stderr)
        return 1
    src = Path(__file__).with_name("floors.c")
    with tempfile.TemporaryDirectory() as d:
        exe = Path(d) / "floors"
        subprocess.run([cc, "-O2", "-o", str(exe), str(src), "-lpthread", "-lrt"], check=True)
        cmd = [str(exe)]
        if shutil.which("taskset"):
            cmd = ["taskset", "-c", "1", *cmd]
        return subprocess.run(cmd, check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main())
