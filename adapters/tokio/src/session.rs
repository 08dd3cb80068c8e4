//! The session: one driver task that owns the agent and the host sockets.
//!
//! [`IceSession::start`] binds the host sockets, creates the agent, adds
//! the host candidates and the STUN servers, starts gathering and spawns
//! the driver. The driver waits on three things at once: a datagram on any
//! host socket (handed to `handle_receive` with that socket's bound address
//! as the local address), a command from the [`IceSession`] handle, and the
//! agent's `poll_timeout` deadline. After every input it drains the agent
//! as the core's drain rule says: `poll_transmit` until empty (each datagram
//! sent from the socket whose address is the transmit's `from`), then
//! `poll_event`, then re-arms the timer. Datagrams the agent does not
//! consume are application data and go to [`IceSession::recv`].
//!
//! No ICE decision is taken here: pacing, nomination, gathering caps and
//! failure all come from the agent, configured from the policy's
//! [`Decision`] ([`SessionConfig::from_decision`]).

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::Poll;

use scream_ice_core::agent::{Agent, AgentConfig, AgentError, Event, GatheringState, Role};
use scream_ice_core::candidate::{Candidate, CandidateAttribute, CandidateKind, ConnectionAddress};
use scream_ice_core::net::Cidr;
use scream_ice_core::policy::{Decision, PolicyConfig};
use scream_ice_core::url::{Host, IceServerUrl, Scheme};
use tokio::io::ReadBuf;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, trace, warn};

use crate::error::{
    CloseError, ClosedError, RemoteCandidateError, RemoteCredentialsError, RestartError, SendError,
    StartError,
};
use crate::host::{
    HostAddresses, PortRange, bind_address, bind_host_socket, discover, local_preferences,
};
use crate::time::Clock;

/// The agent this adapter drives: 16 local candidates, 16 remote
/// candidates, 128 candidate pairs.
pub type IceAgent = Agent<16, 16, 128>;

/// Host candidates bound at most by default: half the agent's local
/// capacity, leaving room for srflx and learned prflx candidates.
pub const DEFAULT_MAX_HOST_CANDIDATES: usize = 8;

/// Largest UDP payload received.
const RECV_BUFFER: usize = 65_536;

/// The 64 ice-chars (RFC 8839 section 5.1): a random byte masked to six
/// bits picks one uniformly.
const ICE_CHARS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// A STUN server for srflx gathering.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StunServerSpec {
    /// An address the caller already resolved.
    Address(SocketAddr),
    /// A `stun:` URI (RFC 7064); a host name is resolved with
    /// [`tokio::net::lookup_host`] in the background, and gathering starts
    /// when it resolves (host checks never wait for it).
    Url(String),
}

/// What a session is started with. Build with [`SessionConfig::new`] or
/// [`SessionConfig::from_decision`], then adjust the fields.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SessionConfig {
    /// Controlling (the offerer) or controlled.
    pub role: Role,
    /// The agent's timing, usually [`AgentConfig::for_decision`].
    pub agent: AgentConfig,
    /// Discover interfaces (with a filter) or bind explicit addresses.
    pub hosts: HostAddresses,
    /// Local ports for host sockets (and so for srflx candidates).
    pub port_range: Option<PortRange>,
    /// Host candidates at most (further addresses are skipped); at most 16.
    pub max_host_candidates: usize,
    /// STUN servers to gather srflx candidates from (at most 4 are used).
    pub stun_servers: Vec<StunServerSpec>,
    /// The config switch `local_network_priority`: rank host candidates on
    /// the local network above the others.
    pub local_network_priority: bool,
    /// The configured `local_subnets` (what "local network" means).
    pub local_subnets: Vec<Cidr>,
    /// When set, host candidates this decision does not offer
    /// ([`Decision::offers`]) are not reported as
    /// [`SessionEvent::LocalCandidate`] (they still serve as bases of our
    /// checks).
    pub offer: Option<Decision>,
    /// Received application datagrams queued at most; more are dropped.
    pub recv_queue: usize,
    /// The agent's seed; `None` draws it from the system (the normal case).
    pub seed: Option<[u8; 32]>,
    /// How long resolving a STUN server or candidate host name may take
    /// (also the mDNS query's timeout with the `mdns` feature).
    pub dns_timeout: std::time::Duration,
    /// Hide private host addresses behind `.local` names (`mdns` feature);
    /// off by default.
    #[cfg(feature = "mdns")]
    pub mdns: crate::mdns::MdnsMode,
    /// The mDNS responder/querier to use; `None` starts one on every
    /// interface when first needed (obfuscating, or a peer's `.local`
    /// candidate) and shuts it down with the session.
    #[cfg(feature = "mdns")]
    pub mdns_daemon: Option<crate::mdns::MdnsDaemon>,
}

