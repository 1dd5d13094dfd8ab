"""Run CPython's multiprocessing tests against mapshare; print passed/skipped/failed per class.

    python -m tests.cpython                        # mapshare, start method spawn, all classes
    python -m tests.cpython --start-method fork Queue Lock
    python -m tests.cpython --impl std             # the same harness on the standard library
    python -m tests.cpython --skips-markdown       # the skip table docs/multiprocessing.md has

Class arguments select by substring of the class name (``Queue`` runs
``WithProcessesTestQueue`` and ``TestSimpleQueue``). Exit status 0 when nothing failed and
nothing was left in /dev/shm, 1 otherwise.

``--rerun`` runs a failed test once more, alone, as CPython's own CI does with these tests
(``regrtest --rerun``): many of them assert on timings (a ``get(timeout=...)`` that must
return within a margin, a barrier that must trip in time) that a loaded 2-core machine
sometimes misses, for the standard library's objects as for mapshare's. A test that then
passes is reported by name as passed on rerun, and counts as passed; one that fails twice
fails the run.
"""

from __future__ import annotations

import argparse
import faulthandler
import gc
import importlib
import json
import os
import re
import sys
import time
import unittest
from typing import Any

from . import _config

COUNTS = ("passed", "skipped", "failed", "errors")


class _CountingResult(unittest.TextTestResult):
    """Counts per test class; the per-test timeout dumps every thread's stack and exits."""

    timeout: float = 0.0

    def __init__(self, stream: Any, descriptions: bool, verbosity: int) -> None:
        super().__init__(stream, descriptions, verbosity)
        self.per_class: dict[str, dict[str, int]] = {}
        self.class_time: dict[str, float] = {}
        self.test_time: dict[str, float] = {}
        self._started = 0.0

    def _key(self, test: Any) -> str:
        # a failing setUpClass arrives as an _ErrorHolder: "setUpClass (module.Class)"
        if type(test).__name__ == "_ErrorHolder":
            desc = str(test.description)
            return desc.rsplit(".", 1)[-1].rstrip(")")
        return type(test).__name__

    def _count(self, test: Any, what: str) -> None:
        row = self.per_class.setdefault(self._key(test), dict.fromkeys(COUNTS, 0))
        row[what] += 1

    def startTest(self, test: unittest.TestCase) -> None:
        super().startTest(test)
        self._started = time.monotonic()
        if self.timeout:
            faulthandler.dump_traceback_later(self.timeout, exit=True)

    def stopTest(self, test: unittest.TestCase) -> None:
        if self.timeout:
            faulthandler.cancel_dump_traceback_later()
        key = self._key(test)
        took = time.monotonic() - self._started
        self.class_time[key] = self.class_time.get(key, 0.0) + took
        self.test_time[test.id()] = took
        super().stopTest(test)

    def addSuccess(self, test: unittest.TestCase) -> None:
        super().addSuccess(test)
        self._count(test, "passed")

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:
        super().addSkip(test, reason)
        self._count(test, "skipped")

    def addFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addFailure(test, err)
        self._count(test, "failed")

    def addError(self, test: unittest.TestCase, err: Any) -> None:
        super().addError(test, err)
        self._count(test, "errors")

    def addExpectedFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addExpectedFailure(test, err)
        self._count(test, "passed")

    def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:
        super().addUnexpectedSuccess(test)
        self._count(test, "failed")

    def addSubTest(self, test: unittest.TestCase, subtest: unittest.TestCase,
                   err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:  # the test itself is counted once, when it ends
            self._count(test, "failed" if issubclass(err[0], test.failureException)
                        else "errors")


#: the /dev/shm names this run can make: mapshare.multiprocessing's objects (``mp-``), a
#: SharedMemory made without a name (``psm_``) and the names CPython's tests choose
#: (``test01_tsmb<pid>``, ...). Other names are a concurrent test session's, not this run's.
_OURS = re.compile(r"/?mapshare\.(mp-|psm_|test)")


def _skips_markdown() -> str:
    from .skips import SKIPS

    lines = ["| Test | Why it is not run against mapshare |", "|---|---|"]
    lines += [f"| `{key}` | {reason} |" for key, reason in sorted(SKIPS.items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cpython", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("classes", nargs="*",
                        help="run only classes whose name contains one of these")
    parser.add_argument("--impl", choices=("mapshare", "std"), default="mapshare")
    parser.add_argument("--start-method", choices=("fork", "spawn", "forkserver"),
                        default="spawn")
    parser.add_argument("--no-executor", action="store_true",
                        help="leave out the concurrent.futures ProcessPoolExecutor tests")
    parser.add_argument("--exclude", action="append", default=[],
                        help="leave out classes whose name contains this (repeatable)")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds one test may take before every stack is dumped and "
                        "the run ends (default 300; 0: none)")
    parser.add_argument("--rerun", action="store_true",
                        help="run each failed test once more, alone; passing then counts "
                        "(reported by name)")
    parser.add_argument("--json", metavar="PATH", help="also write the counts as JSON")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per test")
    parser.add_argument("--durations", type=int, default=0, metavar="N",
                        help="print the N slowest tests")
    parser.add_argument("--list", action="store_true", help="list the classes and exit")
    parser.add_argument("--skips-markdown", action="store_true",
                        help="print the skip list as the Markdown table of the docs, exit")
    args = parser.parse_args(argv)
    if args.skips_markdown:
        sys.stdout.write(_skips_markdown())
        return 0

    # before the class modules are imported: they, and every child, read these
    os.environ[_config.IMPL_VAR] = args.impl
    os.environ[_config.START_METHOD_VAR] = args.start_method
    _config.IMPL = args.impl
    _config.START_METHOD = args.start_method

    # the executor tests print each test's duration when test.support.verbose is set,
    # which it is unless a regrtest run cleared it
    from . import _cf_classes, _mp_classes

    support: Any = importlib.import_module("test.support")
    support.verbose = args.verbose

    classes: list[type] = list(_mp_classes.CLASSES.values())
    if not args.no_executor:
        classes += list(_cf_classes.CLASSES.values())

    def selected(cls: type) -> bool:
        name = cls.__name__
        if any(x in name for x in args.exclude):
            return False
        return not args.classes or any(x in name for x in args.classes)

    classes = [c for c in classes if selected(c)]
    if args.list:
        for cls in classes:
            print(f"{cls.__module__}.{cls.__name__}")
        return 0

    from mapshare.testing import session_token, shm_entries

    session_token()  # so that names made with mapshare.testing are this run's
    before = shm_entries()
    loader = unittest.TestLoader()
    suite = unittest.TestSuite(loader.loadTestsFromTestCase(c) for c in classes)
    _CountingResult.timeout = args.timeout
    runner = unittest.TextTestRunner(stream=sys.stderr, verbosity=2 if args.verbose else 1,
                                     resultclass=_CountingResult)
    pyver = ".".join(map(str, sys.version_info[:3]))
    print(f"CPython {pyver} tests ({_mp_classes._tm.__file__}) against {args.impl}, "
          f"start method {args.start_method}", flush=True)
    if not args.no_executor and _cf_classes.MISSING:
        print(f"executor tests: none ({_cf_classes.MISSING})", flush=True)
    started = time.monotonic()
    result: Any = runner.run(suite)
    elapsed = time.monotonic() - started

    # a failure inside setUpClass is an _ErrorHolder, one in a subTest a _SubTest: neither
    # is a test that can run again, and either leaves the run failed
    failed = [t for t, _ in result.failures + result.errors
              if isinstance(t, unittest.TestCase) and type(t).__name__ != "_SubTest"]
    kind = {id(t): "failed" for t, _ in result.failures}
    kind.update({id(t): "errors" for t, _ in result.errors})
    passed_on_rerun: list[str] = []
    still_failing: list[str] = []
    rerunnable = len(failed) == len(result.failures) + len(result.errors) \
        and not result.unexpectedSuccesses
    if args.rerun and failed and rerunnable:
        print(f"\nre-running {len(failed)} failed test(s) once, each alone:", flush=True)
        for test in failed:
            again: Any = runner.run(unittest.TestSuite([test]))
            if again.wasSuccessful():
                passed_on_rerun.append(test.id())
                # counted as passed in the table, and named below it
                row = result.per_class[type(test).__name__]
                row[kind[id(test)]] -= 1
                row["passed"] += 1
            else:
                still_failing.append(test.id())
        for test_id in passed_on_rerun:
            print(f"passed on rerun: {test_id}")
        for test_id in still_failing:
            print(f"failed again: {test_id}")
    rerun_cleared = bool(passed_on_rerun) and not still_failing

    # nothing the tests made may remain (give closing handles a moment)
    # (the objects of a test that are still referenced from a garbage cycle, such as an
    # executor's, go when the cycle is collected)
    gc.collect()
    left: set[str] = set()
    for _ in range(50):
        left = {e for e in shm_entries() - before if _OURS.match(e)}
        if not left:
            break
        time.sleep(0.1)
    # A 'shared' object whose every holder died (tests kill pool and executor workers)
    # stays until it is reclaimed (`mapshare gc`, or a create over its name): reclaim this
    # run's; what a live process still holds is not removed, and is a leak.
    # An object a live process other than this one holds is another program's (the
    # harness may run twice at once on one machine): not this run's to judge.
    from mapshare._gc import reclaim
    from mapshare._inspect import segment_info

    reclaimed = []
    for osn in sorted(left):
        holders = {p.pid for p in segment_info(osn).attached if p.alive}
        if holders - {os.getpid()}:
            left.discard(osn)
        elif not holders and reclaim(osn):
            reclaimed.append(osn)
            left.discard(osn)

    width = max([len(c.__name__) for c in classes] + [5])
    header = f"{'class':<{width}}  " + "  ".join(f"{c:>7}" for c in COUNTS) + "  seconds"
    print("\n" + header)
    total = dict.fromkeys(COUNTS, 0)
    rows = {}
    for cls in classes:
        row = result.per_class.get(cls.__name__, dict.fromkeys(COUNTS, 0))
        rows[cls.__name__] = row
        for c in COUNTS:
            total[c] += row[c]
        secs = result.class_time.get(cls.__name__, 0.0)
        print(f"{cls.__name__:<{width}}  " + "  ".join(f"{row[c]:>7}" for c in COUNTS)
              + f"  {secs:7.1f}")
    print(f"{'total':<{width}}  " + "  ".join(f"{total[c]:>7}" for c in COUNTS)
          + f"  {elapsed:7.1f}")
    if args.durations:
        print(f"\nslowest {args.durations} tests (seconds):")
        slowest = sorted(result.test_time.items(), key=lambda kv: -kv[1])[: args.durations]
        for test_id, took in slowest:
            print(f"{took:7.2f}  {test_id}")
    if reclaimed:
        print(f"reclaimed after the run (every holder had died): {len(reclaimed)} objects")
    if left:
        print(f"left in /dev/shm after the run: {sorted(left)}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"python": pyver, "impl": args.impl, "start_method": args.start_method,
                       "classes": rows, "total": total, "seconds": round(elapsed, 1),
                       "left_in_dev_shm": sorted(left),
                       "passed_on_rerun": passed_on_rerun, "failed_again": still_failing,
                       "reclaimed": reclaimed}, f, indent=1)
    ok = result.wasSuccessful() or rerun_cleared
    return 0 if ok and not left else 1


if __name__ == "__main__":
    sys.exit(main())
