//! ICE candidates: what the agent knows about one transport address, how it
//! is ranked (RFC 8445 §5.1.2), how candidates that share a network path are
//! grouped (foundations, §5.1.1.3), how two candidates rank as a pair
//! (§6.1.2.3), and the SDP `candidate` attribute (RFC 8839 §5.1) that carries
//! them between peers.
//!
//! Where this sits in the flow: the adapter gathers local addresses, asks the
//! policy which kinds to gather, and builds [`Candidate`]s with
//! [`Candidate::local`] (foundation and priority computed here, identically on
//! the router and on the speakers). They travel to the peer as
//! [`CandidateAttribute`] lines, usually inside an
//! [`sdpfrag`](crate::sdpfrag) body; remote lines come back through
//! [`CandidateAttribute::parse`], and once any mDNS name has been resolved by
//! the adapter they become [`Candidate`]s for the agent's check list, ordered
//! by [`pair_priority`].
//!
//! Nothing here allocates, reads a clock or panics on any input: parsing
//! borrows from the line, emitting writes into the caller's buffer or any
//! [`core::fmt::Write`].
//!
//! ```
//! use scream_ice_core::candidate::*;
//!
//! // A browser's line, as `RTCIceCandidate.candidate` or as an SDP line.
//! let line = "a=candidate:842163049 1 udp 1686052607 203.0.113.7 61765 typ srflx \
//!             raddr 192.168.1.5 rport 55012 generation 0 ufrag EsAw network-id 1 network-cost 10";
//! let attr = CandidateAttribute::parse(line)?;
//! assert_eq!(attr.kind, CandidateKind::ServerReflexive);
//! let remote = attr.to_candidate().expect("an IP, not an mDNS name");
//!
//! // A local host candidate on the LAN, ranked and named by the shared rules.
//! let local = Candidate::local(
//!     &LocalCandidate {
//!         kind: CandidateKind::Host,
//!         transport: Transport::Udp,
//!         tcp_type: None,
//!         address: "192.168.1.40:4010".parse().unwrap(),
//!         base: "192.168.1.40".parse().unwrap(),
//!         related_address: None,
//!         server: None,
//!         component: ComponentId::RTP,
//!         local_preference: local_preference(true, true, AddressFamily::Ipv4, 0),
//!     },
//!     &TypePreferences::RFC8445,
//! );
//! let pair = pair_priority_for(local.priority, remote.priority, true);
//! assert!(pair > 0);
//!
//! let mut buf = [0u8; 256];
//! let n = local.to_attribute().emit(&mut buf).unwrap();
//! assert!(buf[..n].starts_with(b"candidate:"));
//! # Ok::<(), CandidateAttributeError>(())
//! ```

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

// ---------------------------------------------------------------------------
// Grammar helpers
// ---------------------------------------------------------------------------

/// The 64 `ice-char`s (RFC 8839 §5.1), so that a random byte masked to
/// six bits picks one uniformly ([`ice_chars_from`]).
pub const ICE_CHARS: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// `ice-char = ALPHA / DIGIT / "+" / "/"` (RFC 8839 §5.1).
pub const fn is_ice_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

/// True when `s` is `min..=max` ice-chars.
pub fn is_ice_chars(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len()) && s.bytes().all(is_ice_char)
}

/// Turn random bytes into ice-chars in place (each byte's low six bits
/// pick one of [`ICE_CHARS`] uniformly) and return them as a `&str`: how
/// ufrags and passwords are made from a seed. Never panics.
pub fn ice_chars_from(random: &mut [u8]) -> &str {
    for b in random.iter_mut() {
        *b = ICE_CHARS[usize::from(*b & 63)];
    }
    // Every byte is now ASCII.
    core::str::from_utf8(random).unwrap_or_default()
}

/// RFC 3261 `token` characters (used for extension names and ice-option tags).
pub(crate) const fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// Parse `1..=max_digits` ASCII digits (no sign, no spaces) into a `u64`.
fn parse_digits(s: &str, max_digits: usize) -> Option<u64> {
    if s.is_empty() || s.len() > max_digits || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut v: u64 = 0;
    for b in s.bytes() {
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

fn parse_u32(s: &str) -> Option<u32> {
    parse_digits(s, 10).and_then(|v| u32::try_from(v).ok())
}

fn parse_port(s: &str) -> Option<u16> {
    parse_digits(s, 5).and_then(|v| u16::try_from(v).ok())
}

/// A cursor over space-separated tokens that can hand back the unread rest.
struct Tokens<'a> {
    rest: &'a str,
}

impl<'a> Tokens<'a> {
    fn next(&mut self) -> Option<&'a str> {
        let s = self.rest.trim_start_matches(' ');
        if s.is_empty() {
            self.rest = s;
            return None;
        }
        let end = s.find(' ').unwrap_or(s.len());
        let (tok, rest) = s.split_at(end);
        self.rest = rest;
        Some(tok)
    }
}

/// A `core::fmt::Write` into a byte slice that keeps counting once full, so
/// the caller learns the size it would have needed.
pub(crate) struct SliceWriter<'b> {
    buf: &'b mut [u8],
    required: usize,
}

impl<'b> SliceWriter<'b> {
    pub(crate) fn new(buf: &'b mut [u8]) -> Self {
        SliceWriter { buf, required: 0 }
    }

    /// Bytes written so far if they all fit, else the size that was needed.
    pub(crate) fn finish(&self) -> Result<usize, InsufficientSize> {
        if self.required <= self.buf.len() {
            Ok(self.required)
        } else {
            Err(InsufficientSize {
                required: self.required,
            })
        }
    }
}

impl fmt::Write for SliceWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let start = self.required;
        self.required = self.required.saturating_add(s.len());
        if let Some(dst) = self.buf.get_mut(start..self.required) {
            dst.copy_from_slice(s.as_bytes());
        }
        Ok(())
    }
}

/// A `core::fmt::Write` that only counts.
pub(crate) struct Counter(pub(crate) usize);

impl fmt::Write for Counter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 = self.0.saturating_add(s.len());
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Small protocol types
// ---------------------------------------------------------------------------

/// The candidate type of RFC 8445 §5.1.1 (`cand-type` in SDP, RFC 8839 §5.1).
///
/// The set is closed by RFC 8445, so the enum is exhaustive.
#[allow(clippy::exhaustive_enums)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CandidateKind {
    /// `host`: an address on one of the agent's own interfaces.
    Host,
    /// `srflx`: the address a STUN server saw (the NAT's mapping).
    ServerReflexive,
    /// `prflx`: an address learnt from a connectivity check.
    PeerReflexive,
    /// `relay`: an address allocated on a TURN server.
    Relayed,
}

impl CandidateKind {
    /// All four kinds, in RFC 8445 default preference order.
    pub const ALL: [CandidateKind; 4] = [
        CandidateKind::Host,
        CandidateKind::PeerReflexive,
        CandidateKind::ServerReflexive,
        CandidateKind::Relayed,
    ];

    /// The SDP name: `host`, `srflx`, `prflx` or `relay`.
    pub const fn as_str(self) -> &'static str {
        match self {
            CandidateKind::Host => "host",
            CandidateKind::ServerReflexive => "srflx",
            CandidateKind::PeerReflexive => "prflx",
            CandidateKind::Relayed => "relay",
        }
    }

    /// Parse an SDP name (ASCII case-insensitive). `None` for anything else.
    pub fn from_sdp(s: &str) -> Option<Self> {
        CandidateKind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
    }

    /// True for the kinds whose foundation depends on the STUN/TURN server
    /// (RFC 8445 §5.1.1.3): server-reflexive and relayed.
    pub const fn uses_server(self) -> bool {
        matches!(
            self,
            CandidateKind::ServerReflexive | CandidateKind::Relayed
        )
    }
}

impl fmt::Display for CandidateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The transport protocol of a candidate: UDP (RFC 8445) or TCP (RFC 6544).
///
/// Exhaustive: other `transport-extension` tokens are rejected by the parser,
/// because the agent could not use them.
#[allow(clippy::exhaustive_enums)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Transport {
    /// `udp`
    Udp,
    /// `tcp` (RFC 6544)
    Tcp,
}

impl Transport {
    /// The lowercase SDP token, as Chrome writes it (`udp`, `tcp`). The token
    /// is case-insensitive (RFC 8839 §5.1); Firefox writes `UDP`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }

    /// Parse a transport token, ASCII case-insensitive. `None` for any other
    /// token.
    pub fn from_sdp(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("udp") {
            Some(Transport::Udp)
        } else if s.eq_ignore_ascii_case("tcp") {
            Some(Transport::Tcp)
        } else {
            None
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The RFC 6544 `tcptype` of a TCP candidate.
#[allow(clippy::exhaustive_enums)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TcpType {
    /// `active`: opens outgoing connections only (port is usually 9).
    Active,
    /// `passive`: accepts incoming connections only.
    Passive,
    /// `so`: simultaneous open.
    SimultaneousOpen,
}

impl TcpType {
    /// The SDP token: `active`, `passive` or `so`.
    pub const fn as_str(self) -> &'static str {
        match self {
            TcpType::Active => "active",
            TcpType::Passive => "passive",
            TcpType::SimultaneousOpen => "so",
        }
    }

    /// Parse an SDP token (ASCII case-insensitive).
    pub fn from_sdp(s: &str) -> Option<Self> {
        [TcpType::Active, TcpType::Passive, TcpType::SimultaneousOpen]
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for TcpType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A component id, `1..=256` (RFC 8445 §5.1.1: "a positive integer between
/// 1 and 256"). Component 1 is RTP (or the only component with rtcp-mux).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ComponentId(u16);

impl ComponentId {
    /// Component 1 (RTP, or the only component).
    pub const RTP: ComponentId = ComponentId(1);
    /// Component 2 (RTCP without rtcp-mux).
    pub const RTCP: ComponentId = ComponentId(2);

    /// `Some` when `id` is in `1..=256`.
    pub const fn new(id: u16) -> Option<Self> {
        if id >= 1 && id <= 256 {
            Some(ComponentId(id))
        } else {
            None
        }
    }

    /// The id, always in `1..=256`.
    pub const fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// IP address family, the IPv6/IPv4 input of [`local_preference`].
#[allow(clippy::exhaustive_enums)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AddressFamily {
    /// IPv4
    Ipv4,
    /// IPv6
    Ipv6,
}

impl AddressFamily {
    /// The family of `ip` (an IPv4-mapped IPv6 address counts as IPv6).
    pub const fn of(ip: &IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => AddressFamily::Ipv4,
            IpAddr::V6(_) => AddressFamily::Ipv6,
        }
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// A buffer was too small for the output; nothing useful was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct InsufficientSize {
    /// The number of bytes the output needs.
    pub required: usize,
}

impl fmt::Display for InsufficientSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "buffer too small: {} bytes required", self.required)
    }
}

impl core::error::Error for InsufficientSize {}

/// Why a string is not a [`Foundation`].
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FoundationError {
    /// Empty string.
    Empty,
    /// More than 32 characters.
    TooLong,
    /// A character outside `ALPHA / DIGIT / "+" / "/"`.
    InvalidCharacter,
}

impl fmt::Display for FoundationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FoundationError::Empty => "foundation is empty",
            FoundationError::TooLong => "foundation is longer than 32 characters",
            FoundationError::InvalidCharacter => {
                "foundation has a character that is not an ice-char"
            }
        })
    }
}

