//! A speaker session's subscription to a sink: the link between
//! [`crate::sessions`] (ICE) and [`crate::relay`] (audio fan-out).
//!
//! A speaker asks for a sink with `POST /api/ice/sessions?sink=NAME`
//! ([`lookup`]: 404 for a sink the router does not have, 400 for an empty
//! name). Its session actor then owns one [`Subscription`] and calls
//! [`Subscription::follow`] whenever the session selects a pair (the first
//! selection, a new pair after an ICE restart or an address change): the
//! first call subscribes the speaker's side of the pair, sent from the
//! socket of our side's local candidate (the socket the ICE checks use, so
//! consent and audio share the 5-tuple), later calls move the route
//! ([`Relay::set_route_on`]) at the next datagram, with the RTP sequence
//! continuing. Dropping the subscription (the session ends, whatever the
//! reason) unsubscribes.
//!
//! The tokio adapter's sockets are shared with the relay's sending thread
//! as a duplicate of the file descriptor (`dup(2)`): the same kernel
//! socket, so the same local address and port, without changing the
//! adapter. The relay keeps the duplicate only while a subscriber routes
//! through it.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;

use scream_ice_core::scream::Rtpmap;

use crate::relay::{Relay, RouteError, SubscriberId};
use crate::sinks::SinkSet;

/// Why `?sink=NAME` names no sink: the status and the one-line reason.
pub fn lookup<'s>(
    sinks: Option<&'s SinkSet>,
    name: &str,
) -> Result<&'s crate::sinks::Sink, (u16, String)> {
    if name.is_empty() {
        return Err((400, "the sink parameter is empty (use ?sink=NAME)".into()));
    }
    sinks
        .and_then(|s| s.get(name))
        .ok_or_else(|| (404, format!("no sink named {name:?} on this router")))
}

/// The `a=rtpmap` line announcing the sink's current format, if it has
/// received audio yet (the payload type table is fixed, docs/AUDIO.md, so
/// a speaker decodes without it; it tells RTP tools and humans what to
/// expect).
pub fn rtpmap_line(sink: &crate::sinks::Sink) -> Option<String> {
    sink.stats().format.map(|f| format!("{}\r\n", Rtpmap(f)))
}

/// One session's subscription to one sink. See the module docs.
#[derive(Debug)]
pub struct Subscription {
    sink: String,
    relay: Relay,
    /// The subscriber and the pair (local, remote) it is routed over.
    current: Option<(SubscriberId, SocketAddr, SocketAddr)>,
}

impl Subscription {
    /// Not subscribed yet: that happens at the first [`Subscription::follow`].
    pub fn new(sink: &crate::sinks::Sink) -> Subscription {
        Subscription {
            sink: sink.name().to_string(),
            relay: sink.relay().clone(),
            current: None,
        }
    }

    /// The sink's name.
    pub fn sink(&self) -> &str {
        &self.sink
    }

    /// Route the sink's audio over the selected pair `path` (our socket,
    /// our address, the speaker's address; [`scream_ice_tokio::Driver::selected_path`]).
    /// Subscribes at the first call, moves the route when the pair
    /// changed, does nothing when it did not. `Ok(true)` when something
    /// changed.
    pub fn follow(
        &mut self,
        path: (Arc<tokio::net::UdpSocket>, SocketAddr, SocketAddr),
    ) -> Result<bool, FollowError> {
        let (socket, local, remote) = path;
        if let Some((_, l, r)) = self.current
            && (l, r) == (local, remote)
        {
            return Ok(false);
        }
        let fd = socket
            .as_fd()
            .try_clone_to_owned()
            .map_err(FollowError::Dup)?;
        let shared = Arc::new(std::net::UdpSocket::from(fd));
        let id = match self.current {
            None => self.relay.subscribe_on(shared, remote)?.0,
            Some((id, ..)) => {
                self.relay.set_route_on(id, shared, remote)?;
                id
            }
        };
        self.current = Some((id, local, remote));
        Ok(true)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some((id, ..)) = self.current.take()
            && let Some(stats) = self.relay.unsubscribe(id)
        {
            tracing::info!(
                sink = %self.sink,
                sent = stats.sent,
                errors = stats.errors,
                "speaker unsubscribed"
            );
        }
    }
}

/// Why a selected pair could not be subscribed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FollowError {
    /// Duplicating the session's socket failed (out of descriptors).
    #[error("cannot share the session's socket with the relay: {0}")]
    Dup(std::io::Error),
    /// The relay refused the route.
    #[error(transparent)]
    Route(#[from] RouteError),
}
