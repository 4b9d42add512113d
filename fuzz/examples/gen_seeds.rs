//! Writes the checked-in seed corpus, `corpus/<target>/`: a few small valid
//! inputs per target, from a real three-server run where the target takes
//! messages. Run from `fuzz/`: `cargo run --example gen_seeds`; it replaces
//! the files it writes (named `seed-*`) and leaves others alone.

use omnipaxos::messages::Message;
use omnipaxos_fuzz::{Node, Step, config, encode, entry, frame, write_steps};
use omnipaxos_storage::memory_storage::MemoryStorage;
use std::{fs, path::Path};

fn write(target: &str, seeds: &[Vec<u8>]) {
    let dir = Path::new("corpus").join(target);
    fs::create_dir_all(&dir).expect("mkdir");
    for (i, seed) in seeds.iter().enumerate() {
        fs::write(dir.join(format!("seed-{i}")), seed).expect("write a seed");
    }
}

/// Runs servers 1, 2, 3 for `steps` rounds, appending at server 1 now and
/// then, and returns server 2's inputs as steps and every message sent.
fn cluster_run(steps: usize) -> (Vec<Step>, Vec<Message<omnipaxos_fuzz::Entry>>) {
    let mut nodes: Vec<Node> = (1..=3)
        .map(|pid| config(pid).build(MemoryStorage::default()).expect("valid"))
        .collect();
    let mut inputs = Vec::new();
    let mut all = Vec::new();
    for round in 0..steps {
        let mut sent = Vec::new();
        for (i, node) in nodes.iter_mut().enumerate() {
            node.tick();
            if round % 7 == 3 {
                let _ = node.append(entry(round as u8));
                if i == 1 {
                    inputs.push(Step::Append(round as u8));
                }
            }
            node.take_outgoing_messages(&mut sent);
        }
        inputs.push(Step::Tick);
        inputs.push(Step::Outgoing);
        for msg in sent {
            let to = msg.get_receiver();
            if to == 2 {
                inputs.push(Step::Message(encode(&msg)));
            }
            all.push(msg.clone());
            if let Some(node) = nodes.get_mut(to as usize - 1) {
                node.handle_incoming(msg);
            }
        }
    }
    eprintln!(
        "{steps} rounds: leader {:?}, decided {}, {} messages",
        nodes[1].get_current_leader(),
        nodes[1].get_decided_idx(),
        all.len()
    );
    (inputs, all)
}

fn main() {
    let (inputs, msgs) = cluster_run(60);

    // handle_incoming: server 2's whole run, its first part, and the run
    // with a leader attempt and a crash recovery at the end.
    let half = inputs.len() / 2;
    let mut tail = cluster_run(60).0;
    tail.extend([
        Step::TryLead,
        Step::Flush,
        Step::FailRecovery,
        Step::TrimAndRead,
    ]);
    write(
        "handle_incoming",
        &[
            write_steps(&inputs),
            write_steps(&inputs[..half]),
            write_steps(&tail),
        ],
    );

    // frames: one frame of each kind of message seen, and a stream of all.
    let mut kinds = std::collections::BTreeMap::new();
    for msg in &msgs {
        // The message's kind: its text without the numbers, cut short.
        let kind: String = format!("{msg:?}")
            .chars()
            .filter(|c| !c.is_ascii_digit())
            .take(60)
            .collect();
        kinds.entry(kind).or_insert_with(|| frame(msg));
    }
    let mut frames: Vec<Vec<u8>> = kinds.into_values().take(12).collect();
    frames.push(msgs.iter().take(40).flat_map(frame).collect());
    write("frames", &frames);

    // handshake: a flags byte (bit 0: this node has a key), the preface,
    // then a Hello from server 1 to server 2 of cluster 7 (to the acceptor)
    // or a Challenge from server 3 (to the dialer).
    let preface = b"OPXNET\x00\x01";
    let framed = |body: Vec<u8>| {
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend(body);
        out
    };
    let hello = framed([&[7u8, 1, 2][..], &[0xAB; 32]].concat());
    let challenge = framed([&[0u8, 7, 3][..], &[0xCD; 32], &[0]].concat());
    let challenge_psk = framed([&[0u8, 7, 3][..], &[0xCD; 32], &[1], &[0xEF; 32]].concat());
    let proof = framed(vec![0]);
    let seed = |flags: u8, parts: &[&[u8]]| [&[flags][..], &parts.concat()].concat();
    write(
        "handshake",
        &[
            seed(0, &[preface, &hello, &proof]),
            seed(0, &[preface, &challenge, &framed(vec![1])]),
            seed(1, &[preface, &challenge_psk]),
            seed(0, &[preface, &framed(vec![2, 0])]),
        ],
    );

    // storage_open: which file, how (truncate, overwrite, replace, append,
    // remove), a number, bytes.
    write(
        "storage_open",
        &[
            vec![0, 0, 10, 0, 0, 0],
            vec![1, 1, 2, 0, 0, 0, 0xff, 0xff],
            vec![2, 2, 0, 0, 0, 0, b'x'],
            vec![3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            vec![4, 4],
            vec![5, 1, 20, 0, 0, 0, 0x10, 0x00],
        ],
    );

    write(
        "config_toml",
        &[
            b"configuration_id = 1\npid = 2\npeers = [1, 3]\n".to_vec(),
            b"pid = 1\npeers = [2, 3, 4, 5]\nbatch_size = 10\nelection_tick_timeout = 5\n\
              [flexible_quorum]\nread_quorum_size = 4\nwrite_quorum_size = 2\n"
                .to_vec(),
            b"pid = 2\npeers = [1, 3]\nlogger_file_path = \"/tmp/x\"\nleader_priority = 3\n"
                .to_vec(),
        ],
    );

    write(
        "kv_json",
        &[
            br#"{"value":"v1"}"#.to_vec(),
            br#"{"expected":null,"new":"v2"}"#.to_vec(),
            br#"{"add":{"id":4,"addr":"127.0.0.1:7004"}}"#.to_vec(),
            br#"{"remove":3}"#.to_vec(),
            br#"{"replace":{"old":3,"id":4,"addr":"[::1]:7004"}}"#.to_vec(),
            br#"{"index":3,"success":true,"previous":"a"}"#.to_vec(),
            br#"{"items":{"a":"1","b":"2"},"truncated":false}"#.to_vec(),
            br#"{"error":"key_not_found","message":"no"}"#.to_vec(),
        ],
    );

    write(
        "kv_http",
        &[
            b"\x00/kv/a?stale=true\n".to_vec(),
            b"\x01/kv/a\n{\"value\":\"v\"}".to_vec(),
            b"\x02/kv/a/cas\n{\"expected\":\"v\",\"new\":\"w\"}".to_vec(),
            b"\x03/kv/a\n".to_vec(),
            b"\x00/kv?prefix=a&limit=10&stale=true\n".to_vec(),
            b"\x02/members\n{\"remove\":3}".to_vec(),
            b"\x04/status\n".to_vec(),
        ],
    );
}
