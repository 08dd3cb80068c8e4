//! The host runs the very conformance tables that the firmware runner runs
//! built for thumbv6m under qemu, so "same decision on MCU and host" is tested.

#[test]
fn host_passes_the_shared_conformance_tables() {
    let report = scream_ice_core::conformance::run();
    assert!(report.all_passed(), "{report:?}");
    println!(
        "conformance: {} passed, {} failed",
        report.passed, report.failed
    );
}
