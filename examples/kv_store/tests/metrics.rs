//! `GET /metrics` and the per-peer part of `GET /status`: a scrape parses as
//! the Prometheus text format, counts every write and read where it was
//! made, and agrees with what `/status` says; `/status` shows every peer and,
//! once the cluster is idle, every link up and every log caught up.
//!
//! Gauges move while a server runs, so a scrape is compared with the statuses
//! taken just before and just after it: the figures compared (leader ballot,
//! indices) never go back, so where the two statuses agree the scrape between
//! them must show the same. Waits poll `/status` with deadlines; nothing
//! sleeps to let something happen.

mod exposition;

use exposition::{Exposition, parse};
use kv_store::{
    KvClient, Server, ServerOptions, StorageChoice,
    api::{Role, StatusResponse},
    cluster::{ClusterOptions, ProcessCluster},
};
use omnipaxos::util::NodeId;
use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every outcome label the runtime counts appends and reads under.
const OUTCOMES: [&str; 10] = [
    "ok",
    "no_leader",
    "buffer_full",
    "timeout",
    "reconfigured",
    "shut_down",
    "storage_failure",
    "rejected",
    "not_started",
    "abandoned",
];

/// How long the cluster may take to settle (elect, connect, catch up).
const SETTLE: Duration = Duration::from_secs(20);

/// A scrape of `c` and the status taken just before it, once the status
/// taken just after agrees with the one before on everything compared.
async fn scrape_between_statuses(c: &KvClient) -> (StatusResponse, Exposition) {
    let key = |s: &StatusResponse| {
        (
            s.leader_ballot,
            s.role,
            s.decided_idx,
            s.accepted_idx,
            s.compacted_idx,
            s.applied_idx,
            s.keys,
        )
    };
    for _ in 0..100 {
        let before = c.status().await.expect("status");
        let text = c.metrics().await.expect("metrics");
        let after = c.status().await.expect("status");
        if key(&before) == key(&after) {
            let scrape = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            return (before, scrape);
        }
    }
    panic!("{} never held still for one scrape", c.server());
}

