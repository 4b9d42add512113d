//! [`SharedStorage`]: a server's storage that outlives the server.

use crate::sim::value::Value;
use omnipaxos::{
    ballot::Ballot,
    storage::{Entry, Storage, StorageOp, StorageResult},
    util::StopSign,
};
use omnipaxos_storage::memory_storage::MemoryStorage;
use std::{cell::RefCell, rc::Rc};

/// A handle on one server's [`MemoryStorage`]; clones share the same state.
///
/// A crash in the simulator drops the server's `OmniPaxos` value but keeps
/// the cluster's clone of this handle, so a restart finds exactly what the
/// server had persisted, as a real process finds its disk. The invariant
/// checks also read the storage through this handle, including while the
/// server is down.
///
/// Besides forwarding, the handle notes the lowest log index that a write
/// replaced or removed (`append_on_prefix`, `trim`). Only such writes can take
/// a decided entry away, so the invariants re-examine exactly those indices
/// instead of rescanning every log after every tick.
#[derive(Clone, Default)]
pub struct SharedStorage {
    inner: Rc<RefCell<Inner>>,
}

#[derive(Default)]
struct Inner {
    /// What the server persisted.
    store: MemoryStorage<Value>,
    /// The lowest index rewritten or trimmed since the invariants last looked.
    rewritten_from: Option<u64>,
}

impl Inner {
    fn note_rewrite(&mut self, from_idx: u64) {
        self.rewritten_from = Some(
            self.rewritten_from
                .map_or(from_idx, |old| old.min(from_idx)),
        );
    }
}

impl SharedStorage {
    /// Creates an empty storage.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the lowest index that was overwritten or trimmed since the last
    /// call, and forgets it.
    pub fn take_rewritten_from(&self) -> Option<u64> {
        self.inner.borrow_mut().rewritten_from.take()
    }

    /// Reads from the underlying storage, e.g. to inspect a crashed server.
    ///
    /// Must not be called from inside a `Storage` method of the same handle
    /// (the simulator never does: it only inspects storage between steps).
    pub fn with<R>(&self, read: impl FnOnce(&MemoryStorage<Value>) -> R) -> R {
        read(&self.inner.borrow().store)
    }

    /// The entry stored at `idx`, if the log holds it (not compacted, not past the end).
    pub fn entry_at(&self, idx: u64) -> Option<Value> {
        let entries = self
            .with(|s| s.get_entries(idx, idx + 1))
            .expect("MemoryStorage reads do not fail");
        entries.first().copied()
    }

    /// The persisted compacted index (0 when nothing was trimmed).
    pub fn compacted_idx(&self) -> u64 {
        self.with(|s| s.get_compacted_idx())
            .expect("MemoryStorage reads do not fail")
    }

    /// The persisted decided index.
    pub fn decided_idx(&self) -> u64 {
        self.with(|s| s.get_decided_idx())
            .expect("MemoryStorage reads do not fail")
    }

    /// The persisted promise, if any.
    pub fn promise(&self) -> Option<Ballot> {
        self.with(|s| s.get_promise())
            .expect("MemoryStorage reads do not fail")
    }

    /// The persisted accepted round, if any.
    pub fn accepted_round(&self) -> Option<Ballot> {
        self.with(|s| s.get_accepted_round())
            .expect("MemoryStorage reads do not fail")
    }

    /// The stored entries in `[from, to)`, clamped to what the log holds.
    pub fn entries(&self, from: u64, to: u64) -> Vec<Value> {
        self.with(|s| s.get_entries(from, to))
            .expect("MemoryStorage reads do not fail")
    }
}

impl Storage<Value> for SharedStorage {
    fn write_atomically(&mut self, ops: Vec<StorageOp<Value>>) -> StorageResult<()> {
        let lowest_rewrite = ops
            .iter()
            .filter_map(|op| match op {
                StorageOp::AppendOnPrefix(from_idx, _) => Some(*from_idx),
                // A trim removes the indices below its argument: the start of the log changed.
                StorageOp::Trim(_) => Some(0),
                _ => None,
            })
            .min();
        let mut inner = self.inner.borrow_mut();
        inner.store.write_atomically(ops)?;
        if let Some(idx) = lowest_rewrite {
            inner.note_rewrite(idx);
        }
        Ok(())
    }

    fn append_entry(&mut self, entry: Value) -> StorageResult<()> {
        self.inner.borrow_mut().store.append_entry(entry)
    }

    fn append_entries(&mut self, entries: Vec<Value>) -> StorageResult<()> {
        self.inner.borrow_mut().store.append_entries(entries)
    }

    fn append_on_prefix(&mut self, from_idx: u64, entries: Vec<Value>) -> StorageResult<()> {
        let mut inner = self.inner.borrow_mut();
        inner.store.append_on_prefix(from_idx, entries)?;
        inner.note_rewrite(from_idx);
        Ok(())
    }

    fn set_promise(&mut self, n_prom: Ballot) -> StorageResult<()> {
        self.inner.borrow_mut().store.set_promise(n_prom)
    }

    fn set_decided_idx(&mut self, ld: u64) -> StorageResult<()> {
        self.inner.borrow_mut().store.set_decided_idx(ld)
    }

    fn get_decided_idx(&self) -> StorageResult<u64> {
        self.inner.borrow().store.get_decided_idx()
    }

    fn set_accepted_round(&mut self, na: Ballot) -> StorageResult<()> {
        self.inner.borrow_mut().store.set_accepted_round(na)
    }

    fn get_accepted_round(&self) -> StorageResult<Option<Ballot>> {
        self.inner.borrow().store.get_accepted_round()
    }

    fn get_entries(&self, from: u64, to: u64) -> StorageResult<Vec<Value>> {
        self.inner.borrow().store.get_entries(from, to)
    }

    fn get_log_len(&self) -> StorageResult<u64> {
        self.inner.borrow().store.get_log_len()
    }

    fn get_suffix(&self, from: u64) -> StorageResult<Vec<Value>> {
        self.inner.borrow().store.get_suffix(from)
    }

    fn get_promise(&self) -> StorageResult<Option<Ballot>> {
        self.inner.borrow().store.get_promise()
    }

    fn set_stopsign(&mut self, s: Option<StopSign>) -> StorageResult<()> {
        self.inner.borrow_mut().store.set_stopsign(s)
    }

    fn get_stopsign(&self) -> StorageResult<Option<StopSign>> {
        self.inner.borrow().store.get_stopsign()
    }

    fn trim(&mut self, idx: u64) -> StorageResult<()> {
        let mut inner = self.inner.borrow_mut();
        inner.store.trim(idx)?;
        // Trimming removes the indices below `idx`, so everything from the
        // start of the log must be looked at again.
        inner.note_rewrite(0);
        Ok(())
    }

    fn set_compacted_idx(&mut self, idx: u64) -> StorageResult<()> {
        self.inner.borrow_mut().store.set_compacted_idx(idx)
    }

    fn get_compacted_idx(&self) -> StorageResult<u64> {
        self.inner.borrow().store.get_compacted_idx()
    }

    fn set_snapshot(&mut self, snapshot: Option<NoSnapshotOf>) -> StorageResult<()> {
        self.inner.borrow_mut().store.set_snapshot(snapshot)
    }

    fn get_snapshot(&self) -> StorageResult<Option<NoSnapshotOf>> {
        self.inner.borrow().store.get_snapshot()
    }
}

/// The snapshot type of [`Value`] (it uses none).
type NoSnapshotOf = <Value as Entry>::Snapshot;
