//! Randomized soak on `PersistentStorage`: crashes and restarts far more
//! often than in the main soak, every one of them through the files.
//!
//! Each seed builds a cluster on [`SimStorage::Persistent`], so a crash
//! closes a server's storage and reopens its directory (checking it reads
//! back exactly what was written), and a restart reopens it again before
//! `fail_recovery()`. The script, drawn from the seed, mixes proposals at
//! random servers with crashes of random servers (the leader included),
//! occasional crashes of the whole cluster, restarts, failed storage writes
//! (the server stops, and is crashed and restarted), link cuts and heals,
//! compaction (trim and snapshot) and leader changes, on a lossy,
//! duplicating, reordering network. Every invariant runs after every tick;
//! the one that matters most here is that no decided entry is lost. After
//! the chaos every server is restarted and every link healed, and a fresh
//! proposal must be decided everywhere.
//!
//! * `PERSISTENT_SOAK_SEEDS=<n>` runs seeds `0..n` (default 32).
//! * `PERSISTENT_SOAK_SEED=<s>` runs seed `s` alone, to replay a failure.
//!
//! Seeds run on all available cores; a failing seed prints its panic (with
//! the broken property, the tick and the replay command) and the soak fails
//! at the end listing every failing seed.

use omnipaxos_tests::{
    SimCluster, SimOptions, SimStorage,
    soak::{compaction_point, env_u64, pick, run_seeds},
};
use rand::{Rng, SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;

/// Ticks of chaos per seed.
const CHAOS_TICKS: u64 = 800;
/// Ticks, in election timeouts, a healed cluster gets to decide a fresh
/// proposal everywhere (the network still loses messages).
const RECOVERY_TIMEOUTS: u64 = 40;
/// The seeds run by default.
const DEFAULT_SEEDS: u64 = 32;

/// The replay command of seed `seed`.
fn replay(seed: u64) -> String {
    format!("PERSISTENT_SOAK_SEED={seed} cargo test -p omnipaxos_tests --test soak_persistent")
}

/// The cluster and knobs of seed `seed`, from a generator of their own so
/// that they do not depend on how the run uses the cluster's generator.
fn options_for(seed: u64) -> (Vec<u64>, SimOptions) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xD15C_0000);
    let size = *[3_usize, 3, 5].choose(&mut rng).expect("non-empty");
    let mut ids: Vec<u64> = (1..=9).collect();
    ids.shuffle(&mut rng);
    ids.truncate(size);
    let options = SimOptions {
        seed,
        storage: SimStorage::Persistent,
        drop_probability: rng.gen_range(0.0..0.05),
        duplicate_probability: rng.gen_range(0.0..0.05),
        max_delay_ticks: rng.gen_range(0..=2),
        election_tick_timeout: rng.gen_range(5..=10),
        resend_message_tick_timeout: rng.gen_range(5..=20),
        batch_size: *[1_usize, 1, 4].choose(&mut rng).expect("non-empty"),
        call_reconnected: rng.gen_bool(0.5),
        joiners_ask_log_len: rng.gen_bool(0.5),
        max_entries_per_message: [4, 16, 64, 8192][rng.gen_range(0..4)],
        // Odd seeds: leaders write their batches with `write_deferred`.
        defer_leader_sync: seed % 2 == 1,
        replay_command: Some(replay(seed)),
        ..SimOptions::default()
    };
    (ids, options)
}

/// What the runs did, summed over seeds, to show what the soak covered.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    /// Servers crashed (each one reopens its files).
    crashes: u64,
    /// Times every running server crashed at once.
    whole_cluster_crashes: u64,
    /// Servers restarted from their files.
    restarts: u64,
    /// Entries decided, over all seeds.
    decided: u64,
    /// Storage write failures injected, and servers they stopped (each then
    /// crashed and, later, restarted from its files).
    storage_failures: u64,
    stopped_by_storage: u64,
}

impl Tally {
    fn add(&mut self, other: Self) {
        self.crashes += other.crashes;
        self.whole_cluster_crashes += other.whole_cluster_crashes;
        self.restarts += other.restarts;
        self.decided += other.decided;
        self.storage_failures += other.storage_failures;
        self.stopped_by_storage += other.stopped_by_storage;
    }
}

