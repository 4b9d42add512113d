//! [`MemoryStorage`]: the log and the protocol state in plain memory.

use crate::bounds::Bounds;
use omnipaxos::{
    ballot::Ballot,
    storage::{Entry, OriginIds, OriginTable, Storage, StorageOp, StorageResult},
    util::{ConfigurationEnd, StopSign},
};

/// A [`Storage`] that keeps everything in memory and loses it all when dropped.
///
/// Use it for tests, simulations, and servers that recover by catching up from
/// their peers rather than from their own disk. Every write takes effect
/// before it returns and cannot fail for lack of space (short of the process
/// running out of memory); a write can only fail because it names indices
/// the log does not hold ([`StorageError::IndexOutOfRange`](omnipaxos::errors::StorageError::IndexOutOfRange)), and then it
/// changes nothing.
///
/// Indices are absolute, as the [`Storage`] trait requires: trimming drops a
/// prefix of the log but never renumbers the entries after it.
///
/// ```
/// use omnipaxos::{macros::Entry, storage::Storage};
/// use omnipaxos_storage::memory_storage::MemoryStorage;
///
/// #[derive(Clone, Debug, PartialEq, Entry)]
/// struct KeyValue(u64);
///
/// let mut storage = MemoryStorage::default();
/// storage.append_entries(vec![KeyValue(0), KeyValue(1), KeyValue(2)])?;
/// storage.trim(2)?;
/// assert_eq!(storage.get_suffix(0)?, vec![KeyValue(2)]);
/// assert_eq!(storage.get_log_len()?, 3);
/// # Ok::<(), omnipaxos::errors::StorageError>(())
/// ```
#[derive(Clone, Debug)]
pub struct MemoryStorage<T: Entry> {
    /// The entries still held; `log[i]` has the absolute index `trimmed_idx + i`.
    log: Vec<T>,
    /// The absolute index of `log[0]`: every entry below it was dropped by a
    /// trim. Kept apart from `compacted_idx` because the trait lets the
    /// protocol trim and record the compacted index in separate calls.
    trimmed_idx: u64,
    /// The highest ballot promised, if any.
    promise: Option<Ballot>,
    /// The ballot in which the log was last accepted, if any.
    accepted_round: Option<Ballot>,
    /// Entries below this index are decided.
    decided_idx: u64,
    /// Entries below this index are trimmed or covered by `snapshot`, as the
    /// protocol last recorded.
    compacted_idx: u64,
    /// The stop-sign of this configuration, once one is accepted.
    stopsign: Option<StopSign>,
    /// The snapshot that stands in for the compacted prefix, if the entry type
    /// uses snapshots and one was taken.
    snapshot: Option<T::Snapshot>,
    /// How the configuration before this server's ended, once it moved on
    /// (or learned it in the new one). Boxed: written about once per
    /// configuration, and inline it would double the size of the handle.
    previous_end: Option<Box<ConfigurationEnd>>,
    /// Where the held entries came from (see [`OriginIds`]).
    origins: OriginIds,
    /// What the compacted prefix held.
    origin_table: OriginTable,
    /// How many times a server started on this storage.
    incarnation: u64,
}

// Written by hand: a derive would demand `T: Default`, which entries need not be.
impl<T: Entry> Default for MemoryStorage<T> {
    fn default() -> Self {
        Self {
            log: Vec::new(),
            trimmed_idx: 0,
            promise: None,
            accepted_round: None,
            decided_idx: 0,
            compacted_idx: 0,
            stopsign: None,
            snapshot: None,
            previous_end: None,
            origins: OriginIds::new(),
            origin_table: OriginTable::new(),
            incarnation: 0,
        }
    }
}

impl<T: Entry> MemoryStorage<T> {
    fn bounds(&self) -> Bounds {
        Bounds {
            trimmed_idx: self.trimmed_idx,
            log_len: self.trimmed_idx + self.log.len() as u64,
            compacted_idx: self.compacted_idx,
            stopsign: self.stopsign.is_some(),
        }
    }

