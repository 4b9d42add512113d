//! Regressions from soak seeds: each test is the smallest history of the
//! seed it names.

use crate::fixtures::*;
use omnipaxos::{
    Ballot, OmniPaxos, OmniPaxosConfig,
    messages::*,
    util::{LogEntry, StopSign},
};
use omnipaxos_storage::memory_storage::MemoryStorage;
use pretty_assertions::assert_eq;

/// Seed 663 of the reconfiguration soak: a leader re-prepared in a higher
/// ballot with a proposal still in its unsent batch, and adopted a log that
/// ends in a decided stop-sign. The batch must not be appended after the
/// adopted log: that would put an entry where the stop-sign was decided.
#[test]
fn a_leader_that_re_prepares_never_appends_its_old_batch_after_an_adopted_stop_sign() {
    let mut l: Node = OmniPaxosConfig {
        batch_size: 3,
        ..config(1, &[2, 3])
    }
    .build(MemoryStorage::default())
    .unwrap();
    promised_by(&mut l, 2);
    assert!(l.is_leader());
    let id = l.append_tracked(E(7)).unwrap(); // waits in the batch
    l.outgoing_messages();
    // Meanwhile server 3 led ballot (1, 0, 3) and decided a stop-sign at
    // index 0 with server 2. Server 1 did not hear of it and leads again.
    l.try_become_leader();
    let b2 = l.get_promise();
    assert!(b2 > Ballot::with(1, 0, 3));
    l.outgoing_messages();
    let ss = StopSign::with(CONFIG + 1, vec![1, 2, 3], None);
    l.handle_incoming(
        Promise {
            n_accepted: Ballot::with(1, 0, 3),
            decided_idx: 1,
            accepted_idx: 1,
            log_sync: Some(LogSync {
                stopsign: Some(ss.clone()),
                ..log_sync(0, vec![])
            }),
            ..promise(b2)
        }
        .sent(2, 1),
    );
    assert_eq!(
        l.read_entries(..),
        Some(vec![LogEntry::StopSign(ss.clone(), true)])
    );
    assert_eq!(l.is_reconfigured(), Some(ss));
    let appended: Vec<Message<E>> = paxos_out(&mut l)
        .into_iter()
        .filter(|m| {
            matches!(m, Message::SequencePaxos(PaxosMessage { msg: PaxosMsg::AcceptDecide(a), .. }) if !a.entries.is_empty())
        })
        .collect();
    assert_eq!(appended, vec![], "nothing follows the stop-sign");
    let mut decided = Vec::new();
    l.take_decided_proposals(&mut decided);
    assert_eq!(
        decided,
        vec![],
        "{id:?} is not decided in this configuration"
    );
}

/// Soak seed 3103: a leader re-prepared and adopted a log whose snapshot
/// replaced the index where it had appended a forwarded batch. A retry of
/// that batch must be appended again, not acknowledged at the old index,
/// which now holds something else.
#[test]
fn a_forwarded_batch_whose_index_a_snapshot_replaced_is_appended_again_on_retry() {
    let mut l: OmniPaxos<N, MemoryStorage<N>> = member(1);
    promised_by(&mut l, 2);
    let id = ForwardId {
        ballot: B1,
        session: 1,
        seq: 1,
    };
    let fwd = |n| {
        ProposalForward {
            n,
            id,
            entries: vec![N(7)],
            origins: Default::default(),
        }
        .sent(3, 1)
    };
    l.handle_incoming(fwd(B1));
    l.outgoing_messages();
    assert_eq!(l.read(0), Some(LogEntry::Undecided(N(7))));
    // Server 2 accepted a later leader's log, decided up to 5 and compacted
    // into a snapshot; it does not hold N(7).
    l.try_become_leader();
    let b2 = l.get_promise();
    l.outgoing_messages();
    l.handle_incoming(
        Promise {
            n_accepted: Ballot::with(1, 0, 2),
            decided_idx: 5,
            accepted_idx: 6,
            log_sync: Some(LogSync {
                decided_snapshot: Some(SnapshotType::Complete(Sum(15))),
                ..log_sync(5, vec![N(9)])
            }),
            ..promise(b2)
        }
        .sent(2, 1),
    );
    assert!(l.is_leader());
    assert_eq!(l.get_compacted_idx(), 5);
    l.outgoing_messages();
    l.handle_incoming(fwd(b2));
    let acks = proposal_acks(l.outgoing_messages());
    assert_eq!(
        acks,
        vec![
            ProposalAck {
                n: b2,
                id,
                first_idx: 6,
                placed: Vec::new(),
            }
            .sent(1, 3)
        ]
    );
    assert_eq!(l.read(6), Some(LogEntry::Undecided(N(7))));
}

