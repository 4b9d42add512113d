//! The handshake that opens every connection, and its optional pre-shared
//! key authentication. The module docs of [`net`](super) describe it on the
//! wire.

use super::{
    NetConfig, Refusal,
    frame::{DecodeError, EncodeError, FrameError, decode, encode_frame, read_frame},
};
use hmac::{Hmac, Mac};
use omnipaxos::util::NodeId;
use rand::{RngCore, rngs::OsRng};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sha2::Sha256;
use std::{io, time::Duration};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Identifies the protocol: the first six bytes either end sends.
const MAGIC: [u8; 6] = *b"OPXNET";
/// The wire version, sent after [`MAGIC`] as a big-endian `u16`. Bump it on
/// any change of the handshake, the frame or the message encoding.
pub(super) const VERSION: u16 = 1;
/// The first eight bytes either end sends.
const PREFACE: [u8; 8] = {
    let v = VERSION.to_be_bytes();
    [
        MAGIC[0], MAGIC[1], MAGIC[2], MAGIC[3], MAGIC[4], MAGIC[5], v[0], v[1],
    ]
};
/// The largest handshake frame; every handshake message is far smaller, so a
/// stranger cannot make us read much before it proves anything.
const MAX_HANDSHAKE_FRAME: usize = 256;
/// How long dialing plus the handshake may take before the connection is
/// given up; bounds what a silent or stalling connection costs.
pub(super) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Labels that make the two proofs of one handshake different messages, so
/// neither end can reflect the other's proof back.
const DIALER_LABEL: &[u8] = b"omnipaxos-net v1 dialer proof";
const ACCEPTOR_LABEL: &[u8] = b"omnipaxos-net v1 acceptor proof";

type Nonce = [u8; 32];
type Tag = [u8; 32];
type HmacSha256 = Hmac<Sha256>;

/// Dialer -> acceptor, first frame: who I am and whom I think I dialed.
#[derive(Debug, Serialize, Deserialize)]
struct Hello {
    cluster_id: u64,
    from: NodeId,
    to: NodeId,
    nonce: Nonce,
}

/// Acceptor -> dialer.
#[derive(Debug, Serialize, Deserialize)]
enum Answer {
    /// The hello is acceptable: who I am, my nonce, and (with a key) my proof.
    Challenge {
        cluster_id: u64,
        from: NodeId,
        nonce: Nonce,
        proof: Option<Tag>,
    },
    /// The handshake is complete; messages may flow.
    Accepted,
    /// The connection is refused, and why; the acceptor closes it.
    Rejected(Rejection),
}

/// Dialer -> acceptor, second frame: (with a key) the dialer's proof.
#[derive(Debug, Serialize, Deserialize)]
struct Proof {
    proof: Option<Tag>,
}

/// Why an acceptor refused a connection, as it tells the dialer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub(super) enum Rejection {
    #[error("wrong cluster id")]
    WrongCluster,
    #[error("the dialing node id is not in the acceptor's peer list")]
    UnknownPeer,
    #[error("another node listens at this address")]
    WrongNode,
    #[error("the acceptor requires a pre-shared key")]
    PskRequired,
    #[error("the acceptor has no pre-shared key")]
    PskUnexpected,
    #[error("wrong pre-shared key")]
    BadProof,
    #[error("the dialer's TLS certificate does not name the node id it claims")]
    CertificateMismatch,
}

