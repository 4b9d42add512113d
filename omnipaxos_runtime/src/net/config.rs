//! [`NetConfig`]: where a node listens, whom it dials, and the transport's bounds.

use super::{NetError, TlsConfig};
use omnipaxos::util::NodeId;
use std::{collections::BTreeMap, fmt, net::SocketAddr, time::Duration};
use tokio::sync::Semaphore;

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
/// assert_eq!(config.max_frame_bytes, 8 << 20);
/// assert_eq!(config.max_decoded_bytes_per_frame, 32 << 20);
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
    /// Every other member at start: pid -> address to dial. Only peers may
    /// connect, and messages for any other receiver are dropped. The peers
    /// change while the transport runs with
    /// [`Transport::add_peer`](super::Transport::add_peer) and
    /// [`remove_peer`](super::Transport::remove_peer), and as it follows the
    /// node's reconfigurations; this field is only where they start.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// Optional pre-shared key; when set, both ends prove they know it (HMAC
    /// challenge-response) before any message flows. Both ends must agree on
    /// whether a key is used.
    pub psk: Option<Vec<u8>>,
    /// Optional mutual TLS: when set, every connection is a TLS 1.3 session
    /// in which both ends present a certificate signed by the cluster's CA
    /// that names their node (see [`TlsConfig`] and the
    /// [module docs](super#tls)); the handshake, with its pre-shared key if
    /// one is set, runs inside it. Both ends must agree on whether TLS is
    /// used. Default `None`: plain TCP.
    pub tls: Option<TlsConfig>,
    /// The largest frame (one encoded message, without its 4-byte length) this
    /// node sends or accepts. A peer announcing a larger frame is
    /// disconnected; a larger outgoing message is dropped and counted. Each
    /// inbound link keeps a read buffer of up to this size. Must be between 1
    /// and `u32::MAX`. Default 8 MiB: the protocol keeps every message within
    /// its `max_message_bytes` (2 MiB by default, by `Entry::size_hint`), or
    /// about twice that for the undecided part of a log a new leader adopts
    /// (see `OmniPaxosConfig::max_entries_per_message`); raise both together
    /// for entries larger than that.
    ///
    /// One peer's traffic can make this node hold at most
    /// `max_frame_bytes + max_decoded_bytes_per_frame +
    /// max_in_flight_bytes_per_peer` bytes as the transport counts them,
    /// about `max_frame_bytes + 2 × (max_decoded_bytes_per_frame +
    /// max_in_flight_bytes_per_peer)` as the allocator does (200 MiB with the
    /// defaults); the [module docs](super#memory) explain the accounting.
    pub max_frame_bytes: usize,
    /// The most memory one frame may decode to: `size_of::<Message<T>>()`,
    /// plus the in-memory size of the element type for every element of a
    /// sequence or map in it (`size_of::<T>()` for each entry), plus the
    /// length of every string and byte buffer. A frame that would decode to
    /// more is refused before its collections grow, counted in
    /// [`PeerStats::invalid`](super::PeerStats::invalid), and its connection
    /// dropped, as for an undecodable frame. A frame thus carries at most
    /// `max_decoded_bytes_per_frame / size_of::<T>()` entries.
    ///
    /// Default 32 MiB, four times the default `max_frame_bytes`. Strings and
    /// byte buffers hold about what they take on the wire, integers up to
    /// eight times as much (a varint `u64` is one byte on the wire and eight
    /// in memory); realistic entries mix both and hold one to four times
    /// their encoded size (commands of the shape of the kv_store example's:
    /// 1.6 for puts of a 16-byte key and a 100-byte value, 3.4 for deletes of
    /// a 16-byte key), so a log sync of such entries that fits a frame
    /// decodes. A frame of small integers or nearly empty entries (above four
    /// bytes of memory per byte on the wire: a stop-sign listing a node id
    /// per byte holds eight, a batch of empty kv commands nineteen) is
    /// refused once it passes a quarter of the maximum frame. Raise this
    /// setting with `max_frame_bytes`, and for entry types that are mostly
    /// small integers. Must be at least 1 and at most
    /// `max_in_flight_bytes_per_peer`.
    pub max_decoded_bytes_per_frame: usize,
    /// The most decoded memory (counted as for `max_decoded_bytes_per_frame`)
    /// that one peer's Sequence Paxos messages may hold from when they are
    /// handed to the node until the node has handled them. While a peer's
    /// messages hold this much, its link waits before handing over the next
    /// one, and so stops reading from the peer. Leader election messages are
    /// exempt: each is a fixed-size value of 72 bytes, and the
    /// node's channel for them has a bounded capacity. Must be at least
    /// `max_decoded_bytes_per_frame`, so that every frame can be handed over,
    /// and at most `usize::MAX / 8`. Default 64 MiB.
    pub max_in_flight_bytes_per_peer: usize,
    /// The most frames per second that one inbound link reads from its
    /// peer, with bursts of as many: past it, the link waits before reading
    /// the next frame (and so pushes back through TCP), counted in
    /// [`PeerStats::throttled`](super::PeerStats::throttled). Nothing is
    /// dropped. It bounds the work one peer, even an authenticated one, can
    /// make this node do; a peer of this cluster sends far fewer (one
    /// message per protocol step and peer, merged). Each connection starts
    /// with a full burst. Must be at least 1. Default 50,000.
    pub max_frames_per_second_per_peer: u32,
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
    /// How long a peer that a decided reconfiguration left out stays a peer
    /// once this node has moved into the next configuration, before the
    /// transport removes it by itself (see
    /// [Changing the peers](super#changing-the-peers)). The old server may
    /// still need to be told how its configuration ended, or to hand over
    /// the log; a server that is only slow to learn the end is reached
    /// within this time. Default 30 s.
    pub retired_peer_grace: Duration,
}

