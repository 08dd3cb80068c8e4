//! The daemon's configuration: the YAML file, its embedded default, the
//! `SCREAMROUTER_*` environment overrides, and where each value came from.
//!
//! This module sits at the very start of `scream-ice serve`, `config check`
//! and `config show`: the file (or [`DEFAULT_CONFIG_YAML`]) is deserialized
//! with `serde-saphyr` into a located tree ([`Spanned`] on every value and
//! every list entry), folded over the built-in defaults into a [`Config`]
//! whose every value is a [`Sourced`] (value plus [`Origin`]), overridden by
//! the environment ([`Config::apply_env`]) and by command-line flags, and
//! finally checked against the core policy ([`Config::problems`], which
//! reports every `PolicyConfig::problems()` entry at the YAML node it
//! concerns). Every error is one [`LocatedError`] that prints as one line,
//! `FILE:LINE:COLUMN: reason`.
//!
//! # Schema
//!
//! ```yaml
//! webrtc:
//!   ice:
//!     mode: auto                     # auto | local-only | stun-required | full | legacy
//!     legacy_mode: false             # true selects legacy whatever `mode` says
//!     local_network_priority: true   # fast path for peers on the LAN
//!     host_candidate_timeout_ms: 1000   # 1..=60000
//!     stun_gather_cap_ms: 500           # 1..=60000
//!     stun_servers:                  # at most 32
//!       - url: "stun:stun.example.org:3478"
//!         enabled: true              # optional, default true
//!     turn_servers:                  # at most 32
//!       - url: "turn:turn.example.org?transport=udp"
//!         username: "speaker"
//!         credential: "secret"
//!         enabled: true
//!     network_detection:
//!       enabled: true
//!       local_subnets: ["192.168.1.0/24"]
//!     migration:                     # the seed's phase-1 switches
//!       enable_new_features: true    # false: legacy ICE whatever `mode` says
//!       log_migration_events: false  # true: one log line per ICE decision
//! server:
//!   http_listen: "127.0.0.1:8188"
//!   stun_listen: "0.0.0.0:3478"      # or "off"
//!   advertise_own_stun: true         # offer our responder to peers that need STUN
//!   trusted_proxies: []              # X-Forwarded-For is honoured only from these
//!   data_dir: "/home/me/.local/state/scream-ice"
//!   ice_port: 4012                   # one UDP port shared by all ICE sessions (0: one the system picks, the default; or per-session)
//! ```
//!
//! Every key is optional; unknown keys are errors.
//!
//! `webrtc.ice.migration` is the seed's phase-1 section:
//!
//! - `enable_new_features` (default `true`) is the seed's `USE_SMART_ICE`
//!   flag: with `false`, the mode in force is `legacy` whatever `mode`
//!   says (smart ICE needs this on *and* `legacy_mode` off, as the seed's
//!   `isSmartICEEnabled()`).
//! - `log_migration_events` (default `false`): the daemon logs one
//!   `migration event` line per ICE configuration it hands out (the
//!   seed's `logMigrationMetrics('ice_config_used', {mode, servers})`),
//!   and one per config reload.
//!
//! Legacy ICE (`legacy_mode: true`, `mode: legacy` or
//! `enable_new_features: false`) is deprecated:
//! [`Config::deprecation_warning`] says so, naming `scream-ice migrate`.
//!
//! `webrtc.ice.rollout` (the staged rollout,
//! [`crate::rollout::RolloutConfig`]) and `store` (the outcome store,
//! [`crate::store::StoreConfig`]) are described in their modules.
//!
//! # Environment
//!
//! Read only when set (an unset variable leaves the file's value alone), with
//! the seed's exact string rules (those of
//! [`FeatureFlags::from_values`](scream_ice_core::rollout::FeatureFlags::from_values)):
//!
//! - `SCREAMROUTER_ICE_MODE`: a mode name ([`IceMode::parse`]); anything
//!   else is an error.
//! - `SCREAMROUTER_ENABLE_LOCAL_PRIORITY`: `local_network_priority` is on
//!   exactly when the value is `"true"`.
//! - `SCREAMROUTER_LEGACY_ICE_MODE`: `legacy_mode` stays on unless the value
//!   is exactly `"false"`.
//! - `SCREAMROUTER_USE_SMART_ICE`: `migration.enable_new_features` is on
//!   exactly when the value is `"true"` (the seed's rollback script sets it
//!   to `"false"`).
//!
//! A value other than `true`/`false` for the two flags is applied by that
//! rule and reported as a warning.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use scream_ice_core::net::Cidr;
use scream_ice_core::policy::{
    ConfigError, IceMode, NetworkDetection, PolicyConfig, ServerList, StunServer, TurnServer,
};
use scream_ice_core::rollout::FeatureFlags;
use scream_ice_core::time::Duration;
use serde::Deserialize;
use serde_saphyr::{MessageFormatter, Spanned};

/// The embedded default configuration: mode auto, no external STUN or TURN
/// server, our own STUN responder on UDP 3478 (all interfaces), HTTP on
/// loopback port 8188. `data_dir` is not in it: its default is computed
/// ([`default_data_dir`]).
pub const DEFAULT_CONFIG_YAML: &str = include_str!("default.yaml");

/// `SCREAMROUTER_ICE_MODE`.
pub const ENV_ICE_MODE: &str = "SCREAMROUTER_ICE_MODE";
/// `SCREAMROUTER_ENABLE_LOCAL_PRIORITY`.
pub const ENV_ENABLE_LOCAL_PRIORITY: &str = "SCREAMROUTER_ENABLE_LOCAL_PRIORITY";
/// `SCREAMROUTER_LEGACY_ICE_MODE`.
pub const ENV_LEGACY_ICE_MODE: &str = "SCREAMROUTER_LEGACY_ICE_MODE";

/// `SCREAMROUTER_USE_SMART_ICE` (`migration.enable_new_features`).
pub const ENV_USE_SMART_ICE: &str = "SCREAMROUTER_USE_SMART_ICE";

/// The name under which the embedded default appears in messages.
pub const DEFAULT_SOURCE_NAME: &str = "<embedded default>";

/// Bounds of `host_candidate_timeout_ms` and `stun_gather_cap_ms`.
pub const MILLIS_RANGE: std::ops::RangeInclusive<u64> = 1..=60_000;

/// Where an effective value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// Built in (not written anywhere).
    Default,
    /// A YAML node: file name (as given), 1-based line and column.
    File {
        /// The file name as given on the command line (or
        /// [`DEFAULT_SOURCE_NAME`]).
        path: String,
        /// 1-based line.
        line: u64,
        /// 1-based column (in characters).
        column: u64,
    },
    /// An environment variable.
    Env {
        /// The variable's name.
        var: &'static str,
    },
    /// A command-line flag.
    Flag {
        /// The flag, e.g. `--http-listen`.
        flag: &'static str,
    },
}

impl fmt::Display for Origin {
    /// `default`, `FILE:LINE:COLUMN`, `env VAR` or `flag --x`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File { path, line, column } => write!(f, "{path}:{line}:{column}"),
            Origin::Env { var } => write!(f, "env {var}"),
            Origin::Flag { flag } => write!(f, "flag {flag}"),
        }
    }
}

/// A value and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sourced<T> {
    /// The value.
    pub value: T,
    /// Where it came from.
    pub origin: Origin,
}

impl<T> Sourced<T> {
    /// A built-in value.
    pub fn default_value(value: T) -> Self {
        Sourced {
            value,
            origin: Origin::Default,
        }
    }
}

/// One configuration error, printed as one line: `ORIGIN: reason`, where
/// ORIGIN is `FILE:LINE:COLUMN` for anything read from a file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct LocatedError {
    /// Where the offending value is.
    pub origin: Origin,
    /// Why it is wrong (one line).
    pub message: String,
}

impl LocatedError {
    pub(crate) fn new(origin: Origin, message: impl Into<String>) -> Self {
        LocatedError {
            origin,
            message: one_line(&message.into()),
        }
    }
}

/// Replace control characters (newlines included) by spaces, so that every
/// error stays one line.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// One `stun_servers[]` entry, each field with its origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StunEntry {
    /// Where the entry starts.
    pub at: Origin,
    /// `url`.
    pub url: Sourced<String>,
    /// `enabled` (default true).
    pub enabled: Sourced<bool>,
}

/// One `turn_servers[]` entry, each field with its origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TurnEntry {
    /// Where the entry starts.
    pub at: Origin,
    /// `url`.
    pub url: Sourced<String>,
    /// `username`.
    pub username: Option<Sourced<String>>,
    /// `credential`.
    pub credential: Option<Sourced<String>>,
    /// `enabled` (default true).
    pub enabled: Sourced<bool>,
}

/// `webrtc.ice`, effective.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IceConfig {
    /// `mode` as written (before `legacy_mode` is applied; see
    /// [`IceConfig::mode_in_force`]).
    pub mode: Sourced<IceMode>,
    /// `legacy_mode`.
    pub legacy_mode: Sourced<bool>,
    /// `local_network_priority`.
    pub local_network_priority: Sourced<bool>,
    /// `host_candidate_timeout_ms`.
    pub host_candidate_timeout_ms: Sourced<u64>,
    /// `stun_gather_cap_ms`.
    pub stun_gather_cap_ms: Sourced<u64>,
    /// `stun_servers`.
    pub stun_servers: Sourced<Vec<StunEntry>>,
    /// `turn_servers`.
    pub turn_servers: Sourced<Vec<TurnEntry>>,
    /// `network_detection.enabled`.
    pub detection_enabled: Sourced<bool>,
    /// `network_detection.local_subnets`.
    pub local_subnets: Sourced<Vec<Cidr>>,
    /// `rollout`: the staged rollout, `None` when the section is absent.
    pub rollout: Option<crate::rollout::RolloutConfig>,
    /// `migration.enable_new_features` (the seed's `USE_SMART_ICE`).
    pub enable_new_features: Sourced<bool>,
    /// `migration.log_migration_events`.
    pub log_migration_events: Sourced<bool>,
}

