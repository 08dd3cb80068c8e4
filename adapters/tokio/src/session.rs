//! [`IceSession`]: a [`Driver`] in its own task, behind a handle.
//!
//! [`IceSession::start`] binds the host sockets, creates the core session
//! from the policy ([`SessionConfig::for_peer`]) and spawns one task that
//! `select!`s over [`Driver::next`] and the handle's commands: events go
//! to [`SessionEvents`], application datagrams to [`IceSession::recv`],
//! and the selected path to [`IceSession::send`] (which sends straight from
//! the socket). An application that wants to be the session's only actor
//! uses [`IceSession::start_driver`] and drives the [`Driver`] itself.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use scream_ice_core::agent::{AgentConfig, AgentError, Role};
use scream_ice_core::candidate::{Candidate, CandidateAttribute, ConnectionAddress};
use scream_ice_core::net::Cidr;
use scream_ice_core::policy::{
    FallbackStage, IceMode, NetworkDetection, PeerKnowledge, PolicyConfig, StunServer, TurnServer,
    decide,
};
use scream_ice_core::time::Duration as CoreDuration;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, trace, warn};

use crate::driver::{CoreSession, Driver, Output};
use crate::error::{
    CloseError, ClosedError, RemoteCandidateError, RemoteCredentialsError, RestartError, SendError,
    StartError,
};
use crate::host::{HostAddresses, HostSocket, PortRange, bind_address, bind_host_socket, discover};
use crate::resolve::{Resolver, SystemResolver};
use crate::time::Clock;

/// Host candidates bound at most by default: half the session's local
/// capacity, leaving room for srflx and learned prflx candidates.
pub const DEFAULT_MAX_HOST_CANDIDATES: usize = 8;

/// What the session tells the application: the core session's events.
pub use scream_ice_core::session::Event as SessionEvent;

/// One `turn_servers[]` entry, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct OwnedTurnServer {
    pub url: String,
    pub username: Option<String>,
    pub credential: Option<String>,
    pub enabled: bool,
}

/// An owned copy of a [`PolicyConfig`] (which borrows), for a session
/// started later or in another task. [`OwnedPolicy::with`] lends it back.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[allow(missing_docs)]
pub struct OwnedPolicy {
    pub mode: IceMode,
    /// `(url, enabled)`.
    pub stun_servers: Vec<(String, bool)>,
    pub turn_servers: Vec<OwnedTurnServer>,
    pub local_network_priority: bool,
    pub host_candidate_timeout: CoreDuration,
    pub stun_gather_cap: CoreDuration,
    pub detection_enabled: bool,
    pub local_subnets: Vec<Cidr>,
}

impl Default for OwnedPolicy {
    /// [`PolicyConfig::new`] in mode auto.
    fn default() -> Self {
        OwnedPolicy::from_config(&PolicyConfig::new(IceMode::Auto))
    }
}

impl OwnedPolicy {
    /// Copy `p`.
    pub fn from_config(p: &PolicyConfig<'_>) -> OwnedPolicy {
        OwnedPolicy {
            mode: p.mode,
            stun_servers: p
                .stun_servers
                .iter()
                .map(|s| (s.url.into(), s.enabled))
                .collect(),
            turn_servers: p
                .turn_servers
                .iter()
                .map(|t| OwnedTurnServer {
                    url: t.url.into(),
                    username: t.username.map(Into::into),
                    credential: t.credential.map(Into::into),
                    enabled: t.enabled,
                })
                .collect(),
            local_network_priority: p.local_network_priority,
            host_candidate_timeout: p.host_candidate_timeout,
            stun_gather_cap: p.stun_gather_cap,
            detection_enabled: p.network_detection.enabled,
            local_subnets: p.network_detection.local_subnets.to_vec(),
        }
    }

