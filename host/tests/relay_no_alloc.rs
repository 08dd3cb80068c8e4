//! The fan-out hot path allocates nothing: packetize a Scream datagram and
//! `sendmmsg` it to 300 subscribers, 200 times, under a global allocator
//! that counts every allocation. Its own binary without the libtest harness
//! (whose threads would allocate while the region counts).

use std::alloc::System;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;

use scream_ice_core::scream::{self, MAX_PREFIX_LEN, Packetizer, ScreamFormat};
use scream_ice_core::{Duration, Instant};
use scream_ice_host::relay::{Relay, Route, grow_receive_buffer};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn main() {
    // 60 subscribers per receiving socket: one fan-out's share fits even
    // an unprivileged default receive buffer.
    let rxs: Vec<UdpSocket> = (0..5)
        .map(|_| {
            let rx = UdpSocket::bind("0.0.0.0:0").unwrap();
            grow_receive_buffer(&rx, 64 << 20);
            rx.set_nonblocking(true).unwrap();
            rx
        })
        .collect();
    let relay = Relay::new(vec![Arc::new(UdpSocket::bind("0.0.0.0:0").unwrap())]).unwrap();
    for j in 0..300u32 {
        let port = rxs[(j / 60) as usize].local_addr().unwrap().port();
        let ip = std::net::Ipv4Addr::new(127, 0, (j / 250) as u8 + 1, (j % 250) as u8 + 1);
        relay
            .subscribe(Route {
                socket: 0,
                destination: SocketAddr::new(ip.into(), port),
            })
            .unwrap();
    }
    let mut fwd = relay.forwarder();
    let mut pk = Packetizer::new(7, 0, 0, Duration::from_millis(50));
    let mut d = [0u8; scream::DATAGRAM_LEN];
    d[..5].copy_from_slice(&ScreamFormat::STEREO_48K_16.to_header());
    let mut prefix = [0u8; MAX_PREFIX_LEN];
    let mut sink = [0u8; 2048];
    let mut sent = 0;
    let mut drained = 0;
    let hot = Region::new(GLOBAL);
    for i in 0..200u64 {
        let p = pk
            .packetize(Instant::from_micros(i * 6000), &d, &mut prefix)
            .unwrap();
        sent += fwd.forward(&prefix[..p.prefix_len], &d[scream::HEADER_LEN..]);
        for rx in &rxs {
            while rx.recv(&mut sink).is_ok() {
                drained += 1;
            }
        }
    }
    let c = hot.change();
    assert_eq!(
        c.allocations + c.reallocations,
        0,
        "the fan-out path allocated: {c:?}"
    );
    for rx in &rxs {
        while rx.recv(&mut sink).is_ok() {
            drained += 1;
        }
    }
    assert_eq!(sent, 200 * 300);
    assert_eq!(drained, 200 * 300, "every message arrived");
    println!("relay_no_alloc: 1 passed, 0 failed");
}
