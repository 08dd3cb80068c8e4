//! The test vectors of RFC 5769, byte for byte, shared by the unit tests and
//! the conformance runner.

/// Password of the short-term vectors (sections 2.1-2.3).
pub const SHORT_TERM_PASSWORD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";

/// Transaction id of sections 2.1-2.3.
pub const TRANSACTION_ID: [u8; 12] = [
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
];

/// RFC 5769 section 2.1: sample request (SOFTWARE, PRIORITY, ICE-CONTROLLED,
/// USERNAME "evtj:h6vY", MESSAGE-INTEGRITY, FINGERPRINT; padding is 0x20).
#[rustfmt::skip]
pub const SAMPLE_REQUEST: [u8; 108] = [
    0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42,
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    0x80, 0x22, 0x00, 0x10, // SOFTWARE "STUN test client"
    0x53, 0x54, 0x55, 0x4e, 0x20, 0x74, 0x65, 0x73, 0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74,
    0x00, 0x24, 0x00, 0x04, // PRIORITY
    0x6e, 0x00, 0x01, 0xff,
    0x80, 0x29, 0x00, 0x08, // ICE-CONTROLLED
    0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36,
    0x00, 0x06, 0x00, 0x09, // USERNAME "evtj:h6vY" + 3 bytes padding
    0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20, 0x20,
    0x00, 0x08, 0x00, 0x14, // MESSAGE-INTEGRITY
    0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e,
    0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49, 0xc1, 0xb5, 0x71, 0xa2,
    0x80, 0x28, 0x00, 0x04, // FINGERPRINT
    0xe5, 0x7a, 0x3b, 0xcf,
];

/// RFC 5769 section 2.2: sample IPv4 response (XOR-MAPPED-ADDRESS 192.0.2.1:32853).
#[rustfmt::skip]
pub const SAMPLE_IPV4_RESPONSE: [u8; 80] = [
    0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42,
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    0x80, 0x22, 0x00, 0x0b, // SOFTWARE "test vector" + 1 byte padding
    0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63, 0x74, 0x6f, 0x72, 0x20,
    0x00, 0x20, 0x00, 0x08, // XOR-MAPPED-ADDRESS
    0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43,
    0x00, 0x08, 0x00, 0x14, // MESSAGE-INTEGRITY
    0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3, 0x8c, 0x74,
    0x89, 0xf9, 0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7,
    0x80, 0x28, 0x00, 0x04, // FINGERPRINT
    0xc0, 0x7d, 0x4c, 0x96,
];

/// RFC 5769 section 2.3: sample IPv6 response
/// (XOR-MAPPED-ADDRESS \[2001:db8:1234:5678:11:2233:4455:6677\]:32853).
#[rustfmt::skip]
pub const SAMPLE_IPV6_RESPONSE: [u8; 92] = [
    0x01, 0x01, 0x00, 0x48, 0x21, 0x12, 0xa4, 0x42,
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    0x80, 0x22, 0x00, 0x0b, // SOFTWARE "test vector" + 1 byte padding
    0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63, 0x74, 0x6f, 0x72, 0x20,
    0x00, 0x20, 0x00, 0x14, // XOR-MAPPED-ADDRESS
    0x00, 0x02, 0xa1, 0x47,
    0x01, 0x13, 0xa9, 0xfa, 0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9,
    0x00, 0x08, 0x00, 0x14, // MESSAGE-INTEGRITY
    0xa3, 0x82, 0x95, 0x4e, 0x4b, 0xe6, 0x7b, 0xf1, 0x17, 0x84,
    0xc9, 0x7c, 0x82, 0x92, 0xc2, 0x75, 0xbf, 0xe3, 0xed, 0x41,
    0x80, 0x28, 0x00, 0x04, // FINGERPRINT
    0xc8, 0xfb, 0x0b, 0x4c,
];

