//! [`Model`]: what the dashboard knows, updated from the states handed to
//! `tick`, and read by the views. No terminal, no clock: every update carries
//! its time, so the model (and everything drawn from it) is a function of the
//! updates alone, which is what makes the views testable.

use crate::{
    config::{KeyHelp, UIAppConfig},
    log::LogLine,
    ring::Ring,
};
use omnipaxos::{
    Ballot, ConfigurationId, NodeId, Role,
    ui::{OmniPaxosStates, PeerState},
};
use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

/// A state handed over by the node, with the time it was handed over (so
/// that rates stay right when the terminal thread takes it late).
#[derive(Clone, Debug)]
pub(crate) struct Update {
    pub(crate) at: Instant,
    pub(crate) kind: UpdateKind,
}

#[derive(Clone, Debug)]
pub(crate) enum UpdateKind {
    /// From [`OmniPaxosUI::tick`](crate::OmniPaxosUI::tick): this server only.
    Node(OmniPaxosStates),
    /// From [`OmniPaxosUI::tick_cluster`](crate::OmniPaxosUI::tick_cluster):
    /// every running server; one that is missing is down.
    Cluster(Vec<OmniPaxosStates>),
}

/// What an event is about; the views colour by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventKind {
    /// The leader changed.
    Leader,
    /// A server raised its ballot to take over.
    Election,
    /// A link or a quorum was lost or regained.
    Connectivity,
    /// A server went down or came back.
    Node,
    /// A storage failure stopped a server.
    Failure,
}

/// One line of the events pane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Event {
    /// Time since the dashboard was created.
    pub(crate) at: Duration,
    pub(crate) kind: EventKind,
    pub(crate) text: String,
}

/// One cell of the connectivity matrix: does the row's server hear the
/// column's?
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Link {
    /// The diagonal.
    Own,
    /// Heartbeats from the column's server reached the row's server in its
    /// current or previous round.
    Hears,
    /// They did not: the link is cut that way, or the column's server is down.
    Deaf,
    /// The row's server is down or does not count the column's as a peer.
    Unknown,
}

/// One row of the connectivity matrix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MatrixRow {
    pub(crate) pid: NodeId,
    /// `None` when the server sent no state (it is down).
    pub(crate) state: Option<RowState>,
    /// One cell per server of [`Model::pids`], in that order.
    pub(crate) links: Vec<Link>,
}

/// What the matrix shows beside a live server's row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RowState {
    /// The leader this server follows.
    pub(crate) leader: Option<NodeId>,
    pub(crate) quorum_connected: bool,
    pub(crate) role: Role,
}

/// Whether heartbeats from `peer` reach the server whose states these are:
/// one arrived in its current heartbeat round or the one before. Two rounds,
/// not one, because rounds of different servers are not aligned: early in
/// a round the peer's next request may simply not be due yet.
pub(crate) fn hears(states: &OmniPaxosStates, peer: &PeerState) -> bool {
    peer.last_heartbeat_round
        .is_some_and(|r| states.heartbeat_round.wrapping_sub(r) <= 1)
}

/// Everything the views draw.
#[derive(Debug)]
pub(crate) struct Model {
    /// The server the dashboard is attached to.
    pub(crate) pid: NodeId,
    pub(crate) title: String,
    pub(crate) configuration_id: ConfigurationId,
    /// Every server known: the configured ones and any that reported, ascending.
    pub(crate) pids: Vec<NodeId>,
    start: Instant,
    /// Time of the latest update since the dashboard was created.
    pub(crate) now: Duration,
    /// This server's latest states; `None` before the first or while it is down.
    pub(crate) own: Option<OmniPaxosStates>,
    /// Whether a cluster update came without this server's states.
    pub(crate) own_down: bool,
    /// The latest cluster states, ascending by pid; `None` until
    /// `tick_cluster` is used.
    pub(crate) cluster: Option<Vec<OmniPaxosStates>>,
    /// `(seconds since start, decided entries per second)` of this server.
    pub(crate) rates: Ring<(f64, f64)>,
    sample_interval: Duration,
    /// The previous chart point's time and decided index.
    last_sample: Option<(Instant, u64)>,
    pub(crate) events: Ring<Event>,
    /// How many times the observed leader changed (to another server, to a
    /// new ballot, or to none).
    pub(crate) leader_changes: u64,
    /// The leader as last observed, to tell a change.
    leader: Option<Ballot>,
    /// Each server's ballot round as last seen, to tell a new election.
    ballots: BTreeMap<NodeId, u32>,
    /// The servers present in the last cluster update.
    up: Option<BTreeSet<NodeId>>,
    /// Peers this server was reported to have lost, and not yet regained.
    lost: BTreeSet<NodeId>,
    /// Copied from the log book before each draw.
    pub(crate) log: Vec<LogLine>,
    pub(crate) key_help: Vec<KeyHelp>,
    /// A line the application sets (`set_status`).
    pub(crate) status: String,
    /// States dropped because drawing fell behind.
    pub(crate) skipped: u64,
}

