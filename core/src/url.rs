//! STUN and TURN server URIs: `stun:`/`stuns:` (RFC 7064) and
//! `turn:`/`turns:` (RFC 7065).
//!
//! These are the strings an operator writes in `stun_servers[].url` and
//! `turn_servers[].url`, that the router hands to browsers in
//! `RTCConfiguration.iceServers` and RFC 9725 `Link` headers, and that the
//! adapters resolve before gathering server-reflexive and relayed candidates.
//! The [`policy`](crate::policy) validates every configured URL with
//! [`IceServerUrl::parse`] before it may be used. Parsing borrows the host
//! name from the input (no copy, no allocation), never panics, and
//! [`Display`](core::fmt::Display) re-emits a URI that parses back to the
//! same value.
//!
//! Grammar (RFC 7064 §3.1, RFC 7065 §3.1, host per RFC 3986 §3.2.2):
//!
//! ```text
//! stunURI = ("stun" / "stuns") ":" host [ ":" port ]
//! turnURI = ("turn" / "turns") ":" host [ ":" port ] [ "?transport=" transport ]
//! ```
//!
//! Choices this parser makes where the RFCs leave room, each rejected with
//! its own [`Error`] so that a config check can say exactly what is wrong:
//!
//! - The scheme is matched case-insensitively (RFC 3986 §3.1); so is the
//!   transport value (ABNF string literals are case-insensitive, RFC 5234
//!   §2.3). Display writes both in lowercase.
//! - A `reg-name` host must be a DNS host name (RFC 1123 §2.1: labels of
//!   letters, digits and hyphens, 1 to 63 octets, not starting or ending
//!   with a hyphen, 253 octets in all, the last label not all digits). RFC
//!   3986 also admits percent-encodings and sub-delimiters in a reg-name, but
//!   nothing can resolve those, and an address server string in a config is
//!   far likelier a typo. IPv6 literals are bracketed and carry no zone
//!   identifier; IPvFuture literals are rejected.
//! - An empty port (`stun:host:`) is rejected, as is port 0.
//! - Only `udp` and `tcp` transports are known; `transport-ext` values are
//!   rejected rather than ignored.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use core::str::FromStr;

/// The URI scheme: which protocol, and whether it runs over TLS/DTLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Scheme {
    /// `stun:` (RFC 7064): STUN over UDP or TCP, default port 3478.
    Stun,
    /// `stuns:` (RFC 7064): STUN over TLS or DTLS, default port 5349.
    Stuns,
    /// `turn:` (RFC 7065): TURN over UDP or TCP, default port 3478.
    Turn,
    /// `turns:` (RFC 7065): TURN over TLS or DTLS, default port 5349.
    Turns,
}

impl Scheme {
    /// The scheme name, lowercase, without the colon.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scheme::Stun => "stun",
            Scheme::Stuns => "stuns",
            Scheme::Turn => "turn",
            Scheme::Turns => "turns",
        }
    }

    /// The port used when the URI names none: 3478, or 5349 for the secure
    /// schemes (RFC 7064 §3.2, RFC 7065 §3.2).
    pub const fn default_port(self) -> u16 {
        if self.is_secure() { 5349 } else { 3478 }
    }

    /// True for `stuns:` and `turns:`.
    pub const fn is_secure(self) -> bool {
        matches!(self, Scheme::Stuns | Scheme::Turns)
    }

    /// True for `turn:` and `turns:` (the server can allocate relays).
    pub const fn is_turn(self) -> bool {
        matches!(self, Scheme::Turn | Scheme::Turns)
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `?transport=` of a TURN URI (RFC 7065 §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Transport {
    /// `udp` (with `turns:`, DTLS per RFC 7350).
    Udp,
    /// `tcp` (with `turns:`, TLS).
    Tcp,
}

impl Transport {
    /// The transport name, lowercase.
    pub const fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The host part of a server URI, borrowed from the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Host<'a> {
    /// A dotted-quad IPv4 address.
    Ipv4(Ipv4Addr),
    /// A bracketed IPv6 literal (brackets removed).
    Ipv6(Ipv6Addr),
    /// A DNS host name exactly as written (case preserved; DNS compares
    /// names case-insensitively).
    Name(&'a str),
}

impl fmt::Display for Host<'_> {
    /// IPv6 literals are written in brackets, as in the URI.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ipv4(a) => write!(f, "{a}"),
            Host::Ipv6(a) => write!(f, "[{a}]"),
            Host::Name(n) => f.write_str(n),
        }
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Host<'_> {
    fn format(&self, f: defmt::Formatter<'_>) {
        use crate::net::DefmtIp;
        use core::net::IpAddr;
        match *self {
            Host::Ipv4(a) => defmt::write!(f, "{}", DefmtIp(IpAddr::V4(a))),
            Host::Ipv6(a) => defmt::write!(f, "[{}]", DefmtIp(IpAddr::V6(a))),
            Host::Name(n) => defmt::write!(f, "{=str}", n),
        }
    }
}

/// Where a server URI points: see [`IceServerUrl::target`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Target<'a> {
    /// An IP literal and port: usable at once.
    Address(SocketAddr),
    /// A DNS name to resolve, and the port.
    Name {
        /// The host name, borrowed from the URI.
        name: &'a str,
        /// The port to use with every address it resolves to.
        port: u16,
    },
}

