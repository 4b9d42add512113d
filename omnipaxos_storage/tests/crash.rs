//! Crash tests with real processes, and recovery from damaged directories.
//!
//! `kill_9_at_random_moments_never_loses_a_returned_write` re-executes this
//! test binary as a child (selected by the `OMNIPAXOS_CRASH_CHILD`
//! environment variable) that writes through `PersistentStorage` and prints
//! the number of every write that returned. The parent kills it with SIGKILL
//! after a random delay, reopens the directory and checks the state against
//! a model: the same seeded writes applied to a `MemoryStorage`. The state
//! must be the model after the last reported write, or after the one that
//! was in flight when the kill came; nothing else (the origin ids, table
//! and incarnation included: most writes carry ids). The next child
//! continues on the same directory, so later iterations also crash during
//! recovery.

use omnipaxos::errors::StorageError;
use omnipaxos::{
    ballot::Ballot,
    storage::{OriginId, OriginIds, OriginRun, OriginTable, Storage, StorageOp},
    util::{ConfigurationEnd, StopSign},
};
use omnipaxos_storage::{
    conformance::{Observed, Sum, Value, observe},
    memory_storage::MemoryStorage,
    persistent_storage::{LogOptions, PersistentStorage, PersistentStorageConfig},
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::{
    fs,
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

/// Selects child mode; holds the storage directory.
const CHILD_DIR: &str = "OMNIPAXOS_CRASH_CHILD";
/// The seed of the child's writes.
const CHILD_SEED: &str = "OMNIPAXOS_CRASH_SEED";
/// How many kills the test does.
const ITERATIONS: u64 = 40;

/// The config the parent and the child open: small segments, so that the
/// writes roll and trim segments often.
fn config(dir: &Path) -> PersistentStorageConfig {
    let mut config = PersistentStorageConfig::with_path(dir);
    let mut options = LogOptions::new(dir.join("log"));
    options.segment_max_bytes(4096).index_max_items(64);
    config.set_commitlog_options(options);
    config
}

/// The ids of `n` entries at `idx`, proposed by `origin` one after the other.
fn origin_ids(idx: u64, n: u64, origin: u64, seq: u64) -> OriginIds {
    let mut ids = OriginIds::new();
    for i in 0..n {
        let id = OriginId {
            origin,
            incarnation: 1,
            seq: seq + i,
        };
        assert!(ids.push(idx + i, id));
    }
    ids
}

/// The `k`-th write of a run seeded with `seed`, valid for a log with the
/// given length and first index. Values are unique per (seed, k).
fn write(seed: u64, k: u64, log_len: u64, first: u64) -> Vec<StorageOp<Value>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ k.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let fresh =
        |n: u64| -> Vec<Value> { (0..n).map(|i| Value(seed << 40 | k << 12 | i)).collect() };
    // Most appends carry their ids, as the protocol writes them.
    let with_ids = k % 5 != 0;
    let ids = |idx: u64, n: u64| origin_ids(idx, n, 1 + k % 3, k << 12);
    match rng.gen_range(0..10) {
        0..=3 => {
            let n = rng.gen_range(1..200);
            let mut ops = vec![StorageOp::AppendEntries(fresh(n))];
            if with_ids {
                ops.push(StorageOp::SetOrigins(log_len, ids(log_len, n)));
            }
            ops
        }
        4 => vec![StorageOp::AppendEntry(fresh(1)[0])],
        5 => {
            let from = rng.gen_range(first..=log_len);
            let n = rng.gen_range(0..50);
            let mut ops = vec![
                StorageOp::AppendOnPrefix(from, fresh(n)),
                StorageOp::SetAcceptedRound(Ballot::with(1, k as u32, 1)),
            ];
            if with_ids {
                ops.push(StorageOp::SetOrigins(from, ids(from, n)));
            }
            ops
        }
        6 if log_len > first => {
            let idx = rng.gen_range(first..=log_len);
            let mut table = OriginTable::new();
            table.insert_run(&OriginRun {
                idx: 0,
                len: idx,
                first: OriginId {
                    origin: seed,
                    incarnation: 1,
                    seq: 0,
                },
            });
            vec![
                StorageOp::Trim(idx),
                StorageOp::SetCompactedIdx(idx),
                StorageOp::SetSnapshot(Some(Sum(idx))),
                StorageOp::SetOriginTable(table),
            ]
        }
        7 => vec![
            StorageOp::Trim(log_len + 3),
            StorageOp::SetCompactedIdx(log_len + 3),
            StorageOp::SetSnapshot(Some(Sum(k))),
        ],
        8 => vec![
            StorageOp::SetIncarnation(k),
            StorageOp::SetPromise(Ballot::with(1, k as u32, 2)),
            StorageOp::SetDecidedIndex(rng.gen_range(first..=log_len)),
            StorageOp::SetStopsign((k % 3 == 0).then(|| StopSign::with(2, vec![1, 2], None))),
            StorageOp::SetPreviousConfigurationEnd((k % 4 != 0).then(|| ConfigurationEnd {
                stopsign: StopSign::with(2, vec![1, 2, 3], None),
                stop_idx: k,
                accepted_round: Ballot::with(1, k as u32, 3),
            })),
        ],
        _ => {
            // A trim alone, with the table it makes, then an append.
            let n = rng.gen_range(1..20);
            let mut table = OriginTable::new();
            table.insert_run(&OriginRun {
                idx: 0,
                len: 1,
                first: OriginId {
                    origin: seed,
                    incarnation: 2,
                    seq: k,
                },
            });
            let mut ops = vec![
                StorageOp::AppendEntries(fresh(n)),
                StorageOp::SetDecidedIndex(log_len),
            ];
            if with_ids {
                ops.push(StorageOp::SetOrigins(log_len, ids(log_len, n)));
            }
            if k % 2 == 0 {
                let idx = (first + log_len) / 2;
                ops.extend([
                    StorageOp::Trim(idx),
                    StorageOp::SetCompactedIdx(idx),
                    StorageOp::SetOriginTable(table),
                ]);
            }
            ops
        }
    }
}

fn bounds<S: Storage<Value>>(s: &S) -> (u64, u64) {
    (s.get_log_len().unwrap(), s.get_compacted_idx().unwrap())
}

/// Child mode: writes forever, printing `done <k>` after write `k` returned.
fn child(dir: &str, seed: u64) -> ! {
    let mut storage = PersistentStorage::<Value>::open(config(Path::new(dir)))
        .unwrap_or_else(|e| panic!("child: open failed: {e}"));
    let mut out = std::io::stdout().lock();
    writeln!(out, "opened").unwrap();
    out.flush().unwrap();
    for k in 0.. {
        let (len, first) = bounds(&storage);
        storage
            .write_atomically(write(seed, k, len, first))
            .unwrap_or_else(|e| panic!("child: write {k} failed: {e}"));
        writeln!(out, "done {k}").unwrap();
        out.flush().unwrap();
    }
    unreachable!("the loop runs until the parent kills the process")
}

/// The child's entry point: a test that does nothing unless the environment
/// selects child mode, so that the harness can run it by name.
#[test]
fn crash_child() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        let seed = std::env::var(CHILD_SEED).unwrap().parse().unwrap();
        child(&dir, seed);
    }
}

