//! Checking and failing: the invariants after every step, and a failure
//! that says how to replay the run.

use super::SimCluster;
use crate::{
    invariants::{NodeView, Violation},
    sim::value::Value,
};
use omnipaxos::util::NodeId;

impl SimCluster {
    /// Runs every invariant now; panics on a violation.
    pub fn check_invariants(&mut self) {
        // A server started early for a configuration the run does not have
        // yet is looked at once that configuration begins.
        let views: Vec<NodeView<'_>> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.config.configuration_id <= self.config_id)
            .map(|(&pid, n)| NodeView {
                pid,
                paxos: n.paxos.as_ref(),
                storage: &n.storage,
                incarnation: n.incarnation,
                config_id: n.config.configuration_id,
                generation: n.generation,
                past_storages: &n.past_storages,
            })
            .collect();
        let result = self.invariants.check(&views);
        drop(views);
        if let Err(Violation { property, detail }) = result {
            self.fail(property, &detail);
        }
        self.check_decided_proposals();
        if std::env::var_os("SIM_ROUND_CHECK").is_some() {
            self.check_same_round_logs_agree();
        }
    }

    /// Debugging aid (`SIM_ROUND_CHECK=1`): two running servers of one
    /// configuration whose logs were accepted in the same round hold
    /// prefixes of that round's leader log, so they agree where both have
    /// entries that neither has decided. Below a server's decided index the
    /// entries are the cluster's decided ones (`decided_prefix_agreement`
    /// checks those), and they may differ from what another server accepted
    /// there in the same round: a server that takes a later leader's decided
    /// log in parts (`DecidedSync`) keeps the round its log was accepted in.
    /// That is safe, since a value decided in a later round means a majority
    /// accepted in a later round, so no leader adopts a log of the earlier
    /// one. Costs a pass over every pair of logs at every step.
    pub(super) fn check_same_round_logs_agree(&self) {
        let mut logs = Vec::new();
        for (&pid, node) in &self.nodes {
            if node.paxos.is_none() {
                continue;
            }
            let (round, len, compacted, decided) = node.storage.with(|s| {
                (
                    s.get_accepted_round().ok().flatten(),
                    s.get_log_len().unwrap_or(0),
                    s.get_compacted_idx().unwrap_or(0),
                    s.get_decided_idx().unwrap_or(0),
                )
            });
            let Some(round) = round else { continue };
            let from = compacted.max(decided);
            logs.push((pid, node.config.configuration_id, round, from, len));
        }
        for (i, a) in logs.iter().enumerate() {
            for b in &logs[i + 1..] {
                if a.1 != b.1 || a.2 != b.2 {
                    continue;
                }
                for idx in a.3.max(b.3)..a.4.min(b.4) {
                    let (x, y) = (
                        self.nodes[&a.0].storage.entry_at(idx),
                        self.nodes[&b.0].storage.entry_at(idx),
                    );
                    if x != y {
                        self.fail(
                            "same_round_logs_agree",
                            &format!(
                                "servers {} and {} both accepted in {:?} but hold {x:?} and {y:?} at {idx}",
                                a.0, b.0, a.2
                            ),
                        );
                    }
                }
            }
        }
    }

    /// Checks what each server reports of its tracked proposals: a proposal
    /// is reported once, at an index where the cluster decided it.
    pub(super) fn check_decided_proposals(&mut self) {
        let mut buf = Vec::new();
        let mut failure = None;
        for (&pid, node) in &mut self.nodes {
            let Some(paxos) = node.paxos.as_mut() else {
                continue;
            };
            paxos.take_decided_proposals(&mut buf);
            for (id, idx) in buf.drain(..) {
                let Some(value) = node.tracked.remove(&id) else {
                    failure = Some(format!(
                        "server {pid} reported {id:?} (at {idx}), which it never took or reported before"
                    ));
                    continue;
                };
                let decided = usize::try_from(idx)
                    .ok()
                    .and_then(|i| self.invariants.decided_log().get(i));
                if decided != Some(&value) {
                    failure = Some(format!(
                        "server {pid} reported {value:?} decided at {idx}, where the cluster decided {decided:?}"
                    ));
                }
            }
        }
        if let Some(detail) = failure {
            self.fail("decided_proposal_reported_at_its_index", &detail);
        }
    }

    /// The proposals that running servers of the current configuration took
    /// with `append_tracked` and have not reported as decided, as
    /// `(server, value)`.
    pub fn unreported_proposals(&self) -> Vec<(NodeId, Value)> {
        let mut out: Vec<(NodeId, Value)> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.config.configuration_id == self.config_id)
            .flat_map(|(&pid, n)| n.tracked.values().map(move |&v| (pid, v)))
            .collect();
        out.sort_unstable_by_key(|&(pid, v)| (pid, v.0));
        out
    }

    /// The one-line command that reruns this test.
    pub fn replay_command(&self) -> String {
        if let Some(cmd) = &self.options.replay_command {
            return cmd.clone();
        }
        let test = std::thread::current()
            .name()
            .unwrap_or("<test name>")
            .to_owned();
        // Test binaries are named `<target>-<hash>`.
        let target = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .map(|stem| match stem.rsplit_once('-') {
                Some((name, _hash)) => name.to_owned(),
                None => stem,
            })
            .unwrap_or_else(|| "<test file>".to_owned());
        let selector = if target == "omnipaxos_tests" {
            "--lib".to_owned()
        } else {
            format!("--test {target}")
        };
        format!("cargo test -p omnipaxos_tests {selector} -- --exact {test}")
    }

    /// Panics with `what` went wrong, the tick, the seed and the replay command.
    #[track_caller]
    pub fn fail(&self, property: &str, detail: &str) -> ! {
        self.reported.set(true);
        panic!(
            "[sim] `{property}` failed at tick {} (seed {}): {detail}\n[sim] replay: {}",
            self.now,
            self.options.seed,
            self.replay_command()
        );
    }
}
