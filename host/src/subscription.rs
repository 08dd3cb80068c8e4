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

/// One session's subscription to one sink. See the module docs.
#[derive(Debug)]
pub struct Subscription {
    sink: String,
    relay: Relay,
    format: crate::sinks::FormatHandle,
    /// The subscriber and the pair (local, remote) it is routed over.
    current: Option<(SubscriberId, SocketAddr, SocketAddr)>,
}

impl Subscription {
    /// Not subscribed yet: that happens at the first [`Subscription::follow`].
    pub fn new(sink: &crate::sinks::Sink) -> Subscription {
        Subscription {
            sink: sink.name().to_string(),
            relay: sink.relay().clone(),
            format: sink.format_handle(),
            current: None,
        }
    }

    /// The sink's name.
    pub fn sink(&self) -> &str {
        &self.sink
    }

    /// The `a=rtpmap` line announcing the sink's format now, if it has
    /// received audio yet (the payload type table is fixed, docs/AUDIO.md,
    /// so a speaker decodes without it; it tells RTP tools and humans what
    /// to expect, also after a format change).
    pub fn rtpmap_line(&self) -> Option<String> {
        self.format.current().map(|f| format!("{}\r\n", Rtpmap(f)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::Relay;
    use std::time::Duration;

    fn receiver() -> std::net::UdpSocket {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s
    }

    /// What the session actor does on each selected pair: subscribe at the
    /// first, nothing for the same pair again, move on a new pair (another
    /// local socket and another speaker address, as after an ICE restart
    /// that selected a different pair), unsubscribe on drop.
    #[tokio::test]
    async fn follows_the_selected_pair_and_unsubscribes_on_drop() {
        let relay = Relay::new(Vec::new()).unwrap();
        let mut fwd = relay.forwarder();
        let sink_socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let sink = crate::sinks::Sink::start_on("t".into(), sink_socket, relay.clone()).unwrap();
        let mut sub = Subscription::new(&sink);
        let (a, b) = (
            Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap()),
            Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap()),
        );
        let (spk1, spk2) = (receiver(), receiver());
        let path = |s: &Arc<tokio::net::UdpSocket>, r: &std::net::UdpSocket| {
            (s.clone(), s.local_addr().unwrap(), r.local_addr().unwrap())
        };
        assert!(sub.follow(path(&a, &spk1)).unwrap());
        assert!(
            !sub.follow(path(&a, &spk1)).unwrap(),
            "same pair: no change"
        );
        assert_eq!(relay.len(), 1);
        let prefix = [0x80u8, 102, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9];
        fwd.forward(&prefix, &[1; 4]);
        let mut buf = [0u8; 64];
        let (_, from) = spk1.recv_from(&mut buf).unwrap();
        assert_eq!((from, buf[12]), (a.local_addr().unwrap(), 1));
        assert!(sub.follow(path(&b, &spk2)).unwrap());
        fwd.forward(&prefix, &[2; 4]);
        let (_, from) = spk2.recv_from(&mut buf).unwrap();
        assert_eq!((from, buf[12]), (b.local_addr().unwrap(), 2));
        drop(sub);
        assert!(relay.is_empty());
    }

    #[test]
    fn unknown_and_empty_sinks_are_refused() {
        let set = SinkSet::default();
        assert_eq!(lookup(Some(&set), "x").unwrap_err().0, 404);
        assert_eq!(lookup(None, "x").unwrap_err().0, 404);
        assert_eq!(lookup(Some(&set), "").unwrap_err().0, 400);
    }
}