impl SessionConfig {
    /// Defaults: [`AgentConfig::default`], interface discovery with the
    /// default filter, any port, no STUN server, local network priority on.
    pub fn new(role: Role) -> SessionConfig {
        SessionConfig {
            role,
            agent: AgentConfig::default(),
            hosts: HostAddresses::default(),
            port_range: None,
            max_host_candidates: DEFAULT_MAX_HOST_CANDIDATES,
            stun_servers: Vec::new(),
            local_network_priority: true,
            local_subnets: Vec::new(),
            offer: None,
            recv_queue: 1024,
            seed: None,
            dns_timeout: std::time::Duration::from_secs(2),
            #[cfg(feature = "mdns")]
            mdns: crate::mdns::MdnsMode::Off,
            #[cfg(feature = "mdns")]
            mdns_daemon: None,
        }
    }

    /// The session the policy's `decision` (from `policy`) asks for: the
    /// agent configured by [`AgentConfig::for_decision`], the STUN servers
    /// it selected, the config's local-network switch and subnets, and its
    /// offer rule. TURN servers are not supported by this adapter yet.
    pub fn from_decision(
        role: Role,
        policy: &PolicyConfig<'_>,
        decision: &Decision,
    ) -> SessionConfig {
        let mut c = SessionConfig::new(role);
        c.agent = AgentConfig::for_decision(decision);
        c.stun_servers = decision
            .stun_servers
            .iter()
            .filter_map(|i| policy.stun_servers.get(i))
            .map(|s| StunServerSpec::Url(s.url.into()))
            .collect();
        c.local_network_priority = policy.local_network_priority;
        c.local_subnets = policy.network_detection.local_subnets.to_vec();
        c.offer = Some(*decision);
        if decision.gathers_relay() {
            warn!("the policy selected TURN servers; this adapter does not allocate relays yet");
        }
        c
    }
}

/// Our ufrag and password for this ICE generation: signal them to the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalCredentials {
    /// 8 random ice-chars.
    pub ufrag: String,
    /// 24 random ice-chars.
    pub pwd: String,
}

impl LocalCredentials {
    /// Fresh random credentials from the system's random source.
    pub fn random() -> Result<LocalCredentials, getrandom::Error> {
        Ok(LocalCredentials {
            ufrag: random_ice_chars(8)?,
            pwd: random_ice_chars(24)?,
        })
    }
}

fn random_ice_chars(n: usize) -> Result<String, getrandom::Error> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b)?;
    Ok(b.iter()
        .map(|x| char::from(ICE_CHARS[usize::from(x & 63)]))
        .collect())
}

/// What the session tells the application: the core agent's events, in its
/// order (host candidates the policy withholds are not forwarded).
pub use scream_ice_core::agent::Event as SessionEvent;

/// An application datagram (one the agent did not consume as STUN).
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
#[derive(Clone, Debug)]
struct Path {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    remote: SocketAddr,
}