/// Checks what a scrape must show of a server whose status is `st` and on
/// which `writes` writes and `reads` linearizable reads were made.
fn check_scrape(m: &Exposition, st: &StatusResponse, writes: u64, reads: u64, peers: &[NodeId]) {
    let who = format!("server {}", st.pid);
    let f = |v: u64| v as f64;
    assert_eq!(
        m.get("omnipaxos_decided_index", &[]),
        f(st.decided_idx),
        "{who}"
    );
    assert_eq!(
        m.get("omnipaxos_accepted_index", &[]),
        f(st.accepted_idx),
        "{who}"
    );
    assert_eq!(
        m.get("omnipaxos_compacted_index", &[]),
        f(st.compacted_idx),
        "{who}"
    );
    assert_eq!(
        m.get("kv_store_applied_index", &[]),
        f(st.applied_idx),
        "{who}"
    );
    assert_eq!(m.get("kv_store_keys", &[]), st.keys as f64, "{who}");
    let leader = st.leader.expect("the cluster has a leader");
    let ballot = st.leader_ballot.expect("a leader has a ballot");
    assert_eq!(m.get("omnipaxos_leader_id", &[]), f(leader), "{who}");
    assert_eq!(
        m.get("omnipaxos_leader_ballot_round", &[]),
        f(u64::from(ballot.n))
    );
    assert_eq!(
        m.get("omnipaxos_configuration_id", &[]),
        f(u64::from(st.configuration_id))
    );
    // One `kv_store_member` series per member of the configuration, with
    // the address `/status` gives it, and no other.
    let members: BTreeMap<String, String> = m
        .families
        .get("kv_store_member")
        .map(|f| {
            f.samples
                .iter()
                .map(|s| {
                    assert_eq!(s.value, 1.0, "{who}: {s:?}");
                    (s.labels["member"].clone(), s.labels["peer_addr"].clone())
                })
                .collect()
        })
        .unwrap_or_default();
    let expected_members: BTreeMap<String, String> = st
        .members
        .iter()
        .map(|s| (s.id.to_string(), s.peer_addr.clone().unwrap_or_default()))
        .collect();
    assert_eq!(members, expected_members, "{who}");
    assert_eq!(
        st.members.len(),
        peers.len() + 1,
        "{who}: /status lists every member"
    );
    assert!(
        st.members.iter().all(|s| s.peer_addr.is_some()),
        "{who}: every member's address is known: {:?}",
        st.members
    );
    assert_eq!(m.get("kv_store_joining", &[]), 0.0, "{who}");
    let roles = m.by_label("omnipaxos_role", "role");
    let expected_roles: BTreeMap<String, f64> = [Role::Leader, Role::Follower, Role::NoLeader]
        .into_iter()
        .map(|r| (r.as_str().to_owned(), if r == st.role { 1.0 } else { 0.0 }))
        .collect();
    assert_eq!(roles, expected_roles, "{who}");
    // It follows a leader, so it counted at least that leader's ballot; the
    // leader adopted a ballot of its own to lead with.
    let changes = m.get("omnipaxos_leader_changes_total", &[]);
    let elections = m.get("omnipaxos_elections_started_total", &[]);
    assert!(
        changes >= 1.0 && elections <= changes,
        "{who}: {changes} {elections}"
    );
    if st.role == Role::Leader {
        assert!(elections >= 1.0, "{who} leads under its own ballot");
    }
    assert_eq!(
        m.get(
            "kv_store_server_info",
            &[
                ("pid", &st.pid.to_string()),
                ("cluster_id", &st.cluster_id.to_string()),
                ("storage", &st.storage),
            ]
        ),
        1.0
    );

    // Each write and read is counted once, where it was made, and none failed.
    let appends = m.by_label("omnipaxos_appends_total", "outcome");
    let outcomes: BTreeSet<&str> = OUTCOMES.into_iter().collect();
    assert_eq!(
        appends.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        outcomes
    );
    assert_eq!(appends["ok"], f(writes), "{who}: {appends:?}");
    assert_eq!(
        appends.values().sum::<f64>(),
        f(writes),
        "{who}: {appends:?}"
    );
    let linearizable = m.by_label("omnipaxos_reads_total", "outcome");
    assert_eq!(linearizable["ok"], f(reads), "{who}: {linearizable:?}");
    assert_eq!(linearizable.values().sum::<f64>(), f(reads));
    assert_eq!(
        m.get("kv_store_write_duration_seconds_count", &[]),
        f(writes)
    );
    assert_eq!(m.get("kv_store_read_duration_seconds_count", &[]), f(reads));
    // The server persisted at least its promise and the entries it holds.
    assert!(m.get("kv_store_storage_write_duration_seconds_count", &[]) >= 1.0);

    // One series per peer in every per-peer family; a frame is at least its
    // 4-byte header and one byte of body, and a message's bytes are counted
    // no later than the message.
    let peer_labels: BTreeSet<String> = peers.iter().map(ToString::to_string).collect();
    for (name, family) in &m.families {
        if name.starts_with("omnipaxos_net_")
            && family.samples.iter().any(|s| s.labels.contains_key("peer"))
        {
            let labels: BTreeSet<String> = m.by_label(name, "peer").into_keys().collect();
            assert_eq!(labels, peer_labels, "{who}: {name}");
        }
    }
    for p in &peer_labels {
        let peer = [("peer", p.as_str())];
        let connected = m.get("omnipaxos_net_peer_connected", &peer);
        assert!(connected == 0.0 || connected == 1.0);
        for dir in ["sent", "received"] {
            let messages = m.get(&format!("omnipaxos_net_{dir}_messages_total"), &peer);
            let bytes = m.get(&format!("omnipaxos_net_{dir}_bytes_total"), &peer);
            assert!(
                bytes >= 5.0 * messages,
                "{who} {dir} {p}: {bytes} < 5 × {messages}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_server_scrape_counts_every_write_where_it_was_made_and_agrees_with_status() {
    let mut cluster = ProcessCluster::start(ClusterOptions::new(env!("CARGO_BIN_EXE_kv_store")))
        .await
        .expect("the servers start");
    let leader = cluster.wait_for_leader(SETTLE).await.expect("a leader");
    let ids = cluster.ids();
    let follower = *ids.iter().find(|&&id| id != leader).expect("three servers");
    // Writes and reads at the leader and at a follower (which forwards its
    // writes), none at the third server.
    let made: BTreeMap<NodeId, (u64, u64)> = BTreeMap::from([(leader, (6, 2)), (follower, (4, 3))]);
    for (&id, &(writes, reads)) in &made {
        let c = cluster
            .client(id)
            .unwrap()
            .with_timeout(Duration::from_secs(10));
        for i in 0..writes {
            c.put(&format!("k{id}-{i}"), "v")
                .await
                .expect("the write succeeds");
        }
        for _ in 0..reads {
            c.get("k-none").await.expect("the read succeeds");
        }
    }
    let total_writes: u64 = made.values().map(|(w, _)| w).sum();

    // Idle now: wait until every server has applied every write, every link
    // and heartbeat gets through, and the leader knows every peer has its log.
    let settled = cluster
        .wait_for("every server caught up and connected", SETTLE, |s| {
            let all = s.len() == ids.len()
                && s.values().all(|st| {
                    st.applied_idx >= total_writes
                        && st.decided_idx == st.applied_idx
                        && st.leader.is_some()
                        && st.cluster.len() == ids.len() - 1
                        && st
                            .cluster
                            .iter()
                            .all(|p| p.connected && p.outbound_link && p.inbound_link)
                });
            let leader_status = s.values().find(|st| st.role == Role::Leader)?;
            let caught_up = leader_status
                .cluster
                .iter()
                .all(|p| p.accepted_idx == Some(leader_status.accepted_idx) && p.behind == Some(0));
            (all && caught_up).then_some(())
        })
        .await;
    settled.expect("the cluster settles");

    let mut appends_ok = 0.0;
    for &id in &ids {
        let c = cluster.client(id).unwrap();
        let (st, m) = scrape_between_statuses(&c).await;
        let (writes, reads) = made.get(&id).copied().unwrap_or((0, 0));
        let peers: Vec<NodeId> = ids.iter().copied().filter(|&p| p != id).collect();
        check_scrape(&m, &st, writes, reads, &peers);
        assert_eq!(
            st.cluster.iter().map(|p| p.pid).collect::<Vec<_>>(),
            peers,
            "/status lists every peer in id order"
        );
        appends_ok += m.get("omnipaxos_appends_total", &[("outcome", "ok")]);
    }
    assert_eq!(appends_ok, total_writes as f64);
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_lone_server_serves_its_counts_in_the_prometheus_text_format() {
    let any_port = "127.0.0.1:0".parse().expect("a literal address");
    let opts = ServerOptions::new(
        1,
        any_port,
        BTreeMap::new(),
        any_port,
        StorageChoice::Memory,
    );
    let server = Server::start(opts).await.expect("the server starts");
    let c = KvClient::new(&server.http_addr().to_string()).expect("a valid address");
    for i in 0..3 {
        c.put(&format!("k{i}"), "v").await.unwrap();
    }
    c.delete("k0").await.unwrap();
    c.get("k1").await.unwrap();
    c.scan("k", 10).await.unwrap();
    // A stale read asks nothing of the cluster and is not a linearizable read.
    c.get_stale("k1").await.unwrap();

    let (st, m) = scrape_between_statuses(&c).await;
    check_scrape(&m, &st, 4, 2, &[]);
    assert_eq!((st.role, st.keys), (Role::Leader, 2));
    assert!(st.cluster.is_empty() && st.quorum_connected, "{st:?}");

    // The answer says which format it is in, as Prometheus expects.
    let mut tcp = tokio::net::TcpStream::connect(server.http_addr())
        .await
        .unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nhost: kv\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    let head = answer
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.lines()
            .any(|l| l == "content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    server.shutdown().await;
}
