//! Tests that play a misbehaving peer: they complete a real handshake with
//! the private handshake code, then send what no correct peer sends.

use super::{NetConfig, Transport, frame::encode_frame, handshake};
use crate::{NodeConfig, OmniPaxosHandle, OmniPaxosNode};
use omnipaxos::{
    macros::Entry,
    messages::{BLEMessage, HeartbeatMsg, HeartbeatRequest, Message},
    util::NodeId,
};
use omnipaxos_storage::memory_storage::MemoryStorage;
use std::{collections::BTreeMap, net::SocketAddr, time::Duration};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

#[derive(Clone, Debug, Entry, serde::Serialize, serde::Deserialize)]
struct Value(u64);

const WAIT: Duration = Duration::from_secs(10);

/// Node 2 of {1, 2, 3}, with a transport whose peers' addresses lead
/// nowhere: the test itself plays node 1 (or 3).
async fn lone_node() -> (OmniPaxosNode<Value>, Transport) {
    let mut node_conf = NodeConfig::default();
    node_conf.set_pid(2);
    node_conf.set_peers(vec![1, 3]);
    let OmniPaxosHandle {
        omni_paxos,
        seq_paxos_handle,
        ble_handle,
    } = OmniPaxosNode::new(node_conf, MemoryStorage::<Value>::default());
    // Port 9 (discard) on loopback: nothing listens, so dials fail fast.
    let nowhere: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let config = NetConfig::new(
        7,
        2,
        "127.0.0.1:0".parse().unwrap(),
        BTreeMap::from([(1, nowhere), (3, nowhere)]),
    );
    let transport = Transport::start(config, omni_paxos.clone(), seq_paxos_handle, ble_handle)
        .await
        .unwrap();
    (omni_paxos, transport)
}

/// Connects to `addr` as `pid` and completes the handshake.
async fn connect_as(pid: NodeId, addr: SocketAddr) -> TcpStream {
    let others = [1, 2, 3]
        .into_iter()
        .filter(|p| *p != pid)
        .map(|p| (p, addr));
    let config = NetConfig::new(7, pid, addr, others.collect());
    let mut s = TcpStream::connect(addr).await.unwrap();
    handshake::dial(&mut s, &config, 2).await.unwrap();
    s
}

fn heartbeat(from: NodeId, to: NodeId) -> Vec<u8> {
    let m = Message::<Value>::BLE(BLEMessage {
        configuration_id: 1,
        from,
        to,
        msg: HeartbeatMsg::Request(HeartbeatRequest { round: 1 }),
    });
    let mut out = Vec::new();
    encode_frame(&m, 1024, &mut out).unwrap();
    out
}

/// Waits until the transport's counters satisfy `cond`, polling them.
async fn wait_for_stats(t: &Transport, what: &str, cond: impl Fn(&super::NetStats) -> bool) {
    let polled = tokio::time::timeout(WAIT, async {
        while !cond(&t.stats()) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(
        polled.is_ok(),
        "timed out waiting for {what}: {:?}",
        t.stats()
    );
}

/// Waits until the server closes `s`: a read returns end of file or an error.
async fn assert_closed_by_server(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(WAIT, s.read(&mut buf)).await;
    match read {
        Ok(Ok(0) | Err(_)) => {}
        Ok(Ok(n)) => panic!("expected the server to close the connection, read {n} bytes"),
        Err(_) => panic!("the server did not close the connection"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_may_send_only_its_own_messages_and_only_to_us() {
    let (node, transport) = lone_node().await;
    let mut s = connect_as(1, transport.local_addr()).await;
    // Claims to come from node 3; then addressed to node 3; then valid.
    s.write_all(&heartbeat(3, 2)).await.unwrap();
    s.write_all(&heartbeat(1, 3)).await.unwrap();
    s.write_all(&heartbeat(1, 2)).await.unwrap();
    wait_for_stats(&transport, "the valid message", |st| {
        st.peers[&1].received == 1
    })
    .await;
    let stats = transport.stats();
    assert_eq!(stats.peers[&1].invalid, 2);
    assert!(stats.peers[&1].inbound_connected);
    assert_eq!(stats.peers[&3].received, 0);
    transport.shutdown().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_or_undecodable_frame_drops_the_connection_and_the_node_keeps_serving() {
    let (node, transport) = lone_node().await;
    let addr = transport.local_addr();

    let mut s = connect_as(1, addr).await;
    s.write_all(&(64u32 << 20 | 1).to_be_bytes()).await.unwrap();
    assert_closed_by_server(&mut s).await;

    let mut s = connect_as(1, addr).await;
    s.write_all(&[0, 0, 0, 3, 0xff, 0xff, 0xff]).await.unwrap();
    assert_closed_by_server(&mut s).await;

    let mut s = connect_as(3, addr).await;
    s.write_all(&heartbeat(3, 2)).await.unwrap();
    wait_for_stats(&transport, "a message after the bad frames", |st| {
        st.peers[&3].received == 1
    })
    .await;
    assert!(node.status().stopped.is_none());
    transport.shutdown().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_connection_from_a_peer_replaces_its_older_one() {
    let (node, transport) = lone_node().await;
    let mut old = connect_as(1, transport.local_addr()).await;
    let mut new = connect_as(1, transport.local_addr()).await;
    assert_closed_by_server(&mut old).await;
    new.write_all(&heartbeat(1, 2)).await.unwrap();
    wait_for_stats(&transport, "a message on the new link", |st| {
        st.peers[&1].received == 1
    })
    .await;
    transport.shutdown().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_does_not_keep_the_transport_from_shutting_down() {
    let (node, transport) = lone_node().await;
    let mut s = TcpStream::connect(transport.local_addr()).await.unwrap();
    s.write_all(b"OPXNET").await.unwrap();
    tokio::time::timeout(WAIT, transport.shutdown())
        .await
        .expect("shutdown waits for no handshake");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_task_ends_when_the_node_stops() {
    let (node, transport) = lone_node().await;
    let addr = transport.local_addr();
    let _peer = connect_as(1, addr).await;
    node.shutdown().await;
    transport.tracker.close();
    tokio::time::timeout(WAIT, transport.tracker.wait())
        .await
        .expect("the transport's tasks end when the node stops");
    // The listener is closed with them.
    std::net::TcpListener::bind(addr).expect("the port is free again");
}
