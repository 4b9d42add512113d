//! Property: no message a peer sends, however mangled, makes a server panic,
//! break its storage's invariants, or queue more than a bounded number of
//! messages in answer.
//!
//! Each case runs a three-server cluster for a while (appends, reads,
//! snapshots, a leader crash), recording every message delivered; then it
//! feeds the servers copies of those messages with fields changed (indices
//! to 0, off by one, huge or `u64::MAX`; ballots to the last rounds; entries
//! dropped or repeated; snapshots added or removed; sender, receiver and
//! configuration id changed), between ordinary steps. After every message,
//! and after every step, each server must hold:
//!
//! * its decided index never went down;
//! * decided <= accepted (+1 for a decided stop-sign) and compacted <= decided;
//! * the messages it queued in answer to one message number at most
//!   `MAX_ANSWERS_PER_PEER` per peer plus `buffer_size` (a read round that
//!   completes answers every read it held).
//!
//! Cluster agreement is not checked: a mangled message from a member can be
//! a protocol lie (an accept with other entries, from the leader), and Paxos
//! does not survive lies, only crashes. The cases are deterministic: a
//! failing case prints its seed (`seed = ...`), and `HOSTILE_CASES` raises
//! the number of cases (default 48).

use omnipaxos::{Ballot, OmniPaxos, OmniPaxosConfig, messages::*, util::NodeId};
use omnipaxos_storage::memory_storage::MemoryStorage;
use omnipaxos_tests::sim::value::{Value, ValueSnapshot};
use proptest::{
    prelude::*,
    test_runner::{Config, RngAlgorithm, TestRng, TestRunner},
};
use rand::{Rng, SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

type Node = OmniPaxos<Value, MemoryStorage<Value>>;

const IDS: [NodeId; 3] = [1, 2, 3];
const BUFFER: usize = 64;
/// Answers to one message, per peer: a new leader's sync and accept, a
/// decision, a read confirmation, a pull reply and a notice of a decided
/// stop-sign, with room to spare.
const MAX_ANSWERS_PER_PEER: usize = 8;
const WARMUP_STEPS: u64 = 300;
const INJECTIONS: usize = 300;
/// The most messages kept to mutate.
const CORPUS: usize = 4_000;

struct Harness {
    nodes: BTreeMap<NodeId, Node>,
    /// Each server's highest decided index so far.
    decided: BTreeMap<NodeId, u64>,
    corpus: Vec<Message<Value>>,
    rng: ChaCha8Rng,
    next_value: u64,
}

impl Harness {
    fn new(seed: u64) -> Self {
        let nodes = IDS
            .iter()
            .map(|&pid| {
                let node = OmniPaxosConfig {
                    configuration_id: 1,
                    pid,
                    peers: IDS.iter().copied().filter(|&p| p != pid).collect(),
                    buffer_size: BUFFER,
                    batch_size: 4,
                    ..Default::default()
                }
                .build(MemoryStorage::default())
                .unwrap();
                (pid, node)
            })
            .collect();
        Self {
            nodes,
            decided: IDS.iter().map(|&p| (p, 0)).collect(),
            corpus: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            next_value: 1,
        }
    }

    fn check(&mut self, pid: NodeId, what: &str) {
        let node = &self.nodes[&pid];
        let decided = node.get_decided_idx();
        let accepted = node.get_accepted_idx();
        let compacted = node.get_compacted_idx();
        let before = self.decided[&pid];
        assert!(
            decided >= before,
            "{what}: server {pid}'s decided index went down from {before} to {decided}"
        );
        assert!(
            decided <= accepted + 1,
            "{what}: server {pid} decided {decided} past its log of {accepted}"
        );
        assert!(
            compacted <= decided,
            "{what}: server {pid} compacted {compacted} past its decided {decided}"
        );
        self.decided.insert(pid, decided);
    }

    /// Hands `msg` to its receiver (if it is one of ours) and checks it.
    fn deliver(&mut self, msg: Message<Value>, record: bool, what: &str) -> Vec<Message<Value>> {
        let to = msg.get_receiver();
        let Some(node) = self.nodes.get_mut(&to) else {
            return Vec::new();
        };
        if record && self.corpus.len() < CORPUS {
            self.corpus.push(msg.clone());
        }
        // What the receiver had queued goes out first, so that what is left
        // is its answer to this message alone.
        let mut queued = Vec::new();
        node.take_outgoing_messages(&mut queued);
        node.handle_incoming(msg);
        let mut answer = Vec::new();
        node.take_outgoing_messages(&mut answer);
        let limit = MAX_ANSWERS_PER_PEER * (IDS.len() - 1) + BUFFER;
        assert!(
            answer.len() <= limit,
            "{what}: server {to} queued {} messages in answer to one (limit {limit})",
            answer.len()
        );
        self.check(to, what);
        queued.extend(answer);
        queued
    }

    /// Ticks every server, then delivers what they sent (`record`ing it).
    fn step(&mut self, record: bool, what: &str) {
        let mut sent = Vec::new();
        for node in self.nodes.values_mut() {
            node.tick();
            node.take_outgoing_messages(&mut sent);
        }
        let mut next = Vec::new();
        for msg in sent {
            next.extend(self.deliver(msg, record, what));
        }
        // Answers wait for the next step, as on a network.
        for msg in next {
            let to = msg.get_receiver();
            if let Some(node) = self.nodes.get_mut(&to) {
                node.handle_incoming(msg);
                self.check(to, what);
            }
        }
        for pid in IDS {
            self.check(pid, what);
        }
    }

    /// Some ordinary work at a random server.
    fn work(&mut self) {
        let pid = *IDS.choose(&mut self.rng).unwrap();
        let node = self.nodes.get_mut(&pid).unwrap();
        match self.rng.gen_range(0..10) {
            0..=5 => {
                let _ = node.append(Value(self.next_value));
                self.next_value += 1;
            }
            6 | 7 => {
                let _ = node.request_read();
            }
            8 => {
                let _ = node.snapshot(None, self.rng.gen_bool(0.5));
            }
            _ => {
                let _ = node.trim(None);
            }
        }
    }
}

/// A changed copy of a number: 0, one off, a power of two far away, the
/// largest value, or anything.
fn num(rng: &mut ChaCha8Rng, x: u64) -> u64 {
    match rng.gen_range(0..7) {
        0 => 0,
        1 => x.wrapping_add(1),
        2 => x.wrapping_sub(1),
        3 => 1 << rng.gen_range(20..64),
        4 => u64::MAX,
        5 => x.saturating_mul(2),
        _ => rng.r#gen(),
    }
}

fn ballot(rng: &mut ChaCha8Rng, b: Ballot) -> Ballot {
    match rng.gen_range(0..6) {
        0 => Ballot { n: u32::MAX, ..b },
        1 => Ballot {
            n: Ballot::MAX_ROUND,
            ..b
        },
        2 => Ballot {
            n: b.n.saturating_add(1),
            ..b
        },
        3 => Ballot {
            pid: rng.gen_range(0..5),
            ..b
        },
        4 => Ballot::default(),
        _ => Ballot {
            n: rng.r#gen(),
            priority: rng.r#gen(),
            pid: rng.gen_range(0..5),
        },
    }
}

fn entries(rng: &mut ChaCha8Rng, v: &mut Vec<Value>) {
    match rng.gen_range(0..4) {
        0 => v.clear(),
        1 => {
            let keep = rng.gen_range(0..=v.len());
            v.truncate(keep);
        }
        2 => {
            let copy = v.clone();
            v.extend(copy);
        }
        _ => v.push(Value(rng.r#gen::<u32>().into())),
    }
}

fn snapshot(rng: &mut ChaCha8Rng, s: &mut Option<SnapshotType<Value>>) {
    *s = match rng.gen_range(0..3) {
        0 => None,
        1 => Some(SnapshotType::Complete(ValueSnapshot::default())),
        _ => Some(SnapshotType::Delta {
            from_idx: num(rng, 0),
            snapshot: ValueSnapshot::default(),
        }),
    };
}

fn log_sync(rng: &mut ChaCha8Rng, s: &mut LogSync<Value>) {
    match rng.gen_range(0..3) {
        0 => s.sync_idx = num(rng, s.sync_idx),
        1 => entries(rng, &mut s.suffix),
        _ => snapshot(rng, &mut s.decided_snapshot),
    }
}

/// Changes one field of `msg`.
fn mutate(rng: &mut ChaCha8Rng, msg: &mut Message<Value>) {
    match msg {
        Message::BLE(m) => match rng.gen_range(0..5) {
            0 => m.from = rng.gen_range(0..5),
            1 => m.configuration_id = m.configuration_id.wrapping_add(rng.gen_range(1..3)),
            _ => match &mut m.msg {
                HeartbeatMsg::Request(r) => r.round = rng.r#gen(),
                HeartbeatMsg::Reply(r) => match rng.gen_range(0..3) {
                    0 => r.ballot = ballot(rng, r.ballot),
                    1 => r.leader = Some(ballot(rng, r.leader.unwrap_or_default())),
                    _ => r.quorum_connected = !r.quorum_connected,
                },
            },
        },
        Message::SequencePaxos(p) => {
            if rng.gen_bool(0.15) {
                match rng.gen_range(0..3) {
                    0 => p.from = rng.gen_range(0..5),
                    1 => p.to = rng.gen_range(1..4),
                    _ => p.configuration_id = p.configuration_id.wrapping_add(rng.gen_range(1..3)),
                }
                return;
            }
            let r = rng;
            match &mut p.msg {
                PaxosMsg::PrepareReq(m) => m.n = ballot(r, m.n),
                PaxosMsg::Prepare(m) => match r.gen_range(0..4) {
                    0 => m.n = ballot(r, m.n),
                    1 => m.decided_idx = num(r, m.decided_idx),
                    2 => m.accepted_idx = num(r, m.accepted_idx),
                    _ => m.n_accepted = ballot(r, m.n_accepted),
                },
                PaxosMsg::Promise(m) => match r.gen_range(0..5) {
                    0 => m.n_accepted = ballot(r, m.n_accepted),
                    1 => m.decided_idx = num(r, m.decided_idx),
                    2 => m.accepted_idx = num(r, m.accepted_idx),
                    3 => m.n = ballot(r, m.n),
                    _ => match &mut m.log_sync {
                        Some(s) => log_sync(r, s),
                        None => {
                            m.log_sync = Some(LogSync {
                                decided_snapshot: None,
                                sync_idx: num(r, 0),
                                suffix: vec![Value(1)],
                                stopsign: None,
                                suffix_origins: Default::default(),
                                origin_table: None,
                            });
                        }
                    },
                },
                PaxosMsg::AcceptSync(m) => match r.gen_range(0..4) {
                    0 => m.decided_idx = num(r, m.decided_idx),
                    1 => m.seq_num.session = num(r, m.seq_num.session),
                    2 => m.n = ballot(r, m.n),
                    _ => log_sync(r, &mut m.log_sync),
                },
                PaxosMsg::DecidedSync(m) => match r.gen_range(0..2) {
                    0 => m.n = ballot(r, m.n),
                    _ => log_sync(r, &mut m.log_sync),
                },
                PaxosMsg::SnapshotPart(m) => match r.gen_range(0..4) {
                    0 => m.n = ballot(r, m.n),
                    1 => m.sync_idx = num(r, m.sync_idx),
                    2 => m.part = num(r, u64::from(m.part)) as u32,
                    _ => m.parts = num(r, u64::from(m.parts)) as u32,
                },
                PaxosMsg::SnapshotPartAck(m) => match r.gen_range(0..2) {
                    0 => m.received = num(r, u64::from(m.received)) as u32,
                    _ => m.sync_idx = num(r, m.sync_idx),
                },
                PaxosMsg::AcceptDecide(m) => match r.gen_range(0..4) {
                    0 => m.decided_idx = num(r, m.decided_idx),
                    1 => m.seq_num.counter = num(r, m.seq_num.counter),
                    2 => m.n = ballot(r, m.n),
                    _ => entries(r, m.entries.to_mut()),
                },
                PaxosMsg::Accepted(m) => match r.gen_range(0..2) {
                    0 => m.accepted_idx = num(r, m.accepted_idx),
                    _ => m.n = ballot(r, m.n),
                },
                PaxosMsg::Decide(m) => match r.gen_range(0..3) {
                    0 => m.decided_idx = num(r, m.decided_idx),
                    1 => m.seq_num.counter = num(r, m.seq_num.counter),
                    _ => m.n = ballot(r, m.n),
                },
                PaxosMsg::NotAccepted(m) => m.n = ballot(r, m.n),
                PaxosMsg::ProposalForward(m) => match r.gen_range(0..3) {
                    0 => m.n = ballot(r, m.n),
                    1 => m.id.seq = num(r, m.id.seq),
                    _ => entries(r, &mut m.entries),
                },
                PaxosMsg::ProposalAck(m) => match r.gen_range(0..3) {
                    0 => m.first_idx = num(r, m.first_idx),
                    1 => m.id.seq = num(r, m.id.seq),
                    _ => m.n = ballot(r, m.n),
                },
                PaxosMsg::Compaction(c) => {
                    *c = match r.gen_range(0..3) {
                        0 => Compaction::Trim(num(r, 0)),
                        1 => Compaction::Snapshot(Some(num(r, 0))),
                        _ => Compaction::Snapshot(None),
                    }
                }
                PaxosMsg::ReadRequest(m) => m.id.seq = num(r, m.id.seq),
                PaxosMsg::ReadConfirm(m) => m.round = num(r, m.round),
                PaxosMsg::ReadAck(m) => m.round = num(r, m.round),
                PaxosMsg::ReadResponse(m) => m.read_idx = num(r, m.read_idx),
                PaxosMsg::PullLog(m) => {
                    m.from_idx = num(r, m.from_idx);
                    m.to_idx = num(r, m.to_idx);
                }
                PaxosMsg::PullLogReply(m) => match r.gen_range(0..3) {
                    0 => m.from_idx = num(r, m.from_idx),
                    1 => m.to_idx = num(r, m.to_idx),
                    _ => entries(r, &mut m.entries),
                },
                PaxosMsg::PullSnapshot(m) => match r.gen_range(0..3) {
                    0 => m.covers = num(r, m.covers),
                    1 => m.parts = num(r, m.parts.into()) as u32,
                    _ => m.part = num(r, m.part.into()) as u32,
                },
                PaxosMsg::PullSnapshotPart(m) => match r.gen_range(0..3) {
                    0 => m.covers = num(r, m.covers),
                    1 => m.parts = num(r, m.parts.into()) as u32,
                    _ => m.part = num(r, m.part.into()) as u32,
                },
                PaxosMsg::StopSignDecided(m) => m.stop_idx = num(r, m.stop_idx),
                PaxosMsg::AcceptStopSign(m) => m.ss.nodes.push(r.gen_range(0..5)),
                PaxosMsg::ForwardStopSign(ss) => ss.nodes.clear(),
                PaxosMsg::StopSignRequest(_) | PaxosMsg::StopSignReply(_) => {}
            }
        }
    }
}

/// Some variants only appear in rare runs; these are made up so that every
/// handler sees input (a pull and its reply, a forged stop-sign notice).
fn extra_messages(corpus: &mut Vec<Message<Value>>) {
    let sp = |from, to, msg| {
        Message::SequencePaxos(PaxosMessage {
            configuration_id: 1,
            from,
            to,
            msg,
        })
    };
    corpus.push(sp(
        2,
        1,
        PaxosMsg::PullLog(PullLog {
            from_idx: 0,
            to_idx: 10,
        }),
    ));
    corpus.push(sp(
        3,
        1,
        PaxosMsg::PullLogReply(PullLogReply {
            from_idx: 0,
            to_idx: 2,
            snapshot: None,
            entries: vec![Value(1), Value(2)],
            stopsign: None,
            origins: Default::default(),
            origin_table: None,
        }),
    ));
    corpus.push(sp(
        2,
        1,
        PaxosMsg::PullSnapshot(PullSnapshot {
            covers: 4,
            parts: 2,
            part: 1,
        }),
    ));
    corpus.push(sp(
        3,
        1,
        PaxosMsg::PullSnapshotPart(PullSnapshotPart {
            covers: 4,
            part: 0,
            parts: 2,
            snapshot: ValueSnapshot { count: 4, hash: 7 },
            stopsign: None,
            origin_table: Default::default(),
        }),
    ));
    corpus.push(sp(
        3,
        2,
        PaxosMsg::StopSignDecided(StopSignDecided {
            ss: omnipaxos::util::StopSign::with(2, vec![1, 2, 3], None),
            stop_idx: 5,
            n_accepted: Ballot::default(),
        }),
    ));
}

fn run_case(seed: u64) {
    let mut h = Harness::new(seed);
    for t in 0..WARMUP_STEPS {
        if h.rng.gen_bool(0.3) {
            h.work();
        }
        if t == WARMUP_STEPS / 2 {
            // A leader change, so that syncs and promises are recorded too.
            if let Some(leader) = h.nodes[&1].get_current_leader() {
                let ids: Vec<NodeId> = IDS.iter().copied().filter(|&p| p != leader).collect();
                h.nodes.get_mut(&ids[0]).unwrap().try_become_leader();
            }
        }
        h.step(true, "warm-up");
    }
    // The warm-up must have done something worth mangling.
    let decided = h.decided.values().copied().max().unwrap_or(0);
    let mut kinds: Vec<String> = h
        .corpus
        .iter()
        .map(|m| match m {
            Message::BLE(_) => "BLE".to_owned(),
            Message::SequencePaxos(p) => format!("{:?}", p.msg)
                .split(['(', ' '])
                .next()
                .unwrap_or_default()
                .to_owned(),
        })
        .collect();
    kinds.sort();
    kinds.dedup();
    assert!(
        decided >= 10 && kinds.len() >= 8,
        "seed = {seed}: the warm-up decided {decided} entries and recorded only {kinds:?}"
    );
    extra_messages(&mut h.corpus);
    for i in 0..INJECTIONS {
        let pick = h.rng.gen_range(0..h.corpus.len());
        let mut msg = h.corpus[pick].clone();
        for _ in 0..h.rng.gen_range(1..3) {
            mutate(&mut h.rng, &mut msg);
        }
        let what = format!("seed = {seed}, injection {i}: {msg:?}");
        let answer = h.deliver(msg, false, &what);
        for m in answer {
            let to = m.get_receiver();
            if let Some(node) = h.nodes.get_mut(&to) {
                node.handle_incoming(m);
                h.check(to, &what);
            }
        }
        if h.rng.gen_bool(0.5) {
            h.work();
        }
        h.step(false, &what);
    }
}

#[test]
fn no_mangled_message_panics_a_server_or_breaks_its_storage_invariants() {
    let cases = std::env::var("HOSTILE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    runner
        .run(&any::<u64>(), |seed| {
            run_case(seed);
            Ok(())
        })
        .unwrap();
}
