//! The HTTP API: ICE configuration for browsers, chosen per client by the
//! core policy.
//!
//! Each request is answered from the same three steps: find the client's
//! address ([`client_ip`]: the connection's remote address, or the
//! `X-Forwarded-For` entry a trusted proxy added), ask
//! `scream_ice_core::policy::decide` what that client needs, and render the
//! chosen servers as an `RTCConfiguration` (`GET /api/ice-config`) or as
//! RFC 9725 `Link: <...>; rel="ice-server"` headers (`OPTIONS
//! /api/whep/{sink}`). Our own STUN responder is offered as one more STUN
//! server, last in the list, so the policy picks it exactly when it would
//! pick a STUN server for this client (a remote or unknown peer in `auto`
//! mode, everyone in `stun-required`, `full` and `legacy`, no one in
//! `local-only`); its address is the one the client used to reach us.
//!
//! The speaker sessions (`/api/ice/sessions`, [`crate::sessions`]) make
//! the same decision for the client and start an ICE session with it.
//!
//! No endpoint needs a token yet: the admin endpoints (runtime config,
//! rollout stage) that will need one do not exist yet.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, HOST, HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, options, post};
use scream_ice_core::net::canonical;
use scream_ice_core::policy::{Decision, FallbackStage, PeerKnowledge, decide};
use scream_ice_core::url::IceServerUrl;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::config::{Config, in_cidrs};
use crate::sessions::{self, SessionSettings, Sessions};

/// Both ends of the HTTP connection: the client's address (for the policy)
/// and ours (for the own STUN responder's URL when no `Host` header helps).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnAddrs {
    /// The peer's address as the TCP connection sees it.
    pub remote: SocketAddr,
    /// Our address on this connection.
    pub local: SocketAddr,
}

impl Connected<axum::serve::IncomingStream<'_, TcpListener>> for ConnAddrs {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TcpListener>) -> Self {
        let remote = *stream.remote_addr();
        let local = stream
            .io()
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        ConnAddrs { remote, local }
    }
}

/// What the handlers share: the effective config (replaceable at run time,
/// [`AppState::replace_config`]) and the bound address of our STUN
/// responder, if it is advertised.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The config in force. A handler takes an `Arc` snapshot once per
    /// request ([`AppState::config`]), so a reload never changes the
    /// config under a request that is being answered.
    config: std::sync::RwLock<Arc<Config>>,
    own_stun: Option<SocketAddr>,
    sessions: Sessions,
}

impl AppState {
    /// `own_stun`: the address our STUN responder is bound to, when it runs
    /// and `advertise_own_stun` is on. Speaker sessions get the default
    /// [`SessionSettings`].
    pub fn new(config: Config, own_stun: Option<SocketAddr>) -> AppState {
        AppState::with_sessions(config, own_stun, SessionSettings::default())
    }

    /// As [`AppState::new`], with these limits for speaker sessions.
    pub fn with_sessions(
        config: Config,
        own_stun: Option<SocketAddr>,
        settings: SessionSettings,
    ) -> AppState {
        AppState {
            inner: Arc::new(Inner {
                config: std::sync::RwLock::new(Arc::new(config)),
                own_stun,
                sessions: Sessions::new(settings),
            }),
        }
    }

    /// A snapshot of the config in force: later reloads do not change it.
    pub fn config(&self) -> Arc<Config> {
        // A poisoned lock only means a writer panicked between two whole
        // values; the Arc inside is still a complete config.
        let guard = self.inner.config.read().unwrap_or_else(|e| e.into_inner());
        Arc::clone(&guard)
    }

    /// Put `config` in force for every request from now on (SIGHUP
    /// reload, [`crate::reload`]). Requests and speaker sessions already
    /// running keep the snapshot they took. Returns the config it
    /// replaced.
    pub fn replace_config(&self, config: Config) -> Arc<Config> {
        let mut guard = self.inner.config.write().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *guard, Arc::new(config))
    }

    /// The running speaker sessions.
    pub fn sessions(&self) -> &Sessions {
        &self.inner.sessions
    }

    /// Our STUN responder's URL for this request, if it is advertised
    /// ([`own_stun_url`]).
    pub fn own_stun_url(&self, headers: &HeaderMap, local: SocketAddr) -> Option<String> {
        self.inner
            .own_stun
            .and_then(|a| own_stun_url(a, headers, local))
    }
}

