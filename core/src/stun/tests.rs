//! Tests of the STUN codec: RFC 5769 vectors, error paths, builder limits,
//! and property tests (round trips, never panicking on any bytes).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::string::String;
use std::vec;
use std::vec::Vec;

use proptest::prelude::*;

use super::vectors::*;
use super::*;

fn repr(bytes: &[u8]) -> Repr<'_> {
    Repr::parse(&Message::new_checked(bytes).expect("header")).expect("attributes")
}

#[test]
fn rfc5769_vectors() {
    let mut failures = Vec::new();
    let mut passed = 0;
    check_all(&mut |name, ok| {
        if ok {
            passed += 1;
        } else {
            failures.push(name);
        }
    });
    assert!(failures.is_empty(), "failed: {failures:?}");
    assert_eq!(passed, 14);
}

#[test]
fn wrong_password_flipped_byte_truncation_fail_distinctly() {
    // Wrong password: integrity mismatch, fingerprint still fine.
    let r = repr(&SAMPLE_REQUEST);
    let wrong = IntegrityKey::short_term(b"VOkJxbRl1RmTxUk/WvJxBu");
    assert_eq!(r.verify_integrity(&wrong), Err(IntegrityError::Mismatch));
    assert_eq!(r.verify_fingerprint(), Ok(()));

    // One flipped bit in SOFTWARE: the fingerprint catches it first, and the
    // integrity check fails as well.
    let mut flipped = SAMPLE_REQUEST;
    flipped[30] ^= 0x01;
    let r = repr(&flipped);
    assert_eq!(r.verify_fingerprint(), Err(FingerprintError::Mismatch));
    let key = IntegrityKey::short_term(SHORT_TERM_PASSWORD);
    assert_eq!(r.verify_integrity(&key), Err(IntegrityError::Mismatch));

    // Truncated: rejected before any attribute is read.
    assert_eq!(
        Message::new_checked(&SAMPLE_REQUEST[..100]).err(),
        Some(ParseError::Truncated)
    );
    assert_eq!(
        Message::new_checked(&SAMPLE_REQUEST[..19]).err(),
        Some(ParseError::Truncated)
    );
    // Cut to a shorter but aligned length with the header fixed up: the
    // message parses, and then the integrity/fingerprint are missing.
    let mut cut = [0u8; 76];
    cut.copy_from_slice(&SAMPLE_REQUEST[..76]);
    cut[3] = 56;
    let r = repr(&cut);
    assert_eq!(r.verify_fingerprint(), Err(FingerprintError::Missing));
    assert_eq!(r.verify_integrity(&key), Err(IntegrityError::Missing));
}

#[test]
fn header_errors() {
    let mut m = SAMPLE_IPV4_RESPONSE;
    m[0] |= 0x80;
    assert_eq!(
        Message::new_checked(&m[..]).err(),
        Some(ParseError::NotStun)
    );
    let mut m = SAMPLE_IPV4_RESPONSE;
    m[4] = 0;
    assert_eq!(
        Message::new_checked(&m[..]).err(),
        Some(ParseError::BadMagicCookie)
    );
    let mut m = SAMPLE_IPV4_RESPONSE;
    m[3] -= 1;
    assert_eq!(
        Message::new_checked(&m[..]).err(),
        Some(ParseError::UnalignedLength)
    );
    let mut long = [0u8; 84];
    long[..80].copy_from_slice(&SAMPLE_IPV4_RESPONSE);
    assert_eq!(
        Message::new_checked(&long[..]).err(),
        Some(ParseError::TrailingBytes)
    );
    assert_eq!(message_len(&long), Some(80));
    assert_eq!(message_len(&long[..19]), None);
    let mut no_cookie = SAMPLE_IPV4_RESPONSE;
    no_cookie[5] = 0;
    assert_eq!(message_len(&no_cookie), None);
}

