//! Speaker ICE sessions over HTTP: RFC 8840 trickle ICE in the WHIP/WHEP
//! pattern of RFC 9725 sections 4.3-4.4.
//!
//! Where this sits: a speaker `POST`s its `application/trickle-ice-sdpfrag`
//! (credentials, candidates) to `/api/ice/sessions`; [`create`] decides with
//! the core policy for the client's address (as `/api/ice-config` does),
//! starts a controlled core session through the tokio adapter's [`Driver`]
//! (the speaker, which posts first, is controlling) and answers `201
//! Created` with the session's `Location`, an `ETag` for the ICE session
//! and the router's sdpfrag. Each session then lives in exactly one task
//! (the *session actor*), which owns the [`Driver`] (sockets and core
//! session) and serves the `GET`/`PATCH`/`DELETE` requests on the
//! `Location` through a channel, so one session's requests are applied in
//! order and never race each other. The actor keeps no copy of the ICE
//! state: replies are written from the core session itself.
//!
//! Two functions are the hooks of admission control: [`admit`] (may this
//! client open a session now) and [`accept_remote_candidate`] (may the
//! router send checks to this candidate address).
//!
//! Choices made here (the RFCs leave them open):
//!
//! - The answer carries our host candidates as the policy offers them and
//!   `a=end-of-candidates` exactly when gathering is already complete (no
//!   STUN server asked, the LAN case). Server-reflexive candidates gathered
//!   later are not pushed: the speaker fetches them with `GET` on the
//!   `Location`, which returns the current fragment (all our candidates so
//!   far, `a=end-of-candidates` once complete) with the current `ETag`.
//! - The answer has no `m=` section: one body describes one ICE session
//!   (session-level `a=ice-ufrag`/`a=ice-pwd`), which `SdpFrag::parse`
//!   accepts.
//! - `PATCH` needs `If-Match` (the current `ETag` or `*`): 428 without it,
//!   412 when it does not match. A fragment whose `a=ice-ufrag` differs from
//!   the current remote one is an ICE restart (it must carry a new
//!   `a=ice-pwd` too): 200 with our new fragment and a new `ETag`. The
//!   checks run in this order: 404, 415, 413, 428, 400 (not UTF-8), 412,
//!   400 (malformed sdpfrag; nothing applied).
//! - Each session task is its own reaper: the session is removed when its
//!   agent reports failure (all pairs failed, no pairs, consent lost) or
//!   when it has not connected within [`SessionSettings::connect_timeout`]
//!   (restarted on an ICE restart). A failed session is not kept for a
//!   restart: the speaker `POST`s again.
//!
//! The application data path: a session created with `?sink=NAME` plays
//! that sink (the relay sends its RTP over the selected pair, routed anew
//! on every selected pair; [`crate::subscription`]); any other session
//! echoes every datagram the speaker sends over the selected pair, which
//! is what `scream-ice connect` measures.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_TYPE, ETAG, HeaderMap, HeaderName, HeaderValue, IF_MATCH, LINK, LOCATION,
};
use axum::response::{IntoResponse, Response};
use scream_ice_core::agent::{ConnectionState, Role};
use scream_ice_core::candidate::{Candidate, CandidateAttribute, ConnectionAddress};
use scream_ice_core::policy::{FallbackStage, PeerKnowledge, decide};
use scream_ice_core::sdpfrag::{SdpFrag, SdpFragWriter};
use scream_ice_tokio::{
    Datagram, Driver, HostAddresses, HostFilter, Output, SessionConfig, SessionEvent,
};
use tokio::sync::{mpsc, oneshot};

use crate::candidate_filter::{Context, check_address, check_fragment_names};
use crate::state::{AppState, Chosen, ConnAddrs, choose_for};
use crate::subscription;
use scream_ice_core::net::Cidr;
use scream_ice_core::policy::NetworkType;
use scream_ice_core::time::Duration as CoreDuration;

/// The media type of trickle ICE fragments (RFC 8840 section 9.1).
pub const SDPFRAG: &str = "application/trickle-ice-sdpfrag";

/// Candidates with a host name (mDNS `.local`) resolved per fragment at
/// most; further ones are skipped, so one request cannot hold its session
/// for long.
pub const MAX_NAMES_PER_FRAGMENT: usize = 4;

/// Application datagrams kept per session while no pair is selected yet.
pub const EARLY_DATAGRAMS: usize = 32;

