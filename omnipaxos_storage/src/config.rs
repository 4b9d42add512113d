//! [`PersistentStorageConfig`]: where a [`PersistentStorage`](crate::persistent_storage::PersistentStorage)
//! lives and how its two stores are tuned.

use commitlog::LogOptions;
use std::path::{Path, PathBuf};

/// Where a [`PersistentStorage`](crate::persistent_storage::PersistentStorage)
/// keeps its files, and the options of its commit log and state database.
///
/// Only the path is required. The directory at the path holds a marker file,
/// the write-ahead log (`wal`), the state database's checkpoint (in
/// `state/`), the snapshot (in `records/`) and,
/// unless [`set_commitlog_options`](Self::set_commitlog_options) names
/// another directory, the commit log (in `commitlog/`, with segments of
/// [`DEFAULT_SEGMENT_MAX_BYTES`](crate::persistent_storage::DEFAULT_SEGMENT_MAX_BYTES)).
///
/// ```
/// use omnipaxos_storage::persistent_storage::{LogOptions, PersistentStorageConfig};
///
/// let dir = tempfile::tempdir()?;
/// let mut config = PersistentStorageConfig::default();
/// config.set_path(dir.path());
/// let mut log_options = LogOptions::new(dir.path().join("entries"));
/// log_options.segment_max_bytes(64 * 1024 * 1024);
/// config.set_commitlog_options(log_options);
/// config.set_database_options(sled::Config::default().cache_capacity(16 * 1024 * 1024));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct PersistentStorageConfig {
    /// The storage's directory; `None` until [`set_path`](Self::set_path).
    path: Option<PathBuf>,
    /// The commit log's options, including its directory; `None` keeps the
    /// log in `commitlog/` under the path with commitlog's default sizes.
    commitlog_options: Option<LogOptions>,
    /// The state database's options. Its own path is ignored: the database
    /// always lives in `state/` under the storage's path, so that one path
    /// names one storage.
    database_options: sled::Config,
    /// The write-ahead log's checkpoint threshold; `None` is
    /// [`DEFAULT_WAL_CHECKPOINT_BYTES`](crate::persistent_storage::DEFAULT_WAL_CHECKPOINT_BYTES).
    wal_checkpoint_bytes: Option<u64>,
}

impl PersistentStorageConfig {
    /// A configuration for the storage in directory `path`.
    pub fn with_path(path: impl Into<PathBuf>) -> Self {
        let mut config = Self::default();
        config.set_path(path);
        config
    }

    /// Sets the storage's directory. It is created if missing; an existing
    /// directory must be empty or hold a storage written by this crate.
    pub fn set_path(&mut self, path: impl Into<PathBuf>) -> &mut Self {
        self.path = Some(path.into());
        self
    }

    /// Sets the commit log's options: its directory (which may be the
    /// storage's path itself) and its segment, index and message sizes.
    ///
    /// The segment size bounds the disk space taken by trimmed entries that
    /// still share a segment with the log's first entry; `LogOptions::new`
    /// starts from commitlog's default of 1 GB, so set `segment_max_bytes`
    /// (the storage's own default, without this call, is 32 MiB).
    ///
    /// `message_max_bytes` bounds one serialised entry plus a 20-byte header;
    /// a larger entry is refused with an error. Segment files must stay below
    /// 4 GiB, since the log addresses them with 32-bit positions.
    pub fn set_commitlog_options(&mut self, options: LogOptions) -> &mut Self {
        self.commitlog_options = Some(options);
        self
    }

    /// Sets the state database's options (cache size, mode, compression).
    /// The path in them is replaced by `state/` under the storage's path,
    /// and the background flush is off since the storage flushes at every
    /// checkpoint.
    pub fn set_database_options(&mut self, options: sled::Config) -> &mut Self {
        self.database_options = options;
        self
    }

    /// Sets how large the write-ahead log may grow before the storage
    /// checkpoints: syncs the commitlog, flushes the state record and
    /// empties the log (a few syncs). A larger value spreads that cost over
    /// more writes; a smaller one shortens the replay on open after a crash.
    /// Either way the log stays below this plus one batch.
    pub fn set_wal_checkpoint_bytes(&mut self, bytes: u64) -> &mut Self {
        self.wal_checkpoint_bytes = Some(bytes);
        self
    }

    /// The write-ahead log's checkpoint threshold, if set.
    pub fn wal_checkpoint_bytes(&self) -> Option<u64> {
        self.wal_checkpoint_bytes
    }

    /// The storage's directory, if set.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The commit log's options, if set.
    pub fn commitlog_options(&self) -> Option<&LogOptions> {
        self.commitlog_options.as_ref()
    }

    /// The state database's options.
    pub fn database_options(&self) -> &sled::Config {
        &self.database_options
    }
}

/// The user's database options with the path replaced by `path`.
///
/// `sled::Config::path` panics unless the config is the only handle on its
/// settings, and a config cloned out of a `PersistentStorageConfig` is
/// shared. So a fresh config is built and the user's settings are copied
/// over (sled exposes them through `Deref`); `temporary` and `create_new` are
/// left out, since a storage is neither. The background flush is turned off:
/// the storage flushes at every checkpoint, and sled's flusher thread would
/// hold the database (and its file lock) for a while after the storage is
/// dropped, so that reopening the path at once would fail.
pub(crate) fn database_config(user: &sled::Config, path: &Path) -> sled::Config {
    sled::Config::new()
        .path(path)
        .cache_capacity(user.cache_capacity)
        .mode(user.mode)
        .use_compression(user.use_compression)
        .compression_factor(user.compression_factor)
        .flush_every_ms(None)
        .segment_size(user.segment_size)
        .idgen_persist_interval(user.idgen_persist_interval)
        .print_profile_on_drop(user.print_profile_on_drop)
}
