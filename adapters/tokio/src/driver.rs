//! The driving loop: tokio sockets and timers around one
//! [`core::session::Session`](scream_ice_core::session::Session).
//!
//! [`Driver::next`] waits on everything that can move the session at once —
//! a datagram on any host socket (handed to `handle_receive` with that
//! socket's address as the local address), the session's `poll_timeout`
//! deadline, a name lookup finishing — feeds it to the session, and drains
//! the session as its drain rule says: every transmit (sent from the socket
//! whose address is the transmit's `from`), every request (a lookup spawned
//! on the [`Resolver`]), every event. It returns the next thing the
//! application must see: a session event or an application datagram.
//! The inputs from signaling (`set_remote_credentials`, ...) are plain
//! methods that drain the same way. No ICE decision is taken here.
//!
//! `next` is cancel-safe (every await in it is), so an application can
//! `select!` over it and its own inputs in one task: that task is the
//! session's one actor.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use scream_ice_core::agent::{AgentError, ConnectionState};
use scream_ice_core::candidate::{Candidate, CandidateAttribute, ConnectionAddress};
use scream_ice_core::session::{PendingCandidate, Request, ServerRef, Session};
use tokio::net::UdpSocket;
use tokio::task::JoinSet;
use tokio::time::Sleep;
use tracing::{debug, trace, warn};

use crate::error::RemoteCandidateError;
use crate::host::{HostFilter, HostSocket, PortRange, bind_address, discover, recv_any};
use crate::mux::{Muxed, Registration};
use crate::resolve::{AddressFilter, Resolver, first_allowed};
use crate::session::{Datagram, LocalCredentials, SessionEvent};
use crate::time::Clock;

/// The core session this adapter drives: 16 local candidates, 16 remote
/// candidates, 128 candidate pairs.
pub type CoreSession = Session<16, 16, 128>;

/// Largest UDP payload received.
const RECV_BUFFER: usize = 65_536;

/// What [`Driver::next`] hands the application.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// A session event, in the session's order.
    Event(SessionEvent),
    /// A datagram that is not STUN: application data.
    Data(Datagram),
}

/// What woke [`Driver::next`].
enum Input {
    Datagram(usize, io::Result<(usize, SocketAddr)>),
    Muxed(Muxed),
    Timeout,
    Lookup(Option<Lookup>),
    Rescan,
}

/// Interface discovery repeated while the session runs
/// ([`crate::SessionConfig::interface_poll`]).
#[derive(Clone, Debug)]
pub(crate) struct Watch {
    pub(crate) filter: HostFilter,
    pub(crate) port_range: Option<PortRange>,
    pub(crate) max: usize,
    pub(crate) every: Duration,
}

/// A finished lookup.
enum Lookup {
    /// A STUN or TURN server's name (the session's request).
    Server(ServerRef, Vec<SocketAddr>),
    /// A remote candidate's name; the line it came in (for the logs).
    Candidate(PendingCandidate, String, Vec<SocketAddr>),
}

/// The session, its sockets, its clock and its lookups. See the module
/// docs.
pub struct Driver {
    session: Box<CoreSession>,
    clock: Clock,
    hosts: Vec<HostSocket>,
    /// With shared sockets: this session's queue in the [`crate::UdpMux`],
    /// which the driver reads instead of the sockets.
    mux: Option<Registration>,
    resolver: Arc<dyn Resolver>,
    /// Shared by all sessions of a router: a check toward a silent address
    /// goes out only with a token from it.
    check_budget: Option<Arc<dyn CheckBudget>>,
    /// What a remote candidate's host name may resolve to.
    resolved_filter: Option<Arc<dyn AddressFilter>>,
    lookups: JoinSet<Lookup>,
    out: VecDeque<Output>,
    buf: Box<[u8]>,
    /// Round-robin start among the sockets, for fairness.
    next_socket: usize,
    sleep: Pin<Box<Sleep>>,
    /// Re-discover the interfaces this often, and when.
    watch: Option<Watch>,
    rescan: Pin<Box<Sleep>>,
    /// The `.local` name of each hidden host address.
    pub(crate) mdns_names: Vec<(IpAddr, String)>,
    /// The mDNS registrations of those names: unregistered when the driver
    /// is dropped.
    pub(crate) registrations: Option<Box<dyn std::any::Any + Send>>,
}

