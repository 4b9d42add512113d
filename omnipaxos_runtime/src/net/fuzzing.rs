//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, not
//! public API): the transport's decoders fed with bytes from memory instead
//! of a socket. Everything here runs the same code a link runs.

use super::{
    NetConfig,
    frame::{decode, read_frame},
    handshake,
};
use omnipaxos::util::NodeId;
use serde::de::DeserializeOwned;
use std::{
    collections::BTreeMap,
    future::Future,
    pin::pin,
    task::{Context, Poll, Waker},
};

/// Runs a future whose I/O is in memory (a byte slice to read, a sink to
/// write), so it never waits: one poll finishes it.
fn run<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        // In-memory reads and writes are always ready.
        Poll::Pending => unreachable!("in-memory I/O never waits"),
    }
}

/// Reads frames from `bytes` as an inbound link does (at most `max_frame`
/// bytes each) and decodes each body as an `M` within `budget` bytes of
/// memory, until the bytes end or a frame fails. Returns the messages
/// decoded and whether the stream ended cleanly.
pub fn decode_frames<M: DeserializeOwned>(
    bytes: &[u8],
    max_frame: usize,
    budget: usize,
) -> (Vec<M>, bool) {
    let mut reader = bytes;
    let mut buf = Vec::new();
    let mut out = Vec::new();
    loop {
        match run(read_frame(&mut reader, max_frame, &mut buf)) {
            Ok(true) => match decode::<M>(&buf, budget) {
                Ok(d) => out.push(d.value),
                Err(_) => return (out, false),
            },
            Ok(false) => return (out, true),
            Err(_) => return (out, false),
        }
    }
}

/// The config both handshake sides use here: node 2 of cluster 7 with peers
/// 1 and 3, with `psk` as its key.
fn config(psk: Option<&[u8]>) -> NetConfig {
    let addr = "127.0.0.1:1".parse().expect("a valid address");
    let mut config = NetConfig::new(7, 2, addr, BTreeMap::from([(1, addr), (3, addr)]));
    config.psk = psk.map(<[u8]>::to_vec);
    config
}

/// Runs the acceptor's side of the handshake on a connection whose peer
/// sends `bytes`; returns the dialer's pid if it was accepted.
pub fn accept(bytes: &[u8], psk: Option<&[u8]>) -> Result<NodeId, String> {
    let config = config(psk);
    let mut s = tokio::io::join(bytes, tokio::io::sink());
    run(handshake::accept(
        &mut s,
        &config,
        |pid| pid == 1 || pid == 3,
        |_, _| true,
    ))
    .map_err(|e| e.to_string())
}

/// Runs the dialer's side of the handshake to node 3 on a connection whose
/// acceptor sends `bytes`.
pub fn dial(bytes: &[u8], psk: Option<&[u8]>) -> Result<(), String> {
    let config = config(psk);
    let mut s = tokio::io::join(bytes, tokio::io::sink());
    run(handshake::dial(&mut s, &config, 3)).map_err(|e| e.to_string())
}

/// Decodes one frame body as an `M` within `budget` bytes of memory, as an
/// inbound link does after reading the frame.
pub fn decode_body<M: DeserializeOwned>(body: &[u8], budget: usize) -> Option<M> {
    decode::<M>(body, budget).ok().map(|d| d.value)
}
