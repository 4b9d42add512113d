//! The simulator's own promises: a run is a function of its seed, a run that
//! does not converge fails loudly with the seed, and crashed servers keep
//! their storage.

use omnipaxos_tests::{SimCluster, SimOptions, Value, network::NetworkStats};
use rand::Rng;
use std::panic::{self, AssertUnwindSafe};

/// What an observer records of a run: the network counters after every step,
/// and how the run ended (the decided log, or the panic message if the run
/// found a bug: a failing run must be exactly as reproducible as a passing one).
type Observed = (Vec<NetworkStats>, Result<Vec<Value>, String>);

/// A short scripted run on a lossy, duplicating, reordering network.
fn scripted_run(seed: u64) -> Observed {
    let mut history = Vec::new();
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        let options = SimOptions {
            seed,
            drop_probability: 0.1,
            duplicate_probability: 0.1,
            max_delay_ticks: 2,
            ..SimOptions::default()
        };
        let mut cluster = SimCluster::new(&[2, 4, 6], options);
        for tick in 0..200 {
            if tick % 5 == 0 {
                let at = [2, 4, 6][cluster.rng().gen_range(0..3)];
                let value = cluster.next_value();
                let _ = cluster.propose(at, value);
            }
            cluster.step();
            history.push(cluster.network().stats());
        }
        cluster.decided_log().to_vec()
    }));
    let outcome = outcome.map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_else(|| "non-string panic".to_owned())
    });
    (history, outcome)
}

#[test]
fn the_same_seed_gives_the_same_run() {
    assert_eq!(scripted_run(42), scripted_run(42));
}

#[test]
fn another_seed_gives_another_network_history() {
    assert_ne!(scripted_run(42).0, scripted_run(43).0);
}

#[test]
#[should_panic(expected = "(seed 99)")]
fn run_until_that_never_holds_panics_with_the_seed() {
    let mut cluster = SimCluster::new(&[1, 2, 3], SimOptions::with_seed(99));
    cluster.run_until(|_| false, 5);
}

#[test]
#[should_panic(expected = "--test simulator -- --exact run_until_failure_prints_a_replay_command")]
fn run_until_failure_prints_a_replay_command() {
    let mut cluster = SimCluster::new(&[1], SimOptions::default());
    cluster.run_until(|_| false, 1);
}

#[test]
fn a_crashed_server_keeps_its_storage_and_resumes_from_it() {
    let mut cluster = SimCluster::new(&[1, 2, 3], SimOptions::default());
    let leader = cluster.wait_for_leader(40);
    let value = cluster.propose_new(leader);
    cluster.run_until(|c| c.all_live_decided(&value), 20);

    cluster.crash(2);
    assert!(!cluster.is_up(2));
    assert_eq!(cluster.decided_idx(2), 1, "read from storage while down");
    assert_eq!(cluster.decided_entries(2), vec![value]);
    cluster.run_for(10);
    cluster.restart(2);
    assert!(cluster.is_up(2));
    assert_eq!(cluster.decided_entries(2), vec![value]);
}

#[test]
fn only_links_cuts_every_other_pair_both_ways() {
    let mut cluster = SimCluster::new(&[1, 2, 3, 4], SimOptions::default());
    cluster.only_links(&[(1, 2), (3, 2)]);
    let cut: Vec<_> = cluster.network().cut_links().collect();
    assert_eq!(
        cut,
        vec![
            (1, 3),
            (1, 4),
            (2, 4),
            (3, 1),
            (3, 4),
            (4, 1),
            (4, 2),
            (4, 3)
        ]
    );
    cluster.heal(4, 2);
    assert!(!cluster.network().is_cut(2, 4) && !cluster.network().is_cut(4, 2));
    cluster.heal_all();
    assert_eq!(cluster.network().cut_links().count(), 0);
}
