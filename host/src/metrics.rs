//! `GET /metrics`: the daemon's counters in the OpenMetrics text format
//! (`prometheus-client`), which Prometheus scrapes and `promtool check
//! metrics` accepts.
//!
//! Sits beside the outcome queue: every accepted outcome
//! ([`Metrics::record_outcome`]) and every assignment
//! ([`Metrics::record_assignment`]) updates these in memory, before and
//! whatever the store does, so a slow database never hides them; the
//! rollout gauges are set from the runtime state on every scrape.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `scream_ice_connection_attempts_total` | counter | `arm`, `mode`, `network_type` |
//! | `scream_ice_connection_successes_total` | counter | `arm`, `mode`, `network_type` |
//! | `scream_ice_connection_failures_total` | counter | `arm`, `reason` |
//! | `scream_ice_time_to_connect_seconds` | histogram | `arm` |
//! | `scream_ice_stun_used_total` | counter | `arm`, `network_type` |
//! | `scream_ice_assignments_total` | counter | `arm` |
//! | `scream_ice_rollout_stage_percent` | gauge | |
//! | `scream_ice_rollout_treatment_percent` | gauge | |
//! | `scream_ice_rollout_state` | gauge (1 for the state in force) | `state` |
//! | `scream_ice_rollbacks_total` | counter | |
//! | `scream_ice_outcomes_dropped_total` | counter | |
//! | `scream_ice_outcomes_written_total` | counter | |
//! | `scream_ice_outcomes_queued` | gauge | |
//! | `scream_ice_unanswered_checks_held_total` | counter | |
//! | `scream_ice_sink_datagrams_total` | counter | `sink` |
//! | `scream_ice_sink_invalid_total` | counter | `sink` |
//! | `scream_ice_sink_messages_total` | counter | `sink` |
//! | `scream_ice_sink_send_errors_total` | counter | `sink` |
//! | `scream_ice_sink_sendmmsg_calls_total` | counter | `sink` |
//! | `scream_ice_sink_partial_frame_bytes_dropped_total` | counter | `sink` |
//! | `scream_ice_sink_speakers` | gauge | `sink` |
//! | `scream_ice_mux_datagrams_total` | counter | `result` (`routed`, `unrouted`, `dropped`) |
//!
//! The sink and mux values are read from the sinks' relays and the shared
//! ICE sockets ([`SinkSample`], [`scream_ice_tokio::MuxStats`]) at each
//! scrape.

use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::rollout::RolloutStatus;
use crate::store::OutcomeRow;

