//! The message header and the zero-copy [`Message`] view (RFC 8489 section 5).

use core::fmt;

use super::attributes::{AttributeType, RawAttribute};
use super::{HEADER_LEN, MAGIC_COOKIE};

/// Byte ranges of the fixed header fields (RFC 8489 section 5).
mod field {
    use core::ops::Range;
    pub const TYPE: Range<usize> = 0..2;
    pub const LENGTH: Range<usize> = 2..4;
    pub const COOKIE: Range<usize> = 4..8;
    pub const TRANSACTION_ID: Range<usize> = 8..20;
}

/// Why a buffer is not a well-formed STUN message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ParseError {
    /// Shorter than the 20-byte header, or than the length the header states.
    Truncated,
    /// Longer than the length the header states (a datagram is one message).
    TrailingBytes,
    /// The two most significant bits are not zero: not STUN (RFC 7983 demultiplexing).
    NotStun,
    /// The magic cookie is not 0x2112A442 (an RFC 3489 message, or not STUN).
    BadMagicCookie,
    /// The message length is not a multiple of four.
    UnalignedLength,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParseError::Truncated => "STUN message truncated",
            ParseError::TrailingBytes => "bytes after the end of the STUN message",
            ParseError::NotStun => "not a STUN message (leading bits are not zero)",
            ParseError::BadMagicCookie => "STUN magic cookie missing",
            ParseError::UnalignedLength => "STUN message length is not a multiple of 4",
        })
    }
}

impl core::error::Error for ParseError {}

/// The class of a message (RFC 8489 section 5): the two class bits of the type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[allow(clippy::exhaustive_enums)] // two bits on the wire: there are exactly four
pub enum Class {
    /// A request: expects a success or error response.
    Request,
    /// An indication: no response.
    Indication,
    /// A success response to a request.
    SuccessResponse,
    /// An error response to a request.
    ErrorResponse,
}

/// A STUN method: the 12 method bits of the type (binding is 0x001).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Method(u16);

impl Method {
    /// Binding (RFC 8489).
    pub const BINDING: Method = Method(0x001);
    /// Allocate (RFC 8656, TURN).
    pub const ALLOCATE: Method = Method(0x003);
    /// Refresh (RFC 8656).
    pub const REFRESH: Method = Method(0x004);
    /// Send (RFC 8656).
    pub const SEND: Method = Method(0x006);
    /// Data (RFC 8656).
    pub const DATA: Method = Method(0x007);
    /// CreatePermission (RFC 8656).
    pub const CREATE_PERMISSION: Method = Method(0x008);
    /// ChannelBind (RFC 8656).
    pub const CHANNEL_BIND: Method = Method(0x009);

    /// A method from its 12-bit number, or `None` if it does not fit 12 bits.
    pub const fn new(value: u16) -> Option<Method> {
        if value <= 0x0fff {
            Some(Method(value))
        } else {
            None
        }
    }

    /// The 12-bit method number.
    pub const fn value(self) -> u16 {
        self.0
    }
}

/// Method and class together: the 14-bit STUN message type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MessageType {
    /// The method (binding, allocate, ...).
    pub method: Method,
    /// The class (request, indication, success or error response).
    pub class: Class,
}

impl MessageType {
    /// Binding request.
    pub const BINDING_REQUEST: MessageType = MessageType::new(Method::BINDING, Class::Request);
    /// Binding success response.
    pub const BINDING_SUCCESS: MessageType =
        MessageType::new(Method::BINDING, Class::SuccessResponse);
    /// Binding error response.
    pub const BINDING_ERROR: MessageType = MessageType::new(Method::BINDING, Class::ErrorResponse);
    /// Binding indication (ICE keepalives).
    pub const BINDING_INDICATION: MessageType =
        MessageType::new(Method::BINDING, Class::Indication);

    /// A message type from its parts.
    pub const fn new(method: Method, class: Class) -> MessageType {
        MessageType { method, class }
    }

    /// Decode the 16-bit type field; `None` if the two top bits are set.
    pub const fn from_u16(raw: u16) -> Option<MessageType> {
        if raw & 0xc000 != 0 {
            return None;
        }
        Some(MessageType::from_low_bits(raw))
    }

