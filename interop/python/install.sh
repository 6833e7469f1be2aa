#!/usr/bin/env bash
# Installs the official MCP Python SDK client (the `mcp` package, pinned in requirements.txt
# with everything it depends on) into interop/python/.venv. Idempotent: when the venv already
# holds exactly these requirements it returns at once.
set -euo pipefail
cd "$(dirname "$0")"
source ../lib/pip-venv.sh
imports() {
    .venv/bin/python -c 'import importlib.metadata as m, mcp.client.auth, mcp.client.streamable_http; print("mcp", m.version("mcp"))'
}
pip_venv_once python imports
