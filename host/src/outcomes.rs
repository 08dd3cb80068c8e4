//! Connection outcomes: `POST /api/ice/outcomes` from browsers, the
//! router's own record of each speaker session, and the bounded queue
//! that carries both to the store without ever blocking ICE.
//!
//! Every outcome becomes one [`OutcomeRow`] stamped with the arm, stage and
//! mode the *server* assigns the client at that moment
//! ([`crate::rollout::Rollout::assign`]), counted in [`Metrics`] at once,
//! and offered to the queue with `try_send`: when the queue is full (the
//! database is slow or away longer than `store.queue_capacity` outcomes
//! last) the outcome is dropped, counted in
//! `scream_ice_outcomes_dropped_total` and logged (at most once a second,
//! with the running total). One writer task drains the queue in batches
//! of up to `store.batch` outcomes, one transaction each, and retries a
//! failed batch with capped exponential backoff until it is written, so
//! an outage loses exactly the dropped count and nothing else.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::http::{AppState, ConnAddrs, client_ip};
use crate::metrics::Metrics;
use crate::rollout::{Assignment, valid_client_id};
use crate::store::{OutcomeRow, Store};

/// Most outcomes in one `POST /api/ice/outcomes`.
pub const MAX_OUTCOMES_PER_REQUEST: usize = 1_000;
/// Largest accepted body: 1,000 outcomes of about 300 bytes, with room.
pub const MAX_BODY: usize = 512 * 1024;

/// The sending half of the outcome queue, and the counters.
#[derive(Clone, Debug)]
pub struct OutcomeQueue {
    tx: Option<mpsc::Sender<OutcomeRow>>,
    metrics: Arc<Metrics>,
    last_warn_ms: Arc<AtomicI64>,
}

impl OutcomeQueue {
    /// A queue of `capacity` outcomes; the receiver goes to
    /// [`spawn_writer`].
    pub fn new(
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> (OutcomeQueue, mpsc::Receiver<OutcomeRow>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            OutcomeQueue {
                tx: Some(tx),
                metrics,
                last_warn_ms: Arc::new(AtomicI64::new(0)),
            },
            rx,
        )
    }

