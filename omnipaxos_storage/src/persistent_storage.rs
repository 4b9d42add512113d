//! [`PersistentStorage`]: every write one record in a write-ahead log,
//! synced before it returns; entries in a `commitlog`, a checkpoint of the
//! small state in `sled`, the snapshot in a file of its own.
//!
//! # Layout on disk
//!
//! ```text
//! <path>/OMNIPAXOS_STORAGE   marker: names the format version; without it a
//!                            non-empty directory is refused as foreign
//! <path>/wal                 the write-ahead log: one record per batch since
//!                            the last checkpoint (see `wal.rs`)
//! <path>/state/              sled: the state record of the last checkpoint,
//!                            which holds the protocol's numbers, names the
//!                            record files and the last log record it holds
//! <path>/records/            one file per value that is written rarely and
//!                            may be large: snapshot-<generation>,
//!                            stopsign-<generation>, previous_end-<generation>,
//!                            origins-<generation> (the origin ids of the
//!                            held log and the origin table, as of the
//!                            checkpoint), and redo-<generation> while a
//!                            rewrite of the log's tail is in progress (see
//!                            below)
//! <path>/commitlog/          commitlog segments and indexes (or wherever
//!                            `set_commitlog_options` puts them)
//! ```
//!
//! # The commit points
//!
//! The state record says which commitlog offsets hold the log: index
//! `trimmed_idx + k` is at offset `phys_base + k`, up to `log_len`. The
//! record in sled is a checkpoint: the commitlog is synced up to the end it
//! maps before it is flushed. The current state is the checkpoint plus the
//! write-ahead log records after it (those with a sequence number above its
//! `wal_seq`), each of which holds the whole state after its batch.
//!
//! * a common batch (appends, trims, the protocol's numbers, origin ids and
//!   the origin table) is one log record, holding the new state, the
//!   serialised entries and the batch's change to the origin ids (the index
//!   from which it forgets ids and the runs it adds there, a few dozen bytes
//!   per run however many entries a run covers), appended and synced: that
//!   sync is its commit point and its only one. The entries then go to the
//!   commitlog unsynced. Open cuts the commitlog back to the checkpoint's
//!   end and appends each record's entries again, so it never relies on
//!   what the unsynced commitlog held; it applies each record's origin
//!   change to the ids the checkpoint names likewise.
//! * a checkpoint syncs the commitlog (the segments a common batch closed
//!   were synced when it closed them), writes the origin ids and table to a
//!   new `origins-<generation>` record file if a record since the last
//!   checkpoint changed them, flushes the state record naming that file and
//!   the last log record, and empties the log. A crash before the flush
//!   leaves the old checkpoint (with the file it names) and all records;
//!   after it, records that open skips and the next checkpoint drops. The
//!   replaced origins file is deleted after the flush. So the ids cost a
//!   common batch only their bytes in its record, and a checkpoint a file
//!   whose size grows with the runs of the held log (not with its entries).
//! * a trim only moves `trimmed_idx` and `phys_base` forward in the state;
//!   whole segments below the new start are deleted after the next
//!   checkpoint, which the trim asks for when there are any, since the
//!   checkpoint before it may still need them. Entries below the start
//!   inside the first segment stay on disk, unread, until the log moves past
//!   that segment.
//! * a new snapshot (likewise a new stop-sign or previous configuration's
//!   end) is a rare batch: the storage checkpoints first, writes the value
//!   to a new record file and syncs it, appends and syncs the batch's
//!   entries, and flushes the state record that names the file (by
//!   generation, length and checksum): that flush is the commit point. Only
//!   after it is the file it replaces deleted. A common batch writes nothing
//!   of them, so its cost does not grow with the snapshot or with the
//!   metadata a stop-sign carries.
//! * a batch that replaces entries (`AppendOnPrefix` below the log end) cannot
//!   write its new entries beside the old ones, since the commitlog only
//!   appends. After a checkpoint it writes them into a *redo* record file,
//!   and commits the new state record naming it: that flush is its commit
//!   point. Only then is the commitlog cut and the entries appended; then the
//!   state record is flushed again without the redo and the file deleted. An
//!   open that finds a redo named does the cut and append again (both are
//!   idempotent).
//!
//!
//! A batch on the rare path that changes the origin ids (it cuts the log,
//! trims it, or sets ids or the table) writes the ids and table after it to
//! a new origins file before its commit point, which names the file; the
//! incarnation is a number in the state record.
//!
//! Every batch therefore has exactly one commit point, a log sync or a sled
//! flush, and is seen after a crash either whole or not at all. A record
//! file that the committed state does not name, whatever the crash left, is
//! garbage: open deletes it and says so in its [`OpenReport`].
//!
//! # Footprint
//!
//! The directory holds, at most: the live snapshot (twice for the moment
//! between writing a new one and deleting the old), the log since the last
//! compaction, up to one commitlog segment of trimmed entries (the segment
//! the log starts in; 32 MiB by default), the segments' indexes (8 bytes per
//! entry), the write-ahead log (below its checkpoint threshold plus one
//! batch), the origin ids of the held log and the origin table (40 bytes a
//! run of ids, plus 16 a range of the table; twice for the moment between a
//! checkpoint writing a new file and deleting the old), and the state
//! database, which holds a few small records and stays at a few MiB. Only
//! `quarantine/` is not bounded by this: open moves what lay past the
//! commit point after a crash there, for an operator to inspect and delete;
//! each crash adds at most the batch it interrupted.

use crate::{
    bounds::Bounds,
    error,
    record_files::{Kind, Named, NamedV3, RecordFiles, RecordRef, Swept},
    segments::{self, Beyond, Dropped, HEADER_BYTES, Layout},
    wal::{Found, Wal},
};
use commitlog::{
    CommitLog, ReadError, ReadLimit,
    message::{MessageBuf, MessageSet},
};
use omnipaxos::{
    ballot::Ballot,
    errors::StorageError,
    storage::{Entry, OriginIds, OriginTable, Storage, StorageOp, StorageResult},
    util::{ConfigurationEnd, StopSign},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::{
    fmt,
    fs::{self, File},
    io::{ErrorKind, Write},
    marker::PhantomData,
    mem,
    ops::Range,
    path::{Path, PathBuf},
};

pub use crate::config::PersistentStorageConfig;
pub use commitlog::LogOptions;

/// The name of the marker file in the storage's directory.
const MARKER: &str = "OMNIPAXOS_STORAGE";
/// The version of the on-disk format this build writes. Version 1 kept the
/// snapshot and the redo record in sled; version 2 had no write-ahead log
/// and flushed the state record on every write; version 3 kept no origin
/// ids and no incarnation. Open upgrades all three.
const FORMAT_VERSION: u32 = 4;
/// The first format version with a write-ahead log.
const FIRST_LOGGED_VERSION: u32 = 3;
/// The oldest format version open can upgrade.
const OLDEST_READABLE_VERSION: u32 = 1;
/// The segment size of the commit log when the user sets no options: it
/// bounds the trimmed entries left on disk in the segment the log starts in
/// (commitlog's own default is 1 GB).
pub const DEFAULT_SEGMENT_MAX_BYTES: usize = 32 << 20;
/// How large the write-ahead log may grow before the storage checkpoints
/// (syncs the commitlog, flushes the state record and empties the log),
/// unless [`PersistentStorageConfig::set_wal_checkpoint_bytes`] says
/// otherwise. It bounds the work of replaying the log on open and the
/// disk it takes.
pub const DEFAULT_WAL_CHECKPOINT_BYTES: u64 = 4 << 20;
/// The first line of the marker file.
const MARKER_HEADER: &str = "omnipaxos_storage PersistentStorage";

/// sled key of the [`Meta`] record.
const KEY_META: &[u8] = b"meta";
/// sled key of the [`State`] record.
const KEY_STATE: &[u8] = b"state";
/// sled key of the snapshot in format version 1.
const V1_KEY_SNAPSHOT: &[u8] = b"snapshot";
/// sled key of how the previous configuration ended in format version 1.
const V1_KEY_PREVIOUS_END: &[u8] = b"previous_end";
/// sled key of the [`Redo`] record in format version 1.
const V1_KEY_REDO: &[u8] = b"redo";

/// The capacity the write-ahead log record buffer keeps between writes.
const RECORD_KEEP_BYTES: usize = 1 << 20;

/// How many bytes a read asks the commitlog for at first; doubled while a
/// single entry does not fit.
const READ_CHUNK_BYTES: u64 = 64 * 1024;

/// Written once into sled, to recognise the database as ours.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Meta {
    /// The on-disk format version.
    format_version: u32,
}

/// The state record: the numbers of the protocol's state and where the log
/// is, and the record files holding the rest. Every batch rewrites it, so it
/// holds nothing whose size the user or a peer sets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    promise: Option<Ballot>,
    accepted_round: Option<Ballot>,
    decided_idx: u64,
    compacted_idx: u64,
    /// Every entry below this index was dropped by a trim.
    trimmed_idx: u64,
    /// One past the last index of the log.
    log_len: u64,
    /// The commitlog offset of index `trimmed_idx`.
    phys_base: u64,
    /// The files of the snapshot, the stop-sign, the previous
    /// configuration's end and a redo in progress, where there are any.
    files: Named,
    /// The sequence number of the last write-ahead log record this state
    /// includes: on open, only the records after it are replayed.
    wal_seq: u64,
    /// How many times a server started on this storage, as it last said.
    incarnation: u64,
}

/// The state record of format version 3, read only to upgrade it (and
/// written by tests that make a version 3 directory).
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct StateV3 {
    promise: Option<Ballot>,
    accepted_round: Option<Ballot>,
    decided_idx: u64,
    compacted_idx: u64,
    trimmed_idx: u64,
    log_len: u64,
    phys_base: u64,
    files: NamedV3,
    wal_seq: u64,
}

impl From<StateV3> for State {
    fn from(old: StateV3) -> Self {
        Self {
            promise: old.promise,
            accepted_round: old.accepted_round,
            decided_idx: old.decided_idx,
            compacted_idx: old.compacted_idx,
            trimmed_idx: old.trimmed_idx,
            log_len: old.log_len,
            phys_base: old.phys_base,
            files: old.files.into(),
            wal_seq: old.wal_seq,
            incarnation: 0,
        }
    }
}

/// The state record of format version 2, read only to upgrade it (and
/// written by tests that make a version 2 directory).
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct StateV2 {
    promise: Option<Ballot>,
    accepted_round: Option<Ballot>,
    decided_idx: u64,
    compacted_idx: u64,
    trimmed_idx: u64,
    log_len: u64,
    phys_base: u64,
    files: NamedV3,
}

/// The state record of format version 1, read only to upgrade it (and
/// written by tests that make a version 1 directory).
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct StateV1 {
    promise: Option<Ballot>,
    accepted_round: Option<Ballot>,
    decided_idx: u64,
    compacted_idx: u64,
    stopsign: Option<StopSign>,
    trimmed_idx: u64,
    log_len: u64,
    phys_base: u64,
}

impl State {
    fn bounds(&self) -> Bounds {
        Bounds {
            trimmed_idx: self.trimmed_idx,
            log_len: self.log_len,
            compacted_idx: self.compacted_idx,
            stopsign: self.files.get(Kind::StopSign).is_some(),
        }
    }

    /// The commitlog offset of log index `idx` (`trimmed_idx..=log_len`).
    fn phys(&self, idx: u64) -> u64 {
        debug_assert!(
            (self.trimmed_idx..=self.log_len).contains(&idx),
            "index {idx} is outside the held log {}..{}",
            self.trimmed_idx,
            self.log_len
        );
        self.phys_base + (idx - self.trimmed_idx)
    }

    /// The number of entries the commitlog holds for the log.
    fn held(&self) -> u64 {
        self.log_len - self.trimmed_idx
    }
}

/// The entries of a committed batch that still have to replace the
/// commitlog's tail.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Redo {
    /// The commitlog offset from which the old entries go.
    cut: u64,
    /// The serialised entries to append there.
    entries: Vec<Vec<u8>>,
}

/// The values of a batch kept in record files: `None` leaves one as it is,
/// `Some(None)` removes it.
struct Changes<S> {
    snapshot: Option<Option<S>>,
    stopsign: Option<Option<StopSign>>,
    previous_end: Option<Option<ConfigurationEnd>>,
}

/// How a batch changes the log, worked out before anything is written: the
/// log becomes the held entries `trimmed..kept_end` followed by `tail`.
struct LogPlan<T> {
    trimmed: u64,
    /// The held entries below this index are kept; the tail starts here.
    kept_end: u64,
    tail: Vec<T>,
}

impl<T> LogPlan<T> {
    fn truncate(&mut self, from: u64) {
        if from >= self.kept_end {
            self.tail.truncate((from - self.kept_end) as usize);
        } else {
            self.tail.clear();
            self.kept_end = from;
        }
    }

    fn trim(&mut self, idx: u64) {
        if idx <= self.trimmed {
            return;
        }
        self.trimmed = idx;
        if idx > self.kept_end {
            let drop = ((idx - self.kept_end) as usize).min(self.tail.len());
            self.tail.drain(..drop);
            self.kept_end = idx;
        }
    }

    fn log_len(&self) -> u64 {
        self.kept_end + self.tail.len() as u64
    }
}

/// How a batch changes the origin ids and table, worked out as its ops are
/// read: the ids become the old ones below `cut` (or all of them), then
/// `added`, all trimmed at the new `trimmed_idx`. Only what the batch itself
/// adds is held, never a copy of the ids of the whole log.
#[derive(Debug, Default, PartialEq, Eq)]
struct OriginChanges {
    /// The lowest index from which the batch forgets ids, if it cuts any.
    cut: Option<u64>,
    /// The ids the batch gives, all at `cut` or above, as later ops in the
    /// batch left them.
    added: OriginIds,
    /// The table the batch persists, if any.
    table: Option<OriginTable>,
}

impl OriginChanges {
    /// The log is cut at `from`: ids there and above go, the batch's own too.
    fn cut_at(&mut self, from: u64) {
        self.cut = Some(self.cut.map_or(from, |c| c.min(from)));
        self.added.truncate(from);
    }

    /// `SetOrigins(from, ids)`, which the bounds check let through: `ids`
    /// lie at `from` or above.
    fn set(&mut self, from: u64, ids: &OriginIds) {
        self.cut_at(from);
        let appended = self.added.append(ids);
        debug_assert!(appended, "bounds checked that the ids start at from_idx");
    }

    /// Forgets a cut that changes nothing: one at or past the end of the ids
    /// held, with nothing added.
    fn settle(&mut self, held: &OriginIds) {
        if self.added.is_empty() && self.cut.is_some_and(|c| c >= held.end()) {
            self.cut = None;
        }
    }

    /// Whether the batch leaves the ids and the table as they are (up to
    /// its trim, which the state record carries).
    fn is_empty(&self) -> bool {
        self.cut.is_none() && self.table.is_none()
    }

    /// Applies the change to `ids` and `table`, the log now trimmed at
    /// `trimmed`. Returns `false` if `added` starts below where the cut ids
    /// end, which only a forged log record can make happen; `ids` may then
    /// be half-changed and must be dropped.
    fn apply(&self, ids: &mut OriginIds, table: &mut OriginTable, trimmed: u64) -> bool {
        if let Some(cut) = self.cut {
            ids.truncate(cut);
        }
        if !ids.append(&self.added) {
            return false;
        }
        ids.trim(trimmed);
        if let Some(t) = &self.table {
            table.clone_from(t);
        }
        true
    }
}

/// File handles on the segment being appended to, kept to sync it.
struct Active {
    /// The first commitlog offset of the segment.
    base: u64,
    segment: File,
    index: File,
}

impl Active {
    fn open(layout: &Layout, base: u64) -> StorageResult<Self> {
        let open = |path: PathBuf| {
            File::open(&path).map_err(|e| error::io("open the active segment", &path, &e))
        };
        Ok(Self {
            base,
            segment: open(layout.segment_path(base))?,
            index: open(layout.index_path(base))?,
        })
    }

    /// Syncs the segment and its index (which commitlog writes through a
    /// memory map; fsync on the file writes its dirty pages on Linux).
    fn sync(&self, layout: &Layout) -> StorageResult<()> {
        self.segment
            .sync_data()
            .map_err(|e| error::io("sync a segment", &layout.segment_path(self.base), &e))?;
        self.index
            .sync_data()
            .map_err(|e| error::io("sync an index", &layout.index_path(self.base), &e))
    }

    fn segment_len(&self, layout: &Layout) -> StorageResult<u64> {
        self.segment
            .metadata()
            .map(|m| m.len())
            .map_err(|e| error::io("stat a segment", &layout.segment_path(self.base), &e))
    }
}

/// What [`PersistentStorage::open`] found left over in the directory and did
/// about it; see [`PersistentStorage::open_report`].
///
/// The storage crate does not log, so a server that wants the story in its
/// logs prints this (its `Display` is one line) after opening.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpenReport {
    /// Files deleted because no committed state can need them.
    pub removed: Vec<RemovedFile>,
    /// Where open moved data that lay past the commit point (uncommitted
    /// segments, a torn tail), inside `quarantine/`, instead of deleting it.
    pub quarantined: Vec<PathBuf>,
    /// Whether open finished the rewrite of the log's tail of a batch that
    /// had committed before a crash stopped it.
    pub finished_redo: bool,
    /// The on-disk format version open upgraded the directory from, if any.
    pub upgraded_from: Option<u32>,
    /// Write-ahead log records written after the last checkpoint that open
    /// applied again (after a crash, or a drop that could not checkpoint).
    pub replayed_records: u64,
    /// Bytes of an interrupted last write-ahead log record that open cut
    /// off: a write that a crash stopped before it returned.
    pub wal_torn_bytes: u64,
    /// Set when open upgraded a directory of a format before origin ids
    /// (version 3 or older) that held entries: the entries below this index
    /// have no origin id, and the origin table knows nothing of the
    /// compacted prefix.
    pub no_origin_ids_below: Option<u64>,
}

impl OpenReport {
    /// Whether open found nothing to clean up, repair or upgrade.
    pub fn is_clean(&self) -> bool {
        self == &Self::default()
    }
}

impl fmt::Display for OpenReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_clean() {
            return f.write_str("nothing left over");
        }
        let mut parts = Vec::new();
        if let Some(v) = self.upgraded_from {
            parts.push(format!(
                "upgraded from format version {v} to {FORMAT_VERSION}"
            ));
        }
        if let Some(n) = self.no_origin_ids_below {
            parts.push(format!(
                "entries below index {n} were written before origin ids and have none"
            ));
        }
        if !self.removed.is_empty() {
            let bytes: u64 = self.removed.iter().map(|r| r.bytes).sum();
            let files: Vec<String> = self
                .removed
                .iter()
                .map(|r| format!("{} ({})", r.path.display(), r.kind))
                .collect();
            parts.push(format!(
                "removed {} unreferenced files ({bytes} bytes): {}",
                self.removed.len(),
                files.join(", ")
            ));
        }
        if self.finished_redo {
            parts.push("finished rewriting the log's tail".to_owned());
        }
        if self.replayed_records > 0 {
            parts.push(format!(
                "replayed {} write-ahead log records",
                self.replayed_records
            ));
        }
        if self.wal_torn_bytes > 0 {
            parts.push(format!(
                "cut an interrupted write-ahead log record ({} bytes)",
                self.wal_torn_bytes
            ));
        }
        if !self.quarantined.is_empty() {
            let files: Vec<String> = self
                .quarantined
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            parts.push(format!("moved uncommitted data to {}", files.join(", ")));
        }
        f.write_str(&parts.join("; "))
    }
}