    /// The position in `log` of the absolute index `idx`.
    fn offset(&self, idx: u64) -> usize {
        debug_assert!(
            idx >= self.trimmed_idx && idx - self.trimmed_idx <= self.log.len() as u64,
            "index {idx} is outside the held log {}..{}",
            self.trimmed_idx,
            self.trimmed_idx + self.log.len() as u64,
        );
        // In range by the assertion above, so it fits in `usize` like `log.len()` does.
        (idx - self.trimmed_idx) as usize
    }

    /// Checks `op` alone, then applies it.
    fn write(&mut self, op: StorageOp<T>) -> StorageResult<()> {
        self.bounds().check(&op)?;
        self.apply(op);
        Ok(())
    }

    /// Applies an op that [`Bounds::check`] accepted for the current state;
    /// cannot fail.
    fn apply(&mut self, op: StorageOp<T>) {
        match op {
            StorageOp::AppendEntry(entry) => self.log.push(entry),
            StorageOp::AppendEntries(mut entries) => self.log.append(&mut entries),
            StorageOp::AppendOnPrefix(from_idx, mut entries) => {
                let keep = self.offset(from_idx);
                self.log.truncate(keep);
                self.log.append(&mut entries);
                self.origins.truncate(from_idx);
            }
            StorageOp::Trim(idx) => {
                self.origins.trim(idx);
                if idx > self.trimmed_idx {
                    let drop = ((idx - self.trimmed_idx) as usize).min(self.log.len());
                    self.log.drain(..drop);
                    self.trimmed_idx = idx;
                }
            }
            StorageOp::SetPromise(ballot) => self.promise = Some(ballot),
            StorageOp::SetDecidedIndex(idx) => self.decided_idx = idx,
            StorageOp::SetAcceptedRound(ballot) => self.accepted_round = Some(ballot),
            StorageOp::SetCompactedIdx(idx) => self.compacted_idx = idx,
            StorageOp::SetStopsign(stopsign) => self.stopsign = stopsign,
            StorageOp::SetSnapshot(snapshot) => self.snapshot = snapshot,
            StorageOp::SetPreviousConfigurationEnd(end) => self.previous_end = end.map(Box::new),
            StorageOp::SetOrigins(from_idx, ids) => {
                self.origins.truncate(from_idx);
                let appended = self.origins.append(&ids);
                debug_assert!(appended, "bounds checked that the ids start at from_idx");
            }
            StorageOp::SetOriginTable(table) => self.origin_table = table,
            StorageOp::SetIncarnation(n) => self.incarnation = n,
        }
    }
}

impl<T: Entry> Storage<T> for MemoryStorage<T> {
    /// Checks every op against the bounds the log will have when its turn
    /// comes, and only if all pass applies them in order. Nothing is copied:
    /// the check needs only three indices, and once it passes no op can fail.
    fn write_atomically(&mut self, ops: Vec<StorageOp<T>>) -> StorageResult<()> {
        let mut bounds = self.bounds();
        for op in &ops {
            bounds.check(op)?;
        }
        for op in ops {
            self.apply(op);
        }
        debug_assert_eq!(
            self.bounds(),
            bounds,
            "applied ops moved the log differently than checked"
        );
        Ok(())
    }

    fn append_entry(&mut self, entry: T) -> StorageResult<()> {
        self.log.push(entry);
        Ok(())
    }

    fn append_entries(&mut self, mut entries: Vec<T>) -> StorageResult<()> {
        self.log.append(&mut entries);
        Ok(())
    }

    fn append_on_prefix(&mut self, from_idx: u64, entries: Vec<T>) -> StorageResult<()> {
        self.write(StorageOp::AppendOnPrefix(from_idx, entries))
    }

    fn set_promise(&mut self, n_prom: Ballot) -> StorageResult<()> {
        self.promise = Some(n_prom);
        Ok(())
    }

