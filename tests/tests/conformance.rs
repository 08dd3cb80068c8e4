//! The host runs the very conformance tables that the firmware runner
//! (`firmware/qemu/run.sh`) runs on emulated Cortex-M0, Cortex-M3 and RISC-V
//! 32, and holds them to the same total, so "same decision on MCU and host"
//! is tested and a table compiled out on one side fails.

use std::io::Write;

use scream_ice_core::conformance::{CASES, run};

#[test]
fn host_passes_the_shared_conformance_tables() {
    let report = run();
    assert_eq!(report.missing(), 0, "{report:?}");
    assert_eq!(report.passed, CASES, "{report:?}");
    assert!(report.all_passed(), "{report:?}");
    // Past the test harness's capture, so the CI log shows the host count
    // beside the emulated ones (not in the `conformance (MACHINE)` form the
    // summary adds up: this run is already one passed test).
    let _ = writeln!(
        std::io::stdout().lock(),
        "\nconformance on the host ({}): {} passed, {} failed",
        std::env::consts::ARCH,
        report.passed,
        report.failed
    );
}