/// Why a server URI was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// The URI is empty.
    Empty,
    /// No `scheme:` prefix.
    MissingScheme,
    /// A scheme other than `stun`, `stuns`, `turn` or `turns`.
    UnknownScheme,
    /// `stun://host`: RFC 7064 §3.1 and RFC 7065 §3.1 define these URIs
    /// without an authority, so there are no `//` after the colon.
    AuthoritySlashes,
    /// `user@host`: these URIs carry no userinfo (RFC 7064 §3.1); TURN
    /// credentials are configured beside the URI, never in it.
    Userinfo,
    /// Nothing between the scheme (or `[`) and the port or query.
    EmptyHost,
    /// A bracketed literal that is not a plain IPv6 address (including zone
    /// identifiers and IPvFuture), or an unclosed bracket.
    BadIpv6Literal,
    /// A host name that is not a valid DNS host name (RFC 1123 §2.1), or a
    /// malformed IPv4 address.
    BadHostName,
    /// A `:` with no port after it.
    EmptyPort,
    /// The port contains something other than decimal digits.
    PortNotNumeric,
    /// Port 0, which no server listens on.
    PortZero,
    /// A port above 65535.
    PortOutOfRange,
    /// A query (such as `?transport=`) on a `stun:`/`stuns:` URI: RFC 7064
    /// defines none; only TURN URIs carry `?transport=` (RFC 7065).
    TransportOnStun,
    /// A query other than exactly `transport=<value>`.
    BadQuery,
    /// A transport other than `udp` or `tcp`.
    UnknownTransport,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Empty => "empty URI",
            Error::MissingScheme => "missing scheme (expected stun:, stuns:, turn: or turns:)",
            Error::UnknownScheme => "unknown scheme (expected stun:, stuns:, turn: or turns:)",
            Error::AuthoritySlashes => {
                "no \"//\" after the scheme: RFC 7064/7065 URIs are written stun:host[:port], not stun://host"
            }
            Error::Userinfo => {
                "userinfo (user@) is not allowed in STUN/TURN URIs; configure TURN credentials separately"
            }
            Error::EmptyHost => "empty host",
            Error::BadIpv6Literal => "bad bracketed IPv6 address (zone ids and IPvFuture are not allowed)",
            Error::BadHostName => "host is neither an IPv4 address nor a valid DNS host name",
            Error::EmptyPort => "empty port after ':'",
            Error::PortNotNumeric => "port is not a decimal number",
            Error::PortZero => "port 0 is not a valid server port",
            Error::PortOutOfRange => "port exceeds 65535",
            Error::TransportOnStun => "?transport= is only defined for turn: and turns: URIs (RFC 7065)",
            Error::BadQuery => "query must be exactly ?transport=udp or ?transport=tcp",
            Error::UnknownTransport => "unknown transport (expected udp or tcp)",
        })
    }
}

impl core::error::Error for Error {}

