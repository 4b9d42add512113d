//! The runtime node on an in-process network, with paused tokio time: every
//! wait below is on an event (a decision, a status change), never a sleep.
//!
//! A test asserts only what is guaranteed when it asserts it. An append
//! resolves once the node it was made at has decided it; the leader decided
//! it before (a follower learns decisions from the leader), but another
//! follower learns it only with a later message. So what other nodes know is
//! read at the leader, or waited for ([`wait_status`]), never assumed.

use omnipaxos::{
    ReconfigurationRequest,
    macros::Entry,
    messages::Message,
    util::{LogEntry, NodeId},
};
use omnipaxos_runtime::{
    NodeConfig, NodeStatus, OmniPaxosHandle, OmniPaxosNode, OutcomeCounts, RuntimeError,
};
use omnipaxos_storage::memory_storage::MemoryStorage;
use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{sync::mpsc, task::JoinSet};

#[derive(Clone, Debug, PartialEq, Eq, Entry)]
struct Put {
    key: u32,
    value: u64,
}

fn put(key: u32, value: u64) -> Put {
    Put { key, value }
}

/// The longest a node may take to learn what another node knows (of paused
/// time in most tests, during which the nodes tick on).
const WAIT: Duration = Duration::from_secs(10);

/// Waits until `node`'s status satisfies `cond`, failing loudly after [`WAIT`].
async fn wait_status(node: &OmniPaxosNode<Put>, what: &str, cond: impl Fn(&NodeStatus) -> bool) {
    let mut status = node.watch_status();
    match tokio::time::timeout(WAIT, status.wait_for(|s| cond(s))).await {
        Ok(Ok(_)) => {}
        Ok(Err(_)) => panic!("the node stopped while waiting for {what}"),
        Err(_) => panic!("timed out waiting for {what}: {:?}", node.status()),
    }
}

/// Links that drop every message, as `(from, to)`.
type Cuts = Arc<Mutex<HashSet<(NodeId, NodeId)>>>;

/// A cluster of runtime nodes joined by router tasks.
struct Cluster {
    nodes: BTreeMap<NodeId, OmniPaxosNode<Put>>,
    cuts: Cuts,
    routers: JoinSet<()>,
}

fn node_config(pid: NodeId, ids: &[NodeId]) -> NodeConfig {
    let mut conf = NodeConfig::default();
    conf.set_pid(pid);
    conf.set_peers(ids.iter().copied().filter(|&p| p != pid).collect());
    conf.set_tick_interval(Duration::from_millis(10));
    conf
}

impl Cluster {
    fn start(ids: &[NodeId]) -> Self {
        Self::start_with(ids, |_| {})
    }

    fn start_with(ids: &[NodeId], tweak: impl Fn(&mut NodeConfig)) -> Self {
        let cuts: Cuts = Arc::default();
        let mut inboxes = BTreeMap::new();
        let mut outboxes = Vec::new();
        let mut nodes = BTreeMap::new();
        for &pid in ids {
            let mut conf = node_config(pid, ids);
            tweak(&mut conf);
            let OmniPaxosHandle {
                omni_paxos,
                seq_paxos_handle,
                ble_handle,
            } = OmniPaxosNode::try_new(conf, MemoryStorage::default()).expect("valid config");
            inboxes.insert(pid, (seq_paxos_handle.incoming, ble_handle.incoming));
            outboxes.push((pid, seq_paxos_handle.outgoing, ble_handle.outgoing));
            nodes.insert(pid, omni_paxos);
        }
        let mut routers = JoinSet::new();
        for (pid, mut sp_out, mut ble_out) in outboxes {
            let inboxes = inboxes.clone();
            let cuts = cuts.clone();
            routers.spawn(async move {
                loop {
                    let m = tokio::select! {
                        Some(m) = sp_out.recv() => m,
                        Some(b) = ble_out.recv() => Message::BLE(b),
                        else => return,
                    };
                    let to = m.get_receiver();
                    if cuts.lock().unwrap().contains(&(pid, to)) {
                        continue;
                    }
                    if let Some((sp_in, _)) = inboxes.get(&to) {
                        // A stopped peer's channel is closed: the message is lost.
                        let _ = sp_in.send(m).await;
                    }
                }
            });
        }
        Self {
            nodes,
            cuts,
            routers,
        }
    }

