#![no_main]
//! Parse arbitrary bytes as a `candidate` attribute line; whatever parses
//! must validate, re-emit (into a buffer of exactly `buffer_len()` bytes),
//! and re-parse to an equal attribute; the re-emitted line is a fixed point.
use libfuzzer_sys::fuzz_target;
use scream_ice_core::candidate::CandidateAttribute;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = core::str::from_utf8(data) else {
        return;
    };
    let Ok(a) = CandidateAttribute::parse(line) else {
        return;
    };
    assert_eq!(a.validate(), Ok(()));
    let len = a.buffer_len();
    let mut buf = vec![0u8; len];
    assert_eq!(a.emit(&mut buf), Ok(len));
    let out = core::str::from_utf8(&buf).expect("emit writes ASCII");
    let b = CandidateAttribute::parse(out).expect("re-emitted line parses");
    assert_eq!(a, b);
    let mut again = vec![0u8; len];
    assert_eq!(b.emit(&mut again), Ok(len));
    assert_eq!(buf, again);
    if let Ok(c) = a.to_candidate() {
        let back = c.to_attribute();
        assert_eq!(back.to_candidate(), Ok(c));
    }
});
