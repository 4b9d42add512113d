#!/usr/bin/env bash
# The fuzz smoke test: builds every fuzz target with cargo-fuzz on the stable
# toolchain (`--sanitizer none`), in the dev profile (with debug assertions
# and overflow checks, and about half the build time of the optimised one,
# which matters more for a short run than the speed of each input), runs
# each for FUZZ_SECONDS (default 20)
# from a copy of its checked-in corpus (so corpus/ does not grow), fails on
# the first crash, and appends a `fuzz summary:` line to
# target/ci-soak-summary.txt at the repository root.
#
# Installs the pinned cargo-fuzz from crates.io when it is missing (about a
# minute of one core). A crash leaves its input in fuzz/artifacts/<target>/;
# replay it with `cargo fuzz run <target> --sanitizer none <file>`.
# With SMOKE_INSTALL_ONLY=1 it only installs cargo-fuzz (so that CI can
# time and bound the install apart from the run).
set -euo pipefail
cd "$(dirname "$0")"

CARGO_FUZZ_VERSION=0.13.2
FUZZ_SECONDS=${FUZZ_SECONDS:-20}

if [[ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
    echo "cargo-fuzz $CARGO_FUZZ_VERSION is not installed: installing it from crates.io"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi
if [[ "${SMOKE_INSTALL_ONLY:-}" == 1 ]]; then
    exit 0
fi

# cargo-fuzz has no --locked: check the committed Cargo.lock here instead.
cargo metadata --locked --format-version 1 >/dev/null

mapfile -t targets < <(cargo fuzz list)
t0=$SECONDS
cargo fuzz build --dev --sanitizer none
echo "built ${#targets[@]} fuzz targets in $((SECONDS - t0))s"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
runs=0
for t in "${targets[@]}"; do
    mkdir -p "$work/corpus/$t"
    cp corpus/"$t"/* "$work/corpus/$t/"
    log="$work/$t.log"
    if ! cargo fuzz run "$t" --dev --sanitizer none "$work/corpus/$t" -- \
        -max_total_time="$FUZZ_SECONDS" -timeout=10 >"$log" 2>&1; then
        tail -n 80 "$log"
        echo "fuzz target $t failed; its input is under fuzz/artifacts/$t/"
        exit 1
    fi
    n=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n 1)
    if [[ -z "$n" ]]; then
        tail -n 40 "$log"
        echo "fuzz target $t did not report its runs"
        exit 1
    fi
    echo "$t: $n runs in ${FUZZ_SECONDS}s"
    runs=$((runs + n))
done

mkdir -p ../target
echo "fuzz summary: targets ${#targets[@]}, seconds $FUZZ_SECONDS each, runs $runs, crashes 0" \
    | tee -a ../target/ci-soak-summary.txt
