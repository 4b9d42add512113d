//! The HTTP API of one in-process server: what each route answers, and that
//! bad input gets a 4xx with a JSON error body while the server keeps serving.
//! Also the start-up refusals: a port in use, another server's data directory.

mod common;

use hyper::{Method, StatusCode};
use kv_store::{
    KvClient, Server, ServerError, ServerOptions, StorageChoice,
    api::{ErrorBody, Role},
};
use pretty_assertions::assert_eq;
use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, time::Duration};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().expect("a literal address")
}

/// A one-server cluster on free ports.
fn options(storage: StorageChoice) -> ServerOptions {
    ServerOptions::new(1, any_port(), BTreeMap::new(), any_port(), storage)
}

async fn start(storage: StorageChoice) -> (Server, KvClient) {
    let server = Server::start(options(storage))
        .await
        .expect("the server starts");
    let client = KvClient::new(&server.http_addr().to_string())
        .expect("a valid address")
        .with_timeout(Duration::from_secs(10));
    (server, client)
}

async fn raw(
    client: &KvClient,
    method: Method,
    path: &str,
    body: &[u8],
) -> (StatusCode, ErrorBody) {
    let (status, bytes) = client
        .raw(method, path, Some(body.to_vec()))
        .await
        .expect("the server answers");
    let body: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "not a JSON error body ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, body)
}