#[test]
fn message_type_bits() {
    assert_eq!(MessageType::BINDING_REQUEST.to_u16(), 0x0001);
    assert_eq!(MessageType::BINDING_INDICATION.to_u16(), 0x0011);
    assert_eq!(MessageType::BINDING_SUCCESS.to_u16(), 0x0101);
    assert_eq!(MessageType::BINDING_ERROR.to_u16(), 0x0111);
    // Allocate (0x003) error response is 0x0113; ChannelBind success 0x0109.
    assert_eq!(
        MessageType::new(Method::ALLOCATE, Class::ErrorResponse).to_u16(),
        0x0113
    );
    assert_eq!(
        MessageType::new(Method::CHANNEL_BIND, Class::SuccessResponse).to_u16(),
        0x0109
    );
    for raw in 0..=0x3fffu16 {
        let t = MessageType::from_u16(raw).expect("14 bits");
        assert_eq!(t.to_u16(), raw);
    }
    assert_eq!(MessageType::from_u16(0x4001), None);
    assert_eq!(Method::new(0x1000), None);
}

#[test]
fn long_term_sha256_and_userhash() {
    // RFC 8489 section 9.2.2: SHA-256 key; check that a message signed with
    // it verifies with it and not with the MD5 key of the same credential.
    let u = LONG_TERM_USERNAME.as_bytes();
    let r = LONG_TERM_REALM.as_bytes();
    let p = LONG_TERM_PASSWORD.as_bytes();
    let sha = IntegrityKeySha256::long_term_sha256(u, r, p);
    let md5 = IntegrityKeySha256::long_term_md5(u, r, p);
    let hash = userhash(u, r);
    let mut buf = [0u8; 256];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::BINDING_REQUEST,
        TransactionId([1; 12]),
    );
    b.add(&Attribute::Userhash(&hash))
        .add(&Attribute::Nonce(LONG_TERM_NONCE))
        .add(&Attribute::Realm(LONG_TERM_REALM))
        .add(&Attribute::PasswordAlgorithm(PasswordAlgorithm {
            algorithm: PasswordAlgorithm::SHA256,
            parameters: &[],
        }))
        .add_message_integrity_sha256(&sha)
        .add_fingerprint();
    let n = b.finish().unwrap();
    let rp = repr(&buf[..n]);
    assert_eq!(rp.userhash, Some(&hash));
    assert_eq!(rp.verify_integrity_sha256(&sha), Ok(()));
    assert_eq!(
        rp.verify_integrity_sha256(&md5),
        Err(IntegrityError::Mismatch)
    );
    assert_eq!(
        rp.verify_integrity(&IntegrityKey::long_term_sha256(u, r, p)),
        Err(IntegrityError::Missing)
    );
    assert_eq!(rp.verify_fingerprint(), Ok(()));
}

#[test]
fn builder_reports_required_size_for_every_short_buffer() {
    let key = IntegrityKey::short_term(SHORT_TERM_PASSWORD);
    let build = |buf: &mut [u8]| {
        let mut b = MessageBuilder::new(buf, MessageType::BINDING_SUCCESS, TransactionId([9; 12]));
        b.add(&Attribute::XorMappedAddress(
            "[2001:db8::1]:4000".parse().unwrap(),
        ))
        .add(&Attribute::Software("scream-ice"))
        .add_message_integrity(&key)
        .add_fingerprint();
        b.finish()
    };
    let mut big = [0u8; 256];
    let full = build(&mut big).unwrap();
    assert_eq!(full, 20 + 24 + 16 + 24 + 8);
    for len in 0..full {
        let mut small = std::vec![0u8; len];
        assert_eq!(
            build(&mut small),
            Err(EncodeError::InsufficientSize { required: full }),
            "buffer of {len}"
        );
    }
    let mut exact = std::vec![0u8; full];
    assert_eq!(build(&mut exact), Ok(full));
    assert_eq!(&exact[..], &big[..full]);
}