/// Soak seed 1625: a server joined a configuration with a snapshot that
/// reached past the previous configuration's log (its source had compacted
/// there), and promised the leader late, in the round the leader's own log
/// was accepted in. The leader synchronised it from the end of the prefix it
/// shared at prepare, inside the joiner's compacted prefix, which the joiner
/// cannot install: it asked again, forever. Its decided prefix is the
/// leader's too, so the sync starts there at the earliest.
#[test]
fn a_late_follower_of_the_synced_round_is_synchronised_from_its_decided_index_at_the_earliest() {
    let mut l = node(1);
    promised_by(&mut l, 3);
    for v in 1..=5 {
        l.append(E(v)).unwrap();
    }
    // Sent (the entries proposed while the first was undecided go together).
    l.outgoing_messages();
    l.handle_incoming(accepted(B1, 5).sent(3, 1));
    assert_eq!(l.get_decided_idx(), 5);
    l.outgoing_messages();
    l.handle_incoming(
        Promise {
            decided_idx: 4,
            accepted_idx: 4,
            ..promise(B1)
        }
        .sent(2, 1),
    );
    assert_eq!(
        paxos_out(&mut l),
        vec![
            AcceptSync {
                decided_idx: 5,
                ..accept_sync(
                    B1,
                    LogSync {
                        suffix_origins: ids_of(1, 5..6),
                        ..log_sync(4, vec![E(5)])
                    }
                )
            }
            .sent(1, 2)
        ]
    );
}

/// Soak seed 1302: a follower whose promise the leader adopted asked to be
/// prepared again before the prepare phase ended, which cleared its promise
/// from the leader's count. The leader then installed that follower's log,
/// snapshot and all, with a decided index taken only from the other
/// promises: its log was compacted past its decided index. Everything a
/// snapshot covers is decided.
#[test]
fn a_leader_that_adopts_a_snapshot_has_decided_everything_it_covers() {
    let mut l: OmniPaxos<N, MemoryStorage<N>> = config(1, &[2, 3, 4, 5])
        .build(MemoryStorage::default())
        .unwrap();
    l.try_become_leader();
    l.outgoing_messages();
    let n = l.get_promise();
    // Of five servers, a read quorum is three. Server 2 accepted a later
    // log, compacted up to 40, and sends it all.
    l.handle_incoming(
        Promise {
            n_accepted: Ballot::with(0, 0, 3),
            decided_idx: 40,
            accepted_idx: 42,
            log_sync: Some(LogSync {
                decided_snapshot: Some(SnapshotType::Complete(Sum(7))),
                ..log_sync(40, vec![N(1), N(2)])
            }),
            ..promise(n)
        }
        .sent(2, 1),
    );
    // It asks to be prepared again; servers 3 and 4, knowing nothing, promise.
    l.handle_incoming(PrepareReq { n }.sent(2, 1));
    for from in [3, 4] {
        l.handle_incoming(promise(n).sent(from, 1));
    }
    assert!(l.is_leader());
    assert_eq!(l.get_compacted_idx(), 40);
    assert!(
        l.get_decided_idx() >= l.get_compacted_idx(),
        "decided {} below the compacted {}",
        l.get_decided_idx(),
        l.get_compacted_idx()
    );
}

/// `fail_recovery` on a running leader (a driver that calls it again, or
/// the fuzz target `handle_incoming`): the proposal waiting in the leader's
/// unsent batch was dropped with the leader state, although its index had
/// been promised to its proposer. The batch goes into the log first, in the
/// ballot it was gathered in.
#[test]
fn fail_recovery_on_a_running_leader_puts_its_batch_in_the_log_first() {
    let mut l: Node = OmniPaxosConfig {
        batch_size: 3,
        ..config(1, &[2, 3])
    }
    .build(MemoryStorage::default())
    .unwrap();
    promised_by(&mut l, 2);
    assert!(l.is_leader());
    let log_len = l.get_accepted_idx();
    l.append(E(7)).unwrap(); // waits in the batch
    assert_eq!(l.get_accepted_idx(), log_len);
    l.fail_recovery();
    assert!(!l.is_leader());
    assert_eq!(l.get_accepted_idx(), log_len + 1);
    assert_eq!(l.read(log_len), Some(LogEntry::Undecided(E(7))));
}

/// Soak seed 98 (once a leader's batch could wait for the next send): a
/// follower's forwarded batch was acknowledged and accepted, then the
/// leader prepared the follower again and its sync decided the batch; every
/// later Decide came out of order. The sync's decided index reports it.
#[test]
fn a_resync_that_decides_an_acknowledged_forward_reports_it() {
    let mut f = synced_follower(vec![], 0);
    let id = f.append_tracked(E(5)).unwrap();
    f.outgoing_messages();
    let ack = ProposalAck {
        n: B1,
        id: ForwardId {
            ballot: B1,
            session: 1,
            seq: 1,
        },
        first_idx: 0,
        placed: Vec::new(),
    };
    f.handle_incoming(
        AcceptDecide {
            forward_acks: vec![ack],
            origins: ids_of(2, 1..2),
            ..accept_decide(B1, 2, vec![E(5)])
        }
        .sent(1, 2),
    );
    f.handle_incoming(
        Prepare {
            n_accepted: B1,
            accepted_idx: 1,
            ..prepare(B1)
        }
        .sent(1, 2),
    );
    f.handle_incoming(
        AcceptSync {
            seq_num: SequenceNumber {
                session: 2,
                counter: 1,
            },
            decided_idx: 1,
            ..accept_sync(B1, log_sync(1, vec![]))
        }
        .sent(1, 2),
    );
    assert_eq!(f.get_decided_idx(), 1);
    let mut decided = Vec::new();
    f.take_decided_proposals(&mut decided);
    assert_eq!(decided, vec![(id, 0)]);
}
