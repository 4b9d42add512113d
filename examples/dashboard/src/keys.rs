//! The dashboard's keys: digits pick nodes, letters act on them. Pure, so
//! the mapping is tested without a terminal.

use omnipaxos::NodeId;
use omnipaxos_ui::KeyHelp;

/// What the operator asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Crash this node (its storage is kept).
    Crash(NodeId),
    /// Restart this crashed node on its storage.
    Restart(NodeId),
    /// Crash whichever node leads.
    CrashLeader,
    /// Restart every crashed node.
    RestartAll,
    /// Drop what `from` sends to `to`.
    Cut {
        /// The sender whose messages are dropped.
        from: NodeId,
        /// The receiver that stops hearing `from`.
        to: NodeId,
    },
    /// Cut both directions between the two nodes.
    CutBoth(NodeId, NodeId),
    /// Undo [`Action::Cut`].
    Heal {
        /// The sender.
        from: NodeId,
        /// The receiver.
        to: NodeId,
    },
    /// Heal both directions between the two nodes.
    HealBoth(NodeId, NodeId),
    /// Heal every link.
    HealAll,
    /// The chained partition (the leader loses one follower).
    Chained,
    /// The quorum-loss partition (one follower is everyone's only link).
    QuorumLoss,
}

impl Action {
    fn uses_selection(self) -> bool {
        matches!(
            self,
            Self::Crash(_)
                | Self::Restart(_)
                | Self::Cut { .. }
                | Self::CutBoth(..)
                | Self::Heal { .. }
                | Self::HealBoth(..)
        )
    }
}

/// Why a key did nothing; shown to the operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key needs node `a` selected (a digit first).
    #[error("select a node first (press its digit)")]
    NeedsOneNode,
    /// The key needs two nodes selected (two digits first).
    #[error("select two nodes first (press two digits)")]
    NeedsTwoNodes,
    /// The digit names no node of this cluster.
    #[error("there is no node {0}")]
    NoSuchNode(NodeId),
    /// The key means nothing here.
    #[error("key {0:?} does nothing (see the help below)")]
    Unbound(char),
}

/// The selection the digit keys build: node `a`, then node `b`.
#[derive(Clone, Debug, Default)]
pub struct Controls {
    ids: Vec<NodeId>,
    a: Option<NodeId>,
    b: Option<NodeId>,
}

impl Controls {
    /// Controls for a cluster of these node ids (each a single digit, so a
    /// key names it).
    pub fn new(ids: &[NodeId]) -> Self {
        Self {
            ids: ids.to_vec(),
            a: None,
            b: None,
        }
    }

    /// What `key` asks for: `Ok(None)` for a key that only changes the
    /// selection. An action that uses the selection clears it, so the next
    /// digits start a new one (the status line shows it).
    pub fn key(&mut self, key: char) -> Result<Option<Action>, KeyError> {
        let action = self.action(key)?;
        if action.is_some_and(|a| a.uses_selection()) {
            (self.a, self.b) = (None, None);
        }
        Ok(action)
    }

    fn action(&mut self, key: char) -> Result<Option<Action>, KeyError> {
        if let Some(digit) = key.to_digit(10) {
            let pid = NodeId::from(digit);
            if !self.ids.contains(&pid) {
                return Err(KeyError::NoSuchNode(pid));
            }
            // A third digit starts a new selection.
            match (self.a, self.b) {
                (Some(_), None) => self.b = Some(pid),
                _ => (self.a, self.b) = (Some(pid), None),
            }
            return Ok(None);
        }
        let one = || self.a.ok_or(KeyError::NeedsOneNode);
        let two = || match (self.a, self.b) {
            (Some(a), Some(b)) => Ok((a, b)),
            _ => Err(KeyError::NeedsTwoNodes),
        };
        let action = match key {
            ' ' => {
                (self.a, self.b) = (None, None);
                return Ok(None);
            }
            'x' => Action::Crash(one()?),
            'r' => Action::Restart(one()?),
            'l' => Action::CrashLeader,
            'R' => Action::RestartAll,
            'c' => {
                let (from, to) = two()?;
                Action::Cut { from, to }
            }
            'C' => {
                let (a, b) = two()?;
                Action::CutBoth(a, b)
            }
            'h' => {
                let (from, to) = two()?;
                Action::Heal { from, to }
            }
            'H' => {
                let (a, b) = two()?;
                Action::HealBoth(a, b)
            }
            'n' => Action::HealAll,
            'p' => Action::Chained,
            's' => Action::QuorumLoss,
            other => return Err(KeyError::Unbound(other)),
        };
        Ok(Some(action))
    }

