//! Growth check for `PersistentStorage`: a single-node `OmniPaxos` on it under
//! a kv_store-like load, for a million writes, printing the directory's size
//! and the write throughput per 100,000 writes.
//!
//! `cargo bench -p omnipaxos_storage --bench growth`
//!
//! The load: appends in batches of 64 (one durable write each), puts of
//! 100-byte values over 100,000 keys, and a local snapshot of the whole map
//! every 10,000 decided entries, as the kv_store takes them. The run fails
//! (exit code 1) if the last 100,000 writes ran at less than 0.8 times the
//! speed of the first, or if the directory ever grew past the bound the
//! storage documents: the live snapshot (twice, while one replaces the
//! other), the log since the last snapshot, one commitlog segment of trimmed
//! entries awaiting deletion, the write-ahead log's checkpoint threshold, and
//! a constant for the state database.
//!
//! `GROWTH_WRITES` (default 1,000,000) and `GROWTH_KEYS` (default 100,000)
//! change the length of the run and the number of keys; `GROWTH_DIR` keeps
//! the directory in a place of your choice (it must not exist yet).

use omnipaxos::{OmniPaxos, OmniPaxosConfig, storage::Entry, storage::Snapshot};
use omnipaxos_storage::persistent_storage::{
    DEFAULT_WAL_CHECKPOINT_BYTES, PersistentStorage, PersistentStorageConfig,
};
use serde::{Deserialize, Serialize};
use std::{
    collections::HashMap,
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Instant,
};

/// Writes per durable batch, as the kv_store's default `batch_size`.
const BATCH: usize = 64;
/// Decided entries between two snapshots, as the kv_store's `snapshot_every`.
const SNAPSHOT_EVERY: u64 = 10_000;
/// Writes per reported row.
const ROW: u64 = 100_000;
/// The size of every value.
const VALUE_BYTES: usize = 100;
/// What the state database may take beyond what it is given: sled's log
/// segments and page snapshots. Measured at about 2 MiB; the bound leaves room.
const STATE_DB_ALLOWANCE: u64 = 16 << 20;

/// A put of one key, the kv_store's common command.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Put {
    key: String,
    value: String,
}

impl Entry for Put {
    type Snapshot = Map;
}

/// The whole map, the kv_store's snapshot.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Map(HashMap<String, String>);

impl Snapshot<Put> for Map {
    fn create(entries: &[Put]) -> Self {
        let mut map = HashMap::with_capacity(entries.len());
        for e in entries {
            map.insert(e.key.clone(), e.value.clone());
        }
        Self(map)
    }

    fn merge(&mut self, delta: Self) {
        self.0.extend(delta.0);
    }

