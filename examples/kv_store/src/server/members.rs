//! Who the members of this server's configuration are and where they
//! listen, for `GET /members`, `GET /status` and the `kv_store_member`
//! metric.
//!
//! The node knows the ids; the addresses come from three places, later ones
//! winning: the peers the server was started with (`--peers`, or what a
//! joining server learnt over HTTP), the addresses carried by the stop-sign
//! that began this configuration, and those of the stop-sign that ends it
//! (both [`PeerAddresses`], as `POST /members` proposes them). A server that
//! was started before a change therefore still names the servers the change
//! added, as its transport does (the transport follows the same stop-signs).

use crate::api::{MemberStatus, NextConfiguration};
use omnipaxos::util::{NodeId, StopSign};
use omnipaxos_runtime::{NodeStatus, net::PeerAddresses};
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Mutex, MutexGuard},
};

/// The addresses this server knows and the change it is proposing, if any.
#[derive(Debug)]
pub(crate) struct Directory {
    /// This server.
    pid: NodeId,
    /// Where this server's transport listens.
    own_addr: SocketAddr,
    /// The peers the server was started with.
    started_with: BTreeMap<NodeId, SocketAddr>,
    /// The change a `POST /members` on this server is proposing, while it
    /// runs: shown as the next configuration until it is decided or fails.
    proposing: Mutex<Option<NextConfiguration>>,
}

impl Directory {
    pub(crate) fn new(
        pid: NodeId,
        own_addr: SocketAddr,
        started_with: BTreeMap<NodeId, SocketAddr>,
    ) -> Self {
        Self {
            pid,
            own_addr,
            started_with,
            proposing: Mutex::default(),
        }
    }

    /// Every address known now, this server's own included.
    pub(crate) fn addresses(&self, status: &NodeStatus) -> BTreeMap<NodeId, SocketAddr> {
        let mut addrs = self.started_with.clone();
        for ss in [&status.previous_stopsign, &status.reconfigured]
            .into_iter()
            .flatten()
        {
            if let Some(carried) = carried_addresses(ss) {
                addrs.extend(carried.addrs());
            }
        }
        addrs.insert(self.pid, self.own_addr);
        addrs
    }

    /// The servers of the configuration the node runs in, with addresses.
    pub(crate) fn members(&self, status: &NodeStatus) -> Vec<MemberStatus> {
        let addrs = self.addresses(status);
        described(&status.members, &addrs)
    }

    /// The configuration after this one: decided (on a server left out of
    /// it), or being proposed here.
    pub(crate) fn next_configuration(&self, status: &NodeStatus) -> Option<NextConfiguration> {
        if let Some(ss) = &status.reconfigured {
            let addrs = self.addresses(status);
            return Some(NextConfiguration {
                configuration_id: ss.config_id,
                members: described(&sorted(&ss.nodes), &addrs),
                decided: true,
            });
        }
        self.proposing()
            .clone()
            .filter(|next| next.configuration_id > status.configuration_id)
    }

    /// Records the change being proposed, until the guard is dropped.
    pub(crate) fn propose(&self, next: NextConfiguration) -> Proposing<'_> {
        *self.proposing() = Some(next);
        Proposing(self)
    }

    fn proposing(&self) -> MutexGuard<'_, Option<NextConfiguration>> {
        // Plain data, valid even if a holder panicked.
        self.proposing.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Clears the proposed change when the `POST /members` ends, however it ends.
#[derive(Debug)]
pub(crate) struct Proposing<'a>(&'a Directory);

impl Drop for Proposing<'_> {
    fn drop(&mut self) {
        *self.0.proposing() = None;
    }
}

/// The addresses a stop-sign carries, if its metadata is [`PeerAddresses`].
pub(crate) fn carried_addresses(ss: &StopSign) -> Option<PeerAddresses> {
    ss.metadata
        .as_deref()
        .and_then(|m| PeerAddresses::decode(m).ok())
}

/// `ids` with the addresses of `addrs`.
pub(crate) fn described(ids: &[NodeId], addrs: &BTreeMap<NodeId, SocketAddr>) -> Vec<MemberStatus> {
    ids.iter()
        .map(|&id| MemberStatus {
            id,
            peer_addr: addrs.get(&id).map(SocketAddr::to_string),
        })
        .collect()
}

/// `ids` in increasing order.
pub(crate) fn sorted(ids: &[NodeId]) -> Vec<NodeId> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids
}
