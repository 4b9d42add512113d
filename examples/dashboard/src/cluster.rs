//! [`LocalCluster`]: runtime nodes in one process, joined by a router that
//! can drop messages per directed link, with the crashes, cuts and
//! partitions the dashboard's keys trigger.

use crate::storage::KeptStorage;
use omnipaxos::{NodeId, macros::Entry, messages::Message, ui::OmniPaxosStates};
use omnipaxos_runtime::{NodeConfig, OmniPaxosHandle, OmniPaxosNode};
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};
use tokio::{sync::mpsc, task::JoinSet, time::timeout};

/// What the cluster replicates: a counter value per append.
#[derive(Clone, Debug, PartialEq, Eq, Entry)]
pub struct Put(pub u64);

/// How long a node may take to answer a query before the cluster treats it
/// as unresponsive (it is then left out of that round of states).
const QUERY_TIMEOUT: Duration = Duration::from_millis(500);

/// Why a cluster command was refused; the operator's mistake, shown in the
/// log pane.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The node id is not in the cluster.
    #[error("there is no node {0}")]
    UnknownNode(NodeId),
    /// The node is already down.
    #[error("node {0} is already down")]
    AlreadyDown(NodeId),
    /// The node is running; crash it before restarting it.
    #[error("node {0} is running")]
    AlreadyUp(NodeId),
    /// A link needs two different nodes.
    #[error("a link needs two different nodes, not {0} and {0}")]
    SameNode(NodeId),
    /// The command acts relative to the leader, and no running node knows one.
    #[error("no leader is known")]
    NoLeader,
    /// The partitions of the Omni-Paxos paper need at least three nodes.
    #[error("a partition needs at least 3 nodes")]
    TooFewNodes,
}

/// The network between the nodes: where each running node receives, and
/// which directed links are cut.
#[derive(Debug, Default)]
struct Net {
    inboxes: Mutex<HashMap<NodeId, mpsc::Sender<Message<Put>>>>,
    /// `(from, to)`: what `from` sends to `to` is dropped.
    cuts: Mutex<HashSet<(NodeId, NodeId)>>,
    /// Messages dropped by a cut, a down receiver or a full inbox.
    dropped: AtomicU64,
}

