#!/usr/bin/env bash
# Load test of the running example server, in one command:
#   bash benches/loadtest.sh [--codes N] [--calls N] [--seconds S] [--skip-postgres]
# Builds notes-server and the load generator in release mode and runs it: the server on
# 127.0.0.1 over a fresh SQLite file, then a scratch PostgreSQL database on 127.0.0.1:5432
# (user postgres; override with LOADTEST_POSTGRES_URL), created and dropped by the run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --release -p notes-server -p oauth-benches --bin notes-server --bin loadtest
target="${CARGO_TARGET_DIR:-target}"
exec "$target/release/loadtest" "$@"
