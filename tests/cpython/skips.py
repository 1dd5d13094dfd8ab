"""The one list of CPython tests not run against mapshare, each with its reason.

A test is skipped here only when it checks an implementation detail of the standard
library's objects that cannot apply to mapshare's (a private attribute, the resource
tracker, a class mapshare does not provide); a test that fails because mapshare behaves
differently where it should not is a failure, never a skip.

Keys are ``"<mixin or class>.<test method>"`` as spelled in the standard library's test
module (``_TestQueue.test_xxx`` for ``test._test_multiprocessing``; the class name without
its executor prefix, e.g. ``ProcessPoolExecutorTest.test_xxx``, for
``test.test_concurrent_futures``). A key naming a test a given CPython does not have is
ignored there. docs/multiprocessing.md carries this table between its
``cpython-skips`` markers; ``python -m tests.cpython --skips-markdown`` prints it and
tests/unit/test_cpython_skips.py fails when the two differ.
"""

from __future__ import annotations

SKIPS: dict[str, str] = {}
