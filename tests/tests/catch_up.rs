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
//! a new leader adopts (it must be accepted at once, in the new ballot). A
//! snapshot that splits goes in parts (`compaction.rs` and `join_pull.rs`).

use omnipaxos_tests::{SimCluster, SimOptions};

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
