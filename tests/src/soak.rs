//! What the randomized soaks (`tests/soak.rs`, `tests/soak_persistent.rs`)
//! share: reading their settings, random choices on a cluster, and running
//! many seeds on every core.

use crate::SimCluster;
use rand::Rng;
use std::{
    panic,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

/// The number in environment variable `name`, if it is set; panics with the
/// name if it is not a number.
pub fn env_u64(name: &str) -> Option<u64> {
    let raw = std::env::var(name).ok()?;
    Some(
        raw.parse()
            .unwrap_or_else(|e| panic!("{name}={raw:?} is not a number: {e}")),
    )
}

/// One of `from`, drawn from the run's generator.
pub fn pick(cluster: &mut SimCluster, from: &[u64]) -> Option<u64> {
    if from.is_empty() {
        return None;
    }
    let i = cluster.rng().gen_range(0..from.len());
    Some(from[i])
}

/// A random index above `pid`'s compacted index, at most its decided index
/// and the length of the decided log the invariants hold (so that they can
/// compare every snapshot with it).
pub fn compaction_point(cluster: &mut SimCluster, pid: u64) -> Option<u64> {
    let node = cluster.node(pid);
    let low = node.get_compacted_idx() + 1;
    let high = node
        .get_decided_idx()
        .min(cluster.decided_log().len() as u64);
    (low <= high).then(|| cluster.rng().gen_range(low..=high))
}

/// What [`run_seeds`] found.
#[derive(Debug)]
pub struct SeedRun<R> {
    /// The seeds that panicked, in order.
    pub failed: Vec<u64>,
    /// What each passing seed returned, in no particular order.
    pub results: Vec<R>,
    /// Worker threads used.
    pub workers: usize,
    /// Wall-clock time of the whole run.
    pub elapsed: Duration,
}

/// Runs `run` for seeds `0..seeds` on one thread per core. A seed that panics
/// has printed its failure (with its replay command) and is noted; the run
/// goes on so that one run lists every failing seed, but stops handing out
/// seeds once `max_failures` have failed.
pub fn run_seeds<R: Send>(
    seeds: u64,
    max_failures: usize,
    run: impl Fn(u64) -> R + Sync,
) -> SeedRun<R> {
    let workers = thread::available_parallelism().map_or(2, |n| n.get());
    let started = Instant::now();
    let next = AtomicU64::new(0);
    let failed = Mutex::new(Vec::new());
    let results = Mutex::new(Vec::new());
    thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= seeds
                        || failed.lock().expect("no panics while held").len() >= max_failures
                    {
                        break;
                    }
                    // A panicking seed leaves nothing shared behind: `run` builds its
                    // own cluster, so asserting unwind safety is sound.
                    match panic::catch_unwind(panic::AssertUnwindSafe(|| run(seed))) {
                        Ok(r) => results.lock().expect("no panics while held").push(r),
                        Err(_) => failed.lock().expect("no panics while held").push(seed),
                    }
                }
            });
        }
    });
    let mut failed = failed.into_inner().expect("no panics while held");
    failed.sort_unstable();
    SeedRun {
        failed,
        results: results.into_inner().expect("no panics while held"),
        workers,
        elapsed: started.elapsed(),
    }
}
