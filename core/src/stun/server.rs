//! A plain STUN Binding server (RFC 8489 sections 6.3 and 7.3), without
//! credentials: what the router runs on UDP 3478 so that nobody needs an
//! external STUN server, and what the test network's STUN node runs.
//!
//! ICE connectivity checks are answered by the agent, which adds the
//! short-term credential checks; this is the unauthenticated service a STUN
//! client (srflx gathering, `turnutils_stunclient`, a browser) talks to.

use core::net::SocketAddr;

use super::{
    Attribute, AttributeType, Class, EncodeError, ErrorCode, Message, MessageBuilder, MessageType,
    Method, Repr, UnknownAttributes,
};

/// What to do with one datagram that arrived at a STUN server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Answer {
    /// Send the first `len` bytes of the output buffer back to the source.
    Reply(usize),
    /// Send nothing: not STUN, not a request, or not a Binding request that
    /// deserves an answer (indications, responses).
    Ignore,
}

/// Answer a datagram sent to a STUN server from `source`.
///
/// A well-formed Binding request gets a success response with
/// XOR-MAPPED-ADDRESS, FINGERPRINT when the request carried one, and
/// `software` only when the request carried a SOFTWARE attribute itself.
/// (RFC 3489 clients without the magic cookie are not answered.) A request
/// with unknown comprehension-required attributes gets 420 with
/// UNKNOWN-ATTRIBUTES; a request whose attributes are malformed gets 400; a
/// request for another method gets 400 too (this server only does Binding).
/// Error responses never carry SOFTWARE. Everything else is ignored.
/// Allocation-free; never panics; `out` of 548 bytes always suffices.
///
/// An answer is never larger than it needs to be, because a spoofed source
/// turns a STUN server into a reflector: a bare 20-byte request gets 32
/// bytes back (44 for IPv6), one with FINGERPRINT 40 (52), and the optional
/// SOFTWARE is spent only on a client that spent one on us.
pub fn answer(
    datagram: &[u8],
    source: SocketAddr,
    software: Option<&str>,
    out: &mut [u8],
) -> Result<Answer, EncodeError> {
    let Ok(message) = Message::new_checked(datagram) else {
        return Ok(Answer::Ignore);
    };
    if message.class() != Class::Request {
        return Ok(Answer::Ignore);
    }
    let tid = message.transaction_id();
    let error_type = MessageType::new(message.method(), Class::ErrorResponse);
    let repr = match Repr::parse(&message) {
        Ok(r) => r,
        Err(_) => {
            return reply(
                out,
                error_type,
                tid,
                None,
                &[Attribute::ErrorCode(ErrorCode::new(400, "Bad Request"))],
                true,
            );
        }
    };
    let fingerprint = repr.has_fingerprint();
    let software = software.filter(|_| repr.software.is_some());
    if fingerprint && repr.verify_fingerprint().is_err() {
        // Not for us, or damaged: a STUN server stays silent (RFC 8489 section 7.3).
        return Ok(Answer::Ignore);
    }
    if !repr.unknown_required.is_empty() {
        let unknown: &[AttributeType] = &repr.unknown_required;
        return reply(
            out,
            error_type,
            tid,
            None,
            &[
                Attribute::ErrorCode(ErrorCode::new(420, "Unknown Attribute")),
                Attribute::UnknownAttributes(UnknownAttributes::new(unknown)),
            ],
            fingerprint,
        );
    }
    if message.method() != Method::BINDING {
        return reply(
            out,
            error_type,
            tid,
            None,
            &[Attribute::ErrorCode(ErrorCode::new(400, "Bad Request"))],
            fingerprint,
        );
    }
    reply(
        out,
        MessageType::BINDING_SUCCESS,
        tid,
        software,
        &[Attribute::XorMappedAddress(source)],
        fingerprint,
    )
}

