//! The rollout's HTTP endpoints: `GET`/`POST /api/rollout` (admin token),
//! `POST /api/ice/outcomes` ([`crate::outcomes`]) and `GET /metrics`.
//!
//! `POST /api/rollout` takes one JSON action:
//! `{"action": "advance"}`, `{"action": "set", "stage": 50}`,
//! `{"action": "pause"}`, `{"action": "resume"}`,
//! `{"action": "rollback"}` or `{"action": "restart"}` (start over at the
//! first stage after a rollback). Every change is stored first (with a
//! fleet: compare-and-set on the shared row) and answered with the new
//! state; a refused change is 409 with the reason.

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use crate::auth::RequireAdmin;
use crate::http::AppState;
use crate::rollout::{ChangeError, RolloutStatus, changes};
use crate::store::DecisionRow;

/// The routes of this module, to merge into [`crate::http::router`].
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/ice/outcomes",
            post(crate::outcomes::post_outcomes)
                .layer(DefaultBodyLimit::max(crate::outcomes::MAX_BODY)),
        )
        .route("/api/rollout", get(get_rollout).post(post_rollout))
        .route("/metrics", get(metrics))
        .route("/dashboard", get(crate::dashboard::dashboard))
        .route("/scream-ice.js", get(module_js))
        .route("/scream-ice-check", get(check_page))
}

/// `GET /api/rollout`'s body.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, Clone)]
pub struct RolloutJson {
    /// The experiment, `null` without a rollout section.
    pub experiment: Option<String>,
    /// The state (`null` without a rollout section).
    pub status: Option<RolloutStatus>,
    /// `active`, `paused`, `rolled_back` or `not_configured`.
    pub state: String,
    /// The treatment share in force, percent.
    pub treatment_percent: u8,
    /// The stage's threshold, ppm.
    pub threshold_ppm: Option<u32>,
    /// The configured stages (percent).
    pub stages: Vec<u8>,
    /// The monitor's latest decision.
    pub last_decision: Option<DecisionRow>,
    /// A sample-ratio-mismatch warning, if the split looks wrong.
    pub srm_warning: Option<String>,
    /// This router.
    pub router_id: String,
}

/// The current rollout as JSON.
pub fn rollout_json(state: &AppState) -> RolloutJson {
    let hub = state.hub();
    let config = state.config();
    let rc = config.ice.rollout.as_ref();
    let status = rc.map(|_| hub.rollout.status());
    RolloutJson {
        experiment: rc.map(|r| r.experiment.clone()),
        state: status
            .as_ref()
            .map_or("not_configured", |s| s.state_name())
            .to_string(),
        treatment_percent: status.as_ref().map_or(100, |s| s.treatment_percent()),
        threshold_ppm: rc.and_then(|r| {
            status
                .as_ref()
                .and_then(|s| r.stage_spec(s.stage))
                .map(|s| s.max_failure_rate_ppm)
        }),
        stages: rc.map_or(Vec::new(), |r| r.stages.iter().map(|s| s.percent).collect()),
        status,
        last_decision: hub
            .last_decision
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone(),
        srm_warning: hub
            .srm_warning
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone(),
        router_id: hub.router_id.clone(),
    }
}

async fn get_rollout(_: RequireAdmin, State(state): State<AppState>) -> Response {
    no_store(axum::Json(rollout_json(&state)).into_response())
}

/// `POST /api/rollout`'s body.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    /// `advance`, `set`, `pause`, `resume`, `rollback` or `restart`.
    pub action: String,
    /// For `set`: the stage, percent.
    #[serde(default)]
    pub stage: Option<u8>,
}

async fn post_rollout(
    _: RequireAdmin,
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Response {
    let action: Action = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("body: {e}\n")).into_response(),
    };
    match apply(&state, &action).await {
        Ok(()) => no_store(axum::Json(rollout_json(&state)).into_response()),
        Err(ChangeError::Store(e)) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}\n")).into_response()
        }
        Err(e @ ChangeError::BadAction(_)) => {
            (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response()
        }
        Err(e) => (StatusCode::CONFLICT, format!("{e}\n")).into_response(),
    }
}

/// Apply one operator action (also used by `scream-ice rollback` through
/// the HTTP API).
pub async fn apply(state: &AppState, action: &Action) -> Result<(), ChangeError> {
    let hub = state.hub();
    let config = state.config();
    let config = &*config;
    let (next, changed) = match (action.action.as_str(), action.stage) {
        ("advance", None) => hub.change(config, changes::advance).await?,
        ("set", Some(p)) => {
            hub.change(config, |rc, s| changes::set_stage(rc, s, p))
                .await?
        }
        ("pause", None) => {
            hub.change(config, |rc, s| changes::pause(rc, s, true))
                .await?
        }
        ("resume", None) => {
            hub.change(config, |rc, s| changes::pause(rc, s, false))
                .await?
        }
        ("rollback", None) => hub.change(config, changes::roll_back).await?,
        ("restart", None) => hub.change(config, changes::restart).await?,
        (a, _) => {
            return Err(ChangeError::BadAction(format!(
                "unknown action {a:?} (advance, set with stage, pause, resume, rollback, restart)"
            )));
        }
    };
    if changed {
        if action.action == "rollback" {
            hub.metrics.record_rollback();
            crate::rollout_monitor::notify_webhooks(state, &next, "operator_rollback");
        }
        tracing::warn!(
            "rollout: operator action {:?}: now stage {} %, {}",
            action.action,
            next.stage,
            next.state_name()
        );
    }
    Ok(())
}

/// `GET /metrics`: OpenMetrics when the scraper asks for it (`Accept:
/// application/openmetrics-text`, as Prometheus does), else the classic
/// text format.
async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let hub = state.hub();
    let status = state
        .config()
        .ice
        .rollout
        .as_ref()
        .map(|_| hub.rollout.status());
    let sinks: Vec<crate::metrics::SinkSample> = state
        .sinks()
        .map(|set| set.iter().map(crate::sinks::Sink::sample).collect())
        .unwrap_or_default();
    let mux = state.sessions().settings().mux.as_ref().map(|m| m.stats());
    hub.metrics.set_media(&sinks, mux);
    let body = hub.metrics.encode(status.as_ref());
    let openmetrics = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let (body, ct) = if openmetrics {
        (body, crate::metrics::CONTENT_TYPE)
    } else {
        (
            crate::metrics::to_prometheus_text(&body),
            crate::metrics::CONTENT_TYPE_TEXT,
        )
    };
    let mut r = body.into_response();
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    no_store(r)
}

/// The browser module (`host/assets/scream-ice.js`, embedded).
pub const MODULE_JS: &str = include_str!("../assets/scream-ice.js");
/// The connection check page (`host/assets/check.html`, embedded).
pub const CHECK_HTML: &str = include_str!("../assets/check.html");

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    no_store(r)
}

async fn module_js() -> Response {
    asset(MODULE_JS, "text/javascript; charset=utf-8")
}

/// `GET /scream-ice-check?runs=N`: a page that connects this browser to
/// the router N times with the module and posts each outcome.
async fn check_page() -> Response {
    asset(CHECK_HTML, "text/html; charset=utf-8")
}

fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
