//! The staged rollout in the daemon: which arm each client is in, the
//! `webrtc.ice.rollout` config, and the runtime state (stage, paused,
//! rolled back) the monitor and the admin API change.
//!
//! Every request that hands out an ICE configuration (`GET
//! /api/ice-config`, the WHEP `OPTIONS` `Link` headers, `POST
//! /api/ice/sessions`) asks [`Rollout::assign`] first. The client's
//! identity is its `client_id` (query parameter or JSON field) when given,
//! else its IP address; the core's [`bucket`] maps it to `0..100` under the
//! experiment name, and the client is in the treatment arm exactly when
//! its bucket is below the treatment share in force (the stage's percent;
//! 0 while paused or rolled back) **and** the feature flags enable smart
//! ICE ([`scream_ice_core::rollout::assign`]). The control arm gets the
//! policy in `legacy` mode (the configured STUN/TURN servers for everyone,
//! as before the migration); the treatment arm gets the mode in force.
//!
//! # Widening never moves a client back
//!
//! The bucket depends only on the identity and the experiment name, and the
//! treatment set at share `p` is `{bucket < p}`. [`changes::set_stage`]
//! refuses a stage whose percent is below the one in force (the only way
//! down is a rollback, which sends everybody to legacy, and an explicit
//! restart afterwards), so every treatment client stays in treatment at
//! every later stage. The seed's 70/30 A/B week is a 30 % stage of the same
//! experiment (add `{percent: 30, ...}` to `stages`); after it the rollout
//! continues at 50 %: the 10 % and 25 % stages are already covered, and
//! going to them would move buckets 10..29 back to legacy.
//!
//! Without a `rollout` section there is no experiment: every client gets
//! the mode in force (treatment share 100 %, or 0 % in legacy mode), as
//! before this module existed.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use scream_ice_core::policy::IceMode;
use scream_ice_core::rollout::{
    Arm, Bucket, ClientIdentity, DEFAULT_EXPERIMENT, FeatureFlags, RollbackRule, RolloutStage,
    bucket,
};
use serde::{Deserialize, Serialize};
use serde_saphyr::{Location, Spanned};

use crate::config::{Config, LocatedError, Origin};

/// Longest accepted `client_id`.
pub const MAX_CLIENT_ID: usize = 128;

/// One row of `stages`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct StageSpec {
    /// Treatment share, percent (1..=100).
    pub percent: u8,
    /// Roll back above this failure rate, parts per million.
    pub max_failure_rate_ppm: u32,
}

/// One webhook the monitor calls on a rollback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    /// `http://HOST[:PORT][/PATH]`.
    pub url: String,
    /// HMAC-SHA256 key for `X-Scream-Ice-Signature`, if set.
    pub secret: Option<String>,
}

/// `webrtc.ice.rollout`, with the seed's values for every key not written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolloutConfig {
    /// The experiment name (the bucketing salt). Keep it for the whole
    /// rollout: a new name reshuffles every client.
    pub experiment: String,
    /// The stage to start at, percent (one of `stages`). A stage stored by
    /// the admin API or the monitor wins over it after the first start.
    pub stage: u8,
    /// The schedule, ascending by percent.
    pub stages: Vec<StageSpec>,
    /// Seconds between two evaluations of the rollback rule.
    pub check_interval_s: u64,
    /// Treatment attempts before the rule may give anything but
    /// "insufficient data".
    pub min_attempts: u32,
    /// Called on a rollback.
    pub webhooks: Vec<Webhook>,
}

impl Default for RolloutConfig {
    /// The seed: stages 10/25/50/75/100 % with 5/3/2/1/0.5 %, starting at
    /// 10 %, checked every 60 s, at least 100 treatment attempts.
    fn default() -> Self {
        RolloutConfig {
            experiment: DEFAULT_EXPERIMENT.to_string(),
            stage: RolloutStage::BetaTesters.percentage(),
            stages: RolloutStage::ALL
                .iter()
                .map(|s| StageSpec {
                    percent: s.percentage(),
                    max_failure_rate_ppm: s.rollback_threshold_ppm(),
                })
                .collect(),
            check_interval_s: 60,
            min_attempts: RollbackRule::DEFAULT.min_attempts(),
            webhooks: Vec::new(),
        }
    }
}

