#!/usr/bin/env bash
# Installs what the browser tests drive: Debian's Chromium (no browser download of a test
# tool's own) and playwright-core, pinned in package-lock.json. Fast when both are present.
set -euo pipefail
cd "$(dirname "$0")"
if [[ ! -x /usr/bin/chromium ]]; then
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }; then
        echo "interop/browser: installing Debian's chromium failed (apt-get install chromium)" >&2
        exit 1
    fi
fi
/usr/bin/chromium --version
source ../lib/npm-ci.sh
loads() {
    node -e 'require("playwright-core")'
}
npm_ci_once browser loads
