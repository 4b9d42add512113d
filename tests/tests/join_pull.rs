//! A server joining a new configuration pulls a log of any size in bounded
//! parts (issue 11): every reply is at most `max_entries_per_message`
//! entries and `max_message_bytes`, the joiner keeps a window of parts per
//! source and writes each part that continues its stored log at once, a
//! source that stops answering hands its parts to the others, a restart
//! mid-pull resumes from what the storage holds (whichever way the server
//! is built again), and a reply for a range not asked of its sender is
//! ignored.
//!
//! Every scenario is server 4 joining {1, 2, 3} as {1, 2, 3, 4}, with a
//! network delay of one tick, so that each round trip of a pull takes two
//! ticks and a pull of many parts spans many steps.

use omnipaxos::{
    Ballot, MigrationStatus,
    messages::{Message, PaxosMessage, PaxosMsg, PullLogReply, StopSignDecided},
    util::{NodeId, StopSign},
};
use omnipaxos_tests::{SimCluster, SimOptions, Value, ValueSnapshot};

const JOINER: NodeId = 4;
const OLD: [NodeId; 3] = [1, 2, 3];
/// Parts in flight per source (`migration.rs`, `PULL_WINDOW`, documented on
/// `OmniPaxos::get_migration_status`).
const PULL_WINDOW: usize = 4;

/// One tick of delay each way, parts of four entries.
fn options(seed: u64) -> SimOptions {
    SimOptions {
        min_delay_ticks: 1,
        max_delay_ticks: 1,
        max_entries_per_message: 4,
        ..SimOptions::with_seed(seed)
    }
}

/// Decides `n` values in {1, 2, 3}, reconfigures to {1, 2, 3, 4} and steps
/// until configuration 2 begins (server 4 starts pulling). Returns the
/// length of the log to pull.
fn start_join(c: &mut SimCluster, n: u64) -> u64 {
    let leader = c.wait_for_leader(200);
    for _ in 0..n {
        c.propose_new(leader);
    }
    c.run_until(|c| OLD.iter().all(|&p| c.decided_idx(p) >= n), 2_000);
    c.reconfigure(leader, &[1, 2, 3, 4]).unwrap();
    c.run_until(|c| c.config_id() == 2, 400);
    let log_len = c
        .configurations()
        .get(2)
        .expect("configuration 2 began")
        .start;
    assert!(
        log_len >= n,
        "the old configuration decided {log_len} entries"
    );
    assert!(c.node(JOINER).is_migrating(), "server 4 pulls");
    log_len
}

fn status(c: &SimCluster) -> MigrationStatus {
    c.node(JOINER)
        .get_migration_status()
        .expect("server 4 is still joining")
}

/// Steps until server 4 holds the whole log and takes part, calling
/// `each` with its status before every step; returns the steps taken.
fn pull_to_the_end(
    c: &mut SimCluster,
    max_ticks: u64,
    mut each: impl FnMut(&SimCluster, &MigrationStatus),
) -> u64 {
    let mut steps = 0;
    while c.is_up(JOINER) && c.node(JOINER).is_migrating() {
        let s = status(c);
        each(c, &s);
        // A joiner never votes: it promised nothing in its configuration.
        assert_eq!(c.node(JOINER).get_promise(), Ballot::default());
        c.step();
        steps += 1;
        assert!(
            steps <= max_ticks,
            "server 4 did not finish its pull in {max_ticks} ticks:\n{}",
            c.describe()
        );
    }
    assert!(c.node(JOINER).get_migration_status().is_none());
    steps
}

/// Server 4 holds exactly the old configuration's decided log below
/// `log_len`, and the new configuration decides a fresh value with it.
fn assert_joined_with_the_log(c: &mut SimCluster, log_len: u64) {
    let old = c.decided_log()[..log_len as usize].to_vec();
    let got = c.decided_entries(JOINER);
    assert!(
        got.len() as u64 >= log_len,
        "server 4 decided {}",
        got.len()
    );
    assert_eq!(&got[..log_len as usize], &old[..], "server 4's pulled log");
    let leader = c.wait_for_leader(400);
    let fresh = c.propose_new(leader);
    c.run_until(|c| c.is_decided(JOINER, &fresh), 400);
}

