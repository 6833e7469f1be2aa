#!/usr/bin/env bash
# Installs FastMCP's client (the `fastmcp` package, pinned in requirements.txt with everything
# it depends on) into interop/fastmcp/.venv. Idempotent: when the venv already holds exactly
# these requirements it returns at once.
set -euo pipefail
cd "$(dirname "$0")"
source ../lib/pip-venv.sh
# The pinned client and its private_key_jwt provider must import.
imports() {
    .venv/bin/python -c 'import importlib.metadata as m
from fastmcp import Client
from fastmcp.client.auth import PrivateKeyJWTOAuthProvider, SignedJWTParameters
print("fastmcp", m.version("fastmcp"))'
}
pip_venv_once fastmcp imports