impl core::error::Error for FoundationError {}

/// Why a set of type preferences was rejected by [`TypePreferences::new`].
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TypePreferenceError {
    /// A preference above 126 (RFC 8445 §5.1.2.1: "from 0 ... to 126").
    OutOfRange,
    /// Two kinds share a preference ("MUST be different for candidates of
    /// different types").
    NotDistinct,
    /// Peer-reflexive is not above server-reflexive ("MUST be higher").
    PeerReflexiveNotAboveServerReflexive,
}

impl fmt::Display for TypePreferenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TypePreferenceError::OutOfRange => "type preference above 126",
            TypePreferenceError::NotDistinct => "two candidate types share a type preference",
            TypePreferenceError::PeerReflexiveNotAboveServerReflexive => {
                "peer-reflexive type preference must be above server-reflexive"
            }
        })
    }
}

impl core::error::Error for TypePreferenceError {}

/// Why a `candidate` attribute line was rejected: the field that is missing
/// or malformed.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CandidateAttributeError {
    /// A byte outside printable ASCII and space (CR/LF only at the end).
    InvalidCharacter,
    /// The line starts with `a=` but not `a=candidate:`.
    Prefix,
    /// Foundation missing, empty, over 32 characters or not ice-chars.
    Foundation,
    /// Component id missing, not 1-3 digits, or outside 1..=256.
    ComponentId,
    /// Transport missing or neither UDP nor TCP.
    Transport,
    /// Priority missing, not 1-10 digits or above `u32::MAX`.
    Priority,
    /// Connection address missing, or neither an IP address nor a host name.
    ConnectionAddress,
    /// Port missing, not digits or above 65535.
    Port,
    /// The `typ` keyword is missing.
    Typ,
    /// The candidate type is missing or not host/srflx/prflx/relay.
    CandidateType,
    /// `raddr` value malformed, or `rport` without `raddr`.
    RelatedAddress,
    /// `rport` value malformed, or `raddr` without `rport`.
    RelatedPort,
    /// `tcptype` is not active/passive/so.
    TcpType,
    /// `generation` is not a `u32`.
    Generation,
    /// `ufrag` is not 1..=256 ice-chars.
    Ufrag,
    /// `network-id` is not a `u32`.
    NetworkId,
    /// `network-cost` is not a `u32`.
    NetworkCost,
    /// An extension name is not an RFC 3261 token.
    ExtensionName,
    /// An extension name at the end of the line has no value.
    ExtensionValue,
    /// A known extension (raddr, rport, tcptype, generation, ufrag,
    /// network-id, network-cost) appears twice.
    DuplicateExtension,
}

impl fmt::Display for CandidateAttributeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use CandidateAttributeError as E;
        f.write_str(match self {
            E::InvalidCharacter => "candidate: invalid character",
            E::Prefix => "candidate: line is not a candidate attribute",
            E::Foundation => "candidate: missing or malformed foundation",
            E::ComponentId => "candidate: missing or malformed component id",
            E::Transport => "candidate: missing or unsupported transport",
            E::Priority => "candidate: missing or malformed priority",
            E::ConnectionAddress => "candidate: missing or malformed connection address",
            E::Port => "candidate: missing or malformed port",
            E::Typ => "candidate: missing `typ`",
            E::CandidateType => "candidate: missing or unknown candidate type",
            E::RelatedAddress => "candidate: malformed or missing raddr",
            E::RelatedPort => "candidate: malformed or missing rport",
            E::TcpType => "candidate: malformed tcptype",
            E::Generation => "candidate: malformed generation",
            E::Ufrag => "candidate: malformed ufrag",
            E::NetworkId => "candidate: malformed network-id",
            E::NetworkCost => "candidate: malformed network-cost",
            E::ExtensionName => "candidate: malformed extension name",
            E::ExtensionValue => "candidate: extension without a value",
            E::DuplicateExtension => "candidate: extension appears twice",
        })
    }
}

impl core::error::Error for CandidateAttributeError {}

/// Why a [`CandidateAttribute`] could not become a [`Candidate`].
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ToCandidateError {
    /// The connection address is a host name (typically an mDNS `.local`
    /// name): the adapter must resolve it first, then call
    /// [`CandidateAttribute::with_address`].
    UnresolvedName,
}

impl fmt::Display for ToCandidateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("candidate address is an unresolved host name")
    }
}

impl core::error::Error for ToCandidateError {}

// ---------------------------------------------------------------------------
// Foundation
// ---------------------------------------------------------------------------

/// A candidate foundation: 1 to 32 ice-chars (RFC 8839 §5.1, RFC 8445
/// §5.1.1.3), stored inline (33 bytes), never allocated.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Foundation {
    len: u8,
    // Invariant: bytes[..len] are ice-chars, bytes[len..] are zero.
    bytes: [u8; Foundation::MAX_LEN],
}

impl Foundation {
    /// The longest foundation RFC 8839 allows.
    pub const MAX_LEN: usize = 32;

    /// A foundation from its text; checks 1..=32 ice-chars. Never panics.
    pub fn new(s: &str) -> Result<Self, FoundationError> {
        if s.is_empty() {
            return Err(FoundationError::Empty);
        }
        if s.len() > Self::MAX_LEN {
            return Err(FoundationError::TooLong);
        }
        if !s.bytes().all(is_ice_char) {
            return Err(FoundationError::InvalidCharacter);
        }
        let mut bytes = [0u8; Self::MAX_LEN];
        for (d, s) in bytes.iter_mut().zip(s.bytes()) {
            *d = s;
        }
        Ok(Foundation {
            len: s.len() as u8,
            bytes,
        })
    }

    /// The foundation's text.
    pub fn as_str(&self) -> &str {
        let b = self.bytes.get(..usize::from(self.len)).unwrap_or(&[]);
        core::str::from_utf8(b).unwrap_or("")
    }

    /// The foundation of a local candidate, computed so that candidates get
    /// the same foundation exactly when RFC 8445 §5.1.1.3 says they must:
    /// same type, same base IP address, same STUN/TURN server IP address
    /// (server-reflexive and relayed only) and same transport.
    ///
    /// The function is fixed, because the router and every speaker must
    /// compute the same value:
    ///
    /// 1. Build the canonical bytes: the SDP type token (`host`, `srflx`,
    ///    `prflx`, `relay`), `0x00`, the lowercase transport token (`udp`,
    ///    `tcp`), `0x00`, the base IP as `0x04` + 4 octets or `0x06` + 16
    ///    octets, then the server IP encoded the same way, or the single byte
    ///    `0x00` when the kind is host or peer-reflexive (the server is then
    ///    ignored) or no server is given.
    /// 2. Hash them with 64-bit FNV-1a (offset basis `0xcbf29ce484222325`,
    ///    prime `0x100000001b3`: for each byte, `h ^= byte; h *= prime`
    ///    wrapping).
    /// 3. Render the hash in decimal ASCII without leading zeros (1 to 20
    ///    digits, all ice-chars).
    ///
    /// Example: host, UDP, base 192.168.1.5 hashes
    /// `68 6f 73 74 00 75 64 70 00 04 c0 a8 01 05 00` to
    /// `13026095866797557710`.
    ///
    /// Ports and IPv6 scope ids do not enter the hash. Distinct inputs
    /// collide with probability about 2^-64 per pair. For a relayed
    /// candidate the base is the relayed address itself (RFC 8445 §5.1.1.2).
    /// Never panics.
    pub fn compute(
        kind: CandidateKind,
        transport: Transport,
        base: IpAddr,
        server: Option<IpAddr>,
    ) -> Foundation {
        const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        fn feed(mut h: u64, bytes: &[u8]) -> u64 {
            for &b in bytes {
                h ^= u64::from(b);
                h = h.wrapping_mul(PRIME);
            }
            h
        }
        fn feed_ip(h: u64, ip: &IpAddr) -> u64 {
            match ip {
                IpAddr::V4(v4) => feed(feed(h, &[4]), &v4.octets()),
                IpAddr::V6(v6) => feed(feed(h, &[6]), &v6.octets()),
            }
        }
        let mut h = feed(OFFSET, kind.as_str().as_bytes());
        h = feed(h, &[0]);
        h = feed(h, transport.as_str().as_bytes());
        h = feed(h, &[0]);
        h = feed_ip(h, &base);
        h = match server {
            Some(ip) if kind.uses_server() => feed_ip(h, &ip),
            _ => feed(h, &[0]),
        };
        Foundation::from_u64(h)
    }

    /// The decimal rendering of `v` as a foundation (1 to 20 digits).
    pub fn from_u64(mut v: u64) -> Foundation {
        let mut digits = [0u8; 20];
        let mut n = 0;
        loop {
            if let Some(d) = digits.get_mut(n) {
                *d = b'0' + (v % 10) as u8;
            }
            n += 1;
            v /= 10;
            if v == 0 || n >= digits.len() {
                break;
            }
        }
        let mut bytes = [0u8; Self::MAX_LEN];
        for (d, s) in bytes.iter_mut().zip(digits.iter().take(n).rev()) {
            *d = *s;
        }
        Foundation {
            len: n as u8,
            bytes,
        }
    }
}

impl fmt::Debug for Foundation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Foundation({:?})", self.as_str())
    }
}

impl fmt::Display for Foundation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Foundation {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "{=str}", self.as_str())
    }
}

impl TryFrom<&str> for Foundation {
    type Error = FoundationError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Foundation::new(s)
    }
}

// ---------------------------------------------------------------------------
// Priorities
// ---------------------------------------------------------------------------

/// The candidate priority of RFC 8445 §5.1.2.1:
/// `2^24 * type_preference + 2^8 * local_preference + (256 - component)`.
///
/// Exact for every input (the maximum, type 255 / local 65535 / component 1,
/// is `u32::MAX`); never panics.
pub const fn priority(type_preference: u8, local_preference: u16, component: ComponentId) -> u32 {
    ((type_preference as u32) << 24) + ((local_preference as u32) << 8) + (256 - component.0 as u32)
}

