//! A snapshot in a promise, sent in parts.
//!
//! A follower whose decided prefix reaches past a new leader's sends that
//! prefix in its promise; where it compacted it, the promise carries a
//! snapshot. One too large for a message goes the way a leader sends a
//! large snapshot to a follower, in the other direction:
//!
//! ```text
//!  leader L (prepare phase, ballot n)         follower F
//!   Prepare{n, ld}                ──────────▶  split the snapshot once, keep the parts
//!                                 ◀──────────  Promise{n, .., snapshot_follows: Some(end)}
//!                                 ◀──────────  SnapshotPart{n, end, part 0..4 of k}
//!   SnapshotPartAck{n, end, received} ──────▶  send up to 4 past `received`
//!   all k in: install as decided, keeping L's round; Prepare{n, ld = end} ▶
//!                                 ◀──────────  Promise{n, .., log_sync: the rest}
//! ```
//!
//! While the most up-to-date promise's log comes this way, the prepare
//! phase waits for it. A lost part or acknowledgement costs a resend
//! timeout: the follower, waiting in its prepare phase, asks to be
//! prepared again, and the new promise resumes the stream from the parts
//! the leader acknowledged. A leader that gets no new part for a few
//! timeouts drops the parts and prepares every follower again.

use super::{Phase, Proposal, SequencePaxos, SnapshotKey, SnapshotStream, role::IncomingSnapshot};
use crate::{
    ballot::Ballot,
    logging::log,
    messages::{LogSync, PaxosMsg, SnapshotPart, SnapshotPartAck, SnapshotType},
    storage::{Entry, OriginTable, Snapshot, Storage, StorageResult},
    util::NodeId,
};

/// Resend timeouts without a new part after which a leader gives up on a
/// snapshot a follower sends in parts and prepares again.
const MAX_INCOMING_STALLS: u32 = 3;

/// A snapshot to send, split by [`Snapshot::into_parts`] with our
/// `max_message_bytes`.
pub(super) enum Split<T: Entry> {
    /// It fits one message: send it whole, as it was.
    Whole(SnapshotType<T>),
    /// Its parts, in order (at least two), and where a delta starts.
    Parts {
        /// Where a delta starts; `None` for a complete snapshot.
        delta_from: Option<u64>,
        /// The parts.
        parts: Vec<T::Snapshot>,
    },
    /// `into_parts` broke its contract (no parts, or more than a `u32`
    /// counts): nothing we can send stands for the snapshot. Logged.
    Broken,
}

/// What came of installing a snapshot gathered from parts.
pub(super) enum Gathered<T> {
    /// Installed as decided: the proposals of ours it replaced, to propose again.
    Installed(Vec<Proposal<T>>),
    /// Our decided prefix covers it already.
    Covered,
    /// The parts did not make a snapshot we can install.
    Unusable,
}

