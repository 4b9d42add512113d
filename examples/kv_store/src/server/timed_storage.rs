//! [`TimedStorage`]: a [`Storage`] that times every write of the storage it
//! wraps, for the `kv_store_storage_write_duration_seconds` histogram.
//!
//! The server hands its storage to the node, which owns it from then on, so
//! the time a durable write takes can only be seen from inside the storage.
//! A write returns once it is durable (the trait's contract), so the time it
//! takes is the time its sync takes, plus the little it spends encoding. The
//! exceptions are the deferred writes (`defer_leader_sync`, which the runtime
//! turns on): a leader's batch, whose sync comes as a call of its own and is
//! observed as one, and a raised decided index, which is never synced by
//! itself; both are observed as the quick writes they are. Reads are not
//! timed: they come from memory or the page cache and would drown the syncs
//! in the histogram.

use omnipaxos::{
    ballot::Ballot,
    storage::{Entry, OriginIds, OriginTable, Storage, StorageOp, StorageResult},
    util::{ConfigurationEnd, StopSign},
};
use prometheus_client::metrics::histogram::Histogram;
use std::time::Instant;

/// Wraps `S`, observing the seconds each write takes into a histogram and
/// passing every call through unchanged, errors included.
///
/// A timed write costs two clock reads and one histogram update (a short
/// lock, no allocation) on top of the write itself.
#[derive(Debug)]
pub(crate) struct TimedStorage<S> {
    inner: S,
    /// Where each write's duration goes; shared with the metrics registry.
    writes: Histogram,
}

impl<S> TimedStorage<S> {
    pub(crate) fn new(inner: S, writes: Histogram) -> Self {
        Self { inner, writes }
    }

    /// Runs one write of the inner storage and observes how long it took,
    /// whether it succeeded or not: a failing disk is slow too, and its
    /// failures belong in the picture.
    fn timed<R>(&mut self, write: impl FnOnce(&mut S) -> StorageResult<R>) -> StorageResult<R> {
        let start = Instant::now();
        let result = write(&mut self.inner);
        self.writes.observe(start.elapsed().as_secs_f64());
        result
    }
}

impl<T: Entry, S: Storage<T>> Storage<T> for TimedStorage<S> {
    fn write_atomically(&mut self, ops: Vec<StorageOp<T>>) -> StorageResult<()> {
        self.timed(|s| s.write_atomically(ops))
    }

    /// Timed like any write: a deferred one is quick, and its sync is
    /// timed on its own.
    fn write_deferred(&mut self, ops: Vec<StorageOp<T>>) -> StorageResult<bool> {
        self.timed(|s| s.write_deferred(ops))
    }

    fn sync(&mut self) -> StorageResult<()> {
        self.timed(|s| s.sync())
    }

    fn append_entry(&mut self, entry: T) -> StorageResult<()> {
        self.timed(|s| s.append_entry(entry))
    }

    fn append_entries(&mut self, entries: Vec<T>) -> StorageResult<()> {
        self.timed(|s| s.append_entries(entries))
    }

    fn append_on_prefix(&mut self, from_idx: u64, entries: Vec<T>) -> StorageResult<()> {
        self.timed(|s| s.append_on_prefix(from_idx, entries))
    }

    fn set_promise(&mut self, n_prom: Ballot) -> StorageResult<()> {
        self.timed(|s| s.set_promise(n_prom))
    }

    fn set_decided_idx(&mut self, ld: u64) -> StorageResult<()> {
        self.timed(|s| s.set_decided_idx(ld))
    }

    fn get_decided_idx(&self) -> StorageResult<u64> {
        self.inner.get_decided_idx()
    }

    fn set_accepted_round(&mut self, na: Ballot) -> StorageResult<()> {
        self.timed(|s| s.set_accepted_round(na))
    }

    fn get_accepted_round(&self) -> StorageResult<Option<Ballot>> {
        self.inner.get_accepted_round()
    }

    fn get_entries(&self, from: u64, to: u64) -> StorageResult<Vec<T>> {
        self.inner.get_entries(from, to)
    }

    fn get_log_len(&self) -> StorageResult<u64> {
        self.inner.get_log_len()
    }

    fn get_suffix(&self, from: u64) -> StorageResult<Vec<T>> {
        self.inner.get_suffix(from)
    }

    fn get_promise(&self) -> StorageResult<Option<Ballot>> {
        self.inner.get_promise()
    }

    fn set_stopsign(&mut self, s: Option<StopSign>) -> StorageResult<()> {
        self.timed(|inner| inner.set_stopsign(s))
    }

    fn get_stopsign(&self) -> StorageResult<Option<StopSign>> {
        self.inner.get_stopsign()
    }

    fn trim(&mut self, idx: u64) -> StorageResult<()> {
        self.timed(|s| s.trim(idx))
    }

    fn set_compacted_idx(&mut self, idx: u64) -> StorageResult<()> {
        self.timed(|s| s.set_compacted_idx(idx))
    }

    fn get_compacted_idx(&self) -> StorageResult<u64> {
        self.inner.get_compacted_idx()
    }

