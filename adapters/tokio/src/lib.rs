//! scream-ice-tokio: a thin tokio loop around the scream-ice core's sans-IO
//! ICE session ([`scream_ice_core::session`]).
//!
//! This crate sits between the application (the ScreamRouter daemon, the
//! `scream-ice connect` simulator, tests) and the core session: it owns the
//! UDP sockets, the clock and the name resolver; the core owns every ICE
//! decision (credentials, offer filter, local preferences, the fallback
//! ladder, re-announcing). The layers:
//!
//! - [`time`]: the only conversions between tokio's clock and the core's
//!   [`Instant`](scream_ice_core::time::Instant).
//! - [`host`]: host candidate discovery (interfaces, filter, port range).
//! - [`resolve`]: the [`Resolver`] trait (STUN server names, candidate host
//!   names) and the system resolver.
//! - [`driver`]: the loop: [`Driver::next`] waits on the sockets, the
//!   session's deadline and lookups, feeds the session and drains it.
//! - [`session`]: [`IceSession`], a driver in its own task behind a handle
//!   (or [`IceSession::start_driver`] for an application that drives it).
//! - [`mdns`]: `.local` names for candidate lines; with the `mdns`
//!   feature, hiding private host addresses and an mDNS [`Resolver`].
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

pub mod driver;
pub mod error;
pub mod host;
pub mod mdns;
pub mod resolve;
pub mod session;
pub mod time;

pub use driver::{CoreSession, Driver, Output};
pub use error::{
    BindError, CloseError, ClosedError, DiscoverError, RemoteCandidateError,
    RemoteCredentialsError, RestartError, SendError, StartError,
};
pub use host::{HostAddresses, HostFilter, InterfaceInfo, PortRange};
#[cfg(feature = "mdns")]
pub use mdns::{MdnsDaemon, MdnsMode, MdnsResolver};
/// The mdns-sd crate this adapter uses (to build a [`MdnsDaemon`]
/// restricted to some interfaces).
#[cfg(feature = "mdns")]
pub use mdns_sd;
pub use resolve::{Resolver, SystemResolver};
pub use scream_ice_core;
pub use session::{
    Datagram, IceSession, LocalCredentials, OwnedPolicy, OwnedTurnServer, SessionConfig,
    SessionEvent, SessionEvents, Started,
};
