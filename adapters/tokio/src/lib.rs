//! scream-ice-tokio: a thin tokio loop around the scream-ice core's sans-IO
//! ICE agent.
//!
//! This crate sits between the application (the ScreamRouter daemon, the
//! `scream-ice connect` simulator, tests) and [`scream_ice_core::agent`]: it
//! owns the UDP sockets and the clock, the core owns every ICE decision.
//! The layers:
//!
//! - [`time`]: the only conversions between tokio's clock and the core's
//!   [`Instant`](scream_ice_core::time::Instant).
//! - [`host`]: host candidate discovery (interfaces, filter, port range,
//!   local preference from the core).
//! - [`session`]: [`IceSession::start`] spawns one driver task per session
//!   that `select!`s over the sockets, the command channel and the agent's
//!   deadline, and drains the agent after every input.
//! - [`mdns`]: `.local` names for candidate lines; with the `mdns`
//!   feature, hiding private host addresses and resolving the peer's names.
//! - [`error`]: one error enum per operation.
//!
//! ```no_run
//! use scream_ice_tokio::{HostAddresses, IceSession, SessionConfig, SessionEvent};
//! use scream_ice_tokio::scream_ice_core::agent::Role;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = SessionConfig::new(Role::Controlling);
//! config.hosts = HostAddresses::Explicit(vec!["127.0.0.1:0".parse()?]);
//! let (session, mut events) = IceSession::start(config).await?;
//! let creds = session.local_credentials();
//! println!("ufrag {} pwd {}", creds.ufrag, creds.pwd);
//! // ... signal, then feed the peer's credentials and candidates:
//! // session.set_remote_credentials(ufrag, pwd).await?;
//! // session.add_remote_candidate_line(line).await?;
//! while let Some(e) = events.recv().await {
//!     match e {
//!         SessionEvent::LocalCandidate(c) => println!("a={}", session.local_candidate_line(&c)),
//!         SessionEvent::Selected { .. } => break,
//!         _ => {}
//!     }
//! }
//! session.send(b"hello").await?;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

pub mod error;
pub mod host;
pub mod mdns;
pub mod session;
pub mod time;

pub use error::{
    BindError, CloseError, ClosedError, DiscoverError, RemoteCandidateError,
    RemoteCredentialsError, RestartError, SendError, StartError,
};
pub use host::{HostAddresses, HostFilter, InterfaceInfo, PortRange};
#[cfg(feature = "mdns")]
pub use mdns::{MdnsDaemon, MdnsMode};
/// The mdns-sd crate this adapter uses (to build a [`MdnsDaemon`]
/// restricted to some interfaces).
#[cfg(feature = "mdns")]
pub use mdns_sd;
pub use scream_ice_core;
pub use session::{
    Datagram, IceAgent, IceSession, LocalCredentials, SessionConfig, SessionEvent, SessionEvents,
    StunServerSpec,
};
