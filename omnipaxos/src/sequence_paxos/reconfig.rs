//! Reconfiguration: the stop-sign that ends a configuration.
//!
//! ```text
//!  reconfigure(rc)  on the leader: the stop-sign is accepted as the entry
//!                   after the log and sent to every follower;
//!                   on a follower: ForwardStopSign(ss) to the leader
//!  leader ──AcceptStopSign{n, seq, ss}──▶ follower ──Accepted{n, log_len + 1}──▶ leader
//!  a write quorum accepted log_len + 1  ->  the stop-sign is decided:
//!                   no more appends; the servers of the next configuration
//!                   continue the log from here
//!
//!  a server X that missed the decision (its leader moved on, so nobody
//!  sends it a Decide any more) keeps sending this configuration's messages;
//!  a server N that knows of the decision (it moved on, or decided it and
//!  does not lead) answers them:
//!  N ──StopSignDecided{ss, stop_idx, n_accepted}──▶ X
//!                   X decides the stop-sign if its log is the decided one
//!                   (accepted in round n_accepted or later, stop-sign
//!                   included); otherwise it remembers the stop-sign, and
//!                   moving on makes it a joiner that pulls what it lacks
//! ```

use super::{
    NOT_APPENDED, Phase, Proposal, Role, SequencePaxos, Tag,
    dedup::{Found, LogIndex},
};
use crate::{
    ballot::Ballot,
    errors::{ConfigError, ProposeErr, ReconfigurationRequest},
    logging::log,
    messages::{
        AcceptStopSign, PaxosMsg, PullLog, PullLogReply, PullSnapshot, PullSnapshotPart,
        StopSignDecided,
    },
    migration::{MAX_QUEUED_PULL_REPLIES, PullKey, SnapshotAnswer, SnapshotServer},
    storage::{Entry, Storage, StorageResult},
    util::{ConfigurationEnd, MAX_LOG_INDEX, NodeId, StopSign},
};
use std::collections::HashSet;

/// This configuration's stop-sign, decided without us and learned from a
/// server that knew (see [`StopSignDecided`]).
#[derive(Debug)]
pub(crate) struct LearnedStop {
    ss: StopSign,
    stop_idx: u64,
    /// A round whose logs hold the decided log up to the stop-sign.
    n_accepted: Ballot,
    /// The servers that told us; they hold the decided log, so a move to the
    /// next configuration pulls what we lack from them.
    sources: Vec<NodeId>,
}

/// Where this server's configuration ended, and how much of the decided log
/// this server holds: what moving on to the next configuration needs.
#[derive(Debug)]
pub(crate) struct StopPoint {
    /// The decided stop-sign.
    pub(crate) ss: StopSign,
    /// Its index: the length of the configuration's decided log.
    pub(crate) stop_idx: u64,
    /// A round whose logs hold the decided log up to the stop-sign.
    pub(crate) n_accepted: Ballot,
    /// This server's log is the decided log below this index (at most
    /// `stop_idx`); the rest must be pulled.
    pub(crate) known_until: u64,
    /// A forwarded batch acknowledged in the round our log was accepted in,
    /// at indices below this one, is decided there.
    acks_decided_until: u64,
    /// Servers that hold the decided log (those that told us), to pull the
    /// rest from (empty when it was decided here).
    pub(crate) sources: Vec<NodeId>,
}

/// What a server of an ended configuration hands to its server of the next
/// one: the storage, reset for the new configuration, and the proposals and
/// reports that must survive the move.
pub(crate) struct Handover<T: Entry, S> {
    /// The storage, holding the decided log below `known_until` and how the
    /// old configuration ended (so that the new server tells its
    /// stragglers, also after restarts).
    pub(crate) storage: S,
    /// Proposals accepted here that the old configuration may not have
    /// decided, to propose again in the new one, with their tags.
    pub(crate) carried: Vec<Proposal<T>>,
    /// Tracked proposals known to be decided, not yet taken by the driver.
    pub(crate) decided_tags: Vec<(Tag, u64)>,
    /// The tag the next tracked proposal gets, so tags stay unique.
    pub(crate) next_tag: Tag,
    /// This server's incarnation and next proposal number, which the next
    /// configuration continues: the carried proposals keep their ids.
    pub(crate) incarnation: Option<u64>,
    pub(crate) next_seq: u64,
    /// The length of the old configuration's decided log.
    pub(crate) stop_idx: u64,
    /// The storage holds the decided log below this index; the rest, up to
    /// `stop_idx`, must be pulled.
    pub(crate) known_until: u64,
    /// Servers that told us the stop-sign was decided, to pull from first.
    pub(crate) sources: Vec<NodeId>,
}

