//! How a leader appends a proposal once: it looks the proposal's
//! [`OriginId`] up in an index of its log (and of the batch it is
//! gathering) before it appends, and in the storage's [`OriginTable`] for
//! the compacted prefix.
//!
//! A proposal reaches a leader twice when its origin retries it: to a new
//! leader after the old one failed before acknowledging, or after a log
//! sync cut it from the origin's own log. Whether the earlier copy survived
//! is written in the log the leader adopted, so the leader rebuilds the
//! index from that log when its prepare phase ends.

use crate::{
    storage::{OriginId, OriginIds, OriginRun, OriginTable, TablePosition},
    util::NodeId,
};
use std::collections::{BTreeMap, HashMap};

/// Where a leader found a proposal it was asked to append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Found {
    /// At this log index (in the log, the batch or the compacted prefix).
    At(u64),
    /// Its origin has started again since it was made: it is not appended.
    PreviousLife,
}

/// The proposals of a leader's log and batch, by origin.
#[derive(Debug, Default)]
pub(super) struct LogIndex {
    /// `(origin, incarnation)` -> first sequence number of a run ->
    /// `(len, index of its first entry)`.
    runs: HashMap<(NodeId, u64), BTreeMap<u64, (u64, u64)>>,
    /// The newest incarnation seen per origin.
    newest: HashMap<NodeId, u64>,
    /// The run being extended, not yet in `runs`: a leader's own proposals
    /// (and a forwarded batch) arrive one after the other, and extending
    /// this costs no lookup.
    tail: Option<OriginRun>,
}

impl LogIndex {
    /// An index of the log's ids.
    pub(super) fn of(ids: &OriginIds) -> Self {
        let mut index = Self::default();
        for run in ids.runs() {
            index.add_run(run);
        }
        index
    }

    /// Records a run of the log (or batch).
    pub(super) fn add_run(&mut self, run: &OriginRun) {
        if let Some(tail) = &mut self.tail {
            let continues = tail.first.origin == run.first.origin
                && tail.first.incarnation == run.first.incarnation
                && tail.first.seq.checked_add(tail.len) == Some(run.first.seq)
                && tail.idx.checked_add(tail.len) == Some(run.idx);
            if continues {
                tail.len += run.len;
                return;
            }
        }
        if let Some(tail) = self.tail.replace(*run) {
            self.insert(&tail);
        }
    }

    fn insert(&mut self, run: &OriginRun) {
        let first = run.first;
        let newest = self.newest.entry(first.origin).or_insert(first.incarnation);
        *newest = (*newest).max(first.incarnation);
        let runs = self
            .runs
            .entry((first.origin, first.incarnation))
            .or_default();
        // A run that continues the one before it in both numbers joins it,
        // so that a leader's own proposals stay one run however many.
        if let Some((&seq, &mut (ref mut len, idx))) = runs.range_mut(..first.seq).next_back() {
            if seq + *len == first.seq && idx + *len == run.idx {
                *len += run.len;
                return;
            }
        }
        runs.entry(first.seq).or_insert((run.len, run.idx));
    }

    /// Forgets the runs that lie wholly below `below`, the log's compacted
    /// index: the storage's [`OriginTable`] answers for them from now on
    /// ([`find`](Self::find) falls back to it), so the index holds no more
    /// than the retained log however long this server leads.
    pub(super) fn trim(&mut self, below: u64) {
        self.runs.retain(|_, runs| {
            runs.retain(|_, &mut (len, idx)| idx.saturating_add(len) > below);
            !runs.is_empty()
        });
    }

    /// How many runs the index holds (the tail included).
    #[cfg(test)]
    pub(super) fn run_count(&self) -> usize {
        self.runs.values().map(BTreeMap::len).sum::<usize>() + usize::from(self.tail.is_some())
    }

    /// Records one proposal at `idx`.
    #[cfg(test)]
    pub(super) fn add(&mut self, idx: u64, id: OriginId) {
        self.add_run(&OriginRun {
            idx,
            len: 1,
            first: id,
        });
    }

