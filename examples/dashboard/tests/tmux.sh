#!/usr/bin/env bash
# Drives the dashboard in a real terminal (tmux) through a leader crash, a
# cut and heal of a link, and the chained partition, and checks the screen
# after each: the leader change appears in the events, the cut link shows as
# `--` in the connectivity matrix and as `ok` again once healed, and `q`
# gives the terminal back.
#
# Not a cargo test, so that `cargo nextest run --workspace` passes on a
# machine without tmux; `.ci/run` installs tmux and runs this script.
#
# Every wait is bounded (WAIT seconds, and the dashboard exits by itself
# after --duration); the tmux server is private to this run and is killed
# on exit. Set CAPTURE_DIR to keep the screen captures.
set -euo pipefail
cd "$(dirname "$0")/../../.."

WAIT=${WAIT:-30}
SOCKET="dashboard-test-$$"
SESSION=dashboard
captures=${CAPTURE_DIR:-$(mktemp -d)}
mkdir -p "$captures"

tmx() { tmux -L "$SOCKET" "$@"; }
cleanup() { tmx kill-server 2>/dev/null || true; }
trap cleanup EXIT

echo "building the dashboard"
cargo build --quiet --locked -p dashboard
bin="${CARGO_TARGET_DIR:-target}/debug/dashboard"

screen() { tmx capture-pane -p -t "$SESSION"; }

fail() {
    echo "FAIL: $*"
    echo "--- screen:"
    screen || true
    exit 1
}

# Waits until the screen matches the extended regex $1; $2 says what for.
wait_for() {
    local pattern=$1 what=$2 deadline=$((SECONDS + WAIT))
    until screen | grep -Eq -- "$pattern"; do
        ((SECONDS < deadline)) || fail "$what: no /$pattern/ within ${WAIT}s"
        sleep 0.2
    done
    echo "ok: $what"
}

# Saves the screen as $1.txt in the capture directory, and prints it.
save() {
    screen >"$captures/$1.txt"
    echo "--- capture $1:"
    cat "$captures/$1.txt"
}

# The matrix line of node $1 (its row in the connectivity matrix), without
# the `>` that marks the attached node.
matrix_row() {
    screen | grep -Eo -- "[ >] +$1 +(·|ok|--|\?\?)( +(·|ok|--|\?\?))+ +[0-9-]+ +(yes|NO)" |
        head -n 1 | sed 's/^>/ /'
}

# The cell of the matrix for row $1, column $2 (nodes 1..N in order): the
# row's first field is its node id.
cell() {
    matrix_row "$1" | awk -v col="$2" '{print $(col + 1)}'
}

wait_cell() {
    local row=$1 col=$2 want=$3 what=$4 deadline=$((SECONDS + WAIT))
    until [[ "$(cell "$row" "$col")" == "$want" ]]; do
        ((SECONDS < deadline)) || fail "$what: cell ($row, $col) is '$(cell "$row" "$col")', not '$want'"
        sleep 0.2
    done
    echo "ok: $what"
}

# A 160x50 terminal running the dashboard; after it exits, its status is
# printed on the (restored) normal screen.
tmx new-session -d -s "$SESSION" -x 160 -y 50 \
    "TERM=xterm-256color '$bin' --nodes 5 --attach 1 --duration 240 --rate 20; echo DASHBOARD-EXITED=\$?; sleep 600"

wait_for "leader is [0-9] \(n=" "a leader is elected"
leader=$(screen | grep -Eo "leader is [0-9]" | head -n 1 | grep -Eo "[0-9]$")
echo "leader: $leader"
wait_for "decided entries/s at node 1: [1-9]" "node 1 decides entries"

# Crash the leader: another takes over, and the events say so.
tmx send-keys -t "$SESSION" l
wait_for "crashed the leader, node $leader" "the crash is logged"
wait_for "node $leader is down" "the crashed leader shows as down"
wait_for "leader $leader -> [0-9] \(n=" "the leader change appears in the events"
save leader-change
new=$(screen | grep -Eo "leader $leader -> [0-9]" | head -n 1 | grep -Eo "[0-9]$")
[[ "$new" != "$leader" ]] || fail "the new leader is the crashed one"
wait_cell "$new" "$leader" "--" "the new leader does not hear the crashed one"

# Restart it on its storage: it comes back and follows the new leader.
tmx send-keys -t "$SESSION" "$leader" r
wait_for "node $leader is up" "the restarted node is up"
wait_cell "$leader" "$new" "ok" "the restarted node hears the new leader"

# Cut the link between 2 and 3 both ways, then heal it.
tmx send-keys -t "$SESSION" 2 3 C
wait_for "cut 2 <-> 3" "the cut is logged"
wait_cell 2 3 "--" "2 does not hear 3 across the cut"
wait_cell 3 2 "--" "3 does not hear 2 across the cut"
wait_cell 2 4 "ok" "2 still hears 4"
tmx send-keys -t "$SESSION" 2 3 H
wait_for "healed 2 <-> 3" "the heal is logged"
wait_cell 2 3 "ok" "2 hears 3 again after the heal"
wait_cell 3 2 "ok" "3 hears 2 again after the heal"
save healed

# The chained partition: the leader loses its link to one follower only.
tmx send-keys -t "$SESSION" p
wait_for "chained partition: cut leader [0-9] <-> [0-9]" "the chained partition is made"
chain=$(screen | grep -Eo "chained partition: cut leader [0-9] <-> [0-9]" | tail -n 1)
a=$(grep -Eo "leader [0-9]" <<<"$chain" | grep -Eo "[0-9]")
b=$(grep -Eo "[0-9]$" <<<"$chain")
wait_cell "$a" "$b" "--" "the chained leader does not hear the far follower"
wait_cell "$b" "$a" "--" "the far follower does not hear the chained leader"
for row in 1 2 3 4 5; do
    # awk, not grep -c: a row without a match is no failure here.
    n=$(matrix_row "$row" | awk '{n = 0; for (i = 2; i <= NF; i++) if ($i == "--") n++; print n}')
    expect=0
    if [[ $row == "$a" || $row == "$b" ]]; then expect=1; fi
    [[ $n == "$expect" ]] || fail "row $row of the chained matrix has $n cut cells, not $expect"
done
echo "ok: the chained matrix has exactly the two mirrored cut cells"
save chained

# Heal everything and leave: the terminal is restored and the exit clean.
tmx send-keys -t "$SESSION" n
wait_for "healed all 2 cut links" "every link heals"
tmx send-keys -t "$SESSION" q
wait_for "DASHBOARD-EXITED=0" "q leaves the dashboard with status 0"
if screen | grep -q "who hears whom"; then
    fail "the dashboard is still on screen after q: the terminal was not restored"
fi
echo "ok: the terminal is restored"
echo "captures in $captures"
echo "ok: the tmux dashboard test passed"
