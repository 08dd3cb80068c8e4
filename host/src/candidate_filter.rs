//! Where the router may send connectivity checks for a speaker session:
//! the remote candidates that arrive over HTTP are limited to addresses
//! the client could own (RFC 8445 section 19.5.1: otherwise one POST aims
//! the router's checks at any third party). A pure function of the
//! candidate, the client and the router's own networks:
//!
//! - never the unspecified address, multicast, broadcast (limited, or the
//!   directed broadcast of one of the router's subnets), port 0, or one of
//!   the router's own listening ports (HTTP, STUN);
//! - loopback only when the client itself is on loopback;
//! - with a local decision (the client is on the LAN): only the client's
//!   own address, an address in the client's subnet on the router's
//!   interface, or one in `local_subnets`;
//! - otherwise (a remote client): no LAN-scoped address (private,
//!   unique-local, link-local) and nothing in `local_subnets`: a remote
//!   client cannot own those, and checks there would hit the router's
//!   neighbours. (A global address on the router's WAN subnet stays
//!   allowed: a remote client can sit there.)
//!
//! Host names are refused ([`check_name`]): `.local` names only when mDNS
//! resolution is on, anything else always (the HTTP handler answers 400).

use std::net::{IpAddr, SocketAddr};

use scream_ice_core::net::{AddressClass, Cidr, canonical, classify};
use scream_ice_core::sdpfrag::SdpFrag;

/// What the filter needs to know about the router and the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    /// The client's address (as the policy saw it).
    pub client: IpAddr,
    /// The policy's decision put the client on the local network.
    pub local: bool,
    /// The router's interface subnets.
    pub interfaces: Vec<Cidr>,
    /// The router's own addresses on them.
    pub router_ips: Vec<IpAddr>,
    /// The configured `local_subnets`.
    pub local_subnets: Vec<Cidr>,
    /// The router's listening sockets (HTTP, STUN); an unspecified IP
    /// stands for every address of the router.
    pub own: Vec<SocketAddr>,
    /// `.local` names may be resolved (mDNS on).
    pub mdns: bool,
}

/// Why a remote candidate address was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refused {
    /// Unspecified, multicast, broadcast, reserved, or port 0.
    #[error("{0} is not a unicast candidate address")]
    NotUnicast(IpAddr),
    /// Loopback, and the client is not.
    #[error("{0} is loopback and the client is not")]
    Loopback(IpAddr),
    /// One of the router's own service ports.
    #[error("{0} is one of the router's own ports")]
    RouterPort(SocketAddr),
    /// Outside what the client could own.
    #[error("{0} is not on the client's network")]
    NotClientNetwork(IpAddr),
    /// A host name, which is not resolved.
    #[error("host name candidates are not accepted (only .local with mDNS)")]
    Name,
}

fn directed_broadcast(ip: IpAddr, subnets: &[Cidr]) -> bool {
    let IpAddr::V4(v4) = ip else { return false };
    subnets.iter().any(|c| {
        c.prefix_len() < 31
            && c.contains(ip)
            && (u32::from(v4) | (u32::MAX >> c.prefix_len())) == u32::from(v4)
    })
}

fn is_router_port(addr: SocketAddr, ctx: &Context) -> bool {
    ctx.own.iter().any(|o| {
        o.port() == addr.port()
            && (o.ip() == addr.ip()
                || (o.ip().is_unspecified()
                    && (addr.ip().is_loopback() || ctx.router_ips.contains(&addr.ip()))))
    })
}

/// Whether the router may check `addr` for this client; see the module
/// docs for the rules.
pub fn check_address(addr: SocketAddr, ctx: &Context) -> Result<(), Refused> {
    let ip = canonical(addr.ip());
    let addr = SocketAddr::new(ip, addr.port());
    let client = canonical(ctx.client);
    let class = classify(ip);
    if addr.port() == 0 || class.is_never_candidate() || directed_broadcast(ip, &ctx.interfaces) {
        return Err(Refused::NotUnicast(ip));
    }
    if is_router_port(addr, ctx) {
        return Err(Refused::RouterPort(addr));
    }
    if class == AddressClass::Loopback {
        return if client.is_loopback() {
            Ok(())
        } else {
            Err(Refused::Loopback(ip))
        };
    }
    let in_any = |nets: &[Cidr]| nets.iter().any(|c| c.contains(ip));
    if ctx.local {
        let same_subnet = ctx
            .interfaces
            .iter()
            .any(|c| c.contains(client) && c.contains(ip));
        if ip == client || same_subnet || in_any(&ctx.local_subnets) {
            Ok(())
        } else {
            Err(Refused::NotClientNetwork(ip))
        }
    } else if class.is_lan_scoped() || in_any(&ctx.local_subnets) {
        Err(Refused::NotClientNetwork(ip))
    } else {
        Ok(())
    }
}

/// A `.local` name is the client's to choose, so what it resolved to is
/// checked like a literal address: a name cannot aim the router anywhere
/// an address could not.
impl scream_ice_tokio::AddressFilter for Context {
    fn allows(&self, address: SocketAddr) -> bool {
        match check_address(address, self) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("resolved remote candidate refused: {e}");
                false
            }
        }
    }
}

/// Whether a host-name candidate may be resolved: only `.local` names,
/// and only with mDNS on.
pub fn check_name(name: &str, mdns: bool) -> Result<(), Refused> {
    let local = name
        .strip_suffix('.')
        .unwrap_or(name)
        .to_ascii_lowercase()
        .ends_with(".local");
    if mdns && local {
        Ok(())
    } else {
        Err(Refused::Name)
    }
}

