//! One UDP socket per local address, shared by many sessions: the
//! router's single ICE port, as SFUs run it.
//!
//! A [`UdpMux`] binds its sockets once; every session started with
//! [`crate::SessionConfig::mux`] uses them as its host sockets instead of
//! binding its own. One receive task per socket reads every datagram and
//! hands it to the session it belongs to ([`scream_ice_core::session::demux`]):
//!
//! - a Binding request goes to the session whose local ufrag is the first
//!   half of its USERNAME (RFC 8445 section 7.2.2), since its sender may be
//!   a peer-reflexive address no session has seen yet;
//! - a STUN response goes to the session that sent the request with its
//!   transaction ID (so sessions asking one STUN server, or checking one
//!   peer address, each get their own answers);
//! - anything else (indications, media, a response to an unknown
//!   transaction) goes to the session that last sent to that remote
//!   address from that socket.
//!
//! A session learns remote addresses only from its own transmits (its
//! checks, and its answers to checks that passed MESSAGE-INTEGRITY), so a
//! forged datagram cannot move another session's route. A datagram nobody
//! claims is dropped and counted ([`MuxStats::unrouted`]); one for a
//! session whose queue ([`SESSION_QUEUE`]) is full is dropped as the
//! network would drop it ([`MuxStats::dropped`]), and the agent
//! retransmits.
//!
//! Sending is unchanged: a session sends from the shared socket of its
//! pair's local address, and the sink relay ([`crate::Driver::selected_path`]
//! hands it that socket) batches every speaker of one socket into one
//! `sendmmsg`. A mux from [`UdpMux::bind_discovered`] follows interface
//! changes when [`UdpMux::rescan`] is called (or periodically, with
//! [`UdpMux::follow_interfaces`]): an address that appeared is bound and
//! used by the sessions started after; the mux drops the socket of one
//! that went away and stops reading it (a session whose selected pair used
//! it loses consent, and the socket closes when the last such session ends).

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use scream_ice_core::session::{Demux, demux};
use scream_ice_core::stun::{Class, Message};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::error::{BindError, DiscoverError, StartError};
use crate::host::{HostAddresses, HostFilter, HostSocket, bind_address, discover};

/// Datagrams queued for one session before further ones are dropped.
pub const SESSION_QUEUE: usize = 64;

/// Outstanding request transaction IDs remembered per session (checks,
/// consent and STUN queries in flight at once); the oldest is forgotten
/// first (its response is then routed by remote address). Allocated when
/// the session registers, so a session's memory does not grow.
pub const TRANSACTIONS_PER_SESSION: usize = 16;

/// Largest UDP payload received.
const RECV_BUFFER: usize = 65_536;

/// What the mux did with the datagrams it received.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MuxStats {
    /// Handed to a session.
    pub routed: u64,
    /// Claimed by no session (unknown ufrag or remote address): dropped.
    pub unrouted: u64,
    /// For a session whose queue was full: dropped.
    pub dropped: u64,
}

/// Shared UDP sockets and the table routing their datagrams to sessions.
/// Cheap to clone (a handle); the sockets close and the receive tasks end
/// when the last handle and the last session using it are dropped.
#[derive(Clone)]
pub struct UdpMux {
    inner: Arc<Inner>,
}

struct Inner {
    /// The shared sockets, each with its receive task.
    sockets: Mutex<Vec<(HostSocket, JoinHandle<()>)>>,
    table: Arc<Mutex<Table>>,
    /// What [`UdpMux::rescan`] discovers: the filter and the port to bind.
    discovery: Option<(HostFilter, u16)>,
    /// Held for a whole rescan: two at once would both bind an address
    /// that appeared (with port 0, twice).
    rescanning: tokio::sync::Mutex<()>,
    /// The task of [`UdpMux::follow_interfaces`], if started.
    follower: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for (_, task) in lock(&self.sockets).iter() {
            task.abort();
        }
        if let Some(task) = lock(&self.follower).take() {
            task.abort();
        }
    }
}

/// What one [`UdpMux::rescan`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MuxChange {
    /// Sockets bound on addresses that appeared.
    pub added: Vec<SocketAddr>,
    /// Sockets dropped because their address went away.
    pub removed: Vec<SocketAddr>,
}