/// A parsed `stun:`, `stuns:`, `turn:` or `turns:` URI that borrows its host
/// name from the input.
///
/// Only [`IceServerUrl::parse`] builds one, so every value satisfies the
/// grammar in the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct IceServerUrl<'a> {
    scheme: Scheme,
    host: Host<'a>,
    explicit_port: Option<u16>,
    transport: Option<Transport>,
}

impl<'a> IceServerUrl<'a> {
    /// Parse a server URI. Never panics, never allocates; the host name is
    /// borrowed from `s`.
    pub fn parse(s: &'a str) -> Result<IceServerUrl<'a>, Error> {
        if s.is_empty() {
            return Err(Error::Empty);
        }
        let (scheme, rest) = s.split_once(':').ok_or(Error::MissingScheme)?;
        if scheme.is_empty() {
            return Err(Error::MissingScheme);
        }
        let scheme = parse_scheme(scheme)?;
        if rest.starts_with("//") {
            return Err(Error::AuthoritySlashes);
        }
        let (hostport, query) = match rest.split_once('?') {
            Some((hp, q)) => (hp, Some(q)),
            None => (rest, None),
        };
        if hostport.contains('@') {
            return Err(Error::Userinfo);
        }
        let (host, port_text) = split_host_port(hostport)?;
        let explicit_port = match port_text {
            None => None,
            Some(p) => Some(parse_port(p)?),
        };
        let transport = match query {
            None => None,
            Some(_) if !scheme.is_turn() => return Err(Error::TransportOnStun),
            Some(q) => Some(parse_transport_query(q)?),
        };
        Ok(IceServerUrl {
            scheme,
            host,
            explicit_port,
            transport,
        })
    }

    /// The scheme.
    pub const fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The host: an IPv4 address, an IPv6 address or a DNS name.
    pub const fn host(&self) -> Host<'a> {
        self.host
    }

    /// The port to contact: the one written, or the scheme's
    /// [default](Scheme::default_port).
    pub const fn port(&self) -> u16 {
        match self.explicit_port {
            Some(p) => p,
            None => self.scheme.default_port(),
        }
    }

    /// Where to send: the literal address with [`IceServerUrl::port`], or
    /// the host name to resolve first (DNS is I/O: the adapter does it).
    pub const fn target(&self) -> Target<'a> {
        match self.host {
            Host::Ipv4(a) => Target::Address(SocketAddr::new(IpAddr::V4(a), self.port())),
            Host::Ipv6(a) => Target::Address(SocketAddr::new(IpAddr::V6(a), self.port())),
            Host::Name(name) => Target::Name {
                name,
                port: self.port(),
            },
        }
    }

    /// The port as written in the URI, if any.
    pub const fn explicit_port(&self) -> Option<u16> {
        self.explicit_port
    }

    /// The `?transport=` value, if written (only ever on TURN URIs). When
    /// absent, RFC 7065 §3.2 leaves the choice to the client; UDP first is
    /// the usual order.
    pub const fn transport(&self) -> Option<Transport> {
        self.transport
    }
}

impl<'a> TryFrom<&'a str> for IceServerUrl<'a> {
    type Error = Error;
    fn try_from(s: &'a str) -> Result<Self, Error> {
        IceServerUrl::parse(s)
    }
}

impl fmt::Display for IceServerUrl<'_> {
    /// `scheme:host[:port][?transport=t]`: the port only if it was written,
    /// scheme and transport in lowercase, IPv6 in brackets. Parses back to
    /// an equal value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.scheme, self.host)?;
        if let Some(p) = self.explicit_port {
            write!(f, ":{p}")?;
        }
        if let Some(t) = self.transport {
            write!(f, "?transport={t}")?;
        }
        Ok(())
    }
}

fn parse_scheme(s: &str) -> Result<Scheme, Error> {
    const SCHEMES: [(&str, Scheme); 4] = [
        ("stun", Scheme::Stun),
        ("stuns", Scheme::Stuns),
        ("turn", Scheme::Turn),
        ("turns", Scheme::Turns),
    ];
    SCHEMES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(s))
        .map(|&(_, scheme)| scheme)
        .ok_or(Error::UnknownScheme)
}