#[test]
fn kill_9_at_random_moments_never_loses_a_returned_write() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("store");
    let exe = std::env::current_exe().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0x000C_8A54);
    let mut model = MemoryStorage::<Value>::default();
    let mut completed_writes = 0;
    let mut leftovers_removed = 0;
    for iteration in 0..ITERATIONS {
        let seed = iteration + 1;
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, &dir)
            .env(CHILD_SEED, seed.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut done = 0u64;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("done ") {
                    done += 1;
                    // The parent may have stopped listening; the count is
                    // what matters.
                    let _ = tx.send(done);
                }
            }
            done
        });
        // The fault injection: let the child report a random number of
        // writes (0 kills it during the open), then kill it after a short
        // random delay, somewhere inside the following writes.
        let target = rng.gen_range(0..25u64);
        let mut reported = 0;
        while reported < target {
            reported = rx
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|e| {
                    panic!("iteration {iteration}: the child stopped reporting: {e}")
                });
        }
        std::thread::sleep(Duration::from_micros(rng.gen_range(0..3000)));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        let done = reader.join().unwrap();
        assert!(
            !status.success(),
            "iteration {iteration}: the child exited on its own: {status}"
        );

        // The states the child could have left: after its last reported
        // write, or after the write in flight.
        for k in 0..done {
            let (len, first) = bounds(&model);
            model.write_atomically(write(seed, k, len, first)).unwrap();
        }
        let reported = model.clone();
        let (len, first) = bounds(&model);
        let mut in_flight = model.clone();
        in_flight
            .write_atomically(write(seed, done, len, first))
            .unwrap();

        let storage = PersistentStorage::<Value>::open(config(&dir))
            .unwrap_or_else(|e| panic!("iteration {iteration}: reopen after kill failed: {e}"));
        // Whatever the kill interrupted, open leaves exactly the record
        // files the committed state needs: one per value it holds, and no
        // redo once open finished it.
        let records = record_files(&dir);
        // The compacted index is the trim point in these writes, so every
        // id held is read back.
        let needed = [
            storage.get_snapshot().unwrap().is_some(),
            storage.get_stopsign().unwrap().is_some(),
            storage.get_previous_configuration_end().unwrap().is_some(),
            !storage.get_origins(0, u64::MAX).unwrap().is_empty()
                || !storage.get_origin_table().unwrap().is_empty(),
        ];
        let prefixes = ["snapshot-", "stopsign-", "previous_end-", "origins-"];
        let as_needed = needed.iter().zip(prefixes).all(|(&held, prefix)| {
            records.iter().filter(|n| n.starts_with(prefix)).count() == usize::from(held)
        });
        assert!(
            as_needed && records.len() == needed.iter().filter(|&&h| h).count(),
            "iteration {iteration}: after open the records directory holds {records:?}; \
             open reported: {}",
            storage.open_report()
        );
        leftovers_removed += storage.open_report().removed.len();
        let found = observe(&storage);
        model = if found == observe(&reported) {
            reported
        } else if found == observe(&in_flight) {
            completed_writes += 1;
            in_flight
        } else {
            panic!(
                "iteration {iteration} (seed {seed}, {done} writes reported): the reopened state \
                 {found:?} is neither the state after the reported writes {:?} nor after the one \
                 in flight {:?}",
                observe(&reported),
                observe(&in_flight)
            );
        };
        completed_writes += done;
    }
    assert!(
        completed_writes > ITERATIONS,
        "the children wrote too little to test anything: {completed_writes}"
    );
    eprintln!(
        "{ITERATIONS} kills, {completed_writes} writes verified, {leftovers_removed} leftover \
         files removed by open"
    );
}

