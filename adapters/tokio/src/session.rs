//! Starting a [`Driver`]: [`SessionConfig`] (built from the policy with
//! [`SessionConfig::for_peer`]) and [`Driver::start`], which binds the host
//! sockets and creates the core session. The application's task then
//! drives it with [`Driver::next`].

use std::net::SocketAddr;
use std::sync::Arc;

use scream_ice_core::agent::{AgentConfig, Role};
use scream_ice_core::net::Cidr;
use scream_ice_core::policy::{
    FallbackStage, IceMode, NetworkDetection, PeerKnowledge, PolicyConfig, StunServer, TurnServer,
    decide,
};
use scream_ice_core::time::Duration as CoreDuration;
use tracing::{debug, warn};

use crate::driver::{CheckBudget, CoreSession, Driver};
use crate::error::StartError;
use crate::host::{HostAddresses, HostSocket, PortRange, bind_address, discover};
use crate::mux::UdpMux;
use crate::resolve::{AddressFilter, Resolver, SystemResolver};
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
    /// Discover interfaces (with a filter) or bind explicit addresses;
    /// with [`SessionConfig::mux`], which of the mux's sockets to use.
    pub hosts: HostAddresses,
    /// Use these shared sockets (one per local address, demultiplexed
    /// among sessions) instead of binding the session's own; `port_range`
    /// and `interface_poll` do not apply then.
    pub mux: Option<UdpMux>,
    /// Local ports for host sockets (and so for srflx candidates).
    pub port_range: Option<PortRange>,
    /// Host candidates at most (further addresses are skipped); at most 16.
    pub max_host_candidates: usize,
    /// The session's seed; `None` draws it from the system (the normal case).
    pub seed: Option<[u8; 32]>,
    /// How long resolving a STUN server or candidate host name may take
    /// (also the mDNS query's timeout with the `mdns` feature).
    pub dns_timeout: std::time::Duration,
    /// The name resolver; `None`: the system's (and mDNS for `.local` names
    /// with the `mdns` feature), bounded by `dns_timeout`.
    pub resolver: Option<Arc<dyn Resolver>>,
    /// With [`HostAddresses::Discover`]: discover the interfaces again this
    /// often while the session runs, so addresses that appear are bound
    /// and announced, and addresses that go away are closed (a selected
    /// pair's address going away restarts ICE: [`SessionEvent::Restarted`],
    /// signal the new credentials). `None` (the default): the addresses of
    /// the start are kept. New addresses are not given `.local` names.
    pub interface_poll: Option<std::time::Duration>,
    /// A budget this session shares with others for checks toward
    /// addresses that never answered; `None`: only the agent's own
    /// [`AgentConfig::unanswered_check_budget`] applies.
    pub check_budget: Option<Arc<dyn CheckBudget>>,
    /// What the host names of remote candidates may resolve to; `None`:
    /// any address the agent accepts.
    pub resolved_filter: Option<Arc<dyn AddressFilter>>,
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
            mux: None,
            port_range: None,
            max_host_candidates: DEFAULT_MAX_HOST_CANDIDATES,
            seed: None,
            dns_timeout: std::time::Duration::from_secs(2),
            resolver: None,
            interface_poll: None,
            check_budget: None,
            resolved_filter: None,
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

