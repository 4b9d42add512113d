//! [`Bounds`]: the index arithmetic of a log, shared by the backends so that
//! they accept and refuse exactly the same writes.

use omnipaxos::{
    errors::StorageError,
    storage::{Entry, StorageOp, StorageResult},
};

/// The index arithmetic of a log, without the entries: enough to check a
/// whole batch of ops before any of them is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Bounds {
    /// Every entry below this index was dropped by a trim.
    pub(crate) trimmed_idx: u64,
    /// One past the last index of the log.
    pub(crate) log_len: u64,
    /// The compacted index the protocol recorded.
    pub(crate) compacted_idx: u64,
    /// Whether a stop-sign is stored: it occupies index `log_len`, so the
    /// decided index may then be `log_len + 1`.
    pub(crate) stopsign: bool,
}

impl Bounds {
    /// The first index the log serves: entries below it were trimmed or
    /// declared compacted.
    pub(crate) fn first_idx(self) -> u64 {
        self.trimmed_idx.max(self.compacted_idx)
    }

    pub(crate) fn out_of_range(self, operation: &str, idx: u64) -> StorageError {
        StorageError::IndexOutOfRange {
            operation: operation.to_owned(),
            idx,
            compacted_idx: self.first_idx(),
            log_len: self.log_len,
        }
    }

    /// Checks that `op` can be applied to a log with these bounds, and moves
    /// the bounds to where they are after it.
    pub(crate) fn check<T: Entry>(&mut self, op: &StorageOp<T>) -> StorageResult<()> {
        match op {
            StorageOp::AppendEntry(_) => self.log_len += 1,
            StorageOp::AppendEntries(entries) => self.log_len += entries.len() as u64,
            StorageOp::AppendOnPrefix(from_idx, entries) => {
                if *from_idx < self.first_idx() || *from_idx > self.log_len {
                    return Err(self.out_of_range("append on prefix", *from_idx));
                }
                self.log_len = from_idx + entries.len() as u64;
            }
            StorageOp::Trim(idx) => {
                // Trimming below what is already gone is a no-op, not an error:
                // the entries asked to be dropped are dropped. Trimming past
                // the end empties the log, which then continues at `idx`
                // (a snapshot installed beyond the local log).
                self.trimmed_idx = self.trimmed_idx.max(*idx);
                self.log_len = self.log_len.max(*idx);
            }
            // Both indices count entries of the log, so neither may point
            // past its end (for the decided index, past a stored stop-sign,
            // the entry after the log); a value that does is a protocol bug
            // that the storage refuses to persist.
            StorageOp::SetDecidedIndex(idx) => {
                if *idx > self.log_len + u64::from(self.stopsign) {
                    return Err(self.out_of_range("set decided index", *idx));
                }
            }
            StorageOp::SetCompactedIdx(idx) => {
                if *idx > self.log_len {
                    return Err(self.out_of_range("set compacted index", *idx));
                }
                self.compacted_idx = *idx;
            }
            StorageOp::SetStopsign(stopsign) => self.stopsign = stopsign.is_some(),
            // Ids name entries the log holds by then: from an index the log
            // serves (or its end), up to its end.
            StorageOp::SetOrigins(from_idx, ids) => {
                if *from_idx < self.trimmed_idx || *from_idx > self.log_len {
                    return Err(self.out_of_range("set origins", *from_idx));
                }
                let first = ids.runs().first().map_or(*from_idx, |r| r.idx);
                if first < *from_idx || ids.end() > self.log_len {
                    return Err(self.out_of_range("set origins", first.max(ids.end())));
                }
            }
            StorageOp::SetPromise(_)
            | StorageOp::SetOriginTable(_)
            | StorageOp::SetIncarnation(_)
            | StorageOp::SetAcceptedRound(_)
            | StorageOp::SetSnapshot(_)
            | StorageOp::SetPreviousConfigurationEnd(_) => {}
        }
        Ok(())
    }
}