// ----- damaged directories ---------------------------------------------------

/// A storage in `dir` with a few hundred entries over several segments,
/// closed again. Returns what it holds.
fn populated(dir: &Path) -> Observed {
    let mut storage = PersistentStorage::<Value>::open(config(dir)).unwrap();
    storage
        .write_atomically(vec![
            StorageOp::AppendEntries((0..300).map(Value).collect()),
            StorageOp::SetOrigins(0, origin_ids(0, 300, 1, 1)),
        ])
        .unwrap();
    storage
        .write_atomically(vec![
            StorageOp::SetPromise(Ballot::with(1, 2, 3)),
            StorageOp::SetDecidedIndex(250),
            StorageOp::SetIncarnation(2),
            StorageOp::SetPreviousConfigurationEnd(Some(ConfigurationEnd {
                stopsign: StopSign::with(2, vec![1, 2, 3], None),
                stop_idx: 40,
                accepted_round: Ballot::with(1, 1, 2),
            })),
        ])
        .unwrap();
    observe(&storage)
}

fn open_err(dir: &Path) -> StorageError {
    match PersistentStorage::<Value>::open(config(dir)) {
        Ok(_) => panic!("opening {} succeeded", dir.display()),
        Err(e) => e,
    }
}

/// The names of the files in the storage's records directory.
fn record_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir.join("records"))
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default()
}

fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = fs::read_dir(dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

/// Every file under `dir` with its contents, to prove nothing was changed.
fn snapshot_files(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if !path.starts_with(dir.join("state")) {
                // sled may rewrite its own files on open; the commitlog
                // and the marker must stay as they were.
                out.push((path.clone(), fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_path_that_is_a_file_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("file");
    fs::write(&file, b"hello").unwrap();
    let err = open_err(&file);
    assert!(
        matches!(&err, StorageError::Corrupt { path: Some(p), .. } if *p == file),
        "{err}"
    );
    assert!(err.to_string().contains("is a file"), "{err}");
    assert_eq!(fs::read(&file).unwrap(), b"hello");
}

#[test]
fn a_foreign_directory_is_refused_and_left_alone() {
    let root = tempfile::tempdir().unwrap();
    fs::write(root.path().join("notes.txt"), b"mine").unwrap();
    let err = open_err(root.path());
    assert!(
        err.to_string()
            .contains("not a PersistentStorage directory"),
        "{err}"
    );
    let names: Vec<_> = fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["notes.txt"]);
}

#[test]
fn a_marker_of_another_format_version_is_refused() {
    let root = tempfile::tempdir().unwrap();
    populated(root.path());
    fs::write(
        root.path().join("OMNIPAXOS_STORAGE"),
        "omnipaxos_storage PersistentStorage\nformat 7\n",
    )
    .unwrap();
    let err = open_err(root.path());
    assert!(err.to_string().contains("format version 7"), "{err}");
}

#[test]
fn a_missing_middle_segment_is_reported_and_nothing_is_deleted() {
    let root = tempfile::tempdir().unwrap();
    populated(root.path());
    let segments = segment_files(root.path());
    assert!(
        segments.len() >= 3,
        "the test needs several segments: {segments:?}"
    );
    fs::remove_file(&segments[1]).unwrap();
    let before = snapshot_files(root.path());
    let err = open_err(root.path());
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
    assert_eq!(
        snapshot_files(root.path()),
        before,
        "a failed open changed files"
    );
}

#[test]
fn a_missing_last_segment_is_reported() {
    let root = tempfile::tempdir().unwrap();
    populated(root.path());
    let segments = segment_files(root.path());
    fs::remove_file(segments.last().unwrap()).unwrap();
    let err = open_err(root.path());
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
}

#[test]
fn a_truncated_segment_is_reported_and_nothing_is_deleted() {
    let root = tempfile::tempdir().unwrap();
    populated(root.path());
    for segment in [0, usize::MAX] {
        let segments = segment_files(root.path());
        let victim = &segments[segment.min(segments.len() - 1)];
        let len = fs::metadata(victim).unwrap().len();
        let copy = fs::read(victim).unwrap();
        fs::OpenOptions::new()
            .write(true)
            .open(victim)
            .unwrap()
            .set_len(len - 10)
            .unwrap();
        let before = snapshot_files(root.path());
        let err = open_err(root.path());
        assert!(
            matches!(&err, StorageError::Corrupt { path: Some(p), .. } if p == victim),
            "{err}"
        );
        assert!(err.to_string().contains("truncated"), "{err}");
        assert_eq!(
            snapshot_files(root.path()),
            before,
            "a failed open changed files"
        );
        fs::write(victim, copy).unwrap();
    }
    assert_eq!(
        observe(&PersistentStorage::<Value>::open(config(root.path())).unwrap()).log_len,
        300,
        "the repaired directory opens again"
    );
}

#[test]
fn a_flipped_byte_in_an_entry_is_an_error_when_read() {
    let root = tempfile::tempdir().unwrap();
    populated(root.path());
    let victim = &segment_files(root.path())[1];
    let mut bytes = fs::read(victim).unwrap();
    // Inside the body of the second entry of the segment (2 bytes of magic,
    // a 28-byte message, then a 20-byte header).
    bytes[2 + 28 + 20 + 3] ^= 0x40;
    fs::write(victim, bytes).unwrap();
    let storage = PersistentStorage::<Value>::open(config(root.path())).unwrap();
    let err = storage.get_suffix(0).unwrap_err();
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("checksum"), "{err}");
}

#[test]
fn a_flipped_byte_in_the_last_entry_is_reported_on_open_and_not_cut() {
    let root = tempfile::tempdir().unwrap();
    populated(root.path());
    let victim = segment_files(root.path()).pop().unwrap();
    let mut bytes = fs::read(&victim).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    fs::write(&victim, &bytes).unwrap();
    let err = open_err(root.path());
    assert!(err.to_string().contains("checksum"), "{err}");
    assert_eq!(
        fs::read(&victim).unwrap(),
        bytes,
        "the damaged segment was changed"
    );
}

#[test]
fn a_flipped_byte_in_the_state_database_is_an_error_or_a_committed_state() {
    // sled checksums its own log; which byte a flip hits decides whether
    // sled or our record checksum notices. Either way: no panic, and an open
    // that succeeds shows a state the storage committed at some point. (sled
    // treats a damaged log record like a torn write and recovers to the
    // state before it: a known limit, see the crate docs.)
    let root = tempfile::tempdir().unwrap();
    let empty = {
        let empty_dir = root.path().join("empty");
        observe(&PersistentStorage::<Value>::open(config(&empty_dir)).unwrap())
    };
    let root = root.path().join("full");
    let root = &tempdir_at(&root);
    let expected = populated(root.path());
    let db = root.path().join("state").join("db");
    let original = fs::read(&db).unwrap();
    let mut errors = 0;
    for at in (0..original.len()).step_by(original.len() / 24 + 1) {
        let mut bytes = original.clone();
        bytes[at] ^= 0x10;
        fs::write(&db, &bytes).unwrap();
        match PersistentStorage::<Value>::open(config(root.path())) {
            Err(e) => {
                errors += 1;
                assert!(
                    matches!(
                        e,
                        StorageError::Corrupt { .. }
                            | StorageError::Io { .. }
                            | StorageError::Serialization { .. }
                            | StorageError::Backend { .. }
                    ),
                    "{e}"
                );
            }
            Ok(storage) => match storage.get_suffix(0) {
                Ok(_) => {
                    let found = observe(&storage);
                    assert!(
                        found == expected || found == empty,
                        "flip at byte {at}: {found:?}"
                    );
                }
                Err(e) => {
                    errors += 1;
                    let _ = e;
                }
            },
        }
        fs::write(&db, &original).unwrap();
    }
    eprintln!("{errors} of the flips were reported as errors");
}

/// A directory at `path` that the test owns (inside an outer temp dir).
struct Owned(std::path::PathBuf);

impl Owned {
    fn path(&self) -> &Path {
        &self.0
    }
}

fn tempdir_at(path: &Path) -> Owned {
    fs::create_dir_all(path).unwrap();
    Owned(path.to_path_buf())
}

#[test]
fn an_entry_that_does_not_deserialise_is_a_serialization_error_naming_the_path() {
    #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
    struct Wide(u64, u64, u64);
    impl omnipaxos::storage::Entry for Wide {
        type Snapshot = omnipaxos::storage::NoSnapshot;
    }
    let root = tempfile::tempdir().unwrap();
    populated(root.path());
    let storage = PersistentStorage::<Wide>::open(config(root.path())).unwrap();
    let err = storage.get_entries(0, 1).unwrap_err();
    assert!(
        matches!(&err, StorageError::Serialization { what, .. } if what.contains("entry 0") && what.contains("log")),
        "{err}"
    );
}

#[test]
fn uncommitted_segments_and_a_torn_tail_are_moved_to_quarantine_on_open() {
    let root = tempfile::tempdir().unwrap();
    let expected = populated(root.path());
    // A crash after writing past the commit point: garbage at the end of the
    // last segment and a whole segment past it.
    let last = segment_files(root.path()).pop().unwrap();
    let mut file = fs::OpenOptions::new().append(true).open(&last).unwrap();
    file.write_all(&[7u8; 13]).unwrap();
    fs::write(
        root.path().join("log").join(format!("{:020}.log", 100_000)),
        [0xff, 0xff, 1, 2],
    )
    .unwrap();
    let storage = PersistentStorage::<Value>::open(config(root.path())).unwrap();
    assert_eq!(observe(&storage), expected);
    drop(storage);
    let log_dir = root.path().join("log");
    assert!(!log_dir.join(format!("{:020}.log", 100_000)).exists());
    // Nothing is deleted: what lay past the commit point is kept aside, byte
    // for byte, in case the state store had fallen behind the log.
    let quarantine = log_dir.join("quarantine");
    assert_eq!(
        fs::read(quarantine.join(format!("{:020}.log", 100_000))).unwrap(),
        [0xff, 0xff, 1, 2]
    );
    let tail_name = format!("{}.tail", last.file_name().unwrap().to_str().unwrap());
    assert_eq!(fs::read(quarantine.join(tail_name)).unwrap(), [7u8; 13]);
    // And a reopen still finds the same state.
    let storage = PersistentStorage::<Value>::open(config(root.path())).unwrap();
    assert_eq!(observe(&storage), expected);
}

#[test]
fn origin_ids_survive_a_reopen_and_a_damaged_origins_file_is_refused_untouched() {
    let root = tempfile::tempdir().unwrap();
    let expected = populated(root.path());
    assert_eq!(expected.origins, origin_ids(0, 300, 1, 1));
    assert_eq!(expected.incarnation, 2);
    // The clean drop checkpointed: the ids are in their record file now.
    let storage = PersistentStorage::<Value>::open(config(root.path())).unwrap();
    assert_eq!(observe(&storage), expected);
    drop(storage);
    let origins: Vec<String> = record_files(root.path())
        .into_iter()
        .filter(|n| n.starts_with("origins-"))
        .collect();
    assert_eq!(origins.len(), 1, "{origins:?}");
    let victim = root.path().join("records").join(&origins[0]);
    let mut bytes = fs::read(&victim).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    fs::write(&victim, &bytes).unwrap();
    let before = snapshot_files(root.path());
    let err = open_err(root.path());
    assert!(
        matches!(&err, StorageError::Corrupt { path: Some(p), .. } if *p == victim),
        "{err}"
    );
    assert!(err.to_string().contains("checksum"), "{err}");
    assert_eq!(
        snapshot_files(root.path()),
        before,
        "a failed open changed files"
    );
}
