//! Reconfiguration in the simulator: the cluster moves servers on to the
//! next configuration, starts new ones that pull the old log, retires the
//! servers that leave, and checks every invariant across the transition.

use omnipaxos::util::NodeId;
use omnipaxos_tests::{SimCluster, SimOptions, SimStorage, Value};
use rand::Rng;

/// Steps until configuration `id` has begun and every one of its servers is
/// in it with the log, and returns the number of steps.
fn wait_for_configuration(c: &mut SimCluster, id: u32, max_ticks: u64) -> u64 {
    c.run_until(
        |c| c.config_id() == id && c.ids().iter().all(|&p| c.is_current(p)),
        max_ticks,
    )
}

/// Proposes a fresh value at a random server of the current configuration
/// (followers forward to the leader), if it takes the value: a server refuses
/// once a stop-sign is in its log. A value taken but not decided before the
/// stop-sign is proposed again in the next configuration.
fn propose_somewhere(c: &mut SimCluster) -> Option<Value> {
    let live: Vec<_> = c
        .ids()
        .iter()
        .copied()
        .filter(|&p| c.is_up(p) && c.is_current(p))
        .collect();
    if live.is_empty() {
        return None;
    }
    let at = live[c.rng().gen_range(0..live.len())];
    let v = c.next_value();
    c.propose(at, v).ok().map(|()| v)
}

/// The new configuration holds exactly the old one's decided log below the
/// stop-sign's index `log_len`, on every server of it.
fn assert_log_carried_over(c: &SimCluster, log_len: usize) {
    let old: Vec<Value> = c.decided_log()[..log_len].to_vec();
    for &pid in c.ids() {
        let entries = c.decided_entries(pid);
        assert!(
            entries.len() >= log_len,
            "server {pid} decided {} entries, fewer than the old log's {log_len}",
            entries.len()
        );
        assert_eq!(
            entries[..log_len],
            old[..],
            "server {pid}'s log below {log_len}"
        );
    }
}

/// Checks what every reconfiguration scenario ends with: the new
/// configuration decides a fresh proposal on all of its servers, and the
/// servers that left are retired.
fn assert_new_configuration_is_live(c: &mut SimCluster, left: &[NodeId]) {
    let leader = c.wait_for_leader(400);
    let fresh = c.propose_new(leader);
    c.run_until(|c| c.all_live_decided(&fresh), 400);
    c.run_until(|c| left.iter().all(|&p| c.is_retired(p)), 100);
}

#[test]
fn replacing_one_of_five_servers_while_proposals_keep_coming_keeps_the_log() {
    let mut c = SimCluster::new(
        &[1, 2, 3, 4, 5],
        SimOptions {
            drop_probability: 0.05,
            max_delay_ticks: 2,
            ..SimOptions::with_seed(11)
        },
    );
    let leader = c.wait_for_leader(200);
    let leaving = c.others(leader)[0];
    let mut members: Vec<NodeId> = c.others(leaving);
    members.push(101);
    for _ in 0..20 {
        propose_somewhere(&mut c);
        c.step();
    }
    c.reconfigure(leader, &members).unwrap();
    // Clients keep proposing through the transition.
    let mut steps = 0;
    while !(c.config_id() == 2 && c.ids().iter().all(|&p| c.is_current(p))) {
        propose_somewhere(&mut c);
        c.step();
        steps += 1;
        assert!(
            steps < 600,
            "configuration 2 did not form:\n{}",
            c.describe()
        );
    }
    let log_len = c
        .configurations()
        .get(2)
        .expect("configuration 2 formed")
        .start as usize;
    // Proposals that had not reached the leader when it took the stop-sign
    // go to the new configuration; most of the twenty made before are old.
    assert!(
        log_len >= 10,
        "the old configuration decided {log_len} entries"
    );
    assert_new_configuration_is_live(&mut c, &[leaving]);
    assert_log_carried_over(&c, log_len);
}