impl<T, S> SequencePaxos<T, S>
where
    T: Entry,
    S: Storage<T>,
{
    /// Proposes the stop-sign for `rc`: the configuration then takes no more
    /// entries, and once it is decided the servers in `rc` continue the log.
    pub(crate) fn reconfigure(&mut self, rc: ReconfigurationRequest) -> Result<(), ProposeErr<T>> {
        if let Err(e) = validate(&rc) {
            return Err(ProposeErr::InvalidReconfiguration(e));
        }
        if self.takes_no_entries() || self.pending_stopsign.is_some() || self.is_halted() {
            return Err(ProposeErr::PendingReconfigConfig(rc));
        }
        let Some(config_id) = self.configuration_id.checked_add(1) else {
            return Err(ProposeErr::InvalidReconfiguration(ConfigError::field(
                "configuration_id",
                "the configuration id cannot grow past u32::MAX",
            )));
        };
        let ss = StopSign::with(config_id, rc.new_configuration, rc.metadata);
        match (self.role(), self.phase()) {
            (Role::Leader, Phase::Accept) => {
                let r = self.accept_stopsign(ss);
                self.guard(r);
            }
            (Role::Follower, Phase::Accept) => {
                let to = self.leader.pid;
                self.send(to, PaxosMsg::ForwardStopSign(ss.clone()));
                self.pending_stopsign = Some(ss);
            }
            // Proposed once a leader is known (see `propose_pending_stopsign`).
            _ => self.pending_stopsign = Some(ss),
        }
        Ok(())
    }

    /// Leader: accepts the stop-sign after everything appended so far and
    /// sends it to every synchronised follower.
    pub(super) fn accept_stopsign(&mut self, ss: StopSign) -> StorageResult<()> {
        debug_assert!(self.role() == Role::Leader && self.phase() == Phase::Accept);
        self.flush_batch()?;
        if !self.state.lead().batch.is_empty() {
            // The window holds entries back (see `window_room`): the
            // stop-sign follows them once they are written, and nothing
            // more is appended before it (`appends_closed`).
            self.pending_stopsign = Some(ss);
            self.state.lead_mut().stop_waits = true;
            return Ok(());
        }
        self.pending_stopsign = None;
        log!(info, self.logger, "stop-sign proposed";
            "next_configuration" => ss.config_id, "nodes" => ?ss.nodes,
            "stop_idx" => self.storage.log_len());
        self.storage.set_stopsign(Some(ss.clone()))?;
        for slot in 0..self.peers.len() {
            // A follower still being brought up to date gets it after its
            // last chunk (`pump_catch_up`).
            if self.state.lead().progress[slot].takes_new_entries() {
                self.send_stopsign(slot, ss.clone());
            }
        }
        self.update_decided()
    }

    /// Leader: sends one follower our stop-sign, next in its session.
    pub(super) fn send_stopsign(&mut self, slot: usize, ss: StopSign) {
        self.send_numbered(slot, |n, seq_num| {
            PaxosMsg::AcceptStopSign(AcceptStopSign { n, seq_num, ss })
        });
    }

    /// After becoming leader or being synchronised: a stop-sign requested here
    /// while no leader was known goes out now, unless the log already has one.
    pub(super) fn propose_pending_stopsign(&mut self) -> StorageResult<()> {
        if self.storage.stopsign().is_some() {
            self.pending_stopsign = None;
            return Ok(());
        }
        let Some(ss) = self.pending_stopsign.clone() else {
            return Ok(());
        };
        match (self.role(), self.phase()) {
            (Role::Leader, Phase::Accept) => self.accept_stopsign(ss),
            (Role::Follower, Phase::Accept) => {
                let to = self.leader.pid;
                self.send(to, PaxosMsg::ForwardStopSign(ss));
                Ok(())
            }
            _ => Ok(()),
        }
    }

    pub(super) fn handle_accept_stopsign(
        &mut self,
        from: NodeId,
        acc: AcceptStopSign,
    ) -> StorageResult<()> {
        if !self.accept_in_order(from, acc.n, acc.seq_num) {
            return Ok(());
        }
        self.pending_stopsign = None;
        self.storage.set_stopsign(Some(acc.ss))?;
        self.send_accepted();
        Ok(())
    }

    /// A server joining a later configuration pulls a part of our decided
    /// log. Only decided entries are served; a part we have not decided (or
    /// trimmed without a snapshot) goes unanswered and the joiner asks another.
    /// A reply holds at most `max_entries_per_message` entries and
    /// `max_message_bytes` (by `Entry::size_hint`, at least one entry), and
    /// at most `MAX_QUEUED_PULL_REPLIES` replies (one per range asked) wait
    /// for one puller until the driver takes the outgoing messages: what a
    /// burst of pulls costs is bounded by the puller's window.
    ///
    /// A part that starts in our compacted prefix is answered with our
    /// snapshot first. A snapshot that splits into several parts
    /// ([`Snapshot::into_parts`](crate::storage::Snapshot::into_parts) with
    /// our `max_message_bytes`) is not sent whole: `snapshots` keeps its
    /// parts, part 0 answers the pull, and the joiner asks for the others
    /// ([`Self::serve_snapshot_part`]).
    ///
    /// The reply also says how the configuration the joiner joins began
    /// (this one's stop-sign, once decided here, or `previous`, how the one
    /// before ours ended), so that the joiner can tell stragglers.
    pub(crate) fn handle_pull_log(
        &mut self,
        from: NodeId,
        req: PullLog,
        previous: Option<&StopSignDecided>,
        snapshots: &mut SnapshotServer<T>,
    ) -> StorageResult<()> {
        let decided = self.storage.decided_idx().min(self.storage.log_len());
        if req.from_idx >= req.to_idx
            || req.to_idx > decided
            || !self.may_queue_pull_reply(from, PullKey::Log(req.from_idx))
        {
            return Ok(());
        }
        let compacted = self.storage.compacted_idx();
        if req.from_idx < compacted {
            let parts = match snapshots.held(compacted) {
                Some(parts) => parts,
                None => {
                    let Some(s) = self.storage.get_snapshot()? else {
                        return Ok(());
                    };
                    match snapshots.split(compacted, s, self.max_message_bytes) {
                        SnapshotAnswer::Whole(s) => {
                            return self.reply_pull(from, req, compacted, Some(s), previous);
                        }
                        SnapshotAnswer::Parts(parts) => parts,
                        SnapshotAnswer::Unusable(n) => {
                            log!(error, self.logger, "a snapshot split into no parts, or too many";
                                "parts" => n);
                            let _ = n; // read by the log line, with feature `logging`
                            return Ok(());
                        }
                    }
                }
            };
            let first = PullSnapshot {
                covers: compacted,
                parts,
                part: 0,
            };
            let key = PullKey::Log(req.from_idx);
            self.send_snapshot_part(from, key, first, previous, snapshots);
            return Ok(());
        }
        self.reply_pull(from, req, req.from_idx, None, previous)
    }

    /// Whether a pull reply to `from` under `key` may be queued: we serve
    /// (see [`Self::may_pull`]), and `from` has fewer than
    /// `MAX_QUEUED_PULL_REPLIES` replies and none under `key` waiting.
    fn may_queue_pull_reply(&self, from: NodeId, key: PullKey) -> bool {
        let (queued, answered) = self.outbox.pull_replies_to(from, key);
        !self.is_halted() && self.may_pull(from) && queued < MAX_QUEUED_PULL_REPLIES && !answered
    }

    /// A joining server asks for one more part of the snapshot we began
    /// sending it in parts. We answer from the parts we hold; if we no
    /// longer hold them (we dropped them while nobody asked, restarted, or
    /// moved on to the next configuration) but the snapshot is still our
    /// compacted prefix, we split it again, which gives the same parts
    /// ([`Snapshot::into_parts`](crate::storage::Snapshot::into_parts) splits
    /// a snapshot the same way each time). Otherwise nothing: the joiner
    /// asks for the log again and gets our current snapshot.
    pub(super) fn serve_snapshot_part(
        &mut self,
        from: NodeId,
        req: PullSnapshot,
        previous: Option<&StopSignDecided>,
        snapshots: &mut SnapshotServer<T>,
    ) -> StorageResult<()> {
        if req.part == 0 || !self.may_queue_pull_reply(from, PullKey::SnapshotPart(req.part)) {
            return Ok(());
        }
        if snapshots.held(req.covers).is_none() && req.covers == self.storage.compacted_idx() {
            if let Some(s) = self.storage.get_snapshot()? {
                snapshots.split(req.covers, s, self.max_message_bytes);
            }
        }
        let key = PullKey::SnapshotPart(req.part);
        self.send_snapshot_part(from, key, req, previous, snapshots);
        Ok(())
    }

    /// Sends `to`, as the pull reply answering `key`, the part `req` names
    /// of the snapshot `snapshots` holds, if it holds that one.
    fn send_snapshot_part(
        &mut self,
        to: NodeId,
        key: PullKey,
        req: PullSnapshot,
        previous: Option<&StopSignDecided>,
        snapshots: &mut SnapshotServer<T>,
    ) {
        let Some(snapshot) = snapshots.part(req.covers, req.parts, req.part) else {
            return;
        };
        let part = PullSnapshotPart {
            covers: req.covers,
            part: req.part,
            parts: req.parts,
            snapshot: snapshot.clone(),
            origin_table: self.origin_table_below(req.covers.min(self.storage.log_len())),
            stopsign: self.stopsign_decided_msg().or_else(|| previous.cloned()),
        };
        self.outbox
            .send_pull_reply(to, key, PaxosMsg::PullSnapshotPart(part));
    }

    /// Answers the pull `req` with `snapshot` (of the log below `from_idx`),
    /// if any, and the decided entries from `from_idx` on.
    fn reply_pull(
        &mut self,
        from: NodeId,
        req: PullLog,
        from_idx: u64,
        snapshot: Option<T::Snapshot>,
        previous: Option<&StopSignDecided>,
    ) -> StorageResult<()> {
        // At most `max_entries_per_message` entries and `max_message_bytes`
        // (at least one entry) per reply; the puller asks for the rest.
        let entries = if from_idx < req.to_idx {
            self.read_chunk_until(from_idx, req.to_idx)?
        } else {
            Vec::new()
        };
        // A snapshot alone answers for the whole range asked.
        let to_idx = if entries.is_empty() {
            req.to_idx
        } else {
            from_idx + entries.len() as u64
        };
        let origins = self
            .storage
            .origins_of(from_idx, from_idx + entries.len() as u64);
        let origin_table = snapshot
            .is_some()
            .then(|| self.origin_table_below(from_idx));
        let reply = PullLogReply {
            from_idx,
            to_idx,
            snapshot,
            entries,
            origins,
            origin_table,
            stopsign: self.stopsign_decided_msg().or_else(|| previous.cloned()),
        };
        self.outbox.send_pull_reply(
            from,
            PullKey::Log(req.from_idx),
            PaxosMsg::PullLogReply(reply),
        );
        Ok(())
    }

    /// Whether `from` may pull this configuration's decided log: a server of
    /// this configuration (a straggler that moved on without all of it, or
    /// one that joined the configuration after us), or a server named by
    /// this configuration's stop-sign (a joiner of the next one). Nobody
    /// else needs it, and serving anyone who asks would let any connection
    /// make this server read and send its whole log over and over.
    fn may_pull(&self, from: NodeId) -> bool {
        self.peers.contains(&from)
            || self
                .storage
                .stopsign()
                .is_some_and(|ss| ss.nodes.contains(&from))
            || self
                .learned_stop
                .as_ref()
                .is_some_and(|l| l.ss.nodes.contains(&from))
    }

    /// A server that knows says this configuration's stop-sign was decided
    /// (one that moved on to the next configuration, or a peer that decided
    /// it; see `stragglers.rs`). If our log is the decided one with the
    /// stop-sign at its end, only the decision was missing: decide it.
    /// Otherwise remember it: [`Self::stop_point`] then says how much of our
    /// log is known to be decided, and the move to the next configuration
    /// pulls the rest.
    pub(super) fn handle_stopsign_decided(
        &mut self,
        from: NodeId,
        d: StopSignDecided,
    ) -> StorageResult<()> {
        let ours = self.configuration_id.checked_add(1) == Some(d.ss.config_id);
        // A stop-sign is decided after everything we decided.
        if !ours
            || self.storage.stopsign_decided()
            || d.stop_idx < self.storage.decided_idx()
            || d.stop_idx > MAX_LOG_INDEX
        {
            return Ok(());
        }
        if let Some(learned) = &mut self.learned_stop {
            if !learned.sources.contains(&from) {
                learned.sources.push(from);
            }
            return Ok(());
        }
        let round_holds_it = self
            .storage
            .accepted_round()
            .is_some_and(|r| r >= d.n_accepted);
        if round_holds_it
            && self.storage.log_len() == d.stop_idx
            && self.storage.stopsign() == Some(&d.ss)
        {
            self.storage.raise_decided_idx(d.stop_idx + 1, false)?;
            self.pending_stopsign = None;
            self.prune_decided_forwards();
            return Ok(());
        }
        self.learned_stop = Some(LearnedStop {
            ss: d.ss,
            stop_idx: d.stop_idx,
            n_accepted: d.n_accepted,
            sources: vec![from],
        });
        Ok(())
    }

    /// The decided stop-sign that ends this configuration, if this server
    /// knows of one: decided here, or learned from the next configuration.
    pub(crate) fn decided_stopsign(&self) -> Option<&StopSign> {
        if self.storage.stopsign_decided() {
            return self.storage.stopsign();
        }
        self.learned_stop.as_ref().map(|l| &l.ss)
    }

    /// What to tell a server of this configuration that may have missed the
    /// decision of its stop-sign, once it is decided here. (A server that
    /// only learned of it says nothing: the receiver would ask it for a
    /// decided log it does not have.)
    pub(crate) fn stopsign_decided_msg(&self) -> Option<StopSignDecided> {
        if !self.storage.stopsign_decided() {
            return None;
        }
        Some(StopSignDecided {
            ss: self.storage.stopsign()?.clone(),
            stop_idx: self.storage.log_len(),
            n_accepted: self.storage.accepted_round().unwrap_or_default(),
        })
    }

    /// Where this configuration ended and how much of its decided log this
    /// server holds, once the stop-sign is decided (or learned).
    ///
    /// A log accepted in round `n_accepted` or later holds the decided log up
    /// to the stop-sign: the stop-sign was decided in a round no later than
    /// `n_accepted`, and every leader from that round on adopted a log
    /// holding it (and appends nothing after a stop-sign). Such a log is
    /// decided up to its end; any other is known decided only up to our
    /// decided index.
    fn stop_point(&self) -> Option<StopPoint> {
        let log_len = self.storage.log_len();
        let accepted_round = self.storage.accepted_round();
        if self.storage.stopsign_decided() {
            return Some(StopPoint {
                ss: self.storage.stopsign()?.clone(),
                stop_idx: log_len,
                n_accepted: accepted_round.unwrap_or_default(),
                known_until: log_len,
                acks_decided_until: log_len,
                sources: Vec::new(),
            });
        }
        let learned = self.learned_stop.as_ref()?;
        let decided = self
            .storage
            .decided_idx()
            .min(log_len)
            .min(learned.stop_idx);
        let (known_until, acks_decided_until) =
            if accepted_round.is_some_and(|r| r >= learned.n_accepted) {
                (log_len.min(learned.stop_idx), learned.stop_idx)
            } else {
                (decided, decided)
            };
        Some(StopPoint {
            ss: learned.ss.clone(),
            stop_idx: learned.stop_idx,
            n_accepted: learned.n_accepted,
            known_until,
            acks_decided_until,
            sources: learned.sources.clone(),
        })
    }

    /// At the move to the next configuration, which ended at `stop`: the
    /// proposals this server still holds that the old configuration may not
    /// have decided, to propose again in the next one. Those known to be
    /// decided are reported (see [`Self::take_decided_tags`]) instead.
    ///
    /// Carried: what is buffered or gathered for a batch (refused once the
    /// stop-sign was in), of our own proposals only (another server's
    /// proposals are carried by their origin); this incarnation's own proposals in our log past
    /// `stop.known_until`; forwarded batches not acknowledged in our log's
    /// round at indices known to be decided. Everything the old
    /// configuration decided lies before its stop-sign, so a carried
    /// proposal that it did not decide is decided once, in the next
    /// configuration. One it did decide (only possible past `known_until`,
    /// where this server cannot tell) may be decided a second time, which
    /// `append` allows; it is reported once. Untagged entries we appended as
    /// leader before a restart are not carried from there: nobody waits for
    /// them, and they are likely decided.
    fn take_undecided_proposals(&mut self, stop: &StopPoint) -> StorageResult<Vec<Proposal<T>>> {
        let mut carried = self.cut_own_proposals(stop.known_until, u64::MAX)?;
        // What is left of our placed proposals lies below `known_until`: decided there.
        self.decided_tags
            .extend(self.placed.drain(..).map(|(idx, tag)| (tag, idx)));
        carried.append(&mut self.pending);
        if let Some(l) = self.state.leader_mut() {
            carried.extend(l.batch.take());
        }
        let round = self.storage.accepted_round();
        for batch in std::mem::take(&mut self.forwarded) {
            match batch.acked {
                Some((n, placed))
                    if Some(n) == round
                        && placed.end(batch.proposals.len()) <= stop.acks_decided_until =>
                {
                    // Decided before the stop-sign.
                    self.decided_tags.extend(
                        batch
                            .proposals
                            .into_iter()
                            .enumerate()
                            .filter(|(k, p)| p.is_tagged() && placed.at(*k) != NOT_APPENDED)
                            .map(|(k, p)| (p.tag, placed.at(k))),
                    );
                }
                _ => carried.extend(batch.proposals),
            }
        }
        self.forwarded_len = 0;
        // A carried proposal whose id our log holds below `known_until` was
        // decided there: it is reported, not proposed again.
        let index = LogIndex::of(&self.storage.origins().range(0..stop.known_until));
        let table = self.storage.origin_table();
        let mut undecided = Vec::with_capacity(carried.len());
        for p in carried {
            if p.id.is_some_and(|id| id.origin != self.pid) {
                // Another server's, gathered while we led (or held back by
                // our window): its origin keeps it among its forwarded
                // batches until it is decided and carries it over itself.
                // Forwarded by us into a configuration its origin may not
                // be in, it would name a server the new leader does not
                // know, and the leader refuses such a batch whole (soak
                // seed 1699).
                continue;
            }
            match p.id.and_then(|id| index.find(&id, table)) {
                Some(Found::At(idx)) if idx < stop.known_until => {
                    if p.is_tagged() {
                        self.decided_tags.push((p.tag, idx));
                    }
                }
                _ => undecided.push(p),
            }
        }
        Ok(undecided)
    }

    /// Ends this server's part in its configuration, whose stop-sign is
    /// decided (or learned): proposals it may not have decided are taken
    /// out to be proposed again, and the storage is reset for the next
    /// configuration in one write that records how this one ended.
    ///
    /// Call only once [`Self::decided_stopsign`] is `Some`.
    pub(crate) fn into_next_configuration(mut self) -> StorageResult<Handover<T, S>> {
        let stop = self
            .stop_point()
            .expect("the caller checked that the stop-sign is decided");
        // Proposals accepted here that the old configuration never decided
        // (it refuses entries once its stop-sign is in) are proposed again in
        // the new one, so an `Ok` from `append` is not lost to the change.
        let carried = self.take_undecided_proposals(&stop)?;
        let mut decided_tags = Vec::new();
        self.take_decided_tags(&mut decided_tags);
        let next_tag = self.next_tag();
        let (incarnation, next_seq) = self.identity();
        let mut storage = self.storage;
        let end = ConfigurationEnd {
            stopsign: stop.ss,
            stop_idx: stop.stop_idx,
            accepted_round: stop.n_accepted,
        };
        storage.reset_for_new_configuration(stop.known_until, end)?;
        Ok(Handover {
            storage: storage.into_inner(),
            carried,
            decided_tags,
            next_tag,
            incarnation,
            next_seq,
            stop_idx: stop.stop_idx,
            known_until: stop.known_until,
            sources: stop.sources,
        })
    }

    /// Persists how the previous configuration ended (learned from a peer
    /// or from a pull).
    pub(crate) fn record_previous_end(&mut self, end: ConfigurationEnd) -> StorageResult<()> {
        self.storage.set_previous_end(end)
    }

    /// Writes a decided part of the log pulled from the previous
    /// configuration (see `InternalStorage::append_pulled`).
    pub(crate) fn append_pulled(&mut self, ready: crate::migration::Ready<T>) -> StorageResult<()> {
        self.storage.append_pulled(ready)
    }

    pub(super) fn handle_forward_stopsign(&mut self, ss: StopSign) -> StorageResult<()> {
        let for_next = self.configuration_id.checked_add(1) == Some(ss.config_id);
        if self.phase() == Phase::Accept && for_next && !self.appends_closed() {
            self.accept_stopsign(ss)?;
        }
        Ok(())
    }
}

/// The next configuration must have at least one server and distinct,
/// non-zero ids.
fn validate(rc: &ReconfigurationRequest) -> Result<(), ConfigError> {
    if rc.new_configuration.is_empty() {
        return Err(ConfigError::field(
            "new_configuration",
            "must name at least one server",
        ));
    }
    let mut seen = HashSet::with_capacity(rc.new_configuration.len());
    for &pid in &rc.new_configuration {
        if pid == 0 {
            return Err(ConfigError::field(
                "new_configuration",
                "node id 0 is not allowed",
            ));
        }
        if !seen.insert(pid) {
            return Err(ConfigError::field(
                "new_configuration",
                format!("lists {pid} twice"),
            ));
        }
    }
    Ok(())
}
