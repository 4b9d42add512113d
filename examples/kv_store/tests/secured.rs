//! A cluster of three `kv_store server` processes with every protection on:
//! mutual TLS between the servers (`--tls-ca/--tls-cert/--tls-key`, one
//! certificate per server through `{id}` in the cluster's server flags) and
//! a bearer token on the client API (`--token-file`). It elects a leader and
//! replicates; a client without the token is refused. Certificates are made
//! here with rcgen.

mod common;

use kv_store::cluster::{ClusterOptions, ProcessCluster};
use omnipaxos_runtime::net::TlsConfig;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use std::{path::Path, time::Duration};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CLUSTER: u64 = 1;

/// Writes `ca.pem` and, for each server, `node-<id>.pem` and `node-<id>.key`.
fn write_certificates(dir: &Path, ids: &[u64]) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "kv_store test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    for &id in ids {
        let mut params = CertificateParams::new(vec![TlsConfig::node_name(CLUSTER, id)]).unwrap();
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
        std::fs::write(dir.join(format!("node-{id}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("node-{id}.key")), key.serialize_pem()).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_with_tls_between_servers_and_a_client_token_replicates() {
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path();
    write_certificates(dir, &[1, 2, 3]);
    std::fs::write(dir.join("token"), "t0ken-for-the-test\n").unwrap();
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();

    let mut opts = ClusterOptions::new(env!("CARGO_BIN_EXE_kv_store"));
    opts.cluster_id = CLUSTER;
    opts.memory = true;
    opts.server_args = vec![
        format!("--tls-ca={}", path("ca.pem")),
        format!("--tls-cert={}", path("node-{id}.pem")),
        format!("--tls-key={}", path("node-{id}.key")),
        format!("--token-file={}", path("token")),
    ];
    opts.token = Some("t0ken-for-the-test".to_owned());
    let mut cluster = ProcessCluster::start(opts)
        .await
        .expect("the servers start");
    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .expect("a leader is elected over TLS");
    let follower = cluster
        .ids()
        .into_iter()
        .find(|&id| id != leader)
        .expect("three servers");

    // A write through a follower is forwarded to the leader and replicated.
    let c = cluster.client(follower).unwrap();
    assert!(c.put("k", "v").await.unwrap().success);
    assert_eq!(
        cluster.client(leader).unwrap().get("k").await.unwrap(),
        Some("v".to_owned())
    );
    let status = c.status().await.unwrap();
    assert_eq!(status.leader, Some(leader));

    // A plaintext dialer on a server's protocol port is refused and counted.
    let protocol = cluster.protocol_addr(leader).expect("a member");
    let mut plain = tokio::net::TcpStream::connect(protocol).await.unwrap();
    plain
        .write_all(b"not a TLS client hello\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), plain.read_to_end(&mut rest)).await;
    let counted = "omnipaxos_net_refused_connections_total{reason=\"not_tls\"} 1";
    common::wait_for_metric(&cluster.client(leader).unwrap(), counted).await;
    // And the cluster still replicates.
    assert!(c.put("k2", "v2").await.unwrap().success);

    // Without the token, nothing.
    let anonymous = c.clone().with_token(None);
    let err = anonymous.get("k").await.expect_err("refused");
    assert_eq!(err.code(), Some("unauthorized"), "{err}");
    cluster.check_running().expect("no server exited");
    cluster.shutdown().await;
}
