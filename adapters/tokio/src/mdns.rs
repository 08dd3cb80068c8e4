//! mDNS host names for ICE candidates (draft-ietf-mmusic-mdns-ice-candidates).
//!
//! This module sits beside the session at the signaling edge: the agent
//! always works with IP addresses; only the candidate lines that travel to
//! the peer carry names. With the `mdns` feature and
//! `MdnsMode::Obfuscate`, [`Driver::start`](crate::Driver::start)
//! gives each private, link-local or unique-local host address a random
//! `<uuid>.local` name, registers it with an mDNS responder (mdns-sd) so the
//! machine answers A/AAAA queries for it, and
//! [`Driver::local_candidate_line`](crate::Driver::local_candidate_line)
//! renders the candidates with the name. The peer's `.local` candidates are
//! resolved with the mDNS querier in the background
//! ([`Driver::add_remote_candidate_line`](crate::Driver::add_remote_candidate_line));
//! a name that does not resolve skips that candidate, never the session.
//!
//! [`candidate_line`], [`random_mdns_name`] and [`should_obfuscate`] exist
//! without the feature too.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use scream_ice_core::candidate::{Candidate, CandidateKind, ConnectionAddress};
use scream_ice_core::net::{AddressClass, classify};

/// Whether a host address is hidden behind an mDNS name when obfuscating:
/// private (RFC 1918), link-local and unique-local (RFC 4193) addresses
/// are; loopback, CGNAT and global addresses are not (the draft hides the
/// addresses that reveal the local network; a global address is learned
/// from srflx anyway).
pub fn should_obfuscate(ip: IpAddr) -> bool {
    matches!(
        classify(ip),
        AddressClass::Private | AddressClass::LinkLocal | AddressClass::UniqueLocal
    )
}

/// A fresh random name `xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx.local`: a
/// version-4 UUID (RFC 9562 section 5.4, lowercase hex) under `.local`, as
/// browsers generate them. Fails only if the system has no randomness.
pub fn random_mdns_name() -> Result<String, getrandom::Error> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b)?;
    Ok(uuid_v4_name(b))
}

/// The `.local` name of the version-4 UUID made from `b` (version and
/// variant bits forced).
fn uuid_v4_name(mut b: [u8; 16]) -> String {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut s = String::with_capacity(42);
    for (i, x) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        let _ = write!(s, "{x:02x}");
    }
    s.push_str(".local");
    s
}

/// True if `name` has the shape [`random_mdns_name`] produces (a lowercase
/// version-4 UUID followed by `.local`).
pub fn is_uuid_mdns_name(name: &str) -> bool {
    let Some(uuid) = name.strip_suffix(".local") else {
        return false;
    };
    let b = uuid.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            14 => *c == b'4',
            19 => matches!(c, b'8' | b'9' | b'a' | b'b'),
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        })
}

/// `candidate` as an SDP candidate attribute value (`candidate:...`,
/// without `a=`). With `name`, a host candidate's connection address is
/// the name instead of its IP, and a reflexive candidate's related address
/// becomes `0.0.0.0 0` (so the hidden IP does not leak through `raddr`, as
/// browsers do). Without `name`, exactly [`Candidate::to_attribute`].
/// Never panics.
pub fn candidate_line(candidate: &Candidate, name: Option<&str>) -> String {
    let mut attr = candidate.to_attribute();
    if let Some(name) = name {
        if candidate.kind == CandidateKind::Host {
            attr.connection_address = ConnectionAddress::Fqdn(name);
        } else if attr.related_address.is_some() {
            attr.related_address = Some(ConnectionAddress::Ip(IpAddr::V4(Ipv4Addr::UNSPECIFIED)));
            attr.related_port = Some(0);
        }
    }
    attr.to_string()
}

/// The name of `candidate`'s hidden address in `names`: its own address
/// for a host candidate, its base (related address) for a reflexive one.
pub(crate) fn hidden_name<'a>(
    names: &'a [(IpAddr, String)],
    candidate: &Candidate,
) -> Option<&'a str> {
    let ip = match candidate.kind {
        CandidateKind::Host => candidate.address.ip(),
        _ => candidate.related_address.map(|a: SocketAddr| a.ip())?,
    };
    names
        .iter()
        .find(|(a, _)| *a == ip)
        .map(|(_, n)| n.as_str())
}

#[cfg(feature = "mdns")]
pub use daemon::{MdnsDaemon, MdnsMode, MdnsResolver};