enum Command {
    RemoteCredentials {
        ufrag: String,
        pwd: String,
        reply: oneshot::Sender<Result<(), AgentError>>,
    },
    RemoteCandidate {
        candidate: Candidate,
        reply: oneshot::Sender<Result<(), AgentError>>,
    },
    EndOfCandidates,
    Restart {
        credentials: LocalCredentials,
        reply: oneshot::Sender<Result<(), AgentError>>,
    },
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
/// driver task and closes the sockets.
#[derive(Debug)]
pub struct IceSession {
    commands: mpsc::Sender<Command>,
    selected: watch::Receiver<Option<Path>>,
    data: mpsc::Receiver<Datagram>,
    credentials: LocalCredentials,
    local_addresses: Vec<SocketAddr>,
    dns_timeout: std::time::Duration,
    /// The `.local` name of each hidden host address.
    mdns_names: Vec<(IpAddr, String)>,
    /// The mDNS daemon, started when first needed.
    #[cfg(feature = "mdns")]
    mdns_daemon: std::sync::OnceLock<crate::mdns::MdnsDaemon>,
    /// mDNS resolutions under way (end-of-candidates waits for them).
    #[cfg(feature = "mdns")]
    mdns_pending: Arc<watch::Sender<usize>>,
    task: JoinHandle<()>,
}

impl IceSession {
    /// Bind the host sockets, create the agent, add host candidates and
    /// STUN servers, start gathering, and spawn the driver task on the
    /// current tokio runtime. Host candidates come out first as
    /// [`SessionEvent::LocalCandidate`]; srflx gathering runs beside the
    /// host checks and never delays them.
    pub async fn start(config: SessionConfig) -> Result<(IceSession, SessionEvents), StartError> {
        let clock = Clock::start();
        let credentials = LocalCredentials::random().map_err(StartError::Random)?;
        let seed = match config.seed {
            Some(s) => s,
            None => {
                let mut s = [0u8; 32];
                getrandom::fill(&mut s).map_err(StartError::Random)?;
                s
            }
        };
        let sockets = bind_hosts(&config).await?;
        let agent = IceAgent::new(
            config.agent,
            config.role,
            &credentials.ufrag,
            &credentials.pwd,
            seed,
        )
        .map_err(StartError::Agent)?;

        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let (data_tx, data_rx) = mpsc::channel(config.recv_queue.max(1));
        let (sel_tx, sel_rx) = watch::channel(None);
        let mut driver = Driver {
            agent: Box::new(agent),
            clock,
            hosts: Vec::new(),
            commands: cmd_rx,
            events: ev_tx,
            data: data_tx,
            selected: sel_tx,
            offer: config.offer,
            dns: None,
            next_socket: 0,
            dropped: 0,
            #[cfg(feature = "mdns")]
            _mdns: None,
        };

        // Host candidates, ranked by the core.
        let mut bound = Vec::new();
        for s in sockets {
            match s.local_addr() {
                Ok(a) => bound.push((a, s)),
                Err(e) => warn!("host socket has no local address, skipped: {e}"),
            }
        }
        let ips: Vec<IpAddr> = bound.iter().map(|(a, _)| a.ip()).collect();
        let prefs = local_preferences(&ips, config.local_network_priority, &config.local_subnets);
        for ((address, socket), pref) in bound.into_iter().zip(prefs) {
            match driver.agent.add_host_candidate(address, pref) {
                Ok(()) => driver.hosts.push(HostSocket {
                    address,
                    socket: Arc::new(socket),
                }),
                Err(AgentError::Full) => {
                    warn!("agent full: host address {address} skipped");
                    break;
                }
                Err(e) => warn!("host address {address} skipped: {e}"),
            }
            driver.drain_events();
        }
        if driver.hosts.is_empty() {
            return Err(StartError::NoHostCandidates);
        }

        // mDNS names for the hidden host addresses.
        #[cfg(feature = "mdns")]
        let mdns_daemon = std::sync::OnceLock::new();
        #[cfg(feature = "mdns")]
        if let Some(d) = &config.mdns_daemon {
            let _ = mdns_daemon.set(d.clone());
        }
        #[cfg(feature = "mdns")]
        let mdns_names = if config.mdns == crate::mdns::MdnsMode::Obfuscate {
            let mut names: Vec<(IpAddr, String)> = Vec::new();
            for h in &driver.hosts {
                let ip = h.address.ip();
                if crate::mdns::should_obfuscate(ip) && !names.iter().any(|(a, _)| *a == ip) {
                    names.push((
                        ip,
                        crate::mdns::random_mdns_name().map_err(StartError::Random)?,
                    ));
                }
            }
            if names.is_empty() {
                names
            } else {
                let daemon = match mdns_daemon.get() {
                    Some(d) => d.clone(),
                    None => {
                        let d = crate::mdns::MdnsDaemon::start().map_err(StartError::Mdns)?;
                        let _ = mdns_daemon.set(d.clone());
                        d
                    }
                };
                let (registrations, names) = crate::mdns::register(&daemon, names);
                driver._mdns = Some(registrations);
                names
            }
        } else {
            Vec::new()
        };
        #[cfg(not(feature = "mdns"))]
        let mdns_names = Vec::new();

        // STUN servers: literal addresses now, names in the background.
        let mut names: Vec<(String, u16)> = Vec::new();
        for spec in &config.stun_servers {
            match spec {
                StunServerSpec::Address(a) => driver.add_stun_server(*a),
                StunServerSpec::Url(url) => {
                    let parsed =
                        IceServerUrl::parse(url).map_err(|source| StartError::StunUrl {
                            url: url.clone(),
                            source,
                        })?;
                    if parsed.scheme() != Scheme::Stun {
                        return Err(StartError::StunScheme { url: url.clone() });
                    }
                    match parsed.host() {
                        Host::Ipv4(ip) => driver.add_stun_server((ip, parsed.port()).into()),
                        Host::Ipv6(ip) => driver.add_stun_server((ip, parsed.port()).into()),
                        Host::Name(n) => names.push((n.to_owned(), parsed.port())),
                        _ => return Err(StartError::StunScheme { url: url.clone() }),
                    }
                }
            }
        }
        if names.is_empty() {
            driver.agent.start_gathering(driver.clock.now());
        } else {
            driver.dns = Some(tokio::spawn(resolve_stun_servers(
                names,
                config.dns_timeout,
            )));
        }
        driver.drain_events();

        let local_addresses = driver.hosts.iter().map(|h| h.address).collect();
        let task = tokio::spawn(driver.run());
        Ok((
            IceSession {
                commands: cmd_tx,
                selected: sel_rx,
                data: data_rx,
                credentials,
                local_addresses,
                dns_timeout: config.dns_timeout,
                mdns_names,
                #[cfg(feature = "mdns")]
                mdns_daemon,
                #[cfg(feature = "mdns")]
                mdns_pending: Arc::new(watch::Sender::new(0)),
                task,
            },
            SessionEvents { rx: ev_rx },
        ))
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
        self.selected.borrow().as_ref().map(|p| (p.local, p.remote))
    }