#[derive(Default)]
struct Table {
    next_key: u64,
    sessions: HashMap<u64, mpsc::Sender<Muxed>>,
    by_ufrag: HashMap<String, u64>,
    /// `(local, remote)` to the session that last sent there.
    by_remote: HashMap<(SocketAddr, SocketAddr), u64>,
    /// Transaction IDs of requests sent, to their session.
    by_transaction: HashMap<[u8; 12], u64>,
    stats: MuxStats,
}

/// A datagram for one session.
#[derive(Debug)]
pub(crate) struct Muxed {
    pub(crate) local: SocketAddr,
    pub(crate) from: SocketAddr,
    pub(crate) data: Vec<u8>,
}

impl fmt::Debug for UdpMux {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpMux")
            .field("addresses", &self.local_addresses())
            .field("sessions", &lock(&self.inner.table).sessions.len())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while the lock was held left the value consistent (every
    // update is a single map or list operation), so a poisoned lock is
    // still used.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl UdpMux {
    /// Bind one socket on each of `addresses` (port 0: one the system
    /// picks) and start their receive tasks (on the current tokio runtime).
    pub async fn bind(addresses: &[SocketAddr]) -> Result<UdpMux, BindError> {
        UdpMux::bind_with(addresses, None).await
    }

    async fn bind_with(
        addresses: &[SocketAddr],
        discovery: Option<(HostFilter, u16)>,
    ) -> Result<UdpMux, BindError> {
        let mut sockets = Vec::with_capacity(addresses.len());
        for a in addresses {
            sockets.push(HostSocket::bind(*a, None, 0).await?);
        }
        let table = Arc::new(Mutex::new(Table::default()));
        let sockets = sockets
            .into_iter()
            .map(|h| {
                let task = spawn_receive(&h, &table);
                (h, task)
            })
            .collect();
        Ok(UdpMux {
            inner: Arc::new(Inner {
                sockets: Mutex::new(sockets),
                table,
                discovery,
                rescanning: tokio::sync::Mutex::new(()),
                follower: Mutex::new(None),
            }),
        })
    }

    /// Discover the interfaces again (a mux from
    /// [`UdpMux::bind_discovered`]; for one from [`UdpMux::bind`] nothing
    /// changes): bind the mux's port on every address that appeared, drop
    /// the sockets of addresses that went away. An address whose bind
    /// fails is skipped (logged) and tried again at the next rescan.
    pub async fn rescan(&self) -> Result<MuxChange, DiscoverError> {
        let Some((filter, port)) = &self.inner.discovery else {
            return Ok(MuxChange::default());
        };
        let _one_at_a_time = self.inner.rescanning.lock().await;
        let wanted: Vec<SocketAddr> = discover(filter)?
            .iter()
            .map(|i| with_port(bind_address(i), *port))
            .collect();
        let mut change = MuxChange::default();
        let bound: Vec<SocketAddr> = {
            let mut sockets = lock(&self.inner.sockets);
            sockets.retain(|(h, task)| {
                let keep = wanted.iter().any(|w| w.ip() == h.address.ip());
                if !keep {
                    task.abort();
                    change.removed.push(h.address);
                }
                keep
            });
            sockets.iter().map(|(h, _)| h.address).collect()
        };
        for w in wanted
            .into_iter()
            .filter(|w| !bound.iter().any(|b| b.ip() == w.ip()))
        {
            match HostSocket::bind(w, None, 0).await {
                Ok(h) => {
                    let task = spawn_receive(&h, &self.inner.table);
                    change.added.push(h.address);
                    lock(&self.inner.sockets).push((h, task));
                }
                Err(e) => warn!("shared ICE socket on {w} not bound: {e}"),
            }
        }
        Ok(change)
    }

    /// Bind `port` on every interface address `filter` accepts (see
    /// [`UdpMux::bind`]). Each session then uses the subset its own
    /// [`HostAddresses`] accepts.
    pub async fn bind_discovered(filter: &HostFilter, port: u16) -> Result<UdpMux, StartError> {
        let addrs: Vec<SocketAddr> = discover(filter)?
            .iter()
            .map(|i| with_port(bind_address(i), port))
            .collect();
        if addrs.is_empty() {
            return Err(StartError::NoHostCandidates);
        }
        Ok(UdpMux::bind_with(&addrs, Some((filter.clone(), port))).await?)
    }

    /// [`UdpMux::rescan`] every `every`, in a task on the current tokio
    /// runtime, logging each change; the task ends with the mux (it holds
    /// no handle between rescans). Calling it again replaces the task.
    pub fn follow_interfaces(&self, every: std::time::Duration) {
        let mux = Arc::downgrade(&self.inner);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(inner) = mux.upgrade() else { return };
                match (UdpMux { inner }).rescan().await {
                    Ok(c) => {
                        for a in &c.added {
                            info!("shared ICE socket bound on {a}");
                        }
                        for a in &c.removed {
                            info!("shared ICE socket on {a} dropped: its address went away");
                        }
                    }
                    Err(e) => warn!("interfaces not listed for the shared ICE sockets: {e}"),
                }
            }
        });
        if let Some(old) = lock(&self.inner.follower).replace(task) {
            old.abort();
        }
    }

    /// The bound addresses of the shared sockets.
    pub fn local_addresses(&self) -> Vec<SocketAddr> {
        lock(&self.inner.sockets)
            .iter()
            .map(|(h, _)| h.address)
            .collect()
    }

    /// Sessions registered now.
    pub fn sessions(&self) -> usize {
        lock(&self.inner.table).sessions.len()
    }

    /// What the receive tasks did so far.
    pub fn stats(&self) -> MuxStats {
        lock(&self.inner.table).stats
    }

    /// The shared sockets a session with `hosts` uses, at most `max`:
    /// explicit addresses match by IP (and by port unless it is 0);
    /// discovery matches the IPs the filter accepts now.
    pub(crate) fn hosts_for(
        &self,
        hosts: &HostAddresses,
        max: usize,
    ) -> Result<Vec<HostSocket>, StartError> {
        let discovered = match hosts {
            HostAddresses::Discover(filter) => discover(filter)?,
            HostAddresses::Explicit(_) => Vec::new(),
        };
        let wanted = |a: SocketAddr| match hosts {
            HostAddresses::Explicit(list) => list
                .iter()
                .any(|e| e.ip() == a.ip() && (e.port() == 0 || e.port() == a.port())),
            HostAddresses::Discover(_) => discovered.iter().any(|i| i.address == a.ip()),
        };
        let out: Vec<HostSocket> = lock(&self.inner.sockets)
            .iter()
            .map(|(h, _)| h)
            .filter(|h| wanted(h.address))
            .take(max)
            .cloned()
            .collect();
        if out.is_empty() {
            return Err(StartError::NoHostCandidates);
        }
        Ok(out)
    }

    /// Register a session whose local ufrag is `ufrag`.
    pub(crate) fn register(&self, ufrag: &str) -> Registration {
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        let mut t = lock(&self.inner.table);
        let key = t.next_key;
        t.next_key += 1;
        t.sessions.insert(key, tx);
        if t.by_ufrag.insert(ufrag.into(), key).is_some() {
            warn!("two sessions drew the ufrag {ufrag}: the newer one gets its checks");
        }
        drop(t);
        Registration {
            mux: self.clone(),
            key,
            ufrag: ufrag.into(),
            rx,
            transactions: std::collections::VecDeque::with_capacity(TRANSACTIONS_PER_SESSION),
        }
    }
}

