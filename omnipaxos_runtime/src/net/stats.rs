//! [`NetStats`]: counters a transport keeps, and their shared, lock-free store.

use super::{in_flight::InFlight, peers::PeerSet};
use omnipaxos::util::NodeId;
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{
            AtomicBool, AtomicU64,
            Ordering::{Acquire, Relaxed},
        },
    },
};
use tokio_util::sync::CancellationToken;

/// A snapshot of a transport's counters, from [`Transport::stats`](super::Transport::stats).
/// Counters only grow while the transport runs; the flags and
/// [`PeerStats::in_flight_bytes`] tell the state now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NetStats {
    /// One entry per peer now: a peer removed with
    /// [`Transport::remove_peer`](super::Transport::remove_peer) is gone, and
    /// one re-pointed to another address starts from zero.
    pub peers: BTreeMap<NodeId, PeerStats>,
    /// Outgoing messages dropped because their receiver is not a configured peer.
    pub unknown_receiver: u64,
    /// Inbound connections refused or dropped before their handshake
    /// completed: not an omnipaxos-net peer, wrong version or cluster id,
    /// unknown pid, failed authentication, timeout, or too many handshakes at once.
    /// [`refused`](Self::refused) splits it by reason.
    pub rejected_connections: u64,
    /// [`rejected_connections`](Self::rejected_connections) by reason; a
    /// reason that never happened has no entry. The log line of each refusal
    /// gives the details (the peer's address, rustls' own reason).
    pub refused: BTreeMap<Refusal, u64>,
}

/// Why an inbound connection was refused before its handshake completed,
/// as [`NetStats::refused`] counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// The connection failed or closed before its handshake finished, e.g.
    /// a dialer that gave up, or that refused this node's own credentials.
    Broken,
    /// The dialer does not speak this protocol: bad magic bytes, another
    /// wire version, an undecodable or oversized handshake message. A TLS
    /// dialer to a node without TLS shows here.
    Protocol,
    /// The dialer is a node of another cluster (another cluster id).
    WrongCluster,
    /// The dialer's pid is not one of this node's peers.
    UnknownPeer,
    /// The dialer meant to reach another node at this address.
    WrongNode,
    /// The pre-shared key was missing, unexpected or wrong.
    Psk,
    /// This node uses TLS and the dialer did not start a TLS handshake (a
    /// plaintext dialer), or sent malformed TLS records.
    NotTls,
    /// The dialer's TLS certificate is missing, not signed by a CA of
    /// [`TlsConfig`](super::TlsConfig) (e.g. another cluster's), or
    /// otherwise invalid.
    CertificateUntrusted,
    /// The dialer's TLS certificate has expired or is not valid yet.
    CertificateExpired,
    /// The dialer's TLS certificate is valid but does not name the pid its
    /// handshake claims (see [`TlsConfig::node_name`](super::TlsConfig::node_name)).
    CertificateNotForNode,
    /// The dialer ended the TLS handshake with an alert, typically because
    /// it does not trust this node's certificate (signed by another CA,
    /// expired, or not naming the node it dialed); its log says why.
    RefusedByDialer,
    /// The TLS handshake failed for another reason (e.g. no common cipher
    /// suite or protocol version).
    Tls,
    /// The handshake did not finish within 5 s.
    Timeout,
    /// Too many handshakes were in progress at once; the connection was
    /// closed unread.
    TooManyHandshakes,
    /// Too many handshakes from the dialer's IP address were in progress
    /// (16); the connection was closed unread.
    TooManyFromAddress,
}

impl Refusal {
    /// Every reason, in order.
    pub const ALL: [Self; 15] = [
        Self::Broken,
        Self::Protocol,
        Self::WrongCluster,
        Self::UnknownPeer,
        Self::WrongNode,
        Self::Psk,
        Self::NotTls,
        Self::CertificateUntrusted,
        Self::CertificateExpired,
        Self::CertificateNotForNode,
        Self::RefusedByDialer,
        Self::Tls,
        Self::Timeout,
        Self::TooManyHandshakes,
        Self::TooManyFromAddress,
    ];

