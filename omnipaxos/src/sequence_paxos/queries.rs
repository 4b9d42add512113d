//! Read-only views of Sequence Paxos and its storage, for the facade and
//! the reconfiguration module: what a driver or a dashboard asks, without
//! reaching into the storage.

use super::{Phase, Role, SequencePaxos};
use crate::{
    ballot::Ballot,
    errors::StorageError,
    storage::{Entry, Storage},
    util::{ConfigurationEnd, DecidedRead, LogEntry, SnapshottedEntry},
};
use std::ops::{Bound, RangeBounds};

impl<T, S> SequencePaxos<T, S>
where
    T: Entry,
    S: Storage<T>,
{
    /// The highest ballot this server promised.
    pub(crate) fn promise(&self) -> Ballot {
        self.storage.promise()
    }

    /// The round in which the log was last accepted, if the storage knows.
    pub(crate) fn accepted_round(&self) -> Option<Ballot> {
        self.storage.accepted_round()
    }

    /// Entries below this index are decided.
    pub(crate) fn decided_idx(&self) -> u64 {
        self.storage.decided_idx()
    }

    /// The length of the log: entries below it are accepted here.
    pub(crate) fn accepted_idx(&self) -> u64 {
        self.storage.log_len()
    }

    /// Entries below this index are compacted.
    pub(crate) fn compacted_idx(&self) -> u64 {
        self.storage.compacted_idx()
    }

    /// How the previous configuration ended, as the storage records it.
    pub(crate) fn previous_end(&self) -> Option<&ConfigurationEnd> {
        self.storage.previous_end()
    }

    /// Whether this server leads and replicates (past its prepare phase) and
    /// has not stopped.
    pub(crate) fn is_accepting_leader(&self) -> bool {
        self.role() == Role::Leader && self.phase() == Phase::Accept && !self.is_halted()
    }

    /// The entries in `range`; `None` if the range goes past the end of the
    /// log (the stop-sign, if any, counts as its last entry) or a read
    /// fails. A compacted part of the range comes as one `Trimmed` or
    /// `Snapshotted` entry.
    pub(crate) fn read_entries<R: RangeBounds<u64>>(&self, range: R) -> Option<Vec<LogEntry<T>>> {
        let storage = &self.storage;
        let log_len = storage.log_len();
        let stopsign = storage.stopsign().cloned();
        let end_of_log = log_len + u64::from(stopsign.is_some());
        let from = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.checked_add(1)?,
            Bound::Unbounded => 0,
        };
        let to = match range.end_bound() {
            Bound::Included(&i) => i.checked_add(1)?,
            Bound::Excluded(&i) => i,
            Bound::Unbounded => end_of_log,
        };
        if from >= to || to > end_of_log {
            return None;
        }
        let decided = storage.decided_idx();
        let compacted = storage.compacted_idx();
        // Reserved from what the log holds, not from the range asked: an
        // index can be far past the entries (after a snapshot), and a
        // capacity taken from it alone could be more than memory.
        let held = to.min(log_len).saturating_sub(from.max(compacted));
        let mut out = Vec::with_capacity(held as usize + 2);
        if from < compacted {
            out.push(self.compacted_entry(compacted)?);
        }
        let entries_from = from.max(compacted);
        let entries_to = to.min(log_len);
        if entries_from < entries_to {
            let entries = storage.get_entries(entries_from, entries_to).ok()?;
            out.extend(entries.into_iter().zip(entries_from..).map(|(e, idx)| {
                if idx < decided {
                    LogEntry::Decided(e)
                } else {
                    LogEntry::Undecided(e)
                }
            }));
        }
        if to > log_len {
            if let Some(ss) = stopsign {
                out.push(LogEntry::StopSign(ss, decided > log_len));
            }
        }
        Some(out)
    }

    /// Lends the decided entries of `range` to `f` with their indices,
    /// without building a `LogEntry` for each (see
    /// [`OmniPaxos::read_decided_with`](crate::OmniPaxos::read_decided_with)).
    pub(crate) fn read_decided_with<R, F>(
        &self,
        range: R,
        mut f: F,
    ) -> Result<DecidedRead, StorageError>
    where
        R: RangeBounds<u64>,
        F: FnMut(u64, &T),
    {
        let storage = &self.storage;
        let from = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let to = match range.end_bound() {
            Bound::Included(&i) => i.saturating_add(1),
            Bound::Excluded(&i) => i,
            Bound::Unbounded => u64::MAX,
        };
        let compacted = storage.compacted_idx();
        if from < compacted && from < to {
            return Ok(DecidedRead::Compacted(compacted));
        }
        let log_len = storage.log_len();
        // A decided stop-sign makes the decided index one past the log.
        let decided = storage.decided_idx().min(log_len);
        let end = to.min(decided);
        if from < end {
            let mut next = from;
            storage.get_entries_with(from, end, &mut |chunk| {
                // A storage that lends more than asked is not believed.
                let take = chunk.len().min((end - next) as usize);
                // The index counts in a register, not through the captured
                // `next`, which is moved once per chunk.
                for (idx, e) in (next..).zip(&chunk[..take]) {
                    f(idx, e);
                }
                next += take as u64;
            })?;
            if next != end {
                return Err(StorageError::Corrupt {
                    path: None,
                    detail: format!(
                        "asked for entries {from}..{end}, the storage lent {from}..{next}"
                    ),
                });
            }
        }
        if to > log_len && storage.stopsign_decided() {
            Ok(DecidedRead::StopSign(log_len))
        } else {
            Ok(DecidedRead::UpTo(end.max(from)))
        }
    }

    /// The compacted prefix below `compacted` as one entry.
    fn compacted_entry(&self, compacted: u64) -> Option<LogEntry<T>> {
        match self.storage.get_snapshot().ok()? {
            Some(snapshot) => Some(LogEntry::Snapshotted(SnapshottedEntry {
                trimmed_idx: compacted,
                snapshot,
            })),
            None => Some(LogEntry::Trimmed(compacted)),
        }
    }
}