fn reply(
    out: &mut [u8],
    message_type: MessageType,
    tid: super::TransactionId,
    software: Option<&str>,
    attributes: &[Attribute<'_>],
    fingerprint: bool,
) -> Result<Answer, EncodeError> {
    let mut b = MessageBuilder::new(out, message_type, tid);
    for a in attributes {
        b.add(a);
    }
    if let Some(s) = software {
        b.add(&Attribute::Software(s));
    }
    if fingerprint {
        b.add_fingerprint();
    }
    b.finish().map(Answer::Reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::{AttributeType, TransactionId};

    fn request(attrs: &[Attribute<'_>], fingerprint: bool, buf: &mut [u8]) -> usize {
        let mut b = MessageBuilder::new(buf, MessageType::BINDING_REQUEST, TransactionId([4; 12]));
        for a in attrs {
            b.add(a);
        }
        if fingerprint {
            b.add_fingerprint();
        }
        b.finish().unwrap()
    }

    fn parse(bytes: &[u8]) -> Repr<'_> {
        Repr::parse(&Message::new_checked(bytes).unwrap()).unwrap()
    }

    #[test]
    fn binding_request_gets_xor_mapped_address() {
        let mut req = [0u8; 64];
        let mut out = [0u8; 548];
        let source: SocketAddr = "198.51.100.7:40000".parse().unwrap();
        for fp in [false, true] {
            for theirs in [None, Some("probe")] {
                let attrs: &[Attribute<'_>] = match theirs {
                    Some(s) => &[Attribute::Software(s)],
                    None => &[],
                };
                let n = request(attrs, fp, &mut req);
                let Ok(Answer::Reply(m)) = answer(&req[..n], source, Some("scream-ice"), &mut out)
                else {
                    panic!("no reply")
                };
                let r = parse(&out[..m]);
                assert_eq!(r.message_type, MessageType::BINDING_SUCCESS);
                assert_eq!(r.transaction_id, TransactionId([4; 12]));
                assert_eq!(r.xor_mapped_address, Some(source));
                assert_eq!(r.software, theirs.map(|_| "scream-ice"));
                assert_eq!(r.has_fingerprint(), fp);
                if fp {
                    assert_eq!(r.verify_fingerprint(), Ok(()));
                }
            }
        }
    }

    /// The reflection bound of the rustdoc: what a spoofed bare request
    /// makes us send, per family, with and without FINGERPRINT.
    #[test]
    fn answers_are_no_larger_than_needed() {
        let mut req = [0u8; 64];
        let mut out = [0u8; 548];
        for (source, bare, with_fp) in [("198.51.100.7:40000", 32, 40), ("[2001:db8::7]:9", 44, 52)]
        {
            let source: SocketAddr = source.parse().unwrap();
            for (fp, expected) in [(false, bare), (true, with_fp)] {
                let n = request(&[], fp, &mut req);
                assert_eq!(
                    answer(&req[..n], source, Some("scream-ice/0.1.0"), &mut out),
                    Ok(Answer::Reply(expected)),
                    "{source} fingerprint {fp}"
                );
            }
        }
        // An error answer carries no SOFTWARE either.
        let n = request(
            &[Attribute::Other {
                typ: AttributeType(0x7001),
                value: b"?",
            }],
            false,
            &mut req,
        );
        let src = "192.0.2.1:1".parse().unwrap();
        let Ok(Answer::Reply(m)) = answer(&req[..n], src, Some("scream-ice/0.1.0"), &mut out)
        else {
            panic!("no reply")
        };
        assert_eq!(parse(&out[..m]).software, None);
    }

    #[test]
    fn unknown_required_attribute_gets_420() {
        let mut req = [0u8; 64];
        let mut out = [0u8; 548];
        let n = request(
            &[Attribute::Other {
                typ: AttributeType(0x7001),
                value: b"?",
            }],
            true,
            &mut req,
        );
        let Ok(Answer::Reply(m)) = answer(
            &req[..n],
            "[2001:db8::1]:9".parse().unwrap(),
            None,
            &mut out,
        ) else {
            panic!("no reply")
        };
        let r = parse(&out[..m]);
        assert_eq!(r.message_type, MessageType::BINDING_ERROR);
        assert_eq!(r.error_code.map(|e| e.code), Some(420));
        assert_eq!(
            r.unknown_attributes
                .map(|u| u.iter().collect::<heapless::Vec<_, 4>>()),
            Some(heapless::Vec::from_slice(&[AttributeType(0x7001)]).unwrap())
        );
    }

    #[test]
    fn malformed_attribute_gets_400_and_noise_is_ignored() {
        let mut req = [0u8; 64];
        let mut out = [0u8; 548];
        let n = request(&[Attribute::Priority(1)], false, &mut req);
        req[23] = 3; // PRIORITY length 3: malformed (padding still aligned)
        let Ok(Answer::Reply(m)) =
            answer(&req[..n], "192.0.2.1:1".parse().unwrap(), None, &mut out)
        else {
            panic!("no reply")
        };
        assert_eq!(parse(&out[..m]).error_code.map(|e| e.code), Some(400));

        let src = "192.0.2.1:1".parse().unwrap();
        assert_eq!(answer(b"hello", src, None, &mut out), Ok(Answer::Ignore));
        let n = request(&[], true, &mut req);
        req[0] = 0x01; // a success response, not a request
        req[1] = 0x01;
        assert_eq!(answer(&req[..n], src, None, &mut out), Ok(Answer::Ignore));
        let n = request(&[], true, &mut req);
        req[n - 1] ^= 1; // bad fingerprint
        assert_eq!(answer(&req[..n], src, None, &mut out), Ok(Answer::Ignore));
    }
}
