#!/usr/bin/env bash
# Installs the official MCP conformance suite and the Node 22 binary it needs (the suite uses
# fs.globSync; the machine's Node is 20), both pinned in package-lock.json.
set -euo pipefail
cd "$(dirname "$0")"
stamp=node_modules/.package-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    exit 0
fi
if ! npm ci --no-audit --no-fund --loglevel=error; then
    echo "interop/conformance: 'npm ci' failed" >&2
    exit 1
fi
echo "conformance $(PATH="$PWD/node_modules/.bin:$PATH" conformance --version) on node $(node_modules/.bin/node --version)"
echo "$want" > "$stamp"
