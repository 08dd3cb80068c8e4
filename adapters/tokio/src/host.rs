//! Host candidate discovery: which of the machine's addresses become host
//! candidates, and the sockets bound on them.
//!
//! This module runs once, at session start, before the agent exists: it
//! lists the interfaces ([`list_interfaces`]), keeps those the
//! [`HostFilter`] accepts (up, not loopback unless asked, not IPv6
//! link-local unless asked, then the user's allow/deny lists and callback),
//! binds one [`tokio::net::UdpSocket`] per address inside the optional
//! [`PortRange`] ([`bind_host_socket`]); the core session ranks them
//! ([`scream_ice_core::session::host_local_preference`]). Explicit bind
//! addresses ([`HostAddresses::Explicit`]) skip discovery entirely (tests on
//! 127.0.0.1, a network namespace's veth address). The srflx candidates are
//! gathered from these very sockets, so the port range applies to them too.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::sync::Arc;
use std::task::Poll;

use scream_ice_core::net::{self, AddressClass, Cidr};
use tokio::io::ReadBuf;
use tokio::net::UdpSocket;

use crate::error::{BindError, DiscoverError};

/// One address of one interface, as the filter sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceInfo {
    /// The interface name (`eth0`, `wlan0`, `lo`, `veth-spk`).
    pub name: String,
    /// The interface index (the scope id of IPv6 link-local addresses).
    pub index: Option<u32>,
    /// The address.
    pub address: IpAddr,
    /// Its prefix length (from the netmask).
    pub prefix_len: u8,
    /// Whether the interface is operationally up (`IFF_RUNNING` on Linux).
    pub up: bool,
    /// The core's class of the address.
    pub class: AddressClass,
}

impl InterfaceInfo {
    /// Whether this is an IPv6 link-local address (`fe80::/10`).
    pub fn is_ipv6_link_local(&self) -> bool {
        matches!(self.address, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)
    }
}

/// A user's decision on one interface address.
pub type InterfaceCallback = Arc<dyn Fn(&InterfaceInfo) -> bool + Send + Sync>;

/// Which interface addresses become host candidates. The default takes
/// every up, non-loopback address except IPv6 link-local ones.
///
/// An address is taken when all of these hold, in this order: the interface
/// is up; it is not loopback (unless `include_loopback`); it is not IPv6
/// link-local (unless `include_ipv6_link_local`); its class can be a
/// candidate at all (not unspecified, multicast, broadcast, reserved, nor an
/// IPv4-mapped IPv6 address); its interface name is in `allow_interfaces`
/// (when non-empty) and not in `deny_interfaces`; the address is in one of
/// `allow_cidrs` (when non-empty) and in none of `deny_cidrs`; and
/// `callback` (if any) returns true.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct HostFilter {
    /// Take loopback addresses too.
    pub include_loopback: bool,
    /// Take IPv6 link-local addresses too (bound with their scope id).
    pub include_ipv6_link_local: bool,
    /// Only these interface names (empty: all).
    pub allow_interfaces: Vec<String>,
    /// Never these interface names.
    pub deny_interfaces: Vec<String>,
    /// Only addresses in these subnets (empty: all).
    pub allow_cidrs: Vec<Cidr>,
    /// Never addresses in these subnets.
    pub deny_cidrs: Vec<Cidr>,
    /// The last word, after every other rule.
    pub callback: Option<InterfaceCallback>,
}

impl fmt::Debug for HostFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostFilter")
            .field("include_loopback", &self.include_loopback)
            .field("include_ipv6_link_local", &self.include_ipv6_link_local)
            .field("allow_interfaces", &self.allow_interfaces)
            .field("deny_interfaces", &self.deny_interfaces)
            .field("allow_cidrs", &self.allow_cidrs)
            .field("deny_cidrs", &self.deny_cidrs)
            .field("callback", &self.callback.as_ref().map(|_| "Fn"))
            .finish()
    }
}

impl HostFilter {
    /// The default filter (see the type's docs).
    pub fn new() -> HostFilter {
        HostFilter::default()
    }

    /// Set the callback that has the last word on each address.
    pub fn with_callback(
        mut self,
        f: impl Fn(&InterfaceInfo) -> bool + Send + Sync + 'static,
    ) -> HostFilter {
        self.callback = Some(Arc::new(f));
        self
    }

    /// Whether `i` becomes a host candidate (the rules in the type's docs).
    /// Never panics (unless the user's callback does).
    pub fn accepts(&self, i: &InterfaceInfo) -> bool {
        if !i.up {
            return false;
        }
        if i.class == AddressClass::Loopback && !self.include_loopback {
            return false;
        }
        if i.is_ipv6_link_local() && !self.include_ipv6_link_local {
            return false;
        }
        if i.class.is_never_candidate() || is_v4_mapped(i.address) {
            return false;
        }
        if !self.allow_interfaces.is_empty() && !self.allow_interfaces.contains(&i.name) {
            return false;
        }
        if self.deny_interfaces.contains(&i.name) {
            return false;
        }
        if !self.allow_cidrs.is_empty() && !net::in_local_subnets(i.address, &self.allow_cidrs) {
            return false;
        }
        if net::in_local_subnets(i.address, &self.deny_cidrs) {
            return false;
        }
        self.callback.as_ref().is_none_or(|f| f(i))
    }
}

