//! Address classes and configured local subnets.
//!
//! This module sits under the [`policy`](crate::policy): before the policy can
//! say whether a peer is on the local network, and before a host candidate is
//! offered to a peer, each address is put in a class ([`classify`]: loopback,
//! link-local, private RFC 1918, shared CGNAT space, unique-local, global, ...)
//! and matched against the operator's configured `local_subnets`
//! ([`Cidr`], [`in_local_subnets`]). IPv4-mapped IPv6 addresses
//! (`::ffff:a.b.c.d`, RFC 4291 §2.5.5.2) are always treated as the IPv4
//! address they carry, so a dual-stack socket's view of a peer and a
//! speaker's IPv4-only view of it classify the same way.
//!
//! Nothing here allocates or panics, on any input.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::str::FromStr;

/// The class of an IP address, as the ICE policy needs it.
///
/// Classes are disjoint; [`classify`] returns exactly one for every address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum AddressClass {
    /// `0.0.0.0` or `::` (RFC 1122 §3.2.1.3, RFC 4291 §2.5.2): "no address".
    Unspecified,
    /// `127.0.0.0/8` or `::1` (RFC 1122, RFC 4291 §2.5.3).
    Loopback,
    /// `169.254.0.0/16` (RFC 3927) or `fe80::/10` (RFC 4291 §2.5.6): valid on
    /// one link only, never routed.
    LinkLocal,
    /// `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16` (RFC 1918).
    Private,
    /// `100.64.0.0/10` (RFC 6598): the ISP side of carrier-grade NAT (also
    /// used by some overlay VPNs). Not globally routable, not a home LAN.
    SharedCgnat,
    /// `fc00::/7` (RFC 4193): IPv6 unique-local addresses, the IPv6 analogue
    /// of RFC 1918.
    UniqueLocal,
    /// `224.0.0.0/4` or `ff00::/8`: never a unicast candidate address.
    Multicast,
    /// `255.255.255.255` (RFC 919): limited broadcast.
    Broadcast,
    /// Documentation ranges: `192.0.2.0/24`, `198.51.100.0/24`,
    /// `203.0.113.0/24` (RFC 5737) and `2001:db8::/32` (RFC 3849).
    Documentation,
    /// Benchmarking ranges: `198.18.0.0/15` (RFC 2544) and `2001:2::/48`
    /// (RFC 5180).
    Benchmarking,
    /// Reserved or deprecated space that is neither local nor usable as a
    /// candidate: `0.0.0.0/8` other than `0.0.0.0` (RFC 1122), `240.0.0.0/4`
    /// other than the broadcast address (RFC 1112), IPv6 site-local
    /// `fec0::/10` (deprecated by RFC 3879) and IPv4-compatible `::/96`
    /// other than `::` and `::1` (deprecated by RFC 4291 §2.5.5.1). RFC 8445
    /// §5.1.1.1 excludes the last two from candidate lists.
    Reserved,
    /// Everything else: globally routable unicast.
    Global,
}

impl AddressClass {
    /// True for the classes that only make sense on a local network:
    /// link-local, private RFC 1918 and unique-local. (Loopback and shared
    /// CGNAT space are deliberately *not* included; see
    /// [`policy`](crate::policy) for how each is treated.)
    pub const fn is_lan_scoped(self) -> bool {
        matches!(
            self,
            AddressClass::LinkLocal | AddressClass::Private | AddressClass::UniqueLocal
        )
    }

    /// True for classes that can never be the address of a candidate:
    /// unspecified, multicast, broadcast and reserved space.
    pub const fn is_never_candidate(self) -> bool {
        matches!(
            self,
            AddressClass::Unspecified
                | AddressClass::Multicast
                | AddressClass::Broadcast
                | AddressClass::Reserved
        )
    }

