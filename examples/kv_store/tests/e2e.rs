//! End to end: three `kv_store server` processes on loopback, concurrent HTTP
//! clients doing reads, puts, deletes and compare-and-swaps on a few keys,
//! and servers killed with SIGKILL and restarted during the workload. The
//! client history is checked for linearizability key by key; a lost
//! acknowledged write would show up as a read that no order explains, so the
//! check covers durability too. The history ends with a read of every key
//! from every server, after the last restart.
//!
//! Waits poll `/status` with deadlines; the sleeps are the workload's own
//! pacing (how long servers stay up or down), not synchronisation.
//!
//! Set `KV_E2E_SEED` to replay the choices of a failed run (the timing of a
//! real cluster still differs).

use kv_store::{
    KvClient,
    api::Outcome,
    checker::{self, KvOp, KvOutput, Operation},
    cluster::{ClusterOptions, ProcessCluster},
};
use omnipaxos::util::NodeId;
use rand::{Rng as _, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::{
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
    let mut cluster = ProcessCluster::start(opts)
        .await
        .expect("the servers start");
    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .expect("a leader is elected");
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

    check_history(
        &mut cluster,
        &shared,
        seed,
        &format!("{kills} kills"),
        100,
        "kills",
    )
    .await;
    cluster.shutdown().await;
}

/// Reads every key from every server (after the last fault), then checks
/// the whole history for linearizability, key by key; on failure prints
/// where the failing key's history went and the end of every server's log.
async fn check_history(
    cluster: &mut ProcessCluster,
    shared: &Shared,
    seed: u64,
    what: &str,
    min_acked: usize,
    summary_name: &str,
) {
    // Every server, restarted ones included, must now show the final state.
    cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .expect("a leader at the end");
    for id in cluster.ids() {
        let c = cluster.client(id).expect("a member");
        for key in KEYS {
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
    let mut cluster = ProcessCluster::start(opts)
        .await
        .expect("the servers start");
    cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .expect("a leader is elected");
    let shared = Shared::new(clients_of(&cluster, cluster.ids()));
    let mut tasks: Vec<_> = (0..CLIENTS)
        .map(|who| tokio::spawn(client(Arc::clone(&shared), who, seed)))
        .collect();
    // One probe per server, writing a key of its own through that server
    // only, with a short timeout: the cluster takes writes at a time if any
    // probe's write is acknowledged then.
    for id in cluster.ids() {
        let c = cluster
            .client(id)
            .expect("a member")
            .with_timeout(Duration::from_secs(1));
        let shared = Arc::clone(&shared);
        tasks.push(tokio::spawn(async move {
            let key = format!("p{id}");
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
        }));
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
        let deadline = Instant::now() + Duration::from_secs(30);
        let (gap, resumed) = loop {
            let gap = write_gap(&shared.history.lock().unwrap(), start, healed);
            if let Some(r) = gap {
                break r;
            }
            assert!(
                Instant::now() < deadline,
                "no write acknowledged within 30 s of healing {fault:?} (leader {l}; KV_E2E_SEED={seed})"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
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
    check_history(
        &mut cluster,
        &shared,
        seed,
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

/// Leaves `line` for the summary at the end of a CI run (`.ci/run` prints
/// every `e2e-summary-*.txt` of the test's temporary directory).
fn summary(name: &str, line: &str) {
    let path = format!("{}/e2e-summary-{name}.txt", env!("CARGO_TARGET_TMPDIR"));
    if let Err(e) = std::fs::write(&path, format!("{line}\n")) {
        println!("cannot write {path}: {e}");
    }
}