/// Why a handshake failed; logged, never returned to a caller.
#[derive(Debug, thiserror::Error)]
pub(super) enum HandshakeError {
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("{0}")]
    Encode(#[from] EncodeError),
    #[error("the connection closed during the handshake")]
    Closed,
    #[error("not an omnipaxos-net peer (bad magic bytes)")]
    NotOmniPaxos,
    #[error("the peer speaks wire version {0}, this node speaks version {VERSION}")]
    Version(u16),
    #[error("undecodable handshake message: {0}")]
    Decode(#[from] DecodeError),
    #[error("unexpected handshake message")]
    Unexpected,
    #[error("cannot draw a random nonce: {0}")]
    Random(rand::Error),
    #[error("the peer refused us: {0}")]
    RejectedByPeer(Rejection),
    #[error("wrong cluster id: the peer is in cluster {theirs}, this node in cluster {ours}")]
    WrongCluster { ours: u64, theirs: u64 },
    #[error("node {0} is not in the peer list")]
    UnknownPeer(NodeId),
    #[error("the peer dialed node {to}, this is node {ours}")]
    NotForUs { to: NodeId, ours: NodeId },
    #[error("expected node {expected} at this address, found node {found}")]
    WrongNode { expected: NodeId, found: NodeId },
    #[error("the peer sent no pre-shared key proof, but this node requires one")]
    PskMissing,
    #[error("the peer sent a pre-shared key proof, but this node has no key")]
    PskUnexpected,
    #[error("the peer's pre-shared key proof is wrong (different keys?)")]
    BadProof,
    #[error("TLS handshake failed: {0}")]
    Tls(rustls::Error),
    #[error("the peer claims to be node {0}, but its TLS certificate does not name that node")]
    CertificateNotForNode(NodeId),
}

impl HandshakeError {
    /// What an acceptor tells the dialer when it refuses for this reason.
    fn rejection(&self) -> Option<Rejection> {
        match self {
            Self::WrongCluster { .. } => Some(Rejection::WrongCluster),
            Self::UnknownPeer(_) => Some(Rejection::UnknownPeer),
            Self::NotForUs { .. } => Some(Rejection::WrongNode),
            Self::PskMissing => Some(Rejection::PskRequired),
            Self::PskUnexpected => Some(Rejection::PskUnexpected),
            Self::BadProof => Some(Rejection::BadProof),
            Self::CertificateNotForNode(_) => Some(Rejection::CertificateMismatch),
            _ => None,
        }
    }

    /// Why an acceptor refused a connection, as its stats count it.
    pub(super) fn refusal(&self) -> Refusal {
        use rustls::{CertificateError as C, Error as E};
        match self {
            Self::Io(_) | Self::Closed | Self::Encode(_) | Self::Random(_) => Refusal::Broken,
            Self::Frame(FrameError::Io(_) | FrameError::Truncated) => Refusal::Broken,
            Self::Frame(FrameError::TooLarge { .. })
            | Self::NotOmniPaxos
            | Self::Version(_)
            | Self::Decode(_)
            | Self::Unexpected
            | Self::RejectedByPeer(_) => Refusal::Protocol,
            Self::WrongCluster { .. } => Refusal::WrongCluster,
            Self::UnknownPeer(_) => Refusal::UnknownPeer,
            Self::NotForUs { .. } | Self::WrongNode { .. } => Refusal::WrongNode,
            Self::PskMissing | Self::PskUnexpected | Self::BadProof => Refusal::Psk,
            Self::CertificateNotForNode(_) => Refusal::CertificateNotForNode,
            Self::Tls(e) => match e {
                E::InvalidCertificate(
                    C::Expired
                    | C::ExpiredContext { .. }
                    | C::NotValidYet
                    | C::NotValidYetContext { .. },
                ) => Refusal::CertificateExpired,
                E::InvalidCertificate(_) | E::NoCertificatesPresented => {
                    Refusal::CertificateUntrusted
                }
                E::InvalidMessage(_) | E::InappropriateMessage { .. } => Refusal::NotTls,
                E::AlertReceived(_) => Refusal::RefusedByDialer,
                _ => Refusal::Tls,
            },
        }
    }
}

/// What both proofs of one handshake cover: who talks to whom in which
/// cluster, and both fresh nonces, so a proof is good for one handshake only.
struct Transcript {
    cluster_id: u64,
    dialer: NodeId,
    acceptor: NodeId,
    dialer_nonce: Nonce,
    acceptor_nonce: Nonce,
}

impl Transcript {
    fn mac(&self, key: &[u8], label: &[u8]) -> HmacSha256 {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(key)
            .expect("HMAC takes keys of any length, so creating it cannot fail");
        mac.update(label);
        mac.update(&self.cluster_id.to_be_bytes());
        mac.update(&self.dialer.to_be_bytes());
        mac.update(&self.acceptor.to_be_bytes());
        mac.update(&self.dialer_nonce);
        mac.update(&self.acceptor_nonce);
        mac
    }

    fn prove(&self, key: &[u8], label: &[u8]) -> Tag {
        self.mac(key, label).finalize().into_bytes().into()
    }

    /// Checks a proof in constant time.
    fn verify(&self, key: &[u8], label: &[u8], proof: &Tag) -> bool {
        self.mac(key, label).verify_slice(proof).is_ok()
    }
}

fn nonce() -> Result<Nonce, HandshakeError> {
    let mut nonce = [0; 32];
    OsRng
        .try_fill_bytes(&mut nonce)
        .map_err(HandshakeError::Random)?;
    Ok(nonce)
}

async fn read_preface<S: AsyncRead + Unpin>(s: &mut S) -> Result<(), HandshakeError> {
    let mut preface = [0u8; 8];
    s.read_exact(&mut preface)
        .await
        .map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => HandshakeError::Closed,
            _ => HandshakeError::Io(e),
        })?;
    if preface[..6] != MAGIC {
        return Err(HandshakeError::NotOmniPaxos);
    }
    match u16::from_be_bytes([preface[6], preface[7]]) {
        VERSION => Ok(()),
        v => Err(HandshakeError::Version(v)),
    }
}