impl IceConfig {
    /// The mode in force: `mode`, unless `legacy_mode` is on or
    /// `migration.enable_new_features` is off; then `legacy`.
    pub fn mode_in_force(&self) -> IceMode {
        // The one deliberate use of the deprecated legacy switch: the
        // daemon still honours it, and warns (Config::deprecation_warning).
        #[allow(deprecated)]
        self.mode
            .value
            .resolve(self.legacy_mode.value || !self.enable_new_features.value)
    }

    /// Where legacy ICE was selected, when it is in force: the
    /// `legacy_mode` value, else `enable_new_features`, else `mode`.
    pub fn legacy_origin(&self) -> Option<(&'static str, &Origin)> {
        if self.mode_in_force() != IceMode::Legacy {
            None
        } else if self.legacy_mode.value {
            Some(("webrtc.ice.legacy_mode: true", &self.legacy_mode.origin))
        } else if !self.enable_new_features.value {
            Some((
                "webrtc.ice.migration.enable_new_features: false",
                &self.enable_new_features.origin,
            ))
        } else {
            Some(("webrtc.ice.mode: legacy", &self.mode.origin))
        }
    }
}

/// `server`, effective.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// `http_listen`.
    pub http_listen: Sourced<SocketAddr>,
    /// `stun_listen`; `None` when `off`.
    pub stun_listen: Sourced<Option<SocketAddr>>,
    /// `advertise_own_stun`: whether our STUN responder is offered to peers
    /// that the policy says need STUN.
    pub advertise_own_stun: Sourced<bool>,
    /// `trusted_proxies`: peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Sourced<Vec<Cidr>>,
    /// `data_dir`.
    pub data_dir: Sourced<PathBuf>,
    /// `ice_port`: the one UDP port every ICE session shares on each local
    /// address (`0`, the default: one the system picks per address);
    /// `None` (`per-session`): each session binds ports of its own.
    pub ice_port: Sourced<Option<u16>>,
}

/// The effective configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `webrtc.ice`.
    pub ice: IceConfig,
    /// `server`.
    pub server: ServerConfig,
    /// `store`.
    pub store: crate::store::StoreConfig,
    /// `limits` (rate limits and caps; see [`crate::limits`]).
    pub limits: crate::limits::Limits,
    /// `sinks`: where Scream audio is ingested (see [`crate::sinks`]).
    pub sinks: Sourced<Vec<crate::sinks::SinkConfig>>,
    /// Where the `webrtc.ice.rollout`, `store` and `limits` sections were
    /// written (their keys are not located one by one).
    pub sections: SectionOrigins,
}

/// Where a section without per-key origins came from: the section's own
/// node, or [`Origin::Default`] when it is absent (keys a section does not
/// write have their defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionOrigins {
    /// `webrtc.ice.rollout`.
    pub rollout: Origin,
    /// `store`.
    pub store: Origin,
    /// `limits`.
    pub limits: Origin,
}

impl Default for SectionOrigins {
    fn default() -> Self {
        SectionOrigins {
            rollout: Origin::Default,
            store: Origin::Default,
            limits: Origin::Default,
        }
    }
}

/// The default data directory: `$XDG_STATE_HOME/scream-ice` (or the
/// platform's equivalent), falling back to the local data dir, then to
/// `./scream-ice-data`.
pub fn default_data_dir() -> PathBuf {
    dirs::state_dir()
        .or_else(dirs::data_local_dir)
        .map(|d| d.join("scream-ice"))
        .unwrap_or_else(|| PathBuf::from("scream-ice-data"))
}