    fn node(&self, pid: NodeId) -> &OmniPaxosNode<Put> {
        &self.nodes[&pid]
    }

    /// Waits until every node names the same leader, and returns it.
    async fn leader(&self) -> NodeId {
        loop {
            let leaders: HashSet<Option<NodeId>> =
                self.nodes.values().map(|n| n.status().leader).collect();
            if let [Some(l)] = leaders.iter().copied().collect::<Vec<_>>()[..] {
                if self.node(l).status().is_leader {
                    return l;
                }
            }
            let mut watch = self.nodes.values().next().unwrap().watch_status();
            let _ = tokio::time::timeout(Duration::from_millis(50), watch.changed()).await;
        }
    }

    fn isolate(&self, pid: NodeId) {
        let mut cuts = self.cuts.lock().unwrap();
        for &other in self.nodes.keys() {
            if other != pid {
                cuts.insert((pid, other));
                cuts.insert((other, pid));
            }
        }
    }

    fn heal(&self) {
        self.cuts.lock().unwrap().clear();
    }

    async fn shutdown(mut self) {
        for n in self.nodes.values() {
            n.shutdown().await;
        }
        // With the nodes gone their channels close and the routers end.
        while let Some(r) = self.routers.join_next().await {
            r.expect("router task");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn append_resolves_with_the_index_it_was_decided_at_on_leader_and_followers() {
    let c = Cluster::start(&[1, 2, 3]);
    let leader = c.leader().await;
    let mut indices = Vec::new();
    for (i, pid) in [1, 2, 3].into_iter().enumerate() {
        let entry = put(pid as u32, i as u64);
        let idx = c.node(pid).append(entry.clone()).await.expect("decided");
        assert_eq!(c.node(pid).read(idx).await, Some(LogEntry::Decided(entry)));
        indices.push(idx);
    }
    // Sequential appends land in the order they were made.
    assert!(indices.windows(2).all(|w| w[0] < w[1]), "{indices:?}");
    // The leader decided the last one before any follower could learn it.
    // (Its published status may lag its state on a multi-thread runtime, so
    // the leader is asked.)
    assert!(matches!(
        c.node(leader).read(indices[2]).await,
        Some(LogEntry::Decided(_))
    ));
    c.shutdown().await;
}

/// A lone append goes out as soon as the node has nothing else to do: it
/// does not wait for its batch to fill or for the flush timer (here set to
/// fire only after 10^9 ticks, so only the driver's flush can send it).
#[tokio::test(start_paused = true)]
async fn a_lone_append_is_decided_without_waiting_for_the_batch_or_its_timer() {
    let c = Cluster::start_with(&[1, 2, 3], |conf| {
        let op = conf.omnipaxos_config_mut();
        op.batch_size = 64;
        op.flush_batch_tick_timeout = 1_000_000_000;
    });
    let leader = c.leader().await;
    let follower = if leader == 1 { 2 } else { 1 };
    for (i, at) in [leader, follower, leader].into_iter().enumerate() {
        let idx = c.node(at).append(put(9, i as u64)).await.expect("decided");
        assert_eq!(
            c.node(at).read(idx).await,
            Some(LogEntry::Decided(put(9, i as u64)))
        );
    }
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn many_appends_in_flight_each_resolve_with_their_own_index() {
    let c = Cluster::start_with(&[1, 2, 3], |conf| {
        conf.omnipaxos_config_mut().batch_size = 16
    });
    let leader = c.leader().await;
    let follower = if leader == 1 { 2 } else { 1 };
    let mut pending = Vec::new();
    for v in 0..200u64 {
        let at = if v % 2 == 0 { leader } else { follower };
        let p = c
            .node(at)
            .append_nowait(put(7, v))
            .await
            .expect("handed over");
        pending.push((v, p));
    }
    let mut seen = HashSet::new();
    for (v, p) in pending {
        let idx = p.await.expect("decided");
        assert!(seen.insert(idx), "two appends got index {idx}");
        assert_eq!(
            c.node(leader).read(idx).await,
            Some(LogEntry::Decided(put(7, v)))
        );
    }
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_decided_stream_gives_every_entry_once_in_log_order() {
    let c = Cluster::start(&[1, 2, 3]);
    c.leader().await;
    let mut stream = c.node(3).decided_entries(0);
    for v in 0..20 {
        c.node(1).append(put(1, v)).await.unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 20 {
        let batch = stream.next().await.unwrap();
        assert_eq!(batch.start_idx, got.len() as u64);
        for e in batch.entries {
            match e {
                LogEntry::Decided(p) => got.push(p.value),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(got, (0..20).collect::<Vec<_>>());
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_linearizable_read_point_covers_every_write_acknowledged_before_it() {
    let c = Cluster::start(&[1, 2, 3]);
    let leader = c.leader().await;
    let follower = if leader == 1 { 2 } else { 1 };
    let idx = c.node(leader).append(put(1, 1)).await.unwrap();
    for pid in [leader, follower] {
        let point = c.node(pid).linearizable_read().await.unwrap();
        assert!(point > idx, "read point {point} misses the write at {idx}");
        // The read resolved once this node had decided up to its point. (The
        // node publishes its status after it resolves the read, so the node
        // is asked, not its status.)
        assert!(matches!(
            c.node(pid).read(point - 1).await,
            Some(LogEntry::Decided(_))
        ));
    }
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn with_no_leader_an_append_fails_with_no_leader_and_is_not_proposed() {
    let c = Cluster::start_with(&[1, 2, 3], |conf| {
        conf.set_leader_wait(Some(Duration::from_millis(300)));
    });
    for pid in [1, 2, 3] {
        c.isolate(pid);
    }
    assert_eq!(
        c.node(1).append(put(1, 1)).await,
        Err(RuntimeError::NoLeader)
    );
    c.heal();
    let idx = c.node(1).append(put(1, 2)).await.unwrap();
    // The refused entry never reached the log.
    let entries = c.node(1).read_entries(0..=idx).await.unwrap();
    assert_eq!(entries, vec![LogEntry::Decided(put(1, 2))]);
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_append_cut_off_from_the_leader_times_out() {
    let c = Cluster::start_with(&[1, 2, 3], |conf| {
        conf.set_append_timeout(Some(Duration::from_secs(1)));
    });
    let leader = c.leader().await;
    let follower = if leader == 1 { 2 } else { 1 };
    c.isolate(follower);
    let r = c.node(follower).append(put(1, 1)).await;
    assert!(
        matches!(r, Err(RuntimeError::Timeout | RuntimeError::NoLeader)),
        "{r:?}"
    );
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn after_a_reconfiguration_the_nodes_in_it_move_on_and_the_one_left_out_refuses() {
    let c = Cluster::start(&[1, 2, 3]);
    c.leader().await;
    c.node(1)
        .append(put(1, 1))
        .await
        .expect("append in configuration 1");
    let ss = c
        .node(2)
        .reconfigure(ReconfigurationRequest::with(vec![1, 2], None))
        .await
        .expect("the next configuration has a leader");
    assert_eq!((ss.config_id, ss.nodes.clone()), (2, vec![1, 2]));
    // Nodes 1 and 2 moved into configuration 2 by themselves, with the log.
    for pid in [1, 2] {
        wait_status(c.node(pid), "the move to configuration 2", |s| {
            s.configuration_id == 2 && s.members == vec![1, 2] && s.reconfigured.is_none()
        })
        .await;
    }
    assert_eq!(c.node(1).append(put(1, 2)).await, Ok(1));
    // Node 3 learns the stop-sign, perhaps later, and is left out.
    wait_status(c.node(3), "the stop-sign decided", |s| {
        s.reconfigured.is_some()
    })
    .await;
    assert_eq!(
        c.node(3).is_reconfigured().await.map(|s| s.config_id),
        Some(ss.config_id)
    );
    assert_eq!(
        c.node(3).append(put(1, 3)).await,
        Err(RuntimeError::Removed(ss.clone()))
    );
    // The old configuration serves no more linearizable reads either: the
    // next one may already decide new entries.
    assert_eq!(
        c.node(3).linearizable_read().await,
        Err(RuntimeError::Reconfigured(ss))
    );
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_fails_waiting_calls_and_closes_the_channels() {
    let OmniPaxosHandle {
        omni_paxos,
        mut seq_paxos_handle,
        mut ble_handle,
    } = OmniPaxosNode::<Put>::new(node_config(1, &[1, 2, 3]), MemoryStorage::default());
    // No peers answer: this append waits for a leader.
    let pending = omni_paxos.append_nowait(put(1, 1)).await.unwrap();
    omni_paxos.shutdown().await;
    assert_eq!(pending.await, Err(RuntimeError::ShutDown));
    assert_eq!(
        omni_paxos.append(put(1, 2)).await,
        Err(RuntimeError::ShutDown)
    );
    assert_eq!(omni_paxos.read(0).await, None);
    // Drain what was sent before the end; then the channels report closed.
    while seq_paxos_handle.outgoing.recv().await.is_some() {}
    while ble_handle.outgoing.recv().await.is_some() {}
    assert!(seq_paxos_handle.incoming.is_closed());
    omni_paxos.shutdown().await; // a second call returns at once
}

#[tokio::test(start_paused = true)]
async fn an_invalid_config_gives_a_typed_error_not_a_panic() {
    let mut conf = NodeConfig::default();
    conf.set_pid(0);
    let e = OmniPaxosNode::<Put>::try_new(conf.clone(), MemoryStorage::default()).unwrap_err();
    assert!(matches!(e, RuntimeError::Config(_)), "{e:?}");
    let handle = OmniPaxosNode::<Put>::new(conf, MemoryStorage::default());
    let status = handle.omni_paxos.status();
    assert!(
        matches!(status.stopped, Some(RuntimeError::Config(_))),
        "{status:?}"
    );
    assert!(matches!(
        handle.omni_paxos.append(put(1, 1)).await,
        Err(RuntimeError::Config(_))
    ));
}

#[test]
fn outside_a_tokio_runtime_the_node_reports_it() {
    let conf = node_config(1, &[1]);
    let e = OmniPaxosNode::<Put>::try_new(conf.clone(), MemoryStorage::default()).unwrap_err();
    assert_eq!(e, RuntimeError::NoRuntime);
    let handle = OmniPaxosNode::<Put>::new(conf, MemoryStorage::default());
    assert_eq!(
        handle.omni_paxos.status().stopped,
        Some(RuntimeError::NoRuntime)
    );
}

#[tokio::test(start_paused = true)]
async fn a_single_node_cluster_decides_alone() {
    let c = Cluster::start(&[1]);
    assert_eq!(c.node(1).append(put(1, 1)).await, Ok(0));
    assert_eq!(c.node(1).append(put(1, 2)).await, Ok(1));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_runs_on_a_multi_thread_runtime_as_under_tokio_main() {
    let c = Cluster::start(&[1, 2, 3]);
    c.leader().await;
    let idx = c.node(3).append(put(3, 3)).await.unwrap();
    // Node 3 has decided the entry; node 1 learns it from the leader, which
    // on a multi-thread runtime may well be after this task reads at node 1.
    wait_status(c.node(1), "the entry decided", |s| s.decided_idx > idx).await;
    assert_eq!(
        c.node(1)
            .read(idx)
            .await
            .map(|e| matches!(e, LogEntry::Decided(_))),
        Some(true)
    );
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn dropping_every_handle_stops_the_node() {
    let handle = OmniPaxosNode::<Put>::new(node_config(1, &[1]), MemoryStorage::default());
    let OmniPaxosHandle {
        omni_paxos,
        mut seq_paxos_handle,
        ble_handle,
    } = handle;
    let status = omni_paxos.watch_status();
    drop(omni_paxos);
    drop(ble_handle);
    // The node ends, so its outgoing channel closes.
    assert!(seq_paxos_handle.outgoing.recv().await.is_none());
    assert_eq!(status.borrow().stopped, Some(RuntimeError::ShutDown));
    let _: mpsc::Sender<_> = seq_paxos_handle.incoming;
}

/// The outcomes that were counted, with their counts.
fn counted(c: OutcomeCounts) -> Vec<(&'static str, u64)> {
    c.iter().filter(|&(_, n)| n > 0).collect()
}

#[tokio::test(start_paused = true)]
async fn metrics_count_the_leadership_and_each_append_and_read_under_its_outcome() {
    let c = Cluster::start(&[1, 2, 3]);
    let leader = c.leader().await;
    for v in 0..5 {
        c.node(leader).append(put(1, v)).await.unwrap();
    }
    let point = c.node(leader).linearizable_read().await.unwrap();
    let m = c.node(leader).metrics();
    assert_eq!(counted(m.appends), [("ok", 5)]);
    assert_eq!(counted(m.reads), [("ok", 1)]);
    // The leader leads under a ballot of its own, which it adopted and
    // counted (in the same step that published it as leader); whether it
    // followed another leader or lost a duel first depends on the timing.
    assert!(
        1 <= m.elections_started && m.elections_started <= m.leader_changes,
        "{m:?}"
    );
    // The read resolved once the leader had decided up to its read point.
    assert!(m.decided_idx >= point, "{m:?}");
    for pid in [1, 2, 3] {
        // Every node names the leader, so it counted a leader ballot.
        assert!(c.node(pid).metrics().leader_changes >= 1, "node {pid}");
    }
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn metrics_count_a_timed_out_a_dropped_and_a_shut_down_append() {
    let c = Cluster::start_with(&[1, 2, 3], |conf| {
        conf.set_append_timeout(Some(Duration::from_secs(1)));
    });
    let leader = c.leader().await;
    let follower = if leader == 1 { 2 } else { 1 };
    c.isolate(follower);
    let node = c.node(follower);
    // Cut off, the follower forwards the entry into the void (timeout) or
    // loses its leader first (no leader); either is counted as what it was.
    let first = match node.append(put(1, 1)).await {
        Err(RuntimeError::Timeout) => "timeout",
        Err(RuntimeError::NoLeader) => "no_leader",
        other => panic!("{other:?}"),
    };
    assert_eq!(counted(node.metrics().appends), [(first, 1)]);
    drop(node.append_nowait(put(1, 2)).await.unwrap());
    node.shutdown().await;
    assert_eq!(node.append(put(1, 3)).await, Err(RuntimeError::ShutDown));
    let mut expected = vec![(first, 1), ("shut_down", 1), ("abandoned", 1)];
    let mut got = counted(node.metrics().appends);
    expected.sort_unstable();
    got.sort_unstable();
    assert_eq!(got, expected);
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_node_that_never_started_counts_its_calls_as_not_started() {
    let mut conf = NodeConfig::default();
    conf.set_pid(0);
    let node = OmniPaxosNode::<Put>::new(conf, MemoryStorage::default()).omni_paxos;
    assert!(node.append(put(1, 1)).await.is_err());
    assert!(node.linearizable_read().await.is_err());
    let m = node.metrics();
    assert_eq!(counted(m.appends), [("not_started", 1)]);
    assert_eq!(counted(m.reads), [("not_started", 1)]);
    assert_eq!((m.leader_changes, m.elections_started), (0, 0));
}