/// Limits and knobs of the session endpoints.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SessionSettings {
    /// A session that has not connected this long after its start (or its
    /// last ICE restart) is removed.
    pub connect_timeout: Duration,
    /// Largest request body accepted (413 above).
    pub max_body: usize,
    /// The addresses the router's host sockets bind (port 0 each); `None`:
    /// discover the machine's interfaces (loopback included when the
    /// policy offers loopback candidates to this client).
    pub bind: Option<Vec<IpAddr>>,
    /// The sessions' name resolver (`.local` candidate names with
    /// `limits.sessions.mdns_names`, STUN server names); `None`: the
    /// system's, bounded by the adapter's DNS timeout.
    pub resolver: Option<Arc<dyn scream_ice_tokio::Resolver>>,
    /// The sockets every session shares (`server.ice_port`): sessions
    /// take those of their host addresses instead of binding their own.
    /// `None`: each session binds its own.
    pub mux: Option<scream_ice_tokio::UdpMux>,
}

impl Default for SessionSettings {
    /// 60 s to connect, 16 KiB bodies, interface discovery.
    fn default() -> SessionSettings {
        SessionSettings {
            connect_timeout: Duration::from_secs(60),
            max_body: 16 * 1024,
            bind: None,
            resolver: None,
            mux: None,
        }
    }
}

/// The table of running sessions: id to the session task's request
/// channel. Cloning shares the table.
#[derive(Clone, Debug, Default)]
pub struct Sessions {
    table: Arc<Mutex<HashMap<String, mpsc::Sender<Request>>>>,
    settings: Arc<SessionSettings>,
}

impl Sessions {
    /// An empty table with these limits.
    pub fn new(settings: SessionSettings) -> Sessions {
        Sessions {
            table: Arc::default(),
            settings: Arc::new(settings),
        }
    }

    /// The limits in force.
    pub fn settings(&self) -> &SessionSettings {
        &self.settings
    }

    /// Sessions running now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no session runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::Sender<Request>>> {
        // A poisoned lock only means a panic elsewhere; the map is still
        // consistent (every operation on it is a single insert/remove/get).
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, id: &str) -> Option<mpsc::Sender<Request>> {
        self.lock().get(id).cloned()
    }

    fn remove(&self, id: &str) -> Option<mpsc::Sender<Request>> {
        self.lock().remove(id)
    }

    /// Insert a session that admission let in: its ticket is what
    /// bounds the table's size (`limits.sessions.max`).
    fn insert(&self, id: String, tx: mpsc::Sender<Request>) {
        self.lock().insert(id, tx);
    }
}

/// What the HTTP handlers ask a session task.
#[derive(Debug)]
enum Request {
    Get {
        reply: oneshot::Sender<Response>,
    },
    Patch {
        if_match: String,
        body: String,
        reply: oneshot::Sender<Response>,
    },
    Close,
}

/// A plain-text error reply: one line.
fn error(status: StatusCode, reason: impl std::fmt::Display) -> Response {
    let mut r = (status, format!("{reason}\n")).into_response();
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `CONTENT_TYPE` is `application/trickle-ice-sdpfrag` (parameters and
/// case ignored).
fn is_sdpfrag(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(SDPFRAG))
}

/// The body as UTF-8 text within the limit: 413 over it, 400 if not UTF-8.
async fn read_body(body: Body, max: usize) -> Result<String, Response> {
    let bytes = axum::body::to_bytes(body, max).await.map_err(|_| {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format_args!("body larger than {max} bytes"),
        )
    })?;
    String::from_utf8(bytes.to_vec())
        .map_err(|_| error(StatusCode::BAD_REQUEST, "body is not UTF-8"))
}