#[test]
fn a_log_of_many_parts_comes_in_replies_of_at_most_max_entries_per_message_from_every_source() {
    let mut c = SimCluster::new(&OLD, options(1));
    let log_len = start_join(&mut c, 300);
    c.reset_max_entries_per_message();
    let mut last = None;
    let mut stored_grew = 0;
    let mut prev_stored = 0;
    pull_to_the_end(&mut c, 400, |_, s| {
        // The log is written as it comes, not at the end.
        if s.stored_idx > prev_stored {
            stored_grew += 1;
            prev_stored = s.stored_idx;
        }
        // Every source answers here, so no part moves on to a full window.
        assert!(
            s.sources.iter().all(|src| src.outstanding <= PULL_WINDOW),
            "{s:?}"
        );
        last = Some(s.clone());
    });
    assert!(
        c.max_entries_per_message() <= 4,
        "a message carried {} entries",
        c.max_entries_per_message()
    );
    // 300 entries in parts of four, at most twelve parts (48 entries) per
    // round trip: the log is written in several steps, not once at the end.
    let round_trips = log_len.div_ceil((PULL_WINDOW * OLD.len() * 4) as u64);
    assert!(
        stored_grew + 1 >= round_trips,
        "the stored log grew {stored_grew} times"
    );
    let last = last.expect("server 4 pulled for at least a step");
    assert_eq!(last.log_len, Some(log_len));
    for src in &last.sources {
        assert!(
            src.entries_received >= log_len / 6,
            "source {} sent {} of {log_len} entries",
            src.pid,
            src.entries_received
        );
    }
    assert_joined_with_the_log(&mut c, log_len);
}

#[test]
fn a_source_that_dies_mid_pull_hands_its_parts_to_the_others() {
    let mut c = SimCluster::new(&OLD, options(2));
    let log_len = start_join(&mut c, 300);
    c.run_until(|c| status(c).stored_idx >= log_len / 4, 200);
    assert!(status(&c).stored_idx < log_len, "still pulling");
    let dead = 2;
    assert!(status(&c).sources.iter().any(|s| s.pid == dead));
    c.crash(dead);
    let mut flagged = false;
    pull_to_the_end(&mut c, 1_000, |_, s| {
        let d = s.sources.iter().find(|src| src.pid == dead).unwrap();
        flagged |= d.unresponsive;
    });
    assert!(flagged, "the dead source was reported unresponsive");
    assert_joined_with_the_log(&mut c, log_len);
}

/// Crashes server 4 when it has stored part of the log, restarts it with
/// `restart`, and checks that it resumes from its storage, never votes
/// meanwhile, and ends with exactly the old log.
fn restarted_mid_pull_resumes(options: SimOptions, restart: fn(&mut SimCluster, NodeId)) {
    let mut c = SimCluster::new(&OLD, options);
    let log_len = start_join(&mut c, 300);
    c.run_until(|c| status(c).stored_idx >= log_len / 3, 200);
    let stored = status(&c).stored_idx;
    assert!(stored < log_len, "still pulling");
    c.crash(JOINER);
    assert_eq!(
        c.decided_idx(JOINER),
        stored,
        "the storage holds what was stored"
    );
    restart(&mut c, JOINER);
    assert!(c.node(JOINER).is_migrating(), "a restarted joiner pulls on");
    let s = status(&c);
    assert_eq!(s.started_at, stored, "it pulls only what its storage lacks");
    assert_eq!(s.log_len, Some(log_len));
    pull_to_the_end(&mut c, 1_000, |_, _| {});
    // No entry lost or pulled twice: the invariants check every tick that
    // no value is decided twice, and the log is the old one.
    assert_eq!(c.decided_idx(JOINER), log_len);
    assert_joined_with_the_log(&mut c, log_len);
}

#[test]
fn a_joiner_restarted_mid_pull_with_build_joining_resumes_from_its_storage() {
    restarted_mid_pull_resumes(options(3), SimCluster::restart);
}