    /// Call `f` with the policy as the core borrows it.
    pub fn with<R>(&self, f: impl FnOnce(&PolicyConfig<'_>) -> R) -> R {
        let stun: Vec<StunServer<'_>> = self
            .stun_servers
            .iter()
            .map(|(url, enabled)| StunServer {
                url,
                enabled: *enabled,
            })
            .collect();
        let turn: Vec<TurnServer<'_>> = self
            .turn_servers
            .iter()
            .map(|t| TurnServer {
                url: &t.url,
                username: t.username.as_deref(),
                credential: t.credential.as_deref(),
                enabled: t.enabled,
            })
            .collect();
        let mut p = PolicyConfig::new(self.mode);
        p.stun_servers = &stun;
        p.turn_servers = &turn;
        p.local_network_priority = self.local_network_priority;
        p.host_candidate_timeout = self.host_candidate_timeout;
        p.stun_gather_cap = self.stun_gather_cap;
        p.network_detection = NetworkDetection {
            enabled: self.detection_enabled,
            local_subnets: &self.local_subnets,
        };
        f(&p)
    }
}

/// What a session is started with. Build with [`SessionConfig::for_peer`]
/// (the policy decides) or [`SessionConfig::new`], then adjust the fields.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SessionConfig {
    /// Controlling (the offerer) or controlled.
    pub role: Role,
    /// The policy the core session decides with (at every ladder stage).
    pub policy: OwnedPolicy,
    /// What is known of the peer at the start (at least its address).
    pub peer: PeerKnowledge,
    /// The agent's timing for the first decision; [`SessionConfig::for_peer`]
    /// sets [`AgentConfig::for_decision`]. A ladder step replaces it with
    /// its own decision's.
    pub agent: AgentConfig,
    /// Withhold the host candidates the decision does not offer
    /// ([`Decision::offers`](scream_ice_core::policy::Decision::offers)).
    pub offer_filter: bool,
    /// Discover interfaces (with a filter) or bind explicit addresses.
    pub hosts: HostAddresses,
    /// Local ports for host sockets (and so for srflx candidates).
    pub port_range: Option<PortRange>,
    /// Host candidates at most (further addresses are skipped); at most 16.
    pub max_host_candidates: usize,
    /// Received application datagrams queued at most; more are dropped.
    pub recv_queue: usize,
    /// The session's seed; `None` draws it from the system (the normal case).
    pub seed: Option<[u8; 32]>,
    /// How long resolving a STUN server or candidate host name may take
    /// (also the mDNS query's timeout with the `mdns` feature).
    pub dns_timeout: std::time::Duration,
    /// The name resolver; `None`: the system's (and mDNS for `.local` names
    /// with the `mdns` feature), bounded by `dns_timeout`.
    pub resolver: Option<Arc<dyn Resolver>>,
    /// Hide private host addresses behind `.local` names (`mdns` feature).
    #[cfg(feature = "mdns")]
    pub mdns: crate::mdns::MdnsMode,
    /// The mDNS responder/querier to use; `None` starts one when first
    /// needed and shuts it down with the session.
    #[cfg(feature = "mdns")]
    pub mdns_daemon: Option<crate::mdns::MdnsDaemon>,
}

impl SessionConfig {
    /// No policy to speak of: mode auto with no server, a peer nothing is
    /// known about, [`AgentConfig::default`], no offer filter, interface
    /// discovery with the default filter.
    pub fn new(role: Role) -> SessionConfig {
        SessionConfig {
            role,
            policy: OwnedPolicy::default(),
            peer: PeerKnowledge::new(),
            agent: AgentConfig::default(),
            offer_filter: false,
            hosts: HostAddresses::default(),
            port_range: None,
            max_host_candidates: DEFAULT_MAX_HOST_CANDIDATES,
            recv_queue: 1024,
            seed: None,
            dns_timeout: std::time::Duration::from_secs(2),
            resolver: None,
            #[cfg(feature = "mdns")]
            mdns: crate::mdns::MdnsMode::Off,
            #[cfg(feature = "mdns")]
            mdns_daemon: None,
        }
    }

    /// The session the policy asks for with this peer: the core session
    /// decides (and widens) with `policy`, the agent starts with the first
    /// decision's timing, the offer filter is on.
    pub fn for_peer(role: Role, policy: &PolicyConfig<'_>, peer: &PeerKnowledge) -> SessionConfig {
        let d = decide(policy, peer, FallbackStage::LocalOnly);
        let mut c = SessionConfig::new(role);
        c.policy = OwnedPolicy::from_config(policy);
        c.peer = peer.clone();
        c.agent = AgentConfig::for_decision(&d);
        c.offer_filter = true;
        c
    }
}

/// Our ufrag and password for this ICE generation: signal them to the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalCredentials {
    /// 8 ice-chars drawn from the session's seed.
    pub ufrag: String,
    /// 24 ice-chars drawn from the session's seed.
    pub pwd: String,
}