#[test]
fn builder_enforces_rfc_limits_and_order() {
    let key = IntegrityKey::short_term(b"pw");
    let mut buf = [0u8; 2048];
    let tid = TransactionId([0; 12]);

    let name513: String = "u".repeat(MAX_USERNAME_LEN);
    let mut b = MessageBuilder::new(&mut buf, MessageType::BINDING_REQUEST, tid);
    b.add(&Attribute::Username(&name513));
    assert_eq!(b.finish(), Ok(20 + 4 + 516));
    assert_eq!(repr(&buf[..540]).username, Some(&name513[..]));

    let name514: String = "u".repeat(MAX_USERNAME_LEN + 1);
    let mut b = MessageBuilder::new(&mut buf, MessageType::BINDING_REQUEST, tid);
    b.add(&Attribute::Username(&name514));
    assert_eq!(
        b.finish(),
        Err(EncodeError::InvalidAttribute(AttributeError::TooLong(
            AttributeType::USERNAME
        )))
    );

    let mut b = MessageBuilder::new(&mut buf, MessageType::BINDING_ERROR, tid);
    b.add(&Attribute::ErrorCode(ErrorCode::new(700, "nope")));
    assert_eq!(
        b.finish(),
        Err(EncodeError::InvalidAttribute(AttributeError::BadErrorCode))
    );

    let mut b = MessageBuilder::new(&mut buf, MessageType::BINDING_REQUEST, tid);
    b.add(&Attribute::Fingerprint(1));
    assert_eq!(
        b.finish(),
        Err(EncodeError::ComputedAttribute(AttributeType::FINGERPRINT))
    );

    let mut b = MessageBuilder::new(&mut buf, MessageType::BINDING_REQUEST, tid);
    b.add_message_integrity(&key).add(&Attribute::Priority(1));
    assert_eq!(
        b.finish(),
        Err(EncodeError::AfterIntegrity(AttributeType::PRIORITY))
    );

    let mut b = MessageBuilder::new(&mut buf, MessageType::BINDING_REQUEST, tid);
    b.add_fingerprint().add_message_integrity(&key);
    assert_eq!(
        b.finish(),
        Err(EncodeError::AfterIntegrity(
            AttributeType::MESSAGE_INTEGRITY
        ))
    );

    let blob = std::vec![0u8; 40_000];
    let mut huge = std::vec![0u8; 100_000];
    let mut b = MessageBuilder::new(&mut huge, MessageType::BINDING_REQUEST, tid);
    let other = Attribute::Other {
        typ: AttributeType(0x8fff),
        value: &blob,
    };
    b.add(&other).add(&other);
    assert_eq!(b.finish(), Err(EncodeError::MessageTooLong));
}

#[test]
fn ordering_rules_on_receive() {
    let key = IntegrityKey::short_term(b"secret-password-of-22+");
    let tid = TransactionId([3; 12]);
    let mut buf = [0u8; 256];
    let mut b = MessageBuilder::new(&mut buf, MessageType::BINDING_REQUEST, tid);
    b.add(&Attribute::Username("a:b"))
        .add(&Attribute::Other {
            typ: AttributeType(0x7777),
            value: b"x",
        })
        .add(&Attribute::Other {
            typ: AttributeType(0xc001),
            value: b"optional",
        })
        .add(&Attribute::Priority(5))
        .add(&Attribute::Priority(6))
        .add_message_integrity(&key);
    let mi_end = b.len();
    let n = b.finish().unwrap();
    assert_eq!(n, mi_end);
    // Append, by hand, an attribute after MESSAGE-INTEGRITY (to be ignored),
    // then FINGERPRINT, then one after FINGERPRINT (an error).
    let mut m = std::vec::Vec::from(&buf[..n]);
    m.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 0, 0, 0, 9]);
    let len = (m.len() - 20 + 8) as u16;
    m[2..4].copy_from_slice(&len.to_be_bytes());
    let crc = crc32fast::hash(&m) ^ FINGERPRINT_XOR;
    m.extend_from_slice(&[0x80, 0x28, 0x00, 0x04]);
    m.extend_from_slice(&crc.to_be_bytes());
    let r = repr(&m);
    assert_eq!(
        r.priority,
        Some(5),
        "first instance wins; the one after MI is ignored"
    );
    assert_eq!(r.unknown_required.as_slice(), &[AttributeType(0x7777)]);
    assert_eq!(r.verify_integrity(&key), Ok(()));
    assert_eq!(r.verify_fingerprint(), Ok(()));

    m.extend_from_slice(&[0x80, 0x22, 0x00, 0x00]);
    let len = (m.len() - 20) as u16;
    m[2..4].copy_from_slice(&len.to_be_bytes());
    let msg = Message::new_checked(&m[..]).unwrap();
    assert_eq!(
        Repr::parse(&msg).err(),
        Some(AttributeError::AfterFingerprint(AttributeType::SOFTWARE))
    );
}