    fn set_decided_idx(&mut self, ld: u64) -> StorageResult<()> {
        self.write(StorageOp::SetDecidedIndex(ld))
    }

    fn get_decided_idx(&self) -> StorageResult<u64> {
        Ok(self.decided_idx)
    }

    fn set_accepted_round(&mut self, na: Ballot) -> StorageResult<()> {
        self.accepted_round = Some(na);
        Ok(())
    }

    fn get_accepted_round(&self) -> StorageResult<Option<Ballot>> {
        Ok(self.accepted_round)
    }

    /// Lends the held slice itself: no entry is copied.
    fn get_entries_with(&self, from: u64, to: u64, f: &mut dyn FnMut(&[T])) -> StorageResult<()> {
        let bounds = self.bounds();
        let from = from.max(bounds.first_idx());
        let to = to.min(bounds.log_len);
        if from < to {
            f(&self.log[self.offset(from)..self.offset(to)]);
        }
        Ok(())
    }

    fn get_entries(&self, from: u64, to: u64) -> StorageResult<Vec<T>> {
        let bounds = self.bounds();
        let from = from.max(bounds.first_idx());
        let to = to.min(bounds.log_len);
        if from >= to {
            return Ok(Vec::new());
        }
        Ok(self.log[self.offset(from)..self.offset(to)].to_vec())
    }

    fn get_log_len(&self) -> StorageResult<u64> {
        Ok(self.bounds().log_len)
    }

    fn get_suffix(&self, from: u64) -> StorageResult<Vec<T>> {
        self.get_entries(from, u64::MAX)
    }

    fn get_promise(&self) -> StorageResult<Option<Ballot>> {
        Ok(self.promise)
    }

    fn set_stopsign(&mut self, s: Option<StopSign>) -> StorageResult<()> {
        self.stopsign = s;
        Ok(())
    }

    fn get_stopsign(&self) -> StorageResult<Option<StopSign>> {
        Ok(self.stopsign.clone())
    }

    fn trim(&mut self, idx: u64) -> StorageResult<()> {
        self.write(StorageOp::Trim(idx))
    }

    fn set_compacted_idx(&mut self, idx: u64) -> StorageResult<()> {
        self.write(StorageOp::SetCompactedIdx(idx))
    }

    fn get_compacted_idx(&self) -> StorageResult<u64> {
        Ok(self.compacted_idx)
    }

    fn set_snapshot(&mut self, snapshot: Option<T::Snapshot>) -> StorageResult<()> {
        self.snapshot = snapshot;
        Ok(())
    }

    fn get_snapshot(&self) -> StorageResult<Option<T::Snapshot>> {
        Ok(self.snapshot.clone())
    }

    fn set_previous_configuration_end(
        &mut self,
        end: Option<ConfigurationEnd>,
    ) -> StorageResult<()> {
        self.previous_end = end.map(Box::new);
        Ok(())
    }

    fn get_previous_configuration_end(&self) -> StorageResult<Option<ConfigurationEnd>> {
        Ok(self.previous_end.as_deref().cloned())
    }

    fn keeps_origins(&self) -> bool {
        true
    }

    /// The batch of [`Storage::append_entry_with_origins`] without
    /// building it: the ids are checked first, then both are applied.
    fn append_entry_with_origins(&mut self, entry: T, ids: OriginIds) -> StorageResult<()> {
        let bounds = self.bounds();
        let first = ids.runs().first().map_or(bounds.log_len, |r| r.idx);
        if first < bounds.log_len || ids.end() > bounds.log_len + 1 {
            return Err(bounds.out_of_range("set origins", first.max(ids.end())));
        }
        self.log.push(entry);
        let appended = self.origins.append(&ids);
        debug_assert!(appended, "checked above: the ids start at the old end");
        Ok(())
    }

