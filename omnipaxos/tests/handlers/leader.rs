//! A leader: the prepare phase, adopting a log, deciding, and a node that
//! waits for one.

use crate::fixtures::*;
use omnipaxos::{Ballot, OmniPaxosConfig, ProposeErr, messages::*, util::LogEntry};
use omnipaxos_storage::memory_storage::MemoryStorage;
use pretty_assertions::assert_eq;

#[test]
fn new_leader_persists_its_promise_and_prepares_every_peer() {
    let mut l = node(1);
    l.try_become_leader();
    assert_eq!(
        paxos_out(&mut l),
        vec![prepare(B1).sent(1, 2), prepare(B1).sent(1, 3)]
    );
    assert_eq!(l.get_promise(), B1);
    assert!(!l.is_leader(), "still in the prepare phase");
}

#[test]
fn leader_with_a_quorum_of_promises_synchronises_the_follower() {
    let mut l = node(1);
    l.try_become_leader();
    l.outgoing_messages();
    l.append(E(5)).unwrap(); // held until the prepare phase ends
    l.handle_incoming(promise(B1).sent(2, 1));
    assert_eq!(
        paxos_out(&mut l),
        vec![
            accept_sync(B1, log_sync(0, vec![])).sent(1, 2),
            AcceptDecide {
                origins: ids_of(1, 1..2),
                ..accept_decide(B1, 2, vec![E(5)])
            }
            .sent(1, 2),
        ]
    );
    assert!(l.is_leader());
    assert_eq!(l.read(0), Some(LogEntry::Undecided(E(5))));
}

#[test]
fn leader_adopts_the_log_of_the_most_up_to_date_promise() {
    let mut l = node(1);
    l.try_become_leader();
    l.outgoing_messages();
    l.handle_incoming(
        Promise {
            n_accepted: Ballot::with(0, 0, 3),
            accepted_idx: 2,
            log_sync: Some(log_sync(0, vec![E(1), E(2)])),
            ..promise(B1)
        }
        .sent(2, 1),
    );
    assert_eq!(l.read_entries(..).unwrap().len(), 2);
    assert_eq!(l.read(1), Some(LogEntry::Undecided(E(2))));
}

#[test]
fn leader_decides_once_a_quorum_accepted_and_tells_followers() {
    let mut l = leader_with_follower_2();
    l.append(E(9)).unwrap();
    l.outgoing_messages();
    l.handle_incoming(accepted(B1, 1).sent(2, 1));
    assert_eq!(paxos_out(&mut l), vec![decide(B1, 3, 1).sent(1, 2)]);
    assert_eq!(l.get_decided_idx(), 1);
    assert_eq!(l.read(0), Some(LogEntry::Decided(E(9))));
}

#[test]
fn leader_prepares_a_follower_that_asks() {
    let mut l = leader_with_follower_2();
    l.handle_incoming(PrepareReq { n: B1 }.sent(2, 1));
    assert_eq!(
        paxos_out(&mut l),
        vec![
            Prepare {
                n_accepted: B1,
                ..prepare(B1)
            }
            .sent(1, 2)
        ]
    );
}

#[test]
fn a_node_without_a_leader_buffers_proposals_up_to_buffer_size() {
    let mut n: Node = OmniPaxosConfig {
        buffer_size: 1,
        ..config(1, &[2, 3])
    }
    .build(MemoryStorage::default())
    .unwrap();
    n.append(E(1)).unwrap();
    match n.append(E(2)) {
        Err(ProposeErr::BufferFull(e)) => assert_eq!(e, E(2)),
        other => panic!("expected BufferFull, got {other:?}"),
    }
}

#[test]
fn one_node_cluster_decides_alone() {
    let mut n: Node = config(7, &[]).build(MemoryStorage::default()).unwrap();
    for _ in 0..10 {
        n.tick();
    }
    assert!(n.is_leader());
    n.append(E(1)).unwrap();
    assert_eq!(n.get_decided_idx(), 1);
    assert_eq!(n.outgoing_messages(), vec![]);
}