impl Driver {
    /// Bind the host sockets the config asks for, create the core session
    /// and the driver: host candidates are queued as
    /// [`SessionEvent::LocalCandidate`] outputs ([`Driver::try_next`]);
    /// srflx gathering runs beside the host checks and never delays them.
    /// Nothing is spawned: the caller drives it.
    pub async fn start(config: SessionConfig) -> Result<Driver, StartError> {
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
        let hosts = match &config.mux {
            Some(mux) => mux.hosts_for(&config.hosts, config.max_host_candidates.clamp(1, 16))?,
            None => bind_hosts(&config).await?,
        };
        let now = clock.now();
        let mut session = config
            .policy
            .with(|p| CoreSession::new(p, config.peer.clone(), config.role, seed, now))
            .map_err(StartError::Session)?;
        let registration = config
            .mux
            .as_ref()
            .map(|m| m.register(session.local_credentials().0));
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
        let mut driver = Driver::new(
            session,
            clock,
            hosts,
            registration,
            resolver,
            config.check_budget.clone(),
            config.resolved_filter.clone(),
        );
        if driver.session().host_addresses().is_empty() {
            return Err(StartError::NoHostCandidates);
        }
        driver.mdns_names = mdns_names;
        driver.registrations = registrations;
        if let (HostAddresses::Discover(filter), Some(every), None) =
            (&config.hosts, config.interface_poll, &config.mux)
        {
            driver.watch_interfaces(crate::driver::Watch {
                filter: filter.clone(),
                port_range: config.port_range,
                max: config.max_host_candidates.clamp(1, 16),
                every,
            });
        }
        Ok(driver)
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
    let mut hosts = Vec::new();
    let start = random_u32();
    match &config.hosts {
        HostAddresses::Explicit(addrs) => {
            for a in addrs.iter().take(max) {
                hosts.push(HostSocket::bind(*a, config.port_range, start).await?);
            }
        }
        HostAddresses::Discover(filter) => {
            for i in discover(filter)? {
                if hosts.len() >= max {
                    debug!("host address {} skipped: enough host candidates", i.address);
                    continue;
                }
                match HostSocket::bind(bind_address(&i), config.port_range, start).await {
                    Ok(h) => hosts.push(h),
                    Err(e) => warn!("interface {} address {} skipped: {e}", i.name, i.address),
                }
            }
        }
    }
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
    use crate::driver::Output;
    use crate::host::HostAddresses;
    use scream_ice_core::policy::{FallbackStage, IceMode, PeerKnowledge, decide};
    use tokio::net::UdpSocket;

    #[tokio::test]
    async fn credentials_are_ice_chars_of_the_right_length() {
        let mut c = SessionConfig::new(Role::Controlled);
        c.hosts = HostAddresses::Explicit(vec!["127.0.0.1:0".parse().unwrap()]);
        let a = Driver::start(c.clone()).await.unwrap();
        let b = Driver::start(c).await.unwrap();
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
                Driver::start(c.clone()).await,
                Err(StartError::Policy(_))
            ));
        }
    }

    /// A TURN server's host name is resolved through the driver's resolver
    /// (here the system's: `localhost`) once the decision wants relays.
    #[tokio::test]
    async fn turn_server_names_resolve_to_relay_server_events() {
        let mut c = SessionConfig::new(Role::Controlled);
        c.hosts = HostAddresses::Explicit(vec!["127.0.0.1:0".parse().unwrap()]);
        c.policy.mode = IceMode::Full;
        c.policy.turn_servers = vec![OwnedTurnServer {
            url: "turn:localhost:3479".into(),
            username: Some("u".into()),
            credential: Some("p".into()),
            enabled: true,
        }];
        let mut d = Driver::start(c).await.unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            loop {
                if let Output::Event(SessionEvent::RelayServer { index, address }) = d.next().await
                {
                    break (index, address);
                }
            }
        })
        .await
        .expect("a RelayServer event");
        assert_eq!(got.0, 0);
        assert!(got.1.ip().is_loopback(), "{}", got.1);
        assert_eq!(got.1.port(), 3479);
        assert!(d.session().relay_servers().contains(&got));
    }

    #[tokio::test]
    async fn junk_datagrams_are_application_data_and_never_kill_the_driver() {
        let mut c = SessionConfig::new(Role::Controlled);
        c.hosts = HostAddresses::Explicit(vec!["127.0.0.1:0".parse().unwrap()]);
        let mut s = Driver::start(c).await.unwrap();
        let to = s.local_addresses()[0];
        let junk = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        // Not STUN; STUN-looking garbage; a truncated STUN header; empty.
        let mut stunish = vec![0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42];
        stunish.extend_from_slice(&[7u8; 12]);
        stunish.extend_from_slice(&[0xff; 8]);
        for d in [&b"hello"[..], &stunish, &stunish[..10], &[]] {
            junk.send_to(d, to).await.unwrap();
        }
        let got = tokio::time::timeout(std::time::Duration::from_secs(2), async {
            loop {
                if let Output::Data(d) = s.next().await {
                    return d;
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(got.data, b"hello");
        assert_eq!(got.from, junk.local_addr().unwrap());
        assert!(s.selected_path().is_none());
        // Still alive: it takes input from signaling.
        s.set_remote_credentials("abcd", "0123456789012345678901")
            .unwrap();
        assert!(s.set_remote_credentials("a", "b").is_err());
        drop(s);
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
        let mut s = Driver::start(c).await.unwrap();
        assert!(s.mdns_names().is_empty());
        let Some(Output::Event(SessionEvent::LocalCandidate(host))) = s.try_next() else {
            panic!("no host candidate");
        };
        assert_eq!(
            s.local_candidate_line(&host),
            host.to_attribute().to_string()
        );
        assert!(s.local_candidate_line(&host).contains(" 127.0.0.1 "));
        #[cfg(feature = "mdns")]
        assert!(format!("{:?}", s.resolver()).contains("daemon: OnceLock(<uninit>)"));
        drop(s);
    }

    #[tokio::test]
    async fn drop_releases_the_port() {
        let mut c = SessionConfig::new(Role::Controlled);
        c.hosts = HostAddresses::Explicit(vec!["127.0.0.1:0".parse().unwrap()]);
        let s = Driver::start(c.clone()).await.unwrap();
        let addr = s.local_addresses()[0];
        drop(s);
        // The exact address can be bound again: the socket is gone.
        c.hosts = HostAddresses::Explicit(vec![addr]);
        let s = Driver::start(c).await.unwrap();
        assert_eq!(s.local_addresses(), [addr]);
        drop(s);
    }
}