impl Net {
    fn deliver(&self, from: NodeId, m: Message<Put>) {
        let to = m.get_receiver();
        if lock(&self.cuts).contains(&(from, to)) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let inbox = lock(&self.inboxes).get(&to).cloned();
        // A full inbox drops the message as a congested network would,
        // instead of stalling every link behind one slow node; the
        // protocol resends what matters.
        if inbox.is_none_or(|tx| tx.try_send(m).is_err()) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The cluster's locks guard plain maps whose updates cannot panic midway.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One server: its node while it runs, and its storage always.
#[derive(Debug)]
struct Member {
    config: NodeConfig,
    storage: KeptStorage<Put>,
    node: Option<OmniPaxosNode<Put>>,
}

/// A cluster of runtime nodes with ids `1..=n` in this process.
#[derive(Debug)]
pub struct LocalCluster {
    ids: Vec<NodeId>,
    members: BTreeMap<NodeId, Member>,
    net: Arc<Net>,
    /// One router per running node: it moves the node's outgoing messages
    /// to their receivers' inboxes, and ends when the node shuts down.
    routers: JoinSet<()>,
}

impl LocalCluster {
    /// Starts `n` nodes ticking every `tick_interval`, on the current tokio
    /// runtime.
    pub fn start(n: u64, tick_interval: Duration) -> Self {
        let ids: Vec<NodeId> = (1..=n).collect();
        let mut cluster = Self {
            members: BTreeMap::new(),
            net: Arc::default(),
            routers: JoinSet::new(),
            ids: ids.clone(),
        };
        for &pid in &ids {
            let mut config = NodeConfig::default();
            config.set_pid(pid);
            config.set_peers(ids.iter().copied().filter(|&p| p != pid).collect());
            config.set_tick_interval(tick_interval);
            cluster.members.insert(
                pid,
                Member {
                    config,
                    storage: KeptStorage::default(),
                    node: None,
                },
            );
            cluster.launch(pid);
        }
        cluster
    }

    /// The node ids, ascending.
    pub fn ids(&self) -> &[NodeId] {
        &self.ids
    }

    /// The runtime config of node `pid`.
    pub fn config(&self, pid: NodeId) -> Option<&NodeConfig> {
        self.members.get(&pid).map(|m| &m.config)
    }

    /// The running node `pid`, if it runs.
    pub fn node(&self, pid: NodeId) -> Option<&OmniPaxosNode<Put>> {
        self.members.get(&pid).and_then(|m| m.node.as_ref())
    }

    /// The running nodes, ascending by id.
    pub fn running(&self) -> impl Iterator<Item = (NodeId, &OmniPaxosNode<Put>)> {
        self.members
            .iter()
            .filter_map(|(&pid, m)| m.node.as_ref().map(|n| (pid, n)))
    }

    /// The crashed nodes, ascending.
    pub fn down(&self) -> Vec<NodeId> {
        self.members
            .iter()
            .filter(|(_, m)| m.node.is_none())
            .map(|(&pid, _)| pid)
            .collect()
    }

    /// The cut directed links as `from->to`, ascending, or `none`.
    pub fn cut_links(&self) -> String {
        let mut cuts: Vec<(NodeId, NodeId)> = lock(&self.net.cuts).iter().copied().collect();
        if cuts.is_empty() {
            return "none".into();
        }
        cuts.sort_unstable();
        cuts.iter()
            .map(|(a, b)| format!("{a}->{b}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Messages the network dropped so far.
    pub fn dropped_messages(&self) -> u64 {
        self.net.dropped.load(Ordering::Relaxed)
    }

    /// Starts node `pid` on its kept storage and wires it to the network.
    fn launch(&mut self, pid: NodeId) {
        let member = self
            .members
            .get_mut(&pid)
            .expect("launch is given a member's id");
        let OmniPaxosHandle {
            omni_paxos,
            seq_paxos_handle,
            ble_handle,
        } = OmniPaxosNode::new(member.config.clone(), member.storage.clone());
        lock(&self.net.inboxes).insert(pid, seq_paxos_handle.incoming);
        let (mut sp_out, mut ble_out) = (seq_paxos_handle.outgoing, ble_handle.outgoing);
        let net = self.net.clone();
        self.routers.spawn(async move {
            loop {
                let m = tokio::select! {
                    Some(m) = sp_out.recv() => m,
                    Some(b) = ble_out.recv() => Message::BLE(b),
                    else => return,
                };
                net.deliver(pid, m);
            }
        });
        member.node = Some(omni_paxos);
    }

    fn member(&self, pid: NodeId) -> Result<&Member, ClusterError> {
        self.members.get(&pid).ok_or(ClusterError::UnknownNode(pid))
    }

    /// Crashes node `pid`: it stops, and what was sent to it is lost. Its
    /// storage is kept for [`restart`](Self::restart).
    pub async fn crash(&mut self, pid: NodeId) -> Result<(), ClusterError> {
        let node = self
            .members
            .get_mut(&pid)
            .ok_or(ClusterError::UnknownNode(pid))?
            .node
            .take()
            .ok_or(ClusterError::AlreadyDown(pid))?;
        lock(&self.net.inboxes).remove(&pid);
        node.shutdown().await;
        Ok(())
    }

    /// Restarts crashed node `pid` on the storage it had; it recovers and
    /// catches up. Its peers are told, as a transport tells them of a new
    /// connection.
    pub fn restart(&mut self, pid: NodeId) -> Result<(), ClusterError> {
        if self.member(pid)?.node.is_some() {
            return Err(ClusterError::AlreadyUp(pid));
        }
        self.launch(pid);
        self.tell_reconnected(&[(pid, pid)]);
        Ok(())
    }

    /// Crashes the node that leads now, and returns it.
    pub async fn crash_leader(&mut self) -> Result<NodeId, ClusterError> {
        let leader = self.leader().ok_or(ClusterError::NoLeader)?;
        self.crash(leader).await?;
        Ok(leader)
    }

    /// Restarts every crashed node, and returns them.
    pub fn restart_all(&mut self) -> Vec<NodeId> {
        let down = self.down();
        for &pid in &down {
            // Down and a member, so restart cannot refuse.
            let _ = self.restart(pid);
        }
        down
    }

    /// The leader most running nodes follow, if it runs and says it leads.
    pub fn leader(&self) -> Option<NodeId> {
        let mut votes: BTreeMap<NodeId, usize> = BTreeMap::new();
        for (_, node) in self.running() {
            if let Some(l) = node.status().leader {
                *votes.entry(l).or_default() += 1;
            }
        }
        let (leader, _) = votes.into_iter().max_by_key(|&(pid, n)| (n, pid))?;
        self.node(leader)
            .is_some_and(|n| n.status().is_leader)
            .then_some(leader)
    }

    fn check_link(&self, a: NodeId, b: NodeId) -> Result<(), ClusterError> {
        self.member(a)?;
        self.member(b)?;
        if a == b {
            return Err(ClusterError::SameNode(a));
        }
        Ok(())
    }

    /// Cuts the link from `from` to `to` one way: what `from` sends to `to`
    /// is dropped, the other way still works.
    pub fn cut(&self, from: NodeId, to: NodeId) -> Result<(), ClusterError> {
        self.check_link(from, to)?;
        lock(&self.net.cuts).insert((from, to));
        Ok(())
    }

    /// Cuts the link between `a` and `b` both ways.
    pub fn cut_both(&self, a: NodeId, b: NodeId) -> Result<(), ClusterError> {
        self.cut(a, b)?;
        self.cut(b, a)
    }

    /// Heals the link from `from` to `to`; returns whether it was cut.
    pub fn heal(&self, from: NodeId, to: NodeId) -> Result<bool, ClusterError> {
        self.check_link(from, to)?;
        let healed = lock(&self.net.cuts).remove(&(from, to));
        if healed {
            self.tell_reconnected(&[(from, to)]);
        }
        Ok(healed)
    }

    /// Heals the link between `a` and `b` both ways; returns whether any
    /// direction was cut.
    pub fn heal_both(&self, a: NodeId, b: NodeId) -> Result<bool, ClusterError> {
        Ok(self.heal(a, b)? | self.heal(b, a)?)
    }

    /// Heals every link; returns how many directed links were cut.
    pub fn heal_all(&self) -> usize {
        let healed: Vec<(NodeId, NodeId)> = lock(&self.net.cuts).drain().collect();
        self.tell_reconnected(&healed);
        healed.len()
    }

    /// Whether what `from` sends to `to` is dropped.
    pub fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        lock(&self.net.cuts).contains(&(from, to))
    }

    /// Tells both ends of each link (or, for `(pid, pid)`, every peer of a
    /// restarted `pid`) that it is back, as a transport does on reconnecting.
    fn tell_reconnected(&self, links: &[(NodeId, NodeId)]) {
        for &(a, b) in links {
            if a == b {
                for (pid, node) in self.running().filter(|&(p, _)| p != a) {
                    node.reconnected(a);
                    if let Some(n) = self.node(a) {
                        n.reconnected(pid);
                    }
                }
                continue;
            }
            if let Some(n) = self.node(a) {
                n.reconnected(b);
            }
            if let Some(n) = self.node(b) {
                n.reconnected(a);
            }
        }
    }

    /// The chained scenario of the Omni-Paxos paper: every link heals, then
    /// the leader loses its link (both ways) to one follower only, the
    /// lowest-numbered; everyone else stays linked to everyone. Returns
    /// `(leader, cut-off follower)`.
    pub fn chained(&self) -> Result<(NodeId, NodeId), ClusterError> {
        let (leader, far) = self.leader_and_other()?;
        self.heal_all();
        self.cut_both(leader, far)?;
        Ok((leader, far))
    }

    /// The quorum-loss scenario of the Omni-Paxos paper: every link heals,
    /// then only the links of one follower C (the lowest-numbered) stay up.
    /// The leader keeps its link to C only and the others are linked to C
    /// only, so C is the only server connected to a quorum and has to take
    /// over although the old leader is alive. Returns `(leader, C)`.
    pub fn quorum_loss(&self) -> Result<(NodeId, NodeId), ClusterError> {
        let (leader, hub) = self.leader_and_other()?;
        self.heal_all();
        for &a in &self.ids {
            for &b in &self.ids {
                if a != b && a != hub && b != hub {
                    self.cut(a, b)?;
                }
            }
        }
        Ok((leader, hub))
    }

    fn leader_and_other(&self) -> Result<(NodeId, NodeId), ClusterError> {
        if self.ids.len() < 3 {
            return Err(ClusterError::TooFewNodes);
        }
        let leader = self.leader().ok_or(ClusterError::NoLeader)?;
        let other = self
            .ids
            .iter()
            .copied()
            .find(|&p| p != leader)
            .ok_or(ClusterError::TooFewNodes)?;
        Ok((leader, other))
    }

    /// Every running node's states, ascending by id; a node that does not
    /// answer in time is left out (shown as down for this round).
    pub async fn states(&self) -> Vec<OmniPaxosStates> {
        let mut states = Vec::with_capacity(self.ids.len());
        for (_, node) in self.running() {
            if let Ok(Some(s)) = timeout(QUERY_TIMEOUT, node.get_ui_states()).await {
                states.push(s);
            }
        }
        states
    }

    /// Hands `entry` to the leader (or, with no leader known, to the lowest
    /// running node, which waits for one); does not wait for the decision.
    /// Returns whether a node took it.
    pub async fn append(&self, entry: Put) -> bool {
        let target = self
            .leader()
            .and_then(|l| self.node(l))
            .or_else(|| self.running().next().map(|(_, n)| n));
        let Some(node) = target else {
            return false;
        };
        // The pending append is dropped: the entry stays proposed, and the
        // dashboard watches decisions through the decided index instead.
        matches!(
            timeout(QUERY_TIMEOUT, node.append_nowait(entry)).await,
            Ok(Ok(_))
        )
    }

    /// Stops every node and waits for the routers to end.
    pub async fn shutdown(mut self) {
        for member in self.members.values_mut() {
            if let Some(node) = member.node.take() {
                node.shutdown().await;
            }
        }
        lock(&self.net.inboxes).clear();
        while self.routers.join_next().await.is_some() {}
    }
}
