//! A storage that fails mid-write (disk full, permission denied): the error
//! reaches the protocol, which stops acting rather than acknowledge, promise
//! or replicate what it failed to persist.

use omnipaxos::{
    Ballot, OmniPaxos, OmniPaxosConfig, ProposeErr, StorageError,
    messages::*,
    storage::{Entry, NoSnapshot, Storage, StorageOp, StorageResult},
    util::{ConfigurationEnd, StopSign},
};
use omnipaxos_storage::memory_storage::MemoryStorage;
use std::{cell::Cell, rc::Rc};

#[derive(Clone, Debug, PartialEq, Eq)]
struct E(u64);

impl Entry for E {
    type Snapshot = NoSnapshot;
}

/// MemoryStorage whose writes fail while `full` is set, as a full disk would.
struct FailingStorage {
    inner: MemoryStorage<E>,
    full: Rc<Cell<bool>>,
    /// How many of the next writes fail, the disk being fine after.
    fail_next: Rc<Cell<u32>>,
}

impl FailingStorage {
    fn check(&self) -> StorageResult<()> {
        let fail_next = self.fail_next.get();
        if fail_next > 0 {
            self.fail_next.set(fail_next - 1);
        }
        if self.full.get() || fail_next > 0 {
            Err(StorageError::Io {
                operation: "append entries".into(),
                path: Some("/data/log".into()),
                detail: "No space left on device (os error 28)".into(),
            })
        } else {
            Ok(())
        }
    }
}

impl Storage<E> for FailingStorage {
    fn write_atomically(&mut self, ops: Vec<StorageOp<E>>) -> StorageResult<()> {
        self.check()?;
        self.inner.write_atomically(ops)
    }
    fn append_entry(&mut self, entry: E) -> StorageResult<()> {
        self.check()?;
        self.inner.append_entry(entry)
    }
    fn append_entries(&mut self, entries: Vec<E>) -> StorageResult<()> {
        self.check()?;
        self.inner.append_entries(entries)
    }
    fn append_on_prefix(&mut self, from_idx: u64, entries: Vec<E>) -> StorageResult<()> {
        self.check()?;
        self.inner.append_on_prefix(from_idx, entries)
    }
    fn set_promise(&mut self, n: Ballot) -> StorageResult<()> {
        self.check()?;
        self.inner.set_promise(n)
    }
    fn set_decided_idx(&mut self, ld: u64) -> StorageResult<()> {
        self.check()?;
        self.inner.set_decided_idx(ld)
    }
    fn get_decided_idx(&self) -> StorageResult<u64> {
        self.inner.get_decided_idx()
    }
    fn set_accepted_round(&mut self, na: Ballot) -> StorageResult<()> {
        self.check()?;
        self.inner.set_accepted_round(na)
    }
    fn get_accepted_round(&self) -> StorageResult<Option<Ballot>> {
        self.inner.get_accepted_round()
    }
    fn get_entries(&self, from: u64, to: u64) -> StorageResult<Vec<E>> {
        self.inner.get_entries(from, to)
    }
    fn get_log_len(&self) -> StorageResult<u64> {
        self.inner.get_log_len()
    }
    fn get_suffix(&self, from: u64) -> StorageResult<Vec<E>> {
        self.inner.get_suffix(from)
    }
    fn get_promise(&self) -> StorageResult<Option<Ballot>> {
        self.inner.get_promise()
    }
    fn set_stopsign(&mut self, s: Option<StopSign>) -> StorageResult<()> {
        self.check()?;
        self.inner.set_stopsign(s)
    }
    fn get_stopsign(&self) -> StorageResult<Option<StopSign>> {
        self.inner.get_stopsign()
    }
    fn trim(&mut self, idx: u64) -> StorageResult<()> {
        self.check()?;
        self.inner.trim(idx)
    }
    fn set_compacted_idx(&mut self, idx: u64) -> StorageResult<()> {
        self.check()?;
        self.inner.set_compacted_idx(idx)
    }
    fn get_compacted_idx(&self) -> StorageResult<u64> {
        self.inner.get_compacted_idx()
    }
    fn set_snapshot(&mut self, snapshot: Option<NoSnapshot>) -> StorageResult<()> {
        self.check()?;
        self.inner.set_snapshot(snapshot)
    }
    fn get_snapshot(&self) -> StorageResult<Option<NoSnapshot>> {
        self.inner.get_snapshot()
    }
    fn set_previous_configuration_end(
        &mut self,
        end: Option<ConfigurationEnd>,
    ) -> StorageResult<()> {
        self.check()?;
        self.inner.set_previous_configuration_end(end)
    }
    fn get_previous_configuration_end(&self) -> StorageResult<Option<ConfigurationEnd>> {
        self.inner.get_previous_configuration_end()
    }
}

fn node(pid: u64) -> (OmniPaxos<E, FailingStorage>, Rc<Cell<bool>>) {
    let (n, full, _) = node_failing_next(pid);
    (n, full)
}

