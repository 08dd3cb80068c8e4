#!/usr/bin/env bash
# Run the core's conformance tables on every emulated microcontroller:
#   Cortex-M0 (microbit, thumbv6m as the RP2040), Cortex-M3 (mps2-an385,
#   thumbv7m), RISC-V 32 (virt, riscv32imc as the ESP32-C3).
# Each run prints `conformance (MACHINE): N passed, N failed`; a machine
# whose build or qemu run fails prints `qemu step failed: MACHINE (...)`
# instead of stopping the others. Exits non-zero if any machine failed.
# Needs qemu-system-arm, qemu-system-misc (qemu-system-riscv32) and the
# three rustup targets of rust-toolchain.toml.
set -uo pipefail
cd "$(dirname "$0")"

machines=(
  "thumbv6m-none-eabi microbit"
  "thumbv7m-none-eabi mps2-an385"
  "riscv32imc-unknown-none-elf virt"
)
failures=0
for entry in "${machines[@]}"; do
  read -r target machine <<<"$entry"
  out=$(cargo run --quiet --release --target "$target" --bin conformance 2>&1)
  status=$?
  printf '%s\n' "$out"
  if [ "$status" -ne 0 ]; then
    echo "qemu step failed: $machine ($target, exit $status)"
    failures=$((failures + 1))
  elif ! grep -q "^conformance ($machine): [0-9]* passed, 0 failed$" <<<"$out"; then
    echo "qemu step failed: $machine ($target, no passing conformance line)"
    failures=$((failures + 1))
  fi
done
[ "$failures" -eq 0 ]