    /// A short lowercase name, stable for logs and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            AddressClass::Unspecified => "unspecified",
            AddressClass::Loopback => "loopback",
            AddressClass::LinkLocal => "link-local",
            AddressClass::Private => "private",
            AddressClass::SharedCgnat => "shared-cgnat",
            AddressClass::UniqueLocal => "unique-local",
            AddressClass::Multicast => "multicast",
            AddressClass::Broadcast => "broadcast",
            AddressClass::Documentation => "documentation",
            AddressClass::Benchmarking => "benchmarking",
            AddressClass::Reserved => "reserved",
            AddressClass::Global => "global",
        }
    }
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `addr`, with an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) turned into
/// the IPv4 address it carries. Every other address is returned unchanged.
/// Never panics.
pub const fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        IpAddr::V4(_) => addr,
    }
}

/// The class of `addr`. IPv4-mapped IPv6 addresses are classified as the
/// IPv4 address they carry. Never panics.
pub const fn classify(addr: IpAddr) -> AddressClass {
    match canonical(addr) {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// The class of an IPv4 address. Never panics.
pub const fn classify_v4(addr: Ipv4Addr) -> AddressClass {
    let [a, b, c, _] = addr.octets();
    match (a, b, c) {
        (0, 0, 0) if addr.to_bits() == 0 => AddressClass::Unspecified,
        (0, _, _) => AddressClass::Reserved,
        (127, _, _) => AddressClass::Loopback,
        (169, 254, _) => AddressClass::LinkLocal,
        (10, _, _) => AddressClass::Private,
        (172, 16..=31, _) => AddressClass::Private,
        (192, 168, _) => AddressClass::Private,
        (100, 64..=127, _) => AddressClass::SharedCgnat,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => AddressClass::Documentation,
        (198, 18..=19, _) => AddressClass::Benchmarking,
        (224..=239, _, _) => AddressClass::Multicast,
        (255, 255, 255) if addr.to_bits() == u32::MAX => AddressClass::Broadcast,
        (240..=255, _, _) => AddressClass::Reserved,
        _ => AddressClass::Global,
    }
}

/// The class of an IPv6 address, taken literally: an IPv4-mapped address is
/// [`AddressClass::Global`] here (use [`classify`] to look through it).
/// Never panics.
pub const fn classify_v6(addr: Ipv6Addr) -> AddressClass {
    let bits = addr.to_bits();
    let seg = addr.segments();
    if bits == 0 {
        AddressClass::Unspecified
    } else if bits == 1 {
        AddressClass::Loopback
    } else if seg[0] & 0xffc0 == 0xfe80 {
        AddressClass::LinkLocal
    } else if seg[0] & 0xffc0 == 0xfec0 {
        AddressClass::Reserved
    } else if seg[0] & 0xfe00 == 0xfc00 {
        AddressClass::UniqueLocal
    } else if seg[0] & 0xff00 == 0xff00 {
        AddressClass::Multicast
    } else if seg[0] == 0x2001 && seg[1] == 0x0db8 {
        AddressClass::Documentation
    } else if seg[0] == 0x2001 && seg[1] == 0x0002 && seg[2] == 0 {
        AddressClass::Benchmarking
    } else if bits >> 32 == 0 {
        // ::/96, IPv4-compatible (deprecated), minus :: and ::1 handled above.
        AddressClass::Reserved
    } else {
        AddressClass::Global
    }
}

/// Why a [`Cidr`] could not be built or parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum CidrError {
    /// The input was empty.
    Empty,
    /// No `/prefix-length` part: a bare address is not a subnet.
    MissingPrefixLength,
    /// The part before `/` is not an IPv4 or IPv6 address.
    BadAddress,
    /// The prefix length is not a decimal number (or has a sign, leading
    /// zeros or more than three digits).
    BadPrefixLength,
    /// The prefix length exceeds 32 (IPv4) or 128 (IPv6).
    PrefixLengthTooLong,
    /// The address has bits set beyond the prefix length (as in
    /// `192.168.1.5/24`). Rejected rather than masked: such a line is either a
    /// host written where a subnet belongs or a subnet with a typo, and the
    /// config must say which. Use [`Cidr::new_masked`] to mask on purpose.
    HostBitsSet,
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CidrError::Empty => "empty subnet",
            CidrError::MissingPrefixLength => {
                "missing /prefix-length (a bare address is not a subnet)"
            }
            CidrError::BadAddress => "not an IPv4 or IPv6 address",
            CidrError::BadPrefixLength => "prefix length is not a plain decimal number",
            CidrError::PrefixLengthTooLong => "prefix length exceeds 32 (IPv4) or 128 (IPv6)",
            CidrError::HostBitsSet => {
                "address has host bits set beyond the prefix length (write the network address)"
            }
        })
    }
}

