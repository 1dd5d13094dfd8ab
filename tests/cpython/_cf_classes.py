"""The ``ProcessPoolExecutor`` tests of CPython's ``test.test_concurrent_futures``, with
``mp_context=`` the context under test.

The standard library builds e.g. ``ProcessPoolSpawnProcessPoolExecutorTest`` from the
``ProcessPoolExecutorTest`` mixin and ``ProcessPoolSpawnMixin``, whose ``get_context()``
returns ``multiprocessing.get_context("spawn")``; every executor of those tests is made with
``mp_context=self.get_context()``. The classes of the same names here override
``get_context()`` to return the context under test (after the standard one's own checks,
which skip where the platform has no such executor). Only the classes for this run's start
method are built. The tests are a module up to CPython 3.11 and a package from 3.12; a
CPython whose ``test`` package lacks them (some distributions trim it) gets no classes here
and the runner says so.
"""

from __future__ import annotations

import importlib
import unittest
from typing import Any

from . import _config
from ._mp_classes import apply_skips

#: the mixins whose process-pool classes run here; the thread-pool ones and the tests of
#: Future itself do not involve a multiprocessing context
MIXINS = (
    "ProcessPoolExecutorTest",
    "ProcessPoolShutdownTest",
    "WaitTests",
    "AsCompletedTests",
    "ExecutorDeadlockTest",
    "InitializerMixin",
    "FailingInitializerMixin",
)

_PREFIX = {"fork": "ProcessPoolFork", "spawn": "ProcessPoolSpawn",
           "forkserver": "ProcessPoolForkserver"}

MISSING = ""  # why no classes were built, if none were


def _modules() -> list[Any]:
    global MISSING
    try:
        package = importlib.import_module("test.test_concurrent_futures")
    except ImportError as exc:
        MISSING = f"this CPython's test package has no test_concurrent_futures ({exc})"
        return []
    if not hasattr(package, "__path__"):  # 3.9-3.11: one module
        return [package]
    modules = []
    for sub in ("test_process_pool", "test_shutdown", "test_wait", "test_as_completed",
                "test_deadlock", "test_init"):
        try:
            modules.append(importlib.import_module(f"test.test_concurrent_futures.{sub}"))
        except ImportError:
            pass
    return modules


def _get_context(self: Any) -> Any:
    # the standard get_context() first: it skips where this executor cannot run
    standard = super(self._mapshare_class, self).get_context()
    if _config.IMPL == "std":
        return standard
    return _config.context()


def _build() -> dict[str, type]:
    prefix = _PREFIX[_config.START_METHOD]
    built: dict[str, type] = {}
    for module in _modules():
        for name, obj in sorted(vars(module).items()):
            # create_executor_tests makes type(name, (mixin, executor_mixin, *bases))
            if not (isinstance(obj, type) and issubclass(obj, unittest.TestCase)
                    and len(obj.__bases__) >= 2
                    and obj.__bases__[0].__name__ in MIXINS
                    and obj.__bases__[1].__name__ == prefix + "Mixin"):
                continue
            cls = type(name, (obj,), {"get_context": _get_context})
            cls._mapshare_class = cls  # type: ignore[attr-defined]
            cls.__qualname__ = name
            cls.__module__ = __name__
            apply_skips(cls, obj.__bases__[0])
            built[name] = cls
    return built


CLASSES = _build()
globals().update(CLASSES)
