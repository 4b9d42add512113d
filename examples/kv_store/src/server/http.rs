//! The HTTP/JSON client API; see [`crate::api`] for the routes and bodies.

use super::{
    members::{self, Directory},
    metrics::{self, Recorders},
    replica::Replica,
};
use crate::{
    api::{
        CasRequest, ErrorBody, GetResponse, MembersChange, MembersResponse, NextConfiguration,
        Outcome, PeerStatus, PutRequest, Role, ScanResponse, StatusResponse, WriteResponse,
    },
    store::{KVCommand, Op},
};
use axum::{
    Json, Router,
    body::Bytes,
    extract::{
        DefaultBodyLimit, FromRequestParts, Path, Query, Request, State,
        rejection::{BytesRejection, PathRejection, QueryRejection},
    },
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header, request::Parts},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use omnipaxos::util::{NodeId, StopSign};
use omnipaxos_runtime::{
    NodeStatus, OmniPaxosNode, RuntimeError,
    net::{NetStatsReader, PeerAddresses},
};
use prometheus_client::{
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::{
    collections::BTreeMap,
    ops::Deref,
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

/// The longest key accepted, in bytes.
pub(crate) const MAX_KEY_BYTES: usize = 1024;
/// The longest value accepted, in bytes.
pub(crate) const MAX_VALUE_BYTES: usize = 64 * 1024;
/// The largest request body accepted; larger ones get 413 before they are read whole.
const MAX_BODY_BYTES: usize = 2 * MAX_VALUE_BYTES;
/// The most keys one scan returns.
const MAX_SCAN_LIMIT: usize = 100_000;
/// The number of keys a scan returns when no limit is given.
const DEFAULT_SCAN_LIMIT: usize = 1000;

/// What every handler needs.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) node: OmniPaxosNode<KVCommand>,
    pub(crate) replica: Arc<Replica>,
    pub(crate) cluster_id: u64,
    /// The members' addresses, and the change this server proposes.
    pub(crate) directory: Arc<Directory>,
    pub(crate) storage: &'static str,
    pub(crate) request_timeout: Duration,
    /// The transport's counters, for the links in `/status`.
    pub(crate) net: NetStatsReader,
    /// The latency histograms the handlers observe into.
    pub(crate) recorders: Recorders,
    /// What `GET /metrics` encodes.
    pub(crate) registry: Registry,
}

/// The handlers' state: cheap to clone. The HTTP API is up before the node
/// is (a joining server serves it while it waits for a configuration that
/// names it), so what the handlers need is filled in once, when the node
/// has started; until then every request is answered with 503 `joining`.
#[derive(Clone, Debug)]
pub(crate) struct AppState(Arc<Slot>);

/// See [`AppState`].
#[derive(Debug)]
pub(crate) struct Slot {
    shared: OnceLock<Shared>,
    /// What a request is told while the node has not started.
    waiting: String,
    /// Who may send requests.
    access: Access,
}

impl AppState {
    /// A state without a node yet; requests get 503 `joining` with `waiting`.
    pub(crate) fn waiting(waiting: String, access: Access) -> Self {
        Self(Arc::new(Slot {
            shared: OnceLock::new(),
            waiting,
            access,
        }))
    }

    /// The refused requests, by reason, for the registry.
    pub(crate) fn refused_requests(&self) -> Family<Vec<(String, String)>, Counter> {
        self.0.access.refused.clone()
    }

    /// Hands the handlers the started node. Called once.
    pub(crate) fn start(&self, shared: Shared) {
        if self.0.shared.set(shared).is_err() {
            debug_assert!(false, "the server's state is set once");
        }
    }
}

/// Extracts the server's state once its node has started; rejects the
/// request with 503 `joining` before.
struct Started(Arc<Slot>);

impl Deref for Started {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        self.0
            .shared
            .get()
            .expect("a Started is only extracted once the state is set")
    }
}

impl FromRequestParts<AppState> for Started {
    type Rejection = ApiError;

    async fn from_request_parts(_: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if state.0.shared.get().is_some() {
            Ok(Self(Arc::clone(&state.0)))
        } else {
            Err(ApiError::joining(state.0.waiting.clone()))
        }
    }
}