impl core::error::Error for CidrError {}

/// An IPv4 or IPv6 subnet: a network address and a prefix length, with no
/// host bits set (so two equal subnets compare equal).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix_len: u8,
}

impl Cidr {
    /// The subnet `network/prefix_len`. Errors if `prefix_len` is too long for
    /// the family or `network` has host bits set. Never panics.
    ///
    /// An IPv4-mapped `network` is kept as IPv6 (only [`Cidr::contains`]
    /// looks through mapped *addresses*); write IPv4 subnets in IPv4.
    pub const fn new(network: IpAddr, prefix_len: u8) -> Result<Cidr, CidrError> {
        match Cidr::new_masked(network, prefix_len) {
            Ok(c) => {
                if ip_bits(c.network) == ip_bits(network) {
                    Ok(c)
                } else {
                    Err(CidrError::HostBitsSet)
                }
            }
            Err(e) => Err(e),
        }
    }

    /// The subnet of `addr` with prefix length `prefix_len`: host bits are
    /// cleared (`192.168.1.5/24` becomes `192.168.1.0/24`). Errors only if
    /// `prefix_len` is too long for the family. Never panics.
    pub const fn new_masked(addr: IpAddr, prefix_len: u8) -> Result<Cidr, CidrError> {
        let max = family_bits(addr);
        if prefix_len > max {
            return Err(CidrError::PrefixLengthTooLong);
        }
        let network = match addr {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from_bits(
                v4.to_bits() & (mask(prefix_len, 32) as u32),
            )),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & mask(prefix_len, 128))),
        };
        Ok(Cidr {
            network,
            prefix_len,
        })
    }

    /// Parse `address/prefix-length`, e.g. `192.168.1.0/24` or `fd00::/8`.
    /// The address uses the standard text forms (RFC 4291 §2.2 for IPv6);
    /// the prefix length is one to three decimal digits without sign or
    /// leading zeros. A bare address is rejected
    /// ([`CidrError::MissingPrefixLength`]), and so are host bits beyond the
    /// prefix ([`CidrError::HostBitsSet`]). Never panics.
    pub fn parse(s: &str) -> Result<Cidr, CidrError> {
        if s.is_empty() {
            return Err(CidrError::Empty);
        }
        let (addr, len) = s.split_once('/').ok_or(CidrError::MissingPrefixLength)?;
        let addr = IpAddr::from_str(addr).map_err(|_| CidrError::BadAddress)?;
        let len = parse_prefix_len(len)?;
        Cidr::new(addr, len)
    }

    /// The network address (host bits all zero).
    pub const fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length: 0..=32 for IPv4, 0..=128 for IPv6.
    pub const fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// True if `addr` lies in this subnet. An IPv4-mapped IPv6 `addr` is
    /// matched as its IPv4 address; otherwise the families must agree.
    /// Never panics.
    pub const fn contains(&self, addr: IpAddr) -> bool {
        match (self.network, canonical(addr)) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                a.to_bits() & (mask(self.prefix_len, 32) as u32) == net.to_bits()
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                a.to_bits() & mask(self.prefix_len, 128) == net.to_bits()
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        Cidr::parse(s)
    }
}