// ---------------------------------------------------------------------------
// The located tree the YAML is deserialized into
// ---------------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileRoot {
    #[serde(default)]
    webrtc: Option<Spanned<FileWebrtc>>,
    #[serde(default)]
    server: Option<Spanned<FileServer>>,
    #[serde(default)]
    store: Option<Spanned<crate::store::FileStore>>,
    #[serde(default)]
    limits: Option<Spanned<crate::limits::Limits>>,
    #[serde(default)]
    sinks: Option<Spanned<Vec<Spanned<FileSink>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSink {
    name: Spanned<String>,
    listen: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWebrtc {
    #[serde(default)]
    ice: Option<Spanned<FileIce>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIce {
    #[serde(default)]
    mode: Option<Spanned<String>>,
    #[serde(default)]
    legacy_mode: Option<Spanned<bool>>,
    #[serde(default)]
    local_network_priority: Option<Spanned<bool>>,
    #[serde(default)]
    host_candidate_timeout_ms: Option<Spanned<u64>>,
    #[serde(default)]
    stun_gather_cap_ms: Option<Spanned<u64>>,
    #[serde(default)]
    stun_servers: Option<Spanned<Vec<Spanned<FileStun>>>>,
    #[serde(default)]
    turn_servers: Option<Spanned<Vec<Spanned<FileTurn>>>>,
    #[serde(default)]
    network_detection: Option<Spanned<FileDetection>>,
    #[serde(default)]
    rollout: Option<Spanned<crate::rollout::FileRollout>>,
    #[serde(default)]
    migration: Option<Spanned<FileMigration>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMigration {
    #[serde(default)]
    enable_new_features: Option<Spanned<bool>>,
    #[serde(default)]
    log_migration_events: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStun {
    url: Spanned<String>,
    #[serde(default)]
    enabled: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTurn {
    url: Spanned<String>,
    #[serde(default)]
    username: Option<Spanned<String>>,
    #[serde(default)]
    credential: Option<Spanned<String>>,
    #[serde(default)]
    enabled: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDetection {
    #[serde(default)]
    enabled: Option<Spanned<bool>>,
    #[serde(default)]
    local_subnets: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServer {
    #[serde(default)]
    http_listen: Option<Spanned<String>>,
    #[serde(default)]
    stun_listen: Option<Spanned<String>>,
    #[serde(default)]
    advertise_own_stun: Option<Spanned<bool>>,
    #[serde(default)]
    trusted_proxies: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    data_dir: Option<Spanned<String>>,
    #[serde(default)]
    ice_port: Option<Spanned<FileIcePort>>,
}

/// `ice_port` as written: a port number or the word `per-session`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FileIcePort {
    Port(i64),
    Word(String),
    /// Anything else (a list, a float, `true`): refused with the same message.
    Other(serde::de::IgnoredAny),
}

// ---------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------

impl Config {
    /// The built-in values, before any YAML: what every key not written in
    /// a file falls back to.
    pub fn builtin() -> Config {
        Config {
            ice: IceConfig {
                mode: Sourced::default_value(IceMode::Auto),
                legacy_mode: Sourced::default_value(false),
                local_network_priority: Sourced::default_value(true),
                host_candidate_timeout_ms: Sourced::default_value(
                    scream_ice_core::policy::DEFAULT_HOST_CANDIDATE_TIMEOUT.total_millis(),
                ),
                stun_gather_cap_ms: Sourced::default_value(
                    scream_ice_core::policy::DEFAULT_STUN_GATHER_CAP.total_millis(),
                ),
                stun_servers: Sourced::default_value(Vec::new()),
                turn_servers: Sourced::default_value(Vec::new()),
                detection_enabled: Sourced::default_value(true),
                local_subnets: Sourced::default_value(Vec::new()),
                rollout: None,
                enable_new_features: Sourced::default_value(true),
                log_migration_events: Sourced::default_value(false),
            },
            server: ServerConfig {
                http_listen: Sourced::default_value(SocketAddr::from(([127, 0, 0, 1], 8188))),
                stun_listen: Sourced::default_value(Some(SocketAddr::from(([0, 0, 0, 0], 3478)))),
                advertise_own_stun: Sourced::default_value(true),
                trusted_proxies: Sourced::default_value(Vec::new()),
                data_dir: Sourced::default_value(default_data_dir()),
                ice_port: Sourced::default_value(Some(0)),
            },
            store: crate::store::StoreConfig::default(),
            limits: crate::limits::Limits::default(),
            sinks: Sourced::default_value(Vec::new()),
            sections: SectionOrigins::default(),
        }
    }

    /// The embedded default ([`DEFAULT_CONFIG_YAML`]) over the built-in
    /// values. Its values count as [`Origin::Default`].
    pub fn embedded_default() -> Config {
        let mut c = Config::from_yaml(DEFAULT_SOURCE_NAME, DEFAULT_CONFIG_YAML)
            .expect("the embedded default config is valid (tested)");
        c.forget_origins();
        c
    }

    /// Read and parse a YAML file (without environment overrides). The
    /// file name appears in every error as given.
    pub fn from_file(path: &Path) -> Result<Config, Vec<LocatedError>> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![LocatedError {
                origin: Origin::File {
                    path: name.clone(),
                    line: 1,
                    column: 1,
                },
                message: format!("cannot read file: {e}"),
            }]
        })?;
        Config::from_yaml(&name, &text)
    }

    /// Parse YAML text named `name` over the built-in values, and check
    /// it: every YAML error, every value error and every policy problem
    /// ([`Config::problems`]), each located. An empty document is the
    /// built-in configuration.
    pub fn from_yaml(name: &str, text: &str) -> Result<Config, Vec<LocatedError>> {
        let root: Option<FileRoot> = serde_saphyr::from_str(text).map_err(|e| {
            let inner = e.without_snippet();
            let (line, column) = match inner.location() {
                Some(l) if l.line() > 0 => (l.line(), l.column().max(1)),
                _ => (1, 1),
            };
            let message = serde_saphyr::UserMessageFormatter.format_message(inner);
            vec![LocatedError::new(
                Origin::File {
                    path: name.to_string(),
                    line,
                    column,
                },
                plain_yaml_message(&message),
            )]
        })?;
        let mut config = Config::builtin();
        let mut errors = Vec::new();
        config.fold(name, root.unwrap_or_default(), &mut errors);
        errors.extend(config.problems());
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(errors)
        }
    }

    /// Mark every value as [`Origin::Default`] (used for the embedded
    /// default, whose values are defaults to the operator).
    fn forget_origins(&mut self) {
        let d = Origin::Default;
        let i = &mut self.ice;
        i.mode.origin = d.clone();
        i.legacy_mode.origin = d.clone();
        i.local_network_priority.origin = d.clone();
        i.host_candidate_timeout_ms.origin = d.clone();
        i.stun_gather_cap_ms.origin = d.clone();
        i.stun_servers.origin = d.clone();
        i.turn_servers.origin = d.clone();
        i.detection_enabled.origin = d.clone();
        i.local_subnets.origin = d.clone();
        i.enable_new_features.origin = d.clone();
        i.log_migration_events.origin = d.clone();
        let s = &mut self.server;
        s.http_listen.origin = d.clone();
        s.stun_listen.origin = d.clone();
        s.advertise_own_stun.origin = d.clone();
        s.trusted_proxies.origin = d.clone();
        s.data_dir.origin = d.clone();
        s.ice_port.origin = d;
    }

    fn fold(&mut self, name: &str, root: FileRoot, errors: &mut Vec<LocatedError>) {
        let at = |s: &serde_saphyr::Location| Origin::File {
            path: name.to_string(),
            line: s.line(),
            column: s.column(),
        };
        macro_rules! set {
            ($dst:expr, $src:expr) => {
                if let Some(v) = $src {
                    $dst = Sourced {
                        origin: at(&v.referenced),
                        value: v.value,
                    };
                }
            };
        }
        if let Some(ice) = root.webrtc.and_then(|w| w.value.ice) {
            let ice = ice.value;
            let dst = &mut self.ice;
            if let Some(m) = ice.mode {
                match IceMode::parse(&m.value) {
                    Ok(mode) => {
                        dst.mode = Sourced {
                            value: mode,
                            origin: at(&m.referenced),
                        }
                    }
                    Err(e) => errors.push(LocatedError::new(
                        at(&m.referenced),
                        format!("mode: {e}: {:?}", m.value),
                    )),
                }
            }
            set!(dst.legacy_mode, ice.legacy_mode);
            set!(dst.local_network_priority, ice.local_network_priority);
            for (key, src, d) in [
                (
                    "host_candidate_timeout_ms",
                    ice.host_candidate_timeout_ms,
                    &mut dst.host_candidate_timeout_ms,
                ),
                (
                    "stun_gather_cap_ms",
                    ice.stun_gather_cap_ms,
                    &mut dst.stun_gather_cap_ms,
                ),
            ] {
                if let Some(v) = src {
                    if MILLIS_RANGE.contains(&v.value) {
                        *d = Sourced {
                            value: v.value,
                            origin: at(&v.referenced),
                        };
                    } else {
                        errors.push(LocatedError::new(
                            at(&v.referenced),
                            format!(
                                "{key}: {} is out of range ({}..={} ms)",
                                v.value,
                                MILLIS_RANGE.start(),
                                MILLIS_RANGE.end()
                            ),
                        ));
                    }
                }
            }
            if let Some(list) = ice.stun_servers {
                dst.stun_servers = Sourced {
                    origin: at(&list.referenced),
                    value: list
                        .value
                        .into_iter()
                        .map(|e| StunEntry {
                            at: at(&e.referenced),
                            url: Sourced {
                                origin: at(&e.value.url.referenced),
                                value: e.value.url.value,
                            },
                            enabled: e
                                .value
                                .enabled
                                .map(|v| Sourced {
                                    origin: at(&v.referenced),
                                    value: v.value,
                                })
                                .unwrap_or_else(|| Sourced::default_value(true)),
                        })
                        .collect(),
                };
            }
            if let Some(list) = ice.turn_servers {
                dst.turn_servers = Sourced {
                    origin: at(&list.referenced),
                    value: list
                        .value
                        .into_iter()
                        .map(|e| {
                            let s = |v: Spanned<String>| Sourced {
                                origin: at(&v.referenced),
                                value: v.value,
                            };
                            TurnEntry {
                                at: at(&e.referenced),
                                url: s(e.value.url),
                                username: e.value.username.map(s),
                                credential: e.value.credential.map(s),
                                enabled: e
                                    .value
                                    .enabled
                                    .map(|v| Sourced {
                                        origin: at(&v.referenced),
                                        value: v.value,
                                    })
                                    .unwrap_or_else(|| Sourced::default_value(true)),
                            }
                        })
                        .collect(),
                };
            }
            if let Some(nd) = ice.network_detection {
                let nd = nd.value;
                set!(dst.detection_enabled, nd.enabled);
                if let Some(list) = nd.local_subnets {
                    dst.local_subnets = Sourced {
                        origin: at(&list.referenced),
                        value: parse_cidrs("local_subnets", list.value, &at, errors),
                    };
                }
            }
            if let Some(m) = ice.migration {
                let m = m.value;
                set!(dst.enable_new_features, m.enable_new_features);
                set!(dst.log_migration_events, m.log_migration_events);
            }
            if let Some(r) = ice.rollout {
                self.sections.rollout = at(&r.referenced);
                dst.rollout = Some(crate::rollout::fold_rollout(r.value, &at, errors));
            }
        }
        if let Some(store) = root.store {
            self.sections.store = at(&store.referenced);
            self.store = crate::store::fold_store(store.value, &at, errors);
        }
        if let Some(limits) = root.limits {
            self.sections.limits = at(&limits.referenced);
            self.limits = limits.value;
        }
        if let Some(list) = root.sinks {
            self.sinks.origin = at(&list.referenced);
            self.fold_sinks(list.value, &at, errors);
        }
        if let Some(server) = root.server {
            let server = server.value;
            let dst = &mut self.server;
            if let Some(v) = server.http_listen {
                match v.value.parse::<SocketAddr>() {
                    Ok(a) => {
                        dst.http_listen = Sourced {
                            value: a,
                            origin: at(&v.referenced),
                        }
                    }
                    Err(_) => errors.push(LocatedError::new(
                        at(&v.referenced),
                        format!("http_listen: not an IP:PORT socket address: {:?}", v.value),
                    )),
                }
            }
            if let Some(v) = server.stun_listen {
                match parse_stun_listen(&v.value) {
                    Ok(a) => {
                        dst.stun_listen = Sourced {
                            value: a,
                            origin: at(&v.referenced),
                        }
                    }
                    Err(m) => errors.push(LocatedError::new(
                        at(&v.referenced),
                        format!("stun_listen: {m}"),
                    )),
                }
            }
            set!(dst.advertise_own_stun, server.advertise_own_stun);
            if let Some(list) = server.trusted_proxies {
                dst.trusted_proxies = Sourced {
                    origin: at(&list.referenced),
                    value: parse_cidrs("trusted_proxies", list.value, &at, errors),
                };
            }
            if let Some(v) = server.ice_port {
                let value = match &v.value {
                    FileIcePort::Port(p) => u16::try_from(*p).map(Some).map_err(|_| p.to_string()),
                    FileIcePort::Word(w) if w == "per-session" => Ok(None),
                    FileIcePort::Word(w) => Err(format!("{w:?}")),
                    FileIcePort::Other(_) => Err("this".into()),
                };
                match value {
                    Ok(value) => {
                        dst.ice_port = Sourced {
                            value,
                            origin: at(&v.referenced),
                        }
                    }
                    Err(shown) => errors.push(LocatedError::new(
                        at(&v.referenced),
                        format!(
                            "ice_port: {shown} is neither a port (0..=65535; 0: a port the system picks on each address) nor per-session"
                        ),
                    )),
                }
            }
            if let Some(v) = server.data_dir {
                if v.value.is_empty() {
                    errors.push(LocatedError::new(at(&v.referenced), "data_dir: empty path"));
                } else {
                    dst.data_dir = Sourced {
                        value: PathBuf::from(v.value),
                        origin: at(&v.referenced),
                    };
                }
            }
        }
    }

    fn fold_sinks(
        &mut self,
        list: Vec<Spanned<FileSink>>,
        at: &dyn Fn(&serde_saphyr::Location) -> Origin,
        errors: &mut Vec<LocatedError>,
    ) {
        for e in list {
            let (name, listen) = (e.value.name, e.value.listen);
            if name.value.is_empty() {
                errors.push(LocatedError::new(at(&name.referenced), "sinks: empty name"));
                continue;
            }
            if self.sinks.value.iter().any(|s| s.name == name.value) {
                errors.push(LocatedError::new(
                    at(&name.referenced),
                    format!("sinks: duplicate name {:?}", name.value),
                ));
                continue;
            }
            match listen.value.parse() {
                Ok(l) => self.sinks.value.push(crate::sinks::SinkConfig {
                    name: name.value,
                    listen: l,
                }),
                Err(m) => errors.push(LocatedError::new(
                    at(&listen.referenced),
                    format!("sinks: listen: {m}"),
                )),
            }
        }
    }

    /// Apply the `SCREAMROUTER_*` overrides read through `env` (a lookup
    /// function, so tests need not touch the process environment). Returns
    /// the warnings (values applied by the seed's rule but neither `true`
    /// nor `false`); an invalid `SCREAMROUTER_ICE_MODE` is an error.
    pub fn apply_env(
        &mut self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<String>, LocatedError> {
        let mut warnings = Vec::new();
        if let Some(v) = env(ENV_ICE_MODE) {
            let mode = IceMode::parse(&v).map_err(|e| {
                LocatedError::new(Origin::Env { var: ENV_ICE_MODE }, format!("{e}: {v:?}"))
            })?;
            self.ice.mode = Sourced {
                value: mode,
                origin: Origin::Env { var: ENV_ICE_MODE },
            };
        }
        let local = env(ENV_ENABLE_LOCAL_PRIORITY);
        let legacy = env(ENV_LEGACY_ICE_MODE);
        let smart = env(ENV_USE_SMART_ICE);
        let flags =
            FeatureFlags::from_values(smart.as_deref(), legacy.as_deref(), local.as_deref());
        for (var, value) in [
            (ENV_ENABLE_LOCAL_PRIORITY, &local),
            (ENV_LEGACY_ICE_MODE, &legacy),
            (ENV_USE_SMART_ICE, &smart),
        ] {
            if let Some(v) = value
                && v != "true"
                && v != "false"
            {
                let meaning = match var {
                    ENV_LEGACY_ICE_MODE => "legacy mode on (only \"false\" turns it off)",
                    ENV_USE_SMART_ICE => "new features off (only \"true\" turns them on)",
                    _ => "local priority off (only \"true\" turns it on)",
                };
                warnings.push(format!(
                    "{var}={v:?} is neither \"true\" nor \"false\"; taken as {meaning}"
                ));
            }
        }
        if local.is_some() {
            self.ice.local_network_priority = Sourced {
                value: flags.should_prioritize_local(),
                origin: Origin::Env {
                    var: ENV_ENABLE_LOCAL_PRIORITY,
                },
            };
        }
        if legacy.is_some() {
            self.ice.legacy_mode = Sourced {
                value: flags.use_legacy_ice,
                origin: Origin::Env {
                    var: ENV_LEGACY_ICE_MODE,
                },
            };
        }
        if smart.is_some() {
            self.ice.enable_new_features = Sourced {
                value: flags.use_smart_ice,
                origin: Origin::Env {
                    var: ENV_USE_SMART_ICE,
                },
            };
        }
        Ok(warnings)
    }

    /// The deprecation notice for legacy ICE, when it is in force: one
    /// line naming what selected it (and where) and `scream-ice migrate`.
    /// `serve` logs it once at start (and after a reload into legacy),
    /// `config check` prints it.
    pub fn deprecation_warning(&self) -> Option<String> {
        let (what, origin) = self.ice.legacy_origin()?;
        let fix = match origin {
            Origin::File { path, .. } => format!("run `scream-ice migrate {path}`"),
            Origin::Env { var } => format!("unset {var} and run `scream-ice migrate FILE`"),
            _ => "run `scream-ice migrate FILE`".to_string(),
        };
        Some(format!(
            "legacy ICE is deprecated and will be removed ({what} at {origin}); {fix} to move to mode auto (see docs/migration.md)"
        ))
    }

    /// The policy's view of this config, with our own STUN responder's URL
    /// appended to `stun_servers` when `own_stun` is given (so the policy
    /// picks it exactly when it would pick a STUN server for the peer).
    pub fn policy_parts<'a>(&'a self, own_stun: Option<&'a str>) -> PolicyParts<'a> {
        let mut stun: Vec<StunServer<'a>> = self
            .ice
            .stun_servers
            .value
            .iter()
            .map(|e| StunServer {
                url: &e.url.value,
                enabled: e.enabled.value,
            })
            .collect();
        if let Some(url) = own_stun {
            stun.push(StunServer { url, enabled: true });
        }
        let turn = self
            .ice
            .turn_servers
            .value
            .iter()
            .map(|e| TurnServer {
                url: &e.url.value,
                username: e.username.as_ref().map(|s| s.value.as_str()),
                credential: e.credential.as_ref().map(|s| s.value.as_str()),
                enabled: e.enabled.value,
            })
            .collect();
        PolicyParts {
            ice: &self.ice,
            stun,
            turn,
        }
    }

    /// Every problem the core policy finds in this config
    /// (`PolicyConfig::problems()`), each located at the node it concerns:
    /// the entry's `url` for URL problems, its `username`/`credential` (or
    /// the entry itself when the key is missing) for credential problems,
    /// the list for "too many entries", and `mode` (or `legacy_mode`, or
    /// the environment variable that set it) for a mode's requirement.
    pub fn problems(&self) -> Vec<LocatedError> {
        let parts = self.policy_parts(None);
        let policy = parts.config();
        policy
            .problems()
            .map(|p| LocatedError::new(self.locate(&p), p.to_string()))
            .collect()
    }

    fn locate(&self, p: &ConfigError) -> Origin {
        let ice = &self.ice;
        match (*p, p.server()) {
            (ConfigError::TurnWithoutUsername { index }, _) => ice
                .turn_servers
                .value
                .get(index)
                .map(|e| e.username.as_ref().map_or(&e.at, |u| &u.origin).clone()),
            (ConfigError::TurnWithoutCredential { index }, _) => ice
                .turn_servers
                .value
                .get(index)
                .map(|e| e.credential.as_ref().map_or(&e.at, |u| &u.origin).clone()),
            (_, Some((ServerList::Stun, i))) => {
                ice.stun_servers.value.get(i).map(|e| e.url.origin.clone())
            }
            (_, Some((ServerList::Turn, i))) => {
                ice.turn_servers.value.get(i).map(|e| e.url.origin.clone())
            }
            (ConfigError::TooManyServers { list }, _) => Some(match list {
                ServerList::Stun => ice.stun_servers.origin.clone(),
                _ => ice.turn_servers.origin.clone(),
            }),
            _ => Some(if ice.legacy_mode.value {
                ice.legacy_mode.origin.clone()
            } else {
                ice.mode.origin.clone()
            }),
        }
        .unwrap_or(Origin::Default)
    }
}

fn parse_cidrs(
    key: &str,
    list: Vec<Spanned<String>>,
    at: &dyn Fn(&serde_saphyr::Location) -> Origin,
    errors: &mut Vec<LocatedError>,
) -> Vec<Cidr> {
    let mut out = Vec::with_capacity(list.len());
    for (i, s) in list.into_iter().enumerate() {
        match Cidr::parse(&s.value) {
            Ok(c) => out.push(c),
            Err(e) => errors.push(LocatedError::new(
                at(&s.referenced),
                format!("{key}[{i}]: {e}: {:?}", s.value),
            )),
        }
    }
    out
}

/// The YAML reader's message for a value of the wrong type, in the words
/// of the config's own checks (`invalid u64` says which Rust type it
/// wanted, not what to write); any other message as it is.
pub fn plain_yaml_message(message: &str) -> String {
    match message {
        "invalid u8" | "invalid u16" | "invalid u32" | "invalid u64" | "invalid usize" => {
            "not a whole number of 0 or more".into()
        }
        "invalid i8" | "invalid i16" | "invalid i32" | "invalid i64" => "not a whole number".into(),
        "invalid f32" | "invalid f64" => "not a number".into(),
        "invalid boolean" => "not true or false".into(),
        "expected sequence start" => "not a list".into(),
        "expected string scalar" => "not a string".into(),
        m => m.into(),
    }
}

/// Parse a `stun_listen` value: `off` (no responder) or `IP:PORT`.
pub fn parse_stun_listen(s: &str) -> Result<Option<SocketAddr>, String> {
    if s == "off" {
        return Ok(None);
    }
    s.parse::<SocketAddr>()
        .map(Some)
        .map_err(|_| format!("neither \"off\" nor an IP:PORT socket address: {s:?}"))
}

/// The owned pieces a [`PolicyConfig`] borrows; from [`Config::policy_parts`].
#[derive(Debug)]
pub struct PolicyParts<'a> {
    ice: &'a IceConfig,
    stun: Vec<StunServer<'a>>,
    turn: Vec<TurnServer<'a>>,
}

impl PolicyParts<'_> {
    /// The core policy's config: mode in force, servers, timers, detection.
    pub fn config(&self) -> PolicyConfig<'_> {
        let mut c = PolicyConfig::new(self.ice.mode_in_force());
        c.stun_servers = &self.stun;
        c.turn_servers = &self.turn;
        c.local_network_priority = self.ice.local_network_priority.value;
        c.host_candidate_timeout = Duration::from_millis(self.ice.host_candidate_timeout_ms.value);
        c.stun_gather_cap = Duration::from_millis(self.ice.stun_gather_cap_ms.value);
        c.network_detection = NetworkDetection {
            enabled: self.ice.detection_enabled.value,
            local_subnets: &self.ice.local_subnets.value,
        };
        c
    }

    /// The STUN server list the policy sees (our own responder last, if
    /// given).
    pub fn stun(&self) -> &[StunServer<'_>] {
        &self.stun
    }

    /// The TURN server list the policy sees.
    pub fn turn(&self) -> &[TurnServer<'_>] {
        &self.turn
    }
}