/// Extracts the server's state when it serves reads and writes: its node
/// has started, holds the log (it is not joining) and is still a member.
struct Serving(Started);

impl Deref for Serving {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl FromRequestParts<AppState> for Serving {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let s = Started::from_request_parts(parts, state).await?;
        let st = s.node.status();
        if st.joining {
            return Err(ApiError::joining(format!(
                "server {} is joining configuration {}: it is pulling the log",
                st.pid, st.configuration_id
            )));
        }
        if let Some(ss) = &st.reconfigured
            && !ss.nodes.contains(&st.pid)
        {
            return Err(ApiError::removed(&s.directory, &st, ss));
        }
        Ok(Self(s))
    }
}

/// Who may use the client API: anyone, or whoever sends the bearer token
/// (`Authorization: Bearer <token>`).
#[derive(Debug)]
pub(crate) struct Access {
    /// The SHA-256 of the token, if one is required: a request's token is
    /// hashed too and the digests compared in constant time, so the answer
    /// time tells nothing of how much of a guess was right.
    token: Option<[u8; 32]>,
    /// Requests refused, labelled by `reason`.
    refused: Family<Vec<(String, String)>, Counter>,
}

impl Access {
    /// Requests need `token` if it is `Some`.
    pub(crate) fn new(token: Option<&str>) -> Self {
        Self {
            token: token.map(|t| Sha256::digest(t.as_bytes()).into()),
            refused: Family::default(),
        }
    }

    /// Whether a request with these headers may go on; the refusal says why not.
    fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(expected) = &self.token else {
            return Ok(());
        };
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(self.refuse(
                "missing",
                "this server requires a bearer token: send `Authorization: Bearer <token>` \
                 with the token its --token-file holds",
            ));
        };
        let Some(given) = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
        else {
            return Err(self.refuse(
                "malformed",
                "the Authorization header is not `Bearer <token>`",
            ));
        };
        let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        let differ = given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if differ != 0 {
            return Err(self.refuse("wrong", "the bearer token is not this server's"));
        }
        Ok(())
    }

    fn refuse(&self, reason: &str, message: &str) -> ApiError {
        self.refused
            .get_or_create(&vec![("reason".to_owned(), reason.to_owned())])
            .inc();
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
}

/// Answers 401 to a request without the server's bearer token, before any
/// handler (and before the body is read).
async fn authorize(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match state.0.access.check(req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => {
            let mut resp = e.into_response();
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"kv_store\""),
            );
            resp
        }
    }
}

/// The routes.
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/kv", get(scan))
        .route("/kv/{key}", get(get_key).put(put_key).delete(delete_key))
        .route("/kv/{key}/cas", post(cas_key))
        .route("/status", get(status))
        .route("/members", get(members).post(change_members))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .with_state(state)
}