fn with_port(mut a: SocketAddr, port: u16) -> SocketAddr {
    a.set_port(port);
    a
}

fn spawn_receive(h: &HostSocket, table: &Arc<Mutex<Table>>) -> JoinHandle<()> {
    tokio::spawn(receive(h.address, Arc::clone(&h.socket), Arc::clone(table)))
}

/// Read `socket` forever, handing each datagram to its session.
async fn receive(local: SocketAddr, socket: Arc<UdpSocket>, table: Arc<Mutex<Table>>) {
    let mut buf = vec![0u8; RECV_BUFFER];
    loop {
        let (len, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            // An ICMP error reported on the socket (a peer's port closed):
            // nothing to route, the next datagram is unaffected.
            Err(e) => {
                debug!("receive on shared socket {local}: {e}");
                continue;
            }
        };
        let bytes = &buf[..len];
        let mut t = lock(&table);
        let key = match demux(bytes) {
            Demux::Request { ufrag } => t.by_ufrag.get(ufrag).copied(),
            demuxed => response_transaction(bytes)
                .filter(|_| matches!(demuxed, Demux::Stun))
                .and_then(|id| t.by_transaction.remove(&id))
                .or_else(|| t.by_remote.get(&(local, from)).copied()),
        };
        let Some(tx) = key.and_then(|k| t.sessions.get(&k)) else {
            t.stats.unrouted += 1;
            continue;
        };
        let m = Muxed {
            local,
            from,
            data: bytes.to_vec(),
        };
        match tx.try_send(m) {
            Ok(()) => t.stats.routed += 1,
            Err(TrySendError::Full(_)) => t.stats.dropped += 1,
            // The session is being dropped; its registration goes next.
            Err(TrySendError::Closed(_)) => t.stats.unrouted += 1,
        }
    }
}

