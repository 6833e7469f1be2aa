#!/usr/bin/env bash
# Soak test of the example server's MCP sessions, in one command:
#   bash benches/soak-initialize.sh [--seconds S] [--early S] [--workers N]
# Builds notes-server and the driver in release mode and runs it: the server on 127.0.0.1 over
# a fresh SQLite file, one valid token flooding `initialize` for 90 s (by default), the server's
# RSS after 15 s and at the end, and their ratio (target <= 1.5).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --release -p notes-server -p oauth-benches --bin notes-server --bin soak-initialize
target="${CARGO_TARGET_DIR:-target}"
exec "$target/release/soak-initialize" "$@"