impl NetConfig {
    /// A configuration with the given identity, listen address and peers,
    /// no pre-shared key, no TLS, and every bound at its default.
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
            tls: None,
            max_frame_bytes: 8 << 20,
            max_decoded_bytes_per_frame: 32 << 20,
            max_in_flight_bytes_per_peer: 64 << 20,
            peer_queue_capacity: 4096,
            max_frames_per_second_per_peer: 50_000,
            reconnect_backoff_min: Duration::from_millis(20),
            reconnect_backoff_max: Duration::from_secs(1),
            retired_peer_grace: Duration::from_secs(30),
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
        if self.max_decoded_bytes_per_frame == 0 {
            return invalid("max_decoded_bytes_per_frame", "must be at least 1");
        }
        if self.max_in_flight_bytes_per_peer < self.max_decoded_bytes_per_frame {
            return invalid(
                "max_in_flight_bytes_per_peer",
                "must not be less than max_decoded_bytes_per_frame",
            );
        }
        if self.max_in_flight_bytes_per_peer > Semaphore::MAX_PERMITS {
            return invalid(
                "max_in_flight_bytes_per_peer",
                "must be at most usize::MAX / 8",
            );
        }
        if self.peer_queue_capacity == 0 {
            return invalid("peer_queue_capacity", "must be at least 1");
        }
        if self.max_frames_per_second_per_peer == 0 {
            return invalid("max_frames_per_second_per_peer", "must be at least 1");
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
            .field("tls", &self.tls)
            .field("max_frame_bytes", &self.max_frame_bytes)
            .field(
                "max_decoded_bytes_per_frame",
                &self.max_decoded_bytes_per_frame,
            )
            .field(
                "max_in_flight_bytes_per_peer",
                &self.max_in_flight_bytes_per_peer,
            )
            .field("peer_queue_capacity", &self.peer_queue_capacity)
            .field("reconnect_backoff_min", &self.reconnect_backoff_min)
            .field("reconnect_backoff_max", &self.reconnect_backoff_max)
            .field("retired_peer_grace", &self.retired_peer_grace)
            .finish()
    }
}