/// The routes of [`router`] with handlers that only check the request (the
/// `*_request` functions every handler starts with) and answer 200 with what
/// they parsed, for the fuzz target `kv_http`: no node, no state. Not public
/// API (feature `fuzzing`).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn fuzzing_router() -> Router {
    fn answer<T: std::fmt::Debug>(r: Result<T, ApiError>) -> Response {
        match r {
            Ok(parsed) => format!("{parsed:?}").into_response(),
            Err(e) => e.into_response(),
        }
    }
    type PathR = Result<Path<String>, PathRejection>;
    type BodyR = Result<Bytes, BytesRejection>;
    Router::new()
        .route(
            "/kv",
            get(|q: Result<Query<ScanParams>, QueryRejection>| async move {
                answer(scan_request(q))
            }),
        )
        .route(
            "/kv/{key}",
            get(
                |p: PathR, q: Result<Query<ReadParams>, QueryRejection>| async move {
                    answer(get_request(p, q))
                },
            )
            .put(|p: PathR, b: BodyR| async move { answer(put_request(p, b)) })
            .delete(|p: PathR| async move { answer(key_from(p)) }),
        )
        .route(
            "/kv/{key}/cas",
            post(|p: PathR, b: BodyR| async move { answer(cas_request(p, b)) }),
        )
        .route(
            "/members",
            post(|b: BodyR| async move { answer(json_body::<MembersChange>(b)) }),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// An error answer: a status and an [`ErrorBody`].
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiError {
    fn new(status: StatusCode, error: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                error: error.to_owned(),
                message: message.into(),
                outcome: None,
                configuration: None,
            },
        }
    }

    /// The server is not a member with the log yet.
    fn joining(message: String) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "joining", message)
            .with_outcome(Outcome::NotApplied)
    }

    /// The server is left out of the configuration `ss` begins: nothing it
    /// is asked is done; the answer names where to go.
    fn removed(directory: &Directory, st: &NodeStatus, ss: &StopSign) -> Self {
        let mut ids = ss.nodes.clone();
        ids.sort_unstable();
        let next = NextConfiguration {
            configuration_id: ss.config_id,
            members: members::described(&ids, &directory.addresses(st)),
            decided: true,
        };
        let mut err = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "removed",
            format!(
                "server {} is not in configuration {} (servers {ids:?}); send requests there",
                st.pid, ss.config_id
            ),
        )
        .with_outcome(Outcome::NotApplied);
        err.body.configuration = Some(next);
        err
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    fn with_outcome(mut self, outcome: Outcome) -> Self {
        self.body.outcome = Some(outcome);
        self
    }

    /// A failed call on the node. `write` says whether it was a write, whose
    /// answer must say what is known of its effect.
    fn runtime(e: &RuntimeError, write: bool) -> Self {
        use Outcome::{NotApplied, Unknown};
        let unavailable = StatusCode::SERVICE_UNAVAILABLE;
        let (status, code, outcome, message) = match e {
            RuntimeError::NoLeader => (
                unavailable,
                "no_leader",
                NotApplied,
                "no leader is reachable; retry when the cluster has a majority".to_owned(),
            ),
            RuntimeError::BufferFull => (
                unavailable,
                "busy",
                NotApplied,
                "too many requests are waiting for a leader; retry later".to_owned(),
            ),
            RuntimeError::Refused(_) | RuntimeError::ReconfigurationPending => {
                (unavailable, "rejected", NotApplied, e.to_string())
            }
            RuntimeError::Timeout => (
                unavailable,
                "timeout",
                Unknown,
                "the cluster did not answer in time".to_owned(),
            ),
            RuntimeError::ShutDown => (
                unavailable,
                "shutting_down",
                Unknown,
                "this server is shutting down".to_owned(),
            ),
            RuntimeError::Reconfigured(_) => (unavailable, "reconfigured", Unknown, e.to_string()),
            // Refused before it reached the protocol; `Serving` usually
            // answers `removed` first, with the new members' addresses.
            RuntimeError::Removed(_) => (unavailable, "removed", NotApplied, e.to_string()),
            RuntimeError::Storage(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage_failure",
                Unknown,
                e.to_string(),
            ),
            _ => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                Unknown,
                e.to_string(),
            ),
        };
        let err = Self::new(status, code, message);
        if write {
            err.with_outcome(outcome)
        } else {
            err
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

/// `?stale=true` on reads.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadParams {
    #[serde(default)]
    stale: bool,
}

/// The query of `GET /kv`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScanParams {
    #[serde(default)]
    prefix: String,
    limit: Option<usize>,
    #[serde(default)]
    stale: bool,
}

fn key_from(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(key) = path.map_err(|e| ApiError::bad_request(format!("bad key in the path: {e}")))?;
    if key.is_empty() {
        return Err(ApiError::bad_request("the key must not be empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(ApiError::bad_request(format!(
            "the key is {} bytes long; at most {MAX_KEY_BYTES} are allowed",
            key.len()
        )));
    }
    Ok(key)
}

fn query_from<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query
        .map(|Query(q)| q)
        .map_err(|e| ApiError::bad_request(format!("bad query string: {}", e.body_text())))
}

