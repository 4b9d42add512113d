//! Hostile and faulty input: one crafted message at a time from a member of
//! a running three-server cluster (or from a stranger), for each defect the
//! input audit found. Each test checks that the message panics nothing
//! (these run with overflow checks in debug), is refused or leaves the
//! receiver's state as the protocol allows, and that the cluster still
//! decides new entries afterwards.

use fixtures::*;
use omnipaxos::{
    Ballot, Migration, OmniPaxos, OmniPaxosConfig,
    messages::*,
    storage::{Entry, NoSnapshot},
    util::{LogEntry, NodeId, StopSign},
};
use omnipaxos_storage::memory_storage::MemoryStorage;
use std::collections::BTreeMap;

mod common;
// The handler tests' builders and entry types; this file does not use the
// nodes in known states that they set up.
#[allow(dead_code)]
#[path = "handlers/fixtures.rs"]
mod fixtures;

/// A cluster of servers 1, 2, 3 on in-memory storage, every message
/// delivered on the next step.
struct Cluster<T: Entry> {
    nodes: BTreeMap<NodeId, OmniPaxos<T, MemoryStorage<T>>>,
}

impl<T: Entry> Cluster<T> {
    fn new() -> Self {
        let nodes = [1, 2, 3]
            .into_iter()
            .map(|pid| (pid, member(pid)))
            .collect();
        let mut cluster = Self { nodes };
        cluster.run_until(|c| c.leader().is_some(), 200);
        cluster
    }

    fn node(&mut self, pid: NodeId) -> &mut OmniPaxos<T, MemoryStorage<T>> {
        self.nodes.get_mut(&pid).unwrap()
    }

    /// The leader every server agrees on, if they agree.
    fn leader(&self) -> Option<NodeId> {
        let leader = self.nodes[&1].get_current_leader()?;
        let agreed = self
            .nodes
            .values()
            .all(|n| n.get_current_leader() == Some(leader));
        (agreed && self.nodes[&leader].is_leader()).then_some(leader)
    }

    /// Ticks every server, then delivers everything they sent.
    fn step(&mut self) {
        let mut sent = Vec::new();
        for node in self.nodes.values_mut() {
            node.tick();
            node.take_outgoing_messages(&mut sent);
        }
        for msg in sent {
            if let Some(node) = self.nodes.get_mut(&msg.get_receiver()) {
                node.handle_incoming(msg);
            }
        }
    }

    fn run_until(&mut self, done: impl Fn(&Self) -> bool, max_steps: u64) {
        for _ in 0..max_steps {
            if done(self) {
                return;
            }
            self.step();
        }
        assert!(
            done(self),
            "the cluster did not get there in {max_steps} steps"
        );
    }

    /// Hands a crafted message to its receiver.
    fn inject(&mut self, msg: Message<T>) {
        let to = msg.get_receiver();
        self.node(to).handle_incoming(msg);
    }

    /// Appends `entry` and waits until every server decided it; no server
    /// may have stopped on a storage failure on the way.
    fn decides(&mut self, entry: T) {
        for (pid, node) in &self.nodes {
            assert!(
                node.get_storage_failure().is_none(),
                "server {pid} stopped: {:?}",
                node.get_storage_failure()
            );
        }
        let target = self
            .nodes
            .values()
            .map(|n| n.get_decided_idx())
            .max()
            .unwrap()
            + 1;
        self.run_until(|c| c.leader().is_some(), 500);
        let leader = self.leader().unwrap();
        self.node(leader).append(entry).unwrap();
        self.run_until(
            |c| c.nodes.values().all(|n| n.get_decided_idx() >= target),
            500,
        );
    }

    fn follower(&self) -> NodeId {
        let leader = self.leader().expect("a leader");
        *self.nodes.keys().find(|&&p| p != leader).unwrap()
    }

    fn other_follower(&self) -> NodeId {
        let leader = self.leader().expect("a leader");
        let f = self.follower();
        *self.nodes.keys().find(|&&p| p != leader && p != f).unwrap()
    }
}

