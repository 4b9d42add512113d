//! Ballot Leader Election (BLE): who should lead, decided from quorum-connected
//! heartbeat rounds.
//!
//! ```text
//!   every election_tick_timeout ticks, server s:
//!     1. evaluates the round that just ended:
//!          qc(s)      = replies + 1 >= read quorum
//!          candidates = {own ballot if qc(s)}
//!                     ∪ {ballot of each reply that says it is quorum-connected}
//!                     ∪ {leader each reply heard directly and saw quorum-connected}
//!          top        = max(candidates)
//!          top >  leader            -> follow top
//!          top <  leader (or none)  -> leader is gone: if qc(s), take over with
//!                                      n = max(leader.n, promise.n) + 1
//!     2. opens the next round: HeartbeatRequest{round} to every peer
//!   on HeartbeatRequest: reply {round, own ballot, qc(s), directly seen leader}
//! ```
//!
//! Only quorum-connected servers may be candidates, which is what keeps a
//! cluster live under partial connectivity (Omni-Paxos paper, section 4): a
//! leader that loses its quorum stops being a candidate, and a server that
//! reaches a quorum takes over even if it cannot reach the old leader. Replies
//! carry the leader the replier hears directly, so a server in a chain
//! (A — B — C, no A — C link) follows the leader through the middle server
//! instead of starting a competing election.

use crate::{
    ballot::Ballot,
    clock::LogicalClock,
    config::OmniPaxosConfig,
    messages::{BLEMessage, HeartbeatMsg, HeartbeatReply, HeartbeatRequest},
    quorum::Quorum,
    util::{ConfigurationId, NodeId},
};

/// How many times per round a request goes out to a peer that has not answered.
const RETRIES_PER_ROUND: u64 = 3;

/// When a peer's heartbeat messages last reached this server (for the
/// dashboard): one direction of the link, where `connected` needs both.
#[derive(Clone, Copy, Debug)]
struct HeardFrom {
    pid: NodeId,
    /// This server's round in which a request or reply from `pid` last
    /// arrived; `None` if none has since this server started.
    round: Option<u32>,
}

pub(crate) struct BallotLeaderElection {
    pid: NodeId,
    peers: Vec<NodeId>,
    configuration_id: ConfigurationId,
    quorum: Quorum,
    /// The heartbeat round in progress; replies to other rounds are stale.
    round: u32,
    /// Replies received in the current round, at most one per peer.
    replies: Vec<(NodeId, HeartbeatReply)>,
    /// Peers that answered the last completed round (for the dashboard).
    connected: Vec<NodeId>,
    /// One entry per peer, fixed at start: when its messages last arrived
    /// (for the dashboard, which tells a one-way cut from `connected`).
    heard: Vec<HeardFrom>,
    /// This server's ballot: raised when it takes over, priority set by the user.
    current_ballot: Ballot,
    /// The leader this server follows (possibly itself).
    leader: Option<Ballot>,
    /// The leader as this server reports it to others: only one it heard
    /// directly (or is) and that is quorum-connected, so that a dead leader
    /// cannot be kept alive by servers repeating each other.
    direct_leader: Option<Ballot>,
    /// The highest ballot whose leader prepared this server during the current
    /// round: direct evidence that the leader is alive, which heartbeat
    /// replies sent before that leader took over cannot show.
    prepared_by: Option<Ballot>,
    /// The highest ballot a follower refused this server's Prepare for, in
    /// the current round.
    rejected_by: Option<Ballot>,
    /// Whether this server heard from a read quorum in the last round.
    quorum_connected: bool,
    /// Fires at the end of every heartbeat round.
    heartbeat_timer: LogicalClock,
    /// Fires a few times per round: the round's request goes again to peers
    /// that have not answered, so that one lost message does not make a live
    /// leader look dead.
    retry_timer: LogicalClock,
    outgoing: Vec<BLEMessage>,
}

impl BallotLeaderElection {
    pub(crate) fn with(config: &OmniPaxosConfig) -> Self {
        let mut ble = Self {
            pid: config.pid,
            peers: config.peers.clone(),
            configuration_id: config.configuration_id,
            quorum: Quorum::with(config.flexible_quorum, config.peers.len() + 1),
            round: 0,
            replies: Vec::with_capacity(config.peers.len()),
            connected: Vec::with_capacity(config.peers.len()),
            heard: config
                .peers
                .iter()
                .map(|&pid| HeardFrom { pid, round: None })
                .collect(),
            current_ballot: Ballot::with(0, config.leader_priority, config.pid),
            leader: None,
            direct_leader: None,
            prepared_by: None,
            rejected_by: None,
            // Optimistic at start, so that the first round elects the top
            // ballot at once instead of every server first electing itself.
            quorum_connected: true,
            heartbeat_timer: LogicalClock::with(config.election_tick_timeout),
            retry_timer: LogicalClock::with(
                (config.election_tick_timeout / RETRIES_PER_ROUND).max(1),
            ),
            outgoing: Vec::with_capacity(config.peers.len() * 2),
        };
        ble.new_round();
        ble
    }

