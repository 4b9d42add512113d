//! `kv_store load`: a closed-loop HTTP load generator, so that the kv_store
//! and etcd can be measured under the same load without installing `wrk`.
//!
//! Each of `connections` workers keeps one HTTP/1.1 connection and sends one
//! request at a time on it, the next as soon as the answer is in: the load
//! that `wrk -c N` applies. Keys are drawn at random from `keys` (seeded per
//! worker, so runs are comparable); values are `value_bytes` long. Every
//! request's latency is kept (a few bytes each: a 10 s run at 100,000
//! requests/s holds 4 MB), and the report gives requests/s and percentiles of
//! the requests that succeeded; a request that failed or was refused counts
//! as an error and is not in the percentiles.
//!
//! Two dialects: the kv_store's own API (`PUT /kv/{key}`, `GET /kv/{key}`,
//! which is linearizable) and etcd's HTTP/JSON gateway (`POST /v3/kv/put`,
//! `POST /v3/kv/range`, linearizable by default), keys and values in base64
//! as the gateway wants them.

use base64::{Engine as _, engine::general_purpose::STANDARD as B64};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, body::Bytes, header};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use rand::{Rng as _, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::{
    fmt,
    time::{Duration, Instant},
};

/// Which server's API the load speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Dialect {
    /// The kv_store's HTTP API.
    Kv,
    /// etcd's v3 HTTP/JSON gateway.
    Etcd,
}

/// What each request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LoadOp {
    /// Write a key.
    Put,
    /// Read a key, linearizably.
    Get,
}

/// A load to apply.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// The server, `http://HOST:PORT`.
    pub url: String,
    /// Which API it speaks.
    pub dialect: Dialect,
    /// Puts or gets.
    pub op: LoadOp,
    /// Concurrent connections, each with one request outstanding.
    pub connections: usize,
    /// How long to apply the load.
    pub duration: Duration,
    /// How many distinct keys.
    pub keys: u64,
    /// The length of every value written.
    pub value_bytes: usize,
    /// How long one request may take before it counts as an error.
    pub timeout: Duration,
    /// Sent as `Authorization: Bearer <token>` with every request, if set
    /// (a kv_store server's --token-file).
    pub token: Option<String>,
}

/// What a load run measured.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LoadReport {
    /// Requests answered with success.
    pub ok: u64,
    /// Requests that failed, timed out or were answered with an error.
    pub errors: u64,
    /// Successful requests per second of the run.
    pub per_sec: f64,
    /// Latency percentiles of successful requests, in milliseconds.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// The slowest.
    pub max_ms: f64,
    /// The first error seen, to say what went wrong.
    pub first_error: Option<String>,
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:.0} req/s ({} ok, {} errors), p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.per_sec, self.ok, self.errors, self.p50_ms, self.p90_ms, self.p99_ms, self.max_ms
        )?;
        if let Some(e) = &self.first_error {
            write!(f, "; first error: {e}")?;
        }
        Ok(())
    }
}

/// Why a load could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The spec cannot be run as given.
    #[error("invalid load: {0}")]
    Invalid(String),
}

struct Worker {
    latencies_us: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

/// Applies the load and reports what it measured.
pub async fn run_load(spec: &LoadSpec) -> Result<LoadReport, LoadError> {
    if spec.connections == 0 || spec.keys == 0 {
        return Err(LoadError::Invalid(
            "connections and keys must be at least 1".to_owned(),
        ));
    }
    let base = spec.url.trim_end_matches('/').to_owned();
    if !base.starts_with("http://") {
        return Err(LoadError::Invalid(format!(
            "the server address {base:?} must start with http://"
        )));
    }
    let value: String = "v".repeat(spec.value_bytes);
    let start = Instant::now();
    let deadline = start + spec.duration;
    let mut tasks = Vec::with_capacity(spec.connections);
    for worker in 0..spec.connections {
        let spec = spec.clone();
        let base = base.clone();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            work(worker as u64, &spec, &base, &value, deadline).await
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for task in tasks {
        match task.await {
            Ok(w) => {
                latencies.extend(w.latencies_us);
                errors += w.errors;
                first_error = first_error.or(w.first_error);
            }
            Err(e) => {
                errors += 1;
                first_error = first_error.or_else(|| Some(format!("a worker failed: {e}")));
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64().max(1e-9);
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        f64::from(latencies[i]) / 1000.0
    };
    Ok(LoadReport {
        ok: latencies.len() as u64,
        errors,
        per_sec: latencies.len() as f64 / elapsed,
        p50_ms: pct(0.50),
        p90_ms: pct(0.90),
        p99_ms: pct(0.99),
        max_ms: pct(1.0),
        first_error,
    })
}

async fn work(id: u64, spec: &LoadSpec, base: &str, value: &str, deadline: Instant) -> Worker {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    // One pooled connection per worker: `connections` sockets in all.
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1)
        .build(connector);
    let mut rng = ChaCha8Rng::seed_from_u64(0x6b76_0000 + id);
    let mut w = Worker {
        latencies_us: Vec::new(),
        errors: 0,
        first_error: None,
    };
    while Instant::now() < deadline {
        let key = format!("k{}", rng.gen_range(0..spec.keys));
        let request = build_request(spec, base, &key, value);
        let sent = Instant::now();
        let outcome = tokio::time::timeout(spec.timeout, async {
            let response = client.request(request).await.map_err(|e| e.to_string())?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            // A kv GET of a key never written answers 404: a read all the same.
            let read_miss = spec.op == LoadOp::Get && status.as_u16() == 404;
            if status.is_success() || read_miss {
                Ok(())
            } else {
                let text = String::from_utf8_lossy(&body.to_bytes()).into_owned();
                Err(format!(
                    "{status}: {}",
                    text.chars().take(200).collect::<String>()
                ))
            }
        })
        .await;
        match outcome {
            Ok(Ok(())) => {
                let us = sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                w.latencies_us.push(us);
            }
            Ok(Err(e)) => {
                w.errors += 1;
                w.first_error.get_or_insert(e);
            }
            Err(_) => {
                w.errors += 1;
                w.first_error
                    .get_or_insert_with(|| format!("no answer within {:?}", spec.timeout));
            }
        }
    }
    w
}

fn build_request(spec: &LoadSpec, base: &str, key: &str, value: &str) -> Request<Full<Bytes>> {
    let (method, uri, body) = match (spec.dialect, spec.op) {
        (Dialect::Kv, LoadOp::Put) => (
            Method::PUT,
            format!("{base}/kv/{key}"),
            serde_json::json!({ "value": value }).to_string(),
        ),
        (Dialect::Kv, LoadOp::Get) => (Method::GET, format!("{base}/kv/{key}"), String::new()),
        (Dialect::Etcd, LoadOp::Put) => (
            Method::POST,
            format!("{base}/v3/kv/put"),
            serde_json::json!({ "key": B64.encode(key), "value": B64.encode(value) }).to_string(),
        ),
        (Dialect::Etcd, LoadOp::Get) => (
            Method::POST,
            format!("{base}/v3/kv/range"),
            serde_json::json!({ "key": B64.encode(key) }).to_string(),
        ),
    };
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = &spec.token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    req.body(Full::new(Bytes::from(body)))
        .expect("a request built from a checked base URL and a plain key")
}
