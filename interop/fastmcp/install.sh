#!/usr/bin/env bash
# Installs FastMCP's client (the `fastmcp` package, pinned in requirements.txt with everything
# it depends on) into interop/fastmcp/.venv. Idempotent: when the venv already holds exactly
# these requirements it returns at once.
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
        echo "interop/fastmcp: 'python3 -m venv' failed (is python3 with venv installed?)" >&2
        exit 1
    }
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_NO_INPUT=1
if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir -r requirements.txt; then
    echo "interop/fastmcp: installing requirements.txt into $PWD/$venv failed" >&2
    exit 1
fi
# Prove the pinned client and its private_key_jwt provider import before declaring the venv
# ready.
if ! "$venv/bin/python" -c 'import importlib.metadata as m
from fastmcp import Client
from fastmcp.client.auth import PrivateKeyJWTOAuthProvider, SignedJWTParameters
print("fastmcp", m.version("fastmcp"))'; then
    echo "interop/fastmcp: fastmcp is installed in $PWD/$venv but its client does not import" >&2
    exit 1
fi
echo "$want" > "$stamp"
