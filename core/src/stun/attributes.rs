//! Typed STUN attributes (RFC 8489 section 14, RFC 8445 section 16.1).
//!
//! [`Attribute`] is used in both directions: [`Attribute::parse`] reads one
//! from a [`RawAttribute`] without copying (text and byte strings borrow the
//! message), and [`super::MessageBuilder::add`] writes one.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::MAGIC_COOKIE;
use super::message::{AttributeError, TransactionId};

/// A 16-bit attribute type (RFC 8489 section 18.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AttributeType(pub u16);

impl AttributeType {
    /// MAPPED-ADDRESS (RFC 8489).
    pub const MAPPED_ADDRESS: Self = Self(0x0001);
    /// USERNAME (RFC 8489).
    pub const USERNAME: Self = Self(0x0006);
    /// MESSAGE-INTEGRITY (RFC 8489).
    pub const MESSAGE_INTEGRITY: Self = Self(0x0008);
    /// ERROR-CODE (RFC 8489).
    pub const ERROR_CODE: Self = Self(0x0009);
    /// UNKNOWN-ATTRIBUTES (RFC 8489).
    pub const UNKNOWN_ATTRIBUTES: Self = Self(0x000a);
    /// REALM (RFC 8489).
    pub const REALM: Self = Self(0x0014);
    /// NONCE (RFC 8489).
    pub const NONCE: Self = Self(0x0015);
    /// MESSAGE-INTEGRITY-SHA256 (RFC 8489).
    pub const MESSAGE_INTEGRITY_SHA256: Self = Self(0x001c);
    /// PASSWORD-ALGORITHM (RFC 8489).
    pub const PASSWORD_ALGORITHM: Self = Self(0x001d);
    /// USERHASH (RFC 8489).
    pub const USERHASH: Self = Self(0x001e);
    /// XOR-MAPPED-ADDRESS (RFC 8489).
    pub const XOR_MAPPED_ADDRESS: Self = Self(0x0020);
    /// PRIORITY (RFC 8445).
    pub const PRIORITY: Self = Self(0x0024);
    /// USE-CANDIDATE (RFC 8445).
    pub const USE_CANDIDATE: Self = Self(0x0025);
    /// PASSWORD-ALGORITHMS (RFC 8489).
    pub const PASSWORD_ALGORITHMS: Self = Self(0x8002);
    /// ALTERNATE-DOMAIN (RFC 8489).
    pub const ALTERNATE_DOMAIN: Self = Self(0x8003);
    /// SOFTWARE (RFC 8489).
    pub const SOFTWARE: Self = Self(0x8022);
    /// ALTERNATE-SERVER (RFC 8489).
    pub const ALTERNATE_SERVER: Self = Self(0x8023);
    /// FINGERPRINT (RFC 8489).
    pub const FINGERPRINT: Self = Self(0x8028);
    /// ICE-CONTROLLED (RFC 8445).
    pub const ICE_CONTROLLED: Self = Self(0x8029);
    /// ICE-CONTROLLING (RFC 8445).
    pub const ICE_CONTROLLING: Self = Self(0x802a);

    /// Types below 0x8000 are comprehension-required: a receiver that does
    /// not understand one must reject the message (RFC 8489 section 14).
    pub const fn is_comprehension_required(self) -> bool {
        self.0 < 0x8000
    }

    /// Whether this codec understands the type (it has an [`Attribute`]
    /// variant other than `Other`).
    pub const fn is_known(self) -> bool {
        matches!(
            self.0,
            0x0001
                | 0x0006
                | 0x0008
                | 0x0009
                | 0x000a
                | 0x0014
                | 0x0015
                | 0x001c
                | 0x001d
                | 0x001e
                | 0x0020
                | 0x0024
                | 0x0025
                | 0x8002
                | 0x8003
                | 0x8022
                | 0x8023
                | 0x8028
                | 0x8029
                | 0x802a
        )
    }
}

impl fmt::Display for AttributeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:04x}", self.0)
    }
}

