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
//! ```

use super::{NO_TAG, Phase, Role, SequencePaxos, Tag};
use crate::{
    errors::{ConfigError, ProposeErr, ReconfigurationRequest},
    messages::{AcceptStopSign, PaxosMsg, PullLog, PullLogReply},
    storage::{Entry, Storage, StorageResult},
    util::{NodeId, StopSign},
};
use std::collections::HashSet;

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
        if self.storage.stopsign().is_some() || self.pending_stopsign.is_some() || self.is_halted()
        {
            return Err(ProposeErr::PendingReconfigConfig(rc));
        }
        let Some(config_id) = self.configuration_id.checked_add(1) else {
            return Err(ProposeErr::InvalidReconfiguration(ConfigError::field(
                "configuration_id",
                "the configuration id cannot grow past u32::MAX",
            )));
        };
        let ss = StopSign::with(config_id, rc.new_configuration, rc.metadata);
        match (self.role, self.phase) {
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
        debug_assert!(self.role == Role::Leader && self.phase == Phase::Accept);
        self.flush_batch()?;
        self.pending_stopsign = None;
        self.storage.set_stopsign(Some(ss.clone()))?;
        for slot in 0..self.progress.len() {
            if self.progress[slot].synced {
                let ss = ss.clone();
                self.send_numbered(slot, |n, seq_num| {
                    PaxosMsg::AcceptStopSign(AcceptStopSign { n, seq_num, ss })
                });
            }
        }
        self.update_decided()
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
        match (self.role, self.phase) {
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

    /// A server joining a later configuration pulls a slice of our decided
    /// log. Only decided entries are served; a slice we have not decided (or
    /// trimmed without a snapshot) goes unanswered and the joiner asks another.
    pub(crate) fn handle_pull_log(&mut self, from: NodeId, req: PullLog) -> StorageResult<()> {
        let decided = self.storage.decided_idx().min(self.storage.log_len());
        if self.is_halted() || req.from_idx >= req.to_idx || req.to_idx > decided {
            return Ok(());
        }
        let compacted = self.storage.compacted_idx();
        let (from_idx, snapshot) = if req.from_idx < compacted {
            match self.storage.get_snapshot()? {
                Some(s) => (compacted, Some(s)),
                None => return Ok(()),
            }
        } else {
            (req.from_idx, None)
        };
        let entries = self.storage.get_entries(from_idx, req.to_idx)?;
        let reply = PullLogReply {
            from_idx,
            to_idx: req.to_idx,
            snapshot,
            entries,
        };
        self.send(from, PaxosMsg::PullLogReply(reply));
        Ok(())
    }

    /// At the move to the next configuration: the proposals this server
    /// still holds that the old configuration did not decide (buffered,
    /// gathered for a batch, or forwarded and not acknowledged under a
    /// position before the stop-sign at `stopsign_idx`). Everything before a
    /// decided stop-sign is decided, so none of these is in the old log, and
    /// proposing them in the next configuration cannot decide them twice.
    pub(crate) fn take_undecided_proposals(&mut self, stopsign_idx: u64) -> (Vec<T>, Vec<Tag>) {
        let mut carried = std::mem::take(&mut self.pending);
        let mut tags = std::mem::take(&mut self.pending_tags);
        carried.append(&mut self.batch);
        tags.append(&mut self.batch_tags);
        for batch in std::mem::take(&mut self.forwarded) {
            match batch.acked {
                Some((_, first)) if first + batch.entries.len() as u64 <= stopsign_idx => {
                    // Decided before the stop-sign.
                    self.decided_tags.extend(
                        (first..)
                            .zip(batch.tags)
                            .filter(|&(_, tag)| tag != NO_TAG)
                            .map(|(idx, tag)| (tag, idx)),
                    );
                }
                _ => {
                    carried.extend(batch.entries);
                    tags.extend(batch.tags);
                }
            }
        }
        self.forwarded_len = 0;
        (carried, tags)
    }

    pub(super) fn handle_forward_stopsign(&mut self, ss: StopSign) -> StorageResult<()> {
        let for_next = self.configuration_id.checked_add(1) == Some(ss.config_id);
        if self.role == Role::Leader
            && self.phase == Phase::Accept
            && for_next
            && self.storage.stopsign().is_none()
        {
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
