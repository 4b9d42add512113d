//! A TCP transport: connects the message channels of an [`OmniPaxosNode`] to
//! its peers, so a cluster runs across machines without networking code of
//! its own.
//!
//! ```no_run
//! use omnipaxos::macros::Entry;
//! use omnipaxos_runtime::{
//!     NodeConfig, OmniPaxosHandle, OmniPaxosNode,
//!     net::{NetConfig, Transport},
//! };
//! use omnipaxos_storage::memory_storage::MemoryStorage;
//! use std::collections::BTreeMap;
//!
//! #[derive(Clone, Debug, Entry, serde::Serialize, serde::Deserialize)]
//! struct KeyValue {
//!     key: String,
//!     value: u64,
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // Node 2 of the cluster {1, 2, 3}, one per machine.
//! let mut node_conf = NodeConfig::default();
//! node_conf.set_pid(2);
//! node_conf.set_peers(vec![1, 3]);
//! let OmniPaxosHandle { omni_paxos, seq_paxos_handle, ble_handle } =
//!     OmniPaxosNode::new(node_conf, MemoryStorage::<KeyValue>::default());
//!
//! let peers = BTreeMap::from([
//!     (1, "10.0.0.1:7000".parse()?),
//!     (3, "10.0.0.3:7000".parse()?),
//! ]);
//! let mut net_conf = NetConfig::new(42, 2, "0.0.0.0:7000".parse()?, peers);
//! net_conf.psk = Some(b"a secret every member knows".to_vec());
//! let transport =
//!     Transport::start(net_conf, omni_paxos.clone(), seq_paxos_handle, ble_handle).await?;
//!
//! let idx = omni_paxos.append(KeyValue { key: "a".into(), value: 1 }).await?;
//! println!("decided at index {idx}; links: {:?}", transport.stats().peers);
//!
//! transport.shutdown().await;
//! omni_paxos.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Connections
//!
//! Every node listens on one address and dials every peer. A connection
//! carries messages one way only, from the node that dialed to the node that
//! accepted; so two nodes are joined by two connections, each direction
//! owned by its sender. A node's messages to a peer go only over its own
//! dialed link, and a node accepts from a peer only messages whose sender is
//! that peer and whose receiver is itself: a peer cannot impersonate another.
//!
//! # Wire format
//!
//! A connection opens with an 8-byte preface from each side: the magic
//! `OPXNET` and the wire version as a big-endian `u16` (now 1). Everything
//! after it is frames: a 4-byte big-endian length `n`, then `n` bytes of
//! body, a value encoded with bincode 1.3's `DefaultOptions` (varint
//! integers, little-endian, no trailing bytes). Handshake frames are at most
//! 256 bytes; after the handshake each frame is one
//! [`Message`](omnipaxos::messages::Message) of at most
//! [`NetConfig::max_frame_bytes`]. A frame announcing more, a body that does
//! not decode or would build more than
//! [`NetConfig::max_decoded_bytes_per_frame`] of memory (see
//! [Memory](#memory)), or bytes that are not a preface end the connection
//! with a log line; the node keeps serving and the dialer dials again.
//!
//! # Handshake
//!
//! ```text
//!  dialer D                                          acceptor A
//!    ── preface ──────────────────────────────────▶
//!    ── Hello { cluster_id, from: D, to: A, n_D } ─▶   magic and version ok? same cluster?
//!                                                     D a configured peer? A the dialed node?
//!    ◀─────────────────────────────────── preface ──
//!    ◀─ Challenge { cluster_id, from: A, n_A, proof_A } (or Rejected(reason), then close)
//!  same cluster? A the dialed node? proof_A right?
//!    ── Proof { proof_D } ─────────────────────────▶   proof_D right?
//!    ◀───────────────────────────────── Accepted ──   (or Rejected(reason), then close)
//!    ── Message ──▶ ── Message ──▶ ...                  (A writes nothing more)
//! ```
//!
//! `n_D` and `n_A` are 32 random bytes from the operating system. With a
//! pre-shared key ([`NetConfig::psk`]) the proofs are HMAC-SHA256 under the
//! key of a label (`"omnipaxos-net v1 acceptor proof"`, or `dialer proof`),
//! the cluster id, D, A (each 8 bytes big-endian), `n_D` and `n_A`; without
//! one they are absent, and both ends must agree on whether a key is used.
//! The acceptor proves itself first, so a dialer never answers a stranger;
//! each proof covers both fresh nonces, so none can be replayed. A handshake
//! that does not finish within 5 s is abandoned, and at most 64 may be in
//! progress at once.
//!
//! The key authenticates the *start* of a connection; without
//! [TLS](#tls) the frames after it are neither encrypted nor
//! integrity-protected. On a network where an attacker can inject into or
//! take over a TCP stream, turn TLS on.
//!
//! # TLS
//!
//! With [`NetConfig::tls`] set, each connection starts with a TLS 1.3
//! handshake (rustls, `ring` provider, no session resumption) in which both
//! ends present a certificate; the preface, the handshake above and every
//! frame then travel inside the TLS session. A node's certificate must be
//! signed by one of the CAs of its [`TlsConfig`] and carry the subject
//! alternative DNS name [`TlsConfig::node_name`]`(cluster_id, pid)`,
//! `node-<pid>.cluster-<cluster_id>.omnipaxos`; if it lists extended key
//! usages, both `serverAuth` and `clientAuth`.
//!
//! - The dialer accepts only an acceptor whose certificate chains to a
//!   trusted CA, is valid now and names the pid it dialed.
//! - The acceptor accepts only a dialer whose certificate chains to a
//!   trusted CA and is valid now, and, once the `Hello` says which pid the
//!   dialer is, whose certificate names that pid; otherwise it answers
//!   `Rejected` and closes.
//!
//! A refused connection is logged, counted by reason in
//! [`NetStats::refused`] (see [`Refusal`]), and closed; the node keeps
//! serving, and the dialer dials again with backoff. Both ends must agree on
//! whether TLS is used: a plaintext dialer to a TLS node is refused as
//! [`Refusal::NotTls`], a TLS dialer to a plaintext node as
//! [`Refusal::Protocol`]. [`Transport::bind`] checks the certificates once
//! ([`NetError::Tls`]), including that the node's own certificate names it.
//!
//! # Slow and unreachable peers
//!
//! A router task sorts the node's outgoing messages into two bounded queues
//! per peer ([`NetConfig::peer_queue_capacity`] each): one for leader
//! election messages, written first so heartbeats are not stuck behind bulk
//! replication, and one for Sequence Paxos. When a queue is full, as with a
//! slow or unreachable peer, the newest message is **dropped and counted**
//! ([`PeerStats::dropped`]); the node is never blocked, and the protocol
//! resends what matters. Messages for a node that is not a peer are
//! dropped and counted ([`NetStats::unknown_receiver`]). On the
//! receiving side a link waits while the node's incoming channel is full or
//! the peer's messages already hold their in-flight budget (see
//! [Memory](#memory)), which pushes back through TCP to the sender's queue.
//!
//! A peer that cannot be dialed, or whose link fails, is dialed again after
//! an exponential backoff with jitter, from
//! [`NetConfig::reconnect_backoff_min`] to
//! [`NetConfig::reconnect_backoff_max`]. A link whose peer stops reading for
//! 5 s (a batch of frames cannot be written) is dropped and dialed again,
//! so a peer whose machine vanished without closing its connections is
//! noticed in seconds rather than when the operating system gives up on
//! the connection. When a link comes back after having
//! been down, the transport calls [`OmniPaxosNode::reconnected`] so the
//! protocol resynchronises with the peer.
//!
//! # Memory
//!
//! What a peer sends can make this node hold memory in three places, each
//! bounded by a setting:
//!
//! - **The frame being read**: its body, in a buffer of the link that grows
//!   to the largest frame read and is kept while the link lasts, at most
//!   [`NetConfig::max_frame_bytes`] (`F`).
//! - **The message being decoded**, or decoded and waiting to be handed to
//!   the node: at most [`NetConfig::max_decoded_bytes_per_frame`] (`D`). A
//!   message is charged, as it is decoded and before its memory is
//!   allocated, `size_of::<Message<T>>()` for itself, the in-memory size of
//!   the element type for every element of a sequence or map
//!   (`size_of::<T>()` for each entry, eight bytes for each node id of a
//!   stop-sign), and the length of every string and byte buffer (an entry's
//!   `String` fields included). A sequence is charged for all the elements
//!   its length prefix announces before its first one is decoded, so a
//!   frame whose charge would pass `D` is refused before its collections
//!   grow; it is counted in [`PeerStats::invalid`] and its connection
//!   dropped. A frame thus carries at most `D / size_of::<T>()` entries.
//! - **Messages handed to the node** and not yet handled: at most
//!   [`NetConfig::max_in_flight_bytes_per_peer`] (`I`) of charges. Each
//!   message holds its charge until the node has handled it; a link whose
//!   peer's messages hold `I` waits before handing over the next. Leader
//!   election messages take no charge: each is a fixed
//!   `size_of::<BLEMessage>()` bytes (72 on 64-bit targets), and all peers'
//!   together wait in one node channel of bounded capacity.
//!
//! So, per peer, with `T` the entry type:
//!
//! ```text
//! charged   <=  F + D + I
//! allocated <~  F + 2 × (D + I)
//! entries   <=  (D + I) / size_of::<T>()   (decoding, waiting or queued)
//! ```
//!
//! The charge counts what values hold; the allocator may hand out up to
//! twice that, as a `Vec` that grows by doubling may have room for twice its
//! length (a hash map a little more). With the defaults (`F` 8 MiB, `D` 32 MiB,
//! `I` 64 MiB) that is about 200 MiB per peer at the very worst, reached
//! only by a peer that sends frame-sized messages of the densest kind faster
//! than the node handles them; a server may face it from each of its peers
//! at once, and leader election messages add at most
//! `channel_capacity × size_of::<BLEMessage>()` for all of them together
//! (under 300 KiB with the default 4096). Lower the three settings together
//! to bound it further (`D` may not exceed `I`), bearing in mind that a
//! message whose charge passes `D` is refused, and that a log sync is one
//! message until chunking lands. Memory that an entry type's own
//! `Deserialize` allocates outside serde's sequences, maps, strings and byte
//! buffers (the target of a `Box` or an `Arc` field) is not seen by the
//! charge; such a type should count it in by lowering `D` and `I`.
//!
//! # Changing the peers
//!
//! The peers start as [`NetConfig::peers`] and change while the transport
//! runs, from any task, while messages flow:
//!
//! - [`Transport::add_peer`] makes a pid a peer at an address: the transport
//!   dials it, routes the node's messages for it, accepts its connections
//!   and shows it in [`Transport::stats`]. A peer added again at another
//!   address is re-pointed (its links closed, its counters reset, dialed at
//!   the new address); at the same address nothing changes.
//! - [`Transport::remove_peer`] stops dialing it, drops what is queued for
//!   it, closes its inbound link, refuses its later ones, and takes it out
//!   of the stats.
//!
//! Both sides must add each other: a node accepts connections only from
//! its peers. The node's own configuration is not changed by either call;
//! it decides whom the node talks to, and messages for a pid that is not a
//! peer are dropped and counted.
//!
//! A transport also follows its node's reconfigurations. When the node
//! decides a stop-sign whose metadata is [`PeerAddresses`] (build the
//! request with [`PeerAddresses::request`]), every server of the next
//! configuration listed there with an address, other than this node and
//! not yet a peer, is added. Once the node has moved into a later
//! configuration ([`NodeStatus::configuration_id`](crate::NodeStatus::configuration_id)
//! passes the one that stop-sign ended), the peers the stop-sign left out
//! are removed after [`NetConfig::retired_peer_grace`], unless they were
//! removed or added again meanwhile. A stop-sign without metadata, or with
//! metadata of another kind, changes no peer (logged at debug level):
//! removal is otherwise always explicit.
//!
//! ```no_run
//! # use omnipaxos_runtime::{OmniPaxosNode, net::{PeerAddresses, Transport}};
//! # use std::collections::BTreeMap;
//! # async fn run<T>(
//! #     node: OmniPaxosNode<T>,
//! #     transport: Transport,
//! # ) -> Result<(), Box<dyn std::error::Error>>
//! # where T: omnipaxos::storage::Entry + Send + Sync + 'static, T::Snapshot: Send {
//! // Server 4 joins {1, 2, 3}: every transport of the cluster adds it as
//! // the stop-sign is decided.
//! let addrs = PeerAddresses::new(BTreeMap::from([(4, "10.0.0.4:7000".parse()?)]));
//! node.reconfigure(addrs.request(vec![1, 2, 3, 4])).await?;
//! // Soon after (the transport follows the node's status on its own task):
//! println!("peers: {:?}", transport.peers());
//! # Ok(())
//! # }
//! ```
//!
//! # Stopping
//!
//! [`Transport::shutdown`] ends every task the transport spawned, closes the
//! listener and every connection, and waits for all of it. The transport
//! also stops by itself when the node stops (its outgoing channels close).
//! The transport holds a clone of the node, so a node with a running
//! transport runs until [`OmniPaxosNode::shutdown`] or until the transport
//! is shut down and every other clone dropped.