/// One attribute as it sits on the wire: type, value without padding, and
/// the offset of its 4-byte header from the start of the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RawAttribute<'a> {
    /// The attribute type.
    pub typ: AttributeType,
    /// The value, without padding.
    pub value: &'a [u8],
    /// Offset of the attribute header from the start of the message.
    pub offset: usize,
}

/// Longest USERNAME value in bytes, sent or received.
///
/// RFC 5389 allowed "less than 513 bytes" and RFC 8489 section 14.3 sends
/// "fewer than 509", but ICE's USERNAME is `ufrag:ufrag` and RFC 8839 allows
/// 256-character ufrags, which makes 513. Real deployments broke on short
/// ufrag buffers, so this codec takes and writes up to 513 bytes.
pub const MAX_USERNAME_LEN: usize = 513;
/// Longest REALM, NONCE, SOFTWARE, ALTERNATE-DOMAIN and error reason
/// accepted in bytes (RFC 8489: "as long as 763 bytes when decoding").
pub const MAX_TEXT_LEN: usize = 763;
/// REALM, NONCE, SOFTWARE and error reasons are sent with fewer than this
/// many characters (RFC 8489 sections 14.8, 14.9, 14.10, 14.14).
pub const MAX_TEXT_CHARS: usize = 128;

/// ERROR-CODE (RFC 8489 section 14.8): a code 300..=699 and a reason phrase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ErrorCode<'a> {
    /// The numeric code, class * 100 + number (300..=699).
    pub code: u16,
    /// The UTF-8 reason phrase.
    pub reason: &'a str,
}

impl<'a> ErrorCode<'a> {
    /// 300 Try Alternate.
    pub const TRY_ALTERNATE: u16 = 300;
    /// 400 Bad Request.
    pub const BAD_REQUEST: u16 = 400;
    /// 401 Unauthenticated.
    pub const UNAUTHENTICATED: u16 = 401;
    /// 420 Unknown Attribute.
    pub const UNKNOWN_ATTRIBUTE: u16 = 420;
    /// 438 Stale Nonce.
    pub const STALE_NONCE: u16 = 438;
    /// 487 Role Conflict (RFC 8445).
    pub const ROLE_CONFLICT: u16 = 487;
    /// 500 Server Error.
    pub const SERVER_ERROR: u16 = 500;

    /// An error code with its reason phrase.
    pub const fn new(code: u16, reason: &'a str) -> Self {
        ErrorCode { code, reason }
    }
}

/// A password algorithm (RFC 8489 section 14.11/14.12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PasswordAlgorithm<'a> {
    /// 0x0001 MD5, 0x0002 SHA-256.
    pub algorithm: u16,
    /// Algorithm parameters (empty for MD5 and SHA-256).
    pub parameters: &'a [u8],
}

impl PasswordAlgorithm<'_> {
    /// MD5 (the classic long-term key).
    pub const MD5: u16 = 0x0001;
    /// SHA-256.
    pub const SHA256: u16 = 0x0002;

    fn wire_len(&self) -> usize {
        4 + pad4(self.parameters.len())
    }
}

/// A list carried by an attribute: either read from the wire or given by
/// the caller for writing. Both compare equal when they hold the same items.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
enum List<'a, T> {
    Wire(&'a [u8]),
    Items(&'a [T]),
}

/// UNKNOWN-ATTRIBUTES (RFC 8489 section 14.9): the types a server did not
/// understand, sent back with a 420 error.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct UnknownAttributes<'a>(List<'a, AttributeType>);

impl<'a> UnknownAttributes<'a> {
    /// The attribute to send, listing `types`.
    pub const fn new(types: &'a [AttributeType]) -> Self {
        UnknownAttributes(List::Items(types))
    }

    /// The listed attribute types.
    pub fn iter(&self) -> impl Iterator<Item = AttributeType> + 'a {
        let (wire, items): (&'a [u8], &'a [AttributeType]) = match self.0 {
            List::Wire(w) => (w, &[]),
            List::Items(i) => (&[], i),
        };
        wire.chunks_exact(2)
            .map(|c| AttributeType(u16::from_be_bytes([c[0], c[1]])))
            .chain(items.iter().copied())
    }

    fn wire_len(&self) -> usize {
        match self.0 {
            List::Wire(w) => w.len(),
            List::Items(i) => 2 * i.len(),
        }
    }
}