/// The transaction ID of a STUN response (success or error).
fn response_transaction(bytes: &[u8]) -> Option<[u8; 12]> {
    let m = Message::new_checked(bytes).ok()?;
    matches!(m.class(), Class::SuccessResponse | Class::ErrorResponse).then(|| m.transaction_id().0)
}

/// The transaction ID of a STUN request.
fn request_transaction(bytes: &[u8]) -> Option<[u8; 12]> {
    let m = Message::new_checked(bytes).ok()?;
    (m.class() == Class::Request).then(|| m.transaction_id().0)
}

/// One session's place in a [`UdpMux`]: its queue of datagrams, its ufrag,
/// the remote addresses it sent to and its outstanding transactions.
/// Dropping it removes all of them.
pub(crate) struct Registration {
    mux: UdpMux,
    key: u64,
    ufrag: String,
    rx: mpsc::Receiver<Muxed>,
    /// Transaction IDs of this session's requests in `by_transaction`,
    /// oldest first.
    transactions: std::collections::VecDeque<[u8; 12]>,
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("ufrag", &self.ufrag)
            .finish_non_exhaustive()
    }
}

impl Registration {
    /// The next datagram for this session (cancel-safe). Never returns
    /// while the mux has no receive task left.
    pub(crate) async fn recv(&mut self) -> Muxed {
        match self.rx.recv().await {
            Some(m) => m,
            None => std::future::pending().await,
        }
    }

    /// Follow an ICE restart's new local ufrag.
    pub(crate) fn set_ufrag(&mut self, ufrag: &str) {
        if self.ufrag == ufrag {
            return;
        }
        let mut t = lock(&self.mux.inner.table);
        if t.by_ufrag.get(&self.ufrag) == Some(&self.key) {
            t.by_ufrag.remove(&self.ufrag);
        }
        t.by_ufrag.insert(ufrag.into(), self.key);
        drop(t);
        self.ufrag = ufrag.into();
    }

    /// The session sends `bytes` from `local` to `remote`: what comes
    /// back from there is its own, and so is the response to a request.
    pub(crate) fn learn(&mut self, local: SocketAddr, remote: SocketAddr, bytes: &[u8]) {
        let mut t = lock(&self.mux.inner.table);
        if t.by_remote.get(&(local, remote)) != Some(&self.key) {
            t.by_remote.insert((local, remote), self.key);
        }
        let Some(id) = request_transaction(bytes) else {
            return;
        };
        // A retransmission keeps its place.
        if self.transactions.contains(&id) {
            t.by_transaction.insert(id, self.key);
            return;
        }
        if self.transactions.len() == TRANSACTIONS_PER_SESSION
            && let Some(old) = self.transactions.pop_front()
            && t.by_transaction.get(&old) == Some(&self.key)
        {
            t.by_transaction.remove(&old);
        }
        self.transactions.push_back(id);
        t.by_transaction.insert(id, self.key);
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut t = lock(&self.mux.inner.table);
        t.sessions.remove(&self.key);
        if t.by_ufrag.get(&self.ufrag) == Some(&self.key) {
            t.by_ufrag.remove(&self.ufrag);
        }
        let key = self.key;
        t.by_remote.retain(|_, k| *k != key);
        for id in &self.transactions {
            if t.by_transaction.get(id) == Some(&key) {
                t.by_transaction.remove(id);
            }
        }
    }
}
