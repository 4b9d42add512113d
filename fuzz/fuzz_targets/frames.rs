//! The transport's frame reader and message decoder on arbitrary bytes, as
//! an inbound link after the handshake: frames are read and decoded until
//! the bytes end or one fails. Must never panic nor build a value past the
//! budget.
#![no_main]

use libfuzzer_sys::fuzz_target;
use omnipaxos::messages::Message;
use omnipaxos_fuzz::{DECODE_BUDGET, Entry, encode};
use omnipaxos_runtime::net::fuzzing::decode_frames;

fuzz_target!(|data: &[u8]| {
    // A small frame maximum, so that the too-large path is reached too.
    let (msgs, _) = decode_frames::<Message<Entry>>(data, 1 << 16, DECODE_BUDGET);
    for msg in &msgs {
        // What decodes encodes again (nothing in it is unrepresentable).
        let _ = encode(msg);
    }
});
