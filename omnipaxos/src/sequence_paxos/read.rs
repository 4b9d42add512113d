//! Linearizable reads that write nothing to the log.
//!
//! ```text
//!  request_read() on the leader, or ReadRequest from a follower
//!    (one message per read, repeated only on the resend timer; the leader
//!    queues a request once, and at most buffer_size reads)
//!    -> queued; the next confirmation round takes every queued read
//!  round: read point = max(decided index, log length adopted at prepare);
//!         ReadConfirm{n, round} to every follower
//!  a write quorum (counting the leader) answers ReadAck{n, round}
//!    -> every read of the round completes with that read point
//!  once the stop-sign is in the log, no round opens: reads belong to the
//!  next configuration
//! ```
//!
//! Why this is linearizable: every entry decided before the read began is in
//! the log the leader adopted at prepare or was decided by the leader itself,
//! so it lies below the read point. And the leader is still the leader when
//! the round completes: a newer leader needs promises from a read quorum,
//! which meets every write quorum, and a server that promised a newer ballot
//! does not acknowledge. A deposed leader that still believes it leads can
//! therefore never complete a read, partial connectivity or not.
//!
//! Reconfiguration: once the stop-sign is decided, the next configuration
//! decides new entries that no read point of this one covers. A leader that
//! decided the stop-sign, or adopted it at prepare, has it in its log, and a
//! leader without it in its log cannot be the current one (the stop-sign's
//! deciding quorum meets its confirmation quorum). So a leader opens no
//! confirmation round once the stop-sign is in its log: a read queued then
//! may have begun after the next configuration decided something. A round
//! already in flight completes: its reads began before the stop-sign was
//! appended, so before the next configuration decided anything.

use super::{Phase, Role, SequencePaxos};
use crate::{
    messages::{ForwardId, PaxosMsg, ReadAck, ReadConfirm, ReadRequest, ReadResponse},
    storage::{Entry, Storage},
    util::NodeId,
};
use std::collections::HashSet;

/// Names a linearizable read started by [`OmniPaxos::request_read`](crate::OmniPaxos::request_read).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ReadId(pub u64);

/// Why a linearizable read was not started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// `buffer_size` reads are waiting already; retry once some complete.
    #[error("too many reads are waiting")]
    BufferFull,
    /// A storage write failed earlier and the server has stopped acting.
    #[error("the node stopped after a storage failure")]
    StorageFailure,
    /// This configuration is ending (its stop-sign is in the log): read
    /// from the next configuration.
    #[error("the configuration is being replaced; read from the next one")]
    Reconfigured,
}

/// A read waiting for a confirmation round: who asked, and its id there.
#[derive(Clone, Copy, Debug)]
struct PendingRead {
    origin: NodeId,
    id: ReadKey,
}

/// How a pending read is named: this server's own reads by their
/// [`ReadId`], a follower's by the id on its request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReadKey {
    Own(u64),
    Remote(ForwardId),
}

/// One of our reads that the leader has not answered yet.
#[derive(Clone, Copy, Debug)]
struct Requested {
    id: u64,
    /// The id of the request on the wire, set when it is (re)sent under the
    /// current synchronisation; answers to older requests do not match it.
    wire: Option<ForwardId>,
}

/// The leader's confirmation round in flight.
#[derive(Debug)]
struct ReadRound {
    round: u64,
    read_idx: u64,
    /// Followers that acknowledged, by slot.
    acked: Vec<bool>,
    reads: Vec<PendingRead>,
}

/// Both roles' state for linearizable reads.
#[derive(Debug, Default)]
pub(super) struct Reads {
    next_id: u64,
    /// Leader: reads waiting for the next round.
    queued: Vec<PendingRead>,
    /// Leader: the round in flight.
    in_flight: Option<ReadRound>,
    next_round: u64,
    /// Leader: the followers' requests queued or in flight, to queue a
    /// retried request once.
    remote: HashSet<(NodeId, ForwardId)>,
    /// Follower: our reads the leader has not answered, sent again on resend.
    requested: Vec<Requested>,
    /// Numbers our read requests within a synchronisation session.
    next_wire_seq: u64,
    /// Reads of this server that completed: `(id, read point)`.
    completed: Vec<(ReadId, u64)>,
}

