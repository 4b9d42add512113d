#!/usr/bin/env bash
# Disk use and write throughput of a kv_store cluster on PersistentStorage
# under a steady PUT load: three servers on loopback, `wrk` PUTs of 100-byte
# values over 100,000 keys against the leader, ROUNDS rounds of SECONDS each,
# printing puts/s and each data directory's size after every round.
#
#   examples/kv_store/scripts/disk_growth.sh [ROUNDS] [SECONDS]
#
# Needs `wrk` (Debian: apt-get install wrk). Bounded: it runs ROUNDS*SECONDS
# seconds of load plus start-up, sends traffic only to 127.0.0.1, and stops
# the servers on exit.
set -euo pipefail
cd "$(dirname "$0")/../../.."
rounds=${1:-3}
seconds=${2:-15}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 1; }
cargo build --release --locked -q -p kv_store
bin=target/release/kv_store
work=$(mktemp -d /tmp/kv_growth.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

base=$((20000 + RANDOM % 20000))
peers="1=127.0.0.1:$((base + 1)),2=127.0.0.1:$((base + 2)),3=127.0.0.1:$((base + 3))"
for id in 1 2 3; do
    "$bin" server --id "$id" --listen "127.0.0.1:$((base + id))" --peers "$peers" \
        --http "127.0.0.1:$((base + 10 + id))" --data-dir "$work/node$id" \
        >"$work/node$id.log" 2>&1 &
    pids+=($!)
done

# The leader, once the cluster has one.
leader=""
for _ in $(seq 100); do
    leader=$(curl -sf "http://127.0.0.1:$((base + 11))/status" |
        python3 -c 'import json,sys; l=json.load(sys.stdin).get("leader"); print(l if l else "")' 2>/dev/null || true)
    [ -n "$leader" ] && break
    sleep 0.1
done
[ -n "$leader" ] || { echo "no leader after 10 s"; tail -n 20 "$work"/node*.log; exit 1; }
url="http://127.0.0.1:$((base + 10 + leader))"
echo "leader: server $leader ($url); $rounds rounds of ${seconds}s"
printf '%-6s %10s %8s  %-16s %-16s %s\n' round puts/s errors "data dirs MiB" "server RSS MiB" "sled blob files"
for round in $(seq "$rounds"); do
    out=$(wrk -t2 -c64 -d"${seconds}s" -s examples/kv_store/scripts/put.lua "$url" 2>&1)
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    errors=$(awk '/Non-2xx/ {print $5}' <<<"$out")
    sizes=$(for id in 1 2 3; do du -sm "$work/node$id" | cut -f1; done | tr '\n' ' ')
    rss=$(for pid in "${pids[@]}"; do echo $(($(ps -o rss= -p "$pid") / 1024)); done | tr '\n' ' ')
    blobs=$(find "$work" -path '*blobs*' -type f | wc -l)
    printf '%-6s %10s %8s  %-16s %-16s %s\n' "$round" "$rps" "${errors:-0}" "$sizes" "$rss" "$blobs"
done
echo "files of node $leader:"
(cd "$work/node$leader" && du -sh -- * | sort -h)
