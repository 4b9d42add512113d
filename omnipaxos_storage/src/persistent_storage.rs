//! [`PersistentStorage`]: entries in a `commitlog`, state in `sled`, both
//! synced before a write returns.
//!
//! # Layout on disk
//!
//! ```text
//! <path>/OMNIPAXOS_STORAGE   marker: names the format version; without it a
//!                            non-empty directory is refused as foreign
//! <path>/state/              sled: the state record, the snapshot, the previous
//!                            configuration's end, the redo record
//! <path>/commitlog/          commitlog segments and indexes (or wherever
//!                            `set_commitlog_options` puts them)
//! ```
//!
//! # The commit point
//!
//! The state record in sled says which commitlog offsets hold the log:
//! index `trimmed_idx + k` is at offset `phys_base + k`, up to `log_len`.
//! Nothing in the commitlog outside that range is part of the log, so:
//!
//! * an append first writes and syncs the new entries after the last
//!   committed offset, then writes and flushes the state record that covers
//!   them. A crash before the flush leaves entries past the committed range,
//!   which the next open cuts away.
//! * a trim only moves `trimmed_idx` and `phys_base` forward in the state
//!   record; whole segments below the new start are then deleted, which costs
//!   time in the number of dropped segments, not in the entries kept. Entries
//!   below the start inside the first segment stay on disk, unread.
//! * a batch that replaces entries (`AppendOnPrefix` below the log end) cannot
//!   write its new entries beside the old ones, since the commitlog only
//!   appends. It writes them into a *redo* record together with the new state
//!   record, in one sled batch and one flush: that is its commit point. Only
//!   then is the commitlog cut and the entries appended; the redo record is
//!   removed afterwards, and an open that finds one does the cut and append
//!   again (both are idempotent).
//!
//! Every batch therefore has exactly one commit point, a sled flush, and is
//! seen after a crash either whole or not at all.

use crate::{
    bounds::Bounds,
    error,
    segments::{self, HEADER_BYTES, Layout},
};
use commitlog::{
    CommitLog, ReadError, ReadLimit,
    message::{MessageBuf, MessageSet},
};
use omnipaxos::{
    ballot::Ballot,
    errors::StorageError,
    storage::{Entry, Storage, StorageOp, StorageResult},
    util::{ConfigurationEnd, StopSign},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::{
    fs::{self, File},
    io::{ErrorKind, Write},
    marker::PhantomData,
    path::{Path, PathBuf},
};

pub use crate::config::PersistentStorageConfig;
pub use commitlog::LogOptions;

/// The name of the marker file in the storage's directory.
const MARKER: &str = "OMNIPAXOS_STORAGE";
/// The version of the on-disk format this build reads and writes.
const FORMAT_VERSION: u32 = 1;
/// The first line of the marker file.
const MARKER_HEADER: &str = "omnipaxos_storage PersistentStorage";

/// sled key of the [`Meta`] record.
const KEY_META: &[u8] = b"meta";
/// sled key of the [`State`] record.
const KEY_STATE: &[u8] = b"state";
/// sled key of the snapshot, present only while there is one.
const KEY_SNAPSHOT: &[u8] = b"snapshot";
/// sled key of how the previous configuration ended, present only once the
/// protocol stored it. A key of its own rather than a field of [`State`]:
/// storages written before it existed read back as "not stored", and the
/// state record's format stays as it was.
const KEY_PREVIOUS_END: &[u8] = b"previous_end";
/// sled key of the [`Redo`] record, present only between the commit point
/// of a batch that replaces entries and the end of its commitlog rewrite.
const KEY_REDO: &[u8] = b"redo";

/// How many bytes a read asks the commitlog for at first; doubled while a
/// single entry does not fit.
const READ_CHUNK_BYTES: u64 = 64 * 1024;

/// Written once into sled, to recognise the database as ours.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Meta {
    /// The on-disk format version.
    format_version: u32,
}

/// Everything but the entries and the snapshot, written as one record so
/// that any batch updates it atomically.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    promise: Option<Ballot>,
    accepted_round: Option<Ballot>,
    decided_idx: u64,
    compacted_idx: u64,
    stopsign: Option<StopSign>,
    /// Every entry below this index was dropped by a trim.
    trimmed_idx: u64,
    /// One past the last index of the log.
    log_len: u64,
    /// The commitlog offset of index `trimmed_idx`.
    phys_base: u64,
}

