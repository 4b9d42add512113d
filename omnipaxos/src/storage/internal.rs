//! The protocol's view of the user's [`Storage`]: every write goes through
//! here, and the small state the protocol consults on every message (promise,
//! accepted round, decided index, log length) is cached so that reading it
//! never touches the backend.

use crate::{
    ballot::Ballot,
    storage::{Entry, OriginIds, OriginTable, Storage, StorageOp, StorageResult},
    util::{ConfigurationEnd, StopSign},
};
use std::marker::PhantomData;

pub(crate) struct InternalStorage<S, T>
where
    T: Entry,
    S: Storage<T>,
{
    storage: S,
    /// Highest ballot promised; a default ballot means none yet.
    promise: Ballot,
    /// Ballot in which the log was last accepted, if ever.
    accepted_round: Option<Ballot>,
    decided_idx: u64,
    /// One past the last index of the log (the "accepted index").
    log_len: u64,
    compacted_idx: u64,
    stopsign: Option<StopSign>,
    /// How the previous configuration ended, if persisted: read once at load
    /// (the stragglers' record takes it from there) and kept to skip writing
    /// it again.
    previous_end: Option<ConfigurationEnd>,
    /// Whether the backend keeps origins; if not, none of their writes go
    /// to it and `origins` lives only as long as this server.
    keeps_origins: bool,
    /// The origin ids of the held log, `compacted_idx..log_len`.
    origins: OriginIds,
    /// What the compacted prefix held.
    origin_table: OriginTable,
    /// The incarnation the backend last stored (0 if none).
    incarnation: u64,
    /// Set while a deferred write of entries waits for its sync (see
    /// [`Storage::write_deferred`]): the accepted index before the first
    /// of them, which is what a crash now would keep at least. A lazily
    /// raised decided index does not set it: it waits for no sync.
    unsynced_from: Option<u64>,
    _entry: PhantomData<T>,
}

