//! Mutual TLS on real loopback sockets: a cluster replicates over it, and a
//! node refuses, counts and names every dialer whose certificate does not
//! check out, then keeps serving. The certificates are made here with rcgen.
//!
//! Every wait is for a condition (a node status or a transport counter),
//! bounded by a timeout; none sleeps to let something happen.

use super::{
    NetConfig, NetError, Refusal, TlsConfig, TlsError, TlsInput, Transport,
    handshake::{self, HandshakeError, Rejection},
    tests::{Value, WAIT, heartbeat, lone_node, wait_for_stats},
    tls::TlsContext,
};
use crate::{NodeConfig, OmniPaxosHandle, OmniPaxosNode};
use omnipaxos::util::NodeId;
use omnipaxos_storage::memory_storage::MemoryStorage;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, date_time_ymd,
};
use std::{collections::BTreeMap, net::SocketAddr};
use tokio::{io::AsyncWriteExt, net::TcpStream};

const CLUSTER: u64 = 7;

/// A certificate authority that signs node certificates.
struct Ca {
    cert: Certificate,
    key: KeyPair,
}

/// What a node certificate says besides its names.
#[derive(Clone, Copy, PartialEq)]
enum Validity {
    Now,
    Expired,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self { cert, key }
    }

    /// A certificate and key for node `pid` of the test cluster, trusting
    /// `trusted` (this CA's PEM unless more are given).
    fn node(&self, pid: NodeId, validity: Validity, trusted: &[&Self]) -> TlsConfig {
        let mut params = CertificateParams::new(vec![TlsConfig::node_name(CLUSTER, pid)]).unwrap();
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        if validity == Validity::Expired {
            params.not_before = date_time_ymd(2000, 1, 1);
            params.not_after = date_time_ymd(2001, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let own = [self];
        let trusted = if trusted.is_empty() {
            &own[..]
        } else {
            trusted
        };
        let cas: String = trusted.iter().map(|ca| ca.cert.pem()).collect();
        TlsConfig::from_pem(
            cas.as_bytes(),
            cert.pem().as_bytes(),
            key.serialize_pem().as_bytes(),
        )
        .unwrap()
    }
}

fn config(pid: NodeId, peers: BTreeMap<NodeId, SocketAddr>, tls: Option<TlsConfig>) -> NetConfig {
    let mut c = NetConfig::new(CLUSTER, pid, "127.0.0.1:0".parse().unwrap(), peers);
    c.tls = tls;
    c
}

/// Node 2 of {1, 2, 3} over TLS, whose peers' addresses lead nowhere: the
/// test plays node 1 (or 3).
async fn lone_tls_node(ca: &Ca) -> (OmniPaxosNode<Value>, Transport) {
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
    let peers = BTreeMap::from([(1, nowhere), (3, nowhere)]);
    let config = config(2, peers, Some(ca.node(2, Validity::Now, &[])));
    let transport = Transport::start(config, omni_paxos.clone(), seq_paxos_handle, ble_handle)
        .await
        .unwrap();
    (omni_paxos, transport)
}

/// Dials node 2 at `addr` over TLS with `tls` (a certificate for
/// `cert_pid`), claiming to be `claimed` in the handshake.
async fn tls_dial(
    addr: SocketAddr,
    tls: &TlsConfig,
    cert_pid: NodeId,
    claimed: NodeId,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, HandshakeError> {
    let context = TlsContext::new(tls, CLUSTER, cert_pid).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut stream = context.connect(tcp, 2).await?;
    let peers = BTreeMap::from([(2, addr)]);
    handshake::dial(&mut stream, &config(claimed, peers, None), 2).await?;
    Ok(stream)
}

/// Checks that node 2 at `addr` still takes a good dialer's messages: it
/// has received `before` from node 1, and then one more.
async fn assert_serves(transport: &Transport, ca: &Ca, before: u64) {
    let tls = ca.node(1, Validity::Now, &[]);
    let mut s = tls_dial(transport.local_addr(), &tls, 1, 1)
        .await
        .expect("a good dialer is let in");
    s.write_all(&heartbeat(1, 2)).await.unwrap();
    s.flush().await.unwrap();
    wait_for_stats(transport, "a good dialer's message", |st| {
        st.peers[&1].received == before + 1
    })
    .await;
}

/// Waits until `transport` has refused one connection, for `reason`.
async fn assert_refused_once(transport: &Transport, reason: Refusal) {
    wait_for_stats(transport, "the refusal", |st| st.rejected_connections >= 1).await;
    let stats = transport.stats();
    assert_eq!(stats.refused, BTreeMap::from([(reason, 1)]), "{stats:?}");
    assert_eq!(stats.rejected_connections, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_over_mutual_tls_with_a_key_elect_a_leader_and_decide_on_every_node() {
    let ca = Ca::new("cluster CA");
    let mut bound = BTreeMap::new();
    for pid in [1, 2, 3] {
        let mut c = config(pid, BTreeMap::new(), Some(ca.node(pid, Validity::Now, &[])));
        c.psk = Some(b"inside TLS".to_vec());
        bound.insert(pid, Transport::bind(c).await.unwrap());
    }
    let addrs: BTreeMap<NodeId, SocketAddr> =
        bound.iter().map(|(p, b)| (*p, b.local_addr())).collect();
    let mut members = BTreeMap::new();
    for (pid, mut b) in bound {
        b.peers_mut().extend(
            addrs
                .iter()
                .filter(|(p, _)| **p != pid)
                .map(|(p, a)| (*p, *a)),
        );
        let mut node_conf = NodeConfig::default();
        node_conf.set_pid(pid);
        node_conf.set_peers(addrs.keys().copied().filter(|p| *p != pid).collect());
        let OmniPaxosHandle {
            omni_paxos,
            seq_paxos_handle,
            ble_handle,
        } = OmniPaxosNode::new(node_conf, MemoryStorage::<Value>::default());
        let t = b
            .start(omni_paxos.clone(), seq_paxos_handle, ble_handle)
            .unwrap();
        members.insert(pid, (omni_paxos, t));
    }

    // Every node appends once; all three entries are decided everywhere.
    let mut last = 0;
    for (pid, (node, _)) in &members {
        let idx = tokio::time::timeout(WAIT, node.append(Value(*pid)))
            .await
            .expect("an append over TLS is decided")
            .unwrap();
        last = last.max(idx);
    }
    for (node, _) in members.values() {
        let mut status = node.watch_status();
        tokio::time::timeout(WAIT, status.wait_for(|s| s.decided_idx > last))
            .await
            .expect("every node decides every entry")
            .unwrap();
    }
    for (_, t) in members.values() {
        wait_for_stats(t, "every link up and carrying messages", |st| {
            st.peers.len() == 2
                && st
                    .peers
                    .values()
                    .all(|p| p.connected && p.received > 0 && p.bytes_sent > 0)
        })
        .await;
        let stats = t.stats();
        assert_eq!(stats.rejected_connections, 0, "{stats:?}");
    }
    for (node, t) in members.into_values() {
        t.shutdown().await;
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dialer_whose_certificate_another_ca_signed_is_refused_and_the_node_keeps_serving() {
    let (ca, other) = (Ca::new("cluster CA"), Ca::new("another cluster's CA"));
    let (node, transport) = lone_tls_node(&ca).await;
    // It trusts our CA, so it gets as far as showing its certificate.
    let stranger = other.node(1, Validity::Now, &[&ca, &other]);
    let refused = tls_dial(transport.local_addr(), &stranger, 1, 1).await;
    assert!(refused.is_err(), "the dialer is refused");
    assert_refused_once(&transport, Refusal::CertificateUntrusted).await;
    assert_serves(&transport, &ca, 0).await;
    transport.shutdown().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dialer_claiming_a_pid_its_certificate_does_not_name_is_refused_and_told_why() {
    let ca = Ca::new("cluster CA");
    let (node, transport) = lone_tls_node(&ca).await;
    // A valid certificate for node 1, claiming to be node 3.
    let one = ca.node(1, Validity::Now, &[]);
    let refused = tls_dial(transport.local_addr(), &one, 1, 3).await;
    assert!(
        matches!(
            refused,
            Err(HandshakeError::RejectedByPeer(
                Rejection::CertificateMismatch
            ))
        ),
        "{:?}",
        refused.err()
    );
    assert_refused_once(&transport, Refusal::CertificateNotForNode).await;
    assert_eq!(transport.stats().peers[&3].received, 0);
    assert_serves(&transport, &ca, 0).await;
    transport.shutdown().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dialer_with_an_expired_certificate_is_refused_and_the_node_keeps_serving() {
    let ca = Ca::new("cluster CA");
    let (node, transport) = lone_tls_node(&ca).await;
    let expired = ca.node(1, Validity::Expired, &[]);
    let refused = tls_dial(transport.local_addr(), &expired, 1, 1).await;
    assert!(refused.is_err(), "the dialer is refused");
    assert_refused_once(&transport, Refusal::CertificateExpired).await;
    assert_serves(&transport, &ca, 0).await;
    transport.shutdown().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_dialer_to_a_tls_node_is_refused_and_the_node_keeps_serving() {
    let ca = Ca::new("cluster CA");
    let (node, transport) = lone_tls_node(&ca).await;
    let addr = transport.local_addr();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let plain = config(1, BTreeMap::from([(2, addr)]), None);
    let refused = handshake::dial(&mut s, &plain, 2).await;
    assert!(refused.is_err(), "the dialer is refused");
    assert_refused_once(&transport, Refusal::NotTls).await;
    assert_serves(&transport, &ca, 0).await;
    transport.shutdown().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_dialer_to_a_plaintext_node_is_refused_as_another_protocol() {
    let ca = Ca::new("cluster CA");
    let (node, transport) = lone_node().await;
    let refused = tls_dial(
        transport.local_addr(),
        &ca.node(1, Validity::Now, &[]),
        1,
        1,
    )
    .await;
    assert!(refused.is_err(), "the dialer is refused");
    assert_refused_once(&transport, Refusal::Protocol).await;
    transport.shutdown().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dialer_refuses_an_acceptor_whose_certificate_names_another_node() {
    let ca = Ca::new("cluster CA");
    let (node, transport) = lone_tls_node(&ca).await;
    // Node 1 believes node 3 listens here; node 2's certificate says otherwise.
    let context = TlsContext::new(&ca.node(1, Validity::Now, &[]), CLUSTER, 1).unwrap();
    let tcp = TcpStream::connect(transport.local_addr()).await.unwrap();
    let refused = context.connect(tcp, 3).await;
    assert!(
        matches!(
            &refused,
            Err(HandshakeError::Tls(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                    | rustls::CertificateError::NotValidForNameContext { .. }
            )))
        ),
        "{:?}",
        refused.err()
    );
    assert_refused_once(&transport, Refusal::RefusedByDialer).await;
    assert_serves(&transport, &ca, 0).await;
    transport.shutdown().await;
    node.shutdown().await;
}

#[tokio::test]
async fn certificates_that_cannot_work_fail_at_bind_with_a_clear_error() {
    let ca = Ca::new("cluster CA");
    let ca_pem = ca.cert.pem();
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec![TlsConfig::node_name(CLUSTER, 1)]).unwrap();
    let cert_pem = params.signed_by(&key, &ca.cert, &ca.key).unwrap().pem();
    let key_pem = key.serialize_pem();
    let err = |r: Result<TlsConfig, TlsError>| r.unwrap_err().to_string();

    assert_eq!(
        err(TlsConfig::from_pem(
            b"",
            cert_pem.as_bytes(),
            key_pem.as_bytes()
        )),
        "the CA certificates contain no PEM `CERTIFICATE` section"
    );
    assert_eq!(
        err(TlsConfig::from_pem(
            ca_pem.as_bytes(),
            cert_pem.as_bytes(),
            b""
        )),
        "the node's private key contains no PEM private key section"
    );
    let torn = &cert_pem[..cert_pem.len() - 30];
    assert!(matches!(
        TlsConfig::from_pem(ca_pem.as_bytes(), torn.as_bytes(), key_pem.as_bytes()),
        Err(TlsError::Pem {
            input: TlsInput::CertChain,
            ..
        })
    ));
    assert!(
        err(TlsConfig::from_pem_files("/nonexistent/ca.pem", "c", "k"))
            .starts_with("cannot read /nonexistent/ca.pem: ")
    );

    // Node 1's certificate given to node 2.
    let one =
        TlsConfig::from_pem(ca_pem.as_bytes(), cert_pem.as_bytes(), key_pem.as_bytes()).unwrap();
    let bound = Transport::bind(config(2, BTreeMap::new(), Some(one))).await;
    assert_eq!(
        bound.unwrap_err().to_string(),
        "invalid tls config: the node's certificate does not name it: it needs the subject \
         alternative DNS name `node-2.cluster-7.omnipaxos`"
    );

    // A key that is not the certificate's.
    let stray = KeyPair::generate().unwrap().serialize_pem();
    let mismatched =
        TlsConfig::from_pem(ca_pem.as_bytes(), cert_pem.as_bytes(), stray.as_bytes()).unwrap();
    let bound = Transport::bind(config(1, BTreeMap::new(), Some(mismatched))).await;
    assert!(
        matches!(bound, Err(NetError::Tls(TlsError::BadCertificate { .. }))),
        "{bound:?}"
    );
}

#[test]
fn a_tls_config_never_prints_its_key() {
    let ca = Ca::new("cluster CA");
    let tls = ca.node(1, Validity::Now, &[]);
    let shown = format!("{:?}", config(1, BTreeMap::new(), Some(tls)));
    assert!(shown.contains("key: \"<redacted>\""), "{shown}");
    assert!(!shown.contains("PRIVATE"), "{shown}");
}
