//! The kv_store's state machine in the simulator: three servers on a lossy
//! network decide a few hundred writes while the leader is partitioned
//! away and a follower crashes, and every replica ends equal to the
//! decided log replayed. Prints one line per seed.
//!
//! ```text
//! cargo run -p omnipaxos_sim --example kv_sim -- [first seed] [seeds]
//! ```

use kv_store::{CommandId, KVCommand, KvState, Op, SessionId};
use omnipaxos_sim::{Faults, Sim, SimError};
use omnipaxos_storage::memory_storage::MemoryStorage;
use rand::Rng;

type KvSim = Sim<KVCommand, MemoryStorage<KVCommand>, KvState>;

fn run(seed: u64) -> Result<(u64, usize), SimError> {
    let mut sim = Sim::builder(&[1, 2, 3])
        .seed(seed)
        .faults(Faults {
            drop_probability: 0.05,
            duplicate_probability: 0.05,
            min_delay_ticks: 0,
            max_delay_ticks: 2,
        })
        .storage(|_| MemoryStorage::<KVCommand>::default())
        .state_machine(|state: &mut KvState, cmd: &KVCommand| {
            state.apply(cmd);
        })
        .build()?;
    let mut seq = 0;
    let mut write = |sim: &mut KvSim, at| {
        let key = format!("key{}", sim.rng().gen_range(0..10));
        let cmd = KVCommand {
            id: CommandId {
                session: SessionId { pid: at, nonce: 0 },
                seq,
            },
            op: Op::Put {
                key,
                value: format!("value{seq}"),
            },
        };
        seq += 1;
        // Refused while a server is down or has no leader: skip it.
        let _ = sim.propose(at, cmd);
    };
    let leader = sim.wait_for_leader(500)?;
    for _ in 0..100 {
        write(&mut sim, leader);
        sim.run_for(1)?;
    }
    // Partition the leader away from the others, and crash one of them
    // for a while: the remaining majority of two elects a leader of its own.
    let others: Vec<u64> = sim.ids().iter().copied().filter(|&p| p != leader).collect();
    sim.partition(&[leader], &others)?;
    // The old leader still believes it leads, so wait for the majority
    // side to agree on a leader of its own.
    let majority_leader = |s: &KvSim| {
        others.iter().copied().find(|&p| {
            s.node(p).is_some_and(|n| n.is_leader())
                && others
                    .iter()
                    .all(|&q| s.node(q).and_then(|n| n.get_current_leader()) == Some(p))
        })
    };
    sim.run_until(|s| majority_leader(s).is_some(), 1_000)?;
    let new_leader = majority_leader(&sim).unwrap_or(others[0]);
    for _ in 0..100 {
        write(&mut sim, new_leader);
        sim.run_for(1)?;
    }
    sim.heal();
    let follower = *others
        .iter()
        .find(|&&p| p != new_leader)
        .unwrap_or(&others[0]);
    sim.crash(follower)?;
    for _ in 0..100 {
        write(&mut sim, new_leader);
        sim.run_for(1)?;
    }
    sim.restart(follower)?;
    sim.run_until(
        |s| {
            let n = s.decided_log().len() as u64;
            s.ids().iter().all(|&p| s.applied(p) == Some(n))
        },
        5_000,
    )?;
    let replayed = KvState::replay(sim.decided_log());
    for &pid in sim.ids() {
        assert_eq!(
            sim.replica(pid),
            Some(&replayed),
            "seed {seed}, server {pid}"
        );
    }
    Ok((sim.now(), sim.decided_log().len()))
}

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>());
    let first = args.next().and_then(Result::ok).unwrap_or(0);
    let count = args.next().and_then(Result::ok).unwrap_or(5);
    let mut failed = false;
    for seed in first..first + count {
        match run(seed) {
            Ok((ticks, decided)) => {
                println!(
                    "seed {seed}: {decided} writes decided in {ticks} ticks, all replicas equal"
                );
            }
            Err(e) => {
                println!("seed {seed}: FAILED: {e}");
                failed = true;
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}
