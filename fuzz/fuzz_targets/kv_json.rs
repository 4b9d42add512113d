//! The kv_store's JSON bodies on arbitrary bytes: every request body the
//! server parses and every answer the client parses. What parses must
//! serialise and parse back to the same value. Never a panic.
#![no_main]

use kv_store::api::*;
use libfuzzer_sys::fuzz_target;
use serde::{Serialize, de::DeserializeOwned};
use std::fmt::Debug;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(data: &[u8]) {
    if let Ok(v) = serde_json::from_slice::<T>(data) {
        let text = serde_json::to_vec(&v).expect("a parsed body serialises");
        let back: T = serde_json::from_slice(&text).expect("a serialised body parses");
        assert_eq!(v, back);
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<PutRequest>(data);
    round_trip::<CasRequest>(data);
    round_trip::<MembersChange>(data);
    round_trip::<WriteResponse>(data);
    round_trip::<GetResponse>(data);
    round_trip::<ScanResponse>(data);
    round_trip::<ErrorBody>(data);
    round_trip::<StatusResponse>(data);
    round_trip::<MembersResponse>(data);
});
