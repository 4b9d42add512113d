//! [`SharedStorage`]: a server's storage that outlives the server, in memory
//! or on disk.

use crate::sim::{options::SimStorage, value::Value};
use omnipaxos::{
    ballot::Ballot,
    storage::{Entry, OriginIds, OriginTable, Storage, StorageOp, StorageResult},
    util::{ConfigurationEnd, StopSign},
};
use omnipaxos_storage::{
    memory_storage::MemoryStorage,
    persistent_storage::{PersistentStorage, PersistentStorageConfig},
};
use std::{
    cell::RefCell,
    fmt,
    path::{Path, PathBuf},
    rc::Rc,
};
use tempfile::TempDir;

/// A handle on one server's storage; clones share the same state.
///
/// A crash in the simulator drops the server's `OmniPaxos` value but keeps
/// the cluster's clone of this handle, so a restart finds exactly what the
/// server had persisted, as a real process finds its disk. The invariant
/// checks also read the storage through this handle, including while the
/// server is down.
///
/// The storage behind the handle is either a [`MemoryStorage`] (see
/// [`SimStorage::Memory`]) or a [`PersistentStorage`] in a temporary
/// directory of its own ([`SimStorage::Persistent`]). For the latter,
/// [`reopen`](Self::reopen) closes the files and opens the directory again,
/// which is what the cluster does when a server crashes and when it restarts.
///
/// Besides forwarding, the handle notes the lowest log index that a write
/// replaced or removed (`append_on_prefix`, `trim`). Only such writes can take
/// a decided entry away, so the invariants re-examine exactly those indices
/// instead of rescanning every log after every tick. A reopen counts as a
/// rewrite of the whole log: what the files give back is read afresh.
#[derive(Clone, Default)]
pub struct SharedStorage {
    inner: Rc<RefCell<Inner>>,
}

/// What a crash lost of a server's deferred writes
/// ([`SharedStorage::lose_unsynced`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnsyncedLoss {
    /// The log was cut back to this length: a leader's unsynced batch.
    pub log_from: Option<u64>,
    /// The decided index went back to this one: a raise written lazily.
    pub decided_back_to: Option<u64>,
}

#[derive(Default)]
struct Inner {
    /// What the server persisted.
    backend: Backend,
    /// The lowest index rewritten or trimmed since the invariants last looked.
    rewritten_from: Option<u64>,
    /// How many of the next writes fail (see [`SharedStorage::fail_next_writes`]).
    failing_writes: u32,
    /// In memory: set while a deferred write (`Storage::write_deferred`)
    /// waits for its sync, the log length before the first of them. A
    /// crash now cuts the log back to it (see
    /// [`SharedStorage::lose_unsynced`]).
    unsynced_from: Option<u64>,
    /// In memory: set while a deferred write raised the decided index and
    /// waits for its sync, the decided index before the first of them. A
    /// crash now sets the decided index back to it.
    unsynced_decided_from: Option<u64>,
}

impl Inner {
    fn note_rewrite(&mut self, from_idx: u64) {
        self.rewritten_from = Some(
            self.rewritten_from
                .map_or(from_idx, |old| old.min(from_idx)),
        );
    }
}

/// The storage itself.
enum Backend {
    /// Boxed, as the other: with its origin ids a `MemoryStorage` handle
    /// is itself larger than a pointer by a good deal.
    Memory(Box<MemoryStorage<Value>>),
    /// Boxed: an open `PersistentStorage` is several times larger than a
    /// `MemoryStorage` handle.
    Persistent(Box<OnDisk>),
}

impl Default for Backend {
    fn default() -> Self {
        Self::Memory(Box::default())
    }
}

/// A `PersistentStorage` and the directory it lives in.
struct OnDisk {
    /// The open storage. `None` only inside [`SharedStorage::reopen`], between
    /// closing the old one and opening the new one. Declared before `dir` so
    /// that it is closed before the directory is deleted.
    store: Option<PersistentStorage<Value>>,
    /// Deleted, with everything in it, when the last handle is dropped.
    dir: TempDir,
}