mod addresses;
mod budget;
mod config;
mod error;
mod follow;
mod frame;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod handshake;
mod in_flight;
mod inbound;
mod outbound;
mod peers;
mod stats;
#[cfg(test)]
mod tests;
mod tls;
#[cfg(test)]
mod tls_tests;

pub use self::{
    addresses::{PeerAddresses, PeerAddressesError},
    config::NetConfig,
    error::{InvalidPeer, NetError},
    stats::{NetStats, NetStatsReader, PeerStats, Refusal},
    tls::{TlsConfig, TlsError, TlsInput},
};

use self::{
    follow::Follower,
    inbound::{Inbound, MAX_PENDING_HANDSHAKES},
    outbound::Router,
    peers::PeerControl,
    stats::Counters,
    tls::TlsContext,
};
use crate::{BLEHandle, OmniPaxosNode, SequencePaxosHandle};
use omnipaxos::{storage::Entry, util::NodeId};
use serde::{Serialize, de::DeserializeOwned};
use std::{collections::BTreeMap, net::SocketAddr, sync::Arc};
use tokio::{net::TcpListener, runtime::Handle, sync::Semaphore};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// A running TCP transport for one node; see the [module docs](self).
///
/// Start it with [`Transport::start`], or with [`Transport::bind`] then
/// [`BoundTransport::start`] to learn the listening address first. Dropping
/// it does not stop it: call [`shutdown`](Self::shutdown), or shut the node down.
#[derive(Debug)]
#[must_use = "the transport runs until shut down; keep it to call `shutdown`"]
pub struct Transport {
    local_addr: SocketAddr,
    counters: Arc<Counters>,
    /// Changes the peer set; shared with the task that follows the node's
    /// configuration.
    peers: Arc<PeerControl>,
    /// Cancelled to stop every task: by `shutdown`, or by the router when
    /// the node stops.
    cancel: CancellationToken,
    /// Every task the transport spawned, so `shutdown` can wait for them.
    tracker: TaskTracker,
}