async fn read_msg<S: AsyncRead + Unpin, M: DeserializeOwned>(
    s: &mut S,
    buf: &mut Vec<u8>,
) -> Result<M, HandshakeError> {
    if !read_frame(s, MAX_HANDSHAKE_FRAME, buf).await? {
        return Err(HandshakeError::Closed);
    }
    // Handshake messages are fixed-size: they may hold nothing beyond
    // themselves.
    Ok(decode(buf, size_of::<M>())?.value)
}

async fn write_msg<S: AsyncWrite + Unpin, M: Serialize>(
    s: &mut S,
    prefix: &[u8],
    msg: &M,
) -> Result<(), HandshakeError> {
    let mut out = prefix.to_vec();
    encode_frame(msg, MAX_HANDSHAKE_FRAME, &mut out)?;
    s.write_all(&out).await?;
    s.flush().await?;
    Ok(())
}

/// Runs the dialer's side of the handshake with `peer` on a fresh
/// connection. On success the connection carries our messages to `peer`.
pub(super) async fn dial<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    config: &NetConfig,
    peer: NodeId,
) -> Result<(), HandshakeError> {
    let dialer_nonce = nonce()?;
    let hello = Hello {
        cluster_id: config.cluster_id,
        from: config.pid,
        to: peer,
        nonce: dialer_nonce,
    };
    write_msg(s, &PREFACE, &hello).await?;
    read_preface(s).await?;
    let mut buf = Vec::new();
    let (acceptor_nonce, acceptor_proof) = match read_msg(s, &mut buf).await? {
        Answer::Challenge {
            cluster_id,
            from,
            nonce,
            proof,
        } => {
            if cluster_id != config.cluster_id {
                return Err(HandshakeError::WrongCluster {
                    ours: config.cluster_id,
                    theirs: cluster_id,
                });
            }
            if from != peer {
                return Err(HandshakeError::WrongNode {
                    expected: peer,
                    found: from,
                });
            }
            (nonce, proof)
        }
        Answer::Rejected(r) => return Err(HandshakeError::RejectedByPeer(r)),
        Answer::Accepted => return Err(HandshakeError::Unexpected),
    };
    let transcript = Transcript {
        cluster_id: config.cluster_id,
        dialer: config.pid,
        acceptor: peer,
        dialer_nonce,
        acceptor_nonce,
    };
    // The acceptor proves itself first; the dialer answers only an acceptor
    // that knows the key, so a stranger at the peer's address learns nothing.
    let proof = match (config.psk.as_deref(), acceptor_proof) {
        (Some(key), Some(p)) if transcript.verify(key, ACCEPTOR_LABEL, &p) => {
            Some(transcript.prove(key, DIALER_LABEL))
        }
        (Some(_), Some(_)) => return Err(HandshakeError::BadProof),
        (Some(_), None) => return Err(HandshakeError::PskMissing),
        (None, Some(_)) => return Err(HandshakeError::PskUnexpected),
        (None, None) => None,
    };
    write_msg(s, &[], &Proof { proof }).await?;
    match read_msg(s, &mut buf).await? {
        Answer::Accepted => Ok(()),
        Answer::Rejected(r) => Err(HandshakeError::RejectedByPeer(r)),
        Answer::Challenge { .. } => Err(HandshakeError::Unexpected),
    }
}

