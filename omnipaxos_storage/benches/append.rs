//! Durable appends per second: `PersistentStorage` (fsync + sled flush per
//! batch) against `MemoryStorage`, for batches of 1, 64 and 1024 entries.
//!
//! `cargo bench -p omnipaxos_storage --bench append`

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_main};
use omnipaxos::storage::Storage;
use omnipaxos_storage::{
    conformance::Value,
    memory_storage::MemoryStorage,
    persistent_storage::{PersistentStorage, PersistentStorageConfig},
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

// Written out instead of `criterion_group!`, whose generated `pub fn` has no
// doc comment and so trips the workspace's `missing_docs` lint.
fn benches() {
    let mut criterion = Criterion::default().configure_from_args();
    append(&mut criterion);
}
criterion_main!(benches);