    /// A queue without a store: outcomes are counted in the metrics only.
    pub fn metrics_only(metrics: Arc<Metrics>) -> OutcomeQueue {
        OutcomeQueue {
            tx: None,
            metrics,
            last_warn_ms: Arc::new(AtomicI64::new(0)),
        }
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Count `row` and offer it to the store; never waits. False if it was
    /// dropped (queue full or writer gone).
    pub fn push(&self, row: OutcomeRow) -> bool {
        self.metrics.record_outcome(&row);
        let Some(tx) = &self.tx else { return true };
        match tx.try_send(row) {
            Ok(()) => {
                self.metrics.set_queued(tx.max_capacity() - tx.capacity());
                true
            }
            Err(_) => {
                self.metrics.record_dropped(1);
                let now = crate::rollout::now_ms();
                let last = self.last_warn_ms.load(Ordering::Relaxed);
                if now - last >= 1000
                    && self
                        .last_warn_ms
                        .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                {
                    tracing::warn!(
                        dropped_total = self.metrics.dropped(),
                        "outcome queue full ({} outcomes): the store is slow or unreachable; outcome dropped",
                        tx.max_capacity()
                    );
                }
                false
            }
        }
    }
}

/// Run the writer: batches of up to `batch` outcomes, one transaction
/// each, a failed batch retried (100 ms doubling to 5 s) until written.
/// Ends when every sender is gone and the queue is empty.
pub fn spawn_writer(
    store: Store,
    mut rx: mpsc::Receiver<OutcomeRow>,
    metrics: Arc<Metrics>,
    batch: usize,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = Vec::with_capacity(batch);
        loop {
            if rx.recv_many(&mut buf, batch).await == 0 {
                return;
            }
            let mut backoff = Duration::from_millis(100);
            let mut failures = 0u32;
            loop {
                match store.insert_batch(&buf).await {
                    Ok(()) => {
                        if failures > 0 {
                            tracing::info!(
                                "store reachable again: {} buffered outcomes written after {failures} failed attempts",
                                buf.len()
                            );
                        }
                        break;
                    }
                    Err(e) => {
                        if failures == 0 {
                            tracing::warn!(
                                "store write failed ({e}); keeping {} outcomes and retrying",
                                buf.len()
                            );
                        }
                        failures += 1;
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
            metrics.record_written(buf.len() as u64);
            metrics.set_queued(rx.len());
            buf.clear();
        }
    })
}

// ---------------------------------------------------------------------------
// POST /api/ice/outcomes
// ---------------------------------------------------------------------------

/// Per-client token bucket: `rate` outcomes per second, up to `burst`.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    /// `rate` outcomes/s per client address, bursts of `burst`.
    pub fn new(rate: f64, burst: f64) -> RateLimiter {
        RateLimiter {
            rate,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take `n` tokens for `ip`; false (and nothing taken) if it has fewer.
    pub fn take(&self, ip: IpAddr, n: usize) -> bool {
        let now = Instant::now();
        let mut map = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() > 100_000 {
            // Forget full buckets first: a flood of addresses cannot grow
            // the table without bound.
            let (rate, burst) = (self.rate, self.burst);
            map.retain(|_, (t, at)| *t + now.duration_since(*at).as_secs_f64() * rate < burst);
        }
        let (tokens, at) = map.entry(ip).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= n as f64 {
            *tokens -= n as f64;
            true
        } else {
            false
        }
    }
}

/// What one outcome in a request says, validated.
#[derive(Debug, Default)]
struct Reported {
    client_id: Option<String>,
    success: bool,
    connect_ms: Option<i64>,
    failure_reason: Option<String>,
    local_candidate_type: Option<String>,
    remote_candidate_type: Option<String>,
    stun_used: Option<bool>,
    network_type: Option<String>,
    config_type: Option<String>,
}

const CANDIDATE_TYPES: [&str; 4] = ["host", "srflx", "prflx", "relay"];

fn short_string(v: &Value, at: &str, max: usize) -> Result<Option<String>, String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.len() <= max && !s.chars().any(char::is_control) => {
            Ok(Some(s.clone()))
        }
        Value::String(_) => Err(format!(
            "{at}: expected a string of at most {max} characters without control characters"
        )),
        _ => Err(format!("{at}: expected a string")),
    }
}

/// Validate one outcome object; the error names the field.
fn parse_one(v: &Value, at: &str) -> Result<Reported, String> {
    let Value::Object(map) = v else {
        return Err(format!("{at}: expected an object"));
    };
    let mut r = Reported::default();
    let mut saw_success = false;
    for (k, v) in map {
        let field = format!("{at}.{k}");
        match k.as_str() {
            "client_id" => {
                let id = short_string(v, &field, crate::rollout::MAX_CLIENT_ID)?;
                if let Some(id) = &id
                    && !valid_client_id(id)
                {
                    return Err(format!(
                        "{field}: 1 to {} printable ASCII characters, no spaces",
                        crate::rollout::MAX_CLIENT_ID
                    ));
                }
                r.client_id = id;
            }
            "success" => {
                r.success = v
                    .as_bool()
                    .ok_or_else(|| format!("{field}: expected true or false"))?;
                saw_success = true;
            }
            "connect_ms" => {
                r.connect_ms = match v {
                    Value::Null => None,
                    v => Some(v.as_u64().filter(|ms| *ms <= 3_600_000).ok_or_else(|| {
                        format!(
                            "{field}: expected an integer number of milliseconds in 0..=3600000"
                        )
                    })? as i64),
                }
            }
            "failure_reason" => r.failure_reason = short_string(v, &field, 64)?,
            "local_candidate_type" | "remote_candidate_type" => {
                let t = short_string(v, &field, 8)?;
                if let Some(t) = &t
                    && !CANDIDATE_TYPES.contains(&t.as_str())
                {
                    return Err(format!("{field}: expected host, srflx, prflx or relay"));
                }
                if k == "local_candidate_type" {
                    r.local_candidate_type = t;
                } else {
                    r.remote_candidate_type = t;
                }
            }
            "stun_used" => {
                r.stun_used = match v {
                    Value::Null => None,
                    v => Some(
                        v.as_bool()
                            .ok_or_else(|| format!("{field}: expected true or false"))?,
                    ),
                }
            }
            "network_type" => r.network_type = short_string(v, &field, 32)?,
            "config_type" => r.config_type = short_string(v, &field, 32)?,
            _ => {
                // The client's own key, escaped and cut: the error stays
                // one printable line (a key may hold newlines).
                let key: String = k.chars().take(64).flat_map(char::escape_default).collect();
                return Err(format!("{at}.{key}: unknown field"));
            }
        }
    }
    if !saw_success {
        return Err(format!("{at}.success: missing"));
    }
    Ok(r)
}

/// Check a `POST /api/ice/outcomes` body as the handler does: the number
/// of outcomes it holds (1 to [`MAX_OUTCOMES_PER_REQUEST`]), or the one-line
/// error the handler answers with (the field named). For the fuzz target.
pub fn validate_body(body: &[u8]) -> Result<usize, String> {
    parse_body(body).map(|v| v.len())
}

/// Parse a request body: one object or an array of 1 to
/// [`MAX_OUTCOMES_PER_REQUEST`] objects.
fn parse_body(body: &[u8]) -> Result<Vec<Reported>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("body: not JSON: {e}"))?;
    match &v {
        Value::Array(items) => {
            if items.is_empty() || items.len() > MAX_OUTCOMES_PER_REQUEST {
                return Err(format!(
                    "body: an array of 1 to {MAX_OUTCOMES_PER_REQUEST} outcomes (got {})",
                    items.len()
                ));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, o)| parse_one(o, &format!("[{i}]")))
                .collect()
        }
        Value::Object(_) => Ok(vec![parse_one(&v, "outcome")?]),
        _ => Err("body: expected an outcome object or an array of them".to_string()),
    }
}

