//! The task that keeps the peer set in line with the node's configuration:
//! it adds the new servers that a decided stop-sign names with their
//! [`PeerAddresses`], and removes the servers it left out once the node has
//! moved past that configuration and a grace period has passed.

use super::{
    PeerAddresses,
    peers::{Inserted, PeerControl},
    stats::PeerCounters,
};
use crate::NodeStatus;
use omnipaxos::util::{ConfigurationId, NodeId, StopSign};
use std::{sync::Arc, time::Duration};
use tokio::{
    sync::watch,
    time::{Instant, sleep_until},
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Follows the node's status; see the [module docs](self).
pub(super) struct Follower {
    pub(super) status: watch::Receiver<NodeStatus>,
    pub(super) control: Arc<PeerControl>,
    /// [`NetConfig::retired_peer_grace`](super::NetConfig::retired_peer_grace).
    pub(super) grace: Duration,
    pub(super) cancel: CancellationToken,
}

/// A peer that a decided stop-sign left out, to be removed once the node is
/// past the configuration that stop-sign ended.
struct Retiring {
    pid: NodeId,
    /// The membership to remove: if the peer is removed and added again
    /// meanwhile, the new membership is the caller's and stays.
    counters: Arc<PeerCounters>,
    /// The configuration the stop-sign ended.
    ended: ConfigurationId,
    /// When to remove it: set once the node's configuration id passes
    /// `ended`, to then plus the grace period.
    at: Option<Instant>,
}

impl Follower {
    /// Runs until the transport stops or the node does.
    pub(super) async fn run(mut self) {
        // The configuration and stop-sign last acted on, so that each
        // decided stop-sign is acted on once however often the status changes.
        let mut followed: Option<(ConfigurationId, ConfigurationId)> = None;
        let mut retiring = Vec::new();
        loop {
            self.observe(&mut followed, &mut retiring);
            let next = retiring.iter().filter_map(|r: &Retiring| r.at).min();
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => return,
                () = sleep_until_some(next) => self.retire_due(&mut retiring),
                changed = self.status.changed() => if changed.is_err() {
                    return;
                },
            }
        }
    }

    /// Reads the status once: acts on a newly decided stop-sign, and starts
    /// the grace period of peers whose configuration the node has left.
    fn observe(
        &mut self,
        followed: &mut Option<(ConfigurationId, ConfigurationId)>,
        retiring: &mut Vec<Retiring>,
    ) {
        // Only a new stop-sign is cloned, not every status (which changes
        // with every decided entry); the borrow ends before any await.
        let (configuration_id, stop_sign) = {
            let status = self.status.borrow_and_update();
            // The stop-sign that ended this configuration (on a node it
            // leaves out), or the one that ended the previous configuration
            // (a node moves into the next configuration as soon as its
            // stop-sign is decided, so the first may never be seen).
            let new = status
                .reconfigured
                .as_ref()
                .map(|ss| (status.configuration_id, ss))
                .or_else(|| {
                    status
                        .previous_stopsign
                        .as_ref()
                        .filter(|ss| ss.config_id == status.configuration_id)
                        .map(|ss| (status.configuration_id.saturating_sub(1), ss))
                })
                .filter(|(ended, ss)| *followed != Some((*ended, ss.config_id)))
                .map(|(ended, ss)| (ended, ss.clone()));
            (status.configuration_id, new)
        };
        if let Some((ended, ss)) = stop_sign {
            *followed = Some((ended, ss.config_id));
            self.follow(ended, &ss, retiring);
        }
        for r in retiring.iter_mut() {
            if r.at.is_none() && configuration_id > r.ended {
                r.at = Some(Instant::now() + self.grace);
                debug!(
                    peer = r.pid,
                    grace = ?self.grace,
                    "the node left the configuration that ended without the peer; removing it after the grace period"
                );
            }
        }
    }

    /// Acts on the stop-sign `ss` that ended configuration `ended`.
    fn follow(&self, ended: ConfigurationId, ss: &StopSign, retiring: &mut Vec<Retiring>) {
        let addrs = match ss.metadata.as_deref().map(PeerAddresses::decode) {
            Some(Ok(addrs)) => addrs,
            None => {
                debug!(
                    config_id = ss.config_id,
                    "the stop-sign has no metadata; the peers stay as they are"
                );
                return;
            }
            Some(Err(e)) => {
                debug!(
                    config_id = ss.config_id,
                    error = %e,
                    "the stop-sign's metadata is not peer addresses; the peers stay as they are"
                );
                return;
            }
        };
        for &pid in &ss.nodes {
            if pid == self.control.pid || self.control.contains(pid) {
                continue;
            }
            let Some(addr) = addrs.get(pid) else {
                continue;
            };
            match self.control.add(pid, addr) {
                Ok(Inserted::Added) => {
                    info!(peer = pid, %addr, config_id = ss.config_id, "added a server of the next configuration as a peer");
                }
                Ok(Inserted::Repointed | Inserted::Unchanged) => {}
                Err(e) => {
                    warn!(peer = pid, %addr, error = %e, "cannot add a server of the next configuration as a peer");
                }
            }
        }
        for (pid, member) in self.control.members() {
            if !ss.nodes.contains(&pid) {
                retiring.push(Retiring {
                    pid,
                    counters: member.counters,
                    ended,
                    at: None,
                });
            }
        }
    }

    /// Removes the peers whose grace period is over.
    fn retire_due(&self, retiring: &mut Vec<Retiring>) {
        let now = Instant::now();
        retiring.retain(|r| {
            if r.at.is_none_or(|at| at > now) {
                return true;
            }
            if let Ok(true) = self.control.remove(r.pid, Some(&r.counters)) {
                info!(
                    peer = r.pid,
                    "removed a peer that is not in this node's configuration"
                );
            }
            false
        });
    }
}