/// A file that [`PersistentStorage::open`] deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemovedFile {
    /// Where it was.
    pub path: PathBuf,
    /// What it held.
    pub kind: LeftoverKind,
    /// Its size.
    pub bytes: u64,
}

/// What a file that open deleted held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeftoverKind {
    /// A snapshot the committed state does not name: one that a committed
    /// batch replaced (a crash came before it was deleted), or one that a
    /// batch wrote but never committed.
    Snapshot,
    /// A stop-sign the committed state does not name (replaced, cleared,
    /// or never committed).
    StopSign,
    /// A record of how the previous configuration ended that the committed
    /// state does not name.
    PreviousEnd,
    /// A redo record the committed state does not name: of a rewrite that
    /// had finished, or of a batch that never committed.
    Redo,
    /// Origin ids the committed state does not name: ones a later
    /// checkpoint replaced, or ones written by a checkpoint or batch that
    /// never committed.
    Origins,
    /// A commitlog segment or index holding only trimmed entries.
    TrimmedSegment,
    /// A commitlog segment or index holding only entries that a committed
    /// batch replaced (the redo record holds their replacements).
    ReplacedEntries,
    /// A commitlog segment or index holding only entries written after the
    /// last checkpoint, unsynced: open writes them again from the
    /// write-ahead log rather than trust them.
    LoggedEntries,
}

impl fmt::Display for LeftoverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Snapshot => "unreferenced snapshot",
            Self::StopSign => "unreferenced stop-sign",
            Self::PreviousEnd => "unreferenced previous configuration's end",
            Self::Redo => "unreferenced redo record",
            Self::Origins => "unreferenced origin ids",
            Self::TrimmedSegment => "trimmed segment",
            Self::ReplacedEntries => "replaced entries",
            Self::LoggedEntries => "entries rewritten from the write-ahead log",
        })
    }
}

impl From<Swept> for RemovedFile {
    fn from(s: Swept) -> Self {
        Self {
            path: s.path,
            kind: match s.kind {
                Kind::Snapshot => LeftoverKind::Snapshot,
                Kind::StopSign => LeftoverKind::StopSign,
                Kind::PreviousEnd => LeftoverKind::PreviousEnd,
                Kind::Redo => LeftoverKind::Redo,
                Kind::Origins => LeftoverKind::Origins,
            },
            bytes: s.bytes,
        }
    }
}

/// Counters of what a [`PersistentStorage`] wrote since it was opened; see
/// [`PersistentStorage::stats`].
///
/// They show where the bytes and the syncs go: a common batch is one
/// write-ahead log record and one sync (`syncs` grows by one per
/// `wal_records`, plus a few per checkpoint), the state database is written
/// only at checkpoints, and a snapshot is written once per compaction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PersistentStorageStats {
    /// Batches committed.
    pub commits: u64,
    /// Bytes handed to the state database, all checkpoints together.
    pub state_bytes_written: u64,
    /// Batches committed by a write-ahead log record (the common path).
    pub wal_records: u64,
    /// Bytes appended to the write-ahead log, headers included.
    pub wal_bytes_written: u64,
    /// Checkpoints: the commitlog synced, the state record flushed, the
    /// write-ahead log emptied.
    pub checkpoints: u64,
    /// File and directory syncs (`fsync`, `fdatasync`) and state database
    /// flushes, all paths together.
    pub syncs: u64,
    /// Entries appended to the commitlog.
    pub entries_appended: u64,
    /// Bytes of serialised entries appended to the commitlog.
    pub entry_bytes_appended: u64,
    /// Snapshots written, each into a record file of its own.
    pub snapshots_written: u64,
    /// Bytes of snapshots written (their serialised size).
    pub snapshot_bytes_written: u64,
    /// Files deleted: replaced snapshots, finished redo records, commitlog
    /// segments and indexes below the log's start.
    pub files_removed: u64,
    /// Files that could not be deleted; the next open deletes them.
    pub files_not_removed: u64,
}

/// A [`Storage`] on disk, in one directory: every write a record in a
/// write-ahead log, the entries in a `commitlog`, a checkpoint of the small
/// state (promise, accepted round, decided and compacted index,
/// incarnation) in a `sled` database, and the snapshot, the stop-sign and
/// the origin ids in files of their own that the state names. It
/// [keeps origins](Storage::keeps_origins).
///
/// Every write is durable when it returns `Ok`. A common batch (appends,
/// trims, the protocol's numbers, the origin ids of appended entries) costs
/// one `fdatasync` of the write-ahead log however many entries it carries,
/// so the protocol's batching (`batch_size`) is what buys throughput; a
/// batch that sets a snapshot, stop-sign or previous configuration's end,
/// or replaces entries, costs a few syncs more.
/// [`write_atomically`](Storage::write_atomically) is all-or-nothing, also
/// across a crash; the module documentation describes the commit points
/// that make it so, and how much disk the directory takes. [`stats`](Self::stats) counts the syncs.
///
/// [`open`](Self::open) creates the directory or reopens it. Reopening checks
/// it first and replays the write-ahead log: a torn last log record is cut,
/// a torn write past the last committed entry is moved to
/// `quarantine/`, files no committed state needs are deleted (and listed in
/// [`open_report`](Self::open_report)), while a path that is a file, a
/// directory written by something else, a missing or truncated segment, a
/// damaged entry, state record or snapshot, a missing write-ahead log or a
/// damaged record in it followed by valid ones gives a [`StorageError`] naming
/// the file, and nothing is deleted. A damaged entry in the middle of the
/// log is found when it is read.
///
/// Once a write fails half-way, every later call fails too: the files may
/// hold part of the write, and only a reopen cuts it away. This matches the
/// protocol, which stops acting after a storage error.
///
/// ```
/// use omnipaxos::{macros::Entry, storage::Storage};
/// use omnipaxos_storage::persistent_storage::{PersistentStorage, PersistentStorageConfig};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Clone, Debug, PartialEq, Entry, Serialize, Deserialize)]
/// struct KeyValue {
///     key: String,
///     value: u64,
/// }
///
/// let dir = tempfile::tempdir()?;
/// let mut config = PersistentStorageConfig::default();
/// config.set_path(dir.path());
///
/// let mut storage = PersistentStorage::open(config.clone())?;
/// let entry = KeyValue { key: "a".into(), value: 1 };
/// storage.append_entry(entry.clone())?;
/// drop(storage);
///
/// // A restarted server reopens the same path and finds what it wrote.
/// let storage = PersistentStorage::<KeyValue>::open(config)?;
/// assert_eq!(storage.get_suffix(0)?, vec![entry]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PersistentStorage<T: Entry> {
    /// The storage's directory, for error messages.
    root: PathBuf,
    /// Where the commitlog is and its size limits.
    layout: Layout,
    /// The entries, at the offsets the state record maps them to.
    log: CommitLog,
    /// The segment being appended to.
    active: Active,
    /// The base offsets of the segments on disk, ascending; the last is `active`.
    bases: Vec<u64>,
    /// The state database.
    db: sled::Db,
    /// Where the state database is, for error messages.
    db_path: PathBuf,
    /// The snapshot and redo record files.
    records: RecordFiles,
    /// The write-ahead log: the commit point of a common batch.
    wal: Wal,
    /// The sequence number of the last record in the write-ahead log (or
    /// of the checkpoint, when the log is empty).
    last_seq: u64,
    /// Checkpoint when the write-ahead log is at least this long.
    wal_checkpoint_bytes: u64,
    /// Whether the write-ahead log's last record was appended by
    /// `write_deferred` and waits for `sync`.
    wal_unsynced: bool,
    /// The record being written, kept to reuse its allocation.
    record: Vec<u8>,
    /// Where each entry of `record` is, reused likewise.
    entry_ranges: Vec<Range<usize>>,
    /// Whether the commitlog directory gained files since the last sync of it.
    dir_dirty: bool,
    /// The committed state: the checkpoint in sled and the write-ahead log
    /// records after it. `wal_seq` in it is the checkpoint's.
    state: State,
    /// The committed snapshot, as last flushed (a copy of the file the
    /// state record names).
    snapshot: Option<T::Snapshot>,
    /// The committed stop-sign, as last flushed.
    stopsign: Option<StopSign>,
    /// How the previous configuration ended, as last flushed.
    previous_end: Option<ConfigurationEnd>,
    /// The origin ids of the held log, committed: the origins file the
    /// checkpoint names with the changes of the log records after it.
    origins: OriginIds,
    /// The origin table, committed likewise.
    origin_table: OriginTable,
    /// Whether `origins` or `origin_table` changed since the origins file
    /// the checkpoint names was written; the next checkpoint writes a new one.
    origins_dirty: bool,
    /// Set while a directory of format version 3 is being upgraded: the
    /// next state record is written together with the new meta record, as
    /// one flushed sled batch, which is the upgrade's commit point.
    upgrade_pending: bool,
    /// Set when a write failed half-way; says what failed.
    poisoned: Option<String>,
    /// What open cleaned up.
    report: OpenReport,
    /// What was written since open.
    stats: PersistentStorageStats,
    /// Unit tests stop a write here, as a crash would.
    #[cfg(test)]
    crash_at: Option<CrashPoint>,
    _entries: PhantomData<fn() -> T>,
}

/// Where a unit test makes a write stop as if the process died there.
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CrashPoint {
    /// Right after the commit point of a batch that rewrites the log's tail.
    AfterRedoCommit,
    /// After a batch that replaces the snapshot committed, before the old
    /// snapshot's file is deleted.
    BeforeOldSnapshotRemoval,
    /// Right after a batch's write-ahead log record is synced, before its
    /// entries go to the commitlog.
    AfterWalWrite,
    /// In a checkpoint, after the commitlog is synced and before the state
    /// record is flushed.
    CheckpointBeforeStateFlush,
    /// In a checkpoint, after the state record is flushed and before the
    /// write-ahead log is emptied.
    CheckpointBeforeWalReset,
}