impl OnDisk {
    fn open(dir: TempDir) -> Result<Self, String> {
        let store = PersistentStorage::open(PersistentStorageConfig::with_path(dir.path()))
            .map_err(|e| {
                format!(
                    "opening the storage in {} failed: {e}",
                    dir.path().display()
                )
            })?;
        Ok(Self {
            store: Some(store),
            dir,
        })
    }
}

impl Backend {
    fn store(&self) -> &dyn Storage<Value> {
        match self {
            Self::Memory(store) => &**store,
            Self::Persistent(disk) => disk
                .store
                .as_ref()
                .expect("a persistent storage is open except inside reopen"),
        }
    }

    fn store_mut(&mut self) -> &mut dyn Storage<Value> {
        match self {
            Self::Memory(store) => &mut **store,
            Self::Persistent(disk) => disk
                .store
                .as_mut()
                .expect("a persistent storage is open except inside reopen"),
        }
    }
}

impl SharedStorage {
    /// Makes the next `n` writes fail with an I/O error, as a full disk or a
    /// failing device would, leaving what is stored as it was (the write
    /// never reached the medium). The server stops acting at the first one.
    pub fn fail_next_writes(&self, n: u32) {
        self.inner.borrow_mut().failing_writes = n;
    }

    /// Ends injected write failures (the device was replaced, the disk
    /// freed): writes succeed again.
    pub fn clear_write_failures(&self) {
        self.inner.borrow_mut().failing_writes = 0;
    }

    /// Fails this write if a failure is due (see [`Self::fail_next_writes`]).
    fn check_write(&self, operation: &str) -> StorageResult<()> {
        self.check_write_of(operation, false)
    }

    /// [`check_write`](Self::check_write) of a write that is `deferred` or not.
    fn check_write_of(&self, operation: &str, deferred: bool) -> StorageResult<()> {
        let mut inner = self.inner.borrow_mut();
        if inner.failing_writes == 0 {
            if !deferred {
                // A write that is not deferred syncs the deferred ones before
                // it (the trait's in-order rule).
                inner.unsynced_from = None;
                inner.unsynced_decided_from = None;
            }
            return Ok(());
        }
        inner.failing_writes -= 1;
        Err(omnipaxos::StorageError::Io {
            operation: operation.to_owned(),
            path: None,
            detail: "injected by the simulator: no space left on device".to_owned(),
        })
    }

    /// Creates an empty in-memory storage.
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates an empty `PersistentStorage` in a new temporary directory,
    /// deleted when the last handle is dropped. Panics if the directory or
    /// the storage cannot be created: the simulator cannot run without them.
    ///
    /// The directory is made under `$SIM_STORAGE_DIR` if that is set, else in
    /// `/dev/shm` where it exists, else in the system's temporary directory.
    /// A simulated crash is a process crash: it loses nothing the kernel
    /// already holds, so syncing to a real disk would only add time (and
    /// on a shared disk, a lot of jitter); a RAM-backed directory runs the
    /// same code paths and recovers from the same files. Point
    /// `SIM_STORAGE_DIR` at a real disk to run the syncs for real.
    pub fn persistent() -> Self {
        let dir = storage_parent()
            .and_then(|parent| {
                tempfile::Builder::new()
                    .prefix("omnipaxos-sim-")
                    .tempdir_in(&parent)
                    .map_err(|e| format!("cannot create a directory in {}: {e}", parent.display()))
            })
            .unwrap_or_else(|e| panic!("no directory for a simulated server: {e}"));
        let disk = OnDisk::open(dir).unwrap_or_else(|e| panic!("{e}"));
        Self {
            inner: Rc::new(RefCell::new(Inner {
                backend: Backend::Persistent(Box::new(disk)),
                rewritten_from: None,
                failing_writes: 0,
                unsynced_from: None,
                unsynced_decided_from: None,
            })),
        }
    }

    /// Creates an empty storage of the given kind.
    pub fn of_kind(kind: SimStorage) -> Self {
        match kind {
            SimStorage::Memory => Self::new(),
            SimStorage::Persistent => Self::persistent(),
        }
    }

