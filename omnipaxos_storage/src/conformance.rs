//! The storage conformance suite: the whole [`Storage`] contract as a test
//! any implementation can run.
//!
//! The suite writes [`Value`]s, whose snapshot [`Sum`] adds them up, through
//! the trait only, and checks what reads return afterwards: absolute indices,
//! `append_on_prefix`, trims (below, at and past the log end), the compacted
//! index, snapshots, the stop-sign, promise and accepted round, the previous
//! configuration's end (also as part of the batch that moves a server on to
//! a new configuration), batches that
//! apply in order or fail as a whole, and, if the implementation can be
//! reopened on the same underlying store, that everything written survives a
//! reopen. For a storage that [keeps origins](Storage::keeps_origins) it
//! also checks the origin ids (read back, cut by `append_on_prefix`, trimmed
//! by `trim`, untouched by a refused batch), the origin table and the
//! incarnation; a storage that does not is sent no origin writes, and must
//! return the trait's empty defaults. A last case applies a long seeded
//! sequence of random writes (origin writes among them, if the storage keeps
//! origins) to the implementation and to [`MemoryStorage`] side by side and
//! compares every observable after each write (and after random reopens).
//!
//! Both backends of this crate pass it. To run it on your own storage, enable
//! the `conformance` feature in your dev-dependencies and call [`run`] (or
//! [`run_with_reopen`] if your storage persists) from a test; it panics, naming
//! the case, at the first violation:
//!
//! ```toml
//! [dev-dependencies]
//! omnipaxos_storage = { version = "0.1", features = ["conformance"] }
//! ```
//!
//! ```
//! use omnipaxos_storage::{conformance, memory_storage::MemoryStorage};
//!
//! // In your crate: #[test] fn my_storage_conforms() { ... }
//! conformance::run(MemoryStorage::default);
//! ```
//!
//! A persistent storage hands the reopen step a storage and gets back a new
//! one opened on the same files:
//!
//! ```
//! # #[cfg(feature = "persistent")] {
//! use omnipaxos_storage::{
//!     conformance,
//!     persistent_storage::{PersistentStorage, PersistentStorageConfig},
//! };
//!
//! let root = tempfile::tempdir().unwrap();
//! let mut n = 0;
//! conformance::run_with_reopen(
//!     || {
//!         n += 1;
//!         let config = PersistentStorageConfig::with_path(root.path().join(n.to_string()));
//!         (PersistentStorage::open(config.clone()).unwrap(), config)
//!     },
//!     |(storage, config)| {
//!         drop(storage);
//!         (PersistentStorage::open(config.clone()).unwrap(), config)
//!     },
//! );
//! # }
//! ```
//!
//! The storage type of `run_with_reopen` may carry what the reopen needs (as
//! the `(storage, config)` pair above) as long as it implements [`Storage`];
//! the suite implements `Storage` for such pairs by forwarding to the first
//! element. A wrapper storage of your own must forward
//! [`keeps_origins`](Storage::keeps_origins) and the origin getters as well,
//! or the suite (and the protocol) take it for one that keeps no origins.

