# Sourced by the interop folders' install.sh: one way to install pinned Python packages.
#
# pip_venv_once LABEL CHECK...: in the current folder, installs requirements.txt into .venv
# unless the venv already holds exactly those requirements, then runs CHECK (a command, with
# .venv/bin/python, that proves the client imports) before recording the file's hash. Fails
# loudly at each step.
pip_venv_once() {
    local label=$1
    shift
    local venv=.venv stamp=.venv/.requirements.sha256 want
    want=$(sha256sum requirements.txt | cut -d' ' -f1)
    if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        return 0
    fi
    if [[ ! -x "$venv/bin/python" ]] && ! python3 -m venv "$venv"; then
        echo "interop/${label}: 'python3 -m venv' failed (is python3 with venv installed?)" >&2
        return 1
    fi
    if ! PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_NO_INPUT=1 \
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir -r requirements.txt; then
        echo "interop/${label}: installing requirements.txt into $PWD/$venv failed" >&2
        return 1
    fi
    if ! "$@"; then
        echo "interop/${label}: the packages are installed in $PWD/$venv but the client does not import" >&2
        return 1
    fi
    echo "$want" >"$stamp"
}
