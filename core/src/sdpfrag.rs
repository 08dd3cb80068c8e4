//! placeholder
#[cfg(feature = "conformance")]
pub(crate) fn conformance(_report: &mut crate::conformance::Report) {}