impl PartialEq for UnknownAttributes<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for UnknownAttributes<'_> {}

/// PASSWORD-ALGORITHMS (RFC 8489 section 14.11): the algorithms a server offers.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PasswordAlgorithms<'a>(List<'a, PasswordAlgorithm<'a>>);

impl<'a> PasswordAlgorithms<'a> {
    /// The attribute to send, listing `algorithms`.
    pub const fn new(algorithms: &'a [PasswordAlgorithm<'a>]) -> Self {
        PasswordAlgorithms(List::Items(algorithms))
    }

    /// The listed algorithms. A parsed list was validated by
    /// [`Attribute::parse`], so iteration yields every entry.
    pub fn iter(&self) -> impl Iterator<Item = PasswordAlgorithm<'a>> + 'a {
        let (wire, items): (&'a [u8], &'a [PasswordAlgorithm<'a>]) = match self.0 {
            List::Wire(w) => (w, &[]),
            List::Items(i) => (&[], i),
        };
        WireAlgorithms { rest: wire }.chain(items.iter().copied())
    }

    fn wire_len(&self) -> usize {
        match self.0 {
            List::Wire(w) => w.len(),
            List::Items(i) => i.iter().map(PasswordAlgorithm::wire_len).sum(),
        }
    }
}

impl PartialEq for PasswordAlgorithms<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for PasswordAlgorithms<'_> {}

struct WireAlgorithms<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for WireAlgorithms<'a> {
    type Item = PasswordAlgorithm<'a>;
    fn next(&mut self) -> Option<Self::Item> {
        let (algorithm, parameters, rest) = split_algorithm(self.rest)?;
        self.rest = rest;
        Some(PasswordAlgorithm {
            algorithm,
            parameters,
        })
    }
}

/// One algorithm entry off the front of `b`: (algorithm, parameters, rest).
fn split_algorithm(b: &[u8]) -> Option<(u16, &[u8], &[u8])> {
    let &[a0, a1, l0, l1, ..] = b else {
        return None;
    };
    let len = usize::from(u16::from_be_bytes([l0, l1]));
    let parameters = b.get(4..4 + len)?;
    let rest = b.get(4 + pad4(len)..)?;
    Some((u16::from_be_bytes([a0, a1]), parameters, rest))
}

