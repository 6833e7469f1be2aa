#!/usr/bin/env bash
# Installs the official MCP TypeScript SDK (pinned in package-lock.json) into
# interop/ts/node_modules. Fast when the lock file has not changed.
set -euo pipefail
cd "$(dirname "$0")"
source ../lib/npm-ci.sh
loads() {
    node --input-type=module -e 'import "@modelcontextprotocol/sdk/client/index.js"; import { readFileSync } from "node:fs"; console.log("@modelcontextprotocol/sdk", JSON.parse(readFileSync("node_modules/@modelcontextprotocol/sdk/package.json")).version)'
}
npm_ci_once ts loads
