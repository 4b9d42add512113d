//! What the fuzz targets and the seed generator (`examples/gen_seeds.rs`)
//! share: the byte formats of the structured targets, so that seeds are
//! written in the format the targets read.

use kv_store::{CommandId, KVCommand, Op, SessionId};
use omnipaxos::{OmniPaxos, OmniPaxosConfig, messages::Message};
use omnipaxos_storage::memory_storage::MemoryStorage;

/// The entry type every target uses: the kv_store's, so that strings and
/// a real snapshot type are on the wire and in storage.
pub type Entry = KVCommand;

/// The server under test in `handle_incoming`: server 2 of {1, 2, 3}.
pub type Node = OmniPaxos<Entry, MemoryStorage<Entry>>;

/// The config of server `pid` of {1, 2, 3}, batching two entries so that a
/// leader's batch can hold an entry across steps.
pub fn config(pid: u64) -> OmniPaxosConfig {
    OmniPaxosConfig {
        configuration_id: 1,
        pid,
        peers: [1, 2, 3].into_iter().filter(|&p| p != pid).collect(),
        batch_size: 2,
        ..Default::default()
    }
}

/// The most memory a decoded message may build, as in the transport.
pub const DECODE_BUDGET: usize = 1 << 20;

/// A small write: key and value from one byte.
pub fn entry(b: u8) -> Entry {
    KVCommand {
        id: CommandId {
            session: SessionId {
                pid: u64::from(b % 4),
                nonce: 7,
            },
            seq: u64::from(b),
        },
        op: match b % 3 {
            0 => Op::Put {
                key: format!("k{}", b % 8),
                value: format!("v{b}"),
            },
            1 => Op::Delete {
                key: format!("k{}", b % 8),
            },
            _ => Op::Cas {
                key: format!("k{}", b % 8),
                expected: None,
                new: format!("v{b}"),
            },
        },
    }
}

/// One step of the `handle_incoming` target, as read from its input.
#[derive(Debug)]
pub enum Step {
    /// A message body, bincode as on the wire (it may not decode).
    Message(Vec<u8>),
    /// `tick()`.
    Tick,
    /// `append(entry(b))`.
    Append(u8),
    /// `take_outgoing_messages`.
    Outgoing,
    /// `reconnected(pid)`.
    Reconnected(u8),
    /// `try_become_leader()`.
    TryLead,
    /// `flush_batch()`.
    Flush,
    /// `trim(Some(decided))` and `request_read()`.
    TrimAndRead,
    /// `fail_recovery()`.
    FailRecovery,
}

const STEPS: u8 = 9;

/// Reads the steps of an input: one tag byte each; a message is followed
/// by its length (`u16` little-endian) and body. A cut-off step ends it.
pub fn parse_steps(mut data: &[u8]) -> Vec<Step> {
    let mut steps = Vec::new();
    while let Some((&tag, rest)) = data.split_first() {
        data = rest;
        let step = match tag % STEPS {
            0 => {
                let Some((len, rest)) = data.split_first_chunk::<2>() else {
                    break;
                };
                let len = usize::from(u16::from_le_bytes(*len)).min(rest.len());
                let (body, rest) = rest.split_at(len);
                data = rest;
                Step::Message(body.to_vec())
            }
            1 => Step::Tick,
            2 | 4 => {
                let Some((&b, rest)) = data.split_first() else {
                    break;
                };
                data = rest;
                if tag % STEPS == 2 {
                    Step::Append(b)
                } else {
                    Step::Reconnected(b)
                }
            }
            3 => Step::Outgoing,
            5 => Step::TryLead,
            6 => Step::Flush,
            7 => Step::TrimAndRead,
            _ => Step::FailRecovery,
        };
        steps.push(step);
    }
    steps
}

/// Writes steps in the format [`parse_steps`] reads.
pub fn write_steps(steps: &[Step]) -> Vec<u8> {
    let mut out = Vec::new();
    for step in steps {
        match step {
            Step::Message(body) => {
                out.push(0);
                let len = u16::try_from(body.len()).expect("seed messages are small");
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(body);
            }
            Step::Tick => out.push(1),
            Step::Append(b) => out.extend_from_slice(&[2, *b]),
            Step::Outgoing => out.push(3),
            Step::Reconnected(b) => out.extend_from_slice(&[4, *b]),
            Step::TryLead => out.push(5),
            Step::Flush => out.push(6),
            Step::TrimAndRead => out.push(7),
            Step::FailRecovery => out.push(8),
        }
    }
    out
}