/// The API routes: `GET /api/ice-config`, `OPTIONS /api/whep/{sink}`, and
/// the speaker sessions of [`crate::sessions`] (`POST /api/ice/sessions`,
/// `GET`/`PATCH`/`DELETE /api/ice/sessions/{id}`).
///
/// The WHEP `POST`/`PATCH` are NOT here yet (browsers need DTLS-SRTP on
/// top of ICE); add `POST` to [`WHEP_METHODS`] when they land.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/ice-config", get(ice_config))
        .route("/api/whep/{sink}", options(whep_options))
        .route("/api/ice/sessions", post(sessions::create))
        .route(
            "/api/ice/sessions/{id}",
            get(sessions::fetch)
                .patch(sessions::patch)
                .delete(sessions::delete),
        )
        .with_state(state)
}

/// The methods the WHEP endpoint implements today (`Allow` and
/// `Access-Control-Allow-Methods`). `POST` joins when sessions exist.
pub const WHEP_METHODS: &str = "OPTIONS";

/// `?stage=` on both endpoints: a client whose first attempt failed asks
/// again one step up the fallback ladder.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageQuery {
    /// `local-only` (default), `with-stun` or `full`.
    pub stage: Option<String>,
}

/// The requested stage, or the one-line reason it is not one.
fn parse_stage(q: &StageQuery) -> Result<FallbackStage, String> {
    match q.stage.as_deref() {
        None | Some("local-only") => Ok(FallbackStage::LocalOnly),
        Some("with-stun") => Ok(FallbackStage::WithStun),
        Some("full") => Ok(FallbackStage::Full),
        Some(other) => Err(format!(
            "unknown stage {other:?} (expected local-only, with-stun or full)\n"
        )),
    }
}

/// The client's address: the connection's remote address, unless that is
/// a trusted proxy (`server.trusted_proxies`) and the request carries
/// `X-Forwarded-For`; then the right-most entry that is not itself a trusted
/// proxy (each proxy appends the address it saw, so entries left of the
/// first untrusted one could be forged by the client). IPv4-mapped IPv6 is
/// returned as IPv4.
pub fn client_ip(config: &Config, remote: SocketAddr, headers: &HeaderMap) -> IpAddr {
    let trusted = &config.server.trusted_proxies.value;
    let mut ip = canonical(remote.ip());
    if !in_cidrs(ip, trusted) {
        return ip;
    }
    let entries: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map_while(|s| s.trim().parse::<IpAddr>().ok())
        .collect();
    for e in entries.iter().rev() {
        ip = canonical(*e);
        if !in_cidrs(ip, trusted) {
            break;
        }
    }
    ip
}

fn ip_literal(ip: IpAddr) -> String {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// The host part of a `Host` header (port removed, IPv6 brackets kept).
fn host_of(header: &str) -> &str {
    if header.starts_with('[') {
        match header.find(']') {
            Some(end) => &header[..=end],
            None => header,
        }
    } else {
        header.split(':').next().unwrap_or(header)
    }
}

/// Our STUN responder's URL as this client should write it: the bound IP
/// if the responder is bound to one address; otherwise the host the client
/// used to reach us (`Host`), if it makes a valid `stun:` URI; otherwise our
/// address on this connection.
pub fn own_stun_url(
    own_stun: SocketAddr,
    headers: &HeaderMap,
    local: SocketAddr,
) -> Option<String> {
    let port = own_stun.port();
    let candidates = [
        (!own_stun.ip().is_unspecified()).then(|| ip_literal(own_stun.ip())),
        headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| host_of(h).to_string()),
        (!local.ip().is_unspecified()).then(|| ip_literal(local.ip())),
    ];
    candidates
        .into_iter()
        .flatten()
        .map(|host| format!("stun:{host}:{port}"))
        .find(|url| IceServerUrl::parse(url).is_ok())
}

/// The servers chosen for one client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chosen {
    /// The policy's decision.
    pub decision: Decision,
    /// The client's address the decision was made for.
    pub client: IpAddr,
    /// The STUN URLs (configured ones first, our own last).
    pub stun_urls: Vec<String>,
    /// The TURN servers: (url, username, credential).
    pub turn: Vec<(String, String, String)>,
}

/// Decide for one request.
pub fn choose(
    state: &AppState,
    conn: ConnAddrs,
    headers: &HeaderMap,
    stage: FallbackStage,
) -> Chosen {
    let config = state.config();
    let client = client_ip(&config, conn.remote, headers);
    let own = state.own_stun_url(headers, conn.local);
    let parts = config.policy_parts(own.as_deref());
    let policy = parts.config();
    let decision = decide(&policy, &PeerKnowledge::with_address(client), stage);
    let stun_urls = decision
        .stun_servers
        .iter()
        .filter_map(|i| parts.stun().get(i))
        .map(|s| s.url.to_string())
        .collect();
    let turn = decision
        .turn_servers
        .iter()
        .filter_map(|i| parts.turn().get(i))
        .map(|t| {
            (
                t.url.to_string(),
                t.username.unwrap_or_default().to_string(),
                t.credential.unwrap_or_default().to_string(),
            )
        })
        .collect();
    if config.ice.log_migration_events.value {
        crate::migrate::log_ice_config_used(
            &config,
            client,
            decision.stun_servers.len() + decision.turn_servers.len(),
        );
    }
    tracing::debug!(
        %client,
        network = %decision.network,
        stage = %decision.stage,
        "ice servers chosen: {stun_urls:?} + {} TURN",
        decision.turn_servers.len()
    );
    Chosen {
        decision,
        client,
        stun_urls,
        turn,
    }
}

