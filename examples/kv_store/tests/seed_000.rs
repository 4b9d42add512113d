//! Seed 000, the "Creating a Node" tutorial, compiled and run against this
//! workspace. Its snippets are kept as written, with their typos mended: the
//! missing semicolon after the config, one name for the config variable, and
//! `build` / `with_toml` returning a `Result`. The fail-recovery part waits
//! for `PersistentStorage`.

use omnipaxos::macros::Entry;

/// The tutorial's log entry (doc comments added for the workspace's `missing_docs` lint).
#[derive(Clone, Debug, Entry)] // Clone and Debug are required traits.
pub struct KeyValue {
    /// The key written.
    pub key: String,
    /// The value written.
    pub value: u64,
}

use omnipaxos::omni_paxos::{OmniPaxos, OmniPaxosConfig};
use omnipaxos_storage::memory_storage::MemoryStorage;

// Not in the tutorial: what the test needs to drive the nodes it creates.
use omnipaxos::{
    messages::Message,
    util::{LogEntry, NodeId},
};

type Node = OmniPaxos<KeyValue, MemoryStorage<KeyValue>>;

/// The tutorial's code for node 2, as a function so that the test can make its
/// peers the same way ("other replica instances are created similarly").
fn create_node(my_pid: NodeId, cluster: &[NodeId]) -> Node {
    // configuration with id 1 and the following cluster
    let configuration_id = 1;

    // create the replica `my_pid` in this cluster
    let my_peers: Vec<NodeId> = cluster.iter().copied().filter(|&p| p != my_pid).collect();

    let omni_paxos_config = OmniPaxosConfig {
        configuration_id,
        pid: my_pid,
        peers: my_peers,
        ..Default::default()
    };

    let storage = MemoryStorage::default();
    let omni_paxos: OmniPaxos<KeyValue, MemoryStorage<KeyValue>> = omni_paxos_config
        .build(storage)
        .expect("the tutorial's config is valid");
    assert_eq!(omni_paxos.get_pid(), my_pid);
    omni_paxos
}

/// Moves every outgoing message to its receiver until no node has anything to send.
fn deliver(nodes: &mut [Node], buf: &mut Vec<Message<KeyValue>>) {
    loop {
        for node in nodes.iter_mut() {
            node.take_outgoing_messages(buf);
        }
        if buf.is_empty() {
            return;
        }
        for msg in buf.drain(..) {
            if let Some(to) = nodes.iter_mut().find(|n| n.get_pid() == msg.get_receiver()) {
                to.handle_incoming(msg);
            }
        }
    }
}

#[test]
fn seed_000_node_two_joins_a_cluster_that_decides_a_key_value() {
    let cluster = vec![1, 2, 3];
    let my_pid = 2;
    let mut nodes: Vec<Node> = cluster
        .iter()
        .map(|&pid| create_node(pid, &cluster))
        .collect();
    assert_eq!(nodes[1].get_pid(), my_pid);

    let mut buf = Vec::new();
    let mut ticks = 0;
    while nodes.iter().any(|n| n.get_current_leader().is_none()) {
        assert!(ticks < 1_000, "no leader after {ticks} ticks");
        for node in &mut nodes {
            node.tick();
        }
        ticks += 1;
        deliver(&mut nodes, &mut buf);
    }

    // Append on node 2, whether or not it leads: a follower forwards.
    let kv = KeyValue {
        key: "a".to_owned(),
        value: 1,
    };
    nodes[1]
        .append(kv)
        .expect("a node with a leader takes the entry");
    let mut ticks = 0;
    while nodes.iter().any(|n| n.get_decided_idx() < 1) {
        assert!(ticks < 1_000, "entry not decided after {ticks} ticks");
        deliver(&mut nodes, &mut buf);
        for node in &mut nodes {
            node.tick();
        }
        ticks += 1;
    }
    for node in &nodes {
        match node.read(0) {
            Some(LogEntry::Decided(KeyValue { key, value })) => {
                assert_eq!((key.as_str(), value), ("a", 1), "node {}", node.get_pid());
            }
            other => panic!("node {} holds {other:?} at index 0", node.get_pid()),
        }
    }
}

#[test]
fn seed_000_config_loads_from_toml() {
    // The tutorial writes "config/node1.toml", relative to where the program
    // runs; the test anchors it to this crate so it runs from any directory.
    let config_file_path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/config/node1.toml");
    let omni_paxos_config =
        OmniPaxosConfig::with_toml(config_file_path).expect("the tutorial's TOML is valid");
    assert_eq!(omni_paxos_config.configuration_id, 1);
    assert_eq!(omni_paxos_config.pid, 2);
    assert_eq!(omni_paxos_config.peers, vec![1, 3]);
    assert_eq!(
        omni_paxos_config.logger_file_path.as_deref(),
        Some("/omnipaxos/logs")
    );
    // With the `logging` feature on, `build` opens the log file; keep it inside
    // the target directory rather than writing to the tutorial's `/omnipaxos`.
    let omni_paxos_config = OmniPaxosConfig {
        logger_file_path: Some(
            concat!(env!("CARGO_TARGET_TMPDIR"), "/seed_000/node2.log").to_owned(),
        ),
        ..omni_paxos_config
    };
    let omni_paxos: OmniPaxos<KeyValue, MemoryStorage<KeyValue>> = omni_paxos_config
        .build(MemoryStorage::default())
        .expect("a config loaded from TOML builds");
    assert_eq!(omni_paxos.get_pid(), 2);
}
