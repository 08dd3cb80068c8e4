//! The core's own conformance suite, runnable anywhere the core runs.
//!
//! Every module that makes a decision the router and the speakers must share
//! contributes fixed vectors here (codec bytes, priority values, policy
//! decisions, rollout buckets). [`run`] checks them all without std, without
//! allocation and without a test harness, and returns the counts, so the very
//! same tables are executed by the host test suite and by the firmware
//! conformance runner on emulated microcontrollers.

/// The outcome of one conformance run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Report {
    /// Cases whose result matched the table.
    pub passed: u32,
    /// Cases whose result did not.
    pub failed: u32,
    /// The name of the first failing case, if any.
    pub first_failure: Option<&'static str>,
}

impl Report {
    /// Record one case: `ok` is whether the computed result matched.
    pub fn check(&mut self, name: &'static str, ok: bool) {
        if ok {
            self.passed += 1;
        } else {
            self.failed += 1;
            if self.first_failure.is_none() {
                self.first_failure = Some(name);
            }
        }
    }

    /// True when at least one case ran and none failed.
    pub fn all_passed(&self) -> bool {
        self.failed == 0 && self.passed > 0
    }
}

/// Run every conformance table of the core.
pub fn run() -> Report {
    let mut report = Report::default();
    crate::stun::conformance(&mut report);
    crate::candidate::conformance(&mut report);
    crate::sdpfrag::conformance(&mut report);
    crate::net::conformance(&mut report);
    crate::url::conformance(&mut report);
    crate::policy::conformance(&mut report);
    crate::rollout::conformance(&mut report);
    crate::agent::conformance(&mut report);
    crate::scream::conformance(&mut report);
    crate::playout::conformance(&mut report);
    report
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_conformance_case_passes() {
        let report = super::run();
        assert!(report.all_passed(), "{report:?}");
    }
}
