//! The log entry type the simulated servers replicate.

use omnipaxos::macros::Entry;

/// One proposal: a number that the cluster hands out once.
///
/// Because every proposal carries a fresh number, a decided entry names exactly
/// one `append` call. That is what lets the invariants tell a proposed entry
/// from an invented one, and a retried proposal from a duplicated decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Entry)]
pub struct Value(pub u64);
