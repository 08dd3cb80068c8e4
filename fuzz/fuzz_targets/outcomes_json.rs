#![no_main]
//! Arbitrary bytes as a `POST /api/ice/outcomes` body: the validation
//! never panics; what it accepts holds 1 to 1,000 outcomes; what it refuses
//! gets one line that names where (`body`, `outcome.FIELD` or
//! `[INDEX].FIELD`), which is what the client reads in the 400.
use libfuzzer_sys::fuzz_target;
use scream_ice_host::outcomes::{MAX_OUTCOMES_PER_REQUEST, validate_body};

fuzz_target!(|data: &[u8]| {
    match validate_body(data) {
        Ok(n) => assert!((1..=MAX_OUTCOMES_PER_REQUEST).contains(&n), "{n} outcomes"),
        Err(e) => {
            assert!(!e.contains('\n'), "multi-line error: {e:?}");
            assert!(
                e.starts_with("body") || e.starts_with("outcome") || e.starts_with('['),
                "error names no place: {e:?}"
            );
        }
    }
});