impl LocalCredentials {
    fn of(s: &CoreSession) -> LocalCredentials {
        let (u, p) = s.local_credentials();
        LocalCredentials {
            ufrag: u.into(),
            pwd: p.into(),
        }
    }
}

/// An application datagram (one the session did not consume as STUN).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// Who sent it.
    pub from: SocketAddr,
    /// The host socket it arrived on.
    pub local: SocketAddr,
    /// The payload.
    pub data: Vec<u8>,
}

/// The selected path: the socket of the local address and the peer.
type Path = Option<(Arc<UdpSocket>, SocketAddr, SocketAddr)>;

type Reply<T> = oneshot::Sender<Result<T, AgentError>>;

enum Command {
    RemoteCredentials(String, String, Reply<()>),
    RemoteCandidate(Candidate, Reply<()>),
    ResolveCandidate(String, String, u16),
    EndOfCandidates,
    Restart(oneshot::Sender<LocalCredentials>),
    Close,
}

/// The receiving end of a session's events. Events are never dropped; an
/// application that stops reading only costs memory.
#[derive(Debug)]
pub struct SessionEvents {
    rx: mpsc::UnboundedReceiver<SessionEvent>,
}

impl SessionEvents {
    /// The next event; `None` once the session has ended and every event
    /// was read.
    pub async fn recv(&mut self) -> Option<SessionEvent> {
        self.rx.recv().await
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Option<SessionEvent> {
        self.rx.try_recv().ok()
    }
}

/// A running ICE session. Dropping it (or [`IceSession::close`]) ends the
/// task and closes the sockets.
#[derive(Debug)]
pub struct IceSession {
    commands: mpsc::Sender<Command>,
    selected: watch::Receiver<Path>,
    data: mpsc::Receiver<Datagram>,
    credentials: LocalCredentials,
    local_addresses: Vec<SocketAddr>,
    resolver: Arc<dyn Resolver>,
    /// The `.local` name of each hidden host address.
    mdns_names: Vec<(IpAddr, String)>,
    task: JoinHandle<()>,
}

/// A started [`Driver`] with what belongs to its lifetime (the mDNS names
/// registered for it).
#[derive(Debug)]
pub struct Started {
    /// The driving loop.
    pub driver: Driver,
    /// The resolver it uses (for candidate names resolved by the caller).
    pub resolver: Arc<dyn Resolver>,
    /// The `.local` name of each hidden host address.
    pub mdns_names: Vec<(IpAddr, String)>,
    /// Keep alive as long as the driver: unregisters the names on drop.
    pub registrations: Option<Box<dyn std::any::Any + Send>>,
}

impl IceSession {
    /// Bind the host sockets, create the core session and its [`Driver`]
    /// without spawning anything: the caller's task drives it.
    pub async fn start_driver(config: SessionConfig) -> Result<Started, StartError> {
        config
            .policy
            .with(|p| p.validate())
            .map_err(StartError::Policy)?;
        let clock = Clock::start();
        let seed = match config.seed {
            Some(s) => s,
            None => {
                let mut s = [0u8; 32];
                getrandom::fill(&mut s).map_err(StartError::Random)?;
                s
            }
        };
        let hosts = bind_hosts(&config).await?;
        let now = clock.now();
        let mut session = config
            .policy
            .with(|p| CoreSession::new(p, config.peer.clone(), config.role, seed, now))
            .map_err(StartError::Session)?;
        session.set_agent_config(config.agent);
        session.set_offer_filter(config.offer_filter);
        let resolver = config
            .resolver
            .clone()
            .unwrap_or_else(|| default_resolver(&config));
        #[cfg(feature = "mdns")]
        let (registrations, mdns_names) = {
            let addrs: Vec<SocketAddr> = hosts.iter().map(|h| h.address).collect();
            let (r, names) = crate::mdns::obfuscate(&config, &addrs)?;
            (
                r.map(|r| Box::new(r) as Box<dyn std::any::Any + Send>),
                names,
            )
        };
        #[cfg(not(feature = "mdns"))]
        let (registrations, mdns_names) = (None, Vec::new());
        let driver = Driver::new(session, clock, hosts, Arc::clone(&resolver));
        if driver.session().host_addresses().is_empty() {
            return Err(StartError::NoHostCandidates);
        }
        Ok(Started {
            driver,
            resolver,
            mdns_names,
            registrations,
        })
    }