/// Split `host[:port]` (host possibly a bracketed IPv6 literal).
fn split_host_port(s: &str) -> Result<(Host<'_>, Option<&str>), Error> {
    if let Some(after) = s.strip_prefix('[') {
        let (literal, tail) = after.split_once(']').ok_or(Error::BadIpv6Literal)?;
        if literal.is_empty() {
            return Err(Error::EmptyHost);
        }
        let addr = Ipv6Addr::from_str(literal).map_err(|_| Error::BadIpv6Literal)?;
        let port = if tail.is_empty() {
            None
        } else {
            Some(tail.strip_prefix(':').ok_or(Error::BadIpv6Literal)?)
        };
        return Ok((Host::Ipv6(addr), port));
    }
    let (host, port) = match s.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    if host.is_empty() {
        return Err(Error::EmptyHost);
    }
    if host.contains(']') {
        return Err(Error::BadIpv6Literal);
    }
    Ok((parse_reg_host(host)?, port))
}

/// An IPv4 address or a DNS host name (RFC 1123 §2.1).
fn parse_reg_host(s: &str) -> Result<Host<'_>, Error> {
    if let Ok(a) = Ipv4Addr::from_str(s) {
        return Ok(Host::Ipv4(a));
    }
    if s.len() > 253 {
        return Err(Error::BadHostName);
    }
    let mut last_all_digits = false;
    for label in s.split('.') {
        let b = label.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 63
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            && b.first() != Some(&b'-')
            && b.last() != Some(&b'-');
        if !ok {
            return Err(Error::BadHostName);
        }
        last_all_digits = b.iter().all(u8::is_ascii_digit);
    }
    // An all-numeric last label is a mistyped IPv4 address ("10.0.0.256",
    // "10.1"), never a name (RFC 1123 §2.1, RFC 3696 §2).
    if last_all_digits {
        return Err(Error::BadHostName);
    }
    Ok(Host::Name(s))
}

fn parse_port(s: &str) -> Result<u16, Error> {
    if s.is_empty() {
        return Err(Error::EmptyPort);
    }
    let mut v: u32 = 0;
    for c in s.bytes() {
        if !c.is_ascii_digit() {
            return Err(Error::PortNotNumeric);
        }
        // Saturate above 65535 so that very long digit strings cannot wrap.
        v = (v * 10 + u32::from(c - b'0')).min(65_536);
    }
    match u16::try_from(v) {
        Ok(0) => Err(Error::PortZero),
        Ok(p) => Ok(p),
        Err(_) => Err(Error::PortOutOfRange),
    }
}

fn parse_transport_query(q: &str) -> Result<Transport, Error> {
    let (key, value) = q.split_once('=').ok_or(Error::BadQuery)?;
    if key != "transport" || value.contains(['&', '=', '#']) {
        return Err(Error::BadQuery);
    }
    if value.eq_ignore_ascii_case("udp") {
        Ok(Transport::Udp)
    } else if value.eq_ignore_ascii_case("tcp") {
        Ok(Transport::Tcp)
    } else {
        Err(Error::UnknownTransport)
    }
}

#[cfg(feature = "conformance")]
pub(crate) fn conformance(report: &mut crate::conformance::Report) {
    for &(name, text, expect) in VECTORS {
        let got =
            IceServerUrl::parse(text).map(|u| (u.scheme(), u.host(), u.port(), u.transport()));
        report.check(name, got == expect);
    }
}