/// The time-to-connect buckets, seconds: fine below 250 ms (LAN), then up
/// to the seed's 5 s remote target and beyond.
pub const CONNECT_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ArmModeNet {
    arm: String,
    mode: String,
    network_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ArmReason {
    arm: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ArmNet {
    arm: String,
    network_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ArmOnly {
    arm: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabel {
    sink: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

/// One sink's counters at a scrape.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SinkSample {
    /// The sink's name.
    pub name: String,
    /// Scream datagrams ingested.
    pub datagrams: u64,
    /// Datagrams that were not valid Scream.
    pub invalid: u64,
    /// Messages sent to speakers, over all of them.
    pub messages: u64,
    /// Messages the kernel refused.
    pub send_errors: u64,
    /// `sendmmsg` calls made.
    pub syscalls: u64,
    /// Bytes of partial 5-/7-channel frames dropped.
    pub partial_bytes_dropped: u64,
    /// Speakers subscribed now.
    pub speakers: usize,
}

/// Raise `c` to `value` (a counter read from elsewhere): a value below the
/// counter's (its source was restarted, e.g. a sink re-created by a
/// reload) leaves it where it is, so the series never goes down.
fn raise_to(c: &Counter, value: u64) {
    c.inc_by(value.saturating_sub(c.get()));
}

/// Every metric, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    attempts: Family<ArmModeNet, Counter>,
    successes: Family<ArmModeNet, Counter>,
    failures: Family<ArmReason, Counter>,
    connect: Family<ArmOnly, Histogram>,
    stun_used: Family<ArmNet, Counter>,
    assignments: Family<ArmOnly, Counter>,
    stage: Gauge,
    treatment: Gauge,
    state: Family<StateLabel, Gauge>,
    rollbacks: Counter,
    dropped: Counter,
    written: Counter,
    queued: Gauge<i64, AtomicI64>,
    checks_held: Counter,
    sink_datagrams: Family<SinkLabel, Counter>,
    sink_invalid: Family<SinkLabel, Counter>,
    sink_messages: Family<SinkLabel, Counter>,
    sink_errors: Family<SinkLabel, Counter>,
    sink_syscalls: Family<SinkLabel, Counter>,
    sink_partial: Family<SinkLabel, Counter>,
    sink_speakers: Family<SinkLabel, Gauge>,
    mux: Family<ResultLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("scream_ice");
        let attempts = Family::<ArmModeNet, Counter>::default();
        let successes = Family::<ArmModeNet, Counter>::default();
        let failures = Family::<ArmReason, Counter>::default();
        let connect = Family::<ArmOnly, Histogram>::new_with_constructor(
            (|| Histogram::new(CONNECT_BUCKETS)) as fn() -> Histogram,
        );
        let stun_used = Family::<ArmNet, Counter>::default();
        let assignments = Family::<ArmOnly, Counter>::default();
        let stage = Gauge::default();
        let treatment = Gauge::default();
        let state = Family::<StateLabel, Gauge>::default();
        let rollbacks = Counter::default();
        let dropped = Counter::default();
        let written = Counter::default();
        let checks_held = Counter::default();
        let queued = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "connection_attempts",
            "Connection outcomes reported, by arm, mode and network type",
            attempts.clone(),
        );
        registry.register(
            "connection_successes",
            "Successful connections, by arm, mode and network type",
            successes.clone(),
        );
        registry.register(
            "connection_failures",
            "Failed connections, by arm and failure reason",
            failures.clone(),
        );
        registry.register(
            "time_to_connect_seconds",
            "Time from the first offer to connected, successful connections",
            connect.clone(),
        );
        registry.register(
            "stun_used",
            "Connections whose selected pair needed a STUN or TURN server",
            stun_used.clone(),
        );
        registry.register(
            "assignments",
            "ICE configurations handed out, by arm",
            assignments.clone(),
        );
        registry.register(
            "rollout_stage_percent",
            "The rollout stage in force, percent",
            stage.clone(),
        );
        registry.register(
            "rollout_treatment_percent",
            "The treatment share in force (0 when paused or rolled back), percent",
            treatment.clone(),
        );
        registry.register(
            "rollout_state",
            "1 for the rollout state in force (active, paused, rolled_back)",
            state.clone(),
        );
        registry.register(
            "rollbacks",
            "Automatic and manual rollbacks this process performed",
            rollbacks.clone(),
        );
        registry.register(
            "outcomes_dropped",
            "Outcomes dropped because the store queue was full",
            dropped.clone(),
        );
        registry.register(
            "outcomes_written",
            "Outcomes written to the store",
            written.clone(),
        );
        registry.register(
            "outcomes_queued",
            "Outcomes waiting for the store",
            queued.clone(),
        );
        let sink_datagrams = Family::<SinkLabel, Counter>::default();
        let sink_invalid = Family::<SinkLabel, Counter>::default();
        let sink_messages = Family::<SinkLabel, Counter>::default();
        let sink_errors = Family::<SinkLabel, Counter>::default();
        let sink_syscalls = Family::<SinkLabel, Counter>::default();
        let sink_partial = Family::<SinkLabel, Counter>::default();
        let sink_speakers = Family::<SinkLabel, Gauge>::default();
        let mux = Family::<ResultLabel, Counter>::default();
        for (name, help, family) in [
            (
                "sink_datagrams",
                "Scream datagrams a sink ingested and forwarded",
                &sink_datagrams,
            ),
            (
                "sink_invalid",
                "Datagrams on a sink's socket that were not valid Scream",
                &sink_invalid,
            ),
            (
                "sink_messages",
                "RTP datagrams sent to a sink's speakers, over all of them",
                &sink_messages,
            ),
            (
                "sink_send_errors",
                "RTP datagrams to a sink's speakers that the kernel refused",
                &sink_errors,
            ),
            (
                "sink_sendmmsg_calls",
                "sendmmsg calls a sink's relay made (speakers sharing a socket share a call)",
                &sink_syscalls,
            ),
            (
                "sink_partial_frame_bytes_dropped",
                "Bytes of 5- or 7-channel frames cut off by a format change or pause",
                &sink_partial,
            ),
        ] {
            registry.register(name, help, family.clone());
        }
        registry.register(
            "sink_speakers",
            "Speakers subscribed to a sink now",
            sink_speakers.clone(),
        );
        registry.register(
            "mux_datagrams",
            "Datagrams on the shared ICE sockets (server.ice_port), by what became of them",
            mux.clone(),
        );
        registry.register(
            "unanswered_checks_held",
            "Connectivity checks toward addresses that never answered, held back by the router-wide budget (limits.sessions.unanswered_check_rate)",
            checks_held.clone(),
        );
        Metrics {
            registry,
            attempts,
            successes,
            failures,
            connect,
            stun_used,
            assignments,
            stage,
            treatment,
            state,
            rollbacks,
            dropped,
            written,
            queued,
            checks_held,
            sink_datagrams,
            sink_invalid,
            sink_messages,
            sink_errors,
            sink_syscalls,
            sink_partial,
            sink_speakers,
            mux,
        }
    }

    /// Set the sink and shared-socket values of the next [`Metrics::encode`].
    pub fn set_media(&self, sinks: &[SinkSample], mux: Option<scream_ice_tokio::MuxStats>) {
        for k in sinks {
            let l = SinkLabel {
                sink: k.name.clone(),
            };
            raise_to(&self.sink_datagrams.get_or_create(&l), k.datagrams);
            raise_to(&self.sink_invalid.get_or_create(&l), k.invalid);
            raise_to(&self.sink_messages.get_or_create(&l), k.messages);
            raise_to(&self.sink_errors.get_or_create(&l), k.send_errors);
            raise_to(&self.sink_syscalls.get_or_create(&l), k.syscalls);
            raise_to(
                &self.sink_partial.get_or_create(&l),
                k.partial_bytes_dropped,
            );
            self.sink_speakers
                .get_or_create(&l)
                .set(i64::try_from(k.speakers).unwrap_or(i64::MAX));
        }
        if let Some(m) = mux {
            for (result, v) in [
                ("routed", m.routed),
                ("unrouted", m.unrouted),
                ("dropped", m.dropped),
            ] {
                let l = ResultLabel {
                    result: result.to_string(),
                };
                raise_to(&self.mux.get_or_create(&l), v);
            }
        }
    }

    /// The counter of checks the router-wide budget held back, for
    /// [`crate::admission::Admission::new`] to count into.
    pub fn checks_held(&self) -> Counter {
        self.checks_held.clone()
    }

    /// One outcome accepted (counted whether or not the store keeps it).
    pub fn record_outcome(&self, o: &OutcomeRow) {
        let l = ArmModeNet {
            arm: o.arm.clone(),
            mode: o.mode.clone(),
            network_type: o.network_type.clone(),
        };
        self.attempts.get_or_create(&l).inc();
        if o.success {
            self.successes.get_or_create(&l).inc();
            if let Some(ms) = o.connection_time_ms {
                self.connect
                    .get_or_create(&ArmOnly { arm: o.arm.clone() })
                    .observe(ms as f64 / 1000.0);
            }
        } else {
            self.failures
                .get_or_create(&ArmReason {
                    arm: o.arm.clone(),
                    reason: o
                        .failure_reason
                        .clone()
                        .unwrap_or_else(|| "unknown".to_string()),
                })
                .inc();
        }
        if o.stun_used {
            self.stun_used
                .get_or_create(&ArmNet {
                    arm: o.arm.clone(),
                    network_type: o.network_type.clone(),
                })
                .inc();
        }
    }

    /// One ICE configuration handed out.
    pub fn record_assignment(&self, arm: &str) {
        self.assignments
            .get_or_create(&ArmOnly {
                arm: arm.to_string(),
            })
            .inc();
    }

    /// One rollback performed by this process.
    pub fn record_rollback(&self) {
        self.rollbacks.inc();
    }

    /// `n` outcomes dropped (queue full).
    pub fn record_dropped(&self, n: u64) {
        self.dropped.inc_by(n);
    }

    /// `n` outcomes written.
    pub fn record_written(&self, n: u64) {
        self.written.inc_by(n);
    }

    /// Outcomes dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }

    /// Outcomes written so far.
    pub fn written(&self) -> u64 {
        self.written.get()
    }

    /// The queue's length now.
    pub fn set_queued(&self, n: usize) {
        self.queued.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The text exposition, with the rollout gauges set from `status`
    /// (`None`: no rollout configured; stage 100).
    pub fn encode(&self, status: Option<&RolloutStatus>) -> String {
        let (stage, treatment, state) = match status {
            Some(s) => (s.stage, s.treatment_percent(), s.state_name()),
            None => (100, 100, "active"),
        };
        self.stage.set(i64::from(stage));
        self.treatment.set(i64::from(treatment));
        for name in ["active", "paused", "rolled_back"] {
            self.state
                .get_or_create(&StateLabel {
                    state: name.to_string(),
                })
                .set(i64::from(name == state));
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The content type of [`Metrics::encode`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The content type of [`to_prometheus_text`].
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The OpenMetrics exposition as the classic Prometheus text format
/// (0.0.4), for scrapers and tools that do not ask for OpenMetrics
/// (`promtool check metrics` among them): a counter family `x` is named
/// `x_total` in its `# HELP`/`# TYPE` lines (the name its samples carry),
/// and the `# EOF` marker is dropped. Everything else is the same in both
/// formats.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let mut counters = Vec::new();
    for l in openmetrics.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ")
            && let Some(name) = rest.strip_suffix(" counter")
        {
            counters.push(name.to_string());
        }
    }
    let mut out = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for l in openmetrics.lines() {
        if l == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = l.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .iter()
                .any(|c| c == name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        match renamed {
            Some(r) => out.push_str(&r),
            None => out.push_str(l),
        }
        out.push('\n');
    }
    out
}