    /// The batch of [`Storage::append_entries_with_origins`] without
    /// building it: the ids are checked first, then both are applied.
    fn append_entries_with_origins(
        &mut self,
        mut entries: Vec<T>,
        ids: OriginIds,
    ) -> StorageResult<()> {
        let bounds = self.bounds();
        let end = bounds.log_len + entries.len() as u64;
        let first = ids.runs().first().map_or(bounds.log_len, |r| r.idx);
        if first < bounds.log_len || ids.end() > end {
            return Err(bounds.out_of_range("set origins", first.max(ids.end())));
        }
        self.log.append(&mut entries);
        let appended = self.origins.append(&ids);
        debug_assert!(appended, "checked above: the ids start at the old end");
        Ok(())
    }

    fn get_origins(&self, from: u64, to: u64) -> StorageResult<OriginIds> {
        // Clamped as entries are: ids below the compacted index stay held
        // (a trim drops them) but are not served.
        let bounds = self.bounds();
        let from = from.max(bounds.first_idx());
        let to = to.min(bounds.log_len);
        if from >= to {
            return Ok(OriginIds::new());
        }
        Ok(self.origins.range(from..to))
    }

    fn get_origin_table(&self) -> StorageResult<OriginTable> {
        Ok(self.origin_table.clone())
    }

    fn get_incarnation(&self) -> StorageResult<u64> {
        Ok(self.incarnation)
    }
}

#[cfg(test)]
mod tests {
    //! What is particular to `MemoryStorage`: its exact errors, clones and
    //! copies. The behaviour every storage shares is checked by the
    //! conformance suite, which `tests/conformance.rs` runs on it.

    use super::*;
    use omnipaxos::{errors::StorageError, macros::Entry, storage::Snapshot};
    use std::cell::Cell;

    /// An entry whose snapshot is the sum of the values it replaces.
    #[derive(Clone, Debug, PartialEq, Eq, Entry)]
    #[snapshot(Sum)]
    struct Value(u64);

    #[derive(Clone, Debug, PartialEq, Eq)]
    struct Sum(u64);

    impl Snapshot<Value> for Sum {
        fn create(entries: &[Value]) -> Self {
            Self(entries.iter().map(|v| v.0).sum())
        }

        fn merge(&mut self, delta: Self) {
            self.0 += delta.0;
        }

        fn use_snapshots() -> bool {
            true
        }
    }

    fn values(range: std::ops::Range<u64>) -> Vec<Value> {
        range.map(Value).collect()
    }

    /// A storage holding `0..len`, trimmed and compacted below `trimmed`.
    fn storage_with(len: u64, trimmed: u64) -> MemoryStorage<Value> {
        let mut storage = MemoryStorage::default();
        storage.append_entries(values(0..len)).unwrap();
        storage
            .write_atomically(vec![
                StorageOp::Trim(trimmed),
                StorageOp::SetCompactedIdx(trimmed),
            ])
            .unwrap();
        storage
    }

    /// Everything a reader can observe, to compare whole states.
    #[derive(Debug, PartialEq)]
    struct Observed {
        suffix: Vec<Value>,
        log_len: u64,
        compacted_idx: u64,
        decided_idx: u64,
        promise: Option<Ballot>,
        accepted_round: Option<Ballot>,
        stopsign: Option<StopSign>,
        snapshot: Option<Sum>,
    }

    fn observe(storage: &MemoryStorage<Value>) -> Observed {
        Observed {
            suffix: storage.get_suffix(0).unwrap(),
            log_len: storage.get_log_len().unwrap(),
            compacted_idx: storage.get_compacted_idx().unwrap(),
            decided_idx: storage.get_decided_idx().unwrap(),
            promise: storage.get_promise().unwrap(),
            accepted_round: storage.get_accepted_round().unwrap(),
            stopsign: storage.get_stopsign().unwrap(),
            snapshot: storage.get_snapshot().unwrap(),
        }
    }