    /// The kind of storage behind the handle.
    pub fn kind(&self) -> SimStorage {
        match self.inner.borrow().backend {
            Backend::Memory(_) => SimStorage::Memory,
            Backend::Persistent(_) => SimStorage::Persistent,
        }
    }

    /// Closes a persistent storage and opens its directory again, as a
    /// process that restarts after a crash does, then checks that the
    /// reopened storage reads back exactly what the closed one held: every
    /// write had returned `Ok`, so by the durability contract all of it must
    /// be on disk. Does nothing to an in-memory storage.
    ///
    /// Returns what went wrong if the directory does not open or reads back
    /// something else. Must not be called while an `OmniPaxos` value uses the
    /// storage (the cluster calls it only for crashed servers).
    pub fn reopen(&self) -> Result<(), String> {
        let mut inner = self.inner.borrow_mut();
        let Backend::Persistent(disk) = &mut inner.backend else {
            return Ok(());
        };
        let path = disk.dir.path().display().to_string();
        let old = disk
            .store
            .take()
            .expect("a persistent storage is open except inside reopen");
        let before = Persisted::read(&old)
            .map_err(|e| format!("reading the storage in {path} before closing it failed: {e}"))?;
        // Dropping closes the commitlog and the sled database (and releases
        // sled's lock on its directory), as the end of a process would.
        drop(old);
        let store = PersistentStorage::open(PersistentStorageConfig::with_path(disk.dir.path()))
            .map_err(|e| format!("reopening the storage in {path} failed: {e}"))?;
        let after = Persisted::read(&store)
            .map_err(|e| format!("reading the storage in {path} after reopening failed: {e}"))?;
        disk.store = Some(store);
        // Whatever the files gave back replaces what the invariants saw
        // before: let them re-read all of it.
        inner.note_rewrite(0);
        match before.differences(&after) {
            None => Ok(()),
            Some(diff) => Err(format!(
                "the storage in {path} reads back differently after reopening: {diff}"
            )),
        }
    }

    /// What a crash does to writes that were deferred and not synced: an
    /// in-memory log is cut back to its length before the first of them, and
    /// its decided index set back to what it was before the first deferred
    /// raise (a `PersistentStorage` is left alone: a process crash leaves its
    /// page cache, and with it those writes, to the kernel). Called only for
    /// a crashed server.
    pub fn lose_unsynced(&self) -> UnsyncedLoss {
        let mut inner = self.inner.borrow_mut();
        let inner = &mut *inner;
        let log_from = inner.unsynced_from.take();
        let decided_from = inner.unsynced_decided_from.take();
        let Backend::Memory(store) = &mut inner.backend else {
            return UnsyncedLoss::default();
        };
        if let Some(from) = log_from {
            store
                .append_on_prefix(from, Vec::new())
                .expect("cutting an in-memory log above its compacted index");
        }
        if let Some(before) = decided_from {
            // What was durable at the first lazy raise; the log cut above
            // never goes below it (a synced write in between would have
            // cleared both marks).
            store
                .set_decided_idx(before)
                .expect("setting an in-memory decided index");
        }
        if let Some(from) = log_from {
            inner.note_rewrite(from);
        }
        UnsyncedLoss {
            log_from,
            decided_back_to: decided_from,
        }
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
    pub fn with<R>(&self, read: impl FnOnce(&dyn Storage<Value>) -> R) -> R {
        read(self.inner.borrow().backend.store())
    }

    /// Runs a read that the invariants rely on; a storage that cannot answer
    /// it fails the test.
    fn read<R>(&self, what: &str, read: impl FnOnce(&dyn Storage<Value>) -> StorageResult<R>) -> R {
        self.with(read)
            .unwrap_or_else(|e| panic!("the simulated storage failed to read {what}: {e}"))
    }

    /// The entry stored at `idx`, if the log holds it (not compacted, not past the end).
    pub fn entry_at(&self, idx: u64) -> Option<Value> {
        let entries = self.read("an entry", |s| s.get_entries(idx, idx + 1));
        entries.first().copied()
    }

    /// The persisted compacted index (0 when nothing was trimmed).
    pub fn compacted_idx(&self) -> u64 {
        self.read("the compacted index", |s| s.get_compacted_idx())
    }

    /// The persisted decided index.
    pub fn decided_idx(&self) -> u64 {
        self.read("the decided index", |s| s.get_decided_idx())
    }

    /// The persisted promise, if any.
    pub fn promise(&self) -> Option<Ballot> {
        self.read("the promise", |s| s.get_promise())
    }

    /// The persisted accepted round, if any.
    pub fn accepted_round(&self) -> Option<Ballot> {
        self.read("the accepted round", |s| s.get_accepted_round())
    }

    /// The stored entries in `[from, to)`, clamped to what the log holds.
    pub fn entries(&self, from: u64, to: u64) -> Vec<Value> {
        self.read("entries", |s| s.get_entries(from, to))
    }
}

/// Where persistent simulated servers keep their directories: see
/// [`SharedStorage::persistent`].
fn storage_parent() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("SIM_STORAGE_DIR") {
        let dir = PathBuf::from(dir);
        return if dir.is_dir() {
            Ok(dir)
        } else {
            Err(format!(
                "SIM_STORAGE_DIR={} is not a directory",
                dir.display()
            ))
        };
    }
    let shm = Path::new("/dev/shm");
    let writable = shm
        .metadata()
        .is_ok_and(|m| m.is_dir() && !m.permissions().readonly());
    Ok(if writable {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    })
}