impl State {
    fn bounds(&self) -> Bounds {
        Bounds {
            trimmed_idx: self.trimmed_idx,
            log_len: self.log_len,
            compacted_idx: self.compacted_idx,
            stopsign: self.stopsign.is_some(),
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

/// The records of a batch kept under keys of their own beside the state
/// record: `None` leaves one as it is, `Some(None)` removes it.
struct Records<S> {
    snapshot: Option<Option<S>>,
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

/// A [`Storage`] on disk: the entries in a `commitlog`, the rest of the state
/// (promise, accepted round, decided and compacted index, stop-sign,
/// snapshot) in a `sled` database, in one directory.
///
/// Every write is durable when it returns `Ok`: the commitlog files are
/// fsynced and the database is flushed. A batch costs one sync of each store
/// however many entries it carries, so the protocol's batching
/// (`batch_size`) is what buys throughput. [`write_atomically`](Storage::write_atomically)
/// is all-or-nothing across both stores, also across a crash; the module
/// documentation describes the commit point that makes it so.
///
/// [`open`](Self::open) creates the directory or reopens it. Reopening checks
/// it first: a torn write past the last committed entry is moved to `quarantine/`, while a
/// path that is a file, a directory written by something else, a missing or
/// truncated segment, a damaged entry or a damaged state record gives a
/// [`StorageError`] naming the file, and nothing is deleted. A damaged entry
/// in the middle of the log is found when it is read.
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
    /// The committed state record, as last flushed.
    state: State,
    /// The committed snapshot, as last flushed.
    snapshot: Option<T::Snapshot>,
    /// How the previous configuration ended, as last flushed.
    previous_end: Option<ConfigurationEnd>,
    /// Set when a write failed half-way; says what failed.
    poisoned: Option<String>,
    _entries: PhantomData<fn() -> T>,
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
    /// Fails if no path is set, if the path is a file or a non-empty
    /// directory without this crate's marker, if the marker names another
    /// format version, or if the files the committed state needs are missing
    /// or damaged. The errors name the offending file; in none of these cases
    /// is anything deleted.
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
            None => Layout::from_options(LogOptions::new(root.join("commitlog")))?,
        };
        let fresh = claim_directory(&root, &layout)?;

        let db_path = root.join("state");
        let db = open_database(&crate::config::database_config(
            config.database_options(),
            &db_path,
        ))
        .map_err(|e| error::sled("open", &db_path, e))?;
        let get = |key: &[u8]| {
            db.get(key)
                .map_err(|e| error::sled("read", &db_path, e))
                .map(|v| v.map(|bytes| bytes.to_vec()))
        };

        let state = match get(KEY_META)? {
            Some(bytes) => {
                let meta: Meta = decode(&bytes, "the meta record", &db_path)?;
                if meta.format_version != FORMAT_VERSION {
                    return Err(error::corrupt(
                        &db_path,
                        format!(
                            "the state database has format version {}, this build reads {FORMAT_VERSION}",
                            meta.format_version
                        ),
                    ));
                }
                let bytes = get(KEY_STATE)?.ok_or_else(|| {
                    error::corrupt(&db_path, "the state database has no state record")
                })?;
                decode::<State>(&bytes, "the state record", &db_path)?
            }
            None => {
                // A new database. That is fine for a new storage, or one
                // whose creation a crash interrupted before any entry was
                // written; a commitlog with segments means the state that
                // maps them is lost.
                if !fresh && segments::has_segments(&layout)? {
                    return Err(error::corrupt(
                        &db_path,
                        "the state database is empty but the commitlog holds segments: \
                         the state was lost",
                    ));
                }
                let state = State::default();
                let mut batch = sled::Batch::default();
                batch.insert(
                    KEY_META,
                    encode(
                        &Meta {
                            format_version: FORMAT_VERSION,
                        },
                        "the meta record",
                    )?,
                );
                batch.insert(KEY_STATE, encode(&state, "the state record")?);
                db.apply_batch(batch)
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
        let snapshot = get(KEY_SNAPSHOT)?
            .map(|bytes| decode(&bytes, "the snapshot", &db_path))
            .transpose()?;
        let previous_end = get(KEY_PREVIOUS_END)?
            .map(|bytes| {
                decode::<ConfigurationEnd>(&bytes, "the previous configuration's end", &db_path)
            })
            .transpose()?;
        let redo = get(KEY_REDO)?
            .map(|bytes| decode::<Redo>(&bytes, "the redo record", &db_path))
            .transpose()?;

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
        let prepared = segments::prepare(&layout, state.phys_base, held_before_redo)?;
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
            state: State {
                phys_base: prepared.first,
                ..state
            },
            snapshot,
            previous_end,
            poisoned: None,
            layout,
            _entries: PhantomData,
        };
        let expected_end = storage.state.phys_base + held_before_redo;
        if storage.log.next_offset() != expected_end {
            return Err(error::corrupt(
                &storage.layout.dir,
                format!(
                    "the commitlog ends at offset {} but the state needs it to end at {expected_end}",
                    storage.log.next_offset()
                ),
            ));
        }
        if let Some(redo) = redo {
            storage.finish_redo(&redo.entries)?;
        }
        Ok(storage)
    }

    /// Takes the records of a committed batch as the current ones.
    fn adopt(&mut self, records: Records<T::Snapshot>) {
        if let Some(s) = records.snapshot {
            self.snapshot = s;
        }
        if let Some(end) = records.previous_end {
            self.previous_end = end;
        }
    }

    /// Fails if an earlier write failed half-way.
    fn check_usable(&self, operation: &str) -> StorageResult<()> {
        match &self.poisoned {
            None => Ok(()),
            Some(cause) => Err(error::poisoned(operation, &self.root, cause)),
        }
    }

    /// Runs a write step; if it fails, marks the storage unusable.
    fn guard<R>(&mut self, result: StorageResult<R>) -> StorageResult<R> {
        if let Err(e) = &result {
            self.poisoned.get_or_insert_with(|| e.to_string());
        }
        result
    }

    /// Appends serialised entries after the commitlog's last offset and
    /// syncs them: in chunks that fit one `append` call, noting when the
    /// commitlog starts a new segment.
    fn append_physical(&mut self, entries: &[Vec<u8>]) -> StorageResult<()> {
        let limit = self.layout.chunk_max_bytes();
        let max_messages = self.layout.chunk_max_messages();
        let mut new_files = false;
        let mut rest = entries;
        while !rest.is_empty() {
            let mut buf = MessageBuf::default();
            let mut bytes = 0;
            let mut taken = 0;
            for entry in rest {
                let size = HEADER_BYTES + entry.len() as u64;
                if size > limit {
                    return Err(StorageError::Backend {
                        operation: format!(
                            "append entries to the commitlog in {}",
                            self.layout.dir.display()
                        ),
                        detail: format!(
                            "an entry of {} bytes exceeds the commitlog's limit of {limit} bytes \
                             per message (message_max_bytes, segment_max_bytes)",
                            entry.len()
                        ),
                    });
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
                self.active = Active::open(&self.layout, first)?;
                self.bases.push(first);
                new_files = true;
            }
        }
        self.active.sync(&self.layout)?;
        if new_files {
            segments::sync_dir(&self.layout.dir)?;
        }
        Ok(())
    }

    /// The commit point: writes the state record (and the snapshot, the
    /// previous configuration's end and the redo record, if given) in one
    /// sled batch and flushes it.
    fn commit(
        &mut self,
        state: &State,
        records: &Records<T::Snapshot>,
        redo: Option<&Redo>,
    ) -> StorageResult<()> {
        let mut batch = sled::Batch::default();
        batch.insert(KEY_STATE, encode(state, "the state record")?);
        match &records.snapshot {
            Some(Some(s)) => batch.insert(KEY_SNAPSHOT, encode(s, "the snapshot")?),
            Some(None) => batch.remove(KEY_SNAPSHOT),
            None => {}
        }
        match &records.previous_end {
            Some(Some(end)) => batch.insert(
                KEY_PREVIOUS_END,
                encode(end, "the previous configuration's end")?,
            ),
            Some(None) => batch.remove(KEY_PREVIOUS_END),
            None => {}
        }
        if let Some(redo) = redo {
            batch.insert(KEY_REDO, encode(redo, "the redo record")?);
        }
        self.db
            .apply_batch(batch)
            .map_err(|e| error::sled("write", &self.db_path, e))?;
        self.db
            .flush()
            .map_err(|e| error::sled("flush", &self.db_path, e))?;
        Ok(())
    }

    /// Cuts the commitlog right after the entries the state holds before the
    /// redo's cut, appends the redo's entries, and drops the redo record.
    fn finish_redo(&mut self, entries: &[Vec<u8>]) -> StorageResult<()> {
        let result = (|| {
            let kept = self.state.held() - entries.len() as u64;
            self.reopen_log(kept)?;
            self.append_physical(entries)?;
            self.db
                .remove(KEY_REDO)
                .map_err(|e| error::sled("remove the redo record", &self.db_path, e))?;
            // No flush needed: an open that still finds the record redoes
            // the same cut and append.
            Ok(())
        })();
        self.guard(result)
    }

    /// Makes the commitlog files hold exactly the first `held` entries of the
    /// log (dropping trimmed segments and anything after them) and reopens it.
    fn reopen_log(&mut self, held: u64) -> StorageResult<()> {
        let prepared = segments::prepare(&self.layout, self.state.phys_base, held)?;
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

    /// Deletes the segments that hold only offsets below the log's start.
    /// Called after a trim committed; the cost is one file deletion per
    /// dropped segment plus reopening the (few) remaining ones.
    fn drop_trimmed_segments(&mut self) -> StorageResult<()> {
        let start = self.state.phys_base;
        let droppable = self
            .bases
            .windows(2)
            .take_while(|pair| pair[1] <= start)
            .count();
        if droppable == 0 {
            return Ok(());
        }
        for &base in &self.bases[..droppable] {
            segments::remove_segment(&self.layout, base)?;
        }
        segments::sync_dir(&self.layout.dir)?;
        self.bases.drain(..droppable);
        segments::pad_active_index(&self.layout, self.active.base)?;
        self.log = CommitLog::new(self.layout.options.clone())
            .map_err(|e| error::io("reopen the commitlog", &self.layout.dir, &e))?;
        Ok(())
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
                let idx = from + (next - start);
                out.push(decode_entry(message.payload(), idx, &self.layout.dir)?);
                next += 1;
            }
        }
        Ok(out)
    }
}

impl<T> Storage<T> for PersistentStorage<T>
where
    T: Entry + Serialize + DeserializeOwned,
    T::Snapshot: Serialize + DeserializeOwned,
{
    /// Checks the batch, serialises its entries, and then: appends and syncs
    /// new entries past the log end, and flushes the new state record (the
    /// commit point). A batch that replaces entries commits them in a redo
    /// record first and rewrites the commitlog's tail afterwards.
    fn write_atomically(&mut self, ops: Vec<StorageOp<T>>) -> StorageResult<()> {
        self.check_usable("write")?;
        if ops.is_empty() {
            return Ok(());
        }
        let mut bounds = self.state.bounds();
        for op in &ops {
            bounds.check(op)?;
        }

        let mut state = self.state.clone();
        let mut records = Records {
            snapshot: None,
            previous_end: None,
        };
        let mut plan = LogPlan {
            trimmed: state.trimmed_idx,
            kept_end: state.log_len,
            tail: Vec::new(),
        };
        for op in ops {
            match op {
                StorageOp::AppendEntry(entry) => plan.tail.push(entry),
                StorageOp::AppendEntries(mut entries) => plan.tail.append(&mut entries),
                StorageOp::AppendOnPrefix(from, mut entries) => {
                    plan.truncate(from);
                    plan.tail.append(&mut entries);
                }
                StorageOp::Trim(idx) => plan.trim(idx),
                StorageOp::SetPromise(ballot) => state.promise = Some(ballot),
                StorageOp::SetDecidedIndex(idx) => state.decided_idx = idx,
                StorageOp::SetAcceptedRound(ballot) => state.accepted_round = Some(ballot),
                StorageOp::SetCompactedIdx(idx) => state.compacted_idx = idx,
                StorageOp::SetStopsign(stopsign) => state.stopsign = stopsign,
                StorageOp::SetSnapshot(s) => records.snapshot = Some(s),
                StorageOp::SetPreviousConfigurationEnd(end) => records.previous_end = Some(end),
            }
        }
        debug_assert_eq!(plan.log_len(), bounds.log_len, "plan and bounds disagree");
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
        debug_assert_eq!(
            state.bounds(),
            bounds,
            "applied ops moved the log differently than checked"
        );

        if rewrites {
            let redo = Redo {
                cut: state.phys(plan.kept_end),
                entries: tail,
            };
            let committed = self.commit(&state, &records, Some(&redo));
            self.guard(committed)?;
            self.state = state;
            self.adopt(records);
            self.finish_redo(&redo.entries)?;
        } else {
            if !tail.is_empty() {
                let appended = self.append_physical(&tail);
                self.guard(appended)?;
            }
            let committed = self.commit(&state, &records, None);
            self.guard(committed)?;
            self.state = state;
            self.adopt(records);
        }
        let dropped = self.drop_trimmed_segments();
        self.guard(dropped)
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
        Ok(self.state.stopsign.clone())
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
}

/// Makes sure `root` is a directory this storage may use, creating it and
/// its marker if needed; returns whether it was new.
fn claim_directory(root: &Path, layout: &Layout) -> StorageResult<bool> {
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
            check_marker(&marker, &text)?;
            return Ok(false);
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(error::io("read the storage marker", &marker, &e)),
    }
    // No marker: only an empty directory (or one holding just a marker that
    // a crash left half-written) may become a storage.
    let temp = root.join(format!("{MARKER}.tmp"));
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
    let write = || -> std::io::Result<()> {
        let mut file = File::create(&temp)?;
        write!(file, "{MARKER_HEADER}\nformat {FORMAT_VERSION}\n")?;
        file.sync_all()?;
        fs::rename(&temp, &marker)
    };
    write().map_err(|e| error::io("write the storage marker", &marker, &e))?;
    segments::sync_dir(root)?;
    Ok(true)
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

fn check_marker(marker: &Path, text: &str) -> StorageResult<()> {
    let mut lines = text.lines();
    if lines.next() != Some(MARKER_HEADER) {
        return Err(error::corrupt(
            marker,
            "the marker file is not this crate's",
        ));
    }
    match lines.next().and_then(|l| l.strip_prefix("format ")) {
        Some(v) if v == FORMAT_VERSION.to_string() => Ok(()),
        Some(v) => Err(error::corrupt(
            marker,
            format!("the storage has format version {v}, this build reads {FORMAT_VERSION}"),
        )),
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

/// Decodes a value written by [`encode`], checking its checksum.
fn decode<V: DeserializeOwned>(bytes: &[u8], what: &str, db_path: &Path) -> StorageResult<V> {
    let payload = match bytes.split_first_chunk::<4>() {
        Some((crc, payload)) if u32::from_le_bytes(*crc) == crc32c::crc32c(payload) => payload,
        _ => {
            return Err(error::corrupt(
                db_path,
                format!("{what} fails its checksum"),
            ));
        }
    };
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
    use omnipaxos::storage::NoSnapshot;

    #[derive(Clone, Debug, Serialize, Deserialize)]
    struct Value(u64);

    impl Entry for Value {
        type Snapshot = NoSnapshot;
    }

    fn end() -> ConfigurationEnd {
        ConfigurationEnd {
            stopsign: StopSign::with(2, vec![1, 2, 3], None),
            stop_idx: 17,
            accepted_round: Ballot::with(1, 4, 2),
        }
    }

    /// Stores a previous configuration's end, replaces its record with
    /// `bytes` behind the storage's back, and returns what opening gives.
    fn open_with_previous_end_record(bytes: &[u8]) -> StorageResult<Option<ConfigurationEnd>> {
        let dir = tempfile::tempdir().unwrap();
        let config = PersistentStorageConfig::with_path(dir.path());
        let mut storage = PersistentStorage::<Value>::open(config.clone()).unwrap();
        storage.set_previous_configuration_end(Some(end())).unwrap();
        drop(storage);
        let db_path = dir.path().join("state");
        let db = open_database(&crate::config::database_config(
            config.database_options(),
            &db_path,
        ))
        .unwrap();
        db.insert(KEY_PREVIOUS_END, bytes).unwrap();
        db.flush().unwrap();
        drop(db);
        PersistentStorage::<Value>::open(config)?.get_previous_configuration_end()
    }

    #[test]
    fn the_previous_configuration_end_reads_back_after_a_reopen() {
        let good = encode(&end(), "the previous configuration's end").unwrap();
        assert_eq!(open_with_previous_end_record(&good), Ok(Some(end())));
    }

    #[test]
    fn a_damaged_previous_configuration_end_is_a_corrupt_error() {
        let mut bytes = encode(&end(), "the previous configuration's end").unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        let err = open_with_previous_end_record(&bytes).unwrap_err();
        assert!(
            matches!(&err, StorageError::Corrupt { detail, .. } if detail.contains("previous configuration's end")),
            "{err}"
        );
    }

    #[test]
    fn an_undecodable_previous_configuration_end_is_a_serialization_error() {
        // A valid checksum over a payload too short to be a record.
        let payload = [1_u8, 2];
        let mut bytes = crc32c::crc32c(&payload).to_le_bytes().to_vec();
        bytes.extend_from_slice(&payload);
        let err = open_with_previous_end_record(&bytes).unwrap_err();
        assert!(
            matches!(&err, StorageError::Serialization { what, .. } if what.contains("previous configuration's end")),
            "{err}"
        );
    }
}