/// A message as the transport encodes a frame body.
pub fn encode(msg: &Message<Entry>) -> Vec<u8> {
    use bincode::Options;
    bincode::DefaultOptions::new()
        .serialize(msg)
        .expect("a message encodes")
}

/// A message framed as on the wire: big-endian length, then the body.
pub fn frame(msg: &Message<Entry>) -> Vec<u8> {
    let body = encode(msg);
    let mut out = u32::try_from(body.len())
        .expect("seed messages are small")
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(&body);
    out
}

/// How `storage_open` damages the file it picks.
#[derive(Debug)]
pub enum Damage<'a> {
    /// Cut the file to `len % (file length + 1)` bytes.
    Truncate(u32),
    /// Write `bytes` at `at % file length`.
    Overwrite(u32, &'a [u8]),
    /// Replace the whole file with `bytes`.
    Replace(&'a [u8]),
    /// Append `bytes`.
    Append(&'a [u8]),
    /// Remove the file.
    Remove,
}

/// Reads a `storage_open` input: which file (a byte, modulo the number of
/// files), how to damage it (a byte), a `u32` little-endian, the bytes.
pub fn parse_damage(data: &[u8]) -> Option<(u8, Damage<'_>)> {
    let (&[file, how], rest) = data.split_first_chunk::<2>()?;
    let (n, bytes) = match rest.split_first_chunk::<4>() {
        Some((n, bytes)) => (u32::from_le_bytes(*n), bytes),
        None => (0, &[][..]),
    };
    let damage = match how % 5 {
        0 => Damage::Truncate(n),
        1 => Damage::Overwrite(n, bytes),
        2 => Damage::Replace(bytes),
        3 => Damage::Append(bytes),
        _ => Damage::Remove,
    };
    Some((file, damage))
}

/// The `storage_open` target's storage: the directory it damages.
pub mod storage {
    use super::{Entry, entry};
    use commitlog::LogOptions;
    use omnipaxos::{
        ballot::Ballot,
        storage::{Snapshot, Storage},
    };
    use omnipaxos_storage::persistent_storage::{PersistentStorage, PersistentStorageConfig};
    use std::{
        path::{Path, PathBuf},
        sync::OnceLock,
    };
    use tempfile::TempDir;

    /// Opens (or creates) the storage at `root`, with segments small enough
    /// that a few entries fill several.
    pub fn open(root: &Path) -> omnipaxos::storage::StorageResult<PersistentStorage<Entry>> {
        let mut log = LogOptions::new(root.join("commitlog"));
        log.segment_max_bytes(256);
        let mut config = PersistentStorageConfig::with_path(root);
        config.set_commitlog_options(log);
        PersistentStorage::open(config)
    }

    /// A storage directory made once per process and never changed: ten
    /// entries in several segments, the first two trimmed into a snapshot,
    /// a promise, an accepted round and a decided index.
    pub fn template() -> &'static TempDir {
        static DIR: OnceLock<TempDir> = OnceLock::new();
        DIR.get_or_init(|| {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let mut s = open(dir.path()).expect("a fresh storage opens");
            let entries: Vec<Entry> = (0..10).map(entry).collect();
            let n = Ballot::with(1, 2, 2);
            s.set_promise(n).expect("write");
            s.append_entries(entries.clone()).expect("write");
            s.set_accepted_round(n).expect("write");
            s.set_decided_idx(6).expect("write");
            s.set_snapshot(Some(Snapshot::create(&entries[..2])))
                .expect("write");
            s.trim(2).expect("write");
            s.set_compacted_idx(2).expect("write");
            drop(s);
            dir
        })
    }

    /// The files under `root`, relative to it, sorted.
    pub fn files(root: &Path) -> Vec<PathBuf> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(dir).expect("read a directory") {
                let path = e.expect("a directory entry").path();
                if path.is_dir() {
                    walk(root, &path, out);
                } else {
                    out.push(path.strip_prefix(root).expect("under root").to_path_buf());
                }
            }
        }
        let mut out = Vec::new();
        walk(root, root, &mut out);
        out.sort();
        out
    }
}
