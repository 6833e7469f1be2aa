#!/usr/bin/env bash
# Builds every fuzz target once and runs each for a while on a copy of its committed corpus.
# Fails when any target crashes, panics, times out or breaks an invariant, printing where the
# input that did it is.
# Usage: bash fuzz/run.sh [seconds per target, default 60] [target ...]
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-60}
shift || true

# Fuzz builds use their own target directory, whatever the stable builds use: nightly,
# libFuzzer and coverage flags share no artefact with them.
export CARGO_TARGET_DIR="${MCP_OAUTH_FUZZ_TARGET_DIR:-$HOME/.cache/mcp-oauth/fuzz-target}"
export CARGO_INCREMENTAL=0
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: installing it"
    cargo install cargo-fuzz --locked
fi

# Release with debug assertions (overflow checks included). No sanitizer: every crate of the
# workspace forbids unsafe code, and AddressSanitizer would halve the executions.
flags=(--release --debug-assertions --sanitizer none)

if (($# > 0)); then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

t0=$(date +%s)
cargo +nightly fuzz build "${flags[@]}"
echo "fuzz build: $(($(date +%s) - t0)) s"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

failed=0
results=()
for target in "${targets[@]}"; do
    corpus="$work/corpus/$target"
    mkdir -p "$corpus"
    if [[ -d "corpus/$target" ]]; then
        cp -r "corpus/$target/." "$corpus/"
    fi
    log="$work/$target.log"
    echo "==> $target: ${seconds} s"
    status=0
    # Crashes land in fuzz/artifacts/<target>/ (cargo fuzz's default), outside the copy.
    cargo +nightly fuzz run "${flags[@]}" "$target" "$corpus" -- \
        -max_total_time="$seconds" -timeout=10 -max_len=16384 -print_final_stats=1 >"$log" 2>&1 || status=$?
    execs=$(awk '/^stat::number_of_executed_units:/ {print $2}' "$log" | tail -n 1)
    if ((status != 0)); then
        failed=1
        grep -E "panicked at|^SUMMARY|Test unit written to" "$log" >&2 || tail -n 40 "$log" >&2
        artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
        artifact=${artifact:-$PWD/artifacts/$target/}
        echo "<== $target FAILED after ${execs:-0} executions; input: $artifact" >&2
        echo "    reproduce: cargo +nightly fuzz run ${flags[*]} $target $artifact" >&2
        results+=("$(printf '%-18s %6s s %12s  FAILED: %s' "$target" "$seconds" "${execs:-0}" "$artifact")")
        continue
    fi
    results+=("$(printf '%-18s %6s s %12s' "$target" "$seconds" "${execs:-?}")")
done

echo
printf '%-18s %8s %12s\n' target time executions
printf '%s\n' "${results[@]}"
echo "total: $(($(date +%s) - t0)) s"
exit "$failed"
