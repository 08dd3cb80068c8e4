//! The hot path allocates nothing: parse, verify and build a binding
//! transaction under a global allocator that counts every allocation.
//!
//! This is its own test binary (one `#[global_allocator]` per binary) without
//! the libtest harness (`harness = false`): the harness's own threads would
//! otherwise allocate while the region counts.

use std::alloc::System;

use scream_ice_core::stun::{
    Attribute, IntegrityKey, Message, MessageBuilder, MessageType, Repr, TransactionId,
};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn allocations(region: &Region<'_, System>) -> usize {
    let c = region.change();
    c.allocations + c.reallocations
}

fn main() {
    parse_verify_and_build_allocate_nothing();
    println!("no_alloc: 1 passed, 0 failed");
}

fn parse_verify_and_build_allocate_nothing() {
    // Credentials are set up once per session, outside the hot path; they
    // do not allocate either, but are counted separately to be explicit.
    let keys = Region::new(GLOBAL);
    let key = IntegrityKey::short_term(b"VOkJxbRl1RmTxUk/WvJxBt");
    let long = IntegrityKey::long_term_md5(b"user", b"realm", b"pass");
    assert_eq!(allocations(&keys), 0, "key setup allocated");

    let mut request = [0u8; 256];
    let mut response = [0u8; 256];
    let hot = Region::new(GLOBAL);
    for i in 0..1_000u32 {
        // A controlling agent's connectivity check.
        let tid = TransactionId([(i % 251) as u8; 12]);
        let mut b = MessageBuilder::new(&mut request, MessageType::BINDING_REQUEST, tid);
        b.add(&Attribute::Username("evtj:h6vY"))
            .add(&Attribute::Priority(0x6e00_01ff ^ i))
            .add(&Attribute::IceControlling(u64::from(i)))
            .add(&Attribute::UseCandidate)
            .add_message_integrity(&key)
            .add_fingerprint();
        let n = b.finish().expect("fits");

        // The peer parses and verifies it...
        let msg = Message::new_checked(&request[..n]).expect("valid");
        let repr = Repr::parse(&msg).expect("valid");
        assert!(repr.verify_fingerprint().is_ok());
        assert!(repr.verify_integrity(&key).is_ok());
        assert!(repr.verify_integrity(&long).is_err());
        assert_eq!(repr.username, Some("evtj:h6vY"));

        // ...and answers with its reflexive address.
        let mut b = MessageBuilder::new(
            &mut response,
            MessageType::BINDING_SUCCESS,
            repr.transaction_id,
        );
        b.add(&Attribute::XorMappedAddress(
            "[2001:db8::7]:50000".parse().expect("address"),
        ))
        .add_message_integrity(&key)
        .add_fingerprint();
        let m = b.finish().expect("fits");
        let msg = Message::new_checked(&response[..m]).expect("valid");
        let repr = Repr::parse(&msg).expect("valid");
        assert!(repr.verify_integrity(&key).is_ok() && repr.verify_fingerprint().is_ok());
        assert!(repr.xor_mapped_address.is_some());
    }
    let n = allocations(&hot);
    assert_eq!(n, 0, "the STUN hot path allocated {n} times");
}
