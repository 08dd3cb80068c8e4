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
//! - [`session`]: [`SessionConfig`] and [`Driver::start`]: binding the
//!   host sockets and creating the core session.
//! - [`mux`]: [`UdpMux`], one socket per local address shared by many
//!   sessions (the router's single ICE port).
//! - [`mdns`]: `.local` names for candidate lines; with the `mdns`
//!   feature, hiding private host addresses and an mDNS [`Resolver`].
//! - [`error`]: one error enum per operation.
//!
//! ```no_run
//! use scream_ice_tokio::{Driver, HostAddresses, Output, SessionConfig, SessionEvent};
//! use scream_ice_tokio::scream_ice_core::agent::Role;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = SessionConfig::new(Role::Controlling);
//! config.hosts = HostAddresses::Explicit(vec!["127.0.0.1:0".parse()?]);
//! let mut driver = Driver::start(config).await?;
//! let creds = driver.local_credentials();
//! println!("ufrag {} pwd {}", creds.ufrag, creds.pwd);
//! // ... signal, then feed the peer's credentials and candidates:
//! // driver.set_remote_credentials(ufrag, pwd)?;
//! // driver.add_remote_candidate_line(line).await?;
//! // An application select!s over `driver.next()` and its own inputs.
//! loop {
//!     match driver.next().await {
//!         Output::Event(SessionEvent::LocalCandidate(c)) => {
//!             println!("a={}", driver.local_candidate_line(&c))
//!         }
//!         Output::Event(SessionEvent::Selected { .. }) => break,
//!         _ => {}
//!     }
//! }
//! if let Some((socket, _local, remote)) = driver.selected_path() {
//!     socket.send_to(b"hello", remote).await?;
//! }
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

pub mod driver;
pub mod error;
pub mod host;
pub mod mdns;
pub mod mux;
pub mod resolve;
pub mod session;
pub mod time;

pub use driver::{CheckBudget, CoreSession, Driver, Output};
pub use error::{BindError, DiscoverError, RemoteCandidateError, StartError};
pub use host::{HostAddresses, HostFilter, InterfaceInfo, PortRange};
#[cfg(feature = "mdns")]
pub use mdns::{MdnsDaemon, MdnsMode, MdnsResolver};
/// The mdns-sd crate this adapter uses (to build a [`MdnsDaemon`]
/// restricted to some interfaces).
#[cfg(feature = "mdns")]
pub use mdns_sd;
pub use mux::{MuxChange, MuxStats, UdpMux};
pub use resolve::{AddressFilter, Resolver, SystemResolver};
pub use scream_ice_core;
pub use session::{
    Datagram, LocalCredentials, OwnedPolicy, OwnedTurnServer, SessionConfig, SessionEvent,
};