// ---------------------------------------------------------------------------
// Showing
// ---------------------------------------------------------------------------

/// A YAML double-quoted scalar that reads back exactly
/// ([`crate::migrate::yaml_quote`]).
fn quoted(s: &str) -> String {
    crate::migrate::yaml_quote(s)
}

/// A section's header comment: where it was written; keys it does not
/// write have their defaults.
fn section_comment(origin: &Origin) -> String {
    match origin {
        Origin::Default => "default".to_string(),
        o => format!("{o} (keys not written there are defaults)"),
    }
}

fn secret(value: &str, show_secrets: bool) -> String {
    quoted(if show_secrets { value } else { "<redacted>" })
}

/// `webrtc.ice.rollout` as [`crate::rollout::fold_rollout`] reads it.
fn show_rollout(
    o: &mut String,
    r: &crate::rollout::RolloutConfig,
    origin: &Origin,
    show_secrets: bool,
) {
    use std::fmt::Write;
    let _ = writeln!(o, "    rollout:  # {}", section_comment(origin));
    let _ = writeln!(o, "      experiment: {}", quoted(&r.experiment));
    let _ = writeln!(o, "      stage: {}", r.stage);
    o.push_str("      stages:\n");
    for st in &r.stages {
        // Percent as the file writes it (5, 0.5): ppm / 10,000.
        let _ = writeln!(
            o,
            "        - {{percent: {}, max_failure_rate: {}}}",
            st.percent,
            f64::from(st.max_failure_rate_ppm) / 10_000.0
        );
    }
    let _ = writeln!(o, "      check_interval_s: {}", r.check_interval_s);
    let _ = writeln!(o, "      min_attempts: {}", r.min_attempts);
    if r.webhooks.is_empty() {
        o.push_str("      webhooks: []\n");
    } else {
        o.push_str("      webhooks:\n");
        for w in &r.webhooks {
            let _ = writeln!(o, "        - url: {}", quoted(&w.url));
            if let Some(k) = &w.secret {
                let _ = writeln!(o, "          secret: {}", secret(k, show_secrets));
            }
        }
    }
}