/// Makes `f` promise a ballot of member `m` above the current leader's, as a
/// member that started to lead would: what a sync must come with.
fn prepared_by<T: Entry>(c: &mut Cluster<T>, m: NodeId, f: NodeId) -> Ballot {
    let n = Ballot::with(c.node(f).get_promise().n + 1, 0, m);
    c.inject(prepare(n).sent(m, f));
    n
}

// ----- 1. ballot rounds ------------------------------------------------------

#[test]
fn a_ballot_round_no_server_could_outbid_is_refused_and_the_cluster_still_decides() {
    let mut c = Cluster::<E>::new();
    c.decides(E(1));
    let (leader, f) = (c.leader().unwrap(), c.follower());
    let promise = c.node(f).get_promise();
    let top = Ballot::with(u32::MAX, 0, leader);
    c.inject(prepare(top).sent(leader, f));
    c.inject(PrepareReq { n: top }.sent(leader, f));
    c.inject(NotAccepted { n: top }.sent(f, leader));
    c.inject(ble(
        leader,
        f,
        HeartbeatMsg::Reply(HeartbeatReply {
            round: 1,
            ballot: top,
            quorum_connected: true,
            leader: Some(top),
        }),
    ));
    assert_eq!(c.node(f).get_promise(), promise, "the round is refused");
    // One past the last round a server takes, and a reply speaking for
    // another server's ballot, are refused too.
    let past = Ballot::with(Ballot::MAX_ROUND + 1, 0, leader);
    c.inject(prepare(past).sent(leader, f));
    assert_eq!(c.node(f).get_promise(), promise);
    c.inject(ble(
        f,
        leader,
        HeartbeatMsg::Reply(HeartbeatReply {
            round: 1,
            ballot: Ballot::with(99, 0, 3),
            quorum_connected: true,
            leader: None,
        }),
    ));
    for _ in 0..100 {
        c.step();
    }
    assert!(
        c.nodes.values().all(|n| n.get_promise().n < 99),
        "nobody adopted a ballot a peer made up for another server"
    );
    c.decides(E(2));
}

// ----- 2. snapshots in log syncs ----------------------------------------------

#[test]
fn a_sync_with_a_snapshot_for_an_entry_type_without_snapshots_is_refused() {
    let mut c = Cluster::<E>::new();
    c.decides(E(1));
    let (f, m) = (c.follower(), c.other_follower());
    let before = c.node(f).read_entries(..).unwrap();
    for sync_idx in [1 << 40, u64::MAX] {
        let n = prepared_by(&mut c, m, f);
        c.inject(
            accept_sync(
                n,
                LogSync {
                    decided_snapshot: Some(SnapshotType::Complete(NoSnapshot)),
                    ..log_sync(sync_idx, vec![E(7)])
                },
            )
            .sent(m, f),
        );
        assert_eq!(c.node(f).read_entries(..).unwrap(), before);
        assert!(c.node(f).get_storage_failure().is_none());
    }
    c.decides(E(2));
}

#[test]
fn a_snapshot_sync_far_past_the_log_reserves_no_memory_from_its_index() {
    let mut c = Cluster::<N>::new();
    c.decides(N(1));
    let (f, m) = (c.follower(), c.other_follower());
    // Past the highest index a server takes: refused.
    let n = prepared_by(&mut c, m, f);
    c.inject(
        accept_sync(
            n,
            LogSync {
                decided_snapshot: Some(SnapshotType::Complete(Sum(5))),
                ..log_sync(u64::MAX - 1, vec![N(1), N(2)])
            },
        )
        .sent(m, f),
    );
    assert_eq!(c.node(f).get_accepted_idx(), 1);
    // Far past the log, but an index a log could reach: installed as the
    // leader's word, and reading the whole log afterwards reserves memory
    // for what is there, not for 2^40 entries.
    let n = prepared_by(&mut c, m, f);
    c.inject(
        accept_sync(
            n,
            LogSync {
                decided_snapshot: Some(SnapshotType::Complete(Sum(5))),
                ..log_sync(1 << 40, vec![N(1)])
            },
        )
        .sent(m, f),
    );
    let f_node = c.node(f);
    assert_eq!(f_node.get_decided_idx(), 1 << 40);
    let read = f_node.read_entries(0..f_node.get_decided_idx()).unwrap();
    assert!(matches!(read[..], [LogEntry::Snapshotted(_)]), "{read:?}");
}