#[test]
fn replacing_a_majority_moves_the_log_to_the_new_servers() {
    let mut c = SimCluster::new(&[1, 2, 3, 4, 5], SimOptions::with_seed(12));
    let leader = c.wait_for_leader(200);
    for _ in 0..30 {
        c.propose_new(leader);
    }
    let last = c.propose_new(leader);
    c.run_until(|c| c.all_live_decided(&last), 100);
    let log_len = c.decided_log().len();
    // Keep the leader and one other server; three new ones join.
    let kept = c.others(leader)[0];
    let members = [leader, kept, 101, 102, 103];
    let left: Vec<NodeId> = c
        .ids()
        .iter()
        .copied()
        .filter(|p| !members.contains(p))
        .collect();
    c.reconfigure(leader, &members).unwrap();
    wait_for_configuration(&mut c, 2, 300);
    assert_log_carried_over(&c, log_len);
    assert_new_configuration_is_live(&mut c, &left);
    assert_log_carried_over(&c, log_len);
}

#[test]
fn the_leader_crashing_mid_reconfiguration_does_not_stop_it() {
    let mut c = SimCluster::new(&[1, 2, 3, 4, 5], SimOptions::with_seed(13));
    let leader = c.wait_for_leader(200);
    for _ in 0..10 {
        c.propose_new(leader);
    }
    let mut members = c.others(leader);
    members.push(101);
    c.reconfigure(leader, &members).unwrap();
    // The stop-sign reaches the followers, then the leader crashes before
    // it learns that they accepted it.
    c.step();
    c.crash(leader);
    for pid in c.live_ids() {
        assert_eq!(c.node(pid).is_reconfigured(), None, "server {pid}");
    }
    wait_for_configuration(&mut c, 2, 400);
    assert_new_configuration_is_live(&mut c, &[leader]);
}

#[test]
fn a_crashed_leader_that_stays_learns_of_the_new_configuration_when_restarted() {
    let mut c = SimCluster::new(&[1, 2, 3, 4, 5], SimOptions::with_seed(14));
    let leader = c.wait_for_leader(200);
    for _ in 0..10 {
        c.propose_new(leader);
    }
    let replaced = c.others(leader)[0];
    let mut members = c.others(replaced);
    members.push(101);
    c.reconfigure(leader, &members).unwrap();
    c.step();
    c.crash(leader);
    wait_for_configuration_without(&mut c, leader, 400);
    // The old leader comes back in configuration 1 without the decided
    // stop-sign, and its old peers have moved on: they answer its messages
    // of configuration 1 with the stop-sign, and it moves on on its own
    // storage (pulling what its log lacks).
    c.restart(leader);
    assert_eq!(c.config_of(leader), 1);
    wait_for_configuration(&mut c, 2, 400);
    assert_eq!(c.config_of(leader), 2);
    assert_new_configuration_is_live(&mut c, &[replaced]);
    let log = c.decided_log().to_vec();
    assert_eq!(c.decided_entries(leader), log);
}

/// Steps until configuration 2 formed, apart from the crashed server `down`.
fn wait_for_configuration_without(c: &mut SimCluster, down: NodeId, max_ticks: u64) {
    c.run_until(
        |c| c.config_id() == 2 && c.ids().iter().all(|&p| p == down || c.is_current(p)),
        max_ticks,
    );
}

/// A server cut off while its configuration ends misses the decision of the
/// stop-sign; its peers move on and never speak in the old configuration
/// again. Once the link is back, they answer its old-configuration messages
/// with the decided stop-sign: it moves on on its own storage, pulls the part
/// of the old log it lacks, and the proposal it took while cut off is
/// decided in the new configuration and reported to it.
#[test]
fn a_server_that_missed_the_end_of_its_configuration_learns_it_and_keeps_its_proposals() {
    let mut c = SimCluster::new(&[1, 2, 3], SimOptions::with_seed(15));
    let leader = c.wait_for_leader(200);
    for _ in 0..5 {
        c.propose_new(leader);
    }
    let straggler = c.others(leader)[0];
    let last = c.propose_new(leader);
    c.run_until(|c| c.all_live_decided(&last), 100);
    c.isolate(straggler);
    // Decided without the straggler: it lacks these entries.
    for _ in 0..5 {
        c.propose_new(leader);
    }
    // Taken by the straggler, which cannot forward it anywhere now.
    let kept = c.propose_new(straggler);
    let mut members = c.ids().to_vec();
    members.push(101);
    c.reconfigure(leader, &members).unwrap();
    c.run_until(
        |c| c.config_id() == 2 && c.others(straggler).iter().all(|&p| c.is_current(p)),
        400,
    );
    // Nobody of configuration 1 is left to tell it.
    c.run_for(100);
    assert_eq!(c.config_of(straggler), 1);
    assert_eq!(c.node(straggler).is_reconfigured(), None);
    c.heal_node(straggler);
    wait_for_configuration(&mut c, 2, 400);
    c.run_until(|c| c.all_live_decided(&kept), 400);
    c.run_until(|c| c.unreported_proposals().is_empty(), 100);
    let log = c.decided_log().to_vec();
    assert_eq!(c.decided_entries(straggler), log);
    assert_eq!(c.count_decided(straggler, &kept), 1);
}

