//! `scream-ice serve`: bind the STUN responder and the HTTP API, run until
//! SIGINT or SIGTERM, then stop within a second. SIGHUP re-reads the
//! config file and puts it in force without dropping established speaker
//! sessions ([`crate::reload`]).
//!
//! Sits between the CLI (which has already loaded and checked the
//! [`Config`]) and the long-running tasks: [`crate::stun_responder::Responder`] on its own thread
//! (UDP) and the axum [`crate::http::router`] on TCP.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use std::net::UdpSocket;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::http::{AppState, router};

/// Why `serve` failed; each prints as one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// A listener could not be bound.
    #[error("cannot listen on {what} {addr}: {source}")]
    Bind {
        /// `udp (STUN)` or `tcp (HTTP)`.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// `server.ice_port` could not be bound on the interfaces.
    #[error("cannot bind ice_port {0} on this machine's addresses: {1}")]
    IcePort(u16, scream_ice_tokio::StartError),
    /// The HTTP server failed.
    #[error("HTTP server: {0}")]
    Http(std::io::Error),
    /// The STUN responder thread could not start.
    #[error("STUN responder: {0}")]
    Stun(std::io::Error),
    /// A configured sink could not be started.
    #[error("{0}")]
    Sinks(std::io::Error),
    /// Installing the signal handlers failed.
    #[error("cannot install signal handler: {0}")]
    Signal(std::io::Error),
    /// The outcome store or the admin token could not be set up.
    #[error("{0}")]
    Rollout(String),
}

/// How often `server.ice_port`'s sockets follow the machine's addresses.
pub const ICE_PORT_RESCAN: Duration = Duration::from_secs(5);

/// The bound listeners, before they run.
pub struct Listeners {
    stun: Option<UdpSocket>,
    http: TcpListener,
    /// `server.ice_port`'s shared sockets.
    ice: Option<scream_ice_tokio::UdpMux>,
}

impl Listeners {
    /// Bind `server.stun_listen` (unless `off`) and `server.http_listen`.
    pub async fn bind(config: &Config) -> Result<Listeners, ServeError> {
        let stun = match config.server.stun_listen.value {
            Some(addr) => Some(UdpSocket::bind(addr).map_err(|source| ServeError::Bind {
                what: "udp (STUN)",
                addr,
                source,
            })?),
            None => None,
        };
        let addr = config.server.http_listen.value;
        let http = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind {
                what: "tcp (HTTP)",
                addr,
                source,
            })?;
        let ice = match config.server.ice_port.value {
            // Every address a session could use: which of them a session
            // takes is its own decision (loopback only for local peers).
            Some(port) => {
                let mut filter = scream_ice_tokio::HostFilter::new();
                filter.include_loopback = true;
                Some(
                    scream_ice_tokio::UdpMux::bind_discovered(&filter, port)
                        .await
                        .map_err(|e| ServeError::IcePort(port, e))?,
                )
            }
            None => None,
        };
        Ok(Listeners { stun, http, ice })
    }

    /// The STUN responder's bound address, if it runs.
    pub fn stun_addr(&self) -> Option<SocketAddr> {
        self.stun.as_ref().and_then(|s| s.local_addr().ok())
    }

    /// The HTTP server's bound address.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.local_addr().ok()
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() -> Result<&'static str, ServeError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(ServeError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServeError::Signal)?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// Run both listeners until SIGINT/SIGTERM. Prints one line per listener
/// on stdout first (where it listens, which endpoints need the admin token, where the token is).
/// On the signal, the STUN task is stopped and the HTTP server drains its
/// connections for at most 500 ms.
pub async fn run(config: Config, listeners: Listeners) -> Result<(), ServeError> {
    run_with_reload(config, listeners, None).await
}

