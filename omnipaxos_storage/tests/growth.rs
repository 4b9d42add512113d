//! What `PersistentStorage` writes and keeps under a steady load with
//! snapshots, counted rather than measured: each snapshot is written once,
//! a commit's cost does not grow with the snapshot, and what replaced
//! snapshots and trims leave behind is deleted. (The long run that measures
//! directory size and throughput is the `growth` bench.)

use omnipaxos::{
    OmniPaxos, OmniPaxosConfig,
    storage::{Entry, Snapshot, Storage, StorageOp},
};
use omnipaxos_storage::persistent_storage::{
    LogOptions, PersistentStorage, PersistentStorageConfig,
};
use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, fs, path::Path};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Put {
    key: u32,
    value: Vec<u8>,
}

impl Entry for Put {
    type Snapshot = Map;
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Map(BTreeMap<u32, Vec<u8>>);

impl Snapshot<Put> for Map {
    fn create(entries: &[Put]) -> Self {
        Self(entries.iter().map(|p| (p.key, p.value.clone())).collect())
    }

    fn merge(&mut self, delta: Self) {
        self.0.extend(delta.0);
    }

    fn use_snapshots() -> bool {
        true
    }
}

/// Small segments, so that the run rolls and trims many of them.
fn config(dir: &Path) -> PersistentStorageConfig {
    let mut config = PersistentStorageConfig::with_path(dir);
    let mut options = LogOptions::new(dir.join("commitlog"));
    options.segment_max_bytes(64 * 1024).index_max_items(1024);
    config.set_commitlog_options(options);
    config
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

const KEYS: u64 = 2_000;
const WRITES: u64 = 30_000;
const BATCH: u64 = 64;
const SNAPSHOT_EVERY: u64 = 2_500;

/// The `w`-th write of the load: keys cycle through all of `KEYS`.
fn put(w: u64) -> Put {
    Put {
        key: (w * 7919 % KEYS) as u32,
        value: vec![w as u8; 100],
    }
}

#[test]
fn under_the_protocol_the_directory_keeps_only_the_live_snapshot_and_the_retained_log() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("storage");
    let storage = PersistentStorage::<Put>::open(config(&dir)).unwrap();
    let mut node: OmniPaxos<Put, _> = OmniPaxosConfig {
        pid: 1,
        peers: vec![],
        batch_size: BATCH as usize,
        ..Default::default()
    }
    .build(storage)
    .unwrap();
    while node.get_current_leader() != Some(1) {
        node.tick();
    }
    let mut last_snapshot = 0;
    for w in 0..WRITES {
        node.append(put(w)).unwrap();
        if (w + 1) % BATCH == 0 {
            node.tick();
            let decided = node.get_decided_idx();
            assert_eq!(decided, w + 1, "a single node decides every batch");
            if decided >= last_snapshot + SNAPSHOT_EVERY {
                node.snapshot(Some(decided), true).unwrap();
                last_snapshot = decided;
            }
        }
    }
    assert!(node.get_storage_failure().is_none());
    drop(node);

    let storage = PersistentStorage::<Put>::open(config(&dir)).unwrap();
    assert!(
        storage.open_report().is_clean(),
        "a clean shutdown leaves nothing for open to clean up: {}",
        storage.open_report()
    );
    // The live snapshot, and the origin ids of the retained log with the
    // compacted prefix's origin table (one file each, the current ones).
    let records = names(&dir.join("records"));
    let count = |prefix: &str| records.iter().filter(|n| n.starts_with(prefix)).count();
    assert_eq!(
        (records.len(), count("snapshot-"), count("origins-")),
        (2, 1, 1),
        "exactly the live snapshot's and origins' files: {records:?}"
    );
    let segments: Vec<String> = names(&dir.join("commitlog"))
        .into_iter()
        .filter(|n| n.ends_with(".log"))
        .collect();
    // The log since the last snapshot is under 2,500 entries of about 130
    // bytes: it spans at most 6 segments of 64 KiB, plus the one holding the
    // trimmed entries before it.
    assert!(
        segments.len() <= 7,
        "{} segments are left: {segments:?}",
        segments.len()
    );
    assert!(!dir.join("commitlog").join("quarantine").exists());
}

#[test]
fn each_snapshot_is_written_once_and_a_commit_costs_the_same_beside_any_snapshot() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("storage");
    let mut storage = PersistentStorage::<Put>::open(config(&dir)).unwrap();
    let mut model = Map::default();
    let (mut snapshots, mut snapshot_bytes) = (0, 0);
    let mut compacted = 0;
    let mut written = 0;
    while written < WRITES {
        let batch: Vec<Put> = (written..written + BATCH).map(put).collect();
        written += BATCH;
        storage.append_entries(batch).unwrap();
        storage.set_decided_idx(written).unwrap();
        if written >= compacted + SNAPSHOT_EVERY {
            let entries = storage.get_entries(compacted, written).unwrap();
            model.merge(Map::create(&entries));
            storage
                .write_atomically(vec![
                    StorageOp::SetSnapshot(Some(model.clone())),
                    StorageOp::Trim(written),
                    StorageOp::SetCompactedIdx(written),
                ])
                .unwrap();
            compacted = written;
            snapshots += 1;
            snapshot_bytes += bincode_size(&model);
        }
    }
    let stats = storage.stats();
    assert_eq!(stats.snapshots_written, snapshots);
    assert_eq!(
        stats.snapshot_bytes_written, snapshot_bytes,
        "every snapshot is written exactly once, and nothing else is"
    );
    let per_commit = stats.state_bytes_written / stats.commits;
    assert!(
        per_commit < 128,
        "a commit writes {per_commit} bytes to the state database beside a snapshot of {} bytes",
        bincode_size(&model)
    );
    assert_eq!(names(&dir.join("records")).len(), 1);
    assert_eq!(stats.files_not_removed, 0, "{stats:?}");
    assert!(
        stats.files_removed >= snapshots - 1,
        "the {} replaced snapshots were deleted: {stats:?}",
        snapshots - 1
    );
}

/// The size of `map` as bincode writes it: a u64 length, then per entry a
/// u32 key, a u64 length and the value's bytes.
fn bincode_size(map: &Map) -> u64 {
    8 + map.0.values().map(|v| 4 + 8 + v.len() as u64).sum::<u64>()
}