#[test]
fn leader_outbids_a_higher_ballot_named_in_a_prepare_request() {
    // Server 2 promised its own ballot 5 and crashed before leading; after a
    // restart it asks to be prepared under that ballot. Our ballot is lower,
    // so at the end of the next heartbeat round we take a ballot above 5.
    let mut l = leader_with_follower_2();
    l.handle_incoming(
        PrepareReq {
            n: Ballot::with(5, 0, 2),
        }
        .sent(2, 1),
    );
    assert_eq!(paxos_out(&mut l), vec![]);
    for _ in 0..10 {
        l.tick();
    }
    assert!(
        l.get_promise() > Ballot::with(5, 0, 2),
        "promise {:?}",
        l.get_promise()
    );
}

#[test]
fn the_followers_messages_share_one_copy_of_the_entries() {
    let mut l = node(1);
    l.try_become_leader();
    l.handle_incoming(promise(B1).sent(2, 1));
    l.handle_incoming(promise(B1).sent(3, 1));
    l.outgoing_messages();
    // Two flushes (batch size 1) join each follower's open AcceptDecide.
    l.append(E(1)).unwrap();
    l.append(E(2)).unwrap();
    let mut carried = Vec::new();
    for m in paxos_out(&mut l) {
        if let Message::SequencePaxos(PaxosMessage {
            to,
            msg: PaxosMsg::AcceptDecide(acc),
            ..
        }) = m
        {
            assert_eq!(acc.entries, vec![E(1), E(2)], "to {to}");
            carried.push((to, acc.entries));
        }
    }
    let tos: Vec<_> = carried.iter().map(|(to, _)| *to).collect();
    assert_eq!(tos, vec![2, 3]);
    assert!(carried.iter().all(|(_, e)| e.is_shared()));
    assert_eq!(
        carried[0].1.as_ptr(),
        carried[1].1.as_ptr(),
        "one buffer, not a copy per follower"
    );
}

/// Group commit: a proposal goes at once while nothing is undecided; the
/// proposals made while one is undecided wait for the next send and go in
/// one write and one message.
#[test]
fn proposals_made_while_one_is_undecided_go_together_at_the_next_send() {
    let mut l = leader_with_follower_2();
    l.append(E(1)).unwrap();
    assert_eq!(
        l.read(0),
        Some(LogEntry::Undecided(E(1))),
        "written at once"
    );
    l.append(E(2)).unwrap();
    l.append(E(3)).unwrap();
    assert_eq!(l.read(1), None, "waiting for the send");
    let sent: Vec<Vec<E>> = paxos_out(&mut l)
        .into_iter()
        .filter_map(|m| match m {
            Message::SequencePaxos(PaxosMessage {
                msg: PaxosMsg::AcceptDecide(a),
                ..
            }) => Some(a.entries.to_vec()),
            _ => None,
        })
        .collect();
    assert_eq!(sent, vec![vec![E(1), E(2), E(3)]]);
    assert_eq!(l.read(2), Some(LogEntry::Undecided(E(3))));
    // Once all is decided, the next proposal goes at once again.
    l.handle_incoming(accepted(B1, 3).sent(2, 1));
    assert_eq!(l.get_decided_idx(), 3);
    l.append(E(4)).unwrap();
    assert_eq!(l.read(3), Some(LogEntry::Undecided(E(4))));
}

/// A lone server decides each proposal in the call that makes it.
#[test]
fn a_lone_server_decides_each_append_at_once() {
    let mut l: Node = config(1, &[]).build(MemoryStorage::default()).unwrap();
    while !l.is_leader() {
        l.tick();
    }
    for v in 0..3 {
        l.append(E(v)).unwrap();
        assert_eq!(l.get_decided_idx(), v + 1);
    }
}