    /// The peer's ufrag and password, from signaling.
    pub async fn set_remote_credentials(
        &self,
        ufrag: &str,
        pwd: &str,
    ) -> Result<(), RemoteCredentialsError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::RemoteCredentials {
                ufrag: ufrag.into(),
                pwd: pwd.into(),
                reply,
            })
            .await
            .map_err(|_| RemoteCredentialsError::Closed)?;
        rx.await
            .map_err(|_| RemoteCredentialsError::Closed)?
            .map_err(RemoteCredentialsError::Rejected)
    }

    /// A remote candidate from signaling.
    pub async fn add_remote_candidate(
        &self,
        candidate: Candidate,
    ) -> Result<(), RemoteCandidateError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::RemoteCandidate { candidate, reply })
            .await
            .map_err(|_| RemoteCandidateError::Closed)?;
        rx.await
            .map_err(|_| RemoteCandidateError::Closed)?
            .map_err(RemoteCandidateError::Rejected)
    }

    /// A remote candidate as an SDP line (`a=candidate:...`,
    /// `candidate:...` or the bare value). A host name is resolved with the
    /// system resolver within the DNS timeout; if it does not resolve, this
    /// candidate is skipped ([`RemoteCandidateError::Unresolved`]) and the
    /// session goes on.
    ///
    /// With the `mdns` feature a `.local` name is instead resolved over
    /// mDNS in a spawned task (neither the caller nor the driver waits):
    /// this returns `Ok(())` once the line parses, and the candidate is
    /// added when the name resolves; a name that does not resolve within
    /// the DNS timeout, or a candidate the agent refuses then, is logged and
    /// skipped.
    pub async fn add_remote_candidate_line(&self, line: &str) -> Result<(), RemoteCandidateError> {
        let mut attr = CandidateAttribute::parse(line).map_err(RemoteCandidateError::Parse)?;
        #[cfg(feature = "mdns")]
        if attr.connection_address.is_mdns() {
            return self.add_mdns_candidate(line, &attr);
        }
        if let ConnectionAddress::Fqdn(name) = attr.connection_address {
            let unresolved = || RemoteCandidateError::Unresolved { name: name.into() };
            let lookup = tokio::net::lookup_host((name, attr.port));
            let ip = match tokio::time::timeout(self.dns_timeout, lookup).await {
                Ok(Ok(mut addrs)) => addrs.next().map(|a| a.ip()).ok_or_else(unresolved)?,
                _ => return Err(unresolved()),
            };
            attr = attr.with_address(ip);
        }
        let candidate = attr
            .to_candidate()
            .map_err(|_| RemoteCandidateError::Unresolved {
                name: attr.connection_address.to_string(),
            })?;
        self.add_remote_candidate(candidate).await
    }

    /// Resolve `attr`'s `.local` name over mDNS in a task, then add it.
    #[cfg(feature = "mdns")]
    fn add_mdns_candidate(
        &self,
        line: &str,
        attr: &CandidateAttribute<'_>,
    ) -> Result<(), RemoteCandidateError> {
        let name = attr.connection_address.to_string();
        let daemon = match self.mdns_daemon.get() {
            Some(d) => d.clone(),
            None => match crate::mdns::MdnsDaemon::start() {
                Ok(d) => self.mdns_daemon.get_or_init(|| d).clone(),
                Err(e) => {
                    warn!("candidate {name} skipped: no mDNS daemon: {e}");
                    return Err(RemoteCandidateError::Unresolved { name });
                }
            },
        };
        let line = line.to_owned();
        // Weak: a pending resolution does not keep a dropped session alive.
        let commands = self.commands.downgrade();
        let timeout = self.dns_timeout;
        self.mdns_pending.send_modify(|n| *n += 1);
        let pending = Arc::clone(&self.mdns_pending);
        tokio::spawn(async move {
            /// Counts this resolution as done however the task ends.
            struct Done(Arc<watch::Sender<usize>>);
            impl Drop for Done {
                fn drop(&mut self) {
                    self.0.send_modify(|n| *n = n.saturating_sub(1));
                }
            }
            let _done = Done(pending);
            let Some(ip) = crate::mdns::resolve(&daemon, &name, timeout).await else {
                warn!("candidate {name} skipped: did not resolve over mDNS within {timeout:?}");
                return;
            };
            let candidate = CandidateAttribute::parse(&line)
                .ok()
                .and_then(|a| a.with_address(ip).to_candidate().ok());
            let Some(candidate) = candidate else {
                warn!("candidate {name} skipped: {ip} is not usable");
                return;
            };
            let Some(commands) = commands.upgrade() else {
                return;
            };
            let (reply, rx) = oneshot::channel();
            if commands
                .send(Command::RemoteCandidate { candidate, reply })
                .await
                .is_err()
            {
                return;
            }
            match rx.await {
                Ok(Ok(())) => debug!("candidate {name} resolved over mDNS to {ip}"),
                Ok(Err(e)) => warn!("candidate {name} ({ip}) rejected: {e}"),
                Err(_) => {}
            }
        });
        Ok(())
    }

    /// The peer signalled end-of-candidates. With the `mdns` feature, while
    /// `.local` candidates are still being resolved the agent is told only
    /// after they are added or skipped (so it does not fail for want of
    /// candidates that are on their way); this returns at once.
    pub async fn end_of_remote_candidates(&self) -> Result<(), ClosedError> {
        #[cfg(feature = "mdns")]
        if *self.mdns_pending.borrow() > 0 {
            if self.commands.is_closed() {
                return Err(ClosedError);
            }
            let mut pending = self.mdns_pending.subscribe();
            let commands = self.commands.downgrade();
            tokio::spawn(async move {
                if pending.wait_for(|n| *n == 0).await.is_ok()
                    && let Some(commands) = commands.upgrade()
                {
                    let _ = commands.send(Command::EndOfCandidates).await;
                }
            });
            return Ok(());
        }
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
        let credentials = LocalCredentials::random().map_err(RestartError::Random)?;
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Restart {
                credentials: credentials.clone(),
                reply,
            })
            .await
            .map_err(|_| RestartError::Closed)?;
        rx.await
            .map_err(|_| RestartError::Closed)?
            .map_err(RestartError::Rejected)?;
        self.credentials = credentials.clone();
        Ok(credentials)
    }

    /// Send one application datagram over the selected pair, straight from
    /// its socket (no hop through the driver task).
    pub async fn send(&self, data: &[u8]) -> Result<usize, SendError> {
        let path = self.selected.borrow().clone();
        let Some(path) = path else {
            return Err(SendError::NotConnected);
        };
        path.socket
            .send_to(data, path.remote)
            .await
            .map_err(|source| SendError::Io {
                to: path.remote,
                source,
            })
    }

    /// The next application datagram; `None` once the session has ended.
    pub async fn recv(&mut self) -> Option<Datagram> {
        self.data.recv().await
    }

    /// End the session: the driver stops, the sockets close. Waits for the
    /// driver task to finish.
    pub async fn close(self) -> Result<(), CloseError> {
        let _ = self.commands.send(Command::Close).await;
        drop(self.commands);
        self.task.await.map_err(|_| CloseError)
    }
}

