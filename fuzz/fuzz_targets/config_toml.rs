//! Arbitrary text as the omnipaxos TOML config, then validated, then built
//! when valid. Must end in Ok or a `ConfigError`, never a panic. (The
//! runtime and the kv_store read no TOML of their own.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use omnipaxos::OmniPaxosConfig;
use omnipaxos_fuzz::Node;
use omnipaxos_storage::memory_storage::MemoryStorage;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut config) = OmniPaxosConfig::from_toml_str(text) else {
        return;
    };
    // Building with a log file creates it (and its directories) wherever
    // the path says: the fuzzer would litter the file system.
    config.logger_file_path = None;
    if config.validate().is_ok() && config.peers.len() < 64 && config.buffer_size < 1 << 20 {
        // Building allocates `buffer_size` and per-peer state, so only
        // modest ones are built.
        let built: Result<Node, _> = config.build(MemoryStorage::default());
        let _ = built;
    }
});