    fn out_of_range(operation: &str, idx: u64, compacted_idx: u64, log_len: u64) -> StorageError {
        StorageError::IndexOutOfRange {
            operation: operation.to_owned(),
            idx,
            compacted_idx,
            log_len,
        }
    }

    #[test]
    fn new_storage_is_empty_and_has_no_state() {
        let storage = MemoryStorage::<Value>::default();
        assert_eq!(
            observe(&storage),
            Observed {
                suffix: vec![],
                log_len: 0,
                compacted_idx: 0,
                decided_idx: 0,
                promise: None,
                accepted_round: None,
                stopsign: None,
                snapshot: None,
            }
        );
    }

    #[test]
    fn trim_does_not_move_the_compacted_index() {
        let mut storage = storage_with(6, 0);
        storage.trim(3).unwrap();
        assert_eq!(storage.get_compacted_idx().unwrap(), 0);
        storage.set_compacted_idx(3).unwrap();
        assert_eq!(storage.get_compacted_idx().unwrap(), 3);
    }

    #[test]
    fn compacted_index_alone_hides_the_entries_below_it() {
        let mut storage = storage_with(6, 0);
        storage.set_compacted_idx(4).unwrap();
        assert_eq!(storage.get_suffix(0).unwrap(), values(4..6));
        assert_eq!(
            storage.append_on_prefix(3, vec![]),
            Err(out_of_range("append on prefix", 3, 4, 6))
        );
    }

    #[test]
    fn append_on_prefix_replaces_the_suffix_at_an_absolute_index() {
        let mut storage = storage_with(6, 2);
        storage.append_on_prefix(4, values(40..43)).unwrap();
        assert_eq!(storage.get_log_len().unwrap(), 7);
        assert_eq!(
            storage.get_suffix(0).unwrap(),
            [values(2..4), values(40..43)].concat()
        );
    }

    #[test]
    fn append_on_prefix_outside_the_held_range_is_out_of_range_and_changes_nothing() {
        let mut storage = storage_with(6, 2);
        let before = observe(&storage);
        assert_eq!(
            storage.append_on_prefix(7, vec![Value(7)]),
            Err(out_of_range("append on prefix", 7, 2, 6))
        );
        assert_eq!(
            storage.append_on_prefix(1, vec![Value(1)]),
            Err(out_of_range("append on prefix", 1, 2, 6))
        );
        assert_eq!(observe(&storage), before);
    }

    #[test]
    fn decided_and_compacted_indices_past_the_log_end_are_refused() {
        let mut storage = storage_with(3, 0);
        assert_eq!(
            storage.set_decided_idx(4),
            Err(out_of_range("set decided index", 4, 0, 3))
        );
        assert_eq!(
            storage.set_compacted_idx(4),
            Err(out_of_range("set compacted index", 4, 0, 3))
        );
        storage.set_decided_idx(3).unwrap();
        storage.set_compacted_idx(3).unwrap();
        assert_eq!(storage.get_decided_idx().unwrap(), 3);
        assert_eq!(storage.get_compacted_idx().unwrap(), 3);
    }

    #[test]
    fn state_round_trips_and_can_be_cleared() {
        let mut storage = MemoryStorage::<Value>::default();
        let stopsign = StopSign::with(2, vec![5, 6, 7], Some(vec![1, 2]));
        storage.set_promise(Ballot::with(3, 1, 5)).unwrap();
        storage.set_accepted_round(Ballot::with(2, 0, 6)).unwrap();
        storage.set_stopsign(Some(stopsign.clone())).unwrap();
        storage.set_snapshot(Some(Sum(42))).unwrap();
        assert_eq!(storage.get_promise().unwrap(), Some(Ballot::with(3, 1, 5)));
        assert_eq!(
            storage.get_accepted_round().unwrap(),
            Some(Ballot::with(2, 0, 6))
        );
        assert_eq!(storage.get_stopsign().unwrap(), Some(stopsign));
        assert_eq!(storage.get_snapshot().unwrap(), Some(Sum(42)));

        storage.set_stopsign(None).unwrap();
        storage.set_snapshot(None).unwrap();
        assert_eq!(storage.get_stopsign().unwrap(), None);
        assert_eq!(storage.get_snapshot().unwrap(), None);
    }

