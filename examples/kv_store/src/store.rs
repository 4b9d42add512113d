//! The replicated data: the commands that go into the log, and the key-value
//! map every replica builds by applying the decided ones in log order.

use omnipaxos::macros::Entry;
use std::collections::{HashMap, HashSet};

/// A client-chosen number that names one write for its whole life.
///
/// The replica that took a write uses it to find the client to answer once the
/// write is decided; the state machine uses it to apply a write at most once,
/// even if it somehow appears twice in the log.
pub type RequestId = u64;

/// One write to the store: the element type of the replicated log.
#[derive(Clone, Debug, PartialEq, Eq, Entry)]
pub enum KVCommand {
    /// Set `key` to `value`, replacing any earlier value.
    Put {
        /// Names this write; see [`RequestId`].
        id: RequestId,
        /// The key to set.
        key: String,
        /// The new value.
        value: String,
    },
    /// Remove `key`; removing a missing key is not an error.
    Delete {
        /// Names this write; see [`RequestId`].
        id: RequestId,
        /// The key to remove.
        key: String,
    },
}

impl KVCommand {
    /// The request id the client gave this write.
    pub fn id(&self) -> RequestId {
        match self {
            Self::Put { id, .. } | Self::Delete { id, .. } => *id,
        }
    }

    /// The key the write touches.
    pub fn key(&self) -> &str {
        match self {
            Self::Put { key, .. } | Self::Delete { key, .. } => key,
        }
    }
}

/// The state machine: a map from keys to values, built by applying decided
/// commands in log order.
///
/// Two replicas that applied the same decided prefix hold equal stores; that is
/// the whole point of running consensus underneath.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KVStore {
    /// The current value of every key.
    map: HashMap<String, String>,
    /// Ids already applied, so that a command that reached the log twice
    /// changes the map once (a retried forward must not resurrect a deleted key).
    applied_ids: HashSet<RequestId>,
    /// How many log entries have been applied: the next one to apply has this index.
    applied_idx: u64,
    /// How many applied entries were repeats of an id seen before.
    duplicates: u64,
}

impl KVStore {
    /// Applies the decided command at the next log index. Returns `false` if
    /// its id was applied before, in which case the map is left as it was.
    pub fn apply(&mut self, cmd: &KVCommand) -> bool {
        self.applied_idx += 1;
        if !self.applied_ids.insert(cmd.id()) {
            self.duplicates += 1;
            return false;
        }
        match cmd {
            KVCommand::Put { key, value, .. } => {
                self.map.insert(key.clone(), value.clone());
            }
            KVCommand::Delete { key, .. } => {
                self.map.remove(key);
            }
        }
        true
    }

    /// Skips a log index that holds no command (a stop-sign).
    pub fn skip(&mut self) {
        self.applied_idx += 1;
    }

    /// The value of `key`, if it has one.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    /// The number of keys with a value.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key has a value.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The whole map, for comparing replicas.
    pub fn map(&self) -> &HashMap<String, String> {
        &self.map
    }

    /// The index of the next log entry to apply (the number applied so far).
    pub fn applied_idx(&self) -> u64 {
        self.applied_idx
    }

    /// How many applied entries carried an id that had been applied before.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(id: RequestId, key: &str, value: &str) -> KVCommand {
        KVCommand::Put {
            id,
            key: key.to_owned(),
            value: value.to_owned(),
        }
    }

    #[test]
    fn put_then_delete_leaves_the_key_absent_and_counts_both_indices() {
        let mut store = KVStore::default();
        assert!(store.apply(&put(1, "a", "x")));
        assert_eq!(store.get("a"), Some("x"));
        assert!(store.apply(&KVCommand::Delete {
            id: 2,
            key: "a".to_owned()
        }));
        assert_eq!(store.get("a"), None);
        assert_eq!(store.applied_idx(), 2);
        assert!(store.is_empty());
    }

    #[test]
    fn a_repeated_request_id_advances_the_index_but_not_the_map() {
        let mut store = KVStore::default();
        store.apply(&put(1, "a", "x"));
        store.apply(&KVCommand::Delete {
            id: 2,
            key: "a".to_owned(),
        });
        assert!(!store.apply(&put(1, "a", "x")));
        assert_eq!(store.get("a"), None);
        assert_eq!(store.applied_idx(), 3);
        assert_eq!(store.duplicates(), 1);
    }
}
