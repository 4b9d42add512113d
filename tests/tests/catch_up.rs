//! A follower far behind is brought up to date in chunks: no message to it
//! carries more than `max_entries_per_message` entries or more than
//! `max_message_bytes` of them (by `Entry::size_hint`), also when messages
//! are lost on the way, and the transfer resumes when the leader changes in
//! the middle. The follower writes each chunk as it arrives, so what its
//! protocol holds for the transfer is one message: the bounds below.
//!
//! After a leader change too: a follower far behind takes the new leader's
//! decided prefix in parts (`DecidedSync`) before its `AcceptSync`, and a
//! new leader far behind takes a follower's decided prefix in parts, one per
//! promise. What still comes in one message: the undecided part of the log
//! a new leader adopts (it must be accepted at once, in the new ballot),
//! which the leader's window keeps within a chunk: a leader keeps at most a
//! chunk of its log undecided, holding back the rest. A snapshot that
//! splits goes in parts (`compaction.rs` and `join_pull.rs`).

use omnipaxos::{ProposeErr, util::NodeId};
use omnipaxos_tests::{SimCluster, SimOptions, Value};

const CHUNK: usize = 10;

/// The tests that need many chunks use smaller ones: `Value` has snapshots,
/// and a follower missing 64 or more decided entries is sent one delta
/// snapshot of them instead (`DELTA_MIN_ENTRIES`), not entries.
const SMALL: usize = 2;

/// How many entries server `pid` stores.
fn log_len(c: &SimCluster, pid: u64) -> u64 {
    c.storage(pid)
        .with(|s| s.get_log_len())
        .expect("the simulator's storage does not fail reads")
}

fn options(seed: u64, drop_probability: f64) -> SimOptions {
    SimOptions {
        seed,
        drop_probability,
        max_entries_per_message: CHUNK,
        batch_size: 1,
        ..SimOptions::default()
    }
}

/// Starts a three-server cluster, crashes a follower, and has the other two
/// decide `n` entries; returns (leader, the crashed follower).
fn decide_without_one(c: &mut SimCluster, n: u64) -> (u64, u64) {
    c.run_until(|c| c.leader().is_some(), 500);
    let leader = c.leader().expect("a leader within 500 ticks");
    let behind = if leader == 3 { 2 } else { 3 };
    c.crash(behind);
    let mut ticks = 0;
    while c.leader().is_none_or(|l| c.decided_idx(l) < n) {
        if let Some(l) = c.leader() {
            c.propose_new(l);
        }
        c.step();
        ticks += 1;
        assert!(
            ticks < 20_000,
            "seed {}: the two servers decided too little",
            c.seed()
        );
    }
    (c.leader().expect("checked above"), behind)
}

#[test]
fn a_follower_that_missed_five_chunks_catches_up_in_chunks() {
    for (seed, loss) in [(1, 0.0), (2, 0.05), (3, 0.05), (4, 0.1), (5, 0.2)] {
        let mut c = SimCluster::new(&[1, 2, 3], options(seed, loss));
        let (leader, behind) = decide_without_one(&mut c, (5 * CHUNK) as u64);
        let target = c.decided_idx(leader);
        c.reset_max_entries_per_message();
        c.restart(behind);
        c.run_until(|c| c.decided_idx(behind) >= target, 10_000);
        let largest = c.max_entries_per_message();
        assert!(
            largest <= CHUNK,
            "seed {seed}: a message carried {largest} entries"
        );
        assert_eq!(
            c.decided_entries(behind)[..target as usize],
            c.decided_entries(leader)[..target as usize],
            "seed {seed}"
        );
    }
}

#[test]
fn chunks_respect_the_byte_bound_by_size_hint() {
    // `Value` is 8 bytes by its size hint: 48 bytes is 6 entries, fewer
    // than the entry bound allows.
    const BYTES: usize = 48;
    for seed in [11, 12, 13] {
        let mut c = SimCluster::new(
            &[1, 2, 3],
            SimOptions {
                max_entries_per_message: 1000,
                max_message_bytes: BYTES,
                ..options(seed, 0.05)
            },
        );
        let (leader, behind) = decide_without_one(&mut c, 60);
        let target = c.decided_idx(leader);
        c.reset_max_entries_per_message();
        c.restart(behind);
        c.run_until(|c| c.decided_idx(behind) >= target, 10_000);
        let largest = c.max_entry_bytes_per_message();
        assert!(
            largest <= BYTES,
            "seed {seed}: a message carried {largest} entry bytes"
        );
        assert_eq!(
            c.decided_entries(behind)[..target as usize],
            c.decided_entries(leader)[..target as usize],
            "seed {seed}"
        );
    }
}