impl Model {
    pub(crate) fn new(config: &UIAppConfig, start: Instant) -> Self {
        Self {
            pid: config.pid,
            title: config.title.clone(),
            configuration_id: config.configuration_id,
            pids: config.all_pids(),
            start,
            now: Duration::ZERO,
            own: None,
            own_down: false,
            cluster: None,
            rates: Ring::with_capacity(config.history_len),
            sample_interval: config.sample_interval,
            last_sample: None,
            events: Ring::with_capacity(config.event_capacity),
            leader_changes: 0,
            leader: None,
            ballots: BTreeMap::new(),
            up: None,
            lost: BTreeSet::new(),
            log: Vec::new(),
            key_help: config.key_help.clone(),
            status: String::new(),
            skipped: 0,
        }
    }

    /// Takes in one update: new states, the events they imply, a chart point
    /// when one is due.
    pub(crate) fn apply(&mut self, update: Update) {
        let at = update.at;
        self.now = at.saturating_duration_since(self.start);
        match update.kind {
            UpdateKind::Node(states) => {
                self.note_elections(std::slice::from_ref(&states));
                self.observe_own(Some(states), at);
            }
            UpdateKind::Cluster(mut all) => {
                all.sort_by_key(|s| s.pid);
                all.dedup_by_key(|s| s.pid);
                for s in &all {
                    if let Err(i) = self.pids.binary_search(&s.pid) {
                        self.pids.insert(i, s.pid);
                    }
                }
                self.note_up_and_down(&all);
                self.note_elections(&all);
                let own = all.iter().find(|s| s.pid == self.pid).cloned();
                self.own_down = own.is_none();
                self.cluster = Some(all);
                self.observe_own(own, at);
            }
        }
        self.note_leader();
    }

    fn event(&mut self, kind: EventKind, text: String) {
        self.events.push(Event {
            at: self.now,
            kind,
            text,
        });
    }

    fn observe_own(&mut self, states: Option<OmniPaxosStates>, at: Instant) {
        let Some(new) = states else {
            self.own = None;
            self.last_sample = None;
            return;
        };
        if let Some(old) = self.own.take() {
            self.note_own_changes(&old, &new);
        }
        self.sample(&new, at);
        self.own = Some(new);
    }

    /// Events about this server that only its own states show: its role,
    /// its quorum, its links, its storage.
    fn note_own_changes(&mut self, old: &OmniPaxosStates, new: &OmniPaxosStates) {
        let pid = new.pid;
        if old.role != new.role {
            let text = match new.role {
                Role::Leader => format!("node {pid} leads (ballot n={})", new.current_ballot.n),
                Role::Follower => format!("node {pid} follows"),
            };
            self.event(EventKind::Leader, text);
        }
        if old.quorum_connected != new.quorum_connected {
            let text = if new.quorum_connected {
                format!("node {pid} reaches a quorum again")
            } else {
                format!("node {pid} lost its quorum")
            };
            self.event(EventKind::Connectivity, text);
        }
        for peer in &new.cluster_state {
            let was = old
                .cluster_state
                .iter()
                .find(|p| p.pid == peer.pid)
                .is_some_and(|p| p.connected);
            // Peers connecting at start-up are no news: only a peer that
            // was reported lost is reported back.
            if was && !peer.connected {
                self.lost.insert(peer.pid);
                self.event(
                    EventKind::Connectivity,
                    format!("node {pid} lost {}", peer.pid),
                );
            } else if !was && peer.connected && self.lost.remove(&peer.pid) {
                self.event(
                    EventKind::Connectivity,
                    format!("node {pid} reaches {} again", peer.pid),
                );
            }
        }
        if !old.storage_failed && new.storage_failed {
            self.event(
                EventKind::Failure,
                format!("node {pid}: storage failed, node stopped"),
            );
        }
    }