impl<T> PersistentStorage<T>
where
    T: Entry + Serialize + DeserializeOwned,
    T::Snapshot: Serialize + DeserializeOwned,
{
    /// Opens the storage in the configured directory, creating it if it is
    /// missing or empty, and recovering it to the last committed write if it
    /// was left by a crash.
    ///
    /// On the way it deletes what no committed state can need (record files
    /// the state record does not name, segments wholly below the log's
    /// start), moves what lay past the commit point into `quarantine/`,
    /// finishes a rewrite of the log's tail that a crash interrupted,
    /// replays the write-ahead log records after the checkpoint (cutting an
    /// interrupted last one) and checkpoints them, and upgrades a directory
    /// written in format version 1, 2 or 3 (whose entries then have no
    /// origin ids, as [`OpenReport::no_origin_ids_below`] says).
    /// [`open_report`](Self::open_report) says what it did.
    ///
    /// Fails if no path is set, if the path is a file or a non-empty
    /// directory without this crate's marker, if the marker names a format
    /// version this build cannot read, or if the files the committed state
    /// needs are missing or damaged. The errors name the offending file; in
    /// none of these cases is anything deleted.
    pub fn open(config: PersistentStorageConfig) -> StorageResult<Self> {
        let root = config
            .path()
            .ok_or_else(|| StorageError::Backend {
                operation: "open a persistent storage".to_owned(),
                detail: "PersistentStorageConfig has no path; call set_path".to_owned(),
            })?
            .to_path_buf();
        let layout = match config.commitlog_options() {
            Some(options) => Layout::from_options(options.clone())?,
            None => {
                let mut options = LogOptions::new(root.join("commitlog"));
                options.segment_max_bytes(DEFAULT_SEGMENT_MAX_BYTES);
                Layout::from_options(options)?
            }
        };
        let claim = claim_directory(&root, &layout)?;

        let db_path = root.join("state");
        let db = open_database(&crate::config::database_config(
            config.database_options(),
            &db_path,
        ))
        .map_err(|e| error::sled("open", &db_path, e))?;
        let get = |key: &[u8]| read_key(&db, &db_path, key);
        let mut records = RecordFiles::open(&root)?;
        let mut report = OpenReport::default();

        let meta_version = match get(KEY_META)? {
            Some(bytes) => {
                Some(decode::<Meta>(&bytes, "the meta record", &db_path)?.format_version)
            }
            None => None,
        };
        match meta_version {
            Some(v) if v < claim.marker_version => {
                return Err(error::corrupt(
                    &db_path,
                    format!(
                        "the state database has format version {v} but the marker \
                         names {}: the marker is only updated after the database",
                        claim.marker_version
                    ),
                ));
            }
            Some(v) if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&v) => {
                return Err(error::corrupt(
                    &db_path,
                    format!(
                        "the state database has format version {v}, this build reads \
                         {OLDEST_READABLE_VERSION} to {FORMAT_VERSION}"
                    ),
                ));
            }
            _ => {}
        }
        // The log exists from the moment the state database is at a version
        // with one: it is created before the database is initialised or
        // upgraded, so such a database without it has lost writes.
        let logged = meta_version.is_some_and(|v| v >= FIRST_LOGGED_VERSION);
        let (wal, scan) = Wal::open(&root, !logged)?;
        if !logged && !scan.records.is_empty() {
            return Err(error::corrupt(
                wal.path(),
                "the write-ahead log holds records but the state database is of an older \
                 format, which never wrote one",
            ));
        }
        report.wal_torn_bytes = scan.torn_bytes;
        // A version 3 database keeps its version until the first state
        // record this open writes, which goes with the new meta record: its
        // log records (of the version 3 layout) are replayed first, so that
        // no later open reads them as records of the current layout.
        let upgrade_pending = meta_version == Some(3);
        let state = match meta_version {
            Some(FORMAT_VERSION) => {
                let bytes = get(KEY_STATE)?.ok_or_else(|| {
                    error::corrupt(&db_path, "the state database has no state record")
                })?;
                decode::<State>(&bytes, "the state record", &db_path)?
            }
            Some(3) => {
                report.upgraded_from = Some(3);
                let bytes = get(KEY_STATE)?.ok_or_else(|| {
                    error::corrupt(&db_path, "the state database has no state record")
                })?;
                decode::<StateV3>(&bytes, "the state record", &db_path)?.into()
            }
            Some(2) => {
                report.upgraded_from = Some(2);
                upgrade_v2(&db, &db_path)?
            }
            Some(_) => {
                report.upgraded_from = Some(1);
                upgrade_v1(&db, &db_path, &mut records)?
            }
            None => {
                // A new database. That is fine for a new storage, or one
                // whose creation a crash interrupted before any entry was
                // written; a commitlog with segments means the state that
                // maps them is lost.
                if !claim.fresh && segments::has_segments(&layout)? {
                    return Err(error::corrupt(
                        &db_path,
                        "the state database is empty but the commitlog holds segments: \
                         the state was lost",
                    ));
                }
                let state = State::default();
                db.apply_batch(versioned_state_batch(&state)?)
                    .map_err(|e| error::sled("initialise", &db_path, e))?;
                db.flush().map_err(|e| error::sled("flush", &db_path, e))?;
                state
            }
        };
        if state.log_len < state.trimmed_idx {
            return Err(error::corrupt(
                &db_path,
                format!("the state record is inconsistent: {state:?}"),
            ));
        }

        // The records after the checkpoint are the writes it does not hold
        // yet; those up to it are left from a checkpoint that a crash
        // stopped before it emptied the log.
        let ckpt_seq = state.wal_seq;
        let replay: &[Found] = match scan.records.iter().position(|r| r.seq > ckpt_seq) {
            Some(i) => &scan.records[i..],
            None => &[],
        };
        if let Some(first) = replay.first().filter(|r| r.seq != ckpt_seq + 1) {
            return Err(error::corrupt(
                wal.path(),
                format!(
                    "the write-ahead log resumes at record {} but the checkpoint ends at \
                     record {ckpt_seq}: records in between are missing",
                    first.seq
                ),
            ));
        }
        let last_seq = scan
            .records
            .last()
            .map_or(ckpt_seq, |r| r.seq.max(ckpt_seq));
        let batches = replay
            .iter()
            .map(|r| decode_batch(&scan.data, r, wal.path(), upgrade_pending))
            .collect::<StorageResult<Vec<_>>>()?;
        if let Some(b) = batches.iter().find(|b| b.state.files != state.files) {
            return Err(error::corrupt(
                wal.path(),
                format!(
                    "write-ahead log record {} names other record files than the checkpoint; \
                     a batch that changes them is never logged",
                    b.seq
                ),
            ));
        }
        if !batches.is_empty() && state.files.get(Kind::Redo).is_some() {
            return Err(error::corrupt(
                wal.path(),
                "the write-ahead log holds records after a checkpoint with a rewrite in \
                 progress; a rewrite empties the log first",
            ));
        }

        let named = state.files.all();
        for (_, r) in &named {
            records.note_referenced(r);
        }
        report
            .removed
            .extend(records.sweep(&named)?.into_iter().map(RemovedFile::from));
        let snapshot = read_named(&records, &state, Kind::Snapshot)?;
        let stopsign = read_named(&records, &state, Kind::StopSign)?;
        let previous_end = read_named(&records, &state, Kind::PreviousEnd)?;
        let redo: Option<Redo> = read_named(&records, &state, Kind::Redo)?;
        let (origins, origin_table) = read_origins(&records, &state)?;

        let held_before_redo = match &redo {
            Some(redo) if redo.cut >= state.phys_base => redo.cut - state.phys_base,
            Some(redo) => {
                return Err(error::corrupt(
                    &db_path,
                    format!(
                        "the redo record cuts at {} below the log start {}",
                        redo.cut, state.phys_base
                    ),
                ));
            }
            None => state.held(),
        };
        // With a redo committed, what lies past its cut is what it
        // replaces; with records to replay, what lies past the checkpoint is
        // written again from them (a batch is logged before its entries
        // reach the commitlog, and the batches that bypass the log empty it
        // first); otherwise nothing says what lies past the log's end.
        let redo_pending = redo.is_some();
        let beyond = if redo_pending || !batches.is_empty() {
            Beyond::Remove
        } else {
            Beyond::Quarantine
        };
        let prepared = segments::prepare(&layout, state.phys_base, held_before_redo, beyond)?;
        report.removed.extend(
            prepared
                .removed
                .iter()
                .map(|(path, bytes, dropped)| RemovedFile {
                    path: path.clone(),
                    kind: match dropped {
                        Dropped::Trimmed => LeftoverKind::TrimmedSegment,
                        // Without a redo, what lay past the checkpoint is
                        // what the log's records write again.
                        Dropped::Replaced if redo_pending => LeftoverKind::ReplacedEntries,
                        Dropped::Replaced => LeftoverKind::LoggedEntries,
                    },
                    bytes: *bytes,
                }),
        );
        report.quarantined = prepared.quarantined;
        let log = CommitLog::new(layout.options.clone())
            .map_err(|e| error::io("open the commitlog", &layout.dir, &e))?;
        let bases = if prepared.bases.is_empty() {
            vec![0]
        } else {
            prepared.bases
        };
        let active = Active::open(&layout, *bases.last().expect("bases is not empty"))?;
        let mut storage = Self {
            root,
            log,
            active,
            bases,
            db,
            db_path,
            records,
            wal,
            last_seq,
            wal_checkpoint_bytes: config
                .wal_checkpoint_bytes()
                .unwrap_or(DEFAULT_WAL_CHECKPOINT_BYTES),
            wal_unsynced: false,
            record: Vec::new(),
            entry_ranges: Vec::new(),
            dir_dirty: false,
            state: State {
                phys_base: prepared.first,
                ..state
            },
            snapshot,
            stopsign,
            previous_end,
            origins,
            origin_table,
            origins_dirty: false,
            upgrade_pending,
            poisoned: None,
            report,
            stats: PersistentStorageStats::default(),
            #[cfg(test)]
            crash_at: None,
            layout,
            _entries: PhantomData,
        };
        let recovered = storage.recover(redo, held_before_redo, &scan.data, batches);
        // A storage whose recovery failed half-way must not checkpoint when
        // it is dropped: that would commit a partly replayed state as if it
        // held the whole log, and the next open would lose the rest.
        storage.guard(recovered)?;
        if claim.marker_version < FORMAT_VERSION {
            // The database is at the current version now (upgraded above,
            // or before a crash that came before this line).
            write_marker(&storage.root)?;
        }
        if storage.report.upgraded_from.is_some() && storage.state.log_len > 0 {
            storage.report.no_origin_ids_below = Some(storage.state.log_len);
        }
        Ok(storage)
    }

    /// The part of [`open`](Self::open) that writes: checks that the
    /// commitlog ends where the checkpoint needs, finishes a committed
    /// rewrite, cuts a torn log record, replays the log records after the
    /// checkpoint and checkpoints them.
    fn recover(
        &mut self,
        redo: Option<Redo>,
        held_before_redo: u64,
        data: &[u8],
        batches: Vec<LoggedBatch>,
    ) -> StorageResult<()> {
        let expected_end = self.state.phys_base + held_before_redo;
        if self.log.next_offset() != expected_end {
            return Err(error::corrupt(
                &self.layout.dir,
                format!(
                    "the commitlog ends at offset {} but the state needs it to end at {expected_end}",
                    self.log.next_offset()
                ),
            ));
        }
        if let Some(redo) = redo {
            self.finish_redo(&redo.entries)?;
            self.report.finished_redo = true;
        }
        self.wal.cut_torn_tail()?;
        self.replay(data, batches)?;
        if self.wal.len() > 0 || self.upgrade_pending {
            // Replayed records, or ones a checkpoint already held: make the
            // checkpoint current so that the log starts empty. An upgrade
            // from version 3 commits here too, if a redo did not already.
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Applies the write-ahead log records after the checkpoint to the
    /// commitlog (which open cut back to the checkpoint) and to the state.
    fn replay(&mut self, data: &[u8], batches: Vec<LoggedBatch>) -> StorageResult<()> {
        // The records name commitlog offsets as they were when written. The
        // entries land at the same offsets again, except after a checkpoint
        // that held no entry, where the commitlog restarts at 0: all offsets
        // then move by the same amount.
        let mut shift: Option<i128> = None;
        let replayed = batches.len() as u64;
        for batch in batches {
            let next = self.log.next_offset();
            let shift =
                *shift.get_or_insert_with(|| i128::from(next) - i128::from(batch.first_offset));
            let moved = |offset: u64| u64::try_from(i128::from(offset) + shift).ok();
            let mut state = batch.state;
            let phys_base = moved(state.phys_base);
            let (Some(phys_base), true) = (
                phys_base,
                moved(batch.first_offset) == Some(next) && state.trimmed_idx <= state.log_len,
            ) else {
                return Err(error::corrupt(
                    self.wal.path(),
                    format!(
                        "write-ahead log record {} does not follow the log before it \
                         (its entries start at offset {}, the commitlog ends at {next})",
                        batch.seq, batch.first_offset
                    ),
                ));
            };
            let slices: Vec<&[u8]> = batch.entries.iter().map(|r| &data[r.clone()]).collect();
            self.append_physical(&slices, false)?;
            state.phys_base = phys_base;
            state.wal_seq = self.state.wal_seq;
            self.replay_origins(&batch.origins, &state, batch.seq)?;
            if state.phys_base + state.held() != self.log.next_offset() {
                return Err(error::corrupt(
                    self.wal.path(),
                    format!(
                        "write-ahead log record {} maps its log to offsets {}..{}, but the \
                         commitlog ends at {}",
                        batch.seq,
                        state.phys_base,
                        state.phys_base + state.held(),
                        self.log.next_offset()
                    ),
                ));
            }
            self.state = state;
        }
        self.report.replayed_records = replayed;
        Ok(())
    }

    /// Applies the origin change of log record `seq` to the ids and table,
    /// `state` being the state after it; a change that does not fit the log
    /// (ids outside it, ids below the cut) is a forged record.
    fn replay_origins(
        &mut self,
        changes: &OriginChanges,
        state: &State,
        seq: u64,
    ) -> StorageResult<()> {
        let bad = |what: &str| {
            error::corrupt(
                self.wal.path(),
                format!("write-ahead log record {seq} is malformed: {what}"),
            )
        };
        let first = changes.added.runs().first().map(|r| r.idx);
        let fits = match (changes.cut, first) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(cut), Some(first)) => {
                first >= cut && first >= state.trimmed_idx && changes.added.end() <= state.log_len
            }
        };
        if !fits {
            return Err(bad("its origin ids lie outside the log or below its cut"));
        }
        if changes.table.as_ref().is_some_and(|t| !t.is_well_formed()) {
            return Err(bad("its origin table is malformed"));
        }
        if !changes.is_empty() || state.trimmed_idx > self.state.trimmed_idx {
            if !changes.apply(&mut self.origins, &mut self.origin_table, state.trimmed_idx) {
                return Err(bad("its origin ids overlap the ids before its cut"));
            }
            self.origins_dirty = true;
        }
        Ok(())
    }

    /// What [`open`](Self::open) found left over in the directory and did
    /// about it: files it deleted, data it moved to quarantine, a rewrite it
    /// finished, a format it upgraded.
    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }

    /// What this storage wrote and deleted since it was opened.
    pub fn stats(&self) -> PersistentStorageStats {
        self.stats
    }

    /// Whether a batch with these origin changes, leaving the state
    /// `after`, changes the ids or the table (up to a cheap doubt: a trim of
    /// ids that all lie above it counts).
    fn touches_origins(&self, origins: &OriginChanges, after: &State) -> bool {
        !origins.is_empty()
            || (after.trimmed_idx > self.state.trimmed_idx && !self.origins.is_empty())
    }

    /// Takes the values of a committed batch as the current ones.
    fn adopt(&mut self, changes: Changes<T::Snapshot>, origins: Option<(OriginIds, OriginTable)>) {
        if let Some((ids, table)) = origins {
            self.origins = ids;
            self.origin_table = table;
        }
        if let Some(s) = changes.snapshot {
            self.snapshot = s;
        }
        if let Some(s) = changes.stopsign {
            self.stopsign = s;
        }
        if let Some(end) = changes.previous_end {
            self.previous_end = end;
        }
    }

    /// Writes the new value of a record file's kind, if there is one, and
    /// names it (or nothing) in `state`.
    fn stage<V: Serialize>(
        &mut self,
        state: &mut State,
        kind: Kind,
        value: Option<&V>,
    ) -> StorageResult<()> {
        let record = match value {
            Some(v) => {
                let written = self.write_record(kind, v);
                Some(self.guard(written)?)
            }
            None => None,
        };
        state.files.set(kind, record);
        Ok(())
    }

    /// Serialises `value` into a new record file of `kind`, ready to be
    /// named by the next commit.
    fn write_record<V: Serialize>(&mut self, kind: Kind, value: &V) -> StorageResult<RecordRef> {
        let bytes = bincode::serialize(value).map_err(|e| error::serialization(kind.what(), &e))?;
        let record = self.records.write(kind, &bytes)?;
        // The file and its directory.
        self.stats.syncs += 2;
        if kind == Kind::Snapshot {
            self.stats.snapshots_written += 1;
            self.stats.snapshot_bytes_written += record.len;
        }
        Ok(record)
    }

    /// Fails if an earlier write failed half-way.
    fn check_usable(&self, operation: &str) -> StorageResult<()> {
        match &self.poisoned {
            None => Ok(()),
            Some(cause) => Err(error::poisoned(operation, &self.root, cause)),
        }
    }

    /// Appends serialised entries after the commitlog's last offset, in
    /// chunks that fit one `append` call, noting when the commitlog starts a
    /// new segment (whose predecessor is synced then, a rare cost). With
    /// `sync` the segment is synced at the end too (and the directory, if it
    /// gained files); without it, the next checkpoint does that.
    fn append_physical<B: AsRef<[u8]>>(&mut self, entries: &[B], sync: bool) -> StorageResult<()> {
        let limit = self.layout.chunk_max_bytes();
        let max_messages = self.layout.chunk_max_messages();
        let mut new_files = false;
        let mut rest = entries;
        while !rest.is_empty() {
            let mut buf = MessageBuf::default();
            let mut bytes = 0;
            let mut taken = 0;
            for entry in rest {
                let entry = entry.as_ref();
                let size = HEADER_BYTES + entry.len() as u64;
                if size > limit {
                    return Err(entry_too_large(&self.layout, entry.len()));
                }
                if bytes + size > limit || taken == max_messages {
                    break;
                }
                buf.push(entry).map_err(|e| StorageError::Backend {
                    operation: "frame an entry for the commitlog".to_owned(),
                    detail: format!("{e:?}"),
                })?;
                bytes += size;
                taken += 1;
            }
            rest = &rest[taken..];
            self.stats.entries_appended += taken as u64;
            self.stats.entry_bytes_appended += bytes - taken as u64 * HEADER_BYTES;
            let first = self.log.next_offset();
            let before = self.active.segment_len(&self.layout)?;
            self.log
                .append(&mut buf)
                .map_err(|e| error::append(&self.layout.dir, e))?;
            if self.active.segment_len(&self.layout)? == before {
                // The chunk did not fit: commitlog closed the segment and
                // wrote the chunk to a new one starting at `first`. What the
                // closed one got earlier in this write must be synced too.
                self.active.sync(&self.layout)?;
                self.stats.syncs += 2;
                self.active = Active::open(&self.layout, first)?;
                self.bases.push(first);
                new_files = true;
            }
        }
        self.dir_dirty |= new_files;
        if sync {
            self.sync_commitlog()?;
        }
        Ok(())
    }

    /// Cuts the commitlog right after the entries the state holds before the
    /// redo's cut, appends the redo's entries, then commits the state
    /// without the redo and deletes its file.
    fn finish_redo(&mut self, entries: &[Vec<u8>]) -> StorageResult<()> {
        let result = (|| {
            let kept = self.state.held() - entries.len() as u64;
            self.reopen_log(kept)?;
            self.append_physical(entries, true)?;
            let mut state = self.state.clone();
            let redo = state.files.get(Kind::Redo);
            state.files.set(Kind::Redo, None);
            self.write_state(&state)?;
            self.state = state;
            if let Some(redo) = redo {
                self.remove_record(Kind::Redo, &redo);
            }
            Ok(())
        })();
        self.guard(result)
    }

    /// Makes the commitlog files hold exactly the first `held` entries of the
    /// log and reopens it: trimmed segments are deleted, and so is anything
    /// after the first `held` entries, which the committed redo replaces.
    fn reopen_log(&mut self, held: u64) -> StorageResult<()> {
        let prepared = segments::prepare(&self.layout, self.state.phys_base, held, Beyond::Remove)?;
        self.stats.files_removed += prepared.removed.len() as u64;
        self.log = CommitLog::new(self.layout.options.clone())
            .map_err(|e| error::io("open the commitlog", &self.layout.dir, &e))?;
        self.bases = if prepared.bases.is_empty() {
            vec![0]
        } else {
            prepared.bases
        };
        self.state.phys_base = prepared.first;
        self.active = Active::open(&self.layout, *self.bases.last().expect("not empty"))?;
        if self.log.next_offset() != self.state.phys_base + held {
            return Err(error::corrupt(
                &self.layout.dir,
                format!(
                    "the commitlog ends at offset {} after it was cut to {}",
                    self.log.next_offset(),
                    self.state.phys_base + held
                ),
            ));
        }
        Ok(())
    }

    /// The batch of `write_atomically`, or of `write_deferred` with
    /// `defer`, which leaves a common batch's record unsynced.
    fn write_ops(&mut self, ops: Vec<StorageOp<T>>, defer: bool) -> StorageResult<()> {
        self.check_usable("write")?;
        if ops.is_empty() {
            return Ok(());
        }
        let mut bounds = self.state.bounds();
        for op in &ops {
            bounds.check(op)?;
        }

        let mut state = self.state.clone();
        let mut changes = Changes {
            snapshot: None,
            stopsign: None,
            previous_end: None,
        };
        let mut plan = LogPlan {
            trimmed: state.trimmed_idx,
            kept_end: state.log_len,
            tail: Vec::new(),
        };
        let mut origins = OriginChanges::default();
        for op in ops {
            match op {
                StorageOp::AppendEntry(entry) => plan.tail.push(entry),
                StorageOp::AppendEntries(mut entries) => plan.tail.append(&mut entries),
                StorageOp::AppendOnPrefix(from, mut entries) => {
                    plan.truncate(from);
                    plan.tail.append(&mut entries);
                    origins.cut_at(from);
                }
                StorageOp::Trim(idx) => {
                    plan.trim(idx);
                    origins.added.trim(idx);
                }
                StorageOp::SetPromise(ballot) => state.promise = Some(ballot),
                StorageOp::SetDecidedIndex(idx) => state.decided_idx = idx,
                StorageOp::SetAcceptedRound(ballot) => state.accepted_round = Some(ballot),
                StorageOp::SetCompactedIdx(idx) => state.compacted_idx = idx,
                StorageOp::SetStopsign(stopsign) => changes.stopsign = Some(stopsign),
                StorageOp::SetSnapshot(s) => changes.snapshot = Some(s),
                StorageOp::SetPreviousConfigurationEnd(end) => changes.previous_end = Some(end),
                StorageOp::SetOrigins(from, ids) => origins.set(from, &ids),
                StorageOp::SetOriginTable(table) => origins.table = Some(table),
                StorageOp::SetIncarnation(n) => state.incarnation = n,
            }
        }
        origins.settle(&self.origins);
        debug_assert_eq!(plan.log_len(), bounds.log_len, "plan and bounds disagree");
        let kept = plan.kept_end - plan.trimmed;
        // Replacing held entries would cut committed data before the commit
        // point; such a batch goes through a redo record instead.
        let rewrites = kept > 0 && plan.kept_end < self.state.log_len;
        state.phys_base = if kept == 0 {
            // Nothing old is kept: the log restarts at the commitlog's end.
            self.log.next_offset()
        } else {
            self.state.phys(plan.trimmed)
        };
        state.trimmed_idx = plan.trimmed;
        state.log_len = plan.log_len();
        let changes_files = changes.snapshot.is_some()
            || changes
                .stopsign
                .as_ref()
                .is_some_and(|c| *c != self.stopsign)
            || changes
                .previous_end
                .as_ref()
                .is_some_and(|c| *c != self.previous_end);
        if rewrites || changes_files {
            self.write_with_checkpoint(state, changes, plan, rewrites, bounds, origins)?;
        } else {
            debug_assert_eq!(
                state.bounds(),
                bounds,
                "the log moved differently than checked"
            );
            self.write_logged(state, &plan.tail, plan.kept_end, &origins, defer)?;
        }
        self.stats.commits += 1;
        Ok(())
    }

    /// The common path: one write-ahead log record holding the batch's
    /// entries and the new state, appended and synced (the commit point),
    /// then the entries appended to the commitlog without a sync.
    fn write_logged(
        &mut self,
        state: State,
        tail: &[T],
        first_idx: u64,
        origins: &OriginChanges,
        defer: bool,
    ) -> StorageResult<()> {
        let seq = self.last_seq + 1;
        let mut record = mem::take(&mut self.record);
        Wal::begin(&mut record, seq);
        let first_offset = self.log.next_offset();
        let encoded = encode_batch(
            &mut record,
            &mut self.entry_ranges,
            &state,
            first_offset,
            tail,
            first_idx,
            origins,
            &self.layout,
        );
        if let Err(e) = encoded {
            // Nothing is written yet: the storage stays usable.
            self.record = record;
            return Err(e);
        }
        let appended = self.wal.append(&mut record, !defer);
        let bytes = self.guard(appended)?;
        self.last_seq = seq;
        self.stats.wal_records += 1;
        self.stats.wal_bytes_written += bytes;
        // A synced record commits every deferred one before it too.
        self.wal_unsynced = defer;
        if !defer {
            self.stats.syncs += 1;
        }
        #[cfg(test)]
        self.crash_if(CrashPoint::AfterWalWrite)?;
        let entries: Vec<&[u8]> = self
            .entry_ranges
            .iter()
            .map(|r| &record[r.clone()])
            .collect();
        let written = self.append_physical(&entries, false);
        drop(entries);
        // Reuse the buffer, but do not keep what one huge batch grew it to.
        record.shrink_to(RECORD_KEEP_BYTES);
        self.record = record;
        self.guard(written)?;
        debug_assert_eq!(
            state.phys_base + state.held(),
            self.log.next_offset(),
            "the state maps the log past the commitlog's end"
        );
        if self.touches_origins(origins, &state) {
            let applied =
                origins.apply(&mut self.origins, &mut self.origin_table, state.trimmed_idx);
            debug_assert!(applied, "a checked batch's ids follow the cut ones");
            self.origins_dirty = true;
        }
        self.state = state;
        // A checkpoint empties the log and is what lets trimmed segments
        // go, since the checkpoint before it may still need them.
        if self.wal.len() >= self.wal_checkpoint_bytes || self.droppable_segments() > 0 {
            let done = self.checkpoint();
            self.guard(done)?;
        }
        Ok(())
    }

    /// The rare path, for a batch that writes a record file (snapshot,
    /// stop-sign, previous configuration's end) or replaces entries: first
    /// a checkpoint empties the write-ahead log, then the batch commits by a
    /// flush of the state record, as format version 2 did for every batch.
    fn write_with_checkpoint(
        &mut self,
        mut state: State,
        changes: Changes<T::Snapshot>,
        plan: LogPlan<T>,
        rewrites: bool,
        bounds: Bounds,
        origins: OriginChanges,
    ) -> StorageResult<()> {
        if self.wal.len() > 0 || self.last_seq > self.state.wal_seq || self.origins_dirty {
            let done = self.checkpoint();
            self.guard(done)?;
            // `state` was worked out before the checkpoint, which may have
            // named a new origins file (and deleted the one `state` names).
            state
                .files
                .set(Kind::Origins, self.state.files.get(Kind::Origins));
        }
        state.wal_seq = self.last_seq;
        let tail = plan
            .tail
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                bincode::serialize(entry).map_err(|e| {
                    error::serialization(format!("entry {}", plan.kept_end + i as u64), &e)
                })
            })
            .collect::<StorageResult<Vec<_>>>()?;

        // A changed value goes to a new record file before the commit point
        // that names it; a batch that leaves a value alone writes nothing
        // of it.
        if let Some(change) = &changes.snapshot {
            self.stage(&mut state, Kind::Snapshot, change.as_ref())?;
        }
        if let Some(change) = changes.stopsign.as_ref().filter(|c| **c != self.stopsign) {
            self.stage(&mut state, Kind::StopSign, change.as_ref())?;
        }
        if let Some(change) = changes
            .previous_end
            .as_ref()
            .filter(|c| **c != self.previous_end)
        {
            self.stage(&mut state, Kind::PreviousEnd, change.as_ref())?;
        }
        // The ids and table after the batch, in a new file the commit names.
        // A copy of the log's ids: this path is taken once per compaction or
        // rewrite, not per append.
        let new_origins = if self.touches_origins(&origins, &state) {
            let mut ids = self.origins.clone();
            let mut table = self.origin_table.clone();
            let applied = origins.apply(&mut ids, &mut table, state.trimmed_idx);
            debug_assert!(applied, "a checked batch's ids follow the cut ones");
            let written = self.write_origins(&ids, &table);
            state.files.set(Kind::Origins, self.guard(written)?);
            Some((ids, table))
        } else {
            None
        };
        debug_assert_eq!(
            state.bounds(),
            bounds,
            "applied ops moved the log differently than checked"
        );
        let replaced: Vec<(Kind, RecordRef)> = self
            .state
            .files
            .all()
            .into_iter()
            .filter(|(kind, old)| state.files.get(*kind) != Some(*old))
            .collect();

        if rewrites {
            let redo = Redo {
                cut: state.phys(plan.kept_end),
                entries: tail,
            };
            self.stage(&mut state, Kind::Redo, Some(&redo))?;
            let committed = self.write_state(&state);
            self.guard(committed)?;
            self.state = state;
            self.adopt(changes, new_origins);
            #[cfg(test)]
            self.crash_if(CrashPoint::AfterRedoCommit)?;
            self.finish_redo(&redo.entries)?;
        } else {
            if !tail.is_empty() {
                let appended = self.append_physical(&tail, true);
                self.guard(appended)?;
            }
            let committed = self.write_state(&state);
            self.guard(committed)?;
            self.state = state;
            self.adopt(changes, new_origins);
        }
        // Only now, with the new state record flushed, are the files it no
        // longer names garbage.
        #[cfg(test)]
        self.crash_if(CrashPoint::BeforeOldSnapshotRemoval)?;
        for (kind, old) in replaced {
            self.remove_record(kind, &old);
        }
        let dropped = self.drop_trimmed_segments();
        self.guard(dropped)
    }

    /// Reads the entries `from..to` of the log, which the caller clamped to
    /// the held range.
    fn read_entries(&self, from: u64, to: u64) -> StorageResult<Vec<T>> {
        let (start, end) = (self.state.phys(from), self.state.phys(to));
        let mut out = Vec::with_capacity((end - start) as usize);
        let mut next = start;
        let mut limit = READ_CHUNK_BYTES;
        let max_limit = (self.layout.chunk_max_bytes() + HEADER_BYTES)
            .max(READ_CHUNK_BYTES)
            .min(u64::from(u32::MAX));
        while next < end {
            let read = self.log.read(next, ReadLimit::max_bytes(limit as usize));
            let buf = match read {
                Ok(buf) => buf,
                Err(ReadError::Io(e))
                    if e.kind() == ErrorKind::InvalidInput && limit < max_limit =>
                {
                    // One entry is larger than the read window.
                    limit = (limit * 2).min(max_limit);
                    continue;
                }
                Err(e) => return Err(error::read(&self.layout.dir, next, e)),
            };
            if buf.is_empty() {
                return Err(error::corrupt(
                    &self.layout.dir,
                    format!("the commitlog has no entry at offset {next}, which the log needs"),
                ));
            }
            for message in buf.iter() {
                if next == end {
                    break;
                }
                if message.offset() != next {
                    return Err(error::corrupt(
                        &self.layout.dir,
                        format!(
                            "the commitlog holds offset {} where {next} belongs",
                            message.offset()
                        ),
                    ));
                }
                // `payload()` slices past the metadata, whose size is the
                // header's word: a damaged one would make it panic.
                if u32::from(message.metadata_size()) > message.size() {
                    return Err(error::corrupt(
                        &self.layout.dir,
                        format!(
                            "the entry at offset {next} claims {} bytes of metadata in a body of {}",
                            message.metadata_size(),
                            message.size()
                        ),
                    ));
                }
                let idx = from + (next - start);
                out.push(decode_entry(message.payload(), idx, &self.layout.dir)?);
                next += 1;
            }
        }
        Ok(out)
    }
}

