//! The traits a user implements: [`Entry`] for the log's element type,
//! [`Snapshot`] for compacting it, and [`Storage`] for persisting it.

pub(crate) mod internal;
pub mod origin;

pub use origin::{OriginId, OriginIds, OriginRun, OriginTable, TablePosition};

use crate::{
    ballot::Ballot,
    errors::StorageError,
    util::{ConfigurationEnd, StopSign},
};
use std::fmt::Debug;

/// The element type of the replicated log.
///
/// Usually derived with `#[derive(Entry)]` (feature `macros`), which sets
/// `Snapshot = NoSnapshot`; write `#[snapshot(MySnapshot)]` under the derive to
/// name a snapshot type instead.
pub trait Entry: Clone + Debug {
    /// The snapshot type that can replace a prefix of the log; [`NoSnapshot`] if none.
    type Snapshot: Snapshot<Self>;

    /// About how many bytes this entry takes on the wire. The protocol uses
    /// it only to keep messages under
    /// [`max_message_bytes`](crate::OmniPaxosConfig::max_message_bytes)
    /// (catch-up chunks, forwarded batches, and the leader's window of
    /// undecided entries). The
    /// default, the entry's in-memory size, is right for plain data; an entry
    /// holding a `String`, `Vec` or other heap data should add their lengths:
    ///
    /// ```
    /// use omnipaxos::storage::{Entry, NoSnapshot};
    ///
    /// #[derive(Clone, Debug)]
    /// struct Put {
    ///     key: String,
    ///     value: Vec<u8>,
    /// }
    ///
    /// impl Entry for Put {
    ///     type Snapshot = NoSnapshot;
    ///     fn size_hint(&self) -> usize {
    ///         16 + self.key.len() + self.value.len()
    ///     }
    /// }
    /// ```
    fn size_hint(&self) -> usize {
        size_of_val(self)
    }
}

/// A compact stand-in for a prefix of the log, built from its entries.
///
/// The protocol only ever holds a snapshot of a whole prefix `[0, i)`. It
/// builds one in two ways: [`create`](Self::create) over the entries of the
/// whole prefix, or `create` over a later run `[j, i)` (a *delta*, shipped to
/// a server that already has `[0, j)`), which is then [`merge`](Self::merge)d
/// onto the snapshot of `[0, j)`. A delta is never used on its own. So
/// `create` may keep what it cannot evaluate without the earlier state (a
/// compare-and-swap, a duplicate check) and `merge` may evaluate it then,
/// with `self` covering the log from index 0.
pub trait Snapshot<T: Entry>: Clone + Debug {
    /// Builds a snapshot from consecutive decided entries: the whole prefix,
    /// or a delta that will be merged onto the snapshot of what precedes it.
    fn create(entries: &[T]) -> Self;
    /// Folds `delta`, a snapshot of the entries that follow this one, into
    /// `self`; `self` covers the log from index 0 up to where `delta` starts.
    fn merge(&mut self, delta: Self);
    /// Whether snapshots are in use. With `false`,
    /// [`OmniPaxos::snapshot`](crate::OmniPaxos::snapshot) is refused and
    /// compaction is by [`OmniPaxos::trim`](crate::OmniPaxos::trim) only.
    fn use_snapshots() -> bool;

    /// About how many bytes this snapshot (or part of one) takes, as
    /// [`Entry::size_hint`] does for entries. The protocol uses it only to
    /// report what a joining server holds in memory
    /// ([`MigrationStatus::held_bytes`](crate::MigrationStatus::held_bytes));
    /// the default is the snapshot's in-memory size, which leaves out what
    /// it holds on the heap.
    fn size_hint(&self) -> usize {
        size_of_val(self)
    }

    /// Splits the snapshot into parts of at most about `max_bytes` each (the
    /// server's `max_message_bytes`, by whatever measure suits the type), so
    /// that a snapshot too large for one message is sent in several. The
    /// receiver gathers every part and rebuilds the snapshot with
    /// [`from_parts`](Self::from_parts) before it uses any of it.
    ///
    /// The default keeps the snapshot whole: one message, however large.
    /// Override both methods for snapshots that can outgrow the transport's
    /// frame limit. The same snapshot must split the same way each time
    /// (iterate in a fixed order: a `BTreeMap`, not a `HashMap`): a server
    /// that serves a joining server its snapshot in parts splits it once and
    /// keeps the parts while they are asked for, but splits it again after
    /// a restart or a move to the next configuration, and the joiner puts
    /// together parts of both splits.
    fn into_parts(self, max_bytes: usize) -> Vec<Self> {
        let _ = max_bytes;
        vec![self]
    }

