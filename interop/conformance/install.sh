#!/usr/bin/env bash
# Installs the official MCP conformance suite and the Node 22 binary it needs (the suite uses
# fs.globSync; the machine's Node is 20), both pinned in package-lock.json.
set -euo pipefail
cd "$(dirname "$0")"
source ../lib/npm-ci.sh
runs() {
    echo "conformance $(PATH="$PWD/node_modules/.bin:$PATH" conformance --version) on node $(node_modules/.bin/node --version)"
}
npm_ci_once conformance runs