impl RolloutConfig {
    /// The row for `percent`, if it is a stage.
    pub fn stage_spec(&self, percent: u8) -> Option<StageSpec> {
        self.stages.iter().copied().find(|s| s.percent == percent)
    }

    /// The next stage after `percent`, if any.
    pub fn next_stage(&self, percent: u8) -> Option<StageSpec> {
        self.stages.iter().copied().find(|s| s.percent > percent)
    }

    /// The core rule with this config's `min_attempts` (z = 2.576, at least
    /// 10 failures, as `RollbackRule::DEFAULT`).
    pub fn rule(&self) -> RollbackRule {
        let d = RollbackRule::DEFAULT;
        RollbackRule::new(
            d.z_milli(),
            self.min_attempts.max(d.min_failures()),
            d.min_failures(),
        )
        .unwrap_or(d)
    }
}

/// The YAML form of `webrtc.ice.rollout`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRollout {
    #[serde(default)]
    experiment: Option<Spanned<String>>,
    #[serde(default)]
    stage: Option<Spanned<u8>>,
    #[serde(default)]
    stages: Option<Spanned<Vec<Spanned<FileStage>>>>,
    #[serde(default)]
    check_interval_s: Option<Spanned<u64>>,
    #[serde(default)]
    min_attempts: Option<Spanned<u32>>,
    #[serde(default)]
    webhooks: Option<Spanned<Vec<Spanned<FileWebhook>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStage {
    percent: Spanned<u8>,
    /// Percent, e.g. `5` or `0.5`.
    max_failure_rate: Spanned<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWebhook {
    url: Spanned<String>,
    #[serde(default)]
    secret: Option<Spanned<String>>,
}

/// Fold the YAML `rollout` section over the seed's defaults; every bad
/// value is one located error.
pub(crate) fn fold_rollout(
    file: FileRollout,
    at: &dyn Fn(&Location) -> Origin,
    errors: &mut Vec<LocatedError>,
) -> RolloutConfig {
    let mut c = RolloutConfig::default();
    if let Some(e) = file.experiment {
        if e.value.is_empty() || e.value.len() > 64 {
            errors.push(LocatedError::new(
                at(&e.referenced),
                "rollout.experiment: 1 to 64 characters",
            ));
        } else {
            c.experiment = e.value;
        }
    }
    if let Some(list) = file.stages {
        let mut stages = Vec::new();
        for (i, s) in list.value.into_iter().enumerate() {
            let p = s.value.percent;
            let r = s.value.max_failure_rate;
            if !(1..=100).contains(&p.value) {
                errors.push(LocatedError::new(
                    at(&p.referenced),
                    format!("rollout.stages[{i}].percent: {} is not in 1..=100", p.value),
                ));
                continue;
            }
            if !(r.value > 0.0 && r.value < 100.0) {
                errors.push(LocatedError::new(
                    at(&r.referenced),
                    format!(
                        "rollout.stages[{i}].max_failure_rate: {} is not a percentage in (0, 100)",
                        r.value
                    ),
                ));
                continue;
            }
            if stages
                .last()
                .is_some_and(|l: &StageSpec| l.percent >= p.value)
            {
                errors.push(LocatedError::new(
                    at(&p.referenced),
                    format!(
                        "rollout.stages[{i}].percent: stages must be in ascending order of percent ({} after {})",
                        p.value,
                        stages.last().map_or(0, |l: &StageSpec| l.percent)
                    ),
                ));
                continue;
            }
            stages.push(StageSpec {
                percent: p.value,
                // Percent to ppm, rounded to the nearest ppm.
                max_failure_rate_ppm: (r.value * 10_000.0).round() as u32,
            });
        }
        if stages.is_empty() {
            errors.push(LocatedError::new(
                at(&list.referenced),
                "rollout.stages: at least one stage",
            ));
        } else {
            c.stages = stages;
            c.stage = c.stages.first().map_or(c.stage, |s| s.percent);
        }
    }
    if let Some(s) = file.stage {
        if c.stage_spec(s.value).is_some() {
            c.stage = s.value;
        } else {
            let known: Vec<String> = c.stages.iter().map(|s| s.percent.to_string()).collect();
            errors.push(LocatedError::new(
                at(&s.referenced),
                format!(
                    "rollout.stage: {} is not one of the stages ({})",
                    s.value,
                    known.join(", ")
                ),
            ));
        }
    }
    if let Some(v) = file.check_interval_s {
        if (1..=86_400).contains(&v.value) {
            c.check_interval_s = v.value;
        } else {
            errors.push(LocatedError::new(
                at(&v.referenced),
                format!("rollout.check_interval_s: {} is not in 1..=86400", v.value),
            ));
        }
    }
    if let Some(v) = file.min_attempts {
        if v.value >= RollbackRule::DEFAULT.min_failures() {
            c.min_attempts = v.value;
        } else {
            errors.push(LocatedError::new(
                at(&v.referenced),
                format!(
                    "rollout.min_attempts: at least {} (the rule's minimum failures)",
                    RollbackRule::DEFAULT.min_failures()
                ),
            ));
        }
    }
    if let Some(list) = file.webhooks {
        for (i, w) in list.value.into_iter().enumerate() {
            let url = w.value.url;
            if crate::client::BaseUrl::parse(&url.value).is_err() {
                errors.push(LocatedError::new(
                    at(&url.referenced),
                    format!(
                        "rollout.webhooks[{i}].url: expected http://HOST[:PORT][/PATH]: {:?}",
                        url.value
                    ),
                ));
                continue;
            }
            c.webhooks.push(Webhook {
                url: url.value,
                secret: w.value.secret.map(|s| s.value).filter(|s| !s.is_empty()),
            });
        }
    }
    c
}

// ---------------------------------------------------------------------------
// Runtime state
// ---------------------------------------------------------------------------

/// The rollout's state: what the monitor and the admin API change, what
/// the store persists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutStatus {
    /// The stage in force, percent.
    pub stage: u8,
    /// Paused: everybody gets legacy until `resume`, without a rollback.
    pub paused: bool,
    /// Set when rolled back: the stage it was rolled back from.
    pub rolled_back_from: Option<u8>,
    /// Unix ms of the rollback.
    pub rolled_back_at_ms: Option<i64>,
    /// Unix ms when the current stage began (the monitor counts outcomes
    /// from here).
    pub stage_started_ms: i64,
    /// Bumped on every change (the fleet's optimistic lock).
    pub version: i64,
}

