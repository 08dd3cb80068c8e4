//! The core's STUN codec against stun-rs 0.1.11, in the same criterion
//! groups on the same bytes, so each ratio comes out of one run:
//!
//! - `decode`: RFC 5769 section 2.1's binding request (SOFTWARE, PRIORITY,
//!   ICE-CONTROLLED, USERNAME, MESSAGE-INTEGRITY, FINGERPRINT) from bytes to
//!   typed values. stun-rs decodes without a validation context.
//! - `verify`: the same, plus MESSAGE-INTEGRITY and FINGERPRINT checks. Ours
//!   is `Message::new_checked` + `Repr::parse` + `verify_integrity` +
//!   `verify_fingerprint` with an `IntegrityKey` made once outside the loop
//!   (the agent keeps one per session); stun-rs uses its decoder with a key
//!   context and validation, also made once outside the loop.
//! - `build`: a binding success response with XOR-MAPPED-ADDRESS,
//!   MESSAGE-INTEGRITY and FINGERPRINT into a buffer, keys made once outside
//!   the loop. `stun-rs` builds the `StunMessage` and encodes it (its real
//!   path: a response is a new message); `stun-rs-encode-only` encodes a
//!   message built once, to show where its time goes.
//!
//! Before timing, each group asserts that both sides produce or accept the
//! same message. Run: `cargo bench -p scream-ice-tests --bench stun`.

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{Criterion, criterion_group, criterion_main};
use scream_ice_core::stun::{
    Attribute, IntegrityKey, Message, MessageBuilder, MessageType, Repr, TransactionId,
};
use stun_rs::attributes::ice::{IceControlled, Priority};
use stun_rs::attributes::stun::{
    Fingerprint, MessageIntegrity, Software, UserName, XorMappedAddress,
};
use stun_rs::methods::BINDING;
use stun_rs::{
    DecoderContextBuilder, HMACKey, MessageClass, MessageDecoderBuilder, MessageEncoderBuilder,
    StunMessage, StunMessageBuilder,
};

/// Password of RFC 5769 sections 2.1-2.3.
const PASSWORD: &str = "VOkJxbRl1RmTxUk/WvJxBt";

/// RFC 5769 section 2.1: sample request (padding is 0x20).
#[rustfmt::skip]
const SAMPLE_REQUEST: [u8; 108] = [
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

/// Transaction id of the build group (RFC 5769's).
const TID: [u8; 12] = [
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
];

/// The values a decode must find in SAMPLE_REQUEST.
const SOFTWARE: &str = "STUN test client";
const USERNAME: &str = "evtj:h6vY";
const PRIORITY: u32 = 0x6e00_01ff;
const ICE_CONTROLLED: u64 = 0x932f_f9b1_5126_3b36;

/// Our decode: header check and one pass over the attributes. The `Repr`
/// is used in place (as a caller's `match` would), not moved out.
#[inline(never)]
fn ours_decode(bytes: &[u8]) -> bool {
    let Ok(message) = Message::new_checked(bytes) else {
        return false;
    };
    match Repr::parse(&message) {
        Ok(repr) => {
            black_box(&repr);
            true
        }
        Err(_) => false,
    }
}

/// Our verify: decode, then MESSAGE-INTEGRITY and FINGERPRINT.
#[inline(never)]
fn ours_verify(bytes: &[u8], key: &IntegrityKey) -> bool {
    let Ok(message) = Message::new_checked(bytes) else {
        return false;
    };
    match Repr::parse(&message) {
        Ok(repr) => {
            black_box(&repr);
            repr.verify_integrity(key).is_ok() && repr.verify_fingerprint().is_ok()
        }
        Err(_) => false,
    }
}

/// The same path, keeping the `Repr` for the checks outside the loop.
fn ours_verified<'a>(bytes: &'a [u8], key: &IntegrityKey) -> Option<Repr<'a>> {
    let repr = Repr::parse(&Message::new_checked(bytes).ok()?).ok()?;
    repr.verify_integrity(key).ok()?;
    repr.verify_fingerprint().ok()?;
    Some(repr)
}

/// Our build: success response with XOR-MAPPED-ADDRESS, integrity, fingerprint.
#[inline(never)]
fn ours_build(buf: &mut [u8], tid: [u8; 12], addr: SocketAddr, key: &IntegrityKey) -> usize {
    let mut b = MessageBuilder::new(buf, MessageType::BINDING_SUCCESS, TransactionId(tid));
    b.add(&Attribute::XorMappedAddress(addr))
        .add_message_integrity(key)
        .add_fingerprint();
    b.finish().unwrap_or(0)
}

/// stun-rs's message for the build group.
fn stun_rs_response(tid: [u8; 12], addr: SocketAddr, key: &HMACKey) -> StunMessage {
    StunMessageBuilder::new(BINDING, MessageClass::SuccessResponse)
        .with_transaction_id(stun_rs::TransactionId::from(tid))
        .with_attribute(XorMappedAddress::from(addr))
        .with_attribute(MessageIntegrity::new(key.clone()))
        .with_attribute(Fingerprint::default())
        .build()
}

