//! Server 2 of a three-server cluster fed an arbitrary sequence of messages
//! (decoded from bytes with the transport's codec), interleaved with ticks,
//! appends, leader attempts and the other inputs of a driver (see
//! `omnipaxos_fuzz::Step`). Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use omnipaxos::messages::Message;
use omnipaxos_fuzz::{DECODE_BUDGET, Entry, Node, Step, config, entry, parse_steps};
use omnipaxos_runtime::net::fuzzing::decode_body;
use omnipaxos_storage::memory_storage::MemoryStorage;

fuzz_target!(|data: &[u8]| {
    let mut node: Node = config(2)
        .build(MemoryStorage::default())
        .expect("the config is valid");
    let mut out = Vec::new();
    for step in parse_steps(data) {
        match step {
            Step::Message(body) => {
                if let Some(msg) = decode_body::<Message<Entry>>(&body, DECODE_BUDGET) {
                    node.handle_incoming(msg);
                }
            }
            Step::Tick => node.tick(),
            Step::Append(b) => {
                let _ = node.append(entry(b));
            }
            Step::Outgoing => {
                node.take_outgoing_messages(&mut out);
                out.clear();
            }
            Step::Reconnected(b) => node.reconnected(u64::from(b % 4)),
            Step::TryLead => node.try_become_leader(),
            Step::Flush => node.flush_batch(),
            Step::TrimAndRead => {
                let _ = node.trim(Some(node.get_decided_idx()));
                let _ = node.request_read();
            }
            Step::FailRecovery => node.fail_recovery(),
        }
        // The queries a driver and the UI make.
        let _ = node.read_decided_suffix(0);
        let _ = node.get_ui_states();
    }
    node.take_outgoing_messages(&mut out);
});