/// Everything a storage holds, to compare a storage before closing it with
/// the same directory reopened.
#[derive(PartialEq)]
struct Persisted {
    promise: Option<Ballot>,
    accepted_round: Option<Ballot>,
    decided_idx: u64,
    compacted_idx: u64,
    log_len: u64,
    stopsign: Option<StopSign>,
    snapshot: Option<NoSnapshotOf>,
    previous_end: Option<ConfigurationEnd>,
    /// The entries the log holds, from wherever it starts.
    entries: Vec<Value>,
}

impl Persisted {
    fn read(store: &dyn Storage<Value>) -> StorageResult<Self> {
        Ok(Self {
            promise: store.get_promise()?,
            accepted_round: store.get_accepted_round()?,
            decided_idx: store.get_decided_idx()?,
            compacted_idx: store.get_compacted_idx()?,
            log_len: store.get_log_len()?,
            stopsign: store.get_stopsign()?,
            snapshot: store.get_snapshot()?,
            previous_end: store.get_previous_configuration_end()?,
            entries: store.get_suffix(0)?,
        })
    }

    /// `None` if `self` and `other` are equal, else what differs (without
    /// printing whole logs).
    fn differences(&self, other: &Self) -> Option<String> {
        if self == other {
            return None;
        }
        let mut diffs = Vec::new();
        fn field<V: PartialEq + fmt::Debug>(out: &mut Vec<String>, name: &str, a: &V, b: &V) {
            if a != b {
                out.push(format!("{name} was {a:?}, is {b:?}"));
            }
        }
        field(&mut diffs, "promise", &self.promise, &other.promise);
        field(
            &mut diffs,
            "accepted round",
            &self.accepted_round,
            &other.accepted_round,
        );
        field(
            &mut diffs,
            "decided idx",
            &self.decided_idx,
            &other.decided_idx,
        );
        field(
            &mut diffs,
            "compacted idx",
            &self.compacted_idx,
            &other.compacted_idx,
        );
        field(&mut diffs, "log length", &self.log_len, &other.log_len);
        field(&mut diffs, "stop-sign", &self.stopsign, &other.stopsign);
        field(&mut diffs, "snapshot", &self.snapshot, &other.snapshot);
        field(
            &mut diffs,
            "previous configuration's end",
            &self.previous_end,
            &other.previous_end,
        );
        if self.entries != other.entries {
            let first = self
                .entries
                .iter()
                .zip(&other.entries)
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| self.entries.len().min(other.entries.len()));
            diffs.push(format!(
                "the held entries were {} and are {}, first differing at position {first} \
                 ({:?} before, {:?} after)",
                self.entries.len(),
                other.entries.len(),
                self.entries.get(first),
                other.entries.get(first)
            ));
        }
        Some(diffs.join("; "))
    }
}