impl fmt::Display for Cidr {
    /// `network/prefix_len`, which [`Cidr::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Cidr {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "{}/{}", DefmtIp(self.network), self.prefix_len);
    }
}

/// `defmt` formatting for `core::net` addresses without defmt's
/// `ip_in_core` feature (which the core does not enable).
#[cfg(feature = "defmt")]
#[derive(Clone, Copy)]
pub(crate) struct DefmtIp(pub(crate) IpAddr);

#[cfg(feature = "defmt")]
impl defmt::Format for DefmtIp {
    fn format(&self, f: defmt::Formatter<'_>) {
        match self.0 {
            IpAddr::V4(a) => {
                let [a, b, c, d] = a.octets();
                defmt::write!(f, "{}.{}.{}.{}", a, b, c, d);
            }
            IpAddr::V6(a) => {
                let [a, b, c, d, e, g, h, i] = a.segments();
                defmt::write!(
                    f,
                    "{=u16:x}:{=u16:x}:{=u16:x}:{=u16:x}:{=u16:x}:{=u16:x}:{=u16:x}:{=u16:x}",
                    a,
                    b,
                    c,
                    d,
                    e,
                    g,
                    h,
                    i
                );
            }
        }
    }
}

/// The first subnet in `subnets` that contains `addr`, if any. Never panics.
pub fn matching_subnet(addr: IpAddr, subnets: &[Cidr]) -> Option<&Cidr> {
    subnets.iter().find(|c| c.contains(addr))
}

/// True if any subnet in `subnets` contains `addr`. Never panics.
pub fn in_local_subnets(addr: IpAddr, subnets: &[Cidr]) -> bool {
    matching_subnet(addr, subnets).is_some()
}

const fn family_bits(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

const fn ip_bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(v4) => v4.to_bits() as u128,
        IpAddr::V6(v6) => v6.to_bits(),
    }
}

/// The top `len` bits set in a `width`-bit mask (`len <= width <= 128`).
const fn mask(len: u8, width: u8) -> u128 {
    let all: u128 = if width >= 128 {
        u128::MAX
    } else {
        (1u128 << width) - 1
    };
    if len == 0 {
        0
    } else if len >= width {
        all
    } else {
        // len in 1..width, so the shift is in range.
        all & !(all >> len)
    }
}

fn parse_prefix_len(s: &str) -> Result<u8, CidrError> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 3 || !b.iter().all(u8::is_ascii_digit) {
        return Err(CidrError::BadPrefixLength);
    }
    if b.len() > 1 && b.first() == Some(&b'0') {
        return Err(CidrError::BadPrefixLength);
    }
    let v = b.iter().fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    u8::try_from(v).map_err(|_| CidrError::PrefixLengthTooLong)
}

#[cfg(feature = "conformance")]
pub(crate) fn conformance(report: &mut crate::conformance::Report) {
    for &(name, addr, class) in CLASS_VECTORS {
        let ok = match IpAddr::from_str(addr) {
            Ok(a) => classify(a) == class,
            Err(_) => false,
        };
        report.check(name, ok);
    }
    for &(name, text, expect) in CIDR_VECTORS {
        report.check(name, Cidr::parse(text).map(|_| ()) == expect);
    }
    let lan = [Cidr::parse("192.168.1.0/24"), Cidr::parse("fd00:1::/64")];
    let ok = match lan {
        [Ok(a), Ok(b)] => {
            let subnets = [a, b];
            let t = |s: &str| IpAddr::from_str(s).is_ok_and(|x| in_local_subnets(x, &subnets));
            t("192.168.1.77")
                && t("::ffff:192.168.1.77")
                && t("fd00:1::abcd")
                && !t("192.168.2.1")
                && !t("fd00:2::1")
        }
        _ => false,
    };
    report.check("net: local_subnets matching", ok);
}