/// The expected parse: scheme, host, effective port, transport.
#[cfg(any(test, feature = "conformance"))]
type Expect = Result<(Scheme, Host<'static>, u16, Option<Transport>), Error>;

/// `(case name, URI, expected parse)`: the RFC 7064/7065 examples and every
/// rejection reason, shared by the unit tests and the conformance run.
#[cfg(any(test, feature = "conformance"))]
const VECTORS: &[(&str, &str, Expect)] = {
    use Error as E;
    use Host::{Ipv4, Ipv6, Name};
    use Scheme::{Stun, Stuns, Turn, Turns};
    use Transport::{Tcp, Udp};
    &[
        // The RFC 7064 examples.
        (
            "url: rfc7064 stun:example.org",
            "stun:example.org",
            Ok((Stun, Name("example.org"), 3478, None)),
        ),
        (
            "url: rfc7064 stuns:example.org",
            "stuns:example.org",
            Ok((Stuns, Name("example.org"), 5349, None)),
        ),
        (
            "url: rfc7064 stun:example.org:8000",
            "stun:example.org:8000",
            Ok((Stun, Name("example.org"), 8000, None)),
        ),
        // The RFC 7065 examples.
        (
            "url: rfc7065 turn:example.org",
            "turn:example.org",
            Ok((Turn, Name("example.org"), 3478, None)),
        ),
        (
            "url: rfc7065 turns:example.org",
            "turns:example.org",
            Ok((Turns, Name("example.org"), 5349, None)),
        ),
        (
            "url: rfc7065 turn:example.org:8000",
            "turn:example.org:8000",
            Ok((Turn, Name("example.org"), 8000, None)),
        ),
        (
            "url: rfc7065 turn udp",
            "turn:example.org?transport=udp",
            Ok((Turn, Name("example.org"), 3478, Some(Udp))),
        ),
        (
            "url: rfc7065 turn tcp",
            "turn:example.org?transport=tcp",
            Ok((Turn, Name("example.org"), 3478, Some(Tcp))),
        ),
        (
            "url: rfc7065 turns tcp",
            "turns:example.org?transport=tcp",
            Ok((Turns, Name("example.org"), 5349, Some(Tcp))),
        ),
        // Today's default, addresses, case.
        (
            "url: google",
            "stun:stun.l.google.com:19302",
            Ok((Stun, Name("stun.l.google.com"), 19302, None)),
        ),
        (
            "url: ipv4",
            "stun:192.0.2.1",
            Ok((Stun, Ipv4(Ipv4Addr::new(192, 0, 2, 1)), 3478, None)),
        ),
        (
            "url: ipv6",
            "turn:[2001:db8::1]:3479?transport=udp",
            Ok((
                Turn,
                Ipv6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
                3479,
                Some(Udp),
            )),
        ),
        (
            "url: ipv6 default port",
            "stuns:[::1]",
            Ok((Stuns, Ipv6(Ipv6Addr::LOCALHOST), 5349, None)),
        ),
        (
            "url: upper scheme",
            "STUN:Example.ORG",
            Ok((Stun, Name("Example.ORG"), 3478, None)),
        ),
        (
            "url: upper transport",
            "turn:h?transport=UDP",
            Ok((Turn, Name("h"), 3478, Some(Udp))),
        ),
        (
            "url: port 65535",
            "stun:h:65535",
            Ok((Stun, Name("h"), 65535, None)),
        ),
        (
            "url: port leading zeros",
            "stun:h:003478",
            Ok((Stun, Name("h"), 3478, None)),
        ),
        (
            "url: digits then letters label",
            "stun:1.example",
            Ok((Stun, Name("1.example"), 3478, None)),
        ),
        // Rejections.
        ("url: empty", "", Err(E::Empty)),
        ("url: no scheme", "example.org", Err(E::MissingScheme)),
        ("url: empty scheme", ":example.org", Err(E::MissingScheme)),
        (
            "url: http scheme",
            "http://example.org",
            Err(E::UnknownScheme),
        ),
        (
            "url: stunx scheme",
            "stunx:example.org",
            Err(E::UnknownScheme),
        ),
        (
            "url: stun://",
            "stun://example.org",
            Err(E::AuthoritySlashes),
        ),
        (
            "url: turn://",
            "turn://example.org:3478",
            Err(E::AuthoritySlashes),
        ),
        ("url: userinfo", "turn:user@example.org", Err(E::Userinfo)),
        (
            "url: userinfo with password",
            "turn:user:pw@example.org",
            Err(E::Userinfo),
        ),
        ("url: empty host", "stun:", Err(E::EmptyHost)),
        ("url: empty host with port", "stun::3478", Err(E::EmptyHost)),
        ("url: empty brackets", "stun:[]", Err(E::EmptyHost)),
        ("url: unclosed bracket", "stun:[::1", Err(E::BadIpv6Literal)),
        (
            "url: zone id",
            "stun:[fe80::1%25eth0]",
            Err(E::BadIpv6Literal),
        ),
        ("url: ipvfuture", "stun:[v1.x]", Err(E::BadIpv6Literal)),
        (
            "url: junk after bracket",
            "stun:[::1]x",
            Err(E::BadIpv6Literal),
        ),
        ("url: unbracketed ipv6", "stun:::1", Err(E::EmptyHost)),
        ("url: stray bracket", "stun:a]:1", Err(E::BadIpv6Literal)),
        ("url: bad ipv4", "stun:10.0.0.256", Err(E::BadHostName)),
        ("url: short ipv4", "stun:10.1", Err(E::BadHostName)),
        ("url: underscore", "stun:my_host", Err(E::BadHostName)),
        ("url: percent", "stun:a%20b", Err(E::BadHostName)),
        ("url: leading hyphen", "stun:-a.org", Err(E::BadHostName)),
        ("url: trailing hyphen", "stun:a-.org", Err(E::BadHostName)),
        ("url: empty label", "stun:a..org", Err(E::BadHostName)),
        ("url: trailing dot", "stun:a.org.", Err(E::BadHostName)),
        ("url: space", "stun: a.org", Err(E::BadHostName)),
        ("url: path", "stun:a.org/x", Err(E::BadHostName)),
        ("url: fragment", "stun:a.org#x", Err(E::BadHostName)),
        ("url: empty port", "stun:a.org:", Err(E::EmptyPort)),
        (
            "url: port letters",
            "stun:a.org:34x",
            Err(E::PortNotNumeric),
        ),
        ("url: port sign", "stun:a.org:+3478", Err(E::PortNotNumeric)),
        ("url: two ports", "stun:a.org:1:2", Err(E::PortNotNumeric)),
        ("url: port 0", "stun:a.org:0", Err(E::PortZero)),
        (
            "url: port 65536",
            "stun:a.org:65536",
            Err(E::PortOutOfRange),
        ),
        (
            "url: port huge",
            "stun:a.org:99999999999999999999999",
            Err(E::PortOutOfRange),
        ),
        (
            "url: transport on stun",
            "stun:a.org?transport=udp",
            Err(E::TransportOnStun),
        ),
        (
            "url: transport on stuns",
            "stuns:a.org?transport=tcp",
            Err(E::TransportOnStun),
        ),
        ("url: other query", "turn:a.org?foo=udp", Err(E::BadQuery)),
        ("url: empty query", "turn:a.org?", Err(E::BadQuery)),
        (
            "url: two params",
            "turn:a.org?transport=udp&x=1",
            Err(E::BadQuery),
        ),
        (
            "url: unknown transport",
            "turn:a.org?transport=sctp",
            Err(E::UnknownTransport),
        ),
        (
            "url: empty transport",
            "turn:a.org?transport=",
            Err(E::UnknownTransport),
        ),
    ]
};

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;
    use std::string::{String, ToString};
    use std::{format, vec};

    #[test]
    fn table() {
        for &(name, text, expect) in VECTORS {
            let got =
                IceServerUrl::parse(text).map(|u| (u.scheme(), u.host(), u.port(), u.transport()));
            assert_eq!(got, expect, "{name}: {text}");
        }
    }

    #[test]
    fn host_is_borrowed_from_input() {
        let text = "turn:relay.example.org:443?transport=tcp";
        let u = IceServerUrl::parse(text).unwrap();
        let Host::Name(name) = u.host() else {
            panic!("expected a name")
        };
        assert_eq!(name, "relay.example.org");
        assert!(core::ptr::eq(name.as_ptr(), text[5..].as_ptr()));
        assert_eq!(u.explicit_port(), Some(443));
    }

    #[test]
    fn display_re_emits() {
        for (input, output) in [
            ("stun:example.org", "stun:example.org"),
            ("stun:example.org:8000", "stun:example.org:8000"),
            ("STUNS:Example.org", "stuns:Example.org"),
            (
                "turn:[2001:db8:0::1]:3479?transport=UDP",
                "turn:[2001:db8::1]:3479?transport=udp",
            ),
            (
                "turns:192.0.2.1?transport=tcp",
                "turns:192.0.2.1?transport=tcp",
            ),
            ("stun:h:03478", "stun:h:3478"),
        ] {
            assert_eq!(IceServerUrl::parse(input).unwrap().to_string(), output);
        }
    }

    #[cfg(feature = "conformance")]
    #[test]
    fn conformance_cases_pass() {
        let mut report = crate::conformance::Report::default();
        conformance(&mut report);
        assert_eq!(report.first_failure, None);
        assert_eq!(report.passed as usize, VECTORS.len());
    }

    #[test]
    fn scheme_properties() {
        assert_eq!(Scheme::Stun.default_port(), 3478);
        assert_eq!(Scheme::Turn.default_port(), 3478);
        assert_eq!(Scheme::Stuns.default_port(), 5349);
        assert_eq!(Scheme::Turns.default_port(), 5349);
        assert!(Scheme::Turns.is_turn() && Scheme::Turns.is_secure());
        assert!(!Scheme::Stun.is_turn() && !Scheme::Stun.is_secure());
    }

    #[test]
    fn host_name_limits() {
        let label63 = "a".repeat(63);
        let ok = format!("stun:{label63}.org");
        assert!(IceServerUrl::parse(&ok).is_ok());
        let label64 = "a".repeat(64);
        let bad = format!("stun:{label64}.org");
        assert_eq!(IceServerUrl::parse(&bad), Err(Error::BadHostName));
        // 4 * 63 + 3 dots = 255 > 253
        let long = [label63.as_str(); 4].join(".");
        let bad = format!("stun:{long}");
        assert_eq!(IceServerUrl::parse(&bad), Err(Error::BadHostName));
        let name253 = format!("{}.{}.{}.{}", label63, label63, label63, "a".repeat(61));
        assert_eq!(name253.len(), 253);
        assert!(IceServerUrl::parse(&format!("stun:{name253}")).is_ok());
    }

    #[test]
    fn error_messages_name_the_rule() {
        let msg = Error::AuthoritySlashes.to_string();
        assert!(msg.contains("RFC 7064") && msg.contains("//"), "{msg}");
        assert!(Error::TransportOnStun.to_string().contains("turn:"));
    }

    fn url_strategy() -> impl Strategy<Value = String> {
        let scheme = prop::sample::select(vec!["stun", "stuns", "turn", "turns", "STUN", "Turns"]);
        let host = prop_oneof![
            "[a-z]([a-z0-9-]{0,10}[a-z0-9])?(\\.[a-z]([a-z0-9-]{0,5}[a-z0-9])?){0,3}",
            any::<[u8; 4]>().prop_map(|o| Ipv4Addr::from(o).to_string()),
            any::<u128>().prop_map(|b| format!("[{}]", Ipv6Addr::from_bits(b))),
        ];
        let port = prop::option::of(1u16..);
        let transport = prop::option::of(prop::sample::select(vec!["udp", "tcp", "UDP"]));
        (scheme, host, port, transport).prop_map(|(s, h, p, t)| {
            let mut out = format!("{s}:{h}");
            if let Some(p) = p {
                out += &format!(":{p}");
            }
            if let Some(t) = t
                && (s.eq_ignore_ascii_case("turn") || s.eq_ignore_ascii_case("turns"))
            {
                out += &format!("?transport={t}");
            }
            out
        })
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,64}") {
            let _ = IceServerUrl::parse(&s);
        }

        #[test]
        fn never_panics_near_valid(s in "(stuns?|turns?|x)?:?(//)?[a-z0-9.:\\[\\]@?=%_-]{0,40}") {
            let _ = IceServerUrl::parse(&s);
        }

        #[test]
        fn generated_urls_parse_and_round_trip(s in url_strategy()) {
            let u = IceServerUrl::parse(&s).map_err(|e| TestCaseError::fail(format!("{s}: {e}")))?;
            let text = u.to_string();
            prop_assert_eq!(IceServerUrl::parse(&text), Ok(u));
            prop_assert!(text.eq_ignore_ascii_case(&s) || s.contains('['));
        }

        #[test]
        fn any_accepted_url_round_trips(s in "(stuns?|turns?):[a-z0-9.:\\[\\]?=-]{1,30}") {
            if let Ok(u) = IceServerUrl::parse(&s) {
                let text = u.to_string();
                prop_assert_eq!(IceServerUrl::parse(&text), Ok(u));
            }
        }
    }
}