impl Storage<Value> for SharedStorage {
    fn write_atomically(&mut self, ops: Vec<StorageOp<Value>>) -> StorageResult<()> {
        self.check_write("write atomically")?;
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
        inner.backend.store_mut().write_atomically(ops)?;
        if let Some(idx) = lowest_rewrite {
            inner.note_rewrite(idx);
        }
        Ok(())
    }

    fn write_deferred(&mut self, ops: Vec<StorageOp<Value>>) -> StorageResult<bool> {
        self.check_write_of("write deferred", true)?;
        let mut inner = self.inner.borrow_mut();
        let inner = &mut *inner;
        match &mut inner.backend {
            Backend::Memory(store) => {
                let before = store.get_log_len()?;
                let decided_before = store.get_decided_idx()?;
                let touches_log = ops
                    .iter()
                    .any(|op| !matches!(op, StorageOp::SetDecidedIndex(_)));
                store.write_atomically(ops)?;
                if touches_log {
                    inner.unsynced_from =
                        Some(inner.unsynced_from.map_or(before, |f| f.min(before)));
                }
                if store.get_decided_idx()? != decided_before {
                    inner.unsynced_decided_from.get_or_insert(decided_before);
                }
                Ok(true)
            }
            Backend::Persistent(_) => inner.backend.store_mut().write_deferred(ops),
        }
    }

    fn sync(&mut self) -> StorageResult<()> {
        self.check_write("sync")?;
        self.inner.borrow_mut().backend.store_mut().sync()
    }

    fn append_entry(&mut self, entry: Value) -> StorageResult<()> {
        self.check_write("append entry")?;
        self.inner
            .borrow_mut()
            .backend
            .store_mut()
            .append_entry(entry)
    }

    fn append_entries(&mut self, entries: Vec<Value>) -> StorageResult<()> {
        self.check_write("append entries")?;
        self.inner
            .borrow_mut()
            .backend
            .store_mut()
            .append_entries(entries)
    }

    fn append_on_prefix(&mut self, from_idx: u64, entries: Vec<Value>) -> StorageResult<()> {
        self.check_write("append on prefix")?;
        let mut inner = self.inner.borrow_mut();
        inner
            .backend
            .store_mut()
            .append_on_prefix(from_idx, entries)?;
        inner.note_rewrite(from_idx);
        Ok(())
    }

    fn set_promise(&mut self, n_prom: Ballot) -> StorageResult<()> {
        self.check_write("set promise")?;
        self.inner
            .borrow_mut()
            .backend
            .store_mut()
            .set_promise(n_prom)
    }

    fn set_decided_idx(&mut self, ld: u64) -> StorageResult<()> {
        self.check_write("set decided idx")?;
        self.inner
            .borrow_mut()
            .backend
            .store_mut()
            .set_decided_idx(ld)
    }

    fn get_decided_idx(&self) -> StorageResult<u64> {
        self.inner.borrow().backend.store().get_decided_idx()
    }

    fn set_accepted_round(&mut self, na: Ballot) -> StorageResult<()> {
        self.check_write("set accepted round")?;
        self.inner
            .borrow_mut()
            .backend
            .store_mut()
            .set_accepted_round(na)
    }

    fn get_accepted_round(&self) -> StorageResult<Option<Ballot>> {
        self.inner.borrow().backend.store().get_accepted_round()
    }

    fn get_entries(&self, from: u64, to: u64) -> StorageResult<Vec<Value>> {
        self.inner.borrow().backend.store().get_entries(from, to)
    }

    fn get_log_len(&self) -> StorageResult<u64> {
        self.inner.borrow().backend.store().get_log_len()
    }

    fn get_suffix(&self, from: u64) -> StorageResult<Vec<Value>> {
        self.inner.borrow().backend.store().get_suffix(from)
    }

    fn get_promise(&self) -> StorageResult<Option<Ballot>> {
        self.inner.borrow().backend.store().get_promise()
    }