/// The type preferences of RFC 8445 §5.1.2.1, one per [`CandidateKind`].
///
/// Enforced by [`TypePreferences::new`] (the RFC's MUSTs): every value in
/// `0..=126`, the four values pairwise distinct, and peer-reflexive above
/// server-reflexive. Not enforced (the RFC's SHOULDs, §5.1.2.2): host
/// highest and relayed lowest (0); a deployment may deliberately prefer
/// relays, for example to test TURN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TypePreferences {
    host: u8,
    peer_reflexive: u8,
    server_reflexive: u8,
    relayed: u8,
}

impl TypePreferences {
    /// RFC 8445 §5.1.2.2's recommended values: host 126, peer-reflexive 110,
    /// server-reflexive 100, relayed 0.
    pub const RFC8445: TypePreferences = TypePreferences {
        host: 126,
        peer_reflexive: 110,
        server_reflexive: 100,
        relayed: 0,
    };

    /// Validated type preferences (see the type's docs for the rules).
    pub const fn new(
        host: u8,
        peer_reflexive: u8,
        server_reflexive: u8,
        relayed: u8,
    ) -> Result<Self, TypePreferenceError> {
        if host > 126 || peer_reflexive > 126 || server_reflexive > 126 || relayed > 126 {
            return Err(TypePreferenceError::OutOfRange);
        }
        if host == peer_reflexive
            || host == server_reflexive
            || host == relayed
            || peer_reflexive == server_reflexive
            || peer_reflexive == relayed
            || server_reflexive == relayed
        {
            return Err(TypePreferenceError::NotDistinct);
        }
        if peer_reflexive <= server_reflexive {
            return Err(TypePreferenceError::PeerReflexiveNotAboveServerReflexive);
        }
        Ok(TypePreferences {
            host,
            peer_reflexive,
            server_reflexive,
            relayed,
        })
    }

    /// The type preference of `kind`.
    pub const fn get(&self, kind: CandidateKind) -> u8 {
        match kind {
            CandidateKind::Host => self.host,
            CandidateKind::PeerReflexive => self.peer_reflexive,
            CandidateKind::ServerReflexive => self.server_reflexive,
            CandidateKind::Relayed => self.relayed,
        }
    }

    /// [`priority`] for a candidate of `kind`.
    pub const fn priority(
        &self,
        kind: CandidateKind,
        local_preference: u16,
        component: ComponentId,
    ) -> u32 {
        priority(self.get(kind), local_preference, component)
    }
}

impl Default for TypePreferences {
    fn default() -> Self {
        Self::RFC8445
    }
}

/// The local preference of one local address (RFC 8445 §5.1.2.1, with the
/// multihoming guidance of §5.1.2.2 and the RFC 8421 IPv6/IPv4
/// interleaving), as a total function of four inputs:
///
/// - `local_network_priority`: the config switch of the same name;
/// - `on_local_network`: whether this address's interface is on the local
///   network (the `net` layer decides; this function only takes the answer);
/// - `family`: IPv6 or IPv4;
/// - `ordinal`: the address's 0-based position among the agent's addresses
///   *of the same family*, in the adapter's order of preference.
///
/// The formula:
///
/// ```text
/// slot = 2 * ordinal + (1 if family is IPv4 else 0)           0..=511
/// high = !local_network_priority || on_local_network
/// local_preference = (65535 if high else 32767) - slot
/// ```
///
/// So with the switch off every address lands in `65024..=65535` ordered
/// IPv6#0, IPv4#0, IPv6#1, IPv4#1, ... (RFC 8421's interleaving, IPv6
/// first), and a single IPv6 address gets 65535 as §5.1.2.1 recommends.
/// With the switch on, addresses on the local network keep that range and
/// all others drop to `32256..=32767`, below every local one.
///
/// Distinct `(family, ordinal)` inputs always give distinct values, whatever
/// the two booleans, so priorities of candidates of one type and component
/// stay unique as §5.1.2.1 requires. Never panics.
pub const fn local_preference(
    local_network_priority: bool,
    on_local_network: bool,
    family: AddressFamily,
    ordinal: u8,
) -> u16 {
    let slot = 2 * ordinal as u16
        + match family {
            AddressFamily::Ipv6 => 0,
            AddressFamily::Ipv4 => 1,
        };
    let top: u16 = if !local_network_priority || on_local_network {
        0xFFFF
    } else {
        0x7FFF
    };
    top - slot
}

/// The candidate-pair priority of RFC 8445 §6.1.2.3:
/// `2^32 * MIN(G,D) + 2 * MAX(G,D) + (G > D ? 1 : 0)`, where `G` is the
/// priority of the **controlling** agent's candidate and `D` the
/// **controlled** agent's, whichever of them is local.
///
/// The usual mistakes this avoids: taking G and D as local/remote instead
/// of controlling/controlled (the two agents then order pairs differently),
/// and computing `2^32 * MIN` in 32 bits.
///
/// Exact for every pair except `G == D == u32::MAX`, whose true value
/// `2^64 + 2^32 - 2` does not fit a `u64` and saturates to `u64::MAX`. For
/// RFC-valid priorities (at most `2^31 - 1`) the value is exact and below
/// `2^63`. Never panics.
pub const fn pair_priority(controlling: u32, controlled: u32) -> u64 {
    let (g, d) = (controlling as u64, controlled as u64);
    let (min, max) = if g < d { (g, d) } else { (d, g) };
    let tie = if g > d { 1 } else { 0 };
    match (min << 32).checked_add(2 * max + tie) {
        Some(v) => v,
        None => u64::MAX,
    }
}

/// [`pair_priority`] from the local agent's point of view: `local` and
/// `remote` candidate priorities, and whether the local agent is
/// controlling.
pub const fn pair_priority_for(local: u32, remote: u32, local_is_controlling: bool) -> u64 {
    if local_is_controlling {
        pair_priority(local, remote)
    } else {
        pair_priority(remote, local)
    }
}

// ---------------------------------------------------------------------------
// Candidate
// ---------------------------------------------------------------------------

/// One ICE candidate as the agent holds it: owned, `Copy`, with a resolved
/// address (an mDNS name must be resolved before a candidate exists).
///
/// 108 bytes on thumbv6m, riscv32imc and x86_64 (checked at compile time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Candidate {
    /// Groups candidates that share a network path (RFC 8445 §5.1.1.3).
    pub foundation: Foundation,
    /// The component this candidate serves.
    pub component: ComponentId,
    /// UDP or TCP.
    pub transport: Transport,
    /// The candidate priority (RFC 8445 §5.1.2).
    pub priority: u32,
    /// The transport address. For IPv6 link-local local candidates the scope
    /// id matters for sending; it does not travel in SDP.
    pub address: SocketAddr,
    /// Host, server-reflexive, peer-reflexive or relayed.
    pub kind: CandidateKind,
    /// `raddr`/`rport`: the base of a reflexive candidate, the mapped address
    /// of a relayed one, `None` for host candidates (RFC 8839 §5.1).
    pub related_address: Option<SocketAddr>,
    /// The RFC 6544 tcptype of a TCP candidate.
    pub tcp_type: Option<TcpType>,
}

// The agent budgets 8 local + 8 remote candidates and their pairs in under
// 8 KiB on a microcontroller; keep `Candidate` from growing unnoticed.
const _: () = assert!(core::mem::size_of::<Candidate>() <= 108);

/// What the adapter knows about a local candidate it gathered; see
/// [`Candidate::local`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalCandidate {
    /// Host, server-reflexive, peer-reflexive or relayed.
    pub kind: CandidateKind,
    /// UDP or TCP.
    pub transport: Transport,
    /// tcptype for TCP candidates.
    pub tcp_type: Option<TcpType>,
    /// The candidate's transport address.
    pub address: SocketAddr,
    /// The base's IP (RFC 8445 §5.1.1.2): the host address for host and
    /// reflexive candidates, the relayed address itself for relayed ones.
    pub base: IpAddr,
    /// raddr/rport to advertise.
    pub related_address: Option<SocketAddr>,
    /// The STUN or TURN server's IP, for server-reflexive and relayed.
    pub server: Option<IpAddr>,
    /// The component.
    pub component: ComponentId,
    /// From [`local_preference`].
    pub local_preference: u16,
}

impl Candidate {
    /// A local candidate with its foundation ([`Foundation::compute`]) and
    /// priority ([`TypePreferences::priority`]) computed. Never panics.
    pub fn local(c: &LocalCandidate, prefs: &TypePreferences) -> Candidate {
        Candidate {
            foundation: Foundation::compute(c.kind, c.transport, c.base, c.server),
            component: c.component,
            transport: c.transport,
            priority: prefs.priority(c.kind, c.local_preference, c.component),
            address: c.address,
            kind: c.kind,
            related_address: c.related_address,
            tcp_type: c.tcp_type,
        }
    }

    /// The SDP attribute for this candidate (borrowing the foundation). No
    /// generation, ufrag, network-id, network-cost or other extensions; the
    /// IPv6 scope id and flow info are not carried. Never panics.
    pub fn to_attribute(&self) -> CandidateAttribute<'_> {
        CandidateAttribute {
            foundation: self.foundation.as_str(),
            component: self.component,
            transport: self.transport,
            priority: self.priority,
            connection_address: ConnectionAddress::Ip(self.address.ip()),
            port: self.address.port(),
            kind: self.kind,
            related_address: self.related_address.map(|a| ConnectionAddress::Ip(a.ip())),
            related_port: self.related_address.map(|a| a.port()),
            tcp_type: self.tcp_type,
            generation: None,
            ufrag: None,
            network_id: None,
            network_cost: None,
            extensions: Extensions::EMPTY,
        }
    }
}

// defmt 1.x implements `Format` for `core::net` types only behind its
// `ip_in_core` feature, so addresses are formatted through `Display` here.
#[cfg(feature = "defmt")]
impl defmt::Format for Candidate {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "Candidate {{ foundation: {}, component: {}, {} {}, priority: {=u32}, address: {}, related: {}, tcptype: {} }}",
            self.foundation,
            self.component,
            self.transport,
            self.kind,
            self.priority,
            defmt::Display2Format(&self.address),
            self.related_address.as_ref().map(defmt::Display2Format),
            self.tcp_type
        )
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for LocalCandidate {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "LocalCandidate {{ {} {} {} base {} local_preference {=u16} }}",
            self.kind,
            self.transport,
            defmt::Display2Format(&self.address),
            defmt::Display2Format(&self.base),
            self.local_preference
        )
    }
}

impl TryFrom<&CandidateAttribute<'_>> for Candidate {
    type Error = ToCandidateError;
    fn try_from(a: &CandidateAttribute<'_>) -> Result<Self, Self::Error> {
        a.to_candidate()
    }
}

// ---------------------------------------------------------------------------
// SDP attribute
// ---------------------------------------------------------------------------

