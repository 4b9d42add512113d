//! Tests that play a misbehaving peer: they complete a real handshake with
//! the private handshake code, then send what no correct peer sends; and
//! tests of what decoding a hostile frame may cost.

use super::{
    NetConfig, Transport,
    frame::{DecodeError, decode, encode_frame},
    handshake,
    inbound::Inbound,
    stats::Counters,
};
use crate::{NodeConfig, OmniPaxosHandle, OmniPaxosNode};
use omnipaxos::{
    ballot::Ballot,
    macros::Entry,
    messages::{
        AcceptDecide, BLEMessage, HeartbeatMsg, HeartbeatRequest, Message, PaxosMessage, PaxosMsg,
        SequenceNumber,
    },
    util::{NodeId, StopSign},
};
use omnipaxos_storage::memory_storage::MemoryStorage;
use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{Semaphore, mpsc},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

#[derive(Clone, Debug, Entry, serde::Serialize, serde::Deserialize)]
pub(super) struct Value(pub(super) u64);

/// The shape of the kv_store example's log entry: a command id (the
/// proposing server, a random session nonce, a counter) and an operation.
#[derive(Clone, Debug, PartialEq, Eq, Entry, serde::Serialize, serde::Deserialize)]
struct KvCommand {
    pid: u64,
    nonce: u64,
    seq: u64,
    op: KvOp,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum KvOp {
    Put {
        key: String,
        value: String,
    },
    Delete {
        key: String,
    },
    Cas {
        key: String,
        expected: Option<String>,
        new: String,
    },
}

/// The default frame and decode budget, as every node runs with them.
fn defaults() -> NetConfig {
    NetConfig::new(7, 2, "127.0.0.1:0".parse().unwrap(), BTreeMap::new())
}

pub(super) const WAIT: Duration = Duration::from_secs(10);

/// Node 2 of {1, 2, 3}, with a transport whose peers' addresses lead
/// nowhere: the test itself plays node 1 (or 3).
pub(super) async fn lone_node() -> (OmniPaxosNode<Value>, Transport) {
    lone_node_with(|_| {}).await
}

/// As [`lone_node`], with `tune` applied to the transport's config.
pub(super) async fn lone_node_with(
    tune: impl FnOnce(&mut NetConfig),
) -> (OmniPaxosNode<Value>, Transport) {
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
    let mut config = NetConfig::new(
        7,
        2,
        "127.0.0.1:0".parse().unwrap(),
        BTreeMap::from([(1, nowhere), (3, nowhere)]),
    );
    tune(&mut config);
    let transport = Transport::start(config, omni_paxos.clone(), seq_paxos_handle, ble_handle)
        .await
        .unwrap();
    (omni_paxos, transport)
}

/// Connects to `addr` as `pid` and completes the handshake.
pub(super) async fn connect_as(pid: NodeId, addr: SocketAddr) -> TcpStream {
    let others = [1, 2, 3]
        .into_iter()
        .filter(|p| *p != pid)
        .map(|p| (p, addr));
    let config = NetConfig::new(7, pid, addr, others.collect());
    let mut s = TcpStream::connect(addr).await.unwrap();
    handshake::dial(&mut s, &config, 2).await.unwrap();
    s
}

pub(super) fn heartbeat(from: NodeId, to: NodeId) -> Vec<u8> {
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
pub(super) async fn wait_for_stats(
    t: &Transport,
    what: &str,
    cond: impl Fn(&super::NetStats) -> bool,
) {
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
pub(super) async fn assert_closed_by_server(s: &mut TcpStream) {
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
    let frames = [heartbeat(3, 2), heartbeat(1, 3), heartbeat(1, 2)];
    for f in &frames {
        s.write_all(f).await.unwrap();
    }
    wait_for_stats(&transport, "the valid message", |st| {
        st.peers[&1].received == 1
    })
    .await;
    let stats = transport.stats();
    assert_eq!(stats.peers[&1].invalid, 2);
    // Every frame's bytes count, the refused ones too; the handshake's do not.
    let frame_bytes: usize = frames.iter().map(Vec::len).sum();
    assert_eq!(stats.peers[&1].bytes_received, frame_bytes as u64);
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

fn paxos<T: omnipaxos::storage::Entry>(from: NodeId, to: NodeId, msg: PaxosMsg<T>) -> Message<T> {
    Message::SequencePaxos(PaxosMessage {
        configuration_id: 1,
        from,
        to,
        msg,
    })
}

fn accept_decide<T: omnipaxos::storage::Entry>(entries: Vec<T>) -> Message<T> {
    paxos(
        1,
        2,
        PaxosMsg::AcceptDecide(AcceptDecide {
            n: Ballot::default(),
            seq_num: SequenceNumber::default(),
            decided_idx: 0,
            entries: entries.into(),
            forward_acks: Vec::new(),
            origins: Default::default(),
        }),
    )
}

/// bincode's varint encoding of a length.
fn varint(n: u64) -> Vec<u8> {
    match n {
        0..251 => vec![n as u8],
        251..=0xffff => [&[251u8][..], &(n as u16).to_le_bytes()].concat(),
        0x1_0000..=0xffff_ffff => [&[252u8][..], &(n as u32).to_le_bytes()].concat(),
        _ => [&[253u8][..], &n.to_le_bytes()].concat(),
    }
}

/// A frame body of `max` bytes, built as an attacker would, without the
/// value it encodes: `template` encodes with an empty sequence followed by
/// `after` more bytes at its end; the body repeats `element` (one encoded
/// element) in that sequence until it is `max` bytes long.
fn filled_body<T>(template: &Message<T>, after: usize, element: &[u8], max: usize) -> Vec<u8>
where
    T: omnipaxos::storage::Entry + serde::Serialize,
    T::Snapshot: serde::Serialize,
{
    let mut template_body = Vec::new();
    encode_frame(template, 1024, &mut template_body).unwrap();
    let template_body = &template_body[4..];
    let (head, tail) = template_body.split_at(template_body.len() - after);
    let (head, empty) = head.split_at(head.len() - 1);
    assert_eq!(empty, [0], "the template ends with an empty sequence");
    let room = max - head.len() - tail.len() - 5;
    let n = room / element.len();
    let len = varint(n as u64);
    let body = [head, &len, &element.repeat(n), tail].concat();
    assert!(body.len() <= max && body.len() > max - element.len() - 5);
    body
}

/// One max-size frame's body: a forwarded stop-sign whose node list is one
/// one-byte node id per byte of the frame (64 M with the defaults: 512 MiB
/// as a `Vec<u64>`).
pub(super) fn stop_sign_attack(max: usize) -> Vec<u8> {
    let template = paxos::<Value>(
        1,
        2,
        PaxosMsg::ForwardStopSign(StopSign::with(2, vec![], None)),
    );
    // The node list is followed by the metadata's `None`, one byte.
    filled_body(&template, 1, &[1], max)
}

/// One max-size frame's body: a batch of entries `Value(0)`, one byte each
/// on the wire and eight in memory.
pub(super) fn minimal_entries_attack(max: usize) -> Vec<u8> {
    // The entries are followed by the empty acknowledgements, one byte.
    filled_body(&accept_decide::<Value>(vec![]), 1, &[0], max)
}

#[test]
fn a_stop_sign_with_millions_of_node_ids_in_one_frame_is_refused_at_decode() {
    let config = defaults();
    let body = stop_sign_attack(config.max_frame_bytes);
    assert_eq!(body.len(), config.max_frame_bytes);
    let ids = body.len() - 20;
    match decode::<Message<Value>>(&body, config.max_decoded_bytes_per_frame) {
        Err(DecodeError::OverBudget { needed, budget }) => {
            assert_eq!(budget, config.max_decoded_bytes_per_frame);
            // Refused for the whole node list at once, before it grew.
            assert!(needed > ids * size_of::<NodeId>(), "{needed}");
        }
        other => panic!("expected the budget to refuse it: {other:?}"),
    }
}

#[test]
fn a_frame_of_millions_of_minimal_entries_is_refused_at_decode() {
    let config = defaults();
    let body = minimal_entries_attack(config.max_frame_bytes);
    let refused = decode::<Message<Value>>(&body, config.max_decoded_bytes_per_frame);
    assert!(
        matches!(refused, Err(DecodeError::OverBudget { needed, .. }) if needed > 8 * (body.len() - 20)),
        "{refused:?}"
    );

    // The kv_store's command at its smallest: five bytes on the wire (zero
    // ids, a delete of the empty key), 96 in memory.
    let delete = KvCommand {
        pid: 0,
        nonce: 0,
        seq: 0,
        op: KvOp::Delete { key: String::new() },
    };
    let mut element = Vec::new();
    encode_frame(&delete, 64, &mut element).unwrap();
    let body = filled_body(
        &accept_decide::<KvCommand>(vec![]),
        1,
        &element[4..],
        config.max_frame_bytes,
    );
    let refused = decode::<Message<KvCommand>>(&body, config.max_decoded_bytes_per_frame);
    assert!(
        matches!(refused, Err(DecodeError::OverBudget { .. })),
        "{refused:?}"
    );
}

/// A command of the kv_store's shape with realistic sizes: the proposer's
/// random session nonce, a counter, and a put of a `key_len`-byte key to a
/// `value_len`-byte value (a delete if there is no value).
fn kv_command(i: u64, key_len: usize, value_len: Option<usize>) -> KvCommand {
    let key = format!("{i:0key_len$}");
    KvCommand {
        pid: 1 + i % 3,
        nonce: 0x9e37_79b9_7f4a_7c15 ^ (i % 3),
        seq: i,
        op: match value_len {
            Some(n) => KvOp::Put {
                key,
                value: "v".repeat(n),
            },
            None => KvOp::Delete { key },
        },
    }
}

#[test]
fn a_log_sync_of_real_entries_near_the_frame_limit_still_decodes() {
    let config = defaults();
    let max = config.max_frame_bytes;
    let entries = |make: &dyn Fn(u64) -> KvCommand| {
        // Enough entries to fill the frame to within one entry of its limit.
        // The largest entry (its counter takes five bytes) sets the count.
        let mut one = Vec::new();
        encode_frame(&make(1_000_000), max, &mut one).unwrap();
        let n = (max - 64) / (one.len() - 4);
        accept_decide((0..n as u64).map(make).collect())
    };
    for (what, make) in [
        (
            "puts of a 16-byte key and a 100-byte value",
            &(|i| kv_command(i, 16, Some(100))) as &dyn Fn(u64) -> KvCommand,
        ),
        // The densest of its commands: 3.4 bytes of memory per wire byte.
        ("deletes of a 16-byte key", &|i| kv_command(i, 16, None)),
    ] {
        let msg = entries(make);
        let mut frame = Vec::new();
        encode_frame(&msg, max, &mut frame).expect("fits a frame");
        let body = &frame[4..];
        assert!(body.len() > max - (2 << 20), "{what}: {} bytes", body.len());
        let decoded = decode::<Message<KvCommand>>(body, config.max_decoded_bytes_per_frame)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        println!(
            "{what}: {} bytes on the wire, {} charged ({:.2} per wire byte)",
            body.len(),
            decoded.charged,
            decoded.charged as f64 / body.len() as f64
        );
        assert!(
            matches!((&decoded.value, &msg), (Message::SequencePaxos(a), Message::SequencePaxos(b)) if a.msg == b.msg),
            "{what}: the message round-trips"
        );
    }

    // Plain integers that use most of their eight bytes (nine on the wire)
    // decode as well.
    let n = (max as u64 - 1024) / 9;
    let msg = accept_decide((0..n).map(|i| Value(u64::MAX - i)).collect());
    let mut frame = Vec::new();
    encode_frame(&msg, max, &mut frame).expect("fits a frame");
    assert!(decode::<Message<Value>>(&frame[4..], config.max_decoded_bytes_per_frame).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_holds_at_most_its_in_flight_budget_until_the_node_takes_its_messages() {
    let mut config = defaults();
    let nowhere: SocketAddr = "127.0.0.1:9".parse().unwrap();
    config.peers = BTreeMap::from([(1, nowhere), (3, nowhere)]);
    config.max_decoded_bytes_per_frame = 64 << 10;
    config.max_in_flight_bytes_per_peer = 256 << 10;
    let budget = config.max_in_flight_bytes_per_peer;
    let counters = Arc::new(Counters::new([(1, nowhere), (3, nowhere)], budget));
    // The test plays the node: it holds the receiving end of the deliveries
    // and takes nothing until it says so.
    let (sp_in, mut node) = mpsc::channel(1024);
    let (ble_in, _ble) = mpsc::channel(16);
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let inbound = Inbound::<Value> {
        config: Arc::new(config),
        counters: Arc::clone(&counters),
        tls: None,
        sp_in,
        ble_in,
        cancel: cancel.clone(),
        tracker: tracker.clone(),
        handshakes: Arc::new(Semaphore::new(4)),
        handshakes_by_address: Arc::default(),
    };
    tracker.spawn(inbound.listen(listener));

    // 40 messages of 4,000 entries: about 32 KiB decoded each, five times
    // the budget in all.
    let msg = accept_decide((0..4000).map(|i| Value(u64::MAX - i)).collect());
    let mut frame = Vec::new();
    encode_frame(&msg, 1 << 20, &mut frame).unwrap();
    let charge = decode::<Message<Value>>(&frame[4..], 1 << 20)
        .unwrap()
        .charged;
    let fit = budget / charge;
    assert!((5..40).contains(&fit), "{fit} messages fit the budget");
    let mut s = connect_as(1, addr).await;
    let writer = tokio::spawn(async move {
        for _ in 0..40 {
            s.write_all(&frame).await.unwrap();
        }
        s
    });

    let peer_one = counters.peers.counters(1).unwrap();
    let in_flight = || peer_one.in_flight.used();
    let waited = tokio::time::timeout(WAIT, async {
        while in_flight() < fit * charge {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "only {} bytes in flight", in_flight());
    // The link now waits for the node; give it time to (wrongly) go on.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(node.len(), fit, "messages handed over");
    // The message waiting to be handed over may hold part of the rest.
    assert!(in_flight() <= budget);

    // The node takes the messages (dropping a delivery frees its charge),
    // and the rest follow within the budget.
    for taken in 0..40 {
        let delivery = tokio::time::timeout(WAIT, node.recv())
            .await
            .expect("the next message arrives")
            .expect("the link runs");
        assert_eq!(delivery.charge.num_permits(), charge);
        assert!(in_flight() <= budget, "after {taken} taken");
        drop(delivery);
    }
    let _s = writer.await.unwrap();
    let waited = tokio::time::timeout(WAIT, async {
        while peer_one.received.load(std::sync::atomic::Ordering::Relaxed) < 40 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(waited.is_ok());
    assert_eq!(in_flight(), 0);
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_past_its_budget_drops_the_link_is_counted_and_the_peer_reconnects() {
    let (node, transport) = lone_node().await;
    let addr = transport.local_addr();
    let max = defaults().max_frame_bytes;
    for body in [stop_sign_attack(max), minimal_entries_attack(max)] {
        let mut s = connect_as(1, addr).await;
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        // The server may close before it has read the whole frame.
        let _ = s.write_all(&frame).await;
        assert_closed_by_server(&mut s).await;
    }
    wait_for_stats(&transport, "both frames counted", |st| {
        st.peers[&1].invalid == 2
    })
    .await;
    // The same peer, reconnected, is heard again.
    let mut s = connect_as(1, addr).await;
    s.write_all(&heartbeat(1, 2)).await.unwrap();
    wait_for_stats(&transport, "a message after reconnecting", |st| {
        st.peers[&1].received == 1
    })
    .await;
    let stats = transport.stats();
    assert_eq!(stats.peers[&1].in_flight_bytes, 0, "{stats:?}");
    assert!(node.status().stopped.is_none());
    transport.shutdown().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_past_its_frame_rate_waits_loses_nothing_and_others_are_served() {
    const RATE: u32 = 100;
    const FRAMES: u64 = 150;
    let (node, transport) = lone_node_with(|c| c.max_frames_per_second_per_peer = RATE).await;
    let mut flood = connect_as(1, transport.local_addr()).await;
    let all: Vec<u8> = (0..FRAMES).flat_map(|_| heartbeat(1, 2)).collect();
    let t0 = std::time::Instant::now();
    flood.write_all(&all).await.unwrap();
    // Another peer is served meanwhile.
    let mut other = connect_as(3, transport.local_addr()).await;
    other.write_all(&heartbeat(3, 2)).await.unwrap();
    wait_for_stats(&transport, "peer 3's message", |st| {
        st.peers[&3].received == 1
    })
    .await;
    wait_for_stats(&transport, "every frame of peer 1", |st| {
        st.peers[&1].received == FRAMES
    })
    .await;
    // A burst of RATE frames, then one per 1/RATE s: the rest cannot have
    // been read sooner (the bound is on reads, so a slow machine only adds).
    let least = Duration::from_secs_f64((FRAMES - u64::from(RATE)) as f64 / f64::from(RATE));
    assert!(
        t0.elapsed() >= least.mul_f64(0.98),
        "{:?} < {least:?}",
        t0.elapsed()
    );
    let stats = transport.stats();
    assert_eq!(stats.peers[&1].invalid, 0);
    assert_eq!(stats.peers[&3].throttled, 0);
    transport.shutdown().await;
    node.shutdown().await;
}

#[test]
fn a_frame_rate_of_zero_is_refused() {
    let mut c = defaults();
    c.max_frames_per_second_per_peer = 0;
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("max_frames_per_second_per_peer"), "{err}");
}

/// A TCP connection to `addr` from the loopback address `from`.
async fn connect_from(from: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(addr).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_every_handshake_slot() {
    use super::inbound::MAX_PENDING_HANDSHAKES_PER_ADDRESS as PER_ADDRESS;
    let (node, transport) = lone_node().await;
    let addr = transport.local_addr();
    // A stranger at 127.0.0.2 opens connections and never handshakes.
    let mut idle = Vec::new();
    for _ in 0..PER_ADDRESS {
        idle.push(connect_from([127, 0, 0, 2], addr).await);
    }
    let mut one_more = connect_from([127, 0, 0, 2], addr).await;
    assert_closed_by_server(&mut one_more).await;
    wait_for_stats(&transport, "the refusal", |st| {
        st.refused.get(&super::Refusal::TooManyFromAddress) == Some(&1)
    })
    .await;
    // A peer at another address is let in and served meanwhile.
    let mut peer = connect_as(1, addr).await;
    peer.write_all(&heartbeat(1, 2)).await.unwrap();
    wait_for_stats(&transport, "the peer's message", |st| {
        st.peers[&1].received == 1
    })
    .await;
    // Once the stranger's connections close, its address may dial again.
    drop(idle);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut s = connect_from([127, 0, 0, 2], addr).await;
        let config = NetConfig::new(7, 3, addr, BTreeMap::from([(1, addr), (2, addr)]));
        if handshake::dial(&mut s, &config, 2).await.is_ok() {
            break;
        }
        // The server has not yet seen the idle connections close.
        assert!(
            tokio::time::Instant::now() < deadline,
            "127.0.0.2 stays refused"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    transport.shutdown().await;
    node.shutdown().await;
}