    fn set_snapshot(&mut self, snapshot: Option<T::Snapshot>) -> StorageResult<()> {
        self.timed(|s| s.set_snapshot(snapshot))
    }

    fn get_snapshot(&self) -> StorageResult<Option<T::Snapshot>> {
        self.inner.get_snapshot()
    }

    fn set_previous_configuration_end(
        &mut self,
        end: Option<ConfigurationEnd>,
    ) -> StorageResult<()> {
        self.timed(|s| s.set_previous_configuration_end(end))
    }

    fn get_previous_configuration_end(&self) -> StorageResult<Option<ConfigurationEnd>> {
        self.inner.get_previous_configuration_end()
    }

    fn keeps_origins(&self) -> bool {
        self.inner.keeps_origins()
    }

    fn get_origins(&self, from: u64, to: u64) -> StorageResult<OriginIds> {
        self.inner.get_origins(from, to)
    }

    fn get_origin_table(&self) -> StorageResult<OriginTable> {
        self.inner.get_origin_table()
    }

    fn get_incarnation(&self) -> StorageResult<u64> {
        self.inner.get_incarnation()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::metrics::LATENCY_BUCKETS;
    use omnipaxos_storage::{
        conformance::{self, Sum, Value},
        memory_storage::MemoryStorage,
        persistent_storage::{PersistentStorage, PersistentStorageConfig},
    };

    fn histogram() -> Histogram {
        Histogram::new(LATENCY_BUCKETS)
    }

    #[test]
    fn it_passes_the_storage_conformance_suite_over_memory_storage() {
        conformance::run(|| TimedStorage::new(MemoryStorage::default(), histogram()));
    }

    #[test]
    fn it_passes_the_storage_conformance_suite_over_persistent_storage_with_reopens() {
        let root = tempfile::tempdir().unwrap();
        let mut n = 0;
        let open = |config: &PersistentStorageConfig| {
            let storage = PersistentStorage::open(config.clone()).expect("opens");
            (TimedStorage::new(storage, histogram()), config.clone())
        };
        conformance::run_with_reopen(
            || {
                n += 1;
                open(&PersistentStorageConfig::with_path(
                    root.path().join(n.to_string()),
                ))
            },
            |(storage, config)| {
                drop(storage);
                open(&config)
            },
        );
    }

    #[test]
    fn every_write_is_observed_once_and_reads_are_not() {
        let writes = histogram();
        let mut s = TimedStorage::new(MemoryStorage::<Value>::default(), writes.clone());
        let ballot = Ballot::with(1, 0, 1);
        s.append_entry(Value(1)).unwrap();
        s.append_entries(vec![Value(2), Value(3)]).unwrap();
        s.append_on_prefix(3, vec![Value(4)]).unwrap();
        s.set_promise(ballot).unwrap();
        s.set_accepted_round(ballot).unwrap();
        s.set_decided_idx(4).unwrap();
        s.set_stopsign(None).unwrap();
        s.set_snapshot(Some(Sum(3))).unwrap();
        s.trim(2).unwrap();
        s.set_compacted_idx(2).unwrap();
        s.set_previous_configuration_end(None).unwrap();
        s.write_atomically(vec![
            StorageOp::AppendEntry(Value(5)),
            StorageOp::SetDecidedIndex(5),
        ])
        .unwrap();
        assert_eq!(writes.count(), 12, "one observation per write call");
        // A batch is one write, however many ops it holds; reads cost nothing.
        assert_eq!(
            s.get_entries(0, 10).unwrap(),
            vec![Value(3), Value(4), Value(5)]
        );
        assert_eq!(s.get_suffix(3).unwrap(), vec![Value(4), Value(5)]);
        assert_eq!(s.get_log_len().unwrap(), 5);
        assert_eq!(s.get_decided_idx().unwrap(), 5);
        assert_eq!(s.get_compacted_idx().unwrap(), 2);
        assert_eq!(s.get_promise().unwrap(), Some(ballot));
        assert_eq!(s.get_accepted_round().unwrap(), Some(ballot));
        assert_eq!(s.get_snapshot().unwrap(), Some(Sum(3)));
        assert_eq!(s.get_stopsign().unwrap(), None);
        assert_eq!(s.get_previous_configuration_end().unwrap(), None);
        assert_eq!(writes.count(), 12);
        assert!(writes.sum() >= 0.0);
    }

    #[test]
    fn a_failed_write_is_observed_and_its_error_passed_through() {
        let writes = histogram();
        let mut s = TimedStorage::new(MemoryStorage::<Value>::default(), writes.clone());
        // An append on a prefix past the end of the log is out of range, so
        // the whole batch fails and changes nothing.
        let failed = s.write_atomically(vec![
            StorageOp::AppendEntry(Value(1)),
            StorageOp::AppendOnPrefix(9, vec![Value(2)]),
        ]);
        assert!(failed.is_err(), "{failed:?}");
        assert_eq!(s.get_log_len().unwrap(), 0);
        assert_eq!(writes.count(), 1);
    }
}
