//! Runtime end-to-end: a three-node cluster of runtime nodes in one process,
//! joined by channels (no sockets), on a multi-thread tokio runtime.
//!
//! * `append_latency/batch_size/<n>`: one `append(..).await` at a time on
//!   the leader, from the call until it resolves with its decided index,
//!   with `batch_size` 1 and 64 (with 64, as the kv_store runs, a lone
//!   append waits for the flush tick: the tick interval here is 5 ms).
//! * `append_throughput/<in flight>`: appends kept in flight with
//!   `append_nowait`, measured as decided entries per second.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_main};
use omnipaxos::{
    messages::Message,
    storage::{Entry, NoSnapshot},
    util::NodeId,
};
use omnipaxos_runtime::{NodeConfig, OmniPaxosHandle, OmniPaxosNode};
use omnipaxos_storage::memory_storage::MemoryStorage;
use std::{
    collections::{BTreeMap, VecDeque},
    time::{Duration, Instant},
};
use tokio::runtime::Runtime;

/// A log entry the size of a small command.
#[derive(Clone, Debug)]
#[allow(dead_code)] // carried, never read
struct Value(u64);

impl Entry for Value {
    type Snapshot = NoSnapshot;
}

const IDS: [NodeId; 3] = [1, 2, 3];

/// Starts the cluster and returns the elected leader's node.
async fn start(batch_size: usize) -> (OmniPaxosNode<Value>, Vec<OmniPaxosNode<Value>>) {
    let mut inboxes = BTreeMap::new();
    let mut outboxes = Vec::new();
    let mut nodes = Vec::new();
    for pid in IDS {
        let mut conf = NodeConfig::default();
        conf.set_pid(pid);
        conf.set_peers(IDS.iter().copied().filter(|&p| p != pid).collect());
        conf.set_tick_interval(Duration::from_millis(5));
        conf.omnipaxos_config_mut().batch_size = batch_size;
        let OmniPaxosHandle {
            omni_paxos,
            seq_paxos_handle,
            ble_handle,
        } = OmniPaxosNode::try_new(conf, MemoryStorage::default()).expect("valid config");
        inboxes.insert(pid, seq_paxos_handle.incoming);
        outboxes.push((seq_paxos_handle.outgoing, ble_handle.outgoing));
        nodes.push(omni_paxos);
    }
    for (mut sp_out, mut ble_out) in outboxes {
        let inboxes = inboxes.clone();
        tokio::spawn(async move {
            loop {
                let m = tokio::select! {
                    Some(m) = sp_out.recv() => m,
                    Some(b) = ble_out.recv() => Message::BLE(b),
                    else => return,
                };
                if let Some(tx) = inboxes.get(&m.get_receiver()) {
                    let _ = tx.send(m).await;
                }
            }
        });
    }
    let leader = loop {
        if let Some(l) = nodes.iter().find(|n| n.status().is_leader) {
            break l.clone();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    (leader, nodes)
}

fn bench(c: &mut Criterion) {
    let rt = Runtime::new().expect("tokio runtime");
    // Batch size 1, and 64 as the kv_store runs: there a lone append waits
    // for the flush tick, which this shows.
    let mut group = c.benchmark_group("append_latency");
    for batch_size in [1usize, 64] {
        let (leader, nodes) = rt.block_on(start(batch_size));
        group.bench_with_input(
            BenchmarkId::new("batch_size", batch_size),
            &batch_size,
            |b, _| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let t0 = Instant::now();
                        for i in 0..iters {
                            leader.append(Value(i)).await.expect("decided");
                        }
                        t0.elapsed()
                    })
                })
            },
        );
        rt.block_on(async {
            for n in &nodes {
                n.shutdown().await;
            }
        });
    }
    group.finish();

    let mut group = c.benchmark_group("append_throughput");
    const ENTRIES: u64 = 20_000;
    group.throughput(Throughput::Elements(ENTRIES));
    group.sample_size(10);
    for in_flight in [64usize, 1024] {
        let (leader, nodes) = rt.block_on(start(64));
        group.bench_with_input(
            BenchmarkId::from_parameter(in_flight),
            &in_flight,
            |b, &in_flight| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let t0 = Instant::now();
                        for _ in 0..iters {
                            let mut window = VecDeque::with_capacity(in_flight);
                            for i in 0..ENTRIES {
                                if window.len() == in_flight {
                                    let p: omnipaxos_runtime::PendingAppend =
                                        window.pop_front().expect("non-empty");
                                    p.await.expect("decided");
                                }
                                window.push_back(
                                    leader.append_nowait(Value(i)).await.expect("handed over"),
                                );
                            }
                            for p in window {
                                p.await.expect("decided");
                            }
                        }
                        t0.elapsed()
                    })
                })
            },
        );
        rt.block_on(async {
            for n in &nodes {
                n.shutdown().await;
            }
        });
    }
    group.finish();
}

// Written out instead of `criterion_group!`, whose generated `pub fn` has no doc
// comment and so trips the workspace's `missing_docs` lint.
fn benches() {
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
}

criterion_main!(benches);
