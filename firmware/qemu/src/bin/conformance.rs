//! The core's conformance tables built for thumbv6m (the RP2040's ARMv6-M)
//! and run under qemu: prints
//! `conformance: N passed, N failed` over semihosting and exits with
//! QEMU's status 0 only when every case passed.
#![no_std]
#![no_main]

use cortex_m as _; // links the single-core critical-section implementation
use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};

#[entry]
fn main() -> ! {
    let report = scream_ice_core::conformance::run();
    hprintln!(
        "conformance: {} passed, {} failed",
        report.passed,
        report.failed
    );
    hprintln!(
        "agent RAM: Agent<8, 8, 64> = {} bytes",
        core::mem::size_of::<scream_ice_core::agent::Agent<8, 8, 64>>()
    );
    if let Some(name) = report.first_failure {
        hprintln!("first failure: {}", name);
    }
    debug::exit(if report.all_passed() {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    #[allow(clippy::empty_loop)]
    loop {}
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    hprintln!("panic: {}", info);
    debug::exit(debug::EXIT_FAILURE);
    #[allow(clippy::empty_loop)]
    loop {}
}