impl<S, T> InternalStorage<S, T>
where
    T: Entry,
    S: Storage<T>,
{
    /// Loads the cached state from the storage.
    pub(crate) fn load(storage: S) -> StorageResult<Self> {
        let promise = storage.get_promise()?.unwrap_or_default();
        let accepted_round = storage.get_accepted_round()?;
        let decided_idx = storage.get_decided_idx()?;
        let log_len = storage.get_log_len()?;
        let compacted_idx = storage.get_compacted_idx()?;
        let stopsign = storage.get_stopsign()?;
        let previous_end = storage.get_previous_configuration_end()?;
        let keeps_origins = storage.keeps_origins();
        let (origins, origin_table, incarnation) = if keeps_origins {
            (
                storage.get_origins(compacted_idx, log_len)?,
                storage.get_origin_table()?,
                storage.get_incarnation()?,
            )
        } else {
            Default::default()
        };
        // What a storage hands back is checked like any input: a damaged
        // or hand-edited one must stop the build with an error, not a panic
        // later.
        let inconsistent =
            |detail: String| Err(crate::errors::StorageError::Corrupt { path: None, detail });
        if decided_idx > log_len + u64::from(stopsign.is_some()) {
            return inconsistent(format!(
                "the decided index {decided_idx} lies past the log end {log_len} (and past a \
                 stop-sign's slot)"
            ));
        }
        if compacted_idx > log_len || compacted_idx > decided_idx {
            return inconsistent(format!(
                "the compacted index {compacted_idx} lies past the log end {log_len} or the \
                 decided index {decided_idx}"
            ));
        }
        let first_id = origins.runs().first().map_or(compacted_idx, |r| r.idx);
        if first_id < compacted_idx || origins.end() > log_len || !origin_table.is_well_formed() {
            return inconsistent(format!(
                "the origin ids ({first_id}..{}) lie outside the held log {compacted_idx}..{log_len}, \
                 or the origin table is malformed",
                origins.end()
            ));
        }
        Ok(Self {
            storage,
            keeps_origins,
            origins,
            origin_table,
            incarnation,
            promise,
            accepted_round,
            decided_idx,
            log_len,
            compacted_idx,
            stopsign,
            previous_end,
            unsynced_from: None,
            _entry: PhantomData,
        })
    }

    /// How the previous configuration ended, as persisted.
    pub(crate) fn previous_end(&self) -> Option<&ConfigurationEnd> {
        self.previous_end.as_ref()
    }

    /// Persists how the previous configuration ended, learned from a peer
    /// after this server was built (nothing is written if it is already
    /// stored).
    pub(crate) fn set_previous_end(&mut self, end: ConfigurationEnd) -> StorageResult<()> {
        if self.previous_end.as_ref() == Some(&end) {
            return Ok(());
        }
        self.storage
            .set_previous_configuration_end(Some(end.clone()))?;
        self.previous_end = Some(end);
        Ok(())
    }

    pub(crate) fn promise(&self) -> Ballot {
        self.promise
    }

    pub(crate) fn accepted_round(&self) -> Option<Ballot> {
        self.accepted_round
    }

    pub(crate) fn decided_idx(&self) -> u64 {
        self.decided_idx
    }

    pub(crate) fn log_len(&self) -> u64 {
        self.log_len
    }

    /// How much of the log this server has accepted: the log length, plus one
    /// for a stop-sign, which is the entry at index `log_len`.
    pub(crate) fn accepted_idx(&self) -> u64 {
        self.log_len + u64::from(self.stopsign.is_some())
    }

    /// Whether this server holds a decided stop-sign.
    pub(crate) fn stopsign_decided(&self) -> bool {
        self.stopsign.is_some() && self.decided_idx > self.log_len
    }

    pub(crate) fn compacted_idx(&self) -> u64 {
        self.compacted_idx
    }

    pub(crate) fn stopsign(&self) -> Option<&StopSign> {
        self.stopsign.as_ref()
    }

    /// Stores (or clears) the stop-sign, the entry after the log.
    pub(crate) fn set_stopsign(&mut self, stopsign: Option<StopSign>) -> StorageResult<()> {
        self.storage.set_stopsign(stopsign.clone())?;
        self.stopsign = stopsign;
        Ok(())
    }

    /// Starts the next configuration on this log, keeping its first
    /// `decided_end` entries as the decided log: normally the whole log (the
    /// stop-sign's index); less when this server holds only part of the old
    /// configuration's decided log and pulls the rest. Anything past
    /// `decided_end` and the stop-sign are dropped, and the ballots of the
    /// old configuration forgotten, and how it ended (`end`) recorded, all in
    /// one write: a crash leaves the server either in the old configuration
    /// with its decided stop-sign, or in the new one knowing how the old one
    /// ended, so that it can always tell the old one's stragglers.
    pub(crate) fn reset_for_new_configuration(
        &mut self,
        decided_end: u64,
        end: ConfigurationEnd,
    ) -> StorageResult<()> {
        debug_assert!(
            decided_end >= self.compacted_idx && decided_end <= self.log_len,
            "the kept log is held here"
        );
        debug_assert!(
            decided_end <= end.stop_idx,
            "the kept log is part of the decided one"
        );
        let mut ops = Vec::with_capacity(6);
        if decided_end < self.log_len {
            ops.push(StorageOp::AppendOnPrefix(decided_end, Vec::new()));
        }
        ops.extend([
            StorageOp::SetStopsign(None),
            StorageOp::SetDecidedIndex(decided_end),
            StorageOp::SetPromise(Ballot::default()),
            StorageOp::SetAcceptedRound(Ballot::default()),
            StorageOp::SetPreviousConfigurationEnd(Some(end.clone())),
        ]);
        self.storage.write_atomically(ops)?;
        self.previous_end = Some(end);
        self.stopsign = None;
        self.log_len = decided_end;
        self.decided_idx = decided_end;
        self.promise = Ballot::default();
        self.accepted_round = Some(Ballot::default());
        Ok(())
    }

    /// Writes a part of a log pulled from the previous configuration: a
    /// snapshot of `0..start` if there is one, then `entries` from `start`
    /// on, all decided, in one write. Without a snapshot, `start` is the
    /// decided index: the pulled log grows from what is stored, and whatever
    /// lies past it (nothing the protocol wrote: a joiner accepts nothing)
    /// is replaced.
    pub(crate) fn append_pulled(&mut self, ready: crate::migration::Ready<T>) -> StorageResult<()> {
        let crate::migration::Ready {
            snapshot,
            start,
            entries,
            origins,
            origin_table,
        } = ready;
        debug_assert!(
            snapshot.is_some() || start == self.decided_idx,
            "a pulled part continues the decided log"
        );
        let end = start + entries.len() as u64;
        let mut ops = Vec::with_capacity(5);
        let has_snapshot = snapshot.is_some();
        if let Some(s) = snapshot {
            ops.push(StorageOp::SetSnapshot(Some(s)));
            ops.push(StorageOp::Trim(start));
            ops.push(StorageOp::SetCompactedIdx(start));
            let mut table = std::mem::take(&mut self.origin_table);
            table.merge(&origin_table.unwrap_or_default());
            self.origins.trim(start);
            if self.keeps_origins {
                ops.push(StorageOp::SetOriginTable(table.clone()));
            }
            self.origin_table = table;
        }
        let log_end = if has_snapshot {
            self.log_len.max(start)
        } else {
            self.log_len
        };
        if start == log_end && !entries.is_empty() {
            ops.push(StorageOp::AppendEntries(entries));
        } else if start != log_end {
            ops.push(StorageOp::AppendOnPrefix(start, entries));
        }
        ops.extend(self.origins_op(start, origins));
        if end != self.decided_idx {
            ops.push(StorageOp::SetDecidedIndex(end));
        }
        self.storage.write_atomically(ops)?;
        if has_snapshot {
            self.compacted_idx = start;
        }
        self.log_len = end;
        self.decided_idx = end;
        Ok(())
    }

    /// Hands the storage back.
    pub(crate) fn into_inner(self) -> S {
        self.storage
    }

    pub(crate) fn set_promise(&mut self, n: Ballot) -> StorageResult<()> {
        debug_assert!(n >= self.promise, "promise must never go down");
        self.storage.set_promise(n)?;
        self.promise = n;
        Ok(())
    }

    /// Raises the decided index (never lowers it), clamped to what is accepted.
    ///
    /// `lazy` writes it with [`Storage::write_deferred`] and asks for no sync:
    /// it becomes durable with the next write that syncs (the next batch). A
    /// crash before that restarts the server with the decided index it had
    /// before, below one it reported; the entries are in its log still, and
    /// the leader decides them for it again, with the same values. A decided
    /// stop-sign is always written durably: it ends the configuration.
    pub(crate) fn raise_decided_idx(&mut self, idx: u64, lazy: bool) -> StorageResult<bool> {
        let idx = idx.min(self.accepted_idx());
        if idx <= self.decided_idx {
            return Ok(false);
        }
        if lazy && idx <= self.log_len {
            self.storage
                .write_deferred(vec![StorageOp::SetDecidedIndex(idx)])?;
        } else {
            self.storage.set_decided_idx(idx)?;
        }
        self.decided_idx = idx;
        Ok(true)
    }

    /// The origin ids of the held log.
    pub(crate) fn origins(&self) -> &OriginIds {
        &self.origins
    }

    /// What the compacted prefix held.
    pub(crate) fn origin_table(&self) -> &OriginTable {
        &self.origin_table
    }

    /// The incarnation last stored.
    pub(crate) fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Stores this server's incarnation.
    pub(crate) fn set_incarnation(&mut self, n: u64) -> StorageResult<()> {
        if self.keeps_origins {
            self.storage
                .write_atomically(vec![StorageOp::SetIncarnation(n)])?;
        }
        self.incarnation = n;
        Ok(())
    }

    /// The origin ids of the entries in `range`, clamped to the held log,
    /// with indices relative to the range's start.
    pub(crate) fn origins_of(&self, from: u64, to: u64) -> OriginIds {
        self.origins
            .range(from..to)
            .shifted_down(from)
            .unwrap_or_default()
    }

    /// The op that records `ids` (relative to `at`) for entries written at
    /// `at`, cutting the ids from `at` on; `None` if the backend keeps no
    /// origins. Updates the mirror, so call it only in a write that then
    /// succeeds (a failed write halts the server, which reads nothing again).
    fn origins_op(&mut self, at: u64, ids: OriginIds) -> Option<StorageOp<T>> {
        self.note_origins(at, ids)
            .map(|absolute| StorageOp::SetOrigins(at, absolute))
    }

    /// Keeps ids `ids` (relative to index `at`) in the cache, cutting what it
    /// held from `at` on; returns them as absolute ids if the backend keeps
    /// them too.
    fn note_origins(&mut self, at: u64, mut absolute: OriginIds) -> Option<OriginIds> {
        if !absolute.shift_up(at) {
            absolute = OriginIds::new();
        }
        if at < self.origins.end() {
            self.origins.truncate(at);
        }
        let appended = self.origins.append(&absolute);
        debug_assert!(appended, "the ids start at the cut");
        // A cut below the log end cuts the backend's ids with its entries
        // (`AppendOnPrefix`), so only new ids need a write.
        (self.keeps_origins && !absolute.is_empty()).then_some(absolute)
    }

    /// Appends one entry with origin ids `ids` (relative: index 0 is the entry).
    pub(crate) fn append_entry(&mut self, entry: T, ids: OriginIds) -> StorageResult<u64> {
        match self.note_origins(self.log_len, ids) {
            None => self.storage.append_entry(entry)?,
            Some(ids) => self.storage.append_entry_with_origins(entry, ids)?,
        }
        self.log_len += 1;
        Ok(self.log_len)
    }

    /// Appends entries with origin ids `ids` (relative to the first entry).
    pub(crate) fn append_entries(&mut self, entries: Vec<T>, ids: OriginIds) -> StorageResult<u64> {
        let n = entries.len() as u64;
        if n > 0 {
            match self.note_origins(self.log_len, ids) {
                None => self.storage.append_entries(entries)?,
                Some(ids) => self.storage.append_entries_with_origins(entries, ids)?,
            }
            self.log_len += n;
        }
        Ok(self.log_len)
    }

    /// [`append_entries`](Self::append_entries), deferred (see
    /// [`Storage::write_deferred`]): what a leader that sends before it syncs
    /// does with its batch. Until [`sync`](Self::sync), the entries count in
    /// [`accepted_idx`](Self::accepted_idx) but not in
    /// [`durable_accepted_idx`](Self::durable_accepted_idx).
    pub(crate) fn append_entries_deferred(
        &mut self,
        entries: Vec<T>,
        ids: OriginIds,
    ) -> StorageResult<u64> {
        let n = entries.len() as u64;
        if n == 0 {
            return Ok(self.log_len);
        }
        let before = self.accepted_idx();
        let mut ops = Vec::with_capacity(2);
        ops.push(StorageOp::AppendEntries(entries));
        ops.extend(self.origins_op(self.log_len, ids));
        let waits = self.storage.write_deferred(ops)?;
        self.log_len += n;
        if waits {
            // The lowest since the last sync: a write that cut the log may
            // have come between two deferred ones.
            self.unsynced_from = Some(self.unsynced_from.map_or(before, |f| f.min(before)));
        }
        Ok(self.log_len)
    }

    /// Whether a deferred write of entries waits for [`sync`](Self::sync)
    /// (a lazily raised decided index waits for no sync of its own).
    pub(crate) fn has_unsynced(&self) -> bool {
        self.unsynced_from.is_some()
    }

    /// Makes the deferred writes durable; does nothing if none of entries
    /// waits ([`has_unsynced`](Self::has_unsynced)).
    pub(crate) fn sync(&mut self) -> StorageResult<()> {
        if self.unsynced_from.is_some() {
            self.storage.sync()?;
            self.unsynced_from = None;
        }
        Ok(())
    }

    /// How much of the log a crash now would leave accepted: the accepted
    /// index, less the entries of deferred writes that wait for their sync.
    /// (A write that is not deferred syncs those too, but this does not
    /// count on it: it is low until [`sync`](Self::sync), never high.)
    pub(crate) fn durable_accepted_idx(&self) -> u64 {
        let accepted = self.accepted_idx();
        self.unsynced_from
            .map_or(accepted, |from| from.min(accepted))
    }

    /// Appends entries and raises the decided index in one atomic write: what
    /// a follower does for each `AcceptDecide`.
    pub(crate) fn append_and_decide(
        &mut self,
        entries: Vec<T>,
        ids: OriginIds,
        decided_idx: u64,
    ) -> StorageResult<u64> {
        let new_len = self.log_len + entries.len() as u64;
        let new_decided = decided_idx.min(new_len).max(self.decided_idx);
        if new_decided == self.decided_idx {
            return self.append_entries(entries, ids);
        }
        let mut ops = Vec::with_capacity(3);
        if !entries.is_empty() {
            let origins = self.origins_op(self.log_len, ids);
            ops.push(StorageOp::AppendEntries(entries));
            ops.extend(origins);
        }
        ops.push(StorageOp::SetDecidedIndex(new_decided));
        self.storage.write_atomically(ops)?;
        self.log_len = new_len;
        self.decided_idx = new_decided;
        Ok(self.log_len)
    }

    /// Replaces the log from `sync_idx` on with `suffix`, records that the log
    /// is now accepted in `round` (`None`: in the round it was accepted in
    /// before, for a suffix of decided entries), and raises the decided
    /// index, atomically:
    /// the log synchronisation of a new leader or of a follower. With a
    /// `snapshot` (of the whole log below `sync_idx`), the log is first
    /// compacted up to `sync_idx`, which may lie past its current end.
    #[allow(
        clippy::too_many_arguments,
        reason = "one atomic write of the whole sync"
    )]
    pub(crate) fn sync_log(
        &mut self,
        round: Option<Ballot>,
        sync_idx: u64,
        snapshot: Option<(T::Snapshot, OriginTable)>,
        suffix: Vec<T>,
        suffix_ids: OriginIds,
        stopsign: Option<StopSign>,
        decided_idx: u64,
    ) -> StorageResult<()> {
        // `checked_sync` refused anything else; only a bug of ours gets here.
        debug_assert!(sync_idx >= self.compacted_idx);
        debug_assert!(snapshot.is_some() || sync_idx <= self.log_len);
        let new_len = sync_idx + suffix.len() as u64;
        let new_accepted = new_len + u64::from(stopsign.is_some());
        // A snapshot stands only for decided entries, so everything below
        // the sync index is decided once it is installed.
        let snapshot_end = if snapshot.is_some() { sync_idx } else { 0 };
        let new_decided = decided_idx
            .max(snapshot_end)
            .min(new_accepted)
            .max(self.decided_idx);
        // Only a bug of ours reaches this: `checked_sync` refuses a sync
        // that would cut decided entries or whose end overflows.
        debug_assert!(
            new_decided <= new_accepted,
            "sync would cut decided entries"
        );
        let mut ops = Vec::with_capacity(9);
        let compacted = if let Some((snapshot, table)) = snapshot {
            // The snapshot stands for our decided entries below it and for
            // the sender's: what both held goes into the table.
            let ours = self.decided_idx.min(sync_idx).min(self.log_len);
            let mut merged = std::mem::take(&mut self.origin_table);
            merged.absorb(&self.origins.range(self.compacted_idx..ours));
            merged.merge(&table);
            self.origins.trim(sync_idx);
            ops.push(StorageOp::SetSnapshot(Some(snapshot)));
            ops.push(StorageOp::Trim(sync_idx));
            ops.push(StorageOp::SetCompactedIdx(sync_idx));
            if self.keeps_origins {
                ops.push(StorageOp::SetOriginTable(merged.clone()));
            }
            self.origin_table = merged;
            sync_idx
        } else {
            self.compacted_idx
        };
        // Appending at the current end is a plain append; anything else truncates first.
        if sync_idx != self.log_len.max(compacted) || !suffix.is_empty() {
            ops.push(StorageOp::AppendOnPrefix(sync_idx, suffix));
        }
        ops.extend(self.origins_op(sync_idx, suffix_ids));
        if stopsign != self.stopsign {
            ops.push(StorageOp::SetStopsign(stopsign.clone()));
        }
        if let Some(round) = round {
            ops.push(StorageOp::SetAcceptedRound(round));
        }
        if new_decided != self.decided_idx {
            ops.push(StorageOp::SetDecidedIndex(new_decided));
        }
        self.storage.write_atomically(ops)?;
        self.log_len = new_len;
        self.stopsign = stopsign;
        self.compacted_idx = compacted;
        if round.is_some() {
            self.accepted_round = round;
        }
        self.decided_idx = new_decided;
        Ok(())
    }

    /// Compacts the log below `idx`: drops the entries and stores `snapshot`
    /// (`None` for a plain trim, which also drops any older snapshot, since it
    /// would no longer cover the whole compacted prefix).
    pub(crate) fn compact(&mut self, idx: u64, snapshot: Option<T::Snapshot>) -> StorageResult<()> {
        debug_assert!(idx > self.compacted_idx && idx <= self.decided_idx);
        let mut table = self.origin_table.clone();
        table.absorb(&self.origins.range(self.compacted_idx..idx));
        let mut ops = vec![
            StorageOp::SetSnapshot(snapshot),
            StorageOp::Trim(idx),
            StorageOp::SetCompactedIdx(idx),
        ];
        if self.keeps_origins {
            ops.push(StorageOp::SetOriginTable(table.clone()));
        }
        self.storage.write_atomically(ops)?;
        self.origins.trim(idx);
        self.origin_table = table;
        self.compacted_idx = idx;
        Ok(())
    }

    pub(crate) fn get_entries(&self, from: u64, to: u64) -> StorageResult<Vec<T>> {
        self.storage.get_entries(from, to)
    }

    /// Lends the entries in `[from, to)` to `f` (see [`Storage::get_entries_with`]).
    pub(crate) fn get_entries_with(
        &self,
        from: u64,
        to: u64,
        f: &mut dyn FnMut(&[T]),
    ) -> StorageResult<()> {
        self.storage.get_entries_with(from, to, f)
    }

    pub(crate) fn get_suffix(&self, from: u64) -> StorageResult<Vec<T>> {
        self.storage.get_suffix(from)
    }

    pub(crate) fn get_snapshot(&self) -> StorageResult<Option<T::Snapshot>> {
        self.storage.get_snapshot()
    }
}
