//! A peer played by hand over raw TCP, for tests that send what no correct
//! peer sends: the handshake and the frames are written byte by byte as the
//! `net` module docs describe them, so these tests also pin the wire format.

// Each test binary uses the part of these helpers it needs.
#![allow(dead_code)]

pub(crate) mod cluster;

use bincode::Options;
use omnipaxos::{
    ballot::Ballot,
    macros::Entry,
    messages::{
        AcceptDecide, BLEMessage, HeartbeatMsg, HeartbeatRequest, Message, PaxosMessage, PaxosMsg,
        SequenceNumber,
    },
    util::{NodeId, StopSign},
};
use std::net::SocketAddr;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// The entry type of the test clusters.
#[derive(Clone, Debug, Entry, serde::Serialize, serde::Deserialize)]
pub(crate) struct Value(pub(crate) u64);

/// The default `NetConfig::max_frame_bytes`.
pub(crate) const MAX_FRAME: usize = 8 << 20;

const PREFACE: &[u8; 8] = b"OPXNET\x00\x01";

fn codec() -> impl Options {
    bincode::DefaultOptions::new()
}

/// `body` as a frame: its length as a big-endian `u32`, then the body.
pub(crate) fn frame(body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len()).expect("a test frame fits a u32 length");
    [&len.to_be_bytes()[..], body].concat()
}

async fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.expect("a frame's length");
    let mut body = vec![0; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).await.expect("a frame's body");
    body
}

/// Dials `addr` as node `from` of cluster `cluster_id` (which uses no
/// pre-shared key), runs the handshake with node `to`, and returns the
/// connection, ready for messages.
pub(crate) async fn dial_as(
    addr: SocketAddr,
    cluster_id: u64,
    from: NodeId,
    to: NodeId,
) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("the node listens");
    // Hello { cluster_id, from, to, nonce }: a struct encodes as its fields
    // in order, so as this tuple.
    let hello = codec()
        .serialize(&(cluster_id, from, to, [0u8; 32]))
        .unwrap();
    s.write_all(&[&PREFACE[..], &frame(&hello)].concat())
        .await
        .unwrap();
    let mut preface = [0u8; 8];
    s.read_exact(&mut preface)
        .await
        .expect("the acceptor's preface");
    assert_eq!(&preface, PREFACE);
    let challenge = read_frame(&mut s).await;
    assert_eq!(challenge[0], 0, "Answer::Challenge, not a refusal");
    // Proof { proof: None }.
    s.write_all(&frame(&[0])).await.unwrap();
    assert_eq!(read_frame(&mut s).await, [1], "Answer::Accepted");
    s
}

/// The body of one message.
pub(crate) fn encode(m: &Message<Value>) -> Vec<u8> {
    codec().serialize(m).unwrap()
}

pub(crate) fn heartbeat(from: NodeId, to: NodeId) -> Message<Value> {
    Message::BLE(BLEMessage {
        configuration_id: 1,
        from,
        to,
        msg: HeartbeatMsg::Request(HeartbeatRequest { round: 1 }),
    })
}

fn paxos(from: NodeId, to: NodeId, msg: PaxosMsg<Value>) -> Message<Value> {
    Message::SequencePaxos(PaxosMessage {
        configuration_id: 1,
        from,
        to,
        msg,
    })
}

/// A batch of entries in a stale ballot: a follower ignores it, but the
/// transport decodes and delivers it like any other.
pub(crate) fn accept_decide(from: NodeId, to: NodeId, entries: Vec<Value>) -> Message<Value> {
    paxos(
        from,
        to,
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

/// A body of `max` bytes built as an attacker would, without the value it
/// encodes: `template` ends with an empty sequence and one more byte; the
/// body puts one-byte `element`s into that sequence until it is full.
fn filled(template: &Message<Value>, element: u8, max: usize) -> Vec<u8> {
    let t = encode(template);
    let (head, tail) = t.split_at(t.len() - 2);
    assert_eq!(tail[0], 0, "the template ends with an empty sequence");
    let n = max - head.len() - 5 - 1;
    [head, &varint(n as u64), &vec![element; n], &tail[1..]].concat()
}

/// A forwarded stop-sign, `max` bytes long, listing a one-byte node id per
/// byte: 8 M ids in a default frame, 64 MiB as a `Vec<u64>`.
pub(crate) fn stop_sign_attack(from: NodeId, to: NodeId, max: usize) -> Vec<u8> {
    // The node list is followed by the metadata's `None`.
    let template = paxos(
        from,
        to,
        PaxosMsg::ForwardStopSign(StopSign::with(2, vec![], None)),
    );
    filled(&template, 1, max)
}

/// A batch, `max` bytes long, of entries `Value(0)`: one byte each on the
/// wire, eight in memory.
pub(crate) fn minimal_entries_attack(from: NodeId, to: NodeId, max: usize) -> Vec<u8> {
    // The entries are followed by the empty acknowledgements.
    filled(&accept_decide(from, to, vec![]), 0, max)
}

/// A legitimate batch of entries that fills a frame to within 16 bytes:
/// large values, nine bytes each on the wire and eight in memory.
pub(crate) fn large_batch(from: NodeId, to: NodeId, max: usize) -> Vec<u8> {
    let n = (max - 32) / 9;
    let body = encode(&accept_decide(
        from,
        to,
        (0..n as u64).map(|i| Value(u64::MAX - i)).collect(),
    ));
    assert!(body.len() <= max && body.len() > max - 32, "{}", body.len());
    body
}

/// Waits until the server closes `s`: a read ends the stream or fails.
pub(crate) async fn assert_closed_by_server(s: &mut TcpStream, within: std::time::Duration) {
    let waited = tokio::time::timeout(within, async {
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
