//! Five servers on a hostile network (loss, duplication, delay), with
//! partitions redrawn and servers crashed and restarted, over many seeds:
//! no invariant breaks, and once the faults heal the cluster decides again.
//!
//! `SIM_SEEDS=<n>` runs `n` seeds (default: 200 in a debug build, 1,000 in
//! release); `SIM_SEED=<s>` runs seed `s` alone, to replay a failure.

use omnipaxos::{macros::Entry, util::NodeId};
use omnipaxos_sim::{Faults, NetworkStats, Sim, SimError};
use omnipaxos_storage::memory_storage::MemoryStorage;
use rand::{Rng, seq::SliceRandom};

#[derive(Clone, Debug, PartialEq, Entry)]
struct Val(u64);

/// A replica that folds every decided entry, in order, into a hash: equal
/// replicas at one index mean equal decided prefixes.
#[derive(Debug, Default, PartialEq)]
struct Fold {
    count: u64,
    hash: u64,
}

const IDS: [NodeId; 5] = [1, 2, 3, 4, 5];
/// Rounds of faults per seed, and the ticks each lasts (election timeout:
/// 10 ticks).
const ROUNDS: u64 = 8;
const ROUND_TICKS: u64 = 50;

fn hostile() -> Faults {
    Faults {
        drop_probability: 0.05,
        duplicate_probability: 0.05,
        min_delay_ticks: 0,
        max_delay_ticks: 3,
    }
}

/// One seed's run: faults, then healing; returns the run's first error.
fn run(seed: u64) -> Result<NetworkStats, SimError> {
    let mut sim = Sim::builder(&IDS)
        .seed(seed)
        .faults(hostile())
        .storage(|_| MemoryStorage::default())
        .state_machine(|f: &mut Fold, v: &Val| {
            f.count += 1;
            f.hash = f.hash.rotate_left(5) ^ v.0;
        })
        .state_invariant(|f| {
            if f.count > 0 && f.hash == 0 {
                Err(format!("{f:?}: a non-empty fold hashes to 0"))
            } else {
                Ok(())
            }
        })
        .build()?;
    let mut next = 1;
    for _ in 0..ROUNDS {
        // Redraw the partition: heal, then maybe split the servers in two.
        sim.heal();
        if sim.rng().gen_bool(0.5) {
            let mut ids = IDS.to_vec();
            ids.shuffle(sim.rng());
            let k = sim.rng().gen_range(1..=2);
            sim.partition(&ids[..k], &ids[k..])?;
        }
        // Crash a server (at most two down at once) or restart one.
        let down: Vec<NodeId> = IDS.iter().copied().filter(|&p| !sim.is_up(p)).collect();
        if sim.rng().gen_bool(0.4) {
            if down.len() < 2 {
                let up: Vec<NodeId> = IDS.iter().copied().filter(|&p| sim.is_up(p)).collect();
                let victim = up[sim.rng().gen_range(0..up.len())];
                sim.crash(victim)?;
            }
        } else if let Some(&pid) = down.first() {
            sim.restart(pid)?;
        }
        for _ in 0..ROUND_TICKS / 5 {
            let at = IDS[sim.rng().gen_range(0..IDS.len())];
            // A crashed server or a full buffer refuses: fine here.
            let _ = sim.propose(at, Val(next));
            next += 1;
            sim.run_for(5)?;
        }
    }
    // Heal: every link up, every server running, the network still lossy.
    sim.heal();
    for pid in IDS {
        if !sim.is_up(pid) {
            sim.restart(pid)?;
        }
    }
    let leader = sim.wait_for_leader(2_000)?;
    if let Err(e) = sim.propose(leader, Val(u64::MAX)) {
        panic!("seed {seed}: the healed leader refused a proposal: {e}");
    }
    sim.run_until(
        |s| {
            let decided = s.decided_log();
            decided.contains(&Val(u64::MAX))
                && IDS
                    .iter()
                    .all(|&p| s.applied(p) == Some(decided.len() as u64))
        },
        3_000,
    )?;
    Ok(sim.network_stats())
}

fn seeds() -> Vec<u64> {
    if let Some(seed) = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        return vec![seed];
    }
    let default = if cfg!(debug_assertions) { 200 } else { 1_000 };
    let n = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    (0..n).collect()
}

#[test]
fn five_servers_under_loss_partitions_and_crashes_stay_safe_and_decide_after_healing() {
    let mut failures = Vec::new();
    let mut total = NetworkStats::default();
    for seed in seeds() {
        match run(seed) {
            Ok(stats) => {
                total.dropped_randomly += stats.dropped_randomly;
                total.duplicated += stats.duplicated;
                total.dropped_by_cut += stats.dropped_by_cut;
                total.dropped_by_crash += stats.dropped_by_crash;
            }
            Err(e) => failures.push(format!("seed {seed}: {e} (replay: SIM_SEED={seed})")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every kind of fault happened.
    assert!(
        total.dropped_randomly > 0
            && total.duplicated > 0
            && total.dropped_by_cut > 0
            && total.dropped_by_crash > 0,
        "{total:?}"
    );
}