    /// A short snake-case name, e.g. for a metrics label:
    /// `"certificate_expired"`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Broken => "broken",
            Self::Protocol => "protocol",
            Self::WrongCluster => "wrong_cluster",
            Self::UnknownPeer => "unknown_peer",
            Self::WrongNode => "wrong_node",
            Self::Psk => "psk",
            Self::NotTls => "not_tls",
            Self::CertificateUntrusted => "certificate_untrusted",
            Self::CertificateExpired => "certificate_expired",
            Self::CertificateNotForNode => "certificate_not_for_node",
            Self::RefusedByDialer => "refused_by_dialer",
            Self::Tls => "tls",
            Self::Timeout => "timeout",
            Self::TooManyHandshakes => "too_many_handshakes",
            Self::TooManyFromAddress => "too_many_from_address",
        }
    }
}

/// The counters of one peer, part of [`NetStats`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerStats {
    /// Whether the outbound link to the peer is up (dialed and handshaken).
    pub connected: bool,
    /// Whether the peer has an inbound link to us (it dialed and handshook).
    pub inbound_connected: bool,
    /// Messages written to the outbound link.
    pub sent: u64,
    /// Bytes written to the outbound link after its handshake: every frame
    /// with its 4-byte length prefix.
    pub bytes_sent: u64,
    /// Valid messages received from the peer and handed to the node.
    pub received: u64,
    /// Bytes read from the peer's inbound links after their handshake: every
    /// frame with its length prefix, valid or not (an announced frame larger
    /// than the maximum is refused unread and not counted).
    pub bytes_received: u64,
    /// Messages for the peer that were dropped: its queue was full, or the
    /// message was larger than the maximum frame or could not be encoded.
    pub dropped: u64,
    /// Frames from the peer that were dropped: their message claimed another
    /// sender or was addressed to another node than us, could not be decoded,
    /// or would have built more than
    /// [`NetConfig::max_decoded_bytes_per_frame`](super::NetConfig::max_decoded_bytes_per_frame)
    /// of memory. The last two also end the connection (the log says which).
    pub invalid: u64,
    /// The decoded bytes of the peer's messages that the node has not handled
    /// yet, at most
    /// [`NetConfig::max_in_flight_bytes_per_peer`](super::NetConfig::max_in_flight_bytes_per_peer).
    pub in_flight_bytes: u64,
    /// How often the outbound link came back after having been down; each
    /// time the node was told with [`OmniPaxosNode::reconnected`](crate::OmniPaxosNode::reconnected).
    pub reconnects: u64,
    /// How often the inbound link waited before reading the peer's next
    /// frame because the peer passed
    /// [`NetConfig::max_frames_per_second_per_peer`](super::NetConfig::max_frames_per_second_per_peer).
    pub throttled: u64,
}

/// Reads a transport's counters, from
/// [`Transport::stats_reader`](super::Transport::stats_reader): cheap to clone
/// and to keep beside the transport, e.g. in a metrics exporter, while the
/// [`Transport`](super::Transport) itself stays with whoever shuts it down.
/// It keeps reading the last values after the transport stopped.
#[derive(Clone, Debug)]
pub struct NetStatsReader {
    counters: Arc<Counters>,
}

impl NetStatsReader {
    pub(super) fn new(counters: Arc<Counters>) -> Self {
        Self { counters }
    }

    /// The counters now, as [`Transport::stats`](super::Transport::stats) gives them.
    pub fn stats(&self) -> NetStats {
        self.counters.snapshot()
    }
}

/// The live counters, shared by every task of one transport.
#[derive(Debug)]
pub(super) struct Counters {
    /// The peers, each with its counters; it changes while the transport runs.
    pub(super) peers: PeerSet,
    pub(super) unknown_receiver: AtomicU64,
    /// Refused connections, one counter per [`Refusal`] in the order of
    /// [`Refusal::ALL`]; the total is their sum.
    refused: [AtomicU64; Refusal::ALL.len()],
}

/// The live counters of one peer, and the state its links share.
#[derive(Debug)]
pub(super) struct PeerCounters {
    pub(super) connected: AtomicBool,
    pub(super) sent: AtomicU64,
    pub(super) bytes_sent: AtomicU64,
    pub(super) received: AtomicU64,
    pub(super) bytes_received: AtomicU64,
    pub(super) dropped: AtomicU64,
    pub(super) invalid: AtomicU64,
    pub(super) reconnects: AtomicU64,
    pub(super) throttled: AtomicU64,
    /// The peer's current inbound connection: its number (to tell whether a
    /// closing reader is still the current one) and the token that ends it.
    /// A newer connection from the same peer replaces and ends the older.
    inbound: Mutex<InboundSlot>,
    next_inbound: AtomicU64,
    /// What the peer's messages hold while the node has not handled them.
    pub(super) in_flight: InFlight,
}