#[test]
fn a_catch_up_interrupted_by_a_leader_change_resumes_under_the_new_leader() {
    for seed in [21, 22, 23, 24] {
        let mut c = SimCluster::new(
            &[1, 2, 3],
            SimOptions {
                max_entries_per_message: SMALL,
                ..options(seed, 0.0)
            },
        );
        let (leader, behind) = decide_without_one(&mut c, (25 * SMALL) as u64);
        let target = c.decided_idx(leader);
        c.restart(behind);
        // Let the first chunks arrive, then take the leader away: the third
        // server leads and finishes the transfer.
        c.run_until(|c| log_len(c, behind) > SMALL as u64, 2_000);
        assert!(
            log_len(&c, behind) < target,
            "seed {seed}: the follower caught up before the leader went away"
        );
        // The new leader sends its decided prefix in parts, then the rest.
        c.reset_max_entries_per_message();
        c.crash(leader);
        c.run_until(
            |c| c.leader().is_some_and(|l| l != leader) && c.decided_idx(behind) >= target,
            20_000,
        );
        let largest = c.max_entries_per_message();
        assert!(
            largest <= SMALL,
            "seed {seed}: a message carried {largest} entries"
        );
        let other = c.leader().expect("checked above");
        assert_eq!(
            c.decided_entries(behind)[..target as usize],
            c.decided_entries(other)[..target as usize],
            "seed {seed}"
        );
    }
}

/// The chunks go a few at a time: the next only once the follower
/// acknowledged one. Once its acknowledgements are lost, a follower gets
/// what was in flight and what the acknowledgements already on their way
/// release (a window each), and no more.
#[test]
fn a_leader_sends_a_bounded_window_of_chunks_to_a_follower_that_does_not_acknowledge() {
    for seed in [31, 32, 33] {
        let mut c = SimCluster::new(
            &[1, 2, 3],
            SimOptions {
                max_entries_per_message: SMALL,
                ..options(seed, 0.0)
            },
        );
        let (leader, behind) = decide_without_one(&mut c, (30 * SMALL) as u64);
        let target = c.decided_idx(leader);
        let start = log_len(&c, behind);
        c.restart(behind);
        c.run_until(|c| log_len(c, behind) > start, 2_000);
        c.cut(behind, leader);
        let at_cut = log_len(&c, behind);
        c.run_for(300);
        let got = log_len(&c, behind) - at_cut;
        assert!(
            got <= (8 * SMALL) as u64,
            "seed {seed}: {got} entries reached a follower that acknowledged none"
        );
        assert!(
            log_len(&c, behind) < target,
            "seed {seed}: the follower caught up without acknowledging"
        );
    }
}

/// A follower that was down while five chunks were decided comes back just
/// as the leader goes: the remaining server leads with it, and sends it its
/// decided log in parts before its `AcceptSync`, under message loss too.
#[test]
fn a_follower_far_behind_catches_up_in_chunks_from_a_new_leader() {
    for (seed, loss) in [(41, 0.0), (42, 0.05), (43, 0.1), (44, 0.2)] {
        let mut c = SimCluster::new(&[1, 2, 3], options(seed, loss));
        let (leader, behind) = decide_without_one(&mut c, (5 * CHUNK) as u64);
        // Let the last decisions reach the other follower.
        c.run_for(50);
        let target = c.decided_idx(leader);
        c.reset_max_entries_per_message();
        c.crash(leader);
        c.restart(behind);
        c.run_until(
            |c| c.leader().is_some_and(|l| l != leader) && c.decided_idx(behind) >= target,
            20_000,
        );
        let largest = c.max_entries_per_message();
        assert!(
            largest <= CHUNK,
            "seed {seed}: a message carried {largest} entries"
        );
        let other = c.leader().expect("checked above");
        assert_eq!(
            c.decided_entries(behind)[..target as usize],
            c.decided_entries(other)[..target as usize],
            "seed {seed}"
        );
        // The pair replicates new entries.
        let v = c.propose_new(other);
        c.run_until(|c| c.is_decided(behind, &v), 5_000);
    }
}