    /// [`IceSession::start_driver`], then spawn the driving task on the
    /// current tokio runtime. Host candidates come out first as
    /// [`SessionEvent::LocalCandidate`]; srflx gathering runs beside the
    /// host checks and never delays them.
    pub async fn start(config: SessionConfig) -> Result<(IceSession, SessionEvents), StartError> {
        let mut started = IceSession::start_driver(config.clone()).await?;
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        // The start's events are readable at once (`try_recv`).
        while let Some(o) = started.driver.try_next() {
            if let Output::Event(e) = o {
                let _ = ev_tx.send(e);
            }
        }
        let (data_tx, data_rx) = mpsc::channel(config.recv_queue.max(1));
        let (sel_tx, sel_rx) = watch::channel(None);
        let session = IceSession {
            commands: cmd_tx,
            selected: sel_rx,
            data: data_rx,
            credentials: LocalCredentials::of(started.driver.session()),
            local_addresses: started.driver.local_addresses(),
            resolver: Arc::clone(&started.resolver),
            mdns_names: started.mdns_names,
            task: tokio::spawn(run(
                started.driver,
                started.registrations,
                cmd_rx,
                Sinks {
                    events: ev_tx,
                    data: data_tx,
                    selected: sel_tx,
                    dropped: 0,
                },
            )),
        };
        Ok((session, SessionEvents { rx: ev_rx }))
    }

    /// Our ufrag and password (of the current ICE generation).
    pub fn local_credentials(&self) -> &LocalCredentials {
        &self.credentials
    }

    /// The bound addresses of the host sockets.
    pub fn local_addresses(&self) -> &[SocketAddr] {
        &self.local_addresses
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

    /// The selected pair as (our address, the peer's), if connected.
    pub fn selected_pair(&self) -> Option<(SocketAddr, SocketAddr)> {
        self.selected.borrow().as_ref().map(|p| (p.1, p.2))
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Option<Result<T, AgentError>> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(make(reply)).await.ok()?;
        rx.await.ok()
    }

    /// The peer's ufrag and password, from signaling.
    pub async fn set_remote_credentials(
        &self,
        ufrag: &str,
        pwd: &str,
    ) -> Result<(), RemoteCredentialsError> {
        self.ask(|r| Command::RemoteCredentials(ufrag.into(), pwd.into(), r))
            .await
            .ok_or(RemoteCredentialsError::Closed)?
            .map_err(RemoteCredentialsError::Rejected)
    }

    /// A remote candidate from signaling.
    pub async fn add_remote_candidate(
        &self,
        candidate: Candidate,
    ) -> Result<(), RemoteCandidateError> {
        self.ask(|r| Command::RemoteCandidate(candidate, r))
            .await
            .ok_or(RemoteCandidateError::Closed)?
            .map_err(RemoteCandidateError::Rejected)
    }

    /// A remote candidate as an SDP line (`a=candidate:...`,
    /// `candidate:...` or the bare value). A host name is resolved with the
    /// resolver within the DNS timeout; if it does not resolve, this
    /// candidate is skipped ([`RemoteCandidateError::Unresolved`]) and the
    /// session goes on.
    ///
    /// With the `mdns` feature a `.local` name is instead resolved in the
    /// background by the driver (nobody waits): this returns `Ok(())` once
    /// the line parses, the candidate is added when the name resolves, and
    /// the peer's end-of-candidates waits for it.
    pub async fn add_remote_candidate_line(&self, line: &str) -> Result<(), RemoteCandidateError> {
        let mut attr = CandidateAttribute::parse(line).map_err(RemoteCandidateError::Parse)?;
        if let ConnectionAddress::Fqdn(name) = attr.connection_address {
            if cfg!(feature = "mdns") && attr.connection_address.is_mdns() {
                let c = Command::ResolveCandidate(line.into(), name.into(), attr.port);
                return self
                    .commands
                    .send(c)
                    .await
                    .map_err(|_| RemoteCandidateError::Closed);
            }
            let unresolved = || RemoteCandidateError::Unresolved { name: name.into() };
            let addrs = self.resolver.resolve(name, attr.port).await;
            attr = attr.with_address(addrs.first().ok_or_else(unresolved)?.ip());
        }
        let candidate = attr
            .to_candidate()
            .map_err(|_| RemoteCandidateError::Unresolved {
                name: attr.connection_address.to_string(),
            })?;
        self.add_remote_candidate(candidate).await
    }

    /// The peer signalled end-of-candidates (applied once the candidates
    /// being resolved in the background are added or skipped).
    pub async fn end_of_remote_candidates(&self) -> Result<(), ClosedError> {
        self.commands
            .send(Command::EndOfCandidates)
            .await
            .map_err(|_| ClosedError)
    }

    /// ICE restart (RFC 8445 section 9): new local credentials (returned;
    /// signal them), remote state forgotten, host candidates announced again
    /// as events, srflx gathering started again. Sending stops until a pair
    /// is selected again.
    pub async fn restart(&mut self) -> Result<LocalCredentials, RestartError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Restart(reply))
            .await
            .map_err(|_| RestartError::Closed)?;
        let credentials = rx.await.map_err(|_| RestartError::Closed)?;
        self.credentials = credentials.clone();
        Ok(credentials)
    }

