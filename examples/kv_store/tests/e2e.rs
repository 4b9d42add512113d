//! End to end: three `kv_store server` processes on loopback, concurrent HTTP
//! clients doing reads, puts, deletes and compare-and-swaps on a few keys,
//! and servers killed with SIGKILL and restarted during the workload. The
//! client history is checked for linearizability key by key; a lost
//! acknowledged write would show up as a read that no order explains, so the
//! check covers durability too. The history ends with a read of every key
//! from every server, after the last restart.
//!
//! A second nemesis cuts, slows and pauses on proxied links (`run_faults`),
//! and a third changes the membership under faults (`run_changes`): a
//! server is replaced by a new one started with `server --join` while the
//! clients run and a fault hits during the change (a one-way cut from the
//! leader to the follower that stays, a leader stopped with SIGSTOP while
//! it proposes the change, a leader killed with SIGKILL as soon as the
//! change is decided and restarted), and the leader itself is replaced. The same
//! history check covers those, with reads from the joiners once they are
//! members; each server left out must exit by itself with status 0. Every
//! fault test prints, and leaves for CI's summary, the longest time without
//! an acknowledged write per fault.
//!
//! Waits poll `/status` with deadlines; the sleeps are the workload's own
//! pacing (how long servers stay up or down, how long a fault is held), not
//! synchronisation. Nothing asserts how long anything takes: the deadlines
//! (tens of seconds) only catch a hang.
//!
//! Set `KV_E2E_SEED` to replay the choices of a failed run (the timing of a
//! real cluster still differs), `KV_FAULT_ROUNDS=n` to go through the
//! faults of `run_faults` n times, and `KV_CLUSTER_KEEP_DIR=1` (with, say,
//! `RUST_LOG=info,kv_store=trace,slog=debug`) to keep the servers' whole
//! logs of a run.

