//! Fuzz the STUN parser: header check, attribute walk, typed attributes,
//! the one-pass `Repr`, and both integrity checks. Any panic is a bug. When
//! a message parses, rebuilding its attributes must parse back to the same
//! values.
#![no_main]
use libfuzzer_sys::fuzz_target;
use scream_ice_core::stun::{
    Attribute, IntegrityKey, IntegrityKeySha256, Message, MessageBuilder, Repr, message_len,
};

fuzz_target!(|data: &[u8]| {
    let _ = message_len(data);
    let Ok(msg) = Message::new_checked(data) else {
        return;
    };
    let tid = msg.transaction_id();
    let key = IntegrityKey::short_term(b"VOkJxbRl1RmTxUk/WvJxBt");
    if let Ok(repr) = Repr::parse(&msg) {
        let _ = repr.verify_integrity(&key);
        let _ = repr
            .verify_integrity_sha256(&IntegrityKeySha256::short_term(b"VOkJxbRl1RmTxUk/WvJxBt"));
        let _ = repr.verify_fingerprint();
        if let Some(u) = repr.unknown_attributes {
            let _ = u.iter().count();
        }
        if let Some(p) = repr.password_algorithms {
            let _ = p.iter().count();
        }
    }
    // Re-encode every attribute that parses (except the computed ones) and
    // check that it reads back as the same value.
    let mut out = [0u8; 70_000];
    let mut b = MessageBuilder::new(&mut out, msg.message_type(), tid);
    let mut originals = 0usize;
    for raw in msg.attributes() {
        let Ok(raw) = raw else { break };
        let Ok(attr) = Attribute::parse(raw, &tid) else {
            continue;
        };
        if matches!(
            attr,
            Attribute::MessageIntegrity(_)
                | Attribute::MessageIntegritySha256(_)
                | Attribute::Fingerprint(_)
        ) {
            continue;
        }
        b.add(&attr);
        originals += 1;
    }
    let Ok(n) = b.finish() else { return };
    let rebuilt = Message::new_checked(&out[..n]).expect("builder output is a valid message");
    let mut reparsed = 0usize;
    let mut originals_iter = msg
        .attributes()
        .filter_map(Result::ok)
        .filter_map(|r| Attribute::parse(r, &tid).ok())
        .filter(|a| {
            !matches!(
                a,
                Attribute::MessageIntegrity(_)
                    | Attribute::MessageIntegritySha256(_)
                    | Attribute::Fingerprint(_)
            )
        });
    for raw in rebuilt.attributes() {
        let again = Attribute::parse(raw.expect("builder output walks"), &tid)
            .expect("builder output parses");
        assert_eq!(Some(again), originals_iter.next());
        reparsed += 1;
    }
    assert_eq!(reparsed, originals);
});