/// A budget shared by many sessions for connectivity checks toward
/// addresses that have never answered ([`Transmit::unanswered`]): RFC 8445
/// section 19.5.1 asks an agent to bound these, and a router that serves
/// many sessions bounds them across all of them. Each such check takes one
/// token; without one it is not sent (the agent retransmits it later, as
/// after a loss, and fails the pair when its own timers or budget run out).
///
/// [`Transmit::unanswered`]: scream_ice_core::agent::Transmit::unanswered
pub trait CheckBudget: std::fmt::Debug + Send + Sync + 'static {
    /// Take one token now; `false` when there is none.
    fn try_take(&self) -> bool;
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("session", &self.session)
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

impl Driver {
    /// Drive `session` over `hosts` (already bound); reports the hosts'
    /// addresses to the session, which starts gathering.
    pub(crate) fn new(
        session: CoreSession,
        clock: Clock,
        hosts: Vec<HostSocket>,
        mux: Option<Registration>,
        resolver: Arc<dyn Resolver>,
        check_budget: Option<Arc<dyn CheckBudget>>,
        resolved_filter: Option<Arc<dyn AddressFilter>>,
    ) -> Driver {
        let epoch = clock.epoch();
        let mut d = Driver {
            session: Box::new(session),
            clock,
            hosts,
            mux,
            resolver,
            check_budget,
            resolved_filter,
            lookups: JoinSet::new(),
            out: VecDeque::new(),
            buf: vec![0; RECV_BUFFER].into_boxed_slice(),
            next_socket: 0,
            sleep: Box::pin(tokio::time::sleep_until(epoch)),
            watch: None,
            rescan: Box::pin(tokio::time::sleep_until(epoch)),
            mdns_names: Vec::new(),
            registrations: None,
        };
        let addrs: Vec<SocketAddr> = d.hosts.iter().map(|h| h.address).collect();
        let now = d.clock.now();
        d.session.handle_interfaces(now, &addrs);
        d.drain();
        d
    }

    /// Our ufrag and password of the current ICE generation: signal them.
    pub fn local_credentials(&self) -> LocalCredentials {
        let (u, p) = self.session.local_credentials();
        LocalCredentials {
            ufrag: u.into(),
            pwd: p.into(),
        }
    }

    /// The `.local` name of each host address hidden by
    /// `MdnsMode::Obfuscate` (`mdns` feature; empty otherwise).
    pub fn mdns_names(&self) -> &[(IpAddr, String)] {
        &self.mdns_names
    }

    /// The SDP candidate line (`candidate:...`, without `a=`) to signal for
    /// a [`SessionEvent::LocalCandidate`]: a hidden host address is
    /// replaced by its `.local` name and a hidden base in a reflexive
    /// candidate's `raddr` by `0.0.0.0 0` ([`crate::mdns::candidate_line`]).
    /// Without obfuscation, `candidate.to_attribute().to_string()`.
    pub fn local_candidate_line(&self, candidate: &Candidate) -> String {
        crate::mdns::candidate_line(
            candidate,
            crate::mdns::hidden_name(&self.mdns_names, candidate),
        )
    }

