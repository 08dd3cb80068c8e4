//! What every HTTP handler shares, and the per-request decision: the
//! connection's addresses ([`ConnAddrs`]), the application state
//! ([`AppState`]: config snapshot, own STUN responder, speaker sessions),
//! the client's address ([`client_ip`]) and the policy's choice for it
//! ([`choose`]).
//!
//! It sits below both [`crate::http`] (the ICE-config endpoints) and
//! [`crate::sessions`] (the speaker sessions), so neither imports the
//! other for it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::connect_info::Connected;
use axum::http::header::{HOST, HeaderMap};
use scream_ice_core::net::canonical;
use scream_ice_core::policy::{Decision, FallbackStage, PeerKnowledge, decide};
use scream_ice_core::url::IceServerUrl;
use tokio::net::TcpListener;

use crate::config::{Config, in_cidrs};
use crate::sessions::{SessionSettings, Sessions};

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
    admission: crate::admission::Admission,
    hub: crate::rollout::Hub,
    /// The running sinks, set once by `serve` ([`AppState::set_sinks`]).
    sinks: std::sync::OnceLock<crate::sinks::SinkSet>,
    /// The listeners' bound addresses, set once by `serve`
    /// ([`AppState::set_listeners`]).
    listeners: std::sync::OnceLock<Vec<SocketAddr>>,
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
        let hub = crate::rollout::Hub::without_store(&config);
        AppState::with_hub(config, own_stun, settings, hub)
    }

    /// As [`AppState::with_sessions`], with the rollout, outcome store,
    /// metrics and admin token of `hub`.
    pub fn with_hub(
        config: Config,
        own_stun: Option<SocketAddr>,
        settings: SessionSettings,
        hub: crate::rollout::Hub,
    ) -> AppState {
        let admission = crate::admission::Admission::new(
            config.limits.sessions.clone(),
            hub.metrics.checks_held(),
        );
        AppState {
            inner: Arc::new(Inner {
                config: std::sync::RwLock::new(Arc::new(config)),
                own_stun,
                sessions: Sessions::new(settings),
                admission,
                hub,
                sinks: std::sync::OnceLock::new(),
                listeners: std::sync::OnceLock::new(),
            }),
        }
    }

    /// The rollout, outcome pipeline, metrics and admin token.
    pub fn hub(&self) -> &crate::rollout::Hub {
        &self.inner.hub
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

    /// The sinks speaker sessions may subscribe to (`?sink=NAME`); set
    /// once, before serving. `Err` gives them back if already set.
    pub fn set_sinks(&self, sinks: crate::sinks::SinkSet) -> Result<(), crate::sinks::SinkSet> {
        self.inner.sinks.set(sinks)
    }

    /// Record where the HTTP server and the STUN responder are bound (a
    /// port 0 in the config is known only then): remote candidates naming
    /// them are refused like the configured ones. Only the first call
    /// counts.
    pub fn set_listeners(&self, addresses: Vec<SocketAddr>) {
        let _ = self.inner.listeners.set(addresses);
    }

    /// The listeners' bound addresses ([`AppState::set_listeners`]; empty
    /// before).
    pub fn listeners(&self) -> &[SocketAddr] {
        self.inner.listeners.get().map_or(&[], Vec::as_slice)
    }

    /// The running sinks, if [`AppState::set_sinks`] was called.
    pub fn sinks(&self) -> Option<&crate::sinks::SinkSet> {
        self.inner.sinks.get()
    }

    /// The running speaker sessions.
    pub fn sessions(&self) -> &Sessions {
        &self.inner.sessions
    }

    /// Who may start a speaker session ([`crate::admission`]).
    pub fn admission(&self) -> &crate::admission::Admission {
        &self.inner.admission
    }

    /// Our STUN responder's URL for this request, if it is advertised
    /// ([`own_stun_url`]).
    pub fn own_stun_url(&self, headers: &HeaderMap, local: SocketAddr) -> Option<String> {
        self.inner
            .own_stun
            .and_then(|a| own_stun_url(a, headers, local))
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
    /// The client's arm and the mode it gets ([`crate::rollout`]).
    pub assignment: crate::rollout::Assignment,
}

/// Decide for one request (the client identified by its IP).
pub fn choose(
    state: &AppState,
    conn: ConnAddrs,
    headers: &HeaderMap,
    stage: FallbackStage,
) -> Chosen {
    choose_for(state, conn, headers, stage, None)
}

/// [`choose_for`], for a client that opted in when `opt_in`.
pub fn choose_opted(
    state: &AppState,
    conn: ConnAddrs,
    headers: &HeaderMap,
    stage: FallbackStage,
    client_id: Option<&str>,
    opt_in: bool,
) -> Chosen {
    let config = state.config();
    let client = client_ip(&config, conn.remote, headers);
    let assignment = if opt_in {
        state
            .hub()
            .rollout
            .assign_opted_in(&config, client_id, client)
    } else {
        state.hub().rollout.assign(&config, client_id, client)
    };
    choose_assigned(state, conn, headers, stage, client, assignment)
}

/// Decide for one request whose client gave `client_id` (already
/// validated): its arm picks the policy mode (`legacy` for control).
pub fn choose_for(
    state: &AppState,
    conn: ConnAddrs,
    headers: &HeaderMap,
    stage: FallbackStage,
    client_id: Option<&str>,
) -> Chosen {
    choose_opted(state, conn, headers, stage, client_id, false)
}

/// Decide for one request whose client has `assignment`.
fn choose_assigned(
    state: &AppState,
    conn: ConnAddrs,
    headers: &HeaderMap,
    stage: FallbackStage,
    client: IpAddr,
    assignment: crate::rollout::Assignment,
) -> Chosen {
    let config = state.config();
    state
        .hub()
        .metrics
        .record_assignment(assignment.arm_label());
    let own = state.own_stun_url(headers, conn.local);
    let parts = config.policy_parts(own.as_deref());
    let mut policy = parts.config();
    policy.mode = assignment.mode;
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
        assignment,
    }
}

/// The network type the policy sees for `ip` (for outcomes that do not
/// say): `local`, `nat`, `symmetric-nat` or `unknown`.
pub fn network_of(state: &AppState, ip: IpAddr) -> &'static str {
    let config = state.config();
    let parts = config.policy_parts(None);
    decide(
        &parts.config(),
        &PeerKnowledge::with_address(ip),
        FallbackStage::LocalOnly,
    )
    .network
    .as_str()
}