fn is_v4_mapped(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some())
}

/// Where host candidates come from.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum HostAddresses {
    /// Enumerate the interfaces and keep what the filter accepts.
    Discover(HostFilter),
    /// Bind exactly these addresses (port 0: pick one in the port range, or
    /// any). Failing to bind one fails the session start.
    Explicit(Vec<SocketAddr>),
}

impl Default for HostAddresses {
    fn default() -> Self {
        HostAddresses::Discover(HostFilter::default())
    }
}

/// An inclusive range of local UDP ports for host sockets (and so for
/// srflx candidates, which share the host sockets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    /// Lowest port, at least 1.
    pub min: u16,
    /// Highest port, at least `min`.
    pub max: u16,
}

impl PortRange {
    /// `min..=max`; `None` when empty or starting at port 0.
    pub fn new(min: u16, max: u16) -> Option<PortRange> {
        (min >= 1 && min <= max).then_some(PortRange { min, max })
    }

    /// Number of ports in the range.
    pub fn len(&self) -> u32 {
        u32::from(self.max) - u32::from(self.min) + 1
    }

    /// Always false: a `PortRange` holds at least one port.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.min, self.max)
    }
}

/// Every address of every interface of this machine, unfiltered.
pub fn list_interfaces() -> Result<Vec<InterfaceInfo>, DiscoverError> {
    let list = if_addrs::get_if_addrs().map_err(DiscoverError::Io)?;
    Ok(list
        .into_iter()
        .map(|i| {
            let address = i.ip();
            let prefix_len = match &i.addr {
                if_addrs::IfAddr::V4(a) => a.prefixlen,
                if_addrs::IfAddr::V6(a) => a.prefixlen,
            };
            InterfaceInfo {
                up: i.is_oper_up() || i.is_loopback(),
                index: i.index,
                prefix_len,
                class: net::classify(address),
                address,
                name: i.name,
            }
        })
        .collect())
}

/// The interface addresses `filter` accepts, in enumeration order, without
/// duplicates.
pub fn discover(filter: &HostFilter) -> Result<Vec<InterfaceInfo>, DiscoverError> {
    let mut out: Vec<InterfaceInfo> = Vec::new();
    for i in list_interfaces()? {
        if filter.accepts(&i) && !out.iter().any(|o| o.address == i.address) {
            out.push(i);
        }
    }
    Ok(out)
}

/// The socket address to bind for an interface address: port 0, and the
/// interface index as scope id for IPv6 link-local addresses.
pub fn bind_address(i: &InterfaceInfo) -> SocketAddr {
    match i.address {
        IpAddr::V6(v6) if i.is_ipv6_link_local() => {
            SocketAddr::V6(SocketAddrV6::new(v6, 0, 0, i.index.unwrap_or(0)))
        }
        ip => SocketAddr::new(ip, 0),
    }
}

/// Bind one UDP socket at `address`. With a nonzero port, exactly that
/// port; with port 0 and a `range`, the first free port of the range,
/// starting at a random offset (`start`, reduced modulo the range length);
/// with port 0 and no range, any port the system picks.
pub async fn bind_host_socket(
    address: SocketAddr,
    range: Option<PortRange>,
    start: u32,
) -> Result<UdpSocket, BindError> {
    let io_err = |source: io::Error| BindError::Io { address, source };
    let Some(range) = range.filter(|_| address.port() == 0) else {
        return UdpSocket::bind(address).await.map_err(io_err);
    };
    let len = range.len();
    for k in 0..len {
        let offset = (start % len + k) % len;
        // offset < len <= 65535 - min + 1, so this cannot overflow.
        let port = u16::try_from(u32::from(range.min) + offset).unwrap_or(range.max);
        let mut a = address;
        a.set_port(port);
        match UdpSocket::bind(a).await {
            Ok(s) => return Ok(s),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(io_err(e)),
        }
    }
    Err(BindError::PortRangeExhausted { address, range })
}

/// One bound host socket (its own, or a [`crate::UdpMux`]'s shared one).
#[derive(Clone, Debug)]
pub(crate) struct HostSocket {
    pub address: SocketAddr,
    pub socket: Arc<UdpSocket>,
}

impl HostSocket {
    /// Bind `address` ([`bind_host_socket`]) and learn the address bound.
    pub(crate) async fn bind(
        address: SocketAddr,
        range: Option<PortRange>,
        start: u32,
    ) -> Result<HostSocket, BindError> {
        let socket = bind_host_socket(address, range, start).await?;
        let bound = socket
            .local_addr()
            .map_err(|source| BindError::Io { address, source })?;
        Ok(HostSocket {
            address: bound,
            socket: Arc::new(socket),
        })
    }
}

