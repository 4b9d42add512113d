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
//!   `persistent`, on by default) keeps the entries in a `commitlog`, the
//!   small state in a `sled` database and the snapshot (and the stop-sign)
//!   in files of their own,
//!   and syncs them before a write returns. A server restarted on the same
//!   directory reopens it, builds `OmniPaxos` on it and calls
//!   `fail_recovery()`. Choose it when a decided entry must survive a crash
//!   of the whole cluster. Its entries and snapshots are serialised with
//!   serde (bincode), so they must implement `Serialize` and
//!   `DeserializeOwned`.
//!
//! # The durability contract of `PersistentStorage`
//!
//! * **A write is durable when it returns `Ok`.** The commitlog segment and
//!   index are fsynced, a new snapshot file and its directory are fsynced,
//!   and the sled database is flushed (which fsyncs its log) before any
//!   write method returns, so the write survives `kill -9` and, as far as
//!   the disk honours fsync, a power loss.
//! * **Group commit.** A batch ([`write_atomically`](omnipaxos::storage::Storage::write_atomically),
//!   `append_entries`) costs one sync of each store it touches, however many
//!   entries it holds; the protocol batches writes (`batch_size`), so under
//!   load the sync cost is shared by many entries.
//! * **All-or-nothing across the stores.** The state record in sled says
//!   which commitlog offsets hold the log and which file holds the snapshot;
//!   flushing it is the single commit point of every batch. Entries past the
//!   committed range (a crash between writing the commitlog and flushing
//!   sled) are ignored and moved out of the log on the next open, as is a
//!   torn commitlog tail, so a crash at any point recovers to the state
//!   before or after the batch, never a mix. A batch that replaces entries
//!   commits them through a redo record and finishes the rewrite after the
//!   commit point, on open if need be.
//! * **A commit writes only what changed.** The snapshot is not kept in
//!   sled (which rewrites large values beside hot keys again and again, and
//!   keeps the copies): it is written once per compaction, into
//!   `records/snapshot-<generation>`, and the state record names it with its
//!   length and checksum. So are the stop-sign and the previous
//!   configuration's end, which carry the user's metadata. The state record
//!   that every commit rewrites has a fixed size, so a commit costs the same
//!   whatever the snapshot's size.
//! * **Space is reclaimed.** A replaced snapshot's file is deleted as soon
//!   as the state record naming its successor is flushed; commitlog segments
//!   wholly below the log's start are deleted when a trim or snapshot moves
//!   the start; entries that a committed batch replaced are deleted once the
//!   rewrite is done. After a crash, open deletes every such leftover (a
//!   record file the committed state does not name, a segment below the
//!   start) and lists what it deleted in its
//!   [`OpenReport`](persistent_storage::OpenReport).
//! * **Trim is cheap.** Trimming moves the log's start in the state record and
//!   deletes the commitlog segments that lie wholly below it: the cost grows
//!   with what is dropped, never with what is kept.
//! * **Bad input is an error, never a panic or a silent repair.** A path that
//!   is a file, a directory from something else, a missing or truncated
//!   segment, a damaged entry, state record or snapshot file, or an entry
//!   that does not deserialise yields a
//!   [`StorageError`](omnipaxos::errors::StorageError) naming the file and
//!   the problem. Open deletes nothing but what no committed state can need
//!   (above); what lies past the commit point is moved, byte for byte, into
//!   a `quarantine/` directory inside the commitlog directory.
//! * **After a failed write, reopen.** A write that fails half-way (disk
//!   full, permission denied) returns the error and leaves the storage
//!   refusing every later call; the protocol stops acting on a storage error
//!   anyway, and reopening the directory recovers the last committed state.
//!
//! The crash tests (`omnipaxos_storage/tests/crash.rs`) kill a writing
//! process with SIGKILL at random moments and check this contract after each
//! kill, and open damaged directories.
//!
//! One limit is sled's: it checksums its log and treats a damaged record as
//! the torn end of the log, recovering to the state before it. A flipped
//! byte in the state database can therefore roll the state back to an
//! earlier committed one instead of failing the open. The entries committed
//! after that earlier state are then past the commit point as far as the
//! open can tell; they end up in `quarantine/`, not deleted, so an operator
//! can recover them. (Telling such a rollback apart from a torn write needs a
//! second witness of the commit point in the commitlog itself; that is not
//! implemented yet.)
//!
//! # Sizing a disk for `PersistentStorage`
//!
//! A data directory holds at most about:
//!
//! ```text
//!   2 x the snapshot          (the old one lives until the new one commits)
//! + the log since the last compaction, serialised, plus 20 bytes per entry
//! + one commitlog segment     (the trimmed entries of the segment the log
//!                              starts in; 32 MiB unless set_commitlog_options
//!                              says otherwise, and commitlog's own default,
//!                              should you pass LogOptions::new, is 1 GB)
//! + 8 bytes per entry of index, for the segments held
//! + a few MiB of state database
//! + quarantine/               (only after crashes; see below)
//! ```
//!
//! So the disk needed is set by how large the application's state is and
//! how often it compacts, not by how long the server has run. For example, a
//! key-value store with 10 MiB of data, 150-byte entries and a snapshot
//! every 10,000 entries needs about 2 x 10 + 1.5 + 32 + 4 = 58 MiB; the
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
//! With the `conformance` feature, the [`conformance`] module runs the whole
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
