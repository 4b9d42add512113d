//! What only a follower does: promise, install the leader's log, accept,
//! learn decisions, and forward proposals.

use super::{
    ForwardedBatch, NOT_APPENDED, Open, Phase, Placed, Proposal, SequencePaxos, SnapshotKey,
    promise_snapshot::Gathered,
};
use crate::{
    ballot::Ballot,
    logging::log,
    messages::{
        AcceptDecide, AcceptSync, Accepted, Decide, DecidedSync, ForwardId, LogSync, NotAccepted,
        PaxosMsg, Prepare, PrepareReq, Promise, ProposalAck, ProposalForward, SequenceNumber,
        SnapshotPart, SnapshotPartAck, SnapshotType,
    },
    storage::{Entry, OriginIds, Storage, StorageResult},
    util::NodeId,
};

/// What a follower makes of a sequence number from its leader.
enum SeqCheck {
    /// The next message: handle it.
    Next,
    /// Already seen (a duplicate) or from an older session: ignore it.
    Old,
    /// A message was lost: ask to be synchronised again.
    Gap,
}

impl<T, S> SequencePaxos<T, S>
where
    T: Entry,
    S: Storage<T>,
{
    pub(super) fn handle_prepare(&mut self, from: NodeId, prep: Prepare) -> StorageResult<()> {
        let promise = self.storage.promise();
        if prep.n < promise || prep.n.pid != from {
            if prep.n < promise {
                let msg = self.not_accepted();
                self.send(from, msg);
            }
            return Ok(());
        }
        let higher = prep.n > promise;
        if higher {
            log!(debug, self.logger, "promised"; "n" => prep.n.n, "leader" => from);
            self.storage.set_promise(prep.n)?;
        }
        // A leader becomes a follower here.
        self.become_follower_of(prep.n);
        let f = self.state.follow_mut();
        if higher {
            // Sequence numbers are per ballot.
            f.last_seq = SequenceNumber::default();
        }
        f.phase = Phase::Prepare;
        let n_accepted = self.storage.accepted_round().unwrap_or_default();
        let accepted_idx = self.storage.accepted_idx();
        // Send what the leader may lack: after a higher accepted round, our log
        // beyond its decided prefix; in the same round, what we have past its end.
        let sync_from = if n_accepted > prep.n_accepted {
            Some(prep.decided_idx)
        } else if n_accepted == prep.n_accepted && accepted_idx > prep.accepted_idx {
            Some(prep.accepted_idx)
        } else {
            None
        };
        let mut log_sync = match sync_from {
            // A later round's log holds every entry a leader decided, so a
            // correct leader's decided index is within our log; a larger one
            // (from a buggy peer) leaves nothing of ours to send past it.
            Some(idx) => {
                let from = idx.min(accepted_idx);
                let same_round = n_accepted == prep.n_accepted;
                Some(self.promise_sync(from, from == prep.decided_idx, same_round, &prep)?)
            }
            None => None,
        };
        let snapshot_follows = self.snapshot_after_promise(prep.n, &mut log_sync);
        if snapshot_follows.is_none() {
            self.state.follow_mut().promise_stream = None;
        }
        let promise = Promise {
            n: prep.n,
            n_accepted,
            decided_idx: self.storage.decided_idx(),
            accepted_idx,
            log_sync,
            snapshot_follows,
        };
        self.send(from, PaxosMsg::Promise(promise));
        self.pump_promise_stream();
        Ok(())
    }

    /// What a promise carries of our log from `from` on, for a leader whose
    /// log is shorter: at most one chunk where that is safe, else all of it.
    ///
    /// After the leader's own round, its log is a prefix of ours, so any part
    /// of what follows extends it. After a later round, the leader must get
    /// the undecided rest in one piece (a part of it would leave the leader
    /// with a log that a later leader might adopt while it lacks decided
    /// entries), but our decided prefix may come in parts: decided entries
    /// are the same in every log, and each part reaches the leader's log end,
    /// so installing it cuts nothing the leader held.
    fn promise_sync(
        &self,
        from: u64,
        from_is_leaders_decided: bool,
        same_round: bool,
        prep: &Prepare,
    ) -> StorageResult<LogSync<T>> {
        if same_round {
            return self.log_sync_from(from, from_is_leaders_decided, Some(from));
        }
        let decided_end = self.storage.decided_idx().min(self.storage.log_len());
        if let Some(part) = self.decided_part(from, from_is_leaders_decided, prep.accepted_idx)? {
            // A part reaching our decided end goes alone too if the
            // undecided rest would make it longer than a chunk: that rest
            // comes in the next promise, on its own (the leader's window
            // keeps it within a chunk).
            let with_rest = self.storage.log_len().saturating_sub(part.sync_idx);
            if part.sync_idx + (part.suffix.len() as u64) < decided_end
                || with_rest > self.max_entries_per_message as u64
            {
                return Ok(part);
            }
        }
        self.log_sync_from(from, from_is_leaders_decided, None)
    }

    /// A part of the leader's decided log (see [`DecidedSync`]): install it
    /// as decided, keeping the round our log was accepted in, and promise
    /// again with our longer log. A part that comes ahead of one still
    /// missing is held (at most [`MAX_EARLY`](super::MAX_EARLY) of them) and
    /// installed once the missing one is in.
    pub(super) fn handle_decided_sync(
        &mut self,
        from: NodeId,
        part: DecidedSync<T>,
    ) -> StorageResult<()> {
        if part.n != self.storage.promise() || self.phase() != Phase::Prepare || part.n.pid != from
        {
            return Ok(());
        }
        let n = part.n;
        // The leader synchronises us: it needs nothing more from us.
        self.state.follow_mut().promise_stream = None;
        self.state.follow_mut().early_parts.retain(|(b, _)| *b == n);
        let log_sync = part.log_sync;
        let Some(end) = log_sync.sync_idx.checked_add(log_sync.suffix.len() as u64) else {
            return Ok(());
        };
        if end <= self.storage.decided_idx() && log_sync.decided_snapshot.is_none() {
            // A delayed copy of a part we installed: nothing new.
            return Ok(());
        }
        if self.part_is_early(&log_sync) {
            let held = self
                .state
                .follow_mut()
                .early_parts
                .iter()
                .any(|(_, s)| s.sync_idx == log_sync.sync_idx);
            if !held && self.state.follow_mut().early_parts.len() < super::MAX_EARLY {
                self.state.follow_mut().early_parts.push((n, log_sync));
            }
            return Ok(());
        }
        if !self.install_decided_part(from, n, log_sync)? {
            return Ok(());
        }
        // Parts that came early and continue what we hold now.
        while let Some(i) = self
            .state
            .follow()
            .early_parts
            .iter()
            .position(|(_, s)| !self.part_is_early(s))
        {
            let (_, next) = self.state.follow_mut().early_parts.swap_remove(i);
            let next_end = next.sync_idx + next.suffix.len() as u64;
            if next_end > self.storage.decided_idx() && !self.install_decided_part(from, n, next)? {
                return Ok(());
            }
        }
        self.send_promise_again(n);
        Ok(())
    }

    /// A part of a snapshot the leader sends in parts (see [`SnapshotPart`]):
    /// gather the parts in order, acknowledging what we hold, and once all
    /// are in, install the snapshot as decided (keeping the round our log
    /// was accepted in, and our entries past it) and promise again.
    pub(super) fn handle_snapshot_part(
        &mut self,
        from: NodeId,
        part: SnapshotPart<T>,
    ) -> StorageResult<()> {
        let Some(key) = SnapshotKey::of(&part) else {
            return Ok(());
        };
        if part.n != self.storage.promise() || self.phase() != Phase::Prepare || part.n.pid != from
        {
            return Ok(());
        }
        self.state.follow_mut().promise_stream = None;
        let gathering = match self.state.follow_mut().snapshot_parts.take() {
            Some((k, parts)) if k == key => Some(parts),
            _ if part.part == 0 => Some(Vec::new()),
            // A part of a stream whose start we missed: we hold none of it.
            _ => None,
        };
        let Some(mut gathered) = gathering else {
            self.send_snapshot_ack(from, &key, 0);
            return Ok(());
        };
        let origin_table = part.origin_table;
        if part.part as usize == gathered.len() {
            gathered.push(part.snapshot);
        }
        let received = gathered.len() as u32;
        self.send_snapshot_ack(from, &key, received);
        if received < key.parts {
            self.state.follow_mut().snapshot_parts = Some((key, gathered));
            return Ok(());
        }
        match self.install_gathered(&key, gathered, origin_table)? {
            Gathered::Installed(mut cut) => {
                log!(debug, self.logger, "installed a snapshot sent in parts";
                    "leader" => from, "parts" => key.parts,
                    "decided_idx" => self.storage.decided_idx());
                cut.append(&mut self.pending);
                self.pending = cut;
                self.send_promise_again(key.n);
            }
            // We decided that prefix meanwhile: nothing to install; our
            // promise tells the leader where we stand.
            Gathered::Covered => self.send_promise_again(key.n),
            Gathered::Unusable => {
                self.send(from, PaxosMsg::PrepareReq(PrepareReq { n: key.n }));
            }
        }
        Ok(())
    }

    /// A promise without a log, to the leader of `n` we already promised:
    /// where our log stands after taking a part of the leader's.
    fn send_promise_again(&mut self, n: Ballot) {
        let promise = Promise {
            n,
            n_accepted: self.storage.accepted_round().unwrap_or_default(),
            decided_idx: self.storage.decided_idx(),
            accepted_idx: self.storage.accepted_idx(),
            log_sync: None,
            snapshot_follows: None,
        };
        self.send(n.pid, PaxosMsg::Promise(promise));
    }

    pub(super) fn send_snapshot_ack(&mut self, to: NodeId, key: &SnapshotKey, received: u32) {
        let ack = SnapshotPartAck {
            n: key.n,
            sync_idx: key.sync_idx,
            received,
        };
        self.send(to, PaxosMsg::SnapshotPartAck(ack));
    }

    /// Whether a part of the leader's decided log starts past our decided
    /// prefix, so that a part before it is still missing. (A part starts
    /// where the leader knows our decided prefix to end once the parts
    /// before it are in; our log past our decided index may differ from the
    /// leader's, so a part that starts there is not installed.)
    fn part_is_early(&self, part: &LogSync<T>) -> bool {
        let start = match &part.decided_snapshot {
            Some(SnapshotType::Complete(_)) => 0,
            Some(SnapshotType::Delta { from_idx, .. }) => *from_idx,
            None => part.sync_idx,
        };
        start > self.storage.decided_idx()
    }

    /// Installs one part of the leader's decided log, if it is one a correct
    /// leader sends: decided entries only, reaching at least our log end,
    /// so installing it cuts nothing we accepted. Otherwise asks to be
    /// prepared again and returns false.
    fn install_decided_part(
        &mut self,
        from: NodeId,
        n: Ballot,
        log_sync: LogSync<T>,
    ) -> StorageResult<bool> {
        let end = log_sync.sync_idx + log_sync.suffix.len() as u64;
        let refuse = log_sync.stopsign.is_some() || end < self.storage.accepted_idx();
        let Some(mut log_sync) = self.checked_sync(log_sync).filter(|_| !refuse) else {
            self.state.follow_mut().early_parts.clear();
            self.send(from, PaxosMsg::PrepareReq(PrepareReq { n }));
            return Ok(false);
        };
        let decided = self.storage.decided_idx();
        if log_sync.decided_snapshot.is_none() && log_sync.sync_idx < decided {
            // Our decided entries are these already: keep them.
            let have = ((decided - log_sync.sync_idx) as usize).min(log_sync.suffix.len());
            log_sync.skip(have);
        }
        let mut cut = self.install_sync(None, log_sync, end)?;
        log!(debug, self.logger, "installed part of the leader's decided log";
            "leader" => from, "decided_idx" => self.storage.decided_idx(),
            "log_len" => self.storage.log_len());
        // Our own proposals that the part replaced wait for the AcceptSync,
        // as proposals waiting for a leader do.
        cut.append(&mut self.pending);
        self.pending = cut;
        Ok(true)
    }

    pub(super) fn handle_accept_sync(
        &mut self,
        from: NodeId,
        sync: AcceptSync<T>,
    ) -> StorageResult<()> {
        if sync.n != self.storage.promise() || self.phase() != Phase::Prepare || sync.n.pid != from
        {
            return Ok(());
        }
        if sync.seq_num.session <= self.state.follow().last_seq.session {
            // A delayed copy of an earlier session's sync: installing it could
            // cut entries we have accepted (and acknowledged) since.
            return Ok(());
        }
        let Some(mut log_sync) = self.checked_sync(sync.log_sync) else {
            // Not something we can install (it starts inside our compacted
            // prefix, or past our end with no snapshot): ask to start over.
            self.send(from, PaxosMsg::PrepareReq(PrepareReq { n: sync.n }));
            return Ok(());
        };
        let log_len = self.storage.log_len();
        let sync_end = log_sync.sync_idx + log_sync.suffix.len() as u64;
        if self.storage.accepted_round() == Some(sync.n) && sync_end < log_len {
            // We hold more of this ballot's log than the sync reaches: the
            // leader went by a promise older than our log (a chunked sync
            // does not reach the end of its log, so this can happen). Its
            // next chunks would follow the sync's end, not ours, and cutting
            // our log could lose entries the leader counted as accepted
            // here. Ask to be prepared again, with our log as it is now.
            self.send(from, PaxosMsg::PrepareReq(PrepareReq { n: sync.n }));
            return Ok(());
        }
        if self.storage.accepted_round() == Some(sync.n)
            && log_sync.decided_snapshot.is_none()
            && log_sync.sync_idx < log_len
        {
            // We already accepted in this ballot, so our log is a prefix of the
            // leader's: keep it and take only what lies beyond it. A resync
            // within a ballot never removes an entry the leader may have
            // counted as accepted here.
            let have = ((log_len - log_sync.sync_idx) as usize).min(log_sync.suffix.len());
            log_sync.skip(have);
        }
        #[cfg(feature = "logging")]
        let (sync_idx, entries, snapshot) = (
            log_sync.sync_idx,
            log_sync.suffix.len(),
            log_sync.decided_snapshot.is_some(),
        );
        let mut cut = self.install_sync(Some(sync.n), log_sync, sync.decided_idx)?;
        log!(info, self.logger, "log synchronised by the leader";
            "leader" => from, "n" => sync.n.n, "sync_idx" => sync_idx, "entries" => entries,
            "snapshot" => snapshot, "log_len" => self.storage.log_len(),
            "decided_idx" => self.storage.decided_idx());
        for ack in sync.forward_acks {
            self.handle_proposal_ack(from, ack);
        }
        self.state.follow_mut().last_seq = sync.seq_num;
        self.state.follow_mut().phase = Phase::Accept;
        self.state.follow_mut().early_parts.clear();
        self.state.follow_mut().snapshot_parts = None;
        self.state.follow_mut().promise_stream = None;
        self.outbox.close(Open::Accepted);
        self.send_accepted();
        // Proposals that waited for a leader go to it now, with our own
        // proposals from when we led that the sync cut.
        cut.append(&mut self.pending);
        self.resend_forwarded();
        // Read requests and a stop-sign that waited for a leader to synchronise us.
        self.resend_reads();
        self.propose_pending_stopsign()?;
        if !cut.is_empty() {
            if let Err(rejected) = self.forward(cut) {
                // Cannot happen: pending is bounded by the same buffer size. Keep them anyway.
                self.pending = rejected;
            }
        }
        Ok(())
    }

    /// The message a follower sends when it refuses an older ballot.
    pub(super) fn not_accepted(&self) -> PaxosMsg<T> {
        PaxosMsg::NotAccepted(NotAccepted {
            n: self.storage.promise(),
        })
    }

    fn check_seq(&self, seq: SequenceNumber) -> SeqCheck {
        if seq.session < self.state.follow().last_seq.session {
            return SeqCheck::Old;
        }
        if seq.session > self.state.follow().last_seq.session {
            // A new session we never saw the AcceptSync of.
            return SeqCheck::Gap;
        }
        match seq.counter {
            c if c <= self.state.follow().last_seq.counter => SeqCheck::Old,
            c if c == self.state.follow().last_seq.counter + 1 => SeqCheck::Next,
            _ => SeqCheck::Gap,
        }
    }

    /// Checks that a message from the leader is the next in its session; if
    /// not, either drops it or asks to be synchronised again.
    pub(super) fn accept_in_order(&mut self, from: NodeId, n: Ballot, seq: SequenceNumber) -> bool {
        if n != self.storage.promise() {
            if n < self.storage.promise() {
                let msg = self.not_accepted();
                self.send(from, msg);
            }
            return false;
        }
        if self.phase() != Phase::Accept {
            return false;
        }
        match self.check_seq(seq) {
            SeqCheck::Next => {
                self.state.follow_mut().last_seq = seq;
                true
            }
            SeqCheck::Old => false,
            SeqCheck::Gap => {
                self.state.follow_mut().phase = Phase::Prepare;
                self.send(from, PaxosMsg::PrepareReq(PrepareReq { n }));
                false
            }
        }
    }

    pub(super) fn handle_accept_decide(
        &mut self,
        from: NodeId,
        acc: AcceptDecide<T>,
    ) -> StorageResult<()> {
        if !self.accept_in_order(from, acc.n, acc.seq_num) {
            return Ok(());
        }
        let appended = !acc.entries.is_empty();
        // Ids past the entries come from no correct leader: the entries are
        // kept without them.
        let origins = if acc.origins.end() <= acc.entries.len() as u64 {
            acc.origins
        } else {
            OriginIds::new()
        };
        self.storage
            .append_and_decide(acc.entries.into_vec(), origins, acc.decided_idx)?;
        for ack in acc.forward_acks {
            self.handle_proposal_ack(from, ack);
        }
        if appended {
            self.send_accepted();
        }
        Ok(())
    }

    pub(super) fn handle_decide(&mut self, from: NodeId, dec: Decide) -> StorageResult<()> {
        if self.accept_in_order(from, dec.n, dec.seq_num) {
            self.storage
                .raise_decided_idx(dec.decided_idx, self.defer_leader_sync)?;
            if dec.decided_idx < self.storage.accepted_idx() {
                // The leader has not decided all we accepted: our Accepted may
                // have been lost, and the leader's periodic Decide is our
                // chance to repeat it.
                self.send_accepted();
            }
        }
        Ok(())
    }

    /// Tells the leader our log length, in the open `Accepted` if the driver
    /// has not taken it yet.
    pub(super) fn send_accepted(&mut self) {
        let accepted_idx = self.storage.accepted_idx();
        if let Some(PaxosMsg::Accepted(acc)) = self.outbox.open_mut(Open::Accepted) {
            acc.accepted_idx = accepted_idx;
            return;
        }
        let to = self.leader.pid;
        let msg = Accepted {
            n: self.leader,
            accepted_idx,
        };
        self.outbox
            .send_open(Open::Accepted, to, PaxosMsg::Accepted(msg));
    }

    /// Forwards proposals to the leader and keeps them until it acknowledges
    /// them. Hands them back if that would exceed `buffer_size`.
    pub(super) fn forward(&mut self, proposals: Vec<Proposal<T>>) -> Result<(), Vec<Proposal<T>>> {
        if self.forwarded_len + proposals.len() > self.buffer_size {
            return Err(proposals);
        }
        self.forwarded_len += proposals.len();
        for mut p in proposals {
            self.stamp(&mut p);
            self.forward_one(p);
        }
        Ok(())
    }

    /// Adds a proposal to the open forward if it carries the last batch and
    /// has room (at most `max_entries_per_message` entries, and about
    /// `max_message_bytes` by `Entry::size_hint`, so that a burst of
    /// proposals goes in messages of a chunk each), else to a new batch.
    fn forward_one(&mut self, p: Proposal<T>) {
        let size = p.entry.size_hint();
        let (max_entries, max_bytes) = (self.max_entries_per_message, self.max_message_bytes);
        if let (Some(PaxosMsg::ProposalForward(fwd)), Some(batch)) = (
            self.outbox.open_mut(Open::Forward),
            self.forwarded.back_mut(),
        ) {
            if fwd.id == batch.id
                && fwd.entries.len() < max_entries
                && batch.bytes.saturating_add(size) <= max_bytes
            {
                if let Some(id) = p.id {
                    let pushed = fwd.origins.push(fwd.entries.len() as u64, id);
                    debug_assert!(pushed, "a forward's ids end before its entries do");
                }
                fwd.entries.push(p.entry.clone());
                batch.bytes += size;
                batch.proposals.push(p);
                return;
            }
        }
        let id = ForwardId {
            ballot: self.leader,
            session: self.state.follow().last_seq.session,
            seq: self.next_forward_seq,
        };
        self.next_forward_seq += 1;
        let proposals = vec![p];
        let msg = ProposalForward {
            n: self.leader,
            id,
            entries: entries_of(&proposals),
            origins: origins_of(&proposals, 0),
        };
        self.forwarded.push_back(ForwardedBatch {
            id,
            proposals,
            bytes: size,
            acked: None,
        });
        let to = self.leader.pid;
        self.outbox
            .send_open(Open::Forward, to, PaxosMsg::ProposalForward(msg));
    }

    /// Sends the forwarded batches that the current leader has not
    /// acknowledged to it again. Batches acknowledged by an earlier leader
    /// and not decided may have been lost with it, so they go again too.
    fn resend_forwarded(&mut self) {
        let to = self.leader.pid;
        for i in 0..self.forwarded.len() {
            let batch = &mut self.forwarded[i];
            if batch.acked.as_ref().is_some_and(|(n, _)| *n == self.leader) {
                continue;
            }
            batch.acked = None;
            let msg = ProposalForward {
                n: self.leader,
                id: batch.id,
                entries: entries_of(&batch.proposals),
                origins: origins_of(&batch.proposals, 0),
            };
            self.send(to, PaxosMsg::ProposalForward(msg));
        }
        self.outbox.close(Open::Forward);
    }

    /// An acknowledgement of a forwarded batch, alone (`ProposalAck`, from
    /// `from`) or riding on the leader's `AcceptSync`/`AcceptDecide`. Only
    /// the leader we follow gives our batches their place, so an ack from
    /// anyone else, or in another ballot, is ignored; its index is the
    /// leader's word (the entries may not have reached us yet), but one
    /// whose range overflows could not name a place in any log.
    pub(super) fn handle_proposal_ack(&mut self, from: NodeId, ack: ProposalAck) {
        if ack.n != self.leader || from != self.leader.pid {
            return;
        }
        if let Some(pos) = self.forwarded.iter().position(|b| b.id == ack.id) {
            let len = self.forwarded[pos].proposals.len();
            let Some(placed) = Placed::of(&ack, len) else {
                return;
            };
            self.forwarded[pos].acked = Some((ack.n, placed));
            if pos + 1 == self.forwarded.len() {
                // The open batch is acknowledged; later entries start a new one.
                self.outbox.close(Open::Forward);
            }
        }
        self.prune_decided_forwards();
    }

    /// After our log was synchronised in a new ballot: a batch that an earlier
    /// leader acknowledged survived if we had accepted its indices in that
    /// leader's ballot and the sync kept them (everything below `kept_until`
    /// was kept). Such a batch now waits for the new leader to decide it;
    /// any other acknowledged batch may be lost and is sent again by
    /// `resend_forwarded`.
    pub(super) fn settle_forwards_after_sync(
        &mut self,
        prev_round: Option<Ballot>,
        prev_len: u64,
        kept_until: u64,
    ) {
        let leader = self.leader;
        for batch in &mut self.forwarded {
            if let Some((n, placed)) = batch.acked.take() {
                let end = placed.end(batch.proposals.len());
                batch.acked = (prev_round == Some(n) && end <= prev_len.min(kept_until))
                    .then_some((leader, placed));
            }
        }
    }

    /// Drops forwarded batches that the leader which acknowledged them has
    /// since decided: the decided index we learn from that same leader covers them.
    pub(super) fn prune_decided_forwards(&mut self) {
        let decided = self.storage.decided_idx();
        let leader = self.leader;
        let before = self.forwarded.len();
        let mut freed = 0;
        let out = &mut self.decided_tags;
        self.forwarded.retain(|b| match &b.acked {
            Some((n, placed)) if *n == leader && placed.end(b.proposals.len()) <= decided => {
                freed += b.proposals.len();
                out.extend(
                    b.proposals
                        .iter()
                        .enumerate()
                        .filter(|(k, p)| p.is_tagged() && placed.at(*k) != NOT_APPENDED)
                        .map(|(k, p)| (p.tag, placed.at(k))),
                );
                false
            }
            _ => true,
        });
        self.forwarded_len -= freed;
        if self.forwarded.len() != before {
            self.outbox.close(Open::Forward);
        }
    }

    /// Asks again for what has not come: to be prepared (while waiting for a
    /// leader's log), or acknowledgement of forwarded proposals.
    pub(super) fn resend_as_follower(&mut self) {
        match self.phase() {
            Phase::Prepare if self.leader.pid != self.pid && self.leader.pid != 0 => {
                let to = self.leader.pid;
                self.send(to, PaxosMsg::PrepareReq(PrepareReq { n: self.leader }));
            }
            Phase::Recover => {
                let n = self.storage.promise();
                for i in 0..self.peers.len() {
                    let to = self.peers[i];
                    self.send(to, PaxosMsg::PrepareReq(PrepareReq { n }));
                }
            }
            Phase::Accept => self.resend_forwarded(),
            _ => {}
        }
    }
}

/// The ids of forwarded proposals, the first at index `at`.
fn origins_of<T>(proposals: &[Proposal<T>], at: u64) -> OriginIds {
    let mut ids = OriginIds::new();
    for (k, p) in proposals.iter().enumerate() {
        if let Some(id) = p.id {
            ids.push(at + k as u64, id);
        }
    }
    ids
}

/// The entries of forwarded proposals, as the leader gets them.
fn entries_of<T: Clone>(proposals: &[Proposal<T>]) -> Vec<T> {
    proposals.iter().map(|p| p.entry.clone()).collect()
}
