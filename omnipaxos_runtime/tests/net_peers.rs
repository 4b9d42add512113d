//! The transport's peer set changes while it runs: a peer added on both
//! sides joins the traffic, a removed one is cut off and gone from the
//! counters, a re-pointed one is dialed at its new address, and what cannot
//! be a peer is refused with a typed error; and a transport follows a
//! reconfiguration that carries the new servers' addresses.
//!
//! Every wait is for a condition (a node status or a transport counter),
//! bounded by a timeout; none sleeps to let something happen.

mod common;

use common::{
    Value,
    cluster::{
        Member, WAIT, bind_all, loopback, memory_cluster, net_config, start_node, stop_all,
        wait_common_leader, wait_decided, wait_stats, wait_status,
    },
};
use omnipaxos::util::NodeId;
use omnipaxos_runtime::net::{InvalidPeer, NetError, NetStats, PeerAddresses, Transport};
use omnipaxos_storage::memory_storage::MemoryStorage;
use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

/// Port 9 (discard) on loopback: nothing listens there, so dials fail fast.
fn nowhere() -> SocketAddr {
    "127.0.0.1:9".parse().unwrap()
}

/// Whether both links between this node and `peer` are up, as `stats` shows.
fn linked(stats: &NetStats, peer: NodeId) -> bool {
    stats
        .peers
        .get(&peer)
        .is_some_and(|p| p.connected && p.inbound_connected)
}