fn json_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|e| {
        let status = e.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                status,
                "payload_too_large",
                format!("the body is larger than {MAX_BODY_BYTES} bytes"),
            )
        } else {
            ApiError::new(status, "bad_request", format!("cannot read the body: {e}"))
        }
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("the body is not the JSON expected: {e}")))
}

fn check_value(value: &str) -> Result<(), ApiError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(ApiError::bad_request(format!(
            "the value is {} bytes long; at most {MAX_VALUE_BYTES} are allowed",
            value.len()
        )));
    }
    Ok(())
}

impl Shared {
    /// Waits until this server's state reflects every write acknowledged
    /// before now: asks the node for a read point and waits for the applier
    /// to pass it.
    async fn linearize(&self) -> Result<(), ApiError> {
        let start = Instant::now();
        let result = self.wait_read_point().await;
        self.recorders
            .read_duration
            .observe(start.elapsed().as_secs_f64());
        result
    }

    async fn wait_read_point(&self) -> Result<(), ApiError> {
        let point = self
            .node
            .linearizable_read()
            .await
            .map_err(|e| ApiError::runtime(&e, false))?;
        if self.replica.wait_applied(point, self.request_timeout).await {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                format!("this server did not apply the log up to the read point {point} in time"),
            ))
        }
    }

    /// Proposes `op`, waits until it is decided and applied here, and
    /// answers with what applying it did.
    async fn write(&self, op: Op) -> ApiResult<WriteResponse> {
        let start = Instant::now();
        let result = self.decide_and_apply(op).await;
        self.recorders
            .write_duration
            .observe(start.elapsed().as_secs_f64());
        result
    }

    async fn decide_and_apply(&self, op: Op) -> ApiResult<WriteResponse> {
        let (id, mut pending) = self.replica.register();
        let index = self
            .node
            .append(KVCommand { id, op })
            .await
            .map_err(|e| ApiError::runtime(&e, true))?;
        tracing::trace!(index, ?id, "write decided");
        // `index` is where the write was decided; an earlier copy of it (the
        // protocol may decide a forwarded write twice) is applied before it,
        // so once the applier passes `index` the result is there.
        if !self
            .replica
            .wait_applied(index + 1, self.request_timeout)
            .await
        {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                format!("the write was decided at index {index} but not applied here in time"),
            )
            .with_outcome(Outcome::Unknown));
        }
        match pending.take() {
            Some(result) => Ok(Json(WriteResponse {
                index,
                success: result.success,
                previous: result.previous,
            })),
            // Applied as part of a snapshot from another server: the write
            // happened, but its result was computed elsewhere.
            None => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "result_unavailable",
                format!(
                    "the write was decided at index {index}, but this server learnt it from a snapshot \
                     and does not know its result"
                ),
            )
            .with_outcome(Outcome::Unknown)),
        }
    }
}

// Each handler first checks its request (path, query, body) in a function
// of its own that touches no node, then acts on it: the fuzz target
// `kv_http` drives the checks through `fuzzing_router` without a server.

/// Checks `GET /kv/{key}`: the key and the read parameters.
fn get_request(
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<ReadParams>, QueryRejection>,
) -> Result<(String, ReadParams), ApiError> {
    Ok((key_from(path)?, query_from(query)?))
}

/// Checks `GET /kv?prefix=P`: the scan parameters and their limit.
fn scan_request(
    query: Result<Query<ScanParams>, QueryRejection>,
) -> Result<(ScanParams, usize), ApiError> {
    let params = query_from(query)?;
    let limit = params.limit.unwrap_or(DEFAULT_SCAN_LIMIT);
    if limit > MAX_SCAN_LIMIT {
        return Err(ApiError::bad_request(format!(
            "limit {limit} is above the maximum of {MAX_SCAN_LIMIT}"
        )));
    }
    Ok((params, limit))
}