    /// Send one application datagram over the selected pair, straight from
    /// its socket (no hop through the driving task).
    pub async fn send(&self, data: &[u8]) -> Result<usize, SendError> {
        let path = self.selected.borrow().clone();
        let Some((socket, _, remote)) = path else {
            return Err(SendError::NotConnected);
        };
        socket
            .send_to(data, remote)
            .await
            .map_err(|source| SendError::Io { to: remote, source })
    }

    /// The next application datagram; `None` once the session has ended.
    pub async fn recv(&mut self) -> Option<Datagram> {
        self.data.recv().await
    }

    /// End the session: the task stops, the sockets close. Waits for the
    /// task to finish.
    pub async fn close(self) -> Result<(), CloseError> {
        let _ = self.commands.send(Command::Close).await;
        drop(self.commands);
        self.task.await.map_err(|_| CloseError)
    }
}

/// Where the spawned task delivers the driver's outputs.
struct Sinks {
    events: mpsc::UnboundedSender<SessionEvent>,
    data: mpsc::Sender<Datagram>,
    selected: watch::Sender<Path>,
    dropped: u64,
}

impl Sinks {
    fn deliver(&mut self, driver: &Driver, o: Output) {
        match o {
            Output::Event(e) => {
                match e {
                    SessionEvent::Selected { .. } => {
                        self.selected.send_replace(driver.selected_path());
                    }
                    SessionEvent::Failed(_) | SessionEvent::Restarted => {
                        self.selected.send_replace(None);
                    }
                    SessionEvent::RelayWanted(_) => {
                        warn!(
                            "the policy asks for TURN relays; this adapter does not allocate relays yet"
                        );
                    }
                    _ => {}
                }
                let _ = self.events.send(e);
            }
            Output::Data(d) => {
                if self.data.try_send(d).is_err() {
                    self.dropped += 1;
                    trace!("application queue full or closed: datagram dropped");
                }
            }
        }
    }

    /// Deliver what a command queued, before its reply: a caller that got
    /// the reply finds the command's events already readable.
    fn flush(&mut self, driver: &mut Driver) {
        while let Some(o) = driver.try_next() {
            self.deliver(driver, o);
        }
    }
}

/// The spawned task: the driver and the handle's commands.
async fn run(
    mut driver: Driver,
    _registrations: Option<Box<dyn std::any::Any + Send>>,
    mut commands: mpsc::Receiver<Command>,
    mut sinks: Sinks,
) {
    loop {
        tokio::select! {
            o = driver.next() => sinks.deliver(&driver, o),
            c = commands.recv() => match c {
                None | Some(Command::Close) => break,
                Some(c) => command(&mut driver, c, &mut sinks),
            },
        }
    }
    sinks.selected.send_replace(None);
    debug!(
        "ICE session closed ({} application datagrams dropped)",
        sinks.dropped
    );
}