/// What was observed about one connection (by the client or the router).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// Connected.
    pub success: bool,
    /// Time to connect, ms.
    pub connect_ms: Option<i64>,
    /// Why it failed (`unknown` if it failed and this is `None`).
    pub failure_reason: Option<String>,
    /// The selected pair's local candidate type.
    pub local_candidate_type: Option<String>,
    /// The selected pair's remote candidate type.
    pub remote_candidate_type: Option<String>,
    /// A STUN/TURN server was needed (`None`: derived from the types).
    pub stun_used: Option<bool>,
    /// The network type.
    pub network_type: String,
    /// What the client says it used.
    pub config_type: Option<String>,
}

/// The row for one outcome `o` of a client with `assignment`, recorded by
/// `router_id` from `source` (`browser` or `speaker`).
pub fn row(assignment: &Assignment, router_id: &str, source: &str, o: Observed) -> OutcomeRow {
    let Observed {
        success,
        connect_ms,
        failure_reason,
        local_candidate_type: local,
        remote_candidate_type: remote,
        stun_used,
        network_type,
        config_type,
    } = o;
    // Without the client's word: a server-reflexive or relayed end of the
    // selected pair needed a server.
    let derived = [&local, &remote]
        .iter()
        .any(|t| matches!(t.as_deref(), Some("srflx") | Some("relay")));
    OutcomeRow {
        timestamp_ms: crate::rollout::now_ms(),
        client_id: assignment.client_id.clone(),
        router_id: router_id.to_string(),
        experiment: assignment.experiment.clone().unwrap_or_default(),
        stage: i64::from(assignment.stage),
        arm: assignment.arm_label().to_string(),
        config_type: config_type.unwrap_or_else(|| {
            if assignment.opted_in {
                "opt-in"
            } else {
                assignment.arm.config_name()
            }
            .to_string()
        }),
        mode: assignment.mode.as_str().to_string(),
        success,
        connection_time_ms: connect_ms,
        failure_reason: if success {
            None
        } else {
            Some(failure_reason.unwrap_or_else(|| "unknown".to_string()))
        },
        local_candidate_type: local,
        remote_candidate_type: remote,
        stun_used: stun_used.unwrap_or(derived),
        network_type,
        source: source.to_string(),
    }
}

fn json_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

/// `POST /api/ice/outcomes`.
pub async fn post_outcomes(
    State(state): State<AppState>,
    ConnectInfo(conn): ConnectInfo<ConnAddrs>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let is_json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return json_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        );
    }
    if body.len() > MAX_BODY {
        return json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("body: at most {MAX_BODY} bytes"),
        );
    }
    let reported = match parse_body(&body) {
        Ok(r) => r,
        Err(m) => return json_error(StatusCode::BAD_REQUEST, &m),
    };
    let config = state.config();
    let config = &*config;
    let ip = client_ip(config, conn.remote, &headers);
    let hub = state.hub();
    if !hub.limiter.take(ip, reported.len()) {
        let mut r = json_error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many outcomes from this client; slow down",
        );
        r.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("1"),
        );
        return r;
    }
    let count = reported.len();
    for rep in reported {
        // A browser that says it opted in is recorded in the `opt_in` arm.
        let a = if rep.config_type.as_deref() == Some("opt-in") {
            hub.rollout
                .assign_opted_in(config, rep.client_id.as_deref(), ip)
        } else {
            hub.rollout.assign(config, rep.client_id.as_deref(), ip)
        };
        let network = rep
            .network_type
            .clone()
            .unwrap_or_else(|| crate::http::network_of(&state, ip).to_string());
        hub.outcomes.push(row(
            &a,
            &hub.router_id,
            "browser",
            Observed {
                success: rep.success,
                connect_ms: rep.connect_ms,
                failure_reason: rep.failure_reason,
                local_candidate_type: rep.local_candidate_type,
                remote_candidate_type: rep.remote_candidate_type,
                stun_used: rep.stun_used,
                network_type: network,
                config_type: rep.config_type,
            },
        ));
    }
    (
        StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({ "accepted": count })),
    )
        .into_response()
}

