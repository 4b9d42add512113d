//! The transport's peer set, which changes while the transport runs: who may
//! connect, whom the router dials, and whose counters [`NetStats`](super::NetStats)
//! shows.
//!
//! One map behind a lock is the truth. It is read once per inbound
//! connection (the handshake's "is this a peer?", then the peer's counters)
//! and changed by [`Transport::add_peer`](super::Transport::add_peer) and
//! [`remove_peer`](super::Transport::remove_peer); no lock is held across an
//! await. The router does not read it per message: it keeps its own map of
//! queues and, when [`PeerSet::changed`] fires, brings it in line with this
//! one ([`PeerSet::members`]), so routing stays lock-free.

use super::{NetError, error::InvalidPeer, stats::PeerCounters};
use omnipaxos::util::NodeId;
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard},
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// One peer as the set holds it.
#[derive(Clone, Debug)]
pub(super) struct Member {
    /// Where the peer's dialer connects.
    pub(super) addr: SocketAddr,
    /// The peer's counters and link state. A peer that is removed or
    /// re-pointed gets new ones, so the identity of this `Arc` tells one
    /// membership of a pid from the next: the router restarts a dialer whose
    /// member is no longer the same.
    pub(super) counters: Arc<PeerCounters>,
}

/// The peers of one transport; see the [module docs](self).
#[derive(Debug, Default)]
pub(super) struct PeerSet {
    members: RwLock<BTreeMap<NodeId, Member>>,
    /// Fired after every change, for the router. A change made while the
    /// router is busy leaves a permit, so none is missed; several changes
    /// may be seen at once, which is fine as the router reads the whole set.
    changed: Notify,
}

/// What [`PeerSet::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Inserted {
    /// The pid was not a peer.
    Added,
    /// The pid was a peer at another address; it now has new counters and
    /// its old connections are closed.
    Repointed,
    /// The pid was a peer at this address already; nothing changed.
    Unchanged,
}

impl PeerSet {
    /// A set of `peers`, each with an in-flight budget of `in_flight_bytes`.
    pub(super) fn new(
        peers: impl IntoIterator<Item = (NodeId, SocketAddr)>,
        in_flight_bytes: usize,
    ) -> Self {
        let members = peers
            .into_iter()
            .map(|(pid, addr)| (pid, Member::new(addr, in_flight_bytes)))
            .collect();
        Self {
            members: RwLock::new(members),
            changed: Notify::new(),
        }
    }

    /// Whether `pid` is a peer now.
    pub(super) fn contains(&self, pid: NodeId) -> bool {
        self.read().contains_key(&pid)
    }

    /// The counters of peer `pid`, if it is one.
    pub(super) fn counters(&self, pid: NodeId) -> Option<Arc<PeerCounters>> {
        self.read().get(&pid).map(|m| Arc::clone(&m.counters))
    }

    /// Every peer and its address.
    pub(super) fn addrs(&self) -> BTreeMap<NodeId, SocketAddr> {
        self.read().iter().map(|(pid, m)| (*pid, m.addr)).collect()
    }

    /// A copy of the whole set, for the router to reconcile with.
    pub(super) fn members(&self) -> BTreeMap<NodeId, Member> {
        self.read().clone()
    }

    /// Calls `f` on every peer's counters, in pid order.
    pub(super) fn for_each(&self, mut f: impl FnMut(NodeId, &PeerCounters)) {
        for (pid, m) in self.read().iter() {
            f(*pid, &m.counters);
        }
    }

    /// Completes after the next change (or at once if one happened since the
    /// last call completed).
    pub(super) async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Makes `pid` a peer at `addr`; see [`Inserted`] for the cases.
    pub(super) fn insert(&self, pid: NodeId, addr: SocketAddr, in_flight_bytes: usize) -> Inserted {
        let mut members = self.write();
        let inserted = match members.get(&pid) {
            Some(m) if m.addr == addr => return Inserted::Unchanged,
            Some(_) => Inserted::Repointed,
            None => Inserted::Added,
        };
        if let Some(old) = members.insert(pid, Member::new(addr, in_flight_bytes)) {
            old.counters.retire();
        }
        drop(members);
        self.changed.notify_one();
        inserted
    }