#[cfg(feature = "mdns")]
pub(crate) use daemon::obfuscate;

#[cfg(feature = "mdns")]
mod daemon {
    use std::net::IpAddr;
    use std::sync::Arc;
    use std::time::Duration;

    use std::net::SocketAddr;
    use std::sync::OnceLock;

    use mdns_sd::{HostnameResolutionEvent, ServiceDaemon, ServiceInfo};
    use tracing::{debug, warn};

    use crate::error::StartError;
    use crate::resolve::{Resolution, Resolver, SystemResolver};
    use crate::session::SessionConfig;

    /// `.local` names over mDNS, every other name through the system
    /// resolver. The mDNS daemon is the configured one, or one started on
    /// the first `.local` name.
    #[derive(Debug)]
    pub struct MdnsResolver {
        daemon: OnceLock<MdnsDaemon>,
        timeout: Duration,
        system: SystemResolver,
    }

    impl MdnsResolver {
        /// Resolve with `daemon` (or one started when first needed) within
        /// `timeout`; names outside `.local` go to `system`.
        pub fn new(daemon: Option<MdnsDaemon>, timeout: Duration, system: SystemResolver) -> Self {
            let cell = OnceLock::new();
            if let Some(d) = daemon {
                let _ = cell.set(d);
            }
            MdnsResolver {
                daemon: cell,
                timeout,
                system,
            }
        }

        /// The daemon, if one is configured or was started.
        pub fn daemon(&self) -> Option<&MdnsDaemon> {
            self.daemon.get()
        }
    }

    impl Resolver for MdnsResolver {
        fn resolve(&self, name: &str, port: u16) -> Resolution {
            let lower = name.trim_end_matches('.').to_ascii_lowercase();
            if !lower.ends_with(".local") {
                return self.system.resolve(name, port);
            }
            let daemon = match self.daemon.get() {
                Some(d) => d.clone(),
                None => match MdnsDaemon::start() {
                    Ok(d) => self.daemon.get_or_init(|| d).clone(),
                    Err(e) => {
                        warn!("{name} not resolved: no mDNS daemon: {e}");
                        return Box::pin(async { Vec::new() });
                    }
                },
            };
            let (name, timeout) = (name.to_owned(), self.timeout);
            Box::pin(async move {
                match resolve(&daemon, &name, timeout).await {
                    Some(ip) => vec![SocketAddr::new(ip, port)],
                    None => {
                        warn!("{name} did not resolve over mDNS within {timeout:?}");
                        Vec::new()
                    }
                }
            })
        }
    }

    /// The registrations (if any) and the `(address, name)` pairs.
    pub(crate) type Obfuscated = (Option<Registrations>, Vec<(IpAddr, String)>);

    /// With `MdnsMode::Obfuscate`, a `.local` name for each hidden host
    /// address, registered with the configured daemon (or one started
    /// now): the registrations (unregistered on drop) and the names.
    pub(crate) fn obfuscate(
        config: &SessionConfig,
        hosts: &[SocketAddr],
    ) -> Result<Obfuscated, StartError> {
        if config.mdns != MdnsMode::Obfuscate {
            return Ok((None, Vec::new()));
        }
        let mut names: Vec<(IpAddr, String)> = Vec::new();
        for h in hosts {
            let ip = h.ip();
            if super::should_obfuscate(ip) && !names.iter().any(|(a, _)| *a == ip) {
                names.push((ip, super::random_mdns_name().map_err(StartError::Random)?));
            }
        }
        if names.is_empty() {
            return Ok((None, names));
        }
        let daemon = match &config.mdns_daemon {
            Some(d) => d.clone(),
            None => MdnsDaemon::start().map_err(StartError::Mdns)?,
        };
        let (r, names) = register(&daemon, names);
        Ok((Some(r), names))
    }

    /// The DNS-SD service type our names are registered under (mdns-sd
    /// answers A/AAAA queries for the host names of its services).
    const SERVICE_TYPE: &str = "_scream-ice._udp.local.";

    /// Whether host candidates are hidden behind mDNS names.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    #[non_exhaustive]
    pub enum MdnsMode {
        /// Candidates carry their IP addresses.
        #[default]
        Off,
        /// Private, link-local and unique-local host addresses get a random
        /// `<uuid>.local` name that this machine answers for
        /// ([`should_obfuscate`](super::should_obfuscate)).
        Obfuscate,
    }

