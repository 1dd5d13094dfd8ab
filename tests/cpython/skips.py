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

_NO_TRACKER = (
    "checks the standard library's resource tracker (a separate process that unlinks "
    "blocks at exit); mapshare has none: a block lives while any process holds it"
)
_STD_MANAGER = (
    "exercises only the standard library's SharedMemoryManager, whose blocks are the "
    "standard SharedMemory's; mapshare.multiprocessing does not provide a manager"
)

SKIPS: dict[str, str] = {
    "_TestSharedMemory.test_shared_memory_basics": (
        "patches the standard module's private name generator "
        "(`multiprocessing.shared_memory._make_filename`) and reads its private "
        "`_SHM_NAME_PREFIX`, `_USE_POSIX` and `_flags`; the public behaviour it also checks "
        "is covered by the other SharedMemory tests here"
    ),
    "_TestSharedMemory.test_shared_memory_recreate": (
        "patches the standard module's private name generator "
        "(`multiprocessing.shared_memory._make_filename`) to check how it retries a random "
        "name that exists; mapshare makes and retries its names elsewhere"
    ),
    "_TestSharedMemory.test_shared_memory_name_with_embedded_null": (
        "reads the standard module's private `_USE_POSIX` and sets the private `_name` to "
        "make `unlink()` pass a NUL to `shm_unlink`"
    ),
    "_TestSharedMemory.test_shared_memory_SharedMemoryManager_basics": _STD_MANAGER,
    "_TestSharedMemory.test_shared_memory_SharedMemoryServer_ignores_sigint": _STD_MANAGER,
    "_TestSharedMemory.test_shared_memory_SharedMemoryManager_reuses_resource_tracker": (
        _STD_MANAGER
    ),
    "_TestSharedMemory.test_shared_memory_cleaned_after_process_termination": (
        "runs the standard SharedMemory in a `python -c` child and checks that its resource "
        "tracker removed the block and printed a warning; mapshare has no resource tracker"
    ),
    "_TestSharedMemory.test_shared_memory_tracking": _NO_TRACKER,
    "_TestSharedMemory.test_shared_memory_untracking": _NO_TRACKER,
}
