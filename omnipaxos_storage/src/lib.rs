//! Ready-made [`Storage`](omnipaxos::storage::Storage) backends for
//! [`omnipaxos`].
//!
//! An `OmniPaxos` node writes its log and its protocol state (promised
//! ballot, accepted round, decided index, compacted index, stop-sign,
//! snapshot) through the `Storage` trait, and relies on two promises from
//! it: a write that returns `Ok` is as durable as the backend is meant to be,
//! and a batch given to `write_atomically` is applied whole or not at all.
//! Log indices are absolute: trimming a prefix never renumbers what follows.
//!
//! This crate has two backends that keep those promises to different
//! degrees of durability:
//!
//! * [`MemoryStorage`] keeps everything in
//!   memory. It is fast and never fails for I/O reasons, but a crash loses
//!   it all, so a restarted server must catch up from its peers as if new.
//!   Use it for tests, simulations, and deployments where every server
//!   failing at once is not a concern.
//! * `PersistentStorage` (coming next) keeps the entries in an append-only
//!   commit log and the state in an embedded database, and syncs them
//!   before a write returns. A server restarted on the same directory
//!   recovers its state, and only then calls `fail_recovery()`. Choose it when
//!   a decided entry must survive a crash of the whole cluster.
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

pub mod memory_storage;

pub use memory_storage::MemoryStorage;
