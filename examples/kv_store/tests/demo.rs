//! Runs the demo end to end with small numbers and checks its outcome.
//!
//! The replicas are real threads on a wall clock, so the test cannot fix the
//! timings; it asserts what must hold whatever they are, and every wait inside
//! the demo is bounded by `DemoOptions::timeout`.

use kv_store::{DemoError, DemoOptions, DemoReport, run_demo};
use std::time::Duration;

fn small(seed: u64) -> DemoOptions {
    DemoOptions {
        nodes: 3,
        writes: 40,
        seed,
        timeout: Duration::from_secs(10),
        ..DemoOptions::default()
    }
}

fn run(opts: &DemoOptions) -> (DemoReport, String) {
    let mut out = Vec::new();
    let report = run_demo(opts, &mut out);
    let out = String::from_utf8(out).expect("the demo prints UTF-8");
    match report {
        Ok(report) => (report, out),
        Err(err) => panic!("demo failed: {err}\n--- output ---\n{out}"),
    }
}

#[test]
fn demo_survives_the_leader_crash_with_every_acknowledged_write() {
    let (report, out) = run(&small(7));
    // 20 puts before the crash, 2 of their keys deleted, 20 puts after.
    assert_eq!(report.acknowledged_writes, 42);
    assert_eq!(report.keys, 38);
    assert_eq!(report.log_len, 42, "no write reached the log twice");
    assert_ne!(report.second_leader, report.first_leader);
    assert_eq!(report.survivors.len(), 2);
    assert!(!report.survivors.contains(&report.first_leader));
    assert!(report.survivors.contains(&report.second_leader));
    assert!(
        report.forwarded_writes > 0,
        "some writes went through followers"
    );
    assert!(report.failover <= report.first_write_after_crash);
    assert!(out.contains("crashing leader"), "{out}");
    assert!(out.ends_with("OK: all checks passed\n"), "{out}");
}

#[test]
fn demo_with_five_nodes_and_batching_agrees_too() {
    let opts = DemoOptions {
        nodes: 5,
        batch_size: 8,
        ..small(3)
    };
    let (report, _) = run(&opts);
    assert_eq!(report.acknowledged_writes, 42);
    assert_eq!(report.survivors.len(), 4);
}

#[test]
fn demo_refuses_a_cluster_that_cannot_survive_a_crash() {
    let opts = DemoOptions {
        nodes: 2,
        ..small(1)
    };
    let err = run_demo(&opts, &mut Vec::new()).expect_err("two nodes lose their majority");
    assert!(matches!(err, DemoError::InvalidOption(_)), "{err}");
}