/// `count` random bytes as lowercase hex.
fn random_hex(count: usize) -> Result<String, getrandom::Error> {
    let mut b = vec![0u8; count];
    getrandom::fill(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// A fresh strong entity tag (`"` + 64 random bits in hex + `"`).
fn new_etag() -> Result<String, getrandom::Error> {
    Ok(format!("\"{}\"", random_hex(8)?))
}

/// Whether an `If-Match` value (RFC 9110 section 13.1.1) matches `etag`:
/// `*`, or a list containing it (strong comparison: weak tags never match).
pub fn if_match_matches(value: &str, etag: &str) -> bool {
    let v = value.trim();
    v == "*" || v.split(',').any(|t| t.trim() == etag)
}

/// Our fragment: `a=ice-options:trickle`, credentials, candidates, and
/// `a=end-of-candidates` when `complete`.
pub fn write_sdpfrag(
    ufrag: &str,
    pwd: &str,
    candidates: &[Candidate],
    complete: bool,
) -> Result<String, String> {
    let mut size = 512 + 160 * candidates.len();
    for _ in 0..2 {
        let mut buf = vec![0u8; size];
        let mut w = SdpFragWriter::new(&mut buf);
        w.ice_options(&["trickle"]).map_err(|e| e.to_string())?;
        w.ice_ufrag(ufrag).map_err(|e| e.to_string())?;
        w.ice_pwd(pwd).map_err(|e| e.to_string())?;
        for c in candidates {
            w.candidate(&c.to_attribute()).map_err(|e| e.to_string())?;
        }
        if complete {
            w.end_of_candidates();
        }
        match w.finish() {
            Ok(n) => {
                buf.truncate(n);
                return String::from_utf8(buf).map_err(|e| e.to_string());
            }
            Err(e) => size = e.required,
        }
    }
    Err("sdpfrag does not fit".into())
}

/// Whether a new session may be admitted for `client` now: the one place
/// where admission is decided ([`crate::admission`]: speaker token, POST
/// rate, per-client and router caps, taken atomically). `Ok`: the ticket
/// that holds the session's place until it is dropped. `Err`: why not
/// (its response is the reply: 401, 429 or 503).
pub fn admit(
    state: &AppState,
    client: IpAddr,
    headers: &HeaderMap,
) -> Result<crate::admission::Ticket, crate::admission::Refusal> {
    state
        .admission()
        .admit(client, headers)
        .inspect_err(|refusal| {
            tracing::info!(%client, "ICE session refused: {refusal:?}");
        })
}

/// Whether the router accepts this remote candidate from HTTP, i.e. will
/// send connectivity checks to its address: the one place where that is
/// decided ([`crate::candidate_filter`]: addresses the client could own;
/// host names were refused with 400 before).
pub fn accept_remote_candidate(
    session: &str,
    candidate: &CandidateAttribute<'_>,
    filter: &Context,
) -> bool {
    match candidate.connection_address.ip() {
        Some(ip) => match check_address(SocketAddr::new(ip, candidate.port), filter) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(session, "remote candidate refused: {e}");
                false
            }
        },
        None => true,
    }
}

/// What the candidate filter needs for this client: the policy's
/// decision, the router's interfaces and listening ports, `local_subnets`.
fn filter_context(state: &AppState, chosen: &Chosen) -> Context {
    let ifs = scream_ice_tokio::host::list_interfaces().unwrap_or_default();
    let config = state.config();
    let server = &config.server;
    Context {
        client: chosen.client,
        local: chosen.decision.network == NetworkType::Local,
        interfaces: ifs
            .iter()
            .filter_map(|i| Cidr::new_masked(i.address, i.prefix_len).ok())
            .collect(),
        router_ips: ifs.iter().map(|i| i.address).collect(),
        mdns: state.admission().limits().mdns_names,
        local_subnets: config.ice.local_subnets.value.clone(),
        own: std::iter::once(server.http_listen.value)
            .chain(server.stun_listen.value)
            .chain(state.listeners().iter().copied())
            .chain(
                state
                    .sessions()
                    .settings()
                    .mux
                    .iter()
                    .flat_map(|m| m.local_addresses()),
            )
            .collect(),
    }
}

/// Feed a fragment's candidates (and end-of-candidates) to the session;
/// candidates the session cannot use are logged and skipped. Candidates
/// with a host name are resolved in the background by the driver (at most
/// [`MAX_NAMES_PER_FRAGMENT`] per fragment), and end-of-candidates waits
/// for them.
fn apply_candidates(id: &str, driver: &mut Driver, frag: &SdpFrag<'_>, filter: &Context) {
    let mut names = 0;
    for c in frag.candidates() {
        if !accept_remote_candidate(id, &c, filter) {
            tracing::info!(session = id, "remote candidate refused: {c}");
            continue;
        }
        let line = c.to_string();
        if let ConnectionAddress::Fqdn(name) = c.connection_address {
            names += 1;
            if names > MAX_NAMES_PER_FRAGMENT {
                tracing::warn!(
                    session = id,
                    "remote candidate skipped: too many host names"
                );
            } else {
                driver.resolve_remote_candidate(line, name, c.port);
            }
            continue;
        }
        match c.to_candidate() {
            Ok(candidate) => {
                if let Err(e) = driver.add_remote_candidate(candidate) {
                    tracing::warn!(session = id, "remote candidate skipped: {e}");
                }
            }
            Err(e) => tracing::warn!(session = id, "remote candidate skipped: {e}"),
        }
    }
    if frag.end_of_candidates() {
        driver.end_of_remote_candidates();
    }
}

