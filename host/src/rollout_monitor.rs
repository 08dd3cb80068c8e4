//! The rollback monitor: every `check_interval_s`, the core's rollback rule
//! over the store's counts for the current stage, and what follows from
//! its verdict.
//!
//! Each round, every router first follows the stored rollout state
//! ([`Hub::sync_from_store`]), so a stage change, pause or rollback made
//! by any router (or an operator) is served by all within one interval.
//! Then one router decides: on PostgreSQL the holder of a session-level
//! advisory lock (a router that dies closes its connection and the next
//! one to try takes over); on SQLite the only router. The decider reads
//! attempts and failures per arm since the stage began
//! ([`Store::arm_counts`]) and evaluates
//! [`RollbackRule::evaluate`](scream_ice_core::rollout::RollbackRule::evaluate)
//! with the stage's threshold. Every decision (`keep_going`,
//! `insufficient_data`, `not_worse_than_control`, `roll_back`) is logged
//! with n, failures, the bound, the threshold and the control arm's
//! figures, stored in `rollout_decisions`, shown by `GET /api/rollout`,
//! `/metrics` and `/dashboard`.
//!
//! On `roll_back` the decider stores the rolled-back state with a
//! compare-and-set on the state's version (exactly one router can win it),
//! and only the winner calls the webhooks: the seed's
//! `{"component": "ice_config", "reason": "high_failure_rate"}` plus the
//! experiment, stage, figures and an idempotency key (also sent as
//! `Idempotency-Key`), signed with HMAC-SHA256 of the body as
//! `X-Scream-Ice-Signature: sha256=HEX` when the hook has a secret,
//! retried with exponential backoff (0.5 s doubling, 6 attempts) until a
//! 2xx reply.
//!
//! The split itself is checked too: a chi-squared test of the observed
//! treatment/control counts against the stage's share (1 degree of
//! freedom, p < 0.001, i.e. chi² > 10.828) is a warning (a proxy or a
//! client bug is skewing who reports), never a rollback.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use scream_ice_core::rollout::{ArmCounts, Verdict, WilsonInterval};
use sha2::Sha256;

use crate::http::AppState;
use crate::rollout::{Hub, RolloutStatus, Webhook, changes, now_ms};
use crate::store::{DecisionRow, Leader, Store};

/// chi² with 1 degree of freedom above which p < 0.001.
pub const SRM_CHI2_P001: f64 = 10.828;

/// Run the monitor until the runtime stops.
pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut leader: Option<Leader> = None;
        loop {
            let interval = state
                .config()
                .ice
                .rollout
                .as_ref()
                .map_or(60, |r| r.check_interval_s);
            round(&state, &mut leader).await;
            tokio::time::sleep(Duration::from_secs(interval)).await;
        }
    })
}

/// One round: follow the stored state; decide if we lead.
pub async fn round(state: &AppState, leader: &mut Option<Leader>) {
    let hub = state.hub();
    let config = state.config();
    let config = &*config;
    let (Some(store), Some(rc)) = (hub.store(), &config.ice.rollout) else {
        return;
    };
    if let Err(e) = hub.sync_from_store(config).await {
        tracing::warn!("rollout monitor: cannot read the stored state: {e}");
        return;
    }
    if let Some(l) = leader.as_mut()
        && !l.still_held().await
    {
        tracing::warn!("rollout monitor: lost the decider's connection; trying again");
        if let Some(l) = leader.take() {
            l.release().await;
        }
    }
    if leader.is_none() {
        match store.try_lead(&rc.experiment).await {
            Ok(Some(l)) => {
                tracing::info!(
                    "rollout monitor: this router ({}) decides for {}",
                    hub.router_id,
                    rc.experiment
                );
                *leader = Some(l);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("rollout monitor: cannot take the decider's lock: {e}"),
        }
    }
    if leader.is_none() {
        // Follow the decider's latest decision for display.
        if let Ok(mut d) = store.decisions(&rc.experiment, 1).await {
            *hub.last_decision
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = d.pop();
        }
        return;
    }
    if let Err(e) = decide(state, store).await {
        tracing::warn!("rollout monitor: {e}");
    }
}

/// The verdict's name in decisions.
pub fn verdict_name(v: &Verdict) -> &'static str {
    match v {
        Verdict::InsufficientData { .. } => "insufficient_data",
        Verdict::Healthy => "keep_going",
        Verdict::NotWorseThanControl { .. } => "not_worse_than_control",
        Verdict::Rollback { .. } => "roll_back",
        _ => "unknown",
    }
}