#[tokio::test]
async fn writes_and_reads_answer_with_their_results() {
    let (server, c) = start(StorageChoice::Memory).await;
    assert_eq!(c.get("a").await.unwrap(), None);
    let put = c.put("a", "1").await.unwrap();
    assert!(put.success);
    assert_eq!(put.previous, None);
    assert_eq!(c.get("a").await.unwrap().as_deref(), Some("1"));
    let swapped = c.cas("a", Some("1"), "2").await.unwrap();
    assert!(swapped.success && swapped.index > put.index);
    assert_eq!(swapped.previous.as_deref(), Some("1"));
    let refused = c.cas("a", Some("1"), "3").await.unwrap();
    assert!(!refused.success);
    assert_eq!(refused.previous.as_deref(), Some("2"));
    assert!(c.cas("b", None, "new").await.unwrap().success);
    assert_eq!(c.get_stale("b").await.unwrap().as_deref(), Some("new"));
    let deleted = c.delete("a").await.unwrap();
    assert_eq!(deleted.previous.as_deref(), Some("2"));
    assert_eq!(c.get("a").await.unwrap(), None);
    // Keys are path segments: anything percent-encodes.
    c.put("a/b c?", "odd").await.unwrap();
    assert_eq!(c.get("a/b c?").await.unwrap().as_deref(), Some("odd"));
    let scan = c.scan("a", 10).await.unwrap();
    assert_eq!(
        scan.items.into_iter().collect::<Vec<_>>(),
        vec![("a/b c?".to_owned(), "odd".to_owned())]
    );

    let status = c.status().await.unwrap();
    assert_eq!(
        (status.pid, status.role, status.leader),
        (1, Role::Leader, Some(1))
    );
    assert_eq!(status.applied_idx, status.decided_idx);
    assert_eq!(status.keys, 2);
    server.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_a_4xx_with_a_json_error_and_the_server_keeps_serving() {
    let (server, c) = start(StorageChoice::Memory).await;
    let cases: Vec<(Method, String, Vec<u8>, StatusCode, &str)> = vec![
        (
            Method::PUT,
            "/kv/a".into(),
            b"{not json".to_vec(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Method::PUT,
            "/kv/a".into(),
            b"{\"value\":1}".to_vec(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Method::PUT,
            "/kv/a".into(),
            b"{\"value\":\"x\",\"extra\":1}".to_vec(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Method::POST,
            "/kv/a/cas".into(),
            b"{\"new\":\"x\"}".to_vec(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Method::PUT,
            "/kv/a".into(),
            vec![b'x'; 1 << 20],
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            Method::PUT,
            format!("/kv/{}", "k".repeat(2000)),
            b"{\"value\":\"x\"}".to_vec(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Method::PUT,
            "/kv/a".into(),
            format!("{{\"value\":\"{}\"}}", "v".repeat(100_000)).into_bytes(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Method::GET,
            "/kv/a?stale=maybe".into(),
            Vec::new(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Method::GET,
            "/kv?limit=-1".into(),
            Vec::new(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Method::GET,
            "/kv/%FF".into(),
            Vec::new(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Method::GET,
            "/nothing/here".into(),
            Vec::new(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            Method::POST,
            "/kv/a".into(),
            Vec::new(),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let shown = format!("{method} {}", &path[..path.len().min(40)]);
        let (got, err) = raw(&c, method, &path, &body).await;
        assert_eq!(
            (got, err.error.as_str()),
            (status, code),
            "{shown}: {}",
            err.message
        );
        assert!(!err.message.is_empty());
    }

    // Bytes that are not HTTP at all: the connection gets a 400 and is closed.
    let mut tcp = tokio::net::TcpStream::connect(server.http_addr())
        .await
        .unwrap();
    tcp.write_all(b"\x00\x01garbage\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // Still serving.
    c.put("a", "fine").await.unwrap();
    assert_eq!(c.get("a").await.unwrap().as_deref(), Some("fine"));
    server.shutdown().await;
}

#[tokio::test]
async fn a_port_in_use_is_refused_with_the_address() {
    let (server, _) = start(StorageChoice::Memory).await;
    let mut opts = options(StorageChoice::Memory);
    opts.http = server.http_addr();
    match Server::start(opts).await {
        Err(ServerError::HttpBind { addr, .. }) => assert_eq!(addr, server.http_addr()),
        other => panic!("expected HttpBind, got {other:?}"),
    }
    let mut opts = options(StorageChoice::Memory);
    opts.listen = server.protocol_addr();
    let err = Server::start(opts)
        .await
        .expect_err("the protocol port is in use");
    assert!(
        err.to_string()
            .contains(&server.protocol_addr().to_string()),
        "{err}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_data_directory_keeps_its_data_and_is_refused_to_another_server() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("data");
    let (server, c) = start(StorageChoice::Persistent(dir.clone())).await;
    c.put("kept", "yes").await.unwrap();
    server.shutdown().await;

    // The same server finds its data again.
    let (server, c) = start(StorageChoice::Persistent(dir.clone())).await;
    assert_eq!(c.get("kept").await.unwrap().as_deref(), Some("yes"));
    server.shutdown().await;

    let mut opts = options(StorageChoice::Persistent(dir.clone()));
    opts.id = 2;
    let err = Server::start(opts)
        .await
        .expect_err("another server's directory");
    assert!(
        err.to_string()
            .contains("belongs to node 1 of cluster 1, but this is node 2 of cluster 1"),
        "{err}"
    );
    let mut opts = options(StorageChoice::Persistent(dir));
    opts.cluster_id = 9;
    let err = Server::start(opts)
        .await
        .expect_err("another cluster's directory");
    assert!(
        err.to_string().contains("this is node 1 of cluster 9"),
        "{err}"
    );
}

#[tokio::test]
async fn snapshots_compact_the_log_and_a_restart_rebuilds_the_state_from_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut opts = options(StorageChoice::Persistent(dir.clone()));
    opts.snapshot_every = 10;
    let server = Server::start(opts.clone()).await.unwrap();
    let c = KvClient::new(&server.http_addr().to_string()).unwrap();
    for i in 0..25 {
        c.put(&format!("k{}", i % 7), &i.to_string()).await.unwrap();
    }
    c.cas("k0", Some("21"), "swapped").await.unwrap();
    let before = c.status().await.unwrap();
    assert!(before.compacted_idx >= 20, "{before:?}");
    server.shutdown().await;

    let server = Server::start(opts).await.unwrap();
    let c = KvClient::new(&server.http_addr().to_string()).unwrap();
    let scan = c.scan("k", 100).await.unwrap();
    let expected: BTreeMap<String, String> = (0..7)
        .map(|k| {
            let last = (0..25).filter(|i| i % 7 == k).max().unwrap();
            (
                format!("k{k}"),
                if k == 0 {
                    "swapped".to_owned()
                } else {
                    last.to_string()
                },
            )
        })
        .collect();
    assert_eq!(scan.items, expected);
    server.shutdown().await;
}

#[tokio::test]
async fn members_lists_the_configuration_this_server_runs_in() {
    let (server, c) = start(StorageChoice::Memory).await;
    let m = c.members().await.unwrap();
    assert_eq!(m.cluster_id, 1);
    assert_eq!(m.configuration_id, server_configuration(&c).await);
    assert_eq!(m.members.iter().map(|s| s.id).collect::<Vec<_>>(), [1]);
    assert_eq!(
        m.members[0].peer_addr,
        Some(server.protocol_addr().to_string())
    );
    assert!(!m.joining);
    assert_eq!(m.next_configuration, None);
    // `/status` shows the same configuration.
    let st = c.status().await.unwrap();
    assert_eq!(
        (
            st.configuration_id,
            st.members,
            st.next_configuration,
            st.joining
        ),
        (m.configuration_id, m.members, None, false)
    );
    server.shutdown().await;
}

async fn server_configuration(c: &KvClient) -> u32 {
    c.status().await.unwrap().configuration_id
}

#[tokio::test]
async fn a_membership_change_that_cannot_apply_is_refused_with_its_reason() {
    let (server, c) = start(StorageChoice::Memory).await;
    let cases: [(&[u8], StatusCode, &str); 4] = [
        (
            br#"{"add": {"id": 0, "addr": "127.0.0.1:1"}}"#,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            br#"{"add": {"id": 1, "addr": "127.0.0.1:1"}}"#,
            StatusCode::CONFLICT,
            "already_member",
        ),
        (br#"{"remove": 2}"#, StatusCode::CONFLICT, "not_member"),
        (br#"{"remove": 1}"#, StatusCode::BAD_REQUEST, "bad_request"),
    ];
    for (body, status, code) in cases {
        let (got, err) = raw(&c, Method::POST, "/members", body).await;
        assert_eq!((got, err.error.as_str()), (status, code), "{}", err.message);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_server_with_a_token_refuses_requests_without_it_says_why_and_counts_them() {
    let mut opts = options(StorageChoice::Memory);
    opts.client_token = Some("s3cret-token".to_owned());
    let server = Server::start(opts).await.expect("the server starts");
    let addr = server.http_addr().to_string();
    let anonymous = KvClient::new(&addr).expect("a valid address");
    let wrong = anonymous.clone().with_token(Some("guess"));
    let right = anonymous.clone().with_token(Some("s3cret-token"));

    for (client, path, why) in [
        (&anonymous, "/kv/a", "requires a bearer token"),
        (&anonymous, "/status", "requires a bearer token"),
        (&anonymous, "/no/such/route", "requires a bearer token"),
        (&wrong, "/kv/a", "not this server's"),
        (&wrong, "/metrics", "not this server's"),
    ] {
        let (status, body) = raw(client, Method::GET, path, b"").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(body.error, "unauthorized");
        assert!(body.message.contains(why), "{path}: {}", body.message);
    }
    // Refused before the body is read or the write is proposed.
    let err = wrong.put("a", "1").await.expect_err("refused");
    assert_eq!(err.code(), Some("unauthorized"));

    // The server keeps serving whoever has the token.
    assert!(right.put("a", "1").await.unwrap().success);
    assert_eq!(right.get("a").await.unwrap().as_deref(), Some("1"));
    let (status, metrics) = right
        .raw(Method::GET, "/metrics", None)
        .await
        .expect("the server answers");
    assert_eq!(status, StatusCode::OK);
    let metrics = String::from_utf8(metrics.to_vec()).unwrap();
    for line in [
        "kv_store_client_requests_refused_total{reason=\"missing\"} 3",
        "kv_store_client_requests_refused_total{reason=\"wrong\"} 3",
    ] {
        assert!(metrics.contains(line), "{line} not in:\n{metrics}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_token_file_is_read_without_its_line_end_and_a_bad_one_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("token");
    std::fs::write(&good, "abc-123\n").unwrap();
    assert_eq!(
        kv_store::client::read_token_file(&good).as_deref(),
        Ok("abc-123")
    );
    for (text, why) in [
        ("\n", "1 to 4096 characters"),
        ("two words\n", "visible ASCII"),
    ] {
        let path = dir.path().join("bad");
        std::fs::write(&path, text).unwrap();
        let err = kv_store::client::read_token_file(&path).unwrap_err();
        assert!(err.contains(why), "{text:?}: {err}");
    }
    let err = kv_store::client::read_token_file(&dir.path().join("absent")).unwrap_err();
    assert!(err.contains("cannot read the token file"), "{err}");
}

/// A CA and, signed by it, a certificate for 127.0.0.1, as PEM:
/// `(ca, cert, key)`.
fn https_certificates() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "kv_store HTTPS test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn https_serves_clients_that_trust_its_ca_and_tells_or_refuses_the_others() {
    let (ca, cert, key) = https_certificates();
    let mut opts = options(StorageChoice::Memory);
    opts.https =
        Some(kv_store::server::HttpsConfig::from_pem(cert.as_bytes(), key.as_bytes()).unwrap());
    let server = Server::start(opts).await.expect("the server starts");
    let port = server.http_addr().port();
    let url = format!("https://127.0.0.1:{port}");

    let c = KvClient::with_ca(&url, Some(ca.as_bytes())).unwrap();
    assert!(c.put("a", "1").await.unwrap().success);
    assert_eq!(c.get("a").await.unwrap().as_deref(), Some("1"));

    // Plain HTTP to the HTTPS port: told so, in plain HTTP.
    let plain = KvClient::new(&format!("http://127.0.0.1:{port}")).unwrap();
    let (status, body) = raw(&plain, Method::GET, "/status", b"").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body.error, "https_required");
    assert!(body.message.contains("https://"), "{}", body.message);

    // A client trusting another CA refuses the server's certificate.
    let (other_ca, _, _) = https_certificates();
    let stranger = KvClient::with_ca(&url, Some(other_ca.as_bytes())).unwrap();
    let err = stranger
        .get("a")
        .await
        .expect_err("the certificate is not trusted");
    assert!(err.to_string().contains("certificate"), "{err}");

    // An https:// URL needs a CA, and a CA file needs certificates.
    let err = KvClient::new(&url).unwrap_err().to_string();
    assert!(err.contains("needs the CA"), "{err}");
    let err = KvClient::with_ca(&url, Some(b"no PEM here"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no certificate"), "{err}");

    // Both refusals are counted, and the server keeps serving.
    common::wait_for_metric(
        &c,
        "kv_store_client_tls_refused_total{reason=\"not_tls\"} 1",
    )
    .await;
    common::wait_for_metric(
        &c,
        "kv_store_client_tls_refused_total{reason=\"handshake\"} 1",
    )
    .await;
    assert!(c.put("a", "2").await.unwrap().success);
    server.shutdown().await;
}

#[test]
fn an_https_certificate_that_is_not_pem_or_not_the_keys_is_explained() {
    use kv_store::server::HttpsConfig;
    let (_, cert, key) = https_certificates();
    let (_, _, other_key) = https_certificates();
    let err = HttpsConfig::from_pem(b"nothing", key.as_bytes()).unwrap_err();
    assert!(err.contains("holds no certificate"), "{err}");
    let err = HttpsConfig::from_pem(cert.as_bytes(), b"nothing").unwrap_err();
    assert!(err.contains("no usable private key"), "{err}");
    let err = HttpsConfig::from_pem(cert.as_bytes(), other_key.as_bytes()).unwrap_err();
    assert!(err.contains("do not fit together"), "{err}");
}