impl RolloutStatus {
    /// The initial state of a config: its `stage`, not paused, not rolled
    /// back.
    pub fn initial(config: &RolloutConfig, now_ms: i64) -> Self {
        RolloutStatus {
            stage: config.stage,
            paused: false,
            rolled_back_from: None,
            rolled_back_at_ms: None,
            stage_started_ms: now_ms,
            version: 0,
        }
    }

    /// The treatment share in force: the stage, or 0 when paused or rolled
    /// back.
    pub fn treatment_percent(&self) -> u8 {
        if self.paused || self.rolled_back_from.is_some() {
            0
        } else {
            self.stage
        }
    }

    /// `active`, `paused` or `rolled_back`.
    pub fn state_name(&self) -> &'static str {
        if self.rolled_back_from.is_some() {
            "rolled_back"
        } else if self.paused {
            "paused"
        } else {
            "active"
        }
    }
}

/// Why an operator's change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChangeError {
    /// No `rollout` section in the config.
    #[error("no rollout is configured (webrtc.ice.rollout)")]
    NotConfigured,
    /// Not a configured stage.
    #[error("{0} % is not one of the configured stages")]
    UnknownStage(u8),
    /// Lower than the stage in force: treatment clients would go back.
    #[error(
        "stage {to} % is below the stage in force ({from} %): clients would move from smart back to legacy; roll back instead"
    )]
    WouldShrink {
        /// In force.
        from: u8,
        /// Asked for.
        to: u8,
    },
    /// At the last stage.
    #[error("already at the last stage ({0} %)")]
    AlreadyComplete(u8),
    /// Rolled back: `restart` (POST {"action":"restart"}) first.
    #[error("the rollout was rolled back from {0} %; restart it first")]
    RolledBack(u8),
    /// Not an action (or a stage missing / given where it does not belong).
    #[error("{0}")]
    BadAction(String),
    /// The store refused the change.
    #[error("store: {0}")]
    Store(String),
}

/// The arm a client got, and everything `screamIce` reports about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// The arm.
    pub arm: Arm,
    /// The client's bucket.
    pub bucket: Bucket,
    /// The policy mode this client gets: `legacy` for control, the mode in
    /// force for treatment.
    pub mode: IceMode,
    /// The treatment share in force, percent.
    pub stage: u8,
    /// The experiment name (`None` without a rollout section).
    pub experiment: Option<String>,
    /// The identity used, as text (the `client_id`, or the IP).
    pub client_id: String,
    /// The browser opted in ("Enable" on the deprecation notice): it gets
    /// the mode in force whatever its bucket, and is recorded as the arm
    /// `opt_in`, so neither experiment arm is skewed by it.
    pub opted_in: bool,
}