impl<T, S> SequencePaxos<T, S>
where
    T: Entry,
    S: Storage<T>,
{
    /// Splits a snapshot we are about to send (see [`Split`]).
    pub(super) fn split_snapshot(&self, snapshot: SnapshotType<T>) -> Split<T> {
        let (delta_from, whole) = match snapshot {
            SnapshotType::Complete(s) => (None, s),
            SnapshotType::Delta { from_idx, snapshot } => (Some(from_idx), snapshot),
        };
        let mut parts = whole.into_parts(self.max_message_bytes);
        if parts.len() == 1 {
            let whole = parts.pop().expect("length checked");
            return Split::Whole(match delta_from {
                None => SnapshotType::Complete(whole),
                Some(from_idx) => SnapshotType::Delta {
                    from_idx,
                    snapshot: whole,
                },
            });
        }
        if parts.is_empty() || u32::try_from(parts.len()).is_err() {
            log!(error, self.logger, "a snapshot split into no parts, or too many";
                "parts" => parts.len());
            return Split::Broken;
        }
        Split::Parts { delta_from, parts }
    }

    /// Installs a snapshot gathered from `parts` as decided, keeping the
    /// round our log was accepted in and our entries past it.
    pub(super) fn install_gathered(
        &mut self,
        key: &SnapshotKey,
        parts: Vec<T::Snapshot>,
        origin_table: Option<OriginTable>,
    ) -> StorageResult<Gathered<T>> {
        let Some(snapshot) = T::Snapshot::from_parts(parts) else {
            log!(warn, self.logger, "the parts of a snapshot did not make one";
                "sender_ballot" => key.n.n, "parts" => key.parts);
            return Ok(Gathered::Unusable);
        };
        if key.sync_idx <= self.storage.decided_idx() {
            return Ok(Gathered::Covered);
        }
        let decided_snapshot = match key.delta_from {
            None => SnapshotType::Complete(snapshot),
            Some(from_idx) => SnapshotType::Delta { from_idx, snapshot },
        };
        // Our entries past the snapshot stay as they are: it replaces only
        // the prefix it stands for, all of it decided.
        let sync_idx = key.sync_idx;
        let log_len = self.storage.log_len();
        let suffix = if log_len > sync_idx {
            self.storage.get_entries(sync_idx, log_len)?
        } else {
            Vec::new()
        };
        let suffix_origins = self.storage.origins_of(sync_idx, log_len);
        let stopsign = self
            .storage
            .stopsign()
            .filter(|_| log_len >= sync_idx)
            .cloned();
        let sync = LogSync {
            decided_snapshot: Some(decided_snapshot),
            sync_idx,
            suffix,
            suffix_origins,
            origin_table,
            stopsign,
        };
        let Some(sync) = self.checked_sync(sync) else {
            return Ok(Gathered::Unusable);
        };
        let cut = self.install_sync(None, sync, sync_idx)?;
        Ok(Gathered::Installed(cut))
    }

    /// Follower: if the promise to the leader of `n` would carry a snapshot
    /// that splits into several parts, sends the parts after the promise
    /// instead and returns the end of the prefix the snapshot stands for
    /// (for `Promise::snapshot_follows`), leaving `log_sync` empty. A
    /// stream of the same snapshot to the same ballot goes on from what the
    /// leader acknowledged, without splitting again.
    pub(super) fn snapshot_after_promise(
        &mut self,
        n: Ballot,
        log_sync: &mut Option<LogSync<T>>,
    ) -> Option<u64> {
        let sync = log_sync.as_mut()?;
        let (sync_idx, delta_from) = match sync.decided_snapshot.as_ref()? {
            SnapshotType::Complete(_) => (sync.sync_idx, None),
            SnapshotType::Delta { from_idx, .. } => (sync.sync_idx, Some(*from_idx)),
        };
        let f = self.state.follow_mut();
        let same = f
            .promise_stream
            .as_ref()
            .is_some_and(|(b, s)| *b == n && s.sync_idx == sync_idx && s.delta_from == delta_from);
        if same {
            let (_, stream) = f.promise_stream.as_mut().expect("checked above");
            // Parts sent and not acknowledged may be lost: from the first
            // the leader lacks, again.
            stream.sent = stream.acked;
            stream.progressed = true;
        } else {
            let snapshot = sync.decided_snapshot.take().expect("matched above");
            let parts = match self.split_snapshot(snapshot) {
                Split::Whole(whole) => {
                    sync.decided_snapshot = Some(whole);
                    return None;
                }
                Split::Parts { parts, .. } => parts,
                Split::Broken => {
                    // No way to send the snapshot: it stays out, and the
                    // leader gets no usable log from us (it prepares again).
                    *log_sync = None;
                    return None;
                }
            };
            log!(debug, self.logger, "sending the new leader a snapshot in parts after the promise";
                "leader" => n.pid, "sync_idx" => sync_idx, "parts" => parts.len());
            let origin_table = sync.origin_table.take().unwrap_or_default();
            let stream = SnapshotStream::new(sync_idx, delta_from, parts, origin_table);
            self.state.follow_mut().promise_stream = Some((n, Box::new(stream)));
        }
        *log_sync = None;
        Some(sync_idx)
    }

    /// Follower: sends the leader the next parts of the snapshot that
    /// follows our promise, as many as the window allows.
    pub(super) fn pump_promise_stream(&mut self) {
        let Some((n, stream)) = self.state.follow_mut().promise_stream.as_mut() else {
            return;
        };
        let n = *n;
        while let Some(part) = stream.next_part(n) {
            self.outbox.send(n.pid, PaxosMsg::SnapshotPart(part));
        }
    }

    /// Follower: the leader holds `ack.received` parts of the snapshot that
    /// follows our promise.
    pub(super) fn handle_promise_stream_ack(&mut self, from: NodeId, ack: SnapshotPartAck) {
        if ack.n != self.storage.promise() || ack.n.pid != from || self.phase() != Phase::Prepare {
            return;
        }
        let f = self.state.follow_mut();
        let Some((n, stream)) = f.promise_stream.as_mut() else {
            return;
        };
        if *n != ack.n || stream.sync_idx != ack.sync_idx {
            return;
        }
        let received = (ack.received as usize).min(stream.parts.len());
        if received == stream.parts.len() {
            // The leader has it all: it installs it and prepares again.
            f.promise_stream = None;
            return;
        }
        if received > stream.acked {
            stream.acked = received;
            stream.sent = stream.sent.max(received);
            stream.progressed = true;
        }
        self.pump_promise_stream();
    }

    /// Leader, in its prepare phase: a part of the snapshot a follower
    /// sends after its promise. Gathers the parts in order from one
    /// follower at a time, acknowledging what it holds; once all are in,
    /// installs the snapshot as decided and prepares again.
    pub(super) fn handle_promise_snapshot_part(
        &mut self,
        from: NodeId,
        part: SnapshotPart<T>,
    ) -> StorageResult<()> {
        let Some(key) = SnapshotKey::of(&part) else {
            return Ok(());
        };
        if part.n != self.leader
            || self.phase() != Phase::Prepare
            || from == self.pid
            || self.slot(from).is_none()
            // A snapshot of one part rides in the promise.
            || key.parts < 2
            || key.sync_idx <= self.storage.decided_idx()
        {
            return Ok(());
        }
        let l = self.state.lead_mut();
        let start_new = match &l.incoming_snapshot {
            Some(inc) if inc.from == from && inc.key == key => false,
            // Another follower's snapshot is coming in: it goes on while it
            // makes progress. Any one will do: each raises our decided
            // index, and the promises after it need less.
            Some(inc) if inc.from != from && !inc.parts.is_empty() && inc.stalls == 0 => {
                return Ok(());
            }
            _ => {
                if part.part != 0 {
                    // A part of a stream whose start we lack.
                    self.send_snapshot_ack(from, &key, 0);
                    return Ok(());
                }
                true
            }
        };
        if start_new {
            l.incoming_snapshot = Some(Box::new(IncomingSnapshot {
                from,
                key,
                parts: Vec::new(),
                progressed: true,
                stalls: 0,
            }));
        }
        let inc = l.incoming_snapshot.as_mut().expect("set above");
        if part.part as usize == inc.parts.len() {
            inc.parts.push(part.snapshot);
            inc.progressed = true;
        }
        let received = inc.parts.len() as u32;
        self.send_snapshot_ack(from, &key, received);
        if received < key.parts {
            return Ok(());
        }
        let inc = self
            .state
            .lead_mut()
            .incoming_snapshot
            .take()
            .expect("set above");
        match self.install_gathered(&key, inc.parts, part.origin_table)? {
            Gathered::Installed(mut cut) => {
                log!(debug, self.logger, "installed a follower's snapshot sent after its promise";
                    "from" => from, "parts" => key.parts,
                    "decided_idx" => self.storage.decided_idx());
                cut.append(&mut self.pending);
                self.pending = cut;
            }
            Gathered::Covered | Gathered::Unusable => {}
        }
        // Promises computed against our log before the snapshot are stale:
        // ask for new ones (the follower sends the rest of its log in its).
        self.start_prepare_round()
    }

    /// Leader, in its prepare phase: the most up-to-date promise, `max`
    /// from `from`, said its log starts with a snapshot of the prefix below
    /// `end` that follows in parts. Keeps it as the most up-to-date promise
    /// and waits. If no snapshot is coming in yet (this one, or another
    /// follower's, which serves as well), starts waiting for this one, so
    /// that a follower that never sends it (it crashed) stalls the prepare
    /// phase for a few resend timeouts only.
    pub(super) fn await_promise_snapshot(
        &mut self,
        max: super::PromiseMeta,
        from: NodeId,
        end: u64,
    ) {
        log!(debug, self.logger, "waiting for a snapshot a follower sends after its promise";
            "from" => from, "sync_idx" => end);
        let n = self.leader;
        let l = self.state.lead_mut();
        if let super::LeaderPhase::Prepare { max_promise } = &mut l.phase {
            *max_promise = Some(Box::new((max, from, None)));
        }
        if l.incoming_snapshot.is_none() {
            l.incoming_snapshot = Some(Box::new(IncomingSnapshot {
                from,
                // No part yet: the first that comes names the snapshot.
                key: SnapshotKey {
                    n,
                    sync_idx: end,
                    delta_from: None,
                    parts: 0,
                },
                parts: Vec::new(),
                progressed: true,
                stalls: 0,
            }));
        }
    }

    /// Leader, on the resend timer in its prepare phase: whether a
    /// snapshot a follower sends after its promise stalled for good (no
    /// new part for a few timeouts). Its parts are dropped then, and the
    /// caller prepares every follower again.
    pub(super) fn incoming_snapshot_stalled(&mut self) -> bool {
        let Some(l) = self.state.leader_mut() else {
            return false;
        };
        let Some(inc) = l.incoming_snapshot.as_mut() else {
            return false;
        };
        if std::mem::take(&mut inc.progressed) {
            inc.stalls = 0;
            return false;
        }
        inc.stalls += 1;
        if inc.stalls < MAX_INCOMING_STALLS {
            return false;
        }
        log!(warn, self.logger, "a snapshot a follower sent in parts stalled; preparing again";
            "from" => inc.from, "parts" => inc.key.parts, "received" => inc.parts.len());
        l.incoming_snapshot = None;
        true
    }
}
