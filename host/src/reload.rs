//! SIGHUP: the running daemon re-reads its config and puts it in force
//! without a restart (`systemctl reload scream-ice`, `kill -HUP PID`).
//!
//! The new config replaces the old one in [`AppState`]
//! ([`AppState::replace_config`]); requests and speaker sessions already
//! running keep the snapshot they started with, so established sessions
//! are not dropped or renegotiated — new sessions and new ICE
//! configuration requests get the new mode. A config that fails to load
//! or validate is not put in force: the old one stays and one log line
//! says why. Listener addresses (`server.http_listen`, `stun_listen`, `ice_port`)
//! are bound at start; a changed one is logged and takes effect at the
//! next restart.

use crate::config::{Config, LocatedError};
use crate::http::AppState;

/// Loads the config again (file, environment, command-line flags), with
/// its warnings; every error located.
pub type Loader =
    Box<dyn Fn() -> Result<(Config, Vec<String>), Vec<LocatedError>> + Send + Sync + 'static>;

/// What one reload did, for the log and for tests.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reloaded {
    /// The new config is in force.
    Applied {
        /// Mode in force before.
        from: scream_ice_core::policy::IceMode,
        /// Mode in force now.
        to: scream_ice_core::policy::IceMode,
    },
    /// The new config did not load; the old one stays.
    Rejected(String),
}

/// Load through `loader` and, if it loads, put it in force in `state`.
/// Logs one line for the outcome (plus the deprecation warning and
/// listener notes where they apply).
pub fn reload(state: &AppState, loader: &Loader) -> Reloaded {
    match loader() {
        Err(errors) => {
            let why = errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            tracing::error!("SIGHUP: config not reloaded, the running config stays: {why}");
            Reloaded::Rejected(why)
        }
        Ok((config, warnings)) => {
            for w in warnings {
                tracing::warn!("{w}");
            }
            if let Some(w) = config.deprecation_warning() {
                tracing::warn!("{w}");
            }
            let to = config.ice.mode_in_force();
            let log_events = config.ice.log_migration_events.value;
            let old = state.replace_config(config);
            let new = state.config();
            let from = old.ice.mode_in_force();
            for (key, was, now) in [
                (
                    "server.http_listen",
                    old.server.http_listen.value.to_string(),
                    new.server.http_listen.value.to_string(),
                ),
                (
                    "server.stun_listen",
                    format!("{:?}", old.server.stun_listen.value),
                    format!("{:?}", new.server.stun_listen.value),
                ),
                (
                    "server.advertise_own_stun",
                    old.server.advertise_own_stun.value.to_string(),
                    new.server.advertise_own_stun.value.to_string(),
                ),
                (
                    "server.ice_port",
                    format!("{:?}", old.server.ice_port.value),
                    format!("{:?}", new.server.ice_port.value),
                ),
                // Rate limits, caps and timeouts are read at start
                // (crate::limits).
                (
                    "limits",
                    format!("{:?}", old.limits),
                    format!("{:?}", new.limits),
                ),
            ] {
                if was != now {
                    tracing::warn!("SIGHUP: {key} changed; it takes effect at the next restart");
                }
            }
            tracing::info!(
                "SIGHUP: config reloaded, mode in force {from} -> {to}; {} speaker sessions keep running",
                state.sessions().len()
            );
            if log_events {
                tracing::info!(
                    target: crate::migrate::EVENT_TARGET,
                    "migration event: config_reloaded from={from} to={to}"
                );
            }
            Reloaded::Applied { from, to }
        }
    }
}

/// Reload on every SIGHUP until the task is dropped. The handler is
/// installed before this returns (so a SIGHUP sent once `serve` printed
/// its listening lines never takes the default action, which would end
/// the process).
pub fn spawn_on_sighup(
    state: AppState,
    loader: Option<Loader>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match &loader {
                Some(l) => {
                    let _ = reload(&state, l);
                }
                None => tracing::warn!("SIGHUP: no config loader; nothing reloaded"),
            }
        }
    }))
}