/// As [`run`], with SIGHUP reloading the config through `loader`
/// ([`crate::reload::reload`]).
pub async fn run_with_reload(
    config: Config,
    listeners: Listeners,
    loader: Option<crate::reload::Loader>,
) -> Result<(), ServeError> {
    let stun_addr = listeners.stun_addr();
    let http_addr = listeners.http_addr();
    let advertised = stun_addr.filter(|_| config.server.advertise_own_stun.value);
    let state_limits = config.limits.clone();
    let sinks =
        crate::sinks::SinkSet::start(&config.sinks.value, &[]).map_err(ServeError::Sinks)?;
    let admin_env = std::env::var(crate::auth::ENV_ADMIN_TOKEN).ok();
    let (hub, store_note) = crate::rollout_monitor::open_hub(&config, admin_env.as_deref())
        .await
        .map_err(ServeError::Rollout)?;
    let token_line = crate::rollout_monitor::token_line(&hub);
    if let Some(note) = &store_note {
        tracing::warn!("{note}");
    }
    let ice_line = listeners.ice.as_ref().map(|m| {
        let addrs: Vec<String> = m.local_addresses().iter().map(|a| a.to_string()).collect();
        format!("ICE sessions share udp {}", addrs.join(", "))
    });
    let settings = crate::sessions::SessionSettings {
        mux: listeners.ice.clone(),
        ..Default::default()
    };
    let state = AppState::with_hub(config, advertised, settings, hub);
    state.set_listeners(http_addr.into_iter().chain(stun_addr).collect());
    crate::rollout_monitor::spawn(state.clone());
    let sink_lines: Vec<String> = sinks
        .iter()
        .map(|s| {
            format!(
                "sink {} listening on udp {} (speakers: POST /api/ice/sessions?sink={})",
                s.name(),
                s.local_addr(),
                s.name()
            )
        })
        .collect();
    let _ = state.set_sinks(sinks);
    // Before the listening lines: from then on a SIGHUP reloads.
    let reloader =
        crate::reload::spawn_on_sighup(state.clone(), loader).map_err(ServeError::Signal)?;
    let version = env!("CARGO_PKG_VERSION");
    {
        let mut out = std::io::stdout().lock();
        match stun_addr {
            Some(a) => {
                let _ = writeln!(
                    out,
                    "scream-ice {version}: STUN responder listening on udp {a} ({}advertised to peers that need STUN)",
                    if advertised.is_some() { "" } else { "not " }
                );
            }
            None => {
                let _ = writeln!(out, "scream-ice {version}: STUN responder off");
            }
        }
        if let Some(a) = http_addr {
            let _ = writeln!(
                out,
                "scream-ice {version}: HTTP listening on http://{a} (GET /api/ice-config, OPTIONS /api/whep/{{sink}}, POST /api/ice/sessions, POST /api/ice/outcomes, GET /metrics); GET/POST /api/rollout need the admin token; {}",
                crate::admission::token_note(&state_limits.sessions)
            );
            let _ = writeln!(out, "scream-ice {version}: {token_line}");
        }
        if let Some(l) = &ice_line {
            let _ = writeln!(out, "scream-ice {version}: {l}");
        }
        for l in &sink_lines {
            let _ = writeln!(out, "scream-ice {version}: {l}");
        }
        if let Some(note) = &store_note {
            let _ = writeln!(out, "scream-ice {version}: {note}");
        }
        let _ = out.flush();
    }

    // The shared ICE port follows the machine's addresses (a DHCP lease
    // that comes after the start, an address that goes): sessions started
    // after a rescan use what it bound.
    if let Some(mux) = &listeners.ice {
        mux.follow_interfaces(ICE_PORT_RESCAN);
    }

    let responder = match listeners.stun {
        Some(socket) => Some(
            crate::stun_responder::Responder::spawn_limited(
                socket,
                crate::SOFTWARE,
                state_limits.stun,
            )
            .map_err(ServeError::Stun)?,
        ),
        None => None,
    };

    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    // The accept loop with the HTTP limits (timeouts, connection caps, body
    // limits, Host and CORS checks): crate::http_guard.
    let server = crate::http_guard::serve(
        listeners.http,
        router(state),
        state_limits.http.clone(),
        async move {
            let _ = rx.await;
        },
        Duration::from_millis(500),
    );
    let mut server = std::pin::pin!(server);
    let signal = tokio::select! {
        s = shutdown_signal() => s?,
        r = &mut server => {
            return r.map_err(ServeError::Http);
        }
    };
    tracing::info!("{signal}: shutting down");
    reloader.abort();
    if let Some(r) = responder {
        r.stop();
    }
    let _ = tx.send(());
    // http_guard drains for at most 500 ms itself; this is a backstop.
    match tokio::time::timeout(Duration::from_millis(600), server).await {
        Ok(r) => r.map_err(ServeError::Http)?,
        Err(_) => tracing::info!("open HTTP connections dropped after 500 ms"),
    }
    tracing::info!("stopped");
    Ok(())
}
