//! A test cluster of nodes with TCP transports on loopback, and waits on
//! their status and counters. Every wait is for a condition, bounded by
//! [`WAIT`]; none sleeps to let something happen.

use super::Value;
use omnipaxos::{storage::Storage, util::NodeId};
use omnipaxos_runtime::{
    NodeConfig, NodeStatus, OmniPaxosHandle, OmniPaxosNode,
    net::{BoundTransport, NetConfig, NetStats, Transport},
};
use omnipaxos_storage::memory_storage::MemoryStorage;
use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

/// The longest any condition may take to become true.
pub(crate) const WAIT: Duration = Duration::from_secs(20);
pub(crate) const CLUSTER_ID: u64 = 7;

/// One running member of a test cluster.
pub(crate) struct Member {
    pub(crate) node: OmniPaxosNode<Value>,
    pub(crate) transport: Transport,
}

impl Member {
    pub(crate) async fn stop(self) {
        self.transport.shutdown().await;
        self.node.shutdown().await;
    }
}

pub(crate) async fn stop_all(members: BTreeMap<NodeId, Member>) {
    for m in members.into_values() {
        m.stop().await;
    }
}

pub(crate) fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

pub(crate) fn net_config(pid: NodeId, listen: SocketAddr, psk: Option<&[u8]>) -> NetConfig {
    let mut config = NetConfig::new(CLUSTER_ID, pid, listen, BTreeMap::new());
    config.psk = psk.map(<[u8]>::to_vec);
    // Redial quickly, so a restarted peer is found within a test's patience.
    config.reconnect_backoff_max = Duration::from_millis(200);
    config
}

/// Binds a transport for every config, then gives each the addresses of all
/// the others as peers.
pub(crate) async fn bind_all(configs: Vec<NetConfig>) -> BTreeMap<NodeId, BoundTransport> {
    let mut bound = BTreeMap::new();
    for config in configs {
        bound.insert(config.pid, Transport::bind(config).await.unwrap());
    }
    let addrs: BTreeMap<NodeId, SocketAddr> = bound
        .iter()
        .map(|(pid, b)| (*pid, b.local_addr()))
        .collect();
    for (pid, b) in &mut bound {
        for (other, addr) in &addrs {
            if other != pid {
                b.peers_mut().insert(*other, *addr);
            }
        }
    }
    bound
}

/// Starts a node on `storage`, with the transport's peers as its peers, and
/// plugs the transport into it.
pub(crate) fn start<S>(bound: BoundTransport, storage: S) -> Member
where
    S: Storage<Value> + Send + 'static,
{
    let node_peers = bound.config().peers.keys().copied().collect();
    start_node(bound, storage, node_peers)
}

/// Starts a node on `storage` whose configuration's other servers are
/// `node_peers` (which may differ from the transport's peers), and plugs the
/// transport into it.
pub(crate) fn start_node<S>(bound: BoundTransport, storage: S, node_peers: Vec<NodeId>) -> Member
where
    S: Storage<Value> + Send + 'static,
{
    let mut node_conf = NodeConfig::default();
    node_conf.set_pid(bound.config().pid);
    node_conf.set_peers(node_peers);
    let OmniPaxosHandle {
        omni_paxos,
        seq_paxos_handle,
        ble_handle,
    } = OmniPaxosNode::try_new(node_conf, storage).unwrap();
    let transport = bound
        .start(omni_paxos.clone(), seq_paxos_handle, ble_handle)
        .unwrap();
    Member {
        node: omni_paxos,
        transport,
    }
}

/// A cluster of `pids` on loopback with memory storage.
pub(crate) async fn memory_cluster(
    pids: &[NodeId],
    psk: Option<&[u8]>,
) -> BTreeMap<NodeId, Member> {
    let configs = pids
        .iter()
        .map(|p| net_config(*p, loopback(), psk))
        .collect();
    bind_all(configs)
        .await
        .into_iter()
        .map(|(pid, b)| (pid, start(b, MemoryStorage::default())))
        .collect()
}

/// Waits until `node`'s status satisfies `cond`.
pub(crate) async fn wait_status(
    node: &OmniPaxosNode<Value>,
    what: &str,
    cond: impl Fn(&NodeStatus) -> bool,
) -> NodeStatus {
    let mut status = node.watch_status();
    let waited = tokio::time::timeout(WAIT, async {
        loop {
            let now = status.borrow_and_update().clone();
            if cond(&now) {
                return now;
            }
            if status.changed().await.is_err() {
                panic!("node stopped while waiting for {what}: {now:?}");
            }
        }
    })
    .await;
    waited.unwrap_or_else(|_| panic!("timed out waiting for {what}: {:?}", node.status()))
}

/// Waits until `transport`'s counters satisfy `cond`. Counters have no
/// change notification, so this polls them.
pub(crate) async fn wait_stats(
    transport: &Transport,
    what: &str,
    cond: impl Fn(&NetStats) -> bool,
) {
    let waited = tokio::time::timeout(WAIT, async {
        while !cond(&transport.stats()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "timed out waiting for {what}: {:?}",
        transport.stats()
    );
}

/// Waits until every member follows the same leader, and returns it.
pub(crate) async fn wait_common_leader(members: &BTreeMap<NodeId, Member>) -> NodeId {
    let waited = tokio::time::timeout(WAIT, async {
        loop {
            let first = members.values().next().unwrap();
            let leader = wait_status(&first.node, "a leader", |s| s.leader.is_some())
                .await
                .leader
                .unwrap();
            let mut agreed = true;
            for m in members.values() {
                let s = wait_status(&m.node, "a leader", |s| s.leader.is_some()).await;
                agreed &= s.leader == Some(leader);
            }
            if agreed {
                return leader;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    waited.expect("the members agree on a leader")
}

/// Waits until `node` has decided at least `idx` entries.
pub(crate) async fn wait_decided(node: &OmniPaxosNode<Value>, idx: u64) {
    wait_status(node, &format!("decided index {idx}"), |s| {
        s.decided_idx >= idx
    })
    .await;
}