/// Checks `PUT /kv/{key}`: the key and the [`PutRequest`] body.
fn put_request(
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Op, ApiError> {
    let key = key_from(path)?;
    let PutRequest { value } = json_body(body)?;
    check_value(&value)?;
    Ok(Op::Put { key, value })
}

/// Checks `POST /kv/{key}/cas`: the key and the [`CasRequest`] body.
fn cas_request(
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Op, ApiError> {
    let key = key_from(path)?;
    let CasRequest { expected, new } = json_body(body)?;
    check_value(&new)?;
    if let Some(e) = &expected {
        check_value(e)?;
    }
    Ok(Op::Cas { key, expected, new })
}

async fn get_key(
    s: Serving,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<ReadParams>, QueryRejection>,
) -> ApiResult<GetResponse> {
    let (key, params) = get_request(path, query)?;
    if !params.stale {
        s.linearize().await?;
    }
    let state = s.replica.state();
    match state.get(&key) {
        Some(value) => Ok(Json(GetResponse {
            value: value.to_owned(),
            key,
            applied_idx: s.replica.applied_idx(),
        })),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "key_not_found",
            format!("key {key:?} has no value"),
        )),
    }
}

async fn scan(
    s: Serving,
    query: Result<Query<ScanParams>, QueryRejection>,
) -> ApiResult<ScanResponse> {
    let (params, limit) = scan_request(query)?;
    if !params.stale {
        s.linearize().await?;
    }
    let state = s.replica.state();
    let mut found = state.scan(&params.prefix);
    let items: BTreeMap<String, String> = found
        .by_ref()
        .take(limit)
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let truncated = found.next().is_some();
    Ok(Json(ScanResponse { items, truncated }))
}