/// Our current fragment, from the core session itself: credentials, the
/// candidates signalled so far, end-of-candidates once gathering is done,
/// and for a session that plays a sink the `a=rtpmap` of the sink's format
/// now (so the answer, a `GET` and a restart's 200 all announce it, also
/// after a format change).
fn current_fragment(
    driver: &Driver,
    audio: Option<&subscription::Subscription>,
) -> Result<String, String> {
    let s = driver.session();
    let (ufrag, pwd) = s.local_credentials();
    let local: Vec<Candidate> = s.signalled_candidates().copied().collect();
    let mut f = write_sdpfrag(ufrag, pwd, &local, s.gathering_complete())?;
    f.extend(audio.and_then(subscription::Subscription::rtpmap_line));
    Ok(f)
}

/// The `201 Created` / `200 OK` reply carrying our fragment.
fn sdpfrag_reply(status: StatusCode, etag: &str, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(SDPFRAG));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(ETAG, v);
    }
    r
}

/// `POST /api/ice/sessions`.
pub async fn create(
    State(state): State<AppState>,
    ConnectInfo(conn): ConnectInfo<ConnAddrs>,
    axum::extract::Query(query): axum::extract::Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let sessions = state.sessions().clone();
    let settings = sessions.settings().clone();
    // Admission first: before the body is read, a socket bound or a task
    // spawned. The ticket holds the place until the session actor ends.
    let client = crate::state::client_ip(&state.config(), conn.remote, &headers);
    let ticket = match admit(&state, client, &headers) {
        Ok(t) => t,
        Err(refusal) => return refusal.into_response(),
    };
    if !is_sdpfrag(&headers) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format_args!("Content-Type must be {SDPFRAG}"),
        );
    }
    let text = match read_body(body, settings.max_body).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let frag = match SdpFrag::parse(&text) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let (Some(ufrag), Some(pwd)) = (frag.ice_ufrag(), frag.ice_pwd()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "sdpfrag needs a=ice-ufrag and a=ice-pwd",
        );
    };
    let limits = state.admission().limits().clone();
    if let Err(e) = check_fragment_names(&frag, limits.mdns_names) {
        return error(StatusCode::BAD_REQUEST, e);
    }
    // `?sink=NAME`: the sink this speaker plays (crate::subscription).
    let sink = match query
        .get("sink")
        .map(|n| subscription::lookup(state.sinks(), n))
    {
        None => None,
        Some(Ok(sink)) => Some(sink),
        Some(Err((status, reason))) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            return error(status, reason);
        }
    };
    let who = crate::rollout::ClientIdQuery {
        client_id: query.get("client_id").cloned(),
    };
    let client_id = match who.validated() {
        Ok(id) => id,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    let chosen = choose_for(&state, conn, &headers, FallbackStage::LocalOnly, client_id);
    let mut config = session_config(&state, conn, &headers, &chosen, &settings);
    config.agent.unanswered_check_budget = limits.unanswered_checks_per_session;
    config.agent.consent_timeout =
        CoreDuration::from_millis(u64::from(limits.consent_timeout_ms.get()));
    config.check_budget = Some(state.admission().check_budget());
    let filter = filter_context(&state, &chosen);
    config.resolved_filter = Some(Arc::new(filter.clone()));
    config.resolver = settings.resolver.clone();
    config.mux = settings.mux.clone();
    let mut driver = match Driver::start(config).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(client = %chosen.client, "cannot start ICE session: {e}");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format_args!("cannot start ICE session: {e}"),
            );
        }
    };
    let (id, etag) = match (random_hex(16), new_etag()) {
        (Ok(i), Ok(e)) => (i, e),
        _ => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "system randomness unavailable",
            );
        }
    };
    if let Err(e) = driver.set_remote_credentials(ufrag, pwd) {
        return error(StatusCode::BAD_REQUEST, e);
    }
    apply_candidates(&id, &mut driver, &frag, &filter);
    let audio = sink.map(subscription::Subscription::new);
    let answer = match current_fragment(&driver, audio.as_ref()) {
        Ok(a) => a,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };

    let (tx, rx) = mpsc::channel(16);
    sessions.insert(id.clone(), tx);
    tracing::info!(
        session = %id,
        client = %chosen.client,
        network = %chosen.decision.network,
        "ICE session created: {} local candidates, gathering {}",
        driver.session().signalled_candidates().count(),
        if driver.session().gathering_complete() { "complete" } else { "running" }
    );
    let actor = SessionActor {
        id: id.clone(),
        driver,
        requests: rx,
        sessions,
        etag: etag.clone(),
        remote_ufrag: ufrag.to_string(),
        remote_pwd: pwd.to_string(),
        early: Vec::new(),
        audio,
        deadline: tokio::time::Instant::now() + settings.connect_timeout,
        connect_timeout: settings.connect_timeout,
        media_timeout: Duration::from_millis(u64::from(limits.media_timeout_ms.get())),
        media_deadline: None,
        filter,
        _ticket: ticket,
        outcome: crate::outcomes::SessionOutcome::start(
            &state,
            chosen.assignment.clone(),
            chosen.decision.network.as_str(),
        ),
    };
    tokio::spawn(actor.run());

    let mut r = sdpfrag_reply(StatusCode::CREATED, &etag, answer);
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/ice/sessions/{id}")) {
        h.insert(LOCATION, v);
    }
    h.insert(
        axum::http::header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Location, ETag, Link"),
    );
    decision_headers(&chosen, h);
    r
}