    /// Rebuilds a snapshot from the parts [`into_parts`](Self::into_parts)
    /// made, in their order; `None` if they do not make one (parts of no
    /// snapshot this type splits). The default takes a single part as the
    /// snapshot.
    fn from_parts(parts: Vec<Self>) -> Option<Self> {
        let mut parts = parts;
        match parts.len() {
            1 => parts.pop(),
            _ => None,
        }
    }
}

/// The snapshot type of entries that do not use snapshots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct NoSnapshot;

impl<T: Entry> Snapshot<T> for NoSnapshot {
    fn create(_entries: &[T]) -> Self {
        Self
    }

    fn merge(&mut self, _delta: Self) {}

    fn use_snapshots() -> bool {
        false
    }
}

/// The result of a storage operation.
pub type StorageResult<R> = Result<R, StorageError>;

/// One write in a [`Storage::write_atomically`] batch.
#[derive(Clone, Debug)]
pub enum StorageOp<T: Entry> {
    /// Append one entry at the end of the log.
    AppendEntry(T),
    /// Append entries at the end of the log.
    AppendEntries(Vec<T>),
    /// Drop every entry at index `from_idx` and above, then append the entries there.
    AppendOnPrefix(u64, Vec<T>),
    /// Persist the highest ballot promised.
    SetPromise(Ballot),
    /// Persist the decided index.
    SetDecidedIndex(u64),
    /// Persist the ballot in which the log was last accepted.
    SetAcceptedRound(Ballot),
    /// Persist the compacted index.
    SetCompactedIdx(u64),
    /// Drop every entry below the index (see [`Storage::trim`]).
    Trim(u64),
    /// Persist (or clear) the stop-sign.
    SetStopsign(Option<StopSign>),
    /// Persist (or clear) the snapshot.
    SetSnapshot(Option<T::Snapshot>),
    /// Persist (or clear) how the previous configuration ended (see
    /// [`Storage::set_previous_configuration_end`]).
    SetPreviousConfigurationEnd(Option<ConfigurationEnd>),
    /// Forget the origin ids of indices `from_idx` and above (see
    /// [`OriginIds::truncate`]), then add these, which all lie at `from_idx`
    /// or above. Sent only to a storage that [keeps origins](Storage::keeps_origins),
    /// in the batch that writes the entries.
    SetOrigins(u64, OriginIds),
    /// Persist what the compacted prefix of the log held (see
    /// [`OriginTable`]). Sent only to a storage that keeps origins, in the
    /// batch that trims or installs a snapshot.
    SetOriginTable(OriginTable),
    /// Persist this server's incarnation: how many times it started on this
    /// storage. Sent only to a storage that keeps origins.
    SetIncarnation(u64),
}