    /// An mDNS responder and querier (an mdns-sd [`ServiceDaemon`]), shared
    /// by sessions. Cheap to clone. A daemon created by
    /// [`MdnsDaemon::start`] shuts down when its last clone (and the last
    /// session using it) is dropped; one passed in with
    /// [`MdnsDaemon::from_daemon`] is left running.
    #[derive(Clone)]
    pub struct MdnsDaemon {
        inner: Arc<Inner>,
    }

    struct Inner {
        daemon: ServiceDaemon,
        owned: bool,
    }

    impl Drop for Inner {
        fn drop(&mut self) {
            if self.owned {
                let _ = self.daemon.shutdown();
            }
        }
    }

    impl std::fmt::Debug for MdnsDaemon {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("MdnsDaemon")
                .field("owned", &self.inner.owned)
                .finish_non_exhaustive()
        }
    }

    impl MdnsDaemon {
        /// A new daemon on port 5353 on every interface (mdns-sd's
        /// defaults); its thread starts now.
        pub fn start() -> Result<MdnsDaemon, mdns_sd::Error> {
            Ok(MdnsDaemon {
                inner: Arc::new(Inner {
                    daemon: ServiceDaemon::new()?,
                    owned: true,
                }),
            })
        }

        /// Use an existing daemon (e.g. one restricted to some interfaces
        /// with [`ServiceDaemon::disable_interface`]); it is not shut down
        /// by this crate.
        pub fn from_daemon(daemon: ServiceDaemon) -> MdnsDaemon {
            MdnsDaemon {
                inner: Arc::new(Inner {
                    daemon,
                    owned: false,
                }),
            }
        }

        /// The mdns-sd daemon.
        pub fn daemon(&self) -> &ServiceDaemon {
            &self.inner.daemon
        }
    }

    /// The names a session registered; unregistered when dropped (the
    /// driver task owns them, so on close and on drop of the session).
    #[derive(Debug)]
    pub struct Registrations {
        daemon: MdnsDaemon,
        fullnames: Vec<String>,
    }

    impl Drop for Registrations {
        fn drop(&mut self) {
            for f in &self.fullnames {
                match self.daemon.daemon().unregister(f) {
                    Ok(_) => debug!("mDNS name {f} unregistered"),
                    Err(e) => warn!("mDNS name {f} not unregistered: {e}"),
                }
            }
        }
    }

    /// Register each `(ip, name)` so the daemon answers A/AAAA queries for
    /// `name` with `ip`. Names that fail to register are logged and left
    /// out of the result (their candidates then go out with the IP).
    fn register(
        daemon: &MdnsDaemon,
        names: Vec<(IpAddr, String)>,
    ) -> (Registrations, Vec<(IpAddr, String)>) {
        let mut fullnames = Vec::new();
        let mut ok = Vec::new();
        for (ip, name) in names {
            let instance = name.trim_end_matches(".local");
            let host = format!("{name}.");
            let info = ServiceInfo::new(
                SERVICE_TYPE,
                instance,
                &host,
                ip,
                9,
                None::<std::collections::HashMap<String, String>>,
            );
            match info.and_then(|info| {
                let full = info.get_fullname().to_owned();
                daemon.daemon().register(info).map(|()| full)
            }) {
                Ok(full) => {
                    debug!("mDNS name {name} registered for {ip}");
                    fullnames.push(full);
                    ok.push((ip, name));
                }
                Err(e) => warn!("mDNS name for {ip} not registered, the IP is used: {e}"),
            }
        }
        (
            Registrations {
                daemon: daemon.clone(),
                fullnames,
            },
            ok,
        )
    }

    /// The first address `name` (a `.local` name) resolves to over mDNS
    /// within `timeout` (IPv4 preferred), or `None`.
    async fn resolve(daemon: &MdnsDaemon, name: &str, timeout: Duration) -> Option<IpAddr> {
        let fqdn = if name.ends_with('.') {
            name.to_ascii_lowercase()
        } else {
            format!("{}.", name.to_ascii_lowercase())
        };
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let rx = match daemon.daemon().resolve_hostname(&fqdn, Some(ms)) {
            Ok(rx) => rx,
            Err(e) => {
                warn!("mDNS query for {name} not sent: {e}");
                return None;
            }
        };
        let found = tokio::time::timeout(timeout, async {
            while let Ok(ev) = rx.recv_async().await {
                match ev {
                    HostnameResolutionEvent::AddressesFound(_, addrs) => {
                        let ips: Vec<IpAddr> = addrs.iter().map(|a| a.to_ip_addr()).collect();
                        if let Some(ip) = ips
                            .iter()
                            .find(|a| a.is_ipv4())
                            .or_else(|| ips.first())
                            .copied()
                        {
                            return Some(ip);
                        }
                    }
                    HostnameResolutionEvent::SearchTimeout(_)
                    | HostnameResolutionEvent::SearchStopped(_) => return None,
                    _ => {}
                }
            }
            None
        })
        .await
        .ok()
        .flatten();
        let _ = daemon.daemon().stop_resolve_hostname(&fqdn);
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_uuid_v4_under_local() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let n = random_mdns_name().unwrap();
            assert!(is_uuid_mdns_name(&n), "{n}");
            assert_eq!(n.len(), 42);
            assert!(ConnectionAddress::parse(&n).unwrap().is_mdns(), "{n}");
            assert!(seen.insert(n));
        }
    }

    #[test]
    fn uuid_bits_are_forced() {
        assert_eq!(
            uuid_v4_name([0; 16]),
            "00000000-0000-4000-8000-000000000000.local"
        );
        assert_eq!(
            uuid_v4_name([0xff; 16]),
            "ffffffff-ffff-4fff-bfff-ffffffffffff.local"
        );
        for bad in [
            "00000000-0000-4000-8000-000000000000.locals",
            "00000000-0000-3000-8000-000000000000.local",
            "00000000-0000-4000-c000-000000000000.local",
            "00000000-0000-4000-8000-00000000000.local",
            "0000000000000-4000-8000-000000000000.local",
            "00000000-0000-4000-8000-00000000000G.local",
            "host.local",
        ] {
            assert!(!is_uuid_mdns_name(bad), "{bad}");
        }
    }

    #[test]
    fn which_addresses_are_hidden() {
        for (ip, hidden) in [
            ("192.168.1.2", true),
            ("10.0.0.1", true),
            ("172.16.5.5", true),
            ("169.254.1.1", true),
            ("fe80::1", true),
            ("fd00::1", true),
            ("127.0.0.1", false),
            ("::1", false),
            ("100.64.0.1", false),
            ("203.0.113.9", false),
            ("2001:db8::1", false),
            ("8.8.8.8", false),
        ] {
            assert_eq!(should_obfuscate(ip.parse().unwrap()), hidden, "{ip}");
        }
    }

    #[test]
    fn candidate_lines_carry_the_name() {
        let host: Candidate = scream_ice_core::candidate::CandidateAttribute::parse(
            "candidate:1 1 udp 2122260223 192.168.1.2 50000 typ host",
        )
        .unwrap()
        .to_candidate()
        .unwrap();
        let name = "0a1b2c3d-0000-4000-8000-000000000000.local";
        assert_eq!(
            candidate_line(&host, Some(name)),
            format!("candidate:1 1 udp 2122260223 {name} 50000 typ host")
        );
        assert_eq!(
            candidate_line(&host, None),
            "candidate:1 1 udp 2122260223 192.168.1.2 50000 typ host"
        );
        let srflx: Candidate = scream_ice_core::candidate::CandidateAttribute::parse(
            "candidate:2 1 udp 1686052607 203.0.113.7 40000 typ srflx raddr 192.168.1.2 rport 50000",
        )
        .unwrap()
        .to_candidate()
        .unwrap();
        assert_eq!(
            candidate_line(&srflx, Some(name)),
            "candidate:2 1 udp 1686052607 203.0.113.7 40000 typ srflx raddr 0.0.0.0 rport 0"
        );
        // The line parses back, with the name as an mDNS address.
        let line = candidate_line(&host, Some(name));
        let back = scream_ice_core::candidate::CandidateAttribute::parse(&line).unwrap();
        assert!(back.connection_address.is_mdns());
        assert_eq!(back.validate(), Ok(()));

        let names = vec![("192.168.1.2".parse().unwrap(), name.to_owned())];
        assert_eq!(hidden_name(&names, &host), Some(name));
        assert_eq!(hidden_name(&names, &srflx), Some(name));
        let other = scream_ice_core::candidate::CandidateAttribute::parse(
            "candidate:1 1 udp 2122260223 192.168.1.3 50000 typ host",
        )
        .unwrap()
        .to_candidate()
        .unwrap();
        assert_eq!(hidden_name(&names, &other), None);
    }
}