/// A peer's current inbound connection, and whether the peer was removed.
#[derive(Debug, Default)]
struct InboundSlot {
    /// The connection's number and the token that ends it.
    current: Option<(u64, CancellationToken)>,
    /// Set when the peer stops being one (removed or re-pointed): its
    /// connection is ended and a handshake that finishes later is not let in.
    retired: bool,
}

impl Counters {
    /// Counters for `peers`, each with an in-flight budget of `in_flight_bytes`.
    pub(super) fn new(
        peers: impl IntoIterator<Item = (NodeId, SocketAddr)>,
        in_flight_bytes: usize,
    ) -> Self {
        Self {
            peers: PeerSet::new(peers, in_flight_bytes),
            unknown_receiver: AtomicU64::new(0),
            refused: Default::default(),
        }
    }

    /// Counts a connection refused for `reason`.
    pub(super) fn refuse(&self, reason: Refusal) {
        self.refused[reason as usize].fetch_add(1, Relaxed);
    }

    pub(super) fn snapshot(&self) -> NetStats {
        let mut peers = BTreeMap::new();
        self.peers.for_each(|pid, c| {
            peers.insert(pid, c.snapshot());
        });
        let refused: BTreeMap<Refusal, u64> = Refusal::ALL
            .into_iter()
            .map(|r| (r, self.refused[r as usize].load(Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect();
        NetStats {
            peers,
            unknown_receiver: self.unknown_receiver.load(Relaxed),
            rejected_connections: refused.values().sum(),
            refused,
        }
    }
}

#[cfg(test)]
#[test]
fn every_refusal_has_its_own_counter_in_order() {
    for (i, r) in Refusal::ALL.into_iter().enumerate() {
        assert_eq!(r as usize, i, "{r:?}");
    }
}

impl PeerCounters {
    pub(super) fn new(in_flight_bytes: usize) -> Self {
        Self {
            connected: AtomicBool::new(false),
            sent: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            invalid: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            inbound: Mutex::new(InboundSlot::default()),
            next_inbound: AtomicU64::new(0),
            in_flight: InFlight::new(in_flight_bytes),
        }
    }

    fn snapshot(&self) -> PeerStats {
        PeerStats {
            connected: self.connected.load(Relaxed),
            inbound_connected: self.lock_inbound().current.is_some(),
            // A link counts a write's or a frame's bytes before its messages
            // (the message counts with `Release`), so a snapshot that sees a
            // message also sees its bytes.
            sent: self.sent.load(Acquire),
            bytes_sent: self.bytes_sent.load(Relaxed),
            received: self.received.load(Acquire),
            bytes_received: self.bytes_received.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            invalid: self.invalid.load(Relaxed),
            in_flight_bytes: self.in_flight.used() as u64,
            reconnects: self.reconnects.load(Relaxed),
            throttled: self.throttled.load(Relaxed),
        }
    }

    /// Registers a new inbound connection, ending the previous one if any,
    /// and returns the connection's number for [`close_inbound`](Self::close_inbound);
    /// `None` if the peer was removed meanwhile, and the connection must close.
    pub(super) fn open_inbound(&self, token: CancellationToken) -> Option<u64> {
        let id = self.next_inbound.fetch_add(1, Relaxed);
        let mut slot = self.lock_inbound();
        if slot.retired {
            return None;
        }
        if let Some((_, old)) = slot.current.replace((id, token)) {
            old.cancel();
        }
        Some(id)
    }

    /// Unregisters inbound connection `id` unless a newer one replaced it.
    pub(super) fn close_inbound(&self, id: u64) {
        let mut slot = self.lock_inbound();
        if slot
            .current
            .as_ref()
            .is_some_and(|(current, _)| *current == id)
        {
            slot.current = None;
        }
    }

    /// The peer is no longer one (removed or re-pointed): ends its inbound
    /// connection and refuses any later one. Its dialer is stopped by the
    /// router.
    pub(super) fn retire(&self) {
        let mut slot = self.lock_inbound();
        slot.retired = true;
        if let Some((_, token)) = slot.current.take() {
            token.cancel();
        }
    }

    /// Whether [`retire`](Self::retire) was called.
    pub(super) fn is_retired(&self) -> bool {
        self.lock_inbound().retired
    }

    fn lock_inbound(&self) -> std::sync::MutexGuard<'_, InboundSlot> {
        // The lock guards a plain replace; a panic while holding it cannot
        // leave the slot half-written, so a poisoned lock is still usable.
        self.inbound.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
