//! End to end: replacing a server of a running three-server cluster by a new
//! one started with `server --join`, as processes on loopback, while
//! clients write. What is guaranteed, and checked:
//!
//! - every write acknowledged before, during or after the change is read
//!   back (linearizably) from the servers of the new configuration;
//! - the server left out exits by itself with status 0 once it has served
//!   the new server (after `--retire-grace-ms`);
//! - the same holds when the leader is killed with SIGKILL right after the
//!   change is decided.
//!
//! Not asserted, because not guaranteed: how long anything takes (only
//! generous deadlines that catch a hang), that the `POST /members` itself
//! answers (in the second test its server is killed), or which server
//! leads. Every wait polls with a deadline; nothing sleeps to let
//! something happen.

use kv_store::{
    KvClient,
    api::MembersChange,
    cluster::{ClusterError, ClusterOptions, ProcessCluster, agreed_leader, configuration_decided},
};
use omnipaxos::util::NodeId;
use std::{
    collections::BTreeMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

/// The server that joins.
const NEW: NodeId = 4;
/// Concurrent writers.
const WRITERS: usize = 3;
/// Catches a hang; a healthy run needs a small fraction of it.
const DEADLINE: Duration = Duration::from_secs(60);
/// How long the server left out serves pulls before it exits.
const RETIRE_GRACE_MS: u64 = 1000;
/// Writes acknowledged before the change, and again after it.
const WRITES_PER_PHASE: usize = 100;

/// What the writers share.
struct Writers {
    /// Clients of the servers writes go to, in turn.
    targets: RwLock<Vec<KvClient>>,
    stop: AtomicBool,
    /// Writes acknowledged so far, over all writers.
    acked: AtomicUsize,
}

impl Writers {
    fn set_targets(&self, targets: Vec<KvClient>) {
        *self.targets.write().unwrap() = targets;
    }
}

/// One writer: puts fresh keys `w{me}-{n}`, each until it is acknowledged
/// (putting the same value again is harmless if an earlier try was applied
/// after all). Returns the acknowledged writes.
async fn writer(w: Arc<Writers>, me: usize) -> Vec<(String, String)> {
    let mut acked = Vec::new();
    let mut turn = me;
    while !w.stop.load(Ordering::Relaxed) {
        let n = acked.len();
        let (key, value) = (format!("w{me}-{n:05}"), format!("v{n}"));
        loop {
            turn += 1;
            let client = {
                let t = w.targets.read().unwrap();
                t[turn % t.len()].clone()
            };
            if client.put(&key, &value).await.is_ok() {
                break;
            }
            if w.stop.load(Ordering::Relaxed) {
                // Unknown outcome: not acknowledged, so not checked.
                return acked;
            }
            // Back off a little from a server that is down, joining or
            // left out, rather than spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        acked.push((key, value));
        w.acked.fetch_add(1, Ordering::Relaxed);
    }
    acked
}

/// A started cluster of three with a leader, and writers writing to all three.
struct Scenario {
    cluster: ProcessCluster,
    writers: Arc<Writers>,
    tasks: Vec<tokio::task::JoinHandle<Vec<(String, String)>>>,
    leader: NodeId,
}

impl Scenario {
    async fn start() -> Self {
        let mut opts = ClusterOptions::new(env!("CARGO_BIN_EXE_kv_store"));
        opts.server_args = vec![
            format!("--retire-grace-ms={RETIRE_GRACE_MS}"),
            "--request-timeout-ms=3000".to_owned(),
        ];
        let mut cluster = ProcessCluster::start(opts)
            .await
            .expect("the servers start");
        let leader = cluster
            .wait_for_leader(DEADLINE)
            .await
            .expect("a leader is elected");
        let writers = Arc::new(Writers {
            targets: RwLock::new(clients(&cluster, &cluster.ids())),
            stop: AtomicBool::new(false),
            acked: AtomicUsize::new(0),
        });
        let tasks = (0..WRITERS)
            .map(|me| tokio::spawn(writer(Arc::clone(&writers), me)))
            .collect();
        let mut s = Self {
            cluster,
            writers,
            tasks,
            leader,
        };
        s.wait_for_acks(WRITES_PER_PHASE, "writes before the change")
            .await;
        s
    }

    /// Polls until `more` writes beyond those acknowledged now are.
    async fn wait_for_acks(&mut self, more: usize, what: &str) {
        let goal = self.writers.acked.load(Ordering::Relaxed) + more;
        let deadline = Instant::now() + DEADLINE;
        while self.writers.acked.load(Ordering::Relaxed) < goal {
            self.cluster
                .check_running()
                .unwrap_or_else(|e| panic!("while waiting for {what}: {e}"));
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {} of {goal} acknowledged\n{}",
                self.writers.acked.load(Ordering::Relaxed),
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts server 4 with `--join` and returns the change replacing
    /// `old` by it.
    async fn join(&mut self, old: NodeId) -> MembersChange {
        self.cluster
            .join(NEW, &[1, 2, 3])
            .await
            .expect("server 4 starts and answers 503 joining");
        // It is not a member yet: it answers reads and writes with `joining`.
        let err = self
            .cluster
            .client(NEW)
            .unwrap()
            .put("early", "x")
            .await
            .expect_err("a joining server takes no writes");
        assert_eq!(err.code(), Some("joining"), "{err}");
        self.cluster.expect_exit(old);
        self.cluster.replace(old, NEW).unwrap()
    }

    /// Stops the writers and checks that every acknowledged write is read
    /// back from each of `readers`, and that `removed` exited with 0.
    async fn finish(mut self, readers: &[NodeId], removed: NodeId) {
        self.writers.stop.store(true, Ordering::Relaxed);
        let mut acked: BTreeMap<String, String> = BTreeMap::new();
        for t in std::mem::take(&mut self.tasks) {
            acked.extend(t.await.expect("a writer"));
        }
        println!("{} acknowledged writes", acked.len());
        for &id in readers {
            let c = self.cluster.client(id).unwrap();
            let deadline = Instant::now() + DEADLINE;
            // A read that fails (e.g. while a leader is elected) proves
            // nothing either way: retry it.
            let found = loop {
                match c.scan("w", 100_000).await {
                    Ok(found) => break found,
                    Err(e) => {
                        assert!(
                            Instant::now() < deadline,
                            "reads from server {id} keep failing: {e}\n{}",
                            self.logs()
                        );
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            };
            assert!(!found.truncated);
            let lost: Vec<_> = acked
                .iter()
                .filter(|(k, v)| found.items.get(*k) != Some(*v))
                .take(5)
                .collect();
            assert!(
                lost.is_empty(),
                "server {id} lacks acknowledged writes, e.g. {lost:?}\n{}",
                self.logs()
            );
        }
        let exit = self
            .cluster
            .wait_exit(removed, DEADLINE)
            .await
            .unwrap_or_else(|e| panic!("server {removed} does not exit: {e}\n{}", self.logs()));
        assert!(
            exit.success(),
            "server {removed} exited with {exit}\n{}",
            self.cluster.log_tail(removed, 40)
        );
        self.cluster.shutdown().await;
    }

    fn logs(&self) -> String {
        self.cluster
            .ids()
            .into_iter()
            .map(|id| format!("--- server {id} ---\n{}", self.cluster.log_tail(id, 25)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn clients(cluster: &ProcessCluster, ids: &[NodeId]) -> Vec<KvClient> {
    ids.iter()
        .map(|&id| {
            cluster
                .client(id)
                .unwrap()
                .with_timeout(Duration::from_secs(5))
        })
        .collect()
}

/// The server that is not the leader with the highest id.
fn follower(leader: NodeId) -> NodeId {
    (1..=3).rev().find(|&id| id != leader).unwrap()
}

/// Waits until one of `ids` shows that the change to configuration 2 is
/// decided: it moved into it, or (left out) shows it as decided.
async fn wait_decided(cluster: &mut ProcessCluster, ids: &[NodeId]) -> Result<(), ClusterError> {
    cluster
        .wait_for("the change to be decided", DEADLINE, |s| {
            configuration_decided(ids, s, 2).then_some(())
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_a_server_while_clients_write_keeps_every_acknowledged_write_and_the_removed_server_exits_0()
 {
    let mut s = Scenario::start().await;
    let leader = s.leader;
    let old = follower(leader);
    let change = s.join(old).await;
    let answer = s
        .cluster
        .client(leader)
        .unwrap()
        .with_timeout(DEADLINE)
        .change_members(&change)
        .await;
    println!("POST /members answered {answer:?}");
    let new_members: Vec<NodeId> = [1, 2, 3, NEW].into_iter().filter(|&id| id != old).collect();
    wait_decided(&mut s.cluster, &new_members)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", s.logs()));
    s.writers.set_targets(clients(&s.cluster, &new_members));
    s.wait_for_acks(WRITES_PER_PHASE, "writes after the change")
        .await;
    // The server left out refuses writes, naming the new configuration,
    // once it knows of the change (it may learn it after the others), until
    // it exits.
    let c = s.cluster.client(old).unwrap();
    let deadline = Instant::now() + DEADLINE;
    loop {
        match c.put("late", "x").await {
            Ok(r) => panic!("server {old} took a write after it was left out: {r:?}"),
            Err(e) if e.code() == Some("removed") => {
                let next = match &e {
                    kv_store::ClientError::Api { body, .. } => body.configuration.clone(),
                    _ => None,
                }
                .expect("a removed answer names the new configuration");
                assert_eq!(
                    (
                        next.configuration_id,
                        next.members.iter().map(|m| m.id).collect::<Vec<_>>()
                    ),
                    (2, new_members.clone())
                );
                break;
            }
            // Exited already: its grace period is over.
            Err(kv_store::ClientError::Connect { .. }) => break,
            Err(e) => {
                assert!(Instant::now() < deadline, "server {old} answers {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    s.finish(&new_members, old).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_right_after_a_replacement_is_decided_loses_no_acknowledged_write() {
    let mut s = Scenario::start().await;
    let leader = s.leader;
    let old = follower(leader);
    let change = s.join(old).await;
    // The POST goes to the leader, which is killed while (or after) it
    // answers: its answer is not waited for.
    let post = {
        let c = s.cluster.client(leader).unwrap().with_timeout(DEADLINE);
        tokio::spawn(async move { c.change_members(&change).await })
    };
    wait_decided(&mut s.cluster, &[1, 2, 3])
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", s.logs()));
    s.cluster.kill(leader).await.expect("kill");
    println!("killed server {leader}, the leader, once the change was decided");
    post.abort();
    let survivors: Vec<NodeId> = [1, 2, 3, NEW]
        .into_iter()
        .filter(|&id| id != old && id != leader)
        .collect();
    s.writers.set_targets(clients(&s.cluster, &survivors));
    // The two survivors of the new configuration elect a leader between them.
    s.cluster
        .wait_for("a leader of the new configuration", DEADLINE, |st| {
            agreed_leader(&survivors, st).filter(|l| survivors.contains(l))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", s.logs()));
    s.wait_for_acks(WRITES_PER_PHASE, "writes after the change and the kill")
        .await;
    s.finish(&survivors, old).await;
}