    #[test]
    fn write_atomically_applies_every_op_in_order() {
        let mut storage = storage_with(4, 0);
        let stopsign = StopSign::with(2, vec![1, 2], None);
        storage
            .write_atomically(vec![
                StorageOp::AppendOnPrefix(2, values(20..22)),
                StorageOp::AppendEntry(Value(22)),
                StorageOp::AppendEntries(values(23..25)),
                StorageOp::SetPromise(Ballot::with(4, 0, 2)),
                StorageOp::SetAcceptedRound(Ballot::with(4, 0, 2)),
                // Both are checked against the log as the appends above left it.
                StorageOp::SetDecidedIndex(7),
                StorageOp::Trim(3),
                StorageOp::SetCompactedIdx(3),
                StorageOp::SetSnapshot(Some(Sum(20))),
                StorageOp::SetStopsign(Some(stopsign.clone())),
            ])
            .unwrap();
        assert_eq!(
            observe(&storage),
            Observed {
                suffix: values(21..25),
                log_len: 7,
                compacted_idx: 3,
                decided_idx: 7,
                promise: Some(Ballot::with(4, 0, 2)),
                accepted_round: Some(Ballot::with(4, 0, 2)),
                stopsign: Some(stopsign),
                snapshot: Some(Sum(20)),
            }
        );
    }

    /// The fast path of an append with its ids does what the batch through
    /// `write_atomically` does, and refuses ids the append does not cover
    /// without changing anything.
    #[test]
    fn an_append_with_its_origins_matches_the_batch_and_refuses_stray_ids() {
        use omnipaxos::storage::OriginId;
        let ids = |from: u64, n: u64| {
            let mut ids = OriginIds::new();
            for k in 0..n {
                ids.push(
                    from + k,
                    OriginId {
                        origin: 7,
                        incarnation: 1,
                        seq: 1 + k,
                    },
                );
            }
            ids
        };
        let mut fast = storage_with(4, 0);
        let mut batch = storage_with(4, 0);
        fast.append_entries_with_origins(values(4..7), ids(4, 3))
            .unwrap();
        batch
            .write_atomically(vec![
                StorageOp::AppendEntries(values(4..7)),
                StorageOp::SetOrigins(4, ids(4, 3)),
            ])
            .unwrap();
        assert_eq!(fast.get_suffix(0).unwrap(), batch.get_suffix(0).unwrap());
        assert_eq!(
            fast.get_origins(0, 7).unwrap(),
            batch.get_origins(0, 7).unwrap()
        );
        assert_eq!(fast.get_origins(0, 7).unwrap(), ids(4, 3));
        let before = (fast.get_suffix(0).unwrap(), fast.get_origins(0, 9).unwrap());
        // Ids past the appended entries, and ids below the old end.
        assert!(
            fast.append_entries_with_origins(values(7..8), ids(7, 2))
                .is_err()
        );
        assert!(
            fast.append_entries_with_origins(values(7..8), ids(6, 1))
                .is_err()
        );
        assert_eq!(
            (fast.get_suffix(0).unwrap(), fast.get_origins(0, 9).unwrap()),
            before
        );
    }