    /// Decode the low 14 bits of a type field, ignoring the top two.
    const fn from_low_bits(raw: u16) -> MessageType {
        let class = match ((raw >> 7) & 0b10) | ((raw >> 4) & 0b01) {
            0b00 => Class::Request,
            0b01 => Class::Indication,
            0b10 => Class::SuccessResponse,
            _ => Class::ErrorResponse,
        };
        let method = (raw & 0x000f) | ((raw >> 1) & 0x0070) | ((raw >> 2) & 0x0f80);
        MessageType {
            method: Method(method),
            class,
        }
    }

    /// Encode as the 16-bit type field (bits M11..M0 interleaved with C1 C0).
    pub const fn to_u16(self) -> u16 {
        let m = self.method.0;
        let c: u16 = match self.class {
            Class::Request => 0b00,
            Class::Indication => 0b01,
            Class::SuccessResponse => 0b10,
            Class::ErrorResponse => 0b11,
        };
        (m & 0x000f)
            | ((m & 0x0070) << 1)
            | ((m & 0x0f80) << 2)
            | ((c & 0b01) << 4)
            | ((c & 0b10) << 7)
    }
}

/// The 96-bit transaction id. The core never invents one: the caller passes
/// 12 random bytes (RFC 8489 section 5 asks for a cryptographically random id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TransactionId(pub [u8; 12]);

impl TransactionId {
    /// The raw 12 bytes.
    pub const fn as_bytes(&self) -> &[u8; 12] {
        &self.0
    }
}

impl fmt::Display for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// How many bytes the STUN message at the start of `buf` claims to occupy
/// (header plus attributes), judged from its header alone.
///
/// Useful to demultiplex STUN from media on one socket (RFC 7983: first byte
/// 0..=3) and to frame STUN over a stream. Returns `None` when `buf` does not
/// start with a STUN header (too short, top bits set, no magic cookie).
/// Never panics.
pub fn message_len(buf: &[u8]) -> Option<usize> {
    let header = buf.get(..HEADER_LEN)?;
    if header[0] & 0xc0 != 0 || header[field::COOKIE] != MAGIC_COOKIE.to_be_bytes() {
        return None;
    }
    Some(HEADER_LEN + usize::from(u16::from_be_bytes([header[2], header[3]])))
}

