//! The kv_store's real state machine (`kv_store::store`: `KVCommand`,
//! `KvState::apply`, snapshots included) under the simulator: five servers,
//! a lossy network, partitions and crashes, and every replica equal to the
//! decided log replayed.

use kv_store::{CommandId, KVCommand, KvState, Op, SessionId};
use omnipaxos::util::NodeId;
use omnipaxos_sim::{Faults, Sim, SimError};
use omnipaxos_storage::memory_storage::MemoryStorage;
use rand::Rng;

const IDS: [NodeId; 5] = [1, 2, 3, 4, 5];
const KEYS: [&str; 4] = ["a", "b", "c", "d"];

type KvSim = Sim<KVCommand, MemoryStorage<KVCommand>, KvState>;

fn kv_sim(seed: u64) -> Result<KvSim, SimError> {
    Sim::builder(&IDS)
        .seed(seed)
        .faults(Faults {
            drop_probability: 0.05,
            duplicate_probability: 0.02,
            min_delay_ticks: 0,
            max_delay_ticks: 3,
        })
        .storage(|_| MemoryStorage::default())
        .state_machine(|state: &mut KvState, cmd: &KVCommand| {
            state.apply(cmd);
        })
        // Only the four keys are ever written.
        .state_invariant(|state| {
            if state.len() <= KEYS.len() && state.scan("").all(|(k, _)| KEYS.contains(&k)) {
                Ok(())
            } else {
                Err(format!(
                    "unexpected keys: {:?}",
                    state.scan("").collect::<Vec<_>>()
                ))
            }
        })
        .build()
}

/// A random write of session `pid`, number `seq`.
fn command(sim: &mut KvSim, pid: NodeId, seq: u64) -> KVCommand {
    let key = KEYS[sim.rng().gen_range(0..KEYS.len())].to_owned();
    let value = format!("v{seq}");
    let op = match sim.rng().gen_range(0..3) {
        0 => Op::Put { key, value },
        1 => Op::Delete { key },
        _ => Op::Cas {
            key,
            expected: None,
            new: value,
        },
    };
    KVCommand {
        id: CommandId {
            session: SessionId { pid, nonce: 0 },
            seq,
        },
        op,
    }
}

/// Runs one seed; returns how many servers ended with a compacted log
/// (caught up from a snapshot), whose replicas were filled in from the
/// cluster's decided log.
fn run(seed: u64) -> Result<usize, SimError> {
    let mut sim = kv_sim(seed)?;
    let mut seq = 0;
    for round in 0..6 {
        sim.heal();
        match round % 3 {
            0 => sim.partition(&[1, 2], &[3, 4, 5])?,
            1 => {
                let pid = IDS[sim.rng().gen_range(0..IDS.len())];
                sim.isolate(pid)?;
            }
            _ => {}
        }
        let victim = IDS[sim.rng().gen_range(0..IDS.len())];
        if sim.is_up(victim) {
            sim.crash(victim)?;
        } else {
            sim.restart(victim)?;
        }
        for _ in 0..20 {
            let at = IDS[sim.rng().gen_range(0..IDS.len())];
            let cmd = command(&mut sim, at, seq);
            seq += 1;
            let _ = sim.propose(at, cmd);
            sim.run_for(3)?;
        }
    }
    sim.heal();
    for pid in IDS {
        if !sim.is_up(pid) {
            sim.restart(pid)?;
        }
    }
    let leader = sim.wait_for_leader(2_000)?;
    let last = command(&mut sim, leader, seq);
    if let Err(e) = sim.propose(leader, last.clone()) {
        panic!("seed {seed}: the healed leader refused: {e}");
    }
    sim.run_until(
        |s| {
            let n = s.decided_log().len() as u64;
            s.decided_log().contains(&last) && IDS.iter().all(|&p| s.applied(p) == Some(n))
        },
        3_000,
    )?;
    let replayed = KvState::replay(sim.decided_log());
    for pid in IDS {
        assert_eq!(
            sim.replica(pid),
            Some(&replayed),
            "seed {seed}, server {pid}"
        );
    }
    Ok(IDS
        .iter()
        .filter(|&&p| sim.node(p).is_some_and(|n| n.get_compacted_idx() > 0))
        .count())
}

#[test]
fn the_kv_stores_state_machine_agrees_on_every_replica_under_faults() {
    let n: u64 = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) { 50 } else { 300 });
    let mut failures = Vec::new();
    let mut from_snapshot = 0;
    for seed in 0..n {
        match run(seed) {
            Ok(compacted) => from_snapshot += compacted,
            Err(e) => failures.push(format!("seed {seed}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The kv_store's entries have real snapshots: a server that missed 64
    // decided entries or more catches up from one, and its replica is then
    // brought up to date from the cluster's decided log. Make sure the runs
    // take that path.
    assert!(
        from_snapshot > 0 || n < 10,
        "no server caught up from a snapshot in {n} seeds"
    );
}
