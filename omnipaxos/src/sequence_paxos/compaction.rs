//! Compaction: trimming the decided prefix of the log, snapshotting it, and
//! shipping a snapshot to a server that lacks entries others compacted away.
//!
//! ```text
//!  trim(idx)      leader only, idx <= decided and accepted by every server;
//!                 with snapshots in use, the entries are folded into the snapshot
//!                 leader ──Compaction::Trim(idx)──▶ every follower
//!  snapshot(idx)  any server, idx <= decided; unless local_only:
//!                 ──Compaction::Snapshot(idx)──▶ every peer
//!  log sync       a LogSync starting below the sender's compacted index
//!                 carries the sender's snapshot of everything below it
//! ```

use super::{Phase, Role, SequencePaxos};

/// The fewest decided entries a log sync replaces by a delta snapshot. With
/// no size information about entries or snapshots, the count stands in for
/// "a snapshot is shorter than the entries it replaces".
pub(crate) const DELTA_MIN_ENTRIES: u64 = 64;
use crate::{
    errors::CompactionErr,
    logging::log,
    messages::{Compaction, LogSync, PaxosMsg, SnapshotType},
    storage::{Entry, Snapshot, Storage, StorageResult},
    util::NodeId,
};

impl<T, S> SequencePaxos<T, S>
where
    T: Entry,
    S: Storage<T>,
{
    /// The log from `from` on, as a [`LogSync`]: with this server's snapshot
    /// if `from` lies in the compacted prefix, or with a delta snapshot of the
    /// decided entries from `from` on when the receiver has decided exactly up
    /// to `from` (`from_is_receivers_decided`) and there are at least
    /// [`DELTA_MIN_ENTRIES`] of them: one snapshot instead of many entries.
    /// The delta is one message, whatever its size, and building it reads
    /// the gap's entries at once.
    ///
    /// If the prefix was trimmed without a snapshot, the entries are gone and
    /// the sync starts at the compacted index; a receiver that lacks them
    /// refuses it. `trim` only drops what every server accepted, so this
    /// happens only to a server that lost its storage.
    ///
    /// With `chunk_until: Some(end)`, the suffix is only its first chunk
    /// (see [`SequencePaxos::read_chunk`]), but reaches at least `end` (the
    /// receiver's log length: installing the sync replaces its log from the
    /// sync index on, so it must get at least as much back) and, unless it
    /// reaches the end of the log, carries no stop-sign: the stop-sign
    /// follows the last chunk.
    pub(super) fn log_sync_from(
        &self,
        from: u64,
        from_is_receivers_decided: bool,
        chunk_until: Option<u64>,
    ) -> StorageResult<LogSync<T>> {
        let log_len = self.storage.log_len();
        self.log_sync_within(from, from_is_receivers_decided, chunk_until, log_len)
    }

    /// The next part of our decided log for a receiver whose log ends at
    /// `cover`, from `from` on: [`log_sync_from`](Self::log_sync_from) with
    /// the suffix a chunk long, reaching `cover`, and ending within the
    /// decided prefix, without a stop-sign. `None` if `cover` lies past the
    /// decided prefix (the receiver holds undecided entries there, which
    /// only a sync in a ballot may replace) or if `from` is not inside it.
    pub(super) fn decided_part(
        &self,
        from: u64,
        from_is_receivers_decided: bool,
        cover: u64,
    ) -> StorageResult<Option<LogSync<T>>> {
        let decided_end = self.storage.decided_idx().min(self.storage.log_len());
        if from >= decided_end || cover > decided_end {
            return Ok(None);
        }
        let mut part =
            self.log_sync_within(from, from_is_receivers_decided, Some(cover), decided_end)?;
        part.stopsign = None;
        Ok(Some(part))
    }

    /// [`log_sync_from`](Self::log_sync_from), with the suffix read up to
    /// `until` at the latest.
    fn log_sync_within(
        &self,
        from: u64,
        from_is_receivers_decided: bool,
        chunk_until: Option<u64>,
        until: u64,
    ) -> StorageResult<LogSync<T>> {
        let compacted = self.storage.compacted_idx();
        let decided_end = self.storage.decided_idx().min(self.storage.log_len());
        let (sync_idx, decided_snapshot) = if from < compacted {
            (
                compacted,
                self.storage.get_snapshot()?.map(SnapshotType::Complete),
            )
        } else if from_is_receivers_decided
            && T::Snapshot::use_snapshots()
            && decided_end >= from.saturating_add(DELTA_MIN_ENTRIES)
        {
            // One delta of the whole gap: `Snapshot::merge` only folds a
            // delta onto a snapshot from index 0, so deltas of consecutive
            // chunks cannot be folded here.
            let entries = self.storage.get_entries(from, decided_end)?;
            let snapshot = T::Snapshot::create(&entries);
            (
                decided_end,
                Some(SnapshotType::Delta {
                    from_idx: from,
                    snapshot,
                }),
            )
        } else {
            (from.min(self.storage.log_len()), None)
        };
        let suffix = match chunk_until {
            Some(end) if end > sync_idx => {
                // What the receiver holds must come back whole; the rest of
                // the chunk's room goes to what follows.
                let mut suffix = self.storage.get_entries(sync_idx, end.min(until))?;
                let end = sync_idx + suffix.len() as u64;
                let bytes = suffix
                    .iter()
                    .fold(0usize, |sum, e| sum.saturating_add(e.size_hint()));
                if suffix.len() < self.max_entries_per_message && bytes < self.max_message_bytes {
                    suffix.append(&mut self.read_chunk_within(
                        end,
                        until,
                        self.max_entries_per_message - suffix.len(),
                        self.max_message_bytes - bytes,
                        false,
                    )?);
                }
                suffix
            }
            Some(_) => self.read_chunk_until(sync_idx, until)?,
            None if until >= self.storage.log_len() => self.storage.get_suffix(sync_idx)?,
            None => self.storage.get_entries(sync_idx, until.max(sync_idx))?,
        };
        let complete = sync_idx + suffix.len() as u64 >= self.storage.log_len();
        let suffix_origins = self
            .storage
            .origins_of(sync_idx, sync_idx + suffix.len() as u64);
        let origin_table = decided_snapshot
            .is_some()
            .then(|| self.origin_table_below(sync_idx));
        Ok(LogSync {
            decided_snapshot,
            sync_idx,
            suffix,
            suffix_origins,
            origin_table,
            stopsign: self.storage.stopsign().filter(|_| complete).cloned(),
        })
    }

    /// Turns a snapshot from a log sync into a complete one, covering the whole
    /// log below the sync index: a delta is merged onto a snapshot of our own
    /// decided log below its start.
    pub(super) fn complete_snapshot(&self, s: SnapshotType<T>) -> StorageResult<T::Snapshot> {
        match s {
            SnapshotType::Complete(s) => Ok(s),
            SnapshotType::Delta { from_idx, snapshot } => {
                let ours = self
                    .storage
                    .get_entries(self.storage.compacted_idx(), from_idx)?;
                let mut base = match self.storage.get_snapshot()? {
                    Some(mut base) => {
                        base.merge(T::Snapshot::create(&ours));
                        base
                    }
                    None => T::Snapshot::create(&ours),
                };
                base.merge(snapshot);
                Ok(base)
            }
        }
    }

    /// Leader: trims the log below `idx` (default: the decided index) here and
    /// on every follower.
    pub(crate) fn trim(&mut self, idx: Option<u64>) -> Result<(), CompactionErr> {
        let r = self.try_trim(idx);
        self.halt_on_storage_error(&r);
        r
    }

    fn try_trim(&mut self, idx: Option<u64>) -> Result<(), CompactionErr> {
        if let Some(e) = self.storage_failure() {
            return Err(CompactionErr::Storage(e.clone()));
        }
        if self.role() != Role::Leader || self.phase() != Phase::Accept {
            let leader = (self.leader.pid != 0).then_some(self.leader.pid);
            return Err(CompactionErr::NotCurrentLeader { leader });
        }
        let idx = self.check_compaction_idx(idx)?;
        // A follower that has not accepted up to `idx` would need the trimmed
        // entries, which no snapshot can replace: refuse, and say what works.
        let min_accepted = self
            .state
            .lead_mut()
            .progress
            .iter()
            .map(|p| p.accepted_idx.unwrap_or(0))
            .fold(self.storage.log_len(), u64::min);
        if idx > min_accepted {
            return Err(CompactionErr::NotAllAccepted {
                requested: idx,
                min_accepted,
            });
        }
        self.compact_locally(idx)?;
        for i in 0..self.peers.len() {
            let to = self.peers[i];
            self.send(to, PaxosMsg::Compaction(Compaction::Trim(idx)));
        }
        Ok(())
    }

    /// Any server: replaces the decided log below `idx` (default: the decided
    /// index) by a snapshot; unless `local_only`, asks every peer to do the same.
    pub(crate) fn snapshot(
        &mut self,
        idx: Option<u64>,
        local_only: bool,
    ) -> Result<(), CompactionErr> {
        let r = self.try_snapshot(idx, local_only);
        self.halt_on_storage_error(&r);
        r
    }

    fn try_snapshot(&mut self, idx: Option<u64>, local_only: bool) -> Result<(), CompactionErr> {
        if let Some(e) = self.storage_failure() {
            return Err(CompactionErr::Storage(e.clone()));
        }
        if !T::Snapshot::use_snapshots() {
            return Err(CompactionErr::SnapshotsNotEnabled);
        }
        let idx = self.check_compaction_idx(idx)?;
        self.snapshot_locally(idx)?;
        if !local_only {
            for i in 0..self.peers.len() {
                let to = self.peers[i];
                self.send(to, PaxosMsg::Compaction(Compaction::Snapshot(Some(idx))));
            }
        }
        Ok(())
    }

    /// A failed write during compaction stops the server like any other.
    fn halt_on_storage_error(&mut self, r: &Result<(), CompactionErr>) {
        if let Err(CompactionErr::Storage(e)) = r {
            if self.storage_failure().is_none() {
                self.fail(e.clone());
            }
        }
    }

    /// The index to compact to, if it is decided and not compacted yet.
    fn check_compaction_idx(&self, idx: Option<u64>) -> Result<u64, CompactionErr> {
        // The stop-sign is decided past the log but is not an entry to compact.
        let decided_idx = self.storage.decided_idx().min(self.storage.log_len());
        let compacted_idx = self.storage.compacted_idx();
        let requested = idx.unwrap_or(decided_idx);
        if requested > decided_idx {
            return Err(CompactionErr::UndecidedIndex {
                requested,
                decided_idx,
            });
        }
        if requested <= compacted_idx {
            return Err(CompactionErr::AlreadyCompacted {
                requested,
                compacted_idx,
            });
        }
        Ok(requested)
    }

    /// Drops the decided entries below `idx`. If the entry type uses
    /// snapshots they are folded into the snapshot first, so that the
    /// compacted prefix is always represented by one complete snapshot: a
    /// later snapshot builds on it, and a lagging server can catch up from it.
    fn compact_locally(&mut self, idx: u64) -> StorageResult<()> {
        log!(info, self.logger, "compacting the log"; "idx" => idx,
            "snapshot" => T::Snapshot::use_snapshots());
        if T::Snapshot::use_snapshots() {
            self.snapshot_locally(idx)?;
        } else {
            self.storage.compact(idx, None)?;
        }
        if let Some(l) = self.state.leader_mut() {
            l.log_index.trim(self.storage.compacted_idx());
        }
        Ok(())
    }

    /// Folds the decided entries `compacted..idx` into the snapshot and drops them.
    fn snapshot_locally(&mut self, idx: u64) -> StorageResult<()> {
        log!(debug, self.logger, "snapshotting the decided log"; "idx" => idx);
        let entries = self
            .storage
            .get_entries(self.storage.compacted_idx(), idx)?;
        let delta = T::Snapshot::create(&entries);
        let snapshot = match self.storage.get_snapshot()? {
            Some(mut snapshot) => {
                snapshot.merge(delta);
                snapshot
            }
            None => delta,
        };
        self.storage.compact(idx, Some(snapshot))
    }

    /// A peer asks us to compact. We never compact what we have not decided,
    /// so we go as far as our decided index allows.
    pub(super) fn handle_compaction(&mut self, from: NodeId, c: Compaction) -> StorageResult<()> {
        let reach = |idx: Option<u64>, decided: u64| idx.unwrap_or(decided).min(decided);
        let decided = self.storage.decided_idx().min(self.storage.log_len());
        match c {
            // Only the leader we follow knows that every server accepted the prefix.
            Compaction::Trim(idx) if from == self.leader.pid && self.role() == Role::Follower => {
                let idx = reach(Some(idx), decided);
                if idx > self.storage.compacted_idx() {
                    self.compact_locally(idx)?;
                }
            }
            Compaction::Snapshot(idx) if T::Snapshot::use_snapshots() => {
                let idx = reach(idx, decided);
                if idx > self.storage.compacted_idx() {
                    self.snapshot_locally(idx)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}