/// The four values the decode groups compare, as stun-rs reports them.
fn stun_rs_values(msg: &StunMessage) -> (String, String, u32, u64) {
    let software = msg.get::<Software>().expect("SOFTWARE");
    let username = msg.get::<UserName>().expect("USERNAME");
    let priority = msg.get::<Priority>().expect("PRIORITY");
    let controlled = msg.get::<IceControlled>().expect("ICE-CONTROLLED");
    (
        software.expect_software().as_str().to_owned(),
        username.expect_user_name().as_str().to_owned(),
        priority.expect_priority().as_u32(),
        controlled.expect_ice_controlled().as_u64(),
    )
}

fn expected_values() -> (String, String, u32, u64) {
    (
        SOFTWARE.to_owned(),
        USERNAME.to_owned(),
        PRIORITY,
        ICE_CONTROLLED,
    )
}

fn ours_values(repr: &Repr<'_>) -> (String, String, u32, u64) {
    (
        repr.software.expect("SOFTWARE").to_owned(),
        repr.username.expect("USERNAME").to_owned(),
        repr.priority.expect("PRIORITY"),
        repr.ice_controlled.expect("ICE-CONTROLLED"),
    )
}

fn decode(c: &mut Criterion) {
    let bytes = SAMPLE_REQUEST;
    let plain = MessageDecoderBuilder::default().build();

    // Same message, same values, on both sides.
    assert!(ours_decode(&bytes));
    let repr = Repr::parse(&Message::new_checked(&bytes[..]).expect("header")).expect("ours");
    assert_eq!(ours_values(&repr), expected_values());
    let (msg, size) = plain.decode(&bytes).expect("stun-rs decodes");
    assert_eq!(size, bytes.len());
    assert_eq!(stun_rs_values(&msg), expected_values());

    let mut g = c.benchmark_group("decode");
    g.bench_function("ours", |b| {
        b.iter(|| black_box(ours_decode(black_box(&bytes[..]))))
    });
    g.bench_function("stun-rs", |b| {
        b.iter(|| black_box(plain.decode(black_box(&bytes[..]))))
    });
    g.finish();
}

fn verify(c: &mut Criterion) {
    let bytes = SAMPLE_REQUEST;
    let key = IntegrityKey::short_term(PASSWORD.as_bytes());
    let ctx = DecoderContextBuilder::default()
        .with_key(HMACKey::new_short_term(PASSWORD).expect("stun-rs key"))
        .with_validation()
        .build();
    let validating = MessageDecoderBuilder::default().with_context(ctx).build();

    // Both accept the message and report the same values; both reject it
    // when one bit of the MAC is flipped (so validation really runs).
    assert!(ours_verify(&bytes, &key));
    let repr = ours_verified(&bytes, &key).expect("ours verifies");
    assert_eq!(ours_values(&repr), expected_values());
    let (msg, _) = validating.decode(&bytes).expect("stun-rs verifies");
    assert_eq!(stun_rs_values(&msg), expected_values());
    let mut bad = bytes;
    bad[84] ^= 1; // inside the MESSAGE-INTEGRITY value
    assert!(!ours_verify(&bad, &key));
    assert!(validating.decode(&bad).is_err());

    let mut g = c.benchmark_group("verify");
    g.bench_function("ours", |b| {
        b.iter(|| black_box(ours_verify(black_box(&bytes[..]), black_box(&key))))
    });
    g.bench_function("stun-rs", |b| {
        b.iter(|| black_box(validating.decode(black_box(&bytes[..]))))
    });
    g.finish();
}

fn build(c: &mut Criterion) {
    let addr: SocketAddr = "192.0.2.1:32853".parse().expect("address");
    let key = IntegrityKey::short_term(PASSWORD.as_bytes());
    let rs_key = HMACKey::new_short_term(PASSWORD).expect("stun-rs key");
    let encoder = MessageEncoderBuilder::default().build();

    // Byte-identical output (RFC 5769 2.2 without SOFTWARE, zero padding),
    // and it verifies on both sides.
    let mut ours_buf = [0u8; 128];
    let n = ours_build(&mut ours_buf, TID, addr, &key);
    assert_eq!(n, 20 + 12 + 24 + 8);
    let mut rs_buf = [0u8; 128];
    let m = encoder
        .encode(&mut rs_buf, &stun_rs_response(TID, addr, &rs_key))
        .expect("stun-rs encodes");
    assert_eq!(ours_buf[..n], rs_buf[..m], "the two encoders disagree");
    let repr = ours_verified(&ours_buf[..n], &key).expect("ours verifies its own");
    assert_eq!(repr.xor_mapped_address, Some(addr));

    let prebuilt = stun_rs_response(TID, addr, &rs_key);

    let mut g = c.benchmark_group("build");
    g.bench_function("ours", |b| {
        let mut buf = [0u8; 128];
        b.iter(|| {
            let n = ours_build(
                black_box(&mut buf[..]),
                black_box(TID),
                black_box(addr),
                black_box(&key),
            );
            black_box(&buf);
            n
        })
    });
    g.bench_function("stun-rs", |b| {
        let mut buf = [0u8; 128];
        b.iter(|| {
            let msg = stun_rs_response(black_box(TID), black_box(addr), black_box(&rs_key));
            let n = encoder.encode(black_box(&mut buf[..]), &msg);
            black_box(&buf);
            n
        })
    });
    g.bench_function("stun-rs-encode-only", |b| {
        let mut buf = [0u8; 128];
        b.iter(|| {
            let n = encoder.encode(black_box(&mut buf[..]), black_box(&prebuilt));
            black_box(&buf);
            n
        })
    });
    g.finish();
}

criterion_group!(benches, decode, verify, build);
criterion_main!(benches);