fn command(driver: &mut Driver, c: Command, sinks: &mut Sinks) {
    match c {
        Command::RemoteCredentials(u, p, reply) => {
            let r = driver.set_remote_credentials(&u, &p);
            sinks.flush(driver);
            let _ = reply.send(r);
        }
        Command::RemoteCandidate(c, reply) => {
            let r = driver.add_remote_candidate(c);
            sinks.flush(driver);
            let _ = reply.send(r);
        }
        Command::ResolveCandidate(line, name, port) => {
            driver.resolve_remote_candidate(line, &name, port);
        }
        Command::EndOfCandidates => driver.end_of_remote_candidates(),
        Command::Restart(reply) => {
            driver.restart();
            sinks.selected.send_replace(None);
            sinks.flush(driver);
            let _ = reply.send(LocalCredentials::of(driver.session()));
        }
        Command::Close => {}
    }
}

/// The system resolver, with mDNS for `.local` names under the `mdns`
/// feature.
fn default_resolver(config: &SessionConfig) -> Arc<dyn Resolver> {
    let system = SystemResolver {
        timeout: config.dns_timeout,
    };
    #[cfg(feature = "mdns")]
    return Arc::new(crate::mdns::MdnsResolver::new(
        config.mdns_daemon.clone(),
        config.dns_timeout,
        system,
    ));
    #[cfg(not(feature = "mdns"))]
    Arc::new(system)
}

/// Bind the host sockets the config asks for.
async fn bind_hosts(config: &SessionConfig) -> Result<Vec<HostSocket>, StartError> {
    let max = config.max_host_candidates.clamp(1, 16);
    let mut sockets = Vec::new();
    let start = random_u32();
    match &config.hosts {
        HostAddresses::Explicit(addrs) => {
            for a in addrs.iter().take(max) {
                sockets.push(bind_host_socket(*a, config.port_range, start).await?);
            }
        }
        HostAddresses::Discover(filter) => {
            for i in discover(filter)? {
                if sockets.len() >= max {
                    debug!("host address {} skipped: enough host candidates", i.address);
                    continue;
                }
                match bind_host_socket(bind_address(&i), config.port_range, start).await {
                    Ok(s) => sockets.push(s),
                    Err(e) => warn!("interface {} address {} skipped: {e}", i.name, i.address),
                }
            }
        }
    }
    let hosts: Vec<HostSocket> = sockets
        .into_iter()
        .filter_map(|s| match s.local_addr() {
            Ok(address) => Some(HostSocket {
                address,
                socket: Arc::new(s),
            }),
            Err(e) => {
                warn!("host socket has no local address, skipped: {e}");
                None
            }
        })
        .collect();
    if hosts.is_empty() {
        return Err(StartError::NoHostCandidates);
    }
    Ok(hosts)
}

