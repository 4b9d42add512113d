//! The `kv_store` binary's failures: each is one clear sentence on stderr
//! and a non-zero exit, never a panic or a hang.

use std::{
    net::TcpListener,
    process::{Command, Output},
};

fn kv_store(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kv_store"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_server_whose_http_port_is_in_use_exits_with_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let http = taken.local_addr().unwrap().to_string();
    let out = kv_store(&[
        "server",
        "--id",
        "1",
        "--listen",
        "127.0.0.1:0",
        "--http",
        &http,
        "--memory",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("error: cannot listen for HTTP clients on {http}")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_server_whose_protocol_port_is_in_use_exits_with_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let out = kv_store(&[
        "server",
        "--id",
        "1",
        "--listen",
        &listen,
        "--http",
        "127.0.0.1:0",
        "--memory",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("cannot listen on {listen}")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_server_refuses_another_servers_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("kv_store.identity.json"),
        br#"{"cluster_id": 1, "node_id": 2}"#,
    )
    .unwrap();
    let dir = tmp.path().to_str().unwrap();
    let out = kv_store(&[
        "server",
        "--id",
        "1",
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--data-dir",
        dir,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("belongs to node 2 of cluster 1, but this is node 1 of cluster 1"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_flags_are_usage_errors() {
    let out = kv_store(&[
        "server",
        "--id",
        "1",
        "--listen",
        "127.0.0.1:0",
        "--peers",
        "2:x",
        "--memory",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("is not ID=ADDR"), "{}", stderr(&out));
    let out = kv_store(&["server", "--id", "1", "--listen", "127.0.0.1:0"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "neither --data-dir nor --memory"
    );
    let out = kv_store(&["cas", "k", "only-one"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cas takes KEY EXPECTED NEW"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_client_without_a_server_says_so() {
    let free = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = kv_store(&["get", "k", "--server", &format!("http://{free}")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot connect to"),
        "{}",
        stderr(&out)
    );
}

/// `server --join` refuses, with one `error:` line and exit status 1, when
/// no `--join` server answers, when they are of another cluster, and when
/// its id is a member already.
#[test]
fn a_joining_server_refuses_an_unreachable_cluster_another_cluster_and_a_taken_id() {
    use kv_store::{Server, ServerOptions, StorageChoice};
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // A one-server cluster (id 1, cluster 1), run by the runtime's threads
    // while this one runs the binary.
    let server = rt
        .block_on(Server::start(ServerOptions::new(
            1,
            any,
            Default::default(),
            any,
            StorageChoice::Memory,
        )))
        .expect("the server starts");
    let url = format!("http://{}", server.http_addr());
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let join = |id: &str, cluster: &str, urls: &str| {
        kv_store(&[
            "server",
            "--id",
            id,
            "--cluster-id",
            cluster,
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--memory",
            "--join",
            urls,
        ])
    };
    let cases = [
        (
            join("2", "1", &closed),
            format!(
                "error: cannot join: cannot reach any --join server: cannot connect to {closed}"
            ),
        ),
        (
            join("2", "9", &url),
            format!(
                "error: cannot join: {url} belongs to cluster 1, but this server is of cluster 9 (--cluster-id)"
            ),
        ),
        (
            join("1", "1", &format!("{closed},{url}")),
            format!(
                "error: cannot join: server id 1 is taken: it is a member of configuration 1 (as {url} says)"
            ),
        ),
    ];
    for (out, expected) in cases {
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{err}");
        assert!(errors[0].starts_with(&expected), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    rt.block_on(server.shutdown());
}

#[test]
fn a_bad_token_file_is_refused_with_the_reason_by_servers_and_clients() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "").unwrap();
    let empty = empty.to_str().unwrap();
    let out = kv_store(&[
        "server",
        "--id",
        "1",
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--memory",
        "--token-file",
        empty,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("must hold 1 to 4096 characters"),
        "{}",
        stderr(&out)
    );
    let absent = dir.path().join("absent");
    let out = kv_store(&["get", "k", "--token-file", absent.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot read the token file"),
        "{}",
        stderr(&out)
    );
}
