# Sourced by tools/matrix.sh and tools/build-wheels.sh: where this machine's CPythons are.
# The interpreters are looked up on PATH (python3.X), then under pyenv
# ($(pyenv root)/versions/3.X.*). Nothing here installs or downloads one.

# Every CPython minor version the package claims (pyproject: requires-python >= 3.9).
MAPSHARE_PYTHONS="3.9 3.10 3.11 3.12 3.13"

# Print the path of a CPython of version $1 (e.g. 3.10), or nothing.
find_python() {
    local want=$1 cand root
    local -a cands=()
    cand=$(command -v "python$want" 2>/dev/null) && cands+=("$cand")
    if command -v pyenv >/dev/null 2>&1 && root=$(pyenv root 2>/dev/null); then
        :
    else
        root=${PYENV_ROOT:-$HOME/.pyenv}
    fi
    for cand in "$root"/versions/"$want".*/bin/python"$want"; do
        [ -x "$cand" ] && cands+=("$cand")
    done
    local out
    for cand in "${cands[@]}"; do
        # a pyenv shim on PATH exists even when its version is not installed: ask it, and
        # print the interpreter itself rather than the shim
        out=$("$cand" -c 'import sys; print("%d.%d" % sys.version_info[:2], sys.executable)' \
            2>/dev/null) || continue
        if [ "${out%% *}" = "$want" ] && [ -x "${out#* }" ]; then
            echo "${out#* }"
            return 0
        fi
    done
    return 1
}

