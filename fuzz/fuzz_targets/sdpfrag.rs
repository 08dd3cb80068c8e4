#![no_main]
//! Parse arbitrary bytes as an `application/trickle-ice-sdpfrag` body;
//! whatever parses must re-emit and re-parse to an equal fragment, and the
//! canonical re-emission is a fixed point.
use libfuzzer_sys::fuzz_target;
use scream_ice_core::sdpfrag::SdpFrag;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = core::str::from_utf8(data) else {
        return;
    };
    let Ok(f) = SdpFrag::parse(body) else {
        return;
    };
    // Touch every accessor.
    let _ = (f.ice_ufrag(), f.ice_pwd(), f.end_of_candidates());
    let _ = f.ice_options().count() + f.candidates().count();
    let mut buf = vec![0u8; 64];
    let n = match f.emit(&mut buf) {
        Ok(n) => n,
        Err(e) => {
            buf = vec![0u8; e.required];
            f.emit(&mut buf)
                .expect("emit fits in the size it asked for")
        }
    };
    let out = core::str::from_utf8(&buf[..n]).expect("emit writes ASCII");
    let g = SdpFrag::parse(out).expect("re-emitted body parses");
    assert_eq!(f, g);
    let mut again = vec![0u8; n];
    assert_eq!(g.emit(&mut again), Ok(n));
    assert_eq!(&buf[..n], &again[..]);
});
