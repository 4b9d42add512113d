//! What the handler tests share: the entry types, nodes in a known state,
//! and message builders.

pub(crate) use crate::common::{N, Sum};
use omnipaxos::{
    Ballot, OmniPaxos, OmniPaxosConfig,
    messages::*,
    storage::{Entry, NoSnapshot},
    util::StopSign,
};
use omnipaxos_storage::memory_storage::MemoryStorage;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct E(pub(crate) u64);

impl Entry for E {
    type Snapshot = NoSnapshot;
}

pub(crate) type Node = OmniPaxos<E, MemoryStorage<E>>;

pub(crate) const CONFIG: u32 = 1;

/// Node `pid` of the cluster {1, 2, 3}, with its start-up heartbeats drained.
pub(crate) fn node(pid: u64) -> Node {
    let peers = [1, 2, 3].into_iter().filter(|p| *p != pid).collect();
    let mut n: Node = OmniPaxosConfig {
        configuration_id: CONFIG,
        pid,
        peers,
        ..Default::default()
    }
    .build(MemoryStorage::default())
    .unwrap();
    n.outgoing_messages();
    n
}

pub(crate) fn sp(from: u64, to: u64, msg: PaxosMsg<E>) -> Message<E> {
    Message::SequencePaxos(PaxosMessage {
        configuration_id: CONFIG,
        from,
        to,
        msg,
    })
}

/// The Sequence Paxos messages a node has to send (heartbeats left out).
pub(crate) fn paxos_out(n: &mut Node) -> Vec<Message<E>> {
    n.outgoing_messages()
        .into_iter()
        .filter(|m| matches!(m, Message::SequencePaxos(_)))
        .collect()
}

pub(crate) const B1: Ballot = Ballot::with(1, 0, 1);

pub(crate) fn prepare_empty(n: Ballot) -> Prepare {
    Prepare {
        n,
        decided_idx: 0,
        n_accepted: Ballot::default(),
        accepted_idx: 0,
    }
}

/// Node 2 following leader 1 in ballot B1, synchronised with log `log`, decided `decided`.
pub(crate) fn synced_follower(log: Vec<E>, decided: u64) -> Node {
    let mut f = node(2);
    f.handle_incoming(sp(1, 2, PaxosMsg::Prepare(prepare_empty(B1))));
    f.handle_incoming(sp(
        1,
        2,
        PaxosMsg::AcceptSync(AcceptSync {
            n: B1,
            seq_num: SequenceNumber {
                session: 1,
                counter: 1,
            },
            decided_idx: decided,
            log_sync: LogSync {
                decided_snapshot: None,
                sync_idx: 0,
                suffix: log,
                stopsign: None,
            },
            forward_acks: vec![],
        }),
    ));
    f.outgoing_messages();
    f
}

/// Node 1 leading ballot B1 with node 2 promised and synchronised.
pub(crate) fn leader_with_follower_2() -> Node {
    let mut l = node(1);
    l.try_become_leader();
    l.outgoing_messages();
    l.handle_incoming(sp(
        2,
        1,
        PaxosMsg::Promise(Promise {
            n: B1,
            n_accepted: Ballot::default(),
            decided_idx: 0,
            accepted_idx: 0,
            log_sync: None,
        }),
    ));
    l.outgoing_messages();
    l
}

pub(crate) fn accept_decide(counter: u64, decided_idx: u64, entries: Vec<E>) -> Message<E> {
    sp(
        1,
        2,
        PaxosMsg::AcceptDecide(AcceptDecide {
            n: B1,
            seq_num: SequenceNumber {
                session: 1,
                counter,
            },
            decided_idx,
            entries,
            forward_acks: vec![],
        }),
    )
}

pub(crate) fn sp_n(from: u64, to: u64, msg: PaxosMsg<N>) -> Message<N> {
    Message::SequencePaxos(PaxosMessage {
        configuration_id: CONFIG,
        from,
        to,
        msg,
    })
}

pub(crate) fn stopsign_2() -> StopSign {
    StopSign::with(CONFIG + 1, vec![1, 2, 3], None)
}