#[test]
fn attribute_errors() {
    let tid = TransactionId([0; 12]);
    let raw = |typ: u16, value: &'static [u8]| RawAttribute {
        typ: AttributeType(typ),
        value,
        offset: 20,
    };
    let cases: &[(u16, &[u8], AttributeError)] = &[
        (
            0x0020,
            &[0, 1, 0, 0, 1, 2, 3],
            AttributeError::BadLength(AttributeType(0x0020)),
        ),
        (
            0x0020,
            &[0, 3, 0, 0, 1, 2, 3, 4],
            AttributeError::BadAddressFamily(AttributeType(0x0020)),
        ),
        (
            0x0006,
            &[0xff, 0xfe],
            AttributeError::BadUtf8(AttributeType(0x0006)),
        ),
        (
            0x0008,
            &[0; 19],
            AttributeError::BadLength(AttributeType(0x0008)),
        ),
        (
            0x001c,
            &[0; 12],
            AttributeError::BadLength(AttributeType(0x001c)),
        ),
        (
            0x0024,
            &[0; 3],
            AttributeError::BadLength(AttributeType(0x0024)),
        ),
        (
            0x0025,
            &[0],
            AttributeError::BadLength(AttributeType(0x0025)),
        ),
        (0x0009, &[0, 0, 2, 0], AttributeError::BadErrorCode),
        (0x0009, &[0, 0, 4, 100], AttributeError::BadErrorCode),
        (
            0x000a,
            &[0, 1, 0],
            AttributeError::BadLength(AttributeType(0x000a)),
        ),
        (
            0x8002,
            &[0, 1, 0, 4, 0],
            AttributeError::BadLength(AttributeType(0x8002)),
        ),
    ];
    for (typ, value, err) in cases {
        assert_eq!(
            Attribute::parse(raw(*typ, value), &tid),
            Err(*err),
            "type {typ:#06x}"
        );
    }
    // A 420 answer round trip.
    let mut buf = [0u8; 64];
    let unknown = [AttributeType(0x7777), AttributeType(0x0042)];
    let mut b = MessageBuilder::new(&mut buf, MessageType::BINDING_ERROR, tid);
    b.add(&Attribute::ErrorCode(ErrorCode::new(
        420,
        "Unknown Attribute",
    )))
    .add(&Attribute::UnknownAttributes(UnknownAttributes::new(
        &unknown,
    )));
    let n = b.finish().unwrap();
    let r = repr(&buf[..n]);
    assert_eq!(r.error_code, Some(ErrorCode::new(420, "Unknown Attribute")));
    assert_eq!(r.unknown_attributes, Some(UnknownAttributes::new(&unknown)));
}

// ---- property tests -------------------------------------------------------

/// An owned description of an attribute, from which an `Attribute` borrows.
#[derive(Clone, Debug)]
pub(crate) enum Owned {
    Mapped(SocketAddr),
    XorMapped(SocketAddr),
    Alternate(SocketAddr),
    Username(String),
    Realm(String),
    Nonce(String),
    Software(String),
    Domain(String),
    Error(u16, String),
    Unknown(Vec<AttributeType>),
    Algorithms(Vec<(u16, Vec<u8>)>),
    Algorithm(u16, Vec<u8>),
    Userhash([u8; 32]),
    Priority(u32),
    UseCandidate,
    Controlled(u64),
    Controlling(u64),
    Other(u16, Vec<u8>),
}

pub(crate) fn arb_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(a, p)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), p)),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(a, p)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(a)), p)),
    ]
}

