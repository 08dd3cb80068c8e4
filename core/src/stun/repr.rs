//! [`Repr`]: a message decoded in one pass, with the attribute-order rules of
//! RFC 8489 section 14 applied and integrity checks ready to run.

use core::net::SocketAddr;

use heapless::Vec;

use super::attributes::{
    Attribute, AttributeType, ErrorCode, PasswordAlgorithm, PasswordAlgorithms, UnknownAttributes,
};
use super::integrity::{
    FingerprintError, IntegrityError, IntegrityKey, IntegrityKeySha256, verify_fingerprint_at,
};
use super::message::{AttributeError, Attributes, Message, MessageType, TransactionId};

/// How many unknown comprehension-required attribute types a [`Repr`] keeps
/// for the 420 answer; further ones still make the message unacceptable.
pub const MAX_UNKNOWN_REQUIRED: usize = 8;

/// A STUN message decoded in one pass, borrowing from the message buffer.
///
/// Rules applied (RFC 8489 section 14): only the first instance of an
/// attribute counts; after MESSAGE-INTEGRITY only MESSAGE-INTEGRITY-SHA256
/// and FINGERPRINT are read, after MESSAGE-INTEGRITY-SHA256 only FINGERPRINT;
/// anything after FINGERPRINT is an error. Unknown comprehension-required
/// attributes (type < 0x8000) before the integrity attributes are collected
/// in [`Repr::unknown_required`] so a server can answer 420.
///
/// Never panics and never allocates.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Repr<'a> {
    /// The whole message, for the integrity checks.
    pub bytes: &'a [u8],
    /// Method and class.
    pub message_type: MessageType,
    /// Transaction id.
    pub transaction_id: TransactionId,
    /// USERNAME.
    pub username: Option<&'a str>,
    /// USERHASH.
    pub userhash: Option<&'a [u8; 32]>,
    /// REALM.
    pub realm: Option<&'a str>,
    /// NONCE.
    pub nonce: Option<&'a str>,
    /// SOFTWARE.
    pub software: Option<&'a str>,
    /// PASSWORD-ALGORITHM.
    pub password_algorithm: Option<PasswordAlgorithm<'a>>,
    /// PASSWORD-ALGORITHMS.
    pub password_algorithms: Option<PasswordAlgorithms<'a>>,
    /// XOR-MAPPED-ADDRESS.
    pub xor_mapped_address: Option<SocketAddr>,
    /// MAPPED-ADDRESS.
    pub mapped_address: Option<SocketAddr>,
    /// ALTERNATE-SERVER.
    pub alternate_server: Option<SocketAddr>,
    /// ALTERNATE-DOMAIN.
    pub alternate_domain: Option<&'a str>,
    /// ERROR-CODE.
    pub error_code: Option<ErrorCode<'a>>,
    /// UNKNOWN-ATTRIBUTES (as received in a 420 response).
    pub unknown_attributes: Option<UnknownAttributes<'a>>,
    /// PRIORITY (ICE).
    pub priority: Option<u32>,
    /// USE-CANDIDATE (ICE).
    pub use_candidate: bool,
    /// ICE-CONTROLLING tie-breaker.
    pub ice_controlling: Option<u64>,
    /// ICE-CONTROLLED tie-breaker.
    pub ice_controlled: Option<u64>,
    /// Unknown comprehension-required attribute types, in wire order (at
    /// most [`MAX_UNKNOWN_REQUIRED`]). Non-empty means: answer 420.
    pub unknown_required: Vec<AttributeType, MAX_UNKNOWN_REQUIRED>,
    integrity: Option<(usize, &'a [u8; 20])>,
    integrity_sha256: Option<(usize, &'a [u8])>,
    fingerprint: Option<(usize, u32)>,
}

impl<'a> Repr<'a> {
    /// Decode every attribute of a checked message.
    pub fn parse(message: &Message<&'a [u8]>) -> Result<Repr<'a>, AttributeError> {
        let bytes: &'a [u8] = message.into_inner();
        let transaction_id = message.transaction_id();
        let mut r = Repr {
            bytes,
            message_type: message.message_type(),
            transaction_id,
            username: None,
            userhash: None,
            realm: None,
            nonce: None,
            software: None,
            password_algorithm: None,
            password_algorithms: None,
            xor_mapped_address: None,
            mapped_address: None,
            alternate_server: None,
            alternate_domain: None,
            error_code: None,
            unknown_attributes: None,
            priority: None,
            use_candidate: false,
            ice_controlling: None,
            ice_controlled: None,
            unknown_required: Vec::new(),
            integrity: None,
            integrity_sha256: None,
            fingerprint: None,
        };
        for raw in Attributes::over(bytes) {
            let raw = raw?;
            if r.fingerprint.is_some() {
                return Err(AttributeError::AfterFingerprint(raw.typ));
            }
            let after_integrity = r.integrity.is_some() || r.integrity_sha256.is_some();
            if after_integrity
                && !matches!(
                    raw.typ,
                    AttributeType::FINGERPRINT | AttributeType::MESSAGE_INTEGRITY_SHA256
                )
            {
                continue;
            }
            if r.integrity_sha256.is_some() && raw.typ == AttributeType::MESSAGE_INTEGRITY_SHA256 {
                continue;
            }
            match Attribute::parse(raw, &transaction_id)? {
                Attribute::MessageIntegrity(m) => r.integrity = Some((raw.offset, m)),
                Attribute::MessageIntegritySha256(m) => r.integrity_sha256 = Some((raw.offset, m)),
                Attribute::Fingerprint(v) => r.fingerprint = Some((raw.offset, v)),
                Attribute::Username(v) => first(&mut r.username, v),
                Attribute::Userhash(v) => first(&mut r.userhash, v),
                Attribute::Realm(v) => first(&mut r.realm, v),
                Attribute::Nonce(v) => first(&mut r.nonce, v),
                Attribute::Software(v) => first(&mut r.software, v),
                Attribute::PasswordAlgorithm(v) => first(&mut r.password_algorithm, v),
                Attribute::PasswordAlgorithms(v) => first(&mut r.password_algorithms, v),
                Attribute::XorMappedAddress(v) => first(&mut r.xor_mapped_address, v),
                Attribute::MappedAddress(v) => first(&mut r.mapped_address, v),
                Attribute::AlternateServer(v) => first(&mut r.alternate_server, v),
                Attribute::AlternateDomain(v) => first(&mut r.alternate_domain, v),
                Attribute::ErrorCode(v) => first(&mut r.error_code, v),
                Attribute::UnknownAttributes(v) => first(&mut r.unknown_attributes, v),
                Attribute::Priority(v) => first(&mut r.priority, v),
                Attribute::UseCandidate => r.use_candidate = true,
                Attribute::IceControlling(v) => first(&mut r.ice_controlling, v),
                Attribute::IceControlled(v) => first(&mut r.ice_controlled, v),
                Attribute::Other { typ, .. } => {
                    if typ.is_comprehension_required() && !r.unknown_required.contains(&typ) {
                        // Beyond capacity the list is full, which is still non-empty.
                        let _ = r.unknown_required.push(typ);
                    }
                }
            }
        }
        Ok(r)
    }

    /// Whether MESSAGE-INTEGRITY is present.
    pub fn has_integrity(&self) -> bool {
        self.integrity.is_some()
    }

    /// Whether MESSAGE-INTEGRITY-SHA256 is present.
    pub fn has_integrity_sha256(&self) -> bool {
        self.integrity_sha256.is_some()
    }

    /// Whether FINGERPRINT is present.
    pub fn has_fingerprint(&self) -> bool {
        self.fingerprint.is_some()
    }

    /// Check MESSAGE-INTEGRITY (HMAC-SHA1) against `key`, in constant time.
    pub fn verify_integrity(&self, key: &IntegrityKey) -> Result<(), IntegrityError> {
        let (offset, tag) = self.integrity.ok_or(IntegrityError::Missing)?;
        key.verify_at(self.bytes, offset, tag)
    }

    /// Check MESSAGE-INTEGRITY-SHA256 against `key`, in constant time.
    pub fn verify_integrity_sha256(&self, key: &IntegrityKeySha256) -> Result<(), IntegrityError> {
        let (offset, tag) = self.integrity_sha256.ok_or(IntegrityError::Missing)?;
        key.verify_at(self.bytes, offset, tag)
    }

    /// Check FINGERPRINT.
    pub fn verify_fingerprint(&self) -> Result<(), FingerprintError> {
        let (offset, value) = self.fingerprint.ok_or(FingerprintError::Missing)?;
        verify_fingerprint_at(self.bytes, offset, value)
    }
}

fn first<T>(slot: &mut Option<T>, value: T) {
    if slot.is_none() {
        *slot = Some(value);
    }
}