    fn set_stopsign(&mut self, s: Option<StopSign>) -> StorageResult<()> {
        self.check_write("set stopsign")?;
        self.inner.borrow_mut().backend.store_mut().set_stopsign(s)
    }

    fn get_stopsign(&self) -> StorageResult<Option<StopSign>> {
        self.inner.borrow().backend.store().get_stopsign()
    }

    fn trim(&mut self, idx: u64) -> StorageResult<()> {
        self.check_write("trim")?;
        let mut inner = self.inner.borrow_mut();
        inner.backend.store_mut().trim(idx)?;
        // Trimming removes the indices below `idx`, so everything from the
        // start of the log must be looked at again.
        inner.note_rewrite(0);
        Ok(())
    }

    fn set_compacted_idx(&mut self, idx: u64) -> StorageResult<()> {
        self.check_write("set compacted idx")?;
        self.inner
            .borrow_mut()
            .backend
            .store_mut()
            .set_compacted_idx(idx)
    }

    fn get_compacted_idx(&self) -> StorageResult<u64> {
        self.inner.borrow().backend.store().get_compacted_idx()
    }

    fn set_snapshot(&mut self, snapshot: Option<NoSnapshotOf>) -> StorageResult<()> {
        self.check_write("set snapshot")?;
        self.inner
            .borrow_mut()
            .backend
            .store_mut()
            .set_snapshot(snapshot)
    }

    fn get_snapshot(&self) -> StorageResult<Option<NoSnapshotOf>> {
        self.inner.borrow().backend.store().get_snapshot()
    }

    fn set_previous_configuration_end(
        &mut self,
        end: Option<ConfigurationEnd>,
    ) -> StorageResult<()> {
        self.check_write("set previous configuration end")?;
        self.inner
            .borrow_mut()
            .backend
            .store_mut()
            .set_previous_configuration_end(end)
    }

    fn get_previous_configuration_end(&self) -> StorageResult<Option<ConfigurationEnd>> {
        self.inner
            .borrow()
            .backend
            .store()
            .get_previous_configuration_end()
    }

    fn keeps_origins(&self) -> bool {
        self.inner.borrow().backend.store().keeps_origins()
    }

    fn get_origins(&self, from: u64, to: u64) -> StorageResult<OriginIds> {
        self.inner.borrow().backend.store().get_origins(from, to)
    }

    fn get_origin_table(&self) -> StorageResult<OriginTable> {
        self.inner.borrow().backend.store().get_origin_table()
    }

    fn get_incarnation(&self) -> StorageResult<u64> {
        self.inner.borrow().backend.store().get_incarnation()
    }
}

/// The snapshot type of [`Value`].
type NoSnapshotOf = <Value as Entry>::Snapshot;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reopened_persistent_storage_reads_back_what_was_written() {
        let storage = SharedStorage::persistent();
        let mut writer = storage.clone();
        writer
            .append_entries(vec![Value(1), Value(2), Value(3)])
            .unwrap();
        writer.set_promise(Ballot::with(2, 0, 1)).unwrap();
        writer.set_decided_idx(2).unwrap();
        assert_eq!(storage.take_rewritten_from(), None);

        storage.reopen().unwrap();

        assert_eq!(storage.kind(), SimStorage::Persistent);
        assert_eq!(storage.entries(0, 3), vec![Value(1), Value(2), Value(3)]);
        assert_eq!(storage.decided_idx(), 2);
        assert_eq!(storage.promise(), Some(Ballot::with(2, 0, 1)));
        // The invariants are told to re-read the whole reopened log.
        assert_eq!(storage.take_rewritten_from(), Some(0));
    }

    #[test]
    fn reopening_a_memory_storage_changes_nothing() {
        let storage = SharedStorage::new();
        storage.clone().append_entry(Value(7)).unwrap();
        storage.reopen().unwrap();
        assert_eq!(storage.kind(), SimStorage::Memory);
        assert_eq!(storage.entry_at(0), Some(Value(7)));
        assert_eq!(storage.take_rewritten_from(), None);
    }
}