impl Assignment {
    /// The arm's name as recorded: `control`, `treatment` or `opt_in`.
    pub fn arm_label(&self) -> &'static str {
        if self.opted_in {
            "opt_in"
        } else {
            self.arm.group_name()
        }
    }
}

/// The daemon's rollout: shared, cheap to clone.
#[derive(Clone, Debug)]
pub struct Rollout {
    status: Arc<RwLock<RolloutStatus>>,
}

impl Rollout {
    /// The runtime state for `config`, starting at its initial stage.
    pub fn new(config: &Config) -> Rollout {
        let rc = config.ice.rollout.clone().unwrap_or_default();
        Rollout {
            status: Arc::new(RwLock::new(RolloutStatus::initial(&rc, now_ms()))),
        }
    }

    /// A snapshot of the state.
    pub fn status(&self) -> RolloutStatus {
        self.status
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replace the state (from the store, or after a decision).
    pub fn replace(&self, s: RolloutStatus) {
        *self
            .status
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = s;
    }

    /// The arm, mode and stage for one client. `client_id` (already
    /// validated, see [`valid_client_id`]) wins over `ip`.
    pub fn assign(&self, config: &Config, client_id: Option<&str>, ip: IpAddr) -> Assignment {
        let mode_in_force = config.ice.mode_in_force();
        let ip_text;
        let (identity, id_text) = match client_id {
            Some(id) => (ClientIdentity::Id(id), id),
            None => {
                ip_text = ip.to_string();
                (ClientIdentity::Ip(ip), ip_text.as_str())
            }
        };
        let flags = FeatureFlags {
            use_smart_ice: config.ice.enable_new_features.value,
            use_legacy_ice: mode_in_force == IceMode::Legacy,
            enable_local_priority: config.ice.local_network_priority.value,
        };
        let (experiment, percent) = match &config.ice.rollout {
            Some(rc) => (rc.experiment.as_str(), self.status().treatment_percent()),
            None => (DEFAULT_EXPERIMENT, 100),
        };
        let b = bucket(experiment, identity);
        let smart = flags.is_smart_ice_enabled() && b.is_below(percent);
        let arm = if smart { Arm::Treatment } else { Arm::Control };
        Assignment {
            arm,
            bucket: b,
            mode: if smart {
                mode_in_force
            } else {
                IceMode::Legacy
            },
            stage: if flags.is_smart_ice_enabled() {
                percent
            } else {
                0
            },
            experiment: config.ice.rollout.as_ref().map(|r| r.experiment.clone()),
            client_id: id_text.to_string(),
            opted_in: false,
        }
    }

    /// As [`Rollout::assign`] for a client that opted in: the mode in
    /// force when the flags allow smart ICE and the rollout is neither
    /// paused nor rolled back (a rollback overrides every opt-in); else the
    /// plain assignment.
    pub fn assign_opted_in(
        &self,
        config: &Config,
        client_id: Option<&str>,
        ip: IpAddr,
    ) -> Assignment {
        let mut a = self.assign(config, client_id, ip);
        let running = config.ice.rollout.is_none() || self.status().treatment_percent() > 0;
        let allowed =
            config.ice.enable_new_features.value && config.ice.mode_in_force() != IceMode::Legacy;
        if a.arm == Arm::Control && running && allowed {
            a.opted_in = true;
            a.mode = config.ice.mode_in_force();
        }
        a
    }
}

/// Everything the rollout, the outcome pipeline and the admin API share:
/// one per daemon, held by [`crate::http::AppState`].
#[derive(Clone, Debug)]
pub struct Hub {
    /// The runtime rollout state.
    pub rollout: Rollout,
    /// The outcome queue (to the store, or metrics only).
    pub outcomes: crate::outcomes::OutcomeQueue,
    /// The metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Per-client limit on outcomes.
    pub limiter: Arc<crate::outcomes::RateLimiter>,
    /// The store once it is open ([`Hub::store`]); empty without one, or
    /// while a configured store could not be opened yet.
    store: Arc<std::sync::OnceLock<crate::store::Store>>,
    /// A store is configured for this hub (it may not be open yet): the
    /// rollout is held at control and operators' changes are refused
    /// until it is.
    store_expected: bool,
    /// This router's name in the store (`router_id`).
    pub router_id: String,
    /// The admin token, if the admin API is enabled.
    pub admin: Option<crate::auth::AdminToken>,
    /// The monitor's latest decision (also in the store).
    pub last_decision: Arc<RwLock<Option<crate::store::DecisionRow>>>,
    /// The newest sample-ratio-mismatch warning, if any.
    pub srm_warning: Arc<RwLock<Option<String>>>,
}

/// Default per-client outcome rate (outcomes per second).
pub const DEFAULT_OUTCOME_RATE: u32 = 1_000;
/// Default per-client outcome burst.
pub const DEFAULT_OUTCOME_BURST: u32 = 10_000;

impl Hub {
    /// A hub with no store (outcomes are counted in the metrics only) and
    /// no admin token: what in-process tests and `AppState::new` use.
    pub fn without_store(config: &Config) -> Hub {
        let metrics = Arc::new(crate::metrics::Metrics::new());
        Hub {
            rollout: Rollout::new(config),
            outcomes: crate::outcomes::OutcomeQueue::metrics_only(metrics.clone()),
            metrics,
            limiter: Arc::new(crate::outcomes::RateLimiter::new(
                f64::from(config.store.rate_per_client),
                f64::from(config.store.burst_per_client),
            )),
            store: Arc::default(),
            store_expected: false,
            router_id: default_router_id(),
            admin: None,
            last_decision: Arc::new(RwLock::new(None)),
            srm_warning: Arc::new(RwLock::new(None)),
        }
    }