#[test]
fn a_joiner_restarted_mid_pull_with_build_joining_from_resumes_from_its_storage() {
    let o = SimOptions {
        joiners_ask_log_len: true,
        ..options(4)
    };
    restarted_mid_pull_resumes(o, SimCluster::restart);
}

#[test]
fn a_joiner_restarted_mid_pull_with_plain_build_still_pulls_before_it_votes() {
    restarted_mid_pull_resumes(options(5), SimCluster::restart_with_plain_build);
}

#[test]
fn the_memory_a_pull_holds_stays_within_the_window_of_parts() {
    // Replies of two entries (16 bytes, 8 per value) for parts of four, and
    // delays of one to six ticks: parts come short and out of order, so
    // the joiner holds parts past a gap. (Elections slow enough for those
    // delays, so that no leader change repeats forwarded proposals.)
    let o = SimOptions {
        min_delay_ticks: 1,
        max_delay_ticks: 6,
        election_tick_timeout: 40,
        max_entries_per_message: 4,
        max_message_bytes: 16,
        ..SimOptions::with_seed(6)
    };
    let mut c = SimCluster::new(&OLD, o);
    let log_len = start_join(&mut c, 400);
    c.reset_max_entries_per_message();
    let mut peak = 0;
    pull_to_the_end(&mut c, 2_000, |_, s| {
        assert!(s.held_bytes <= s.peak_held_bytes);
        peak = peak.max(s.peak_held_bytes);
    });
    // At most the window's parts, each one reply of at most 16 bytes, and
    // one snapshot (a source may have compacted; 16 bytes here).
    let bound = PULL_WINDOW * OLD.len() * 16 + size_of::<ValueSnapshot>();
    assert!(peak <= bound, "held {peak} bytes, more than {bound}");
    assert!(peak > 16, "parts were held past a gap ({peak} bytes)");
    assert!(c.max_entry_bytes_per_message() <= 16);
    assert_joined_with_the_log(&mut c, log_len);
}

#[test]
fn a_joiner_cut_off_from_its_sources_reports_a_stall_and_recovers() {
    let mut c = SimCluster::new(&OLD, options(7));
    let log_len = start_join(&mut c, 200);
    c.run_until(|c| status(c).stored_idx > 0, 100);
    c.isolate(JOINER);
    let resend = c.options().resend_message_tick_timeout;
    c.run_for(3 * resend);
    let s = status(&c);
    assert!(s.stalled, "{s:?}");
    assert!(s.sources.iter().all(|src| src.unresponsive), "{s:?}");
    c.heal_node(JOINER);
    pull_to_the_end(&mut c, 1_000, |_, _| {});
    assert_joined_with_the_log(&mut c, log_len);
}

#[test]
fn a_reply_for_a_range_not_asked_of_its_sender_is_ignored() {
    let mut c = SimCluster::new(&OLD, options(8));
    let log_len = start_join(&mut c, 100);
    // The first parts, of four entries each, are dealt round-robin:
    // 0..4 to 1, 4..8 to 2, 8..12 to 3, 12..16 to 1, ... up to four per
    // source; nobody is asked for 96..100 yet.
    let ended = StopSignDecided {
        ss: StopSign::with(2, vec![1, 2, 3, 4], None),
        stop_idx: log_len,
        n_accepted: Ballot::default(),
    };
    let forged = |from: NodeId, from_idx: u64, to_idx: u64| {
        Message::SequencePaxos(PaxosMessage {
            configuration_id: 2,
            from,
            to: JOINER,
            msg: PaxosMsg::PullLogReply(PullLogReply {
                from_idx,
                to_idx,
                snapshot: None,
                entries: (from_idx..to_idx).map(|i| Value(1 << 40 | i)).collect(),
                stopsign: Some(ended.clone()),
                origins: Default::default(),
                origin_table: None,
            }),
        })
    };
    for (from, lo, hi) in [(2, 0, 4), (1, 4, 8), (99, 0, 4), (1, 96, 100), (1, 2, 6)] {
        c.node_mut(JOINER).handle_incoming(forged(from, lo, hi));
    }
    assert_eq!(c.decided_idx(JOINER), 0, "nothing forged was stored");
    assert!(status(&c).sources.iter().all(|s| s.entries_received == 0));
    pull_to_the_end(&mut c, 400, |_, _| {});
    assert_joined_with_the_log(&mut c, log_len);
}

