//! A cluster of replicas in one process: one thread per replica, channels as
//! the network, and a shared [`ClusterWatch`] that the client side waits on.

use crate::{
    node::{Ack, Input, KVPaxos, Node, Request},
    store::{KVCommand, KVStore},
};
use omnipaxos::{OmniPaxosConfig, errors::ConfigError, util::NodeId};
use omnipaxos_storage::memory_storage::MemoryStorage;
use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Condvar, Mutex, MutexGuard,
        mpsc::{self, Sender},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

/// What a replica last reported about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct NodeView {
    /// `false` once the replica's thread has returned.
    pub(crate) alive: bool,
    /// The leader this replica believes in.
    pub(crate) leader: Option<NodeId>,
    /// Whether this replica leads and is in the accept phase (can decide).
    pub(crate) is_leader: bool,
    /// The replica's decided index.
    pub(crate) decided_idx: u64,
    /// How much of the decided log its state machine has applied.
    pub(crate) applied_idx: u64,
    /// Something that makes the replica's state untrustworthy.
    pub(crate) fault: Option<String>,
}

/// The replicas' views behind one lock, with a condition variable that is
/// signalled on every change, so the client waits for events instead of polling.
#[derive(Default)]
pub(crate) struct ClusterWatch {
    views: Mutex<BTreeMap<NodeId, NodeView>>,
    changed: Condvar,
}

impl ClusterWatch {
    pub(crate) fn update(&self, pid: NodeId, view: NodeView) {
        self.lock().insert(pid, view);
        self.changed.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<NodeId, NodeView>> {
        // A replica thread that panicked while holding the lock left a map
        // that is still well-formed (inserts are atomic), so keep using it.
        self.views.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `pred` holds over the views, for at most `timeout`.
    /// Returns what `pred` extracted, or `None` on timeout.
    pub(crate) fn wait_for<R>(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&BTreeMap<NodeId, NodeView>) -> Option<R>,
    ) -> Option<R> {
        let deadline = Instant::now() + timeout;
        let mut views = self.lock();
        loop {
            if let Some(r) = pred(&views) {
                return Some(r);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            views = self
                .changed
                .wait_timeout(views, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    pub(crate) fn snapshot(&self) -> BTreeMap<NodeId, NodeView> {
        self.lock().clone()
    }
}

/// Settings shared by every replica of a [`LocalCluster`].
#[derive(Clone, Debug)]
pub(crate) struct ClusterConfig {
    pub(crate) nodes: Vec<NodeId>,
    pub(crate) tick_interval: Duration,
    pub(crate) election_tick_timeout: u64,
    pub(crate) batch_size: usize,
}

struct NodeHandle {
    inbox: Sender<Input>,
    thread: Option<JoinHandle<()>>,
}

/// Running replicas, addressed by id.
pub(crate) struct LocalCluster {
    nodes: BTreeMap<NodeId, NodeHandle>,
    watch: Arc<ClusterWatch>,
}

impl LocalCluster {
    /// Builds every replica's `OmniPaxos` and starts its thread.
    pub(crate) fn start(config: &ClusterConfig) -> Result<Self, ConfigError> {
        let mut inboxes = BTreeMap::new();
        let mut senders = HashMap::new();
        for &pid in &config.nodes {
            let (tx, rx) = mpsc::channel();
            senders.insert(pid, tx);
            inboxes.insert(pid, rx);
        }
        // Build all first, so that a config error starts no thread at all.
        let mut built = Vec::with_capacity(inboxes.len());
        for (pid, inbox) in inboxes {
            let paxos: KVPaxos = OmniPaxosConfig {
                configuration_id: 1,
                pid,
                peers: config.nodes.iter().copied().filter(|&p| p != pid).collect(),
                election_tick_timeout: config.election_tick_timeout,
                batch_size: config.batch_size,
                ..Default::default()
            }
            .build(MemoryStorage::default())?;
            built.push((pid, paxos, inbox));
        }
        let watch = Arc::new(ClusterWatch::default());
        let mut nodes = BTreeMap::new();
        for (pid, paxos, inbox) in built {
            let peers = senders
                .iter()
                .filter(|&(&p, _)| p != pid)
                .map(|(&p, tx)| (p, tx.clone()))
                .collect();
            let node = Node::new(
                paxos,
                inbox,
                peers,
                config.tick_interval,
                Arc::clone(&watch),
            );
            let thread = thread::Builder::new()
                .name(format!("node-{pid}"))
                .spawn(move || node.run())
                .expect("spawning a thread fails only when the OS is out of resources");
            let inbox = senders[&pid].clone();
            nodes.insert(
                pid,
                NodeHandle {
                    inbox,
                    thread: Some(thread),
                },
            );
        }
        Ok(Self { nodes, watch })
    }

    pub(crate) fn watch(&self) -> &ClusterWatch {
        &self.watch
    }

    /// The replicas that have not been crashed.
    pub(crate) fn alive(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.thread.is_some())
            .map(|(&pid, _)| pid)
            .collect()
    }

    /// Hands a write to replica `pid`; the answer goes to `reply`.
    /// Returns `false` if that replica is gone.
    pub(crate) fn append(&self, pid: NodeId, cmd: KVCommand, reply: Sender<Ack>) -> bool {
        self.send(pid, Input::Client(Request::Append { cmd, reply }))
    }

    /// Reads replica `pid`'s state machine, waiting at most `timeout`.
    pub(crate) fn dump(&self, pid: NodeId, timeout: Duration) -> Option<KVStore> {
        let (tx, rx) = mpsc::channel();
        if !self.send(pid, Input::Client(Request::Dump { reply: tx })) {
            return None;
        }
        rx.recv_timeout(timeout).ok()
    }

    /// Stops replica `pid` as a crash would, and waits for its thread to end.
    pub(crate) fn crash(&mut self, pid: NodeId) {
        if let Some(node) = self.nodes.get_mut(&pid) {
            let _ = node.inbox.send(Input::Crash);
            if let Some(thread) = node.thread.take() {
                let _ = thread.join();
            }
        }
    }

    fn send(&self, pid: NodeId, input: Input) -> bool {
        self.nodes
            .get(&pid)
            .is_some_and(|n| n.thread.is_some() && n.inbox.send(input).is_ok())
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let pids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for pid in pids {
            self.crash(pid);
        }
    }
}