    /// Removes peer `pid` if it is one, and only if it is still the
    /// membership whose counters are `only` (when given): a later re-add is
    /// another membership and stays. Returns whether it removed the peer.
    pub(super) fn remove(&self, pid: NodeId, only: Option<&Arc<PeerCounters>>) -> bool {
        let mut members = self.write();
        let same = |m: &Member| only.is_none_or(|c| Arc::ptr_eq(c, &m.counters));
        if !members.get(&pid).is_some_and(same) {
            return false;
        }
        if let Some(old) = members.remove(&pid) {
            old.counters.retire();
        }
        drop(members);
        self.changed.notify_one();
        true
    }

    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<NodeId, Member>> {
        // Every writer replaces or removes whole entries; a panic while
        // holding the lock cannot leave the map half-changed.
        self.members.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<NodeId, Member>> {
        self.members.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Member {
    fn new(addr: SocketAddr, in_flight_bytes: usize) -> Self {
        Self {
            addr,
            counters: Arc::new(PeerCounters::new(in_flight_bytes)),
        }
    }
}

/// Validates and applies changes of the peer set on behalf of the
/// [`Transport`](super::Transport) and of the task that follows the node's
/// configuration.
#[derive(Debug)]
pub(super) struct PeerControl {
    /// This node: never a peer of itself.
    pub(super) pid: NodeId,
    /// The addresses this node listens on (as configured and as bound): a
    /// peer there would be this node dialing itself.
    pub(super) own_addrs: [SocketAddr; 2],
    /// The in-flight budget each new peer gets.
    pub(super) in_flight_bytes: usize,
    /// The transport's counters, which hold the peer set.
    pub(super) counters: Arc<super::stats::Counters>,
    /// Cancelled when the transport stops; a stopped transport's set no
    /// longer changes, so its last stats stay readable.
    pub(super) cancel: CancellationToken,
}

impl PeerControl {
    /// Makes `pid` a peer at `addr`, or re-points it; see
    /// [`Transport::add_peer`](super::Transport::add_peer).
    pub(super) fn add(&self, pid: NodeId, addr: SocketAddr) -> Result<Inserted, NetError> {
        let invalid = |reason| Err(NetError::InvalidPeer { pid, addr, reason });
        if pid == 0 {
            return invalid(InvalidPeer::ZeroPid);
        }
        if pid == self.pid {
            return invalid(InvalidPeer::OwnPid);
        }
        if addr.port() == 0 || addr.ip().is_unspecified() {
            return invalid(InvalidPeer::Undialable);
        }
        if self.own_addrs.contains(&addr) {
            return invalid(InvalidPeer::OwnAddress);
        }
        if self.cancel.is_cancelled() {
            return Err(NetError::Stopped);
        }
        Ok(self.counters.peers.insert(pid, addr, self.in_flight_bytes))
    }

    /// Whether `pid` is a peer now.
    pub(super) fn contains(&self, pid: NodeId) -> bool {
        self.counters.peers.contains(pid)
    }

    /// A copy of the peer set.
    pub(super) fn members(&self) -> BTreeMap<NodeId, Member> {
        self.counters.peers.members()
    }

    /// Removes peer `pid` (if `only` is given, only that membership of it);
    /// see [`Transport::remove_peer`](super::Transport::remove_peer).
    /// Returns whether it removed a peer.
    pub(super) fn remove(
        &self,
        pid: NodeId,
        only: Option<&Arc<PeerCounters>>,
    ) -> Result<bool, NetError> {
        if self.cancel.is_cancelled() {
            return Err(NetError::Stopped);
        }
        Ok(self.counters.peers.remove(pid, only))
    }
}