pub(crate) fn arb_owned() -> impl Strategy<Value = Owned> {
    let text =
        |max: usize| proptest::string::string_regex(&std::format!("\\PC{{0,{max}}}")).unwrap();
    prop_oneof![
        arb_addr().prop_map(Owned::Mapped),
        arb_addr().prop_map(Owned::XorMapped),
        arb_addr().prop_map(Owned::Alternate),
        text(40)
            .prop_filter("len", |s| s.len() <= MAX_USERNAME_LEN)
            .prop_map(Owned::Username),
        text(40).prop_map(Owned::Realm),
        text(40).prop_map(Owned::Nonce),
        text(40).prop_map(Owned::Software),
        text(20).prop_map(Owned::Domain),
        (300u16..700, text(30)).prop_map(|(c, r)| Owned::Error(c, r)),
        proptest::collection::vec(any::<u16>().prop_map(AttributeType), 0..6)
            .prop_map(Owned::Unknown),
        proptest::collection::vec(
            (any::<u16>(), proptest::collection::vec(any::<u8>(), 0..7)),
            0..4
        )
        .prop_map(Owned::Algorithms),
        (any::<u16>(), proptest::collection::vec(any::<u8>(), 0..7))
            .prop_map(|(a, p)| Owned::Algorithm(a, p)),
        any::<[u8; 32]>().prop_map(Owned::Userhash),
        any::<u32>().prop_map(Owned::Priority),
        Just(Owned::UseCandidate),
        any::<u64>().prop_map(Owned::Controlled),
        any::<u64>().prop_map(Owned::Controlling),
        // Unknown types only (0xc000.. keeps them comprehension-optional and unknown).
        (
            0xc000u16..0xffff,
            proptest::collection::vec(any::<u8>(), 0..40)
        )
            .prop_map(|(t, v)| Owned::Other(t, v)),
    ]
}