/// Sleeps until `at`, or forever if there is none.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::stats::Counters;
    use std::{collections::BTreeMap, net::SocketAddr};

    const GRACE: Duration = Duration::from_secs(30);

    fn addr(pid: NodeId) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 7000 + pid as u16))
    }

    /// Node 1 with peers 2 and 3, followed by a [`Follower`] on a status
    /// channel the test drives; the test plays the router, waiting on the
    /// peer set's change signal.
    fn follower() -> (
        watch::Sender<NodeStatus>,
        Arc<PeerControl>,
        CancellationToken,
    ) {
        let counters = Arc::new(Counters::new([(2, addr(2)), (3, addr(3))], 1024));
        let cancel = CancellationToken::new();
        let control = Arc::new(PeerControl {
            pid: 1,
            own_addrs: [addr(1); 2],
            in_flight_bytes: 1024,
            counters,
            cancel: cancel.clone(),
        });
        let (tx, rx) = watch::channel(NodeStatus {
            pid: 1,
            configuration_id: 1,
            ..NodeStatus::default()
        });
        tokio::spawn(
            Follower {
                status: rx,
                control: Arc::clone(&control),
                grace: GRACE,
                cancel: cancel.clone(),
            }
            .run(),
        );
        (tx, control, cancel)
    }

    fn decided(tx: &watch::Sender<NodeStatus>, nodes: Vec<NodeId>, metadata: Option<Vec<u8>>) {
        tx.send_modify(|s| {
            s.reconfigured = Some(StopSign::with(s.configuration_id + 1, nodes, metadata));
            s.decided_idx += 1;
        });
    }

    fn pids(control: &PeerControl) -> Vec<NodeId> {
        control.members().into_keys().collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_sign_with_addresses_adds_the_new_servers_and_retires_the_left_out_after_the_grace()
     {
        let (tx, control, cancel) = follower();
        // Configuration 2 is {1, 2, 4}: 4 is new, 3 is left out. The
        // addresses list 5 too, which is not in it, and 1, which is us.
        let addrs = PeerAddresses::new(BTreeMap::from([(1, addr(1)), (4, addr(4)), (5, addr(5))]));
        decided(&tx, vec![1, 2, 4], Some(addrs.encode()));
        control.counters.peers.changed().await;
        assert_eq!(pids(&control), [2, 3, 4]);
        assert_eq!(control.counters.peers.addrs()[&4], addr(4));

        // More status changes in the same configuration change nothing.
        tx.send_modify(|s| s.decided_idx += 1);
        // The node moves into configuration 2: 3 goes after the grace.
        let moved = Instant::now();
        tx.send_modify(|s| {
            s.configuration_id = 2;
            s.reconfigured = None;
        });
        control.counters.peers.changed().await;
        assert!(moved.elapsed() >= GRACE, "{:?}", moved.elapsed());
        assert_eq!(pids(&control), [2, 4]);
        cancel.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_sign_without_addresses_changes_no_peer() {
        let (tx, control, cancel) = follower();
        decided(&tx, vec![1, 2, 4], None);
        tx.send_modify(|s| s.decided_idx += 1);
        decided(&tx, vec![1, 2, 4], Some(b"{\"app\": 1}".to_vec()));
        tx.send_modify(|s| {
            s.configuration_id = 2;
            s.reconfigured = None;
        });
        // Virtual time: the follower has handled every status once the
        // runtime is idle, and a grace period would have passed twice.
        tokio::time::sleep(2 * GRACE).await;
        assert_eq!(pids(&control), [2, 3]);
        cancel.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_added_again_during_its_grace_is_the_callers_and_stays() {
        let (tx, control, cancel) = follower();
        let addrs = PeerAddresses::new(BTreeMap::from([(4, addr(4))]));
        decided(&tx, vec![1, 2, 4], Some(addrs.encode()));
        control.counters.peers.changed().await;
        // The caller re-points 3 (a new membership) before the node moves on.
        control.add(3, addr(9)).unwrap();
        control.counters.peers.changed().await;
        tx.send_modify(|s| {
            s.configuration_id = 2;
            s.reconfigured = None;
        });
        tokio::time::sleep(2 * GRACE).await;
        assert_eq!(pids(&control), [2, 3, 4]);
        cancel.cancel();
    }
}