/// Evaluate the rule once and act on it.
async fn decide(state: &AppState, store: &Store) -> Result<(), crate::store::StoreError> {
    let hub = state.hub();
    let config = state.config();
    let config = &*config;
    let Some(rc) = &config.ice.rollout else {
        return Ok(());
    };
    let status = hub.rollout.status();
    if status.rolled_back_from.is_some() || status.paused {
        return Ok(());
    }
    let Some(spec) = rc.stage_spec(status.stage) else {
        return Ok(());
    };
    let (t, c) = store
        .arm_counts(&rc.experiment, status.stage, status.stage_started_ms)
        .await?;
    let rule = rc.rule();
    let verdict = rule.evaluate(spec.max_failure_rate_ppm, t, c);
    let tw = WilsonInterval::new(t, rule.z_milli());
    let cw = WilsonInterval::new(c, rule.z_milli());
    let row = DecisionRow {
        timestamp_ms: now_ms(),
        router_id: hub.router_id.clone(),
        stage: i64::from(status.stage),
        verdict: verdict_name(&verdict).to_string(),
        treatment_n: i64::from(t.attempts()),
        treatment_failures: i64::from(t.failures()),
        control_n: i64::from(c.attempts()),
        control_failures: i64::from(c.failures()),
        treatment_lower_ppm: i64::from(tw.lower_ppm),
        control_upper_ppm: if c.attempts() == 0 {
            -1
        } else {
            i64::from(cw.upper_ppm)
        },
        threshold_ppm: i64::from(spec.max_failure_rate_ppm),
        detail: verdict.to_string(),
    };
    let line = format!(
        "stage {} %: {} (treatment n={} failures={} lower bound={} ppm; threshold {} ppm; control n={} failures={} upper bound={} ppm)",
        status.stage,
        row.verdict,
        row.treatment_n,
        row.treatment_failures,
        row.treatment_lower_ppm,
        row.threshold_ppm,
        row.control_n,
        row.control_failures,
        row.control_upper_ppm
    );
    if verdict.is_rollback() {
        tracing::error!("rollout monitor: {line}");
    } else {
        tracing::info!("rollout monitor: {line}");
    }
    store.record_decision(&rc.experiment, &row).await?;
    *hub.last_decision
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(row.clone());
    let srm = srm_warning(status.stage, t, c);
    if let Some(w) = &srm {
        tracing::warn!("rollout monitor: {w}");
    }
    *hub.srm_warning
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = srm;

    if verdict.is_rollback() {
        match hub.change(config, changes::roll_back).await {
            Ok((next, true)) => {
                hub.metrics.record_rollback();
                tracing::error!(
                    "rollout {}: ROLLED BACK from {} %: every client gets legacy ICE until an operator restarts the rollout",
                    rc.experiment,
                    status.stage
                );
                spawn_deliveries(
                    &rc.webhooks,
                    webhook_body(&rc.experiment, &next, &row, "high_failure_rate"),
                    key_of(&rc.experiment, &next),
                );
            }
            Ok((_, false)) => {
                tracing::info!("rollout monitor: another router already rolled back")
            }
            Err(e) => tracing::warn!("rollout monitor: cannot store the rollback: {e}"),
        }
    }
    Ok(())
}

/// The sample-ratio-mismatch warning for `stage` % and the observed arms,
/// if chi² (1 dof) exceeds [`SRM_CHI2_P001`]. `None` while either arm's
/// expected count is below 5 (the test is not valid there) or at 100 %.
pub fn srm_warning(stage: u8, t: ArmCounts, c: ArmCounts) -> Option<String> {
    let n = f64::from(t.attempts()) + f64::from(c.attempts());
    let p = f64::from(stage) / 100.0;
    let (et, ec) = (n * p, n * (1.0 - p));
    if et < 5.0 || ec < 5.0 {
        return None;
    }
    let chi2 =
        (f64::from(t.attempts()) - et).powi(2) / et + (f64::from(c.attempts()) - ec).powi(2) / ec;
    (chi2 > SRM_CHI2_P001).then(|| {
        format!(
            "sample ratio mismatch: {} treatment / {} control outcomes where {stage} % treatment was expected (chi2 = {chi2:.1}, p < 0.001); outcomes may be missing from one arm",
            t.attempts(),
            c.attempts()
        )
    })
}

