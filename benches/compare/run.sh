#!/usr/bin/env bash
# The token-validation comparison with the peers, in one command:
#   bash benches/compare/run.sh [--seconds N]
# Installs the pinned TypeScript peer (npm) into benches/compare/node_modules and the pinned
# Python peer (PyPI) into benches/compare/.venv, builds the comparison in release mode and
# runs it. Needs node with npm, python3 with venv, and openssl for the limit.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
if [[ ! -d node_modules || package-lock.json -nt node_modules ]]; then
    npm ci --no-audit --no-fund --loglevel=error
fi
if [[ ! -x .venv/bin/python || requirements.txt -nt .venv ]]; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
    touch .venv
fi
cd "$here/../.."
cargo run --quiet --release -p oauth-benches --bin compare -- "$@"
