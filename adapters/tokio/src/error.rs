//! One error enum per operation. Network input never produces an error
//! here: a bad datagram is the agent's business (dropped or answered), a
//! failed send is logged; these are the caller's mistakes and the machine's
//! refusals.

use std::io;
use std::net::SocketAddr;

use scream_ice_core::agent::AgentError;
use scream_ice_core::candidate::CandidateAttributeError;

use crate::host::PortRange;

/// Listing the machine's interfaces failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoverError {
    /// `getifaddrs` failed.
    #[error("cannot list network interfaces: {0}")]
    Io(#[source] io::Error),
}

/// Binding a host socket failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    /// The system refused the address.
    #[error("cannot bind UDP {address}: {source}")]
    Io {
        /// The address asked for.
        address: SocketAddr,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// Every port of the range is taken on this address.
    #[error("no free UDP port in {range} on {}", address.ip())]
    PortRangeExhausted {
        /// The address asked for.
        address: SocketAddr,
        /// The range tried.
        range: PortRange,
    },
}

/// [`Driver::start`](crate::Driver::start) failed; nothing is left running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The system's random source failed (seed, ufrag, password).
    #[error("system randomness unavailable: {0}")]
    Random(getrandom::Error),
    /// Interface discovery failed.
    #[error(transparent)]
    Discover(#[from] DiscoverError),
    /// An explicit bind address could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// No address passed the filter, or none could be bound.
    #[error("no usable host address (check the interface filter and explicit addresses)")]
    NoHostCandidates,
    /// The policy does not pass [`PolicyConfig::validate`] (e.g. a STUN
    /// server URL that does not parse).
    ///
    /// [`PolicyConfig::validate`]: scream_ice_core::policy::PolicyConfig::validate
    #[error("invalid ICE policy: {0}")]
    Policy(#[source] scream_ice_core::policy::ConfigError),
    /// The core session refused the configuration.
    #[error("ICE session refused the configuration: {0}")]
    Session(#[source] scream_ice_core::session::SessionError),
    /// Obfuscation was asked for but no mDNS daemon could be started.
    #[cfg(feature = "mdns")]
    #[error("cannot start the mDNS responder: {0}")]
    Mdns(#[source] mdns_sd::Error),
}

/// Adding a remote candidate failed; the session goes on without it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteCandidateError {
    /// The `candidate:` line does not parse.
    #[error("bad candidate line: {0}")]
    Parse(#[source] CandidateAttributeError),
    /// The candidate names a host (e.g. an mDNS `.local` name) that did not
    /// resolve; the candidate is skipped.
    #[error("candidate host name {name:?} did not resolve")]
    Unresolved {
        /// The name.
        name: String,
    },
    /// The name resolved, but only to addresses the session's
    /// [`AddressFilter`](crate::resolve::AddressFilter) refuses.
    #[error("candidate host name {name:?} resolved only to refused addresses")]
    Refused {
        /// The name.
        name: String,
    },
    /// The agent refused it (TCP, duplicate, full, unusable address).
    #[error("remote candidate rejected: {0}")]
    Rejected(#[source] AgentError),
}