/// A transport whose listener is bound but which runs no task yet, from
/// [`Transport::bind`].
///
/// Binding first gives the listening address (useful with port 0) before
/// the peers are known: bind every node, fill in each one's
/// [`peers_mut`](Self::peers_mut) with the others' addresses, then start them.
#[derive(Debug)]
pub struct BoundTransport {
    config: NetConfig,
    /// Built from [`NetConfig::tls`] at bind, so that bad certificates fail
    /// there.
    tls: Option<TlsContext>,
    listener: TcpListener,
    local_addr: SocketAddr,
    /// The runtime `bind` ran on; `start` spawns the tasks there.
    runtime: Handle,
}

impl Transport {
    /// Binds the listener of [`NetConfig::listen`] and returns without
    /// starting anything else.
    ///
    /// Fails with [`NetError::InvalidConfig`] if a field of `config` is
    /// invalid, with [`NetError::Bind`] (naming the address) if the address
    /// cannot be bound, e.g. because its port is in use, and with
    /// [`NetError::NoRuntime`] outside a tokio runtime.
    pub async fn bind(config: NetConfig) -> Result<BoundTransport, NetError> {
        config.validate()?;
        let runtime = Handle::try_current().map_err(|_| NetError::NoRuntime)?;
        let tls = config
            .tls
            .as_ref()
            .map(|tls| TlsContext::new(tls, config.cluster_id, config.pid))
            .transpose()?;
        let addr = config.listen;
        let bind_error = |source| NetError::Bind { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        Ok(BoundTransport {
            config,
            tls,
            listener,
            local_addr,
            runtime,
        })
    }

    /// Binds the listener, spawns the transport's tasks on the current tokio
    /// runtime and returns: from then on `node`'s messages flow to and from
    /// its peers. Pass the channels [`OmniPaxosNode::new`] returned with
    /// `node`. Fails as [`bind`](Self::bind) and
    /// [`BoundTransport::start`] do.
    pub async fn start<T>(
        config: NetConfig,
        node: OmniPaxosNode<T>,
        seq_paxos_handle: SequencePaxosHandle<T>,
        ble_handle: BLEHandle,
    ) -> Result<Self, NetError>
    where
        T: Entry + Serialize + DeserializeOwned + Send + Sync + 'static,
        T::Snapshot: Serialize + DeserializeOwned + Send + Sync,
    {
        Self::bind(config)
            .await?
            .start(node, seq_paxos_handle, ble_handle)
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The transport's counters now: per peer whether its links are up, how
    /// many messages and bytes were sent and received, how many messages
    /// were dropped or invalid, and how often its link came back.
    pub fn stats(&self) -> NetStats {
        self.counters.snapshot()
    }

    /// Makes `pid` a peer at `addr` while the transport runs: from now on
    /// the transport dials it, routes the node's messages for it, accepts
    /// its connections, and shows it in [`stats`](Self::stats).
    ///
    /// Adding a peer that is already one at `addr` changes nothing. Adding
    /// it at another address re-points it, as if removed and added again:
    /// its links are closed, its counters start from zero, and it is dialed
    /// at `addr`. The node is not told: its own configuration says whom it
    /// sends to (messages to a pid that is not a peer are dropped and
    /// counted in [`NetStats::unknown_receiver`]).
    ///
    /// Fails with [`NetError::InvalidPeer`] for pid 0, this node's pid, an
    /// address this node listens on or one that cannot be dialed, and with
    /// [`NetError::Stopped`] once the transport has stopped; the peer set is
    /// then unchanged. Cheap and safe to call from any task while messages
    /// flow.
    pub fn add_peer(&self, pid: NodeId, addr: SocketAddr) -> Result<(), NetError> {
        self.peers.add(pid, addr).map(drop)
    }

    /// Stops being connected to `pid`: its dialer stops, the messages queued
    /// for it are dropped, its inbound connection is closed and later ones
    /// are refused, and it is gone from [`stats`](Self::stats). Removing a
    /// pid that is not a peer changes nothing.
    ///
    /// Fails only with [`NetError::Stopped`], once the transport has
    /// stopped. Safe to call from any task while messages flow.
    pub fn remove_peer(&self, pid: NodeId) -> Result<(), NetError> {
        self.peers.remove(pid, None).map(drop)
    }

    /// The peers now, with the address each is dialed at.
    pub fn peers(&self) -> BTreeMap<NodeId, SocketAddr> {
        self.counters.peers.addrs()
    }

    /// A handle that reads the same counters as [`stats`](Self::stats), to
    /// hand to code that must not own the transport (a metrics exporter).
    pub fn stats_reader(&self) -> NetStatsReader {
        NetStatsReader::new(Arc::clone(&self.counters))
    }

    /// Stops the transport and waits until it has: every task it spawned has
    /// ended, the listener and every connection are closed. The node keeps
    /// running; shut it down with [`OmniPaxosNode::shutdown`].
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

impl BoundTransport {
    /// The address the listener is bound to (the actual port if
    /// [`NetConfig::listen`] asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The configuration the transport will run with.
    pub fn config(&self) -> &NetConfig {
        &self.config
    }

    /// The peers to dial, to fill in before [`start`](Self::start).
    pub fn peers_mut(&mut self) -> &mut BTreeMap<NodeId, SocketAddr> {
        &mut self.config.peers
    }

    /// Spawns the transport's tasks on the runtime that bound it and returns:
    /// from then on `node`'s messages flow to and from its peers.
    ///
    /// Fails with [`NetError::InvalidConfig`] if the peers are invalid or
    /// [`NetConfig::pid`] is not `node`'s pid.
    pub fn start<T>(
        self,
        node: OmniPaxosNode<T>,
        seq_paxos_handle: SequencePaxosHandle<T>,
        ble_handle: BLEHandle,
    ) -> Result<Transport, NetError>
    where
        T: Entry + Serialize + DeserializeOwned + Send + Sync + 'static,
        T::Snapshot: Serialize + DeserializeOwned + Send + Sync,
    {
        let Self {
            config,
            tls,
            listener,
            local_addr,
            runtime,
        } = self;
        config.validate()?;
        if node.status().pid != config.pid {
            return Err(NetError::InvalidConfig {
                field: "pid",
                reason: "differs from the node's pid",
            });
        }
        let config = Arc::new(config);
        let counters = Arc::new(Counters::new(
            config.peers.iter().map(|(pid, addr)| (*pid, *addr)),
            config.max_in_flight_bytes_per_peer,
        ));
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let peers = Arc::new(PeerControl {
            pid: config.pid,
            own_addrs: [config.listen, local_addr],
            in_flight_bytes: config.max_in_flight_bytes_per_peer,
            counters: Arc::clone(&counters),
            cancel: cancel.clone(),
        });
        // Sequence Paxos messages reach the node on its delivery channel,
        // which carries each message's charge against its sender's in-flight
        // budget; the handle's own `incoming` is not needed.
        let SequencePaxosHandle {
            incoming: _,
            outgoing: sp_out,
        } = seq_paxos_handle;
        let sp_in = node.deliveries();
        let BLEHandle {
            incoming: ble_in,
            outgoing: ble_out,
        } = ble_handle;

        let follower = Follower {
            status: node.watch_status(),
            control: Arc::clone(&peers),
            grace: config.retired_peer_grace,
            cancel: cancel.clone(),
        };
        tracker.spawn_on(follower.run(), &runtime);
        // The router starts a dialer for every peer, now and as peers are
        // added.
        let router = Router::new(
            (sp_out, ble_out),
            Arc::clone(&counters),
            (Arc::clone(&config), tls.clone()),
            node,
            tracker.clone(),
            cancel.clone(),
        );
        tracker.spawn_on(router.run(), &runtime);
        let inbound = Inbound {
            config,
            counters: Arc::clone(&counters),
            tls,
            sp_in,
            ble_in,
            cancel: cancel.clone(),
            tracker: tracker.clone(),
            handshakes: Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES)),
            handshakes_by_address: Arc::default(),
        };
        tracker.spawn_on(inbound.listen(listener), &runtime);
        Ok(Transport {
            local_addr,
            counters,
            peers,
            cancel,
            tracker,
        })
    }
}