    /// A server whose ballot round rose has stood for election.
    fn note_elections(&mut self, states: &[OmniPaxosStates]) {
        for s in states {
            let n = s.current_ballot.n;
            let before = self.ballots.insert(s.pid, n);
            if before.is_some_and(|b| n > b) {
                self.event(
                    EventKind::Election,
                    format!("node {} stands for election (n={n})", s.pid),
                );
            }
        }
    }

    fn note_up_and_down(&mut self, all: &[OmniPaxosStates]) {
        let now: BTreeSet<NodeId> = all.iter().map(|s| s.pid).collect();
        if let Some(before) = self.up.take() {
            for pid in before.difference(&now) {
                self.event(EventKind::Node, format!("node {pid} is down"));
            }
            for pid in now.difference(&before) {
                self.event(EventKind::Node, format!("node {pid} is up"));
            }
        }
        self.up = Some(now);
    }

    /// The leader as this server sees it or, while it is down, as most
    /// running servers see it.
    pub(crate) fn observed_leader(&self) -> Option<Ballot> {
        if let Some(own) = &self.own {
            return own.current_leader;
        }
        let cluster = self.cluster.as_ref()?;
        let mut votes: BTreeMap<Ballot, usize> = BTreeMap::new();
        for s in cluster {
            if let Some(l) = s.current_leader {
                *votes.entry(l).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .max_by_key(|&(ballot, count)| (count, ballot))
            .map(|(ballot, _)| ballot)
    }

    fn note_leader(&mut self) {
        let leader = self.observed_leader();
        if leader == self.leader {
            return;
        }
        let text = match (self.leader, leader) {
            (_, None) => "no leader".to_string(),
            (Some(old), Some(new)) if old.pid == new.pid => {
                format!("leader {} re-elected (n={})", new.pid, new.n)
            }
            (Some(old), Some(new)) => format!("leader {} -> {} (n={})", old.pid, new.pid, new.n),
            (None, Some(new)) => format!("leader is {} (n={})", new.pid, new.n),
        };
        // The first leader seen is no change; losing one is.
        if self.leader.is_some() {
            self.leader_changes += 1;
        }
        self.leader = leader;
        self.event(EventKind::Leader, text);
    }

    /// A chart point once `sample_interval` has passed since the last one.
    fn sample(&mut self, states: &OmniPaxosStates, at: Instant) {
        let decided = states.decided_idx;
        let Some((then, before)) = self.last_sample else {
            self.last_sample = Some((at, decided));
            return;
        };
        let dt = at.saturating_duration_since(then);
        if dt < self.sample_interval {
            return;
        }
        // A server restarted on empty storage counts from 0 again: that is
        // no negative rate.
        let rate = decided.saturating_sub(before) as f64 / dt.as_secs_f64();
        let t = at.saturating_duration_since(self.start).as_secs_f64();
        self.rates.push((t, rate));
        self.last_sample = Some((at, decided));
    }

    /// The connectivity matrix, if several servers' states were given.
    pub(crate) fn matrix(&self) -> Option<Vec<MatrixRow>> {
        let cluster = self.cluster.as_ref()?;
        Some(
            self.pids
                .iter()
                .map(|&pid| {
                    let states = cluster.iter().find(|s| s.pid == pid);
                    let links = self
                        .pids
                        .iter()
                        .map(|&col| match states {
                            _ if col == pid => Link::Own,
                            None => Link::Unknown,
                            Some(s) => match s.cluster_state.iter().find(|p| p.pid == col) {
                                None => Link::Unknown,
                                Some(p) if hears(s, p) => Link::Hears,
                                Some(_) => Link::Deaf,
                            },
                        })
                        .collect();
                    MatrixRow {
                        pid,
                        state: states.map(|s| RowState {
                            leader: s.current_leader.map(|b| b.pid),
                            quorum_connected: s.quorum_connected,
                            role: s.role,
                        }),
                        links,
                    }
                })
                .collect(),
        )
    }

    /// The states of the server whose view of its followers the replication
    /// pane shows: this server if it leads, else the leader among the cluster
    /// states with the highest ballot (a deposed leader that has not noticed
    /// yet has a lower one).
    pub(crate) fn replication_source(&self) -> Option<&OmniPaxosStates> {
        if let Some(own) = self.own.as_ref().filter(|s| s.role == Role::Leader) {
            return Some(own);
        }
        self.cluster
            .as_ref()?
            .iter()
            .filter(|s| s.role == Role::Leader)
            .max_by_key(|s| s.current_ballot)
    }

    /// The latest decided-entries-per-second point.
    pub(crate) fn current_rate(&self) -> Option<f64> {
        self.rates.last().map(|&(_, r)| r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_cluster::{all_states, states_at, three_node_cluster};
    use pretty_assertions::assert_eq;

    fn model(start: Instant) -> Model {
        let config = UIAppConfig {
            pid: 1,
            peers: vec![2, 3],
            sample_interval: Duration::from_secs(1),
            ..Default::default()
        };
        Model::new(&config, start)
    }

    fn node_update(at: Instant, states: OmniPaxosStates) -> Update {
        Update {
            at,
            kind: UpdateKind::Node(states),
        }
    }

    #[test]
    fn the_chart_gets_a_point_per_sample_interval_with_the_decided_rate() {
        let mut cluster = three_node_cluster();
        let start = Instant::now();
        let mut m = model(start);
        let first = states_at(&cluster, 1);
        m.apply(node_update(start, first.clone()));
        let leader = cluster.wait_for_leader(100);
        for _ in 0..10 {
            let v = cluster.propose_new(leader);
            cluster.run_until(|c| c.all_live_decided(&v), 50);
        }
        let later = states_at(&cluster, 1);
        let decided = later.decided_idx - first.decided_idx;
        // Half a second later: too soon for a point.
        m.apply(node_update(
            start + Duration::from_millis(500),
            later.clone(),
        ));
        assert_eq!(m.rates.len(), 0);
        m.apply(node_update(start + Duration::from_secs(2), later));
        assert_eq!(
            m.rates.iter().copied().collect::<Vec<_>>(),
            vec![(2.0, decided as f64 / 2.0)]
        );
    }

    #[test]
    fn a_leader_change_and_the_election_before_it_become_events() {
        let mut cluster = three_node_cluster();
        let start = Instant::now();
        let mut m = model(start);
        let old = cluster.wait_for_leader(100);
        m.apply(Update {
            at: start,
            kind: UpdateKind::Cluster(all_states(&cluster)),
        });
        assert_eq!(m.leader_changes, 0, "the first leader seen is no change");
        cluster.crash(old);
        cluster.run_until(|c| c.agreed_leader().is_some_and(|l| l != old), 100);
        let new = cluster.agreed_leader().expect("a new leader");
        m.apply(Update {
            at: start + Duration::from_secs(3),
            kind: UpdateKind::Cluster(all_states(&cluster)),
        });
        let texts: Vec<_> = m.events.iter().map(|e| e.text.clone()).collect();
        assert!(texts.contains(&format!("node {old} is down")), "{texts:?}");
        assert!(
            texts.contains(&format!(
                "node {new} stands for election (n={})",
                states_at(&cluster, new).current_ballot.n
            )),
            "{texts:?}"
        );
        assert!(
            texts
                .iter()
                .any(|t| t.starts_with(&format!("leader {old} -> {new}"))),
            "{texts:?}"
        );
        assert_eq!(m.leader_changes, 1);
    }
}