/// `X-Scream-Ice-Network`/`-Stage` and the RFC 9725 `Link` headers.
fn decision_headers(chosen: &Chosen, h: &mut HeaderMap) {
    h.insert(
        HeaderName::from_static("x-scream-ice-network"),
        HeaderValue::from_static(chosen.decision.network.as_str()),
    );
    h.insert(
        HeaderName::from_static("x-scream-ice-stage"),
        HeaderValue::from_static(chosen.decision.stage.as_str()),
    );
    for link in chosen.link_headers() {
        if let Ok(v) = HeaderValue::from_str(&link) {
            h.append(LINK, v);
        }
    }
}

/// The session the policy's decision for this client asks for.
fn session_config(
    state: &AppState,
    conn: ConnAddrs,
    headers: &HeaderMap,
    chosen: &Chosen,
    settings: &SessionSettings,
) -> SessionConfig {
    let own = state.own_stun_url(headers, conn.local);
    let config = state.config();
    let parts = config.policy_parts(own.as_deref());
    let mut policy = parts.config();
    policy.mode = chosen.assignment.mode;
    // The same pure decision `choose` made.
    let peer = PeerKnowledge::with_address(chosen.client);
    let decision = decide(&policy, &peer, FallbackStage::LocalOnly);
    let mut c = SessionConfig::for_peer(Role::Controlled, &policy, &peer);
    c.hosts = match &settings.bind {
        Some(ips) => {
            HostAddresses::Explicit(ips.iter().map(|ip| SocketAddr::new(*ip, 0)).collect())
        }
        None => {
            let mut f = HostFilter::new();
            f.include_loopback = decision.offer_loopback_host_candidates;
            HostAddresses::Discover(f)
        }
    };
    c
}

/// The 404 of an unknown (or just ended) session.
fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such ICE session")
}

/// Ask the session task; a task that has just ended is a 404.
async fn ask(
    tx: &mpsc::Sender<Request>,
    make: impl FnOnce(oneshot::Sender<Response>) -> Request,
) -> Response {
    let (reply, rx) = oneshot::channel();
    if tx.send(make(reply)).await.is_err() {
        return not_found();
    }
    rx.await.unwrap_or_else(|_| not_found())
}

/// `GET /api/ice/sessions/{id}`: our current fragment and `ETag`.
pub async fn fetch(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.sessions().get(&id) {
        Some(tx) => ask(&tx, |reply| Request::Get { reply }).await,
        None => not_found(),
    }
}

/// `PATCH /api/ice/sessions/{id}`: trickle or ICE restart.
pub async fn patch(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(tx) = state.sessions().get(&id) else {
        return not_found();
    };
    if !is_sdpfrag(&headers) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format_args!("Content-Type must be {SDPFRAG}"),
        );
    }
    let body = match read_body(body, state.sessions().settings().max_body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(if_match) = headers.get(IF_MATCH) else {
        return error(
            StatusCode::PRECONDITION_REQUIRED,
            "If-Match (the session's ETag, or *) is required",
        );
    };
    let Ok(if_match) = if_match.to_str() else {
        return error(StatusCode::BAD_REQUEST, "If-Match is not ASCII");
    };
    let if_match = if_match.to_string();
    ask(&tx, |reply| Request::Patch {
        if_match,
        body,
        reply,
    })
    .await
}

/// `DELETE /api/ice/sessions/{id}`: end the session (204).
pub async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.sessions().remove(&id) {
        Some(tx) => {
            let _ = tx.send(Request::Close).await;
            tracing::info!(session = %id, "ICE session deleted");
            StatusCode::NO_CONTENT.into_response()
        }
        None => not_found(),
    }
}

