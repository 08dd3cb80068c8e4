//! Writing STUN messages into a caller's buffer.

use core::fmt;

use super::attributes::{Attribute, AttributeType, pad4};
use super::integrity::{IntegrityKey, IntegrityKeySha256, fingerprint};
use super::message::{AttributeError, MessageType, TransactionId};
use super::{HEADER_LEN, MAGIC_COOKIE};

/// Longest message the 16-bit length field can describe (a multiple of 4).
pub const MAX_MESSAGE_LEN: usize = HEADER_LEN + 0xfffc;

/// Why a message could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum EncodeError {
    /// The buffer is too short; `required` is the length of the whole
    /// message as it was asked for.
    InsufficientSize {
        /// Bytes the whole message needs.
        required: usize,
    },
    /// An attribute value breaks the RFC's limits (too long, bad code).
    InvalidAttribute(AttributeError),
    /// MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and FINGERPRINT are
    /// computed: add them with their dedicated methods.
    ComputedAttribute(AttributeType),
    /// An attribute was added after MESSAGE-INTEGRITY(-SHA256) or
    /// FINGERPRINT, where RFC 8489 section 14 allows none.
    AfterIntegrity(AttributeType),
    /// The message would exceed the 65,535-byte length field.
    MessageTooLong,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::InsufficientSize { required } => {
                write!(f, "buffer too small: the message needs {required} bytes")
            }
            EncodeError::InvalidAttribute(e) => write!(f, "invalid attribute: {e}"),
            EncodeError::ComputedAttribute(t) => {
                write!(
                    f,
                    "attribute {t} is computed: use the builder's dedicated method"
                )
            }
            EncodeError::AfterIntegrity(t) => {
                write!(
                    f,
                    "attribute {t} cannot follow MESSAGE-INTEGRITY or FINGERPRINT"
                )
            }
            EncodeError::MessageTooLong => {
                f.write_str("message longer than the STUN length field allows")
            }
        }
    }
}

impl core::error::Error for EncodeError {}

/// What has been appended so far, to enforce the attribute order of RFC 8489
/// section 14.5-14.7: MESSAGE-INTEGRITY, then MESSAGE-INTEGRITY-SHA256, then
/// FINGERPRINT, and nothing after.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Attributes,
    Integrity,
    IntegritySha256,
    Fingerprint,
}

/// Writes one STUN message into a caller's buffer.
///
/// Attributes are appended in call order, padded to four bytes (with zeros
/// unless [`MessageBuilder::padding`] says otherwise),
/// and the header's length field is kept right after every step, so the
/// integrity attributes cover exactly what RFC 8489 says they cover.
///
/// The methods chain and never fail on their own: the first problem is
/// remembered and [`MessageBuilder::finish`] reports it. When the buffer is
/// too short the builder keeps counting, so the error carries the size the
/// *whole* message needs. Allocation-free; never panics.
///
/// ```
/// use scream_ice_core::stun::{Attribute, IntegrityKey, MessageBuilder, MessageType, TransactionId};
/// let key = IntegrityKey::short_term(b"VOkJxbRl1RmTxUk/WvJxBt");
/// let mut buf = [0u8; 128];
/// let mut b = MessageBuilder::new(&mut buf, MessageType::BINDING_SUCCESS, TransactionId([7; 12]));
/// b.add(&Attribute::XorMappedAddress("192.0.2.1:32853".parse().unwrap()))
///     .add_message_integrity(&key)
///     .add_fingerprint();
/// let len = b.finish().unwrap();
/// assert_eq!(len, 20 + 12 + 24 + 8);
/// ```
#[derive(Debug)]
pub struct MessageBuilder<'b> {
    buf: &'b mut [u8],
    transaction_id: TransactionId,
    len: usize,
    stage: Stage,
    overflow: bool,
    padding: u8,
    error: Option<EncodeError>,
}

