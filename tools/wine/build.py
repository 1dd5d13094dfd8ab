#!/usr/bin/env python3
"""Cross-compile mapshare._core for Windows (x86-64, CPython 3.11) with mingw-w64.

Run with the *Linux* Python, after tools/wine/setup.sh:

    python3 tools/wine/build.py            # -> build/wine/site/mapshare/_core.cp311-win_amd64.pyd
    python3 tools/wine/build.py --selftest # also builds build/wine/platform_selftest.exe

Sources: every csrc/*.c plus csrc/platform/windows.c (never linux.c / darwin.c), with
-I csrc.  The extension links against the UCRT, like python.org's MSVC build (a mingw
default build would link msvcrt.dll, whose FILE*/errno/heap differ from python311.dll's):
the gcc specs are rewritten so that -lmsvcrt becomes -lucrt.

The Python package is staged by copying src/mapshare/ to build/wine/site/mapshare/ and
putting the .pyd inside; tests then run with PYTHONPATH=Z:\\...\\build\\wine\\site.

Warnings: csrc/platform/windows.c (and the self-test) always build with -Werror and a
few extra warnings (-Wshadow -Wvla -Wformat=2 -Wdeclaration-after-statement, the last one
because MSVC-friendly C89-style declarations are the house style there).  The shared
sources get -Wall -Wextra like the Linux build; their warnings are printed, counted, and
made fatal with --werror (what CI should use once the tree is clean).
After linking, the DLL imports are checked: msvcrt.dll, libgcc or winpthread imports
would make the .pyd fail or misbehave on a clean Windows machine.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import glob
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CC = os.environ.get("MINGW_CC", "x86_64-w64-mingw32-gcc")
OBJDUMP = os.environ.get("MINGW_OBJDUMP", "x86_64-w64-mingw32-objdump")
CACHE = os.environ.get("MAPSHARE_WINE_CACHE", os.path.expanduser("~/.cache/mapshare-wine"))
PYW = os.environ.get("PYW", os.path.join(CACHE, "python", "cp311"))
EXT_SUFFIX = ".cp311-win_amd64.pyd"

CFLAGS = [
    # the Linux build's flags (setup.py), so that a warning here is a Windows-only one
    "-std=c11", "-O2", "-g0", "-Wall", "-Wextra", "-Wno-missing-field-initializers",
    "-D_UCRT", "-D__MSVCRT_VERSION__=0xE00", "-DUNICODE", "-D_UNICODE",
    # mingw's headers declare printf-family formats as ms_printf, where gcc rejects %zu
    # and %lld although the UCRT supports them; the mingw C99 stdio (linked statically,
    # no extra DLL) gets gnu_printf checking and behaves like the UCRT for these formats.
    "-D__USE_MINGW_ANSI_STDIO=1",
    "-D_WIN32_WINNT=0x0A00", "-DWINVER=0x0A00",
    "-fno-strict-aliasing",
]
# Stricter for the Windows platform file, which only this build ever compiles.
STRICT = ["-Werror", "-Wshadow", "-Wvla", "-Wformat=2", "-Wdeclaration-after-statement"]
# tests/c programs built by --selftest and run by run-selftest.sh.  test_core.c and
# test_topic.c are not here: their crash tests fork, and their fakes keep locks in heap
# memory with no name (Windows derives a lock's mutex from the segment's name).
CTESTS = {
    "test_array": ["tests/c/test_array.c", "csrc/array.c"],
    "test_latest": ["tests/c/test_latest.c", "csrc/latest.c", "csrc/segment.c", "csrc/sync.c",
                    "csrc/channel.c", "csrc/inspect.c", "csrc/platform/windows.c"],
    "test_journal": ["tests/c/test_journal.c", "csrc/journal.c"],
}
ALLOWED_DLL = re.compile(
    r"^(python3\d*\.dll|kernel32\.dll|kernelbase\.dll|advapi32\.dll|ntdll\.dll|"
    r"api-ms-win-[a-z0-9-]+\.dll|ucrtbase\.dll|vcruntime140\.dll|synchronization\.dll)$",
    re.I,
)


def run(cmd, **kw):
    r = subprocess.run(cmd, text=True, capture_output=True, **kw)
    if r.stdout:
        sys.stdout.write(r.stdout)
    if r.stderr:
        sys.stderr.write(r.stderr)
    if r.returncode:
        raise SystemExit(f"build.py: command failed ({r.returncode}): {' '.join(cmd)}")
    return r


def ucrt_specs(build: str) -> str:
    path = os.path.join(build, "ucrt.specs")
    specs = subprocess.run([CC, "-dumpspecs"], text=True, capture_output=True, check=True).stdout
    specs = specs.replace("-lmsvcrt", "-lucrt")
    if not os.path.exists(path) or open(path).read() != specs:
        with open(path, "w") as f:
            f.write(specs)
    return path


WARNINGS: list[tuple[str, int]] = []


def compile_one(src: str, obj: str, specs: str, extra: list[str]) -> str:
    strict = STRICT if os.path.basename(src) in ("windows.c", "platform_selftest.c") else []
    cmd = [CC, "-specs=" + specs, *CFLAGS, *extra, *strict, "-c", src, "-o", obj]
    r = subprocess.run(cmd, text=True, capture_output=True)
    out = (r.stdout + r.stderr).strip()
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd)}\n{out}")
    return out


def compile_all(sources, objdir, specs, extra, jobs):
    os.makedirs(objdir, exist_ok=True)
    objs, failures = [], []
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as ex:
        futs = {}
        for src in sources:
            rel = os.path.relpath(src, ROOT)
            if rel.startswith(".."):
                rel = os.path.basename(src)
            obj = os.path.join(objdir, rel.replace(os.sep, "_")[:-2] + ".o")
            objs.append(obj)
            futs[ex.submit(compile_one, src, obj, specs, extra)] = src
        for fut in concurrent.futures.as_completed(futs):
            try:
                out = fut.result()
                if out:
                    print(out, file=sys.stderr)
                    WARNINGS.append((futs[fut], out.count("warning:")))
            except RuntimeError as e:
                failures.append(str(e))
    if failures:
        for f in failures:
            print(f, file=sys.stderr)
        raise SystemExit("build.py: compilation failed")
    return objs


def check_imports(binary: str) -> list[str]:
    r = subprocess.run([OBJDUMP, "-p", binary], text=True, capture_output=True, check=True)
    dlls = re.findall(r"DLL Name:\s*(\S+)", r.stdout)
    bad = [d for d in dlls if not ALLOWED_DLL.match(d)]
    if bad:
        raise SystemExit(f"build.py: {binary} imports unexpected DLLs {bad} (all: {dlls})")
    return dlls


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build", "wine"))
    ap.add_argument("--sources", nargs="*", help="C sources (default: csrc/*.c + windows.c)")
    ap.add_argument("--package", default=os.path.join(ROOT, "src", "mapshare"),
                    help="Python package to stage (default src/mapshare)")
    ap.add_argument("--werror", action="store_true",
                    help="warnings in every source are errors (windows.c: always)")
    ap.add_argument("--debug", action="store_true", help="-O0 -g")
    ap.add_argument("--selftest", action="store_true",
                    help="also build tools/wine/platform_selftest.exe (no Python)")
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args(argv)

    t0 = time.monotonic()
    if shutil.which(CC) is None:
        raise SystemExit(f"build.py: {CC} not found: run tools/wine/setup.sh")
    if not os.path.exists(os.path.join(PYW, "libs", "python311.lib")):
        raise SystemExit(f"build.py: Windows Python not found at {PYW}: run tools/wine/setup.sh")

    build = os.path.abspath(args.build_dir)
    os.makedirs(build, exist_ok=True)
    specs = ucrt_specs(build)
    extra = ["-I", os.path.join(ROOT, "csrc")]
    if args.werror:
        extra.append("-Werror")
    if args.debug:
        extra += ["-O0", "-g"]

    platform_src = os.path.join(ROOT, "csrc", "platform", "windows.c")
    if args.sources:
        sources = [os.path.abspath(s) for s in args.sources]
    else:
        sources = (sorted(glob.glob(os.path.join(ROOT, "csrc", "*.c")))
                   + sorted(glob.glob(os.path.join(ROOT, "csrc", "binding", "*.c")))
                   + [platform_src])
    binding_dir = os.path.join(ROOT, "csrc", "binding")
    core_sources = [s for s in sources if os.path.dirname(s) != binding_dir]

    # the plain-C platform self-test: windows.c + the test, no Python
    if args.selftest:
        test_src = os.path.join(ROOT, "tools", "wine", "platform_selftest.c")
        objs = compile_all([platform_src, test_src], os.path.join(build, "obj-selftest"),
                           specs, extra, args.jobs)
        exe = os.path.join(build, "platform_selftest.exe")
        run([CC, "-specs=" + specs, "-o", exe, *objs, "-ladvapi32"])
        check_imports(exe)
        print(f"build.py: {os.path.relpath(exe, ROOT)}")
        # The plain-C tests of the cores that only the pytest suite exercised under Wine
        # (tests/c, see CTESTS); same sources as tests/c/run.sh, windows.c for linux.c.
        ctest_dir = os.path.join(ROOT, "tests", "c")
        for prog, srcs in CTESTS.items():
            paths = [os.path.join(ROOT, s) for s in srcs]
            objs = compile_all(paths, os.path.join(build, "obj-" + prog), specs,
                               extra + ["-I", ctest_dir], args.jobs)
            exe = os.path.join(build, prog + ".exe")
            run([CC, "-specs=" + specs, "-o", exe, *objs, "-ladvapi32"])
            check_imports(exe)
            print(f"build.py: {os.path.relpath(exe, ROOT)}")
        if not os.path.isdir(binding_dir) and not args.sources:
            return 0

    has_module = len(core_sources) < len(sources) or args.sources
    if not has_module:
        print("build.py: csrc/binding/ does not exist yet: compiling the core only (no .pyd)",
              file=sys.stderr)
        compile_all(core_sources, os.path.join(build, "obj"), specs,
                    extra + ["-I", os.path.join(PYW, "include")], args.jobs)
        return 0

    objs = compile_all(sources, os.path.join(build, "obj"), specs,
                       extra + ["-I", os.path.join(PYW, "include")], args.jobs)

    # stage the package
    site = os.path.join(build, "site")
    pkg_dst = os.path.join(site, "mapshare")
    if os.path.isdir(pkg_dst):
        shutil.rmtree(pkg_dst)
    if os.path.isdir(args.package):
        shutil.copytree(args.package, pkg_dst,
                        ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd", "*.pyc"))
    else:
        print(f"build.py: {args.package} does not exist: staging the extension alone",
              file=sys.stderr)
        os.makedirs(pkg_dst)
    pyd = os.path.join(pkg_dst, "_core" + EXT_SUFFIX)
    run([CC, "-specs=" + specs, "-shared", "-s", "-o", pyd, *objs,
         "-L", os.path.join(PYW, "libs"), "-lpython311", "-ladvapi32"])
    dlls = check_imports(pyd)
    if WARNINGS:
        print("build.py: WARNINGS in " + ", ".join(f"{os.path.relpath(f, ROOT)} ({n})"
                                              for f, n in WARNINGS), file=sys.stderr)
    print(f"build.py: {os.path.relpath(pyd, ROOT)} ({os.path.getsize(pyd)} bytes, imports "
          f"{', '.join(sorted(set(d.lower() for d in dlls)))}) in {time.monotonic() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
