//! Ballots: the totally ordered round numbers that both leader election and
//! Sequence Paxos use to tell newer leadership from older.

use crate::util::NodeId;

/// A ballot `(n, priority, pid)`, ordered lexicographically in that order.
///
/// `n` is the round number that a server bumps when it takes over leadership;
/// `priority` lets a user prefer some servers as leader (see
/// [`OmniPaxosConfig::leader_priority`](crate::OmniPaxosConfig::leader_priority));
/// `pid` breaks the remaining ties, so two servers never hold equal ballots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Ballot {
    /// The round number; raised by one on every takeover.
    pub n: u32,
    /// The user-given leader priority of the server that owns this ballot.
    pub priority: u32,
    /// The server that owns this ballot.
    pub pid: NodeId,
}

impl Ballot {
    /// The highest round a server accepts or takes. Rounds go up by one per
    /// takeover, so a cluster reaches this only after about four billion
    /// elections; the rounds above it are reserved so that a peer that sends
    /// a round near `u32::MAX` (by a bug, or a flipped bit) cannot leave the
    /// cluster with no round left to outbid it. A message with a ballot above
    /// it is refused.
    pub const MAX_ROUND: u32 = u32::MAX - (1 << 16);

    /// Creates a ballot.
    pub const fn with(n: u32, priority: u32, pid: NodeId) -> Self {
        Self { n, priority, pid }
    }

    /// Whether a server may accept this ballot from a peer: its round is at
    /// most [`MAX_ROUND`](Self::MAX_ROUND).
    pub const fn is_valid_round(&self) -> bool {
        self.n <= Self::MAX_ROUND
    }

    /// The next round after `n`, if one is left (see [`MAX_ROUND`](Self::MAX_ROUND)).
    pub(crate) const fn next_round(n: u32) -> Option<u32> {
        if n < Self::MAX_ROUND {
            Some(n + 1)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ballots_order_by_round_then_priority_then_pid() {
        assert!(Ballot::with(2, 0, 1) > Ballot::with(1, 9, 9));
        assert!(Ballot::with(1, 2, 1) > Ballot::with(1, 1, 9));
        assert!(Ballot::with(1, 1, 2) > Ballot::with(1, 1, 1));
        assert!(Ballot::with(0, 0, 1) > Ballot::default());
    }
}
