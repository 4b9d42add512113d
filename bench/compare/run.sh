#!/usr/bin/env bash
# The comparison bench: our omnipaxos against upstream omnipaxos 0.2.4 and
# raft-rs 0.7 under one workload (see the comment at the top of src/main.rs).
#
#   bench/compare/run.sh            # batch 1000, then 10000, 100 and 1; N = 1,000,000
#   ROUNDS=9 bench/compare/run.sh   # more rounds
#   bench/compare/run.sh --batch 100 --n 200000 --rounds 3   # one run, any flags
#
# Exits non-zero if any trial fails, including an applied log out of order
# or incomplete on any server.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release --locked --quiet
bin="${CARGO_TARGET_DIR:-target}/release/compare"
if [[ $# -gt 0 ]]; then
    exec "$bin" "$@"
fi
rounds="${ROUNDS:-5}"
"$bin" --rounds "$rounds" --batch 1000 --n 1000000
echo
"$bin" --rounds "$rounds" --batch 10000 --n 1000000
echo
"$bin" --rounds "$rounds" --batch 100 --n 1000000
echo
"$bin" --rounds "$rounds" --batch 1 --n 1000000