/// A typed STUN attribute.
///
/// Text attributes borrow the message and are checked to be UTF-8 within the
/// RFC's length limits; addresses are decoded (XOR-MAPPED-ADDRESS un-xored).
/// `MessageIntegrity`, `MessageIntegritySha256` and `Fingerprint` are read
/// here but written only by the builder's dedicated methods, which compute them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Attribute<'a> {
    /// MAPPED-ADDRESS: the reflexive address, in the clear (RFC 3489 servers).
    MappedAddress(SocketAddr),
    /// XOR-MAPPED-ADDRESS: the reflexive transport address.
    XorMappedAddress(SocketAddr),
    /// USERNAME (up to 513 bytes; ICE: `remote-ufrag:local-ufrag`).
    Username(&'a str),
    /// MESSAGE-INTEGRITY: HMAC-SHA1 (20 bytes).
    MessageIntegrity(&'a [u8; 20]),
    /// MESSAGE-INTEGRITY-SHA256: HMAC-SHA256, possibly truncated (16..=32 bytes).
    MessageIntegritySha256(&'a [u8]),
    /// FINGERPRINT: CRC-32 of the message xor 0x5354554e.
    Fingerprint(u32),
    /// ERROR-CODE.
    ErrorCode(ErrorCode<'a>),
    /// UNKNOWN-ATTRIBUTES.
    UnknownAttributes(UnknownAttributes<'a>),
    /// REALM (long-term credentials).
    Realm(&'a str),
    /// NONCE (long-term credentials).
    Nonce(&'a str),
    /// PASSWORD-ALGORITHMS.
    PasswordAlgorithms(PasswordAlgorithms<'a>),
    /// PASSWORD-ALGORITHM.
    PasswordAlgorithm(PasswordAlgorithm<'a>),
    /// USERHASH: SHA-256 of `username:realm`.
    Userhash(&'a [u8; 32]),
    /// SOFTWARE: the agent's name and version.
    Software(&'a str),
    /// ALTERNATE-SERVER.
    AlternateServer(SocketAddr),
    /// ALTERNATE-DOMAIN.
    AlternateDomain(&'a str),
    /// PRIORITY: the priority a peer-reflexive candidate would get (RFC 8445).
    Priority(u32),
    /// USE-CANDIDATE: the controlling agent nominates this pair (RFC 8445).
    UseCandidate,
    /// ICE-CONTROLLED with the sender's tie-breaker (RFC 8445).
    IceControlled(u64),
    /// ICE-CONTROLLING with the sender's tie-breaker (RFC 8445).
    IceControlling(u64),
    /// Any other attribute, kept as raw bytes.
    Other {
        /// Its type.
        typ: AttributeType,
        /// Its value, without padding.
        value: &'a [u8],
    },
}

impl<'a> Attribute<'a> {
    /// Decode a raw attribute. `transaction_id` is needed to un-xor IPv6
    /// XOR-MAPPED-ADDRESS values. Never panics; unknown types come back as
    /// [`Attribute::Other`].
    pub fn parse(
        raw: RawAttribute<'a>,
        transaction_id: &TransactionId,
    ) -> Result<Self, AttributeError> {
        let t = raw.typ;
        let v = raw.value;
        Ok(match t {
            AttributeType::MAPPED_ADDRESS => Attribute::MappedAddress(parse_address(t, v, None)?),
            AttributeType::XOR_MAPPED_ADDRESS => {
                Attribute::XorMappedAddress(parse_address(t, v, Some(transaction_id))?)
            }
            AttributeType::ALTERNATE_SERVER => {
                Attribute::AlternateServer(parse_address(t, v, None)?)
            }
            AttributeType::USERNAME => Attribute::Username(parse_text(t, v, MAX_USERNAME_LEN)?),
            AttributeType::REALM => Attribute::Realm(parse_text(t, v, MAX_TEXT_LEN)?),
            AttributeType::NONCE => Attribute::Nonce(parse_text(t, v, MAX_TEXT_LEN)?),
            AttributeType::SOFTWARE => Attribute::Software(parse_text(t, v, MAX_TEXT_LEN)?),
            AttributeType::ALTERNATE_DOMAIN => {
                Attribute::AlternateDomain(parse_text(t, v, MAX_TEXT_LEN)?)
            }
            AttributeType::MESSAGE_INTEGRITY => {
                Attribute::MessageIntegrity(v.try_into().map_err(|_| AttributeError::BadLength(t))?)
            }
            AttributeType::MESSAGE_INTEGRITY_SHA256 => {
                if !(16..=32).contains(&v.len()) || !v.len().is_multiple_of(4) {
                    return Err(AttributeError::BadLength(t));
                }
                Attribute::MessageIntegritySha256(v)
            }
            AttributeType::FINGERPRINT => Attribute::Fingerprint(u32::from_be_bytes(fixed(t, v)?)),
            AttributeType::PRIORITY => Attribute::Priority(u32::from_be_bytes(fixed(t, v)?)),
            AttributeType::ICE_CONTROLLED => {
                Attribute::IceControlled(u64::from_be_bytes(fixed(t, v)?))
            }
            AttributeType::ICE_CONTROLLING => {
                Attribute::IceControlling(u64::from_be_bytes(fixed(t, v)?))
            }
            AttributeType::USE_CANDIDATE => {
                if !v.is_empty() {
                    return Err(AttributeError::BadLength(t));
                }
                Attribute::UseCandidate
            }
            AttributeType::USERHASH => {
                Attribute::Userhash(v.try_into().map_err(|_| AttributeError::BadLength(t))?)
            }
            AttributeType::ERROR_CODE => {
                let &[_, _, class, number, ref reason @ ..] = v else {
                    return Err(AttributeError::BadLength(t));
                };
                let class = class & 0x07;
                if !(3..=6).contains(&class) || number > 99 {
                    return Err(AttributeError::BadErrorCode);
                }
                Attribute::ErrorCode(ErrorCode {
                    code: u16::from(class) * 100 + u16::from(number),
                    reason: parse_text(t, reason, MAX_TEXT_LEN)?,
                })
            }
            AttributeType::UNKNOWN_ATTRIBUTES => {
                if !v.len().is_multiple_of(2) {
                    return Err(AttributeError::BadLength(t));
                }
                Attribute::UnknownAttributes(UnknownAttributes(List::Wire(v)))
            }
            AttributeType::PASSWORD_ALGORITHM => {
                let Some((algorithm, parameters, rest)) = split_algorithm(v) else {
                    return Err(AttributeError::BadLength(t));
                };
                if !rest.is_empty() {
                    return Err(AttributeError::BadLength(t));
                }
                Attribute::PasswordAlgorithm(PasswordAlgorithm {
                    algorithm,
                    parameters,
                })
            }
            AttributeType::PASSWORD_ALGORITHMS => {
                let mut rest = v;
                while !rest.is_empty() {
                    let Some((_, _, r)) = split_algorithm(rest) else {
                        return Err(AttributeError::BadLength(t));
                    };
                    rest = r;
                }
                Attribute::PasswordAlgorithms(PasswordAlgorithms(List::Wire(v)))
            }
            typ => Attribute::Other { typ, value: v },
        })
    }

    /// The attribute's type.
    pub fn typ(&self) -> AttributeType {
        match self {
            Attribute::MappedAddress(_) => AttributeType::MAPPED_ADDRESS,
            Attribute::XorMappedAddress(_) => AttributeType::XOR_MAPPED_ADDRESS,
            Attribute::Username(_) => AttributeType::USERNAME,
            Attribute::MessageIntegrity(_) => AttributeType::MESSAGE_INTEGRITY,
            Attribute::MessageIntegritySha256(_) => AttributeType::MESSAGE_INTEGRITY_SHA256,
            Attribute::Fingerprint(_) => AttributeType::FINGERPRINT,
            Attribute::ErrorCode(_) => AttributeType::ERROR_CODE,
            Attribute::UnknownAttributes(_) => AttributeType::UNKNOWN_ATTRIBUTES,
            Attribute::Realm(_) => AttributeType::REALM,
            Attribute::Nonce(_) => AttributeType::NONCE,
            Attribute::PasswordAlgorithms(_) => AttributeType::PASSWORD_ALGORITHMS,
            Attribute::PasswordAlgorithm(_) => AttributeType::PASSWORD_ALGORITHM,
            Attribute::Userhash(_) => AttributeType::USERHASH,
            Attribute::Software(_) => AttributeType::SOFTWARE,
            Attribute::AlternateServer(_) => AttributeType::ALTERNATE_SERVER,
            Attribute::AlternateDomain(_) => AttributeType::ALTERNATE_DOMAIN,
            Attribute::Priority(_) => AttributeType::PRIORITY,
            Attribute::UseCandidate => AttributeType::USE_CANDIDATE,
            Attribute::IceControlled(_) => AttributeType::ICE_CONTROLLED,
            Attribute::IceControlling(_) => AttributeType::ICE_CONTROLLING,
            Attribute::Other { typ, .. } => *typ,
        }
    }

    /// Length of the value on the wire, without padding.
    pub fn value_len(&self) -> usize {
        match self {
            Attribute::MappedAddress(a)
            | Attribute::XorMappedAddress(a)
            | Attribute::AlternateServer(a) => {
                if a.is_ipv4() {
                    8
                } else {
                    20
                }
            }
            Attribute::Username(s)
            | Attribute::Realm(s)
            | Attribute::Nonce(s)
            | Attribute::Software(s)
            | Attribute::AlternateDomain(s) => s.len(),
            Attribute::MessageIntegrity(_) => 20,
            Attribute::MessageIntegritySha256(m) => m.len(),
            Attribute::Fingerprint(_) | Attribute::Priority(_) => 4,
            Attribute::ErrorCode(e) => 4 + e.reason.len(),
            Attribute::UnknownAttributes(u) => u.wire_len(),
            Attribute::PasswordAlgorithms(p) => p.wire_len(),
            Attribute::PasswordAlgorithm(p) => p.wire_len(),
            Attribute::Userhash(_) => 32,
            Attribute::UseCandidate => 0,
            Attribute::IceControlled(_) | Attribute::IceControlling(_) => 8,
            Attribute::Other { value, .. } => value.len(),
        }
    }

    /// Check the value against the RFC's limits before it is written.
    pub(crate) fn check_value(&self) -> Result<(), AttributeError> {
        let t = self.typ();
        match self {
            Attribute::Username(s) if s.len() > MAX_USERNAME_LEN => Err(AttributeError::TooLong(t)),
            Attribute::Realm(s) | Attribute::Nonce(s) | Attribute::Software(s)
                if s.len() > MAX_TEXT_LEN || s.chars().count() >= MAX_TEXT_CHARS =>
            {
                Err(AttributeError::TooLong(t))
            }
            Attribute::AlternateDomain(s) if s.len() > MAX_TEXT_LEN => {
                Err(AttributeError::TooLong(t))
            }
            Attribute::ErrorCode(e)
                if e.reason.len() > MAX_TEXT_LEN || e.reason.chars().count() >= MAX_TEXT_CHARS =>
            {
                Err(AttributeError::TooLong(t))
            }
            Attribute::ErrorCode(e) if !(300..=699).contains(&e.code) => {
                Err(AttributeError::BadErrorCode)
            }
            Attribute::MessageIntegritySha256(m)
                if !(16..=32).contains(&m.len()) || !m.len().is_multiple_of(4) =>
            {
                Err(AttributeError::BadLength(t))
            }
            Attribute::PasswordAlgorithm(p) if p.parameters.len() > usize::from(u16::MAX) => {
                Err(AttributeError::TooLong(t))
            }
            _ if self.value_len() > usize::from(u16::MAX) => Err(AttributeError::TooLong(t)),
            _ => Ok(()),
        }
    }

    /// Write the value (without padding) into `out`, which is exactly
    /// [`Attribute::value_len`] bytes long.
    pub(crate) fn write_value(&self, out: &mut [u8], transaction_id: &TransactionId) {
        match self {
            Attribute::MappedAddress(a) | Attribute::AlternateServer(a) => {
                write_address(out, *a, None)
            }
            Attribute::XorMappedAddress(a) => write_address(out, *a, Some(transaction_id)),
            Attribute::Username(s)
            | Attribute::Realm(s)
            | Attribute::Nonce(s)
            | Attribute::Software(s)
            | Attribute::AlternateDomain(s) => out.copy_from_slice(s.as_bytes()),
            Attribute::MessageIntegrity(m) => out.copy_from_slice(&m[..]),
            Attribute::MessageIntegritySha256(m) => out.copy_from_slice(m),
            Attribute::Userhash(h) => out.copy_from_slice(&h[..]),
            Attribute::Fingerprint(v) | Attribute::Priority(v) => {
                out.copy_from_slice(&v.to_be_bytes())
            }
            Attribute::IceControlled(v) | Attribute::IceControlling(v) => {
                out.copy_from_slice(&v.to_be_bytes())
            }
            Attribute::UseCandidate => {}
            Attribute::ErrorCode(e) => {
                // code is 300..=699 (checked), so both casts are lossless.
                out[..4].copy_from_slice(&[0, 0, (e.code / 100) as u8, (e.code % 100) as u8]);
                out[4..].copy_from_slice(e.reason.as_bytes());
            }
            Attribute::UnknownAttributes(u) => {
                for (chunk, typ) in out.chunks_exact_mut(2).zip(u.iter()) {
                    chunk.copy_from_slice(&typ.0.to_be_bytes());
                }
            }
            Attribute::PasswordAlgorithm(p) => write_algorithm(out, p),
            Attribute::PasswordAlgorithms(list) => {
                let mut at = 0;
                for p in list.iter() {
                    let n = p.wire_len();
                    write_algorithm(&mut out[at..at + n], &p);
                    at += n;
                }
            }
            Attribute::Other { value, .. } => out.copy_from_slice(value),
        }
    }
}

fn write_algorithm(out: &mut [u8], p: &PasswordAlgorithm<'_>) {
    out[..2].copy_from_slice(&p.algorithm.to_be_bytes());
    // Length checked against u16::MAX in `check_value`.
    out[2..4].copy_from_slice(&(p.parameters.len() as u16).to_be_bytes());
    let end = 4 + p.parameters.len();
    out[4..end].copy_from_slice(p.parameters);
    out[end..].fill(0);
}

/// Round `n` up to a multiple of four.
pub(crate) const fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

fn fixed<const N: usize>(t: AttributeType, v: &[u8]) -> Result<[u8; N], AttributeError> {
    v.try_into().map_err(|_| AttributeError::BadLength(t))
}

fn parse_text(t: AttributeType, v: &[u8], max: usize) -> Result<&str, AttributeError> {
    if v.len() > max {
        return Err(AttributeError::TooLong(t));
    }
    core::str::from_utf8(v).map_err(|_| AttributeError::BadUtf8(t))
}

fn xor_key(transaction_id: &TransactionId) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    key[4..].copy_from_slice(&transaction_id.0);
    key
}

fn parse_address(
    t: AttributeType,
    v: &[u8],
    xor: Option<&TransactionId>,
) -> Result<SocketAddr, AttributeError> {
    let &[_, family, p0, p1, ref addr @ ..] = v else {
        return Err(AttributeError::BadLength(t));
    };
    let key = xor.map_or([0u8; 16], xor_key);
    let port = u16::from_be_bytes([p0, p1]) ^ u16::from_be_bytes([key[0], key[1]]);
    let ip = match (family, addr) {
        (0x01, &[a, b, c, d]) => {
            let x = u32::from_be_bytes([a, b, c, d])
                ^ u32::from_be_bytes([key[0], key[1], key[2], key[3]]);
            IpAddr::V4(Ipv4Addr::from(x))
        }
        (0x02, addr) if addr.len() == 16 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(addr);
            IpAddr::V6(Ipv6Addr::from(
                u128::from_be_bytes(octets) ^ u128::from_be_bytes(key),
            ))
        }
        (0x01 | 0x02, _) => return Err(AttributeError::BadLength(t)),
        _ => return Err(AttributeError::BadAddressFamily(t)),
    };
    Ok(SocketAddr::new(ip, port))
}

fn write_address(out: &mut [u8], a: SocketAddr, xor: Option<&TransactionId>) {
    // The XOR key is the magic cookie, then (IPv6) the transaction id.
    let key = xor.map_or([0u8; 16], xor_key);
    let port = a.port() ^ u16::from_be_bytes([key[0], key[1]]);
    out[0] = 0;
    out[2..4].copy_from_slice(&port.to_be_bytes());
    match a.ip() {
        IpAddr::V4(ip) => {
            out[1] = 0x01;
            let x = u32::from(ip) ^ u32::from_be_bytes([key[0], key[1], key[2], key[3]]);
            out[4..8].copy_from_slice(&x.to_be_bytes());
        }
        IpAddr::V6(ip) => {
            out[1] = 0x02;
            let x = u128::from(ip) ^ u128::from_be_bytes(key);
            out[4..20].copy_from_slice(&x.to_be_bytes());
        }
    }
}