    fn use_snapshots() -> bool {
        true
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Bytes the files under `dir` take on disk (allocated blocks, so sparse or
/// preallocated files count as what they really use), and how many files.
fn disk_usage(dir: &Path) -> (u64, u64) {
    let (mut bytes, mut files) = (0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                bytes += meta.blocks() * 512;
                files += 1;
            }
        }
    }
    (bytes, files)
}

/// This process's resident memory, from `/proc` (0 where there is none).
fn resident_bytes() -> u64 {
    fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

fn main() -> ExitCode {
    let writes = env_u64("GROWTH_WRITES", 1_000_000);
    let keys = env_u64("GROWTH_KEYS", 100_000).max(1);
    let _temp;
    let dir: PathBuf = match std::env::var_os("GROWTH_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            _temp = tempfile::tempdir().expect("a temporary directory");
            _temp.path().join("storage")
        }
    };
    let storage = PersistentStorage::<Put>::open(PersistentStorageConfig::with_path(&dir))
        .expect("open the storage");
    let config = OmniPaxosConfig {
        pid: 1,
        peers: vec![],
        batch_size: BATCH,
        ..Default::default()
    };
    let mut node: OmniPaxos<Put, _> = config.build(storage).expect("a valid config");
    let mut ticks = 0;
    while node.get_current_leader() != Some(1) {
        node.tick();
        ticks += 1;
        assert!(ticks < 1_000, "a single node elects itself");
    }

    println!(
        "PersistentStorage growth: {writes} writes in batches of {BATCH}, {keys} keys, \
         {VALUE_BYTES}-byte values, a snapshot every {SNAPSHOT_EVERY} entries; {}",
        dir.display()
    );
    println!(
        "{:>9} {:>10} {:>10} {:>10} {:>7} {:>12} {:>9}",
        "writes", "writes/s", "dir MiB", "max MiB", "files", "bound MiB", "rss MiB"
    );
    let value = "v".repeat(VALUE_BYTES);
    let mut rng_state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next_key = move || {
        // xorshift64*: a cheap, fixed sequence of keys.
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        rng_state.wrapping_mul(0x2545_F491_4F6D_CDD2) % keys
    };
    let entry_bytes = (VALUE_BYTES + 8 + 16) as u64;
    let mut rates = Vec::new();
    let mut last_snapshot = 0;
    let mut max_usage = 0;
    let mut max_over_bound: Option<(u64, u64, u64)> = None;
    let mut live_keys = std::collections::HashSet::new();
    let mut row_start = Instant::now();
    let mut done = 0u64;
    let mut row_done = 0u64;
    while done < writes {
        let n = BATCH.min((writes - done) as usize);
        for _ in 0..n {
            let key = next_key();
            live_keys.insert(key);
            node.append(Put {
                key: format!("k{key}"),
                value: value.clone(),
            })
            .expect("the leader takes the write");
        }
        // A partly filled batch goes out on the next tick.
        node.tick();
        done += n as u64;
        let decided = node.get_decided_idx();
        assert_eq!(decided, done, "a single node decides every batch it writes");
        if decided >= last_snapshot + SNAPSHOT_EVERY {
            node.snapshot(Some(decided), true).expect("snapshot");
            last_snapshot = decided;
        }
        if let Some(e) = node.get_storage_failure() {
            panic!("storage failed: {e}");
        }
        if done / ROW > (done - n as u64) / ROW || done == writes {
            let (usage, files) = disk_usage(&dir);
            max_usage = max_usage.max(usage);
            // The live data: the map's entries as bincode writes them.
            let snapshot_bytes = live_keys.len() as u64 * (entry_bytes + 8);
            let log_bytes = (decided - last_snapshot) * (entry_bytes + 20);
            let segment = 32 << 20;
            // The write-ahead log stays below its checkpoint threshold plus
            // one batch; the batch is small beside the allowance.
            let wal = DEFAULT_WAL_CHECKPOINT_BYTES;
            let bound = 2 * snapshot_bytes + log_bytes + segment + wal + STATE_DB_ALLOWANCE;
            if usage > bound {
                max_over_bound.get_or_insert((done, usage, bound));
            }
            let secs = row_start.elapsed().as_secs_f64();
            let in_row = done - row_done;
            let rate = in_row as f64 / secs;
            rates.push((in_row, rate));
            row_done = done;
            println!(
                "{done:>9} {rate:>10.0} {:>10.1} {:>10.1} {files:>7} {:>12.1} {:>9.1}",
                mib(usage),
                mib(max_usage),
                mib(bound),
                mib(resident_bytes())
            );
            row_start = Instant::now();
        }
    }

    let parts: Vec<String> = ["records", "commitlog", "state"]
        .iter()
        .map(|part| format!("{part} {:.1} MiB", mib(disk_usage(&dir.join(part)).0)))
        .collect();
    println!("at the end: {}", parts.join(", "));
    let mut ok = true;
    let full: Vec<f64> = rates
        .iter()
        .filter(|(n, _)| *n + BATCH as u64 >= ROW)
        .map(|(_, r)| *r)
        .collect();
    if let (Some(first), Some(last)) = (full.first(), full.last()) {
        let ratio = last / first;
        println!(
            "throughput: first {first:.0}/s, last {last:.0}/s, ratio {ratio:.2} (must be >= 0.80)"
        );
        ok &= ratio >= 0.8;
    }
    match max_over_bound {
        Some((at, usage, bound)) => {
            println!(
                "size: {:.1} MiB after {at} writes, over the bound of {:.1} MiB",
                mib(usage),
                mib(bound)
            );
            ok = false;
        }
        None => println!(
            "size: at most {:.1} MiB, within the bound at every row",
            mib(max_usage)
        ),
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        println!("FAILED");
        ExitCode::FAILURE
    }
}
