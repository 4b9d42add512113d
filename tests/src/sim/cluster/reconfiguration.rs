//! Reconfiguration: proposing a new configuration, starting its joiners,
//! moving servers on, and retiring the ones left out.

use super::{SimCluster, SimNode, write_quorum};
use crate::{
    invariants::ConfigHistory,
    sim::{storage::SharedStorage, value::Value},
};
use omnipaxos::{
    Migration, ProposeErr, ReconfigurationRequest,
    util::{ConfigurationId, NodeId, StopSign},
};

impl SimCluster {
    /// Asks server `at` to end the current configuration and continue the log
    /// with the servers `members` (see `OmniPaxos::reconfigure`), and returns
    /// what it answered.
    ///
    /// The rest happens as the cluster steps, as an operator would do it:
    ///
    /// * when a server's configuration has a decided stop-sign, the next
    ///   configuration begins (once, at the stop-sign's index `L`): every new
    ///   id gets a server with a fresh storage of the run's kind, built with
    ///   `build_joining` to pull `0..L` from the old configuration's servers;
    /// * each server that stays moves on with `into_new_configuration` on its
    ///   own storage as soon as it has decided the stop-sign;
    /// * a server that leaves keeps running its old instance, so that joiners
    ///   can pull from it, until every server of the new configuration is in
    ///   it with its log and the new configuration decided an entry; then it
    ///   is retired for good (its storage stays for the invariants);
    /// * a server of the new configuration that missed the decision of its
    ///   old configuration's stop-sign learns it from the servers that moved
    ///   on (they answer its old configuration's messages), and moves on as
    ///   soon as it knows, pulling whatever part of the old log it lacks
    ///   (`get_migration` says what, for a restart meanwhile).
    ///
    /// What the servers of a configuration know of the previous one's end is
    /// persisted (`Storage::set_previous_configuration_end`), so restarts do
    /// not keep a straggler from being told. Only the end of the configuration
    /// right before a server's own is kept: a straggler two or more
    /// configurations behind has nobody to tell it, and only an operator can
    /// help it ([`rejoin_stragglers_afresh`](Self::rejoin_stragglers_afresh)).
    /// The soak never gets there: it reconfigures only once every server is
    /// in the current configuration.
    ///
    /// New servers need ids the cluster never had (or were started for the
    /// next configuration by [`add_joiner`](Self::add_joiner)); a server that
    /// left cannot come back (its storage belongs to an old configuration).
    /// A test that wants to see the servers in the configuration that ended,
    /// or to move one on itself, holds all of this back with
    /// [`hold_configuration_changes`](Self::hold_configuration_changes).
    #[track_caller]
    pub fn reconfigure(&mut self, at: NodeId, members: &[NodeId]) -> Result<(), ProposeErr<Value>> {
        self.reconfigure_with(at, ReconfigurationRequest::with(members.to_vec(), None))
    }

    /// As [`reconfigure`](Self::reconfigure), with a request of the test's
    /// making: one that carries metadata in its stop-sign, say.
    #[track_caller]
    pub fn reconfigure_with(
        &mut self,
        at: NodeId,
        request: ReconfigurationRequest,
    ) -> Result<(), ProposeErr<Value>> {
        let members = request.new_configuration.clone();
        for pid in &members {
            assert!(
                self.ids.contains(pid)
                    || !self.nodes.contains_key(pid)
                    || self.is_early_joiner(*pid),
                "server {pid} was in an earlier configuration; new servers need fresh ids"
            );
        }
        let result = self.node_mut(at).reconfigure(request);
        self.trace(|| format!("reconfigure at {at} to {members:?}: {result:?}"));
        if result.is_ok() {
            let mut members = members;
            members.sort_unstable();
            self.requested = Some(members);
        }
        self.check_invariants();
        result
    }

    /// Every configuration of the run so far: members, where each starts,
    /// and the stop-sign that ended it.
    pub fn configurations(&self) -> &ConfigHistory {
        self.invariants.configurations()
    }

    /// The servers of the next configuration, if a server of the current
    /// one took a request for one ([`reconfigure`](Self::reconfigure)
    /// returned `Ok`), sorted. The request may still be lost (its server
    /// crashes before the stop-sign is in the log).
    pub fn requested_configuration(&self) -> Option<&[NodeId]> {
        self.requested.as_deref()
    }

