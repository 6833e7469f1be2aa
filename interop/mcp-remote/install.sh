#!/usr/bin/env bash
# Installs mcp-remote (pinned in package-lock.json) into interop/mcp-remote/node_modules, the
# same package `npx mcp-remote` runs for desktop MCP clients. Fast when the lock file has not
# changed.
set -euo pipefail
cd "$(dirname "$0")"
stamp=node_modules/.package-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    exit 0
fi
if ! npm ci --no-audit --no-fund --loglevel=error; then
    echo "interop/mcp-remote: 'npm ci' failed (is node with npm installed, and the npm registry reachable?)" >&2
    exit 1
fi
# Prove the pinned bridge starts on this Node: it must reach its argument check and refuse
# to run without a server URL, rather than fail to load.
usage=$(node node_modules/mcp-remote/dist/proxy.js 2>&1 </dev/null || true)
if [[ "$usage" == *"Usage: mcp-remote"* ]]; then
    echo "mcp-remote $(node -p 'require("./node_modules/mcp-remote/package.json").version') on node $(node --version)"
else
    echo "interop/mcp-remote: the installed mcp-remote does not start on node $(node --version)" >&2
    exit 1
fi
echo "$want" > "$stamp"
