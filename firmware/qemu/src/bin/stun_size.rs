//! Flash-size probe: the STUN hot path a speaker runs (check and answer a
//! binding request: parse, MESSAGE-INTEGRITY, FINGERPRINT, build a response
//! with XOR-MAPPED-ADDRESS + MESSAGE-INTEGRITY + FINGERPRINT). Inputs come
//! through `black_box` so nothing is folded away. Compare its size with
//! `baseline` to get the codec's own footprint.
#![no_std]
#![no_main]

use core::hint::black_box;
use core::net::{IpAddr, Ipv4Addr, SocketAddr};

use cortex_m as _; // links the single-core critical-section implementation
use cortex_m_rt::entry;
use cortex_m_semihosting::debug;
use scream_ice_core::stun::{Attribute, IntegrityKey, Message, MessageBuilder, MessageType, Repr};

#[entry]
fn main() -> ! {
    let request = black_box([0u8; 108]);
    let password = black_box(*b"VOkJxbRl1RmTxUk/WvJxBt");
    let key = IntegrityKey::short_term(&password);
    let mut out = [0u8; 128];
    let mut answered = 0usize;
    let repr = Message::new_checked(&request[..])
        .ok()
        .and_then(|msg| Repr::parse(&msg).ok());
    if let Some(repr) = repr
        && repr.verify_fingerprint().is_ok()
        && repr.verify_integrity(&key).is_ok()
    {
        let from = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 20)), 5000);
        let mut b =
            MessageBuilder::new(&mut out, MessageType::BINDING_SUCCESS, repr.transaction_id);
        b.add(&Attribute::XorMappedAddress(black_box(from)))
            .add_message_integrity(&key)
            .add_fingerprint();
        answered = b.finish().unwrap_or(0);
    }
    black_box((answered, out));
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
