//! The protocol log (feature `logging`): a leader change, with
//! `logger_file_path` set, leaves the election and the new leader in the
//! servers' log files; a user's logger replaces the file.
#![cfg(feature = "logging")]

use omnipaxos::{OmniPaxos, OmniPaxosConfig, storage::NoSnapshot, util::NodeId};
use omnipaxos_storage::memory_storage::MemoryStorage;
use std::{
    collections::BTreeMap,
    path::Path,
    sync::{Arc, Mutex},
};

#[derive(Clone, Debug)]
struct E;

impl omnipaxos::storage::Entry for E {
    type Snapshot = NoSnapshot;
}

type Node = OmniPaxos<E, MemoryStorage<E>>;

fn config(pid: NodeId, log_dir: &Path) -> OmniPaxosConfig {
    OmniPaxosConfig {
        configuration_id: 1,
        pid,
        peers: [1, 2, 3].into_iter().filter(|&p| p != pid).collect(),
        logger_file_path: Some(
            log_dir
                .join(format!("server-{pid}"))
                .join("omnipaxos.log")
                .display()
                .to_string(),
        ),
        ..Default::default()
    }
}

/// Steps the servers not in `down`, delivering among them, until `done`.
fn run_until(
    nodes: &mut BTreeMap<NodeId, Node>,
    down: &[NodeId],
    done: impl Fn(&BTreeMap<NodeId, Node>) -> bool,
) {
    for _ in 0..1_000 {
        if done(nodes) {
            return;
        }
        let mut sent = Vec::new();
        for (pid, node) in nodes.iter_mut() {
            if !down.contains(pid) {
                node.tick();
                node.take_outgoing_messages(&mut sent);
            }
        }
        for msg in sent {
            let to = msg.get_receiver();
            if !down.contains(&to) {
                if let Some(node) = nodes.get_mut(&to) {
                    node.handle_incoming(msg);
                }
            }
        }
    }
    panic!("the servers did not get there in 1000 steps");
}

fn leader_of(nodes: &BTreeMap<NodeId, Node>, pids: &[NodeId]) -> Option<NodeId> {
    let leader = nodes[&pids[0]].get_current_leader()?;
    (pids
        .iter()
        .all(|p| nodes[p].get_current_leader() == Some(leader))
        && nodes[&leader].is_leader())
    .then_some(leader)
}

#[test]
fn a_leader_change_is_in_the_log_files_with_the_election_and_the_new_leader() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes: BTreeMap<NodeId, Node> = [1, 2, 3]
        .into_iter()
        .map(|pid| {
            let node = config(pid, dir.path())
                .build(MemoryStorage::default())
                .unwrap();
            (pid, node)
        })
        .collect();
    run_until(&mut nodes, &[], |n| leader_of(n, &[1, 2, 3]).is_some());
    let old = leader_of(&nodes, &[1, 2, 3]).unwrap();
    let survivors: Vec<NodeId> = [1, 2, 3].into_iter().filter(|&p| p != old).collect();
    run_until(&mut nodes, &[old], |n| {
        leader_of(n, &survivors).is_some_and(|l| l != old)
    });
    let new = leader_of(&nodes, &survivors).unwrap();
    // Dropping the servers flushes their asynchronous log drains.
    drop(nodes);

    let read = |pid: NodeId| {
        std::fs::read_to_string(dir.path().join(format!("server-{pid}/omnipaxos.log"))).unwrap()
    };
    let new_log = read(new);
    if std::env::var_os("SHOW_LOG").is_some() {
        eprintln!("{new_log}");
    }
    assert!(
        new_log.contains("preparing to lead") && new_log.contains("leading"),
        "{new_log}"
    );
    assert!(new_log.contains(&format!("pid: {new}")), "{new_log}");
    let other = *survivors.iter().find(|&&p| p != new).unwrap();
    let other_log = read(other);
    assert!(
        other_log
            .lines()
            .any(|l| l.contains("leader changed") && l.contains(&format!("leader: {new}"))),
        "{other_log}"
    );
    assert!(other_log.contains("promised"), "{other_log}");
}

/// A drain that keeps the messages it is given.
#[derive(Clone, Default)]
struct Keep(Arc<Mutex<Vec<String>>>);

impl slog::Drain for Keep {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &slog::Record<'_>, _: &slog::OwnedKVList) -> Result<(), slog::Never> {
        self.0.lock().unwrap().push(record.msg().to_string());
        Ok(())
    }
}

#[test]
fn a_users_logger_replaces_the_default_one() {
    let dir = tempfile::tempdir().unwrap();
    let keep = Keep::default();
    let logger = slog::Logger::root(slog::Drain::fuse(keep.clone()), slog::o!());
    let mut node: Node = OmniPaxosConfig {
        configuration_id: 1,
        pid: 1,
        peers: vec![],
        logger_file_path: Some(dir.path().join("unused.log").display().to_string()),
        ..Default::default()
    }
    .build_with_logger(MemoryStorage::default(), logger)
    .unwrap();
    for _ in 0..100 {
        node.tick();
    }
    assert!(node.is_leader());
    let kept = keep.0.lock().unwrap().clone();
    assert!(kept.iter().any(|m| m == "leading"), "{kept:?}");
    assert!(!dir.path().join("unused.log").exists());
}