async fn put_key(
    s: Serving,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<WriteResponse> {
    s.write(put_request(path, body)?).await
}

async fn delete_key(
    s: Serving,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<WriteResponse> {
    let key = key_from(path)?;
    s.write(Op::Delete { key }).await
}

async fn cas_key(
    s: Serving,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<WriteResponse> {
    s.write(cas_request(path, body)?).await
}

async fn status(s: Started) -> Json<StatusResponse> {
    // The protocol's view comes from the node's task; the status, read
    // after it, is at least as recent, so the two do not contradict.
    let ui = s.node.get_ui_states().await;
    let st = s.node.status();
    let net = s.net.stats();
    let addrs = s.directory.addresses(&st);
    let others: Vec<NodeId> = st
        .members
        .iter()
        .copied()
        .filter(|&p| p != st.pid)
        .collect();
    let cluster = others
        .iter()
        .map(|&pid| {
            let seen = ui
                .as_ref()
                .and_then(|u| u.cluster_state.iter().find(|p| p.pid == pid));
            let link = net.peers.get(&pid);
            let accepted_idx = seen.and_then(|p| p.accepted_idx);
            PeerStatus {
                pid,
                connected: seen.is_some_and(|p| p.connected),
                last_heartbeat_round: seen.and_then(|p| p.last_heartbeat_round),
                accepted_idx,
                behind: ui
                    .as_ref()
                    .zip(accepted_idx)
                    .map(|(u, theirs)| u.accepted_idx.saturating_sub(theirs)),
                outbound_link: link.is_some_and(|l| l.connected),
                inbound_link: link.is_some_and(|l| l.inbound_connected),
                reconnects: link.map_or(0, |l| l.reconnects),
            }
        })
        .collect();
    Json(StatusResponse {
        pid: st.pid,
        cluster_id: s.cluster_id,
        role: Role::of(st.is_leader, st.leader),
        leader: st.leader,
        decided_idx: st.decided_idx,
        accepted_idx: st.accepted_idx,
        compacted_idx: st.compacted_idx,
        applied_idx: s.replica.applied_idx(),
        keys: s.replica.state().len(),
        peers: others
            .iter()
            .filter_map(|id| addrs.get(id).map(|a| (*id, a.to_string())))
            .collect(),
        storage: s.storage.to_owned(),
        stopped: st.stopped.as_ref().map(ToString::to_string),
        configuration_id: st.configuration_id,
        leader_ballot: st.leader_ballot,
        quorum_connected: ui.as_ref().is_some_and(|u| u.quorum_connected),
        heartbeat_round: ui.as_ref().map_or(0, |u| u.heartbeat_round),
        dropped_messages: st.dropped_messages,
        cluster,
        protocol: ui,
        members: members::described(&st.members, &addrs),
        next_configuration: s.directory.next_configuration(&st),
        joining: st.joining,
    })
}

async fn members(s: Started) -> Json<MembersResponse> {
    let st = s.node.status();
    Json(MembersResponse {
        cluster_id: s.cluster_id,
        configuration_id: st.configuration_id,
        members: s.directory.members(&st),
        leader: st.leader,
        joining: st.joining,
        next_configuration: s.directory.next_configuration(&st),
    })
}

async fn change_members(
    s: Serving,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<MembersResponse> {
    let change: MembersChange = json_body(body)?;
    let st = s.node.status();
    let mut members = st.members.clone();
    let mut addrs = s.directory.addresses(&st);
    let conflict = |code: &str, msg: String| ApiError::new(StatusCode::CONFLICT, code, msg);
    let mut add = |members: &mut Vec<NodeId>, id: NodeId, addr| {
        if id == 0 {
            return Err(ApiError::bad_request("id 0 is not a valid server id"));
        }
        if members.contains(&id) {
            return Err(conflict(
                "already_member",
                format!(
                    "server {id} is already a member of configuration {}",
                    st.configuration_id
                ),
            ));
        }
        members.push(id);
        addrs.insert(id, addr);
        Ok(())
    };
    let remove = |members: &mut Vec<NodeId>, id: NodeId| {
        let Some(pos) = members.iter().position(|&m| m == id) else {
            return Err(conflict(
                "not_member",
                format!(
                    "server {id} is not a member of configuration {}",
                    st.configuration_id
                ),
            ));
        };
        members.remove(pos);
        Ok(())
    };
    match change {
        MembersChange::Add(m) => add(&mut members, m.id, m.addr)?,
        MembersChange::Remove(id) => remove(&mut members, id)?,
        MembersChange::Replace { old, id, addr } => {
            remove(&mut members, old)?;
            add(&mut members, id, addr)?;
        }
    }
    if members.is_empty() {
        return Err(ApiError::bad_request(
            "a configuration needs at least one server",
        ));
    }
    members.sort_unstable();
    addrs.retain(|id, _| members.contains(id));
    // Shown as the next configuration while the change is under way.
    let _proposing = s.directory.propose(NextConfiguration {
        configuration_id: st.configuration_id + 1,
        members: members::described(&members, &addrs),
        decided: false,
    });
    let rc = PeerAddresses::new(addrs).request(members);
    let ss = s.node.reconfigure(rc).await.map_err(|e| match e {
        // E.g. new servers that would be a majority of the next
        // configuration: a `--join` server starts its node only once a
        // decided change names it, so change one server at a time.
        RuntimeError::InvalidReconfiguration(_) => {
            conflict("invalid_reconfiguration", e.to_string())
        }
        RuntimeError::ReconfigurationPending => conflict("reconfiguration_pending", e.to_string()),
        RuntimeError::Removed(_) => conflict("removed", e.to_string()),
        RuntimeError::ReconfigurationIncomplete { .. } => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "reconfiguration_incomplete",
            e.to_string(),
        ),
        e => ApiError::runtime(&e, false),
    })?;
    let mut addrs = members::carried_addresses(&ss)
        .map(|k| k.addrs().clone())
        .unwrap_or_default();
    addrs.extend(s.directory.addresses(&s.node.status()));
    Ok(Json(MembersResponse {
        cluster_id: s.cluster_id,
        configuration_id: ss.config_id,
        members: members::described(&members::sorted(&ss.nodes), &addrs),
        leader: s.node.status().leader,
        joining: false,
        next_configuration: None,
    }))
}

async fn metrics(s: Started) -> Response {
    match metrics::encode(&s.registry) {
        Ok(body) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], body).into_response(),
        // Encoding into a `String` cannot fail, and no part of the registry
        // fails on its own; answer rather than panic if that ever changes.
        Err(_) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the metrics could not be encoded",
        )
        .into_response(),
    }
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no route for {method} {}; the API is GET|PUT|DELETE /kv/{{key}}, POST /kv/{{key}}/cas, \
             GET /kv?prefix=, GET /status, GET /members, GET /metrics",
            uri.path()
        ),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}
