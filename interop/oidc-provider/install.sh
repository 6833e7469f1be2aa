#!/usr/bin/env bash
# Installs node-oidc-provider (pinned in package-lock.json) into
# interop/oidc-provider/node_modules: the external authorization server that provider.mjs
# starts for the guard's tests. Fast when the lock file has not changed.
set -euo pipefail
cd "$(dirname "$0")"
source ../lib/npm-ci.sh
# The pinned provider must load on this Node and start (it needs WebCrypto and node:crypto's
# JWK export).
loads() {
    node --input-type=module -e 'import Provider from "oidc-provider"; import { readFileSync } from "node:fs"; if (typeof Provider !== "function" || !globalThis.crypto?.subtle) throw new Error("oidc-provider did not load"); console.log("oidc-provider", JSON.parse(readFileSync("node_modules/oidc-provider/package.json")).version, "on node", process.version)'
}
npm_ci_once oidc-provider loads
