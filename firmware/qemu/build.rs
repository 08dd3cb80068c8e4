//! Pick the memory map of the qemu machine this target runs on, put it where
//! the linker finds it as `memory.x`, and pass the runtime's linker script,
//! so a build works from any directory (`--manifest-path`). The machine's
//! name reaches the firmware as `QEMU_MACHINE` for its output line.
use std::{env, fs, path::PathBuf};

fn main() {
    let target = env::var("TARGET").expect("TARGET");
    let machine = match target.as_str() {
        // ARMv6-M, the RP2040's instruction set, on a real Cortex-M0.
        "thumbv6m-none-eabi" => "microbit",
        "thumbv7m-none-eabi" => "mps2-an385",
        // The ESP32-C3's instruction set.
        "riscv32imc-unknown-none-elf" => "virt",
        other => panic!("no qemu machine for target {other}"),
    };
    let memory = format!("memory-{machine}.x");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    fs::copy(&memory, out.join("memory.x")).expect("copy the memory map");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed={memory}");
    println!("cargo:rustc-env=QEMU_MACHINE={machine}");
    if target.starts_with("thumb") {
        // cortex-m-rt's link.x includes memory.x itself.
        println!("cargo:rustc-link-arg=--nmagic");
    } else {
        // riscv-rt's link.x expects the regions defined before it.
        println!("cargo:rustc-link-arg=-Tmemory.x");
    }
    println!("cargo:rustc-link-arg=-Tlink.x");
}