use crate::memory_storage::MemoryStorage;
use omnipaxos::{
    ballot::Ballot,
    storage::{
        Entry, OriginId, OriginIds, OriginRun, OriginTable, Snapshot, Storage, StorageOp,
        StorageResult,
    },
    util::{ConfigurationEnd, NodeId, StopSign},
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The entry type the suite writes: a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Value(pub u64);

impl Entry for Value {
    type Snapshot = Sum;
}

/// The snapshot of [`Value`]s: their sum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Sum(pub u64);

impl Snapshot<Value> for Sum {
    fn create(entries: &[Value]) -> Self {
        Self(entries.iter().map(|v| v.0).sum())
    }

    fn merge(&mut self, delta: Self) {
        self.0 += delta.0;
    }

    fn use_snapshots() -> bool {
        true
    }
}

/// Makes storages for the suite: a fresh, empty one per case, and, if the
/// implementation persists, a reopened one on the same underlying store.
pub trait StorageFactory {
    /// The storage under test.
    type Storage: Storage<Value>;

    /// Returns a new, empty storage that shares nothing with earlier ones.
    fn create(&mut self) -> Self::Storage;

    /// Closes `storage` and opens the same underlying store again, as a
    /// restarted process would. The default hands the same storage back,
    /// which is right for a storage that does not persist: the reopen checks
    /// then hold trivially.
    fn reopen(&mut self, storage: Self::Storage) -> Self::Storage {
        storage
    }
}

/// A [`StorageFactory`] made of closures.
struct Closures<C, R> {
    create: C,
    reopen: Option<R>,
}

impl<S, C, R> StorageFactory for Closures<C, R>
where
    S: Storage<Value>,
    C: FnMut() -> S,
    R: FnMut(S) -> S,
{
    type Storage = S;

    fn create(&mut self) -> S {
        (self.create)()
    }

    fn reopen(&mut self, storage: S) -> S {
        match self.reopen.as_mut() {
            Some(reopen) => reopen(storage),
            None => storage,
        }
    }
}

/// Runs every case on storages made by `create`; a "reopen" hands the same
/// storage back, which suits a storage that does not persist.
pub fn run<S: Storage<Value>>(create: impl FnMut() -> S) {
    run_factory(&mut Closures {
        create,
        reopen: None::<fn(S) -> S>,
    });
}

/// Runs every case, including the reopen checks: `reopen` must close the
/// storage it is given and open the same underlying store again.
pub fn run_with_reopen<S: Storage<Value>>(create: impl FnMut() -> S, reopen: impl FnMut(S) -> S) {
    run_factory(&mut Closures {
        create,
        reopen: Some(reopen),
    });
}

/// Runs every case with storages from `factory`.
pub fn run_factory<F: StorageFactory>(factory: &mut F) {
    for (name, case) in cases::<F>() {
        // Printed before the case runs, so a panic in it is attributed.
        eprintln!("storage conformance: {name}");
        case(factory);
    }
}

type Case<F> = (&'static str, fn(&mut F));

/// Every case, by name.
fn cases<F: StorageFactory>() -> Vec<Case<F>> {
    vec![
        (
            "new_storage_is_empty_and_has_no_state",
            new_storage_is_empty,
        ),
        ("appends_extend_the_log_in_order", appends_extend_the_log),
        ("get_entries_clamps_to_the_held_range", get_entries_clamps),
        (
            "trim_drops_a_prefix_without_renumbering",
            trim_drops_a_prefix,
        ),
        ("trim_to_the_log_end_keeps_the_length", trim_to_the_end),
        (
            "trim_below_an_earlier_trim_changes_nothing",
            trim_below_earlier_trim,
        ),
        ("trim_past_the_log_end_continues_there", trim_past_the_end),
        (
            "compacted_index_hides_the_entries_below_it",
            compacted_index_hides,
        ),
        (
            "append_on_prefix_replaces_the_suffix",
            append_on_prefix_replaces,
        ),
        (
            "append_on_prefix_may_shorten_the_log",
            append_on_prefix_shortens,
        ),
        (
            "append_on_prefix_at_either_end_works",
            append_on_prefix_at_the_ends,
        ),
        (
            "append_on_prefix_out_of_range_changes_nothing",
            append_on_prefix_out_of_range,
        ),
        (
            "indices_past_the_log_end_are_refused",
            indices_past_the_end_refused,
        ),
        (
            "a_stop_sign_is_the_entry_after_the_log",
            a_stop_sign_is_the_entry_after_the_log,
        ),
        ("state_round_trips_and_can_be_cleared", state_round_trips),
        (
            "previous_configuration_end_round_trips_and_survives_reopen",
            previous_end_round_trips,
        ),
        (
            "previous_configuration_end_is_untouched_by_log_writes",
            previous_end_untouched_by_log_writes,
        ),
        (
            "previous_configuration_end_is_written_atomically_with_the_reset",
            previous_end_atomic_with_reset,
        ),
        (
            "write_atomically_applies_every_op_in_order",
            batch_applies_in_order,
        ),
        (
            "write_atomically_with_an_empty_batch_changes_nothing",
            empty_batch,
        ),
        (
            "write_atomically_with_one_failing_op_changes_nothing",
            failing_batch,
        ),
        (
            "a_batch_is_checked_against_its_own_earlier_ops",
            batch_checked_in_order,
        ),
        ("large_batches_round_trip", large_batches),
        ("everything_written_survives_a_reopen", survives_reopen),
        ("origin_ids_read_back_after_appends", origin_ids_read_back),
        (
            "append_on_prefix_cuts_the_origin_ids",
            append_on_prefix_cuts_origin_ids,
        ),
        ("trim_trims_the_origin_ids", trim_trims_origin_ids),
        (
            "a_refused_batch_changes_no_origin_ids",
            refused_batch_changes_no_origins,
        ),
        (
            "origin_table_and_incarnation_round_trip",
            origin_table_and_incarnation_round_trip,
        ),
        (
            "random_writes_match_memory_storage",
            random_writes_match_model,
        ),
    ]
}

/// Everything a reader can observe, to compare whole states.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// `get_suffix(0)`.
    pub suffix: Vec<Value>,
    /// `get_log_len()`.
    pub log_len: u64,
    /// `get_compacted_idx()`.
    pub compacted_idx: u64,
    /// `get_decided_idx()`.
    pub decided_idx: u64,
    /// `get_promise()`.
    pub promise: Option<Ballot>,
    /// `get_accepted_round()`.
    pub accepted_round: Option<Ballot>,
    /// `get_stopsign()`.
    pub stopsign: Option<StopSign>,
    /// `get_snapshot()`.
    pub snapshot: Option<Sum>,
    /// `get_previous_configuration_end()`.
    pub previous_end: Option<ConfigurationEnd>,
    /// `get_origins(0, u64::MAX)`.
    pub origins: OriginIds,
    /// `get_origin_table()`.
    pub origin_table: OriginTable,
    /// `get_incarnation()`.
    pub incarnation: u64,
}

/// Reads everything observable from `storage`; panics if a read fails.
pub fn observe<S: Storage<Value>>(storage: &S) -> Observed {
    Observed {
        suffix: storage.get_suffix(0).expect("get_suffix"),
        log_len: storage.get_log_len().expect("get_log_len"),
        compacted_idx: storage.get_compacted_idx().expect("get_compacted_idx"),
        decided_idx: storage.get_decided_idx().expect("get_decided_idx"),
        promise: storage.get_promise().expect("get_promise"),
        accepted_round: storage.get_accepted_round().expect("get_accepted_round"),
        stopsign: storage.get_stopsign().expect("get_stopsign"),
        snapshot: storage.get_snapshot().expect("get_snapshot"),
        previous_end: storage
            .get_previous_configuration_end()
            .expect("get_previous_configuration_end"),
        origins: storage.get_origins(0, u64::MAX).expect("get_origins"),
        origin_table: storage.get_origin_table().expect("get_origin_table"),
        incarnation: storage.get_incarnation().expect("get_incarnation"),
    }
}

/// How configuration `config_id - 1` ended, as the protocol records it.
fn configuration_end(config_id: u32, stop_idx: u64) -> ConfigurationEnd {
    ConfigurationEnd {
        stopsign: StopSign::with(config_id, vec![1, 2, 4], Some(vec![config_id as u8])),
        stop_idx,
        accepted_round: Ballot::with(config_id - 1, 3, 2),
    }
}

fn values(range: std::ops::Range<u64>) -> Vec<Value> {
    range.map(Value).collect()
}

/// A storage holding `0..len`, trimmed and compacted below `trimmed`.
fn storage_with<F: StorageFactory>(factory: &mut F, len: u64, trimmed: u64) -> F::Storage {
    let mut storage = factory.create();
    storage.append_entries(values(0..len)).expect("append");
    storage
        .write_atomically(vec![
            StorageOp::Trim(trimmed),
            StorageOp::SetCompactedIdx(trimmed),
        ])
        .expect("trim and compact");
    storage
}

/// Reopens the storage, checking that nothing observable changed.
fn reopened<F: StorageFactory>(factory: &mut F, storage: F::Storage) -> F::Storage {
    let before = observe(&storage);
    let storage = factory.reopen(storage);
    assert_eq!(observe(&storage), before, "a reopen changed what is stored");
    storage
}

#[track_caller]
fn assert_refused<T>(result: StorageResult<T>, what: &str) {
    assert!(result.is_err(), "{what} was accepted but must be refused");
}

fn new_storage_is_empty<F: StorageFactory>(factory: &mut F) {
    let storage = factory.create();
    assert_eq!(
        observe(&storage),
        Observed {
            suffix: vec![],
            log_len: 0,
            compacted_idx: 0,
            decided_idx: 0,
            promise: None,
            accepted_round: None,
            stopsign: None,
            snapshot: None,
            previous_end: None,
            origins: OriginIds::new(),
            origin_table: OriginTable::new(),
            incarnation: 0,
        }
    );
    let storage = reopened(factory, storage);
    assert_eq!(storage.get_log_len().unwrap(), 0);
}

fn appends_extend_the_log<F: StorageFactory>(factory: &mut F) {
    let mut storage = factory.create();
    storage.append_entry(Value(0)).unwrap();
    storage.append_entries(values(1..4)).unwrap();
    storage.append_entries(vec![]).unwrap();
    storage.append_entry(Value(4)).unwrap();
    assert_eq!(storage.get_log_len().unwrap(), 5);
    assert_eq!(storage.get_suffix(0).unwrap(), values(0..5));
    let mut storage = reopened(factory, storage);
    storage.append_entry(Value(5)).unwrap();
    assert_eq!(storage.get_suffix(0).unwrap(), values(0..6));
}

fn get_entries_clamps<F: StorageFactory>(factory: &mut F) {
    let storage = storage_with(factory, 10, 4);
    assert_eq!(storage.get_entries(5, 7).unwrap(), values(5..7));
    assert_eq!(
        storage.get_entries(0, 6).unwrap(),
        values(4..6),
        "below the compacted index"
    );
    assert_eq!(
        storage.get_entries(8, 100).unwrap(),
        values(8..10),
        "past the log end"
    );
    assert_eq!(storage.get_entries(0, u64::MAX).unwrap(), values(4..10));
    assert_eq!(storage.get_entries(7, 7).unwrap(), vec![]);
    assert_eq!(storage.get_entries(7, 3).unwrap(), vec![], "reversed range");
    assert_eq!(storage.get_entries(10, 12).unwrap(), vec![]);
    assert_eq!(storage.get_entries(0, 4).unwrap(), vec![], "all compacted");
    assert_eq!(storage.get_suffix(6).unwrap(), values(6..10));
    assert_eq!(storage.get_suffix(2).unwrap(), values(4..10));
    assert_eq!(storage.get_suffix(10).unwrap(), vec![]);
    assert_eq!(storage.get_suffix(u64::MAX).unwrap(), vec![]);
}

fn trim_drops_a_prefix<F: StorageFactory>(factory: &mut F) {
    let mut storage = storage_with(factory, 6, 0);
    storage.trim(2).unwrap();
    assert_eq!(storage.get_log_len().unwrap(), 6);
    assert_eq!(storage.get_entries(2, 4).unwrap(), values(2..4));
    storage.append_entry(Value(6)).unwrap();
    storage.trim(5).unwrap();
    assert_eq!(storage.get_log_len().unwrap(), 7);
    assert_eq!(storage.get_suffix(0).unwrap(), values(5..7));
    assert_eq!(storage.get_entries(6, 7).unwrap(), vec![Value(6)]);
    let storage = reopened(factory, storage);
    assert_eq!(storage.get_entries(6, 7).unwrap(), vec![Value(6)]);
}

fn trim_to_the_end<F: StorageFactory>(factory: &mut F) {
    let mut storage = storage_with(factory, 3, 0);
    storage.trim(3).unwrap();
    assert_eq!(storage.get_log_len().unwrap(), 3);
    assert_eq!(storage.get_suffix(0).unwrap(), vec![]);
    let mut storage = reopened(factory, storage);
    storage.append_entry(Value(3)).unwrap();
    assert_eq!(storage.get_suffix(0).unwrap(), vec![Value(3)]);
    assert_eq!(storage.get_log_len().unwrap(), 4);
}

fn trim_below_earlier_trim<F: StorageFactory>(factory: &mut F) {
    let mut storage = storage_with(factory, 6, 4);
    let before = observe(&storage);
    storage.trim(2).unwrap();
    storage.trim(4).unwrap();
    assert_eq!(observe(&storage), before);
}

fn trim_past_the_end<F: StorageFactory>(factory: &mut F) {
    // How a snapshot that reaches past the local log is installed.
    let mut storage = storage_with(factory, 6, 2);
    storage
        .write_atomically(vec![
            StorageOp::Trim(9),
            StorageOp::SetCompactedIdx(9),
            StorageOp::SetSnapshot(Some(Sum(36))),
        ])
        .unwrap();
    assert_eq!(storage.get_log_len().unwrap(), 9);
    assert_eq!(storage.get_suffix(0).unwrap(), vec![]);
    let mut storage = reopened(factory, storage);
    storage.append_entry(Value(9)).unwrap();
    assert_eq!(storage.get_entries(0, 20).unwrap(), vec![Value(9)]);
    assert_eq!(storage.get_log_len().unwrap(), 10);
    storage
        .append_on_prefix(9, vec![Value(90), Value(91)])
        .unwrap();
    assert_eq!(storage.get_suffix(0).unwrap(), vec![Value(90), Value(91)]);
    let storage = reopened(factory, storage);
    assert_eq!(storage.get_log_len().unwrap(), 11);
}

fn compacted_index_hides<F: StorageFactory>(factory: &mut F) {
    let mut storage = storage_with(factory, 6, 0);
    storage.trim(3).unwrap();
    assert_eq!(
        storage.get_compacted_idx().unwrap(),
        0,
        "trim moved the compacted index"
    );
    storage.set_compacted_idx(4).unwrap();
    assert_eq!(storage.get_compacted_idx().unwrap(), 4);
    assert_eq!(storage.get_suffix(0).unwrap(), values(4..6));
    let before = observe(&storage);
    assert_refused(
        storage.append_on_prefix(3, vec![]),
        "append_on_prefix below the compacted index",
    );
    assert_eq!(observe(&storage), before);
}

fn append_on_prefix_replaces<F: StorageFactory>(factory: &mut F) {
    let mut storage = storage_with(factory, 6, 2);
    storage.append_on_prefix(4, values(40..43)).unwrap();
    assert_eq!(storage.get_log_len().unwrap(), 7);
    let expected = [values(2..4), values(40..43)].concat();
    assert_eq!(storage.get_suffix(0).unwrap(), expected);
    let mut storage = reopened(factory, storage);
    storage.append_entry(Value(43)).unwrap();
    assert_eq!(storage.get_suffix(5).unwrap(), values(41..44));
}

fn append_on_prefix_shortens<F: StorageFactory>(factory: &mut F) {
    let mut storage = storage_with(factory, 6, 2);
    storage.append_on_prefix(3, vec![Value(30)]).unwrap();
    assert_eq!(storage.get_log_len().unwrap(), 4);
    assert_eq!(storage.get_suffix(0).unwrap(), vec![Value(2), Value(30)]);
    let storage = reopened(factory, storage);
    assert_eq!(storage.get_log_len().unwrap(), 4);
}

fn append_on_prefix_at_the_ends<F: StorageFactory>(factory: &mut F) {
    let mut storage = storage_with(factory, 6, 2);
    storage.append_on_prefix(6, vec![Value(6)]).unwrap();
    assert_eq!(storage.get_suffix(0).unwrap(), values(2..7));
    storage.append_on_prefix(2, vec![Value(20)]).unwrap();
    assert_eq!(storage.get_log_len().unwrap(), 3);
    assert_eq!(storage.get_suffix(0).unwrap(), vec![Value(20)]);
    let storage = reopened(factory, storage);
    assert_eq!(storage.get_suffix(0).unwrap(), vec![Value(20)]);
}

fn append_on_prefix_out_of_range<F: StorageFactory>(factory: &mut F) {
    let mut storage = storage_with(factory, 6, 2);
    let before = observe(&storage);
    assert_refused(
        storage.append_on_prefix(7, vec![Value(7)]),
        "append_on_prefix past the end",
    );
    assert_refused(
        storage.append_on_prefix(1, vec![Value(1)]),
        "append_on_prefix below the start",
    );
    assert_eq!(observe(&storage), before);
}

fn indices_past_the_end_refused<F: StorageFactory>(factory: &mut F) {
    let mut storage = storage_with(factory, 3, 0);
    assert_refused(
        storage.set_decided_idx(4),
        "a decided index past the log end",
    );
    assert_refused(
        storage.set_compacted_idx(4),
        "a compacted index past the log end",
    );
    storage.set_decided_idx(3).unwrap();
    storage.set_compacted_idx(3).unwrap();
    assert_eq!(storage.get_decided_idx().unwrap(), 3);
    assert_eq!(storage.get_compacted_idx().unwrap(), 3);
}

fn a_stop_sign_is_the_entry_after_the_log<F: StorageFactory>(factory: &mut F) {
    let mut storage = storage_with(factory, 3, 0);
    assert_refused(
        storage.set_decided_idx(4),
        "a decided index past the log end without a stop-sign",
    );
    storage
        .set_stopsign(Some(StopSign::with(2, vec![1, 2], None)))
        .unwrap();
    // Deciding the stop-sign: index 3 is its slot.
    storage.set_decided_idx(4).unwrap();
    assert_refused(
        storage.set_decided_idx(5),
        "a decided index past the stop-sign",
    );
    let storage = reopened(factory, storage);
    assert_eq!(storage.get_decided_idx().unwrap(), 4);
    assert_eq!(storage.get_log_len().unwrap(), 3);
}

fn state_round_trips<F: StorageFactory>(factory: &mut F) {
    let mut storage = factory.create();
    let stopsign = StopSign::with(2, vec![5, 6, 7], Some(vec![1, 2]));
    storage.set_promise(Ballot::with(3, 1, 5)).unwrap();
    storage.set_accepted_round(Ballot::with(2, 0, 6)).unwrap();
    storage.set_stopsign(Some(stopsign.clone())).unwrap();
    storage.set_snapshot(Some(Sum(42))).unwrap();
    let check = |storage: &F::Storage| {
        assert_eq!(storage.get_promise().unwrap(), Some(Ballot::with(3, 1, 5)));
        assert_eq!(
            storage.get_accepted_round().unwrap(),
            Some(Ballot::with(2, 0, 6))
        );
        assert_eq!(storage.get_stopsign().unwrap(), Some(stopsign.clone()));
        assert_eq!(storage.get_snapshot().unwrap(), Some(Sum(42)));
    };
    check(&storage);
    let mut storage = reopened(factory, storage);
    check(&storage);
    storage.set_stopsign(None).unwrap();
    storage.set_snapshot(None).unwrap();
    assert_eq!(storage.get_stopsign().unwrap(), None);
    assert_eq!(storage.get_snapshot().unwrap(), None);
    let storage = reopened(factory, storage);
    assert_eq!(storage.get_snapshot().unwrap(), None);
}

fn previous_end_round_trips<F: StorageFactory>(factory: &mut F) {
    let mut storage = factory.create();
    storage
        .set_previous_configuration_end(Some(configuration_end(2, 7)))
        .unwrap();
    assert_eq!(
        storage.get_previous_configuration_end().unwrap(),
        Some(configuration_end(2, 7))
    );
    let mut storage = reopened(factory, storage);
    assert_eq!(
        storage.get_previous_configuration_end().unwrap(),
        Some(configuration_end(2, 7))
    );
    // A later configuration's end replaces it.
    storage
        .set_previous_configuration_end(Some(configuration_end(3, 12)))
        .unwrap();
    let mut storage = reopened(factory, storage);
    assert_eq!(
        storage.get_previous_configuration_end().unwrap(),
        Some(configuration_end(3, 12))
    );
    storage.set_previous_configuration_end(None).unwrap();
    assert_eq!(storage.get_previous_configuration_end().unwrap(), None);
    let storage = reopened(factory, storage);
    assert_eq!(storage.get_previous_configuration_end().unwrap(), None);
}

fn previous_end_untouched_by_log_writes<F: StorageFactory>(factory: &mut F) {
    let mut storage = storage_with(factory, 6, 0);
    storage
        .set_previous_configuration_end(Some(configuration_end(2, 3)))
        .unwrap();
    storage.append_on_prefix(2, values(20..22)).unwrap();
    storage
        .write_atomically(vec![
            StorageOp::Trim(3),
            StorageOp::SetCompactedIdx(3),
            StorageOp::SetSnapshot(Some(Sum(3))),
            StorageOp::SetStopsign(Some(StopSign::with(3, vec![1, 2], None))),
        ])
        .unwrap();
    storage.set_stopsign(None).unwrap();
    storage.set_snapshot(None).unwrap();
    let storage = reopened(factory, storage);
    assert_eq!(
        storage.get_previous_configuration_end().unwrap(),
        Some(configuration_end(2, 3))
    );
}

/// The batch with which the protocol moves a server on to configuration
/// `config_id`, keeping the log below `decided_end` as its decided log.
fn reset_batch(config_id: u32, decided_end: u64, stop_idx: u64) -> Vec<StorageOp<Value>> {
    vec![
        StorageOp::AppendOnPrefix(decided_end, vec![]),
        StorageOp::SetStopsign(None),
        StorageOp::SetDecidedIndex(decided_end),
        StorageOp::SetPromise(Ballot::default()),
        StorageOp::SetAcceptedRound(Ballot::default()),
        StorageOp::SetPreviousConfigurationEnd(Some(configuration_end(config_id, stop_idx))),
    ]
}

fn previous_end_atomic_with_reset<F: StorageFactory>(factory: &mut F) {
    // A server of configuration 2 (it ended configuration 1 at index 3)
    // decided its stop-sign at index 8, after the log 0..8.
    let mut storage = storage_with(factory, 10, 2);
    storage
        .write_atomically(vec![
            StorageOp::AppendOnPrefix(8, vec![]),
            StorageOp::SetStopsign(Some(StopSign::with(3, vec![1, 2, 4], Some(vec![3])))),
            StorageOp::SetDecidedIndex(9),
            StorageOp::SetPromise(Ballot::with(2, 5, 1)),
            StorageOp::SetAcceptedRound(Ballot::with(2, 3, 2)),
            StorageOp::SetPreviousConfigurationEnd(Some(configuration_end(2, 3))),
        ])
        .unwrap();
    let before = observe(&storage);

    // A reset whose last op is refused changes nothing, the previous end included.
    let mut failing = reset_batch(3, 8, 8);
    failing.push(StorageOp::SetCompactedIdx(9));
    assert_refused(
        storage.write_atomically(failing),
        "a reset batch with a compacted index past the log end",
    );
    assert_eq!(
        observe(&storage),
        before,
        "a refused reset changed the storage"
    );

    storage.write_atomically(reset_batch(3, 8, 8)).unwrap();
    let expected = Observed {
        suffix: values(2..8),
        log_len: 8,
        compacted_idx: 2,
        decided_idx: 8,
        promise: Some(Ballot::default()),
        accepted_round: Some(Ballot::default()),
        stopsign: None,
        snapshot: None,
        previous_end: Some(configuration_end(3, 8)),
        origins: OriginIds::new(),
        origin_table: OriginTable::new(),
        incarnation: 0,
    };
    assert_eq!(observe(&storage), expected);
    let storage = reopened(factory, storage);
    assert_eq!(observe(&storage), expected);
}

fn batch_applies_in_order<F: StorageFactory>(factory: &mut F) {
    let mut storage = storage_with(factory, 4, 0);
    let stopsign = StopSign::with(2, vec![1, 2], None);
    storage
        .write_atomically(vec![
            StorageOp::AppendOnPrefix(2, values(20..22)),
            StorageOp::AppendEntry(Value(22)),
            StorageOp::AppendEntries(values(23..25)),
            StorageOp::SetPromise(Ballot::with(4, 0, 2)),
            StorageOp::SetAcceptedRound(Ballot::with(4, 0, 2)),
            // Both are checked against the log as the appends above left it.
            StorageOp::SetDecidedIndex(7),
            StorageOp::Trim(3),
            StorageOp::SetCompactedIdx(3),
            StorageOp::SetSnapshot(Some(Sum(20))),
            StorageOp::SetStopsign(Some(stopsign.clone())),
            StorageOp::SetPreviousConfigurationEnd(Some(configuration_end(2, 9))),
        ])
        .unwrap();
    let expected = Observed {
        suffix: values(21..25),
        log_len: 7,
        compacted_idx: 3,
        decided_idx: 7,
        promise: Some(Ballot::with(4, 0, 2)),
        accepted_round: Some(Ballot::with(4, 0, 2)),
        stopsign: Some(stopsign),
        snapshot: Some(Sum(20)),
        previous_end: Some(configuration_end(2, 9)),
        origins: OriginIds::new(),
        origin_table: OriginTable::new(),
        incarnation: 0,
    };
    assert_eq!(observe(&storage), expected);
    let storage = reopened(factory, storage);
    assert_eq!(observe(&storage), expected);
}

fn empty_batch<F: StorageFactory>(factory: &mut F) {
    let mut storage = storage_with(factory, 4, 1);
    let before = observe(&storage);
    storage.write_atomically(vec![]).unwrap();
    assert_eq!(observe(&storage), before);
}

fn failing_batch<F: StorageFactory>(factory: &mut F) {
    let mut storage = storage_with(factory, 4, 1);
    storage.set_promise(Ballot::with(1, 0, 1)).unwrap();
    let before = observe(&storage);
    let batch = |failing: StorageOp<Value>| {
        vec![
            StorageOp::AppendEntries(values(4..6)),
            StorageOp::SetPromise(Ballot::with(9, 0, 9)),
            StorageOp::SetAcceptedRound(Ballot::with(9, 0, 9)),
            StorageOp::SetDecidedIndex(5),
            StorageOp::SetStopsign(Some(StopSign::with(2, vec![1], None))),
            StorageOp::SetSnapshot(Some(Sum(1))),
            StorageOp::SetPreviousConfigurationEnd(Some(configuration_end(3, 4))),
            StorageOp::AppendOnPrefix(3, values(30..33)),
            StorageOp::Trim(2),
            failing,
            StorageOp::AppendEntry(Value(99)),
        ]
    };
    // Each op is valid against the original log but not against the log
    // as the ops before it leave it (2..6), or is invalid outright.
    let failing = [
        StorageOp::AppendOnPrefix(1, vec![]),
        StorageOp::AppendOnPrefix(7, vec![]),
        // 7 is the slot of the stop-sign stored earlier in the batch.
        StorageOp::SetDecidedIndex(8),
        StorageOp::SetCompactedIdx(7),
    ];
    for op in failing {
        let described = format!("{op:?}");
        assert_refused(storage.write_atomically(batch(op)), &described);
        assert_eq!(
            observe(&storage),
            before,
            "a refused batch ending in {described} changed the storage"
        );
    }
    let storage = reopened(factory, storage);
    assert_eq!(observe(&storage), before);
}

fn batch_checked_in_order<F: StorageFactory>(factory: &mut F) {
    let mut storage = factory.create();
    storage
        .write_atomically(vec![
            StorageOp::AppendEntries(values(0..5)),
            StorageOp::Trim(5),
            StorageOp::AppendOnPrefix(5, values(5..7)),
            StorageOp::SetCompactedIdx(5),
        ])
        .unwrap();
    assert_eq!(storage.get_log_len().unwrap(), 7);
    assert_eq!(storage.get_suffix(0).unwrap(), values(5..7));

    // Shortening the log first makes a later append at the old end invalid.
    let before = observe(&storage);
    let result = storage.write_atomically(vec![
        StorageOp::AppendOnPrefix(6, vec![]),
        StorageOp::AppendOnPrefix(7, vec![]),
    ]);
    assert_refused(
        result,
        "an append_on_prefix past the end an earlier op left",
    );
    assert_eq!(observe(&storage), before);
}

fn large_batches<F: StorageFactory>(factory: &mut F) {
    let mut storage = factory.create();
    storage.append_entries(values(0..5000)).unwrap();
    storage
        .append_on_prefix(2500, values(10_000..12_500))
        .unwrap();
    storage.trim(1000).unwrap();
    let expected = [values(1000..2500), values(10_000..12_500)].concat();
    assert_eq!(storage.get_suffix(0).unwrap(), expected);
    assert_eq!(
        storage.get_entries(2499, 2501).unwrap(),
        vec![Value(2499), Value(10_000)]
    );
    let storage = reopened(factory, storage);
    assert_eq!(storage.get_suffix(0).unwrap(), expected);
}

fn survives_reopen<F: StorageFactory>(factory: &mut F) {
    let mut storage = factory.create();
    storage
        .write_atomically(vec![
            StorageOp::AppendEntries(values(0..10)),
            StorageOp::SetPromise(Ballot::with(5, 1, 2)),
            StorageOp::SetAcceptedRound(Ballot::with(5, 1, 2)),
            StorageOp::SetDecidedIndex(8),
        ])
        .unwrap();
    storage
        .write_atomically(vec![
            StorageOp::Trim(4),
            StorageOp::SetCompactedIdx(4),
            StorageOp::SetSnapshot(Some(Sum(6))),
            StorageOp::SetStopsign(Some(StopSign::with(3, vec![1, 2, 3], None))),
        ])
        .unwrap();
    let mut storage = reopened(factory, storage);
    // And again after more writes on the reopened store.
    storage.append_on_prefix(9, values(90..92)).unwrap();
    let storage = reopened(factory, storage);
    assert_eq!(
        storage.get_suffix(0).unwrap(),
        [values(4..9), values(90..92)].concat()
    );
}

/// The ids of one run: indices `idx..idx + len` hold the proposals
/// `seq, seq + 1, ...` of `origin` in its `incarnation`.
fn ids_run(idx: u64, len: u64, origin: NodeId, incarnation: u64, seq: u64) -> OriginIds {
    let mut ids = OriginIds::new();
    for k in 0..len {
        let id = OriginId {
            origin,
            incarnation,
            seq: seq + k,
        };
        assert!(ids.push(idx + k, id), "the suite builds runs in order");
    }
    ids
}

/// The runs one after the other, joined where they continue each other, as
/// a storage keeps them.
fn joined(parts: &[OriginIds]) -> OriginIds {
    let mut ids = OriginIds::new();
    for part in parts {
        assert!(ids.append(part), "the suite joins runs in order");
    }
    ids
}

#[track_caller]
fn assert_origins<S: Storage<Value>>(storage: &S, expected: &OriginIds, what: &str) {
    assert_eq!(
        &storage.get_origins(0, u64::MAX).expect("get_origins"),
        expected,
        "{what}"
    );
}

fn origin_ids_read_back<F: StorageFactory>(factory: &mut F) {
    let mut storage = factory.create();
    if !storage.keeps_origins() {
        return;
    }
    // A leader's batch of its own proposals, a forwarded batch of another
    // origin's, entries without ids, and the first origin again.
    storage
        .write_atomically(vec![
            StorageOp::AppendEntries(values(0..5)),
            StorageOp::SetOrigins(0, ids_run(0, 5, 1, 1, 1)),
        ])
        .unwrap();
    storage
        .write_atomically(vec![
            StorageOp::AppendEntries(values(5..8)),
            StorageOp::SetOrigins(5, ids_run(5, 3, 2, 1, 10)),
        ])
        .unwrap();
    storage.append_entries(values(8..10)).unwrap();
    storage
        .write_atomically(vec![
            StorageOp::AppendEntry(Value(10)),
            StorageOp::SetOrigins(10, ids_run(10, 1, 1, 1, 6)),
        ])
        .unwrap();
    let all = joined(&[
        ids_run(0, 5, 1, 1, 1),
        ids_run(5, 3, 2, 1, 10),
        ids_run(10, 1, 1, 1, 6),
    ]);
    assert_origins(&storage, &all, "ids of three batches");
    assert_eq!(
        storage.get_origins(3, 6).unwrap(),
        joined(&[ids_run(3, 2, 1, 1, 4), ids_run(5, 1, 2, 1, 10)]),
        "a range across two runs"
    );
    assert_eq!(
        storage.get_origins(8, 10).unwrap(),
        OriginIds::new(),
        "entries written without ids have none"
    );
    assert_eq!(storage.get_origins(6, 3).unwrap(), OriginIds::new());
    assert_eq!(
        storage.get_origins(10, 100).unwrap(),
        ids_run(10, 1, 1, 1, 6)
    );
    let mut storage = reopened(factory, storage);
    // Appended at the end through append_on_prefix, continuing a run.
    storage
        .write_atomically(vec![
            StorageOp::AppendOnPrefix(11, values(11..13)),
            StorageOp::SetOrigins(11, ids_run(11, 2, 1, 1, 7)),
        ])
        .unwrap();
    assert_eq!(
        storage.get_origins(10, 13).unwrap(),
        ids_run(10, 3, 1, 1, 6)
    );
    // Ids given again from an index forget the ones there and above.
    storage
        .write_atomically(vec![StorageOp::SetOrigins(6, ids_run(7, 1, 3, 2, 1))])
        .unwrap();
    let expected = joined(&[
        ids_run(0, 5, 1, 1, 1),
        ids_run(5, 1, 2, 1, 10),
        ids_run(7, 1, 3, 2, 1),
    ]);
    assert_origins(&storage, &expected, "after ids set again from 6");
    let storage = reopened(factory, storage);
    assert_origins(&storage, &expected, "after a reopen");
}

fn append_on_prefix_cuts_origin_ids<F: StorageFactory>(factory: &mut F) {
    let mut storage = factory.create();
    if !storage.keeps_origins() {
        return;
    }
    storage
        .write_atomically(vec![
            StorageOp::AppendEntries(values(0..10)),
            StorageOp::SetOrigins(0, ids_run(0, 10, 1, 1, 1)),
        ])
        .unwrap();
    // A rewrite without ids: the replaced entries' ids go.
    storage.append_on_prefix(6, values(60..62)).unwrap();
    assert_origins(&storage, &ids_run(0, 6, 1, 1, 1), "after a rewrite from 6");
    let mut storage = reopened(factory, storage);
    // A rewrite with the new entries' ids, as a follower's sync writes it.
    storage
        .write_atomically(vec![
            StorageOp::AppendOnPrefix(4, values(40..43)),
            StorageOp::SetOrigins(4, ids_run(4, 3, 2, 1, 5)),
        ])
        .unwrap();
    let rewritten = joined(&[ids_run(0, 4, 1, 1, 1), ids_run(4, 3, 2, 1, 5)]);
    assert_origins(&storage, &rewritten, "after a rewrite with ids");
    let mut storage = reopened(factory, storage);
    // Shortening the log, nothing appended.
    storage.append_on_prefix(5, vec![]).unwrap();
    let short = joined(&[ids_run(0, 4, 1, 1, 1), ids_run(4, 1, 2, 1, 5)]);
    assert_origins(&storage, &short, "after the log was cut to 5");
    // At the end: nothing is cut.
    storage
        .write_atomically(vec![
            StorageOp::AppendOnPrefix(5, values(50..52)),
            StorageOp::SetOrigins(5, ids_run(5, 2, 2, 1, 6)),
        ])
        .unwrap();
    assert_origins(&storage, &rewritten, "after an append at the end");
    // Cut and given again within one batch, the later ops winning.
    storage
        .write_atomically(vec![
            StorageOp::AppendOnPrefix(2, values(20..24)),
            StorageOp::SetOrigins(2, ids_run(2, 4, 3, 1, 1)),
            StorageOp::AppendOnPrefix(4, values(24..25)),
        ])
        .unwrap();
    let expected = joined(&[ids_run(0, 2, 1, 1, 1), ids_run(2, 2, 3, 1, 1)]);
    assert_origins(&storage, &expected, "after a cut, ids and a second cut");
    let storage = reopened(factory, storage);
    assert_origins(&storage, &expected, "after a reopen");
}

fn trim_trims_origin_ids<F: StorageFactory>(factory: &mut F) {
    let mut storage = factory.create();
    if !storage.keeps_origins() {
        return;
    }
    storage
        .write_atomically(vec![
            StorageOp::AppendEntries(values(0..10)),
            StorageOp::SetOrigins(0, joined(&[ids_run(0, 4, 1, 1, 1), ids_run(4, 6, 2, 1, 1)])),
        ])
        .unwrap();
    storage
        .write_atomically(vec![StorageOp::Trim(2), StorageOp::SetCompactedIdx(2)])
        .unwrap();
    let trimmed = joined(&[ids_run(2, 2, 1, 1, 3), ids_run(4, 6, 2, 1, 1)]);
    assert_origins(&storage, &trimmed, "after a trim at 2");
    // The compacted index hides the ids below it, as it hides the entries.
    storage.set_compacted_idx(5).unwrap();
    assert_origins(&storage, &ids_run(5, 5, 2, 1, 2), "compacted at 5");
    let mut storage = reopened(factory, storage);
    storage.trim(7).unwrap();
    assert_origins(&storage, &ids_run(7, 3, 2, 1, 4), "after a trim at 7");
    // A trim in the batch that appends with ids trims those too.
    storage
        .write_atomically(vec![
            StorageOp::AppendEntries(values(10..12)),
            StorageOp::SetOrigins(10, ids_run(10, 2, 3, 1, 1)),
            StorageOp::Trim(11),
            StorageOp::SetCompactedIdx(11),
        ])
        .unwrap();
    assert_origins(&storage, &ids_run(11, 1, 3, 1, 2), "after a trim at 11");
    let mut storage = reopened(factory, storage);
    // Past the log end (a snapshot installed): no id is left.
    storage
        .write_atomically(vec![
            StorageOp::Trim(20),
            StorageOp::SetCompactedIdx(20),
            StorageOp::SetSnapshot(Some(Sum(1))),
        ])
        .unwrap();
    assert_origins(&storage, &OriginIds::new(), "after a trim past the end");
    storage
        .write_atomically(vec![
            StorageOp::AppendEntries(values(20..22)),
            StorageOp::SetOrigins(20, ids_run(20, 2, 1, 2, 1)),
        ])
        .unwrap();
    let storage = reopened(factory, storage);
    assert_origins(
        &storage,
        &ids_run(20, 2, 1, 2, 1),
        "appended after the trim",
    );
}

/// A table that knows `n` proposals of origin 1 and one of origin `n`.
fn table_of(n: u64) -> OriginTable {
    let mut table = OriginTable::new();
    table.insert_run(&OriginRun {
        idx: 0,
        len: n,
        first: OriginId {
            origin: 1,
            incarnation: 1,
            seq: 1,
        },
    });
    table.insert_run(&OriginRun {
        idx: 0,
        len: 1,
        first: OriginId {
            origin: n,
            incarnation: 2,
            seq: 7,
        },
    });
    table
}

fn refused_batch_changes_no_origins<F: StorageFactory>(factory: &mut F) {
    let mut storage = factory.create();
    if !storage.keeps_origins() {
        return;
    }
    storage
        .write_atomically(vec![
            StorageOp::AppendEntries(values(0..6)),
            StorageOp::SetOrigins(0, ids_run(0, 6, 1, 1, 1)),
            StorageOp::SetOriginTable(table_of(3)),
            StorageOp::SetIncarnation(3),
        ])
        .unwrap();
    let before = observe(&storage);
    let batch = |failing: StorageOp<Value>, snapshot: bool| {
        let mut ops = vec![
            StorageOp::AppendEntries(values(6..8)),
            StorageOp::SetOrigins(6, ids_run(6, 2, 2, 1, 1)),
            StorageOp::SetOriginTable(table_of(4)),
            StorageOp::SetIncarnation(4),
            StorageOp::AppendOnPrefix(3, values(30..32)),
            StorageOp::SetOrigins(3, ids_run(3, 2, 3, 1, 1)),
            StorageOp::Trim(2),
        ];
        if snapshot {
            ops.push(StorageOp::SetSnapshot(Some(Sum(1))));
        }
        ops.push(failing);
        ops.push(StorageOp::AppendEntry(Value(99)));
        ops
    };
    // Each is invalid against the log as the ops before it leave it (2..5).
    let failing = || {
        [
            StorageOp::SetCompactedIdx(9),
            StorageOp::AppendOnPrefix(1, vec![]),
            // Below the trim.
            StorageOp::SetOrigins(1, OriginIds::new()),
            // Past the log end.
            StorageOp::SetOrigins(5, ids_run(5, 1, 1, 1, 50)),
            StorageOp::SetOrigins(3, ids_run(4, 2, 1, 1, 50)),
            StorageOp::SetOrigins(6, OriginIds::new()),
            // Ids below the index they are set from.
            StorageOp::SetOrigins(4, ids_run(3, 1, 1, 1, 50)),
        ]
    };
    for snapshot in [false, true] {
        for op in failing() {
            let described = format!("{op:?}");
            assert_refused(storage.write_atomically(batch(op, snapshot)), &described);
            assert_eq!(
                observe(&storage),
                before,
                "a refused batch ending in {described} changed the storage"
            );
        }
    }
    assert_refused(
        storage.write_atomically(vec![StorageOp::SetOrigins(0, ids_run(0, 7, 1, 1, 1))]),
        "ids past the log end",
    );
    let storage = reopened(factory, storage);
    assert_eq!(observe(&storage), before);
}

fn origin_table_and_incarnation_round_trip<F: StorageFactory>(factory: &mut F) {
    let mut storage = factory.create();
    if !storage.keeps_origins() {
        return;
    }
    storage
        .write_atomically(vec![StorageOp::SetIncarnation(1)])
        .unwrap();
    assert_eq!(storage.get_incarnation().unwrap(), 1);
    storage
        .write_atomically(vec![
            StorageOp::AppendEntries(values(0..6)),
            StorageOp::SetOrigins(0, ids_run(0, 6, 1, 1, 1)),
        ])
        .unwrap();
    // The batch that compacts says what the compacted prefix held: by a
    // trim alone, then with a snapshot.
    let mut table = OriginTable::new();
    table.absorb(&ids_run(0, 3, 1, 1, 1));
    storage
        .write_atomically(vec![
            StorageOp::Trim(3),
            StorageOp::SetCompactedIdx(3),
            StorageOp::SetOriginTable(table.clone()),
        ])
        .unwrap();
    assert_eq!(storage.get_origin_table().unwrap(), table);
    let mut storage = reopened(factory, storage);
    table.absorb(&ids_run(3, 2, 1, 1, 4));
    storage
        .write_atomically(vec![
            StorageOp::Trim(5),
            StorageOp::SetCompactedIdx(5),
            StorageOp::SetSnapshot(Some(Sum(10))),
            StorageOp::SetOriginTable(table.clone()),
        ])
        .unwrap();
    assert_eq!(storage.get_origin_table().unwrap(), table);
    // Log writes leave both alone.
    storage.append_on_prefix(5, values(50..52)).unwrap();
    storage.append_on_prefix(6, values(60..62)).unwrap();
    storage.trim(6).unwrap();
    storage.set_snapshot(None).unwrap();
    assert_eq!(storage.get_origin_table().unwrap(), table);
    assert_eq!(storage.get_incarnation().unwrap(), 1);
    let mut storage = reopened(factory, storage);
    storage
        .write_atomically(vec![StorageOp::SetIncarnation(2)])
        .unwrap();
    let mut storage = reopened(factory, storage);
    assert_eq!(storage.get_incarnation().unwrap(), 2);
    assert_eq!(storage.get_origin_table().unwrap(), table);
    storage
        .write_atomically(vec![StorageOp::SetOriginTable(OriginTable::new())])
        .unwrap();
    let storage = reopened(factory, storage);
    assert_eq!(storage.get_origin_table().unwrap(), OriginTable::new());
}

/// A random op that the log described by `model` accepts (most of the time;
/// some are deliberately out of range, and both storages must refuse them).
fn random_op(
    rng: &mut ChaCha8Rng,
    model: &MemoryStorage<Value>,
    next_value: &mut u64,
    origins: bool,
) -> StorageOp<Value> {
    let len = model.get_log_len().unwrap();
    let first = model.get_compacted_idx().unwrap();
    let mut fresh = |n: u64| {
        let v = values(*next_value..*next_value + n);
        *next_value += n;
        v
    };
    match rng.gen_range(0..if origins { 16 } else { 13 }) {
        0..=2 => StorageOp::AppendEntries(fresh(rng.gen_range(0..40))),
        3 => StorageOp::AppendEntry(fresh(1)[0]),
        4 => {
            let from = first + rng.gen_range(0..len - first + 2);
            StorageOp::AppendOnPrefix(from, fresh(rng.gen_range(0..8)))
        }
        5 => StorageOp::Trim(first + rng.gen_range(0..len - first + 5)),
        6 => StorageOp::SetCompactedIdx(rng.gen_range(0..len + 2)),
        7 => StorageOp::SetDecidedIndex(rng.gen_range(0..len + 2)),
        8 => StorageOp::SetPromise(Ballot::with(
            1,
            rng.gen_range(0..100u32),
            rng.gen_range(0..5) + 1,
        )),
        9 => StorageOp::SetAcceptedRound(Ballot::with(1, rng.gen_range(0..100u32), 1)),
        10 => StorageOp::SetSnapshot(rng.gen_bool(0.5).then(|| Sum(rng.gen_range(0..1000)))),
        11 => StorageOp::SetPreviousConfigurationEnd(
            rng.gen_bool(0.5)
                .then(|| configuration_end(rng.gen_range(2..7u32), rng.gen_range(0..50))),
        ),
        12 => StorageOp::SetStopsign(
            rng.gen_bool(0.5)
                .then(|| StopSign::with(2, vec![1, rng.gen_range(0..9) + 2], None)),
        ),
        // Sometimes out of range (past the end, below the trim): refused.
        13 => {
            let from = first + rng.gen_range(0..len - first + 2);
            let start = from + rng.gen_range(0..3);
            let ids = random_ids(rng, start, len + 1);
            StorageOp::SetOrigins(from, ids)
        }
        14 => StorageOp::SetOriginTable(random_table(rng)),
        _ => StorageOp::SetIncarnation(rng.gen_range(0..5)),
    }
}

/// Random runs from `start`, most of them below `end`.
fn random_ids(rng: &mut ChaCha8Rng, start: u64, end: u64) -> OriginIds {
    let mut ids = OriginIds::new();
    let mut idx = start;
    for _ in 0..rng.gen_range(0..4) {
        idx += rng.gen_range(0..2);
        let len = rng.gen_range(1..6).min(end.saturating_sub(idx).max(1));
        let part = ids_run(
            idx,
            len,
            rng.gen_range(1..4),
            rng.gen_range(1..3),
            rng.gen_range(0..100),
        );
        assert!(ids.append(&part), "each run starts past the one before");
        idx += len;
    }
    ids
}

fn random_table(rng: &mut ChaCha8Rng) -> OriginTable {
    let mut table = OriginTable::new();
    for _ in 0..rng.gen_range(0..4) {
        let first = OriginId {
            origin: rng.gen_range(1..4),
            incarnation: rng.gen_range(1..3),
            seq: rng.gen_range(0..100),
        };
        table.insert_run(&OriginRun {
            idx: rng.gen_range(0..1000),
            len: rng.gen_range(1..10),
            first,
        });
    }
    table
}

/// A random batch: random ops, after, for a storage that keeps origins,
/// often an append with the ids of its entries (at the end, or replacing
/// a suffix), as the protocol writes them.
fn random_batch(
    rng: &mut ChaCha8Rng,
    model: &MemoryStorage<Value>,
    next_value: &mut u64,
    origins: bool,
) -> Vec<StorageOp<Value>> {
    let mut batch = Vec::new();
    if origins && rng.gen_bool(0.4) {
        let len = model.get_log_len().unwrap();
        let first = model.get_compacted_idx().unwrap();
        let from = if rng.gen_bool(0.7) {
            len
        } else {
            first + rng.gen_range(0..len - first + 1)
        };
        let n = rng.gen_range(1..20);
        batch.push(StorageOp::AppendOnPrefix(
            from,
            values(*next_value..*next_value + n),
        ));
        *next_value += n;
        batch.push(StorageOp::SetOrigins(from, random_ids(rng, from, from + n)));
    }
    for _ in 0..rng.gen_range(0..4) + 1 - usize::from(!batch.is_empty()) {
        batch.push(random_op(rng, model, next_value, origins));
    }
    batch
}

fn random_writes_match_model<F: StorageFactory>(factory: &mut F) {
    let mut rng = ChaCha8Rng::seed_from_u64(0x5EED_5707_A6E5);
    let mut model = MemoryStorage::<Value>::default();
    let mut storage = factory.create();
    let origins = storage.keeps_origins();
    let mut next_value = 0;
    for step in 0..400 {
        let batch = random_batch(&mut rng, &model, &mut next_value, origins);
        let described = format!("{batch:?}");
        let expected = model.write_atomically(batch.clone());
        let got = storage.write_atomically(batch);
        assert_eq!(
            got.is_ok(),
            expected.is_ok(),
            "step {step}: the batch {described} gave {got:?}, MemoryStorage gave {expected:?}"
        );
        assert_eq!(
            observe(&storage),
            observe(&model),
            "step {step}: after {described}"
        );
        if rng.gen_range(0..25) == 0 {
            storage = factory.reopen(storage);
            assert_eq!(
                observe(&storage),
                observe(&model),
                "step {step}: after a reopen"
            );
        }
    }
}

impl<S: Storage<Value>, X> Storage<Value> for (S, X) {
    fn write_atomically(&mut self, ops: Vec<StorageOp<Value>>) -> StorageResult<()> {
        self.0.write_atomically(ops)
    }
    fn append_entry(&mut self, entry: Value) -> StorageResult<()> {
        self.0.append_entry(entry)
    }
    fn append_entries(&mut self, entries: Vec<Value>) -> StorageResult<()> {
        self.0.append_entries(entries)
    }
    fn append_on_prefix(&mut self, from_idx: u64, entries: Vec<Value>) -> StorageResult<()> {
        self.0.append_on_prefix(from_idx, entries)
    }
    fn set_promise(&mut self, n_prom: Ballot) -> StorageResult<()> {
        self.0.set_promise(n_prom)
    }
    fn set_decided_idx(&mut self, ld: u64) -> StorageResult<()> {
        self.0.set_decided_idx(ld)
    }
    fn get_decided_idx(&self) -> StorageResult<u64> {
        self.0.get_decided_idx()
    }
    fn set_accepted_round(&mut self, na: Ballot) -> StorageResult<()> {
        self.0.set_accepted_round(na)
    }
    fn get_accepted_round(&self) -> StorageResult<Option<Ballot>> {
        self.0.get_accepted_round()
    }
    fn get_entries(&self, from: u64, to: u64) -> StorageResult<Vec<Value>> {
        self.0.get_entries(from, to)
    }
    fn get_log_len(&self) -> StorageResult<u64> {
        self.0.get_log_len()
    }
    fn get_suffix(&self, from: u64) -> StorageResult<Vec<Value>> {
        self.0.get_suffix(from)
    }
    fn get_promise(&self) -> StorageResult<Option<Ballot>> {
        self.0.get_promise()
    }
    fn set_stopsign(&mut self, s: Option<StopSign>) -> StorageResult<()> {
        self.0.set_stopsign(s)
    }
    fn get_stopsign(&self) -> StorageResult<Option<StopSign>> {
        self.0.get_stopsign()
    }
    fn trim(&mut self, idx: u64) -> StorageResult<()> {
        self.0.trim(idx)
    }
    fn set_compacted_idx(&mut self, idx: u64) -> StorageResult<()> {
        self.0.set_compacted_idx(idx)
    }
    fn get_compacted_idx(&self) -> StorageResult<u64> {
        self.0.get_compacted_idx()
    }
    fn set_snapshot(&mut self, snapshot: Option<Sum>) -> StorageResult<()> {
        self.0.set_snapshot(snapshot)
    }
    fn get_snapshot(&self) -> StorageResult<Option<Sum>> {
        self.0.get_snapshot()
    }
    fn set_previous_configuration_end(
        &mut self,
        end: Option<ConfigurationEnd>,
    ) -> StorageResult<()> {
        self.0.set_previous_configuration_end(end)
    }
    fn get_previous_configuration_end(&self) -> StorageResult<Option<ConfigurationEnd>> {
        self.0.get_previous_configuration_end()
    }
    fn keeps_origins(&self) -> bool {
        self.0.keeps_origins()
    }
    fn get_origins(&self, from: u64, to: u64) -> StorageResult<OriginIds> {
        self.0.get_origins(from, to)
    }
    fn get_origin_table(&self) -> StorageResult<OriginTable> {
        self.0.get_origin_table()
    }
    fn get_incarnation(&self) -> StorageResult<u64> {
        self.0.get_incarnation()
    }
}