/// A server that was down while five chunks were decided becomes leader as
/// soon as it is back (it has the highest priority): the follower that holds
/// the log sends it its decided prefix a chunk per promise, and no message
/// carries more than a chunk.
#[test]
fn a_leader_far_behind_adopts_the_log_in_chunks() {
    for (seed, loss) in [(51, 0.0), (52, 0.05), (53, 0.1)] {
        let mut c = SimCluster::new(&[1, 2, 3], options(seed, loss));
        let (leader, behind) = decide_without_one(&mut c, (5 * CHUNK) as u64);
        c.run_for(50);
        let target = c.decided_idx(leader);
        c.set_priority(behind, 10);
        c.reset_max_entries_per_message();
        c.crash(leader);
        c.restart(behind);
        c.run_until(
            |c| c.leader() == Some(behind) && c.decided_idx(behind) >= target,
            20_000,
        );
        let largest = c.max_entries_per_message();
        assert!(
            largest <= CHUNK,
            "seed {seed}: a message carried {largest} entries"
        );
        let other = c.others(behind)[0];
        let other = if other == leader {
            c.others(behind)[1]
        } else {
            other
        };
        assert_eq!(
            c.decided_entries(behind)[..target as usize],
            c.decided_entries(other)[..target as usize],
            "seed {seed}"
        );
        let v = c.propose_new(behind);
        c.run_until(|c| c.is_decided(other, &v), 5_000);
    }
}

/// Starts a three-server cluster and crashes both followers of its leader,
/// which then has no quorum; returns (leader, followers).
fn leader_alone(c: &mut SimCluster) -> (NodeId, Vec<NodeId>) {
    let leader = c.wait_for_leader(500);
    let followers = c.others(leader);
    for &f in &followers {
        c.crash(f);
    }
    (leader, followers)
}

/// A leader that cannot decide keeps at most a chunk of its log undecided
/// (its window); what else is proposed waits in memory and goes, each
/// value once, once a quorum is back, in messages of at most a chunk.
#[test]
fn a_leader_without_a_quorum_keeps_a_chunk_undecided_and_sends_the_rest_later() {
    for (seed, loss) in [(61, 0.0), (62, 0.05), (63, 0.1)] {
        let mut c = SimCluster::new(&[1, 2, 3], options(seed, loss));
        let (leader, followers) = leader_alone(&mut c);
        let values: Vec<Value> = (0..5 * CHUNK).map(|_| c.propose_new(leader)).collect();
        c.run_for(100);
        let undecided = log_len(&c, leader) - c.decided_idx(leader);
        assert!(
            undecided <= CHUNK as u64,
            "seed {seed}: the leader's log has {undecided} undecided entries"
        );
        c.reset_max_entries_per_message();
        for &f in &followers {
            c.restart(f);
        }
        c.run_until(|c| values.iter().all(|v| c.all_live_decided(v)), 20_000);
        for v in &values {
            assert_eq!(c.count_decided(leader, v), 1, "seed {seed}: {v:?}");
        }
        let largest = c.max_entries_per_message();
        assert!(
            largest <= CHUNK,
            "seed {seed}: a message carried {largest} entries"
        );
    }
}

/// The undecided part of a log travels whole when a new leader adopts it
/// (it cannot be cut), so the window keeps it within a chunk: a follower
/// that accepted what its leader could not decide hands it to the next
/// leader in one message of at most a chunk, and it is decided.
#[test]
fn a_new_leader_adopts_an_undecided_window_in_one_chunk() {
    for seed in [71, 72, 73, 74] {
        let mut c = SimCluster::new(&[1, 2, 3], options(seed, 0.0));
        let leader = c.wait_for_leader(500);
        let [a, b] = c.others(leader)[..] else {
            unreachable!("three servers")
        };
        c.crash(a);
        // b accepts what the leader sends, but the leader never hears it.
        c.cut(b, leader);
        for _ in 0..3 * CHUNK {
            c.propose_new(leader);
        }
        c.run_for(50);
        let accepted = log_len(&c, b);
        let undecided = accepted - c.decided_idx(b);
        assert!(
            (1..=CHUNK as u64).contains(&undecided),
            "seed {seed}: the follower holds {undecided} undecided entries"
        );
        c.reset_max_entries_per_message();
        c.crash(leader);
        c.heal_all();
        c.restart(a);
        c.run_until(
            |c| {
                c.leader().is_some_and(|l| l != leader)
                    && c.decided_idx(a) >= accepted
                    && c.decided_idx(b) >= accepted
            },
            20_000,
        );
        let largest = c.max_entries_per_message();
        assert!(
            largest <= CHUNK,
            "seed {seed}: a message carried {largest} entries"
        );
    }
}

