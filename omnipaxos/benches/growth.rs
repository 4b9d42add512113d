//! Growth check: is the cost of a decided entry the same at the ten
//! millionth entry as at the hundred thousandth?
//!
//! Three servers in one process exchange messages by direct
//! `handle_incoming` calls (as in the `decide` bench), `MemoryStorage`, a
//! window of [`WINDOW`] undecided proposals on the leader, proposals in
//! rounds of [`BATCH`], `batch_size` [`BATCH`]. Every [`TRIM_EVERY`] decided
//! entries the leader trims the log up to what every server has accepted, as
//! an application that applied the prefix would. After each stretch of
//! [`REPORT_EVERY`] entries the bench prints that stretch's entries per
//! second and nanoseconds per entry, the process's resident memory, and the
//! entries each server holds, so a cost that grows with the log shows as a
//! trend down the table. At the end it checks that every server decided
//! every entry, in order (by the decided index and the entries still held),
//! and fails if not.
//!
//! ```text
//! cargo bench -p omnipaxos --bench growth            # 10^7 entries
//! cargo bench -p omnipaxos --bench growth -- 1000000 # a shorter run
//! ```

use omnipaxos::{
    OmniPaxos, OmniPaxosConfig,
    messages::Message,
    storage::{Entry, NoSnapshot},
    util::{LogEntry, NodeId},
};
use omnipaxos_storage::memory_storage::MemoryStorage;
use std::time::Instant;

#[derive(Clone, Debug)]
struct Value(u64);

impl Entry for Value {
    type Snapshot = NoSnapshot;
}

type Node = OmniPaxos<Value, MemoryStorage<Value>>;

const NODES: [NodeId; 3] = [1, 2, 3];
/// Undecided proposals the leader may have outstanding.
const WINDOW: u64 = 10_000;
/// Proposals per round, and the leader's `batch_size`.
const BATCH: u64 = 1_000;
/// Decided entries between two trims.
const TRIM_EVERY: u64 = 100_000;
/// Decided entries per printed row.
const REPORT_EVERY: u64 = 100_000;

fn resident_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn main() {
    // `cargo bench` passes `--bench`; a number among the arguments is the
    // entry count.
    let total: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let mut nodes: Vec<Node> = NODES
        .iter()
        .map(|&pid| {
            OmniPaxosConfig {
                configuration_id: 1,
                pid,
                peers: NODES.iter().copied().filter(|&p| p != pid).collect(),
                batch_size: BATCH as usize,
                buffer_size: 2 * WINDOW as usize,
                ..Default::default()
            }
            .build(MemoryStorage::default())
            .expect("the bench config is valid")
        })
        .collect();
    let mut buf: Vec<Message<Value>> = Vec::with_capacity(4 * BATCH as usize);
    let deliver = |nodes: &mut Vec<Node>, buf: &mut Vec<Message<Value>>| {
        for node in nodes.iter_mut() {
            node.take_outgoing_messages(buf);
        }
        let moved = !buf.is_empty();
        for msg in buf.drain(..) {
            let to = msg.get_receiver();
            nodes[(to - 1) as usize].handle_incoming(msg);
        }
        moved
    };
    let leader = (0..10_000)
        .find_map(|_| {
            if let Some(i) = nodes.iter().position(Node::is_leader) {
                return Some(i);
            }
            for n in nodes.iter_mut() {
                n.tick();
            }
            while deliver(&mut nodes, &mut buf) {}
            None
        })
        .expect("a leader within 10,000 ticks");

    println!(
        "{total} entries, window {WINDOW}, batch {BATCH}, trim every {TRIM_EVERY}; one row per {REPORT_EVERY}"
    );
    println!(
        "{:>10} {:>12} {:>10} {:>10} {:>22}",
        "decided", "entries/s", "ns/entry", "RSS MiB", "held per server"
    );
    let mut appended = 0u64;
    let mut next_trim = TRIM_EVERY;
    let mut next_report = REPORT_EVERY;
    let mut stretch = Instant::now();
    let mut rates = Vec::new();
    let start = Instant::now();
    loop {
        let decided = nodes[leader].get_decided_idx();
        if decided >= total {
            break;
        }
        if appended < total && appended - decided < WINDOW {
            let end = (appended + BATCH).min(total).min(decided + WINDOW);
            for i in appended..end {
                nodes[leader]
                    .append(Value(i))
                    .expect("the window fits the buffer");
            }
            appended = end;
        }
        if !deliver(&mut nodes, &mut buf) {
            for n in nodes.iter_mut() {
                n.tick();
            }
        }
        let decided = nodes[leader].get_decided_idx();
        if decided >= next_trim {
            let accepted = nodes.iter().map(Node::get_decided_idx).min().unwrap_or(0);
            if accepted > nodes[leader].get_compacted_idx() {
                // NotAllAccepted only means a follower is a round behind:
                // the next trim catches up.
                let _ = nodes[leader].trim(Some(accepted));
            }
            next_trim += TRIM_EVERY;
        }
        if decided >= next_report {
            let secs = stretch.elapsed().as_secs_f64();
            let rate = REPORT_EVERY as f64 / secs;
            rates.push(rate);
            let held: Vec<u64> = nodes
                .iter()
                .map(|n| n.get_accepted_idx() - n.get_compacted_idx())
                .collect();
            let row = next_report / REPORT_EVERY;
            // Every row for short runs; at 10^7, the first ten, then every tenth.
            if row <= 10 || row % 10 == 0 {
                println!(
                    "{:>10} {:>12.0} {:>10.1} {:>10.1} {:>22}",
                    next_report,
                    rate,
                    1e9 / rate,
                    resident_mib(),
                    format!("{held:?}")
                );
            }
            next_report += REPORT_EVERY;
            stretch = Instant::now();
        }
    }
    // Let the followers learn the last decisions.
    for _ in 0..1_000 {
        if nodes.iter().all(|n| n.get_decided_idx() >= total) {
            break;
        }
        if !deliver(&mut nodes, &mut buf) {
            for n in nodes.iter_mut() {
                n.tick();
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    for node in &nodes {
        assert_eq!(node.get_decided_idx(), total, "server {}", node.get_pid());
        let from = node.get_compacted_idx();
        let held = node.read_decided_suffix(from).unwrap_or_default();
        for (i, e) in held.iter().enumerate() {
            match e {
                LogEntry::Decided(Value(v)) => {
                    assert_eq!(*v, from + i as u64, "server {}", node.get_pid())
                }
                other => panic!(
                    "server {} holds {other:?} at {}",
                    node.get_pid(),
                    from + i as u64
                ),
            }
        }
    }
    let n = rates.len();
    let (first, last) = if n >= 4 {
        let q = n / 4;
        let mean = |r: &[f64]| r.iter().sum::<f64>() / r.len() as f64;
        (mean(&rates[..q]), mean(&rates[n - q..]))
    } else {
        (
            rates.first().copied().unwrap_or(0.0),
            rates.last().copied().unwrap_or(0.0),
        )
    };
    println!(
        "total: {total} entries in {elapsed:.1} s ({:.0} entries/s); first quarter {first:.0}/s, last quarter {last:.0}/s (last/first {:.2}); RSS {:.1} MiB",
        total as f64 / elapsed,
        last / first.max(1e-9),
        resident_mib()
    );
}