/// [`node`], with a count of the next writes that fail as well.
#[allow(clippy::type_complexity)]
fn node_failing_next(pid: u64) -> (OmniPaxos<E, FailingStorage>, Rc<Cell<bool>>, Rc<Cell<u32>>) {
    let full = Rc::new(Cell::new(false));
    let fail_next = Rc::new(Cell::new(0));
    let storage = FailingStorage {
        inner: MemoryStorage::default(),
        full: Rc::clone(&full),
        fail_next: Rc::clone(&fail_next),
    };
    let mut n = OmniPaxosConfig {
        pid,
        peers: [1, 2, 3].into_iter().filter(|p| *p != pid).collect(),
        ..Default::default()
    }
    .build(storage)
    .unwrap();
    n.outgoing_messages();
    (n, full, fail_next)
}

const B1: Ballot = Ballot::with(1, 0, 1);

fn prepare() -> Message<E> {
    Message::SequencePaxos(PaxosMessage {
        configuration_id: 1,
        from: 1,
        to: 2,
        msg: PaxosMsg::Prepare(Prepare {
            n: B1,
            decided_idx: 0,
            n_accepted: Ballot::default(),
            accepted_idx: 0,
        }),
    })
}

#[test]
fn a_follower_that_cannot_persist_a_promise_does_not_send_it_and_goes_silent() {
    let (mut f, full) = node(2);
    full.set(true);
    f.handle_incoming(prepare());
    assert_eq!(
        f.outgoing_messages(),
        vec![],
        "no Promise without a persisted promise"
    );
    let failure = f
        .get_storage_failure()
        .cloned()
        .expect("the failure is surfaced");
    assert!(failure.to_string().contains("No space left"), "{failure}");
    assert!(f.get_ui_states().storage_failed);
    // Even with the disk back, the node stays silent: it must be reopened.
    full.set(false);
    for _ in 0..50 {
        f.tick();
    }
    assert_eq!(f.outgoing_messages(), vec![], "not even heartbeats");
    assert!(matches!(
        f.append(E(1)),
        Err(ProposeErr::StorageFailure(E(1)))
    ));
}

#[test]
fn a_leader_that_cannot_persist_an_append_reports_it_and_replicates_nothing() {
    let (mut l, full) = node(1);
    l.try_become_leader();
    l.outgoing_messages();
    l.handle_incoming(Message::SequencePaxos(PaxosMessage {
        configuration_id: 1,
        from: 2,
        to: 1,
        msg: PaxosMsg::Promise(Promise {
            n: B1,
            n_accepted: Ballot::default(),
            decided_idx: 0,
            accepted_idx: 0,
            log_sync: None,
            snapshot_follows: None,
        }),
    }));
    assert!(l.is_leader());
    l.outgoing_messages();
    full.set(true);
    match l.append(E(7)) {
        Err(ProposeErr::NotPersisted(StorageError::Io { operation, .. })) => {
            assert_eq!(operation, "append entries")
        }
        other => panic!("expected NotPersisted, got {other:?}"),
    }
    assert_eq!(
        l.outgoing_messages(),
        vec![],
        "no AcceptDecide for an unpersisted entry"
    );
    assert_eq!(l.read(0), None);
    assert!(!l.is_leader(), "a stopped node does not lead");
}

fn from_leader(msg: PaxosMsg<E>) -> Message<E> {
    Message::SequencePaxos(PaxosMessage {
        configuration_id: 1,
        from: 1,
        to: 2,
        msg,
    })
}

fn accept_decide(counter: u64, entries: Vec<E>) -> Message<E> {
    from_leader(PaxosMsg::AcceptDecide(AcceptDecide {
        n: B1,
        seq_num: SequenceNumber {
            session: 1,
            counter,
        },
        decided_idx: 0,
        entries: entries.into(),
        origins: Default::default(),
        forward_acks: vec![],
    }))
}

/// Soak seed 3951 (with storage write failures): a follower held an
/// `AcceptDecide` that came ahead of a missing one; the missing one came,
/// and storing it failed. The held message must not be stored after it: its
/// entries would take the index the failed write's entries were sent for.
#[test]
fn after_a_failed_write_a_follower_stores_nothing_that_came_early() {
    let (mut f, _, fail_next) = node_failing_next(2);
    f.handle_incoming(prepare());
    f.handle_incoming(from_leader(PaxosMsg::AcceptSync(AcceptSync {
        n: B1,
        seq_num: SequenceNumber {
            session: 1,
            counter: 1,
        },
        decided_idx: 0,
        log_sync: LogSync {
            decided_snapshot: None,
            sync_idx: 0,
            suffix: vec![],
            suffix_origins: Default::default(),
            origin_table: None,
            stopsign: None,
        },
        forward_acks: vec![],
    })));
    f.outgoing_messages();
    // The leader's third message comes first and is held.
    f.handle_incoming(accept_decide(3, vec![E(3)]));
    assert_eq!(f.read(0), None, "held, not stored");
    // Only the next write fails: the disk would take the held message's.
    fail_next.set(1);
    f.handle_incoming(accept_decide(2, vec![E(2)]));
    assert!(f.get_storage_failure().is_some());
    assert_eq!(f.read(0), None, "E(3) must not take index 0");
    assert_eq!(
        f.outgoing_messages(),
        vec![],
        "nothing vouches for it either"
    );
}