/// Bind the host sockets the config asks for.
async fn bind_hosts(config: &SessionConfig) -> Result<Vec<UdpSocket>, StartError> {
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
    if sockets.is_empty() {
        return Err(StartError::NoHostCandidates);
    }
    Ok(sockets)
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

/// Resolve STUN server names: the first IPv4 and first IPv6 address of
/// each, names that fail or time out are skipped.
async fn resolve_stun_servers(
    names: Vec<(String, u16)>,
    timeout: std::time::Duration,
) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for (name, port) in names {
        match tokio::time::timeout(timeout, tokio::net::lookup_host((name.as_str(), port))).await {
            Ok(Ok(addrs)) => {
                let addrs: Vec<SocketAddr> = addrs.collect();
                for v4 in [true, false] {
                    if let Some(a) = addrs.iter().find(|a| a.is_ipv4() == v4) {
                        out.push(*a);
                    }
                }
            }
            Ok(Err(e)) => warn!("STUN server {name} did not resolve: {e}"),
            Err(_) => warn!("STUN server {name} did not resolve within {timeout:?}"),
        }
    }
    out
}

struct HostSocket {
    address: SocketAddr,
    socket: Arc<UdpSocket>,
}

/// What woke the driver.
enum Input {
    Datagram(usize, io::Result<(usize, SocketAddr)>),
    Command(Option<Command>),
    Timeout,
    Resolved(Vec<SocketAddr>),
}

