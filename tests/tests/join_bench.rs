//! The join benchmark's harness at a small size: only what is guaranteed,
//! never timing (timing is for `cargo bench --bench join`).

use omnipaxos_tests::join_bench::{JoinBenchOptions, run_join};

/// 4 MiB of log in entries of 1 KiB, and replies of 256 entries, so that the
/// log comes in sixteen parts and a slice in several.
fn small() -> JoinBenchOptions {
    JoinBenchOptions {
        log_entries: 4096,
        buffer_size: 256,
        ..JoinBenchOptions::default()
    }
}

#[test]
fn a_joiner_pulling_from_the_leader_alone_gets_the_whole_log_from_it() {
    let o = small();
    let r = run_join(&o, 1);
    // `run_join` checked that server 4 holds the leader's log and decided a
    // fresh entry with it; the leader sent all of the log.
    assert_eq!(r.log_entries, o.log_entries);
    assert!(
        r.leader_bytes() >= o.log_bytes(),
        "the leader sent {} bytes of a {}-byte log",
        r.leader_bytes(),
        o.log_bytes()
    );
}

#[test]
fn a_joiner_pulling_from_three_servers_takes_about_a_third_from_the_leader() {
    let o = small();
    let r = run_join(&o, 3);
    assert_eq!(r.log_entries, o.log_entries);
    // A third of the log, plus what a resend may duplicate (one reply) and
    // the small messages of the new configuration (heartbeats, prepares).
    let bound = o.log_bytes() / 3 + o.log_bytes() / 8;
    assert!(
        r.leader_bytes() <= bound,
        "the leader sent {} bytes, more than {bound} of a {}-byte log",
        r.leader_bytes(),
        o.log_bytes()
    );
    // Every source did its part.
    assert_eq!(r.bytes_sent.keys().filter(|&&p| p != 4).count(), 3);
    for (&p, &bytes) in &r.bytes_sent {
        if p != 4 {
            assert!(bytes >= o.log_bytes() / 4, "server {p} sent {bytes} bytes");
        }
    }
}