    /// A hub writing to `store` through a queue of
    /// `config.store.queue_capacity` outcomes; starts the writer task
    /// (call inside a tokio runtime). The rollout state is loaded from the
    /// store when it has one for the experiment (a restart stays rolled
    /// back), else stored from the config.
    pub async fn with_store(
        config: &Config,
        store: crate::store::Store,
        router_id: String,
    ) -> Result<Hub, crate::store::StoreError> {
        let (hub, rx) = Hub::awaiting_store(config, router_id);
        hub.attach_store(config, store, rx).await?;
        Ok(hub)
    }

    /// A hub whose configured store could not be opened: outcomes wait in
    /// a queue of `config.store.queue_capacity` (what overflows is counted
    /// as dropped), the rollout is held (paused: everybody gets the control
    /// arm, since the stored state may be a rollback this router cannot
    /// read; with a rollout configured), and operators' changes are
    /// refused, until
    /// [`Hub::attach_store`]. The receiver goes to `attach_store`.
    pub fn awaiting_store(
        config: &Config,
        router_id: String,
    ) -> (Hub, tokio::sync::mpsc::Receiver<crate::store::OutcomeRow>) {
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let (queue, rx) =
            crate::outcomes::OutcomeQueue::new(config.store.queue_capacity, metrics.clone());
        let hub = Hub {
            rollout: Rollout::new(config),
            outcomes: queue,
            metrics,
            limiter: Arc::new(crate::outcomes::RateLimiter::new(
                f64::from(config.store.rate_per_client),
                f64::from(config.store.burst_per_client),
            )),
            store: Arc::default(),
            store_expected: true,
            router_id,
            admin: None,
            last_decision: Arc::new(RwLock::new(None)),
            srm_warning: Arc::new(RwLock::new(None)),
        };
        if config.ice.rollout.is_some() {
            let mut held = hub.rollout.status();
            held.paused = true;
            hub.rollout.replace(held);
        }
        (hub, rx)
    }

    /// The store of an [`Hub::awaiting_store`] hub opened: start its writer
    /// on the queued outcomes, then follow (or store) the rollout state.
    /// Does nothing if a store is already attached.
    pub async fn attach_store(
        &self,
        config: &Config,
        store: crate::store::Store,
        rx: tokio::sync::mpsc::Receiver<crate::store::OutcomeRow>,
    ) -> Result<(), crate::store::StoreError> {
        if self.store.set(store.clone()).is_err() {
            return Ok(());
        }
        crate::outcomes::spawn_writer(store, rx, self.metrics.clone(), config.store.batch);
        self.sync_from_store(config).await
    }

