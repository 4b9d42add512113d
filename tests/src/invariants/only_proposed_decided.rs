//! Validity: the decided log holds proposals, each once.
//!
//! The Omni-Paxos paper requires of Sequence Paxos **SC1 (Validity)**: a
//! decided sequence consists of proposed commands, without duplicates. The
//! simulator gives every proposal a fresh [`Value`], so both halves can be
//! checked exactly: every entry of the cluster's decided log must have been
//! handed to `append` (and accepted by it), and no value may be decided at two
//! indices, which is what a proposal forwarded, lost, retried and then
//! appended twice would look like. (A run may tolerate duplicates with
//! [`SimOptions::allow_duplicate_decisions`](crate::SimOptions::allow_duplicate_decisions);
//! "only proposed" is always checked.)

use super::Violation;
use crate::sim::value::Value;
use std::collections::{HashMap, HashSet};

/// The property's name, as printed in a violation.
pub const NAME: &str = "only_proposed_decided";

/// The proposals made and where each was decided.
#[derive(Debug, Default)]
pub struct OnlyProposedDecided {
    /// Whether a value decided at a second index is tolerated (then the
    /// first index is the one remembered).
    allow_duplicates: bool,
    /// Every value an `append` call accepted.
    proposed: HashSet<Value>,
    /// The index each decided value was decided at.
    decided_at: HashMap<Value, u64>,
}

impl OnlyProposedDecided {
    /// Starts with no proposals; `allow_duplicates` tolerates a value decided twice.
    pub fn new(allow_duplicates: bool) -> Self {
        Self {
            allow_duplicates,
            ..Self::default()
        }
    }

    /// Notes that `append` accepted `value`.
    pub fn record_proposal(&mut self, value: Value) {
        self.proposed.insert(value);
    }

    /// Whether `append` accepted `value`.
    pub fn was_proposed(&self, value: &Value) -> bool {
        self.proposed.contains(value)
    }

    /// The index `value` was decided at, if it was.
    pub fn decided_index_of(&self, value: &Value) -> Option<u64> {
        self.decided_at.get(value).copied()
    }

    /// Checks the entries the cluster's decided `log` gained from index `first_new` on.
    pub fn check_new(&mut self, log: &[Value], first_new: u64) -> Result<(), Violation> {
        for (idx, value) in (first_new..).zip(&log[first_new as usize..]) {
            if !self.proposed.contains(value) {
                return Err(Violation::new(
                    NAME,
                    format!("{value:?} was decided at index {idx} but never proposed"),
                ));
            }
            match self.decided_at.get(value) {
                None => {
                    self.decided_at.insert(*value, idx);
                }
                Some(_) if self.allow_duplicates => {}
                Some(earlier) => {
                    return Err(Violation::new(
                        NAME,
                        format!(
                            "{value:?} was decided twice: at index {earlier} and at index {idx}"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn proposed_values_decided_once_pass() {
        let mut check = OnlyProposedDecided::default();
        check.record_proposal(Value(1));
        check.record_proposal(Value(2));
        check.check_new(&[Value(2), Value(1)], 0).unwrap();
        assert_eq!(check.decided_index_of(&Value(1)), Some(1));
    }

    #[test]
    fn an_unproposed_value_is_a_violation() {
        let mut check = OnlyProposedDecided::default();
        check.record_proposal(Value(1));
        let err = check.check_new(&[Value(1), Value(7)], 0).unwrap_err();
        assert_eq!(err.property, NAME);
    }

    #[test]
    fn duplicates_pass_only_when_allowed() {
        let mut check = OnlyProposedDecided::new(true);
        check.record_proposal(Value(1));
        check.check_new(&[Value(1), Value(1)], 0).unwrap();
        assert_eq!(check.decided_index_of(&Value(1)), Some(0));
    }

    #[test]
    fn a_value_decided_at_two_indices_is_a_violation() {
        let mut check = OnlyProposedDecided::default();
        check.record_proposal(Value(1));
        check.check_new(&[Value(1)], 0).unwrap();
        let err = check.check_new(&[Value(1), Value(1)], 1).unwrap_err();
        assert_eq!(err.property, NAME);
    }
}