/// Whether this node has no link to or from `peer`.
fn unlinked(stats: &NetStats, peer: NodeId) -> bool {
    stats
        .peers
        .get(&peer)
        .is_none_or(|p| !p.connected && !p.inbound_connected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_server_added_on_both_sides_at_run_time_links_every_pair_and_catches_up() {
    // All three run the configuration {1, 2, 3}, but at first the
    // transports of 1 and 2 know only each other: they decide as a majority
    // while their messages for 3 are dropped.
    let configs = [1, 2, 3]
        .into_iter()
        .map(|p| net_config(p, loopback(), None))
        .collect();
    let mut bound = bind_all(configs).await;
    let addrs: BTreeMap<NodeId, SocketAddr> =
        bound.iter().map(|(p, b)| (*p, b.local_addr())).collect();
    bound.get_mut(&1).unwrap().peers_mut().remove(&3);
    bound.get_mut(&2).unwrap().peers_mut().remove(&3);
    let node_peers = |pid: NodeId| [1, 2, 3].into_iter().filter(|p| *p != pid).collect();
    let third = bound.remove(&3).unwrap();
    let mut members: BTreeMap<NodeId, Member> = bound
        .into_iter()
        .map(|(pid, b)| {
            (
                pid,
                start_node(b, MemoryStorage::default(), node_peers(pid)),
            )
        })
        .collect();
    wait_common_leader(&members).await;
    let first = members[&1].node.append(Value(1)).await.unwrap();
    for m in members.values() {
        wait_decided(&m.node, first + 1).await;
        wait_stats(&m.transport, "messages for 3 dropped", |s| {
            s.unknown_receiver > 0 && !s.peers.contains_key(&3)
        })
        .await;
    }

    // Node 3 starts knowing 1 and 2; they refuse it until they add it.
    members.insert(
        3,
        start_node(third, MemoryStorage::default(), node_peers(3)),
    );
    for pid in [1, 2] {
        members[&pid].transport.add_peer(3, addrs[&3]).unwrap();
        assert_eq!(members[&pid].transport.peers()[&3], addrs[&3]);
        assert!(members[&pid].transport.stats().peers.contains_key(&3));
    }
    for (pid, m) in &members {
        for other in [1, 2, 3].into_iter().filter(|p| p != pid) {
            wait_stats(&m.transport, &format!("{pid} <-> {other} up"), |s| {
                linked(s, other)
            })
            .await;
        }
    }

    // Node 3 learns what was decided without it, and decides what follows.
    let second = members[&2].node.append(Value(2)).await.unwrap();
    for m in members.values() {
        wait_decided(&m.node, second + 1).await;
    }
    for (pid, m) in &members {
        for other in [1, 2, 3].into_iter().filter(|p| p != pid) {
            wait_stats(&m.transport, &format!("{pid} <-> {other} traffic"), |s| {
                s.peers[&other].sent > 0 && s.peers[&other].received > 0
            })
            .await;
        }
    }
    stop_all(members).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_peer_is_cut_off_and_gone_from_the_stats_and_can_be_added_again() {
    let members = memory_cluster(&[1, 2, 3], None).await;
    for (pid, m) in &members {
        for other in [1, 2, 3].into_iter().filter(|p| p != pid) {
            wait_stats(&m.transport, "every link up", |s| linked(s, other)).await;
        }
    }
    let addr3 = members[&3].transport.local_addr();
    let one = &members[&1].transport;
    one.remove_peer(3).unwrap();
    assert!(!one.peers().contains_key(&3));
    assert!(!one.stats().peers.contains_key(&3), "{:?}", one.stats());
    // Removing it again, or a pid that never was a peer, changes nothing.
    one.remove_peer(3).unwrap();
    one.remove_peer(9).unwrap();

    // Node 1 closed its link to 3 and 3's link to it, and refuses 3's
    // redials; its messages for 3 are dropped and counted.
    wait_stats(&members[&3].transport, "3 cut off from 1", |s| {
        unlinked(s, 1)
    })
    .await;
    wait_stats(one, "3's redials refused, messages for 3 dropped", |s| {
        s.rejected_connections > 0 && s.unknown_receiver > 0
    })
    .await;
    assert!(!one.stats().peers.contains_key(&3));

    // The cluster still decides: node 2 reaches both others, and the
    // leader, whichever it is, reaches a majority through it.
    let idx = members[&2].node.append(Value(1)).await.unwrap();
    wait_decided(&members[&2].node, idx + 1).await;

    one.add_peer(3, addr3).unwrap();
    wait_stats(one, "1 <-> 3 up again", |s| linked(s, 3)).await;
    wait_stats(&members[&3].transport, "3 <-> 1 up again", |s| linked(s, 1)).await;
    stop_all(members).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_re_pointed_at_another_address_is_dialed_there_with_fresh_counters() {
    let members = memory_cluster(&[1, 2, 3], None).await;
    let one = &members[&1].transport;
    let addr2 = members[&2].transport.local_addr();
    wait_stats(one, "1 <-> 2 up", |s| linked(s, 2)).await;
    wait_stats(one, "1 sent to 2", |s| s.peers[&2].sent > 0).await;

    // The same address again is no change: the link and its counters stay.
    one.add_peer(2, addr2).unwrap();
    let stats = one.stats();
    assert!(
        stats.peers[&2].connected && stats.peers[&2].sent > 0,
        "{stats:?}"
    );

    // Re-pointed: 1 dials nowhere, so 2 loses its inbound link from 1; and
    // 1 closed 2's link to it, which 2 redials (2 is still a peer of 1).
    one.add_peer(2, nowhere()).unwrap();
    assert_eq!(one.peers()[&2], nowhere());
    let two = &members[&2].transport;
    wait_stats(two, "1 -> 2 down, 2 -> 1 redialed", |s| {
        !s.peers[&1].inbound_connected && s.peers[&1].connected && s.peers[&1].reconnects > 0
    })
    .await;
    let stats = one.stats();
    assert!(!stats.peers[&2].connected, "{stats:?}");
    assert_eq!(stats.peers[&2].sent, 0, "fresh counters: {stats:?}");

    one.add_peer(2, addr2).unwrap();
    wait_stats(one, "1 <-> 2 up at the right address", |s| linked(s, 2)).await;
    stop_all(members).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_cannot_be_a_peer_is_refused_with_a_typed_error_and_changes_nothing() {
    let members = memory_cluster(&[1, 2], None).await;
    let one = &members[&1].transport;
    let before = one.peers();
    let own = one.local_addr();
    for (pid, addr, reason) in [
        (0, nowhere(), InvalidPeer::ZeroPid),
        (1, nowhere(), InvalidPeer::OwnPid),
        (3, own, InvalidPeer::OwnAddress),
        (3, "127.0.0.1:0".parse().unwrap(), InvalidPeer::Undialable),
        (3, "0.0.0.0:7000".parse().unwrap(), InvalidPeer::Undialable),
    ] {
        let err = one.add_peer(pid, addr).unwrap_err();
        assert!(
            matches!(err, NetError::InvalidPeer { pid: p, addr: a, reason: r } if p == pid && a == addr && r == reason),
            "{err:?}"
        );
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }
    assert_eq!(one.peers(), before);

    // Once the node has stopped, so has the transport, and its peer set no
    // longer changes. The transport stops on its own shortly after the node,
    // with no event to wait on: poll, bounded.
    let Member { node, transport } = members.into_values().next().unwrap();
    node.shutdown().await;
    let stopped = tokio::time::timeout(WAIT, async {
        loop {
            match transport.add_peer(3, nowhere()) {
                Err(NetError::Stopped) => return,
                Ok(()) => {
                    transport.remove_peer(3).unwrap();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(e) => panic!("{e:?}"),
            }
        }
    })
    .await;
    assert!(stopped.is_ok(), "the transport did not stop with its node");
    assert!(matches!(transport.remove_peer(2), Err(NetError::Stopped)));
    assert_eq!(transport.peers(), before);
    transport.shutdown().await;
}

/// `Transport` is shared across tasks: add and remove from several while
/// the cluster decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_change_from_many_tasks_while_messages_flow() {
    let members = memory_cluster(&[1, 2, 3], None).await;
    wait_common_leader(&members).await;
    let one = std::sync::Arc::new(members.into_iter().collect::<Vec<_>>());
    let churn: Vec<_> = (10..14)
        .map(|pid| {
            let one = std::sync::Arc::clone(&one);
            tokio::spawn(async move {
                let t = &one[0].1.transport;
                for _ in 0..50 {
                    t.add_peer(pid, nowhere()).unwrap();
                    tokio::task::yield_now().await;
                    t.remove_peer(pid).unwrap();
                }
            })
        })
        .collect();
    for i in 0..20 {
        one[0].1.node.append(Value(i)).await.unwrap();
    }
    for c in churn {
        c.await.unwrap();
    }
    let t = &one[0].1.transport;
    assert_eq!(t.peers().keys().copied().collect::<Vec<_>>(), [2, 3]);
    assert_eq!(t.stats().peers.keys().copied().collect::<Vec<_>>(), [2, 3]);
    let members = std::sync::Arc::into_inner(one)
        .unwrap()
        .into_iter()
        .collect();
    stop_all(members).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decided_stop_sign_naming_a_fourth_servers_address_makes_every_old_transport_add_it() {
    let members = memory_cluster(&[1, 2, 3], None).await;
    // Server 4's listener exists; its node would start in configuration 2.
    let four = Transport::bind(net_config(4, loopback(), None))
        .await
        .unwrap();
    let addr4 = four.local_addr();
    let leader = wait_common_leader(&members).await;
    let addrs = PeerAddresses::new(BTreeMap::from([(4, addr4)]));
    let ss = members[&leader]
        .node
        .reconfigure(addrs.request(vec![1, 2, 3, 4]))
        .await
        .unwrap();
    assert_eq!(ss.nodes, [1, 2, 3, 4]);
    for (pid, m) in &members {
        // Every old server is in the next configuration: each moves into it.
        wait_status(&m.node, "the move to configuration 2", |s| {
            s.configuration_id == 2
        })
        .await;
        // The transport acts on the status change by itself, with no event
        // to wait on: poll, bounded.
        let added = tokio::time::timeout(WAIT, async {
            while m.transport.peers().get(&4) != Some(&addr4) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(
            added.is_ok(),
            "{pid} did not add 4: {:?}",
            m.transport.peers()
        );
        let peers = m.transport.peers();
        assert_eq!(peers.len(), 3, "{pid}: {peers:?}");
        assert!(m.transport.stats().peers.contains_key(&4));
    }
    stop_all(members).await;
    drop(four);
}

/// Seed 003's replacement over TCP: node 3 is replaced by node 4, whose
/// address travels in the stop-sign. The old transports add node 4 by
/// themselves; node 4 joins knowing only the old servers' addresses, pulls
/// the log, and the new configuration decides appends made at node 4.
#[tokio::test]
async fn replacing_a_server_over_tcp_moves_the_cluster_to_the_new_server() {
    let members = memory_cluster(&[1, 2, 3], None).await;
    let leader = wait_common_leader(&members).await;
    for v in 0..50 {
        members[&leader].node.append(Value(v)).await.unwrap();
    }
    // Node 4: a transport that knows where the old servers are, and a node
    // that joins configuration 2.
    let mut bound4 = Transport::bind(net_config(4, loopback(), None))
        .await
        .unwrap();
    for (pid, m) in &members {
        bound4.peers_mut().insert(*pid, m.transport.local_addr());
    }
    let addr4 = bound4.local_addr();
    let mut node_conf = omnipaxos_runtime::NodeConfig::default();
    node_conf.omnipaxos_config_mut().configuration_id = 2;
    node_conf.set_pid(4);
    node_conf.set_peers(vec![1, 2]);
    let omnipaxos_runtime::OmniPaxosHandle {
        omni_paxos: node4,
        seq_paxos_handle,
        ble_handle,
    } = omnipaxos_runtime::OmniPaxosNode::join(node_conf, MemoryStorage::default(), vec![1, 2, 3]);
    let transport4 = bound4
        .start(node4.clone(), seq_paxos_handle, ble_handle)
        .unwrap();

    let addrs = PeerAddresses::new(BTreeMap::from([(4, addr4)]));
    let ss = members[&1]
        .node
        .reconfigure(addrs.request(vec![1, 2, 4]))
        .await
        .expect("the new configuration has a leader");
    assert_eq!(ss.nodes, [1, 2, 4]);
    wait_status(&node4, "node 4 to join", |s| {
        !s.joining && s.leader.is_some()
    })
    .await;
    let idx = node4.append(Value(1000)).await.expect("append at node 4");
    assert_eq!(idx, 50);
    for pid in [1, 2] {
        wait_decided(&members[&pid].node, 51).await;
        assert_eq!(members[&pid].node.status().configuration_id, 2);
    }
    let log4 = node4.read_entries(0..51).await.unwrap();
    let log1 = members[&1].node.read_entries(0..51).await.unwrap();
    assert_eq!(format!("{log4:?}"), format!("{log1:?}"));
    stop_all(members).await;
    transport4.shutdown().await;
    node4.shutdown().await;
}
