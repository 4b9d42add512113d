//! [`KeptStorage`]: a node's `MemoryStorage` that outlives the node, so a
//! crashed node restarts on what it had, as a process restarts on its disk.

use omnipaxos::{
    Ballot,
    storage::{Entry, OriginIds, OriginTable, Storage, StorageOp, StorageResult},
    util::{ConfigurationEnd, StopSign},
};
use omnipaxos_storage::memory_storage::MemoryStorage;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// A handle on one node's [`MemoryStorage`]; clones share it.
///
/// The runtime node owns the storage it is given and drops it when it shuts
/// down. The cluster gives it a clone of this handle and keeps another, so
/// that a crash (a shutdown) loses nothing and a restart builds the node on
/// the very same state: the node then recovers as a restarted process would
/// (`fail_recovery`), instead of rejoining empty.
#[derive(Debug)]
pub struct KeptStorage<T: Entry>(Arc<Mutex<MemoryStorage<T>>>);

// Written by hand: a derive would demand `T: Clone` of the handle's contents
// in a way `Arc` does not need.
impl<T: Entry> Clone for KeptStorage<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T: Entry> Default for KeptStorage<T> {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(MemoryStorage::default())))
    }
}

impl<T: Entry> KeptStorage<T> {
    fn lock(&self) -> MutexGuard<'_, MemoryStorage<T>> {
        // MemoryStorage checks a write before applying it and applies it
        // without failing, so a panic elsewhere cannot leave it half-written.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T: Entry> Storage<T> for KeptStorage<T> {
    fn write_atomically(&mut self, ops: Vec<StorageOp<T>>) -> StorageResult<()> {
        self.lock().write_atomically(ops)
    }

    fn append_entry(&mut self, entry: T) -> StorageResult<()> {
        self.lock().append_entry(entry)
    }

    fn append_entries(&mut self, entries: Vec<T>) -> StorageResult<()> {
        self.lock().append_entries(entries)
    }

    fn append_on_prefix(&mut self, from_idx: u64, entries: Vec<T>) -> StorageResult<()> {
        self.lock().append_on_prefix(from_idx, entries)
    }

    fn set_promise(&mut self, n_prom: Ballot) -> StorageResult<()> {
        self.lock().set_promise(n_prom)
    }

    fn set_decided_idx(&mut self, ld: u64) -> StorageResult<()> {
        self.lock().set_decided_idx(ld)
    }

    fn get_decided_idx(&self) -> StorageResult<u64> {
        self.lock().get_decided_idx()
    }

    fn set_accepted_round(&mut self, na: Ballot) -> StorageResult<()> {
        self.lock().set_accepted_round(na)
    }

    fn get_accepted_round(&self) -> StorageResult<Option<Ballot>> {
        self.lock().get_accepted_round()
    }

    fn get_entries(&self, from: u64, to: u64) -> StorageResult<Vec<T>> {
        self.lock().get_entries(from, to)
    }

    fn get_log_len(&self) -> StorageResult<u64> {
        self.lock().get_log_len()
    }

    fn get_suffix(&self, from: u64) -> StorageResult<Vec<T>> {
        self.lock().get_suffix(from)
    }

    fn get_promise(&self) -> StorageResult<Option<Ballot>> {
        self.lock().get_promise()
    }

    fn set_stopsign(&mut self, s: Option<StopSign>) -> StorageResult<()> {
        self.lock().set_stopsign(s)
    }

    fn get_stopsign(&self) -> StorageResult<Option<StopSign>> {
        self.lock().get_stopsign()
    }

    fn trim(&mut self, idx: u64) -> StorageResult<()> {
        self.lock().trim(idx)
    }

    fn set_compacted_idx(&mut self, idx: u64) -> StorageResult<()> {
        self.lock().set_compacted_idx(idx)
    }

    fn get_compacted_idx(&self) -> StorageResult<u64> {
        self.lock().get_compacted_idx()
    }

    fn set_snapshot(&mut self, snapshot: Option<T::Snapshot>) -> StorageResult<()> {
        self.lock().set_snapshot(snapshot)
    }

    fn get_snapshot(&self) -> StorageResult<Option<T::Snapshot>> {
        self.lock().get_snapshot()
    }

    fn set_previous_configuration_end(
        &mut self,
        end: Option<ConfigurationEnd>,
    ) -> StorageResult<()> {
        self.lock().set_previous_configuration_end(end)
    }

    fn get_previous_configuration_end(&self) -> StorageResult<Option<ConfigurationEnd>> {
        self.lock().get_previous_configuration_end()
    }

    fn keeps_origins(&self) -> bool {
        self.lock().keeps_origins()
    }

    fn get_origins(&self, from: u64, to: u64) -> StorageResult<OriginIds> {
        self.lock().get_origins(from, to)
    }

    fn get_origin_table(&self) -> StorageResult<OriginTable> {
        self.lock().get_origin_table()
    }

    fn get_incarnation(&self) -> StorageResult<u64> {
        self.lock().get_incarnation()
    }
}
