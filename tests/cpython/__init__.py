"""CPython's own multiprocessing tests, run against ``mapshare.multiprocessing``.

The standard library's ``test._test_multiprocessing`` builds its test classes from mixins
(``_TestQueue``, ``_TestLock``, ...) combined with ``ProcessesMixin``, whose class
attributes (``Queue``, ``Lock``, ``Event``, ...) are the factories under test.
:mod:`tests.cpython._mp_classes` builds the same classes with a mixin whose factories are
those of ``mapshare.multiprocessing.get_context(method)``; :mod:`tests.cpython._cf_classes`
does the same for the ``ProcessPoolExecutor`` tests of ``test.test_concurrent_futures``
(``mp_context=`` the mapshare context). The tests come from the ``test`` package of the
interpreter that runs them, so every CPython checks its own version of the tests.

Run: ``python -m tests.cpython`` from the repository root (``--help`` for the options).
The tests skipped, each with its reason, are in :mod:`tests.cpython.skips` -- the one
place; docs/multiprocessing.md lists them (tests/unit/test_cpython_skips.py keeps the two
equal).
"""