/// The `connection-address` of a candidate line: an IP address, or a fully
/// qualified domain name such as the `<uuid>.local` mDNS names that
/// browsers use to hide host addresses.
#[allow(clippy::exhaustive_enums)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnectionAddress<'a> {
    /// An IPv4 or IPv6 address (IPv6 without brackets or zone).
    Ip(IpAddr),
    /// A host name: 1..=253 characters, dot-separated labels of 1..=63
    /// letters, digits, `-` or `_`, last label not all digits.
    Fqdn(&'a str),
}

impl<'a> ConnectionAddress<'a> {
    /// Parse an IP address or a host name (see the variants). Never panics.
    pub fn parse(s: &'a str) -> Option<Self> {
        if let Ok(v4) = s.parse::<Ipv4Addr>() {
            return Some(ConnectionAddress::Ip(IpAddr::V4(v4)));
        }
        if let Ok(v6) = s.parse::<Ipv6Addr>() {
            return Some(ConnectionAddress::Ip(IpAddr::V6(v6)));
        }
        if s.is_empty() || s.len() > 253 {
            return None;
        }
        let mut last = "";
        for label in s.split('.') {
            if label.is_empty()
                || label.len() > 63
                || !label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return None;
            }
            last = label;
        }
        if last.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(ConnectionAddress::Fqdn(s))
    }

    /// True for a host name in `.local` (mDNS, RFC 6762), ASCII
    /// case-insensitive.
    pub fn is_mdns(&self) -> bool {
        match self {
            ConnectionAddress::Ip(_) => false,
            ConnectionAddress::Fqdn(n) => n
                .len()
                .checked_sub(6)
                .and_then(|i| n.get(i..))
                .is_some_and(|t| t.eq_ignore_ascii_case(".local")),
        }
    }

    /// The IP address, if this is one.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            ConnectionAddress::Ip(ip) => Some(*ip),
            ConnectionAddress::Fqdn(_) => None,
        }
    }
}

impl fmt::Display for ConnectionAddress<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectionAddress::Ip(ip) => fmt::Display::fmt(ip, f),
            ConnectionAddress::Fqdn(n) => f.write_str(n),
        }
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for ConnectionAddress<'_> {
    fn format(&self, f: defmt::Formatter<'_>) {
        match self {
            ConnectionAddress::Ip(ip) => defmt::write!(f, "{}", defmt::Display2Format(ip)),
            ConnectionAddress::Fqdn(n) => defmt::write!(f, "{=str}", n),
        }
    }
}

/// Extension names the parser understands and stores in typed fields.
const KNOWN_EXTENSIONS: [&str; 7] = [
    "raddr",
    "rport",
    "tcptype",
    "generation",
    "ufrag",
    "network-id",
    "network-cost",
];

/// The unknown `cand-extension` name/value pairs of a parsed line (RFC 8839
/// §5.1), borrowed from it. Known pairs (raddr, rport, tcptype, generation,
/// ufrag, network-id, network-cost) are in [`CandidateAttribute`]'s typed
/// fields and are not repeated here.
///
/// Two `Extensions` are equal when they yield the same pairs in the same
/// order, however they were spaced or interleaved with known pairs.
#[derive(Clone, Copy, Default)]
pub struct Extensions<'a> {
    // The validated tail of a line after the candidate type: name/value
    // pairs of RFC 3261 tokens / VCHARs separated by spaces.
    raw: &'a str,
}

impl<'a> Extensions<'a> {
    /// No extensions.
    pub const EMPTY: Extensions<'static> = Extensions { raw: "" };

    /// The unknown pairs, in line order. Never panics.
    pub fn iter(&self) -> ExtensionIter<'a> {
        ExtensionIter {
            tokens: Tokens { rest: self.raw },
        }
    }

    /// True when there are no unknown pairs.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// The value of the first unknown pair named `name`.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

impl PartialEq for Extensions<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Extensions<'_> {}

impl fmt::Debug for Extensions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Extensions<'_> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "{=str}", self.raw)
    }
}

impl<'a> IntoIterator for Extensions<'a> {
    type Item = (&'a str, &'a str);
    type IntoIter = ExtensionIter<'a>;
    fn into_iter(self) -> ExtensionIter<'a> {
        self.iter()
    }
}

/// Iterator over unknown extension pairs `(name, value)`; see [`Extensions`].
#[derive(Clone)]
pub struct ExtensionIter<'a> {
    tokens: Tokens<'a>,
}

impl Clone for Tokens<'_> {
    fn clone(&self) -> Self {
        Tokens { rest: self.rest }
    }
}

impl<'a> Iterator for ExtensionIter<'a> {
    type Item = (&'a str, &'a str);
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let name = self.tokens.next()?;
            let value = self.tokens.next()?;
            if !KNOWN_EXTENSIONS.contains(&name) {
                return Some((name, value));
            }
        }
    }
}

/// A borrowed SDP `candidate` attribute (RFC 8839 §5.1, with the RFC 6544
/// `tcptype` and the libwebrtc `generation`, `ufrag`, `network-id` and
/// `network-cost` extensions typed).
///
/// [`parse`](Self::parse) accepts a line as `a=candidate:...`,
/// `candidate:...` (the `RTCIceCandidate.candidate` form) or the bare value
/// `<foundation> <component> ...`; a trailing CR/LF is ignored. Tokens are
/// separated by one or more spaces. Transport and type tokens are
/// case-insensitive, extension names case-sensitive. `raddr`/`rport` and the
/// other known extensions may appear in any order after `typ`. Parsing
/// enforces the grammar, not RFC 8839's semantic rules (e.g. a host line
/// with `raddr` is accepted).
///
/// [`emit`](Self::emit) and `Display` write the `candidate:...` form
/// (without `a=`) in the order Chrome uses: `typ`, `raddr`, `rport`,
/// `tcptype`, `generation`, `ufrag`, `network-id`, `network-cost`, then the
/// unknown extensions. Transport is written lowercase. So Chrome and Safari
/// lines re-emit byte for byte, and `parse(emit(a)) == a` for every parsed
/// `a`. Fields set by hand are written as they are: check them with
/// [`validate`](Self::validate) first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CandidateAttribute<'a> {
    /// 1..=32 ice-chars.
    pub foundation: &'a str,
    /// 1..=256.
    pub component: ComponentId,
    /// UDP or TCP.
    pub transport: Transport,
    /// The candidate priority.
    pub priority: u32,
    /// IP address or host name (mDNS).
    pub connection_address: ConnectionAddress<'a>,
    /// The port.
    pub port: u16,
    /// `typ`.
    pub kind: CandidateKind,
    /// `raddr`.
    pub related_address: Option<ConnectionAddress<'a>>,
    /// `rport`.
    pub related_port: Option<u16>,
    /// `tcptype` (RFC 6544).
    pub tcp_type: Option<TcpType>,
    /// `generation` (libwebrtc).
    pub generation: Option<u32>,
    /// `ufrag` (libwebrtc): the ICE ufrag this candidate belongs to.
    pub ufrag: Option<&'a str>,
    /// `network-id` (libwebrtc).
    pub network_id: Option<u32>,
    /// `network-cost` (libwebrtc; 10 for wired/Wi-Fi, 999 unknown).
    pub network_cost: Option<u32>,
    /// All other extension pairs.
    pub extensions: Extensions<'a>,
}

impl<'a> CandidateAttribute<'a> {
    /// Parse one candidate line (see the type's docs for what is accepted).
    /// Never panics; allocation-free; borrows from `line`.
    pub fn parse(line: &'a str) -> Result<Self, CandidateAttributeError> {
        use CandidateAttributeError as E;
        let line = line.trim_end_matches(['\r', '\n']);
        if !line.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            return Err(E::InvalidCharacter);
        }
        let body = match line.strip_prefix("a=") {
            Some(rest) => rest.strip_prefix("candidate:").ok_or(E::Prefix)?,
            None => line.strip_prefix("candidate:").unwrap_or(line),
        };
        let mut t = Tokens { rest: body };

        let foundation = t
            .next()
            .filter(|f| is_ice_chars(f, 1, 32))
            .ok_or(E::Foundation)?;
        let component = t
            .next()
            .and_then(|s| parse_digits(s, 3))
            .and_then(|v| u16::try_from(v).ok())
            .and_then(ComponentId::new)
            .ok_or(E::ComponentId)?;
        let transport = t.next().and_then(Transport::from_sdp).ok_or(E::Transport)?;
        let priority = t.next().and_then(parse_u32).ok_or(E::Priority)?;
        let connection_address = t
            .next()
            .and_then(ConnectionAddress::parse)
            .ok_or(E::ConnectionAddress)?;
        let port = t.next().and_then(parse_port).ok_or(E::Port)?;
        if t.next() != Some("typ") {
            return Err(E::Typ);
        }
        let kind = t
            .next()
            .and_then(CandidateKind::from_sdp)
            .ok_or(E::CandidateType)?;

        let mut a = CandidateAttribute {
            foundation,
            component,
            transport,
            priority,
            connection_address,
            port,
            kind,
            related_address: None,
            related_port: None,
            tcp_type: None,
            generation: None,
            ufrag: None,
            network_id: None,
            network_cost: None,
            extensions: Extensions { raw: t.rest },
        };

        fn set<T>(slot: &mut Option<T>, v: Option<T>, err: E) -> Result<(), E> {
            if slot.is_some() {
                return Err(E::DuplicateExtension);
            }
            *slot = Some(v.ok_or(err)?);
            Ok(())
        }

