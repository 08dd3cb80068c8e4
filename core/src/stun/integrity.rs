//! Credentials, MESSAGE-INTEGRITY(-SHA256) and FINGERPRINT
//! (RFC 8489 sections 9, 14.5, 14.6, 14.7).
//!
//! An [`IntegrityKey`] (HMAC-SHA1) or [`IntegrityKeySha256`] holds an HMAC
//! state already keyed with the credential,
//! so checking or signing a message costs two hash compressions per 64 bytes
//! instead of re-deriving the key each time. MACs are compared in constant
//! time. Passwords are taken as bytes that the caller has already prepared
//! (RFC 8265 OpaqueString / SASLprep); ICE passwords are ASCII ice-chars, for
//! which that preparation is the identity.

use core::fmt;

use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;
use sha1::Sha1;
use sha2::Sha256;
use sha2::digest::{self, Digest};

use super::HEADER_LEN;

/// XOR constant of the FINGERPRINT attribute: "STUN" in ASCII.
pub const FINGERPRINT_XOR: u32 = 0x5354_554e;

macro_rules! integrity_key {
    ($(#[$doc:meta])* $name:ident, $hash:ty, $tag:literal) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(Hmac<$hash>);

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(..)"))
            }
        }

        impl $name {
            /// A key from raw key bytes (HMAC accepts any length).
            pub fn from_raw(key: &[u8]) -> Self {
                $name(<Hmac<$hash> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length"))
            }

            /// Short-term credential (RFC 8489 section 9.1.1): the key is the
            /// password itself. ICE uses the peer's `ice-pwd` (RFC 8445 section 7.2.2).
            pub fn short_term(password: &[u8]) -> Self {
                Self::from_raw(password)
            }

            /// Long-term credential with the MD5 password algorithm (RFC 8489
            /// section 9.2.2): key = MD5(username ":" realm ":" password).
            pub fn long_term_md5(username: &[u8], realm: &[u8], password: &[u8]) -> Self {
                Self::from_raw(&long_term_digest::<Md5>(username, realm, password))
            }

            /// Long-term credential with the SHA-256 password algorithm (RFC 8489
            /// section 9.2.2): key = SHA-256(username ":" realm ":" password).
            pub fn long_term_sha256(username: &[u8], realm: &[u8], password: &[u8]) -> Self {
                Self::from_raw(&long_term_digest::<Sha256>(username, realm, password))
            }

            /// The MAC over `msg[..end]` with the length field replaced by
            /// `length` (the length the message has up to and including the
            /// integrity attribute being computed).
            pub(crate) fn mac(&self, msg: &[u8], end: usize, length: u16) -> [u8; $tag] {
                let mut mac = self.0.clone();
                feed(&mut mac, msg, end, length);
                mac.finalize().into_bytes().into()
            }

            /// Constant-time check of a (possibly truncated, left-aligned) tag.
            pub(crate) fn verify_at(&self, msg: &[u8], offset: usize, tag: &[u8]) -> Result<(), IntegrityError> {
                let mut mac = self.0.clone();
                feed(&mut mac, msg, offset, length_through(offset, tag.len()));
                mac.verify_truncated_left(tag).map_err(|_| IntegrityError::Mismatch)
            }
        }
    };
}

integrity_key!(
    /// A STUN credential pre-keyed for MESSAGE-INTEGRITY (HMAC-SHA1), the
    /// integrity ICE uses (RFC 8445 section 7.2.2).
    ///
    /// Build it once per credential (per ICE session, per TURN allocation) and
    /// reuse it: cloning the keyed state per message is what keeps integrity
    /// checks cheap.
    IntegrityKey,
    Sha1,
    20
);

integrity_key!(
    /// A STUN credential pre-keyed for MESSAGE-INTEGRITY-SHA256 (RFC 8489
    /// section 14.6), as TURN servers may ask for. A separate type, so that an
    /// ICE-only speaker links and stores no SHA-256 at all.
    IntegrityKeySha256,
    Sha256,
    32
);

fn long_term_digest<D: Digest>(
    username: &[u8],
    realm: &[u8],
    password: &[u8],
) -> digest::Output<D> {
    let mut h = D::new();
    for part in [username, b":", realm, b":", password] {
        h.update(part);
    }
    h.finalize()
}

/// The header with its length field replaced, then the attributes up to `end`.
fn feed<M: Mac>(mac: &mut M, msg: &[u8], end: usize, length: u16) {
    mac.update(&msg[..2]);
    mac.update(&length.to_be_bytes());
    mac.update(&msg[4..end]);
}

/// USERHASH (RFC 8489 section 14.4): SHA-256(username ":" realm).
pub fn userhash(username: &[u8], realm: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [username, b":", realm] {
        h.update(part);
    }
    h.finalize().into()
}

/// FINGERPRINT value of `msg[..end]`, where `end` is the offset of the
/// FINGERPRINT attribute and the header's length already counts it.
pub(crate) fn fingerprint(msg: &[u8], end: usize) -> u32 {
    crc32fast::hash(&msg[..end]) ^ FINGERPRINT_XOR
}

/// Why MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256 did not verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum IntegrityError {
    /// The message carries no integrity attribute of the requested kind.
    Missing,
    /// The MAC does not match: wrong credential or altered message.
    Mismatch,
}

impl fmt::Display for IntegrityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IntegrityError::Missing => "no MESSAGE-INTEGRITY attribute",
            IntegrityError::Mismatch => {
                "MESSAGE-INTEGRITY does not match (wrong password or altered message)"
            }
        })
    }
}

impl core::error::Error for IntegrityError {}

/// Why FINGERPRINT did not verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FingerprintError {
    /// The message carries no FINGERPRINT attribute.
    Missing,
    /// The CRC does not match: the message was altered or is not STUN.
    Mismatch,
}

impl fmt::Display for FingerprintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FingerprintError::Missing => "no FINGERPRINT attribute",
            FingerprintError::Mismatch => "FINGERPRINT does not match (altered message)",
        })
    }
}

impl core::error::Error for FingerprintError {}

/// Verify a FINGERPRINT value found at `offset`.
pub(crate) fn verify_fingerprint_at(
    msg: &[u8],
    offset: usize,
    value: u32,
) -> Result<(), FingerprintError> {
    if fingerprint(msg, offset) == value {
        Ok(())
    } else {
        Err(FingerprintError::Mismatch)
    }
}

/// The message length field as it reads when the message ends right after an
/// attribute at `offset` with a `value_len`-byte value.
pub(crate) fn length_through(offset: usize, value_len: usize) -> u16 {
    // Offsets come from a checked message (< 20 + 65536), so this fits.
    (offset + 4 + value_len - HEADER_LEN) as u16
}