    /// The outcome store, once it is open.
    pub fn store(&self) -> Option<&crate::store::Store> {
        self.store.get()
    }

    /// Load the stored state of the configured experiment, or store the
    /// initial one; then follow it. The fleet's routers call this every
    /// check interval, so a change made by one is served by all.
    pub async fn sync_from_store(&self, config: &Config) -> Result<(), crate::store::StoreError> {
        let (Some(store), Some(rc)) = (self.store(), &config.ice.rollout) else {
            return Ok(());
        };
        match store.load_status(&rc.experiment).await? {
            Some(s) => {
                if s != self.rollout.status() {
                    tracing::info!(
                        "rollout {}: following the stored state: stage {} %, {}",
                        rc.experiment,
                        s.stage,
                        s.state_name()
                    );
                }
                self.rollout.replace(s);
            }
            None => {
                let mut s = RolloutStatus::initial(rc, now_ms());
                s.version = 1;
                if !store.save_status(&rc.experiment, &s).await? {
                    // Another router stored one first: follow it.
                    if let Some(s) = store.load_status(&rc.experiment).await? {
                        self.rollout.replace(s);
                    }
                } else {
                    self.rollout.replace(s);
                }
            }
        }
        Ok(())
    }

    /// Apply an operator's (or the monitor's) change `f` to the state:
    /// validated, stored (with a fleet: compare-and-set on the version, so
    /// concurrent changes cannot both apply), then served. Returns the new
    /// state and whether this call made the change.
    pub async fn change(
        &self,
        config: &Config,
        f: impl Fn(&RolloutConfig, &RolloutStatus) -> Result<RolloutStatus, ChangeError>,
    ) -> Result<(RolloutStatus, bool), ChangeError> {
        let rc = config
            .ice
            .rollout
            .as_ref()
            .ok_or(ChangeError::NotConfigured)?;
        if self.store_expected && self.store().is_none() {
            return Err(ChangeError::Store(
                "the outcome store is not open yet (the rollout is held at control until it is)"
                    .to_string(),
            ));
        }
        for _ in 0..5 {
            if let Some(store) = self.store()
                && let Ok(Some(s)) = store.load_status(&rc.experiment).await
            {
                self.rollout.replace(s);
            }
            let cur = self.rollout.status();
            let mut next = f(rc, &cur)?;
            if next == cur {
                return Ok((cur, false));
            }
            next.version = cur.version + 1;
            match self.store() {
                None => {
                    self.rollout.replace(next.clone());
                    return Ok((next, true));
                }
                Some(store) => match store.save_status(&rc.experiment, &next).await {
                    Ok(true) => {
                        self.rollout.replace(next.clone());
                        return Ok((next, true));
                    }
                    Ok(false) => continue,
                    Err(e) => return Err(ChangeError::Store(e.to_string())),
                },
            }
        }
        Err(ChangeError::Store(
            "the stored state kept changing; try again".to_string(),
        ))
    }
}

/// This host's name, for `router_id`: `$HOSTNAME`, else `/etc/hostname`,
/// else `scream-ice`; with the process id, so two daemons on one host
/// differ.
pub fn default_router_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "scream-ice".to_string());
    format!("{host}:{}", std::process::id())
}

/// The operator's changes, as pure functions of (config, state).
pub mod changes {
    use super::{ChangeError, RolloutConfig, RolloutStatus, now_ms};

    /// Move to stage `percent`; never to a smaller one.
    pub fn set_stage(
        rc: &RolloutConfig,
        s: &RolloutStatus,
        percent: u8,
    ) -> Result<RolloutStatus, ChangeError> {
        if let Some(from) = s.rolled_back_from {
            return Err(ChangeError::RolledBack(from));
        }
        if rc.stage_spec(percent).is_none() {
            return Err(ChangeError::UnknownStage(percent));
        }
        if percent < s.stage {
            return Err(ChangeError::WouldShrink {
                from: s.stage,
                to: percent,
            });
        }
        let mut n = s.clone();
        if percent != s.stage {
            n.stage = percent;
            n.stage_started_ms = now_ms();
        }
        Ok(n)
    }

    /// Move to the next stage.
    pub fn advance(rc: &RolloutConfig, s: &RolloutStatus) -> Result<RolloutStatus, ChangeError> {
        if let Some(from) = s.rolled_back_from {
            return Err(ChangeError::RolledBack(from));
        }
        match rc.next_stage(s.stage) {
            Some(next) => set_stage(rc, s, next.percent),
            None => Err(ChangeError::AlreadyComplete(s.stage)),
        }
    }