    /// Holds back what [`reconfigure`](Self::reconfigure) says the cluster
    /// does as it steps: no configuration begins, no server moves on and
    /// none is retired until
    /// [`resume_configuration_changes`](Self::resume_configuration_changes).
    /// Servers whose configuration decided its stop-sign stay in it, as a
    /// driver that has not yet called `into_new_configuration` leaves them,
    /// so that a test can look at them there or move one itself.
    pub fn hold_configuration_changes(&mut self) {
        self.configuration_changes_held = true;
        self.trace(|| "hold configuration changes".to_string());
    }

    /// Ends [`hold_configuration_changes`](Self::hold_configuration_changes)
    /// and does at once, before any server ticks, what was held back: the
    /// next configuration begins (its new servers are built), the servers
    /// in it move on and the ones left out are retired if nobody needs them.
    /// A test can therefore look at the new servers before they take a step.
    pub fn resume_configuration_changes(&mut self) {
        self.configuration_changes_held = false;
        self.trace(|| "resume configuration changes".to_string());
        self.advance_configurations();
        self.check_invariants();
    }

    /// Has the servers new to the next configuration pull the old log from
    /// `sources`, in that order, instead of from every server of the
    /// configuration that ends. Applies to the next configuration only.
    pub fn pull_from(&mut self, sources: &[NodeId]) {
        self.joiner_sources = Some(sources.to_vec());
    }

    /// Starts server `pid` now as a member of the next configuration, whose
    /// servers are to be `members`, before that configuration begins (even
    /// before it is proposed): a server an operator started early. It is
    /// built with `build_joining_from` on a fresh storage and knows only
    /// `sources`, whom it asks how the current configuration ended until one
    /// of them can say; then it pulls the log.
    ///
    /// Until its configuration begins, the invariants leave it out (it
    /// belongs to a configuration the run does not have yet) and it is not
    /// a server of the current configuration; when it begins, the cluster
    /// takes it as that configuration's server instead of building one. The
    /// reconfiguration must name exactly `members`. A restart has it ask
    /// again, so the run needs [`SimOptions::joiners_ask_log_len`](crate::SimOptions::joiners_ask_log_len).
    #[track_caller]
    pub fn add_joiner(&mut self, pid: NodeId, members: &[NodeId], sources: &[NodeId]) {
        assert!(
            self.options.joiners_ask_log_len,
            "add_joiner needs SimOptions::joiners_ask_log_len, so that a restart asks again"
        );
        assert!(
            pid != 0 && !self.nodes.contains_key(&pid),
            "server {pid} needs a fresh, non-zero id"
        );
        assert!(
            members.contains(&pid),
            "{members:?} does not name server {pid}"
        );
        let mut members = members.to_vec();
        members.sort_unstable();
        let config = self.options.config_in(self.config_id + 1, pid, &members);
        let storage = SharedStorage::of_kind(self.options.storage);
        let paxos = config
            .clone()
            .build_joining_from(storage.clone(), sources.to_vec())
            .unwrap_or_else(|e| panic!("server {pid} cannot join {members:?}: {e}"));
        // The length is learned; a restart asks for it again.
        let migration = Migration {
            log_len: 0,
            sources: sources.to_vec(),
        };
        let node = SimNode::running(config, storage, paxos, Some(migration));
        self.nodes.insert(pid, node);
        self.trace(|| format!("server {pid} starts early to join {members:?}"));
        self.check_invariants();
    }

    /// Whether server `pid` was started by [`add_joiner`](Self::add_joiner)
    /// for a configuration that has not begun.
    pub(super) fn is_early_joiner(&self, pid: NodeId) -> bool {
        self.nodes
            .get(&pid)
            .is_some_and(|n| n.config.configuration_id > self.config_id)
    }

    /// Moves servers whose configuration ended on to the next one and retires
    /// servers that left once nobody needs them (see
    /// [`reconfigure`](Self::reconfigure)); nothing while
    /// [held](Self::hold_configuration_changes).
    pub(super) fn advance_configurations(&mut self) {
        if self.configuration_changes_held {
            return;
        }
        let ended: Vec<(NodeId, StopSign)> = self
            .nodes
            .iter()
            .filter_map(|(&pid, n)| {
                let ss = n.paxos.as_ref()?.is_reconfigured()?;
                (ss.config_id == n.config.configuration_id + 1).then_some((pid, ss))
            })
            .collect();
        for (pid, ss) in ended {
            if ss.config_id > self.config_id {
                self.begin_configuration(&ss);
            }
            if ss.nodes.contains(&pid) && ss.config_id == self.config_id {
                self.move_on(pid, ss.config_id);
            }
        }
        self.retire_leavers();
    }

