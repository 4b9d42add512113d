//! Both backends of this crate against the storage conformance suite.

use omnipaxos_storage::{
    conformance,
    memory_storage::MemoryStorage,
    persistent_storage::{LogOptions, PersistentStorage, PersistentStorageConfig},
};
use std::path::Path;

#[test]
fn memory_storage_passes_the_conformance_suite() {
    conformance::run(MemoryStorage::default);
}

/// Runs the suite on persistent storages in `root`, built by `config_for`.
fn run_persistent(root: &Path, config_for: impl Fn(&Path) -> PersistentStorageConfig) {
    let mut n = 0;
    let open = |config: &PersistentStorageConfig| {
        PersistentStorage::open(config.clone())
            .unwrap_or_else(|e| panic!("opening {:?} failed: {e}", config.path()))
    };
    conformance::run_with_reopen(
        || {
            n += 1;
            let config = config_for(&root.join(n.to_string()));
            (open(&config), config)
        },
        |(storage, config)| {
            drop(storage);
            (open(&config), config)
        },
    );
}

#[test]
fn persistent_storage_passes_the_conformance_suite() {
    let root = tempfile::tempdir().unwrap();
    run_persistent(root.path(), |path| PersistentStorageConfig::with_path(path));
}

#[test]
fn persistent_storage_with_tiny_segments_passes_the_conformance_suite() {
    // Segments of a few entries each, so that appends roll segments, trims
    // delete them and rewrites cut across them.
    let root = tempfile::tempdir().unwrap();
    run_persistent(root.path(), |path| {
        let mut config = PersistentStorageConfig::with_path(path);
        let mut options = LogOptions::new(path.join("log"));
        options.segment_max_bytes(200).index_max_items(4);
        config.set_commitlog_options(options);
        config
    });
}

#[test]
fn persistent_storage_with_the_log_in_its_own_directory_passes() {
    // The seed's layout: the commitlog options name the storage path itself.
    let root = tempfile::tempdir().unwrap();
    run_persistent(root.path(), |path| {
        let mut config = PersistentStorageConfig::default();
        config.set_path(path);
        config.set_commitlog_options(LogOptions::new(path));
        config
    });
}
