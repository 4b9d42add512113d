//! `kv_store top`'s polling: the protocol states of the servers that answer,
//! and one sentence for each that does not (unreachable, or not a kv_store).

use kv_store::{KvClient, Server, ServerOptions, StorageChoice, top::poll};
use std::{collections::BTreeMap, time::Duration};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

#[tokio::test]
async fn a_poll_gives_the_states_of_servers_that_answer_and_a_sentence_for_the_others() {
    let any = "127.0.0.1:0".parse().unwrap();
    let server = Server::start(ServerOptions::new(
        1,
        any,
        BTreeMap::new(),
        any,
        StorageChoice::Memory,
    ))
    .await
    .expect("the server starts");
    // A port nobody listens on.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    // Something that answers HTTP, but not like a kv_store.
    let other = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other_addr = other.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = other.accept().await {
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf).await;
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello")
                .await;
        }
    });

    let clients: Vec<KvClient> = [
        server.http_addr().to_string(),
        closed_addr.to_string(),
        other_addr.to_string(),
    ]
    .iter()
    .map(|a| KvClient::new(a).unwrap())
    .collect();
    // The single server elects itself; wait until its state says so.
    let mut found = None;
    for _ in 0..100 {
        let p = poll(&clients, Duration::from_secs(2)).await;
        if p.states.first().is_some_and(|s| s.current_leader.is_some()) {
            found = Some(p);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let p = found.expect("the server answers with its protocol state");
    assert_eq!(p.states.len(), 1);
    assert_eq!(p.states[0].pid, 1);
    assert_eq!(p.first.as_ref().map(|s| s.pid), Some(1));
    assert_eq!(p.problems.len(), 2, "{:?}", p.problems);
    let about = |addr: std::net::SocketAddr| {
        p.problems
            .iter()
            .find(|(url, _)| url.contains(&addr.to_string()))
            .map(|(_, problem)| problem.clone())
            .unwrap_or_default()
    };
    assert!(
        about(closed_addr).contains("is unreachable"),
        "{:?}",
        p.problems
    );
    assert!(
        about(other_addr).contains("does not answer like a kv_store server"),
        "{:?}",
        p.problems
    );
    server.shutdown().await;
}
