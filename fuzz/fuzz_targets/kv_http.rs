//! The kv_store's HTTP request checks: an arbitrary method, path and query
//! and body through the server's routes, whose handlers here stop after
//! checking the request (`kv_store::server::fuzzing_router`): the path's
//! key, the query string, the JSON body and the value checks. Every request
//! gets an answer, never a panic. (hyper's own parser is not fuzzed here.)
#![no_main]

use axum::{Router, body::Body, http::Request};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tower::ServiceExt;

const METHODS: [&str; 5] = ["GET", "PUT", "POST", "DELETE", "PATCH"];

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    })
}

fn send(router: Router, method: &str, uri: &str, body: &[u8]) {
    let Ok(req) = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::from(body.to_vec()))
    else {
        return; // not a URI: hyper would have refused it
    };
    let resp = runtime()
        .block_on(router.oneshot(req))
        .expect("a router answers every request");
    let _ = resp.status();
}

fuzz_target!(|data: &[u8]| {
    // A method byte, then the path and query up to a newline, then the body.
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    let (uri, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let Ok(uri) = std::str::from_utf8(uri) else {
        return;
    };
    let method = METHODS[usize::from(m) % METHODS.len()];
    send(kv_store::server::fuzzing_router(), method, uri, body);
});