/// Username of section 2.4 ("matrix" in katakana), already SASLprep'd.
pub const LONG_TERM_USERNAME: &str = "\u{30de}\u{30c8}\u{30ea}\u{30c3}\u{30af}\u{30b9}";
/// Password of section 2.4 after SASLprep ("The\u{ad}M\u{aa}tr\u{2168}x" prepared).
pub const LONG_TERM_PASSWORD: &str = "TheMatrIX";
/// Realm of section 2.4.
pub const LONG_TERM_REALM: &str = "example.org";
/// Nonce of section 2.4.
pub const LONG_TERM_NONCE: &str = "f//499k954d6OL34oL9FSTvy64sA";
/// Transaction id of section 2.4.
pub const LONG_TERM_TRANSACTION_ID: [u8; 12] = [
    0x78, 0xad, 0x34, 0x33, 0xc6, 0xad, 0x72, 0xc0, 0x29, 0xda, 0x41, 0x2e,
];

/// RFC 5769 section 2.4: sample request with long-term authentication
/// (USERNAME, NONCE, REALM, MESSAGE-INTEGRITY; zero padding; no FINGERPRINT).
#[rustfmt::skip]
pub const SAMPLE_REQUEST_LONG_TERM: [u8; 116] = [
    0x00, 0x01, 0x00, 0x60, 0x21, 0x12, 0xa4, 0x42,
    0x78, 0xad, 0x34, 0x33, 0xc6, 0xad, 0x72, 0xc0, 0x29, 0xda, 0x41, 0x2e,
    0x00, 0x06, 0x00, 0x12, // USERNAME
    0xe3, 0x83, 0x9e, 0xe3, 0x83, 0x88, 0xe3, 0x83, 0xaa, 0xe3, 0x83, 0x83,
    0xe3, 0x82, 0xaf, 0xe3, 0x82, 0xb9, 0x00, 0x00,
    0x00, 0x15, 0x00, 0x1c, // NONCE
    0x66, 0x2f, 0x2f, 0x34, 0x39, 0x39, 0x6b, 0x39, 0x35, 0x34, 0x64, 0x36, 0x4f, 0x4c,
    0x33, 0x34, 0x6f, 0x4c, 0x39, 0x46, 0x53, 0x54, 0x76, 0x79, 0x36, 0x34, 0x73, 0x41,
    0x00, 0x14, 0x00, 0x0b, // REALM "example.org" + 1 byte padding
    0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x2e, 0x6f, 0x72, 0x67, 0x00,
    0x00, 0x08, 0x00, 0x14, // MESSAGE-INTEGRITY
    0xf6, 0x70, 0x24, 0x65, 0x6d, 0xd6, 0x4a, 0x3e, 0x02, 0xb8,
    0xe0, 0x71, 0x2e, 0x85, 0xc9, 0xa2, 0x8c, 0xa8, 0x96, 0x66,
];

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{
    Attribute, Class, IntegrityKey, Message, MessageBuilder, MessageType, Method, Repr,
    TransactionId,
};