/// The parts of writing that do not touch entries: syncing, checkpoints,
/// dropping trimmed segments. They need no serde bounds, so that `Drop` can
/// checkpoint.
impl<T: Entry> PersistentStorage<T> {
    /// Stops the write at `point` if a test asked for it: the storage is
    /// poisoned, as a crash leaves the files, and must be reopened.
    #[cfg(test)]
    fn crash_if(&mut self, point: CrashPoint) -> StorageResult<()> {
        if self.crash_at == Some(point) {
            let crashed = Err(StorageError::Backend {
                operation: "write".to_owned(),
                detail: format!("simulated crash at {point:?}"),
            });
            return self.guard(crashed);
        }
        Ok(())
    }

    /// Runs a write step; if it fails, marks the storage unusable.
    fn guard<R>(&mut self, result: StorageResult<R>) -> StorageResult<R> {
        if let Err(e) = &result {
            self.poisoned.get_or_insert_with(|| e.to_string());
        }
        result
    }

    /// Syncs the active segment and its index, and the commitlog's
    /// directory if it gained files since it was last synced.
    fn sync_commitlog(&mut self) -> StorageResult<()> {
        self.active.sync(&self.layout)?;
        self.stats.syncs += 2;
        if self.dir_dirty {
            segments::sync_dir(&self.layout.dir)?;
            self.stats.syncs += 1;
            self.dir_dirty = false;
        }
        Ok(())
    }

    /// Writes the state record and flushes the state database: the commit
    /// point of a batch on the rare path, and of a checkpoint. The
    /// commitlog must be synced up to the end `state` maps.
    ///
    /// During an upgrade from format version 3 the record goes in one sled
    /// batch with the meta record of the current version: from that flush
    /// on, the database is of the current version.
    fn write_state(&mut self, state: &State) -> StorageResult<()> {
        if self.upgrade_pending {
            self.stats.state_bytes_written += encode(state, "the state record")?.len() as u64;
            let batch = versioned_state_batch(state)?;
            self.db
                .apply_batch(batch)
                .map_err(|e| error::sled("upgrade", &self.db_path, e))?;
        } else {
            let record = encode(state, "the state record")?;
            self.stats.state_bytes_written += record.len() as u64;
            self.db
                .insert(KEY_STATE, record)
                .map_err(|e| error::sled("write", &self.db_path, e))?;
        }
        self.db
            .flush()
            .map_err(|e| error::sled("flush", &self.db_path, e))?;
        self.stats.syncs += 1;
        self.upgrade_pending = false;
        Ok(())
    }

    /// Writes the origin ids and table to a new record file, synced, for a
    /// commit point to name; `None` (no file) if both are empty.
    fn write_origins(
        &mut self,
        ids: &OriginIds,
        table: &OriginTable,
    ) -> StorageResult<Option<RecordRef>> {
        if ids.is_empty() && table.is_empty() {
            return Ok(None);
        }
        let bytes = bincode::serialize(&(ids.runs(), table))
            .map_err(|e| error::serialization(Kind::Origins.what(), &e))?;
        let record = self.records.write(Kind::Origins, &bytes)?;
        // The file and its directory.
        self.stats.syncs += 2;
        Ok(Some(record))
    }

    /// Deletes a record file that the committed state no longer names. A
    /// failure is counted, not returned: the file is garbage either way, and
    /// the next open deletes it.
    fn remove_record(&mut self, kind: Kind, record: &RecordRef) {
        match self.records.remove(kind, record) {
            Ok(()) => self.stats.files_removed += 1,
            Err(_) => self.stats.files_not_removed += 1,
        }
    }

    /// Makes the checkpoint hold everything the write-ahead log holds: the
    /// commitlog is synced, the origin ids and table are written to a new
    /// file if the log changed them, the state record naming that file and
    /// the last log record is flushed, and then the log is emptied. A crash
    /// before the flush leaves the old checkpoint and the whole log (and an
    /// origins file nothing names, which open deletes), one after it leaves
    /// records that open skips. The replaced origins file, and segments
    /// wholly below the log's start, are deleted afterwards, now that no
    /// checkpoint needs them.
    fn checkpoint(&mut self) -> StorageResult<()> {
        self.sync_commitlog()?;
        let mut state = self.state.clone();
        state.wal_seq = self.last_seq;
        if self.origins_dirty {
            let ids = mem::take(&mut self.origins);
            let table = mem::take(&mut self.origin_table);
            let written = self.write_origins(&ids, &table);
            self.origins = ids;
            self.origin_table = table;
            state.files.set(Kind::Origins, written?);
        }
        #[cfg(test)]
        self.crash_if(CrashPoint::CheckpointBeforeStateFlush)?;
        self.write_state(&state)?;
        let replaced = self
            .state
            .files
            .get(Kind::Origins)
            .filter(|old| state.files.get(Kind::Origins) != Some(*old));
        self.state = state;
        self.origins_dirty = false;
        if let Some(old) = replaced {
            self.remove_record(Kind::Origins, &old);
        }
        #[cfg(test)]
        self.crash_if(CrashPoint::CheckpointBeforeWalReset)?;
        self.wal.reset()?;
        // The checkpoint holds what a deferred record held.
        self.wal_unsynced = false;
        self.stats.syncs += 1;
        self.stats.checkpoints += 1;
        self.drop_trimmed_segments()
    }

    /// How many segments, from the first, hold only offsets below the
    /// log's start.
    fn droppable_segments(&self) -> usize {
        let start = self.state.phys_base;
        self.bases
            .windows(2)
            .take_while(|pair| pair[1] <= start)
            .count()
    }

    /// Deletes the segments that hold only offsets below the log's start.
    /// Called after a trim committed; the cost is one file deletion per
    /// dropped segment plus reopening the (few) remaining ones.
    fn drop_trimmed_segments(&mut self) -> StorageResult<()> {
        let droppable = self.droppable_segments();
        if droppable == 0 {
            return Ok(());
        }
        for &base in &self.bases[..droppable] {
            segments::remove_segment(&self.layout, base)?;
            self.stats.files_removed += 2;
        }
        segments::sync_dir(&self.layout.dir)?;
        self.stats.syncs += 1;
        self.bases.drain(..droppable);
        segments::pad_active_index(&self.layout, self.active.base)?;
        self.log = CommitLog::new(self.layout.options.clone())
            .map_err(|e| error::io("reopen the commitlog", &self.layout.dir, &e))?;
        Ok(())
    }
}

/// A clean drop checkpoints, so that the next open has nothing to replay.
/// Errors are ignored: the write-ahead log still holds every write, and the
/// next open replays it. A storage that failed half-way is left as it is.
impl<T: Entry> Drop for PersistentStorage<T> {
    fn drop(&mut self) {
        if self.poisoned.is_none() && self.wal.len() > 0 {
            let _ = self.checkpoint();
        }
    }
}

impl<T> Storage<T> for PersistentStorage<T>
where
    T: Entry + Serialize + DeserializeOwned,
    T::Snapshot: Serialize + DeserializeOwned,
{
    /// Checks the batch and works out the state after it. A common batch is
    /// then one write-ahead log record, synced (the commit point), and its
    /// entries go to the commitlog unsynced. A batch that writes a record
    /// file or replaces entries checkpoints first and commits by flushing
    /// the state record; one that replaces entries commits them in a redo
    /// record first and rewrites the commitlog's tail afterwards.
    fn write_atomically(&mut self, ops: Vec<StorageOp<T>>) -> StorageResult<()> {
        self.write_ops(ops, false)
    }

    /// A common batch's write-ahead log record goes unsynced and commits at
    /// the next [`sync`](Storage::sync) or synced record; any other batch
    /// is written as by `write_atomically`, durable at once.
    fn write_deferred(&mut self, ops: Vec<StorageOp<T>>) -> StorageResult<bool> {
        self.write_ops(ops, true)?;
        Ok(self.wal_unsynced)
    }

    fn sync(&mut self) -> StorageResult<()> {
        self.check_usable("sync")?;
        if self.wal_unsynced {
            let synced = self.wal.sync();
            self.guard(synced)?;
            self.stats.syncs += 1;
            self.wal_unsynced = false;
        }
        Ok(())
    }

    fn append_entry(&mut self, entry: T) -> StorageResult<()> {
        self.write_atomically(vec![StorageOp::AppendEntry(entry)])
    }

    fn append_entries(&mut self, entries: Vec<T>) -> StorageResult<()> {
        self.write_atomically(vec![StorageOp::AppendEntries(entries)])
    }

    fn append_on_prefix(&mut self, from_idx: u64, entries: Vec<T>) -> StorageResult<()> {
        self.write_atomically(vec![StorageOp::AppendOnPrefix(from_idx, entries)])
    }

    fn set_promise(&mut self, n_prom: Ballot) -> StorageResult<()> {
        self.write_atomically(vec![StorageOp::SetPromise(n_prom)])
    }

    fn set_decided_idx(&mut self, ld: u64) -> StorageResult<()> {
        self.write_atomically(vec![StorageOp::SetDecidedIndex(ld)])
    }

    fn get_decided_idx(&self) -> StorageResult<u64> {
        Ok(self.state.decided_idx)
    }

    fn set_accepted_round(&mut self, na: Ballot) -> StorageResult<()> {
        self.write_atomically(vec![StorageOp::SetAcceptedRound(na)])
    }

    fn get_accepted_round(&self) -> StorageResult<Option<Ballot>> {
        Ok(self.state.accepted_round)
    }

    fn get_entries(&self, from: u64, to: u64) -> StorageResult<Vec<T>> {
        self.check_usable("read entries")?;
        let bounds = self.state.bounds();
        let from = from.max(bounds.first_idx());
        let to = to.min(bounds.log_len);
        if from >= to {
            return Ok(Vec::new());
        }
        self.read_entries(from, to)
    }

    fn get_log_len(&self) -> StorageResult<u64> {
        Ok(self.state.log_len)
    }

    fn get_suffix(&self, from: u64) -> StorageResult<Vec<T>> {
        self.get_entries(from, u64::MAX)
    }

    fn get_promise(&self) -> StorageResult<Option<Ballot>> {
        Ok(self.state.promise)
    }

    fn set_stopsign(&mut self, s: Option<StopSign>) -> StorageResult<()> {
        self.write_atomically(vec![StorageOp::SetStopsign(s)])
    }

    fn get_stopsign(&self) -> StorageResult<Option<StopSign>> {
        Ok(self.stopsign.clone())
    }

    fn trim(&mut self, idx: u64) -> StorageResult<()> {
        self.write_atomically(vec![StorageOp::Trim(idx)])
    }

    fn set_compacted_idx(&mut self, idx: u64) -> StorageResult<()> {
        self.write_atomically(vec![StorageOp::SetCompactedIdx(idx)])
    }

    fn get_compacted_idx(&self) -> StorageResult<u64> {
        Ok(self.state.compacted_idx)
    }

    fn set_snapshot(&mut self, snapshot: Option<T::Snapshot>) -> StorageResult<()> {
        self.write_atomically(vec![StorageOp::SetSnapshot(snapshot)])
    }

    fn get_snapshot(&self) -> StorageResult<Option<T::Snapshot>> {
        Ok(self.snapshot.clone())
    }

    fn set_previous_configuration_end(
        &mut self,
        end: Option<ConfigurationEnd>,
    ) -> StorageResult<()> {
        self.write_atomically(vec![StorageOp::SetPreviousConfigurationEnd(end)])
    }

    fn get_previous_configuration_end(&self) -> StorageResult<Option<ConfigurationEnd>> {
        Ok(self.previous_end.clone())
    }

    fn keeps_origins(&self) -> bool {
        true
    }

    fn get_origins(&self, from: u64, to: u64) -> StorageResult<OriginIds> {
        let bounds = self.state.bounds();
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
        Ok(self.state.incarnation)
    }
}

/// What [`claim_directory`] found.
struct Claim {
    /// The directory was new (or empty) and is now marked as ours.
    fresh: bool,
    /// The format version the marker names.
    marker_version: u32,
}

