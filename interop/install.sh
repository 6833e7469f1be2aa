#!/usr/bin/env bash
# Installs the real MCP clients the interop tests drive, each into its own folder under
# interop/, from the package registries, at the versions pinned there.
set -euo pipefail
cd "$(dirname "$0")"
for script in */install.sh; do
    echo "-- ${script%/install.sh}"
    bash "$script"
done
