//! The core's conformance tables on an emulated microcontroller: prints
//! `conformance (MACHINE): N passed, N failed` over semihosting and exits
//! with qemu's status 0 only when exactly
//! [`CASES`](scream_ice_core::conformance::CASES) cases ran and all passed.
//! Cases a target compiled out count as failed. One source for the
//! Cortex-M0 (`microbit`), Cortex-M3 (`mps2-an385`) and RISC-V 32 (`virt`)
//! builds; `run.sh` runs all three.
#![no_std]
#![no_main]

#[cfg(target_arch = "arm")]
use cortex_m as _; // links the single-core critical-section implementation
#[cfg(target_arch = "arm")]
use cortex_m_rt::entry;
#[cfg(target_arch = "riscv32")]
use riscv as _; // links the single-hart critical-section implementation
#[cfg(target_arch = "riscv32")]
use riscv_rt::entry;
use scream_ice_core::conformance::{CASES, run};
use semihosting::{println, process};

const MACHINE: &str = env!("QEMU_MACHINE");

#[entry]
fn main() -> ! {
    let report = run();
    println!(
        "conformance ({}): {} passed, {} failed",
        MACHINE,
        report.passed,
        report.failed + report.missing()
    );
    if report.missing() > 0 || report.passed + report.failed != CASES {
        println!(
            "{} cases ran, the tables have {}: a table is compiled out on this target",
            report.passed + report.failed,
            CASES
        );
    }
    println!(
        "agent RAM: Agent<8, 8, 64> = {} bytes",
        core::mem::size_of::<scream_ice_core::agent::Agent<8, 8, 64>>()
    );
    if let Some(name) = report.first_failure {
        println!("first failure: {}", name);
    }
    process::exit(if report.all_passed() { 0 } else { 1 })
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    println!("panic on {}: {}", MACHINE, info);
    process::exit(1)
}
