//! The fan-out engine: one sink's RTP to every subscribed speaker.
//!
//! A [`Relay`] owns a set of subscribers, each with a [`Route`] (which of
//! the relay's sockets to send from, and the destination: the speaker's
//! side of its selected ICE pair). [`Forwarder::forward`] sends one datagram
//! to all of them with `sendmmsg(2)`: one system call per up to
//! [`BATCH`] subscribers of a socket, each message two iovecs (the RTP
//! prefix, shared by all, and the PCM, borrowed from the ingest buffer).
//! Nothing is allocated per datagram: the message headers and the
//! destination list are built when the subscriber set changes, and the
//! datagram is never copied per subscriber.
//!
//! Per subscriber the relay keeps the RTP state that differs between them:
//! whether its next datagram must carry the marker (the first one after it
//! subscribed), and what was sent to it. Everything else (SSRC, sequence,
//! timestamp) is the sink's, so all speakers see the same stream.
//!
//! Route changes ([`Relay::set_route`], e.g. after an ICE restart or when
//! the speaker's address changed) take effect at the next datagram: no
//! gap beyond the datagram in flight. The subscriber set sits behind one
//! mutex that the ingest thread takes once per datagram, so a change
//! waits at most for one `sendmmsg` round.
//!
//! UDP GSO (`UDP_SEGMENT`) does not apply here: it splits one buffer into
//! several datagrams to the *same* destination, while fan-out sends one
//! datagram to many destinations. `sendmmsg` is the batching that helps.

use std::io::IoSlice;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, MutexGuard};

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};

/// Most messages per `sendmmsg` call (Linux caps one call at 1024).
pub const BATCH: usize = 1024;

/// Where a subscriber's datagrams go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    /// Index of the relay socket to send from (see [`Relay::new`]).
    pub socket: usize,
    /// The speaker's address.
    pub destination: SocketAddr,
}

/// A subscriber's handle, unique within its relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriberId(u64);

/// What the relay did for one subscriber.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubscriberStats {
    /// Datagrams handed to the kernel.
    pub sent: u64,
    /// Datagrams the kernel refused (`sendmmsg` error for that message).
    pub errors: u64,
}

/// Relay-wide counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Datagrams forwarded (each to every subscriber).
    pub datagrams: u64,
    /// Messages sent, over all subscribers.
    pub messages: u64,
    /// Messages refused by the kernel.
    pub errors: u64,
    /// `sendmmsg` calls made.
    pub syscalls: u64,
}

/// Why a route cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RouteError {
    /// The route names a socket the relay does not have.
    #[error("relay has no socket {0}")]
    NoSuchSocket(usize),
    /// The destination's address family differs from the socket's.
    #[error("destination {0} is not reachable from a socket bound to {1}")]
    FamilyMismatch(SocketAddr, SocketAddr),
    /// No subscriber with that id.
    #[error("no such subscriber")]
    NoSuchSubscriber,
    /// The socket offered to the relay has no local address.
    #[error("socket is not bound")]
    Unbound,
}

struct Subscriber {
    id: SubscriberId,
    route: Route,
    marker: bool,
    stats: SubscriberStats,
}

struct Socket {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    /// Added by [`Relay::attach`]: dropped once no subscriber uses it.
    attached: bool,
}

struct Inner {
    /// The sending sockets by index; `None`: a slot freed by
    /// [`Relay::attach`]'s clean-up, reusable.
    sockets: Vec<Option<Socket>>,
    /// Sorted by socket index, so each socket's subscribers are one run.
    subs: Vec<Subscriber>,
    /// `addrs[i]` is `subs[i]`'s destination, prebuilt for `sendmmsg`.
    addrs: Vec<Option<SockaddrStorage>>,
    next_id: u64,
    stats: RelayStats,
}

/// The fan-out of one sink. Cheap to clone (a handle).
#[derive(Clone)]
pub struct Relay {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = self.lock();
        f.debug_struct("Relay")
            .field("subscribers", &g.subs.len())
            .field("stats", &g.stats)
            .finish()
    }
}

