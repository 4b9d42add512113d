//! How long server 4 takes to join {1, 2, 3} whose decided log is large, and
//! what it costs the leader, pulling from one source (the leader) and from
//! three (see `omnipaxos_tests::join_bench` for the cluster and the network
//! model).
//!
//! ```text
//! cargo bench -p omnipaxos_tests --bench join
//! JOIN_BENCH_MIB=256 JOIN_BENCH_JOINER_IN_MBPS=3000 cargo bench -p omnipaxos_tests --bench join
//! ```
//!
//! Two runs per case, not criterion's many: a join of a GiB takes seconds
//! of virtual time and its figures are deterministic apart from the CPU
//! times, so repeating it more adds minutes and little information. The
//! first runs pay for fresh memory pages; compare the last two rows. Prints a
//! table, then the same as one JSON line per run.

use omnipaxos_tests::join_bench::{JoinBenchOptions, JoinReport, run_join};

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would pass
    // nothing: run only when benchmarking, so that a test run stays fast.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let o = JoinBenchOptions::from_env().unwrap_or_else(|e| {
        eprintln!("join bench: {e}");
        std::process::exit(2)
    });
    println!(
        "join: {} entries of {} B ({} MiB), {} Mbit/s per card, joiner ingress {} Mbit/s, \
         latency {} us, tick {} us, buffer_size {}, resend every {} ticks",
        o.log_entries,
        o.entry_bytes,
        o.log_bytes() >> 20,
        o.mbit_s,
        o.joiner_ingress_mbit_s.unwrap_or(o.mbit_s),
        o.latency_us,
        o.tick_interval_us,
        o.buffer_size,
        o.resend_message_tick_timeout
    );
    // Each case twice: the first join in a process also pays the kernel for
    // fresh memory pages (the copies the sources read out, the log the
    // joiner builds), which later runs reuse; compare the last two rows.
    // `JOIN_BENCH_CASES=3,1` picks other cases or another order.
    let cases = std::env::var("JOIN_BENCH_CASES").unwrap_or_else(|_| "1,3,1,3".into());
    let reports: Vec<JoinReport> = cases
        .split(',')
        .map(|k| {
            let k = k
                .trim()
                .parse()
                .expect("JOIN_BENCH_CASES: numbers of sources, 1 to 3");
            run_join(&o, k)
        })
        .collect();
    println!("{}", JoinReport::table_header());
    for r in &reports {
        println!("{}", r.table_row());
    }
    for r in &reports {
        println!("{}", r.to_json(&o));
    }
}