use kv_store::{
    KvClient,
    api::Outcome,
    checker::{self, KvOp, KvOutput, Operation},
    cluster::{ClusterOptions, ProcessCluster, agreed_leader, configuration_decided},
};
use omnipaxos::util::NodeId;
use rand::{Rng as _, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

const KEYS: [&str; 3] = ["k0", "k1", "k2"];
const CLIENTS: usize = 6;
/// How long clients run while servers are killed and restarted.
const WORKLOAD: Duration = Duration::from_secs(16);
/// How long a killed server stays down.
const DOWN: Duration = Duration::from_millis(1200);
/// How long the cluster runs between a restart and the next kill.
const UP: Duration = Duration::from_millis(1500);

/// What the clients share.
struct Shared {
    t0: Instant,
    /// Clients of the servers that are up.
    targets: RwLock<Vec<KvClient>>,
    stop: AtomicBool,
    history: Mutex<Vec<Operation>>,
}

impl Shared {
    /// The clients' shared state, with the clock started now.
    fn new(targets: Vec<KvClient>) -> Arc<Self> {
        Arc::new(Self {
            t0: Instant::now(),
            targets: RwLock::new(targets),
            stop: AtomicBool::new(false),
            history: Mutex::default(),
        })
    }

    fn now(&self) -> u64 {
        u64::try_from(self.t0.elapsed().as_nanos()).expect("the test runs for less than 500 years")
    }

    fn target(&self, rng: &mut ChaCha8Rng) -> KvClient {
        let t = self.targets.read().unwrap();
        t[rng.gen_range(0..t.len())].clone()
    }

    fn set_targets(&self, targets: Vec<KvClient>) {
        *self.targets.write().unwrap() = targets;
    }
}

/// Invokes one operation on `client` and records it: a failed read is
/// dropped (it changed nothing), a write that certainly did not happen is
/// dropped, and any other failed write is recorded with an unknown outcome.
async fn invoke(
    shared: &Shared,
    client: &KvClient,
    who: usize,
    key: &str,
    op: KvOp,
) -> Option<KvOutput> {
    let invoked = shared.now();
    let result = match &op {
        KvOp::Get => client.get(key).await.map(KvOutput::Value),
        KvOp::Put(v) => client.put(key, v).await.map(write_output),
        KvOp::Delete => client.delete(key).await.map(write_output),
        KvOp::Cas { expected, new } => client
            .cas(key, expected.as_deref(), new)
            .await
            .map(write_output),
    };
    let completed = shared.now();
    let (output, completed) = match result {
        Ok(output) => (output, Some(completed)),
        Err(_) if op == KvOp::Get => return None,
        Err(e) if e.write_outcome() == Outcome::NotApplied => return None,
        Err(_) => (KvOutput::Unknown, None),
    };
    shared.history.lock().unwrap().push(Operation {
        client: who,
        key: key.to_owned(),
        op,
        output: output.clone(),
        invoked,
        completed,
    });
    Some(output)
}

fn write_output(r: kv_store::api::WriteResponse) -> KvOutput {
    KvOutput::Write {
        success: r.success,
        previous: r.previous,
    }
}

/// One client: random operations on random keys against random servers that
/// are up. A compare-and-swap expects the value this client last saw.
async fn client(shared: Arc<Shared>, who: usize, seed: u64) {
    let mut rng =
        ChaCha8Rng::seed_from_u64(seed ^ (who as u64).wrapping_mul(0x1234_5678_9ABC_DEF1));
    let mut last_seen: [Option<String>; KEYS.len()] = Default::default();
    let mut n = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        let k = rng.gen_range(0..KEYS.len());
        let value = format!("c{who}-{n}");
        n += 1;
        let op = match rng.gen_range(0..10) {
            0..=3 => KvOp::Get,
            4..=6 => KvOp::Put(value),
            7 => KvOp::Delete,
            _ => KvOp::Cas {
                expected: last_seen[k].clone(),
                new: value,
            },
        };
        let target = shared.target(&mut rng);
        match invoke(&shared, &target, who, KEYS[k], op.clone()).await {
            Some(KvOutput::Value(v)) => last_seen[k] = v,
            Some(KvOutput::Write { success, previous }) => {
                last_seen[k] = match op {
                    KvOp::Put(v) => Some(v),
                    KvOp::Delete => None,
                    KvOp::Cas { new, .. } if success => Some(new),
                    _ => previous,
                };
            }
            // A failure: back off a little rather than spin against a
            // cluster that is electing a leader.
            Some(KvOutput::Unknown) | None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Clients of the servers `ids`, each with the workload's timeout.
fn clients_of(cluster: &ProcessCluster, ids: impl IntoIterator<Item = NodeId>) -> Vec<KvClient> {
    ids.into_iter()
        .map(|id| {
            cluster
                .client(id)
                .expect("a member")
                .with_timeout(Duration::from_secs(3))
        })
        .collect()
}

/// `KV_E2E_SEED`, or one from the clock; printed either way.
fn seed() -> u64 {
    let seed = std::env::var("KV_E2E_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    println!("KV_E2E_SEED={seed}");
    seed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_with_servers_killed_and_restarted_is_linearizable() {
    let seed = seed();
    let mut opts = ClusterOptions::new(env!("CARGO_BIN_EXE_kv_store"));
    opts.server_args = [
        "--request-timeout-ms",
        "2000",
        // Compact often, so that restarts and catch-ups go through snapshots.
        "--snapshot-every",
        "100",
    ]
    .map(String::from)
    .to_vec();
    let (mut cluster, leader) = started(opts).await;
    println!("leader: {leader}");
    let shared = Shared::new(clients_of(&cluster, cluster.running()));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|who| tokio::spawn(client(Arc::clone(&shared), who, seed)))
        .collect();

    // The nemesis: kill a server (the leader every other time), let the
    // other two serve, restart it, wait for a leader, repeat.
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut kills = 0;
    while shared.t0.elapsed() + UP + DOWN < WORKLOAD {
        tokio::time::sleep(UP).await;
        let statuses = cluster.statuses().await;
        let leader = statuses.values().find_map(|s| s.leader);
        let victim = match leader {
            Some(l) if kills % 2 == 0 => l,
            _ => {
                let ids = cluster.ids();
                ids[rng.gen_range(0..ids.len())]
            }
        };
        let others = cluster.running().into_iter().filter(|&id| id != victim);
        shared.set_targets(clients_of(&cluster, others));
        cluster.kill(victim).await.expect("kill");
        kills += 1;
        println!(
            "{:>6} ms: killed server {victim} (leader {leader:?})",
            shared.t0.elapsed().as_millis()
        );
        tokio::time::sleep(DOWN).await;
        cluster.restart(victim).await.expect("the server restarts");
        cluster
            .wait_for_leader(Duration::from_secs(20))
            .await
            .expect("a leader after the restart");
        shared.set_targets(clients_of(&cluster, cluster.running()));
        println!(
            "{:>6} ms: restarted server {victim}",
            shared.t0.elapsed().as_millis()
        );
    }
    shared.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("a client task");
    }
    assert!(kills >= 3, "only {kills} kills");

    let ids = cluster.ids();
    check_history(
        &mut cluster,
        &shared,
        seed,
        FinalReads::of(&ids),
        &format!("{kills} kills"),
        100,
        "kills",
    )
    .await;
    cluster.shutdown().await;
}

/// What [`check_history`] reads at the end, and from where.
struct FinalReads<'a> {
    /// The servers to read from: every member of the last configuration.
    readers: &'a [NodeId],
    /// Keys besides [`KEYS`]: the probes' own (see [`spawn_probe`]).
    extra_keys: Vec<String>,
}

impl<'a> FinalReads<'a> {
    /// The clients' keys, from `readers`.
    fn of(readers: &'a [NodeId]) -> Self {
        Self {
            readers,
            extra_keys: Vec::new(),
        }
    }
}

/// Reads every key from every reader (after the last fault), then checks
/// the whole history for linearizability, key by key; on failure prints
/// where the failing key's history went and the end of every server's log.
/// The final reads make the check one of durability too: a read that
/// misses an acknowledged write (the last one of its key) is one that no
/// order explains.
async fn check_history(
    cluster: &mut ProcessCluster,
    shared: &Shared,
    seed: u64,
    reads: FinalReads<'_>,
    what: &str,
    min_acked: usize,
    summary_name: &str,
) {
    // Every reader, restarted ones included, must now show the final state.
    cluster
        .wait_for(
            "a leader all readers agree on",
            Duration::from_secs(20),
            |s| agreed_leader(reads.readers, s),
        )
        .await
        .expect("a leader at the end");
    let keys: Vec<&str> = KEYS
        .iter()
        .copied()
        .chain(reads.extra_keys.iter().map(String::as_str))
        .collect();
    for &id in reads.readers {
        let c = cluster.client(id).expect("a member");
        for &key in &keys {
            // A read that fails is not recorded; retry a few times in case
            // the cluster is still settling.
            let mut tries = 0;
            while invoke(shared, &c, 100 + id as usize, key, KvOp::Get)
                .await
                .is_none()
            {
                tries += 1;
                assert!(
                    tries < 20,
                    "final reads of {key} from server {id} keep failing"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    let history = std::mem::take(&mut *shared.history.lock().unwrap());
    let completed = history.iter().filter(|o| o.completed.is_some()).count();
    let unknown = history.len() - completed;
    let writes_acked = history
        .iter()
        .filter(|o| o.op != KvOp::Get && o.completed.is_some())
        .count();
    println!(
        "history: {} operations ({completed} completed, {unknown} of unknown outcome, {writes_acked} acknowledged writes), {what}",
        history.len()
    );
    assert!(
        writes_acked >= min_acked,
        "too little progress: {writes_acked} acknowledged writes"
    );
    let checked = Instant::now();
    match checker::check(&history) {
        Ok(stats) => {
            println!(
                "linearizable: {stats:?}, checked in {:?}",
                checked.elapsed()
            );
            summary(
                summary_name,
                &format!(
                    "process-level {what}: 1 history of {} operations ({writes_acked} acknowledged writes) checked, 1 linearizable",
                    history.len()
                ),
            );
        }
        Err(e) => {
            if let checker::CheckError::NotLinearizable { ops, .. } = &e {
                let path = format!("{}/e2e-history-{seed}.txt", env!("CARGO_TARGET_TMPDIR"));
                let text: String = ops.iter().map(|op| format!("{op:?}\n")).collect();
                match std::fs::write(&path, text) {
                    Ok(()) => println!("the key's history is in {path}"),
                    Err(err) => println!("cannot write the key's history to {path}: {err}"),
                }
            }
            for id in cluster.ids() {
                println!("--- server {id} ---\n{}", cluster.log_tail(id, 40));
            }
            panic!("{e} (KV_E2E_SEED={seed})");
        }
    }
}

/// A fault of the nemesis, given the leader `l` and the two followers `a`, `b`.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// `l → a` cut; `a → l` and every other link up.
    OneWay,
    /// `l ↔ a` cut both ways; `b` still reaches both (the paper's chained
    /// scenario, in which Raft can livelock).
    Chained,
    /// `l` cut off from both followers, both ways.
    LeaderIsolated,
    /// Every link to and from `l` holds each chunk [`SLOW_LINK`] before
    /// passing it on, while the clients keep writing: a slow leader, not
    /// a gone one.
    SlowLeader,
    /// `l` stopped with SIGSTOP, sockets open.
    LeaderPaused,
    /// `l` killed with SIGKILL, then restarted.
    LeaderKilled,
    /// Every link not touching `a` cut both ways: `l` reaches only `a`, and
    /// `a` alone reaches a quorum (the paper's quorum-loss scenario; five
    /// servers).
    QuorumLoss,
    /// `a` cut off from every server for a while, so that its log falls
    /// behind as writes go on; then every link not touching `a` cut both
    /// ways, so that the one server reaching a quorum is the one with an
    /// outdated log (the paper's constrained-election scenario, in which a
    /// Raft cluster cannot elect a leader; five servers).
    ConstrainedElection,
}

/// The delay of every link of a slow leader.
const SLOW_LINK: Duration = Duration::from_millis(100);

/// How long the constrained-election fault keeps its hub cut off first.
const LAG_HOLD: Duration = Duration::from_millis(1500);

/// How long each fault lasts.
const FAULT_HOLD: Duration = Duration::from_millis(2500);

/// The longest time without an acknowledged probe write (see the test) from
/// `from` until the first one acknowledged after `until` (both in the
/// history's clock), and that first one's time; `None` if no probe write was
/// acknowledged after `until`.
fn write_gap(history: &[Operation], from: u64, until: u64) -> Option<(u64, u64)> {
    let mut acks: Vec<u64> = history
        .iter()
        .filter(|o| o.op != KvOp::Get && o.client >= 200)
        .filter_map(|o| o.completed)
        .filter(|&t| t >= from)
        .collect();
    acks.sort_unstable();
    let resumed = *acks.iter().find(|&&t| t > until)?;
    let mut gap = 0;
    let mut last = from;
    for &t in acks.iter().take_while(|&&t| t <= resumed) {
        gap = gap.max(t - last);
        last = t;
    }
    Some((gap, resumed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_links_and_paused_or_killed_leaders_lose_no_write_and_writes_resume() {
    run_faults(
        3,
        &[
            Fault::OneWay,
            Fault::Chained,
            Fault::LeaderIsolated,
            Fault::SlowLeader,
            Fault::LeaderPaused,
            Fault::LeaderKilled,
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_servers_keep_writing_when_only_one_reaches_a_quorum() {
    run_faults(5, &[Fault::QuorumLoss, Fault::ConstrainedElection]).await;
}

/// A probe of server `id`: writes a key of its own (`p{id}`) through that
/// server only, with a short timeout, as client `200 + id`. The cluster
/// takes writes at a time if any probe's write is acknowledged then (see
/// [`write_gap`]).
fn spawn_probe(
    shared: &Arc<Shared>,
    cluster: &ProcessCluster,
    id: NodeId,
) -> tokio::task::JoinHandle<()> {
    let c = cluster
        .client(id)
        .expect("a member")
        .with_timeout(Duration::from_secs(1));
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        let key = probe_key(id);
        let mut n = 0u64;
        while !shared.stop.load(Ordering::Relaxed) {
            n += 1;
            let put = KvOp::Put(format!("p{id}-{n}"));
            if invoke(&shared, &c, 200 + id as usize, &key, put)
                .await
                .is_none()
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    })
}

/// The key the probe of server `id` writes.
fn probe_key(id: NodeId) -> String {
    format!("p{id}")
}

/// Polls the history until a probe write is acknowledged after `until`
/// (for at most 30 s, which only a hang exceeds), and returns
/// [`write_gap`] from `start`.
async fn wait_resumed(shared: &Shared, start: u64, until: u64, what: &str) -> (u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let gap = write_gap(&shared.history.lock().unwrap(), start, until);
        if let Some(r) = gap {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "no write acknowledged within 30 s after {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts the servers `opts` describe and waits until they elect a
/// leader, which it returns with the cluster.
async fn started(opts: ClusterOptions) -> (ProcessCluster, NodeId) {
    let mut cluster = ProcessCluster::start(opts)
        .await
        .expect("the servers start");
    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .expect("a leader is elected");
    (cluster, leader)
}

/// Runs `nodes` servers on proxied links (in memory, so that five fit on
/// two cores) under the checked workload, holds each of `faults` in turn,
/// and checks that writes resume after each and that the history is
/// linearizable.
async fn run_faults(nodes: usize, faults: &[Fault]) {
    let seed = seed();
    let mut opts = ClusterOptions::new(env!("CARGO_BIN_EXE_kv_store"));
    opts.nodes = nodes;
    opts.memory = nodes > 3;
    opts.proxied = true;
    opts.server_args = ["--request-timeout-ms", "2000"].map(String::from).to_vec();
    let (mut cluster, _) = started(opts).await;
    let shared = Shared::new(clients_of(&cluster, cluster.ids()));
    let mut tasks: Vec<_> = (0..CLIENTS)
        .map(|who| tokio::spawn(client(Arc::clone(&shared), who, seed)))
        .collect();
    for id in cluster.ids() {
        tasks.push(spawn_probe(&shared, &cluster, id));
    }

    // `KV_FAULT_ROUNDS=n` goes through the faults n times (a longer run).
    let rounds: usize = std::env::var("KV_FAULT_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    let mut report = Vec::new();
    for &fault in faults.iter().cycle().take(faults.len() * rounds) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let l = cluster
            .wait_for_leader(Duration::from_secs(20))
            .await
            .expect("a leader before the fault");
        let others: Vec<NodeId> = cluster.ids().into_iter().filter(|&id| id != l).collect();
        let a = others[0];
        let cut = |from, to| cluster.link(from, to).expect("a proxied link").cut();
        let cut_both = |x, y| {
            cut(x, y);
            cut(y, x);
        };
        let start = shared.now();
        match fault {
            Fault::OneWay => cut(l, a),
            Fault::Chained => {
                cut(l, a);
                cut(a, l);
            }
            Fault::LeaderIsolated => {
                for &f in &others {
                    cut_both(l, f);
                }
            }
            Fault::QuorumLoss => {
                // `a` is the hub: every link not touching it is cut, so
                // the leader reaches only `a`, and only `a` reaches a quorum.
                let ids = cluster.ids();
                for &x in &ids {
                    for &y in &ids {
                        if x < y && x != a && y != a {
                            cut_both(x, y);
                        }
                    }
                }
            }
            Fault::SlowLeader => {
                for &f in &others {
                    for (from, to) in [(l, f), (f, l)] {
                        cluster
                            .link(from, to)
                            .expect("a proxied link")
                            .set_delay(SLOW_LINK);
                    }
                }
            }
            Fault::ConstrainedElection => {
                let ids = cluster.ids();
                for &x in &ids {
                    if x != a {
                        cut_both(a, x);
                    }
                }
                tokio::time::sleep(LAG_HOLD).await;
                let behind = cluster.status(a).await.map(|s| s.decided_idx);
                let ahead = cluster.status(l).await.map(|s| s.decided_idx);
                println!("ConstrainedElection: {a} decided {behind:?}, the leader {l} {ahead:?}");
                // At once, before `a` hears from anyone: `a` becomes the hub.
                cluster.heal_links();
                for &x in &ids {
                    for &y in &ids {
                        if x < y && x != a && y != a {
                            cut_both(x, y);
                        }
                    }
                }
            }
            Fault::LeaderPaused => cluster.pause(l).expect("SIGSTOP"),
            Fault::LeaderKilled => cluster.kill(l).await.expect("SIGKILL"),
        }
        tokio::time::sleep(FAULT_HOLD).await;
        match fault {
            Fault::LeaderPaused => cluster.resume(l).expect("SIGCONT"),
            Fault::LeaderKilled => cluster.restart(l).await.expect("the server restarts"),
            _ => cluster.heal_links(),
        }
        let healed = shared.now();
        // Writes resume: one is acknowledged after the heal.
        let (gap, resumed) = wait_resumed(
            &shared,
            start,
            healed,
            &format!("healing {fault:?} (leader {l}; KV_E2E_SEED={seed})"),
        )
        .await;
        println!(
            "{fault:?} (leader {l}, followers {others:?}): longest write gap {} ms; first write after the heal {} ms after it",
            gap / 1_000_000,
            (resumed - healed) / 1_000_000
        );
        report.push((fault, gap));
    }
    shared.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("a client task");
    }
    let gaps: Vec<String> = report
        .iter()
        .map(|(f, gap)| format!("{f:?} {} ms", gap / 1_000_000))
        .collect();
    let ids = cluster.ids();
    check_history(
        &mut cluster,
        &shared,
        seed,
        FinalReads::of(&ids),
        &format!(
            "faults on {nodes} servers (longest write gap per fault: {})",
            gaps.join(", ")
        ),
        50,
        &format!("faults-{nodes}"),
    )
    .await;
    cluster.shutdown().await;
}

/// A change of membership under a fault, in [`run_changes`]: a server is
/// replaced by a new one started with `server --join`, given the leader `l`
/// of the configuration the change ends.
#[derive(Clone, Copy, Debug)]
enum Change {
    /// A follower `b` replaced while `l → a` is cut one way, `a` being the
    /// follower that stays, for [`FAULT_HOLD`] from before the change is
    /// proposed. (The links to the joiner are direct, but the joiner dials
    /// its peers at the addresses the servers show it, which are proxies:
    /// after the change `l`'s view, since the stop-sign carries the
    /// proposer's addresses. So the joiner's own link to `a` is likely the
    /// proxy of `l → a`, cut too, and `a` may hear from no member of the new
    /// configuration until the heal.)
    FollowerWithOneWayCut,
    /// A follower replaced while `l` is stopped with SIGSTOP, from as soon
    /// as `l` shows that it proposes the change (whether the stop-sign got
    /// out before the stop is up to timing) for [`FAULT_HOLD`]; then SIGCONT.
    FollowerWithLeaderPaused,
    /// A follower replaced, and `l` killed with SIGKILL as soon as a server
    /// shows the change decided, then restarted (with `--peers` naming the
    /// servers that are not left out, as one restarts a server after a
    /// change) after [`FAULT_HOLD`].
    FollowerWithLeaderKilled,
    /// `l` itself replaced: the configuration that follows is the two
    /// followers and the joiner, which elect a leader among them.
    Leader,
}

/// How long the servers a change left out serve pulls before they exit
/// (`--retire-grace-ms`).
const RETIRE_GRACE_MS: u64 = 1000;

/// The id of the first server [`run_changes`] starts with `--join`; each
/// change's joiner has the next id.
const FIRST_JOINER: NodeId = 4;

/// Catches a hang of a change; a healthy run needs a small fraction of it.
const CHANGE_DEADLINE: Duration = Duration::from_secs(60);

/// In the runs so far the leader was always the server with the highest
/// id, so the roles came out the same each time: server 2 replaced under
/// the cut, the paused and the killed leader each a server that had
/// joined (4 and 6). The test does not rely on that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_servers_under_a_cut_link_a_paused_or_killed_leader_and_replacing_the_leader_keeps_the_history_linearizable_and_the_removed_exit_0()
 {
    run_changes(&[
        Change::FollowerWithOneWayCut,
        Change::FollowerWithLeaderPaused,
        Change::Leader,
        Change::FollowerWithLeaderKilled,
    ])
    .await;
}

/// Runs three servers on proxied links under the checked workload (as
/// [`run_faults`] does, with a probe per server), makes each of `changes`
/// in turn on the configuration the last one left, and checks that writes
/// resume after each, that the history (with reads from every server of the
/// last configuration, joiners included) is linearizable, and that every
/// server left out exits by itself with status 0.
///
/// The `POST /members` goes to the leader and is not waited for: its server
/// may be paused, killed or left out while it runs. Whether the change gets decided
/// is read from the servers' `/status`; if the POST fails before it is, it
/// is sent again, to the leader then.
async fn run_changes(changes: &[Change]) {
    let seed = seed();
    let mut opts = ClusterOptions::new(env!("CARGO_BIN_EXE_kv_store"));
    opts.proxied = true;
    opts.server_args = vec![
        "--request-timeout-ms=2000".to_owned(),
        format!("--retire-grace-ms={RETIRE_GRACE_MS}"),
    ];
    let (mut cluster, _) = started(opts).await;
    let mut members = cluster.ids();
    let shared = Shared::new(clients_of(&cluster, members.iter().copied()));
    let mut tasks: Vec<_> = (0..CLIENTS)
        .map(|who| tokio::spawn(client(Arc::clone(&shared), who, seed)))
        .collect();
    for &id in &members {
        tasks.push(spawn_probe(&shared, &cluster, id));
    }

    let mut report = Vec::new();
    let mut removed = Vec::new();
    for (i, &change) in changes.iter().enumerate() {
        // Pacing: the workload runs on the configuration for a while first.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let config = u32::try_from(i).expect("a few changes") + 1;
        let new = FIRST_JOINER + i as NodeId;
        let l = cluster
            .wait_for(
                "a leader the members agree on",
                Duration::from_secs(20),
                |s| agreed_leader(&members, s),
            )
            .await
            .expect("a leader before the change");
        let followers: Vec<NodeId> = members.iter().copied().filter(|&id| id != l).collect();
        // The follower that stays and the one replaced, when a follower is.
        let (a, b) = (followers[0], followers[1]);
        let old = match change {
            Change::Leader => l,
            _ => b,
        };
        cluster
            .join(new, &members)
            .await
            .expect("the joiner starts and answers (503 joining)");
        cluster.expect_exit(old);
        let body = cluster.replace(old, new).expect("the joiner's address");
        let post = |cluster: &ProcessCluster, to: NodeId| {
            let c = cluster
                .client(to)
                .expect("a member")
                .with_timeout(CHANGE_DEADLINE);
            let body = body.clone();
            tokio::spawn(async move { c.change_members(&body).await })
        };
        let mut start = shared.now();
        if let Change::FollowerWithOneWayCut = change {
            cluster
                .link(l, a)
                .expect("the first change runs on the proxied servers")
                .cut();
        }
        let mut posted = Some(post(&cluster, l));
        if let Change::FollowerWithLeaderPaused = change {
            // Stopped once it shows that it proposes the change (or, if it
            // answered first, that it has).
            cluster
                .wait_for("the leader to propose the change", CHANGE_DEADLINE, |s| {
                    let proposing = s.get(&l).is_some_and(|st| {
                        st.next_configuration.is_some() || st.configuration_id > config
                    });
                    let answered = posted.as_ref().is_some_and(|p| p.is_finished());
                    (proposing || answered).then_some(())
                })
                .await
                .expect("the leader shows the change");
            cluster.pause(l).expect("SIGSTOP");
            start = shared.now();
        }
        let watched: Vec<NodeId> = members.iter().copied().chain([new]).collect();
        if let Change::FollowerWithLeaderKilled = change {
            cluster
                .wait_for("the change to be decided", CHANGE_DEADLINE, |s| {
                    configuration_decided(&watched, s, config + 1).then_some(())
                })
                .await
                .unwrap_or_else(|e| panic!("{e} (KV_E2E_SEED={seed})\n{}", logs(&cluster)));
            cluster.kill(l).await.expect("SIGKILL");
            start = shared.now();
        }
        let next: Vec<NodeId> = members
            .iter()
            .copied()
            .filter(|&id| id != old)
            .chain([new])
            .collect();
        // The fault is held for `FAULT_HOLD` (the workload's pacing) while
        // the servers' `/status` shows whether the change is decided (one
        // of either configuration that shows it is enough); polling goes on
        // after the heal until it is.
        let hold = match change {
            Change::FollowerWithOneWayCut
            | Change::FollowerWithLeaderPaused
            | Change::FollowerWithLeaderKilled => FAULT_HOLD,
            Change::Leader => Duration::ZERO,
        };
        let heal_at = Instant::now() + hold;
        let deadline = heal_at + CHANGE_DEADLINE;
        let (mut healed, mut decided) = (None, None);
        let mut retry = false;
        let (healed, decided) = loop {
            if healed.is_none() && Instant::now() >= heal_at {
                match change {
                    Change::FollowerWithOneWayCut => cluster.heal_links(),
                    Change::FollowerWithLeaderPaused => cluster.resume(l).expect("SIGCONT"),
                    Change::FollowerWithLeaderKilled => {
                        cluster.restart(l).await.expect("the server restarts");
                    }
                    Change::Leader => {}
                }
                healed = Some(shared.now());
            }
            cluster
                .check_running()
                .unwrap_or_else(|e| panic!("during {change:?}: {e} (KV_E2E_SEED={seed})"));
            // A paused server's `/status` would only time out.
            let paused = matches!(change, Change::FollowerWithLeaderPaused) && healed.is_none();
            let asked: Vec<NodeId> = watched
                .iter()
                .copied()
                .filter(|&id| !(paused && id == l))
                .collect();
            let statuses = statuses_of(&cluster, &asked).await;
            if decided.is_none() && configuration_decided(&watched, &statuses, config + 1) {
                decided = Some(shared.now());
            }
            if let (Some(h), Some(d)) = (healed, decided) {
                break (h, d);
            }
            assert!(
                Instant::now() < deadline,
                "{change:?}: the change to configuration {} is not decided within {CHANGE_DEADLINE:?} of the heal (KV_E2E_SEED={seed})\n{}",
                config + 1,
                logs(&cluster)
            );
            if let Some(p) = posted.take_if(|p| p.is_finished()) {
                // The POST answered before the decision showed, or failed
                // (say its server lost the leadership while it was paused).
                let answer = p.await.expect("the POST task");
                println!("{change:?}: POST /members answered {answer:?}");
                // Sent again, to the leader, which refuses it if the change
                // is decided after all.
                retry = answer.is_err();
            }
            if retry
                && decided.is_none()
                && posted.is_none()
                && let Some(to) = agreed_leader(&members, &statuses)
            {
                posted = Some(post(&cluster, to));
                retry = false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if let Some(p) = posted {
            p.abort();
        }
        members = next;
        removed.push(old);
        shared.set_targets(clients_of(&cluster, members.iter().copied()));
        tasks.push(spawn_probe(&shared, &cluster, new));
        let (gap, resumed) = wait_resumed(
            &shared,
            start,
            healed.max(decided),
            &format!("{change:?} (leader {l}, {old} replaced by {new}; KV_E2E_SEED={seed})"),
        )
        .await;
        println!(
            "{change:?} (leader {l}, server {old} replaced by {new}): longest write gap {} ms; decided {} ms after the fault began; first write after the fault and the decision {} ms after both",
            gap / 1_000_000,
            decided.saturating_sub(start) / 1_000_000,
            (resumed - healed.max(decided)) / 1_000_000
        );
        report.push((change, gap));
    }
    shared.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("a client task");
    }
    // Every server left out exits by itself, with 0, once its grace is over.
    for &old in &removed {
        let exit = cluster
            .wait_exit(old, CHANGE_DEADLINE)
            .await
            .unwrap_or_else(|e| panic!("server {old} does not exit: {e}\n{}", logs(&cluster)));
        assert!(
            exit.success(),
            "server {old} exited with {exit}\n{}",
            cluster.log_tail(old, 40)
        );
    }
    let gaps: Vec<String> = report
        .iter()
        .map(|(c, gap)| format!("{c:?} {} ms", gap / 1_000_000))
        .collect();
    check_history(
        &mut cluster,
        &shared,
        seed,
        FinalReads {
            readers: &members,
            // Every server that had a probe: the first three and the joiners.
            extra_keys: (1..FIRST_JOINER + changes.len() as NodeId)
                .map(probe_key)
                .collect(),
        },
        &format!(
            "membership changes under faults on 3 servers (longest write gap per change: {})",
            gaps.join(", ")
        ),
        50,
        "membership-3",
    )
    .await;
    cluster.shutdown().await;
}

/// The `/status` of each of `ids` that answers.
async fn statuses_of(
    cluster: &ProcessCluster,
    ids: &[NodeId],
) -> BTreeMap<NodeId, kv_store::api::StatusResponse> {
    let mut out = BTreeMap::new();
    for &id in ids {
        if let Ok(s) = cluster.status(id).await {
            out.insert(id, s);
        }
    }
    out
}

/// The end of every server's log.
fn logs(cluster: &ProcessCluster) -> String {
    cluster
        .ids()
        .into_iter()
        .map(|id| format!("--- server {id} ---\n{}", cluster.log_tail(id, 25)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Leaves `line` for the summary at the end of a CI run (`.ci/run` prints
/// every `e2e-summary-*.txt` of the test's temporary directory).
fn summary(name: &str, line: &str) {
    let path = format!("{}/e2e-summary-{name}.txt", env!("CARGO_TARGET_TMPDIR"));
    if let Err(e) = std::fs::write(&path, format!("{line}\n")) {
        println!("cannot write {path}: {e}");
    }
}