    pub(crate) fn leader(&self) -> Option<Ballot> {
        self.leader
    }

    pub(crate) fn current_ballot(&self) -> Ballot {
        self.current_ballot
    }

    pub(crate) fn is_quorum_connected(&self) -> bool {
        self.quorum_connected
    }

    pub(crate) fn connected_peers(&self) -> &[NodeId] {
        &self.connected
    }

    /// The heartbeat round in progress.
    pub(crate) fn round(&self) -> u32 {
        self.round
    }

    /// This server's round in which a heartbeat message from `pid` last
    /// arrived; `None` if none has, or `pid` is not a peer.
    pub(crate) fn last_heard_round(&self, pid: NodeId) -> Option<u32> {
        self.heard
            .iter()
            .find(|h| h.pid == pid)
            .and_then(|h| h.round)
    }

    pub(crate) fn outgoing_mut(&mut self) -> &mut Vec<BLEMessage> {
        &mut self.outgoing
    }

    /// Counts a tick; at the end of a round returns the new leader, if it changed.
    /// `promise` is the highest ballot Sequence Paxos promised (a takeover must
    /// exceed it); `leading` is the ballot Sequence Paxos leads, if it leads.
    /// `rejected_by` is the highest ballot a follower refused our Prepare for.
    pub(crate) fn tick(
        &mut self,
        promise: Ballot,
        leading: Option<Ballot>,
        rejected_by: Option<Ballot>,
    ) -> Option<Ballot> {
        // Kept until the round ends, whichever tick it arrives on.
        self.rejected_by = self.rejected_by.max(rejected_by);
        if !self.heartbeat_timer.tick_and_check() {
            if self.retry_timer.tick_and_check() {
                self.retry_round();
            }
            return None;
        }
        self.retry_timer.reset();
        let new_leader = self.end_round(promise, leading);
        self.new_round();
        new_leader
    }

    pub(crate) fn handle(&mut self, msg: BLEMessage) {
        // Only peers have an entry, so a stranger's messages record nothing.
        if let Some(h) = self.heard.iter_mut().find(|h| h.pid == msg.from) {
            h.round = Some(self.round);
        }
        match msg.msg {
            HeartbeatMsg::Request(req) => {
                let reply = HeartbeatReply {
                    round: req.round,
                    ballot: self.current_ballot,
                    quorum_connected: self.quorum_connected,
                    leader: self.direct_leader,
                };
                self.send(msg.from, HeartbeatMsg::Reply(reply));
            }
            HeartbeatMsg::Reply(reply) => {
                // A reply speaks for its sender's own ballot; one naming
                // another server's, or a round no server may take, is not a
                // reply a correct peer sends.
                let valid = reply.ballot.pid == msg.from
                    && reply.ballot.is_valid_round()
                    && reply
                        .leader
                        .is_none_or(|l| l.is_valid_round() && l.pid != 0);
                // Replies from an older round or a repeated reply say nothing new.
                if valid
                    && reply.round == self.round
                    && !self.replies.iter().any(|(p, _)| *p == msg.from)
                {
                    self.replies.push((msg.from, reply));
                }
            }
        }
    }

    /// Sequence Paxos promised `n` to another server's Prepare this round.
    pub(crate) fn observe_prepare(&mut self, n: Ballot) {
        if n.pid != self.pid {
            self.prepared_by = self.prepared_by.max(Some(n));
        }
    }

    /// Sets this server's leader priority; a priority above the leader's makes
    /// this server take over at the end of the round (if quorum-connected).
    pub(crate) fn set_priority(&mut self, priority: u32) {
        self.current_ballot.priority = priority;
    }

    /// Raises this server's ballot above every ballot it knows; if it is
    /// quorum-connected it leads from now on and returns its ballot.
    pub(crate) fn try_become_leader(&mut self, promise: Ballot) -> Option<Ballot> {
        if !self.raise_ballot_above(promise) {
            return None;
        }
        if self.quorum_connected {
            self.leader = Some(self.current_ballot);
            self.direct_leader = Some(self.current_ballot);
            Some(self.current_ballot)
        } else {
            None
        }
    }

