//! [`NetConfig`]: where a node listens, whom it dials, and the transport's bounds.

use super::NetError;
use omnipaxos::util::NodeId;
use std::{collections::BTreeMap, fmt, net::SocketAddr, time::Duration};

/// The configuration of one node's [`Transport`](super::Transport).
///
/// Start from [`NetConfig::new`], which sets every bound to its default, and
/// change the public fields as needed; [`Transport::bind`](super::Transport::bind)
/// checks them all once.
///
/// ```
/// use omnipaxos_runtime::net::NetConfig;
/// use std::collections::BTreeMap;
///
/// let peers = BTreeMap::from([(1, "10.0.0.1:7000".parse().unwrap()),
///                             (3, "10.0.0.3:7000".parse().unwrap())]);
/// let mut config = NetConfig::new(42, 2, "0.0.0.0:7000".parse().unwrap(), peers);
/// config.psk = Some(b"a secret every member knows".to_vec());
/// assert_eq!(config.max_frame_bytes, 64 << 20);
/// ```
#[derive(Clone)]
pub struct NetConfig {
    /// Identifies the cluster: a connection from a node of another cluster is
    /// refused in the handshake, so two clusters sharing hosts and ports by
    /// mistake never exchange messages.
    pub cluster_id: u64,
    /// This node's id; it must be the pid of the node the transport serves.
    pub pid: NodeId,
    /// The address the listener binds. Port 0 picks a free port; read it with
    /// [`BoundTransport::local_addr`](super::BoundTransport::local_addr).
    pub listen: SocketAddr,
    /// Every other member: pid -> address to dial. Only these pids may
    /// connect, and messages for any other receiver are dropped.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// Optional pre-shared key; when set, both ends prove they know it (HMAC
    /// challenge-response) before any message flows. Both ends must agree on
    /// whether a key is used.
    pub psk: Option<Vec<u8>>,
    /// The largest frame (one encoded message, without its 4-byte length) this
    /// node sends or accepts. A peer announcing a larger frame is
    /// disconnected; a larger outgoing message is dropped and counted. Must be
    /// between 1 and `u32::MAX`. Default 64 MiB.
    pub max_frame_bytes: usize,
    /// How many messages may wait for one peer, per protocol (leader election
    /// messages have a queue of their own, which is sent first). When a queue
    /// is full the newest message is dropped and counted; the node is never
    /// blocked. Default 4096.
    pub peer_queue_capacity: usize,
    /// The first delay before redialing a peer that could not be reached;
    /// doubles on each failure up to [`reconnect_backoff_max`](Self::reconnect_backoff_max),
    /// with random jitter. Must not be zero. Default 20 ms.
    pub reconnect_backoff_min: Duration,
    /// The longest delay between two dials of the same peer. Default 1 s.
    pub reconnect_backoff_max: Duration,
}

impl NetConfig {
    /// A configuration with the given identity, listen address and peers,
    /// no pre-shared key, and every bound at its default.
    pub fn new(
        cluster_id: u64,
        pid: NodeId,
        listen: SocketAddr,
        peers: BTreeMap<NodeId, SocketAddr>,
    ) -> Self {
        Self {
            cluster_id,
            pid,
            listen,
            peers,
            psk: None,
            max_frame_bytes: 64 << 20,
            peer_queue_capacity: 4096,
            reconnect_backoff_min: Duration::from_millis(20),
            reconnect_backoff_max: Duration::from_secs(1),
        }
    }

    /// Checks every field once, naming the first one that is wrong.
    pub(super) fn validate(&self) -> Result<(), NetError> {
        let invalid = |field, reason| Err(NetError::InvalidConfig { field, reason });
        if self.pid == 0 {
            return invalid("pid", "must not be 0");
        }
        if self.peers.contains_key(&0) {
            return invalid("peers", "must not contain pid 0");
        }
        if self.peers.contains_key(&self.pid) {
            return invalid("peers", "must not contain this node's own pid");
        }
        if self.psk.as_ref().is_some_and(Vec::is_empty) {
            return invalid("psk", "must not be empty (use None for no key)");
        }
        if self.max_frame_bytes == 0 || u32::try_from(self.max_frame_bytes).is_err() {
            return invalid("max_frame_bytes", "must be between 1 and u32::MAX");
        }
        if self.peer_queue_capacity == 0 {
            return invalid("peer_queue_capacity", "must be at least 1");
        }
        if self.reconnect_backoff_min.is_zero() {
            return invalid("reconnect_backoff_min", "must not be zero");
        }
        if self.reconnect_backoff_min > self.reconnect_backoff_max {
            return invalid(
                "reconnect_backoff_max",
                "must not be less than reconnect_backoff_min",
            );
        }
        Ok(())
    }
}

impl fmt::Debug for NetConfig {
    /// Like a derived `Debug`, but the pre-shared key is never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetConfig")
            .field("cluster_id", &self.cluster_id)
            .field("pid", &self.pid)
            .field("listen", &self.listen)
            .field("peers", &self.peers)
            .field("psk", &self.psk.as_ref().map(|_| "<redacted>"))
            .field("max_frame_bytes", &self.max_frame_bytes)
            .field("peer_queue_capacity", &self.peer_queue_capacity)
            .field("reconnect_backoff_min", &self.reconnect_backoff_min)
            .field("reconnect_backoff_max", &self.reconnect_backoff_max)
            .finish()
    }
}