/// `store` as [`crate::store::fold_store`] reads it. The URL may hold a
/// password: shown only with `show_secrets`.
fn show_store(o: &mut String, c: &crate::store::StoreConfig, origin: &Origin, show_secrets: bool) {
    use std::fmt::Write;
    let _ = writeln!(o, "store:  # {}", section_comment(origin));
    if let Some(u) = &c.url {
        let shown = if show_secrets {
            u.clone()
        } else {
            redact_url_password(u)
        };
        let _ = writeln!(o, "  url: {}", quoted(&shown));
    }
    let _ = writeln!(o, "  queue_capacity: {}", c.queue_capacity);
    let _ = writeln!(o, "  batch: {}", c.batch);
    let _ = writeln!(o, "  rate_per_client: {}", c.rate_per_client);
    let _ = writeln!(o, "  burst_per_client: {}", c.burst_per_client);
}

/// `scheme://user:PASSWORD@rest` with the password replaced by
/// `<redacted>` (what is shown still parses as a store URL).
fn redact_url_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let Some(at) = rest.rfind('@') else {
        return url.to_string();
    };
    match rest[..at].find(':') {
        Some(colon) => format!(
            "{}{}:<redacted>{}",
            &url[..scheme_end],
            &rest[..colon],
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

/// `limits` as serde reads it into [`crate::limits::Limits`].
fn show_limits(o: &mut String, l: &crate::limits::Limits, origin: &Origin, show_secrets: bool) {
    use std::fmt::Write;
    let rate =
        |r: &crate::limits::Rate| format!("{{per_second: {}, burst: {}}}", r.per_second, r.burst);
    let list = |v: &[String]| {
        let q: Vec<String> = v.iter().map(|s| quoted(s)).collect();
        format!("[{}]", q.join(", "))
    };
    let _ = writeln!(o, "limits:  # {}", section_comment(origin));
    o.push_str("  stun:\n");
    let _ = writeln!(o, "    per_source: {}", rate(&l.stun.per_source));
    let _ = writeln!(o, "    global: {}", rate(&l.stun.global));
    let _ = writeln!(o, "    max_sources: {}", l.stun.max_sources);
    let h = &l.http;
    o.push_str("  http:\n");
    let _ = writeln!(o, "    header_timeout_ms: {}", h.header_timeout_ms);
    let _ = writeln!(o, "    body_timeout_ms: {}", h.body_timeout_ms);
    let _ = writeln!(o, "    max_connections: {}", h.max_connections);
    let _ = writeln!(
        o,
        "    max_connections_per_client: {}",
        h.max_connections_per_client
    );
    let _ = writeln!(o, "    allowed_hosts: {}", list(&h.allowed_hosts));
    let _ = writeln!(o, "    cors_origins: {}", list(&h.cors_origins));
    let s = &l.sessions;
    o.push_str("  sessions:\n");
    let _ = writeln!(o, "    max: {}", s.max);
    let _ = writeln!(o, "    per_client: {}", s.per_client);
    let _ = writeln!(o, "    post_rate: {}", rate(&s.post_rate));
    let _ = writeln!(o, "    media_timeout_ms: {}", s.media_timeout_ms);
    let _ = writeln!(o, "    consent_timeout_ms: {}", s.consent_timeout_ms);
    if let Some(t) = &s.speaker_token {
        let _ = writeln!(o, "    speaker_token: {}", secret(t, show_secrets));
    }
    let _ = writeln!(
        o,
        "    unanswered_checks_per_session: {}",
        s.unanswered_checks_per_session
    );
    let _ = writeln!(
        o,
        "    unanswered_check_rate: {}",
        rate(&s.unanswered_check_rate)
    );
    let _ = writeln!(o, "    mdns_names: {}", s.mdns_names);
}

fn cidr_text(c: &Cidr) -> String {
    format!("{}/{}", c.network(), c.prefix_len())
}

impl Config {
    /// The effective config as YAML that [`Config::from_yaml`] reads back,
    /// each value followed by a comment saying where it came from. TURN
    /// credentials are shown as `"<redacted>"` unless `show_secrets`.
    pub fn to_yaml_with_origins(&self, show_secrets: bool) -> String {
        use std::fmt::Write;
        let mut o = String::new();
        let i = &self.ice;
        let line = |o: &mut String, indent: usize, key: &str, value: String, origin: &Origin| {
            let _ = writeln!(o, "{:indent$}{key}: {value}  # {origin}", "");
        };
        let _ = writeln!(
            o,
            "# scream-ice {} effective configuration; each comment says where the value came from",
            env!("CARGO_PKG_VERSION")
        );
        let _ = writeln!(o, "# (mode in force: {})", i.mode_in_force());
        if let Some(w) = self.deprecation_warning() {
            let _ = writeln!(o, "# DEPRECATED: {w}");
        }
        o.push_str("webrtc:\n  ice:\n");
        line(&mut o, 4, "mode", i.mode.value.to_string(), &i.mode.origin);
        let deprecated = if i.legacy_mode.value {
            "  (DEPRECATED: run scream-ice migrate)"
        } else {
            ""
        };
        let _ = writeln!(
            o,
            "    legacy_mode: {}  # {}{deprecated}",
            i.legacy_mode.value, i.legacy_mode.origin
        );
        line(
            &mut o,
            4,
            "local_network_priority",
            i.local_network_priority.value.to_string(),
            &i.local_network_priority.origin,
        );
        line(
            &mut o,
            4,
            "host_candidate_timeout_ms",
            i.host_candidate_timeout_ms.value.to_string(),
            &i.host_candidate_timeout_ms.origin,
        );
        line(
            &mut o,
            4,
            "stun_gather_cap_ms",
            i.stun_gather_cap_ms.value.to_string(),
            &i.stun_gather_cap_ms.origin,
        );
        if i.stun_servers.value.is_empty() {
            line(
                &mut o,
                4,
                "stun_servers",
                "[]".into(),
                &i.stun_servers.origin,
            );
        } else {
            let _ = writeln!(o, "    stun_servers:  # {}", i.stun_servers.origin);
            for e in &i.stun_servers.value {
                let _ = writeln!(
                    o,
                    "      - url: {}  # {}",
                    quoted(&e.url.value),
                    e.url.origin
                );
                line(
                    &mut o,
                    8,
                    "enabled",
                    e.enabled.value.to_string(),
                    &e.enabled.origin,
                );
            }
        }
        if i.turn_servers.value.is_empty() {
            line(
                &mut o,
                4,
                "turn_servers",
                "[]".into(),
                &i.turn_servers.origin,
            );
        } else {
            let _ = writeln!(o, "    turn_servers:  # {}", i.turn_servers.origin);
            for e in &i.turn_servers.value {
                let _ = writeln!(
                    o,
                    "      - url: {}  # {}",
                    quoted(&e.url.value),
                    e.url.origin
                );
                if let Some(u) = &e.username {
                    line(&mut o, 8, "username", quoted(&u.value), &u.origin);
                }
                if let Some(c) = &e.credential {
                    let v = if show_secrets {
                        quoted(&c.value)
                    } else {
                        quoted("<redacted>")
                    };
                    line(&mut o, 8, "credential", v, &c.origin);
                }
                line(
                    &mut o,
                    8,
                    "enabled",
                    e.enabled.value.to_string(),
                    &e.enabled.origin,
                );
            }
        }
        o.push_str("    network_detection:\n");
        line(
            &mut o,
            6,
            "enabled",
            i.detection_enabled.value.to_string(),
            &i.detection_enabled.origin,
        );
        let subnets: Vec<String> = i
            .local_subnets
            .value
            .iter()
            .map(|c| quoted(&cidr_text(c)))
            .collect();
        line(
            &mut o,
            6,
            "local_subnets",
            format!("[{}]", subnets.join(", ")),
            &i.local_subnets.origin,
        );
        o.push_str("    migration:\n");
        line(
            &mut o,
            6,
            "enable_new_features",
            i.enable_new_features.value.to_string(),
            &i.enable_new_features.origin,
        );
        line(
            &mut o,
            6,
            "log_migration_events",
            i.log_migration_events.value.to_string(),
            &i.log_migration_events.origin,
        );
        if let Some(r) = &i.rollout {
            show_rollout(&mut o, r, &self.sections.rollout, show_secrets);
        }
        let s = &self.server;
        o.push_str("server:\n");
        line(
            &mut o,
            2,
            "http_listen",
            quoted(&s.http_listen.value.to_string()),
            &s.http_listen.origin,
        );
        let stun = s
            .stun_listen
            .value
            .map_or("off".to_string(), |a| a.to_string());
        line(
            &mut o,
            2,
            "stun_listen",
            quoted(&stun),
            &s.stun_listen.origin,
        );
        line(
            &mut o,
            2,
            "advertise_own_stun",
            s.advertise_own_stun.value.to_string(),
            &s.advertise_own_stun.origin,
        );
        let proxies: Vec<String> = s
            .trusted_proxies
            .value
            .iter()
            .map(|c| quoted(&cidr_text(c)))
            .collect();
        line(
            &mut o,
            2,
            "trusted_proxies",
            format!("[{}]", proxies.join(", ")),
            &s.trusted_proxies.origin,
        );
        line(
            &mut o,
            2,
            "data_dir",
            quoted(&s.data_dir.value.display().to_string()),
            &s.data_dir.origin,
        );
        let ice_port = s
            .ice_port
            .value
            .map_or("per-session".into(), |p| p.to_string());
        line(&mut o, 2, "ice_port", ice_port, &s.ice_port.origin);
        show_store(&mut o, &self.store, &self.sections.store, show_secrets);
        show_limits(&mut o, &self.limits, &self.sections.limits, show_secrets);
        if !self.sinks.value.is_empty() {
            let _ = writeln!(o, "sinks:  # {}", self.sinks.origin);
            for k in &self.sinks.value {
                let _ = writeln!(o, "  - name: {}", quoted(&k.name));
                let _ = writeln!(o, "    listen: {}", quoted(&k.listen.to_string()));
            }
        }
        o
    }

    /// One line per effective value, `key = value (origin)`, for the log
    /// at start. Credentials are never included.
    pub fn provenance_lines(&self) -> Vec<String> {
        let i = &self.ice;
        let s = &self.server;
        let mut v = vec![
            format!("webrtc.ice.mode = {} ({})", i.mode.value, i.mode.origin),
            format!(
                "webrtc.ice.legacy_mode = {} ({})",
                i.legacy_mode.value, i.legacy_mode.origin
            ),
            format!(
                "webrtc.ice.local_network_priority = {} ({})",
                i.local_network_priority.value, i.local_network_priority.origin
            ),
            format!(
                "webrtc.ice.host_candidate_timeout_ms = {} ({})",
                i.host_candidate_timeout_ms.value, i.host_candidate_timeout_ms.origin
            ),
            format!(
                "webrtc.ice.stun_gather_cap_ms = {} ({})",
                i.stun_gather_cap_ms.value, i.stun_gather_cap_ms.origin
            ),
        ];
        let stun: Vec<&str> = i
            .stun_servers
            .value
            .iter()
            .map(|e| e.url.value.as_str())
            .collect();
        v.push(format!(
            "webrtc.ice.stun_servers = {stun:?} ({})",
            i.stun_servers.origin
        ));
        let turn: Vec<&str> = i
            .turn_servers
            .value
            .iter()
            .map(|e| e.url.value.as_str())
            .collect();
        v.push(format!(
            "webrtc.ice.turn_servers = {turn:?} ({})",
            i.turn_servers.origin
        ));
        v.push(format!(
            "webrtc.ice.network_detection.enabled = {} ({})",
            i.detection_enabled.value, i.detection_enabled.origin
        ));
        let subnets: Vec<String> = i.local_subnets.value.iter().map(cidr_text).collect();
        v.push(format!(
            "webrtc.ice.network_detection.local_subnets = {subnets:?} ({})",
            i.local_subnets.origin
        ));
        v.push(format!(
            "webrtc.ice.migration.enable_new_features = {} ({})",
            i.enable_new_features.value, i.enable_new_features.origin
        ));
        v.push(format!(
            "webrtc.ice.migration.log_migration_events = {} ({})",
            i.log_migration_events.value, i.log_migration_events.origin
        ));
        v.push(format!(
            "server.http_listen = {} ({})",
            s.http_listen.value, s.http_listen.origin
        ));
        v.push(format!(
            "server.stun_listen = {} ({})",
            s.stun_listen
                .value
                .map_or("off".to_string(), |a| a.to_string()),
            s.stun_listen.origin
        ));
        v.push(format!(
            "server.advertise_own_stun = {} ({})",
            s.advertise_own_stun.value, s.advertise_own_stun.origin
        ));
        let proxies: Vec<String> = s.trusted_proxies.value.iter().map(cidr_text).collect();
        v.push(format!(
            "server.trusted_proxies = {proxies:?} ({})",
            s.trusted_proxies.origin
        ));
        v.push(format!(
            "server.data_dir = {} ({})",
            s.data_dir.value.display(),
            s.data_dir.origin
        ));
        v.push(format!(
            "server.ice_port = {} ({})",
            s.ice_port
                .value
                .map_or("per-session".to_string(), |p| p.to_string()),
            s.ice_port.origin
        ));
        let sinks: Vec<String> = self
            .sinks
            .value
            .iter()
            .map(|k| format!("{}@{}", k.name, k.listen))
            .collect();
        v.push(format!("sinks = {sinks:?} ({})", self.sinks.origin));
        v.push(format!("mode in force: {}", i.mode_in_force()));
        v
    }
}

/// Whether `ip` is in one of `cidrs`.
pub fn in_cidrs(ip: IpAddr, cidrs: &[Cidr]) -> bool {
    cidrs.iter().any(|c| c.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-line errors for `text` named `t.yaml`.
    fn errors(text: &str) -> Vec<String> {
        match Config::from_yaml("t.yaml", text) {
            Ok(_) => Vec::new(),
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    }

    fn ok(text: &str) -> Config {
        Config::from_yaml("t.yaml", text).unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn file(line: u64, column: u64) -> Origin {
        Origin::File {
            path: "t.yaml".into(),
            line,
            column,
        }
    }

    #[test]
    fn sinks_parse_with_located_errors() {
        let c = ok(
            "sinks:\n  - name: living-room\n    listen: 127.0.0.1:4010\n  - name: all\n    listen: 239.255.77.77\n",
        );
        assert_eq!(c.sinks.value.len(), 2);
        assert_eq!(c.sinks.origin, file(2, 3));
        assert_eq!(c.sinks.value[0].name, "living-room");
        let shown = c.to_yaml_with_origins(false);
        let again = ok(&shown);
        assert_eq!(again.sinks.value, c.sinks.value, "{shown}");
        assert!(c.provenance_lines().contains(
            &"sinks = [\"living-room@127.0.0.1:4010\", \"all@239.255.77.77:4010\"] (t.yaml:2:3)".to_string()
        ));
        assert!(matches!(
            c.sinks.value[1].listen,
            crate::sinks::SinkListen::Multicast { port: 4010, .. }
        ));
        let e = errors(
            "sinks:\n  - name: a\n    listen: nowhere\n  - name: a\n    listen: 127.0.0.1:1\n  - name: a\n    listen: 127.0.0.1:2\n",
        );
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].starts_with("t.yaml:3:13: sinks: listen:"), "{e:?}");
        assert!(
            e[1].starts_with("t.yaml:6:11: sinks: duplicate name"),
            "{e:?}"
        );
        assert!(!errors("sinks:\n  - name: a\n").is_empty());
    }

    #[test]
    fn embedded_default_is_valid_and_is_the_builtin() {
        let d = Config::embedded_default();
        assert_eq!(d, Config::builtin());
        assert_eq!(d.ice.mode_in_force(), IceMode::Auto);
        assert!(d.ice.stun_servers.value.is_empty());
        assert_eq!(d.server.http_listen.value.to_string(), "127.0.0.1:8188");
        assert_eq!(
            d.server.stun_listen.value.map(|a| a.to_string()).as_deref(),
            Some("0.0.0.0:3478")
        );
        assert!(d.server.data_dir.value.ends_with("scream-ice"));
        // Parsing the default text gives file origins; embedded_default hides them.
        let parsed = ok(DEFAULT_CONFIG_YAML);
        assert_eq!(parsed.ice.mode.origin, file(6, 11));
    }

    #[test]
    fn empty_and_comment_only_files_are_the_builtin() {
        assert_eq!(ok(""), Config::builtin());
        assert_eq!(ok("# nothing\n"), Config::builtin());
        assert_eq!(ok("webrtc:\n  ice: {}\n"), Config::builtin());
    }

    #[test]
    fn values_and_their_origins() {
        let c = ok(
            "webrtc:\n  ice:\n    mode: full\n    legacy_mode: true\n    stun_gather_cap_ms: 250\n    turn_servers:\n      - url: turn:t.example\n        username: u\n        credential: c\nserver:\n  http_listen: \"0.0.0.0:80\"\n  stun_listen: \"off\"\n",
        );
        assert_eq!(c.ice.mode.value, IceMode::Full);
        assert_eq!(c.ice.mode.origin, file(3, 11));
        assert_eq!(c.ice.legacy_mode.origin, file(4, 18));
        assert_eq!(c.ice.mode_in_force(), IceMode::Legacy);
        assert_eq!(c.ice.stun_gather_cap_ms.value, 250);
        assert_eq!(c.ice.host_candidate_timeout_ms.origin, Origin::Default);
        assert_eq!(c.ice.turn_servers.value[0].at, file(7, 9));
        assert_eq!(c.ice.turn_servers.value[0].enabled.origin, Origin::Default);
        assert_eq!(c.server.http_listen.value.port(), 80);
        assert_eq!(c.server.stun_listen.value, None);
        assert_eq!(c.server.stun_listen.origin, file(12, 16));
    }

    #[test]
    fn yaml_errors_are_located() {
        let cases: &[(&str, &str)] = &[
            // syntax: unterminated flow sequence
            ("webrtc:\n  ice:\n    mode: [x\n", "t.yaml:3:11: "),
            // type: string where a number belongs
            (
                "webrtc:\n  ice:\n    host_candidate_timeout_ms: \"abc\"\n",
                "t.yaml:3:32: not a whole number of 0 or more",
            ),
            // type: number where a bool belongs
            ("webrtc:\n  ice:\n    legacy_mode: 3\n", "t.yaml:3:18: "),
            // unknown key
            (
                "webrtc:\n  ice:\n    mode: auto\n    bogus: 1\n",
                "t.yaml:4:5: unknown field `bogus`, expected one of mode,",
            ),
            // unknown key at the top (seed's rollout/migration are not implemented)
            (
                "rollout:\n  stage: 10\n",
                "t.yaml:1:1: unknown field `rollout`",
            ),
            // duplicate key
            (
                "webrtc:\n  ice:\n    mode: auto\n    mode: full\n",
                "t.yaml:4:5: duplicate mapping key `mode`",
            ),
            // the root is not a mapping
            ("- 1\n", "t.yaml:1:1: "),
            // a list entry without url
            (
                "webrtc:\n  ice:\n    stun_servers:\n      - enabled: true\n",
                "t.yaml:4:9: ",
            ),
            // a consent timeout RFC 7675 does not allow
            (
                "limits:\n  sessions:\n    consent_timeout_ms: 40000\n",
                "t.yaml:3:25: consent_timeout_ms must be 10000 to 30000",
            ),
        ];
        for (text, want) in cases {
            let e = errors(text);
            assert_eq!(e.len(), 1, "{text:?}: {e:?}");
            assert!(
                e[0].starts_with(want),
                "{text:?}: got {:?}, want {want:?}",
                e[0]
            );
            assert!(!e[0].contains('\n'));
        }
    }

    #[test]
    fn value_errors_are_located() {
        let cases: &[(&str, &str)] = &[
            (
                "webrtc:\n  ice:\n    mode: smart\n",
                "t.yaml:3:11: mode: unknown ICE mode (expected auto, local-only, stun-required, full or legacy): \"smart\"",
            ),
            (
                "webrtc:\n  ice:\n    mode: \"\"\n",
                "t.yaml:3:11: mode: empty ICE mode: \"\"",
            ),
            (
                "webrtc:\n  ice:\n    host_candidate_timeout_ms: 0\n",
                "t.yaml:3:32: host_candidate_timeout_ms: 0 is out of range (1..=60000 ms)",
            ),
            (
                "webrtc:\n  ice:\n    stun_gather_cap_ms: 60001\n",
                "t.yaml:3:25: stun_gather_cap_ms: 60001 is out of range (1..=60000 ms)",
            ),
            (
                "webrtc:\n  ice:\n    network_detection:\n      local_subnets:\n        - 10.0.0.0/8\n        - 192.168.1.5/24\n",
                "t.yaml:6:11: local_subnets[1]: address has host bits set beyond the prefix length (write the network address): \"192.168.1.5/24\"",
            ),
            (
                "server:\n  http_listen: localhost\n",
                "t.yaml:2:16: http_listen: not an IP:PORT socket address: \"localhost\"",
            ),
            (
                "server:\n  stun_listen: \"3478\"\n",
                "t.yaml:2:16: stun_listen: neither \"off\" nor an IP:PORT socket address: \"3478\"",
            ),
            (
                "server:\n  trusted_proxies: [10.0.0.1]\n",
                "t.yaml:2:21: trusted_proxies[0]: missing /prefix-length (a bare address is not a subnet): \"10.0.0.1\"",
            ),
            (
                "server:\n  data_dir: \"\"\n",
                "t.yaml:2:13: data_dir: empty path",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(errors(text), [*want], "{text:?}");
        }
    }

    #[test]
    fn policy_problems_are_located_at_their_node() {
        let text = "\
webrtc:
  ice:
    mode: stun-required
    stun_servers:
      - url: \"stun://x.example\"
      - url: turn:relay.example
        enabled: false
    turn_servers:
      - url: turn:t.example
        username: \"\"
      - url: stun:s.example
        username: u
        credential: c
";
        assert_eq!(
            errors(text),
            [
                "t.yaml:5:14: stun_servers[0]: bad URL: no \"//\" after the scheme: RFC 7064/7065 URIs are written stun:host[:port], not stun://host",
                "t.yaml:6:14: stun_servers[1]: turn: URL in stun_servers (move it to turn_servers)",
                "t.yaml:10:19: turn_servers[0]: TURN server without username",
                "t.yaml:9:9: turn_servers[0]: TURN server without credential",
                "t.yaml:11:14: turn_servers[1]: stun: URL in turn_servers (move it to stun_servers)",
                "t.yaml:3:11: mode stun-required needs at least one enabled, valid STUN server",
            ]
        );
        assert_eq!(
            errors("webrtc:\n  ice:\n    mode: full\n"),
            ["t.yaml:3:11: mode full needs at least one enabled, valid TURN server"]
        );
        let mut many = String::from("webrtc:\n  ice:\n    stun_servers:\n");
        for _ in 0..33 {
            many.push_str("      - url: stun:a.example\n");
        }
        assert_eq!(
            errors(&many),
            ["t.yaml:4:7: stun_servers: more than 32 entries"]
        );
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_string())
        }
    }

    #[test]
    fn env_overrides_and_provenance() {
        let mut c = ok("webrtc:\n  ice:\n    mode: auto\n    local_network_priority: true\n");
        let w = c.apply_env(env(&[])).unwrap();
        assert!(w.is_empty());
        assert_eq!(c.ice.mode.origin, file(3, 11));
        assert_eq!(c.ice.local_network_priority.origin, file(4, 29));

        let w = c
            .apply_env(env(&[
                (ENV_ICE_MODE, "local-only"),
                (ENV_ENABLE_LOCAL_PRIORITY, "false"),
                (ENV_LEGACY_ICE_MODE, "false"),
            ]))
            .unwrap();
        assert!(w.is_empty());
        assert_eq!(c.ice.mode.value, IceMode::LocalOnly);
        assert_eq!(c.ice.mode.origin, Origin::Env { var: ENV_ICE_MODE });
        assert!(!c.ice.local_network_priority.value);
        assert_eq!(
            c.ice.local_network_priority.origin,
            Origin::Env {
                var: ENV_ENABLE_LOCAL_PRIORITY
            }
        );
        assert!(!c.ice.legacy_mode.value);
        assert_eq!(
            c.ice.legacy_mode.origin.to_string(),
            "env SCREAMROUTER_LEGACY_ICE_MODE"
        );
        assert_eq!(c.ice.mode_in_force(), IceMode::LocalOnly);

        // The seed's rules: local priority only for "true"; legacy unless "false".
        let w = c
            .apply_env(env(&[
                (ENV_ENABLE_LOCAL_PRIORITY, "TRUE"),
                (ENV_LEGACY_ICE_MODE, "0"),
            ]))
            .unwrap();
        assert!(!c.ice.local_network_priority.value);
        assert!(c.ice.legacy_mode.value);
        assert_eq!(c.ice.mode_in_force(), IceMode::Legacy);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].starts_with("SCREAMROUTER_ENABLE_LOCAL_PRIORITY=\"TRUE\""));

        let w = c
            .apply_env(env(&[
                (ENV_ENABLE_LOCAL_PRIORITY, "true"),
                (ENV_LEGACY_ICE_MODE, "true"),
            ]))
            .unwrap();
        assert!(w.is_empty());
        assert!(c.ice.local_network_priority.value && c.ice.legacy_mode.value);
    }

    #[test]
    fn env_errors_are_one_line_and_name_the_variable() {
        let mut c = Config::builtin();
        let e = c.apply_env(env(&[(ENV_ICE_MODE, "smart")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "env SCREAMROUTER_ICE_MODE: unknown ICE mode (expected auto, local-only, stun-required, full or legacy): \"smart\""
        );
        // A mode requirement broken by the environment is located there.
        c.apply_env(env(&[(ENV_ICE_MODE, "stun-required")]))
            .unwrap();
        assert_eq!(
            c.problems()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            [
                "env SCREAMROUTER_ICE_MODE: mode stun-required needs at least one enabled, valid STUN server"
            ]
        );
    }

    #[test]
    fn show_prints_rollout_store_and_limits_and_they_round_trip() {
        let yaml = "webrtc:\n  ice:\n    rollout:\n      experiment: e1\n      stage: 25\n      webhooks:\n        - url: http://127.0.0.1:9/hook\n          secret: hooksecret\nstore:\n  url: postgres://scream:pw@127.0.0.1/db\n  batch: 7\nlimits:\n  sessions:\n    per_client: 2\n    speaker_token: tok\n  http:\n    allowed_hosts: [router.local]\n";
        let c = ok(yaml);
        let shown = c.to_yaml_with_origins(false);
        for want in [
            "    rollout:  # t.yaml:4:7 (keys not written there are defaults)\n",
            "        - {percent: 75, max_failure_rate: 1}\n",
            "        - {percent: 100, max_failure_rate: 0.5}\n",
            "          secret: \"<redacted>\"\n",
            "store:  # t.yaml:10:3 (keys not written there are defaults)\n",
            "  url: \"postgres://scream:<redacted>@127.0.0.1/db\"\n",
            "limits:  # t.yaml:13:3 (keys not written there are defaults)\n",
            "    per_source: {per_second: 20, burst: 40}\n",
            "    speaker_token: \"<redacted>\"\n",
            "    allowed_hosts: [\"router.local\"]\n",
        ] {
            assert!(shown.contains(want), "{want:?} in\n{shown}");
        }
        assert!(
            !shown.contains("pw@") && !shown.contains("tok\"") && !shown.contains("hooksecret")
        );
        let back = Config::from_yaml("t.yaml", &c.to_yaml_with_origins(true)).unwrap();
        assert_eq!(back.limits, c.limits);
        assert_eq!(back.store, c.store);
        assert_eq!(back.ice.rollout, c.ice.rollout);
        // Defaults only: the sections are still shown, as defaults.
        let d = ok("server:\n  stun_listen: off\n").to_yaml_with_origins(false);
        assert!(
            d.contains("limits:  # default\n") && d.contains("store:  # default\n"),
            "{d}"
        );
        let back = Config::from_yaml("t.yaml", &d).unwrap();
        assert_eq!(back.limits, crate::limits::Limits::default());
    }

    #[test]
    fn ice_port_is_read_shown_and_checked() {
        let c = ok("server:\n  ice_port: 4012\n");
        assert_eq!(c.server.ice_port.value, Some(4012));
        let shown = c.to_yaml_with_origins(false);
        assert!(
            shown.contains("  ice_port: 4012  # t.yaml:2:13\n"),
            "{shown}"
        );
        let back = Config::from_yaml("t.yaml", &shown).unwrap();
        assert_eq!(back.server.ice_port.value, Some(4012));
        // The default: shared, on a port the system picks per address.
        let d = ok("server:\n  stun_listen: off\n");
        assert_eq!(d.server.ice_port.value, Some(0));
        assert!(
            d.to_yaml_with_origins(false)
                .contains("  ice_port: 0  # default\n"),
            "{}",
            d.to_yaml_with_origins(false)
        );
        let p = ok("server:\n  ice_port: per-session\n");
        assert_eq!(p.server.ice_port.value, None);
        let shown = p.to_yaml_with_origins(false);
        assert!(
            shown.contains("  ice_port: per-session  # t.yaml:2:13\n"),
            "{shown}"
        );
        let back = Config::from_yaml("t.yaml", &shown).unwrap();
        assert_eq!(back.server.ice_port.value, None);
        for (text, shown) in [
            ("70000", "70000"),
            ("-1", "-1"),
            ("any", "\"any\""),
            ("[1]", "this"),
            ("1.5", "this"),
        ] {
            assert_eq!(
                errors(&format!("server:\n  ice_port: {text}\n")),
                [format!(
                    "t.yaml:2:13: ice_port: {shown} is neither a port (0..=65535; 0: a port the system picks on each address) nor per-session"
                )]
            );
        }
    }

    #[test]
    fn show_round_trips_and_names_origins() {
        let mut c = ok(
            "webrtc:\n  ice:\n    stun_servers:\n      - url: \"stun:s.example:3479\"\n        enabled: false\n    turn_servers:\n      - url: turn:t.example?transport=udp\n        username: \"u\\\"q\"\n        credential: secret\n    network_detection:\n      local_subnets: [\"192.168.0.0/16\", \"fd00::/8\"]\nserver:\n  trusted_proxies: [\"127.0.0.1/32\"]\n",
        );
        c.apply_env(env(&[(ENV_LEGACY_ICE_MODE, "true")])).unwrap();
        let shown = c.to_yaml_with_origins(true);
        assert!(
            shown.contains("    legacy_mode: true  # env SCREAMROUTER_LEGACY_ICE_MODE  (DEPRECATED: run scream-ice migrate)\n"),
            "{shown}"
        );
        assert!(shown.contains("    mode: auto  # default\n"), "{shown}");
        assert!(
            shown.contains("      - url: \"stun:s.example:3479\"  # t.yaml:4:14\n"),
            "{shown}"
        );
        let back = Config::from_yaml("t.yaml", &shown).unwrap();
        assert!(back.ice.legacy_mode.value);
        assert_eq!(
            back.ice.stun_servers.value[0].url.value,
            "stun:s.example:3479"
        );
        assert!(!back.ice.stun_servers.value[0].enabled.value);
        assert_eq!(
            back.ice.turn_servers.value[0]
                .username
                .as_ref()
                .unwrap()
                .value,
            "u\"q"
        );
        assert_eq!(
            back.ice.turn_servers.value[0]
                .credential
                .as_ref()
                .unwrap()
                .value,
            "secret"
        );
        assert_eq!(back.ice.local_subnets.value, c.ice.local_subnets.value);
        assert_eq!(
            back.server,
            Config {
                server: back.server.clone(),
                ..c.clone()
            }
            .server
        );
        assert_eq!(
            back.server.trusted_proxies.value,
            c.server.trusted_proxies.value
        );
        let redacted = c.to_yaml_with_origins(false);
        assert!(!redacted.contains("secret") && redacted.contains("<redacted>"));
        assert!(c.provenance_lines().iter().all(|l| !l.contains("secret")));
    }

    #[test]
    fn migration_section_meanings() {
        // Absent: new features on, no event log, mode as written.
        let c = ok("webrtc:\n  ice:\n    mode: local-only\n");
        assert!(c.ice.enable_new_features.value && !c.ice.log_migration_events.value);
        assert_eq!(c.ice.mode_in_force(), IceMode::LocalOnly);
        assert_eq!(c.deprecation_warning(), None);

        // The seed's phase1.yaml: legacy through both switches.
        let c = ok(
            "webrtc:\n  ice:\n    mode: \"auto\"\n    legacy_mode: true\n    stun_servers:\n      - url: \"stun:stun.l.google.com:19302\"\n    migration:\n      enable_new_features: false\n      log_migration_events: true\n",
        );
        assert_eq!(c.ice.mode_in_force(), IceMode::Legacy);
        assert_eq!(c.ice.enable_new_features.origin, file(8, 28));
        assert!(c.ice.log_migration_events.value);
        assert_eq!(
            c.deprecation_warning().unwrap(),
            "legacy ICE is deprecated and will be removed (webrtc.ice.legacy_mode: true at t.yaml:4:18); run `scream-ice migrate t.yaml` to move to mode auto (see docs/migration.md)"
        );

        // enable_new_features: false alone selects legacy (the seed's
        // isSmartICEEnabled() needs smart on and legacy off).
        let c = ok("webrtc:\n  ice:\n    migration:\n      enable_new_features: false\n");
        assert_eq!(c.ice.mode_in_force(), IceMode::Legacy);
        assert!(
            c.deprecation_warning()
                .unwrap()
                .contains("(webrtc.ice.migration.enable_new_features: false at t.yaml:4:28)")
        );
        let c = ok("webrtc:\n  ice:\n    mode: legacy\n");
        assert!(
            c.deprecation_warning()
                .unwrap()
                .contains("(webrtc.ice.mode: legacy at t.yaml:3:11)")
        );

        // Unknown keys inside the section are still refused.
        assert_eq!(
            errors("webrtc:\n  ice:\n    migration:\n      enable_smart: true\n"),
            [
                "t.yaml:4:7: unknown field `enable_smart`, expected one of enable_new_features, log_migration_events"
            ]
        );

        // SCREAMROUTER_USE_SMART_ICE is the seed's flag for the same switch.
        let mut c = Config::builtin();
        c.apply_env(env(&[(ENV_USE_SMART_ICE, "false")])).unwrap();
        assert_eq!(c.ice.mode_in_force(), IceMode::Legacy);
        assert!(
            c.deprecation_warning()
                .unwrap()
                .contains("unset SCREAMROUTER_USE_SMART_ICE and run `scream-ice migrate FILE`")
        );
        let w = c.apply_env(env(&[(ENV_USE_SMART_ICE, "yes")])).unwrap();
        assert_eq!(c.ice.mode_in_force(), IceMode::Legacy);
        assert_eq!(
            w,
            [
                "SCREAMROUTER_USE_SMART_ICE=\"yes\" is neither \"true\" nor \"false\"; taken as new features off (only \"true\" turns them on)"
            ]
        );
        c.apply_env(env(&[(ENV_USE_SMART_ICE, "true")])).unwrap();
        assert_eq!(c.ice.mode_in_force(), IceMode::Auto);

        // config show marks legacy and round-trips the section.
        let mut c = ok("webrtc:\n  ice:\n    migration:\n      log_migration_events: true\n");
        c.apply_env(env(&[(ENV_LEGACY_ICE_MODE, "true")])).unwrap();
        let shown = c.to_yaml_with_origins(false);
        assert!(
            shown.contains("\n# DEPRECATED: legacy ICE is deprecated"),
            "{shown}"
        );
        assert!(
            shown.contains("      log_migration_events: true  # t.yaml:4:29\n"),
            "{shown}"
        );
        let back = Config::from_yaml("t.yaml", &shown).unwrap();
        assert!(back.ice.log_migration_events.value && back.ice.legacy_mode.value);
        assert!(c.provenance_lines().contains(
            &"webrtc.ice.migration.log_migration_events = true (t.yaml:4:29)".to_string()
        ));
    }

    #[test]
    fn quoted_scalars_read_back_exactly() {
        for s in [
            "plain",
            "q\"uo'te: #hash",
            "back\\slash",
            "p\u{e4}ss w\u{f6}rd \u{1f4a1} \u{65e5}\u{672c}",
            "ctl \u{1} \u{7f} \u{85} \u{a0} \u{2028} \u{feff} \u{fffe} \t\n\r",
            " lead and trail ",
        ] {
            let text = format!("server:\n  data_dir: {}\n", quoted(s));
            let c = ok(&text);
            assert_eq!(
                c.server.data_dir.value,
                PathBuf::from(s.to_string()),
                "{text}"
            );
        }
    }

    #[test]
    fn policy_config_mirrors_the_file() {
        let c = ok(
            "webrtc:\n  ice:\n    mode: stun-required\n    local_network_priority: false\n    host_candidate_timeout_ms: 700\n    stun_servers:\n      - url: stun:s.example\n    network_detection:\n      enabled: false\n",
        );
        let parts = c.policy_parts(Some("stun:192.0.2.1:3478"));
        let p = parts.config();
        assert_eq!(p.mode, IceMode::StunRequired);
        assert!(!p.local_network_priority);
        assert_eq!(p.host_candidate_timeout, Duration::from_millis(700));
        assert_eq!(p.stun_gather_cap, Duration::from_millis(500));
        assert!(!p.network_detection.enabled);
        assert_eq!(p.stun_servers.len(), 2);
        assert_eq!(p.stun_servers[1].url, "stun:192.0.2.1:3478");
        assert_eq!(p.validate(), Ok(()));
    }
}
