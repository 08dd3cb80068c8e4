//! Flash-size baseline: the same runtime and panic handler as `stun_size`,
//! without the codec.
#![no_std]
#![no_main]

use cortex_m as _; // links the single-core critical-section implementation
use cortex_m_rt::entry;
use cortex_m_semihosting::debug;

#[entry]
fn main() -> ! {
    core::hint::black_box([0u8; 108]);
    debug::exit(debug::EXIT_SUCCESS);
    #[allow(clippy::empty_loop)]
    loop {}
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    debug::exit(debug::EXIT_FAILURE);
    #[allow(clippy::empty_loop)]
    loop {}
}