/// One `RTCIceServer`.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct IceServerJson {
    /// `urls`.
    pub urls: Vec<String>,
    /// `username` (TURN only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// `credential` (TURN only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// The `RTCConfiguration` subset we return.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RtcConfigurationJson {
    /// `iceServers`.
    #[serde(rename = "iceServers")]
    pub ice_servers: Vec<IceServerJson>,
    /// `iceTransportPolicy`: always `all` (host candidates are never
    /// withheld from the browser's own gathering).
    #[serde(rename = "iceTransportPolicy")]
    pub ice_transport_policy: String,
}

impl Chosen {
    /// As an `RTCConfiguration`: one entry with every STUN URL, then one
    /// entry per TURN server (each has its own credentials).
    pub fn rtc_configuration(&self) -> RtcConfigurationJson {
        let mut ice_servers = Vec::new();
        if !self.stun_urls.is_empty() {
            ice_servers.push(IceServerJson {
                urls: self.stun_urls.clone(),
                username: None,
                credential: None,
            });
        }
        for (url, user, cred) in &self.turn {
            ice_servers.push(IceServerJson {
                urls: vec![url.clone()],
                username: Some(user.clone()),
                credential: Some(cred.clone()),
            });
        }
        RtcConfigurationJson {
            ice_servers,
            ice_transport_policy: "all".to_string(),
        }
    }

    /// RFC 9725 §4.4 `Link` header values, one per server:
    /// `<stun:...>; rel="ice-server"`, and for TURN
    /// `<turn:...>; rel="ice-server"; username="..."; credential="...";
    /// credential-type="password"`.
    pub fn link_headers(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .stun_urls
            .iter()
            .map(|u| format!("<{u}>; rel=\"ice-server\""))
            .collect();
        for (url, user, cred) in &self.turn {
            v.push(format!(
                "<{url}>; rel=\"ice-server\"; username={}; credential={}; credential-type=\"password\"",
                quoted_string(user),
                quoted_string(cred)
            ));
        }
        v
    }
}

/// An RFC 9110 §5.6.4 quoted-string: `"` and `\` escaped.
fn quoted_string(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            o.push('\\');
        }
        o.push(c);
    }
    o.push('"');
    o
}

fn common_headers(chosen: &Chosen, headers: &mut HeaderMap) {
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        HeaderName::from_static("x-scream-ice-network"),
        HeaderValue::from_static(chosen.decision.network.as_str()),
    );
    headers.insert(
        HeaderName::from_static("x-scream-ice-stage"),
        HeaderValue::from_static(chosen.decision.stage.as_str()),
    );
}

async fn ice_config(
    State(state): State<AppState>,
    ConnectInfo(conn): ConnectInfo<ConnAddrs>,
    Query(q): Query<StageQuery>,
    headers: HeaderMap,
) -> Response {
    let stage = match parse_stage(&q) {
        Ok(s) => s,
        Err(m) => return (StatusCode::BAD_REQUEST, m).into_response(),
    };
    let chosen = choose(&state, conn, &headers, stage);
    let mut response = axum::Json(chosen.rtc_configuration()).into_response();
    common_headers(&chosen, response.headers_mut());
    response
}

async fn whep_options(
    State(state): State<AppState>,
    ConnectInfo(conn): ConnectInfo<ConnAddrs>,
    Query(q): Query<StageQuery>,
    headers: HeaderMap,
) -> Response {
    let stage = match parse_stage(&q) {
        Ok(s) => s,
        Err(m) => return (StatusCode::BAD_REQUEST, m).into_response(),
    };
    let chosen = choose(&state, conn, &headers, stage);
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    common_headers(&chosen, h);
    for link in chosen.link_headers() {
        match HeaderValue::from_str(&link) {
            Ok(v) => {
                h.append(axum::http::header::LINK, v);
            }
            Err(_) => tracing::warn!("cannot send Link header (invalid characters): {link:?}"),
        }
    }
    h.insert(
        axum::http::header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Link"),
    );
    h.insert(
        axum::http::header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(WHEP_METHODS),
    );
    h.insert(
        axum::http::header::ALLOW,
        HeaderValue::from_static(WHEP_METHODS),
    );
    response
}
