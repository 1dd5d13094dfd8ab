"""The test classes of CPython's ``test._test_multiprocessing``, built for mapshare.

The standard library builds ``WithProcessesTestQueue`` from ``_TestQueue`` and
``ProcessesMixin`` (``install_tests_in_module_dict``). This module builds the classes of the
same names from the same ``_Test*`` mixins and a ``ProcessesMixin`` subclass whose factories
(``Queue``, ``Lock``, ``Event``, ``Pool``, ``Value``, ...) are those of the context under
test (:func:`tests.cpython._config.context`). Tests that name ``multiprocessing.Queue()``,
``multiprocessing.shared_memory`` and the like directly in their bodies see mapshare's too:
the test module's global ``multiprocessing`` is replaced by a module whose factories are the
context's (everything else is the standard module's), and its ``shared_memory`` by
mapshare's. Children started by spawn/forkserver import this module by name and so build
the same classes (the start method and implementation come from the environment).
"""

from __future__ import annotations

import gc
import importlib
import multiprocessing
import sys
import threading
import types
import unittest
from typing import Any

from . import _config
from .skips import SKIPS

_tm: Any = importlib.import_module("test._test_multiprocessing")

#: the standard library's mixins run here, in this order (those the issue names: queues,
#: locks and the other synchronization primitives, Value/Array, shared memory, the pool)
MIXINS = (
    "_TestQueue",
    "_TestLock",
    "_TestSemaphore",
    "_TestCondition",
    "_TestEvent",
    "_TestBarrier",
    "_TestValue",
    "_TestArray",
    "_TestSharedMemory",
    "_TestPool",
    "_TestPoolWorkerErrors",
    "_TestPoolWorkerLifetime",
)
#: stand-alone TestCase classes of the module that exercise a factory (through the module's
#: global ``multiprocessing``, replaced below)
STANDALONE = ("TestSimpleQueue",)

#: the names a user reaches as ``multiprocessing.<name>`` that come from the context under
#: test; everything else on the module stays the standard library's
FACTORIES = (
    "Queue",
    "SimpleQueue",
    "JoinableQueue",
    "Lock",
    "RLock",
    "Semaphore",
    "BoundedSemaphore",
    "Condition",
    "Event",
    "Barrier",
    "Value",
    "Array",
    "RawValue",
    "RawArray",
    "Pool",
)

#: ProcessesMixin attributes taken from the context under test
MIXIN_ATTRIBUTES = (
    "Process",
    "current_process",
    "parent_process",
    "active_children",
    "set_executable",
    "Pipe",
    *FACTORIES,
)

CONTEXT: Any = _config.context()


def _factory_attribute(value: Any) -> Any:
    # ProcessesMixin stores functions as staticmethods (so self.Queue() is not bound) and
    # classes as they are
    return value if isinstance(value, type) else staticmethod(value)


def _make_mixin() -> type:
    attrs: dict[str, Any] = {}
    for name in MIXIN_ATTRIBUTES:
        if hasattr(CONTEXT, name):
            attrs[name] = _factory_attribute(getattr(CONTEXT, name))
    mixin: type = type("ProcessesMixin", (_tm.ProcessesMixin,), attrs)
    mixin.__module__ = __name__
    return mixin


class _Multiprocessing(types.ModuleType):
    """``multiprocessing`` with the factories of the context under test."""

    def __getattr__(self, name: str) -> Any:
        return getattr(multiprocessing, name)


def _patch_test_module() -> None:
    if _config.IMPL == "std":
        return
    import mapshare.multiprocessing as msmp  # type: ignore[import-not-found,unused-ignore]

    shim = _Multiprocessing("multiprocessing")
    for name in FACTORIES:
        setattr(shim, name, getattr(CONTEXT, name))
    shim.get_context = msmp.get_context  # type: ignore[attr-defined]
    shim.shared_memory = msmp.shared_memory  # type: ignore[attr-defined]
    _tm.multiprocessing = shim
    _tm.shared_memory = msmp.shared_memory


def skip_key(base: type, test_name: str) -> str:
    """The key of a test in :data:`tests.cpython.skips.SKIPS`."""
    return f"{base.__name__}.{test_name}"


def apply_skips(cls: type, base: type) -> None:
    """Replace the tests of ``cls`` listed in SKIPS by skipped ones, with their reason."""
    for attr in dir(cls):
        if not attr.startswith("test"):
            continue
        reason = SKIPS.get(skip_key(base, attr))
        if reason is not None:
            setattr(cls, attr, unittest.skip(reason)(getattr(cls, attr)))


def _own_staticmethods(cls: type, base: type) -> None:
    """Give ``cls`` copies of the staticmethods of ``base`` that live in this module.

    A staticmethod passed as a Process target is pickled by its qualified name: for a
    spawned child to find it here (and so import this module, which points the test
    module's ``shared_memory`` and ``multiprocessing`` at the context under test, before
    it runs), it must be named ``<this module>.<cls>.<name>``. The copy shares the original's
    code and globals (the test module's), so it is the same test code.
    """
    for attr, value in vars(base).items():
        if isinstance(value, staticmethod) and isinstance(value.__func__, types.FunctionType):
            f = value.__func__
            copy = types.FunctionType(f.__code__, f.__globals__, f.__name__, f.__defaults__,
                                      f.__closure__)
            copy.__kwdefaults__ = f.__kwdefaults__
            copy.__module__ = __name__
            copy.__qualname__ = f"{cls.__name__}.{attr}"
            setattr(cls, attr, staticmethod(copy))


def _build() -> dict[str, type]:
    mixin = _make_mixin()
    built: dict[str, type] = {}
    for base_name in MIXINS:
        base = getattr(_tm, base_name, None)
        if base is None or "processes" not in base.ALLOWED_TYPES:
            continue
        name = "WithProcesses" + base_name[1:]
        cls = type(name, (base, mixin, unittest.TestCase), {})
        cls.__qualname__ = name
        cls.__module__ = __name__
        _own_staticmethods(cls, base)
        apply_skips(cls, base)
        built[name] = cls
    for name in STANDALONE:
        base = getattr(_tm, name, None)
        if base is None:
            continue
        cls = type(name, (base,), {})
        cls.__qualname__ = name
        cls.__module__ = __name__
        _own_staticmethods(cls, base)
        apply_skips(cls, base)
        built[name] = cls
    return built


_patch_test_module()
CLASSES = _build()
globals().update(CLASSES)

_dangling: list[Any] = [None, None]
_old_start_method: list[Any] = [None]


def setUpModule() -> None:
    """What the standard library's module setup does, for this run's start method."""
    multiprocessing.set_forkserver_preload(["__main__", __name__])
    _dangling[0] = multiprocessing.process._dangling.copy()  # type: ignore[attr-defined]
    _dangling[1] = threading._dangling.copy()  # type: ignore[attr-defined]
    _old_start_method[0] = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method(_config.START_METHOD, force=True)
    multiprocessing.util.get_temp_dir()


def tearDownModule() -> None:
    """Collect cycles (a Pool makes them), restore the start method, report dangling
    processes and threads as the standard library's module teardown does."""
    gc.collect()
    multiprocessing.set_start_method(_old_start_method[0], force=True)
    processes = set(multiprocessing.process._dangling) - set(_dangling[0])  # type: ignore[attr-defined]
    if processes:
        print(f"Dangling processes: {processes}", file=sys.stderr)
    threads = set(threading._dangling) - set(_dangling[1])  # type: ignore[attr-defined]
    if threads:
        print(f"Dangling threads: {threads}", file=sys.stderr)
