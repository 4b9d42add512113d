//! [`KvClient`]: a typed client of the HTTP API, used by the CLI's client
//! subcommands, the demo and the tests.

use crate::api::{
    CasRequest, ErrorBody, GetResponse, MembersChange, MembersResponse, Outcome, PutRequest,
    ScanResponse, StatusResponse, WriteResponse,
};
use http_body_util::{BodyExt, Full};
use hyper::{
    Method, Request, StatusCode,
    body::Bytes,
    header::{self, HeaderValue},
};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use rustls::pki_types::{CertificateDer, pem::PemObject};
use serde::de::DeserializeOwned;
use std::{fmt::Write as _, sync::Arc, time::Duration};

/// Why a request did not get a successful answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server address is not `http://HOST:PORT` or `HOST:PORT` (the caller's fault).
    #[error("invalid server address {server:?}: {reason}")]
    InvalidServer {
        /// What was given.
        server: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No connection could be made; the request was not sent.
    #[error("cannot connect to {server}: {detail}")]
    Connect {
        /// The server.
        server: String,
        /// Why.
        detail: String,
    },
    /// The connection failed after the request may have been sent.
    #[error("request to {server} failed: {detail}")]
    Transport {
        /// The server.
        server: String,
        /// Why.
        detail: String,
    },
    /// No answer within the client's timeout.
    #[error("no answer from {server} within {after:?}")]
    Timeout {
        /// The server.
        server: String,
        /// The timeout.
        after: Duration,
    },
    /// The server answered with an error.
    #[error("{server} answered {status}: {}", body.message)]
    Api {
        /// The server.
        server: String,
        /// The HTTP status.
        status: u16,
        /// The error body.
        body: ErrorBody,
    },
    /// The answer was not what was asked for: not the JSON expected (a server
    /// of another version?), or metrics that are not UTF-8.
    #[error("cannot decode the answer of {server}: {detail}")]
    Decode {
        /// The server.
        server: String,
        /// Why.
        detail: String,
    },
}

impl ClientError {
    /// What is known of a write that failed with this error: only an error
    /// that proves the write never reached the cluster is
    /// [`Outcome::NotApplied`].
    pub fn write_outcome(&self) -> Outcome {
        match self {
            Self::InvalidServer { .. } | Self::Connect { .. } => Outcome::NotApplied,
            Self::Api { status, body, .. } => body.outcome.unwrap_or(if *status < 500 {
                Outcome::NotApplied
            } else {
                Outcome::Unknown
            }),
            Self::Transport { .. } | Self::Timeout { .. } | Self::Decode { .. } => Outcome::Unknown,
        }
    }

    /// The machine-readable error code of an API error, if this is one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { body, .. } => Some(&body.error),
            _ => None,
        }
    }
}

/// Reads a bearer token from `path`: the file's text without the line end
/// after it. A token is 1 to 4096 visible ASCII characters (no spaces), so
/// that it fits an `Authorization` header as it is.
pub fn read_token_file(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
    let token = text.trim_end_matches(['\n', '\r']);
    if token.is_empty() || token.len() > 4096 {
        return Err(format!(
            "the token file {} must hold 1 to 4096 characters, not {}",
            path.display(),
            token.len()
        ));
    }
    if let Some(c) = token.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "the token file {} holds {c:?}: a token is visible ASCII characters only",
            path.display()
        ));
    }
    Ok(token.to_owned())
}

/// The request timeout of a new client.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A client of one kv_store server's HTTP API. Cheap to clone; clones made
/// with [`for_server`](Self::for_server) share one connection pool.
#[derive(Clone, Debug)]
pub struct KvClient {
    /// `http://HOST:PORT`, without a trailing slash.
    base: Arc<str>,
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// Whether the client trusts a CA, and so may call https:// servers.
    https: bool,
    timeout: Duration,
    /// `Bearer <token>`, sent with every request, if the servers want one.
    authorization: Option<HeaderValue>,
}

impl KvClient {
    /// A client of the server at `server` (`http://HOST:PORT` or `HOST:PORT`).
    pub fn new(server: &str) -> Result<Self, ClientError> {
        Self::with_ca(server, None)
    }