/// `(case name, address, class)`: shared by the unit tests and the
/// conformance run.
#[cfg(any(test, feature = "conformance"))]
const CLASS_VECTORS: &[(&str, &str, AddressClass)] = {
    use AddressClass as C;
    &[
        ("net: 0.0.0.0 unspecified", "0.0.0.0", C::Unspecified),
        ("net: :: unspecified", "::", C::Unspecified),
        ("net: 0.1.2.3 reserved", "0.1.2.3", C::Reserved),
        ("net: 127.0.0.1 loopback", "127.0.0.1", C::Loopback),
        (
            "net: 127.255.255.255 loopback",
            "127.255.255.255",
            C::Loopback,
        ),
        ("net: ::1 loopback", "::1", C::Loopback),
        ("net: 169.254.0.0 link-local", "169.254.0.0", C::LinkLocal),
        (
            "net: 169.254.255.255 link-local",
            "169.254.255.255",
            C::LinkLocal,
        ),
        ("net: 169.255.0.0 global", "169.255.0.0", C::Global),
        ("net: fe80::1 link-local", "fe80::1", C::LinkLocal),
        ("net: febf:: link-local", "febf::", C::LinkLocal),
        (
            "net: febf:ffff.. link-local",
            "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            C::LinkLocal,
        ),
        ("net: fec0:: site-local reserved", "fec0::", C::Reserved),
        ("net: 10.0.0.0 private", "10.0.0.0", C::Private),
        ("net: 10.255.255.255 private", "10.255.255.255", C::Private),
        ("net: 11.0.0.0 global", "11.0.0.0", C::Global),
        ("net: 9.255.255.255 global", "9.255.255.255", C::Global),
        ("net: 172.15.255.255 global", "172.15.255.255", C::Global),
        ("net: 172.16.0.0 private", "172.16.0.0", C::Private),
        ("net: 172.31.255.255 private", "172.31.255.255", C::Private),
        ("net: 172.32.0.0 global", "172.32.0.0", C::Global),
        ("net: 192.168.0.0 private", "192.168.0.0", C::Private),
        (
            "net: 192.168.255.255 private",
            "192.168.255.255",
            C::Private,
        ),
        ("net: 192.169.0.0 global", "192.169.0.0", C::Global),
        ("net: 100.63.255.255 global", "100.63.255.255", C::Global),
        ("net: 100.64.0.0 cgnat", "100.64.0.0", C::SharedCgnat),
        (
            "net: 100.127.255.255 cgnat",
            "100.127.255.255",
            C::SharedCgnat,
        ),
        ("net: 100.128.0.0 global", "100.128.0.0", C::Global),
        ("net: fc00:: ula", "fc00::", C::UniqueLocal),
        ("net: fdff:: ula", "fdff::", C::UniqueLocal),
        (
            "net: fdff:ffff.. ula",
            "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            C::UniqueLocal,
        ),
        ("net: fbff:: global", "fbff::", C::Global),
        ("net: fe00:: global", "fe00::", C::Global),
        ("net: 224.0.0.1 multicast", "224.0.0.1", C::Multicast),
        (
            "net: 239.255.255.255 multicast",
            "239.255.255.255",
            C::Multicast,
        ),
        ("net: ff02::1 multicast", "ff02::1", C::Multicast),
        ("net: 240.0.0.1 reserved", "240.0.0.1", C::Reserved),
        (
            "net: 255.255.255.254 reserved",
            "255.255.255.254",
            C::Reserved,
        ),
        (
            "net: 255.255.255.255 broadcast",
            "255.255.255.255",
            C::Broadcast,
        ),
        (
            "net: 192.0.2.1 documentation",
            "192.0.2.1",
            C::Documentation,
        ),
        (
            "net: 198.51.100.7 documentation",
            "198.51.100.7",
            C::Documentation,
        ),
        (
            "net: 203.0.113.255 documentation",
            "203.0.113.255",
            C::Documentation,
        ),
        (
            "net: 2001:db8::1 documentation",
            "2001:db8::1",
            C::Documentation,
        ),
        (
            "net: 198.18.0.1 benchmarking",
            "198.18.0.1",
            C::Benchmarking,
        ),
        (
            "net: 198.19.255.255 benchmarking",
            "198.19.255.255",
            C::Benchmarking,
        ),
        ("net: 198.20.0.0 global", "198.20.0.0", C::Global),
        ("net: 2001:2::1 benchmarking", "2001:2::1", C::Benchmarking),
        (
            "net: ::1.2.3.4 ipv4-compatible reserved",
            "::1.2.3.4",
            C::Reserved,
        ),
        (
            "net: ::ffff:192.168.1.1 private",
            "::ffff:192.168.1.1",
            C::Private,
        ),
        (
            "net: ::ffff:127.0.0.1 loopback",
            "::ffff:127.0.0.1",
            C::Loopback,
        ),
        (
            "net: ::ffff:100.64.0.1 cgnat",
            "::ffff:100.64.0.1",
            C::SharedCgnat,
        ),
        ("net: ::ffff:8.8.8.8 global", "::ffff:8.8.8.8", C::Global),
        (
            "net: ::ffff:0.0.0.0 unspecified",
            "::ffff:0.0.0.0",
            C::Unspecified,
        ),
        ("net: 8.8.8.8 global", "8.8.8.8", C::Global),
        ("net: 2606:4700::1111 global", "2606:4700::1111", C::Global),
    ]
};