/// Every server that moved on restarts, one after the other, before the
/// straggler comes back: each reads back how the old configuration ended
/// (and could also ask whoever is up), and the straggler still learns of
/// the end.
#[test]
fn servers_that_restart_after_moving_on_still_tell_a_straggler() {
    let mut c = SimCluster::new(&[1, 2, 3], SimOptions::with_seed(16));
    let leader = c.wait_for_leader(200);
    let straggler = c.others(leader)[0];
    let first = c.propose_new(leader);
    c.run_until(|c| c.all_live_decided(&first), 100);
    c.isolate(straggler);
    let kept = c.propose_new(straggler);
    let mut members = c.ids().to_vec();
    members.push(101);
    c.reconfigure(leader, &members).unwrap();
    let others = c.others(straggler);
    c.run_until(
        |c| c.config_id() == 2 && others.iter().all(|&p| c.is_current(p)),
        400,
    );
    for &pid in &others {
        c.crash(pid);
        c.run_for(20);
        c.restart(pid);
        c.run_for(100);
    }
    c.heal_node(straggler);
    wait_for_configuration(&mut c, 2, 400);
    c.run_until(|c| c.all_live_decided(&kept), 400);
    c.run_until(|c| c.unreported_proposals().is_empty(), 100);
}

/// Every server of the new configuration crashes at once and restarts before
/// the straggler comes back, so none of them can learn from a peer how the
/// old configuration ended: each reads it back from its own storage (it was
/// persisted with the move, or with the pulled log for the new server), and
/// the straggler still learns of the end. Before that was persisted, the
/// straggler waited for an operator forever.
fn all_servers_that_moved_on_restart_together_and_still_tell_a_straggler(options: SimOptions) {
    let mut c = SimCluster::new(&[1, 2, 3], options);
    let leader = c.wait_for_leader(200);
    let straggler = c.others(leader)[0];
    let first = c.propose_new(leader);
    c.run_until(|c| c.all_live_decided(&first), 100);
    c.isolate(straggler);
    let kept = c.propose_new(straggler);
    let mut members = c.ids().to_vec();
    members.push(101);
    c.reconfigure(leader, &members).unwrap();
    let others = c.others(straggler);
    c.run_until(
        |c| c.config_id() == 2 && others.iter().all(|&p| c.is_current(p)),
        400,
    );
    for &pid in &others {
        c.crash(pid);
    }
    c.run_for(20);
    for &pid in &others {
        c.restart(pid);
    }
    c.run_for(50);
    assert_eq!(c.config_of(straggler), 1);
    c.heal_node(straggler);
    wait_for_configuration(&mut c, 2, 400);
    c.run_until(|c| c.all_live_decided(&kept), 400);
    c.run_until(|c| c.unreported_proposals().is_empty(), 100);
}

#[test]
fn servers_that_moved_on_and_all_restarted_together_still_tell_a_straggler() {
    all_servers_that_moved_on_restart_together_and_still_tell_a_straggler(SimOptions::with_seed(
        17,
    ));
}

#[test]
fn servers_that_moved_on_and_all_restarted_together_on_disk_still_tell_a_straggler() {
    let mut options = SimOptions::with_seed(18);
    options.storage = SimStorage::Persistent;
    all_servers_that_moved_on_restart_together_and_still_tell_a_straggler(options);
}
