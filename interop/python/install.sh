#!/usr/bin/env bash
# Installs the official MCP Python SDK client (the `mcp` package, pinned in requirements.txt
# with everything it depends on) into interop/python/.venv. Idempotent: when the venv already
# holds exactly these requirements it returns at once.
set -euo pipefail
cd "$(dirname "$0")"

venv=.venv
stamp="$venv/.requirements.sha256"
want=$(sha256sum requirements.txt | cut -d' ' -f1)

if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    exit 0
fi

if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv" || {
        echo "interop/python: 'python3 -m venv' failed (is python3 with venv installed?)" >&2
        exit 1
    }
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_NO_INPUT=1
if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir -r requirements.txt; then
    echo "interop/python: installing requirements.txt into $PWD/$venv failed" >&2
    exit 1
fi
# Prove the pinned client imports before declaring the venv ready.
"$venv/bin/python" -c 'import importlib.metadata as m, mcp.client.auth, mcp.client.streamable_http; print("mcp", m.version("mcp"))'
echo "$want" > "$stamp"