impl<T, S> SequencePaxos<T, S>
where
    T: Entry,
    S: Storage<T>,
{
    /// Starts a linearizable read; its read point comes out of
    /// [`take_read_points`](Self::take_read_points).
    pub(crate) fn request_read(&mut self) -> Result<ReadId, ReadError> {
        if self.is_halted() {
            return Err(ReadError::StorageFailure);
        }
        if self.takes_no_entries() {
            return Err(ReadError::Reconfigured);
        }
        let r = &mut self.reads;
        if r.queued.len() + r.requested.len() + r.in_flight.as_ref().map_or(0, |f| f.reads.len())
            >= self.buffer_size
        {
            return Err(ReadError::BufferFull);
        }
        r.next_id += 1;
        let id = r.next_id;
        if self.role() == Role::Leader {
            self.reads.queued.push(PendingRead {
                origin: self.pid,
                id: ReadKey::Own(id),
            });
            self.start_read_round();
        } else {
            // Only the new request goes out now; the unanswered ones wait for
            // the resend timer, so a read costs one message, not one per read
            // still waiting.
            self.reads.requested.push(Requested { id, wire: None });
            let last = self.reads.requested.len() - 1;
            self.send_read_request(last);
        }
        Ok(ReadId(id))
    }

    /// Moves the completed reads `(id, read point)` into `buf`.
    pub(crate) fn take_read_points(&mut self, buf: &mut Vec<(ReadId, u64)>) {
        buf.append(&mut self.reads.completed);
    }

    pub(super) fn handle_read_request(&mut self, from: NodeId, req: ReadRequest) {
        if self.slot(from).is_none() {
            return;
        }
        // A retried request is queued once. The queue, with the round in
        // flight, holds at most `buffer_size` reads: past that a request is
        // dropped, and the follower asks again on its resend timer.
        let waiting =
            self.reads.queued.len() + self.reads.in_flight.as_ref().map_or(0, |f| f.reads.len());
        if waiting >= self.buffer_size || !self.reads.remote.insert((from, req.id)) {
            return;
        }
        self.reads.queued.push(PendingRead {
            origin: from,
            id: ReadKey::Remote(req.id),
        });
        self.start_read_round();
    }

    /// Opens a confirmation round for the queued reads, unless one is in
    /// flight (the next opens when it completes) or the prepare phase is not over.
    pub(super) fn start_read_round(&mut self) {
        if self.reads.in_flight.is_some()
            || self.reads.queued.is_empty()
            || self.phase() != Phase::Accept
            || self.takes_no_entries()
        {
            return;
        }
        self.reads.next_round += 1;
        let round = ReadRound {
            round: self.reads.next_round,
            read_idx: self.storage.decided_idx().max(self.synced_len()),
            acked: vec![false; self.peers.len()],
            reads: std::mem::take(&mut self.reads.queued),
        };
        let msg = ReadConfirm {
            n: self.leader,
            round: round.round,
        };
        self.reads.in_flight = Some(round);
        for i in 0..self.peers.len() {
            let to = self.peers[i];
            self.send(to, PaxosMsg::ReadConfirm(msg));
        }
        self.complete_read_round_if_confirmed();
    }

    pub(super) fn handle_read_confirm(&mut self, from: NodeId, c: ReadConfirm) {
        // Only a server that still promises exactly this leader's ballot vouches for it.
        if c.n == self.storage.promise() && c.n.pid == from {
            self.send(
                from,
                PaxosMsg::ReadAck(ReadAck {
                    n: c.n,
                    round: c.round,
                }),
            );
        }
    }

    pub(super) fn handle_read_ack(&mut self, from: NodeId, ack: ReadAck) {
        if ack.n != self.leader {
            return;
        }
        let Some(slot) = self.slot(from) else { return };
        match &mut self.reads.in_flight {
            Some(round) if round.round == ack.round => round.acked[slot] = true,
            _ => return,
        }
        self.complete_read_round_if_confirmed();
    }

    fn complete_read_round_if_confirmed(&mut self) {
        let Some(round) = &self.reads.in_flight else {
            return;
        };
        let confirmed = 1 + round.acked.iter().filter(|a| **a).count();
        if !self.quorum.is_write_quorum(confirmed) {
            return;
        }
        let round = self.reads.in_flight.take().expect("checked above");
        for read in round.reads {
            match read.id {
                ReadKey::Own(id) => self.reads.completed.push((ReadId(id), round.read_idx)),
                ReadKey::Remote(id) => {
                    self.reads.remote.remove(&(read.origin, id));
                    let msg = ReadResponse {
                        id,
                        read_idx: round.read_idx,
                    };
                    self.send(read.origin, PaxosMsg::ReadResponse(msg));
                }
            }
        }
        self.start_read_round();
    }

    pub(super) fn handle_read_response(&mut self, from: NodeId, resp: ReadResponse) {
        if from != self.leader.pid {
            return;
        }
        if let Some(pos) = self
            .reads
            .requested
            .iter()
            .position(|r| r.wire == Some(resp.id))
        {
            let read = self.reads.requested.swap_remove(pos);
            self.reads.completed.push((ReadId(read.id), resp.read_idx));
        }
    }

    /// On the resend timer: a leader asks again for the acknowledgements of
    /// its round; a follower sends its unanswered requests to the current leader.
    pub(super) fn resend_reads(&mut self) {
        match self.role() {
            Role::Leader => {
                if let Some(round) = &self.reads.in_flight {
                    let msg = ReadConfirm {
                        n: self.leader,
                        round: round.round,
                    };
                    let missing: Vec<usize> =
                        (0..self.peers.len()).filter(|&i| !round.acked[i]).collect();
                    for i in missing {
                        let to = self.peers[i];
                        self.send(to, PaxosMsg::ReadConfirm(msg));
                    }
                }
            }
            Role::Follower => self.send_read_requests(),
        }
    }

    /// Follower, synchronised with a leader: (re)sends every unanswered read
    /// request.
    fn send_read_requests(&mut self) {
        for i in 0..self.reads.requested.len() {
            self.send_read_request(i);
        }
    }

    /// Follower, synchronised with a leader: (re)sends the `i`-th unanswered
    /// read request. A request gets a new wire id whenever the
    /// synchronisation changed since it was last sent, so the answer to a
    /// request of an earlier incarnation of this server cannot match it.
    fn send_read_request(&mut self, i: usize) {
        if self.role() != Role::Follower || self.phase() != Phase::Accept {
            return;
        }
        let (ballot, session, to) = (
            self.leader,
            self.state.follow().last_seq.session,
            self.leader.pid,
        );
        let current = self.reads.requested[i]
            .wire
            .filter(|w| w.ballot == ballot && w.session == session);
        let wire = match current {
            Some(w) => w,
            None => {
                self.reads.next_wire_seq += 1;
                let w = ForwardId {
                    ballot,
                    session,
                    seq: self.reads.next_wire_seq,
                };
                self.reads.requested[i].wire = Some(w);
                w
            }
        };
        self.send(to, PaxosMsg::ReadRequest(ReadRequest { id: wire }));
    }

    /// Leadership changed: reads in a round of the old ballot can never be
    /// confirmed. This server's own are asked for again under the new leader;
    /// a follower's retries its request on its own.
    pub(super) fn reset_reads_for_new_ballot(&mut self) {
        self.reads.remote.clear();
        let mut stranded = std::mem::take(&mut self.reads.queued);
        if let Some(round) = self.reads.in_flight.take() {
            stranded.extend(round.reads);
        }
        for read in stranded {
            if let ReadKey::Own(id) = read.id {
                if self.role() == Role::Leader {
                    self.reads.queued.push(read);
                } else {
                    self.reads.requested.push(Requested { id, wire: None });
                }
            }
        }
        if self.role() == Role::Leader {
            // Our own earlier requests, made as a follower, are now ours to confirm.
            for r in std::mem::take(&mut self.reads.requested) {
                self.reads.queued.push(PendingRead {
                    origin: self.pid,
                    id: ReadKey::Own(r.id),
                });
            }
        }
    }
}
