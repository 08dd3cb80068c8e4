//! Credentials, MESSAGE-INTEGRITY(-SHA256) and FINGERPRINT
//! (RFC 8489 sections 9, 14.5, 14.6, 14.7).
//!
//! An [`IntegrityKey`] holds HMAC states already keyed with the credential,
//! so checking or signing a message costs two hash compressions per 64 bytes
//! instead of re-deriving the key each time. MACs are compared in constant
//! time. Passwords are taken as bytes that the caller has already prepared
//! (RFC 8265 OpaqueString / SASLprep); ICE passwords are ASCII ice-chars, for
//! which that preparation is the identity.

use core::fmt;

use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::HEADER_LEN;

/// XOR constant of the FINGERPRINT attribute: "STUN" in ASCII.
pub const FINGERPRINT_XOR: u32 = 0x5354_554e;

/// A STUN credential, pre-keyed for HMAC-SHA1 and HMAC-SHA256.
///
/// Build it once per credential (per ICE session, per TURN allocation) and
/// reuse it: cloning the keyed state per message is what keeps integrity
/// checks cheap.
#[derive(Clone)]
pub struct IntegrityKey {
    sha1: Hmac<Sha1>,
    sha256: Hmac<Sha256>,
}

impl fmt::Debug for IntegrityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IntegrityKey(..)")
    }
}

impl IntegrityKey {
    /// A key from raw key bytes (HMAC accepts any length).
    pub fn from_raw(key: &[u8]) -> IntegrityKey {
        IntegrityKey {
            sha1: <Hmac<Sha1> as KeyInit>::new_from_slice(key)
                .expect("HMAC takes keys of any length"),
            sha256: <Hmac<Sha256> as KeyInit>::new_from_slice(key)
                .expect("HMAC takes keys of any length"),
        }
    }

    /// Short-term credential (RFC 8489 section 9.1.1): the key is the
    /// password itself. ICE uses the peer's `ice-pwd` (RFC 8445 section 7.2.2).
    pub fn short_term(password: &[u8]) -> IntegrityKey {
        IntegrityKey::from_raw(password)
    }

    /// Long-term credential with the MD5 password algorithm (RFC 8489 section
    /// 9.2.2): key = MD5(username ":" realm ":" password).
    pub fn long_term_md5(username: &[u8], realm: &[u8], password: &[u8]) -> IntegrityKey {
        let mut h = Md5::new();
        for part in [username, b":", realm, b":", password] {
            h.update(part);
        }
        IntegrityKey::from_raw(&h.finalize())
    }

    /// Long-term credential with the SHA-256 password algorithm (RFC 8489
    /// section 9.2.2): key = SHA-256(username ":" realm ":" password).
    pub fn long_term_sha256(username: &[u8], realm: &[u8], password: &[u8]) -> IntegrityKey {
        let mut h = Sha256::new();
        for part in [username, b":", realm, b":", password] {
            h.update(part);
        }
        IntegrityKey::from_raw(&h.finalize())
    }

    /// HMAC-SHA1 over `msg[..end]` with the length field replaced by
    /// `length` (the length the message has up to and including the
    /// integrity attribute being computed).
    pub(crate) fn hmac_sha1(&self, msg: &[u8], end: usize, length: u16) -> [u8; 20] {
        let mut mac = self.sha1.clone();
        feed(&mut mac, msg, end, length);
        mac.finalize().into_bytes().into()
    }

    /// HMAC-SHA256, as [`IntegrityKey::hmac_sha1`].
    pub(crate) fn hmac_sha256(&self, msg: &[u8], end: usize, length: u16) -> [u8; 32] {
        let mut mac = self.sha256.clone();
        feed(&mut mac, msg, end, length);
        mac.finalize().into_bytes().into()
    }

    fn verify_sha1(&self, msg: &[u8], end: usize, length: u16, tag: &[u8]) -> bool {
        let mut mac = self.sha1.clone();
        feed(&mut mac, msg, end, length);
        mac.verify_slice(tag).is_ok()
    }

    fn verify_sha256(&self, msg: &[u8], end: usize, length: u16, tag: &[u8]) -> bool {
        let mut mac = self.sha256.clone();
        feed(&mut mac, msg, end, length);
        mac.verify_truncated_left(tag).is_ok()
    }
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

/// Verify a MESSAGE-INTEGRITY value found at `offset` (its attribute header).
pub(crate) fn verify_sha1_at(
    key: &IntegrityKey,
    msg: &[u8],
    offset: usize,
    tag: &[u8],
) -> Result<(), IntegrityError> {
    let length = length_through(offset, 20);
    if key.verify_sha1(msg, offset, length, tag) {
        Ok(())
    } else {
        Err(IntegrityError::Mismatch)
    }
}

/// Verify a MESSAGE-INTEGRITY-SHA256 value found at `offset`.
pub(crate) fn verify_sha256_at(
    key: &IntegrityKey,
    msg: &[u8],
    offset: usize,
    tag: &[u8],
) -> Result<(), IntegrityError> {
    let length = length_through(offset, tag.len());
    if key.verify_sha256(msg, offset, length, tag) {
        Ok(())
    } else {
        Err(IntegrityError::Mismatch)
    }
}

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