impl<'b> MessageBuilder<'b> {
    /// Start a message of type `message_type` with the caller's
    /// `transaction_id`, writing the 20-byte header into `buf`.
    pub fn new(
        buf: &'b mut [u8],
        message_type: MessageType,
        transaction_id: TransactionId,
    ) -> Self {
        let mut b = MessageBuilder {
            buf,
            transaction_id,
            len: HEADER_LEN,
            stage: Stage::Attributes,
            overflow: false,
            padding: 0,
            error: None,
        };
        match b.buf.get_mut(..HEADER_LEN) {
            Some(h) => {
                h[0..2].copy_from_slice(&message_type.to_u16().to_be_bytes());
                h[2..4].fill(0);
                h[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
                h[8..20].copy_from_slice(&transaction_id.0);
            }
            None => b.overflow = true,
        }
        b
    }

    /// Pad later attributes with `byte` instead of zero. RFC 8489 lets the
    /// sender choose; RFC 5769's vectors pad with spaces (0x20), and this is
    /// how they are reproduced byte for byte.
    pub fn padding(&mut self, byte: u8) -> &mut Self {
        self.padding = byte;
        self
    }

    /// Bytes written (or, after an overflow, needed) so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether only the header has been written.
    pub fn is_empty(&self) -> bool {
        self.len == HEADER_LEN
    }

    fn fail(&mut self, e: EncodeError) -> &mut Self {
        if self.error.is_none() {
            self.error = Some(e);
        }
        self
    }

    /// Reserve an attribute of `value_len` bytes: write its header, advance,
    /// fix the length field. Returns the value's range if it fits.
    fn reserve(&mut self, typ: AttributeType, value_len: usize) -> Option<core::ops::Range<usize>> {
        let start = self.len;
        let end = start + 4 + pad4(value_len);
        if end > MAX_MESSAGE_LEN {
            self.fail(EncodeError::MessageTooLong);
            return None;
        }
        self.len = end;
        if self.overflow || end > self.buf.len() {
            self.overflow = true;
            return None;
        }
        let b = &mut *self.buf;
        b[start..start + 2].copy_from_slice(&typ.0.to_be_bytes());
        // value_len <= 0xfffc here, checked through MAX_MESSAGE_LEN.
        b[start + 2..start + 4].copy_from_slice(&(value_len as u16).to_be_bytes());
        if !value_len.is_multiple_of(4) {
            b[start + 4 + value_len..end].fill(self.padding);
        }
        b[2..4].copy_from_slice(&((end - HEADER_LEN) as u16).to_be_bytes());
        Some(start + 4..start + 4 + value_len)
    }

    /// Append an attribute. MESSAGE-INTEGRITY(-SHA256) and FINGERPRINT are
    /// refused here (`ComputedAttribute`): use the dedicated methods.
    pub fn add(&mut self, attr: &Attribute<'_>) -> &mut Self {
        let typ = attr.typ();
        if matches!(
            typ,
            AttributeType::MESSAGE_INTEGRITY
                | AttributeType::MESSAGE_INTEGRITY_SHA256
                | AttributeType::FINGERPRINT
        ) {
            return self.fail(EncodeError::ComputedAttribute(typ));
        }
        if self.stage != Stage::Attributes {
            return self.fail(EncodeError::AfterIntegrity(typ));
        }
        if let Err(e) = attr.check_value() {
            return self.fail(EncodeError::InvalidAttribute(e));
        }
        if let Some(range) = self.reserve(typ, attr.value_len()) {
            let tid = self.transaction_id;
            attr.write_value(&mut self.buf[range], &tid);
        }
        self
    }

    /// Append MESSAGE-INTEGRITY (HMAC-SHA1 with `key`) over everything
    /// written so far (RFC 8489 section 14.5).
    pub fn add_message_integrity(&mut self, key: &IntegrityKey) -> &mut Self {
        if self.stage >= Stage::Integrity {
            return self.fail(EncodeError::AfterIntegrity(
                AttributeType::MESSAGE_INTEGRITY,
            ));
        }
        self.stage = Stage::Integrity;
        let start = self.len;
        if let Some(range) = self.reserve(AttributeType::MESSAGE_INTEGRITY, 20) {
            let length = (range.end - HEADER_LEN) as u16;
            let mac = key.mac(self.buf, start, length);
            self.buf[range].copy_from_slice(&mac);
        }
        self
    }

    /// Append MESSAGE-INTEGRITY-SHA256 (HMAC-SHA256 with `key`, full 32
    /// bytes) over everything written so far (RFC 8489 section 14.6).
    pub fn add_message_integrity_sha256(&mut self, key: &IntegrityKeySha256) -> &mut Self {
        if self.stage >= Stage::IntegritySha256 {
            return self.fail(EncodeError::AfterIntegrity(
                AttributeType::MESSAGE_INTEGRITY_SHA256,
            ));
        }
        self.stage = Stage::IntegritySha256;
        let start = self.len;
        if let Some(range) = self.reserve(AttributeType::MESSAGE_INTEGRITY_SHA256, 32) {
            let length = (range.end - HEADER_LEN) as u16;
            let mac = key.mac(self.buf, start, length);
            self.buf[range].copy_from_slice(&mac);
        }
        self
    }

    /// Append FINGERPRINT over everything written so far (RFC 8489 section
    /// 14.7). Nothing can follow it.
    pub fn add_fingerprint(&mut self) -> &mut Self {
        if self.stage >= Stage::Fingerprint {
            return self.fail(EncodeError::AfterIntegrity(AttributeType::FINGERPRINT));
        }
        self.stage = Stage::Fingerprint;
        let start = self.len;
        if let Some(range) = self.reserve(AttributeType::FINGERPRINT, 4) {
            let crc = fingerprint(self.buf, start);
            self.buf[range].copy_from_slice(&crc.to_be_bytes());
        }
        self
    }

    /// The length of the finished message, or the first error. On
    /// `InsufficientSize` the buffer holds a partial message; nothing else
    /// is promised about its content.
    pub fn finish(self) -> Result<usize, EncodeError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.overflow {
            return Err(EncodeError::InsufficientSize { required: self.len });
        }
        Ok(self.len)
    }
}