/// The idempotency key of a rollback: the experiment, the stage it left
/// and when (the same for every retry and every router).
pub fn key_of(experiment: &str, s: &RolloutStatus) -> String {
    format!(
        "{experiment}:{}:{}",
        s.rolled_back_from.unwrap_or(s.stage),
        s.rolled_back_at_ms.unwrap_or(0)
    )
}

/// Deliver `body` to every hook, each in its own task.
fn spawn_deliveries(hooks: &[Webhook], body: String, key: String) {
    for hook in hooks {
        tokio::spawn(deliver(hook.clone(), body.clone(), key.clone()));
    }
}

/// Call the webhooks for a rollback an operator made (`reason`
/// `operator_rollback`), with the monitor's latest figures if any.
pub fn notify_webhooks(state: &AppState, s: &RolloutStatus, reason: &str) {
    let config = state.config();
    let Some(rc) = &config.ice.rollout else {
        return;
    };
    let hub = state.hub();
    let last = hub
        .last_decision
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let d = last.unwrap_or_else(|| DecisionRow {
        timestamp_ms: now_ms(),
        router_id: hub.router_id.clone(),
        stage: i64::from(s.rolled_back_from.unwrap_or(s.stage)),
        verdict: "operator".to_string(),
        treatment_n: 0,
        treatment_failures: 0,
        control_n: 0,
        control_failures: 0,
        treatment_lower_ppm: 0,
        control_upper_ppm: -1,
        threshold_ppm: 0,
        detail: "rolled back by an operator".to_string(),
    });
    spawn_deliveries(
        &rc.webhooks,
        webhook_body(&rc.experiment, s, &d, reason),
        key_of(&rc.experiment, s),
    );
}

/// The webhook's JSON body: the seed's `component` and `reason`
/// (`high_failure_rate` from the monitor, `operator_rollback` from the
/// admin API), the stage, the figures and the idempotency key.
pub fn webhook_body(experiment: &str, s: &RolloutStatus, d: &DecisionRow, reason: &str) -> String {
    serde_json::json!({
        "component": "ice_config",
        "reason": reason,
        "experiment": experiment,
        "stage": s.rolled_back_from.unwrap_or(s.stage),
        "rolled_back_at_ms": s.rolled_back_at_ms,
        "router_id": d.router_id,
        "idempotency_key": key_of(experiment, s),
        "figures": {
            "treatment_attempts": d.treatment_n,
            "treatment_failures": d.treatment_failures,
            "treatment_lower_bound_ppm": d.treatment_lower_ppm,
            "threshold_ppm": d.threshold_ppm,
            "control_attempts": d.control_n,
            "control_failures": d.control_failures,
            "control_upper_bound_ppm": d.control_upper_ppm,
        },
        "decision": d.detail,
    })
    .to_string()
}

