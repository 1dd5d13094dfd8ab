"""Which implementation and start method this run tests.

Read from the environment, because a child started by ``spawn`` or ``forkserver`` imports
the test-class modules afresh and must build the same classes as its parent: the runner
(``python -m tests.cpython``) sets these variables before it imports them, and children
inherit them.
"""

from __future__ import annotations

import os
from typing import Any

IMPL_VAR = "MAPSHARE_CPYTHON_IMPL"
START_METHOD_VAR = "MAPSHARE_CPYTHON_START_METHOD"

#: "mapshare" (the implementation under test) or "std" (the standard library's objects
#: through the same harness: a baseline showing which failures are the harness's or this
#: machine's rather than mapshare's)
IMPL = os.environ.get(IMPL_VAR, "mapshare")
if IMPL not in ("mapshare", "std"):
    raise SystemExit(f"{IMPL_VAR} must be 'mapshare' or 'std', not {IMPL!r}")

#: the start method every process of the run uses: fork, spawn or forkserver
START_METHOD = os.environ.get(START_METHOD_VAR, "spawn")


def context() -> Any:
    """The context whose factories are under test (mapshare's, or the standard one's)."""
    if IMPL == "std":
        import multiprocessing

        return multiprocessing.get_context(START_METHOD)
    import mapshare.multiprocessing as msmp  # type: ignore[import-not-found,unused-ignore]

    return msmp.get_context(START_METHOD)
