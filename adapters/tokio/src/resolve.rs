//! Name resolution behind one trait: STUN server host names (the core
//! session's [`Request::Resolve`](scream_ice_core::session::Request)) and
//! remote candidates that carry a host name instead of an IP (RFC 8839
//! allows an FQDN; browsers send mDNS `.local` names).
//!
//! [`SystemResolver`] asks the system resolver ([`tokio::net::lookup_host`])
//! within a timeout. With the `mdns` feature,
//! `MdnsResolver` (in `mdns`) answers `.local` names over
//! mDNS and hands every other name to the system resolver. A name that does
//! not resolve yields no address: the server or candidate is skipped, the
//! session goes on.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use tracing::warn;

/// A boxed resolution: the addresses `name` resolved to, with `port` on
/// each (empty when it did not resolve in time).
pub type Resolution = Pin<Box<dyn Future<Output = Vec<SocketAddr>> + Send + 'static>>;

/// Resolves host names for a session. Implementations bound their own time
/// (a lookup that never ends would hold end-of-candidates back).
pub trait Resolver: fmt::Debug + Send + Sync + 'static {
    /// Resolve `name` and put `port` on every address.
    fn resolve(&self, name: &str, port: u16) -> Resolution;
}

/// Which addresses a remote candidate's host name may resolve to: a name
/// is the peer's to choose, so an application that checks the addresses
/// of its peer's candidates ([`crate::SessionConfig::resolved_filter`])
/// checks what each name resolved to in the same way. The first address
/// allowed is used; when none is, the candidate is skipped.
pub trait AddressFilter: fmt::Debug + Send + Sync + 'static {
    /// Whether a remote candidate may have this address.
    fn allows(&self, address: SocketAddr) -> bool;
}

/// The first of `addrs` that `filter` allows (the first of all without one).
pub(crate) fn first_allowed(
    addrs: &[SocketAddr],
    filter: Option<&dyn AddressFilter>,
) -> Option<SocketAddr> {
    addrs
        .iter()
        .copied()
        .find(|a| filter.is_none_or(|f| f.allows(*a)))
}

/// The system resolver with a timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SystemResolver {
    /// How long one lookup may take.
    pub timeout: Duration,
}

impl Resolver for SystemResolver {
    fn resolve(&self, name: &str, port: u16) -> Resolution {
        let name = name.to_owned();
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, tokio::net::lookup_host((name.as_str(), port)))
                .await
            {
                Ok(Ok(addrs)) => addrs.collect(),
                Ok(Err(e)) => {
                    warn!("{name} did not resolve: {e}");
                    Vec::new()
                }
                Err(_) => {
                    warn!("{name} did not resolve within {timeout:?}");
                    Vec::new()
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn localhost_resolves_from_the_hosts_file() {
        let r = SystemResolver {
            timeout: Duration::from_secs(2),
        };
        let a = r.resolve("localhost", 3478).await;
        assert!(
            a.iter().any(|a| a.ip().is_loopback() && a.port() == 3478),
            "{a:?}"
        );
    }
}
