#!/usr/bin/env bash
# Installs oauth4webapi (pinned in package-lock.json) into interop/oauth4webapi/node_modules.
# Fast when the lock file has not changed.
set -euo pipefail
cd "$(dirname "$0")"
source ../lib/npm-ci.sh
# The pinned library must load on this Node (it needs WebCrypto as globalThis.crypto).
loads() {
    node --input-type=module -e 'import * as oauth from "oauth4webapi"; import { readFileSync } from "node:fs"; if (typeof oauth.validateAuthResponse !== "function" || !globalThis.crypto?.subtle) throw new Error("oauth4webapi did not load"); console.log("oauth4webapi", JSON.parse(readFileSync("node_modules/oauth4webapi/package.json")).version, "on node", process.version)'
}
npm_ci_once oauth4webapi loads
