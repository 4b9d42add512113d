//! Ready-made [`Storage`](omnipaxos::storage::Storage) backends for
//! [`omnipaxos`], and the test suite every backend must pass.
//!
//! An `OmniPaxos` node writes its log and its protocol state (promised
//! ballot, accepted round, decided index, compacted index, stop-sign,
//! snapshot) through the `Storage` trait, and relies on two promises from
//! it: a write that returns `Ok` is as durable as the backend is meant to be,
//! and a batch given to `write_atomically` is applied whole or not at all.
//! Log indices are absolute: trimming a prefix never renumbers what follows.
//!
//! # Which storage
//!
//! * [`MemoryStorage`] keeps everything in memory. It is fast and never fails
//!   for I/O reasons, but a crash loses it all, so a restarted server must
//!   catch up from its peers as if new. Use it for tests, simulations, and
//!   deployments where every server failing at once is not a concern.
//! * [`PersistentStorage`] (feature
//!   `persistent`, on by default) logs every write in a write-ahead log and
//!   syncs it before the write returns; the entries live in a `commitlog`,
//!   a checkpoint of the small state in a `sled` database and the snapshot
//!   (and the stop-sign, and the origin ids of the entries) in files of
//!   their own.
//!   A server restarted on the same
//!   directory reopens it, builds `OmniPaxos` on it and calls
//!   `fail_recovery()`. Choose it when a decided entry must survive a crash
//!   of the whole cluster. Its entries and snapshots are serialised with
//!   serde (bincode), so they must implement `Serialize` and
//!   `DeserializeOwned`.
//!
//! # The durability contract of `PersistentStorage`
//!
//! * **A write is durable when it returns `Ok`.** Every batch has one commit
//!   point, synced before the write method returns, so the write survives
//!   `kill -9` and, as far as the disk honours `fdatasync`, a power loss.
//! * **One sync per write in the common case.** A batch that appends
//!   entries, trims, or sets the promise, accepted round, decided or
//!   compacted index, the entries' origin ids, the origin table or the
//!   incarnation is one checksummed, length-prefixed record in the
//!   write-ahead log (`<path>/wal`): the batch's entries, its change to the
//!   origin ids and the new state, appended with one write and synced with
//!   one `fdatasync`. That sync is
//!   the commit point. The entries then go to the commitlog and nothing is
//!   synced there; the state database is not written at all. A batch costs
//!   this one sync however many entries it holds, and the protocol batches
//!   writes (`batch_size`), so under load the sync is shared by many
//!   entries.
//! * **Checkpoints.** The commitlog and the state record in sled are a
//!   checkpoint, the log's records the writes since. A checkpoint syncs the
//!   commitlog, writes the origin ids and table to a new record file if the
//!   log's records changed them, flushes the state record (which names that
//!   file and the last record it holds) and empties the log. It runs when
//!   the log passes
//!   [`DEFAULT_WAL_CHECKPOINT_BYTES`](persistent_storage::DEFAULT_WAL_CHECKPOINT_BYTES)
//!   (4 MiB, see
//!   [`set_wal_checkpoint_bytes`](PersistentStorageConfig::set_wal_checkpoint_bytes)),
//!   when a trim lets a commitlog segment go, on a clean drop, and after an
//!   open replayed records. This departs from the first design, where sled
//!   held the current state and was flushed on every write: sled now holds
//!   the state as of the last checkpoint, and the current state is that
//!   plus the log.
//! * **The rare, large writes keep their own files.** A batch that sets a
//!   new snapshot, stop-sign or previous configuration's end (which carry
//!   user data of any size), or that replaces entries below the log's end,
//!   first checkpoints and then commits as before the log existed: the new
//!   value goes to a record file of its own (`records/`), synced, and the
//!   flushed state record that names it is the commit point. So a common
//!   write never copies the snapshot, and these batches cost a few syncs.
//! * **All-or-nothing, also across a crash.** Open replays the log's
//!   records after the checkpoint: the commitlog is cut back to the
//!   checkpoint's end and each record's entries are appended again, so
//!   whatever the unsynced commitlog held is never trusted. A last record
//!   that is incomplete or fails its checksum is the write a crash
//!   interrupted (it never returned): it is cut off and
//!   [`OpenReport::wal_torn_bytes`](persistent_storage::OpenReport::wal_torn_bytes)
//!   says so. A batch on the rare path has its single commit point in the
//!   state record; entries past that point (a crash before it) are moved
//!   out of the log on the next open, and a batch that replaces entries
//!   commits them through a redo record and finishes the rewrite after the
//!   commit point, on open if need be. A crash at any point recovers to the
//!   state before or after the batch, never a mix.
//! * **A commit writes only what changed.** The snapshot is written once per
//!   compaction, into `records/snapshot-<generation>`, and the state record
//!   names it with its length and checksum; so are the stop-sign and the
//!   previous configuration's end. The log record of a common batch holds
//!   its entries and a state of fixed size, whatever the snapshot's size.
//! * **Space is reclaimed.** A replaced snapshot's file is deleted as soon
//!   as the state record naming its successor is flushed; commitlog
//!   segments wholly below the log's start are deleted at the checkpoint
//!   that follows the trim (the checkpoint before it may still need them);
//!   the log is emptied at every checkpoint; entries that a committed batch
//!   replaced are deleted once the rewrite is done. After a crash, open
//!   deletes every such leftover (a record file the committed state does not
//!   name, a segment below the start) and lists what it deleted in its
//!   [`OpenReport`](persistent_storage::OpenReport).
//! * **Trim is cheap.** Trimming moves the log's start in the state and
//!   deletes the commitlog segments that lie wholly below it: the cost grows
//!   with what is dropped, never with what is kept.
//! * **Bad input is an error, never a panic or a silent repair.** A path that
//!   is a file, a directory from something else, a missing or truncated
//!   segment, a damaged entry, state record or snapshot file, a missing
//!   write-ahead log, a damaged log record followed by valid ones, or an
//!   entry that does not deserialise yields a
//!   [`StorageError`](omnipaxos::errors::StorageError) naming the file and
//!   the problem. Open deletes nothing but what no committed state can need
//!   (above); what lies past the commit point of a rare-path batch is
//!   moved, byte for byte, into a `quarantine/` directory inside the
//!   commitlog directory.
//! * **After a failed write, reopen.** A write that fails half-way (disk
//!   full, permission denied) returns the error and leaves the storage
//!   refusing every later call; the protocol stops acting on a storage error
//!   anyway, and reopening the directory recovers the last committed state.
//!   A write whose log record was synced before the failure is committed
//!   and is found again by the reopen.
//! * **Older directories are upgraded, newer ones refused.** The marker file
//!   names the format version (3 has the write-ahead log, 4 the origin
//!   ids). Open upgrades versions 1, 2 and 3 in place, with one flushed
//!   batch (for version 3 after replaying its log records, read in their
//!   old layout), and refuses a version it does not know rather than
//!   misread it. The entries of an upgraded directory have no origin ids,
//!   which the open report says.
//!
//! The crash tests (`omnipaxos_storage/tests/crash.rs`) kill a writing
//! process with SIGKILL at random moments and check this contract after each
//! kill, and open damaged directories; unit tests stop writes and
//! checkpoints at each step and damage the log.
//!
//! Two limits remain. One is sled's: it checksums its log and treats a
//! damaged record as the torn end of the log, recovering to the state before
//! it. A flipped byte in the state database can therefore roll the
//! checkpoint back to an earlier one instead of failing the open (the open
//! then fails if the write-ahead log resumes after a gap, or quarantines
//! entries past the older checkpoint). The other is the log's own: a damaged
//! *last* record looks like an interrupted write and is cut, so a flipped
//! byte in the last acknowledged write, on a disk that corrupts synced data,
//! loses that one write.
//!
//! # Sizing a disk for `PersistentStorage`
//!
//! A data directory holds at most about:
//!
//! ```text
//!   2 x the snapshot          (the old one lives until the new one commits)
//! + the log since the last compaction, serialised, plus 20 bytes per entry
//! + the write-ahead log       (below its checkpoint threshold, 4 MiB by
//!                              default, plus one batch)
//! + one commitlog segment     (the trimmed entries of the segment the log
//!                              starts in; 32 MiB unless set_commitlog_options
//!                              says otherwise, and commitlog's own default,
//!                              should you pass LogOptions::new, is 1 GB)
//! + 8 bytes per entry of index, for the segments held
//! + 2 x the origin ids        (40 bytes a run of the held log, a run being
//!                              a batch of one origin's proposals, plus the
//!                              origin table)
//! + a few MiB of state database
//! + quarantine/               (only after crashes; see below)
//! ```
//!
//! So the disk needed is set by how large the application's state is and
//! how often it compacts, not by how long the server has run. For example, a
//! key-value store with 10 MiB of data, 150-byte entries and a snapshot
//! every 10,000 entries needs about 2 x 10 + 1.5 + 4 + 32 + 4 = 62 MiB; the
//! `growth` bench (`cargo bench -p omnipaxos_storage --bench growth`) runs
//! such a load for a million writes and checks the directory against this
//! bound after every 100,000. `quarantine/` is the exception: it keeps, for
//! an operator, whatever lay past the commit point when open recovered from
//! a crash (at most the batch the crash interrupted), and nothing deletes
//! it; [`OpenReport::quarantined`](persistent_storage::OpenReport::quarantined)
//! names what was added, and its contents may be deleted at any time.
//!
//! # Testing your own storage
//!
#![cfg_attr(
    feature = "conformance",
    doc = "With the `conformance` feature, the [`conformance`] module runs the whole"
)]
#![cfg_attr(
    not(feature = "conformance"),
    doc = "With the `conformance` feature, the `conformance` module runs the whole"
)]
//! `Storage` contract against any implementation; see its documentation for
//! how to call it from a test.
//!
//! ```
//! use omnipaxos::macros::Entry;
//! use omnipaxos_storage::memory_storage::MemoryStorage;
//!
//! #[derive(Clone, Debug, Entry)]
//! pub struct KeyValue {
//!     pub key: String,
//!     pub value: u64,
//! }
//!
//! let storage: MemoryStorage<KeyValue> = MemoryStorage::default();
//! # let _ = storage;
//! ```
#![deny(missing_docs)]

mod bounds;
#[cfg(feature = "persistent")]
mod config;
#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "persistent")]
mod error;
pub mod memory_storage;
#[cfg(feature = "persistent")]
pub mod persistent_storage;
#[cfg(feature = "persistent")]
mod record_files;
#[cfg(feature = "persistent")]
mod segments;
#[cfg(feature = "persistent")]
mod wal;

pub use memory_storage::MemoryStorage;
#[cfg(feature = "persistent")]
pub use persistent_storage::{PersistentStorage, PersistentStorageConfig};