    /// Makes sure this server's ballot is above the leader it knows and
    /// `promise`. Returns `false`, changing nothing, when no round is left
    /// above them ([`Ballot::MAX_ROUND`]): every ballot that got this far was
    /// checked on the way in, so that takes some four billion elections.
    fn raise_ballot_above(&mut self, promise: Ballot) -> bool {
        let known = self
            .leader
            .map_or(0, |l| l.n)
            .max(promise.n)
            .max(self.current_ballot.n);
        match Ballot::next_round(known) {
            Some(n) => {
                self.current_ballot.n = n;
                true
            }
            None => false,
        }
    }

    fn end_round(&mut self, promise: Ballot, leading: Option<Ballot>) -> Option<Ballot> {
        let replies = std::mem::take(&mut self.replies);
        self.connected.clear();
        self.connected.extend(replies.iter().map(|(p, _)| *p));
        self.quorum_connected = self.quorum.is_read_quorum(replies.len() + 1);

        let mut top = self.quorum_connected.then_some(self.current_ballot);
        for (_, reply) in &replies {
            if reply.quorum_connected {
                top = top.max(Some(reply.ballot));
            }
            top = top.max(reply.leader);
        }
        top = top.max(self.prepared_by.take());

        let previous = self.leader;
        match (top, previous) {
            (Some(t), Some(p)) if t >= p => self.leader = Some(t),
            (Some(t), None) => self.leader = Some(t),
            _ if self.quorum_connected
                && self.is_best_candidate(&replies)
                && self.raise_ballot_above(promise) =>
            {
                // The leader was not heard from, directly or through a peer: take over.
                self.leader = Some(self.current_ballot);
            }
            // Not connected to a quorum, or a better-placed peer will take
            // over: wait for the next round.
            _ => {}
        }
        if let Some(l) = self.leader {
            if self.quorum_connected
                && l.pid != self.pid
                && self.current_ballot.priority > l.priority
            {
                // A server with a higher priority than the leader takes over
                // with the leader's round number, which its priority then outranks.
                self.current_ballot.n = self.current_ballot.n.max(l.n);
                self.leader = Some(self.current_ballot);
            }
        }
        let rejected_by = self.rejected_by.take();
        if self.leader == Some(self.current_ballot)
            && ((self.current_ballot <= promise && leading != Some(self.current_ballot))
                || rejected_by.is_some_and(|r| r > self.current_ballot))
        {
            // Elected with a ballot that Sequence Paxos (here, or at a follower
            // that refused us) already promised past, and no live leader of
            // that ballot was heard: lead with a fresh ballot instead.
            if self.raise_ballot_above(promise.max(rejected_by.unwrap_or_default())) {
                self.leader = Some(self.current_ballot);
            }
        }
        // Report only a leader that is this server or answered this round
        // itself as quorum-connected.
        self.direct_leader = self.leader.filter(|l| {
            (*l == self.current_ballot && self.quorum_connected)
                || replies
                    .iter()
                    .any(|(_, r)| r.ballot == *l && r.quorum_connected)
        });
        // Keep the allocation for the next round.
        self.replies = replies;
        self.replies.clear();
        (self.leader != previous).then_some(self.leader).flatten()
    }

    /// When the leader is gone, only the quorum-connected server with the
    /// highest (priority, pid) among those that also lack a leader takes
    /// over, so that servers whose rounds end together do not all start
    /// competing elections. A peer that reports a live leader will not take
    /// over, so it does not count: deferring to it could leave nobody leading.
    fn is_best_candidate(&self, replies: &[(NodeId, HeartbeatReply)]) -> bool {
        let me = (self.current_ballot.priority, self.pid);
        replies
            .iter()
            .filter(|(_, r)| r.quorum_connected && r.leader.is_none())
            .all(|(pid, r)| (r.ballot.priority, *pid) < me)
    }

    fn retry_round(&mut self) {
        for i in 0..self.peers.len() {
            let to = self.peers[i];
            if !self.replies.iter().any(|(p, _)| *p == to) {
                self.send(
                    to,
                    HeartbeatMsg::Request(HeartbeatRequest { round: self.round }),
                );
            }
        }
    }

    fn new_round(&mut self) {
        self.round = self.round.wrapping_add(1);
        for i in 0..self.peers.len() {
            let to = self.peers[i];
            self.send(
                to,
                HeartbeatMsg::Request(HeartbeatRequest { round: self.round }),
            );
        }
    }

    fn send(&mut self, to: NodeId, msg: HeartbeatMsg) {
        self.outgoing.push(BLEMessage {
            configuration_id: self.configuration_id,
            from: self.pid,
            to,
            msg,
        });
    }
}