/// Makes sure `root` is a directory this storage may use, creating it and
/// its marker if needed.
fn claim_directory(root: &Path, layout: &Layout) -> StorageResult<Claim> {
    match fs::metadata(root) {
        Ok(meta) if !meta.is_dir() => {
            return Err(error::corrupt(
                root,
                "the storage path is a file, not a directory",
            ));
        }
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {
            fs::create_dir_all(root)
                .map_err(|e| error::io("create the storage directory", root, &e))?;
            if let Some(parent) = root.parent() {
                segments::sync_dir(parent)?;
            }
        }
        Err(e) => return Err(error::io("inspect the storage directory", root, &e)),
    }
    let marker = root.join(MARKER);
    match fs::read_to_string(&marker) {
        Ok(text) => {
            return Ok(Claim {
                fresh: false,
                marker_version: check_marker(&marker, &text)?,
            });
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(error::io("read the storage marker", &marker, &e)),
    }
    // No marker: only an empty directory (or one holding just a marker that
    // a crash left half-written) may become a storage.
    let temp = marker_temp(root);
    let foreign = fs::read_dir(root)
        .map_err(|e| error::io("list the storage directory", root, &e))?
        .filter_map(Result::ok)
        .find(|entry| entry.path() != temp);
    if let Some(entry) = foreign {
        return Err(error::corrupt(
            root,
            format!(
                "not a PersistentStorage directory: it holds {:?} but no {MARKER} marker; \
                 refusing to touch it",
                entry.file_name()
            ),
        ));
    }
    if layout.dir != root && segments::has_segments(layout)? {
        return Err(error::corrupt(
            &layout.dir,
            "the commitlog directory holds segments of another storage",
        ));
    }
    write_marker(root)?;
    Ok(Claim {
        fresh: true,
        marker_version: FORMAT_VERSION,
    })
}

fn marker_temp(root: &Path) -> PathBuf {
    root.join(format!("{MARKER}.tmp"))
}

/// Writes the marker naming the current format version, atomically (a
/// temporary file renamed over it) and durably.
fn write_marker(root: &Path) -> StorageResult<()> {
    let (temp, marker) = (marker_temp(root), root.join(MARKER));
    let write = || -> std::io::Result<()> {
        let mut file = File::create(&temp)?;
        write!(file, "{MARKER_HEADER}\nformat {FORMAT_VERSION}\n")?;
        file.sync_all()?;
        fs::rename(&temp, &marker)
    };
    write().map_err(|e| error::io("write the storage marker", &marker, &e))?;
    segments::sync_dir(root)
}

/// Upgrades a database of format version 1, which kept the snapshot, the
/// previous configuration's end and the redo record under sled keys of their
/// own and the stop-sign in the state record: all move to record files, and
/// one sled batch commits the new state record naming them, the new version,
/// and the removal of the old keys. A crash before that flush leaves the
/// version 1 database as it was (and record files that the next open sweeps).
fn upgrade_v1(db: &sled::Db, db_path: &Path, records: &mut RecordFiles) -> StorageResult<State> {
    let get = |key: &[u8]| read_key(db, db_path, key);
    let bytes = get(KEY_STATE)?
        .ok_or_else(|| error::corrupt(db_path, "the state database has no state record"))?;
    let old: StateV1 = decode(&bytes, "the state record", db_path)?;
    // The version 1 values are bincode behind a checksum, which is what a
    // record file holds behind its header: the payload moves as it is.
    let mut move_value = |key: &[u8], kind: Kind| -> StorageResult<Option<RecordRef>> {
        match get(key)? {
            Some(bytes) => {
                let payload = checked_payload(&bytes, kind.what(), db_path)?;
                records.write(kind, payload).map(Some)
            }
            None => Ok(None),
        }
    };
    let mut files = Named::default();
    files.set(Kind::Snapshot, move_value(V1_KEY_SNAPSHOT, Kind::Snapshot)?);
    files.set(
        Kind::PreviousEnd,
        move_value(V1_KEY_PREVIOUS_END, Kind::PreviousEnd)?,
    );
    files.set(Kind::Redo, move_value(V1_KEY_REDO, Kind::Redo)?);
    if let Some(stopsign) = &old.stopsign {
        let payload = bincode::serialize(stopsign)
            .map_err(|e| error::serialization(Kind::StopSign.what(), &e))?;
        files.set(
            Kind::StopSign,
            Some(records.write(Kind::StopSign, &payload)?),
        );
    }
    let state = State {
        promise: old.promise,
        accepted_round: old.accepted_round,
        decided_idx: old.decided_idx,
        compacted_idx: old.compacted_idx,
        trimmed_idx: old.trimmed_idx,
        log_len: old.log_len,
        phys_base: old.phys_base,
        files,
        wal_seq: 0,
        incarnation: 0,
    };
    let mut batch = versioned_state_batch(&state)?;
    batch.remove(V1_KEY_SNAPSHOT);
    batch.remove(V1_KEY_PREVIOUS_END);
    batch.remove(V1_KEY_REDO);
    db.apply_batch(batch)
        .map_err(|e| error::sled("upgrade", db_path, e))?;
    db.flush().map_err(|e| error::sled("flush", db_path, e))?;
    Ok(state)
}

/// Upgrades a database of format version 2, whose state record had no
/// write-ahead log position: the same record with position 0 (the log was
/// created empty before this) and the new version are committed in one
/// flushed batch.
fn upgrade_v2(db: &sled::Db, db_path: &Path) -> StorageResult<State> {
    let bytes = read_key(db, db_path, KEY_STATE)?
        .ok_or_else(|| error::corrupt(db_path, "the state database has no state record"))?;
    let old: StateV2 = decode(&bytes, "the state record", db_path)?;
    let state = State {
        promise: old.promise,
        accepted_round: old.accepted_round,
        decided_idx: old.decided_idx,
        compacted_idx: old.compacted_idx,
        trimmed_idx: old.trimmed_idx,
        log_len: old.log_len,
        phys_base: old.phys_base,
        files: old.files.into(),
        wal_seq: 0,
        incarnation: 0,
    };
    db.apply_batch(versioned_state_batch(&state)?)
        .map_err(|e| error::sled("upgrade", db_path, e))?;
    db.flush().map_err(|e| error::sled("flush", db_path, e))?;
    Ok(state)
}

/// A batch read back from a write-ahead log record.
struct LoggedBatch {
    /// The record's sequence number, for error messages.
    seq: u64,
    /// The state after the batch (its `wal_seq` is meaningless).
    state: State,
    /// The commitlog offset the batch's first entry went to.
    first_offset: u64,
    /// Where the batch's serialised entries are in the log's data.
    entries: Vec<Range<usize>>,
    /// How the batch changed the origin ids and table.
    origins: OriginChanges,
}

/// The flag of a record's origin section saying a cut and runs follow.
const ORIGINS_CUT: u8 = 1;
/// The flag of a record's origin section saying a table follows.
const ORIGINS_TABLE: u8 = 2;

/// Writes the payload of a batch's write-ahead log record after the header
/// in `buf`: the state record, the commitlog offset of the first entry, the
/// number of entries, each entry as a `u32` length and its bincode bytes,
/// and the origin section: a flags byte, then, with [`ORIGINS_CUT`], the
/// cut index as a `u64` and the added runs in bincode (a `u64` count and 40
/// bytes a run), and, with [`ORIGINS_TABLE`], the table in bincode. Notes
/// where each entry is in `ranges`, for the commitlog to take them from
/// there. Fails before anything is written if an entry does not serialise
/// or is larger than the commitlog takes.
#[allow(clippy::too_many_arguments)]
fn encode_batch<T: Serialize>(
    buf: &mut Vec<u8>,
    ranges: &mut Vec<Range<usize>>,
    state: &State,
    first_offset: u64,
    tail: &[T],
    first_idx: u64,
    origins: &OriginChanges,
    layout: &Layout,
) -> StorageResult<()> {
    ranges.clear();
    bincode::serialize_into(&mut *buf, state)
        .map_err(|e| error::serialization("the state record", &e))?;
    buf.extend_from_slice(&first_offset.to_le_bytes());
    buf.extend_from_slice(&(tail.len() as u64).to_le_bytes());
    let limit = layout.chunk_max_bytes();
    for (i, entry) in tail.iter().enumerate() {
        let at = buf.len();
        buf.extend_from_slice(&[0; 4]);
        bincode::serialize_into(&mut *buf, entry)
            .map_err(|e| error::serialization(format!("entry {}", first_idx + i as u64), &e))?;
        let len = buf.len() - at - 4;
        let len32 = u32::try_from(len)
            .ok()
            .filter(|_| HEADER_BYTES + len as u64 <= limit)
            .ok_or_else(|| entry_too_large(layout, len))?;
        buf[at..at + 4].copy_from_slice(&len32.to_le_bytes());
        ranges.push(at + 4..buf.len());
    }
    let mut flags = 0;
    if origins.cut.is_some() {
        flags |= ORIGINS_CUT;
    }
    if origins.table.is_some() {
        flags |= ORIGINS_TABLE;
    }
    buf.push(flags);
    if let Some(cut) = origins.cut {
        buf.extend_from_slice(&cut.to_le_bytes());
        // The runs as a slice: bincode writes them as the `Vec` that
        // `OriginIds` deserialises from, and nothing is copied.
        bincode::serialize_into(&mut *buf, origins.added.runs())
            .map_err(|e| error::serialization("the origin ids of a batch", &e))?;
    }
    if let Some(table) = &origins.table {
        bincode::serialize_into(&mut *buf, table)
            .map_err(|e| error::serialization("the origin table of a batch", &e))?;
    }
    Ok(())
}

/// Reads back what [`encode_batch`] wrote into record `found` of `data`,
/// or with `v3` what format version 3 wrote: a state record of that version
/// and no origin section. The record passed its checksum, so a payload that
/// does not parse is not a torn write but a bug or a forgery, and is
/// reported as corrupt.
fn decode_batch(data: &[u8], found: &Found, path: &Path, v3: bool) -> StorageResult<LoggedBatch> {
    let bad = |what: &str| {
        error::corrupt(
            path,
            format!("write-ahead log record {} is malformed: {what}", found.seq),
        )
    };
    let mut rest = &data[found.payload.clone()];
    let state: State = if v3 {
        bincode::deserialize_from::<_, StateV3>(&mut rest)
            .map_err(|_| bad("its state does not decode"))?
            .into()
    } else {
        bincode::deserialize_from(&mut rest).map_err(|_| bad("its state does not decode"))?
    };
    // Positions from here on are absolute in `data`.
    let mut pos = found.payload.end - rest.len();
    let mut take = |n: usize| -> StorageResult<Range<usize>> {
        let end = pos
            .checked_add(n)
            .filter(|&end| end <= found.payload.end)
            .ok_or_else(|| bad("it ends early"))?;
        let range = pos..end;
        pos = end;
        Ok(range)
    };
    let number = |r: Range<usize>| {
        let mut bytes = [0; 8];
        bytes[..r.len()].copy_from_slice(&data[r]);
        u64::from_le_bytes(bytes)
    };
    let first_offset = number(take(8)?);
    let count = number(take(8)?);
    let mut entries = Vec::new();
    for _ in 0..count {
        let len = number(take(4)?) as usize;
        entries.push(take(len)?);
    }
    let mut origins = OriginChanges::default();
    if !v3 {
        let flags = number(take(1)?) as u8;
        if flags & !(ORIGINS_CUT | ORIGINS_TABLE) != 0 {
            return Err(bad("its origin section has unknown flags"));
        }
        if flags & ORIGINS_CUT != 0 {
            origins.cut = Some(number(take(8)?));
        }
        let at = take(0)?.end;
        let mut section = &data[at..found.payload.end];
        if flags & ORIGINS_CUT != 0 {
            // Deserialising checks the runs: sorted, disjoint, not empty,
            // nothing overflowing.
            origins.added = bincode::deserialize_from(&mut section)
                .map_err(|_| bad("its origin ids do not decode"))?;
        }
        if flags & ORIGINS_TABLE != 0 {
            let table: OriginTable = bincode::deserialize_from(&mut section)
                .map_err(|_| bad("its origin table does not decode"))?;
            if !table.is_well_formed() {
                return Err(bad("its origin table is malformed"));
            }
            origins.table = Some(table);
        }
        take(found.payload.end - at - section.len())?;
    }
    if take(0)?.end != found.payload.end {
        return Err(bad("bytes follow its last entry"));
    }
    Ok(LoggedBatch {
        seq: found.seq,
        state,
        first_offset,
        entries,
        origins,
    })
}

/// The error for an entry of `len` serialised bytes that the commitlog does
/// not take in one message.
fn entry_too_large(layout: &Layout, len: usize) -> StorageError {
    StorageError::Backend {
        operation: format!(
            "append entries to the commitlog in {}",
            layout.dir.display()
        ),
        detail: format!(
            "an entry of {len} bytes exceeds the commitlog's limit of {} bytes per message \
             (message_max_bytes, segment_max_bytes)",
            layout.chunk_max_bytes()
        ),
    }
}

/// A sled batch writing the meta record of the current format version and
/// the state record `state`.
fn versioned_state_batch(state: &State) -> StorageResult<sled::Batch> {
    let meta = Meta {
        format_version: FORMAT_VERSION,
    };
    let mut batch = sled::Batch::default();
    batch.insert(KEY_META, encode(&meta, "the meta record")?);
    batch.insert(KEY_STATE, encode(state, "the state record")?);
    Ok(batch)
}

/// Reads a sled key.
fn read_key(db: &sled::Db, db_path: &Path, key: &[u8]) -> StorageResult<Option<Vec<u8>>> {
    db.get(key)
        .map_err(|e| error::sled("read", db_path, e))
        .map(|v| v.map(|bytes| bytes.to_vec()))
}

/// Reads and decodes the record file of `kind` that `state` names, if any.
fn read_named<V: DeserializeOwned>(
    records: &RecordFiles,
    state: &State,
    kind: Kind,
) -> StorageResult<Option<V>> {
    state
        .files
        .get(kind)
        .map(|r| read_record(records, kind, &r))
        .transpose()
}

/// Reads the origin ids and table the checkpoint `state` names (none for a
/// state that names no origins file). A file that passes its checksum but
/// does not decode, holds malformed runs or table, or ids outside the held
/// log, is forged or written by a bug: a corrupt error naming the file.
fn read_origins(records: &RecordFiles, state: &State) -> StorageResult<(OriginIds, OriginTable)> {
    use bincode::Options as _;
    let Some(r) = state.files.get(Kind::Origins) else {
        return Ok((OriginIds::new(), OriginTable::new()));
    };
    let bytes = records.read(Kind::Origins, &r)?;
    let path = records.path(Kind::Origins, r.generation);
    let bad = |what: String| error::corrupt(&path, format!("the origin ids file {what}"));
    let (read, table): (OriginIds, OriginTable) = bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .reject_trailing_bytes()
        .deserialize(&bytes)
        .map_err(|e| bad(format!("does not decode: {e}")))?;
    if !table.is_well_formed() {
        return Err(bad("holds a malformed origin table".to_owned()));
    }
    let below = read
        .runs()
        .first()
        .is_some_and(|r| r.idx < state.trimmed_idx);
    if below || read.end() > state.log_len {
        return Err(bad(format!(
            "holds ids outside the held log {}..{}",
            state.trimmed_idx, state.log_len
        )));
    }
    // Runs that continue one another are joined, as every write joins them,
    // so that equal ids compare equal.
    let mut ids = OriginIds::new();
    ids.append(&read);
    Ok((ids, table))
}

/// Reads and decodes the committed record file `r`.
fn read_record<V: DeserializeOwned>(
    records: &RecordFiles,
    kind: Kind,
    r: &RecordRef,
) -> StorageResult<V> {
    let bytes = records.read(kind, r)?;
    bincode::deserialize(&bytes).map_err(|e| {
        error::serialization(
            format!("{} (record file generation {})", kind.what(), r.generation),
            &e,
        )
    })
}

/// Opens the state database, waiting a bounded time for its file lock.
///
/// sled 0.34 releases the lock when the last handle on its file goes, and its
/// background I/O threads may still hold one for a moment after the storage
/// that owned the database was dropped. A process that restarts on the same
/// path would then fail spuriously, so a lock conflict is retried for up to a
/// few seconds (sled issues 1234 and 1289) before it is reported; a second
/// live storage on the same path still gets the error.
fn open_database(config: &sled::Config) -> sled::Result<sled::Db> {
    let mut attempts = 0;
    loop {
        match config.open() {
            // sled reports the conflict as an `Other` error that quotes the
            // `WouldBlock` it got from the lock call.
            Err(sled::Error::Io(e))
                if attempts < 200
                    && (e.kind() == ErrorKind::WouldBlock
                        || e.to_string().contains("could not acquire lock")) =>
            {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            result => return result,
        }
    }
}

/// Checks the marker and returns the format version it names.
fn check_marker(marker: &Path, text: &str) -> StorageResult<u32> {
    let mut lines = text.lines();
    if lines.next() != Some(MARKER_HEADER) {
        return Err(error::corrupt(
            marker,
            "the marker file is not this crate's",
        ));
    }
    match lines.next().and_then(|l| l.strip_prefix("format ")) {
        Some(v) => match v.parse::<u32>() {
            Ok(v) if (OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&v) => Ok(v),
            _ => Err(error::corrupt(
                marker,
                format!(
                    "the storage has format version {v}, this build reads \
                     {OLDEST_READABLE_VERSION} to {FORMAT_VERSION}"
                ),
            )),
        },
        None => Err(error::corrupt(
            marker,
            "the marker file names no format version",
        )),
    }
}

/// Encodes a sled value: a CRC32C of the payload, then the bincode payload.
/// sled checksums its own log, but not what a damaged page hands back.
fn encode<V: Serialize>(value: &V, what: &str) -> StorageResult<Vec<u8>> {
    let payload = bincode::serialize(value).map_err(|e| error::serialization(what, &e))?;
    let mut bytes = Vec::with_capacity(4 + payload.len());
    bytes.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
    Ok(bytes)
}

/// The payload of a value written by [`encode`], once its checksum is checked.
fn checked_payload<'a>(bytes: &'a [u8], what: &str, db_path: &Path) -> StorageResult<&'a [u8]> {
    match bytes.split_first_chunk::<4>() {
        Some((crc, payload)) if u32::from_le_bytes(*crc) == crc32c::crc32c(payload) => Ok(payload),
        _ => Err(error::corrupt(
            db_path,
            format!("{what} fails its checksum"),
        )),
    }
}

/// Decodes a value written by [`encode`], checking its checksum.
fn decode<V: DeserializeOwned>(bytes: &[u8], what: &str, db_path: &Path) -> StorageResult<V> {
    let payload = checked_payload(bytes, what, db_path)?;
    bincode::deserialize(payload)
        .map_err(|e| error::serialization(format!("{what} in {}", db_path.display()), &e))
}