/// A stop-sign proposed while the window holds entries back goes after
/// them: the configuration's log ends with every value proposed before the
/// reconfiguration, each once. A value proposed after the reconfiguration
/// is taken and decided in the next configuration.
#[test]
fn a_stop_sign_waits_for_the_entries_the_window_holds_back() {
    for (seed, loss) in [(81, 0.0), (82, 0.05)] {
        let mut c = SimCluster::new(&[1, 2, 3], options(seed, loss));
        let (leader, followers) = leader_alone(&mut c);
        let values: Vec<Value> = (0..3 * CHUNK).map(|_| c.propose_new(leader)).collect();
        c.run_for(20);
        c.reconfigure(leader, &[1, 2, 3])
            .expect("the leader takes the reconfiguration");
        let late = c.propose_new(leader);
        for &f in &followers {
            c.restart(f);
        }
        c.run_until(
            |c| c.config_id() == 2 && c.ids().iter().all(|&p| c.is_current(p)),
            20_000,
        );
        let stop = c
            .configurations()
            .stop_idx(1)
            .expect("configuration 1 ended") as usize;
        assert_eq!(stop, values.len(), "seed {seed}: the old log's length");
        let old = &c.decided_log()[..stop];
        for v in &values {
            assert_eq!(
                old.iter().filter(|&x| x == v).count(),
                1,
                "seed {seed}: {v:?} in the old log"
            );
        }
        c.run_until(|c| c.all_live_decided(&late), 5_000);
        let at = c.decided_log().iter().position(|v| *v == late);
        assert!(
            at.is_some_and(|at| at >= stop),
            "seed {seed}: the late value at {at:?}, the stop-sign at {stop}"
        );
    }
}

/// A leader that holds entries back and must prepare again (a follower
/// promised a higher ballot meanwhile) proposes them again after its new
/// prepare phase: each is decided once.
#[test]
fn entries_the_window_holds_back_survive_a_new_prepare_phase() {
    for seed in [91, 92, 93] {
        let mut c = SimCluster::new(&[1, 2, 3], options(seed, 0.05));
        let (leader, followers) = leader_alone(&mut c);
        let values: Vec<Value> = (0..4 * CHUNK).map(|_| c.propose_new(leader)).collect();
        c.run_for(20);
        for &f in &followers {
            c.restart(f);
        }
        // Whoever leads next, from a higher ballot or ours, every value goes in once.
        c.try_become_leader(followers[0]);
        c.run_until(|c| values.iter().all(|v| c.all_live_decided(v)), 20_000);
        for &pid in &c.all_ids() {
            for v in &values {
                assert_eq!(c.count_decided(pid, v), 1, "seed {seed}: {v:?} at {pid}");
            }
        }
    }
}

/// What the window holds back is bounded too: once `buffer_size` proposals
/// wait for it, the leader refuses more (`BufferFull`), and takes them
/// again once a quorum is back and decides what it held.
#[test]
fn a_leader_refuses_proposals_once_the_window_holds_back_a_full_buffer() {
    const BUFFER: usize = 20;
    let mut c = SimCluster::new(
        &[1, 2, 3],
        SimOptions {
            buffer_size: BUFFER,
            ..options(95, 0.0)
        },
    );
    let (leader, followers) = leader_alone(&mut c);
    let mut taken = Vec::new();
    loop {
        let v = c.next_value();
        match c.propose(leader, v) {
            Ok(()) => taken.push(v),
            Err(ProposeErr::BufferFull(_)) => break,
            Err(e) => panic!("the leader refused {v:?}: {e}"),
        }
        c.step();
        assert!(
            taken.len() <= 1_000,
            "the leader took 1,000 proposals without a quorum"
        );
    }
    // A chunk in the log, a buffer's worth held back.
    assert_eq!(taken.len(), CHUNK + BUFFER);
    for &f in &followers {
        c.restart(f);
    }
    c.run_until(|c| taken.iter().all(|v| c.all_live_decided(v)), 20_000);
    for v in &taken {
        assert_eq!(c.count_decided(leader, v), 1, "{v:?}");
    }
    let leader = c.wait_for_leader(500);
    let v = c.propose_new(leader);
    c.run_until(|c| c.all_live_decided(&v), 5_000);
}

/// Proposals that piled up at a follower while it had no leader go to the
/// leader, once it has one, in forwards of at most a chunk each, and are
/// decided once each.
#[test]
fn a_follower_forwards_a_burst_of_proposals_a_chunk_at_a_time() {
    for (seed, loss) in [(101, 0.0), (102, 0.1)] {
        let mut c = SimCluster::new(&[1, 2, 3], options(seed, loss));
        let leader = c.wait_for_leader(500);
        let follower = c.others(leader)[0];
        c.isolate(follower);
        c.run_for(100);
        let values: Vec<Value> = (0..5 * CHUNK).map(|_| c.propose_new(follower)).collect();
        c.reset_max_entries_per_message();
        c.heal_all();
        c.run_until(|c| values.iter().all(|v| c.all_live_decided(v)), 20_000);
        for v in &values {
            assert_eq!(c.count_decided(follower, v), 1, "seed {seed}: {v:?}");
        }
        let largest = c.max_entries_per_message();
        assert!(
            largest <= CHUNK,
            "seed {seed}: a message carried {largest} entries"
        );
    }
}