/// `sha256=HEX` of HMAC-SHA256(`secret`, `body`).
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// POST `body` to `hook` until a 2xx reply, at most 6 attempts, 0.5 s
/// doubling between them. True when delivered.
pub async fn deliver(hook: Webhook, body: String, key: String) -> bool {
    let Ok(url) = crate::client::BaseUrl::parse(&hook.url) else {
        return false;
    };
    let sig = hook
        .secret
        .as_deref()
        .map(|s| signature(s, body.as_bytes()));
    let mut wait = Duration::from_millis(500);
    for attempt in 1..=6 {
        let result = async {
            let addr = url.resolve().await?;
            let mut headers = vec![
                ("Content-Type", "application/json"),
                ("Idempotency-Key", key.as_str()),
            ];
            if let Some(s) = &sig {
                headers.push(("X-Scream-Ice-Signature", s.as_str()));
            }
            let path = if url.prefix.is_empty() {
                "/".to_string()
            } else {
                url.prefix.clone()
            };
            crate::client::request(
                addr,
                &url.authority,
                "POST",
                &path,
                &headers,
                body.as_bytes(),
                Duration::from_secs(5),
            )
            .await
        }
        .await;
        match result {
            Ok(r) if (200..300).contains(&r.status) => {
                tracing::info!("webhook {}: delivered (attempt {attempt})", hook.url);
                return true;
            }
            Ok(r) => tracing::warn!(
                "webhook {}: HTTP {} (attempt {attempt} of 6)",
                hook.url,
                r.status
            ),
            Err(e) => tracing::warn!("webhook {}: {e} (attempt {attempt} of 6)", hook.url),
        }
        if attempt < 6 {
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
    tracing::error!("webhook {}: not delivered after 6 attempts", hook.url);
    false
}

/// How often `serve` tries again to open a store it could not open at
/// start.
pub const STORE_RETRY: Duration = Duration::from_secs(5);

/// The hub of a served daemon: the store opened (SQLite in the data dir
/// or `store.url`), the admin token loaded or generated. A store that
/// cannot be opened does not stop ICE: the hub is
/// [`Hub::awaiting_store`] (rollout held at control, outcomes queued) and
/// a task tries again every [`STORE_RETRY`]; the second value is then the
/// one line `serve` prints about it. Errors are one line each.
pub async fn open_hub(
    config: &crate::config::Config,
    admin_env: Option<&str>,
) -> Result<(Hub, Option<String>), String> {
    let data_dir = &config.server.data_dir.value;
    let router_id = crate::rollout::default_router_id();
    let (mut hub, note) = match Store::open(&config.store, data_dir).await {
        Ok(store) => (
            Hub::with_store(config, store, router_id)
                .await
                .map_err(|e| format!("store: {e}"))?,
            None,
        ),
        Err(e) => {
            let (hub, rx) = Hub::awaiting_store(config, router_id);
            tokio::spawn(retry_store(hub.clone(), config.clone(), rx));
            let note = format!(
                "outcome store unavailable ({e}): serving ICE, the rollout held at control and outcomes queued until it opens (retrying every {} s)",
                STORE_RETRY.as_secs()
            );
            (hub, Some(note))
        }
    };
    hub.admin = Some(
        crate::auth::AdminToken::load_or_create(admin_env, data_dir)
            .map_err(|e| format!("admin token: {e}"))?,
    );
    Ok((hub, note))
}

/// Open the store every [`STORE_RETRY`] until it opens, then attach it
/// to `hub` (its writer drains what queued meanwhile).
async fn retry_store(
    hub: Hub,
    config: crate::config::Config,
    rx: tokio::sync::mpsc::Receiver<crate::store::OutcomeRow>,
) {
    let started = std::time::Instant::now();
    loop {
        tokio::time::sleep(STORE_RETRY).await;
        match Store::open(&config.store, &config.server.data_dir.value).await {
            Ok(store) => {
                match hub.attach_store(&config, store, rx).await {
                    Ok(()) => tracing::info!(
                        "outcome store opened after {} s; following the stored rollout state",
                        started.elapsed().as_secs()
                    ),
                    Err(e) => tracing::warn!(
                        "outcome store opened after {} s, but its rollout state could not be read: {e} (the monitor tries again each round)",
                        started.elapsed().as_secs()
                    ),
                }
                return;
            }
            Err(e) => tracing::debug!("outcome store still unavailable: {e}"),
        }
    }
}

/// The line `serve` prints about the admin token (its file's path, never
/// the token).
pub fn token_line(hub: &Hub) -> String {
    match hub.admin.as_ref().map(|t| &t.source) {
        Some(crate::auth::TokenSource::File(p)) => format!(
            "admin token (Authorization: Bearer ...) in {} (mode 0600)",
            p.display()
        ),
        Some(_) => format!("admin token from {}", crate::auth::ENV_ADMIN_TOKEN),
        None => "admin API disabled".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srm_flags_a_skewed_split_only() {
        let c = |n| ArmCounts::new(n, 0).unwrap();
        assert_eq!(srm_warning(25, c(250), c(750)), None);
        assert!(srm_warning(25, c(400), c(600)).is_some());
        assert_eq!(srm_warning(100, c(1000), c(0)), None);
    }

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
