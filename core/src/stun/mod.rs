//! STUN (RFC 8489, compatible with RFC 5389).

#[cfg(feature = "conformance")]
pub(crate) fn conformance(_report: &mut crate::conformance::Report) {}