/// Does at most one random thing to the cluster before a step. Crashes and
/// restarts are frequent: a server is down for a few election timeouts on
/// average, and the leader is a target as often as any other server.
fn chaos_action(cluster: &mut SimCluster, tally: &mut Tally) {
    let ids = cluster.ids().to_vec();
    let live = cluster.live_ids();
    let down: Vec<u64> = ids.iter().copied().filter(|p| !live.contains(p)).collect();
    let roll: f64 = cluster.rng().gen_range(0.0..1.0);
    match roll {
        r if r < 0.20 => {
            if let Some(at) = pick(cluster, &live) {
                let value = cluster.next_value();
                // A full buffer may refuse it; a refused value is not
                // recorded as proposed and so may never be decided.
                let _ = cluster.propose(at, value);
            }
        }
        r if r < 0.21 => {
            if let Some(pid) = pick(cluster, &live) {
                cluster.crash(pid);
                tally.crashes += 1;
            }
        }
        r if r < 0.215 => {
            if let Some(leader) = cluster.leader() {
                cluster.crash(leader);
                tally.crashes += 1;
            }
        }
        r if r < 0.2155 => {
            // The whole cluster goes down at once: only the files remain.
            tally.crashes += live.len() as u64;
            tally.whole_cluster_crashes += 1;
            for pid in live {
                cluster.crash(pid);
            }
        }
        r if r < 0.24 => {
            if let Some(pid) = pick(cluster, &down) {
                cluster.restart(pid);
                tally.restarts += 1;
            }
        }
        r if r < 0.245 => {
            let a = pick(cluster, &ids).expect("a cluster has servers");
            let b = pick(cluster, &ids).expect("a cluster has servers");
            if a != b {
                cluster.cut_both(a, b);
            }
        }
        r if r < 0.255 => cluster.heal_all(),
        r if r < 0.258 => {
            if let Some(pid) = pick(cluster, &live) {
                cluster.try_become_leader(pid);
            }
        }
        r if r < 0.262 => {
            if let Some(pid) = pick(cluster, &live) {
                if let Some(idx) = compaction_point(cluster, pid) {
                    // Refusals (not the leader, a follower behind) are fine.
                    let _ = cluster.node_mut(pid).trim(Some(idx));
                }
            }
        }
        r if r < 0.266 => {
            if let Some(pid) = pick(cluster, &live) {
                if let Some(idx) = compaction_point(cluster, pid) {
                    let local_only = cluster.rng().gen_bool(0.5);
                    let _ = cluster.node_mut(pid).snapshot(Some(idx), local_only);
                }
            }
        }
        // The next one to three writes fail before they reach the files
        // (a full disk): the server stops at the first and is crashed after
        // the step.
        r if r < 0.268 => {
            if let Some(pid) = pick(cluster, &live) {
                let n = cluster.rng().gen_range(1..=3);
                cluster.fail_storage_writes(pid, n);
                tally.storage_failures += 1;
            }
        }
        _ => {}
    }
}

/// Runs one seed: chaos, then everyone up and every link healed, then a
/// fresh proposal must be decided everywhere.
fn run_seed(seed: u64) -> Tally {
    let (ids, options) = options_for(seed);
    let ett = options.election_tick_timeout;
    let mut cluster = SimCluster::new(&ids, options);
    let mut tally = Tally::default();
    for _ in 0..CHAOS_TICKS {
        chaos_action(&mut cluster, &mut tally);
        cluster.step();
        let stopped = cluster.crash_halted();
        tally.stopped_by_storage += stopped;
        tally.crashes += stopped;
    }
    let decided = cluster.decided_log().to_vec();
    cluster.heal_all();
    cluster.clear_storage_failures();
    for &pid in &ids {
        if !cluster.is_up(pid) {
            cluster.restart(pid);
            tally.restarts += 1;
        }
    }
    let at = ids[cluster.rng().gen_range(0..ids.len())];
    let fresh = cluster.propose_new(at);
    cluster.run_until(|c| c.all_live_decided(&fresh), RECOVERY_TIMEOUTS * ett);
    assert!(
        cluster.decided_log().starts_with(&decided),
        "[sim] seed {seed}: the decided log lost entries after recovery"
    );
    tally.decided = cluster.decided_log().len() as u64;
    tally
}

#[test]
fn crashes_through_the_files_never_lose_a_decided_entry_and_the_cluster_recovers() {
    if let Some(seed) = env_u64("PERSISTENT_SOAK_SEED") {
        eprintln!("persistent soak: replaying seed {seed}");
        let tally = run_seed(seed);
        eprintln!("persistent soak: seed {seed} passed: {tally:?}");
        return;
    }
    let seeds = env_u64("PERSISTENT_SOAK_SEEDS").unwrap_or(DEFAULT_SEEDS);
    // No early stop: every failing seed is listed.
    let run = run_seeds(seeds, usize::MAX, run_seed);
    let (failed, elapsed) = (&run.failed, run.elapsed);
    assert!(
        failed.is_empty(),
        "persistent soak: seeds {failed:?} failed in {elapsed:.1?}; replay one with `{}`",
        replay(failed.first().copied().unwrap_or_default())
    );
    let mut total = Tally::default();
    for tally in run.results {
        total.add(tally);
    }
    eprintln!(
        "persistent soak: {seeds} seeds on {} threads passed in {elapsed:.1?}: {total:?}",
        run.workers
    );
}