/// Where a server keeps its log and its protocol state.
///
/// All indices are absolute: the entry appended first has index 0 for the
/// whole life of the log, and trimming does not renumber anything. The log
/// holds indices `get_compacted_idx()..get_log_len()`.
///
/// Implementations must make a write durable (as durable as the backend is
/// meant to be) before returning `Ok`, and must apply
/// [`write_atomically`](Self::write_atomically) all-or-nothing. The
/// `omnipaxos_storage` crate ships a conformance suite that checks these rules
/// against any implementation.
pub trait Storage<T: Entry> {
    /// Applies every op in order, or none of them if any fails.
    fn write_atomically(&mut self, ops: Vec<StorageOp<T>>) -> StorageResult<()>;
    /// Appends one entry at the end of the log.
    fn append_entry(&mut self, entry: T) -> StorageResult<()>;
    /// Appends entries at the end of the log.
    fn append_entries(&mut self, entries: Vec<T>) -> StorageResult<()>;
    /// Drops every entry at `from_idx` and above, then appends `entries` there.
    ///
    /// `from_idx` is at most the log length and at least the compacted index.
    fn append_on_prefix(&mut self, from_idx: u64, entries: Vec<T>) -> StorageResult<()>;
    /// Persists the highest ballot this server promised.
    fn set_promise(&mut self, n_prom: Ballot) -> StorageResult<()>;
    /// Persists the decided index: entries below it are decided. At most the
    /// log length, or the log length + 1 while a stop-sign is stored: the
    /// stop-sign is the entry at index `get_log_len()`.
    fn set_decided_idx(&mut self, ld: u64) -> StorageResult<()>;
    /// Returns the decided index (0 for a new log).
    fn get_decided_idx(&self) -> StorageResult<u64>;
    /// Persists the ballot in which the log was last accepted.
    fn set_accepted_round(&mut self, na: Ballot) -> StorageResult<()>;
    /// Returns the ballot in which the log was last accepted, if any.
    fn get_accepted_round(&self) -> StorageResult<Option<Ballot>>;
    /// Returns the entries in `[from, to)`, clamped to what the log holds:
    /// indices below the compacted index and at or past the log length are left out.
    fn get_entries(&self, from: u64, to: u64) -> StorageResult<Vec<T>>;
    /// Returns the length of the log: one more than the index of the last entry
    /// (compacted entries count).
    fn get_log_len(&self) -> StorageResult<u64>;
    /// Returns the entries from `from` to the end of the log, clamped as in
    /// [`get_entries`](Self::get_entries).
    fn get_suffix(&self, from: u64) -> StorageResult<Vec<T>>;
    /// Lends the entries in `[from, to)`, clamped as in
    /// [`get_entries`](Self::get_entries), to `f` in log order, as one or
    /// more consecutive slices. The protocol uses it for
    /// [`OmniPaxos::read_decided_with`](crate::OmniPaxos::read_decided_with).
    /// The default copies the entries with `get_entries` and lends that one
    /// vector; a storage that holds its entries in memory should lend them
    /// where they lie instead.
    fn get_entries_with(&self, from: u64, to: u64, f: &mut dyn FnMut(&[T])) -> StorageResult<()> {
        let entries = self.get_entries(from, to)?;
        if !entries.is_empty() {
            f(&entries);
        }
        Ok(())
    }
    /// Like [`write_atomically`](Self::write_atomically), all or nothing,
    /// but the write need not be durable when this returns: it becomes
    /// durable at the next [`sync`](Self::sync), or with the next write
    /// that is not deferred, whichever comes first. Returns whether it waits
    /// for that (`Ok(false)`: it is durable already).
    ///
    /// Writes become durable in order: a crash may lose a deferred write
    /// that was not synced, but then it loses every write after it too, and
    /// what it keeps is as if those writes never happened.
    ///
    /// The protocol defers two kinds of write, and only when
    /// [`OmniPaxosConfig::defer_leader_sync`](crate::OmniPaxosConfig::defer_leader_sync)
    /// is on: a leader's append of its batch, so that it can send the batch
    /// to its followers before its own disk has it (it does not count its
    /// own copy toward a decision until the write is synced), and a raised
    /// decided index, which it does not sync at all: the next synced write
    /// makes it durable, and a crash before that only sets the decided index
    /// back to one the log still holds. The default
    /// writes durably through `write_atomically`, so a storage that leaves
    /// both methods alone is correct, only slower for a leader.
    fn write_deferred(&mut self, ops: Vec<StorageOp<T>>) -> StorageResult<bool> {
        self.write_atomically(ops).map(|()| false)
    }
    /// Makes every deferred write durable (see
    /// [`write_deferred`](Self::write_deferred)); does nothing if none waits.
    fn sync(&mut self) -> StorageResult<()> {
        Ok(())
    }
    /// Returns the highest ballot promised, if any.
    fn get_promise(&self) -> StorageResult<Option<Ballot>>;
    /// Persists (or clears) the stop-sign.
    fn set_stopsign(&mut self, s: Option<StopSign>) -> StorageResult<()>;
    /// Returns the stop-sign, if any.
    fn get_stopsign(&self) -> StorageResult<Option<StopSign>>;
    /// Drops every entry below `idx`. Indices do not shift. If `idx` is past
    /// the end of the log, the log becomes empty and continues at `idx`
    /// (`get_log_len()` returns `idx`): this is how a snapshot that reaches
    /// beyond the local log is installed. Trimming below an earlier trim
    /// point changes nothing.
    ///
    /// The protocol always writes `Trim(i)` and `SetCompactedIdx(i)` together
    /// in one [`write_atomically`](Self::write_atomically), so the log holds
    /// exactly `get_compacted_idx()..get_log_len()`.
    fn trim(&mut self, idx: u64) -> StorageResult<()>;
    /// Persists the compacted index: at most the log length, and never above
    /// the point the log was trimmed to (see [`trim`](Self::trim)).
    fn set_compacted_idx(&mut self, idx: u64) -> StorageResult<()>;
    /// Returns the compacted index: entries below it are trimmed or snapshotted.
    fn get_compacted_idx(&self) -> StorageResult<u64>;
    /// Persists (or clears) the snapshot.
    fn set_snapshot(&mut self, snapshot: Option<T::Snapshot>) -> StorageResult<()>;
    /// Returns the snapshot, if any.
    fn get_snapshot(&self) -> StorageResult<Option<T::Snapshot>>;
    /// Persists (or clears) how the configuration before this server's own
    /// ended: its decided stop-sign, the stop-sign's index and a round whose
    /// logs hold its decided log.
    ///
    /// The protocol writes it when the server moves on to the next
    /// configuration ([`OmniPaxos::into_new_configuration`](crate::OmniPaxos::into_new_configuration)),
    /// as [`StorageOp::SetPreviousConfigurationEnd`] in the same
    /// [`write_atomically`](Self::write_atomically) batch that drops the old
    /// configuration's stop-sign and ballots, and when a server of the new
    /// configuration that did not know it (a joiner, or one whose storage
    /// predates the slot) learns it from a peer. A joiner writes it before
    /// it stores any pulled entry: a storage whose decided index is below
    /// the recorded `stop_idx` (and that promised nothing) belongs to a
    /// server still pulling the previous configuration's log, and the server
    /// built on it pulls on before it takes part. It reads it back when it is
    /// built on the storage, so that after a restart the server can still
    /// tell servers that missed the end of the previous configuration (they
    /// would otherwise have nobody to learn it from). It is independent of
    /// the log: no other write changes it.
    fn set_previous_configuration_end(
        &mut self,
        end: Option<ConfigurationEnd>,
    ) -> StorageResult<()>;
    /// Returns how the previous configuration ended, if this server
    /// persisted it (`None` for a new storage and in the first configuration).
    fn get_previous_configuration_end(&self) -> StorageResult<Option<ConfigurationEnd>>;