    /// Pause (everybody legacy, no rollback) or resume.
    pub fn pause(
        _rc: &RolloutConfig,
        s: &RolloutStatus,
        paused: bool,
    ) -> Result<RolloutStatus, ChangeError> {
        let mut n = s.clone();
        if n.paused != paused {
            n.paused = paused;
            if !paused {
                // Outcomes while paused were all control: count afresh.
                n.stage_started_ms = now_ms();
            }
        }
        Ok(n)
    }

    /// Roll back (idempotent: the first rollback's stage and time stay).
    pub fn roll_back(_rc: &RolloutConfig, s: &RolloutStatus) -> Result<RolloutStatus, ChangeError> {
        let mut n = s.clone();
        if n.rolled_back_from.is_none() {
            n.rolled_back_from = Some(s.stage);
            n.rolled_back_at_ms = Some(now_ms());
        }
        Ok(n)
    }

    /// After a rollback: start over at the first stage.
    pub fn restart(rc: &RolloutConfig, s: &RolloutStatus) -> Result<RolloutStatus, ChangeError> {
        let mut n = RolloutStatus::initial(rc, now_ms());
        n.stage = rc.stages.first().map_or(rc.stage, |f| f.percent);
        n.version = s.version;
        Ok(n)
    }
}

/// `?client_id=` on the speaker session endpoint.
#[derive(Debug, Default, Deserialize)]
pub struct ClientIdQuery {
    /// The speaker's stable identity (else its IP is used).
    pub client_id: Option<String>,
}

impl ClientIdQuery {
    /// The id if present and valid; `Err` (with the 400 message) if invalid.
    pub fn validated(&self) -> Result<Option<&str>, &'static str> {
        match self.client_id.as_deref() {
            None => Ok(None),
            Some(id) if valid_client_id(id) => Ok(Some(id)),
            Some(_) => Err("client_id: 1 to 128 printable ASCII characters, no spaces"),
        }
    }
}

/// A `client_id` is 1 to [`MAX_CLIENT_ID`] printable ASCII characters
/// without spaces.
pub fn valid_client_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_CLIENT_ID && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The JSON `screamIce` member of `GET /api/ice-config`.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, Clone)]
pub struct ScreamIceJson {
    /// `control` or `treatment`.
    pub arm: String,
    /// The mode in force for this client.
    pub mode: String,
    /// The treatment share in force, percent.
    pub stage: u8,
    /// The experiment name, `null` without a rollout.
    pub experiment: Option<String>,
    /// `null` in treatment; the seed's deprecation notice in control.
    pub deprecation: Option<DeprecationJson>,
}

/// The seed's legacy deprecation notice (section 4.1).
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, Clone)]
pub struct DeprecationJson {
    /// The console warning.
    pub warning: String,
    /// The notification's title.
    pub title: String,
    /// The notification's message.
    pub message: String,
    /// "Learn more" link.
    pub docs: String,
}