/// `(case name, text, Ok(()) or the error)` for [`Cidr::parse`].
#[cfg(any(test, feature = "conformance"))]
const CIDR_VECTORS: &[(&str, &str, Result<(), CidrError>)] = &[
    ("cidr: 192.168.1.0/24", "192.168.1.0/24", Ok(())),
    ("cidr: fd00::/8", "fd00::/8", Ok(())),
    ("cidr: 0.0.0.0/0", "0.0.0.0/0", Ok(())),
    ("cidr: ::/0", "::/0", Ok(())),
    ("cidr: 10.1.2.3/32", "10.1.2.3/32", Ok(())),
    ("cidr: fe80::1/128", "fe80::1/128", Ok(())),
    ("cidr: empty", "", Err(CidrError::Empty)),
    (
        "cidr: bare address",
        "192.168.1.0",
        Err(CidrError::MissingPrefixLength),
    ),
    (
        "cidr: bad address",
        "192.168.1/24",
        Err(CidrError::BadAddress),
    ),
    ("cidr: empty address", "/24", Err(CidrError::BadAddress)),
    (
        "cidr: empty length",
        "10.0.0.0/",
        Err(CidrError::BadPrefixLength),
    ),
    (
        "cidr: signed length",
        "10.0.0.0/+8",
        Err(CidrError::BadPrefixLength),
    ),
    (
        "cidr: leading zero",
        "10.0.0.0/08",
        Err(CidrError::BadPrefixLength),
    ),
    ("cidr: 4 digits", "::/1000", Err(CidrError::BadPrefixLength)),
    (
        "cidr: space",
        "10.0.0.0/ 8",
        Err(CidrError::BadPrefixLength),
    ),
    (
        "cidr: two slashes",
        "10.0.0.0/8/8",
        Err(CidrError::BadPrefixLength),
    ),
    (
        "cidr: /33",
        "10.0.0.0/33",
        Err(CidrError::PrefixLengthTooLong),
    ),
    ("cidr: /129", "::/129", Err(CidrError::PrefixLengthTooLong)),
    ("cidr: /999", "::/999", Err(CidrError::PrefixLengthTooLong)),
    (
        "cidr: host bits v4",
        "192.168.1.5/24",
        Err(CidrError::HostBitsSet),
    ),
    (
        "cidr: host bits v6",
        "fd00::1/8",
        Err(CidrError::HostBitsSet),
    ),
];

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;
    use std::string::ToString;

    fn ip(s: &str) -> IpAddr {
        IpAddr::from_str(s).unwrap()
    }

    #[test]
    fn class_table() {
        for &(name, addr, class) in CLASS_VECTORS {
            assert_eq!(classify(ip(addr)), class, "{name}");
        }
    }

    #[test]
    fn classify_v6_takes_mapped_literally() {
        let mapped: Ipv6Addr = "::ffff:192.168.1.1".parse().unwrap();
        assert_eq!(classify_v6(mapped), AddressClass::Global);
        assert_eq!(classify(IpAddr::V6(mapped)), AddressClass::Private);
        assert_eq!(canonical(IpAddr::V6(mapped)), ip("192.168.1.1"));
        assert_eq!(canonical(ip("::1")), ip("::1"));
    }

    #[test]
    fn lan_scoped_and_never_candidate() {
        assert!(AddressClass::Private.is_lan_scoped());
        assert!(AddressClass::LinkLocal.is_lan_scoped());
        assert!(AddressClass::UniqueLocal.is_lan_scoped());
        assert!(!AddressClass::SharedCgnat.is_lan_scoped());
        assert!(!AddressClass::Loopback.is_lan_scoped());
        assert!(!AddressClass::Global.is_lan_scoped());
        assert!(AddressClass::Multicast.is_never_candidate());
        assert!(AddressClass::Reserved.is_never_candidate());
        assert!(!AddressClass::Documentation.is_never_candidate());
        assert_eq!(AddressClass::SharedCgnat.to_string(), "shared-cgnat");
    }

    #[test]
    fn cidr_parse_table() {
        for &(name, text, expect) in CIDR_VECTORS {
            assert_eq!(Cidr::parse(text).map(|_| ()), expect, "{name}");
        }
    }

    #[test]
    fn cidr_fields_and_display() {
        let c = Cidr::parse("192.168.1.0/24").unwrap();
        assert_eq!(c.network(), ip("192.168.1.0"));
        assert_eq!(c.prefix_len(), 24);
        assert_eq!(c.to_string(), "192.168.1.0/24");
        let c: Cidr = "fd00::/8".parse().unwrap();
        assert_eq!(c.to_string(), "fd00::/8");
        assert_eq!(
            Cidr::new_masked(ip("192.168.1.5"), 24).unwrap(),
            Cidr::parse("192.168.1.0/24").unwrap()
        );
        assert_eq!(
            Cidr::new_masked(ip("fd12:3456::1"), 8).unwrap().to_string(),
            "fd00::/8"
        );
        assert_eq!(
            Cidr::new(ip("10.0.0.0"), 33),
            Err(CidrError::PrefixLengthTooLong)
        );
    }

    #[test]
    fn cidr_contains_edges() {
        let c = Cidr::parse("172.16.0.0/12").unwrap();
        assert!(c.contains(ip("172.16.0.0")));
        assert!(c.contains(ip("172.31.255.255")));
        assert!(!c.contains(ip("172.32.0.0")));
        assert!(!c.contains(ip("172.15.255.255")));
        assert!(c.contains(ip("::ffff:172.20.1.1")), "mapped matches v4");
        assert!(!c.contains(ip("fd00::1")), "other family");

        let v6 = Cidr::parse("fe80::/10").unwrap();
        assert!(v6.contains(ip("fe80::1")));
        assert!(v6.contains(ip("febf::")));
        assert!(!v6.contains(ip("fec0::")));
        assert!(!v6.contains(ip("169.254.1.1")));

        let all4 = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all4.contains(ip("255.255.255.255")));
        assert!(!all4.contains(ip("::2")));
        let all6 = Cidr::parse("::/0").unwrap();
        assert!(all6.contains(ip("2001:db8::1")));
        assert!(!all6.contains(ip("1.2.3.4")));
        assert!(
            !all6.contains(ip("::ffff:1.2.3.4")),
            "mapped is matched as IPv4"
        );

        let host = Cidr::parse("10.1.2.3/32").unwrap();
        assert!(host.contains(ip("10.1.2.3")));
        assert!(!host.contains(ip("10.1.2.2")));
        let host6 = Cidr::parse("fd00::1/128").unwrap();
        assert!(host6.contains(ip("fd00::1")));
        assert!(!host6.contains(ip("fd00::2")));
        let odd = Cidr::parse("100.64.0.0/10").unwrap();
        assert!(odd.contains(ip("100.127.255.255")));
        assert!(!odd.contains(ip("100.128.0.0")));
    }

    #[test]
    fn local_subnets() {
        let subnets = [
            Cidr::parse("192.168.1.0/24").unwrap(),
            Cidr::parse("fd00:1::/64").unwrap(),
        ];
        assert!(in_local_subnets(ip("192.168.1.200"), &subnets));
        assert!(in_local_subnets(ip("::ffff:192.168.1.200"), &subnets));
        assert_eq!(
            matching_subnet(ip("fd00:1::9"), &subnets),
            Some(&subnets[1])
        );
        assert!(!in_local_subnets(ip("192.168.2.1"), &subnets));
        assert!(!in_local_subnets(ip("192.168.1.1"), &[]));
    }

    #[cfg(feature = "conformance")]
    #[test]
    fn conformance_cases_pass() {
        let mut report = crate::conformance::Report::default();
        conformance(&mut report);
        assert_eq!(report.first_failure, None);
        assert!(report.passed as usize > CLASS_VECTORS.len() + CIDR_VECTORS.len());
    }

    #[test]
    fn mask_edges() {
        assert_eq!(mask(0, 32), 0);
        assert_eq!(mask(32, 32), 0xffff_ffff);
        assert_eq!(mask(1, 32), 0x8000_0000);
        assert_eq!(mask(128, 128), u128::MAX);
        assert_eq!(mask(1, 128), 1 << 127);
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,48}") {
            let _ = Cidr::parse(&s);
        }

        #[test]
        fn parse_never_panics_near_valid(s in "[0-9a-f:./]{0,45}") {
            let _ = Cidr::parse(&s);
        }

        #[test]
        fn v4_round_trip_and_contains(bits: u32, len in 0u8..=32) {
            let c = Cidr::new_masked(IpAddr::V4(Ipv4Addr::from_bits(bits)), len).unwrap();
            prop_assert_eq!(Cidr::parse(&c.to_string()), Ok(c));
            prop_assert!(c.contains(IpAddr::V4(Ipv4Addr::from_bits(bits))));
            // The address just past the subnet is outside it (unless /0).
            if len > 0 {
                let size = 1u64 << (32 - u32::from(len));
                let past = u64::from(ip_bits(c.network()) as u32) + size;
                if past <= u64::from(u32::MAX) {
                    let outside = IpAddr::V4(Ipv4Addr::from_bits(past as u32));
                    prop_assert!(!c.contains(outside));
                }
            }
        }

        #[test]
        fn v6_round_trip_and_contains(bits: u128, len in 0u8..=128) {
            let a = IpAddr::V6(Ipv6Addr::from_bits(bits));
            let c = Cidr::new_masked(a, len).unwrap();
            prop_assert_eq!(Cidr::parse(&c.to_string()), Ok(c));
            if Ipv6Addr::from_bits(bits).to_ipv4_mapped().is_none() {
                prop_assert!(c.contains(a));
            }
            prop_assert_eq!(
                Cidr::new(a, len).is_ok(),
                ip_bits(c.network()) == bits
            );
        }

        #[test]
        fn classify_total(bits: u128) {
            let _ = classify(IpAddr::V6(Ipv6Addr::from_bits(bits)));
            let _ = classify(IpAddr::V4(Ipv4Addr::from_bits(bits as u32)));
        }

        #[test]
        fn mapped_classifies_as_v4(bits: u32) {
            let v4 = Ipv4Addr::from_bits(bits);
            prop_assert_eq!(
                classify(IpAddr::V6(v4.to_ipv6_mapped())),
                classify_v4(v4)
            );
        }
    }
}
