#!/usr/bin/env bash
# Installs mcp-remote (pinned in package-lock.json) into interop/mcp-remote/node_modules, the
# same package `npx mcp-remote` runs for desktop MCP clients. Fast when the lock file has not
# changed.
set -euo pipefail
cd "$(dirname "$0")"
source ../lib/npm-ci.sh
# The pinned bridge must start on this Node: it reaches its argument check and refuses to run
# without a server URL, rather than fail to load.
starts() {
    local usage
    usage=$(node node_modules/mcp-remote/dist/proxy.js 2>&1 </dev/null || true)
    [[ "$usage" == *"Usage: mcp-remote"* ]] || return 1
    echo "mcp-remote $(node -p 'require("./node_modules/mcp-remote/package.json").version') on node $(node --version)"
}
npm_ci_once mcp-remote starts
