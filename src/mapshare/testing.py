"""Helpers for testing code that uses mapshare: unique names and leak checks.

    from mapshare.testing import unique_name, leftover
    name = unique_name()
    ...
    assert not leftover(before)
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable

from . import _core, _naming

__all__ = ["leftover", "remove", "session_token", "shm_entries", "unique_name"]

_counter = itertools.count()


_TOKEN_ENV = "MAPSHARE_TEST_TOKEN"


def unique_name(prefix: str = "t") -> str:
    """A name no other process is using: prefix, a session token (the environment
    variable MAPSHARE_TEST_TOKEN, inherited by child processes, else the pid), a counter
    and random bits; at most 20 characters for prefixes of up to 3, so its OS name is
    readable (not hashed)."""
    token = os.environ.get(_TOKEN_ENV) or f"{os.getpid() % 100000:05d}"
    return f"{prefix}{token[:5]}{next(_counter):04d}{os.urandom(3).hex()}"[:20]


def session_token() -> str:
    """Set (once) and return this test session's token; see ``unique_name``."""
    token = os.environ.get(_TOKEN_ENV)
    if not token:
        token = os.urandom(3).hex()[:5]
        os.environ[_TOKEN_ENV] = token
    return token


def shm_entries() -> set[str]:
    """The mapshare OS names present now (Linux: entries of /dev/shm; Windows: the
    named sections of this session, which exist while some process holds a handle)."""
    try:
        return {e for e in _core.list_objects() if _naming.is_os_name(e.lstrip("/"))}
    except OSError:
        return set()


def leftover(before: Iterable[str]) -> set[str]:
    """mapshare objects present now that were not in ``before``."""
    return shm_entries() - set(before)


def remove(os_names: Iterable[str]) -> None:
    """Unlink OS names, ignoring those already gone."""
    for osn in os_names:
        try:
            _core.unlink(osn)
        except OSError:
            pass