/// A random 32-bit value for the port-range start (zero if the system has
/// no randomness: the range is then tried from its first port).
fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    match getrandom::fill(&mut b) {
        Ok(()) => u32::from_le_bytes(b),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::HostAddresses;
    use scream_ice_core::policy::{FallbackStage, IceMode, PeerKnowledge, decide};

    #[tokio::test]
    async fn credentials_are_ice_chars_of_the_right_length() {
        let mut c = SessionConfig::new(Role::Controlled);
        c.hosts = HostAddresses::Explicit(vec!["127.0.0.1:0".parse().unwrap()]);
        let (a, _ea) = IceSession::start(c.clone()).await.unwrap();
        let (b, _eb) = IceSession::start(c).await.unwrap();
        for s in [&a, &b] {
            let c = s.local_credentials();
            assert_eq!(c.ufrag.len(), 8);
            assert_eq!(c.pwd.len(), 24);
            assert!(scream_ice_core::sdpfrag::is_valid_ufrag(&c.ufrag));
            assert!(scream_ice_core::sdpfrag::is_valid_pwd(&c.pwd));
        }
        assert_ne!(a.local_credentials(), b.local_credentials());
    }

    #[test]
    fn for_peer_copies_the_policy() {
        use scream_ice_core::policy::StunServer;
        let servers = [
            StunServer {
                url: "stun:192.0.2.1:3478",
                enabled: true,
            },
            StunServer {
                url: "stun:stun.example.org",
                enabled: false,
            },
        ];
        let mut policy = PolicyConfig::new(IceMode::StunRequired);
        policy.stun_servers = &servers;
        let peer = PeerKnowledge::with_address("203.0.113.5".parse().unwrap());
        let d = decide(&policy, &peer, FallbackStage::LocalOnly);
        let c = SessionConfig::for_peer(Role::Controlled, &policy, &peer);
        assert_eq!(c.policy, OwnedPolicy::from_config(&policy));
        assert_eq!(
            c.policy.stun_servers,
            vec![
                ("stun:192.0.2.1:3478".to_string(), true),
                ("stun:stun.example.org".to_string(), false)
            ]
        );
        assert_eq!(c.agent, AgentConfig::for_decision(&d));
        assert!(c.offer_filter);
        c.policy.with(|p| assert_eq!(p, &policy));

        let lan = PeerKnowledge::with_address("192.168.1.9".parse().unwrap());
        let c = SessionConfig::for_peer(Role::Controlling, &PolicyConfig::new(IceMode::Auto), &lan);
        assert!(c.agent.nominate_host_on_first_success);
    }

    #[tokio::test]
    async fn bad_stun_urls_fail_the_start() {
        let mut c = SessionConfig::new(Role::Controlling);
        c.hosts = HostAddresses::Explicit(vec!["127.0.0.1:0".parse().unwrap()]);
        for bad in ["http://x", "turn:127.0.0.1"] {
            c.policy.stun_servers = vec![(bad.into(), true)];
            assert!(matches!(
                IceSession::start(c.clone()).await,
                Err(StartError::Policy(_))
            ));
        }
    }

    #[tokio::test]
    async fn junk_datagrams_are_application_data_and_never_kill_the_driver() {
        let mut c = SessionConfig::new(Role::Controlled);
        c.hosts = HostAddresses::Explicit(vec!["127.0.0.1:0".parse().unwrap()]);
        let (mut s, _events) = IceSession::start(c).await.unwrap();
        let to = s.local_addresses()[0];
        let junk = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        // Not STUN; STUN-looking garbage; a truncated STUN header; empty.
        let mut stunish = vec![0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42];
        stunish.extend_from_slice(&[7u8; 12]);
        stunish.extend_from_slice(&[0xff; 8]);
        for d in [&b"hello"[..], &stunish, &stunish[..10], &[]] {
            junk.send_to(d, to).await.unwrap();
        }
        let got = tokio::time::timeout(std::time::Duration::from_secs(2), s.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.data, b"hello");
        assert_eq!(got.from, junk.local_addr().unwrap());
        assert!(matches!(s.send(b"x").await, Err(SendError::NotConnected)));
        // Still alive: it answers a command.
        s.set_remote_credentials("abcd", "0123456789012345678901")
            .await
            .unwrap();
        assert!(matches!(
            s.set_remote_credentials("a", "b").await,
            Err(RemoteCredentialsError::Rejected(_))
        ));
        s.close().await.unwrap();
    }

    #[tokio::test]
    async fn loopback_candidates_are_never_named() {
        let mut c = SessionConfig::new(Role::Controlled);
        c.hosts = HostAddresses::Explicit(vec!["127.0.0.1:0".parse().unwrap()]);
        // Loopback is not hidden, so obfuscation names nothing and starts
        // no mDNS daemon (no multicast leaves this test).
        #[cfg(feature = "mdns")]
        {
            c.mdns = crate::mdns::MdnsMode::Obfuscate;
        }
        let (s, mut events) = IceSession::start(c).await.unwrap();
        assert!(s.mdns_names().is_empty());
        let Some(SessionEvent::LocalCandidate(host)) = events.try_recv() else {
            panic!("no host candidate");
        };
        assert_eq!(
            s.local_candidate_line(&host),
            host.to_attribute().to_string()
        );
        assert!(s.local_candidate_line(&host).contains(" 127.0.0.1 "));
        #[cfg(feature = "mdns")]
        assert!(format!("{:?}", s.resolver).contains("daemon: OnceLock(<uninit>)"));
        s.close().await.unwrap();
    }

    #[tokio::test]
    async fn close_releases_the_port() {
        let mut c = SessionConfig::new(Role::Controlled);
        c.hosts = HostAddresses::Explicit(vec!["127.0.0.1:0".parse().unwrap()]);
        let (s, _events) = IceSession::start(c.clone()).await.unwrap();
        let addr = s.local_addresses()[0];
        s.close().await.unwrap();
        // The exact address can be bound again: the socket is gone.
        c.hosts = HostAddresses::Explicit(vec![addr]);
        let (s, _events) = IceSession::start(c).await.unwrap();
        assert_eq!(s.local_addresses(), &[addr]);
        drop(s);
    }
}