/// Decides 120 values in {1, 2, 3}, has every old server compact the first
/// 80 into a snapshot (the simulator's snapshot of 80 values splits into
/// three parts), reconfigures to {1, 2, 3, 4} and steps until server 4
/// starts pulling. Returns the length of the log to pull.
fn start_join_from_a_snapshot(c: &mut SimCluster) -> u64 {
    let leader = c.wait_for_leader(200);
    for _ in 0..120 {
        c.propose_new(leader);
    }
    c.run_until(|c| OLD.iter().all(|&p| c.decided_idx(p) >= 120), 2_000);
    // Each compacts itself (`local_only`), so that no lost message of a
    // lossy network leaves one without the snapshot.
    for p in OLD {
        if c.node(p).get_compacted_idx() < 80 {
            c.node_mut(p).snapshot(Some(80), true).unwrap();
        }
    }
    c.reconfigure(leader, &[1, 2, 3, 4]).unwrap();
    c.run_until(|c| c.config_id() == 2, 2_000);
    c.configurations().get(2).unwrap().start
}

/// Server 4 ends with the old servers' snapshot, not the entries below it.
fn assert_started_from_the_snapshot(c: &SimCluster) {
    assert!(
        c.node(JOINER).get_compacted_idx() >= 80,
        "server 4 starts from a snapshot"
    );
}

#[test]
fn sources_that_compacted_send_their_snapshot_and_the_joiner_continues_after_it() {
    let mut c = SimCluster::new(&OLD, options(9));
    let log_len = start_join_from_a_snapshot(&mut c);
    pull_to_the_end(&mut c, 400, |_, _| {});
    assert_started_from_the_snapshot(&c);
    // The snapshot came in its three parts, never whole.
    assert_eq!(c.whole_snapshots_that_split(), 0);
    assert!(
        c.snapshot_parts_sent() >= 3,
        "{} parts sent",
        c.snapshot_parts_sent()
    );
    // `decided_entries` checks the snapshot against the decided log.
    assert_joined_with_the_log(&mut c, log_len);
}

#[test]
fn a_source_that_dies_while_sending_its_snapshot_in_parts_gives_way_to_another() {
    // Three ticks each way: the first part comes well before the others.
    let o = SimOptions {
        min_delay_ticks: 3,
        max_delay_ticks: 3,
        ..options(10)
    };
    let mut c = SimCluster::new(&OLD, o);
    let log_len = start_join_from_a_snapshot(&mut c);
    let parts_before = c.snapshot_parts_sent();
    c.run_until(|c| c.snapshot_parts_sent() > parts_before, 100);
    // The first part sent answers the first pull, which went to server 1
    // (parts are dealt round-robin from the first source).
    assert_eq!(c.node(JOINER).get_compacted_idx(), 0, "not installed yet");
    c.crash(1);
    pull_to_the_end(&mut c, 2_000, |_, _| {});
    assert_started_from_the_snapshot(&c);
    assert_eq!(c.whole_snapshots_that_split(), 0);
    assert_joined_with_the_log(&mut c, log_len);
}

#[test]
fn a_snapshot_in_parts_comes_through_a_network_that_loses_and_duplicates() {
    for seed in 0..24 {
        let o = SimOptions {
            drop_probability: 0.15,
            duplicate_probability: 0.1,
            min_delay_ticks: 1,
            max_delay_ticks: 4,
            election_tick_timeout: 40,
            ..options(100 + seed)
        };
        let mut c = SimCluster::new(&OLD, o);
        let log_len = start_join_from_a_snapshot(&mut c);
        pull_to_the_end(&mut c, 5_000, |_, _| {});
        assert_started_from_the_snapshot(&c);
        assert_eq!(c.whole_snapshots_that_split(), 0, "seed {seed}");
        assert_joined_with_the_log(&mut c, log_len);
    }
}