    /// Whether this storage keeps the origin of every entry (which server
    /// proposed it; see [`origin`]): the [`StorageOp::SetOrigins`],
    /// [`StorageOp::SetOriginTable`] and [`StorageOp::SetIncarnation`] writes
    /// and the three getters below. Both storages of `omnipaxos_storage` do.
    ///
    /// Origins are what make an append decided exactly once: a leader that
    /// finds a retried proposal's id in its log acknowledges it instead of
    /// appending it again. With a storage that returns `false` (the default,
    /// so that storages written before origins existed still build) the
    /// protocol never sends those writes, and an entry forwarded to a leader
    /// that fails may be decided twice.
    ///
    /// A storage that keeps origins applies [`OriginIds::truncate`] to its
    /// ids wherever [`append_on_prefix`](Self::append_on_prefix) cuts the log
    /// and [`OriginIds::trim`] wherever [`trim`](Self::trim) trims it, in the
    /// same all-or-nothing batch.
    fn keeps_origins(&self) -> bool {
        false
    }

    /// Returns the origin ids of the entries in `[from, to)`, clamped as in
    /// [`get_entries`](Self::get_entries).
    fn get_origins(&self, _from: u64, _to: u64) -> StorageResult<OriginIds> {
        Ok(OriginIds::new())
    }

    /// Returns what the compacted prefix held, as last persisted (empty for a new storage).
    fn get_origin_table(&self) -> StorageResult<OriginTable> {
        Ok(OriginTable::new())
    }

    /// Returns this server's incarnation as last persisted (0 for a new storage).
    fn get_incarnation(&self) -> StorageResult<u64> {
        Ok(0)
    }

    /// Appends `entry` at the end of the log and records `ids` for it
    /// (absolute indices, at the old log end), all or nothing: the
    /// protocol's every append of one entry on a storage that keeps
    /// origins. The defaults of this and
    /// [`append_entries_with_origins`](Self::append_entries_with_origins)
    /// are the batch of the append and [`StorageOp::SetOrigins`] through
    /// [`write_atomically`](Self::write_atomically); override them only to
    /// make them cheaper.
    fn append_entry_with_origins(&mut self, entry: T, ids: OriginIds) -> StorageResult<()> {
        self.append_entries_with_origins(vec![entry], ids)
    }

    /// [`append_entry_with_origins`](Self::append_entry_with_origins) for
    /// several entries (absolute indices, all at the old log end or past it).
    fn append_entries_with_origins(
        &mut self,
        entries: Vec<T>,
        ids: OriginIds,
    ) -> StorageResult<()> {
        let from_idx = self.get_log_len()?;
        self.write_atomically(vec![
            StorageOp::AppendEntries(entries),
            StorageOp::SetOrigins(from_idx, ids),
        ])
    }
}