    /// The selection, for the status line.
    pub fn selection(&self) -> String {
        let show = |n: Option<NodeId>| n.map_or_else(|| "-".to_string(), |p| p.to_string());
        format!("selected: a={} b={}", show(self.a), show(self.b))
    }

    /// The help bar's entries.
    pub fn help() -> Vec<KeyHelp> {
        [
            ("1-9", "select a, then b"),
            ("space", "clear"),
            ("x", "crash a"),
            ("r", "restart a"),
            ("l", "crash leader"),
            ("R", "restart all"),
            ("c", "cut a->b"),
            ("C", "cut a<->b"),
            ("h", "heal a->b"),
            ("H", "heal a<->b"),
            ("n", "heal all"),
            ("p", "chained partition"),
            ("s", "quorum-loss partition"),
        ]
        .into_iter()
        .map(|(k, a)| KeyHelp::new(k, a))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn two_digits_select_a_link_and_an_action_on_them_clears_the_selection() {
        let mut c = Controls::new(&[1, 2, 3]);
        assert_eq!(c.key('c'), Err(KeyError::NeedsTwoNodes));
        assert_eq!(c.key('1'), Ok(None));
        assert_eq!(c.key('x'), Ok(Some(Action::Crash(1))));
        assert_eq!(c.selection(), "selected: a=- b=-");
        assert_eq!(c.key('r'), Err(KeyError::NeedsOneNode));
        assert_eq!(c.key('1'), Ok(None));
        assert_eq!(c.key('3'), Ok(None));
        assert_eq!(c.selection(), "selected: a=1 b=3");
        assert_eq!(c.key('c'), Ok(Some(Action::Cut { from: 1, to: 3 })));
        assert_eq!(c.key('H'), Err(KeyError::NeedsTwoNodes));
        for k in ['3', '1'] {
            assert_eq!(c.key(k), Ok(None));
        }
        assert_eq!(c.key('H'), Ok(Some(Action::HealBoth(3, 1))));
    }

    #[test]
    fn a_third_digit_starts_a_new_selection_and_space_clears_it() {
        let mut c = Controls::new(&[1, 2, 3]);
        for k in ['1', '2', '3'] {
            assert_eq!(c.key(k), Ok(None));
        }
        assert_eq!(c.selection(), "selected: a=3 b=-");
        assert_eq!(c.key(' '), Ok(None));
        assert_eq!(c.selection(), "selected: a=- b=-");
        // Actions that name no node keep the selection.
        assert_eq!(c.key('2'), Ok(None));
        assert_eq!(c.key('n'), Ok(Some(Action::HealAll)));
        assert_eq!(c.selection(), "selected: a=2 b=-");
    }

    #[test]
    fn keys_outside_the_cluster_or_unbound_are_refused_without_changing_the_selection() {
        let mut c = Controls::new(&[1, 2, 3]);
        assert_eq!(c.key('7'), Err(KeyError::NoSuchNode(7)));
        assert_eq!(c.key('0'), Err(KeyError::NoSuchNode(0)));
        assert_eq!(c.key('z'), Err(KeyError::Unbound('z')));
        assert_eq!(c.selection(), "selected: a=- b=-");
        assert_eq!(c.key('p'), Ok(Some(Action::Chained)));
        assert_eq!(c.key('s'), Ok(Some(Action::QuorumLoss)));
        assert_eq!(c.key('l'), Ok(Some(Action::CrashLeader)));
    }
}
