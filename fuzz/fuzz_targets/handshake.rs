//! The transport's handshake, both sides, on a peer that sends arbitrary
//! bytes: the preface check and the parsing of each handshake frame. The
//! first byte picks whether this node has a pre-shared key. Must end in Ok
//! or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use omnipaxos_runtime::net::fuzzing::{accept, dial};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, bytes)) = data.split_first() else {
        return;
    };
    let psk = (flags & 1 == 1).then_some(&b"a shared key"[..]);
    let _ = accept(bytes, psk);
    let _ = dial(bytes, psk);
});
