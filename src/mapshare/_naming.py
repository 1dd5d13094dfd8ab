"""Logical names and their OS names.

A logical name is what users type: 1 to 255 characters from ``A-Z a-z 0-9 . _ -``, not
starting with ``.`` or ``-``.  Case matters.  The OS name is derived from it the same way
on every OS, short enough for macOS (whose POSIX shared memory names stop at 31 bytes):

* names of up to 20 characters: ``/mapshare.<name>``;
* longer names: ``/mapshare.<first 7 chars>~<12 hex digits of BLAKE2b(name)>``.

The full logical name is stored in the segment's header, so two long names that share
an OS name are detected (NameCollisionError) instead of silently meeting.
On Windows the backend turns ``/mapshare.x`` into ``Local\\mapshare.x`` (or ``Global\\``).
"""

from __future__ import annotations

import hashlib
import re

PREFIX = "mapshare."
DIRECT_MAX = 20
NAME_MAX = 255
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*\Z")

RULE = (
    "a mapshare name is 1 to 255 characters from A-Z a-z 0-9 '.' '_' '-', "
    "not starting with '.' or '-'"
)


def validate(name: object) -> str:
    """Return ``name`` if it is a valid logical name, else raise ValueError (or
    TypeError) stating the rule."""
    if not isinstance(name, str):
        raise TypeError(f"segment name must be str, not {type(name).__name__}")
    if not name or len(name) > NAME_MAX or not _NAME_RE.match(name):
        raise ValueError(f"invalid segment name {name!r}: {RULE}")
    return name


def os_name(name: str) -> str:
    """The OS-level name (``/mapshare....``) of a logical name."""
    validate(name)
    if len(name) <= DIRECT_MAX:
        return "/" + PREFIX + name
    digest = hashlib.blake2b(name.encode(), digest_size=6).hexdigest()
    return "/" + PREFIX + name[:7] + "~" + digest


def is_os_name(entry: str) -> bool:
    """True for a /dev/shm entry (without the slash) that mapshare may have made."""
    return entry.startswith(PREFIX) and len(entry) > len(PREFIX)
