//! Helpers shared by the kv_store's test binaries.

use hyper::Method;
use kv_store::KvClient;
use std::time::Duration;

/// Polls the server's `GET /metrics` until it holds `line`, for at most 10 s.
pub(crate) async fn wait_for_metric(client: &KvClient, line: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = client
            .raw(Method::GET, "/metrics", None)
            .await
            .expect("the server answers");
        let text = String::from_utf8_lossy(&body).into_owned();
        if text.contains(line) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{line} not in:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
