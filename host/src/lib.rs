//! `scream-ice-host`: the `scream-ice` daemon and CLI around the no_std core.
//!
//! Layers, in the order a request meets them:
//!
//! - [`config`]: the YAML config with its embedded default, environment
//!   overrides and per-value provenance; every error is one
//!   `FILE:LINE:COLUMN: reason` line.
//! - [`stun_responder`]: the router's own STUN Binding server on UDP, a
//!   loop around `scream_ice_core::stun::server::answer`.
//! - [`http`]: the axum router: `GET /api/ice-config` and the WHEP
//!   endpoint's `OPTIONS` with RFC 9725 `Link` headers, both chosen per
//!   client by `scream_ice_core::policy::decide`.
//! - [`state`]: what the handlers share (`AppState`) and the per-request
//!   policy decision (`choose`), below both `http` and `sessions`.
//! - [`sessions`]: speaker ICE sessions (`/api/ice/sessions`, RFC 8840
//!   trickle over HTTP as RFC 9725 does it), one `scream-ice-tokio`
//!   session per speaker, echoing its datagrams for now.
//! - [`connect`]: `scream-ice connect`, the speaker simulator (HTTP through
//!   `scream_ice_core::signal`, the speakers' own signaling client).
//! - [`sinks`]: Scream ingest, one socket and thread per configured sink.
//! - [`relay`]: the audio fan-out: one sink's RTP to every subscribed
//!   speaker with `sendmmsg`, routes changeable without a gap.
//! - [`receiver`]: the speaker's receive pipeline (RTP -> `core::playout`
//!   -> WAV, with statistics), sans-IO plus a plain-socket loop.
//! - [`scream_cli`]: `scream-ice scream send|tone|relay|receive`.
//! - [`probe`]: a STUN Binding client for `scream-ice stun probe`.
//! - [`serve`]: binds the listeners and runs until SIGINT/SIGTERM;
//!   SIGHUP reloads the config file ([`reload`]).
//! - [`migrate`]: `scream-ice migrate` and `rollback`, writing through
//!   [`atomic`] (backup, temporary file, fsync, validation, rename).
//! - [`cli`]: the clap types of the command line.
//! - Hardening ([`limits`] holds the numbers, `limits:` in the config):
//!   [`http_guard`] (the HTTP accept loop: timeouts, connection caps, body
//!   limits, `Host` and CORS checks), [`admission`] (who may start a
//!   speaker session, how many, how often), [`candidate_filter`] (which
//!   remote candidates the router may check).

#![forbid(unsafe_code)]

pub mod admission;
pub mod atomic;
pub mod auth;
pub mod candidate_filter;
pub mod cli;
pub mod client;
pub mod config;
pub mod connect;
pub mod dashboard;
pub mod http;
pub mod http_guard;
pub mod limits;
pub mod metrics;
pub mod migrate;
pub mod outcomes;
pub mod probe;
pub mod receiver;
pub mod relay;
pub mod reload;
pub mod report;
pub mod rollout;
pub mod rollout_api;
pub mod rollout_cli;
pub mod rollout_monitor;
pub mod scream_cli;
pub mod serve;
pub mod sessions;
pub mod sinks;
pub mod state;
pub mod store;
pub mod stun_responder;
pub mod subscription;

/// The SOFTWARE attribute value (RFC 8489 §14.14) our STUN responder sends.
pub const SOFTWARE: &str = concat!("scream-ice/", env!("CARGO_PKG_VERSION"));