/// The first datagram on any of `hosts`, polling from `start` round-robin:
/// (socket index, result of `recv_from`).
pub(crate) fn recv_any<'a>(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, addr: &str) -> InterfaceInfo {
        let address: IpAddr = addr.parse().unwrap();
        InterfaceInfo {
            name: name.into(),
            index: Some(2),
            address,
            prefix_len: 24,
            up: true,
            class: net::classify(address),
        }
    }

    #[test]
    fn default_filter_rules() {
        let f = HostFilter::new();
        assert!(f.accepts(&info("eth0", "192.168.1.5")));
        assert!(f.accepts(&info("eth0", "2001:db8::5")));
        assert!(!f.accepts(&info("lo", "127.0.0.1")));
        assert!(!f.accepts(&info("lo", "::1")));
        assert!(!f.accepts(&info("eth0", "fe80::1")));
        assert!(
            f.accepts(&info("eth0", "169.254.3.4")),
            "IPv4 link-local kept"
        );
        assert!(!f.accepts(&info("eth0", "::ffff:192.168.1.5")));
        assert!(!f.accepts(&info("eth0", "0.0.0.0")));
        assert!(!f.accepts(&info("eth0", "224.0.0.1")));
        let mut down = info("eth1", "10.0.0.1");
        down.up = false;
        assert!(!f.accepts(&down));
    }

    #[test]
    fn opt_ins_and_lists() {
        let f = HostFilter {
            include_loopback: true,
            include_ipv6_link_local: true,
            deny_interfaces: vec!["docker0".into()],
            deny_cidrs: vec![Cidr::parse("10.9.0.0/16").unwrap()],
            ..HostFilter::default()
        };
        assert!(f.accepts(&info("lo", "127.0.0.1")));
        assert!(f.accepts(&info("eth0", "fe80::1")));
        assert!(!f.accepts(&info("docker0", "172.17.0.1")));
        assert!(!f.accepts(&info("eth0", "10.9.1.1")));
        assert!(f.accepts(&info("eth0", "10.8.1.1")));

        let f = HostFilter {
            allow_interfaces: vec!["wlan0".into()],
            allow_cidrs: vec![Cidr::parse("192.168.0.0/16").unwrap()],
            ..HostFilter::default()
        };
        assert!(f.accepts(&info("wlan0", "192.168.4.4")));
        assert!(!f.accepts(&info("eth0", "192.168.4.4")));
        assert!(!f.accepts(&info("wlan0", "10.0.0.4")));
    }

    #[test]
    fn callback_has_the_last_word() {
        let f = HostFilter::new().with_callback(|i| !i.name.starts_with("tun"));
        assert!(f.accepts(&info("eth0", "192.168.1.5")));
        assert!(!f.accepts(&info("tun0", "192.168.1.5")));
        let f = HostFilter::new().with_callback(|_| true);
        assert!(!f.accepts(&info("lo", "127.0.0.1")), "rules run first");
    }

    #[test]
    fn link_local_binds_with_scope() {
        let i = info("eth0", "fe80::1");
        match bind_address(&i) {
            SocketAddr::V6(a) => assert_eq!(a.scope_id(), 2),
            SocketAddr::V4(_) => panic!("v6 expected"),
        }
        assert_eq!(bind_address(&info("eth0", "10.0.0.1")).port(), 0);
    }

    #[test]
    fn port_range_bounds() {
        assert!(PortRange::new(0, 10).is_none());
        assert!(PortRange::new(10, 9).is_none());
        assert_eq!(PortRange::new(65535, 65535).unwrap().len(), 1);
        assert_eq!(PortRange::new(1, 65535).unwrap().len(), 65535);
    }

    #[tokio::test]
    async fn binds_inside_the_range_and_reports_exhaustion() {
        let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
        // Find a free pair of ports by binding anywhere first.
        let probe = UdpSocket::bind(lo).await.unwrap();
        let p = probe.local_addr().unwrap().port();
        drop(probe);
        let range = PortRange::new(p, p).unwrap();
        let a = bind_host_socket(lo, Some(range), 7).await.unwrap();
        assert_eq!(a.local_addr().unwrap().port(), p);
        match bind_host_socket(lo, Some(range), 0).await {
            Err(BindError::PortRangeExhausted { .. }) => {}
            other => panic!("expected exhaustion, got {other:?}"),
        }
    }

    #[test]
    fn listing_interfaces_works_here() {
        let all = list_interfaces().unwrap();
        assert!(all.iter().any(|i| i.class == AddressClass::Loopback));
        let f = HostFilter {
            include_loopback: true,
            allow_cidrs: vec![Cidr::parse("127.0.0.0/8").unwrap()],
            ..HostFilter::default()
        };
        let lo = discover(&f).unwrap();
        assert!(!lo.is_empty());
        assert!(lo.iter().all(|i| i.class == AddressClass::Loopback));
    }
}
