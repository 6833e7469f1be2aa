#!/usr/bin/env bash
# Installs oauth4webapi (pinned in package-lock.json) into interop/oauth4webapi/node_modules.
# Fast when the lock file has not changed.
set -euo pipefail
cd "$(dirname "$0")"
stamp=node_modules/.package-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    exit 0
fi
if ! npm ci --no-audit --no-fund --loglevel=error; then
    echo "interop/oauth4webapi: 'npm ci' failed (is node with npm installed, and the npm registry reachable?)" >&2
    exit 1
fi
# Prove the pinned library loads on this Node (it needs WebCrypto as globalThis.crypto).
node --input-type=module -e 'import * as oauth from "oauth4webapi"; import { readFileSync } from "node:fs"; if (typeof oauth.validateAuthResponse !== "function" || !globalThis.crypto?.subtle) throw new Error("oauth4webapi did not load"); console.log("oauth4webapi", JSON.parse(readFileSync("node_modules/oauth4webapi/package.json")).version, "on node", process.version)'
echo "$want" > "$stamp"
