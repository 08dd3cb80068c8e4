//! placeholder
#[cfg(feature = "conformance")]
pub(crate) fn conformance(_r: &mut crate::conformance::Report) {}