pub(crate) fn with_attribute<R>(o: &Owned, f: impl FnOnce(&Attribute<'_>) -> R) -> R {
    let algos: Vec<PasswordAlgorithm<'_>>;
    let attr = match o {
        Owned::Mapped(a) => Attribute::MappedAddress(*a),
        Owned::XorMapped(a) => Attribute::XorMappedAddress(*a),
        Owned::Alternate(a) => Attribute::AlternateServer(*a),
        Owned::Username(s) => Attribute::Username(s),
        Owned::Realm(s) => Attribute::Realm(s),
        Owned::Nonce(s) => Attribute::Nonce(s),
        Owned::Software(s) => Attribute::Software(s),
        Owned::Domain(s) => Attribute::AlternateDomain(s),
        Owned::Error(c, r) => Attribute::ErrorCode(ErrorCode::new(*c, r)),
        Owned::Unknown(t) => Attribute::UnknownAttributes(UnknownAttributes::new(t)),
        Owned::Algorithms(list) => {
            algos = list
                .iter()
                .map(|(a, p)| PasswordAlgorithm {
                    algorithm: *a,
                    parameters: p,
                })
                .collect();
            Attribute::PasswordAlgorithms(PasswordAlgorithms::new(&algos))
        }
        Owned::Algorithm(a, p) => Attribute::PasswordAlgorithm(PasswordAlgorithm {
            algorithm: *a,
            parameters: p,
        }),
        Owned::Userhash(h) => Attribute::Userhash(h),
        Owned::Priority(p) => Attribute::Priority(*p),
        Owned::UseCandidate => Attribute::UseCandidate,
        Owned::Controlled(t) => Attribute::IceControlled(*t),
        Owned::Controlling(t) => Attribute::IceControlling(*t),
        Owned::Other(t, v) => Attribute::Other {
            typ: AttributeType(*t),
            value: v,
        },
    };
    f(&attr)
}

fn build(
    attrs: &[Owned],
    tid: TransactionId,
    key: Option<&IntegrityKey>,
    fp: bool,
    buf: &mut [u8],
) -> usize {
    let mut b = MessageBuilder::new(buf, MessageType::BINDING_REQUEST, tid);
    for a in attrs {
        with_attribute(a, |attr| {
            b.add(attr);
        });
    }
    if let Some(k) = key {
        b.add_message_integrity(k);
    }
    if fp {
        b.add_fingerprint();
    }
    b.finish().expect("fits")
}

/// Damage a message: flip, overwrite, truncate, extend; sometimes fix the
/// header length so the damage reaches the attribute parser.
fn mutate(mut m: Vec<u8>, ops: &[(u16, u8, u8)]) -> Vec<u8> {
    for &(pos, val, kind) in ops {
        if m.is_empty() {
            break;
        }
        let i = usize::from(pos) % m.len();
        match kind % 5 {
            0 => m[i] ^= val | 1,
            1 => m[i] = val,
            2 => m.truncate(i),
            3 => m.extend_from_slice(&[val; 4]),
            _ => {
                if m.len() >= 20 {
                    let len = (m.len() - 20) as u16;
                    m[2..4].copy_from_slice(&len.to_be_bytes());
                }
            }
        }
    }
    m
}

fn exercise(bytes: &[u8]) {
    let key = IntegrityKey::short_term(SHORT_TERM_PASSWORD);
    let _ = message_len(bytes);
    if let Ok(m) = Message::new_checked(bytes) {
        let _ = (
            m.message_type(),
            m.transaction_id(),
            m.length(),
            m.payload(),
        );
        let tid = m.transaction_id();
        for raw in m.attributes() {
            match raw {
                Ok(raw) => {
                    let _ = Attribute::parse(raw, &tid);
                }
                Err(_) => break,
            }
        }
        if let Ok(r) = Repr::parse(&m) {
            let _ = r.verify_integrity(&key);
            let _ = r.verify_integrity_sha256(&IntegrityKeySha256::short_term(SHORT_TERM_PASSWORD));
            let _ = r.verify_fingerprint();
            if let Some(u) = r.unknown_attributes {
                let _ = u.iter().count();
            }
            if let Some(p) = r.password_algorithms {
                let _ = p.iter().count();
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        exercise(&bytes);
    }

    #[test]
    fn never_panics_on_mutated_messages(
        attrs in proptest::collection::vec(arb_owned(), 0..8),
        ops in proptest::collection::vec((any::<u16>(), any::<u8>(), any::<u8>()), 1..6),
        which in 0usize..5,
    ) {
        let base: Vec<u8> = match which {
            0 => SAMPLE_REQUEST.to_vec(),
            1 => SAMPLE_IPV6_RESPONSE.to_vec(),
            2 => SAMPLE_REQUEST_LONG_TERM.to_vec(),
            _ => {
                let mut buf = std::vec![0u8; 4096];
                let key = IntegrityKey::short_term(SHORT_TERM_PASSWORD);
                let n = build(&attrs, TransactionId([5; 12]), Some(&key), true, &mut buf);
                buf.truncate(n);
                buf
            }
        };
        exercise(&mutate(base, &ops));
    }

    #[test]
    fn builder_output_parses_back_identically(
        attrs in proptest::collection::vec(arb_owned(), 0..10),
        tid in any::<[u8; 12]>(),
        password in proptest::collection::vec(any::<u8>(), 0..80),
        fp in any::<bool>(),
    ) {
        let key = IntegrityKey::short_term(&password);
        let mut buf = std::vec![0u8; 8192];
        let n = build(&attrs, TransactionId(tid), Some(&key), fp, &mut buf);
        let m = Message::new_checked(&buf[..n]).unwrap();
        prop_assert_eq!(m.transaction_id(), TransactionId(tid));
        let parsed: Vec<_> = m.attributes().map(|r| r.unwrap()).collect();
        prop_assert_eq!(parsed.len(), attrs.len() + 1 + usize::from(fp));
        for (raw, owned) in parsed.iter().zip(&attrs) {
            let got = Attribute::parse(*raw, &TransactionId(tid)).unwrap();
            with_attribute(owned, |want| assert_eq!(&got, want));
        }
        let r = Repr::parse(&m).unwrap();
        prop_assert_eq!(r.verify_integrity(&key), Ok(()));
        prop_assert_eq!(r.verify_fingerprint(), if fp { Ok(()) } else { Err(FingerprintError::Missing) });
        let mut other = password.clone();
        other.push(b'x');
        prop_assert_eq!(r.verify_integrity(&IntegrityKey::short_term(&other)), Err(IntegrityError::Mismatch));
    }

    #[test]
    fn any_single_bit_flip_is_detected(bit in 0usize..(108 * 8)) {
        let mut m = SAMPLE_REQUEST;
        m[bit / 8] ^= 1 << (bit % 8);
        let key = IntegrityKey::short_term(SHORT_TERM_PASSWORD);
        let ok = Message::new_checked(&m[..])
            .ok()
            .and_then(|msg| Repr::parse(&msg).ok())
            .is_some_and(|r| r.verify_fingerprint().is_ok() && r.verify_integrity(&key).is_ok());
        prop_assert!(!ok, "bit {} flipped went unnoticed", bit);
    }
}