/// One session's only task: owns the [`Driver`] (sockets and core
/// session), echoes application data, follows the session's events, serves
/// the HTTP requests, and removes the session from the table when it ends.
struct SessionActor {
    id: String,
    driver: Driver,
    requests: mpsc::Receiver<Request>,
    sessions: Sessions,
    /// The HTTP resource's entity tag.
    etag: String,
    /// The remote credentials of the last fragment applied (an ICE restart
    /// is a fragment with others).
    remote_ufrag: String,
    remote_pwd: String,
    /// Application datagrams received before a pair was selected.
    early: Vec<Datagram>,
    /// The sink this speaker plays, routed over the selected pair
    /// (`None`: no `?sink=`, the data path echoes).
    audio: Option<subscription::Subscription>,
    deadline: tokio::time::Instant,
    connect_timeout: Duration,
    /// A connected session ends when no datagram came from its peer for
    /// this long ([`crate::limits::SessionLimits::media_timeout_ms`]).
    media_timeout: Duration,
    /// Armed at the first selected pair, pushed by each media datagram.
    media_deadline: Option<tokio::time::Instant>,
    /// Which remote candidates this client may name.
    filter: Context,
    /// The session's place under the admission caps, given back when the
    /// actor ends.
    _ticket: crate::admission::Ticket,
    /// The router's own outcome record of this session.
    outcome: crate::outcomes::SessionOutcome,
}

impl SessionActor {
    async fn run(mut self) {
        let mut alive = true;
        while alive {
            let connected = self.driver.session().selected_pair().is_some();
            let media_deadline = match (connected, self.media_deadline) {
                (true, Some(d)) => d,
                (true, None) => {
                    let d = tokio::time::Instant::now() + self.media_timeout;
                    self.media_deadline = Some(d);
                    d
                }
                (false, _) => {
                    // Not connected (or restarting): re-armed at the next
                    // selection; this branch's timer is disabled.
                    self.media_deadline = None;
                    tokio::time::Instant::now() + self.media_timeout
                }
            };
            tokio::select! {
                o = self.driver.next() => match o {
                    // The data path: echo, unless the session plays a sink.
                    Output::Data(d) => self.data(d).await,
                    Output::Event(e) => {
                        alive = self.event(e);
                        if matches!(e, SessionEvent::Selected { .. }) {
                            self.follow_selected();
                            self.flush_early().await;
                        }
                    }
                    _ => {}
                },
                r = self.requests.recv() => match r {
                    Some(r) => alive = self.request(r),
                    None => alive = false,
                },
                () = tokio::time::sleep_until(self.deadline), if !connected => {
                    tracing::info!(
                        session = %self.id,
                        "ICE session removed: not connected within {:?}",
                        self.connect_timeout
                    );
                    alive = false;
                }
                // A session playing a sink only listens, and a sink may be
                // silent for hours: consent (RFC 7675) ends it instead.
                () = tokio::time::sleep_until(media_deadline), if connected && self.audio.is_none() => {
                    tracing::info!(
                        session = %self.id,
                        "ICE session removed: no media for {:?}",
                        self.media_timeout
                    );
                    alive = false;
                }
            }
        }
        self.sessions.remove(&self.id);
    }

    /// The data path (an echo for now). Only the selected peer is
    /// answered: anyone else could use us to send datagrams to the
    /// speaker. Datagrams that arrive before our side has selected a pair
    /// (the controlling speaker may select, and send, a moment before the
    /// controlled router does) wait in [`EARLY_DATAGRAMS`] slots and are
    /// answered once the pair is selected, if they came from its peer.
    async fn data(&mut self, d: Datagram) {
        if self.audio.is_some() {
            // A speaker playing a sink only listens; nothing to echo.
            return;
        }
        match self.driver.selected_path() {
            Some((socket, _, peer)) if peer == d.from => {
                self.media_deadline = Some(tokio::time::Instant::now() + self.media_timeout);
                let _ = socket.send_to(&d.data, peer).await;
            }
            Some(_) => {}
            None => {
                if self.early.len() < EARLY_DATAGRAMS {
                    self.early.push(d);
                }
            }
        }
    }

    /// Route the sink's audio over the pair just selected (the first one,
    /// or a new one after an ICE restart or an address change).
    fn follow_selected(&mut self) {
        let (Some(audio), Some(path)) = (self.audio.as_mut(), self.driver.selected_path()) else {
            return;
        };
        let (local, remote) = (path.1, path.2);
        match audio.follow(path) {
            Ok(true) => tracing::info!(
                session = %self.id,
                sink = audio.sink(),
                "sink audio routed {local} -> {remote}"
            ),
            Ok(false) => {}
            Err(e) => tracing::warn!(session = %self.id, sink = audio.sink(), "sink audio: {e}"),
        }
    }