        while let Some(name) = t.next() {
            let value = t.next();
            match name {
                "raddr" => set(
                    &mut a.related_address,
                    value.and_then(ConnectionAddress::parse),
                    E::RelatedAddress,
                )?,
                "rport" => set(
                    &mut a.related_port,
                    value.and_then(parse_port),
                    E::RelatedPort,
                )?,
                "tcptype" => set(
                    &mut a.tcp_type,
                    value.and_then(TcpType::from_sdp),
                    E::TcpType,
                )?,
                "generation" => set(&mut a.generation, value.and_then(parse_u32), E::Generation)?,
                "ufrag" => set(
                    &mut a.ufrag,
                    value.filter(|u| is_ice_chars(u, 1, 256)),
                    E::Ufrag,
                )?,
                "network-id" => set(&mut a.network_id, value.and_then(parse_u32), E::NetworkId)?,
                "network-cost" => set(
                    &mut a.network_cost,
                    value.and_then(parse_u32),
                    E::NetworkCost,
                )?,
                _ => {
                    if !name.bytes().all(is_token_char) {
                        return Err(E::ExtensionName);
                    }
                    if value.is_none() {
                        return Err(E::ExtensionValue);
                    }
                }
            }
        }
        match (a.related_address.is_some(), a.related_port.is_some()) {
            (true, false) => Err(E::RelatedPort),
            (false, true) => Err(E::RelatedAddress),
            _ => Ok(a),
        }
    }

    /// Check hand-set fields against what [`parse`](Self::parse) accepts,
    /// so that the emitted line re-parses to `self`. Never panics.
    pub fn validate(&self) -> Result<(), CandidateAttributeError> {
        use CandidateAttributeError as E;
        if !is_ice_chars(self.foundation, 1, 32) {
            return Err(E::Foundation);
        }
        let addr_ok = |a: &ConnectionAddress<'_>| match a {
            ConnectionAddress::Ip(_) => true,
            ConnectionAddress::Fqdn(n) => ConnectionAddress::parse(n) == Some(*a),
        };
        if !addr_ok(&self.connection_address) {
            return Err(E::ConnectionAddress);
        }
        match (&self.related_address, self.related_port) {
            (Some(a), Some(_)) if !addr_ok(a) => return Err(E::RelatedAddress),
            (Some(_), None) => return Err(E::RelatedPort),
            (None, Some(_)) => return Err(E::RelatedAddress),
            _ => {}
        }
        if self.ufrag.is_some_and(|u| !is_ice_chars(u, 1, 256)) {
            return Err(E::Ufrag);
        }
        Ok(())
    }

    /// The number of bytes [`emit`](Self::emit) writes.
    pub fn buffer_len(&self) -> usize {
        let mut c = Counter(0);
        let _ = fmt::write(&mut c, format_args!("{self}"));
        c.0
    }

    /// Write the `candidate:...` line (no `a=`, no line end) into `buf` and
    /// return its length, or the length it needs. On error the contents of
    /// `buf` are unspecified. Never panics.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, InsufficientSize> {
        let mut w = SliceWriter::new(buf);
        let _ = fmt::write(&mut w, format_args!("{self}"));
        w.finish()
    }

    /// This attribute as a [`Candidate`]; fails when the connection address
    /// is a host name (resolve it first, then [`with_address`](Self::with_address)).
    /// A host-name `raddr` becomes `related_address: None`; the libwebrtc
    /// extensions and unknown extensions are dropped.
    pub fn to_candidate(&self) -> Result<Candidate, ToCandidateError> {
        let ip = self
            .connection_address
            .ip()
            .ok_or(ToCandidateError::UnresolvedName)?;
        let related_address = match (self.related_address.and_then(|a| a.ip()), self.related_port) {
            (Some(ip), Some(port)) => Some(SocketAddr::new(ip, port)),
            _ => None,
        };
        Ok(Candidate {
            // Parsed foundations are always valid; a hand-set invalid one
            // falls back to "0" rather than failing.
            foundation: Foundation::new(self.foundation).unwrap_or(Foundation::from_u64(0)),
            component: self.component,
            transport: self.transport,
            priority: self.priority,
            address: SocketAddr::new(ip, self.port),
            kind: self.kind,
            related_address,
            tcp_type: self.tcp_type,
        })
    }

    /// The same attribute with its connection address replaced by `ip` (the
    /// adapter's mDNS resolution result).
    pub fn with_address(mut self, ip: IpAddr) -> Self {
        self.connection_address = ConnectionAddress::Ip(ip);
        self
    }
}