impl Relay {
    /// A relay sending from `sockets` (for example one per local address,
    /// shared with the ICE sessions that own the pairs).
    pub fn new(sockets: Vec<Arc<UdpSocket>>) -> std::io::Result<Relay> {
        let sockets = sockets
            .into_iter()
            .map(|s| {
                let local = s.local_addr()?;
                Ok(Some(Socket {
                    socket: s,
                    local,
                    attached: false,
                }))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Relay {
            inner: Arc::new(Mutex::new(Inner {
                sockets,
                subs: Vec::new(),
                addrs: Vec::new(),
                next_id: 1,
                stats: RelayStats::default(),
            })),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every
        // mutation is completed before anything can panic), so recover it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check(inner: &Inner, route: Route) -> Result<(), RouteError> {
        let local = inner
            .sockets
            .get(route.socket)
            .and_then(Option::as_ref)
            .ok_or(RouteError::NoSuchSocket(route.socket))?
            .local;
        if local.is_ipv4() != route.destination.is_ipv4() {
            return Err(RouteError::FamilyMismatch(route.destination, local));
        }
        Ok(())
    }

    /// The index of a sending socket bound where `socket` is, adding
    /// `socket` if the relay has none there yet. A socket added this way
    /// is released when its last subscriber leaves or moves away, so the
    /// relay never keeps a session's port bound after the session ends.
    fn attach(inner: &mut Inner, socket: Arc<UdpSocket>) -> Result<usize, RouteError> {
        let local = socket.local_addr().map_err(|_| RouteError::Unbound)?;
        if let Some(i) = inner
            .sockets
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.local == local))
        {
            return Ok(i);
        }
        let slot = Some(Socket {
            socket,
            local,
            attached: true,
        });
        Ok(match inner.sockets.iter().position(Option::is_none) {
            Some(i) => {
                inner.sockets[i] = slot;
                i
            }
            None => {
                inner.sockets.push(slot);
                inner.sockets.len() - 1
            }
        })
    }

    /// Subscribe `destination` sending from `socket`, which the relay
    /// takes on (if it has no socket bound there yet) for as long as a
    /// subscriber uses it: how a speaker session hands the relay the
    /// socket of its selected local candidate, the one its ICE checks use,
    /// so the speaker sees the audio come from the address it checked.
    pub fn subscribe_on(
        &self,
        socket: Arc<UdpSocket>,
        destination: SocketAddr,
    ) -> Result<(SubscriberId, Route), RouteError> {
        let mut g = self.lock();
        let route = Route {
            socket: Self::attach(&mut g, socket)?,
            destination,
        };
        // Under the same lock, so the socket cannot be released between.
        let id = Self::subscribe_locked(&mut g, route);
        if id.is_err() {
            Self::release_unused(&mut g);
        }
        id.map(|id| (id, route))
    }

    /// Move a subscriber to `destination` sent from `socket` (taken on as
    /// in [`Relay::subscribe_on`]); the socket it used before is released
    /// if nobody else uses it.
    pub fn set_route_on(
        &self,
        id: SubscriberId,
        socket: Arc<UdpSocket>,
        destination: SocketAddr,
    ) -> Result<Route, RouteError> {
        let mut g = self.lock();
        let route = Route {
            socket: Self::attach(&mut g, socket)?,
            destination,
        };
        let r = Self::set_route_locked(&mut g, id, route);
        Self::release_unused(&mut g);
        r.map(|()| route)
    }

    /// Release attached sockets no subscriber routes through.
    fn release_unused(inner: &mut Inner) {
        for i in 0..inner.sockets.len() {
            let unused = !inner.subs.iter().any(|s| s.route.socket == i);
            if unused && inner.sockets[i].as_ref().is_some_and(|s| s.attached) {
                inner.sockets[i] = None;
            }
        }
    }

    /// Add a subscriber; its first datagram carries the RTP marker.
    pub fn subscribe(&self, route: Route) -> Result<SubscriberId, RouteError> {
        Self::subscribe_locked(&mut self.lock(), route)
    }

    fn subscribe_locked(g: &mut Inner, route: Route) -> Result<SubscriberId, RouteError> {
        Self::check(g, route)?;
        let id = SubscriberId(g.next_id);
        g.next_id += 1;
        let at = g.subs.partition_point(|s| s.route.socket <= route.socket);
        g.subs.insert(
            at,
            Subscriber {
                id,
                route,
                marker: true,
                stats: SubscriberStats::default(),
            },
        );
        g.addrs.insert(at, Some(route.destination.into()));
        Ok(id)
    }

    /// Move a subscriber to a new route (ICE restart, address change):
    /// the next datagram goes there. Sequence numbers continue, so the
    /// speaker sees no discontinuity.
    pub fn set_route(&self, id: SubscriberId, route: Route) -> Result<(), RouteError> {
        let mut g = self.lock();
        Self::set_route_locked(&mut g, id, route)?;
        Self::release_unused(&mut g);
        Ok(())
    }

    fn set_route_locked(g: &mut Inner, id: SubscriberId, route: Route) -> Result<(), RouteError> {
        Self::check(g, route)?;
        let i = g
            .subs
            .iter()
            .position(|s| s.id == id)
            .ok_or(RouteError::NoSuchSubscriber)?;
        let mut sub = g.subs.remove(i);
        g.addrs.remove(i);
        sub.route = route;
        let at = g.subs.partition_point(|s| s.route.socket <= route.socket);
        g.subs.insert(at, sub);
        g.addrs.insert(at, Some(route.destination.into()));
        Ok(())
    }

    /// Remove a subscriber; returns what was sent to it.
    pub fn unsubscribe(&self, id: SubscriberId) -> Option<SubscriberStats> {
        let mut g = self.lock();
        let i = g.subs.iter().position(|s| s.id == id)?;
        g.addrs.remove(i);
        let stats = g.subs.remove(i).stats;
        Self::release_unused(&mut g);
        Some(stats)
    }

    /// The subscriber count.
    pub fn len(&self) -> usize {
        self.lock().subs.len()
    }

    /// Whether there are no subscribers.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A subscriber's route and counters.
    pub fn subscriber(&self, id: SubscriberId) -> Option<(Route, SubscriberStats)> {
        let g = self.lock();
        g.subs
            .iter()
            .find(|s| s.id == id)
            .map(|s| (s.route, s.stats))
    }

    /// Relay-wide counters.
    pub fn stats(&self) -> RelayStats {
        self.lock().stats
    }

    /// The sending side for the thread that ingests this relay's sink.
    pub fn forwarder(&self) -> Forwarder {
        Forwarder {
            relay: self.clone(),
            headers: MultiHeaders::preallocate(BATCH, None),
        }
    }
}

/// The ingest thread's end of a [`Relay`]: owns the preallocated
/// `sendmmsg` headers (which hold raw pointers, so they stay on one
/// thread).
pub struct Forwarder {
    relay: Relay,
    headers: MultiHeaders<SockaddrStorage>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("relay", &self.relay)
            .finish()
    }
}