impl Assignment {
    /// The `screamIce` member.
    pub fn json(&self) -> ScreamIceJson {
        ScreamIceJson {
            arm: self.arm_label().to_string(),
            mode: self.mode.as_str().to_string(),
            stage: self.stage,
            experiment: self.experiment.clone(),
            deprecation: (self.mode == IceMode::Legacy).then(|| DeprecationJson {
                warning: "[DEPRECATION] Legacy ICE configuration will be removed in v3.0.0. \
                          Please migrate to the new smart ICE configuration. \
                          See: https://docs.screamrouter.com/migration/ice-config"
                    .to_string(),
                title: "ICE Configuration Update".to_string(),
                message: "A new, more efficient connection method is available. \
                          Would you like to enable it?"
                    .to_string(),
                docs: "https://docs.screamrouter.com/migration/ice-config".to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> Config {
        Config::from_yaml("t.yaml", yaml).expect("valid")
    }

    #[test]
    fn defaults_are_the_seed() {
        let c = config("webrtc:\n  ice:\n    rollout: {}\n");
        let r = c.ice.rollout.as_ref().unwrap();
        assert_eq!(r.stage, 10);
        let rows: Vec<(u8, u32)> = r
            .stages
            .iter()
            .map(|s| (s.percent, s.max_failure_rate_ppm))
            .collect();
        assert_eq!(
            rows,
            [
                (10, 50_000),
                (25, 30_000),
                (50, 20_000),
                (75, 10_000),
                (100, 5_000)
            ]
        );
        assert_eq!(r.min_attempts, 100);
        assert_eq!(r.experiment, DEFAULT_EXPERIMENT);
    }

    #[test]
    fn bad_values_are_located() {
        let e = Config::from_yaml(
            "t.yaml",
            "webrtc:\n  ice:\n    rollout:\n      stage: 30\n      webhooks:\n        - url: https://x\n",
        )
        .unwrap_err();
        let lines: Vec<String> = e.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            lines,
            [
                "t.yaml:4:14: rollout.stage: 30 is not one of the stages (10, 25, 50, 75, 100)",
                "t.yaml:6:16: rollout.webhooks[0].url: expected http://HOST[:PORT][/PATH]: \"https://x\""
            ]
        );
    }

    #[test]
    fn control_gets_legacy_treatment_gets_the_mode() {
        let c = config("webrtc:\n  ice:\n    rollout:\n      stage: 50\n");
        let r = Rollout::new(&c);
        let mut seen = [false, false];
        for i in 0..200 {
            let id = format!("speaker-{i}");
            let a = r.assign(&c, Some(&id), "127.0.0.1".parse().unwrap());
            assert_eq!(a.arm == Arm::Treatment, a.bucket.get() < 50);
            assert_eq!(
                a.mode,
                if a.arm == Arm::Treatment {
                    IceMode::Auto
                } else {
                    IceMode::Legacy
                }
            );
            assert_eq!(a.json().deprecation.is_some(), a.arm == Arm::Control);
            seen[a.arm.is_smart() as usize] = true;
        }
        assert_eq!(seen, [true, true]);
    }

    #[test]
    fn use_smart_ice_false_and_rollback_send_everyone_to_legacy() {
        let mut c = config("webrtc:\n  ice:\n    rollout:\n      stage: 100\n");
        let r = Rollout::new(&c);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(r.assign(&c, None, ip).arm, Arm::Treatment);
        c.apply_env(|v| (v == crate::config::ENV_USE_SMART_ICE).then(|| "false".to_string()))
            .unwrap();
        assert_eq!(r.assign(&c, None, ip).arm, Arm::Control);
        assert_eq!(r.assign(&c, None, ip).stage, 0);
        let c = config("webrtc:\n  ice:\n    rollout:\n      stage: 100\n");
        let mut s = r.status();
        s.rolled_back_from = Some(100);
        r.replace(s);
        assert_eq!(r.assign(&c, None, ip).arm, Arm::Control);
    }

    /// The bucketing itself is unbiased: over 1,000,000 ids every stage's
    /// share is within 0.2 points (binomial sigma at 50 % is 0.05 points),
    /// so a 10,000-client sample (sigma up to 0.5 points) lands within 1
    /// point of the stage about 95 % of the time per stage; the HTTP test
    /// (`tests/rollout_http.rs`) uses one seeded sample.
    #[test]
    fn bucketing_is_unbiased_at_a_million_clients() {
        let mut below = [0u32; 5];
        for i in 0..1_000_000u32 {
            let b = bucket(
                DEFAULT_EXPERIMENT,
                ClientIdentity::Id(&format!("client-{i}")),
            );
            for (k, p) in [10u8, 25, 50, 75, 100].iter().enumerate() {
                below[k] += u32::from(b.is_below(*p));
            }
        }
        for (k, p) in [10.0f64, 25.0, 50.0, 75.0, 100.0].iter().enumerate() {
            let share = f64::from(below[k]) / 10_000.0;
            assert!((share - p).abs() < 0.2, "{p} %: {share}");
        }
    }

    #[test]
    fn without_a_rollout_everyone_gets_the_mode_in_force() {
        let c = config("");
        let r = Rollout::new(&c);
        let a = r.assign(&c, None, "192.168.1.9".parse().unwrap());
        assert_eq!(
            (a.arm, a.mode, a.stage),
            (Arm::Treatment, IceMode::Auto, 100)
        );
        let c = config("webrtc:\n  ice:\n    legacy_mode: true\n");
        let a = r.assign(&c, None, "192.168.1.9".parse().unwrap());
        assert_eq!((a.arm, a.mode, a.stage), (Arm::Control, IceMode::Legacy, 0));
    }
}