impl fmt::Display for CandidateAttribute<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "candidate:{} {} {} {} {} {} typ {}",
            self.foundation,
            self.component,
            self.transport,
            self.priority,
            self.connection_address,
            self.port,
            self.kind
        )?;
        if let Some(a) = &self.related_address {
            write!(f, " raddr {a}")?;
        }
        if let Some(p) = self.related_port {
            write!(f, " rport {p}")?;
        }
        if let Some(t) = self.tcp_type {
            write!(f, " tcptype {t}")?;
        }
        if let Some(g) = self.generation {
            write!(f, " generation {g}")?;
        }
        if let Some(u) = self.ufrag {
            write!(f, " ufrag {u}")?;
        }
        if let Some(n) = self.network_id {
            write!(f, " network-id {n}")?;
        }
        if let Some(c) = self.network_cost {
            write!(f, " network-cost {c}")?;
        }
        for (n, v) in self.extensions.iter() {
            write!(f, " {n} {v}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Conformance
// ---------------------------------------------------------------------------

#[cfg(feature = "conformance")]
pub(crate) fn conformance(report: &mut crate::conformance::Report) {
    let c1 = ComponentId::RTP;
    let p = TypePreferences::RFC8445;
    report.check(
        "candidate/priority/host",
        p.priority(CandidateKind::Host, 65535, c1) == 2_130_706_431,
    );
    report.check(
        "candidate/priority/prflx",
        p.priority(CandidateKind::PeerReflexive, 65535, c1) == 1_862_270_975,
    );
    report.check(
        "candidate/priority/srflx",
        p.priority(CandidateKind::ServerReflexive, 65535, c1) == 1_694_498_815,
    );
    report.check(
        "candidate/priority/relay",
        p.priority(CandidateKind::Relayed, 65535, c1) == 16_777_215,
    );
    report.check(
        "candidate/priority/rtcp",
        p.priority(CandidateKind::Host, 65535, ComponentId::RTCP) == 2_130_706_430,
    );
    report.check(
        "candidate/local-preference/lan-first",
        local_preference(true, true, AddressFamily::Ipv4, 3) == 65_528
            && local_preference(true, false, AddressFamily::Ipv6, 0) == 32_767
            && local_preference(false, false, AddressFamily::Ipv4, 0) == 65_534,
    );
    report.check(
        "candidate/pair-priority/equal",
        pair_priority(1, 1) == 4_294_967_298,
    );
    report.check(
        "candidate/pair-priority/g>d",
        pair_priority(2, 1) == 4_294_967_301,
    );
    report.check(
        "candidate/pair-priority/g<d",
        pair_priority(1, 2) == 4_294_967_300,
    );
    report.check(
        "candidate/pair-priority/host-srflx",
        pair_priority(2_130_706_431, 1_694_498_815) == 7_277_816_997_797_167_103
            && pair_priority(1_694_498_815, 2_130_706_431) == 7_277_816_997_797_167_102,
    );
    report.check(
        "candidate/pair-priority/max",
        pair_priority(u32::MAX, u32::MAX - 1) == u64::MAX,
    );
    report.check(
        "candidate/foundation/host-v4",
        Foundation::compute(
            CandidateKind::Host,
            Transport::Udp,
            IpAddr::V4(Ipv4Addr::new(192, 168, 1, 5)),
            None,
        )
        .as_str()
            == "13026095866797557710",
    );
    report.check(
        "candidate/foundation/srflx-v4",
        Foundation::compute(
            CandidateKind::ServerReflexive,
            Transport::Udp,
            IpAddr::V4(Ipv4Addr::new(192, 168, 1, 5)),
            Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1))),
        )
        .as_str()
            == "3986442090282031773",
    );
    let ok = CandidateAttribute::parse(
        "a=candidate:842163049 1 udp 1686052607 203.0.113.7 61765 typ srflx raddr 192.168.1.5 rport 55012 generation 0 ufrag EsAw network-id 1 network-cost 10",
    )
    .is_ok_and(|a| {
        a.foundation == "842163049"
            && a.priority == 1_686_052_607
            && a.connection_address == ConnectionAddress::Ip(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)))
            && a.port == 61765
            && a.kind == CandidateKind::ServerReflexive
            && a.related_port == Some(55012)
            && a.ufrag == Some("EsAw")
            && a.network_cost == Some(10)
    });
    report.check("candidate/sdp/chrome-srflx", ok);
    let ok = CandidateAttribute::parse(
        "candidate:1 1 TCP 2105524479 192.168.1.5 9 typ host tcptype active",
    )
    .is_ok_and(|a| {
        a.transport == Transport::Tcp && a.tcp_type == Some(TcpType::Active) && a.port == 9
    });
    report.check("candidate/sdp/firefox-tcp", ok);
    let ok = CandidateAttribute::parse(
        "candidate:1560499547 1 udp 2113937151 2cf0b2c0-0842-4fe3-aaa0-4556a2dfbadc.local 33192 typ host generation 0 network-cost 999",
    )
    .is_ok_and(|a| a.connection_address.is_mdns() && a.to_candidate() == Err(ToCandidateError::UnresolvedName));
    report.check("candidate/sdp/mdns", ok);
    report.check(
        "candidate/sdp/reject-component",
        CandidateAttribute::parse("candidate:1 257 udp 1 192.0.2.1 1 typ host")
            == Err(CandidateAttributeError::ComponentId),
    );
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;
    use std::string::String;
    use std::vec::Vec;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    fn emit_string(a: &CandidateAttribute<'_>) -> String {
        let mut buf = [0u8; 1024];
        let n = a.emit(&mut buf).unwrap();
        assert_eq!(n, a.buffer_len());
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[cfg(feature = "conformance")]
    #[test]
    fn conformance_cases_pass() {
        let mut r = crate::conformance::Report::default();
        conformance(&mut r);
        assert_eq!(r.failed, 0, "{:?}", r.first_failure);
        assert_eq!(r.passed, 17);
    }

    #[test]
    fn candidate_size() {
        let size = core::mem::size_of::<Candidate>();
        std::println!("size_of::<Candidate>() = {size}");
        // 8 local + 8 remote candidates must leave room for 64 pairs in 8 KiB.
        assert!(size <= 112, "Candidate grew to {size} bytes");
        assert!(16 * size + 64 * 24 < 8 * 1024);
    }

    #[test]
    fn kind_transport_tcptype_tokens() {
        for k in CandidateKind::ALL {
            assert_eq!(CandidateKind::from_sdp(k.as_str()), Some(k));
        }
        assert_eq!(
            CandidateKind::from_sdp("SRFLX"),
            Some(CandidateKind::ServerReflexive)
        );
        assert_eq!(CandidateKind::from_sdp("relayed"), None);
        assert_eq!(Transport::from_sdp("UDP"), Some(Transport::Udp));
        assert_eq!(Transport::from_sdp("Tcp"), Some(Transport::Tcp));
        assert_eq!(Transport::from_sdp("sctp"), None);
        assert_eq!(TcpType::from_sdp("so"), Some(TcpType::SimultaneousOpen));
        assert_eq!(TcpType::from_sdp("passive"), Some(TcpType::Passive));
        assert_eq!(TcpType::from_sdp("simultaneous"), None);
    }

    #[test]
    fn component_bounds() {
        assert_eq!(ComponentId::new(0), None);
        assert_eq!(ComponentId::new(1), Some(ComponentId::RTP));
        assert_eq!(ComponentId::new(256).map(ComponentId::get), Some(256));
        assert_eq!(ComponentId::new(257), None);
    }

    #[test]
    fn foundation_validation() {
        assert_eq!(Foundation::new(""), Err(FoundationError::Empty));
        assert_eq!(
            Foundation::new(&"a".repeat(33)),
            Err(FoundationError::TooLong)
        );
        assert_eq!(
            Foundation::new("ab-c"),
            Err(FoundationError::InvalidCharacter)
        );
        let f = Foundation::new(&"a+/9".repeat(8)).unwrap();
        assert_eq!(f.as_str().len(), 32);
        assert_eq!(Foundation::new("1").unwrap().as_str(), "1");
        assert_eq!(Foundation::from_u64(0).as_str(), "0");
        assert_eq!(
            Foundation::from_u64(u64::MAX).as_str(),
            "18446744073709551615"
        );
    }

    #[test]
    fn foundation_vectors() {
        // Values computed independently (Python) from the documented encoding.
        let host = Foundation::compute(
            CandidateKind::Host,
            Transport::Udp,
            v4(192, 168, 1, 5),
            None,
        );
        assert_eq!(host.as_str(), "13026095866797557710");
        let srflx = Foundation::compute(
            CandidateKind::ServerReflexive,
            Transport::Udp,
            v4(192, 168, 1, 5),
            Some(v4(198, 51, 100, 1)),
        );
        assert_eq!(srflx.as_str(), "3986442090282031773");
        let relay = Foundation::compute(
            CandidateKind::Relayed,
            Transport::Tcp,
            "2001:db8::7".parse().unwrap(),
            Some("2001:db8::1".parse().unwrap()),
        );
        assert_eq!(relay.as_str(), "11726768933390203667");
    }

    #[test]
    fn foundation_rules() {
        let base = v4(10, 0, 0, 2);
        let stun = Some(v4(198, 51, 100, 1));
        let f = |k, t, b, s| Foundation::compute(k, t, b, s);
        use CandidateKind::*;
        // Same everything: same foundation.
        assert_eq!(
            f(Host, Transport::Udp, base, None),
            f(Host, Transport::Udp, base, None)
        );
        // Host and prflx ignore the server.
        assert_eq!(
            f(Host, Transport::Udp, base, stun),
            f(Host, Transport::Udp, base, None)
        );
        assert_eq!(
            f(PeerReflexive, Transport::Udp, base, stun),
            f(PeerReflexive, Transport::Udp, base, None)
        );
        // Each input changes it.
        assert_ne!(
            f(Host, Transport::Udp, base, None),
            f(Host, Transport::Tcp, base, None)
        );
        assert_ne!(
            f(Host, Transport::Udp, base, None),
            f(Host, Transport::Udp, v4(10, 0, 0, 3), None)
        );
        assert_ne!(
            f(Host, Transport::Udp, base, None),
            f(PeerReflexive, Transport::Udp, base, None)
        );
        assert_ne!(
            f(ServerReflexive, Transport::Udp, base, stun),
            f(
                ServerReflexive,
                Transport::Udp,
                base,
                Some(v4(198, 51, 100, 2))
            )
        );
        assert_ne!(
            f(ServerReflexive, Transport::Udp, base, stun),
            f(ServerReflexive, Transport::Udp, base, None)
        );
        assert_ne!(
            f(ServerReflexive, Transport::Udp, base, stun),
            f(Relayed, Transport::Udp, base, stun)
        );
        // IPv4 vs the IPv4-mapped IPv6 form are different bases.
        assert_ne!(
            f(Host, Transport::Udp, base, None),
            f(
                Host,
                Transport::Udp,
                "::ffff:10.0.0.2".parse().unwrap(),
                None
            )
        );
    }

    #[test]
    fn priority_vectors() {
        let p = TypePreferences::default();
        let c1 = ComponentId::RTP;
        // Hand-computed: 126*2^24 + 65535*2^8 + 255 etc.
        assert_eq!(p.priority(CandidateKind::Host, 65535, c1), 2_130_706_431);
        assert_eq!(
            p.priority(CandidateKind::PeerReflexive, 65535, c1),
            1_862_270_975
        );
        assert_eq!(
            p.priority(CandidateKind::ServerReflexive, 65535, c1),
            1_694_498_815
        );
        assert_eq!(p.priority(CandidateKind::Relayed, 65535, c1), 16_777_215);
        assert_eq!(
            p.priority(CandidateKind::Host, 0, ComponentId::new(256).unwrap()),
            2_113_929_216
        );
        // Chrome's host candidate 2122260223 = 126<<24 | 32542<<8 | 255.
        assert_eq!(p.priority(CandidateKind::Host, 32542, c1), 2_122_260_223);
        assert_eq!(priority(255, 65535, c1), u32::MAX);
        assert_eq!(priority(0, 0, ComponentId::new(256).unwrap()), 0);
    }

    #[test]
    fn type_preference_rules() {
        assert_eq!(
            TypePreferences::new(126, 110, 100, 0),
            Ok(TypePreferences::RFC8445)
        );
        assert_eq!(
            TypePreferences::new(127, 110, 100, 0),
            Err(TypePreferenceError::OutOfRange)
        );
        assert_eq!(
            TypePreferences::new(126, 110, 100, 200),
            Err(TypePreferenceError::OutOfRange)
        );
        assert_eq!(
            TypePreferences::new(126, 110, 110, 0),
            Err(TypePreferenceError::NotDistinct)
        );
        assert_eq!(
            TypePreferences::new(126, 126, 100, 0),
            Err(TypePreferenceError::NotDistinct)
        );
        assert_eq!(
            TypePreferences::new(126, 90, 100, 0),
            Err(TypePreferenceError::PeerReflexiveNotAboveServerReflexive)
        );
        // Relay-first is allowed (a SHOULD, not a MUST).
        let relay_first = TypePreferences::new(10, 110, 100, 126).unwrap();
        assert_eq!(relay_first.get(CandidateKind::Relayed), 126);
    }

    #[test]
    fn local_preference_table() {
        use AddressFamily::*;
        // (switch, on_lan, family, ordinal) -> value
        let table = [
            (false, false, Ipv6, 0, 65535),
            (false, false, Ipv4, 0, 65534),
            (false, true, Ipv6, 1, 65533),
            (false, false, Ipv4, 1, 65532),
            (true, true, Ipv6, 0, 65535),
            (true, true, Ipv4, 0, 65534),
            (true, false, Ipv6, 0, 32767),
            (true, false, Ipv4, 0, 32766),
            (true, true, Ipv4, 255, 65024),
            (true, false, Ipv4, 255, 32256),
        ];
        for (sw, lan, fam, ord, want) in table {
            assert_eq!(
                local_preference(sw, lan, fam, ord),
                want,
                "{sw} {lan} {fam:?} {ord}"
            );
        }
        // With the switch on, the worst LAN address beats the best other one.
        assert!(local_preference(true, true, Ipv4, 255) > local_preference(true, false, Ipv6, 0));
    }

    #[test]
    fn local_preference_unique_per_address() {
        // Exhaustive: every two distinct (family, ordinal) slots, every
        // combination of on_local_network flags, both switch positions.
        let fams = [AddressFamily::Ipv6, AddressFamily::Ipv4];
        let mut slots = Vec::new();
        for o in 0..=255u8 {
            for f in fams {
                slots.push((f, o));
            }
        }
        for sw in [false, true] {
            for (i, &(fa, oa)) in slots.iter().enumerate() {
                for &(fb, ob) in &slots[i + 1..] {
                    for (la, lb) in [(false, false), (false, true), (true, false), (true, true)] {
                        assert_ne!(
                            local_preference(sw, la, fa, oa),
                            local_preference(sw, lb, fb, ob)
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn pair_priority_vectors() {
        // Hand-computed from 2^32*MIN + 2*MAX + (G>D).
        assert_eq!(pair_priority(0, 0), 0);
        assert_eq!(pair_priority(1, 1), 4_294_967_298);
        assert_eq!(pair_priority(2, 1), 4_294_967_301);
        assert_eq!(pair_priority(1, 2), 4_294_967_300);
        assert_eq!(
            pair_priority(2_130_706_431, 2_130_706_431),
            9_151_314_442_783_293_438
        );
        assert_eq!(
            pair_priority(2_130_706_431, 1_694_498_815),
            7_277_816_997_797_167_103
        );
        assert_eq!(
            pair_priority(1_694_498_815, 2_130_706_431),
            7_277_816_997_797_167_102
        );
        assert_eq!(pair_priority(u32::MAX, 0), 8_589_934_591);
        assert_eq!(pair_priority(0, u32::MAX), 8_589_934_590);
        assert_eq!(pair_priority(u32::MAX, u32::MAX - 1), u64::MAX);
        assert_eq!(pair_priority(u32::MAX - 1, u32::MAX), u64::MAX - 1);
        // 2^64 + 2^32 - 2 does not fit: saturates.
        assert_eq!(pair_priority(u32::MAX, u32::MAX), u64::MAX);
        // RFC maximum 2^31-1 on both sides fits below 2^63.
        let m = (1u32 << 31) - 1;
        assert_eq!(pair_priority(m, m), (u64::from(m) << 32) + 2 * u64::from(m));
        assert!(pair_priority(m, m) < 1 << 63);
        // Role view.
        assert_eq!(pair_priority_for(5, 7, true), pair_priority(5, 7));
        assert_eq!(pair_priority_for(5, 7, false), pair_priority(7, 5));
    }

    fn reference_pair(g: u32, d: u32) -> u128 {
        let (g, d) = (u128::from(g), u128::from(d));
        (g.min(d) << 32) + 2 * g.max(d) + u128::from(g > d)
    }

    proptest! {
        #[test]
        fn pair_priority_matches_reference(g: u32, d: u32) {
            let want = reference_pair(g, d).min(u128::from(u64::MAX)) as u64;
            prop_assert_eq!(pair_priority(g, d), want);
            if g != d {
                let (a, b) = (pair_priority(g, d), pair_priority(d, g));
                if reference_pair(g, d) <= u128::from(u64::MAX) && reference_pair(d, g) <= u128::from(u64::MAX) {
                    prop_assert_eq!(a.abs_diff(b), 1);
                }
            }
        }

        #[test]
        fn pair_priority_orders_like_reference(a: (u32, u32), b: (u32, u32)) {
            let (ra, rb) = (reference_pair(a.0, a.1), reference_pair(b.0, b.1));
            if ra <= u128::from(u64::MAX) && rb <= u128::from(u64::MAX) {
                prop_assert_eq!(pair_priority(a.0, a.1).cmp(&pair_priority(b.0, b.1)), ra.cmp(&rb));
            }
        }
    }

    // ------------------------------------------------------------------
    // SDP: browser samples
    // ------------------------------------------------------------------

    struct Expect {
        line: &'static str,
        foundation: &'static str,
        component: u16,
        transport: Transport,
        priority: u32,
        address: &'static str,
        port: u16,
        kind: CandidateKind,
        raddr: Option<&'static str>,
        rport: Option<u16>,
        tcp_type: Option<TcpType>,
        generation: Option<u32>,
        ufrag: Option<&'static str>,
        network_id: Option<u32>,
        network_cost: Option<u32>,
        /// Re-emits byte for byte (after dropping `a=` and CRLF).
        exact: bool,
    }

    const E: Expect = Expect {
        line: "",
        foundation: "",
        component: 1,
        transport: Transport::Udp,
        priority: 0,
        address: "",
        port: 0,
        kind: CandidateKind::Host,
        raddr: None,
        rport: None,
        tcp_type: None,
        generation: None,
        ufrag: None,
        network_id: None,
        network_cost: None,
        exact: true,
    };

    const SAMPLES: &[Expect] = &[
        // Chrome (libwebrtc) host, IPv4.
        Expect {
            line: "candidate:1387637174 1 udp 2122260223 192.168.1.5 55012 typ host generation 0 ufrag EsAw network-id 1 network-cost 10",
            foundation: "1387637174",
            priority: 2_122_260_223,
            address: "192.168.1.5",
            port: 55012,
            generation: Some(0),
            ufrag: Some("EsAw"),
            network_id: Some(1),
            network_cost: Some(10),
            ..E
        },
        // Chrome host, IPv6, as an SDP line with a=.
        Expect {
            line: "a=candidate:2999745851 1 udp 2122129151 2001:db8::5 55013 typ host generation 0 ufrag EsAw network-id 2 network-cost 10\r\n",
            foundation: "2999745851",
            priority: 2_122_129_151,
            address: "2001:db8::5",
            port: 55013,
            generation: Some(0),
            ufrag: Some("EsAw"),
            network_id: Some(2),
            network_cost: Some(10),
            ..E
        },
        // Chrome srflx.
        Expect {
            line: "candidate:842163049 1 udp 1686052607 203.0.113.7 61765 typ srflx raddr 192.168.1.5 rport 55012 generation 0 ufrag EsAw network-id 1 network-cost 10",
            foundation: "842163049",
            priority: 1_686_052_607,
            address: "203.0.113.7",
            port: 61765,
            kind: CandidateKind::ServerReflexive,
            raddr: Some("192.168.1.5"),
            rport: Some(55012),
            generation: Some(0),
            ufrag: Some("EsAw"),
            network_id: Some(1),
            network_cost: Some(10),
            ..E
        },
        // Chrome relay.
        Expect {
            line: "candidate:3516154924 1 udp 41885439 198.51.100.20 50123 typ relay raddr 203.0.113.7 rport 61765 generation 0 ufrag EsAw network-id 1 network-cost 10",
            foundation: "3516154924",
            priority: 41_885_439,
            address: "198.51.100.20",
            port: 50123,
            kind: CandidateKind::Relayed,
            raddr: Some("203.0.113.7"),
            rport: Some(61765),
            generation: Some(0),
            ufrag: Some("EsAw"),
            network_id: Some(1),
            network_cost: Some(10),
            ..E
        },
        // Chrome mDNS host.
        Expect {
            line: "candidate:1560499547 1 udp 2113937151 2cf0b2c0-0842-4fe3-aaa0-4556a2dfbadc.local 33192 typ host generation 0 ufrag EsAw network-cost 999",
            foundation: "1560499547",
            priority: 2_113_937_151,
            address: "2cf0b2c0-0842-4fe3-aaa0-4556a2dfbadc.local",
            port: 33192,
            generation: Some(0),
            ufrag: Some("EsAw"),
            network_cost: Some(999),
            ..E
        },
        // Chrome srflx with the host address hidden behind mDNS.
        Expect {
            line: "candidate:842163049 1 udp 1677729535 186.50.9.10 52200 typ srflx raddr 0.0.0.0 rport 0 generation 0 network-cost 999",
            foundation: "842163049",
            priority: 1_677_729_535,
            address: "186.50.9.10",
            port: 52200,
            kind: CandidateKind::ServerReflexive,
            raddr: Some("0.0.0.0"),
            rport: Some(0),
            generation: Some(0),
            network_cost: Some(999),
            ..E
        },
        // Chrome TCP active.
        Expect {
            line: "candidate:473322822 1 tcp 1518280447 192.168.1.5 9 typ host tcptype active generation 0 ufrag EsAw network-id 1 network-cost 10",
            foundation: "473322822",
            transport: Transport::Tcp,
            priority: 1_518_280_447,
            address: "192.168.1.5",
            port: 9,
            tcp_type: Some(TcpType::Active),
            generation: Some(0),
            ufrag: Some("EsAw"),
            network_id: Some(1),
            network_cost: Some(10),
            ..E
        },
        // Firefox host (uppercase transport: re-emitted lowercase).
        Expect {
            line: "candidate:0 1 UDP 2122252543 192.168.1.5 55012 typ host",
            foundation: "0",
            priority: 2_122_252_543,
            address: "192.168.1.5",
            port: 55012,
            exact: false,
            ..E
        },
        // Firefox TCP active.
        Expect {
            line: "candidate:1 1 TCP 2105524479 192.168.1.5 9 typ host tcptype active",
            foundation: "1",
            transport: Transport::Tcp,
            priority: 2_105_524_479,
            address: "192.168.1.5",
            port: 9,
            tcp_type: Some(TcpType::Active),
            exact: false,
            ..E
        },
        // Firefox srflx.
        Expect {
            line: "candidate:2 1 UDP 1686052863 203.0.113.7 55012 typ srflx raddr 192.168.1.5 rport 55012",
            foundation: "2",
            priority: 1_686_052_863,
            address: "203.0.113.7",
            port: 55012,
            kind: CandidateKind::ServerReflexive,
            raddr: Some("192.168.1.5"),
            rport: Some(55012),
            exact: false,
            ..E
        },
        // Firefox relay (raddr is the mapped address).
        Expect {
            line: "candidate:3 1 UDP 92217087 198.51.100.20 53214 typ relay raddr 203.0.113.7 rport 53214",
            foundation: "3",
            priority: 92_217_087,
            address: "198.51.100.20",
            port: 53214,
            kind: CandidateKind::Relayed,
            raddr: Some("203.0.113.7"),
            rport: Some(53214),
            exact: false,
            ..E
        },
        // Firefox mDNS host inside an SDP.
        Expect {
            line: "a=candidate:0 1 UDP 2122252543 fc8e5fbc-11bb-446e-afa8-f0ec2dc006fe.local 49104 typ host",
            foundation: "0",
            priority: 2_122_252_543,
            address: "fc8e5fbc-11bb-446e-afa8-f0ec2dc006fe.local",
            port: 49104,
            exact: false,
            ..E
        },
        // Safari (WebKit's libwebrtc) mDNS host, no ufrag.
        Expect {
            line: "candidate:3105407419 1 udp 2113937151 9b36b8a2-0b33-4e5c-b6e7-e1a2c3d4e5f6.local 63294 typ host generation 0 network-cost 999",
            foundation: "3105407419",
            priority: 2_113_937_151,
            address: "9b36b8a2-0b33-4e5c-b6e7-e1a2c3d4e5f6.local",
            port: 63294,
            generation: Some(0),
            network_cost: Some(999),
            ..E
        },
        // Safari srflx, IPv6 RTCP component.
        Expect {
            line: "candidate:1028441702 2 udp 1685987070 2001:db8:1::99 62001 typ srflx raddr 2001:db8:1::5 rport 62001 generation 0 network-cost 999",
            foundation: "1028441702",
            component: 2,
            priority: 1_685_987_070,
            address: "2001:db8:1::99",
            port: 62001,
            kind: CandidateKind::ServerReflexive,
            raddr: Some("2001:db8:1::5"),
            rport: Some(62001),
            generation: Some(0),
            network_cost: Some(999),
            ..E
        },
    ];

    #[test]
    fn browser_samples_parse_and_reemit() {
        for s in SAMPLES {
            let a = CandidateAttribute::parse(s.line).unwrap_or_else(|e| panic!("{}: {e}", s.line));
            assert_eq!(a.foundation, s.foundation, "{}", s.line);
            assert_eq!(a.component.get(), s.component, "{}", s.line);
            assert_eq!(a.transport, s.transport, "{}", s.line);
            assert_eq!(a.priority, s.priority, "{}", s.line);
            assert_eq!(
                a.connection_address,
                ConnectionAddress::parse(s.address).unwrap(),
                "{}",
                s.line
            );
            assert_eq!(std::format!("{}", a.connection_address), s.address);
            assert_eq!(a.port, s.port, "{}", s.line);
            assert_eq!(a.kind, s.kind, "{}", s.line);
            assert_eq!(
                a.related_address.map(|r| std::format!("{r}")),
                s.raddr.map(String::from)
            );
            assert_eq!(a.related_port, s.rport, "{}", s.line);
            assert_eq!(a.tcp_type, s.tcp_type, "{}", s.line);
            assert_eq!(a.generation, s.generation, "{}", s.line);
            assert_eq!(a.ufrag, s.ufrag, "{}", s.line);
            assert_eq!(a.network_id, s.network_id, "{}", s.line);
            assert_eq!(a.network_cost, s.network_cost, "{}", s.line);
            assert!(a.extensions.is_empty());
            assert_eq!(a.validate(), Ok(()));

            let out = emit_string(&a);
            let bare = s.line.trim_start_matches("a=").trim_end_matches("\r\n");
            if s.exact {
                assert_eq!(out, bare);
            } else {
                assert!(out.eq_ignore_ascii_case(bare), "{out} vs {bare}");
            }
            assert_eq!(CandidateAttribute::parse(&out), Ok(a));
            assert_eq!(std::format!("{a}"), out);

            let is_name = a.connection_address.ip().is_none();
            assert_eq!(a.connection_address.is_mdns(), is_name);
            match a.to_candidate() {
                Ok(c) => {
                    assert!(!is_name);
                    assert_eq!(c.address.port(), s.port);
                    assert_eq!(c.foundation.as_str(), s.foundation);
                    let back = c.to_attribute();
                    assert_eq!(back.kind, a.kind);
                    assert_eq!(back.related_address, a.related_address);
                    assert_eq!(Candidate::try_from(&back), Ok(c));
                }
                Err(e) => {
                    assert!(is_name);
                    assert_eq!(e, ToCandidateError::UnresolvedName);
                    let resolved = a.with_address(v4(192, 168, 1, 5)).to_candidate().unwrap();
                    assert_eq!(
                        resolved.address,
                        SocketAddr::new(v4(192, 168, 1, 5), s.port)
                    );
                }
            }
        }
    }

    #[test]
    fn accepted_prefixes() {
        let want = CandidateAttribute::parse("candidate:1 1 udp 5 192.0.2.1 9 typ host").unwrap();
        for line in [
            "a=candidate:1 1 udp 5 192.0.2.1 9 typ host",
            "1 1 udp 5 192.0.2.1 9 typ host",
            "candidate:1 1 udp 5 192.0.2.1 9 typ host\n",
            "candidate:1  1 udp 5 192.0.2.1 9 typ host ",
        ] {
            assert_eq!(CandidateAttribute::parse(line), Ok(want), "{line}");
        }
        assert_eq!(
            CandidateAttribute::parse("a=1 1 udp 5 192.0.2.1 9 typ host"),
            Err(CandidateAttributeError::Prefix)
        );
    }

    #[test]
    fn unknown_extensions_are_kept() {
        let line = "candidate:1 1 udp 5 192.0.2.1 9 typ host foo bar generation 3 x-y 7 ufrag abc";
        let a = CandidateAttribute::parse(line).unwrap();
        assert_eq!(a.generation, Some(3));
        assert_eq!(a.ufrag, Some("abc"));
        let ext: Vec<_> = a.extensions.iter().collect();
        assert_eq!(ext, [("foo", "bar"), ("x-y", "7")]);
        assert_eq!(a.extensions.get("x-y"), Some("7"));
        assert_eq!(a.extensions.get("generation"), None);
        let out = emit_string(&a);
        assert_eq!(
            out,
            "candidate:1 1 udp 5 192.0.2.1 9 typ host generation 3 ufrag abc foo bar x-y 7"
        );
        assert_eq!(CandidateAttribute::parse(&out), Ok(a));
    }

    #[test]
    fn rejections_name_the_field() {
        use CandidateAttributeError as X;
        let table: &[(&str, X)] = &[
            ("", X::Foundation),
            ("candidate:", X::Foundation),
            ("candidate:a-b 1 udp 1 192.0.2.1 1 typ host", X::Foundation),
            (
                "candidate:123456789012345678901234567890123 1 udp 1 192.0.2.1 1 typ host",
                X::Foundation,
            ),
            ("candidate:1", X::ComponentId),
            ("candidate:1 0 udp 1 192.0.2.1 1 typ host", X::ComponentId),
            ("candidate:1 +1 udp 1 192.0.2.1 1 typ host", X::ComponentId),
            (
                "candidate:1 1000 udp 1 192.0.2.1 1 typ host",
                X::ComponentId,
            ),
            ("candidate:1 1 sctp 1 192.0.2.1 1 typ host", X::Transport),
            ("candidate:1 1 udp", X::Priority),
            (
                "candidate:1 1 udp 4294967296 192.0.2.1 1 typ host",
                X::Priority,
            ),
            ("candidate:1 1 udp -1 192.0.2.1 1 typ host", X::Priority),
            (
                "candidate:1 1 udp 1 192.0.2.256 1 typ host",
                X::ConnectionAddress,
            ),
            ("candidate:1 1 udp 1 [::1] 1 typ host", X::ConnectionAddress),
            (
                "candidate:1 1 udp 1 a..local 1 typ host",
                X::ConnectionAddress,
            ),
            ("candidate:1 1 udp 1 192.0.2.1", X::Port),
            ("candidate:1 1 udp 1 192.0.2.1 65536 typ host", X::Port),
            ("candidate:1 1 udp 1 192.0.2.1 1", X::Typ),
            ("candidate:1 1 udp 1 192.0.2.1 1 type host", X::Typ),
            ("candidate:1 1 udp 1 192.0.2.1 1 typ", X::CandidateType),
            (
                "candidate:1 1 udp 1 192.0.2.1 1 typ relayed",
                X::CandidateType,
            ),
            (
                "candidate:1 1 udp 1 192.0.2.1 1 typ srflx raddr x..y rport 1",
                X::RelatedAddress,
            ),
            (
                "candidate:1 1 udp 1 192.0.2.1 1 typ srflx raddr 192.0.2.2",
                X::RelatedPort,
            ),
            (
                "candidate:1 1 udp 1 192.0.2.1 1 typ srflx rport 5",
                X::RelatedAddress,
            ),
            (
                "candidate:1 1 udp 1 192.0.2.1 1 typ srflx raddr 192.0.2.2 rport x",
                X::RelatedPort,
            ),
            (
                "candidate:1 1 tcp 1 192.0.2.1 9 typ host tcptype sideways",
                X::TcpType,
            ),
            (
                "candidate:1 1 udp 1 192.0.2.1 1 typ host generation x",
                X::Generation,
            ),
            (
                "candidate:1 1 udp 1 192.0.2.1 1 typ host ufrag a-b",
                X::Ufrag,
            ),
            (
                "candidate:1 1 udp 1 192.0.2.1 1 typ host network-id",
                X::NetworkId,
            ),
            (
                "candidate:1 1 udp 1 192.0.2.1 1 typ host network-cost 1.5",
                X::NetworkCost,
            ),
            (
                "candidate:1 1 udp 1 192.0.2.1 1 typ host a(b) c",
                X::ExtensionName,
            ),
            (
                "candidate:1 1 udp 1 192.0.2.1 1 typ host foo",
                X::ExtensionValue,
            ),
            (
                "candidate:1 1 udp 1 192.0.2.1 1 typ host generation 0 generation 1",
                X::DuplicateExtension,
            ),
            (
                "candidate:1 1 udp 1 192.0.2.1 1 typ host\tfoo bar",
                X::InvalidCharacter,
            ),
            (
                "candidate:1 1 udp 1 h\u{e9}.local 1 typ host",
                X::InvalidCharacter,
            ),
        ];
        for (line, want) in table {
            assert_eq!(CandidateAttribute::parse(line), Err(*want), "{line:?}");
        }
    }

    #[test]
    fn emit_reports_required_size() {
        let a = CandidateAttribute::parse(SAMPLES[2].line).unwrap();
        let need = a.buffer_len();
        let mut small = [0u8; 10];
        assert_eq!(a.emit(&mut small), Err(InsufficientSize { required: need }));
        let mut exact = std::vec![0u8; need];
        assert_eq!(a.emit(&mut exact), Ok(need));
    }

    #[test]
    fn validate_catches_hand_made_fields() {
        let mut a = CandidateAttribute::parse(SAMPLES[0].line).unwrap();
        a.foundation = "has space";
        assert_eq!(a.validate(), Err(CandidateAttributeError::Foundation));
        let mut a = CandidateAttribute::parse(SAMPLES[0].line).unwrap();
        a.related_port = Some(3);
        assert_eq!(a.validate(), Err(CandidateAttributeError::RelatedAddress));
        a.connection_address = ConnectionAddress::Fqdn("bad name");
        assert_eq!(
            a.validate(),
            Err(CandidateAttributeError::ConnectionAddress)
        );
    }

    #[test]
    fn local_candidate_builder() {
        let prefs = TypePreferences::RFC8445;
        let lp = local_preference(true, true, AddressFamily::Ipv4, 0);
        let host = Candidate::local(
            &LocalCandidate {
                kind: CandidateKind::Host,
                transport: Transport::Udp,
                tcp_type: None,
                address: SocketAddr::new(v4(192, 168, 1, 5), 5000),
                base: v4(192, 168, 1, 5),
                related_address: None,
                server: None,
                component: ComponentId::RTP,
                local_preference: lp,
            },
            &prefs,
        );
        assert_eq!(host.priority, (126 << 24) + (65534 << 8) + 255);
        assert_eq!(host.foundation.as_str(), "13026095866797557710");
        let a = host.to_attribute();
        assert_eq!(
            emit_string(&a),
            "candidate:13026095866797557710 1 udp 2130706175 192.168.1.5 5000 typ host"
        );
    }

    // ------------------------------------------------------------------
    // Properties
    // ------------------------------------------------------------------

    fn arb_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
            any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o))),
        ]
    }

    fn arb_candidate() -> impl Strategy<Value = Candidate> {
        (
            "[A-Za-z0-9+/]{1,32}",
            1u16..=256,
            prop_oneof![Just(Transport::Udp), Just(Transport::Tcp)],
            any::<u32>(),
            (arb_ip(), any::<u16>()),
            prop::sample::select(CandidateKind::ALL.to_vec()),
            prop::option::of((arb_ip(), any::<u16>())),
            prop::option::of(prop::sample::select(std::vec![
                TcpType::Active,
                TcpType::Passive,
                TcpType::SimultaneousOpen,
            ])),
        )
            .prop_map(|(f, c, t, p, (ip, port), k, rel, tt)| Candidate {
                foundation: Foundation::new(&f).unwrap(),
                component: ComponentId::new(c).unwrap(),
                transport: t,
                priority: p,
                address: SocketAddr::new(ip, port),
                kind: k,
                related_address: rel.map(|(i, p)| SocketAddr::new(i, p)),
                tcp_type: tt,
            })
    }

    const VALID_LINES: &[&str] = &[
        "candidate:1387637174 1 udp 2122260223 192.168.1.5 55012 typ host generation 0 ufrag EsAw network-id 1 network-cost 10",
        "candidate:842163049 1 udp 1686052607 203.0.113.7 61765 typ srflx raddr 192.168.1.5 rport 55012 generation 0 ufrag EsAw network-id 1 network-cost 10",
        "a=candidate:1 1 TCP 2105524479 fc8e5fbc-11bb-446e-afa8-f0ec2dc006fe.local 9 typ host tcptype active foo bar",
        "candidate:3 2 UDP 92217087 2001:db8::20 53214 typ relay raddr 203.0.113.7 rport 53214",
    ];

    proptest! {
        #[test]
        fn candidate_emit_parse_round_trip(c in arb_candidate()) {
            let a = c.to_attribute();
            prop_assert_eq!(a.validate(), Ok(()));
            let mut buf = [0u8; 512];
            let n = a.emit(&mut buf).unwrap();
            let s = core::str::from_utf8(&buf[..n]).unwrap();
            let p = CandidateAttribute::parse(s).unwrap();
            prop_assert_eq!(p, a);
            prop_assert_eq!(p.to_candidate(), Ok(c));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,200}") {
            let _ = CandidateAttribute::parse(&s);
        }

        #[test]
        fn parse_never_panics_on_tokens(s in "(candidate:|a=candidate:)?([a-z0-9.:+/-]{0,12} ){0,20}") {
            if let Ok(a) = CandidateAttribute::parse(&s) {
                let out = std::format!("{a}");
                prop_assert_eq!(CandidateAttribute::parse(&out), Ok(a));
            }
        }

        #[test]
        fn mutated_lines_never_panic_and_round_trip(
            idx in 0..VALID_LINES.len(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
        ) {
            let mut bytes = VALID_LINES[idx].as_bytes().to_vec();
            for (at, byte, op) in edits {
                let i = at.index(bytes.len() + 1);
                match op {
                    0 if i < bytes.len() => bytes[i] = byte,
                    1 => bytes.insert(i, byte),
                    _ if i < bytes.len() => { bytes.remove(i); }
                    _ => {}
                }
            }
            if let Ok(s) = core::str::from_utf8(&bytes)
                && let Ok(a) = CandidateAttribute::parse(s)
            {
                prop_assert_eq!(a.validate(), Ok(()));
                let out = std::format!("{a}");
                prop_assert_eq!(CandidateAttribute::parse(&out), Ok(a));
            }
        }
    }
}
