#!/usr/bin/env bash
# The kv_store against etcd under the same closed-loop HTTP load, in one run.
#
#   examples/kv_store/scripts/vs_etcd.sh [ROUNDS] [SECONDS]
#
# Starts a 3-server kv_store cluster (PersistentStorage, every write synced)
# and, if `etcd` is on the PATH (Debian: apt-get install etcd-server), a
# 3-member etcd cluster (its default: every write fsynced), all on loopback.
# Then, ROUNDS times, alternating kv_store and etcd, applies `kv_store load`
# to each cluster's leader for SECONDS seconds per cell: PUTs of a 100-byte
# value to one of 100,000 keys and linearizable GETs (etcd: its HTTP/JSON
# gateway, POST /v3/kv/put and /v3/kv/range), at 1, 8 and 64 connections.
# Prints every cell, then the medians over the rounds and the ratios.
#
# KV_STORE_BIN=path runs the servers from that kv_store binary.
# Without etcd it measures the kv_store alone and says so. Bounded: about
# ROUNDS * 12 * SECONDS seconds of load, traffic only to 127.0.0.1, every
# process stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../../.."
rounds=${1:-3}
seconds=${2:-10}
cargo build --release --locked -q -p kv_store
# The load comes from this build; the servers may be another one
# (KV_STORE_BIN, e.g. a copy made before a change).
loader=target/release/kv_store
bin=${KV_STORE_BIN:-$loader}
work=$(mktemp -d /tmp/kv_vs_etcd.XXXXXX)
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
        --http "127.0.0.1:$((base + 10 + id))" --data-dir "$work/kv$id" \
        >"$work/kv$id.log" 2>&1 &
    pids+=($!)
done

status_leader() {
    python3 - "$1" <<'EOF'
import json, sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1] + "/status", timeout=1) as r:
        print(json.load(r).get("leader") or "")
except Exception:
    print("")
EOF
}

kv_leader=""
for _ in $(seq 100); do
    kv_leader=$(status_leader "http://127.0.0.1:$((base + 11))")
    [ -n "$kv_leader" ] && break
    sleep 0.1
done
[ -n "$kv_leader" ] || { echo "kv_store: no leader after 10 s"; tail -n 20 "$work"/kv*.log; exit 1; }
kv_url="http://127.0.0.1:$((base + 10 + kv_leader))"
echo "kv_store leader: server $kv_leader ($kv_url)"

etcd_url=""
if command -v etcd >/dev/null; then
    cluster=""
    for id in 1 2 3; do
        cluster+="e$id=http://127.0.0.1:$((base + 20 + id)),"
    done
    cluster=${cluster%,}
    for id in 1 2 3; do
        etcd --name "e$id" --data-dir "$work/etcd$id" \
            --listen-peer-urls "http://127.0.0.1:$((base + 20 + id))" \
            --initial-advertise-peer-urls "http://127.0.0.1:$((base + 20 + id))" \
            --listen-client-urls "http://127.0.0.1:$((base + 30 + id))" \
            --advertise-client-urls "http://127.0.0.1:$((base + 30 + id))" \
            --initial-cluster "$cluster" --initial-cluster-state new \
            --initial-cluster-token vs-kv-store >"$work/etcd$id.log" 2>&1 &
        pids+=($!)
    done
    # The leader: the member whose status names itself as leader.
    for _ in $(seq 100); do
        for id in 1 2 3; do
            url="http://127.0.0.1:$((base + 30 + id))"
            is_leader=$(python3 - "$url" <<'EOF'
import json, sys, urllib.request
try:
    req = urllib.request.Request(sys.argv[1] + "/v3/maintenance/status", data=b"{}", method="POST")
    with urllib.request.urlopen(req, timeout=1) as r:
        s = json.load(r)
    print("yes" if s.get("leader") and s["leader"] == s.get("header", {}).get("member_id") else "")
except Exception:
    print("")
EOF
)
            if [ -n "$is_leader" ]; then etcd_url=$url; break 2; fi
        done
        sleep 0.1
    done
    [ -n "$etcd_url" ] || { echo "etcd: no leader after 10 s"; tail -n 20 "$work"/etcd*.log; exit 1; }
    echo "etcd leader: $etcd_url ($(etcd --version | head -n 1))"
else
    echo "etcd is not installed (Debian: apt-get install etcd-server): measuring the kv_store alone"
fi

results="$work/results.jsonl"
run_cell() { # system url dialect op connections round
    local json
    json=$("$loader" load --url "$2" --dialect "$3" --op "$4" --connections "$5" \
        --duration-secs "$seconds" --json)
    printf '%-8s %-4s %3s conns  round %s  %s\n' "$1" "$4" "$5" "$6" \
        "$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("%9.0f req/s  p50 %6.2f ms  p99 %6.2f ms  errors %d" % (r["per_sec"], r["p50_ms"], r["p99_ms"], r["errors"]))' "$json")"
    python3 -c 'import json,sys; r=json.loads(sys.argv[1]); r.update(system=sys.argv[2], op=sys.argv[3], conns=int(sys.argv[4])); print(json.dumps(r))' \
        "$json" "$1" "$4" "$5" >>"$results"
}

for round in $(seq "$rounds"); do
    for op in put get; do
        for conns in 1 8 64; do
            run_cell kv_store "$kv_url" kv "$op" "$conns" "$round"
            if [ -n "$etcd_url" ]; then
                run_cell etcd "$etcd_url" etcd "$op" "$conns" "$round"
            fi
        done
    done
done

echo
echo "medians over $rounds rounds:"
python3 - "$results" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
cells = {}
for r in rows:
    cells.setdefault((r["op"], r["conns"], r["system"]), []).append(r)
def med(rs, k):
    return statistics.median(r[k] for r in rs)
print(f"{'op':4} {'conns':>5}  {'system':8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}  ratio (kv/etcd req/s)")
for op in ("put", "get"):
    for conns in (1, 8, 64):
        kv = cells.get((op, conns, "kv_store"))
        et = cells.get((op, conns, "etcd"))
        for name, rs in (("kv_store", kv), ("etcd", et)):
            if not rs:
                continue
            ratio = ""
            if name == "kv_store" and et:
                ratio = f"{med(kv, 'per_sec') / max(med(et, 'per_sec'), 1e-9):.2f}x"
            print(f"{op:4} {conns:5}  {name:8} {med(rs, 'per_sec'):9.0f} {med(rs, 'p50_ms'):8.2f} {med(rs, 'p99_ms'):8.2f}  {ratio}")
errors = sum(r["errors"] for r in rows)
print(f"errors in all cells: {errors}")
EOF