    /// A client of the server at `server` that, given `ca_pem` (PEM
    /// certificates, e.g. the servers' `--http-tls-cert` CA), may also call
    /// `https://HOST:PORT` servers whose certificate those CAs signed and
    /// which name `HOST`. Without one, an `https://` server is refused here.
    pub fn with_ca(server: &str, ca_pem: Option<&[u8]>) -> Result<Self, ClientError> {
        let invalid = |reason: String| ClientError::InvalidServer {
            server: server.to_owned(),
            reason,
        };
        let mut roots = rustls::RootCertStore::empty();
        if let Some(pem) = ca_pem {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert =
                    cert.map_err(|e| invalid(format!("the CA file is not valid PEM: {e}")))?;
                roots.add(cert).map_err(|e| {
                    invalid(format!("the CA file holds an unusable certificate: {e}"))
                })?;
            }
            if roots.is_empty() {
                return Err(invalid("the CA file holds no certificate".to_owned()));
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| invalid(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        // The TLS layer above handles https:// itself.
        connector.enforce_http(false);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        let https = ca_pem.is_some();
        Ok(Self {
            base: normalize(server, https)?.into(),
            http,
            https,
            timeout: DEFAULT_TIMEOUT,
            authorization: None,
        })
    }

    /// A client of another server that shares this one's connection pool and timeout.
    pub fn for_server(&self, server: &str) -> Result<Self, ClientError> {
        Ok(Self {
            base: normalize(server, self.https)?.into(),
            http: self.http.clone(),
            https: self.https,
            timeout: self.timeout,
            authorization: self.authorization.clone(),
        })
    }

    /// The same client with another request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The same client sending `token` as its bearer token with every request
    /// (the servers' `--token-file`); `None` sends none. A token that cannot
    /// be a header value (a control character) is sent as none, and the
    /// server answers 401.
    pub fn with_token(mut self, token: Option<&str>) -> Self {
        self.authorization = token.and_then(|t| {
            let mut v = HeaderValue::from_str(&format!("Bearer {t}")).ok()?;
            v.set_sensitive(true);
            Some(v)
        });
        self
    }

    /// The server, as `http://HOST:PORT`.
    pub fn server(&self) -> &str {
        &self.base
    }

    /// Reads `key` linearizably: the answer reflects every write acknowledged
    /// before the read started. `None` if the key has no value.
    pub async fn get(&self, key: &str) -> Result<Option<String>, ClientError> {
        self.get_with(key, false).await
    }

    /// Reads `key` from the server's local copy, which may lag behind.
    pub async fn get_stale(&self, key: &str) -> Result<Option<String>, ClientError> {
        self.get_with(key, true).await
    }

    async fn get_with(&self, key: &str, stale: bool) -> Result<Option<String>, ClientError> {
        let path = format!(
            "/kv/{}{}",
            encode(key),
            if stale { "?stale=true" } else { "" }
        );
        match self.call::<GetResponse>(Method::GET, &path, None).await {
            Ok(r) => Ok(Some(r.value)),
            Err(ClientError::Api {
                status: 404,
                ref body,
                ..
            }) if body.error == "key_not_found" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sets `key` to `value`.
    pub async fn put(&self, key: &str, value: &str) -> Result<WriteResponse, ClientError> {
        let body = json(&PutRequest {
            value: value.to_owned(),
        });
        self.call(Method::PUT, &format!("/kv/{}", encode(key)), Some(body))
            .await
    }

    /// Removes `key`.
    pub async fn delete(&self, key: &str) -> Result<WriteResponse, ClientError> {
        self.call(Method::DELETE, &format!("/kv/{}", encode(key)), None)
            .await
    }

    /// Sets `key` to `new` if its value is `expected` (`None`: if absent);
    /// [`WriteResponse::success`] says whether it did.
    pub async fn cas(
        &self,
        key: &str,
        expected: Option<&str>,
        new: &str,
    ) -> Result<WriteResponse, ClientError> {
        let body = json(&CasRequest {
            expected: expected.map(str::to_owned),
            new: new.to_owned(),
        });
        self.call(
            Method::POST,
            &format!("/kv/{}/cas", encode(key)),
            Some(body),
        )
        .await
    }

    /// Reads, linearizably, up to `limit` keys that start with `prefix`.
    pub async fn scan(&self, prefix: &str, limit: usize) -> Result<ScanResponse, ClientError> {
        let path = format!("/kv?prefix={}&limit={limit}", encode(prefix));
        self.call(Method::GET, &path, None).await
    }

    /// The server's view of the cluster.
    pub async fn status(&self) -> Result<StatusResponse, ClientError> {
        self.call(Method::GET, "/status", None).await
    }

    /// The configuration the server runs in and its members.
    pub async fn members(&self) -> Result<MembersResponse, ClientError> {
        self.call(Method::GET, "/members", None).await
    }

    /// Proposes `change` and waits until the next configuration has a leader.
    pub async fn change_members(
        &self,
        change: &MembersChange,
    ) -> Result<MembersResponse, ClientError> {
        self.call(Method::POST, "/members", Some(json(change)))
            .await
    }

    /// The server's `GET /metrics`: its figures in the Prometheus text format.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let (status, bytes) = self.raw(Method::GET, "/metrics", None).await?;
        let server = || self.base.to_string();
        if !status.is_success() {
            return Err(ClientError::Api {
                server: server(),
                status: status.as_u16(),
                body: serde_json::from_slice(&bytes).unwrap_or_else(|_| ErrorBody {
                    error: "http_error".to_owned(),
                    message: format!("HTTP {status}"),
                    outcome: None,
                    configuration: None,
                }),
            });
        }
        String::from_utf8(bytes.to_vec()).map_err(|e| ClientError::Decode {
            server: server(),
            detail: e.to_string(),
        })
    }

    /// Sends a request and decodes a 2xx answer as `R`, anything else as an
    /// [`ErrorBody`].
    async fn call<R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<R, ClientError> {
        let (status, bytes) = self.raw(method, path, body).await?;
        let server = || self.base.to_string();
        if status.is_success() {
            serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
                server: server(),
                detail: e.to_string(),
            })
        } else {
            let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| ErrorBody {
                error: "http_error".to_owned(),
                message: format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                ),
                outcome: None,
                configuration: None,
            });
            Err(ClientError::Api {
                server: server(),
                status: status.as_u16(),
                body,
            })
        }
    }

    /// Sends a request and returns the status and body of the answer as they are.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let server = || self.base.to_string();
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        if let Some(auth) = &self.authorization {
            req = req.header(header::AUTHORIZATION, auth.clone());
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::InvalidServer {
                server: server(),
                reason: e.to_string(),
            })?;
        let exchange = async {
            let resp = self.http.request(req).await.map_err(|e| {
                let detail = error_chain(&e);
                if e.is_connect() {
                    ClientError::Connect {
                        server: server(),
                        detail,
                    }
                } else {
                    ClientError::Transport {
                        server: server(),
                        detail,
                    }
                }
            })?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| ClientError::Transport {
                    server: server(),
                    detail: error_chain(&e),
                })?
                .to_bytes();
            Ok((status, bytes))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout {
                server: server(),
                after: self.timeout,
            })?
    }
}

fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("API request types serialise to JSON")
}

/// The error and its sources, joined: hyper's top-level messages are vague.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let _ = write!(s, ": {inner}");
        source = inner.source();
    }
    s
}

/// `http://HOST:PORT` from what a user may type.
fn normalize(server: &str, https: bool) -> Result<String, ClientError> {
    let trimmed = server.trim_end_matches('/');
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_owned()
    } else {
        format!("http://{trimmed}")
    };
    let invalid = |reason: &str| ClientError::InvalidServer {
        server: server.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: hyper::Uri = with_scheme.parse().map_err(|e| invalid(&format!("{e}")))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") if https => {}
        Some("https") => {
            return Err(invalid(
                "an https:// server needs the CA that signed its certificate (--tls-ca)",
            ));
        }
        _ => return Err(invalid("only http:// and https:// are supported")),
    }
    if uri.host().is_none() || uri.path() != "/" {
        return Err(invalid("expected http://HOST:PORT or https://HOST:PORT"));
    }
    Ok(with_scheme)
}

/// Percent-encodes everything but unreserved characters, for a path segment
/// or a query value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_are_normalised() {
        assert_eq!(
            normalize("127.0.0.1:8001", false).unwrap(),
            "http://127.0.0.1:8001"
        );
        assert_eq!(
            normalize("http://localhost:80/", false).unwrap(),
            "http://localhost:80"
        );
        assert!(normalize("https://x:1", false).is_err(), "no CA");
        assert_eq!(normalize("https://x:1", true).unwrap(), "https://x:1");
        assert!(normalize("ftp://x:1", true).is_err());
        assert!(normalize("http://x:1/kv", false).is_err());
    }

    #[test]
    fn keys_are_percent_encoded() {
        assert_eq!(encode("a/b c+%é"), "a%2Fb%20c%2B%25%C3%A9");
        assert_eq!(encode("Az09-._~"), "Az09-._~");
    }
}