impl Forwarder {
    /// The relay this forwards for.
    pub fn relay(&self) -> &Relay {
        &self.relay
    }

    /// Send one RTP datagram to every subscriber: `prefix` is the RTP
    /// header (and, for PT 127, the Scream header) as the sink framed it
    /// (its marker set after silence or a format change), `pcm` the
    /// payload. Subscribers due their first-datagram marker get it set in
    /// a copy of the prefix. Returns the messages sent. Allocates nothing.
    pub fn forward(&mut self, prefix: &[u8], pcm: &[u8]) -> usize {
        let mut g = self.relay.lock();
        let inner = &mut *g;
        let headers = &mut self.headers;
        if inner.subs.is_empty() {
            inner.stats.datagrams += 1;
            return 0;
        }
        let mut marked = [0u8; scream_ice_core::scream::MAX_PREFIX_LEN];
        let n = prefix.len().min(marked.len());
        marked[..n].copy_from_slice(&prefix[..n]);
        if n > 1 {
            marked[1] |= 0x80;
        }
        let plain_iov = [IoSlice::new(prefix), IoSlice::new(pcm)];
        let marked_iov = [IoSlice::new(&marked[..n]), IoSlice::new(pcm)];
        let mut sent_total = 0;
        let mut start = 0;
        while start < inner.subs.len() {
            let socket = inner.subs[start].route.socket;
            let run_end = start + inner.subs[start..].partition_point(|s| s.route.socket == socket);
            let Some(fd) = inner.sockets[socket].as_ref().map(|s| s.socket.as_raw_fd()) else {
                // Unreachable: a subscriber's socket is never released.
                start = run_end;
                continue;
            };
            let mut i = start;
            while i < run_end {
                let end = run_end.min(i + BATCH);
                let subs = &inner.subs[i..end];
                let iovs = subs
                    .iter()
                    .map(|s| if s.marker { &marked_iov } else { &plain_iov });
                inner.stats.syscalls += 1;
                let result = sendmmsg(
                    fd,
                    &mut *headers,
                    iovs,
                    &inner.addrs[i..end],
                    [],
                    MsgFlags::empty(),
                )
                .map(|r| r.count());
                match result {
                    Ok(0) | Err(Errno::EAGAIN) => {
                        // The socket buffer is full: drop the rest of this
                        // run for this datagram rather than block the sink.
                        for s in &mut inner.subs[i..end] {
                            s.stats.errors += 1;
                        }
                        inner.stats.errors += (end - i) as u64;
                        i = end;
                    }
                    Ok(k) => {
                        for s in &mut inner.subs[i..i + k] {
                            s.stats.sent += 1;
                            s.marker = false;
                        }
                        inner.stats.messages += k as u64;
                        sent_total += k;
                        i += k;
                    }
                    Err(_) => {
                        // This message failed (e.g. an unreachable
                        // destination): count it and go on with the next.
                        inner.subs[i].stats.errors += 1;
                        inner.stats.errors += 1;
                        i += 1;
                    }
                }
            }
            start = run_end;
        }
        inner.stats.datagrams += 1;
        sent_total
    }
}

