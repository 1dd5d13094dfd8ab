"""The factory keywords every kind shares (``mode``, ``lifetime``, ``access``, ``kind``,
``wait``, ``init_timeout``...), their types and their checks, in one place so that the
same keyword means the same thing and is refused with the same message everywhere."""

from __future__ import annotations

import os
from typing import Literal, Optional, Union

from . import _core

__all__ = [
    "INIT_WAIT",
    "KIND_NAMES",
    "LIFETIME_NAMES",
    "Access",
    "Lifetime",
    "PathLike",
    "access_code",
    "check_mode",
    "check_seconds",
    "check_size",
    "lifetime_code",
]

Access = Literal["rw", "r", "copy"]
Lifetime = Literal["shared", "persistent"]
PathLike = Union[str, "os.PathLike[str]"]

_ACCESS = {"rw": _core.ACCESS_WRITE, "r": _core.ACCESS_READ, "copy": _core.ACCESS_COPY}
_LIFETIME = {"persistent": _core.LIFETIME_PERSISTENT, "shared": _core.LIFETIME_SHARED}
LIFETIME_NAMES = {v: k for k, v in _LIFETIME.items()}
KIND_NAMES = {
    _core.KIND_SEGMENT: "segment",
    _core.KIND_LOCK: "lock",
    _core.KIND_EVENT: "event",
    _core.KIND_SEMAPHORE: "semaphore",
    _core.KIND_CHANNEL: "channel",
    _core.KIND_LINK: "link",
    _core.KIND_TOPIC: "topic",
    _core.KIND_ARRAY: "array",
    _core.KIND_LATEST: "latest",
}
INIT_WAIT = 2.0  # default init_timeout: seconds an opener waits for a creator's header


def lifetime_code(lifetime: str) -> int:
    """The layout code of a ``lifetime=`` keyword."""
    try:
        return _LIFETIME[lifetime]
    except KeyError:
        raise ValueError(
            f"lifetime must be 'shared' or 'persistent', not {lifetime!r}"
        ) from None


def access_code(access: str) -> int:
    """The core's code of an ``access=`` keyword."""
    try:
        return _ACCESS[access]
    except KeyError:
        raise ValueError(f"access must be 'rw', 'r' or 'copy', not {access!r}") from None


def check_mode(mode: int) -> int:
    """A ``mode=`` keyword: permission bits that let the owner read and write."""
    if not isinstance(mode, int) or not 0 <= mode <= 0o777:
        raise ValueError(f"mode must be permission bits between 0 and 0o777, not {mode!r}")
    if not mode & 0o600 == 0o600:
        raise ValueError("mode must give the owner read and write (0o600 at least)")
    return mode


def check_size(size: object, what: str = "size") -> int:
    """A size argument: an int >= 0."""
    # bool is an int to Python, but size=True is a mistake, never a size of 1
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"{what} must be an int, not {type(size).__name__}")
    if size < 0:
        raise ValueError(f"{what} must be >= 0, not {size!r}")
    return size


def check_seconds(value: object, what: str, *, none_ok: bool = True) -> Optional[float]:
    """A duration argument: None (when allowed: forever) or a number of seconds >= 0."""
    if value is None and none_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{what} must be {'None or ' if none_ok else ''}a number of seconds, "
            f"not {type(value).__name__}"
        )
    if not value >= 0:  # also refuses NaN
        raise ValueError(f"{what} must be >= 0 seconds, not {value!r}")
    return float(value)
