"""Where the C API lives in an installed package: the header (``get_include``) and the
sources of libmapshare (``get_sources``), so that a C or C++ program can be built against
the mapshare it talks to without a source checkout (docs/c-api.md).

A wheel or an installed sdist carries ``mapshare/include/mapshare.h`` and the library's
sources under ``mapshare/csrc/`` (setup.py copies them in); an editable install or a
source checkout finds them at the top of the repository instead.
"""

from __future__ import annotations

from pathlib import Path

from ._errors import UnsupportedError
from ._platform import HAS_C_LIBRARY

__all__ = ["LIBRARY_SOURCES", "get_include", "get_sources"]

#: The C files libmapshare is built from (relative to the csrc directory); the Makefile
#: at the top of the repository builds the same list (CORE + CAPI).
LIBRARY_SOURCES = (
    "segment.c", "sync.c", "channel.c", "inspect.c", "platform/linux.c",
    "capi/api.c", "capi/blake2b.c",
)

_PKG = Path(__file__).resolve().parent


def _roots() -> tuple[Path, Path]:
    """(include directory, csrc directory): the installed copies, else the checkout's."""
    if (_PKG / "include" / "mapshare.h").is_file():
        return _PKG / "include", _PKG / "csrc"
    repo = _PKG.parent.parent
    if (repo / "include" / "mapshare.h").is_file():
        return repo / "include", repo / "csrc"
    raise FileNotFoundError(
        f"mapshare.h is neither in the package ({_PKG / 'include'}) nor in a source "
        "checkout; reinstall mapshare from a wheel or sdist"
    )


def get_include() -> str:
    """The directory holding ``mapshare.h``: pass it to the compiler as ``-I``."""
    return str(_roots()[0])


def get_sources() -> list[str]:
    """The C files to compile, together with your program, into libmapshare (absolute
    paths; link with ``-lpthread -lrt``).  Linux only for now: elsewhere
    ``UnsupportedError``."""
    if not HAS_C_LIBRARY:
        raise UnsupportedError(
            "libmapshare is built on Linux only for now (docs/c-api.md); on this OS the "
            "C core is available only inside the Python extension"
        )
    csrc = _roots()[1]
    return [str(csrc / s) for s in LIBRARY_SOURCES]
