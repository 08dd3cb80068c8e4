//! Credentials, MESSAGE-INTEGRITY(-SHA256) and FINGERPRINT
//! (RFC 8489 sections 9, 14.5, 14.6, 14.7).
//!
//! An [`IntegrityKey`] (HMAC-SHA1) or [`IntegrityKeySha256`] holds an HMAC
//! state already keyed with the credential, so checking or signing a message
//! costs the compressions of the message plus one, instead of re-deriving
//! the key each time. MACs are compared in constant
//! time. Passwords are taken as bytes that the caller has already prepared
//! (RFC 8265 OpaqueString / SASLprep); ICE passwords are ASCII ice-chars, for
//! which that preparation is the identity.

use core::fmt;

use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;
use sha1::Sha1;
use sha2::Sha256;
use sha2::digest::{self, Digest};
use subtle::ConstantTimeEq;

use super::HEADER_LEN;

/// XOR constant of the FINGERPRINT attribute: "STUN" in ASCII.
pub const FINGERPRINT_XOR: u32 = 0x5354_554e;

/// A MAC keyed once and reused: the two implementations below.
trait Keyed<const N: usize>: Clone {
    fn keyed(key: &[u8]) -> Self;
    /// The MAC of `msg[..end]` with bytes 2..4 (the STUN length field)
    /// replaced by `length`.
    fn mac_message(&self, msg: &[u8], end: usize, length: u16) -> [u8; N];
}

/// HMAC-SHA1 (RFC 2104) with the inner and outer SHA-1 states computed once
/// from the key: 40 bytes a key, and a MAC costs exactly the compressions
/// of the message plus one for the outer hash (two for a binding check).
/// Written over `sha1`'s block function because the generic `hmac` state
/// carries a 64-byte buffer and takes about a fifth longer per message.
#[derive(Clone)]
struct HmacSha1 {
    inner: [u32; 5],
    outer: [u32; 5],
}

const SHA1_H0: [u32; 5] = [
    0x6745_2301,
    0xefcd_ab89,
    0x98ba_dcfe,
    0x1032_5476,
    0xc3d2_e1f0,
];

impl Keyed<20> for HmacSha1 {
    fn keyed(key: &[u8]) -> Self {
        let mut k = [0u8; 64];
        if key.len() > 64 {
            k[..20].copy_from_slice(&Sha1::digest(key));
        } else {
            k[..key.len()].copy_from_slice(key);
        }
        let (mut ipad, mut opad) = ([0x36u8; 64], [0x5cu8; 64]);
        for ((i, o), k) in ipad.iter_mut().zip(opad.iter_mut()).zip(k) {
            *i ^= k;
            *o ^= k;
        }
        let (mut inner, mut outer) = (SHA1_H0, SHA1_H0);
        sha1::block_api::compress(&mut inner, &[ipad]);
        sha1::block_api::compress(&mut outer, &[opad]);
        HmacSha1 { inner, outer }
    }

    fn mac_message(&self, msg: &[u8], end: usize, length: u16) -> [u8; 20] {
        let data = &msg[..end];
        let mut state = self.inner;
        let full = data.len() / 64;
        let mut block = [0u8; 64];
        for (i, chunk) in data.chunks_exact(64).enumerate() {
            block.copy_from_slice(chunk);
            if i == 0 {
                block[2..4].copy_from_slice(&length.to_be_bytes());
            }
            sha1::block_api::compress(&mut state, &[block]);
        }
        // The tail, the 0x80 marker and the bit length (FIPS 180-4 5.1.1):
        // one block, or two when fewer than 9 bytes are left in the first.
        let rest = &data[full * 64..];
        let mut tail = [[0u8; 64]; 2];
        let flat = tail.as_flattened_mut();
        flat[..rest.len()].copy_from_slice(rest);
        if full == 0 {
            flat[2..4].copy_from_slice(&length.to_be_bytes());
        }
        flat[rest.len()] = 0x80;
        let blocks = if rest.len() + 9 <= 64 { 1 } else { 2 };
        let bits = (64 + data.len() as u64) * 8;
        flat[blocks * 64 - 8..blocks * 64].copy_from_slice(&bits.to_be_bytes());
        sha1::block_api::compress(&mut state, &tail[..blocks]);
        // Outer hash: the 64-byte key block (absorbed) and the 20-byte digest.
        let mut outer = [0u8; 64];
        for (o, w) in outer.chunks_exact_mut(4).zip(state) {
            o.copy_from_slice(&w.to_be_bytes());
        }
        outer[20] = 0x80;
        outer[56..].copy_from_slice(&((64 + 20) as u64 * 8).to_be_bytes());
        let mut state = self.outer;
        sha1::block_api::compress(&mut state, &[outer]);
        let mut out = [0u8; 20];
        for (o, w) in out.chunks_exact_mut(4).zip(state) {
            o.copy_from_slice(&w.to_be_bytes());
        }
        out
    }
}

impl Keyed<32> for Hmac<Sha256> {
    fn keyed(key: &[u8]) -> Self {
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length")
    }

    fn mac_message(&self, msg: &[u8], end: usize, length: u16) -> [u8; 32] {
        let mut mac = self.clone();
        mac.update(&msg[..2]);
        mac.update(&length.to_be_bytes());
        mac.update(&msg[4..end]);
        mac.finalize().into_bytes().into()
    }
}

macro_rules! integrity_key {
    ($(#[$doc:meta])* $name:ident, $state:ty, $tag:literal) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name($state);

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(..)"))
            }
        }

        impl $name {
            /// A key from raw key bytes (HMAC accepts any length).
            pub fn from_raw(key: &[u8]) -> Self {
                $name(<$state as Keyed<$tag>>::keyed(key))
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
                self.0.mac_message(msg, end, length)
            }

            /// Constant-time check of a (possibly truncated, left-aligned) tag.
            pub(crate) fn verify_at(&self, msg: &[u8], offset: usize, tag: &[u8]) -> Result<(), IntegrityError> {
                let mac = self.mac(msg, offset, length_through(offset, tag.len()));
                match mac.get(..tag.len()) {
                    Some(expected) if !tag.is_empty() && bool::from(expected.ct_eq(tag)) => Ok(()),
                    _ => Err(IntegrityError::Mismatch),
                }
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
    HmacSha1,
    20
);

integrity_key!(
    /// A STUN credential pre-keyed for MESSAGE-INTEGRITY-SHA256 (RFC 8489
    /// section 14.6), as TURN servers may ask for. A separate type, so that an
    /// ICE-only speaker links and stores no SHA-256 at all.
    IntegrityKeySha256,
    Hmac<Sha256>,
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