    /// Answer the datagrams that came before the selection.
    async fn flush_early(&mut self) {
        let early = std::mem::take(&mut self.early);
        for d in early {
            self.data(d).await;
        }
    }

    /// Follow one event (the decision log included); false when the
    /// session is over.
    fn event(&mut self, e: SessionEvent) -> bool {
        match e {
            SessionEvent::Connection(ConnectionState::Failed) => {
                self.outcome.failed("ice_failed");
                tracing::info!(session = %self.id, "ICE session removed: failed");
                return false;
            }
            SessionEvent::Selected { local, remote } => {
                let (local_kind, remote_kind) = self.pair_kinds(local, remote);
                self.outcome.connected(local_kind, remote_kind);
                tracing::info!(
                    session = %self.id,
                    stage = %self.driver.session().stage(),
                    "selected pair {local} -> {remote}"
                );
            }
            SessionEvent::Failed(reason) => {
                self.outcome.failed(&format!("{reason:?}"));
                tracing::info!(session = %self.id, "ICE session removed: {reason}");
                return false;
            }
            SessionEvent::Decided(d) => tracing::info!(
                session = %self.id,
                network = %d.network,
                stage = %d.stage,
                srflx = d.gathers_srflx(),
                relay = d.gathers_relay(),
                "decision"
            ),
            SessionEvent::Widened { stage, reason } => {
                tracing::info!(session = %self.id, %stage, "ladder widened: {reason}");
            }
            SessionEvent::RelayWanted(_) => tracing::warn!(
                session = %self.id,
                "relay asked for; TURN allocation is not implemented yet"
            ),
            SessionEvent::RelayServer { index, address } => tracing::info!(
                session = %self.id,
                turn_server = index,
                %address,
                "TURN server located"
            ),
            _ => {}
        }
        true
    }

