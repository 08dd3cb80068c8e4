//! The operator's side of the rollout: `scream-ice rollout
//! status|advance|set STAGE|pause|resume`, `scream-ice report`, and
//! [`rollback_running_daemon`] for `scream-ice rollback`.
//!
//! The rollout commands talk to a running daemon's admin API (`GET`/`POST
//! /api/rollout`) with the admin token: `SCREAM_ICE_ADMIN_TOKEN` if set,
//! else the token file in the config's data dir. The daemon's address is
//! `--url`, else the config's `server.http_listen` (with `0.0.0.0` or
//! `::` taken as loopback).

use std::net::SocketAddr;
use std::time::Duration;

use crate::client::{BaseUrl, ClientError, Reply};
use crate::config::Config;

/// Why a rollout command failed; one line each.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// No token.
    #[error("admin token: {0}")]
    Token(String),
    /// The request failed.
    #[error("{0}")]
    Client(#[from] ClientError),
    /// The daemon refused.
    #[error("daemon answered {status}: {body}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Its reason.
        body: String,
    },
}

/// The admin token a CLI command sends.
pub fn cli_token(config: &Config) -> Result<String, CliError> {
    if let Ok(t) = std::env::var(crate::auth::ENV_ADMIN_TOKEN) {
        return Ok(t);
    }
    let path = config.server.data_dir.value.join(crate::auth::TOKEN_FILE);
    std::fs::read_to_string(&path)
        .map(|t| t.trim().to_string())
        .map_err(|e| {
            CliError::Token(format!(
                "{}: {e} (set {} or run on the daemon's host)",
                path.display(),
                crate::auth::ENV_ADMIN_TOKEN
            ))
        })
}

/// The daemon's base URL: `url`, or the config's `http_listen`.
pub fn daemon_url(config: &Config, url: Option<&str>) -> Result<BaseUrl, CliError> {
    if let Some(u) = url {
        return Ok(BaseUrl::parse(u)?);
    }
    let mut a: SocketAddr = config.server.http_listen.value;
    if a.ip().is_unspecified() {
        a.set_ip(if a.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    Ok(BaseUrl::parse(&format!("http://{a}"))?)
}

/// One admin request to `/api/rollout` (`body` `None`: GET).
pub async fn admin_request(
    base: &BaseUrl,
    token: &str,
    body: Option<&str>,
) -> Result<Reply, CliError> {
    let addr = base.resolve().await?;
    let auth = format!("Bearer {token}");
    let mut headers = vec![("Authorization", auth.as_str())];
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    let r = crate::client::request(
        addr,
        &base.authority,
        if body.is_some() { "POST" } else { "GET" },
        &format!("{}/api/rollout", base.prefix),
        &headers,
        body.unwrap_or_default().as_bytes(),
        Duration::from_secs(10),
    )
    .await?;
    if r.status == 200 {
        Ok(r)
    } else {
        Err(CliError::Refused {
            status: r.status,
            body: r.text().trim().to_string(),
        })
    }
}

/// A short text form of `GET /api/rollout`.
pub fn describe(json: &str) -> String {
    let Ok(v) = serde_json::from_str::<crate::rollout_api::RolloutJson>(json) else {
        return json.to_string();
    };
    let mut o = format!(
        "experiment {}: {} at stage {} % (treatment share {} %); stages {:?}",
        v.experiment.as_deref().unwrap_or("-"),
        v.state,
        v.status.as_ref().map_or(100, |s| s.stage),
        v.treatment_percent,
        v.stages
    );
    if let Some(s) = &v.status
        && let Some(from) = s.rolled_back_from
    {
        o.push_str(&format!("\nrolled back from {from} %"));
    }
    if let Some(d) = &v.last_decision {
        o.push_str(&format!(
            "\nlast decision ({}, stage {} %): {} (treatment {} attempts, {} failures)",
            d.router_id, d.stage, d.verdict, d.treatment_n, d.treatment_failures
        ));
    }
    if let Some(w) = &v.srm_warning {
        o.push_str(&format!("\nwarning: {w}"));
    }
    o
}

/// For `scream-ice rollback`: tell a daemon running with `config` to roll
/// the rollout back. `Ok(true)` when a daemon answered and rolled back,
/// `Ok(false)` when none is listening there (nothing to tell).
pub async fn rollback_running_daemon(config: &Config) -> Result<bool, CliError> {
    let base = daemon_url(config, None)?;
    // Nothing listening: nothing to tell (and no token needed).
    let addr = base.resolve().await?;
    if tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
        .await
        .map_or(true, |r| r.is_err())
    {
        return Ok(false);
    }
    let token = cli_token(config)?;
    match admin_request(&base, &token, Some(r#"{"action":"rollback"}"#)).await {
        Ok(_) => Ok(true),
        Err(CliError::Client(ClientError::Io { .. } | ClientError::Timeout(_))) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `scream-ice rollout ...`: `action` `None` is `status`. Returns the text
/// to print.
pub async fn rollout(
    config: Config,
    url: Option<String>,
    action: Option<String>,
) -> Result<String, String> {
    let base = daemon_url(&config, url.as_deref()).map_err(|e| e.to_string())?;
    let token = cli_token(&config).map_err(|e| e.to_string())?;
    let r = admin_request(&base, &token, action.as_deref())
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!("{}\n", describe(&r.text())))
}

/// `scream-ice report`: open the store of `config` and print the report.
pub async fn report(config: Config, since: String, json: bool) -> Result<String, String> {
    let since = crate::report::parse_duration(&since)?;
    let store = crate::store::Store::open(&config.store, &config.server.data_dir.value)
        .await
        .map_err(|e| format!("store: {e}"))?;
    let since_ms = crate::rollout::now_ms() - since.as_millis() as i64;
    let r = crate::report::build(&store, since_ms)
        .await
        .map_err(|e| format!("store: {e}"))?;
    Ok(if json {
        format!("{}\n", serde_json::to_string_pretty(&r).unwrap_or_default())
    } else {
        r.text()
    })
}

/// `scream-ice rollback`'s hook ([`crate::migrate::notify_rollback_hook`]):
/// tell the daemon running with the config at `path` to roll back now.
/// `Some(line)` to print when a daemon answered (or refused); `None` when
/// none listens there or the config cannot be read.
pub fn notify_daemon_of_rollback(path: &std::path::Path, reason: Option<&str>) -> Option<String> {
    let mut config = Config::from_file(path).ok()?;
    let _ = config.apply_env(|v| std::env::var(v).ok());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    let url = daemon_url(&config, None).ok()?;
    match runtime.block_on(rollback_running_daemon(&config)) {
        Ok(true) => Some(format!(
            "told the running daemon at http://{}: rollout rolled back, every client on legacy ICE now (reason: {})",
            url.authority,
            reason.unwrap_or("none given")
        )),
        Ok(false) => None,
        Err(e) => Some(format!(
            "the running daemon at http://{} did not roll back: {e}; reload it (systemctl reload scream-ice)",
            url.authority
        )),
    }
}
