//! Fuzz the STUN/TURN URI parser: it must never panic, and whatever it
//! accepts must print back to a URI that parses to the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use scream_ice_core::url::IceServerUrl;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    if let Ok(url) = IceServerUrl::parse(text) {
        let printed = url.to_string();
        assert_eq!(
            IceServerUrl::parse(&printed),
            Ok(url),
            "{text:?} -> {printed:?}"
        );
        assert!(url.port() != 0);
    }
});
