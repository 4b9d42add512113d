//! Membership change on runtime nodes: nodes of the next configuration move
//! into it by themselves, a new node joins knowing only where the old ones
//! are, and a node left out refuses appends, serves the new node's pulls and
//! retires. The network is in-process channels whose members can change.

use omnipaxos::{
    ReconfigurationRequest,
    macros::Entry,
    messages::{BLEMessage, Message},
    util::{LogEntry, NodeId},
};
use omnipaxos_runtime::{
    DecidedBatch, NodeConfig, NodeStatus, OmniPaxosHandle, OmniPaxosNode, PendingAppend,
    RuntimeError,
};
use omnipaxos_storage::memory_storage::MemoryStorage;
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::sync::mpsc;

#[derive(Clone, Debug, PartialEq, Eq, Entry, serde::Serialize, serde::Deserialize)]
struct Value(u64);

type Inbox = (mpsc::Sender<Message<Value>>, mpsc::Sender<BLEMessage>);

/// An in-process network: each node's outgoing messages go to the inbox of
/// their receiver, if it is attached.
#[derive(Clone, Default)]
struct Net {
    inboxes: Arc<Mutex<BTreeMap<NodeId, Inbox>>>,
}

impl Net {
    /// Wires a node's channels into the network and returns its handle.
    fn attach(&self, pid: NodeId, handle: OmniPaxosHandle<Value>) -> OmniPaxosNode<Value> {
        let OmniPaxosHandle {
            omni_paxos,
            seq_paxos_handle,
            ble_handle,
        } = handle;
        self.inboxes.lock().unwrap().insert(
            pid,
            (seq_paxos_handle.incoming, ble_handle.incoming.clone()),
        );
        let (mut sp_out, mut ble_out) = (seq_paxos_handle.outgoing, ble_handle.outgoing);
        let net = self.clone();
        tokio::spawn(async move {
            while let Some(m) = sp_out.recv().await {
                let inbox = net.inbox(m.get_receiver()).map(|(sp, _)| sp);
                if let Some(inbox) = inbox {
                    let _ = inbox.send(m).await;
                }
            }
        });
        let net = self.clone();
        tokio::spawn(async move {
            while let Some(m) = ble_out.recv().await {
                let inbox = net.inbox(m.to).map(|(_, ble)| ble);
                if let Some(inbox) = inbox {
                    let _ = inbox.send(m).await;
                }
            }
        });
        omni_paxos
    }

    fn inbox(&self, pid: NodeId) -> Option<Inbox> {
        self.inboxes.lock().unwrap().get(&pid).cloned()
    }
}

fn node_config(configuration_id: u32, pid: NodeId, members: &[NodeId]) -> NodeConfig {
    let mut conf = NodeConfig::default();
    conf.omnipaxos_config_mut().configuration_id = configuration_id;
    conf.set_pid(pid);
    conf.set_peers(members.iter().copied().filter(|&p| p != pid).collect());
    conf
}

fn cluster(net: &Net, members: &[NodeId]) -> BTreeMap<NodeId, OmniPaxosNode<Value>> {
    members
        .iter()
        .map(|&pid| {
            let handle = OmniPaxosNode::new(node_config(1, pid, members), MemoryStorage::default());
            (pid, net.attach(pid, handle))
        })
        .collect()
}

