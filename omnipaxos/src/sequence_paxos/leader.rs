//! What only a leader does: prepare, adopt the most up-to-date log,
//! synchronise followers, replicate, and decide.

use std::ops::Range;

use super::{
    FollowerProgress, LeaderPhase, LeaderState, NOT_APPENDED, Open, Phase, PromiseMeta, Proposal,
    Role, RoleState, SequencePaxos,
    dedup::{Found, LogIndex},
    promise_snapshot::Split,
};
use crate::{
    ballot::Ballot,
    logging::log,
    messages::{
        AcceptDecide, AcceptSync, Accepted, Decide, DecidedSync, Entries, LogSync, NotAccepted,
        PaxosMsg, Prepare, PrepareReq, Promise, ProposalAck, ProposalForward, SequenceNumber,
        SnapshotPartAck,
    },
    storage::{Entry, OriginIds, Storage, StorageResult},
    util::NodeId,
};

/// Resend timeouts without progress after which a snapshot sent in parts
/// starts over with a new prepare (the follower may have restarted).
const MAX_SNAPSHOT_STALLS: u32 = 3;

impl<T, S> SequencePaxos<T, S>
where
    T: Entry,
    S: Storage<T>,
{
    /// Starts leading ballot `n`: persist the promise, then ask every peer for one.
    pub(super) fn become_leader(&mut self, n: Ballot) -> StorageResult<()> {
        if self.phase() == Phase::Accept && self.role() == Role::Leader {
            // Re-preparing in a higher ballot: the batch gathered in the old
            // one goes into the log now, in the ballot it was gathered in, so
            // that the indices its forward acknowledgements named stay true
            // and the new prepare phase treats it as any accepted entry (kept
            // or cut by the log we adopt). Carried over unsent, it would be
            // appended after the adopted log, even after a stop-sign decided
            // there (soak seed 663).
            self.flush_batch()?;
            if let RoleState::Leader(l) = &mut self.state {
                // What the window held back (see `window_room`) was never
                // sent: it is proposed again, as by a deposed leader
                // (`become_follower_of`), once the new prepare phase ends.
                self.pending.extend(l.batch.take());
                self.recent_forwards.forget_from(self.storage.log_len());
            }
        }
        debug_assert!(
            self.state.leader().is_none_or(|l| l.batch.is_empty()),
            "a batch only fills while replicating"
        );
        log!(info, self.logger, "preparing to lead";
            "n" => n.n, "log_len" => self.storage.log_len(),
            "decided_idx" => self.storage.decided_idx());
        self.storage.set_promise(n)?;
        self.leader = n;
        // A new ballot, a new leader state: only the session numbering
        // carries over (see `sessions`).
        self.keep_sessions();
        let state = LeaderState::new(&self.sessions, self.batch_size);
        self.state = RoleState::Leader(Box::new(state));
        self.reset_reads_for_new_ballot();
        self.start_prepare_round()
    }

    /// Asks every peer for its promise in our ballot, with our log as it is
    /// now; the promises complete the prepare phase.
    pub(super) fn start_prepare_round(&mut self) -> StorageResult<()> {
        let own = PromiseMeta {
            n_accepted: self.storage.accepted_round().unwrap_or_default(),
            accepted_idx: self.storage.accepted_idx(),
            decided_idx: self.storage.decided_idx(),
            snapshot_follows: None,
        };
        self.outbox.close_accepts();
        let l = self.state.lead_mut();
        for p in &mut l.progress {
            *p = FollowerProgress {
                seq: p.seq,
                ..FollowerProgress::default()
            };
        }
        l.phase = LeaderPhase::Prepare {
            max_promise: Some(Box::new((own, self.pid, None))),
        };
        let prepare = self.prepare_msg();
        for i in 0..self.peers.len() {
            let to = self.peers[i];
            self.send(to, PaxosMsg::Prepare(prepare));
        }
        if self.quorum.is_read_quorum(1) {
            self.finish_prepare()?;
        }
        Ok(())
    }

    fn prepare_msg(&self) -> Prepare {
        Prepare {
            n: self.leader,
            decided_idx: self.storage.decided_idx(),
            n_accepted: self.storage.accepted_round().unwrap_or_default(),
            accepted_idx: self.storage.accepted_idx(),
        }
    }

    /// Prepares one follower again (it asked, reconnected, or never answered):
    /// it is left out of replication until it promises and is synchronised.
    pub(super) fn prepare_follower(&mut self, pid: NodeId) {
        let Some(slot) = self.slot(pid) else { return };
        self.outbox.close(Open::Accept(slot));
        let p = &mut self.state.lead_mut().progress[slot];
        *p = FollowerProgress {
            seq: p.seq,
            ..FollowerProgress::default()
        };
        let prepare = self.prepare_msg();
        self.send(pid, PaxosMsg::Prepare(prepare));
    }

    pub(super) fn handle_prepare_req(&mut self, from: NodeId, req: PrepareReq) {
        if req.n <= self.leader {
            self.prepare_follower(from);
        } else {
            // The follower promised a higher ballot (for instance its own,
            // just before it crashed) and will refuse ours: treat it as a
            // refusal, so that leader election outbids that ballot unless a
            // live leader holds it.
            self.rejected_by = self.rejected_by.max(Some(req.n));
        }
    }

    pub(super) fn handle_promise(&mut self, from: NodeId, prom: Promise<T>) -> StorageResult<()> {
        if prom.n != self.leader {
            return Ok(());
        }
        let Some(slot) = self.slot(from) else {
            return Ok(());
        };
        if self.state.lead().progress[slot].promise.is_some() {
            // A follower taking our decided prefix in parts promises again
            // each time it installs some; any other second promise in this
            // ballot is a duplicate.
            return self.decided_parts_answered(slot, prom.decided_idx, prom.accepted_idx);
        }
        let meta = PromiseMeta {
            n_accepted: prom.n_accepted,
            accepted_idx: prom.accepted_idx,
            decided_idx: prom.decided_idx,
            snapshot_follows: prom.snapshot_follows,
        };
        let l = self.state.lead_mut();
        l.progress[slot].promise = Some(meta);
        match &mut l.phase {
            LeaderPhase::Prepare { max_promise } => {
                let better = max_promise.as_ref().is_none_or(|best| {
                    let max = &best.0;
                    (meta.n_accepted, meta.accepted_idx) > (max.n_accepted, max.accepted_idx)
                });
                if better {
                    *max_promise = Some(Box::new((meta, from, prom.log_sync)));
                }
                let promised = 1 + l.progress.iter().filter(|p| p.promise.is_some()).count();
                if self.quorum.is_read_quorum(promised) {
                    self.finish_prepare()?;
                }
            }
            // A late promise: synchronise this follower alone.
            LeaderPhase::Accept { .. } => self.send_accept_sync(slot)?,
        }
        Ok(())
    }

    /// A read quorum promised: adopt the most up-to-date log, accept it in our
    /// ballot, and synchronise every promised follower.
    fn finish_prepare(&mut self) -> StorageResult<()> {
        let max_promise = match &mut self.state.lead_mut().phase {
            LeaderPhase::Prepare { max_promise } => max_promise.take(),
            LeaderPhase::Accept { .. } => None,
        };
        let (max, max_pid, sync) =
            *max_promise.expect("a prepare phase starts with our own promise as the best");
        // The follower computed its suffix against our Prepare, and our log
        // has not changed since: install it where it says.
        let sync = sync
            .filter(|s| max_pid != self.pid && s.sync_idx >= self.storage.decided_idx())
            .and_then(|s| self.checked_sync(s));
        // A follower whose log is ahead of ours always sends some of it. If
        // the promise we adopt has none we can install, it answered one of
        // our earlier prepare rounds (they share the ballot; see the partial
        // case below) and a copy of it came late, or its sender is faulty.
        // Going on with our own log would drop what that follower holds:
        // ask again instead.
        let own = (
            self.storage.accepted_round().unwrap_or_default(),
            self.storage.accepted_idx(),
        );
        if let Some(end) = max.snapshot_follows.filter(|&end| {
            max_pid != self.pid && sync.is_none() && end > self.storage.decided_idx()
        }) {
            // Its log starts with a snapshot too large for the promise,
            // which follows in parts: wait for them
            // (`handle_promise_snapshot_part`), then prepare again.
            self.await_promise_snapshot(max, max_pid, end);
            return Ok(());
        }
        if max_pid != self.pid && (max.n_accepted, max.accepted_idx) > own && sync.is_none() {
            log!(debug, self.logger, "the most up-to-date promise carried no usable log; preparing again";
                "from" => max_pid);
            return self.start_prepare_round();
        }
        // A follower sends at most one chunk of its log in its promise: if
        // the most up-to-date log is longer, this is only its first part.
        let partial = sync.as_ref().is_some_and(|s| {
            s.sync_idx + s.suffix.len() as u64 + u64::from(s.stopsign.is_some()) < max.accepted_idx
        });
        // The adopted promise counts even if its follower asked to be
        // prepared again since (which clears its promise in `progress`): its
        // log, snapshot and all, is what we install (soak seed 1302).
        let decided = self
            .state
            .lead_mut()
            .progress
            .iter()
            .filter_map(|p| p.promise.map(|m| m.decided_idx))
            .fold(self.storage.decided_idx().max(max.decided_idx), u64::max);
        if partial {
            // A follower whose log is far ahead of ours sends it in parts
            // (`promise_sync`): after a log accepted in our round, the next
            // part of it; after a later round's, the next part of its
            // decided prefix, never an undecided entry. Either way our log
            // stays accepted in the round it was: a prefix of a later
            // round's log labelled with that round would let a later leader
            // prefer it over a longer log holding decided entries past it.
            // Then prepare again: the promises, computed against our longer
            // log, carry the next part.
            let own_round = self.storage.accepted_round().unwrap_or_default();
            let Some(sync) = sync.filter(|s| {
                max.n_accepted == own_round || s.sync_idx + s.suffix.len() as u64 <= max.decided_idx
            }) else {
                // No correct follower sends undecided entries of a later
                // round in part: ignore the promise's log and ask again.
                log!(warn, self.logger, "a promise carried part of an undecided log; preparing again";
                    "from" => max_pid);
                return self.start_prepare_round();
            };
            let part_end = sync.sync_idx + sync.suffix.len() as u64;
            let mut cut = self.install_sync(None, sync, decided.min(part_end))?;
            log!(debug, self.logger, "adopting a long log in parts";
                "from" => max_pid, "log_len" => self.storage.log_len(),
                "target" => max.accepted_idx);
            cut.append(&mut self.pending);
            self.pending = cut;
            return self.start_prepare_round();
        }
        let sync = sync.unwrap_or_else(|| LogSync {
            decided_snapshot: None,
            sync_idx: self.storage.log_len(),
            suffix: Vec::new(),
            suffix_origins: OriginIds::new(),
            origin_table: None,
            stopsign: self.storage.stopsign().cloned(),
        });
        let cut = self.install_sync(Some(self.leader), sync, decided)?;
        // The log we lead is settled: which proposals it holds decides which
        // retries are appended.
        self.state.lead_mut().log_index = LogIndex::of(self.storage.origins());
        log!(info, self.logger, "leading";
            "n" => self.leader.n, "adopted_from" => max_pid, "log_len" => self.storage.log_len(),
            "decided_idx" => self.storage.decided_idx(), "cut_own" => cut.len());
        self.state.lead_mut().phase = LeaderPhase::Accept {
            synced_round: max.n_accepted,
            synced_len: self.storage.accepted_idx(),
        };
        for slot in 0..self.peers.len() {
            if self.state.lead().progress[slot].promise.is_some() {
                self.send_accept_sync(slot)?;
            }
        }
        // Proposals that waited for this leadership, our own proposals that
        // the adopted log cut, and ones this server forwarded to an earlier
        // leader that are not known to be in the log we now lead (see
        // `settle_forwards_after_sync`).
        // Forwarded batches that the sync kept are in the log we lead now:
        // ours to decide, at the index they have.
        let mut waiting = cut;
        waiting.append(&mut self.pending);
        for batch in std::mem::take(&mut self.forwarded) {
            match batch.acked {
                None => waiting.extend(batch.proposals),
                Some((_, placed)) => self.placed.extend(
                    batch
                        .proposals
                        .into_iter()
                        .enumerate()
                        .filter(|(k, p)| p.is_tagged() && placed.at(*k) != NOT_APPENDED)
                        .map(|(k, p)| (placed.at(k), p.tag)),
                ),
            }
        }
        self.forwarded_len = 0;
        // A proposal of ours that the adopted log holds already (an earlier
        // leader appended it, or a sync cut it from our log but the log we
        // adopted has it) stays where it is.
        // The same proposal twice among them (it was forwarded, and a sync
        // cut it from our log too) goes in once, under the tag a copy has.
        let mut once: Vec<Proposal<T>> = Vec::with_capacity(waiting.len());
        let mut seen = std::collections::HashMap::new();
        for p in waiting {
            match p.id.and_then(|id| seen.get(&id).copied()) {
                Some(i) => {
                    let kept: &mut Proposal<T> = &mut once[i];
                    if !kept.is_tagged() {
                        kept.tag = p.tag;
                    }
                }
                None => {
                    if let Some(id) = p.id {
                        seen.insert(id, once.len());
                    }
                    once.push(p);
                }
            }
        }
        let mut fresh = Vec::with_capacity(once.len());
        for p in once {
            let found = p.id.and_then(|id| {
                self.state
                    .lead()
                    .find(&id, self.storage.origin_table(), self.storage.log_len())
            });
            match found {
                Some(Found::At(idx)) => {
                    if p.is_tagged() {
                        self.placed.push_back((idx, p.tag));
                    }
                }
                Some(Found::PreviousLife) => {}
                None => fresh.push(p),
            }
        }
        // Those lie among our own placed proposals; keep them in index order.
        self.placed.make_contiguous().sort_unstable();
        for p in fresh {
            self.accept_entry(p)?;
        }
        // Reads and a stop-sign that waited for the prepare phase to end.
        self.start_read_round();
        self.propose_pending_stopsign()?;
        self.flush_batch()?;
        self.update_decided()
    }

    /// Sends one promised follower the part of our log it lacks, opening a new session.
    fn send_accept_sync(&mut self, slot: usize) -> StorageResult<()> {
        let meta = self.state.lead_mut().progress[slot]
            .promise
            .expect("only promised followers are synchronised");
        // Logs accepted in the same round are prefixes of that round's leader
        // log, so such a follower only needs what follows its own log; any
        // other follower is sent everything past its decided index. Its
        // decided prefix is ours too, and it may have compacted all of it
        // (a joiner that took a snapshot reaching past the previous
        // configuration's log, soak seed 1625): a sync from below its
        // decided index could start inside its compacted prefix, which it
        // cannot install.
        let LeaderPhase::Accept {
            synced_round,
            synced_len,
        } = self.state.lead().phase
        else {
            unreachable!("followers are synchronised in the accept phase only")
        };
        let from = if meta.n_accepted == self.leader {
            meta.accepted_idx
        } else if meta.n_accepted == synced_round {
            meta.accepted_idx.min(synced_len).max(meta.decided_idx)
        } else {
            meta.decided_idx
        };
        // A follower far behind gets only the first chunk here; the rest
        // follow as it acknowledges them (`pump_catch_up`).
        // The first chunk replaces the follower's log from the sync index
        // on, so it covers at least all the follower holds: cutting an entry
        // without giving it back could lose a decided one. And it covers the
        // log we adopted when we became leader: a log accepted in our ballot
        // must hold every entry decided before it, or a later leader that
        // adopts it (it has the highest round) would lose them. Only what we
        // appended since may follow in later chunks.
        let chunk_until = meta.accepted_idx.max(synced_len);
        if self.start_decided_parts(slot, meta, chunk_until)? {
            return Ok(());
        }
        let mut log_sync = self.log_sync_from(from, from == meta.decided_idx, Some(chunk_until))?;
        if self.start_snapshot_stream(slot, &mut log_sync) {
            return Ok(());
        }
        let sync_end = log_sync.sync_idx + log_sync.suffix.len() as u64;
        let more = sync_end < self.storage.log_len();
        log!(debug, self.logger, "synchronising a follower";
            "follower" => self.peers[slot], "sync_idx" => log_sync.sync_idx,
            "entries" => log_sync.suffix.len(), "snapshot" => log_sync.decided_snapshot.is_some(),
            "more" => more);
        // A new session: nothing joins a message of the old one.
        self.outbox.close(Open::Accept(slot));
        let p = &mut self.state.lead_mut().progress[slot];
        p.seq.session += 1;
        p.seq.counter = 1;
        p.synced = true;
        p.accepted_idx = None;
        p.catch_up = more.then(|| super::CatchUp {
            next: sync_end,
            in_flight: [sync_end].into(),
            progressed: true,
        });
        let msg = AcceptSync {
            n: self.leader,
            seq_num: p.seq,
            decided_idx: self.storage.decided_idx(),
            forward_acks: self.recent_forwards.acks_for(
                self.peers[slot],
                log_sync.sync_idx,
                self.leader,
            ),
            log_sync,
        };
        let to = self.peers[slot];
        self.send(to, PaxosMsg::AcceptSync(msg));
        self.pump_catch_up(slot)
    }

    /// Sends a follower whose `AcceptSync` would exceed a chunk our decided
    /// prefix in parts instead, if that is where it lags: `DecidedSync`s, the
    /// first from its decided index and reaching at least its log end, each
    /// a chunk, all within our decided prefix. Returns whether it did. The
    /// follower answers the parts with promises (`decided_parts_answered`);
    /// once they are in, what it lacks past its decided index fits the
    /// `AcceptSync`: the undecided part of the log we adopted, and our
    /// entries since.
    fn start_decided_parts(
        &mut self,
        slot: usize,
        meta: PromiseMeta,
        chunk_until: u64,
    ) -> StorageResult<bool> {
        // Every part starts at the follower's decided index (the first at
        // the one it promised with, each later one where the one before
        // ends), even where its log is known to match ours beyond: the
        // follower installs a part only once its decided prefix reaches the
        // part's start, which is what it can check for itself.
        let start = meta.decided_idx;
        let Some(mut part) = self.decided_part(start, true, meta.accepted_idx)? else {
            return Ok(false);
        };
        if self.start_snapshot_stream(slot, &mut part) {
            return Ok(true);
        }
        let end = part.sync_idx + part.suffix.len() as u64;
        if end >= chunk_until {
            // The part is all the follower lacks for its AcceptSync: send that.
            return Ok(false);
        }
        log!(debug, self.logger, "sending a follower the decided log in parts";
            "follower" => self.peers[slot], "from" => start, "target" => chunk_until);
        self.outbox.close(Open::Accept(slot));
        let p = &mut self.state.lead_mut().progress[slot];
        p.synced = false;
        p.accepted_idx = None;
        p.catch_up = None;
        p.decided_parts = Some(super::DecidedParts {
            next: end,
            in_flight: [end].into(),
            until: chunk_until,
            progressed: true,
        });
        self.send_decided_part(slot, part);
        self.pump_decided_parts(slot)?;
        Ok(true)
    }

    fn send_decided_part(&mut self, slot: usize, part: LogSync<T>) {
        let to = self.peers[slot];
        self.send(
            to,
            PaxosMsg::DecidedSync(DecidedSync {
                n: self.leader,
                log_sync: part,
            }),
        );
    }

    /// Sends a follower taking our decided prefix in parts the next ones, as
    /// many as the window allows, stopping before a part that would reach
    /// what its `AcceptSync` must carry.
    fn pump_decided_parts(&mut self, slot: usize) -> StorageResult<()> {
        loop {
            let Some(dp) = &self.state.lead_mut().progress[slot].decided_parts else {
                return Ok(());
            };
            if dp.in_flight.len() >= super::CATCH_UP_WINDOW {
                return Ok(());
            }
            let (next, until) = (dp.next, dp.until);
            if next < self.storage.compacted_idx() {
                // Compacted meanwhile: start over, with the snapshot.
                self.prepare_follower(self.peers[slot]);
                return Ok(());
            }
            // Once the parts before it are in, the follower's log ends, and
            // is decided, exactly at `next`.
            let Some(part) = self.decided_part(next, true, next)? else {
                return Ok(());
            };
            if part.decided_snapshot.is_some() {
                // A delta of the rest of our decided log: it goes once the
                // parts before it are in (see `start_decided_parts`).
                return Ok(());
            }
            let end = part.sync_idx + part.suffix.len() as u64;
            if end >= until {
                return Ok(());
            }
            let dp = self.state.lead_mut().progress[slot]
                .decided_parts
                .as_mut()
                .expect("checked above");
            dp.next = end;
            dp.in_flight.push_back(end);
            self.send_decided_part(slot, part);
        }
    }

    /// A promised follower promised again: it installed parts of our decided
    /// log up to `decided_idx`, and its log ends at `accepted_idx`. Moves its
    /// window on; once every part is in, synchronises it. Anything else is a
    /// duplicate promise.
    fn decided_parts_answered(
        &mut self,
        slot: usize,
        decided_idx: u64,
        accepted_idx: u64,
    ) -> StorageResult<()> {
        if let Some(stream) = &self.state.lead_mut().progress[slot].snapshot_stream {
            if decided_idx < stream.sync_idx {
                return Ok(());
            }
            // The follower installed the snapshot: synchronise it from there.
            self.state.lead_mut().progress[slot].snapshot_stream = None;
            if let Some(meta) = self.state.lead_mut().progress[slot].promise.as_mut() {
                meta.decided_idx = decided_idx;
                meta.accepted_idx = accepted_idx;
            }
            if self.phase() == Phase::Accept {
                self.send_accept_sync(slot)?;
            }
            return Ok(());
        }
        let Some(dp) = self.state.lead_mut().progress[slot].decided_parts.as_mut() else {
            return Ok(());
        };
        if dp.in_flight.front().is_none_or(|&end| decided_idx < end) {
            return Ok(());
        }
        while dp.in_flight.front().is_some_and(|&end| end <= decided_idx) {
            dp.in_flight.pop_front();
        }
        dp.progressed = true;
        let done = dp.in_flight.is_empty();
        if let Some(meta) = self.state.lead_mut().progress[slot].promise.as_mut() {
            // The round its log was accepted in is unchanged.
            meta.decided_idx = decided_idx;
            meta.accepted_idx = accepted_idx;
        }
        if !done {
            return self.pump_decided_parts(slot);
        }
        self.state.lead_mut().progress[slot].decided_parts = None;
        if self.phase() == Phase::Accept {
            self.send_accept_sync(slot)?;
        }
        Ok(())
    }

    /// If `sync` carries a snapshot that splits into several parts
    /// ([`Snapshot::into_parts`] with our `max_message_bytes`), sends the
    /// follower the snapshot in parts instead of `sync`, and returns true.
    /// Otherwise leaves `sync` as it was. The follower installs the snapshot
    /// once it holds every part and promises again; its log is then
    /// synchronised from there.
    fn start_snapshot_stream(&mut self, slot: usize, sync: &mut LogSync<T>) -> bool {
        let Some(snapshot) = sync.decided_snapshot.take() else {
            return false;
        };
        let (delta_from, parts) = match self.split_snapshot(snapshot) {
            Split::Whole(whole) => {
                sync.decided_snapshot = Some(whole);
                return false;
            }
            Split::Parts { delta_from, parts } => (delta_from, parts),
            Split::Broken => {
                // Nothing we can send stands for the snapshot. Try again later.
                self.prepare_follower(self.peers[slot]);
                return true;
            }
        };
        log!(debug, self.logger, "sending a follower a snapshot in parts";
            "follower" => self.peers[slot], "sync_idx" => sync.sync_idx, "parts" => parts.len());
        self.outbox.close(Open::Accept(slot));
        let p = &mut self.state.lead_mut().progress[slot];
        p.synced = false;
        p.accepted_idx = None;
        p.catch_up = None;
        p.decided_parts = None;
        let origin_table = sync.origin_table.take().unwrap_or_default();
        let p = &mut self.state.lead_mut().progress[slot];
        p.snapshot_stream = Some(Box::new(super::SnapshotStream::new(
            sync.sync_idx,
            delta_from,
            parts,
            origin_table,
        )));
        self.pump_snapshot_stream(slot);
        true
    }

    /// Sends a follower receiving a snapshot in parts the next ones, as many
    /// as the window allows.
    fn pump_snapshot_stream(&mut self, slot: usize) {
        let to = self.peers[slot];
        let n = self.leader;
        let Some(stream) = self.state.lead_mut().progress[slot]
            .snapshot_stream
            .as_mut()
        else {
            return;
        };
        while let Some(part) = stream.next_part(n) {
            self.outbox.send(to, PaxosMsg::SnapshotPart(part));
        }
    }

    pub(super) fn handle_snapshot_part_ack(&mut self, from: NodeId, ack: SnapshotPartAck) {
        if ack.n != self.leader {
            return;
        }
        let Some(slot) = self.slot(from) else { return };
        let Some(stream) = self.state.lead_mut().progress[slot]
            .snapshot_stream
            .as_mut()
        else {
            return;
        };
        if ack.sync_idx != stream.sync_idx {
            return;
        }
        let received = (ack.received as usize).min(stream.parts.len());
        if received > stream.acked {
            stream.acked = received;
            stream.sent = stream.sent.max(received);
            stream.progressed = true;
        }
        self.pump_snapshot_stream(slot);
    }

    /// Sends a follower being brought up to date its next chunks, as many as
    /// the window allows, and moves it to plain replication once a chunk
    /// reaches the end of our log (then the stop-sign follows, if we have one).
    /// Chunks are consecutive `AcceptDecide`s of the sync's session, so the
    /// follower appends each at its end and notices a lost one by its number.
    fn pump_catch_up(&mut self, slot: usize) -> StorageResult<()> {
        loop {
            let Some(cu) = &self.state.lead_mut().progress[slot].catch_up else {
                return Ok(());
            };
            let next = cu.next;
            if next >= self.storage.log_len() {
                self.state.lead_mut().progress[slot].catch_up = None;
                log!(debug, self.logger, "follower caught up";
                    "follower" => self.peers[slot], "log_len" => next);
                if let Some(ss) = self.storage.stopsign().cloned() {
                    self.send_stopsign(slot, ss);
                }
                return Ok(());
            }
            if cu.in_flight.len() >= super::CATCH_UP_WINDOW {
                return Ok(());
            }
            if next < self.storage.compacted_idx() {
                // Compacted meanwhile: start over, with the snapshot.
                self.prepare_follower(self.peers[slot]);
                return Ok(());
            }
            let entries = self.read_chunk(next)?;
            let end = next + entries.len() as u64;
            let cu = self.state.lead_mut().progress[slot]
                .catch_up
                .as_mut()
                .expect("checked above");
            cu.next = end;
            cu.in_flight.push_back(end);
            let decided_idx = self.storage.decided_idx();
            let forward_acks =
                std::mem::take(&mut self.state.lead_mut().progress[slot].pending_acks);
            let origins = self.storage.origins_of(next, end);
            self.send_numbered(slot, |n, seq_num| {
                PaxosMsg::AcceptDecide(AcceptDecide {
                    n,
                    seq_num,
                    decided_idx,
                    entries: entries.into(),
                    origins,
                    forward_acks,
                })
            });
            // A full chunk: nothing may join it.
            self.outbox.close(Open::Accept(slot));
        }
    }

    /// Appends a proposal to the leader's log (through the batch) and replicates it.
    pub(super) fn accept_entry(&mut self, mut p: Proposal<T>) -> StorageResult<()> {
        if !self.appends_closed() {
            self.stamp(&mut p);
        }
        self.accept_stamped(p)
    }

    /// [`accept_entry`](Self::accept_entry) for a proposal that keeps the id
    /// it has, or none (another server's, forwarded to us).
    pub(super) fn accept_stamped(&mut self, p: Proposal<T>) -> StorageResult<()> {
        if self.appends_closed() {
            // The stop-sign is the last entry of this configuration: nothing
            // may follow it. Direct appends are refused before this point;
            // what arrives here (a proposal buffered while no leader was
            // known, or one this server forwarded earlier) waits in the
            // buffer, and `into_new_configuration` proposes it in the next
            // configuration.
            self.pending.push(p);
            return Ok(());
        }
        let len = self.state.lead_mut().gather(p);
        if self.batch_goes_now(len) {
            self.flush_batch()?;
        }
        Ok(())
    }

    /// Writes the gathered batch and sends it to every synchronised follower.
    pub(super) fn flush_batch(&mut self) -> StorageResult<()> {
        let l = self.state.lead();
        if l.batch.is_empty() || !matches!(l.phase, LeaderPhase::Accept { .. }) {
            return Ok(());
        }
        debug_assert!(
            self.storage.stopsign().is_none(),
            "nothing is appended after the stop-sign: accept_entry holds entries back once it is in"
        );
        let decided_idx = self.storage.decided_idx();
        let (take, bytes) = self.window_room();
        if take == 0 {
            self.state.lead_mut().held_at = Some(decided_idx);
            return Ok(());
        }
        let l = self.state.lead_mut();
        let held = (take < l.batch.len()).then(|| l.batch.split_off(take));
        l.held_at = held.as_ref().map(|_| decided_idx);
        self.flush_timer.reset();
        let first_idx = self.storage.log_len();
        debug_assert!(
            self.placed.back().is_none_or(|&(idx, _)| idx < first_idx),
            "placed proposals are in the log, so they stay sorted by index"
        );
        let batch = &mut self.state.lead_mut().batch;
        self.placed.extend(
            batch
                .tags
                .drain(..)
                .map(|(pos, tag)| (first_idx + pos as u64, tag)),
        );
        let mut entries = std::mem::take(&mut batch.entries);
        let origins = std::mem::take(&mut batch.origins);
        self.state.lead_mut().note_flushed(&origins, first_idx);
        // One copy of the batch for every follower that takes it, shared by
        // their messages.
        let mut staged = None;
        for slot in 0..self.peers.len() {
            // A follower being caught up gets these in a later chunk.
            if self.state.lead().progress[slot].takes_new_entries() {
                let range = staged
                    .get_or_insert_with(|| self.outbox.stage(&entries))
                    .clone();
                self.push_accept(slot, range, &origins);
            }
        }
        if entries.len() == 1 && !self.defer_leader_sync {
            // The common case with batch_size 1: keep the buffer instead of
            // handing a fresh Vec to storage for every entry.
            let entry = entries.pop().expect("length checked");
            self.state.lead_mut().batch.entries = entries;
            self.storage.append_entry(entry, origins)?;
        } else {
            // The next batch gathers about as many entries as this one did
            // (a driver proposing in rounds), so it starts with that room
            // rather than growing to it by a copy per doubling; bounded,
            // as a waiting batch is, by `max_entries_per_message`.
            let room = entries.len().min(self.max_entries_per_message);
            self.state.lead_mut().batch.entries = Vec::with_capacity(self.batch_size.max(room));
            if self.defer_leader_sync {
                // Sent before it is durable here; counted toward a decision
                // once `sync_storage` has synced it.
                self.storage.append_entries_deferred(entries, origins)?;
            } else {
                self.storage.append_entries(entries, origins)?;
            }
        }
        let l = self.state.lead_mut();
        l.unsettled.push_back((first_idx + take as u64, bytes));
        l.unsettled_bytes += bytes;
        if let Some(held) = held {
            l.batch = held;
        }
        // Our log is the longest in our ballot: no follower accepted more
        // than we sent it. So lengthening it moves the largest of the
        // accepted indices only, and the decided index (the write quorum's
        // smallest) only when a write quorum is this server alone.
        if self.quorum.write <= 1 {
            self.update_decided()?;
        }
        self.propose_waiting_stopsign()
    }

    /// Proposes a stop-sign that waited for the entries the window held
    /// back (see `accept_stopsign`), once they are all written: whichever
    /// flush wrote the last of them.
    fn propose_waiting_stopsign(&mut self) -> StorageResult<()> {
        let Some(l) = self.state.leader_mut() else {
            return Ok(());
        };
        if !l.stop_waits || !l.batch.is_empty() {
            return Ok(());
        }
        l.stop_waits = false;
        match self.pending_stopsign.clone() {
            Some(ss) => self.accept_stopsign(ss),
            None => Ok(()),
        }
    }

    /// How many of the batch's first entries fit the window of undecided
    /// entries now, and their bytes by [`Entry::size_hint`].
    ///
    /// A leader keeps at most `max_entries_per_message` entries, and about
    /// `max_message_bytes` of the entries it appended in its ballot,
    /// undecided; what else is proposed waits in the batch until more is
    /// decided (always at least one entry goes when nothing is undecided).
    /// That bounds what may not be split when a new leader adopts the log:
    /// the undecided part of a log travels whole, in a promise or an
    /// `AcceptSync`, so it must fit one message. It also bounds what a leader
    /// without a quorum piles up in its log: the rest stays in memory, up to
    /// `buffer_size` (see `window_full`).
    fn window_room(&mut self) -> (usize, usize) {
        let decided = self.storage.decided_idx();
        let undecided = self.storage.log_len().saturating_sub(decided);
        let (max_entries, max_bytes) = (self.max_entries_per_message, self.max_message_bytes);
        let l = self.state.lead_mut();
        while let Some(&(end, bytes)) = l.unsettled.front() {
            if end > decided {
                break;
            }
            l.unsettled.pop_front();
            l.unsettled_bytes -= bytes;
        }
        if l.held_at == Some(decided) {
            // Held back, and nothing was decided since: no more room.
            return (0, 0);
        }
        let room = usize::try_from((max_entries as u64).saturating_sub(undecided))
            .unwrap_or(usize::MAX)
            .min(l.batch.len());
        let byte_room = max_bytes.saturating_sub(l.unsettled_bytes);
        let (mut take, mut bytes) = (0, 0usize);
        for entry in &l.batch.entries[..room] {
            let with = bytes.saturating_add(entry.size_hint());
            if with > byte_room && !(take == 0 && undecided == 0) {
                break;
            }
            (take, bytes) = (take + 1, with);
        }
        (take, bytes)
    }

    /// Whether the window holds back so many entries that a new proposal
    /// is refused ([`ProposeErr::BufferFull`](crate::ProposeErr)): more
    /// than `buffer_size` wait in the batch for the window.
    pub(super) fn window_full(&self) -> bool {
        self.state
            .leader()
            .is_some_and(|l| l.window_full(self.buffer_size))
    }

    /// After the decided index moved: writes what the window held back (and
    /// then a stop-sign that waited for it, see `propose_waiting_stopsign`).
    /// Called only when the decided index just rose, so what was held
    /// back then has room now if anything does (`window_room` decides).
    fn release_held(&mut self) -> StorageResult<()> {
        if self.state.lead().held_at.is_none() {
            return Ok(());
        }
        self.flush_batch()
    }

    /// Adds the staged entries `range` to the follower's open `AcceptDecide`
    /// if the driver has not taken it yet, else opens a new one.
    fn push_accept(&mut self, slot: usize, range: Range<usize>, origins: &OriginIds) {
        let decided_idx = self.storage.decided_idx();
        let carried = self.outbox.carried_len(slot) as u64;
        let mut forward_acks =
            std::mem::take(&mut self.state.lead_mut().progress[slot].pending_acks);
        let mut open = false;
        if let Some(msg) = self.open_message(slot) {
            match msg {
                PaxosMsg::AcceptDecide(acc) => {
                    acc.decided_idx = decided_idx;
                    acc.forward_acks.append(&mut forward_acks);
                    let at = acc.entries.len() as u64 + carried;
                    let joined = acc.origins.append_shifted(origins, at);
                    debug_assert!(joined, "the message's ids end before its entries do");
                    open = true;
                }
                PaxosMsg::Decide(dec) => {
                    // Turn the waiting Decide into an AcceptDecide with the same number.
                    *msg = PaxosMsg::AcceptDecide(AcceptDecide {
                        n: dec.n,
                        seq_num: dec.seq_num,
                        decided_idx,
                        entries: Entries::new(),
                        origins: origins.clone(),
                        forward_acks: std::mem::take(&mut forward_acks),
                    });
                    open = true;
                }
                _ => {}
            }
        }
        if !open {
            self.send_numbered(slot, |n, seq_num| {
                PaxosMsg::AcceptDecide(AcceptDecide {
                    n,
                    seq_num,
                    decided_idx,
                    entries: Entries::new(),
                    origins: origins.clone(),
                    forward_acks,
                })
            });
        }
        self.outbox.attach(slot, range);
    }

    /// The accept-phase message to this follower that the driver has not taken yet, if any.
    fn open_message(&mut self, slot: usize) -> Option<&mut PaxosMsg<T>> {
        self.outbox.open_mut(Open::Accept(slot))
    }

    /// Sends the follower the next message of its session, and keeps it open
    /// so that what follows can join it.
    pub(super) fn send_numbered(
        &mut self,
        slot: usize,
        make: impl FnOnce(Ballot, SequenceNumber) -> PaxosMsg<T>,
    ) {
        let p = &mut self.state.lead_mut().progress[slot];
        p.seq.counter += 1;
        let msg = make(self.leader, p.seq);
        let to = self.peers[slot];
        self.outbox.send_open(Open::Accept(slot), to, msg);
    }

    pub(super) fn handle_accepted(&mut self, from: NodeId, acc: Accepted) -> StorageResult<()> {
        if self.phase() != Phase::Accept || acc.n != self.leader {
            return Ok(());
        }
        let Some(slot) = self.slot(from) else {
            return Ok(());
        };
        let p = &mut self.state.lead_mut().progress[slot];
        if !p.synced {
            return Ok(());
        }
        // Clamped: a follower cannot have accepted more than we sent it.
        let idx = acc.accepted_idx.min(self.storage.accepted_idx());
        p.accepted_idx = Some(p.accepted_idx.map_or(idx, |a| a.max(idx)));
        if let Some(cu) = &mut p.catch_up {
            let before = cu.in_flight.len();
            while cu.in_flight.front().is_some_and(|&end| end <= idx) {
                cu.in_flight.pop_front();
            }
            if cu.in_flight.len() < before {
                cu.progressed = true;
                self.pump_catch_up(slot)?;
            }
        }
        self.update_decided()
    }

    /// Decides the highest index that a write quorum accepted in this ballot,
    /// and tells the followers.
    pub(super) fn update_decided(&mut self) -> StorageResult<()> {
        self.scratch.clear();
        // Our own copy counts once it is durable (see `defer_leader_sync`).
        self.scratch.push(self.storage.durable_accepted_idx());
        self.scratch.extend(
            self.state
                .lead()
                .progress
                .iter()
                .filter_map(|p| p.accepted_idx),
        );
        if !self.quorum.is_write_quorum(self.scratch.len()) {
            return Ok(());
        }
        self.scratch.sort_unstable_by(|a, b| b.cmp(a));
        let candidate = self.scratch[self.quorum.write - 1];
        if !self
            .storage
            .raise_decided_idx(candidate, self.defer_leader_sync)?
        {
            return Ok(());
        }
        for slot in 0..self.peers.len() {
            if self.state.lead().progress[slot].synced {
                self.push_decide(slot);
            }
        }
        self.release_held()
    }

    /// Tells a follower the decided index, in its open message if there is one.
    fn push_decide(&mut self, slot: usize) {
        let decided_idx = self.storage.decided_idx();
        match self.open_message(slot) {
            Some(PaxosMsg::AcceptDecide(acc)) => acc.decided_idx = decided_idx,
            Some(PaxosMsg::Decide(dec)) => dec.decided_idx = decided_idx,
            _ => self.send_numbered(slot, |n, seq_num| {
                PaxosMsg::Decide(Decide {
                    n,
                    seq_num,
                    decided_idx,
                })
            }),
        }
    }

    pub(super) fn handle_forward(
        &mut self,
        from: NodeId,
        fwd: ProposalForward<T>,
    ) -> StorageResult<()> {
        // Only a leader that is replicating can give the batch a place in the
        // log; anyone else ignores it and the follower retries.
        // A forward that arrives after the stop-sign is not appended and not
        // acknowledged: the configuration takes no more entries.
        if self.phase() != Phase::Accept
            || self.slot(from).is_none()
            || self.appends_closed()
            || self.window_full()
        {
            return Ok(());
        }
        // One id per entry, each naming a server of this configuration
        // (a deposed leader forwards the proposals of others it had
        // gathered); anything else comes from no correct server.
        let ids = &fwd.origins;
        let well_formed = ids.is_empty()
            || (ids.count() == fwd.entries.len() as u64
                && ids.end() == fwd.entries.len() as u64
                && ids
                    .runs()
                    .iter()
                    .all(|r| r.first.origin == self.pid || self.slot(r.first.origin).is_some()));
        if !well_formed {
            log!(warn, self.logger, "a forward's ids do not name its sender's entries";
                "from" => from);
            return Ok(());
        }
        if let Some(first_idx) = self.recent_forwards.first_idx(from, fwd.id) {
            // A retry of a batch this leadership appended: acknowledge it again.
            let ack = ProposalAck {
                n: self.leader,
                id: fwd.id,
                first_idx,
                placed: Vec::new(),
            };
            self.send(from, PaxosMsg::ProposalAck(ack));
            return Ok(());
        }
        // Each proposal goes where the log has it already (an earlier
        // leader appended it), or at the end.
        let mut placed = Vec::with_capacity(fwd.entries.len());
        let mut fresh = Vec::with_capacity(fwd.entries.len());
        // A proposal twice in one forward goes in once too.
        let mut this_forward = std::collections::HashMap::new();
        for (k, entry) in fwd.entries.into_iter().enumerate() {
            let id = ids.get(k as u64);
            let found = id.and_then(|id| {
                this_forward
                    .get(&id)
                    .map(|&idx| Found::At(idx))
                    .or_else(|| {
                        self.state.lead().find(
                            &id,
                            self.storage.origin_table(),
                            self.storage.log_len(),
                        )
                    })
            });
            match found {
                Some(Found::At(idx)) => placed.push(idx),
                // The origin started again since: a proposal of its earlier
                // life is appended at most once, so not now.
                Some(Found::PreviousLife) => placed.push(NOT_APPENDED),
                None => {
                    let idx = self.storage.log_len()
                        + (self.state.lead().batch.len() + fresh.len()) as u64;
                    if let Some(id) = id {
                        this_forward.insert(id, idx);
                    }
                    placed.push(idx);
                    fresh.push(Proposal::untagged(entry, id));
                }
            }
        }
        let Some(&first_idx) = placed.first() else {
            return Ok(());
        };
        let in_order = placed.windows(2).all(|w| w[0].checked_add(1) == Some(w[1]))
            && first_idx != NOT_APPENDED;
        let all_fresh = fresh.len() == placed.len();
        let ack = ProposalAck {
            n: self.leader,
            id: fwd.id,
            first_idx,
            placed: if in_order { Vec::new() } else { placed },
        };
        if !fresh.is_empty() {
            if let Some(slot) = self
                .slot(from)
                .filter(|&s| self.state.lead_mut().progress[s].synced)
            {
                self.state.lead_mut().progress[slot]
                    .pending_acks
                    .push(ack.clone());
            }
        }
        let len = fresh.len() as u64;
        for p in fresh {
            self.accept_stamped(p)?;
        }
        if in_order && all_fresh {
            self.recent_forwards.insert(from, fwd.id, first_idx, len);
        }
        self.send(from, PaxosMsg::ProposalAck(ack));
        Ok(())
    }

    pub(super) fn handle_not_accepted(&mut self, na: NotAccepted) {
        // A follower promised a higher ballot. If that ballot's leader is alive
        // and quorum-connected, leader election hears of it and hands it to us;
        // if it is gone (its followers restarted still promising it), leader
        // election learns of it here and outbids it at the end of the round.
        if na.n > self.leader {
            self.rejected_by = self.rejected_by.max(Some(na.n));
        }
    }

    /// The highest ballot that refused this leader since the last call.
    pub(crate) fn take_rejected_by(&mut self) -> Option<Ballot> {
        self.rejected_by.take()
    }

    /// Sends again what may have been lost: Prepare to peers that did not
    /// promise, and a Decide to every synchronised follower, which also lets a
    /// follower that missed the last message notice the gap.
    pub(super) fn resend_as_leader(&mut self) {
        if self.phase() == Phase::Prepare && self.incoming_snapshot_stalled() {
            let r = self.start_prepare_round();
            self.guard(r);
            return;
        }
        let prepare = self.prepare_msg();
        for slot in 0..self.peers.len() {
            let to = self.peers[slot];
            if self.state.lead().progress[slot].promise.is_none() {
                self.send(to, PaxosMsg::Prepare(prepare));
            } else if let Some(stream) = &mut self.state.lead_mut().progress[slot].snapshot_stream {
                if std::mem::take(&mut stream.progressed) {
                    stream.stalls = 0;
                } else if stream.stalls < MAX_SNAPSHOT_STALLS {
                    // No part acknowledged for a whole timeout: one was
                    // lost (the follower takes them in order only), or its
                    // acknowledgement was. Send again from the first the
                    // follower lacks.
                    stream.stalls += 1;
                    stream.sent = stream.acked;
                    self.pump_snapshot_stream(slot);
                } else {
                    self.prepare_follower(to);
                }
            } else if let Some(dp) = &mut self.state.lead_mut().progress[slot].decided_parts {
                if !std::mem::take(&mut dp.progressed) {
                    // A whole timeout without the promise that answers the
                    // part: prepare the follower again; it resumes from
                    // what it holds.
                    self.prepare_follower(to);
                }
            } else if self.phase() == Phase::Accept && self.state.lead_mut().progress[slot].synced {
                if let Some(cu) = &mut self.state.lead_mut().progress[slot].catch_up {
                    if !std::mem::take(&mut cu.progressed) {
                        // No chunk acknowledged for a whole timeout: one
                        // was lost, or its acknowledgement. Prepare the
                        // follower again; it resumes from what it holds.
                        self.prepare_follower(to);
                        continue;
                    }
                }
                self.outbox.close(Open::Accept(slot));
                self.push_decide(slot);
            }
        }
    }
}