// ---------------------------------------------------------------------------
// Speaker sessions
// ---------------------------------------------------------------------------

/// The router's record of one speaker session, finished exactly once:
/// connected (with the time since the session was created) or failed.
#[derive(Debug)]
pub struct SessionOutcome {
    queue: OutcomeQueue,
    router_id: String,
    assignment: Assignment,
    network_type: String,
    started: Instant,
    done: bool,
}

impl SessionOutcome {
    /// Start the clock for a session of a client with `assignment`, whose
    /// network the policy classified as `network_type`.
    pub fn start(state: &AppState, assignment: Assignment, network_type: &str) -> SessionOutcome {
        let hub = state.hub();
        SessionOutcome {
            queue: hub.outcomes.clone(),
            router_id: hub.router_id.clone(),
            assignment,
            network_type: network_type.to_string(),
            started: Instant::now(),
            done: false,
        }
    }

    /// The pair `local -> remote` was selected; `local_kind` is our
    /// candidate's type if known. Records success once.
    pub fn connected(&mut self, local_kind: Option<&str>, remote_kind: Option<&str>) {
        self.connected_at(Instant::now(), local_kind, remote_kind);
    }

    /// As [`SessionOutcome::connected`], for a pair that became usable at
    /// `at` (the session may end before its own selection).
    pub fn connected_at(
        &mut self,
        at: Instant,
        local_kind: Option<&str>,
        remote_kind: Option<&str>,
    ) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let ms = at.saturating_duration_since(self.started).as_millis() as i64;
        self.queue.push(row(
            &self.assignment,
            &self.router_id,
            "speaker",
            Observed {
                success: true,
                connect_ms: Some(ms),
                local_candidate_type: local_kind.map(str::to_string),
                remote_candidate_type: remote_kind.map(str::to_string),
                network_type: self.network_type.clone(),
                ..Observed::default()
            },
        ));
    }

    /// The session ended without connecting (`reason`). Records failure
    /// once; nothing if it had connected.
    pub fn failed(&mut self, reason: &str) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        self.queue.push(row(
            &self.assignment,
            &self.router_id,
            "speaker",
            Observed {
                success: false,
                failure_reason: Some(reason.to_string()),
                network_type: self.network_type.clone(),
                ..Observed::default()
            },
        ));
    }
}

impl Drop for SessionOutcome {
    /// A session dropped before either end (closed, timed out) is a
    /// failure: `closed_before_connected`.
    fn drop(&mut self) {
        self.failed("closed_before_connected");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_field() {
        let cases: [(&str, &str); 8] = [
            (
                r#"{"success": true, "colour": 1}"#,
                "outcome.colour: unknown field",
            ),
            (
                r#"{"success": "yes"}"#,
                "outcome.success: expected true or false",
            ),
            (r#"{"connect_ms": 5}"#, "outcome.success: missing"),
            (
                r#"[{"success": true}, {"success": true, "connect_ms": -1}]"#,
                "[1].connect_ms: expected an integer number of milliseconds in 0..=3600000",
            ),
            (
                r#"{"success": false, "local_candidate_type": "lan"}"#,
                "outcome.local_candidate_type: expected host, srflx, prflx or relay",
            ),
            (
                r#"{"success": true, "stun_used": 1}"#,
                "outcome.stun_used: expected true or false",
            ),
            (r#"[]"#, "body: an array of 1 to 1000 outcomes (got 0)"),
            (
                r#"7"#,
                "body: expected an outcome object or an array of them",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(parse_body(body.as_bytes()).unwrap_err(), want, "{body}");
        }
        // Found by the outcomes_json fuzz target: a key with a newline.
        assert_eq!(
            parse_body(b"{\"a\\nb\": 1}").unwrap_err(),
            "outcome.a\\nb: unknown field"
        );
        let many = format!("[{}]", vec![r#"{"success":true}"#; 1001].join(","));
        assert!(
            parse_body(many.as_bytes())
                .unwrap_err()
                .contains("got 1001")
        );
        let ok = parse_body(
            br#"{"success": true, "connect_ms": 12, "client_id": "a", "stun_used": null}"#,
        )
        .unwrap();
        assert_eq!(ok[0].connect_ms, Some(12));
    }

    #[test]
    fn rate_limit_is_per_client() {
        let l = RateLimiter::new(0.0, 10.0);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(l.take(a, 10));
        assert!(!l.take(a, 1));
        assert!(l.take(b, 5));
    }
}