/// Runs the acceptor's side of the handshake on a fresh inbound connection
/// and returns the dialer's pid; `is_peer` says whether a pid is one of the
/// node's peers now (the set changes at run time, so it is asked, not read
/// from `config`). `certified` says whether the dialer's TLS certificate
/// names a pid (always true without TLS). A refused dialer is told why
/// (best effort).
pub(super) async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    config: &NetConfig,
    is_peer: impl Fn(NodeId) -> bool,
    certified: impl Fn(&S, NodeId) -> bool,
) -> Result<NodeId, HandshakeError> {
    read_preface(s).await?;
    s.write_all(&PREFACE).await?;
    let result = accept_checked(s, config, is_peer, certified).await;
    if let Err(e) = &result {
        if let Some(r) = e.rejection() {
            // Telling the dialer lets it log a clear reason; if that fails,
            // it sees the connection close, which is enough.
            let _ = write_msg(s, &[], &Answer::Rejected(r)).await;
        }
    }
    result
}

async fn accept_checked<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    config: &NetConfig,
    is_peer: impl Fn(NodeId) -> bool,
    certified: impl Fn(&S, NodeId) -> bool,
) -> Result<NodeId, HandshakeError> {
    let mut buf = Vec::new();
    let hello: Hello = read_msg(s, &mut buf).await?;
    if hello.cluster_id != config.cluster_id {
        return Err(HandshakeError::WrongCluster {
            ours: config.cluster_id,
            theirs: hello.cluster_id,
        });
    }
    if !is_peer(hello.from) {
        return Err(HandshakeError::UnknownPeer(hello.from));
    }
    if hello.to != config.pid {
        return Err(HandshakeError::NotForUs {
            to: hello.to,
            ours: config.pid,
        });
    }
    if !certified(s, hello.from) {
        return Err(HandshakeError::CertificateNotForNode(hello.from));
    }
    let transcript = Transcript {
        cluster_id: config.cluster_id,
        dialer: hello.from,
        acceptor: config.pid,
        dialer_nonce: hello.nonce,
        acceptor_nonce: nonce()?,
    };
    let challenge = Answer::Challenge {
        cluster_id: config.cluster_id,
        from: config.pid,
        nonce: transcript.acceptor_nonce,
        proof: config
            .psk
            .as_deref()
            .map(|key| transcript.prove(key, ACCEPTOR_LABEL)),
    };
    write_msg(s, &[], &challenge).await?;
    let Proof { proof } = read_msg(s, &mut buf).await?;
    match (config.psk.as_deref(), proof) {
        (Some(key), Some(p)) if transcript.verify(key, DIALER_LABEL, &p) => {}
        (Some(_), Some(_)) => return Err(HandshakeError::BadProof),
        (Some(_), None) => return Err(HandshakeError::PskMissing),
        (None, Some(_)) => return Err(HandshakeError::PskUnexpected),
        (None, None) => {}
    }
    write_msg(s, &[], &Answer::Accepted).await?;
    Ok(hello.from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn config(pid: NodeId, peers: &[NodeId], psk: Option<&[u8]>) -> NetConfig {
        let addr = "127.0.0.1:1".parse().unwrap();
        let peers = peers.iter().map(|p| (*p, addr)).collect::<BTreeMap<_, _>>();
        let mut c = NetConfig::new(7, pid, addr, peers);
        c.psk = psk.map(<[u8]>::to_vec);
        c
    }

    /// Runs both sides over an in-memory pipe.
    async fn handshake(
        dialer: &NetConfig,
        peer: NodeId,
        acceptor: &NetConfig,
    ) -> (Result<(), HandshakeError>, Result<NodeId, HandshakeError>) {
        let (mut a, mut b) = tokio::io::duplex(4096);
        // Each side closes its end when it is done, as a connection would.
        tokio::join!(
            async {
                let r = dial(&mut a, dialer, peer).await;
                drop(a);
                r
            },
            async {
                let r = accept(
                    &mut b,
                    acceptor,
                    |p| acceptor.peers.contains_key(&p),
                    |_, _| true,
                )
                .await;
                drop(b);
                r
            }
        )
    }

    #[tokio::test]
    async fn peers_without_a_key_complete_the_handshake() {
        let (d, a) = handshake(&config(1, &[2], None), 2, &config(2, &[1], None)).await;
        d.unwrap();
        assert_eq!(a.unwrap(), 1);
    }

    #[tokio::test]
    async fn peers_with_the_same_key_complete_the_handshake() {
        let (d, a) = handshake(
            &config(1, &[2], Some(b"k")),
            2,
            &config(2, &[1], Some(b"k")),
        )
        .await;
        d.unwrap();
        assert_eq!(a.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_dialer_refuses_an_acceptor_with_another_key_before_proving_itself() {
        let (d, a) = handshake(
            &config(1, &[2], Some(b"k")),
            2,
            &config(2, &[1], Some(b"x")),
        )
        .await;
        assert!(matches!(d.unwrap_err(), HandshakeError::BadProof));
        assert!(matches!(a.unwrap_err(), HandshakeError::Closed));
    }

    #[tokio::test]
    async fn an_acceptor_with_a_key_refuses_a_dialer_without_one() {
        let (d, a) = handshake(&config(1, &[2], None), 2, &config(2, &[1], Some(b"k"))).await;
        assert!(matches!(d.unwrap_err(), HandshakeError::PskUnexpected));
        assert!(matches!(a.unwrap_err(), HandshakeError::Closed));
        let (d, a) = handshake(&config(1, &[2], Some(b"k")), 2, &config(2, &[1], None)).await;
        assert!(matches!(d.unwrap_err(), HandshakeError::PskMissing));
        assert!(matches!(a.unwrap_err(), HandshakeError::Closed));
    }

    #[tokio::test]
    async fn an_acceptor_refuses_another_cluster_an_unknown_pid_and_a_misdirected_dial() {
        let mut other_cluster = config(1, &[2], None);
        other_cluster.cluster_id = 8;
        let (d, a) = handshake(&other_cluster, 2, &config(2, &[1], None)).await;
        assert!(matches!(
            d.unwrap_err(),
            HandshakeError::RejectedByPeer(Rejection::WrongCluster)
        ));
        assert!(matches!(
            a.unwrap_err(),
            HandshakeError::WrongCluster { ours: 7, theirs: 8 }
        ));

        let (d, a) = handshake(&config(3, &[2], None), 2, &config(2, &[1], None)).await;
        assert!(matches!(
            d.unwrap_err(),
            HandshakeError::RejectedByPeer(Rejection::UnknownPeer)
        ));
        assert!(matches!(a.unwrap_err(), HandshakeError::UnknownPeer(3)));

        let (d, a) = handshake(&config(1, &[4], None), 4, &config(2, &[1], None)).await;
        assert!(matches!(
            d.unwrap_err(),
            HandshakeError::RejectedByPeer(Rejection::WrongNode)
        ));
        assert!(matches!(
            a.unwrap_err(),
            HandshakeError::NotForUs { to: 4, ours: 2 }
        ));
    }

    #[test]
    fn the_preface_is_the_documented_magic_and_version() {
        // The module docs of `net` describe exactly these bytes.
        assert_eq!(&PREFACE, b"OPXNET\x00\x01");
    }

    #[tokio::test]
    async fn garbage_and_another_version_are_refused() {
        let acceptor = config(2, &[1], None);
        let (mut a, mut b) = tokio::io::duplex(4096);
        a.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let err = accept(&mut b, &acceptor, |_| true, |_, _| true)
            .await
            .unwrap_err();
        assert!(matches!(err, HandshakeError::NotOmniPaxos));

        let (mut a, mut b) = tokio::io::duplex(4096);
        a.write_all(b"OPXNET\x00\x09").await.unwrap();
        let err = accept(&mut b, &acceptor, |_| true, |_, _| true)
            .await
            .unwrap_err();
        assert!(matches!(err, HandshakeError::Version(9)));

        // A valid preface, then a frame far above the handshake maximum.
        let (mut a, mut b) = tokio::io::duplex(4096);
        a.write_all(&PREFACE).await.unwrap();
        a.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        let err = accept(&mut b, &acceptor, |_| true, |_, _| true)
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            HandshakeError::Frame(FrameError::TooLarge { .. })
        ));
    }
}
