#!/usr/bin/env bash
# Installs the official MCP TypeScript SDK (pinned in package-lock.json) into
# interop/ts/node_modules. Fast when the lock file has not changed.
set -euo pipefail
cd "$(dirname "$0")"
stamp=node_modules/.package-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    exit 0
fi
if ! npm ci --no-audit --no-fund --loglevel=error; then
    echo "interop/ts: 'npm ci' failed (is node with npm installed, and the npm registry reachable?)" >&2
    exit 1
fi
# Prove the pinned client loads before declaring the install ready.
node --input-type=module -e 'import "@modelcontextprotocol/sdk/client/index.js"; import { readFileSync } from "node:fs"; console.log("@modelcontextprotocol/sdk", JSON.parse(readFileSync("node_modules/@modelcontextprotocol/sdk/package.json")).version)'
echo "$want" > "$stamp"
