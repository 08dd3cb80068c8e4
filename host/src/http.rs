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

use axum::Router;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, options, post};
use scream_ice_core::policy::FallbackStage;
use serde::{Deserialize, Serialize};

use crate::sessions;
/// Moved to [`crate::state`] (kept here for existing paths).
pub use crate::state::{AppState, Chosen, ConnAddrs, choose, client_ip, own_stun_url};

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
    let mut chosen = choose(&state, conn, &headers, stage);
    // Static TURN credentials go only to admitted sessions.
    crate::admission::withhold_static_turn(&mut chosen);
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
    let mut chosen = choose(&state, conn, &headers, stage);
    // Static TURN credentials go only to admitted sessions.
    crate::admission::withhold_static_turn(&mut chosen);
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