    /// A remote candidate as an SDP line (`a=candidate:...`,
    /// `candidate:...` or the bare value). A host name is resolved with the
    /// resolver within the DNS timeout (the driver does not run meanwhile);
    /// if it does not resolve, this candidate is skipped
    /// ([`RemoteCandidateError::Unresolved`]) and the session goes on.
    ///
    /// With the `mdns` feature a `.local` name is instead resolved in the
    /// background ([`Driver::resolve_remote_candidate`]): this returns
    /// `Ok(())` once the line parses, the candidate is added when the name
    /// resolves, and the peer's end-of-candidates waits for it.
    pub async fn add_remote_candidate_line(
        &mut self,
        line: &str,
    ) -> Result<(), RemoteCandidateError> {
        let mut attr = CandidateAttribute::parse(line).map_err(RemoteCandidateError::Parse)?;
        if let ConnectionAddress::Fqdn(name) = attr.connection_address {
            if cfg!(feature = "mdns") && attr.connection_address.is_mdns() {
                let name = String::from(name);
                self.resolve_remote_candidate(line.into(), &name, attr.port);
                return Ok(());
            }
            let addrs = self.resolver.resolve(name, attr.port).await;
            let Some(a) = first_allowed(&addrs, self.resolved_filter.as_deref()) else {
                let name = name.into();
                return Err(if addrs.is_empty() {
                    RemoteCandidateError::Unresolved { name }
                } else {
                    RemoteCandidateError::Refused { name }
                });
            };
            attr = attr.with_address(a.ip());
        }
        let candidate = attr
            .to_candidate()
            .map_err(|_| RemoteCandidateError::Unresolved {
                name: attr.connection_address.to_string(),
            })?;
        self.add_remote_candidate(candidate)
            .map_err(RemoteCandidateError::Rejected)
    }

    /// The session (read-only: credentials, candidates, decision, stage).
    pub fn session(&self) -> &CoreSession {
        &self.session
    }

    /// When a pair first became usable (the core's
    /// `Agent::usable_since`), on the tokio clock.
    pub fn usable_since(&self) -> Option<tokio::time::Instant> {
        let t = self.session.agent().usable_since()?;
        Some(self.clock.to_tokio(t))
    }

    /// The name resolver (for candidate names the application resolves).
    pub fn resolver(&self) -> &Arc<dyn Resolver> {
        &self.resolver
    }

    /// The bound addresses of the host sockets.
    pub fn local_addresses(&self) -> Vec<SocketAddr> {
        self.hosts.iter().map(|h| h.address).collect()
    }

    /// The selected pair with the socket of its local address: send
    /// application data with `socket.send_to(data, remote)`. `None` while
    /// no pair is selected and once ICE has failed (e.g. consent lost).
    pub fn selected_path(&self) -> Option<(Arc<UdpSocket>, SocketAddr, SocketAddr)> {
        if self.session.agent().connection_state() == ConnectionState::Failed {
            return None;
        }
        let (local, remote) = self.session.selected_pair()?;
        let h = self.hosts.iter().find(|h| h.address == local)?;
        Some((Arc::clone(&h.socket), local, remote))
    }

    /// The peer's ufrag and password.
    pub fn set_remote_credentials(&mut self, ufrag: &str, pwd: &str) -> Result<(), AgentError> {
        let r = self.session.handle_remote_credentials(ufrag, pwd);
        self.drain();
        r
    }

    /// A remote candidate with an IP address.
    pub fn add_remote_candidate(&mut self, c: Candidate) -> Result<(), AgentError> {
        let r = self.session.handle_remote_candidate(self.clock.now(), c);
        self.drain();
        r
    }

    /// A remote candidate line whose address is the host name `name`:
    /// resolved in the background with the resolver while the core session
    /// holds the candidate and the peer's end-of-candidates
    /// ([`Session::handle_remote_candidate_name`]); added when it resolves
    /// to an address the [`AddressFilter`] allows, skipped otherwise.
    pub fn resolve_remote_candidate(&mut self, line: String, name: &str, port: u16) {
        let template = CandidateAttribute::parse(&line).ok().and_then(|a| {
            a.with_address(IpAddr::from([0, 0, 0, 0]))
                .to_candidate()
                .ok()
        });
        let pending = match template.map(|c| self.session.handle_remote_candidate_name(c)) {
            Some(Ok(p)) => p,
            Some(Err(e)) => return warn!("candidate {line} skipped: {e}"),
            None => return warn!("candidate {line} skipped: it does not parse"),
        };
        let lookup = self.resolver.resolve(name, port);
        self.lookups
            .spawn(async move { Lookup::Candidate(pending, line, lookup.await) });
    }

