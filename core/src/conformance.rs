//! The core's own conformance suite, runnable anywhere the core runs.
//!
//! Every module that makes a decision the router and the speakers must share
//! contributes fixed vectors here (codec bytes, priority values, policy
//! decisions, rollout buckets). [`run`] checks them all without std, without
//! allocation and without a test harness, and returns the counts, so the very
//! same tables are executed by the host test suite and by the firmware
//! conformance runner on emulated microcontrollers.

/// How many cases [`run`] executes, on every target. The host test suite and
/// the emulated runners (`firmware/qemu/run.sh`) both hold a run to this
/// number, so a table that a target compiles out (a `cfg` on pointer width,
/// an architecture, a feature) fails there instead of shrinking silently.
/// Raise it with the tables.
pub const CASES: u32 = 295;

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

    /// Cases of [`CASES`] that did not run at all (a table compiled out).
    pub fn missing(&self) -> u32 {
        CASES.saturating_sub(self.passed.saturating_add(self.failed))
    }

    /// True when exactly [`CASES`] cases ran and none failed.
    pub fn all_passed(&self) -> bool {
        self.failed == 0 && self.passed == CASES
    }
}

/// Every table of the core, in run order.
const TABLES: [fn(&mut Report); 10] = [
    crate::stun::conformance,
    crate::candidate::conformance,
    crate::sdpfrag::conformance,
    crate::net::conformance,
    crate::url::conformance,
    crate::policy::conformance,
    crate::rollout::conformance,
    crate::agent::conformance,
    crate::scream::conformance,
    crate::playout::conformance,
];

/// Run every conformance table of the core.
///
/// Each table is called through an opaque function pointer, so none is
/// inlined into this frame: the peak stack is that of the largest table, not
/// the sum of all of them, and the run fits the 16K of RAM of the smallest
/// emulated board (the Cortex-M0 `microbit`).
pub fn run() -> Report {
    let mut report = Report::default();
    for table in TABLES {
        core::hint::black_box(table)(&mut report);
    }
    report
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_conformance_case_passes() {
        let report = super::run();
        assert_eq!(report.passed, super::CASES, "{report:?}");
        assert!(report.all_passed(), "{report:?}");
    }
}
