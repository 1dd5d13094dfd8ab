"""Build the C extension mapshare._core; all metadata lives in pyproject.toml.

Environment switches:
  MAPSHARE_SANITIZE=1   build with AddressSanitizer + UndefinedBehaviorSanitizer
                        (run Python with LD_PRELOAD=$(gcc -print-file-name=libasan.so) and
                        ASAN_OPTIONS=detect_leaks=0:allow_user_segv_handler=1:handle_segv=0:handle_sigbus=0
                        so the SIGBUS guard keeps working; tools/sanitize.sh does all this
                        in a throw-away venv and runs the test suite).
  MAPSHARE_DEBUG=1      -O0 -g.
"""

import os
import sys
from glob import glob

from setuptools import Extension, setup
from setuptools.command.build_py import build_py as _build_py

sources = sorted(glob("csrc/*.c")) + sorted(glob("csrc/binding/*.c"))
if sys.platform == "win32":
    sources.append("csrc/platform/windows.c")
    libraries = ["advapi32"]
elif sys.platform.startswith("linux"):
    sources.append("csrc/platform/linux.c")
    libraries = ["rt", "pthread"]
else:
    raise SystemExit(
        f"mapshare has no platform backend for {sys.platform!r} yet (see docs/platforms.md)"
    )

compile_args: list[str] = []
link_args: list[str] = []
if sys.platform != "win32":
    compile_args += ["-std=c11", "-Wall", "-Wextra", "-Wno-missing-field-initializers",
                     "-fno-strict-aliasing"]
    if os.environ.get("MAPSHARE_DEBUG") == "1":
        compile_args += ["-O0", "-g"]
    else:
        compile_args += ["-O2"]
    if os.environ.get("MAPSHARE_SANITIZE") == "1":
        flags = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer",
                 "-fno-sanitize-recover=undefined", "-g"]
        compile_args += flags
        link_args += flags

# The C API in the installed package (mapshare.get_include(), mapshare.get_sources()):
# include/mapshare.h and the sources of libmapshare, copied under mapshare/ so that a C
# program can be built against the mapshare it talks to (docs/c-api.md).  The list
# matches src/mapshare/_capi.py LIBRARY_SOURCES (+ every header they include).
C_API_FILES = (
    ["include/mapshare.h"]
    + sorted(glob("csrc/*.h")) + ["csrc/platform/platform.h"] + sorted(glob("csrc/capi/*"))
    + [f"csrc/{s}" for s in ("segment.c", "sync.c", "channel.c", "inspect.c",
                              "platform/linux.c")]
)


class build_py(_build_py):
    """Also copies the C API's files into the package (not for an editable install,
    whose mapshare.get_include() finds them in the checkout)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for rel in C_API_FILES:
            dst = os.path.join(self.build_lib, "mapshare", rel)
            self.mkpath(os.path.dirname(dst))
            self.copy_file(rel, dst)


setup(
    cmdclass={"build_py": build_py},
    ext_modules=[
        Extension(
            "mapshare._core",
            sources=sources,
            include_dirs=["csrc"],
            depends=sorted(glob("csrc/*.h") + glob("csrc/platform/*.h") + glob("csrc/binding/*.h")),
            libraries=libraries,
            extra_compile_args=compile_args,
            extra_link_args=link_args,
        )
    ]
)
