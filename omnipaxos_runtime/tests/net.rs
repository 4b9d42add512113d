//! The TCP transport on real loopback sockets: clusters elect, decide,
//! survive a restart, and refuse what they must refuse.
//!
//! Every wait is for a condition (a node status or a transport counter),
//! bounded by a timeout; none sleeps to let something happen.

mod common;

use common::{
    Value,
    cluster::{
        CLUSTER_ID, Member, WAIT, bind_all, loopback, memory_cluster, net_config, start, stop_all,
        wait_common_leader, wait_decided, wait_stats,
    },
};
use omnipaxos::util::NodeId;
use omnipaxos_runtime::{
    NodeConfig, OmniPaxosNode,
    net::{NetConfig, NetError, Transport},
};
use omnipaxos_storage::{
    memory_storage::MemoryStorage,
    persistent_storage::{PersistentStorage, PersistentStorageConfig},
};
use std::{collections::BTreeMap, net::SocketAddr, path::Path, time::Duration};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn persistent(dir: &Path) -> PersistentStorage<Value> {
    PersistentStorage::open(PersistentStorageConfig::with_path(dir)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_over_tcp_elect_a_leader_and_decide_appends_on_every_node() {
    let members = memory_cluster(&[1, 2, 3], None).await;
    let leader = wait_common_leader(&members).await;
    assert!(members.contains_key(&leader));

    let mut indices = Vec::new();
    for (pid, m) in &members {
        let idx = m.node.append(Value(*pid)).await.unwrap();
        indices.push(idx);
    }
    indices.sort_unstable();
    indices.dedup();
    assert_eq!(
        indices.len(),
        3,
        "each append has its own index: {indices:?}"
    );
    let end = indices.last().unwrap() + 1;
    for m in members.values() {
        wait_decided(&m.node, end).await;
    }
    for (pid, m) in &members {
        let stats = m.transport.stats();
        assert_eq!(stats.peers.len(), 2);
        for (peer, p) in &stats.peers {
            assert!(p.connected, "{pid} -> {peer} is up: {stats:?}");
            assert!(
                p.sent > 0 && p.received > 0,
                "{pid} <-> {peer} carried messages: {stats:?}"
            );
            assert!(
                p.bytes_sent > 0 && p.bytes_received > 0,
                "{pid} <-> {peer} carried bytes: {stats:?}"
            );
            assert_eq!((p.invalid, p.reconnects), (0, 0), "{stats:?}");
        }
        assert_eq!(stats.unknown_receiver, 0);
    }
    stop_all(members).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_rejoins_on_the_same_port_and_its_peers_report_the_reconnection() {
    let dirs: BTreeMap<NodeId, tempfile::TempDir> = [1, 2, 3]
        .into_iter()
        .map(|p| (p, tempfile::tempdir().unwrap()))
        .collect();
    let configs = [1, 2, 3]
        .into_iter()
        .map(|p| net_config(p, loopback(), None))
        .collect();
    let bound = bind_all(configs).await;
    let peer_addrs: BTreeMap<NodeId, SocketAddr> =
        bound.iter().map(|(p, b)| (*p, b.local_addr())).collect();
    let mut members: BTreeMap<NodeId, Member> = bound
        .into_iter()
        .map(|(pid, b)| (pid, start(b, persistent(dirs[&pid].path()))))
        .collect();

    let leader = wait_common_leader(&members).await;
    let first = members[&leader].node.append(Value(1)).await.unwrap();

    // Kill the leader; the others notice the lost link and elect anew.
    members.remove(&leader).unwrap().stop().await;
    for m in members.values() {
        wait_stats(
            &m.transport,
            "the link to the stopped node to go down",
            |s| !s.peers[&leader].connected,
        )
        .await;
    }
    let survivor = members.keys().next().copied().unwrap();
    let second = members[&survivor].node.append(Value(2)).await.unwrap();
    assert!(second > first);

    // Restart it on the same port and the same storage.
    let mut config = net_config(leader, peer_addrs[&leader], None);
    config.peers = peer_addrs
        .iter()
        .filter(|(p, _)| **p != leader)
        .map(|(p, a)| (*p, *a))
        .collect();
    let restarted = start(
        Transport::bind(config).await.unwrap(),
        persistent(dirs[&leader].path()),
    );
    assert_eq!(restarted.transport.local_addr(), peer_addrs[&leader]);
    members.insert(leader, restarted);

    for (pid, m) in &members {
        if *pid != leader {
            wait_stats(
                &m.transport,
                "the link to the restarted node to come back",
                |s| s.peers[&leader].connected && s.peers[&leader].reconnects >= 1,
            )
            .await;
        }
    }
    let third = members[&leader].node.append(Value(3)).await.unwrap();
    assert!(third > second);
    for m in members.values() {
        wait_decided(&m.node, third + 1).await;
    }
    let entries = members[&leader].node.read_decided_suffix(0).await.unwrap();
    assert_eq!(
        entries.len() as u64,
        third + 1,
        "the restarted node has the whole log"
    );
    stop_all(members).await;
}

/// Starts nodes 1 and 2 with `configs`, waits until each has refused the
/// other's dials twice, and checks that no message got through.
async fn assert_refuse_each_other(configs: Vec<NetConfig>) {
    let members: BTreeMap<_, _> = bind_all(configs)
        .await
        .into_iter()
        .map(|(pid, b)| (pid, start(b, MemoryStorage::default())))
        .collect();
    for m in members.values() {
        wait_stats(&m.transport, "refused connections", |s| {
            s.rejected_connections >= 2
        })
        .await;
    }
    for (pid, m) in &members {
        let stats = m.transport.stats();
        let peer = &stats.peers[&(3 - pid)];
        assert!(!peer.connected && !peer.inbound_connected, "{stats:?}");
        assert_eq!(peer.received, 0, "{stats:?}");
    }
    stop_all(members).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_another_cluster_is_refused() {
    let mut other = net_config(2, loopback(), None);
    other.cluster_id = CLUSTER_ID + 1;
    assert_refuse_each_other(vec![net_config(1, loopback(), None), other]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_not_in_the_configuration_is_refused() {
    // Node 9 knows node 1, but node 1's configuration is {1, 2}.
    let one = Transport::bind(net_config(1, loopback(), None))
        .await
        .unwrap();
    let mut stranger = Transport::bind(net_config(9, loopback(), None))
        .await
        .unwrap();
    stranger.peers_mut().insert(1, one.local_addr());
    let mut one = one;
    one.peers_mut().insert(2, "127.0.0.1:9".parse().unwrap());
    let one = start(one, MemoryStorage::default());
    let stranger = start(stranger, MemoryStorage::default());

    wait_stats(&one.transport, "refused connections", |s| {
        s.rejected_connections >= 2
    })
    .await;
    let stats = stranger.transport.stats();
    assert!(!stats.peers[&1].connected, "{stats:?}");
    assert_eq!(one.transport.stats().peers[&2].received, 0);
    one.stop().await;
    stranger.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_with_different_keys_or_only_one_key_are_refused() {
    for (a, b) in [
        (Some(&b"alpha"[..]), Some(&b"beta"[..])),
        (Some(b"alpha"), None),
    ] {
        assert_refuse_each_other(vec![
            net_config(1, loopback(), a),
            net_config(2, loopback(), b),
        ])
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_sharing_a_key_elect_and_decide() {
    let members = memory_cluster(&[1, 2, 3], Some(b"a secret every member knows")).await;
    wait_common_leader(&members).await;
    let idx = members[&2].node.append(Value(7)).await.unwrap();
    for m in members.values() {
        wait_decided(&m.node, idx + 1).await;
        assert_eq!(m.transport.stats().rejected_connections, 0);
    }
    stop_all(members).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_an_oversized_frame_drop_the_connection_while_the_node_keeps_serving() {
    let members = memory_cluster(&[1, 2, 3], None).await;
    wait_common_leader(&members).await;
    let target = &members[&1];
    let addr = target.transport.local_addr();

    // Not an omnipaxos-net peer at all.
    let mut garbage = tokio::net::TcpStream::connect(addr).await.unwrap();
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_closed_by_server(&mut garbage).await;

    // The right preface, then a frame of 4 GiB.
    let mut oversized = tokio::net::TcpStream::connect(addr).await.unwrap();
    oversized.write_all(b"OPXNET\x00\x01").await.unwrap();
    oversized.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    assert_closed_by_server(&mut oversized).await;

    wait_stats(&target.transport, "both refusals", |s| {
        s.rejected_connections >= 2
    })
    .await;
    let idx = target.node.append(Value(1)).await.unwrap();
    for m in members.values() {
        wait_decided(&m.node, idx + 1).await;
    }
    stop_all(members).await;
}

/// Waits until the server closes `s`: a read ends the stream or fails.
/// Reading past the 8-byte preface a server may have sent is fine.
async fn assert_closed_by_server(s: &mut tokio::net::TcpStream) {
    let waited = tokio::time::timeout(WAIT, async {
        let mut buf = [0u8; 64];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(waited.is_ok(), "the server did not close the connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_for_an_unreachable_peer_are_dropped_without_blocking_the_node() {
    let mut config = net_config(1, loopback(), None);
    // Port 9 (discard) on loopback: nothing listens there.
    config.peers.insert(2, "127.0.0.1:9".parse().unwrap());
    config.peer_queue_capacity = 2;
    let one = start(
        Transport::bind(config).await.unwrap(),
        MemoryStorage::default(),
    );
    wait_stats(&one.transport, "dropped messages", |s| {
        s.peers[&2].dropped > 0
    })
    .await;
    assert!(!one.transport.stats().peers[&2].connected);
    // The node still answers.
    assert!(one.node.read(0).await.is_none());
    assert!(one.node.status().stopped.is_none());
    one.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_is_an_error_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = Transport::bind(net_config(1, addr, None))
        .await
        .unwrap_err();
    assert!(
        matches!(err, NetError::Bind { addr: a, .. } if a == addr),
        "{err:?}"
    );
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_settings_are_errors_naming_the_field() {
    let mut own_pid = net_config(1, loopback(), None);
    own_pid.peers.insert(1, "127.0.0.1:9".parse().unwrap());
    let mut no_queue = net_config(1, loopback(), None);
    no_queue.peer_queue_capacity = 0;
    let mut backoff = net_config(1, loopback(), None);
    backoff.reconnect_backoff_min = Duration::from_secs(2);
    for (config, field) in [
        (own_pid, "peers"),
        (no_queue, "peer_queue_capacity"),
        (backoff, "reconnect_backoff_max"),
        (net_config(0, loopback(), None), "pid"),
    ] {
        let err = Transport::bind(config).await.unwrap_err();
        assert!(
            matches!(err, NetError::InvalidConfig { field: f, .. } if f == field),
            "{err:?}"
        );
        assert!(err.to_string().contains(field), "{err}");
    }

    // A transport for pid 1 cannot serve node 2.
    let bound = Transport::bind(net_config(1, loopback(), None))
        .await
        .unwrap();
    let mut node_conf = NodeConfig::default();
    node_conf.set_pid(2);
    node_conf.set_peers(vec![1]);
    let handle = OmniPaxosNode::<Value>::try_new(node_conf, MemoryStorage::default()).unwrap();
    let err = bound
        .start(
            handle.omni_paxos.clone(),
            handle.seq_paxos_handle,
            handle.ble_handle,
        )
        .unwrap_err();
    assert!(
        matches!(err, NetError::InvalidConfig { field: "pid", .. }),
        "{err:?}"
    );
    handle.omni_paxos.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transport_stops_and_frees_its_port_when_the_node_stops() {
    let members = memory_cluster(&[1, 2], None).await;
    let addr = members[&1].transport.local_addr();
    members[&1].node.shutdown().await;
    // No call to `Transport::shutdown`: the listener closes by itself.
    let freed = tokio::time::timeout(WAIT, async {
        loop {
            match std::net::TcpListener::bind(addr) {
                Ok(_) => return,
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
    .await;
    assert!(freed.is_ok(), "the port of a stopped node stays bound");
    wait_stats(&members[&2].transport, "the link to go down", |s| {
        !s.peers[&1].connected
    })
    .await;
    stop_all(members).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_that_would_decode_past_their_budget_are_refused_and_the_node_keeps_working_with_every_peer()
 {
    // Nodes 1, 2 and 3 run; the test plays node 4, so that no real node
    // redials and replaces its connections while it sends.
    let configs = [1, 2, 3]
        .into_iter()
        .map(|p| net_config(p, loopback(), None))
        .collect();
    let mut bound = bind_all(configs).await;
    for b in bound.values_mut() {
        b.peers_mut().insert(4, "127.0.0.1:9".parse().unwrap());
    }
    let members: BTreeMap<NodeId, Member> = bound
        .into_iter()
        .map(|(pid, b)| (pid, start(b, MemoryStorage::default())))
        .collect();
    wait_common_leader(&members).await;
    let target = &members[&1];
    let addr = target.transport.local_addr();
    let max = common::MAX_FRAME;

    for (i, body) in [
        common::stop_sign_attack(4, 1, max),
        common::minimal_entries_attack(4, 1, max),
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(body.len(), max, "a max-size frame");
        let mut s = common::dial_as(addr, CLUSTER_ID, 4, 1).await;
        // The node may close before it has read the whole frame.
        let _ = s.write_all(&common::frame(&body)).await;
        assert_closed_by_server(&mut s).await;
        wait_stats(&target.transport, "the refused frame counted", |st| {
            st.peers[&4].invalid == i as u64 + 1
        })
        .await;
    }

    // The same peer, reconnected, is heard again, and a legitimate batch
    // that fills a frame is decoded and handed to the node (which ignores
    // it: its ballot is stale).
    let mut s = common::dial_as(addr, CLUSTER_ID, 4, 1).await;
    let batch = common::large_batch(4, 1, max);
    let heartbeat = common::encode(&common::heartbeat(4, 1));
    s.write_all(&[common::frame(&batch), common::frame(&heartbeat)].concat())
        .await
        .unwrap();
    wait_stats(&target.transport, "both messages", |st| {
        st.peers[&4].received == 2
    })
    .await;
    let stats = target.transport.stats();
    assert_eq!(stats.peers[&4].invalid, 2, "{stats:?}");
    assert!(stats.peers[&4].inbound_connected, "{stats:?}");

    // The node still decides with its other peers.
    let idx = target.node.append(Value(1)).await.unwrap();
    for m in members.values() {
        wait_decided(&m.node, idx + 1).await;
    }
    wait_stats(&target.transport, "the batch to be handled", |st| {
        st.peers[&4].in_flight_bytes == 0
    })
    .await;
    drop(s);
    stop_all(members).await;
}