/// A zero-copy view of one STUN message in a caller's buffer.
///
/// Construct it with [`Message::new_checked`]: after that every accessor is
/// infallible and never panics, and [`Message::attributes`] walks the
/// attributes without panicking on any content. With `T: AsMut<[u8]>` the
/// header can be rewritten in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Message<T> {
    /// Wrap a buffer without checking it. Accessors may panic if the buffer is
    /// not a valid message: use [`Message::new_checked`] for untrusted input.
    pub const fn new_unchecked(buffer: T) -> Message<T> {
        Message { buffer }
    }

    /// Wrap a buffer that must hold exactly one well-formed STUN message
    /// header: 20 bytes or more, top two bits zero, the magic cookie, a length
    /// that is a multiple of four and equal to the bytes that follow the header.
    ///
    /// Attribute contents are checked lazily by the iterator and by
    /// [`super::Repr::parse`].
    pub fn new_checked(buffer: T) -> Result<Message<T>, ParseError> {
        let message = Message::new_unchecked(buffer);
        message.check_len()?;
        Ok(message)
    }

    /// Check the header invariants that [`Message::new_checked`] promises.
    pub fn check_len(&self) -> Result<(), ParseError> {
        let buf = self.buffer.as_ref();
        let Some(header) = buf.get(..HEADER_LEN) else {
            return Err(ParseError::Truncated);
        };
        if header[0] & 0xc0 != 0 {
            return Err(ParseError::NotStun);
        }
        if header[field::COOKIE] != MAGIC_COOKIE.to_be_bytes() {
            return Err(ParseError::BadMagicCookie);
        }
        let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
        if length % 4 != 0 {
            return Err(ParseError::UnalignedLength);
        }
        match buf.len().cmp(&(HEADER_LEN + length)) {
            core::cmp::Ordering::Less => Err(ParseError::Truncated),
            core::cmp::Ordering::Greater => Err(ParseError::TrailingBytes),
            core::cmp::Ordering::Equal => Ok(()),
        }
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole message as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// The raw 16-bit message type field.
    pub fn raw_type(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::TYPE];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Method and class.
    pub fn message_type(&self) -> MessageType {
        // `check_len` guarantees the top bits are zero; an unchecked view
        // reads as its low 14 bits.
        MessageType::from_low_bits(self.raw_type())
    }

    /// The method (shorthand for `message_type().method`).
    pub fn method(&self) -> Method {
        self.message_type().method
    }

    /// The class (shorthand for `message_type().class`).
    pub fn class(&self) -> Class {
        self.message_type().class
    }

    /// The message length field: bytes of attributes after the header.
    pub fn length(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::LENGTH];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// The transaction id.
    pub fn transaction_id(&self) -> TransactionId {
        let mut id = [0u8; 12];
        id.copy_from_slice(&self.buffer.as_ref()[field::TRANSACTION_ID]);
        TransactionId(id)
    }

    /// The attribute bytes after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// Iterate over the attributes in wire order. Never panics: a malformed
    /// attribute yields one `Err` and ends the iteration.
    pub fn attributes(&self) -> Attributes<'_> {
        Attributes::over(self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Message<T> {
    /// Rewrite the message type field.
    pub fn set_message_type(&mut self, t: MessageType) {
        self.buffer.as_mut()[field::TYPE].copy_from_slice(&t.to_u16().to_be_bytes());
    }

    /// Rewrite the transaction id.
    pub fn set_transaction_id(&mut self, id: TransactionId) {
        self.buffer.as_mut()[field::TRANSACTION_ID].copy_from_slice(&id.0);
    }
}

/// Why an attribute could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum AttributeError {
    /// The attribute's length runs past the end of the message.
    Truncated(AttributeType),
    /// The value has a length its type does not allow.
    BadLength(AttributeType),
    /// An address family other than IPv4 (0x01) or IPv6 (0x02).
    BadAddressFamily(AttributeType),
    /// Text that is not UTF-8.
    BadUtf8(AttributeType),
    /// Text or a list longer than the RFC allows.
    TooLong(AttributeType),
    /// An ERROR-CODE whose class is not 3..=6 or whose number is over 99.
    BadErrorCode,
    /// An attribute after FINGERPRINT, which must be last.
    AfterFingerprint(AttributeType),
}

impl fmt::Display for AttributeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttributeError::Truncated(t) => {
                write!(f, "attribute {t} runs past the end of the message")
            }
            AttributeError::BadLength(t) => write!(f, "attribute {t} has an invalid length"),
            AttributeError::BadAddressFamily(t) => {
                write!(f, "attribute {t} has an unknown address family")
            }
            AttributeError::BadUtf8(t) => write!(f, "attribute {t} is not UTF-8"),
            AttributeError::TooLong(t) => write!(f, "attribute {t} is longer than allowed"),
            AttributeError::BadErrorCode => f.write_str("ERROR-CODE class or number out of range"),
            AttributeError::AfterFingerprint(t) => write!(f, "attribute {t} follows FINGERPRINT"),
        }
    }
}

impl core::error::Error for AttributeError {}

/// Iterator over the raw attributes of a [`Message`], in wire order.
///
/// Each item is the attribute's type, its value (without padding) and the
/// offset of its header within the message. Padding bytes are not checked
/// (RFC 8489 section 14: receivers ignore them).
#[derive(Clone, Debug)]
pub struct Attributes<'a> {
    buf: &'a [u8],
    offset: usize,
    failed: bool,
}

impl<'a> Attributes<'a> {
    /// Walk the attributes of a message whose header has been checked.
    pub(crate) fn over(message: &'a [u8]) -> Self {
        Attributes {
            buf: message,
            offset: HEADER_LEN,
            failed: false,
        }
    }
}

impl<'a> Iterator for Attributes<'a> {
    type Item = Result<RawAttribute<'a>, AttributeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let rest = self.buf.get(self.offset..)?;
        if rest.is_empty() {
            return None;
        }
        let Some(&[t0, t1, l0, l1]) = rest.get(..4) else {
            self.failed = true;
            return Some(Err(AttributeError::Truncated(AttributeType(0))));
        };
        let typ = AttributeType(u16::from_be_bytes([t0, t1]));
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        let padded = (len + 3) & !3;
        let Some(value) = rest.get(4..4 + len) else {
            self.failed = true;
            return Some(Err(AttributeError::Truncated(typ)));
        };
        let attr = RawAttribute {
            typ,
            value,
            offset: self.offset,
        };
        // A value whose padding is missing ends the walk after this attribute
        // (the header check already rejects such a message length).
        self.offset = self.offset.saturating_add(4 + padded);
        Some(Ok(attr))
    }
}
