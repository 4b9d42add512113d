//! The three partial-connectivity scenarios of the Omni-Paxos paper
//! (quorum-loss, constrained election, chained). In each, the partition is
//! put in place and left there, and the cluster must decide new entries
//! within four election timeouts, as the paper claims for Omni-Paxos (Raft,
//! Multi-Paxos and VR stall in at least one of them).
//!
//! Every bound below is `4 * ETT + HOPS`. `HOPS` covers the message hops
//! after the election that the election timeouts do not: with no network
//! delay a hop takes one tick (a reply is sent in the step after the message
//! arrives), and a takeover needs Prepare, Promise, AcceptSync, Accepted and
//! the decide at the leader, with the proposal's own forward on top, so twice
//! that is ample.

use omnipaxos_tests::{SimCluster, SimOptions};

/// Ticks per heartbeat round in these tests (the default).
const ETT: u64 = 10;
/// Ticks for the message hops of a takeover; see the module doc.
const HOPS: u64 = 10;
/// The paper's recovery bound, in ticks.
const BOUND: u64 = 4 * ETT + HOPS;

fn options() -> SimOptions {
    let options = SimOptions::default();
    assert_eq!(options.election_tick_timeout, ETT);
    options
}

/// A 5-server cluster with a leader and one decided entry, and the followers.
fn steady_cluster(ids: &[u64]) -> (SimCluster, u64, Vec<u64>) {
    let mut cluster = SimCluster::new(ids, options());
    let leader = cluster.wait_for_leader(4 * ETT);
    let first = cluster.propose_new(leader);
    cluster.run_until(|c| c.all_live_decided(&first), 2 * ETT);
    let followers = ids.iter().copied().filter(|&p| p != leader).collect();
    (cluster, leader, followers)
}

/// Where a proposal of [`keeps_deciding`] is made.
#[derive(Clone, Copy, Debug)]
enum At {
    /// At this server.
    Server(u64),
    /// At whichever server leads at the time.
    Leader,
}

/// Proposes at each of `at` in turn, one election round apart, with the
/// partition unchanged; each proposal must be decided within the bound.
/// Shows the cluster keeps making progress rather than recovering once.
///
/// Only servers linked to the leader are asked: a follower forwards to the
/// leader directly, and a partition may leave it no direct link.
fn keeps_deciding(cluster: &mut SimCluster, at: &[At]) {
    for &target in at {
        cluster.run_for(ETT);
        let pid = match target {
            At::Server(pid) => pid,
            At::Leader => cluster.leader().expect("the cluster has a leader"),
        };
        let value = cluster.propose_new(pid);
        cluster.run_until(|c| c.decided_by_any(&value), BOUND);
    }
}

/// Quorum-loss: the leader keeps a link to one server C only; C is linked to
/// everyone; the others are linked to C only. C is the only quorum-connected
/// server, so it must take over, although the old leader is alive and still
/// talks to it.
#[test]
fn quorum_loss_scenario_decides_new_entries_within_four_election_timeouts() {
    let (mut cluster, leader, followers) = steady_cluster(&[1, 2, 3, 4, 5]);
    let c = followers[0];
    let mut links = vec![(leader, c)];
    links.extend(followers[1..].iter().map(|&p| (c, p)));
    cluster.only_links(&links);

    let value = cluster.propose_new(c);
    cluster.run_until(|cl| cl.decided_by_any(&value), BOUND);
    // Only C reaches a majority, so only C can have got it decided.
    assert!(cluster.node(c).is_leader());

    keeps_deciding(
        &mut cluster,
        &[
            At::Server(followers[1]),
            At::Server(followers[2]),
            At::Server(leader),
            At::Server(c),
        ],
    );
}

/// Constrained election: C missed the latest decided entries (it was cut off
/// while they were decided). Then the leader is cut off entirely and the
/// others keep a link to C only. C, with its outdated log, is the only
/// quorum-connected server: it must be elected and fetch the entries it
/// lacks from the others' promises, instead of being refused for its log.
#[test]
fn constrained_election_scenario_decides_new_entries_within_four_election_timeouts() {
    let (mut cluster, leader, followers) = steady_cluster(&[1, 2, 3, 4, 5]);
    let c = followers[0];
    let rest = followers[1..].to_vec();

    cluster.isolate(c);
    let missed: Vec<_> = (0..3).map(|_| cluster.propose_new(leader)).collect();
    cluster.run_until(
        |cl| {
            missed
                .iter()
                .all(|v| rest.iter().all(|&p| cl.is_decided(p, v)))
        },
        2 * ETT,
    );
    assert!(
        missed.iter().all(|v| !cluster.is_decided(c, v)),
        "C is outdated"
    );

    let links: Vec<_> = rest.iter().map(|&p| (c, p)).collect();
    cluster.only_links(&links);
    let value = cluster.propose_new(c);
    cluster.run_until(|cl| cl.decided_by_any(&value), BOUND);
    assert!(cluster.node(c).is_leader());
    // C's log now holds what it had missed, ahead of the new entry.
    let log = cluster.decided_entries(c);
    assert_eq!(
        &log[log.len() - 4..],
        &[missed[0], missed[1], missed[2], value]
    );

    keeps_deciding(
        &mut cluster,
        &[At::Server(rest[0]), At::Server(c), At::Server(rest[2])],
    );
}

/// Chained: the leader loses its link to one follower only; the middle server
/// still talks to both. The cut-off follower must not disrupt the cluster
/// forever, and new entries must be decided. Proposals go to the middle
/// server and to the leader, which both have a link to whoever leads.
#[test]
fn chained_scenario_decides_new_entries_within_four_election_timeouts() {
    let (mut cluster, leader, followers) = steady_cluster(&[1, 2, 3]);
    let (far, middle) = (followers[0], followers[1]);
    cluster.cut_both(leader, far);

    let value = cluster.propose_new(middle);
    cluster.run_until(|cl| cl.decided_by_any(&value), BOUND);

    keeps_deciding(
        &mut cluster,
        &[
            At::Server(middle),
            At::Leader,
            At::Server(middle),
            At::Leader,
        ],
    );
}

/// Chained, continued: once entries are decided again, leadership settles.
/// The paper's point about this scenario is that the servers do not keep
/// taking leadership from each other, so one leader holds one ballot for a
/// long stretch while the partition stays.
#[test]
fn chained_scenario_settles_on_one_leader() {
    let (mut cluster, leader, followers) = steady_cluster(&[1, 2, 3]);
    let (far, middle) = (followers[0], followers[1]);
    cluster.cut_both(leader, far);
    let value = cluster.propose_new(middle);
    cluster.run_until(|cl| cl.decided_by_any(&value), BOUND);
    // Let any takeover the cut triggers play out.
    cluster.run_for(4 * ETT);

    let settled = cluster.leader().expect("a leader decided the entry");
    let ballot = cluster.node(settled).get_promise();
    for _ in 0..10 * ETT {
        cluster.step();
        assert_eq!(
            cluster.leader().map(|l| (l, cluster.node(l).get_promise())),
            Some((settled, ballot)),
            "leadership changed at tick {}",
            cluster.now()
        );
    }
}
