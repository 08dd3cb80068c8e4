//! Fuzz the CIDR parser: it must never panic; whatever it accepts prints back
//! to an equal subnet that contains its own network address.
#![no_main]
use libfuzzer_sys::fuzz_target;
use scream_ice_core::net::{Cidr, classify};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    if let Ok(cidr) = Cidr::parse(text) {
        let printed = cidr.to_string();
        assert_eq!(Cidr::parse(&printed), Ok(cidr), "{text:?} -> {printed:?}");
        assert!(cidr.contains(cidr.network()) || cidr.network().to_canonical() != cidr.network());
        let _ = classify(cidr.network());
    }
});