/// The driver task's state: the agent and everything it talks to.
struct Driver {
    agent: Box<IceAgent>,
    clock: Clock,
    hosts: Vec<HostSocket>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::UnboundedSender<SessionEvent>,
    data: mpsc::Sender<Datagram>,
    selected: watch::Sender<Option<Path>>,
    offer: Option<Decision>,
    dns: Option<JoinHandle<Vec<SocketAddr>>>,
    /// Round-robin start among the sockets, for fairness.
    next_socket: usize,
    /// Application datagrams dropped because the queue was full.
    dropped: u64,
    /// Our mDNS names, unregistered when the driver ends.
    #[cfg(feature = "mdns")]
    _mdns: Option<crate::mdns::Registrations>,
}

impl Driver {
    async fn run(mut self) {
        let mut buf = vec![0u8; RECV_BUFFER];
        let sleep = tokio::time::sleep_until(self.clock.epoch());
        tokio::pin!(sleep);
        loop {
            self.drain().await;
            let deadline = self.agent.poll_timeout().map(|t| self.clock.to_tokio(t));
            if let Some(d) = deadline {
                sleep.as_mut().reset(d);
            }
            let input = tokio::select! {
                (i, r) = recv_any(&self.hosts, &mut buf, self.next_socket) => Input::Datagram(i, r),
                c = self.commands.recv() => Input::Command(c),
                () = &mut sleep, if deadline.is_some() => Input::Timeout,
                r = resolved(&mut self.dns) => Input::Resolved(r),
            };
            match input {
                Input::Datagram(i, Ok((len, from))) => {
                    self.next_socket = i + 1;
                    let Some(host) = self.hosts.get(i) else {
                        continue;
                    };
                    let local = host.address;
                    let bytes = buf.get(..len).unwrap_or_default();
                    let now = self.clock.now();
                    if !self.agent.handle_receive(now, local, from, bytes) {
                        self.deliver(Datagram {
                            from,
                            local,
                            data: bytes.to_vec(),
                        });
                    }
                }
                Input::Datagram(i, Err(e)) => {
                    self.next_socket = i + 1;
                    debug!("receive error on host socket {i}: {e}");
                }
                Input::Command(None) | Input::Command(Some(Command::Close)) => break,
                Input::Command(Some(c)) => self.command(c),
                Input::Timeout => self.agent.handle_timeout(self.clock.now()),
                Input::Resolved(servers) => {
                    self.dns = None;
                    for s in servers {
                        self.add_stun_server(s);
                    }
                    if self.agent.gathering_state() == GatheringState::New {
                        self.agent.start_gathering(self.clock.now());
                    }
                }
            }
        }
        if let Some(dns) = self.dns.take() {
            dns.abort();
        }
        self.selected.send_replace(None);
        debug!(
            "ICE session closed ({} application datagrams dropped)",
            self.dropped
        );
        // The sockets close when `self.hosts` drops here.
    }