/// Ask for a receive buffer of `bytes` (beyond `net.core.rmem_max` when
/// the process may, as root); returns the size the kernel granted.
pub fn grow_receive_buffer(socket: &UdpSocket, bytes: usize) -> usize {
    use nix::sys::socket::{getsockopt, setsockopt, sockopt};
    if setsockopt(socket, sockopt::RcvBufForce, &bytes).is_err() {
        let _ = setsockopt(socket, sockopt::RcvBuf, &bytes);
    }
    getsockopt(socket, sockopt::RcvBuf).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn socket() -> Arc<UdpSocket> {
        Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap())
    }

    fn receiver() -> UdpSocket {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s
    }

    #[test]
    fn fans_out_to_every_subscriber_with_a_marker_first() {
        let relay = Relay::new(vec![socket(), socket()]).unwrap();
        let mut fwd = relay.forwarder();
        let rx: Vec<UdpSocket> = (0..5).map(|_| receiver()).collect();
        for (i, r) in rx.iter().enumerate() {
            relay
                .subscribe(Route {
                    socket: i % 2,
                    destination: r.local_addr().unwrap(),
                })
                .unwrap();
        }
        let prefix = [0x80u8, 102, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9];
        let pcm = [7u8; 1152];
        assert_eq!(fwd.forward(&prefix, &pcm), 5);
        assert_eq!(fwd.forward(&prefix, &pcm), 5);
        let mut buf = [0u8; 2000];
        for r in &rx {
            let n = r.recv(&mut buf).unwrap();
            assert_eq!(n, 12 + 1152);
            assert_eq!(buf[1], 0x80 | 102, "first datagram is marked");
            assert_eq!(&buf[12..n], &pcm[..]);
            let n = r.recv(&mut buf).unwrap();
            assert_eq!(&buf[..12], &prefix[..]);
            assert_eq!(n, 1164);
        }
        let s = relay.stats();
        assert_eq!(
            (s.datagrams, s.messages, s.errors, s.syscalls),
            (2, 10, 0, 4)
        );
    }

    #[test]
    fn session_sockets_are_shared_by_address_and_released_with_their_last_subscriber() {
        let relay = Relay::new(Vec::new()).unwrap();
        let mut fwd = relay.forwarder();
        let (s1, s2) = (socket(), socket());
        let (ra, rb) = (receiver(), receiver());
        let (a, route_a) = relay
            .subscribe_on(s1.clone(), ra.local_addr().unwrap())
            .unwrap();
        // Another descriptor of the same socket (what a second session
        // sharing it would hand over) maps to the same slot.
        let dup = Arc::new(s1.try_clone().unwrap());
        let (b, route_b) = relay
            .subscribe_on(dup.clone(), rb.local_addr().unwrap())
            .unwrap();
        assert_eq!((route_a.socket, route_b.socket), (0, 0));
        assert_eq!((Arc::strong_count(&s1), Arc::strong_count(&dup)), (2, 1));
        let prefix = [0x80u8, 102, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9];
        assert_eq!(fwd.forward(&prefix, &[1; 4]), 2);
        let mut buf = [0u8; 64];
        for r in [&ra, &rb] {
            let (_, from) = r.recv_from(&mut buf).unwrap();
            assert_eq!(from, s1.local_addr().unwrap());
        }
        // a moves to the other socket; s1 stays (b uses it).
        let moved = relay
            .set_route_on(a, s2.clone(), ra.local_addr().unwrap())
            .unwrap();
        assert_eq!(moved.socket, 1);
        assert_eq!(fwd.forward(&prefix, &[2; 4]), 2);
        let (_, from) = ra.recv_from(&mut buf).unwrap();
        assert_eq!((from, buf[12]), (s2.local_addr().unwrap(), 2));
        assert_eq!(Arc::strong_count(&s1), 2);
        // Released with their last subscriber: nothing keeps the ports.
        relay.unsubscribe(b).unwrap();
        assert_eq!(Arc::strong_count(&s1), 1);
        relay.unsubscribe(a).unwrap();
        assert_eq!(Arc::strong_count(&s2), 1);
        // The freed slot is reused.
        let (_, r) = relay
            .subscribe_on(s2.clone(), rb.local_addr().unwrap())
            .unwrap();
        assert_eq!(r.socket, 0);
    }

    #[test]
    fn route_change_takes_effect_at_the_next_datagram() {
        let relay = Relay::new(vec![socket()]).unwrap();
        let mut fwd = relay.forwarder();
        let (a, b) = (receiver(), receiver());
        let id = relay
            .subscribe(Route {
                socket: 0,
                destination: a.local_addr().unwrap(),
            })
            .unwrap();
        let prefix = [0x80u8, 102, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9];
        fwd.forward(&prefix, &[1; 4]);
        relay
            .set_route(
                id,
                Route {
                    socket: 0,
                    destination: b.local_addr().unwrap(),
                },
            )
            .unwrap();
        fwd.forward(&prefix, &[2; 4]);
        let mut buf = [0u8; 64];
        assert_eq!(a.recv(&mut buf).unwrap(), 16);
        assert_eq!(buf[12], 1);
        assert_eq!(b.recv(&mut buf).unwrap(), 16);
        // Same stream, moved: no new marker.
        assert_eq!((buf[1], buf[12]), (102, 2));
        assert_eq!(relay.subscriber(id).unwrap().1.sent, 2);
        assert_eq!(relay.unsubscribe(id).unwrap().sent, 2);
        assert!(relay.is_empty());
        assert_eq!(fwd.forward(&prefix, &[3; 4]), 0);
    }

    #[test]
    fn bad_routes_are_refused() {
        let relay = Relay::new(vec![socket()]).unwrap();
        let v6: SocketAddr = "[::1]:9".parse().unwrap();
        let v4: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert!(matches!(
            relay.subscribe(Route {
                socket: 0,
                destination: v6
            }),
            Err(RouteError::FamilyMismatch(..))
        ));
        assert_eq!(
            relay.subscribe(Route {
                socket: 3,
                destination: v4
            }),
            Err(RouteError::NoSuchSocket(3))
        );
        assert_eq!(
            relay.set_route(
                SubscriberId(99),
                Route {
                    socket: 0,
                    destination: v4
                }
            ),
            Err(RouteError::NoSuchSubscriber)
        );
    }

    #[test]
    fn more_subscribers_than_one_batch() {
        let relay = Relay::new(vec![socket()]).unwrap();
        let mut fwd = relay.forwarder();
        // 1100 destinations 127.0.k.j:P_k, 110 per receiving socket bound
        // to 0.0.0.0:P_k, so that even a default (unprivileged) receive
        // buffer holds one socket's share of a single fan-out.
        let rxs: Vec<UdpSocket> = (0..10)
            .map(|_| {
                let rx = UdpSocket::bind("0.0.0.0:0").unwrap();
                rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                grow_receive_buffer(&rx, 4 << 20);
                rx
            })
            .collect();
        for i in 0..1100u32 {
            let port = rxs[(i / 110) as usize].local_addr().unwrap().port();
            let ip = std::net::Ipv4Addr::new(127, 0, (i / 250) as u8 + 1, (i % 250) as u8 + 1);
            relay
                .subscribe(Route {
                    socket: 0,
                    destination: SocketAddr::new(ip.into(), port),
                })
                .unwrap();
        }
        assert_eq!(
            fwd.forward(&[0x80, 102, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], &[0; 4]),
            1100
        );
        let mut buf = [0u8; 64];
        for rx in &rxs {
            let mut n = 0;
            while n < 110 && rx.recv(&mut buf).is_ok() {
                n += 1;
            }
            assert_eq!(n, 110);
        }
        assert_eq!(relay.stats().syscalls, 2);
    }
}
