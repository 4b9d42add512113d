//! Durable appends per second: `PersistentStorage` against `MemoryStorage`,
//! for batches of 1, 64 and 1024 entries.
//!
//! `cargo bench -p omnipaxos_storage --bench append`
//!
//! With the argument `paired` the criterion groups are skipped and the bench
//! instead compares the storage with the disk it runs on, in one run:
//!
//! `cargo bench -p omnipaxos_storage --bench append -- paired`
//!
//! It alternates one `fdatasync` of a 64-byte append to a plain file in the
//! storage's directory with one durable batch-1 append, so that both see the
//! same disk at the same moment, and prints the median of each and their
//! ratio (what a durable write costs in syncs of the disk). Then it times
//! batches of 1024 entries of 8 bytes and of 100 bytes and prints entries
//! per second. `PAIRED_ROUNDS` (default 2000) sets the number of pairs and
//! `PAIRED_BATCHES` (default 300) the number of 1024-entry batches.

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_main};
use omnipaxos::storage::{Entry, NoSnapshot, Storage};
use omnipaxos_storage::{
    conformance::Value,
    memory_storage::MemoryStorage,
    persistent_storage::{PersistentStorage, PersistentStorageConfig},
};
use serde::{Deserialize, Serialize};
use std::{
    fs::OpenOptions,
    io::Write,
    time::{Duration, Instant},
};

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    for batch in [1u64, 64, 1024] {
        group.throughput(Throughput::Elements(batch));
        let entries = || (0..batch).map(Value).collect::<Vec<_>>();
        group.bench_with_input(BenchmarkId::new("memory", batch), &batch, |b, _| {
            let mut storage = MemoryStorage::default();
            b.iter_batched(
                entries,
                |e| storage.append_entries(e).unwrap(),
                BatchSize::SmallInput,
            );
        });
        let dir = tempfile::tempdir().unwrap();
        let mut storage =
            PersistentStorage::open(PersistentStorageConfig::with_path(dir.path())).unwrap();
        group.bench_with_input(BenchmarkId::new("persistent", batch), &batch, |b, _| {
            b.iter_batched(
                entries,
                |e| storage.append_entries(e).unwrap(),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

/// A 100-byte entry (its bincode encoding is the 100 bytes: a fixed-size
/// array has no length prefix).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Bytes100(#[serde(with = "serde_bytes_100")] [u8; 100]);

impl Entry for Bytes100 {
    type Snapshot = NoSnapshot;
}

/// serde has no impls for arrays longer than 32; this writes the array as a
/// tuple of its bytes, which bincode encodes as the bytes themselves.
mod serde_bytes_100 {
    use serde::{
        Deserializer, Serializer,
        de::{Error, SeqAccess, Visitor},
        ser::SerializeTuple,
    };
    use std::fmt;

    pub(super) fn serialize<S: Serializer>(bytes: &[u8; 100], s: S) -> Result<S::Ok, S::Error> {
        let mut tuple = s.serialize_tuple(100)?;
        for b in bytes {
            tuple.serialize_element(b)?;
        }
        tuple.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 100], D::Error> {
        struct Bytes;
        impl<'de> Visitor<'de> for Bytes {
            type Value = [u8; 100];
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("100 bytes")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<[u8; 100], A::Error> {
                let mut out = [0; 100];
                for (i, b) in out.iter_mut().enumerate() {
                    *b = seq
                        .next_element()?
                        .ok_or_else(|| A::Error::invalid_length(i, &self))?;
                }
                Ok(out)
            }
        }
        d.deserialize_tuple(100, Bytes)
    }
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// Entries per second of durable 1024-entry batches made by `make`.
fn batch_rate<T>(batches: usize, make: impl Fn(u64) -> T) -> f64
where
    T: Entry + Serialize + serde::de::DeserializeOwned,
    T::Snapshot: Serialize + serde::de::DeserializeOwned,
{
    let dir = tempfile::tempdir().unwrap();
    let mut storage =
        PersistentStorage::<T>::open(PersistentStorageConfig::with_path(dir.path())).unwrap();
    let mut busy = Duration::ZERO;
    for b in 0..batches as u64 {
        let entries: Vec<T> = (0..1024).map(|i| make(b * 1024 + i)).collect();
        let start = Instant::now();
        storage.append_entries(entries).unwrap();
        busy += start.elapsed();
    }
    (batches * 1024) as f64 / busy.as_secs_f64()
}

/// The `paired` mode described in the module doc.
fn paired() {
    let rounds = env_or("PAIRED_ROUNDS", 2000);
    let batches = env_or("PAIRED_BATCHES", 300);
    let dir = tempfile::tempdir().unwrap();
    let mut storage =
        PersistentStorage::open(PersistentStorageConfig::with_path(dir.path())).unwrap();
    let mut probe = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("probe"))
        .unwrap();
    let payload = [0x5a_u8; 64];
    let (mut syncs, mut appends) = (Vec::new(), Vec::new());
    for i in 0..rounds as u64 {
        let start = Instant::now();
        probe.write_all(&payload).unwrap();
        probe.sync_data().unwrap();
        syncs.push(start.elapsed());
        let start = Instant::now();
        storage.append_entry(Value(i)).unwrap();
        appends.push(start.elapsed());
    }
    let (sync, write) = (median(&mut syncs), median(&mut appends));
    println!(
        "paired, {rounds} rounds: one fdatasync of a 64-byte append {:.1} us (median), \
         one durable batch-1 append {:.1} us (median), ratio {:.2}x",
        sync.as_secs_f64() * 1e6,
        write.as_secs_f64() * 1e6,
        write.as_secs_f64() / sync.as_secs_f64()
    );
    drop(storage);
    let small = batch_rate(batches, Value);
    println!("batch 1024, 8-byte entries: {:.2} M entries/s", small / 1e6);
    let large = batch_rate(batches, |i| Bytes100([i as u8; 100]));
    println!(
        "batch 1024, 100-byte entries: {:.2} M entries/s",
        large / 1e6
    );
}

// Written out instead of `criterion_group!`, whose generated `pub fn` has no
// doc comment and so trips the workspace's `missing_docs` lint.
fn benches() {
    if std::env::args().skip(1).any(|a| a == "paired") {
        paired();
        return;
    }
    let mut criterion = Criterion::default().configure_from_args();
    append(&mut criterion);
}
criterion_main!(benches);