/// Waits until `node`'s status satisfies `cond` (time is paused: waiting
/// costs nothing, and the bound only catches a hang).
async fn wait_status(node: &OmniPaxosNode<Value>, what: &str, cond: impl Fn(&NodeStatus) -> bool) {
    let mut status = node.watch_status();
    tokio::time::timeout(Duration::from_secs(120), async {
        while !cond(&status.borrow_and_update()) {
            if status.changed().await.is_err() {
                // The node stopped: its last status is final.
                assert!(cond(&status.borrow()), "node stopped before {what}");
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}: {:?}", node.status()));
}

/// Reads `node`'s decided stream from index 0 in a task of its own, as an
/// applier would, and passes each batch on.
fn follow_stream(node: &OmniPaxosNode<Value>) -> mpsc::UnboundedReceiver<DecidedBatch<Value>> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut stream = node.decided_entries(0);
    tokio::spawn(async move {
        while let Ok(batch) = stream.next().await {
            if tx.send(batch).is_err() {
                return;
            }
        }
    });
    rx
}

fn values(entries: Vec<LogEntry<Value>>) -> Vec<u64> {
    entries
        .into_iter()
        .filter_map(|e| match e {
            LogEntry::Decided(Value(v)) => Some(v),
            _ => None,
        })
        .collect()
}

/// Seed 003's replacement, with clients appending throughout: 3 nodes,
/// replace 3 by 4. Every append resolves, in the old or the new
/// configuration; node 4 holds the whole log; appends at 1, 2 and 4 succeed
/// afterwards; node 3 refuses appends, then retires.
#[tokio::test(start_paused = true)]
async fn replacing_node_3_by_node_4_while_appending_loses_no_append() {
    let net = Net::default();
    let nodes = cluster(&net, &[1, 2, 3]);
    wait_status(&nodes[&1], "a leader", |s| s.leader.is_some()).await;
    for v in 0..20 {
        nodes[&1]
            .append(Value(v))
            .await
            .expect("append before the change");
    }

    // Appliers at 1 and 2 read the decided stream through the change.
    let streams: Vec<_> = [1, 2].map(|pid| follow_stream(&nodes[&pid])).into();

    // Appends in flight at every old node while the change happens.
    let mut pending: Vec<(u64, PendingAppend)> = Vec::new();
    for v in 20..50 {
        let at = &nodes[&(v % 3 + 1)];
        pending.push((v, at.append_nowait(Value(v)).await.unwrap()));
    }
    let rc = ReconfigurationRequest::with(vec![1, 2, 4], None);
    let reconfigure = {
        let node = nodes[&2].clone();
        tokio::spawn(async move { node.reconfigure(rc).await })
    };
    for v in 50..80 {
        let at = &nodes[&(v % 2 + 1)];
        pending.push((v, at.append_nowait(Value(v)).await.unwrap()));
    }

    // Node 4 joins, knowing only where the old servers are.
    let joiner = OmniPaxosNode::join(
        node_config(2, 4, &[1, 2, 4]),
        MemoryStorage::default(),
        vec![1, 2, 3],
    );
    let node4 = net.attach(4, joiner);

    let ss = reconfigure
        .await
        .unwrap()
        .expect("the reconfiguration completes");
    assert_eq!((ss.config_id, ss.nodes.clone()), (2, vec![1, 2, 4]));
    let mut decided = BTreeMap::new();
    for (v, p) in pending {
        match p.await {
            Ok(idx) => {
                decided.insert(idx, v);
            }
            // Appended at node 3, which the change left out: its outcome is
            // unknown to it (it may have been decided before the stop-sign).
            Err(RuntimeError::Reconfigured(_)) if v % 3 + 1 == 3 && v < 50 => {}
            Err(e) => panic!("append of {v} failed: {e}"),
        }
    }
    for pid in [1, 2] {
        wait_status(&nodes[&pid], "the move to configuration 2", |s| {
            s.configuration_id == 2 && s.members == vec![1, 2, 4]
        })
        .await;
    }
    wait_status(&node4, "node 4 to join", |s| {
        !s.joining && s.leader.is_some()
    })
    .await;

    // Appends at 1, 2 and 4 succeed in the new configuration.
    for (i, pid) in [1, 2, 4].into_iter().enumerate() {
        let node = if pid == 4 { &node4 } else { &nodes[&pid] };
        let idx = node
            .append(Value(1000 + i as u64))
            .await
            .expect("append in configuration 2");
        decided.insert(idx, 1000 + i as u64);
    }
    let end = node4
        .status()
        .decided_idx
        .max(nodes[&1].status().decided_idx);
    for node in [&nodes[&1], &nodes[&2], &node4] {
        wait_status(node, "every entry decided", |s| s.decided_idx >= end).await;
    }
    let log1 = values(nodes[&1].read_entries(0..end).await.unwrap());
    let log4 = values(node4.read_entries(0..end).await.unwrap());
    assert_eq!(log4, log1, "node 4 holds the same log as node 1");
    assert_eq!(&log1[..20], &(0..20).collect::<Vec<_>>()[..]);
    // The decided stream is one log across the change: each entry once, at
    // its index, and no stop-sign taking the index of configuration 2's
    // first entry.
    for (pid, mut stream) in [1, 2].into_iter().zip(streams) {
        let mut got = Vec::new();
        while (got.len() as u64) < end {
            let batch = tokio::time::timeout(Duration::from_secs(120), stream.recv())
                .await
                .expect("the stream keeps up")
                .expect("the stream runs");
            assert_eq!(
                batch.start_idx,
                got.len() as u64,
                "node {pid}'s stream skipped"
            );
            for e in batch.entries {
                match e {
                    LogEntry::Decided(Value(v)) => got.push(v),
                    other => panic!("node {pid}'s stream gave {other:?}"),
                }
            }
            assert_eq!(batch.end_idx, got.len() as u64);
        }
        got.truncate(end as usize);
        assert_eq!(got, log1, "node {pid}'s stream is its log");
    }
    // Every acknowledged append is in the log, at the index it was given.
    for (idx, v) in &decided {
        let entry = nodes[&1].read(*idx).await;
        assert_eq!(entry, Some(LogEntry::Decided(Value(*v))), "index {idx}");
    }

    // Node 3 is out: it refuses appends with the new configuration's name,
    // then retires once nobody pulls from it (if it already has, its calls
    // fail with the same error).
    match nodes[&3].append(Value(9999)).await {
        Err(RuntimeError::Removed(ss)) => assert_eq!(ss.nodes, vec![1, 2, 4]),
        other => panic!("expected Removed, got {other:?}"),
    }
    wait_status(&nodes[&3], "node 3 to retire", |s| {
        matches!(s.stopped, Some(RuntimeError::Removed(_)))
    })
    .await;

    for node in [&nodes[&1], &nodes[&2], &node4] {
        node.shutdown().await;
    }
}

/// A reconfiguration the protocol refuses fails at once, and the old
/// configuration keeps serving.
#[tokio::test(start_paused = true)]
async fn an_invalid_reconfiguration_is_refused_and_the_cluster_keeps_serving() {
    let net = Net::default();
    let nodes = cluster(&net, &[1, 2, 3]);
    wait_status(&nodes[&1], "a leader", |s| s.leader.is_some()).await;
    for bad in [vec![], vec![1, 1, 2], vec![0, 1, 2]] {
        let rc = ReconfigurationRequest::with(bad.clone(), None);
        match nodes[&1].reconfigure(rc).await {
            Err(RuntimeError::InvalidReconfiguration(e)) => {
                assert!(e.to_string().contains("new_configuration"), "{bad:?}: {e}");
            }
            other => panic!("{bad:?}: expected InvalidReconfiguration, got {other:?}"),
        }
    }
    // Two of three new servers, neither started: the stop-sign would leave
    // the next configuration without a majority.
    let rc = ReconfigurationRequest::with(vec![1, 4, 5], None);
    match nodes[&1].reconfigure(rc).await {
        Err(RuntimeError::InvalidReconfiguration(e)) => {
            let msg = e.to_string();
            assert!(msg.contains("[4, 5]"), "{msg}");
            assert!(msg.contains("majority"), "{msg}");
        }
        other => panic!("expected InvalidReconfiguration, got {other:?}"),
    }
    nodes[&2]
        .append(Value(1))
        .await
        .expect("the cluster serves");
    assert_eq!(nodes[&3].status().configuration_id, 1);
    for node in nodes.values() {
        node.shutdown().await;
    }
}

/// Replacing two servers of three: refused while the new servers have not
/// reached the proposer, accepted once they were started to join (they ask
/// the old servers how their configuration ended), and the new
/// configuration then serves.
#[tokio::test(start_paused = true)]
async fn replacing_a_majority_needs_the_new_servers_started_first() {
    let net = Net::default();
    let nodes = cluster(&net, &[1, 2, 3]);
    wait_status(&nodes[&1], "a leader", |s| s.leader.is_some()).await;
    for v in 0..10 {
        nodes[&1].append(Value(v)).await.expect("append");
    }
    let rc = ReconfigurationRequest::with(vec![1, 4, 5], None);
    assert!(matches!(
        nodes[&2].reconfigure(rc.clone()).await,
        Err(RuntimeError::InvalidReconfiguration(_))
    ));
    let joiners: Vec<_> = [4, 5]
        .into_iter()
        .map(|pid| {
            let handle = OmniPaxosNode::join(
                node_config(2, pid, &[1, 4, 5]),
                MemoryStorage::default(),
                vec![1, 2, 3],
            );
            net.attach(pid, handle)
        })
        .collect();
    // Each joiner asks every source within a resend timeout; until node 2
    // heard both, the request stays refused. Time is paused, so each try
    // costs nothing; the bound only catches a hang.
    let mut tries = 0;
    let ss = loop {
        match nodes[&2].reconfigure(rc.clone()).await {
            Ok(ss) => break ss,
            Err(RuntimeError::InvalidReconfiguration(_)) if tries < 100 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("expected the reconfiguration to complete, got {other:?}"),
        }
    };
    assert_eq!((ss.config_id, ss.nodes.clone()), (2, vec![1, 4, 5]));
    // A second change while this one is decided is refused as pending at a
    // node still in configuration 1 (node 3, left out, takes none either).
    match nodes[&3]
        .reconfigure(ReconfigurationRequest::with(vec![1, 2, 3], None))
        .await
    {
        Err(RuntimeError::ReconfigurationPending | RuntimeError::Removed(_)) => {}
        other => panic!("expected ReconfigurationPending or Removed, got {other:?}"),
    }
    for node in &joiners {
        wait_status(node, "the joiner to join", |s| {
            !s.joining && s.leader.is_some()
        })
        .await;
    }
    let idx = joiners[0]
        .append(Value(100))
        .await
        .expect("append in configuration 2");
    assert_eq!(idx, 10);
    let log = values(joiners[1].read_entries(0..10).await.unwrap());
    assert_eq!(log, (0..10).collect::<Vec<_>>());
    for node in nodes.values().chain(&joiners) {
        node.shutdown().await;
    }
}

/// A reconfiguration proposed while another is under way is refused as
/// pending; the first completes.
#[tokio::test(start_paused = true)]
async fn a_second_reconfiguration_while_one_is_pending_is_refused() {
    let net = Net::default();
    let nodes = cluster(&net, &[1, 2, 3]);
    wait_status(&nodes[&1], "a leader", |s| s.leader.is_some()).await;
    // `join!` polls the first call first, so its command reaches the node
    // first: the node takes commands in order from one channel.
    let (first, second) = tokio::join!(
        nodes[&1].reconfigure(ReconfigurationRequest::with(vec![1, 2], None)),
        nodes[&1].reconfigure(ReconfigurationRequest::with(vec![1, 3], None)),
    );
    assert_eq!(second, Err(RuntimeError::ReconfigurationPending));
    assert_eq!(first.expect("the first completes").nodes, vec![1, 2]);
    for node in nodes.values() {
        node.shutdown().await;
    }
}

/// Nodes that moved on restart in the configuration their storage moved to,
/// whatever configuration the (static) node config names.
#[tokio::test(start_paused = true)]
async fn a_node_that_moved_on_restarts_in_the_new_configuration() {
    use omnipaxos_storage::persistent_storage::{PersistentStorage, PersistentStorageConfig};
    let dir = tempfile::tempdir().unwrap();
    let open = |pid: NodeId| {
        let path = dir.path().join(pid.to_string());
        PersistentStorage::<Value>::open(PersistentStorageConfig::with_path(path)).unwrap()
    };
    let net = Net::default();
    let mut nodes = BTreeMap::new();
    for pid in [1, 2, 3] {
        let handle = OmniPaxosNode::new(node_config(1, pid, &[1, 2, 3]), open(pid));
        nodes.insert(pid, net.attach(pid, handle));
    }
    wait_status(&nodes[&1], "a leader", |s| s.leader.is_some()).await;
    nodes[&1].append(Value(1)).await.unwrap();
    nodes[&1]
        .reconfigure(ReconfigurationRequest::with(vec![1, 2], None))
        .await
        .expect("the change to {1, 2} completes");
    nodes[&2].shutdown().await;
    // Restarted with the configuration it was first started with.
    let handle = OmniPaxosNode::new(node_config(1, 2, &[1, 2, 3]), open(2));
    let node2 = net.attach(2, handle);
    assert_eq!(node2.status().configuration_id, 2);
    assert_eq!(node2.status().members, vec![1, 2]);
    let idx = node2
        .append(Value(2))
        .await
        .expect("append after the restart");
    assert_eq!(idx, 1);
    for node in [&nodes[&1], &node2, &nodes[&3]] {
        node.shutdown().await;
    }
}