    /// Starts configuration `ss.config_id`, ending the current one.
    pub(super) fn begin_configuration(&mut self, ss: &StopSign) {
        if ss.config_id != self.config_id + 1 {
            self.fail(
                "reconfiguration",
                &format!(
                    "a stop-sign of configuration {} names configuration {}",
                    self.config_id, ss.config_id
                ),
            );
        }
        if self
            .invariants
            .configurations()
            .stop_idx(self.config_id)
            .is_none()
        {
            // Decided without a check in between (a test calling a server
            // directly): record the stop-sign before the servers move on.
            self.check_invariants();
        }
        let log_len = self
            .invariants
            .configurations()
            .stop_idx(self.config_id)
            .expect("the check above records a decided stop-sign");
        let mut members = ss.nodes.clone();
        members.sort_unstable();
        if let Some(old) = members.iter().find(|p| {
            self.nodes.contains_key(p) && !self.ids.contains(p) && !self.is_early_joiner(**p)
        }) {
            let detail = format!("server {old} left an earlier configuration and cannot come back");
            self.fail("reconfiguration", &detail);
        }
        for &pid in members.iter().filter(|&&p| self.is_early_joiner(p)) {
            let config = &self.nodes[&pid].config;
            let expected = self.options.config_in(ss.config_id, pid, &members);
            if (config.configuration_id, &config.peers) != (ss.config_id, &expected.peers) {
                let detail = format!(
                    "server {pid} was started to join configuration {} with peers {:?}, \
                     but configuration {} is {members:?}",
                    config.configuration_id, config.peers, ss.config_id
                );
                self.fail("reconfiguration", &detail);
            }
        }
        self.invariants.add_configuration(
            ss.config_id,
            &members,
            write_quorum(&self.options, members.len()),
        );
        self.previous_ids = std::mem::replace(&mut self.ids, members.clone());
        self.config_id = ss.config_id;
        self.config_started_at = self.now;
        self.requested = None;
        self.trace(|| {
            format!(
                "configuration {} {members:?} begins at index {log_len}",
                ss.config_id
            )
        });
        let sources = self
            .joiner_sources
            .take()
            .unwrap_or_else(|| self.previous_ids.clone());
        for &pid in &members {
            if !self.nodes.contains_key(&pid) {
                let node = self.joiner(
                    pid,
                    Migration {
                        log_len,
                        sources: sources.clone(),
                    },
                    0,
                    Vec::new(),
                );
                self.nodes.insert(pid, node);
            }
        }
    }

    /// A new server `pid` of the current configuration, on an empty storage,
    /// pulling the log as `migration` says.
    pub(super) fn joiner(
        &self,
        pid: NodeId,
        migration: Migration,
        generation: u32,
        past_storages: Vec<SharedStorage>,
    ) -> SimNode {
        let config = self.options.config_in(self.config_id, pid, &self.ids);
        let storage = SharedStorage::of_kind(self.options.storage);
        let built = if self.options.joiners_ask_log_len && !migration.sources.is_empty() {
            config
                .clone()
                .build_joining_from(storage.clone(), migration.sources.clone())
        } else {
            config
                .clone()
                .build_joining(storage.clone(), migration.clone())
        };
        let paxos = built.unwrap_or_else(|e| {
            panic!(
                "server {pid} cannot join configuration {}: {e}",
                self.config_id
            )
        });
        SimNode {
            generation,
            past_storages,
            ..SimNode::running(config, storage, paxos, Some(migration))
        }
    }