// ----- 3. a sync that cuts the decided log -------------------------------------

#[test]
fn a_sync_that_would_cut_decided_entries_is_refused() {
    let mut c = Cluster::<E>::new();
    for i in 1..=5 {
        c.decides(E(i));
    }
    let (f, m) = (c.follower(), c.other_follower());
    let decided = c.node(f).read_decided_suffix(0).unwrap();
    let n = prepared_by(&mut c, m, f);
    c.inject(accept_sync(n, log_sync(0, vec![])).sent(m, f));
    assert_eq!(c.node(f).read_decided_suffix(0).unwrap(), decided);
    c.decides(E(6));
}

// ----- 4. a Prepare's decided index -------------------------------------------

#[test]
fn a_prepare_claiming_a_decided_index_past_our_log_is_answered_from_our_log() {
    let mut c = Cluster::<E>::new();
    c.decides(E(1));
    let (f, m) = (c.follower(), c.other_follower());
    let n = Ballot::with(c.node(f).get_promise().n + 1, 0, m);
    c.inject(
        Prepare {
            decided_idx: u64::MAX,
            ..prepare(n)
        }
        .sent(m, f),
    );
    let promise = c
        .node(f)
        .outgoing_messages()
        .into_iter()
        .find_map(|msg| match msg {
            Message::SequencePaxos(PaxosMessage {
                msg: PaxosMsg::Promise(p),
                ..
            }) => Some(p),
            _ => None,
        })
        .expect("the follower promises");
    assert_eq!(promise.accepted_idx, 1);
    assert!(
        promise.log_sync.is_none_or(|s| s.suffix.is_empty()),
        "nothing of ours lies past the claimed index"
    );
    c.decides(E(2));
}

// ----- 5. forged proposal acknowledgements ----------------------------------------

/// A follower's forwarded batch, as it goes to the leader.
fn forward_id<T: Entry>(msgs: &[Message<T>]) -> ForwardId {
    msgs.iter()
        .find_map(|m| match m {
            Message::SequencePaxos(PaxosMessage {
                msg: PaxosMsg::ProposalForward(f),
                ..
            }) => Some(f.id),
            _ => None,
        })
        .expect("the follower forwards its proposal")
}

#[test]
fn an_acknowledgement_from_another_than_the_leader_or_past_any_log_is_ignored() {
    let mut c = Cluster::<E>::new();
    c.decides(E(1));
    let (leader, f, m) = (c.leader().unwrap(), c.follower(), c.other_follower());
    let proposal = c.node(f).append_tracked(E(2)).unwrap();
    let forward = c.node(f).outgoing_messages();
    let id = forward_id(&forward);
    let n = c.node(f).get_current_leader_ballot().unwrap();
    // From a member that does not lead, at index 0 (which holds E(1)).
    c.inject(
        ProposalAck {
            n,
            id,
            first_idx: 0,
            placed: Vec::new(),
        }
        .sent(m, f),
    );
    // From the leader, at an index whose range overflows.
    c.inject(
        ProposalAck {
            n,
            id,
            first_idx: u64::MAX,
            placed: Vec::new(),
        }
        .sent(leader, f),
    );
    // The forward is lost; the follower retries it until it is decided.
    let mut decided = Vec::new();
    c.run_until(|c| c.nodes.values().all(|n| n.get_decided_idx() >= 2), 500);
    c.node(f).take_decided_proposals(&mut decided);
    assert_eq!(decided, vec![(proposal, 1)], "reported where E(2) is");
    assert_eq!(
        c.node(f).read(1),
        Some(LogEntry::Decided(E(2))),
        "decided once, at index 1"
    );
    c.decides(E(3));
}

// ----- 6. and 7. pulls ----------------------------------------------------------