/// Every host-name candidate of a fragment passes [`check_name`] (the
/// HTTP handlers answer 400 otherwise, before anything is applied).
pub fn check_fragment_names(frag: &SdpFrag<'_>, mdns: bool) -> Result<(), Refused> {
    for c in frag.candidates() {
        if let scream_ice_core::candidate::ConnectionAddress::Fqdn(name) = c.connection_address {
            check_name(name, mdns)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        Cidr::parse(s).unwrap()
    }

    #[test]
    fn lan_client() {
        let ctx = Context {
            client: "192.168.1.20".parse().unwrap(),
            local: true,
            interfaces: vec![cidr("192.168.1.0/24"), cidr("10.9.0.0/16")],
            router_ips: vec!["192.168.1.2".parse().unwrap(), "10.9.0.1".parse().unwrap()],
            mdns: false,
            local_subnets: vec![cidr("172.20.0.0/16")],
            own: vec![
                "0.0.0.0:8188".parse().unwrap(),
                "0.0.0.0:3478".parse().unwrap(),
            ],
        };
        let ok = |s: &str| check_address(s.parse().unwrap(), &ctx);
        assert_eq!(ok("192.168.1.20:5000"), Ok(()));
        assert_eq!(ok("192.168.1.77:5000"), Ok(()));
        assert_eq!(ok("172.20.3.4:5000"), Ok(()));
        assert!(matches!(
            ok("10.9.0.5:5000"),
            Err(Refused::NotClientNetwork(_))
        ));
        assert!(matches!(
            ok("8.8.8.8:53"),
            Err(Refused::NotClientNetwork(_))
        ));
        assert!(matches!(ok("127.0.0.1:5000"), Err(Refused::Loopback(_))));
        assert!(matches!(ok("[::1]:5000"), Err(Refused::Loopback(_))));
        assert!(matches!(
            ok("224.0.0.251:5353"),
            Err(Refused::NotUnicast(_))
        ));
        assert!(matches!(
            ok("255.255.255.255:9"),
            Err(Refused::NotUnicast(_))
        ));
        assert!(matches!(ok("192.168.1.255:9"), Err(Refused::NotUnicast(_))));
        assert!(matches!(ok("0.0.0.0:9"), Err(Refused::NotUnicast(_))));
        assert!(matches!(ok("192.168.1.20:0"), Err(Refused::NotUnicast(_))));
        assert!(matches!(
            ok("192.168.1.2:8188"),
            Err(Refused::RouterPort(_))
        ));
        assert!(matches!(
            ok("192.168.1.2:3478"),
            Err(Refused::RouterPort(_))
        ));
        // The router's address on another port: a speaker could not own it,
        // but it is on the client's subnet; ports other than ours are
        // allowed there (the router's own ICE sockets answer checks).
        assert_eq!(ok("192.168.1.2:40000"), Ok(()));
        assert!(matches!(
            ok("[::ffff:127.0.0.1]:5000"),
            Err(Refused::Loopback(_))
        ));
    }

    #[test]
    fn loopback_and_remote_clients() {
        let lo = Context {
            client: "127.0.0.1".parse().unwrap(),
            local: true,
            interfaces: vec![cidr("192.168.1.0/24")],
            router_ips: vec!["192.168.1.2".parse().unwrap()],
            mdns: false,
            local_subnets: vec![],
            own: vec!["127.0.0.1:8188".parse().unwrap()],
        };
        assert_eq!(
            check_address("127.0.0.1:5000".parse().unwrap(), &lo),
            Ok(())
        );
        assert_eq!(
            check_address("127.0.0.9:5000".parse().unwrap(), &lo),
            Ok(())
        );
        assert!(matches!(
            check_address("127.0.0.1:8188".parse().unwrap(), &lo),
            Err(Refused::RouterPort(_))
        ));
        let remote = Context {
            client: "198.51.100.7".parse().unwrap(),
            local: false,
            ..lo.clone()
        };
        let r = |s: &str| check_address(s.parse().unwrap(), &remote);
        assert_eq!(r("198.51.100.7:40000"), Ok(()));
        assert_eq!(r("203.0.113.9:3478"), Ok(()));
        assert!(matches!(
            r("192.168.1.30:5000"),
            Err(Refused::NotClientNetwork(_))
        ));
        assert!(matches!(
            r("10.1.2.3:5000"),
            Err(Refused::NotClientNetwork(_))
        ));
        assert!(matches!(
            r("[fe80::1]:5000"),
            Err(Refused::NotClientNetwork(_))
        ));
        assert!(matches!(r("127.0.0.1:5000"), Err(Refused::Loopback(_))));
        // A remote client next to the router's WAN interface.
        let wan = Context {
            interfaces: vec![cidr("192.168.1.0/24"), cidr("203.0.113.0/24")],
            ..remote.clone()
        };
        assert_eq!(
            check_address("203.0.113.77:6000".parse().unwrap(), &wan),
            Ok(())
        );
        assert!(matches!(
            check_address("192.168.1.77:6000".parse().unwrap(), &wan),
            Err(Refused::NotClientNetwork(_))
        ));
    }

    #[test]
    fn names() {
        assert_eq!(
            check_name("1f2e3d4c-aaaa-bbbb-cccc-000000000000.local", true),
            Ok(())
        );
        assert_eq!(check_name("Speaker.LOCAL.", true), Ok(()));
        assert_eq!(check_name("speaker.local", false), Err(Refused::Name));
        assert_eq!(check_name("victim.example.com", true), Err(Refused::Name));
        assert_eq!(check_name("local", true), Err(Refused::Name));
    }
}