    /// The peer's end-of-candidates (the core session holds it while
    /// candidate names resolve).
    pub fn end_of_remote_candidates(&mut self) {
        self.session
            .handle_end_of_remote_candidates(self.clock.now());
        self.drain();
    }

    /// ICE restart: new credentials (read them from [`Driver::session`]),
    /// candidates announced again.
    pub fn restart(&mut self) {
        self.session.restart(self.clock.now());
        self.drain();
    }

    /// The next output already queued, without waiting (the events of the
    /// start: host candidates, the first decision, gathering).
    pub fn try_next(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Wait for the next event or application datagram (cancel-safe).
    pub async fn next(&mut self) -> Output {
        loop {
            if let Some(o) = self.out.pop_front() {
                return o;
            }
            let deadline = self.session.poll_timeout().map(|t| self.clock.to_tokio(t));
            if let Some(d) = deadline {
                self.sleep.as_mut().reset(d);
            }
            let lookups = !self.lookups.is_empty();
            let watching = self.watch.is_some();
            let muxed = self.mux.is_some();
            let input = tokio::select! {
                (i, r) = recv_any(&self.hosts, &mut self.buf, self.next_socket), if !muxed => Input::Datagram(i, r),
                m = recv_muxed(&mut self.mux), if muxed => Input::Muxed(m),
                () = &mut self.sleep, if deadline.is_some() => Input::Timeout,
                Some(done) = self.lookups.join_next(), if lookups => Input::Lookup(done.ok()),
                () = &mut self.rescan, if watching => Input::Rescan,
            };
            match input {
                Input::Datagram(i, r) => {
                    self.next_socket = i + 1;
                    self.datagram(i, r);
                }
                Input::Muxed(m) => self.muxed(m),
                Input::Timeout => self.session.handle_timeout(self.clock.now()),
                Input::Lookup(Some(l)) => self.lookup(l),
                Input::Lookup(None) => {}
                Input::Rescan => self.rescan_interfaces().await,
            }
            self.drain();
        }
    }

    /// Watch the interfaces: discover them again every `watch.every`.
    pub(crate) fn watch_interfaces(&mut self, watch: Watch) {
        let at = tokio::time::Instant::now() + watch.every;
        self.rescan.as_mut().reset(at);
        self.watch = Some(watch);
    }

    /// Discover the interfaces again: close the sockets of addresses that
    /// went away, bind the new ones, and report the change to the session
    /// (which announces new candidates, drops vanished ones and restarts
    /// ICE when the selected pair's address went away). Cancel-safe: the
    /// host list changes only after each bind completed, and the next
    /// rescan diffs again.
    async fn rescan_interfaces(&mut self) {
        let Some(w) = &self.watch else { return };
        self.rescan
            .as_mut()
            .reset(tokio::time::Instant::now() + w.every);
        let found = match discover(&w.filter) {
            Ok(f) => f,
            Err(e) => {
                debug!("interface rescan failed: {e}");
                return;
            }
        };
        let wanted: Vec<SocketAddr> = found.iter().map(bind_address).collect();
        let before = self.hosts.len();
        self.hosts
            .retain(|h| wanted.iter().any(|a| a.ip() == h.address.ip()));
        let mut changed = self.hosts.len() != before;
        for a in wanted {
            if self.hosts.len() >= w.max {
                break;
            }
            if self.hosts.iter().any(|h| h.address.ip() == a.ip()) {
                continue;
            }
            match HostSocket::bind(a, w.port_range, 0).await {
                Ok(h) => {
                    self.hosts.push(h);
                    changed = true;
                }
                Err(e) => warn!("new address {} skipped: {e}", a.ip()),
            }
        }
        if changed {
            let addrs: Vec<SocketAddr> = self.hosts.iter().map(|h| h.address).collect();
            debug!("interfaces changed: host addresses now {addrs:?}");
            self.next_socket = 0;
            self.session.handle_interfaces(self.clock.now(), &addrs);
        }
    }

    fn datagram(&mut self, i: usize, r: io::Result<(usize, SocketAddr)>) {
        let (Ok((len, from)), Some(host)) = (r, self.hosts.get(i)) else {
            debug!("receive error on host socket {i}");
            return;
        };
        let local = host.address;
        let bytes = self.buf.get(..len).unwrap_or_default();
        if !self
            .session
            .handle_receive(self.clock.now(), local, from, bytes)
        {
            let data = bytes.to_vec();
            self.out
                .push_back(Output::Data(Datagram { from, local, data }));
        }
    }

    /// A datagram the mux routed here (it arrived on a shared socket this
    /// session may not use: then it is not ours after all).
    fn muxed(&mut self, m: Muxed) {
        if !self.hosts.iter().any(|h| h.address == m.local) {
            debug!(
                "datagram on {} dropped: not a host socket of this session",
                m.local
            );
            return;
        }
        let now = self.clock.now();
        if !self.session.handle_receive(now, m.local, m.from, &m.data) {
            self.out.push_back(Output::Data(Datagram {
                from: m.from,
                local: m.local,
                data: m.data,
            }));
        }
    }

    fn lookup(&mut self, l: Lookup) {
        let now = self.clock.now();
        match l {
            Lookup::Server(server, addrs) => self.session.handle_resolved(now, server, &addrs),
            Lookup::Candidate(pending, line, addrs) => {
                let allowed = first_allowed(&addrs, self.resolved_filter.as_deref());
                let r =
                    self.session
                        .handle_resolved_candidate(now, pending, allowed.map(|a| a.ip()));
                match (r, allowed) {
                    (Some(Ok(())), Some(_)) => debug!("candidate {line} resolved"),
                    (Some(Err(e)), _) => warn!("candidate {line} rejected: {e}"),
                    // From before an ICE restart: dropped with its generation.
                    (None, _) => debug!("candidate {line} resolved too late"),
                    (Some(Ok(())), None) if addrs.is_empty() => {
                        warn!("candidate {line} skipped: its name did not resolve")
                    }
                    (Some(Ok(())), None) => {
                        warn!("candidate {line} skipped: it resolved only to refused {addrs:?}")
                    }
                }
            }
        }
    }

    /// The drain rule: every transmit, every request, every event.
    fn drain(&mut self) {
        if let Some(m) = &mut self.mux {
            // Before the transmits: a restart's checks are answered to the
            // new ufrag.
            m.set_ufrag(self.session.local_credentials().0);
        }
        while let Some(t) = self.session.poll_transmit() {
            if t.unanswered && self.check_budget.as_ref().is_some_and(|b| !b.try_take()) {
                // Dropped like a lost datagram: the agent retransmits, and
                // its own budget still counts the check.
                trace!(
                    "check {} -> {} held: router-wide budget spent",
                    t.from, t.to
                );
                continue;
            }
            if let Some(m) = &mut self.mux {
                m.learn(t.from, t.to, t.bytes);
            }
            match self.hosts.iter().find(|h| h.address == t.from) {
                // UDP: a full send buffer drops the datagram like the
                // network would; the agent retransmits.
                Some(h) => {
                    if let Err(e) = h.socket.try_send_to(t.bytes, t.to) {
                        debug!("send {} -> {} failed: {e}", t.from, t.to);
                    }
                }
                None => warn!("session sends from {}, which has no socket", t.from),
            }
        }
        while let Some(Request::Resolve { server, name, port }) = self.session.poll_request() {
            trace!(
                "resolving {} server {name}",
                if server.turn { "TURN" } else { "STUN" }
            );
            let lookup = self.resolver.resolve(name, port);
            self.lookups
                .spawn(async move { Lookup::Server(server, lookup.await) });
        }
        while let Some(e) = self.session.poll_event() {
            self.out.push_back(Output::Event(e));
        }
    }
}

/// The next datagram of a shared-socket session; never ready without one.
async fn recv_muxed(mux: &mut Option<Registration>) -> Muxed {
    match mux {
        Some(m) => m.recv().await,
        None => std::future::pending().await,
    }
}