    /// The candidate types of the pair `local -> remote`: ours from the
    /// candidates we signalled (a learned peer-reflexive one is `prflx`),
    /// the peer's from its candidates (signalled or learned from a check).
    fn pair_kinds(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> (Option<&'static str>, Option<&'static str>) {
        let session = self.driver.session();
        let local_kind = session
            .signalled_candidates()
            .find(|c| c.address == local)
            .or_else(|| {
                session
                    .agent()
                    .local_candidates()
                    .find(|c| c.address == local)
            })
            .map(|c| c.kind.as_str());
        let remote_kind = session
            .agent()
            .remote_candidates()
            .iter()
            .find(|c| c.address == remote)
            .map(|c| c.kind.as_str());
        (local_kind, remote_kind)
    }

    /// The client closed the session (DELETE). A controlling client
    /// selects on its own check and may close before our triggered check
    /// on the pair it nominated returns; when a pair was usable
    /// (`Agent::usable_pair`), that session connected, at the moment the
    /// pair became usable.
    fn closed(&mut self) {
        let agent = self.driver.session().agent();
        if agent.selected_pair().is_some() {
            return;
        }
        let (Some((local, remote)), Some(at)) = (agent.usable_pair(), self.driver.usable_since())
        else {
            return;
        };
        let (local_kind, remote_kind) = self.pair_kinds(local, remote);
        self.outcome
            .connected_at(at.into_std(), local_kind, remote_kind);
        tracing::info!(
            session = %self.id,
            "closed by the client before our selection; pair {local} -> {remote} was usable"
        );
    }

    /// Our fragment now ([`current_fragment`]).
    fn current(&self, status: StatusCode) -> Response {
        match current_fragment(&self.driver, self.audio.as_ref()) {
            Ok(body) => sdpfrag_reply(status, &self.etag, body),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        }
    }

    /// Serve one request; false when the session is over.
    fn request(&mut self, r: Request) -> bool {
        match r {
            Request::Close => {
                self.closed();
                false
            }
            Request::Get { reply } => {
                let _ = reply.send(self.current(StatusCode::OK));
                true
            }
            Request::Patch {
                if_match,
                body,
                reply,
            } => {
                let (response, alive) = self.patch(&if_match, &body);
                let _ = reply.send(response);
                alive
            }
        }
    }

    fn patch(&mut self, if_match: &str, body: &str) -> (Response, bool) {
        if !if_match_matches(if_match, &self.etag) {
            return (
                error(
                    StatusCode::PRECONDITION_FAILED,
                    "If-Match does not match the ICE session's ETag",
                ),
                true,
            );
        }
        let frag = match SdpFrag::parse(body) {
            Ok(f) => f,
            Err(e) => return (error(StatusCode::BAD_REQUEST, e), true),
        };
        if let Err(e) = check_fragment_names(&frag, self.filter.mdns) {
            return (error(StatusCode::BAD_REQUEST, e), true);
        }
        let ufrag_changed = frag.ice_ufrag().is_some_and(|u| u != self.remote_ufrag);
        let pwd_changed = frag.ice_pwd().is_some_and(|p| p != self.remote_pwd);
        if !ufrag_changed && !pwd_changed {
            apply_candidates(&self.id, &mut self.driver, &frag, &self.filter);
            return (StatusCode::NO_CONTENT.into_response(), true);
        }
        let (Some(ufrag), Some(pwd), true, true) =
            (frag.ice_ufrag(), frag.ice_pwd(), ufrag_changed, pwd_changed)
        else {
            return (
                error(
                    StatusCode::BAD_REQUEST,
                    "an ICE restart changes both a=ice-ufrag and a=ice-pwd",
                ),
                true,
            );
        };
        self.restart(ufrag, pwd, &frag)
    }

    /// ICE restart (RFC 8445 section 9, RFC 9725 section 4.4.2).
    fn restart(&mut self, ufrag: &str, pwd: &str, frag: &SdpFrag<'_>) -> (Response, bool) {
        let Ok(etag) = new_etag() else {
            return (
                error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "system randomness unavailable",
                ),
                true,
            );
        };
        // Events of the old generation first.
        while let Some(o) = self.driver.try_next() {
            if let Output::Event(e) = o
                && !self.event(e)
            {
                return (not_found(), false);
            }
        }
        self.driver.restart();
        self.early.clear();
        self.deadline = tokio::time::Instant::now() + self.connect_timeout;
        if let Err(e) = self.driver.set_remote_credentials(ufrag, pwd) {
            return (error(StatusCode::BAD_REQUEST, e), true);
        }
        self.remote_ufrag = ufrag.to_string();
        self.remote_pwd = pwd.to_string();
        self.etag = etag;
        apply_candidates(&self.id, &mut self.driver, frag, &self.filter);
        tracing::info!(session = %self.id, "ICE restart");
        (self.current(StatusCode::OK), true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_rules() {
        let tag = "\"00ff\"";
        assert!(if_match_matches("*", tag));
        assert!(if_match_matches(" * ", tag));
        assert!(if_match_matches("\"00ff\"", tag));
        assert!(if_match_matches("\"1\", \"00ff\"", tag));
        assert!(!if_match_matches("W/\"00ff\"", tag));
        assert!(!if_match_matches("\"00fe\"", tag));
        assert!(!if_match_matches("00ff", tag));
        assert!(!if_match_matches("", tag));
    }

    #[test]
    fn content_type_rules() {
        let mut h = HeaderMap::new();
        assert!(!is_sdpfrag(&h));
        h.insert(CONTENT_TYPE, HeaderValue::from_static(SDPFRAG));
        assert!(is_sdpfrag(&h));
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("Application/Trickle-ICE-Sdpfrag; charset=utf-8"),
        );
        assert!(is_sdpfrag(&h));
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/sdp"));
        assert!(!is_sdpfrag(&h));
    }

    #[test]
    fn written_fragment_parses_back() {
        let c = Candidate {
            ..SdpFrag::parse(
                "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\n\
                 a=candidate:1 1 udp 2130706431 192.168.1.40 4010 typ host\r\n",
            )
            .unwrap()
            .candidates()
            .next()
            .unwrap()
            .to_candidate()
            .unwrap()
        };
        let text = write_sdpfrag("rtr1", "0123456789abcdefghijkl", &[c], true).unwrap();
        let f = SdpFrag::parse(&text).unwrap();
        assert_eq!(f.ice_ufrag(), Some("rtr1"));
        assert_eq!(f.ice_pwd(), Some("0123456789abcdefghijkl"));
        assert!(f.end_of_candidates());
        assert!(f.has_ice_option("trickle"));
        assert_eq!(f.candidates().count(), 1);
        let open = write_sdpfrag("rtr1", "0123456789abcdefghijkl", &[], false).unwrap();
        assert!(!SdpFrag::parse(&open).unwrap().end_of_candidates());
        assert!(write_sdpfrag("x", "0123456789abcdefghijkl", &[], false).is_err());
    }

    #[test]
    fn ids_are_128_bit_hex() {
        let a = random_hex(16).unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, random_hex(16).unwrap());
        let e = new_etag().unwrap();
        assert!(e.starts_with('"') && e.ends_with('"') && e.len() == 18);
    }
}