    fn deliver(&mut self, d: Datagram) {
        match self.data.try_send(d) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped += 1;
                trace!("application queue full: datagram dropped");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    fn add_stun_server(&mut self, server: SocketAddr) {
        if let Err(e) = self.agent.add_stun_server(server) {
            warn!("STUN server {server} not used: {e}");
        }
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::RemoteCredentials { ufrag, pwd, reply } => {
                let _ = reply.send(self.agent.set_remote_credentials(&ufrag, &pwd));
            }
            Command::RemoteCandidate { candidate, reply } => {
                let _ = reply.send(self.agent.add_remote_candidate(candidate));
            }
            Command::EndOfCandidates => self.agent.end_of_remote_candidates(),
            Command::Restart { credentials, reply } => {
                let r = self.agent.restart(&credentials.ufrag, &credentials.pwd);
                if r.is_ok() {
                    self.selected.send_replace(None);
                    self.drain_events();
                    let hosts: Vec<Candidate> = self
                        .agent
                        .local_candidates()
                        .filter(|c| c.kind == CandidateKind::Host)
                        .copied()
                        .collect();
                    for c in hosts {
                        self.event(Event::LocalCandidate(c));
                    }
                    if self.dns.is_none() {
                        self.agent.start_gathering(self.clock.now());
                    }
                }
                let _ = reply.send(r);
            }
            Command::Close => {}
        }
    }

    /// The drain rule: every transmit, then every event.
    async fn drain(&mut self) {
        while let Some(t) = self.agent.poll_transmit() {
            match self.hosts.iter().find(|h| h.address == t.from) {
                Some(h) => {
                    if let Err(e) = h.socket.send_to(t.bytes, t.to).await {
                        debug!("send {} -> {} failed: {e}", t.from, t.to);
                    }
                }
                None => warn!("agent sends from {}, which has no socket", t.from),
            }
        }
        self.drain_events();
    }

    fn drain_events(&mut self) {
        while let Some(e) = self.agent.poll_event() {
            self.event(e);
        }
    }

