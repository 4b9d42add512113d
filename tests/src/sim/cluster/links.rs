//! Links: cutting and healing them, and telling the servers of a healed one.

use super::SimCluster;
use omnipaxos::util::NodeId;

impl SimCluster {
    /// From now on, every link carries the log a joiner pulls at
    /// `entries_per_tick` entries a tick, one pull reply after the other
    /// (see [`Network::limit_pull_bandwidth`](crate::Network::limit_pull_bandwidth)),
    /// so that pulling from several sources at once can be measured in ticks.
    pub fn limit_pull_bandwidth(&mut self, entries_per_tick: u64) {
        self.network.limit_pull_bandwidth(Some(entries_per_tick));
        self.trace(|| format!("pull replies at {entries_per_tick} entries per tick and link"));
    }

    /// Cuts the link from `from` to `to` one way: what `from` sends to `to`
    /// is lost, including what is already in flight; the reverse still works.
    #[track_caller]
    pub fn cut(&mut self, from: NodeId, to: NodeId) {
        self.assert_link(from, to);
        self.network.cut(from, to);
        self.trace(|| format!("cut {from} -> {to}"));
    }

    /// Cuts the link between `a` and `b` both ways.
    #[track_caller]
    pub fn cut_both(&mut self, a: NodeId, b: NodeId) {
        self.cut(a, b);
        self.cut(b, a);
    }

    /// Cuts every link from and to `pid` (to every server the cluster ever
    /// had). The server keeps running.
    #[track_caller]
    pub fn isolate(&mut self, pid: NodeId) {
        for peer in self.all_ids() {
            if peer != pid {
                self.cut_both(pid, peer);
            }
        }
    }

    /// Restores the link between `a` and `b`, both ways (use
    /// [`heal_one_way`](Self::heal_one_way) to undo a single [`cut`](Self::cut)).
    #[track_caller]
    pub fn heal(&mut self, a: NodeId, b: NodeId) {
        self.assert_link(a, b);
        let mut healed = Vec::new();
        for (x, y) in [(a, b), (b, a)] {
            if self.network.heal(x, y) {
                healed.push((x, y));
            }
        }
        self.trace(|| format!("heal {healed:?}"));
        self.notify_reconnected(&healed);
    }

    /// Restores the link from `from` to `to` only.
    #[track_caller]
    pub fn heal_one_way(&mut self, from: NodeId, to: NodeId) {
        self.assert_link(from, to);
        if self.network.heal(from, to) {
            self.trace(|| format!("heal {from} -> {to}"));
            self.notify_reconnected(&[(from, to)]);
        }
    }

    /// Restores every link from and to `pid`.
    #[track_caller]
    pub fn heal_node(&mut self, pid: NodeId) {
        for peer in self.all_ids() {
            if peer != pid {
                self.heal(pid, peer);
            }
        }
    }

    /// Restores every link.
    pub fn heal_all(&mut self) {
        let healed = self.network.heal_all();
        self.trace(|| format!("heal {healed:?}"));
        self.notify_reconnected(&healed);
    }

    /// Makes the listed links, both ways, the only ones up: every other pair of
    /// servers is cut both ways. Builds the partial partitions of the
    /// Omni-Paxos paper in one call.
    #[track_caller]
    pub fn only_links(&mut self, links: &[(NodeId, NodeId)]) {
        for &(a, b) in links {
            self.assert_link(a, b);
        }
        self.heal_all();
        for (i, &a) in self.ids.clone().iter().enumerate() {
            for &b in &self.ids.clone()[i + 1..] {
                if !links.contains(&(a, b)) && !links.contains(&(b, a)) {
                    self.cut_both(a, b);
                }
            }
        }
    }

    #[track_caller]
    pub(super) fn assert_link(&self, a: NodeId, b: NodeId) {
        assert!(
            self.nodes.contains_key(&a) && self.nodes.contains_key(&b) && a != b,
            "({a}, {b}) is not a link between two servers of {:?}",
            self.all_ids()
        );
    }

    /// Every server the cluster ever had, in any configuration, ascending.
    pub fn all_ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    /// Tells both ends of each healed link, if the options ask for it.
    pub(super) fn notify_reconnected(&mut self, healed: &[(NodeId, NodeId)]) {
        if !self.options.call_reconnected {
            return;
        }
        for &(a, b) in healed {
            for (me, peer) in [(a, b), (b, a)] {
                if let Some(paxos) = self.nodes.get_mut(&me).and_then(|n| n.paxos.as_mut()) {
                    paxos.reconnected(peer);
                }
            }
        }
    }
}