    /// Where the log, or the compacted prefix `table` describes, has `id`.
    pub(super) fn find(&self, id: &OriginId, table: &OriginTable) -> Option<Found> {
        if let Some(found) = self.tail.as_ref().and_then(|t| find_in_run(t, 0, id)) {
            return Some(found);
        }
        if let Some(runs) = self.runs.get(&(id.origin, id.incarnation)) {
            if let Some((&seq, &(len, idx))) = runs.range(..=id.seq).next_back() {
                if id.seq < seq + len {
                    return Some(Found::At(idx + (id.seq - seq)));
                }
            }
        }
        if self
            .newest
            .get(&id.origin)
            .is_some_and(|&n| n > id.incarnation)
        {
            return Some(Found::PreviousLife);
        }
        table.position(id).map(|p| match p {
            TablePosition::At(idx) => Found::At(idx),
            TablePosition::PreviousLife => Found::PreviousLife,
        })
    }
}

/// Where the run `run`, its indices moved by `+by`, has `id`, or
/// [`Found::PreviousLife`] if it is of a later life of `id`'s origin.
pub(super) fn find_in_run(run: &OriginRun, by: u64, id: &OriginId) -> Option<Found> {
    if run.first.origin != id.origin {
        return None;
    }
    if run.first.incarnation > id.incarnation {
        return Some(Found::PreviousLife);
    }
    let k = id.seq.checked_sub(run.first.seq)?;
    (run.first.incarnation == id.incarnation && k < run.len).then(|| Found::At(run.idx + by + k))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(origin: NodeId, incarnation: u64, seq: u64) -> OriginId {
        OriginId {
            origin,
            incarnation,
            seq,
        }
    }

    #[test]
    fn trimming_forgets_runs_below_the_compacted_index_and_the_table_answers_for_them() {
        let mut index = LogIndex::default();
        // Two origins alternating: every batch is a run of its own.
        for k in 0..1_000u64 {
            let origin = 1 + k % 2;
            index.add_run(&OriginRun {
                idx: k * 10,
                len: 10,
                first: id(origin, 1, (k / 2) * 10),
            });
        }
        assert_eq!(index.run_count(), 1_000);
        index.trim(9_000);
        assert_eq!(index.run_count(), 100, "the runs at 9,000 and above stay");
        let table = OriginTable::new();
        assert_eq!(
            index.find(&id(1, 1, 4_500), &table),
            Some(Found::At(9_000)),
            "a retained run is found"
        );
        assert_eq!(
            index.find(&id(1, 1, 0), &table),
            None,
            "a trimmed one is the table's"
        );
        assert_eq!(
            index.find(&id(2, 0, 0), &table),
            Some(Found::PreviousLife),
            "the newest incarnation per origin is kept"
        );
    }

    #[test]
    fn finds_proposals_in_the_log_the_batch_and_the_table() {
        let mut ids = OriginIds::new();
        for k in 0..10 {
            ids.push(100 + k, id(1, 1, k + 1));
        }
        let mut index = LogIndex::of(&ids);
        index.add(110, id(1, 1, 11));
        index.add(111, id(2, 3, 1));
        assert_eq!(
            index.runs.get(&(1, 1)).map_or(0, BTreeMap::len)
                + usize::from(index.tail.is_some_and(|t| t.first.origin == 1)),
            1,
            "one run however many"
        );
        let mut table = OriginTable::new();
        table.insert_run(&OriginRun {
            idx: 5,
            len: 1,
            first: id(3, 1, 7),
        });
        assert_eq!(index.find(&id(1, 1, 4), &table), Some(Found::At(103)));
        assert_eq!(index.find(&id(1, 1, 11), &table), Some(Found::At(110)));
        assert_eq!(index.find(&id(1, 1, 12), &table), None);
        assert_eq!(index.find(&id(2, 2, 1), &table), Some(Found::PreviousLife));
        assert_eq!(index.find(&id(3, 1, 7), &table), Some(Found::At(5)));
        assert_eq!(index.find(&id(3, 1, 8), &table), None);
    }
}