/// Decodes the entry at log index `idx`.
fn decode_entry<T: DeserializeOwned>(payload: &[u8], idx: u64, dir: &Path) -> StorageResult<T> {
    bincode::deserialize(payload).map_err(|e| {
        error::serialization(
            format!("entry {idx} in the commitlog at {}", dir.display()),
            &e,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use omnipaxos::storage::{NoSnapshot, Snapshot};
    use pretty_assertions::assert_eq;

    #[derive(Clone, Debug, Serialize, Deserialize)]
    struct Value(u64);

    impl Entry for Value {
        type Snapshot = NoSnapshot;
    }

    /// An entry whose snapshot is as large as a test wants it.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    struct Put(u64);

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    struct Bulk(Vec<u8>);

    impl Entry for Put {
        type Snapshot = Bulk;
    }

    impl Snapshot<Put> for Bulk {
        fn create(entries: &[Put]) -> Self {
            Self(entries.iter().map(|p| p.0 as u8).collect())
        }

        fn merge(&mut self, delta: Self) {
            self.0.extend(delta.0);
        }

        fn use_snapshots() -> bool {
            true
        }
    }

    fn puts(range: Range<u64>) -> Vec<Put> {
        range.map(Put).collect()
    }

    /// The names of the files in the records directory, sorted.
    fn record_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir.join(crate::record_files::RECORDS_DIR))
            .map(|entries| {
                entries
                    .map(|e| e.unwrap().file_name().into_string().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    #[test]
    fn a_deferred_write_commits_at_its_sync_or_the_next_synced_write() {
        let dir = tempfile::tempdir().unwrap();
        let config = PersistentStorageConfig::with_path(dir.path());
        let mut storage = PersistentStorage::<Put>::open(config).unwrap();
        storage.append_entries(puts(0..10)).unwrap();
        let syncs = storage.stats().syncs;
        let waits = storage
            .write_deferred(vec![StorageOp::AppendEntries(puts(10..20))])
            .unwrap();
        assert!(waits, "a common batch waits for its sync");
        assert_eq!(storage.stats().syncs, syncs, "no sync yet");
        assert_eq!(storage.get_log_len().unwrap(), 20, "reads see it at once");
        storage.sync().unwrap();
        assert_eq!(storage.stats().syncs, syncs + 1, "one sync");
        storage.sync().unwrap();
        assert_eq!(storage.stats().syncs, syncs + 1, "nothing waited");
        assert!(
            storage
                .write_deferred(vec![StorageOp::AppendEntries(puts(20..30))])
                .unwrap()
        );
        storage.set_decided_idx(5).unwrap();
        assert!(
            !storage.wal_unsynced,
            "the synced record committed the deferred one"
        );
        storage.sync().unwrap();
        assert_eq!(
            storage.stats().syncs,
            syncs + 2,
            "the set_decided_idx's sync only"
        );
    }

    #[test]
    fn a_deferred_record_lost_in_a_power_cut_leaves_the_log_as_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let config = PersistentStorageConfig::with_path(dir.path());
        let mut storage = PersistentStorage::<Put>::open(config.clone()).unwrap();
        storage.append_entries(puts(0..10)).unwrap();
        storage.set_decided_idx(4).unwrap();
        let synced_len = storage.wal.len();
        assert!(
            storage
                .write_deferred(vec![StorageOp::AppendEntries(puts(10..20))])
                .unwrap()
        );
        // The power goes before the sync: the record never reached the
        // disk. (A crashed storage skips its checkpoint on drop.)
        crash(storage);
        fs::OpenOptions::new()
            .write(true)
            .open(wal_path(dir.path()))
            .unwrap()
            .set_len(synced_len)
            .unwrap();
        let storage = PersistentStorage::<Put>::open(config).unwrap();
        assert_eq!(storage.get_log_len().unwrap(), 10);
        assert_eq!(storage.get_decided_idx().unwrap(), 4);
        assert_eq!(storage.get_entries(0, 10).unwrap(), puts(0..10));
    }

    #[test]
    fn a_crash_after_a_rewrite_committed_is_finished_on_open_without_quarantining_the_old_tail() {
        let dir = tempfile::tempdir().unwrap();
        let config = PersistentStorageConfig::with_path(dir.path());
        let mut storage = PersistentStorage::<Put>::open(config.clone()).unwrap();
        storage.append_entries(puts(0..100)).unwrap();
        storage.crash_at = Some(CrashPoint::AfterRedoCommit);
        let crashed = storage.append_on_prefix(60, puts(1000..1030));
        assert!(crashed.is_err(), "the crash point was not reached");
        assert_eq!(record_files(dir.path()).len(), 1, "the redo file is there");
        drop(storage);

        let storage = PersistentStorage::<Put>::open(config).unwrap();
        let report = storage.open_report();
        assert!(report.finished_redo, "{report}");
        assert!(report.quarantined.is_empty(), "{report}");
        let mut expected = puts(0..60);
        expected.extend(puts(1000..1030));
        assert_eq!(storage.get_suffix(0).unwrap(), expected);
        assert_eq!(record_files(dir.path()), Vec::<String>::new());
        assert!(!dir.path().join("commitlog").join("quarantine").exists());
    }

    #[test]
    fn a_rewrite_deletes_the_replaced_entries_and_its_redo_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = PersistentStorageConfig::with_path(dir.path());
        let mut options = LogOptions::new(dir.path().join("commitlog"));
        options.segment_max_bytes(512).index_max_items(16);
        config.set_commitlog_options(options);
        let mut storage = PersistentStorage::<Put>::open(config.clone()).unwrap();
        storage.append_entries(puts(0..200)).unwrap();
        storage.append_on_prefix(20, puts(500..510)).unwrap();
        assert_eq!(record_files(dir.path()), Vec::<String>::new());
        assert!(storage.stats().files_removed > 0, "{:?}", storage.stats());
        drop(storage);
        let storage = PersistentStorage::<Put>::open(config).unwrap();
        assert!(
            storage.open_report().is_clean(),
            "{}",
            storage.open_report()
        );
        assert_eq!(storage.get_log_len().unwrap(), 30);
    }

    #[test]
    fn a_crash_before_the_replaced_snapshot_is_deleted_leaves_it_for_open_to_remove() {
        let dir = tempfile::tempdir().unwrap();
        let config = PersistentStorageConfig::with_path(dir.path());
        let mut storage = PersistentStorage::<Put>::open(config.clone()).unwrap();
        storage.append_entries(puts(0..10)).unwrap();
        storage.set_snapshot(Some(Bulk(vec![1; 1000]))).unwrap();
        storage.crash_at = Some(CrashPoint::BeforeOldSnapshotRemoval);
        let crashed = storage.set_snapshot(Some(Bulk(vec![2; 2000])));
        assert!(crashed.is_err(), "the crash point was not reached");
        assert_eq!(record_files(dir.path()).len(), 2);
        drop(storage);

        let storage = PersistentStorage::<Put>::open(config).unwrap();
        let report = storage.open_report();
        assert_eq!(report.removed.len(), 1, "{report}");
        assert_eq!(report.removed[0].kind, LeftoverKind::Snapshot);
        assert_eq!(storage.get_snapshot().unwrap(), Some(Bulk(vec![2; 2000])));
        assert_eq!(record_files(dir.path()).len(), 1);
    }

    #[test]
    fn a_snapshot_written_by_a_batch_that_never_committed_is_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let config = PersistentStorageConfig::with_path(dir.path());
        let mut storage = PersistentStorage::<Put>::open(config.clone()).unwrap();
        storage.set_snapshot(Some(Bulk(vec![1; 10]))).unwrap();
        // What a crash between writing a new snapshot and its commit leaves.
        let stray = storage
            .records
            .write(Kind::Snapshot, b"never named")
            .unwrap();
        drop(storage);

        let storage = PersistentStorage::<Put>::open(config).unwrap();
        let report = storage.open_report();
        assert_eq!(report.removed.len(), 1, "{report}");
        assert!(
            report.removed[0]
                .path
                .ends_with(format!("snapshot-{:020}", stray.generation)),
            "{report}"
        );
        assert_eq!(storage.get_snapshot().unwrap(), Some(Bulk(vec![1; 10])));
    }

    #[test]
    fn a_commit_that_leaves_the_snapshot_alone_writes_none_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut storage =
            PersistentStorage::<Put>::open(PersistentStorageConfig::with_path(dir.path())).unwrap();
        let snapshot = Bulk(vec![9; 1 << 20]);
        storage
            .write_atomically(vec![
                StorageOp::AppendEntries(puts(0..10)),
                StorageOp::SetDecidedIndex(10),
                StorageOp::Trim(10),
                StorageOp::SetCompactedIdx(10),
                StorageOp::SetSnapshot(Some(snapshot.clone())),
            ])
            .unwrap();
        let after_snapshot = storage.stats();
        for i in 0..100 {
            storage
                .write_atomically(vec![
                    StorageOp::AppendEntries(puts(10 + 64 * i..10 + 64 * (i + 1))),
                    StorageOp::SetDecidedIndex(10 + 64 * i),
                    StorageOp::SetPromise(Ballot::with(1, i as u32, 1)),
                ])
                .unwrap();
        }
        let stats = storage.stats();
        assert_eq!(stats.snapshots_written, 1);
        assert_eq!(
            stats.snapshot_bytes_written,
            bincode::serialized_size(&snapshot).unwrap()
        );
        let per_commit = (stats.state_bytes_written - after_snapshot.state_bytes_written)
            / (stats.commits - after_snapshot.commits);
        assert!(
            per_commit < 128,
            "a commit writes {per_commit} bytes to the state database beside a 1 MiB snapshot"
        );
    }

    /// Rewrites the directory of a closed storage into format version 1: the
    /// snapshot and redo record back under their sled keys, the state record
    /// in its old shape, the marker and meta record naming version 1.
    fn downgrade_to_v1(dir: &Path) {
        let db_path = dir.join("state");
        let db = open_database(&crate::config::database_config(
            &sled::Config::default(),
            &db_path,
        ))
        .unwrap();
        let state: State = decode(
            &db.get(KEY_STATE).unwrap().unwrap(),
            "the state record",
            &db_path,
        )
        .unwrap();
        let records = RecordFiles::open(dir).unwrap();
        let v1 = StateV1 {
            promise: state.promise,
            accepted_round: state.accepted_round,
            decided_idx: state.decided_idx,
            compacted_idx: state.compacted_idx,
            stopsign: read_named(&records, &state, Kind::StopSign).unwrap(),
            trimmed_idx: state.trimmed_idx,
            log_len: state.log_len,
            phys_base: state.phys_base,
        };
        let mut batch = sled::Batch::default();
        batch.insert(KEY_STATE, encode(&v1, "").unwrap());
        batch.insert(KEY_META, encode(&Meta { format_version: 1 }, "").unwrap());
        for (kind, key) in [
            (Kind::Snapshot, V1_KEY_SNAPSHOT),
            (Kind::PreviousEnd, V1_KEY_PREVIOUS_END),
        ] {
            if let Some(r) = state.files.get(kind) {
                let payload = records.read(kind, &r).unwrap();
                let mut value = crc32c::crc32c(&payload).to_le_bytes().to_vec();
                value.extend_from_slice(&payload);
                batch.insert(key, value);
            }
        }
        db.apply_batch(batch).unwrap();
        db.flush().unwrap();
        drop(db);
        let _ = fs::remove_dir_all(dir.join(crate::record_files::RECORDS_DIR));
        fs::write(dir.join(MARKER), format!("{MARKER_HEADER}\nformat 1\n")).unwrap();
    }

    #[test]
    fn a_format_1_directory_is_upgraded_on_open_and_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let config = PersistentStorageConfig::with_path(dir.path());
        let mut storage = PersistentStorage::<Put>::open(config.clone()).unwrap();
        storage.append_entries(puts(0..50)).unwrap();
        storage
            .write_atomically(vec![
                StorageOp::SetDecidedIndex(40),
                StorageOp::Trim(30),
                StorageOp::SetCompactedIdx(30),
                StorageOp::SetSnapshot(Some(Bulk(vec![3; 300]))),
                StorageOp::SetPromise(Ballot::with(1, 2, 3)),
                StorageOp::SetStopsign(Some(StopSign::with(2, vec![1, 2], Some(vec![7; 9])))),
                StorageOp::SetPreviousConfigurationEnd(Some(end())),
            ])
            .unwrap();
        drop(storage);
        downgrade_to_v1(dir.path());

        let storage = PersistentStorage::<Put>::open(config.clone()).unwrap();
        assert_eq!(storage.open_report().upgraded_from, Some(1));
        assert_eq!(storage.open_report().no_origin_ids_below, Some(50));
        assert_eq!(storage.get_origins(0, u64::MAX).unwrap(), OriginIds::new());
        assert_eq!(storage.get_snapshot().unwrap(), Some(Bulk(vec![3; 300])));
        assert_eq!(storage.get_suffix(30).unwrap(), puts(30..50));
        assert_eq!(storage.get_decided_idx().unwrap(), 40);
        assert_eq!(storage.get_promise().unwrap(), Some(Ballot::with(1, 2, 3)));
        assert_eq!(
            storage.get_stopsign().unwrap(),
            Some(StopSign::with(2, vec![1, 2], Some(vec![7; 9])))
        );
        assert_eq!(
            storage.get_previous_configuration_end().unwrap(),
            Some(end())
        );
        assert_eq!(
            record_files(dir.path()).len(),
            3,
            "snapshot, stop-sign, previous end"
        );
        let marker = fs::read_to_string(dir.path().join(MARKER)).unwrap();
        assert!(
            marker.ends_with(&format!("format {FORMAT_VERSION}\n")),
            "{marker}"
        );
        drop(storage);

        let storage = PersistentStorage::<Put>::open(config).unwrap();
        assert!(
            storage.open_report().is_clean(),
            "{}",
            storage.open_report()
        );
        assert_eq!(storage.get_snapshot().unwrap(), Some(Bulk(vec![3; 300])));
    }

    /// What a crash leaves: the storage stops without its clean-drop
    /// checkpoint, so the write-ahead log keeps what it holds.
    fn crash<E: Entry>(mut storage: PersistentStorage<E>) {
        storage.poisoned = Some("simulated crash".to_owned());
        drop(storage);
    }

    fn wal_path(dir: &Path) -> PathBuf {
        dir.join(crate::wal::WAL_FILE)
    }

    #[test]
    fn an_append_costs_one_sync_of_the_write_ahead_log_and_nothing_in_sled() {
        let dir = tempfile::tempdir().unwrap();
        let mut storage =
            PersistentStorage::<Put>::open(PersistentStorageConfig::with_path(dir.path())).unwrap();
        storage.append_entries(puts(0..10)).unwrap();
        let before = storage.stats();
        storage.append_entry(Put(10)).unwrap();
        storage
            .write_atomically(vec![
                StorageOp::AppendEntries(puts(11..1000)),
                StorageOp::SetDecidedIndex(5),
                StorageOp::SetPromise(Ballot::with(1, 2, 3)),
                StorageOp::SetAcceptedRound(Ballot::with(1, 2, 3)),
            ])
            .unwrap();
        let after = storage.stats();
        assert_eq!(after.syncs - before.syncs, 2, "{after:?}");
        assert_eq!(after.wal_records - before.wal_records, 2);
        assert_eq!(after.state_bytes_written, before.state_bytes_written);
        assert_eq!(after.checkpoints, before.checkpoints);
    }

    #[test]
    fn writes_after_the_last_checkpoint_are_replayed_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let config = PersistentStorageConfig::with_path(dir.path());
        let mut storage = PersistentStorage::<Put>::open(config.clone()).unwrap();
        storage.append_entries(puts(0..10)).unwrap();
        storage
            .write_atomically(vec![
                StorageOp::AppendOnPrefix(10, puts(10..20)),
                StorageOp::SetDecidedIndex(15),
                StorageOp::SetAcceptedRound(Ballot::with(1, 2, 3)),
            ])
            .unwrap();
        storage.trim(3).unwrap();
        crash(storage);

        let storage = PersistentStorage::<Put>::open(config.clone()).unwrap();
        let report = storage.open_report().clone();
        assert_eq!(report.replayed_records, 3, "{report}");
        assert_eq!(storage.get_suffix(0).unwrap(), puts(3..20));
        assert_eq!(storage.get_decided_idx().unwrap(), 15);
        assert_eq!(
            storage.get_accepted_round().unwrap(),
            Some(Ballot::with(1, 2, 3))
        );
        drop(storage);
        // Open checkpointed what it replayed.
        assert_eq!(fs::metadata(wal_path(dir.path())).unwrap().len(), 0);
        let storage = PersistentStorage::<Put>::open(config).unwrap();
        assert!(
            storage.open_report().is_clean(),
            "{}",
            storage.open_report()
        );
        assert_eq!(storage.get_suffix(0).unwrap(), puts(3..20));
    }

    #[test]
    fn a_crash_after_the_wal_write_before_the_commitlog_append_keeps_the_write() {
        let dir = tempfile::tempdir().unwrap();
        let config = PersistentStorageConfig::with_path(dir.path());
        let mut storage = PersistentStorage::<Put>::open(config.clone()).unwrap();
        storage.append_entries(puts(0..10)).unwrap();
        storage.crash_at = Some(CrashPoint::AfterWalWrite);
        // The record is synced, so the write is committed even though the
        // crash came before the call returned.
        assert!(storage.append_entries(puts(10..20)).is_err());
        drop(storage);

        let storage = PersistentStorage::<Put>::open(config).unwrap();
        assert_eq!(storage.open_report().replayed_records, 2);
        assert_eq!(storage.get_suffix(0).unwrap(), puts(0..20));
    }

    #[test]
    fn a_checkpoint_interrupted_at_either_step_loses_nothing() {
        for point in [
            CrashPoint::CheckpointBeforeStateFlush,
            CrashPoint::CheckpointBeforeWalReset,
        ] {
            let dir = tempfile::tempdir().unwrap();
            let mut config = PersistentStorageConfig::with_path(dir.path());
            // Every write passes the threshold, so every write checkpoints.
            config.set_wal_checkpoint_bytes(1);
            let mut storage = PersistentStorage::<Put>::open(config.clone()).unwrap();
            storage.append_entries(puts(0..10)).unwrap();
            assert_eq!(storage.stats().checkpoints, 1);
            storage.crash_at = Some(point);
            assert!(storage.append_entries(puts(10..20)).is_err());
            drop(storage);

            let storage = PersistentStorage::<Put>::open(config).unwrap();
            let report = storage.open_report();
            // Before the flush the record is replayed; after it, the
            // checkpoint holds it and the stale record is skipped.
            let replayed = u64::from(point == CrashPoint::CheckpointBeforeStateFlush);
            assert_eq!(report.replayed_records, replayed, "{point:?}: {report}");
            assert_eq!(storage.get_suffix(0).unwrap(), puts(0..20), "{point:?}");
            assert_eq!(fs::metadata(wal_path(dir.path())).unwrap().len(), 0);
        }
    }

    #[test]
    fn a_torn_last_wal_record_is_cut_and_the_writes_before_it_kept() {
        let dir = tempfile::tempdir().unwrap();
        let config = PersistentStorageConfig::with_path(dir.path());
        let mut storage = PersistentStorage::<Put>::open(config.clone()).unwrap();
        storage.append_entries(puts(0..10)).unwrap();
        storage.append_entries(puts(10..20)).unwrap();
        crash(storage);
        // The second record lost its last bytes: its write never returned.
        let wal = wal_path(dir.path());
        let bytes = fs::read(&wal).unwrap();
        fs::write(&wal, &bytes[..bytes.len() - 3]).unwrap();

        let storage = PersistentStorage::<Put>::open(config.clone()).unwrap();
        let report = storage.open_report().clone();
        assert_eq!(report.replayed_records, 1, "{report}");
        assert!(report.wal_torn_bytes > 0, "{report}");
        assert!(report.to_string().contains("interrupted"), "{report}");
        assert_eq!(storage.get_suffix(0).unwrap(), puts(0..10));
        // The log continues after the cut.
        let mut storage = storage;
        storage.append_entries(puts(10..12)).unwrap();
        crash(storage);
        let storage = PersistentStorage::<Put>::open(config).unwrap();
        assert_eq!(storage.get_suffix(0).unwrap(), puts(0..12));
    }

    #[test]
    fn a_damaged_wal_record_before_valid_ones_is_refused_with_a_corrupt_error() {
        let dir = tempfile::tempdir().unwrap();
        let config = PersistentStorageConfig::with_path(dir.path());
        let mut storage = PersistentStorage::<Put>::open(config.clone()).unwrap();
        storage.append_entries(puts(0..10)).unwrap();
        storage.append_entries(puts(10..20)).unwrap();
        crash(storage);
        let wal = wal_path(dir.path());
        let mut bytes = fs::read(&wal).unwrap();
        bytes[crate::wal::HEADER_BYTES + 5] ^= 0x10;
        fs::write(&wal, &bytes).unwrap();

        let err = PersistentStorage::<Put>::open(config).err().unwrap();
        assert!(
            matches!(&err, StorageError::Corrupt { path: Some(p), detail }
                if p.ends_with(crate::wal::WAL_FILE) && detail.contains("damaged")),
            "{err}"
        );
        // Nothing was cut.
        assert_eq!(fs::read(&wal).unwrap(), bytes);
    }

    #[test]
    fn a_missing_write_ahead_log_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = PersistentStorageConfig::with_path(dir.path());
        drop(PersistentStorage::<Put>::open(config.clone()).unwrap());
        fs::remove_file(wal_path(dir.path())).unwrap();
        let err = PersistentStorage::<Put>::open(config).err().unwrap();
        assert!(
            err.to_string().contains("write-ahead log is missing"),
            "{err}"
        );
    }

    #[test]
    fn a_replay_after_a_checkpoint_holding_no_entry_moves_the_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let config = PersistentStorageConfig::with_path(dir.path());
        let mut storage = PersistentStorage::<Put>::open(config.clone()).unwrap();
        storage.append_entries(puts(0..10)).unwrap();
        // A snapshot batch commits through the state record, holding no
        // entry: the next open restarts the commitlog at offset 0.
        storage
            .write_atomically(vec![
                StorageOp::Trim(10),
                StorageOp::SetCompactedIdx(10),
                StorageOp::SetSnapshot(Some(Bulk(vec![1; 10]))),
            ])
            .unwrap();
        storage.append_entries(puts(10..15)).unwrap();
        storage.append_entries(puts(15..20)).unwrap();
        crash(storage);

        let storage = PersistentStorage::<Put>::open(config.clone()).unwrap();
        assert_eq!(storage.open_report().replayed_records, 2);
        assert_eq!(storage.get_suffix(10).unwrap(), puts(10..20));
        drop(storage);
        let storage = PersistentStorage::<Put>::open(config).unwrap();
        assert_eq!(storage.get_suffix(10).unwrap(), puts(10..20));
        assert_eq!(storage.get_snapshot().unwrap(), Some(Bulk(vec![1; 10])));
    }

    /// Rewrites the directory of a closed storage into format version 2: the
    /// state record without a write-ahead log position, the marker and meta
    /// record naming version 2, and no log file.
    fn downgrade_to_v2(dir: &Path) {
        let db_path = dir.join("state");
        let db = open_database(&crate::config::database_config(
            &sled::Config::default(),
            &db_path,
        ))
        .unwrap();
        let state: State = decode(
            &db.get(KEY_STATE).unwrap().unwrap(),
            "the state record",
            &db_path,
        )
        .unwrap();
        let v2 = StateV2 {
            promise: state.promise,
            accepted_round: state.accepted_round,
            decided_idx: state.decided_idx,
            compacted_idx: state.compacted_idx,
            trimmed_idx: state.trimmed_idx,
            log_len: state.log_len,
            phys_base: state.phys_base,
            files: state.files.into(),
        };
        let mut batch = sled::Batch::default();
        batch.insert(KEY_STATE, encode(&v2, "").unwrap());
        batch.insert(KEY_META, encode(&Meta { format_version: 2 }, "").unwrap());
        db.apply_batch(batch).unwrap();
        db.flush().unwrap();
        drop(db);
        assert_eq!(fs::metadata(wal_path(dir)).unwrap().len(), 0);
        fs::remove_file(wal_path(dir)).unwrap();
        fs::write(dir.join(MARKER), format!("{MARKER_HEADER}\nformat 2\n")).unwrap();
    }

    #[test]
    fn a_format_2_directory_is_upgraded_on_open_and_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let config = PersistentStorageConfig::with_path(dir.path());
        let mut storage = PersistentStorage::<Put>::open(config.clone()).unwrap();
        storage.append_entries(puts(0..50)).unwrap();
        storage
            .write_atomically(vec![
                StorageOp::SetDecidedIndex(40),
                StorageOp::Trim(30),
                StorageOp::SetCompactedIdx(30),
                StorageOp::SetSnapshot(Some(Bulk(vec![3; 300]))),
                StorageOp::SetPromise(Ballot::with(1, 2, 3)),
            ])
            .unwrap();
        drop(storage);
        downgrade_to_v2(dir.path());

        let mut storage = PersistentStorage::<Put>::open(config.clone()).unwrap();
        assert_eq!(storage.open_report().upgraded_from, Some(2));
        assert!(
            storage
                .open_report()
                .to_string()
                .contains("entries below index 50 were written before origin ids and have none"),
            "{}",
            storage.open_report()
        );
        assert_eq!(storage.get_snapshot().unwrap(), Some(Bulk(vec![3; 300])));
        assert_eq!(storage.get_suffix(30).unwrap(), puts(30..50));
        assert_eq!(storage.get_decided_idx().unwrap(), 40);
        assert_eq!(storage.get_promise().unwrap(), Some(Ballot::with(1, 2, 3)));
        let marker = fs::read_to_string(dir.path().join(MARKER)).unwrap();
        assert!(
            marker.ends_with(&format!("format {FORMAT_VERSION}\n")),
            "{marker}"
        );
        storage.append_entries(puts(50..60)).unwrap();
        crash(storage);

        let storage = PersistentStorage::<Put>::open(config).unwrap();
        assert_eq!(storage.open_report().upgraded_from, None);
        assert_eq!(storage.open_report().replayed_records, 1);
        assert_eq!(storage.get_suffix(30).unwrap(), puts(30..60));
    }

    #[test]
    fn a_database_older_than_its_marker_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = PersistentStorageConfig::with_path(dir.path());
        drop(PersistentStorage::<Put>::open(config.clone()).unwrap());
        downgrade_to_v1(dir.path());
        fs::write(
            dir.path().join(MARKER),
            format!("{MARKER_HEADER}\nformat {FORMAT_VERSION}\n"),
        )
        .unwrap();
        let err = PersistentStorage::<Put>::open(config).err().unwrap();
        assert!(err.to_string().contains("format version 1"), "{err}");
    }

    fn end() -> ConfigurationEnd {
        ConfigurationEnd {
            stopsign: StopSign::with(2, vec![1, 2, 3], None),
            stop_idx: 17,
            accepted_round: Ballot::with(1, 4, 2),
        }
    }

    /// Stores a previous configuration's end, lets `damage` change its
    /// record file behind the storage's back, and returns what opening gives.
    fn open_with_previous_end_file(
        damage: impl FnOnce(&Path),
    ) -> StorageResult<Option<ConfigurationEnd>> {
        let dir = tempfile::tempdir().unwrap();
        let config = PersistentStorageConfig::with_path(dir.path());
        let mut storage = PersistentStorage::<Value>::open(config.clone()).unwrap();
        storage.set_previous_configuration_end(Some(end())).unwrap();
        drop(storage);
        let files = record_files(dir.path());
        assert_eq!(files.len(), 1, "{files:?}");
        damage(
            &dir.path()
                .join(crate::record_files::RECORDS_DIR)
                .join(&files[0]),
        );
        PersistentStorage::<Value>::open(config)?.get_previous_configuration_end()
    }

    #[test]
    fn the_previous_configuration_end_reads_back_after_a_reopen() {
        assert_eq!(open_with_previous_end_file(|_| {}), Ok(Some(end())));
    }

    #[test]
    fn a_damaged_previous_configuration_end_is_a_corrupt_error() {
        let err = open_with_previous_end_file(|path| {
            let mut bytes = fs::read(path).unwrap();
            *bytes.last_mut().unwrap() ^= 0x40;
            fs::write(path, bytes).unwrap();
        })
        .unwrap_err();
        assert!(
            matches!(&err, StorageError::Corrupt { detail, .. } if detail.contains("previous configuration's end")),
            "{err}"
        );
    }

    #[test]
    fn an_undecodable_record_is_a_serialization_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut records = RecordFiles::open(dir.path()).unwrap();
        // A well-formed file whose payload is too short to be the value.
        let r = records.write(Kind::PreviousEnd, &[1, 2]).unwrap();
        let err = read_record::<ConfigurationEnd>(&records, Kind::PreviousEnd, &r).unwrap_err();
        assert!(
            matches!(&err, StorageError::Serialization { what, .. } if what.contains("previous configuration's end")),
            "{err}"
        );
    }

    #[test]
    fn the_state_record_has_a_fixed_size_whatever_the_stop_sign_carries() {
        let dir = tempfile::tempdir().unwrap();
        let mut storage =
            PersistentStorage::<Value>::open(PersistentStorageConfig::with_path(dir.path()))
                .unwrap();
        storage.append_entries(vec![Value(1)]).unwrap();
        let before = storage.stats();
        let metadata = Some(vec![0xAB; 1 << 20]);
        storage
            .set_stopsign(Some(StopSign::with(
                2,
                (1..=1000).collect(),
                metadata.clone(),
            )))
            .unwrap();
        for i in 0..10 {
            storage.set_decided_idx(i % 2).unwrap();
        }
        let stats = storage.stats();
        let per_commit = (stats.state_bytes_written - before.state_bytes_written)
            / (stats.commits - before.commits);
        assert!(per_commit < 128, "{per_commit} bytes per commit");
        drop(storage);
        let storage =
            PersistentStorage::<Value>::open(PersistentStorageConfig::with_path(dir.path()))
                .unwrap();
        assert_eq!(storage.get_stopsign().unwrap().unwrap().metadata, metadata);
    }

    /// The first segment of a storage at `dir` with the default options,
    /// and its index.
    fn first_segment(dir: &Path) -> (PathBuf, PathBuf) {
        let log = dir.join("commitlog");
        (
            log.join(format!("{:020}.log", 0)),
            log.join(format!("{:020}.index", 0)),
        )
    }

    /// Found by the fuzz target `storage_open`: an entry header whose
    /// metadata size exceeds the entry (the checksum covers the body, not
    /// the header) made reading the entry panic inside `commitlog`.
    #[test]
    fn an_entry_header_with_a_damaged_metadata_size_is_a_corrupt_error() {
        let dir = tempfile::tempdir().unwrap();
        let config = PersistentStorageConfig::with_path(dir.path());
        let mut storage = PersistentStorage::<Put>::open(config.clone()).unwrap();
        storage.append_entries(puts(0..10)).unwrap();
        drop(storage);
        let (segment, _) = first_segment(dir.path());
        let mut bytes = fs::read(&segment).unwrap();
        // The first entry's header starts after the 2-byte magic; its
        // metadata size is the header's last two bytes.
        bytes[2 + 18..2 + 20].copy_from_slice(&u16::MAX.to_le_bytes());
        fs::write(&segment, &bytes).unwrap();

        let storage = PersistentStorage::<Put>::open(config).unwrap();
        let err = storage.get_suffix(0).err().unwrap();
        assert!(
            matches!(&err, StorageError::Corrupt { detail, .. }
                if detail.contains("metadata")),
            "{err}"
        );
    }

    /// Found by the fuzz target `storage_open`: an index entry placing its
    /// entry past the segment's end opened fine and made `commitlog`'s read
    /// overflow; open now checks every position the committed entries need.
    #[test]
    fn an_index_position_past_the_segment_end_is_refused_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let config = PersistentStorageConfig::with_path(dir.path());
        let mut storage = PersistentStorage::<Put>::open(config.clone()).unwrap();
        storage.append_entries(puts(0..10)).unwrap();
        drop(storage);
        let (segment, index) = first_segment(dir.path());
        let len = fs::metadata(&segment).unwrap().len();
        let mut bytes = fs::read(&index).unwrap();
        // Entry 3's position: the second half of its 8 bytes.
        bytes[3 * 8 + 4..3 * 8 + 8].copy_from_slice(&(len as u32 + 100).to_le_bytes());
        fs::write(&index, &bytes).unwrap();

        let err = PersistentStorage::<Put>::open(config).err().unwrap();
        assert!(
            matches!(&err, StorageError::Corrupt { path: Some(p), detail }
                if p == &index && detail.contains("index entry 3")),
            "{err}"
        );
    }

    // ----- origin ids -------------------------------------------------------

    use crate::conformance::{Sum, Value as V, observe};
    use crate::memory_storage::MemoryStorage;
    use omnipaxos::storage::OriginId;

    /// The ids of indices `idx..idx + len`: proposals `seq..` of `origin`.
    fn ids(idx: u64, len: u64, origin: u64, seq: u64) -> OriginIds {
        let mut ids = OriginIds::new();
        for k in 0..len {
            let id = OriginId {
                origin,
                incarnation: 1,
                seq: seq + k,
            };
            assert!(ids.push(idx + k, id));
        }
        ids
    }

    fn vals(range: Range<u64>) -> Vec<V> {
        range.map(V).collect()
    }

    /// `n` entries appended at `at` with their ids, as a leader writes its
    /// own proposals.
    fn append_with_ids(at: u64, n: u64, origin: u64) -> Vec<StorageOp<V>> {
        vec![
            StorageOp::AppendEntries(vals(at..at + n)),
            StorageOp::SetOrigins(at, ids(at, n, origin, at)),
        ]
    }

    fn table() -> OriginTable {
        let mut table = OriginTable::new();
        table.absorb(&ids(0, 5, 9, 100));
        table
    }

    #[test]
    fn an_append_with_its_origin_ids_costs_one_sync_of_the_write_ahead_log_and_nothing_in_sled() {
        let dir = tempfile::tempdir().unwrap();
        let mut storage =
            PersistentStorage::<Put>::open(PersistentStorageConfig::with_path(dir.path())).unwrap();
        storage.append_entries(puts(0..10)).unwrap();
        let batch = |from: u64, with_ids: bool| {
            let mut ops = vec![
                StorageOp::AppendEntries(puts(from..from + 100)),
                StorageOp::SetDecidedIndex(from),
            ];
            if with_ids {
                ops.push(StorageOp::SetOrigins(from, ids(from, 100, 1, from)));
            }
            ops
        };
        let before = storage.stats();
        storage.write_atomically(batch(10, false)).unwrap();
        let without = storage.stats();
        storage.write_atomically(batch(110, true)).unwrap();
        let with = storage.stats();
        assert_eq!(with.syncs - without.syncs, 1, "{with:?}");
        assert_eq!(with.wal_records - without.wal_records, 1);
        assert_eq!(with.state_bytes_written, before.state_bytes_written);
        assert_eq!(with.checkpoints, before.checkpoints);
        // The same batch, entries of the same size: what the ids add is
        // the cut index, the run count and one run of five numbers.
        let grew = (with.wal_bytes_written - without.wal_bytes_written)
            - (without.wal_bytes_written - before.wal_bytes_written);
        assert_eq!(grew, 8 + 8 + 40, "bytes a 100-entry run adds to a record");
        // Two origins interleaved one by one are a run per entry.
        let mut interleaved = OriginIds::new();
        for k in 0..100 {
            interleaved.append(&ids(210 + k, 1, 1 + k % 2, k));
        }
        storage
            .write_atomically(vec![
                StorageOp::AppendEntries(puts(210..310)),
                StorageOp::SetDecidedIndex(210),
                StorageOp::SetOrigins(210, interleaved),
            ])
            .unwrap();
        let worst = storage.stats();
        assert_eq!(worst.syncs - with.syncs, 1);
        assert_eq!(
            worst.wal_bytes_written - with.wal_bytes_written,
            with.wal_bytes_written - without.wal_bytes_written + 99 * 40
        );
        assert_eq!(
            storage.get_origins(0, u64::MAX).unwrap().runs().len(),
            101,
            "one run, then a run per entry"
        );
    }

    #[test]
    fn origin_ids_written_before_a_crash_read_back_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let config = PersistentStorageConfig::with_path(dir.path());
        let mut storage = PersistentStorage::<V>::open(config.clone()).unwrap();
        let mut model = MemoryStorage::<V>::default();
        let batches = vec![
            append_with_ids(0, 10, 1),
            vec![StorageOp::SetIncarnation(4)],
            append_with_ids(10, 5, 2),
            vec![StorageOp::AppendEntries(vals(15..18))],
            vec![
                StorageOp::Trim(3),
                StorageOp::SetCompactedIdx(3),
                StorageOp::SetOriginTable(table()),
            ],
            // Ids set again below the end in a common batch.
            vec![StorageOp::SetOrigins(12, ids(13, 2, 3, 0))],
            append_with_ids(18, 2, 1),
        ];
        for batch in batches {
            model.write_atomically(batch.clone()).unwrap();
            storage.write_atomically(batch).unwrap();
        }
        assert_eq!(storage.stats().checkpoints, 0, "everything is in the log");
        crash(storage);

        let storage = PersistentStorage::<V>::open(config.clone()).unwrap();
        assert_eq!(storage.open_report().replayed_records, 7);
        assert_eq!(observe(&storage), observe(&model));
        assert_eq!(storage.get_incarnation().unwrap(), 4);
        assert_eq!(
            record_files(dir.path()).len(),
            1,
            "open checkpointed the ids"
        );
        drop(storage);
        let storage = PersistentStorage::<V>::open(config).unwrap();
        assert!(
            storage.open_report().is_clean(),
            "{}",
            storage.open_report()
        );
        assert_eq!(observe(&storage), observe(&model));
    }

    /// Runs `prepare` on a fresh storage (and on the model), then `batch`
    /// with a crash at `point`, and checks that the reopened storage holds
    /// the model's state after the batch (`committed`) or before it.
    fn crash_with_ids_at(
        point: CrashPoint,
        config: impl Fn(&Path) -> PersistentStorageConfig,
        prepare: &[Vec<StorageOp<V>>],
        batch: Vec<StorageOp<V>>,
        committed: bool,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let mut storage = PersistentStorage::<V>::open(config.clone()).unwrap();
        let mut model = MemoryStorage::<V>::default();
        for ops in prepare {
            model.write_atomically(ops.clone()).unwrap();
            storage.write_atomically(ops.clone()).unwrap();
        }
        let before = observe(&model);
        model.write_atomically(batch.clone()).unwrap();
        let after = observe(&model);
        storage.crash_at = Some(point);
        assert!(
            storage.write_atomically(batch).is_err(),
            "{point:?} was not reached"
        );
        drop(storage);

        let storage = PersistentStorage::<V>::open(config.clone()).unwrap();
        let expected = if committed { &after } else { &before };
        assert_eq!(&observe(&storage), expected, "{point:?}");
        let origins_files = record_files(dir.path())
            .iter()
            .filter(|n| n.starts_with("origins-"))
            .count();
        assert_eq!(origins_files, 1, "{point:?}: {}", storage.open_report());
        drop(storage);
        let storage = PersistentStorage::<V>::open(config).unwrap();
        assert_eq!(
            &observe(&storage),
            expected,
            "{point:?} after a second reopen"
        );
    }

    #[test]
    fn origin_ids_survive_a_crash_at_every_crash_point() {
        let plain = |dir: &Path| PersistentStorageConfig::with_path(dir);
        let checkpointing = |dir: &Path| {
            let mut config = PersistentStorageConfig::with_path(dir);
            config.set_wal_checkpoint_bytes(1);
            config
        };
        let prepare = [
            append_with_ids(0, 50, 1),
            append_with_ids(50, 50, 2),
            vec![StorageOp::SetOriginTable(table())],
            // A checkpoint, so that the crash finds an origins file named.
            vec![StorageOp::SetSnapshot(Some(Sum(0)))],
            append_with_ids(100, 10, 3),
        ];
        // A rewrite with ids: the redo path.
        let rewrite = vec![
            StorageOp::AppendOnPrefix(60, vals(1000..1030)),
            StorageOp::SetOrigins(60, ids(60, 30, 4, 0)),
        ];
        crash_with_ids_at(
            CrashPoint::AfterRedoCommit,
            plain,
            &prepare,
            rewrite.clone(),
            true,
        );
        // Its first step, the checkpoint of the log before it: the batch
        // has not committed.
        crash_with_ids_at(
            CrashPoint::CheckpointBeforeStateFlush,
            plain,
            &prepare,
            rewrite.clone(),
            false,
        );
        crash_with_ids_at(
            CrashPoint::CheckpointBeforeWalReset,
            plain,
            &prepare,
            rewrite,
            false,
        );
        // A snapshot batch that trims the ids and sets the table.
        let mut table = table();
        table.absorb(&ids(0, 40, 1, 0));
        crash_with_ids_at(
            CrashPoint::BeforeOldSnapshotRemoval,
            plain,
            &prepare,
            vec![
                StorageOp::Trim(40),
                StorageOp::SetCompactedIdx(40),
                StorageOp::SetSnapshot(Some(Sum(40))),
                StorageOp::SetOriginTable(table),
            ],
            true,
        );
        // A common batch: committed by its log record, before or inside
        // the checkpoint it triggers.
        let append = append_with_ids(110, 20, 5);
        crash_with_ids_at(
            CrashPoint::AfterWalWrite,
            plain,
            &prepare,
            append.clone(),
            true,
        );
        for point in [
            CrashPoint::CheckpointBeforeStateFlush,
            CrashPoint::CheckpointBeforeWalReset,
        ] {
            crash_with_ids_at(point, checkpointing, &prepare, append.clone(), true);
            // A trim that drops ids and the segments below it.
            crash_with_ids_at(
                point,
                checkpointing,
                &prepare,
                vec![StorageOp::Trim(70), StorageOp::SetCompactedIdx(70)],
                true,
            );
        }
    }

    #[test]
    fn a_crash_mid_checkpoint_loses_no_origin_ids_and_leaves_no_stray_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = PersistentStorageConfig::with_path(dir.path());
        config.set_wal_checkpoint_bytes(1);
        let mut storage = PersistentStorage::<V>::open(config.clone()).unwrap();
        storage.write_atomically(append_with_ids(0, 10, 1)).unwrap();
        assert_eq!(storage.stats().checkpoints, 1);
        let named = storage.state.files.get(Kind::Origins).unwrap();
        storage.crash_at = Some(CrashPoint::CheckpointBeforeStateFlush);
        assert!(
            storage
                .write_atomically(append_with_ids(10, 10, 2))
                .is_err()
        );
        // The new file is written, the old one still named.
        assert_eq!(record_files(dir.path()).len(), 2);
        drop(storage);

        let storage = PersistentStorage::<V>::open(config).unwrap();
        let report = storage.open_report();
        assert_eq!(report.replayed_records, 1, "{report}");
        assert_eq!(report.removed.len(), 1, "{report}");
        assert_eq!(report.removed[0].kind, LeftoverKind::Origins, "{report}");
        let expected = [ids(0, 10, 1, 0), ids(10, 10, 2, 10)];
        let mut all = OriginIds::new();
        for part in &expected {
            all.append(part);
        }
        assert_eq!(storage.get_origins(0, 20).unwrap(), all);
        assert_ne!(storage.state.files.get(Kind::Origins), Some(named));
        assert_eq!(record_files(dir.path()).len(), 1);
    }

    #[test]
    fn a_storage_used_without_origin_ids_writes_no_origins_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = PersistentStorageConfig::with_path(dir.path());
        config.set_wal_checkpoint_bytes(1);
        let mut storage = PersistentStorage::<Put>::open(config).unwrap();
        storage.append_entries(puts(0..10)).unwrap();
        storage.trim(5).unwrap();
        storage.append_on_prefix(7, puts(70..72)).unwrap();
        let stats = storage.stats();
        assert!(stats.checkpoints >= 2, "{stats:?}");
        assert_eq!(record_files(dir.path()), Vec::<String>::new());
    }

    /// Names the record file `payload` as the checkpoint's origins file, as a
    /// forger (or a bug) would: its checksum is valid.
    fn forge_origins_file(dir: &Path, payload: &[u8]) {
        let config = PersistentStorageConfig::with_path(dir);
        let mut storage = PersistentStorage::<V>::open(config).unwrap();
        let r = storage.records.write(Kind::Origins, payload).unwrap();
        let mut state = storage.state.clone();
        state.files.set(Kind::Origins, Some(r));
        storage.write_state(&state).unwrap();
        crash(storage);
    }

    fn stored_with_ids(dir: &Path) {
        let config = PersistentStorageConfig::with_path(dir);
        let mut storage = PersistentStorage::<V>::open(config).unwrap();
        storage.write_atomically(append_with_ids(0, 10, 1)).unwrap();
    }

    #[track_caller]
    fn assert_corrupt_naming(err: &StorageError, file: &str, says: &str) {
        assert!(
            matches!(err, StorageError::Corrupt { path: Some(p), detail }
                if p.to_string_lossy().contains(file) && detail.contains(says)),
            "{err}"
        );
    }

    #[test]
    fn a_damaged_or_forged_origins_file_is_a_corrupt_error_naming_it() {
        let open = |dir: &Path| {
            PersistentStorage::<V>::open(PersistentStorageConfig::with_path(dir))
                .err()
                .expect("the open must fail")
        };
        // A flipped byte: the checksum.
        let dir = tempfile::tempdir().unwrap();
        stored_with_ids(dir.path());
        let files = record_files(dir.path());
        let path = dir
            .path()
            .join(crate::record_files::RECORDS_DIR)
            .join(&files[0]);
        let mut bytes = fs::read(&path).unwrap();
        *bytes.last_mut().unwrap() ^= 0x08;
        fs::write(&path, bytes).unwrap();
        assert_corrupt_naming(&open(dir.path()), "origins-", "checksum");

        let run = |idx: u64, len: u64| omnipaxos::storage::OriginRun {
            idx,
            len,
            first: OriginId::default(),
        };
        let forged: [(Vec<u8>, &str); 4] = [
            (vec![1, 2, 3], "does not decode"),
            // An empty run: the deserialiser refuses it.
            (
                bincode::serialize(&(vec![run(0, 0)], OriginTable::new())).unwrap(),
                "does not decode",
            ),
            // Ids past the log's end.
            (
                bincode::serialize(&(vec![run(5, 100)], OriginTable::new())).unwrap(),
                "outside the held log",
            ),
            // Trailing bytes.
            (
                [
                    bincode::serialize(&(vec![run(0, 1)], OriginTable::new())).unwrap(),
                    vec![0],
                ]
                .concat(),
                "does not decode",
            ),
        ];
        for (payload, says) in forged {
            let dir = tempfile::tempdir().unwrap();
            stored_with_ids(dir.path());
            forge_origins_file(dir.path(), &payload);
            assert_corrupt_naming(&open(dir.path()), "origins-", says);
        }
        // A table whose runs overlap: built by serde from its fields
        // (`(seq, len, idx)` per run).
        #[derive(Serialize)]
        struct Seqs {
            origin: u64,
            incarnation: u64,
            runs: Vec<(u64, u64, u64)>,
        }
        #[derive(Serialize)]
        struct Table {
            origins: Vec<Seqs>,
        }
        let table = Table {
            origins: vec![Seqs {
                origin: 1,
                incarnation: 1,
                runs: vec![(5, 5, 0), (7, 5, 10)],
            }],
        };
        let dir = tempfile::tempdir().unwrap();
        stored_with_ids(dir.path());
        forge_origins_file(
            dir.path(),
            &bincode::serialize(&(Vec::<omnipaxos::storage::OriginRun>::new(), table)).unwrap(),
        );
        assert_corrupt_naming(&open(dir.path()), "origins-", "malformed origin table");
    }

    /// Rewrites the payload of the last record of the write-ahead log with
    /// `edit` and fixes its checksum, as a forger would.
    fn forge_last_wal_record(dir: &Path, edit: impl FnOnce(&mut [u8])) {
        let wal = wal_path(dir);
        let mut bytes = fs::read(&wal).unwrap();
        let mut pos = 0;
        let mut last = 0;
        while pos < bytes.len() {
            last = pos;
            let len = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
            pos += crate::wal::HEADER_BYTES + len;
        }
        edit(&mut bytes[last + crate::wal::HEADER_BYTES..]);
        let crc = crc32c::crc32c(&bytes[last + 12..]);
        bytes[last + 8..last + 12].copy_from_slice(&crc.to_le_bytes());
        fs::write(&wal, bytes).unwrap();
    }

    #[test]
    fn a_forged_origin_section_in_a_wal_record_is_a_corrupt_error_naming_the_log() {
        // The last 40 bytes of a record of one run and no table are the run:
        // index, length, origin, incarnation, sequence number.
        type Edit = fn(&mut [u8]);
        let edits: [(Edit, &str); 4] = [
            (
                |p| {
                    let n = p.len();
                    p[n - 32..n - 24].copy_from_slice(&0u64.to_le_bytes());
                },
                "origin ids do not decode",
            ),
            (
                |p| {
                    let n = p.len();
                    p[n - 40..n - 32].copy_from_slice(&1000u64.to_le_bytes());
                },
                "outside the log",
            ),
            (
                |p| {
                    // The cut index above the run.
                    let n = p.len();
                    p[n - 56..n - 48].copy_from_slice(&7u64.to_le_bytes());
                },
                "below its cut",
            ),
            (
                |p| {
                    let n = p.len();
                    p[n - 57] = 0x80;
                },
                "unknown flags",
            ),
        ];
        for (edit, says) in edits {
            let dir = tempfile::tempdir().unwrap();
            let config = PersistentStorageConfig::with_path(dir.path());
            let mut storage = PersistentStorage::<V>::open(config.clone()).unwrap();
            storage.write_atomically(append_with_ids(0, 10, 1)).unwrap();
            crash(storage);
            forge_last_wal_record(dir.path(), edit);
            let wal = fs::read(wal_path(dir.path())).unwrap();
            let err = PersistentStorage::<V>::open(config.clone()).err().unwrap();
            assert_corrupt_naming(&err, crate::wal::WAL_FILE, says);
            // The failed open changed nothing: the next one fails alike.
            assert_eq!(fs::read(wal_path(dir.path())).unwrap(), wal);
            let again = PersistentStorage::<V>::open(config).err().unwrap();
            assert_eq!(again, err);
        }
    }

    #[test]
    fn the_state_record_stays_small_whatever_origin_ids_the_log_holds() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = PersistentStorageConfig::with_path(dir.path());
        config.set_wal_checkpoint_bytes(1);
        let mut storage = PersistentStorage::<V>::open(config).unwrap();
        for k in 0..50 {
            // Two origins interleaved: a run per entry.
            let mut runs = OriginIds::new();
            for i in 0..20 {
                runs.append(&ids(20 * k + i, 1, 1 + i % 2, 20 * k + i));
            }
            storage
                .write_atomically(vec![
                    StorageOp::AppendEntries(vals(20 * k..20 * (k + 1))),
                    StorageOp::SetOrigins(20 * k, runs),
                    StorageOp::SetIncarnation(k),
                ])
                .unwrap();
        }
        let stats = storage.stats();
        assert_eq!(storage.get_origins(0, u64::MAX).unwrap().runs().len(), 1000);
        let per_checkpoint = stats.state_bytes_written / stats.checkpoints;
        assert!(
            per_checkpoint < 160,
            "{per_checkpoint} bytes per checkpoint"
        );
    }

    /// Rewrites the directory of a crashed storage into format version 3:
    /// the state record and every write-ahead log record in their old
    /// shape (no incarnation, no origins slot, no origin section), the
    /// marker and meta record naming version 3.
    fn downgrade_to_v3(dir: &Path) {
        let db_path = dir.join("state");
        let db = open_database(&crate::config::database_config(
            &sled::Config::default(),
            &db_path,
        ))
        .unwrap();
        let to_v3 = |state: State| {
            assert_eq!(state.incarnation, 0, "version 3 has no incarnation");
            StateV3 {
                promise: state.promise,
                accepted_round: state.accepted_round,
                decided_idx: state.decided_idx,
                compacted_idx: state.compacted_idx,
                trimmed_idx: state.trimmed_idx,
                log_len: state.log_len,
                phys_base: state.phys_base,
                files: state.files.into(),
                wal_seq: state.wal_seq,
            }
        };
        let state: State = decode(
            &db.get(KEY_STATE).unwrap().unwrap(),
            "the state record",
            &db_path,
        )
        .unwrap();
        let mut batch = sled::Batch::default();
        batch.insert(KEY_STATE, encode(&to_v3(state), "").unwrap());
        batch.insert(KEY_META, encode(&Meta { format_version: 3 }, "").unwrap());
        db.apply_batch(batch).unwrap();
        db.flush().unwrap();
        drop(db);

        let (wal, scan) = Wal::open(dir, false).unwrap();
        let records: Vec<(u64, Vec<u8>)> = scan
            .records
            .iter()
            .map(|found| {
                let batch = decode_batch(&scan.data, found, wal.path(), false).unwrap();
                assert_eq!(
                    batch.origins,
                    OriginChanges::default(),
                    "no ids in version 3"
                );
                let mut payload = bincode::serialize(&to_v3(batch.state)).unwrap();
                payload.extend_from_slice(&batch.first_offset.to_le_bytes());
                payload.extend_from_slice(&(batch.entries.len() as u64).to_le_bytes());
                for r in batch.entries {
                    payload.extend_from_slice(&(r.len() as u32).to_le_bytes());
                    payload.extend_from_slice(&scan.data[r]);
                }
                (found.seq, payload)
            })
            .collect();
        drop(wal);
        fs::remove_file(wal_path(dir)).unwrap();
        let (mut wal, _) = Wal::open(dir, true).unwrap();
        for (seq, payload) in records {
            let mut buf = Vec::new();
            Wal::begin(&mut buf, seq);
            buf.extend_from_slice(&payload);
            wal.append(&mut buf, true).unwrap();
        }
        fs::write(dir.join(MARKER), format!("{MARKER_HEADER}\nformat 3\n")).unwrap();
    }

    #[test]
    fn a_format_3_directory_replays_its_log_then_upgrades_and_has_no_ids_for_old_entries() {
        let dir = tempfile::tempdir().unwrap();
        let config = PersistentStorageConfig::with_path(dir.path());
        let mut storage = PersistentStorage::<V>::open(config.clone()).unwrap();
        storage.append_entries(vals(0..10)).unwrap();
        storage
            .write_atomically(vec![
                StorageOp::Trim(2),
                StorageOp::SetCompactedIdx(2),
                StorageOp::SetSnapshot(Some(Sum(1))),
            ])
            .unwrap();
        storage.append_entries(vals(10..20)).unwrap();
        storage
            .write_atomically(vec![
                StorageOp::SetDecidedIndex(15),
                StorageOp::SetPromise(Ballot::with(1, 2, 3)),
            ])
            .unwrap();
        let expected = observe(&storage);
        crash(storage);
        downgrade_to_v3(dir.path());

        let mut storage = PersistentStorage::<V>::open(config.clone()).unwrap();
        let report = storage.open_report().clone();
        assert_eq!(report.upgraded_from, Some(3), "{report}");
        assert_eq!(report.replayed_records, 2, "{report}");
        assert_eq!(report.no_origin_ids_below, Some(20), "{report}");
        assert!(
            report
                .to_string()
                .contains("entries below index 20 were written before origin ids and have none"),
            "{report}"
        );
        assert_eq!(observe(&storage), expected);
        assert_eq!(storage.get_origins(0, u64::MAX).unwrap(), OriginIds::new());
        let marker = fs::read_to_string(dir.path().join(MARKER)).unwrap();
        assert!(marker.ends_with("format 4\n"), "{marker}");
        // The upgraded storage keeps ids for what it writes now.
        storage.write_atomically(append_with_ids(20, 5, 1)).unwrap();
        storage
            .write_atomically(vec![StorageOp::SetIncarnation(1)])
            .unwrap();
        crash(storage);
        let storage = PersistentStorage::<V>::open(config).unwrap();
        assert_eq!(storage.open_report().upgraded_from, None);
        assert_eq!(storage.open_report().no_origin_ids_below, None);
        assert_eq!(storage.get_origins(0, u64::MAX).unwrap(), ids(20, 5, 1, 20));
        assert_eq!(storage.get_incarnation().unwrap(), 1);
        assert_eq!(storage.get_suffix(0).unwrap(), vals(2..25));
    }

    #[test]
    fn a_format_3_directory_with_a_rewrite_in_progress_finishes_it_and_upgrades() {
        let dir = tempfile::tempdir().unwrap();
        let config = PersistentStorageConfig::with_path(dir.path());
        let mut storage = PersistentStorage::<V>::open(config.clone()).unwrap();
        storage.append_entries(vals(0..100)).unwrap();
        storage.crash_at = Some(CrashPoint::AfterRedoCommit);
        assert!(storage.append_on_prefix(60, vals(1000..1030)).is_err());
        drop(storage);
        downgrade_to_v3(dir.path());

        let storage = PersistentStorage::<V>::open(config.clone()).unwrap();
        let report = storage.open_report().clone();
        assert!(report.finished_redo, "{report}");
        assert_eq!(report.upgraded_from, Some(3), "{report}");
        assert_eq!(report.no_origin_ids_below, Some(90), "{report}");
        assert_eq!(
            storage.get_suffix(0).unwrap(),
            [vals(0..60), vals(1000..1030)].concat()
        );
        drop(storage);
        let storage = PersistentStorage::<V>::open(config).unwrap();
        assert!(
            storage.open_report().is_clean(),
            "{}",
            storage.open_report()
        );
    }

    /// Every byte of an origin section (and of an origins file) changed, the
    /// checksums fixed as a forger would: open never panics, and what it
    /// refuses is a corrupt error.
    #[test]
    fn forged_origin_bytes_never_panic_an_open() {
        let check = |result: StorageResult<PersistentStorage<V>>, what: &str| match result {
            Ok(storage) => {
                let _ = storage.get_origins(0, u64::MAX).unwrap();
                let _ = storage.get_origin_table().unwrap();
            }
            Err(e) => assert!(matches!(e, StorageError::Corrupt { .. }), "{what}: {e}"),
        };
        let batch = {
            let mut ops = append_with_ids(0, 3, 1);
            ops.extend(append_with_ids(3, 2, 2));
            ops.push(StorageOp::SetOriginTable(table()));
            ops
        };
        let section = 1 + 8 + 8 + 2 * 40 + bincode::serialize(&table()).unwrap().len();
        for at in 0..section {
            let dir = tempfile::tempdir().unwrap();
            let config = PersistentStorageConfig::with_path(dir.path());
            let mut storage = PersistentStorage::<V>::open(config.clone()).unwrap();
            storage.write_atomically(batch.clone()).unwrap();
            crash(storage);
            forge_last_wal_record(dir.path(), |p| {
                let n = p.len();
                p[n - section + at] ^= 0xA5;
            });
            check(PersistentStorage::open(config), &format!("log byte {at}"));
        }
        let runs = [ids(0, 3, 1, 0), ids(3, 2, 2, 0)];
        let mut all = OriginIds::new();
        for r in &runs {
            all.append(r);
        }
        let payload = bincode::serialize(&(all.runs(), table())).unwrap();
        for at in 0..payload.len() {
            let dir = tempfile::tempdir().unwrap();
            stored_with_ids(dir.path());
            let mut forged = payload.clone();
            forged[at] ^= 0xA5;
            forge_origins_file(dir.path(), &forged);
            check(
                PersistentStorage::open(PersistentStorageConfig::with_path(dir.path())),
                &format!("file byte {at}"),
            );
        }
    }
}
