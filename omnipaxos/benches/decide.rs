//! Decided entries per second in a three-server cluster in one process.
//!
//! The three `OmniPaxos` values live in one `Vec` and exchange messages by
//! direct `handle_incoming` calls, so the number measures the protocol and
//! `MemoryStorage`, not a network. The leader is elected outside the timed
//! part; the timed part appends [`ENTRIES`] entries on the leader in chunks of
//! [`CHUNK`] (a new chunk goes in while the previous ones are still being
//! replicated) and delivers messages until the leader's decided index reaches
//! [`ENTRIES`].

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_main};
use omnipaxos::{
    OmniPaxos, OmniPaxosConfig,
    messages::Message,
    storage::{Entry, NoSnapshot},
    util::{LogEntry, NodeId},
};
use omnipaxos_storage::memory_storage::MemoryStorage;
use std::hint::black_box;

/// A log entry the size of a small command.
#[derive(Clone, Debug)]
struct Value(u64);

impl Entry for Value {
    type Snapshot = NoSnapshot;
}

type Node = OmniPaxos<Value, MemoryStorage<Value>>;

/// The servers, with ids `1..=3` so that server `pid` sits at index `pid - 1`.
const NODES: [NodeId; 3] = [1, 2, 3];
/// Entries decided per timed iteration.
const ENTRIES: u64 = 10_000;
/// Entries appended on the leader between two delivery rounds.
const CHUNK: u64 = 500;
/// A bound on delivery rounds, so a protocol that stops making progress fails the bench instead of hanging it.
const MAX_ROUNDS: usize = 1_000_000;

struct Cluster {
    nodes: Vec<Node>,
    /// Reused for every `take_outgoing_messages`, as a real driver would.
    buf: Vec<Message<Value>>,
}

impl Cluster {
    fn new(batch_size: usize) -> Self {
        let nodes = NODES
            .iter()
            .map(|&pid| {
                OmniPaxosConfig {
                    configuration_id: 1,
                    pid,
                    peers: NODES.iter().copied().filter(|&p| p != pid).collect(),
                    batch_size,
                    ..Default::default()
                }
                .build(MemoryStorage::default())
                .expect("the bench config is valid")
            })
            .collect();
        Self {
            nodes,
            buf: Vec::with_capacity(4 * CHUNK as usize),
        }
    }

    /// One delivery round: every server's outgoing messages go to their
    /// receivers. Returns whether any message moved.
    fn deliver(&mut self) -> bool {
        for node in &mut self.nodes {
            node.take_outgoing_messages(&mut self.buf);
        }
        let moved = !self.buf.is_empty();
        for msg in self.buf.drain(..) {
            let to = msg.get_receiver();
            debug_assert!(NODES.contains(&to), "message for unknown server {to}");
            self.nodes[(to - 1) as usize].handle_incoming(msg);
        }
        moved
    }

    fn tick_all(&mut self) {
        for node in &mut self.nodes {
            node.tick();
        }
    }

    /// Ticks and delivers until one server leads in the accept phase; returns its index.
    fn elect(&mut self) -> usize {
        for _ in 0..10_000 {
            if let Some(i) = self.nodes.iter().position(Node::is_leader) {
                return i;
            }
            self.tick_all();
            while self.deliver() {}
        }
        panic!("no leader elected within 10000 ticks");
    }

    /// The timed part: pipelined appends on the leader until `ENTRIES` are decided.
    fn decide_all(&mut self, leader: usize) {
        let mut appended = 0;
        for _ in 0..MAX_ROUNDS {
            if self.nodes[leader].get_decided_idx() >= ENTRIES {
                return;
            }
            let end = (appended + CHUNK).min(ENTRIES);
            for i in appended..end {
                self.nodes[leader]
                    .append(Value(i))
                    .expect("the buffer holds a whole run");
            }
            appended = end;
            // A round that moves nothing is waiting on a timer (a partly
            // filled batch waits for its flush tick), so let time pass.
            if !self.deliver() {
                self.tick_all();
            }
        }
        panic!(
            "decided only {} of {ENTRIES} entries in {MAX_ROUNDS} rounds",
            self.nodes[leader].get_decided_idx()
        );
    }
}

/// Runs one untimed iteration and checks that it did what the bench claims:
/// every server ends with the same `ENTRIES` decided entries, in append order.
fn check_once(batch_size: usize) {
    let mut cluster = Cluster::new(batch_size);
    let leader = cluster.elect();
    cluster.decide_all(leader);
    for _ in 0..MAX_ROUNDS {
        if cluster.nodes.iter().all(|n| n.get_decided_idx() >= ENTRIES) {
            break;
        }
        if !cluster.deliver() {
            cluster.tick_all();
        }
    }
    for node in &cluster.nodes {
        let entries = node
            .read_decided_suffix(0)
            .expect("every server decided ENTRIES entries");
        assert_eq!(entries.len() as u64, ENTRIES, "server {}", node.get_pid());
        for (i, entry) in entries.iter().enumerate() {
            match entry {
                LogEntry::Decided(Value(v)) => assert_eq!(*v, i as u64),
                other => panic!("server {} holds {other:?} at {i}", node.get_pid()),
            }
        }
    }
}

fn decide(c: &mut Criterion) {
    for batch_size in [1, 16, 128] {
        check_once(batch_size);
    }
    let mut group = c.benchmark_group("decide");
    group.throughput(Throughput::Elements(ENTRIES));
    group.sample_size(20);
    for batch_size in [1, 16, 128] {
        group.bench_with_input(
            BenchmarkId::new("3_nodes_memory_batch_size", batch_size),
            &batch_size,
            |b, &batch_size| {
                b.iter_batched(
                    || {
                        let mut cluster = Cluster::new(batch_size);
                        let leader = cluster.elect();
                        (cluster, leader)
                    },
                    |(mut cluster, leader)| {
                        cluster.decide_all(leader);
                        black_box(cluster)
                    },
                    BatchSize::PerIteration,
                );
            },
        );
    }
    group.finish();
}

// Written out instead of `criterion_group!`, whose generated `pub fn` has no doc
// comment and so trips the workspace's `missing_docs` lint.
fn benches() {
    let mut criterion = Criterion::default().configure_from_args();
    decide(&mut criterion);
}

criterion_main!(benches);