    fn event(&mut self, e: Event) {
        match e {
            Event::LocalCandidate(c)
                if c.kind == CandidateKind::Host
                    && self.offer.is_some_and(|d| !d.offers(c.address.ip())) =>
            {
                debug!("host candidate {} withheld by the policy", c.address);
                return;
            }
            Event::Selected { local, remote } => {
                let path = self
                    .hosts
                    .iter()
                    .find(|h| h.address == local)
                    .map(|h| Path {
                        socket: Arc::clone(&h.socket),
                        local,
                        remote,
                    });
                if path.is_none() {
                    warn!("selected pair on {local}, which has no socket");
                }
                self.selected.send_replace(path);
            }
            Event::Failed(_) => {
                self.selected.send_replace(None);
            }
            _ => {}
        }
        let _ = self.events.send(e);
    }
}

/// The first datagram on any of `hosts`, polling from `start` round-robin:
/// (socket index, result of `recv_from`).
fn recv_any<'a>(
    hosts: &'a [HostSocket],
    buf: &'a mut [u8],
    start: usize,
) -> impl Future<Output = (usize, io::Result<(usize, SocketAddr)>)> + 'a {
    std::future::poll_fn(move |cx| {
        let n = hosts.len();
        for k in 0..n {
            let i = (start + k) % n;
            let mut rb = ReadBuf::new(buf);
            if let Poll::Ready(r) = hosts[i].socket.poll_recv_from(cx, &mut rb) {
                return Poll::Ready((i, r.map(|from| (rb.filled().len(), from))));
            }
        }
        Poll::Pending
    })
}

/// The STUN servers the background lookup resolved; never completes when
/// no lookup is running.
async fn resolved(dns: &mut Option<JoinHandle<Vec<SocketAddr>>>) -> Vec<SocketAddr> {
    match dns {
        Some(h) => h.await.unwrap_or_default(),
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_ice_chars_of_the_right_length() {
        for _ in 0..50 {
            let c = LocalCredentials::random().unwrap();
            assert_eq!(c.ufrag.len(), 8);
            assert_eq!(c.pwd.len(), 24);
            assert!(scream_ice_core::sdpfrag::is_valid_ufrag(&c.ufrag));
            assert!(scream_ice_core::sdpfrag::is_valid_pwd(&c.pwd));
        }
        let a = LocalCredentials::random().unwrap();
        let b = LocalCredentials::random().unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn from_decision_takes_the_chosen_servers() {
        use scream_ice_core::policy::{FallbackStage, IceMode, PeerKnowledge, StunServer, decide};
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
        let d = decide(
            &policy,
            &PeerKnowledge::with_address("203.0.113.5".parse().unwrap()),
            FallbackStage::LocalOnly,
        );
        let c = SessionConfig::from_decision(Role::Controlled, &policy, &d);
        assert_eq!(
            c.stun_servers,
            vec![StunServerSpec::Url("stun:192.0.2.1:3478".into())]
        );
        assert_eq!(c.agent, AgentConfig::for_decision(&d));
        assert_eq!(c.offer, Some(d));

        let local = decide(
            &PolicyConfig::new(IceMode::Auto),
            &PeerKnowledge::with_address("192.168.1.9".parse().unwrap()),
            FallbackStage::LocalOnly,
        );
        let c = SessionConfig::from_decision(Role::Controlling, &policy, &local);
        assert!(c.stun_servers.is_empty() || local.gathers_srflx());
        assert!(c.agent.nominate_host_on_first_success);
    }

    #[tokio::test]
    async fn bad_stun_urls_fail_the_start() {
        let mut c = SessionConfig::new(Role::Controlling);
        c.hosts = HostAddresses::Explicit(vec!["127.0.0.1:0".parse().unwrap()]);
        c.stun_servers = vec![StunServerSpec::Url("http://x".into())];
        assert!(matches!(
            IceSession::start(c.clone()).await,
            Err(StartError::StunUrl { .. })
        ));
        c.stun_servers = vec![StunServerSpec::Url("turn:127.0.0.1".into())];
        assert!(matches!(
            IceSession::start(c).await,
            Err(StartError::StunScheme { .. })
        ));
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
        assert!(s.mdns_daemon.get().is_none());
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
