//! STUN messages (RFC 8489, compatible with RFC 5389), without allocation.
//!
//! This is the bottom of the stack: the ICE agent, the router's STUN
//! responder and the STUN client all read and write messages through it.
//!
//! - Reading: [`Message::new_checked`] validates the header of a caller's
//!   buffer; [`Message::attributes`] walks the raw attributes;
//!   [`Attribute::parse`] types one; [`Repr::parse`] decodes a whole message
//!   in one pass with RFC 8489's ordering rules and then checks
//!   MESSAGE-INTEGRITY(-SHA256) ([`Repr::verify_integrity`]) and FINGERPRINT
//!   ([`Repr::verify_fingerprint`]).
//! - Writing: [`MessageBuilder`] writes into a caller's `&mut [u8]` and
//!   returns the length, or [`EncodeError::InsufficientSize`] with the size the
//!   whole message needs.
//! - Credentials: [`IntegrityKey`] (HMAC-SHA1: ICE, TURN) and
//!   [`IntegrityKeySha256`], each short-term or long-term (MD5 or SHA-256
//!   password algorithm), pre-keyed so a check costs two hash compressions.
//!
//! Transaction ids and any other randomness come from the caller.
//!
//! Guarantees: no function here panics on any input bytes, and none
//! allocates. Parsing borrows; nothing is copied except fixed-size values.

mod attributes;
mod builder;
mod integrity;
mod message;
mod repr;
pub mod server;
#[cfg(test)]
mod tests;
#[cfg(any(test, feature = "conformance"))]
pub(crate) mod vectors;

pub use attributes::{
    Attribute, AttributeType, ErrorCode, MAX_TEXT_CHARS, MAX_TEXT_LEN, MAX_USERNAME_LEN,
    PasswordAlgorithm, PasswordAlgorithms, RawAttribute, UnknownAttributes,
};
pub use builder::{EncodeError, MAX_MESSAGE_LEN, MessageBuilder};
pub use integrity::{
    FINGERPRINT_XOR, FingerprintError, IntegrityError, IntegrityKey, IntegrityKeySha256, userhash,
};
pub use message::{
    AttributeError, Attributes, Class, Message, MessageType, Method, ParseError, TransactionId,
    message_len,
};
pub use repr::{MAX_UNKNOWN_REQUIRED, Repr};

/// The fixed magic cookie of every RFC 5389/8489 message.
pub const MAGIC_COOKIE: u32 = 0x2112_a442;
/// Length of the fixed message header.
pub const HEADER_LEN: usize = 20;

/// Alias in the smoltcp style (`wire::UdpPacket`), for glob imports.
pub type StunMessage<T> = Message<T>;

/// RFC 5769's vectors: parse, verify and rebuild byte for byte.
#[cfg(feature = "conformance")]
pub(crate) fn conformance(report: &mut crate::conformance::Report) {
    vectors::check_all(&mut |name, ok| report.check(name, ok));
}