fn pull_replies<T: Entry>(msgs: &[Message<T>], to: NodeId) -> Vec<&PullLogReply<T>> {
    msgs.iter()
        .filter_map(|m| match m {
            Message::SequencePaxos(PaxosMessage {
                to: r,
                msg: PaxosMsg::PullLogReply(p),
                ..
            }) if *r == to => Some(p),
            _ => None,
        })
        .collect()
}

#[test]
fn pulls_are_served_only_to_members_once_per_take_and_in_bounded_parts() {
    let mut c = Cluster::<E>::new();
    for i in 1..=5 {
        c.decides(E(i));
    }
    let f = c.follower();
    // A stranger gets nothing; 200 pulls from a member queue one reply.
    c.inject(
        PullLog {
            from_idx: 0,
            to_idx: 5,
        }
        .sent(99, f),
    );
    let m = c.other_follower();
    for _ in 0..200 {
        c.inject(
            PullLog {
                from_idx: 0,
                to_idx: 5,
            }
            .sent(m, f),
        );
    }
    let out = c.node(f).outgoing_messages();
    assert!(pull_replies(&out, 99).is_empty());
    assert_eq!(pull_replies(&out, m).len(), 1);
    // Pulls of many ranges queue at most four replies (a puller's window).
    for _ in 0..50 {
        for from_idx in 0..5 {
            c.inject(
                PullLog {
                    from_idx,
                    to_idx: 5,
                }
                .sent(m, f),
            );
        }
    }
    let out = c.node(f).outgoing_messages();
    let replies = pull_replies(&out, m);
    assert_eq!(replies.len(), 4);
    assert_eq!(
        replies.iter().map(|r| r.from_idx).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );

    // A reply carries at most `buffer_size` entries.
    let mut small: OmniPaxos<E, MemoryStorage<E>> = OmniPaxosConfig {
        buffer_size: 2,
        ..config(1, &[])
    }
    .build(MemoryStorage::default())
    .unwrap();
    for _ in 0..100 {
        small.tick();
        if small.is_leader() {
            break;
        }
    }
    for i in 0..5 {
        small.append(E(i)).unwrap();
        small.tick();
    }
    assert_eq!(small.get_decided_idx(), 5);
    small.outgoing_messages();
    // The single server's only "member" is itself; a joiner would be named
    // by a stop-sign. A pull from a stranger is refused here too.
    small.handle_incoming(
        PullLog {
            from_idx: 0,
            to_idx: 5,
        }
        .sent(7, 1),
    );
    assert!(pull_replies(&small.outgoing_messages(), 7).is_empty());
    c.decides(E(6));
}