#[test]
fn a_leader_waits_for_a_snapshot_that_follows_a_promise_and_gives_up_on_one_that_never_comes() {
    let mut l: Node = OmniPaxosConfig {
        resend_message_tick_timeout: 1,
        election_tick_timeout: 1_000,
        ..config(1, &[2, 3])
    }
    .build(MemoryStorage::default())
    .unwrap();
    l.outgoing_messages();
    l.try_become_leader();
    l.outgoing_messages();
    // Server 2's log is ahead and starts with a snapshot of 20 entries that
    // follows in parts: the leader waits for them instead of leading.
    l.handle_incoming(
        Promise {
            n_accepted: Ballot::with(0, 0, 3),
            accepted_idx: 20,
            decided_idx: 20,
            snapshot_follows: Some(20),
            ..promise(B1)
        }
        .sent(2, 1),
    );
    assert!(!l.is_leader(), "waiting for server 2's snapshot");
    assert_eq!(paxos_out(&mut l), vec![]);
    // Server 3, which has not promised, is asked again on every resend
    // timeout, and its promise alone does not end the wait.
    l.tick();
    assert_eq!(paxos_out(&mut l), vec![prepare(B1).sent(1, 3)]);
    l.handle_incoming(promise(B1).sent(3, 1));
    assert!(!l.is_leader(), "still waiting for server 2's snapshot");
    // No part comes for three resend timeouts: it prepares every peer
    // again, server 2 too.
    let mut ticks = 0;
    loop {
        l.tick();
        ticks += 1;
        if paxos_out(&mut l).contains(&prepare(B1).sent(1, 2)) {
            break;
        }
        assert!(
            ticks < 5,
            "no new prepare round after {ticks} stalled timeouts"
        );
    }
    assert!(!l.is_leader());
    // A new read quorum without server 2 lets it lead.
    l.handle_incoming(promise(B1).sent(3, 1));
    assert!(l.is_leader());
}

#[test]
fn a_leader_ignores_snapshot_parts_no_promised_follower_would_send() {
    let mut l = node(1);
    l.try_become_leader();
    l.outgoing_messages();
    let part = |part: u32, parts: u32| SnapshotPart::<E> {
        n: B1,
        sync_idx: 20,
        delta_from: None,
        part,
        parts,
        snapshot: omnipaxos::storage::NoSnapshot,
        origin_table: None,
    };
    let forged = [
        // Not a member.
        sp(9, 1, PaxosMsg::SnapshotPart(part(0, 2))),
        // Another ballot than ours.
        sp(
            2,
            1,
            PaxosMsg::SnapshotPart(SnapshotPart {
                n: Ballot::with(5, 0, 3),
                ..part(0, 2)
            }),
        ),
        // A snapshot "in parts" of one part, a part past the count, too many parts.
        sp(2, 1, PaxosMsg::SnapshotPart(part(0, 1))),
        sp(2, 1, PaxosMsg::SnapshotPart(part(2, 2))),
        sp(2, 1, PaxosMsg::SnapshotPart(part(0, u32::MAX))),
        // A prefix we have decided already.
        sp(
            2,
            1,
            PaxosMsg::SnapshotPart(SnapshotPart {
                sync_idx: 0,
                ..part(0, 2)
            }),
        ),
    ];
    for msg in forged {
        l.handle_incoming(msg);
    }
    assert_eq!(paxos_out(&mut l), vec![], "nothing acknowledged");
    assert_eq!(l.get_decided_idx(), 0);
    // A delta starting past its end, and a part from a follower while
    // another's snapshot comes in, are ignored as well; a real first part
    // is acknowledged.
    l.handle_incoming(sp(
        2,
        1,
        PaxosMsg::SnapshotPart(SnapshotPart {
            delta_from: Some(21),
            ..part(0, 2)
        }),
    ));
    assert_eq!(paxos_out(&mut l), vec![]);
    l.handle_incoming(sp(2, 1, PaxosMsg::SnapshotPart(part(0, 2))));
    assert_eq!(
        paxos_out(&mut l),
        vec![sp(
            1,
            2,
            PaxosMsg::SnapshotPartAck(SnapshotPartAck {
                n: B1,
                sync_idx: 20,
                received: 1
            })
        )]
    );
    l.handle_incoming(sp(3, 1, PaxosMsg::SnapshotPart(part(0, 2))));
    assert_eq!(
        paxos_out(&mut l),
        vec![],
        "server 2's snapshot is coming in"
    );
}