/// Run every RFC 5769 check, reporting each by name: parse, field values,
/// integrity and fingerprint verification, and byte-for-byte rebuilding.
pub(crate) fn check_all(check: &mut dyn FnMut(&'static str, bool)) {
    let short = IntegrityKey::short_term(SHORT_TERM_PASSWORD);
    let tid = TransactionId(TRANSACTION_ID);

    // 2.1 sample request.
    match Message::new_checked(&SAMPLE_REQUEST[..])
        .ok()
        .and_then(|m| Repr::parse(&m).ok())
    {
        Some(r) => {
            check(
                "rfc5769 2.1 type",
                r.message_type == MessageType::BINDING_REQUEST,
            );
            check(
                "rfc5769 2.1 software",
                r.software == Some("STUN test client"),
            );
            check("rfc5769 2.1 priority", r.priority == Some(0x6e00_01ff));
            check(
                "rfc5769 2.1 ice-controlled",
                r.ice_controlled == Some(0x932f_f9b1_5126_3b36),
            );
            check("rfc5769 2.1 username", r.username == Some("evtj:h6vY"));
            check("rfc5769 2.1 integrity", r.verify_integrity(&short).is_ok());
            check("rfc5769 2.1 fingerprint", r.verify_fingerprint().is_ok());
        }
        None => check("rfc5769 2.1 parse", false),
    }
    let mut buf = [0u8; 128];
    let mut b = MessageBuilder::new(&mut buf, MessageType::BINDING_REQUEST, tid);
    b.padding(0x20)
        .add(&Attribute::Software("STUN test client"))
        .add(&Attribute::Priority(0x6e00_01ff))
        .add(&Attribute::IceControlled(0x932f_f9b1_5126_3b36))
        .add(&Attribute::Username("evtj:h6vY"))
        .add_message_integrity(&short)
        .add_fingerprint();
    let n = b.finish().unwrap_or(0);
    check("rfc5769 2.1 rebuild", buf[..n] == SAMPLE_REQUEST[..]);

    // 2.2 and 2.3 responses.
    let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 32853);
    let v6 = SocketAddr::new(
        IpAddr::V6(Ipv6Addr::new(
            0x2001, 0xdb8, 0x1234, 0x5678, 0x11, 0x2233, 0x4455, 0x6677,
        )),
        32853,
    );
    for (name, bytes, addr) in [
        ("rfc5769 2.2", &SAMPLE_IPV4_RESPONSE[..], v4),
        ("rfc5769 2.3", &SAMPLE_IPV6_RESPONSE[..], v6),
    ] {
        match Message::new_checked(bytes)
            .ok()
            .and_then(|m| Repr::parse(&m).ok())
        {
            Some(r) => check(
                name,
                r.message_type == MessageType::new(Method::BINDING, Class::SuccessResponse)
                    && r.software == Some("test vector")
                    && r.xor_mapped_address == Some(addr)
                    && r.verify_integrity(&short).is_ok()
                    && r.verify_fingerprint().is_ok(),
            ),
            None => check(name, false),
        }
        let mut buf = [0u8; 128];
        let mut b = MessageBuilder::new(&mut buf, MessageType::BINDING_SUCCESS, tid);
        b.padding(0x20)
            .add(&Attribute::Software("test vector"))
            .add(&Attribute::XorMappedAddress(addr))
            .add_message_integrity(&short)
            .add_fingerprint();
        let n = b.finish().unwrap_or(0);
        check(name, buf[..n] == *bytes);
    }

    // 2.4 long-term credentials.
    let long = IntegrityKey::long_term_md5(
        LONG_TERM_USERNAME.as_bytes(),
        LONG_TERM_REALM.as_bytes(),
        LONG_TERM_PASSWORD.as_bytes(),
    );
    match Message::new_checked(&SAMPLE_REQUEST_LONG_TERM[..])
        .ok()
        .and_then(|m| Repr::parse(&m).ok())
    {
        Some(r) => check(
            "rfc5769 2.4",
            r.username == Some(LONG_TERM_USERNAME)
                && r.realm == Some(LONG_TERM_REALM)
                && r.nonce == Some(LONG_TERM_NONCE)
                && r.verify_integrity(&long).is_ok()
                && !r.has_fingerprint(),
        ),
        None => check("rfc5769 2.4 parse", false),
    }
    let mut buf = [0u8; 128];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::BINDING_REQUEST,
        TransactionId(LONG_TERM_TRANSACTION_ID),
    );
    b.add(&Attribute::Username(LONG_TERM_USERNAME))
        .add(&Attribute::Nonce(LONG_TERM_NONCE))
        .add(&Attribute::Realm(LONG_TERM_REALM))
        .add_message_integrity(&long);
    let n = b.finish().unwrap_or(0);
    check(
        "rfc5769 2.4 rebuild",
        buf[..n] == SAMPLE_REQUEST_LONG_TERM[..],
    );
}