#[test]
fn a_pull_reply_from_a_server_not_asked_or_for_another_range_is_ignored() {
    let storage = MemoryStorage::<E>::default();
    let mut joiner: OmniPaxos<E, MemoryStorage<E>> = OmniPaxosConfig {
        configuration_id: CONFIG + 1,
        ..config(4, &[1, 2])
    }
    .build_joining(
        storage,
        Migration {
            log_len: 10,
            sources: vec![1, 2],
        },
    )
    .unwrap();
    let asks = pull_logs(joiner.outgoing_messages());
    assert_eq!(asks.len(), 2, "{asks:?}");
    let ended = StopSignDecided {
        ss: StopSign::with(CONFIG + 1, vec![1, 2, 4], None),
        stop_idx: 10,
        n_accepted: Ballot::default(),
    };
    let reply_saying = |from: NodeId, from_idx: u64, to_idx: u64, ss: Option<StopSignDecided>| {
        PullLogReply {
            stopsign: ss,
            ..pull_log_reply(from_idx, (from_idx..to_idx).map(E).collect())
        }
        .sent_in(CONFIG + 1, from, 4)
    };
    let reply = |from, from_idx, to_idx| reply_saying(from, from_idx, to_idx, Some(ended.clone()));
    let (first, second) = (asks[0], asks[1]);
    // Before the joiner knows how the previous configuration ended (a reply
    // that does not say, or says it ended elsewhere, or without this server,
    // does not tell it), nothing pulled is stored: the entries wait.
    let mut elsewhere = ended.clone();
    elsewhere.stop_idx = 9;
    let mut without_us = ended.clone();
    without_us.ss = StopSign::with(CONFIG + 1, vec![1, 2, 3], None);
    for ss in [None, Some(elsewhere), Some(without_us)] {
        joiner.handle_incoming(reply_saying(first.0, first.1.from_idx, first.1.to_idx, ss));
    }
    assert_eq!(joiner.get_decided_idx(), 0);
    assert_eq!(joiner.get_migration_status().unwrap().stored_idx, 0);
    // Indices at the ends of the range, and a reply whose entries do not
    // match its range: ignored, without overflow.
    for (f, t, n) in [
        (u64::MAX, u64::MAX, 0),
        (0, u64::MAX, 1),
        (5, 2, 3),
        (0, 5, 4),
    ] {
        joiner.handle_incoming(
            PullLogReply {
                from_idx: f,
                to_idx: t,
                snapshot: None,
                entries: (0..n).map(E).collect(),
                stopsign: Some(ended.clone()),
                origins: Default::default(),
                origin_table: None,
            }
            .sent_in(CONFIG + 1, first.0, 4),
        );
    }
    assert_eq!(joiner.get_decided_idx(), 0);
    // From a server nobody asked, and a reply overlapping two slices with
    // no snapshot: both ignored.
    joiner.handle_incoming(reply(3, first.1.from_idx, first.1.to_idx));
    joiner.handle_incoming(reply(first.0, 0, second.1.to_idx));
    joiner.handle_incoming(reply(second.0, 0, second.1.to_idx));
    assert!(joiner.is_migrating());
    // The right replies, in two parts for the first slice.
    let mid = first.1.from_idx + 2;
    joiner.handle_incoming(reply(first.0, first.1.from_idx, mid));
    joiner.handle_incoming(reply(first.0, mid, first.1.to_idx));
    joiner.handle_incoming(reply(second.0, second.1.from_idx, second.1.to_idx));
    assert!(!joiner.is_migrating());
    assert_eq!(joiner.get_decided_idx(), 10);
    let log: Vec<_> = joiner
        .read_decided_suffix(0)
        .unwrap()
        .into_iter()
        .map(|e| match e {
            LogEntry::Decided(e) => e.0,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(log, (0..10).collect::<Vec<_>>());
}

// ----- 8. reads at a follower -------------------------------------------------------

#[test]
fn a_read_at_a_follower_costs_one_message_and_the_leader_queues_a_retry_once() {
    let mut c = Cluster::<E>::new();
    c.decides(E(1));
    let (leader, f) = (c.leader().unwrap(), c.follower());
    let mut sent = Vec::new();
    for _ in 0..2_000 {
        c.node(f).request_read().unwrap();
        c.node(f).take_outgoing_messages(&mut sent);
    }
    let requests = sent
        .iter()
        .filter(|m| {
            matches!(
                m,
                Message::SequencePaxos(PaxosMessage {
                    msg: PaxosMsg::ReadRequest(_),
                    ..
                })
            )
        })
        .count();
    assert_eq!(requests, 2_000, "one message per read");
    // Each request delivered three times is queued once: one answer each.
    for msg in sent.iter().chain(&sent).chain(&sent) {
        c.inject(msg.clone());
    }
    let mut answers = 0;
    for _ in 0..50 {
        let mut out = Vec::new();
        for node in c.nodes.values_mut() {
            node.tick();
            node.take_outgoing_messages(&mut out);
        }
        answers += out
            .iter()
            .filter(|m| {
                matches!(
                    m,
                    Message::SequencePaxos(PaxosMessage {
                        from,
                        msg: PaxosMsg::ReadResponse(_),
                        ..
                    }) if *from == leader
                )
            })
            .count();
        for msg in out {
            c.inject(msg);
        }
    }
    assert_eq!(answers, 2_000, "every read answered once");
    let mut points = Vec::new();
    c.node(f).take_read_points(&mut points);
    assert_eq!(points.len(), 2_000);
    c.decides(E(2));
}