    /// Moves running server `pid`, whose configuration decided its stop-sign,
    /// on to configuration `config_id` on its own storage.
    pub(super) fn move_on(&mut self, pid: NodeId, config_id: ConfigurationId) {
        let members = if config_id == self.config_id {
            self.ids.clone()
        } else {
            // Only the newest configuration can be reached from here: older
            // ones began long ago, so an earlier stop-sign was moved on from.
            self.fail(
                "reconfiguration",
                &format!(
                    "server {pid} would move on to configuration {config_id}, not the current {}",
                    self.config_id
                ),
            );
        };
        let mut config = self.options.config_in(config_id, pid, &members);
        let node = self.sim_node_mut(pid);
        config.leader_priority = node.config.leader_priority;
        let old = node.paxos.take().expect("only running servers move on");
        match old.into_new_configuration(config.clone()) {
            Ok(paxos) => {
                // A server that missed part of the old log pulls it first;
                // a restart meanwhile must pull again.
                node.migration = paxos.get_migration();
                node.paxos = Some(paxos);
                node.config = config;
            }
            Err(omnipaxos::ConfigError::Storage(e)) => {
                // A storage write failed (injected, see
                // `fail_storage_writes`): the move is one atomic write, so
                // the storage is still the old configuration's. The server
                // is down, as after a crash, and moves on once restarted.
                self.trace(|| format!("server {pid} cannot move on ({e}): it is down"));
                self.went_down(pid);
                return;
            }
            Err(e) => {
                let detail =
                    format!("server {pid} cannot move on to configuration {config_id}: {e}");
                self.fail("reconfiguration", &detail);
            }
        }
        self.trace(|| format!("server {pid} moves on to configuration {config_id}"));
    }

    /// What an operator does for a server of the current configuration that
    /// is still in an older one and that nobody can tell of its end (more
    /// than one configuration behind, see [`reconfigure`](Self::reconfigure)): it wipes the server's storage and
    /// has it join afresh with `build_joining`, pulling the log from the
    /// servers that have it. The server's proposals are lost with its state,
    /// as in a crash. Returns the servers rejoined.
    pub fn rejoin_stragglers_afresh(&mut self) -> Vec<NodeId> {
        let stragglers: Vec<NodeId> = self
            .ids
            .iter()
            .copied()
            .filter(|p| {
                let n = &self.nodes[p];
                n.paxos.is_some() && n.config.configuration_id < self.config_id
            })
            .collect();
        let mut rejoined = Vec::new();
        for pid in stragglers {
            let log_len = self
                .invariants
                .configurations()
                .get(self.config_id)
                .expect("the current configuration is recorded")
                .start;
            // Whoever has the log: servers of the current configuration
            // first, then the old ones still running.
            let mut sources: Vec<NodeId> = self
                .ids
                .iter()
                .copied()
                .filter(|&p| p != pid && self.is_current(p))
                .collect();
            let old_ones: Vec<NodeId> = self
                .previous_ids
                .iter()
                .copied()
                .filter(|&p| p != pid && !sources.contains(&p) && !self.nodes[&p].retired)
                .collect();
            sources.extend(old_ones);
            if sources.is_empty() {
                continue;
            }
            rejoined.push(pid);
            self.network.drop_involving(pid);
            let old = self.nodes.remove(&pid).expect("a straggler is a server");
            let mut past = old.past_storages;
            past.push(old.storage);
            let node = self.joiner(
                pid,
                Migration { log_len, sources },
                old.generation + 1,
                past,
            );
            self.nodes.insert(pid, node);
            self.trace(|| {
                format!("server {pid} missed the end of its configuration; rejoins afresh")
            });
        }
        self.check_invariants();
        rejoined
    }

    /// Retires the servers that left, once every server of the current
    /// configuration is in it with its log and it decided an entry.
    pub(super) fn retire_leavers(&mut self) {
        let leavers: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(p, n)| {
                !n.retired && !self.ids.contains(p) && n.config.configuration_id <= self.config_id
            })
            .map(|(&p, _)| p)
            .collect();
        if leavers.is_empty() {
            return;
        }
        let start = self
            .invariants
            .configurations()
            .get(self.config_id)
            .expect("the current configuration is recorded")
            .start;
        let all_in = self.ids.iter().all(|p| {
            let n = &self.nodes[p];
            n.config.configuration_id == self.config_id
                && match &n.paxos {
                    Some(paxos) => !paxos.is_migrating(),
                    None => n.storage.decided_idx() >= start,
                }
        });
        let decided_new = self
            .current_servers()
            .any(|(_, p)| p.get_decided_idx() > start);
        if !(all_in && decided_new) {
            return;
        }
        for pid in leavers {
            let node = self.sim_node_mut(pid);
            node.paxos = None;
            let forgotten = node.tracked.len() as u64;
            node.tracked.clear();
            node.retired = true;
            self.proposal_counts.forgotten += forgotten;
            self.network.drop_involving(pid);
            self.trace(|| format!("server {pid} left and is retired"));
        }
    }
}
