//! `kv_store load` against one in-process server: every request it sends is
//! answered and counted, the writes it reports did land, and a server that
//! refuses every request shows as errors with the first one named.

use kv_store::{
    KvClient, Server, ServerOptions, StorageChoice,
    load::{Dialect, LoadOp, LoadSpec, run_load},
};
use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().expect("a literal address")
}

fn spec(url: String, op: LoadOp) -> LoadSpec {
    LoadSpec {
        url,
        dialect: Dialect::Kv,
        op,
        connections: 4,
        duration: Duration::from_millis(300),
        keys: 10,
        value_bytes: 16,
        timeout: Duration::from_secs(10),
        token: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puts_and_gets_are_counted_and_the_writes_land() {
    let options = ServerOptions::new(
        1,
        any_port(),
        BTreeMap::new(),
        any_port(),
        StorageChoice::Memory,
    );
    let server = Server::start(options).await.expect("the server starts");
    let url = format!("http://{}", server.http_addr());
    let client = KvClient::new(&server.http_addr().to_string())
        .expect("a valid address")
        .with_timeout(Duration::from_secs(10));

    let puts = run_load(&spec(url.clone(), LoadOp::Put))
        .await
        .expect("a valid load");
    assert_eq!(puts.errors, 0, "{puts}");
    assert!(puts.ok > 0, "{puts}");
    assert!(
        puts.p50_ms <= puts.p99_ms && puts.p99_ms <= puts.max_ms,
        "{puts}"
    );
    // With 10 keys and more puts than that in all, some key was written.
    let mut written = 0;
    for k in 0..10 {
        if client
            .get(&format!("k{k}"))
            .await
            .expect("the server answers")
            .is_some()
        {
            written += 1;
        }
    }
    assert!(written > 0, "no key written by {puts}");

    let gets = run_load(&spec(url, LoadOp::Get))
        .await
        .expect("a valid load");
    assert_eq!(gets.errors, 0, "{gets}");
    assert!(gets.ok > 0, "{gets}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_server_that_refuses_every_request_shows_as_errors() {
    // Something that answers HTTP but not the etcd gateway's routes: the
    // kv_store itself, spoken to in etcd's dialect.
    let options = ServerOptions::new(
        1,
        any_port(),
        BTreeMap::new(),
        any_port(),
        StorageChoice::Memory,
    );
    let server = Server::start(options).await.expect("the server starts");
    let mut s = spec(format!("http://{}", server.http_addr()), LoadOp::Put);
    s.dialect = Dialect::Etcd;
    s.connections = 1;
    let report = run_load(&s).await.expect("a valid load");
    assert_eq!(report.ok, 0, "{report}");
    assert!(report.errors > 0, "{report}");
    let first = report.first_error.as_deref().unwrap_or_default();
    assert!(first.starts_with("404"), "{first}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_load_that_cannot_run_says_why() {
    let mut s = spec("127.0.0.1:1".to_owned(), LoadOp::Put);
    let e = run_load(&s).await.expect_err("no scheme");
    assert!(e.to_string().contains("must start with http://"), "{e}");
    s.url = "http://127.0.0.1:1".to_owned();
    s.connections = 0;
    let e = run_load(&s).await.expect_err("no connections");
    assert!(e.to_string().contains("at least 1"), "{e}");
}