    #[test]
    fn write_atomically_with_one_failing_op_changes_nothing() {
        let mut storage = storage_with(4, 1);
        storage.set_promise(Ballot::with(1, 0, 1)).unwrap();
        let before = observe(&storage);
        let batch = |failing: StorageOp<Value>| {
            vec![
                StorageOp::AppendEntries(values(4..6)),
                StorageOp::SetPromise(Ballot::with(9, 0, 9)),
                StorageOp::SetAcceptedRound(Ballot::with(9, 0, 9)),
                StorageOp::SetDecidedIndex(5),
                StorageOp::SetStopsign(Some(StopSign::with(2, vec![1], None))),
                StorageOp::SetSnapshot(Some(Sum(1))),
                StorageOp::Trim(2),
                failing,
                StorageOp::AppendEntry(Value(99)),
            ]
        };
        // Each op is valid against the original log but not against the log
        // as the ops before it leave it, or is invalid outright.
        let cases = [
            (
                StorageOp::AppendOnPrefix(1, vec![]),
                out_of_range("append on prefix", 1, 2, 6),
            ),
            (
                StorageOp::AppendOnPrefix(7, vec![]),
                out_of_range("append on prefix", 7, 2, 6),
            ),
            (
                // 7 would be the stop-sign's slot, stored earlier in the batch.
                StorageOp::SetDecidedIndex(8),
                out_of_range("set decided index", 8, 2, 6),
            ),
            (
                StorageOp::SetCompactedIdx(7),
                out_of_range("set compacted index", 7, 2, 6),
            ),
        ];
        for (failing, error) in cases {
            assert_eq!(storage.write_atomically(batch(failing)), Err(error));
            assert_eq!(observe(&storage), before);
        }
    }

    #[test]
    fn a_batch_is_checked_against_the_log_its_earlier_ops_leave() {
        let mut storage = MemoryStorage::default();
        storage
            .write_atomically(vec![
                StorageOp::AppendEntries(values(0..5)),
                StorageOp::Trim(5),
                StorageOp::AppendOnPrefix(5, values(5..7)),
                StorageOp::SetCompactedIdx(5),
            ])
            .unwrap();
        assert_eq!(storage.get_log_len().unwrap(), 7);
        assert_eq!(storage.get_suffix(0).unwrap(), values(5..7));

        // Shortening the log first makes a later append at the old end invalid.
        let before = observe(&storage);
        let result = storage.write_atomically(vec![
            StorageOp::AppendOnPrefix(6, vec![]),
            StorageOp::AppendOnPrefix(7, vec![]),
        ]);
        assert_eq!(result, Err(out_of_range("append on prefix", 7, 5, 6)));
        assert_eq!(observe(&storage), before);
    }

    #[test]
    fn clones_are_independent() {
        let mut original = storage_with(3, 0);
        let copy = original.clone();
        original.append_on_prefix(1, vec![Value(10)]).unwrap();
        original.set_promise(Ballot::with(1, 0, 1)).unwrap();
        assert_eq!(copy.get_suffix(0).unwrap(), values(0..3));
        assert_eq!(copy.get_promise().unwrap(), None);
    }

    thread_local! {
        static CLONES: Cell<usize> = const { Cell::new(0) };
    }

    /// An entry that counts how often it is cloned on this thread.
    #[derive(Debug, Entry)]
    struct Counted;

    impl Clone for Counted {
        fn clone(&self) -> Self {
            CLONES.set(CLONES.get() + 1);
            Self
        }
    }

    #[test]
    fn writes_move_entries_and_reads_clone_only_what_they_return() {
        let mut storage = MemoryStorage::default();
        storage
            .append_entries((0..100).map(|_| Counted).collect())
            .unwrap();
        storage.append_entry(Counted).unwrap();
        storage
            .append_on_prefix(50, (0..10).map(|_| Counted).collect())
            .unwrap();
        storage
            .write_atomically(vec![
                StorageOp::AppendEntries((0..10).map(|_| Counted).collect()),
                StorageOp::Trim(20),
            ])
            .unwrap();
        assert_eq!(CLONES.get(), 0, "writes cloned entries");

        assert_eq!(storage.get_entries(30, 33).unwrap().len(), 3);
        assert_eq!(CLONES.get(), 3, "a read cloned more than it returned");
    }
}
