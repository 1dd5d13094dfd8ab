"""Soak test of mapshare.Journal's crash consistency (issue 15, part 8), longer than the
pytest run allows:

  python tools/soak_journal.py [--kills 1000] [--offsets 1000] [--dir DIR]

1. Appenders SIGKILLed at random moments (``--kills`` in all, spread over the durability
   modes "process", "os-batch" and "os"): after each kill a living appender appends at
   once (the dead one's lock is recovered by the robust lock, not a timeout), a reader
   follows the tail, and at the end every index any appender was told about holds what
   that appender wrote, with every index below len(j) intact (dense, nothing torn).
   Prints how long the follower waited at most for the record after a kill.
2. Simulated power loss at ``--offsets`` random offsets (half truncation of the tail file,
   half garbage written into it): open recovers to exactly the last intact record.
Exit status 0 when everything held.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(HERE / d) for d in ("tests", "tests/multiprocess", "tests/unit")]

from _journal_children import record  # noqa: E402
from test_journal import _damage_trials  # noqa: E402
from test_journal_processes import kill_appender_once, verify  # noqa: E402

import mapshare  # noqa: E402


def kills(base: Path, total: int) -> None:
    modes = [("process", total - 2 * (total // 5)), ("os-batch", total // 5), ("os", total // 5)]
    for durability, rounds in modes:
        path = str(base / f"kill-{durability}")
        rng = random.Random(rounds)
        acked: dict[int, tuple[int, int]] = {}
        worst = 0.0
        t0 = time.monotonic()
        with mapshare.Journal.create(path, segment_size=65536, durability=durability) as j:  # type: ignore[arg-type]
            follower = j.reader()
            for writer in range(1, rounds + 1):
                for i, n in kill_appender_once(path, writer, rng, j):
                    acked[i] = (writer, n)
                start = time.monotonic()
                k = j.append(record(0, writer, 10))
                acked[k] = (0, writer)
                while follower.position <= k:
                    follower.next(timeout=30)
                worst = max(worst, time.monotonic() - start)
            verify(j, acked)
            n_records, files = len(j), j.stats().files
        print(f"{durability:9s}: {rounds} appenders SIGKILLed, {n_records} records, "
              f"{files} files, {len(acked)} acknowledged indices all intact, dense; "
              f"append+follow after a kill took at most {worst * 1000:.1f} ms "
              f"({time.monotonic() - t0:.1f} s)")


def offsets(base: Path, total: int) -> None:
    t0 = time.monotonic()
    _damage_trials(base / "trunc", total // 2, False, seed=1)
    _damage_trials(base / "garbage", total - total // 2, True, seed=2)
    print(f"power loss: {total} random offsets (truncation and garbage): open recovered "
          f"to the last intact record every time ({time.monotonic() - t0:.1f} s)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=1000)
    ap.add_argument("--offsets", type=int, default=1000)
    ap.add_argument("--dir", default=None, help="where the journals go (default: a temp dir)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=a.dir) as d:
        kills(Path(d), a.kills)
        offsets(Path(d), a.offsets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
