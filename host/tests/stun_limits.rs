//! The STUN responder's token buckets on loopback: one source cannot get
//! more than its burst plus its rate, many sources together not more than
//! the global burst plus the global rate, and the answers stay small.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use scream_ice_core::stun::{MessageBuilder, MessageType, TransactionId};
use scream_ice_host::limits::{Rate, StunLimits};
use scream_ice_host::stun_responder::Responder;

fn responder(limits: StunLimits) -> (Responder, SocketAddr) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    (
        Responder::spawn_limited(socket, "test", limits).unwrap(),
        addr,
    )
}

fn request(i: u32) -> Vec<u8> {
    let mut tid = [0u8; 12];
    tid[..4].copy_from_slice(&i.to_be_bytes());
    let mut buf = [0u8; 64];
    let n = MessageBuilder::new(&mut buf, MessageType::BINDING_REQUEST, TransactionId(tid))
        .finish()
        .unwrap();
    buf[..n].to_vec()
}

/// Send `count` requests from `socket` to `to` as fast as it can, then
/// collect answers until 300 ms of silence; returns (answers, their largest
/// size, seconds from the first send to the last answer).
fn flood(socket: &UdpSocket, to: SocketAddr, count: u32) -> (usize, usize, f64) {
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let start = Instant::now();
    for i in 0..count {
        socket.send_to(&request(i), to).unwrap();
    }
    let (mut answers, mut largest) = (0, 0);
    let mut buf = [0u8; 1500];
    while let Ok((n, _)) = socket.recv_from(&mut buf) {
        answers += 1;
        largest = largest.max(n);
    }
    let secs = start.elapsed().as_secs_f64() - 0.3;
    (answers, largest, secs.max(0.0))
}

#[test]
fn one_source_gets_its_burst_and_rate_only() {
    let limits = StunLimits {
        per_source: Rate::new(10, 20),
        ..StunLimits::default()
    };
    let (r, addr) = responder(limits);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (answers, largest, secs) = flood(&client, addr, 200);
    let ceiling = 20 + (10.0 * secs).ceil() as usize;
    assert!(
        (20..=ceiling).contains(&answers),
        "{answers} answers in {secs:.3} s, allowed 20..={ceiling}"
    );
    println!(
        "one source: {answers} answers to 200 requests in {secs:.3} s, largest {largest} bytes"
    );
    // A bare IPv4 request is answered with 32 bytes (no SOFTWARE asked for).
    assert_eq!(largest, 32);
    let c = r.counters();
    assert_eq!(
        c.source_limited.load(std::sync::atomic::Ordering::Relaxed) as usize,
        200 - answers
    );
    r.stop();
}

#[test]
fn many_sources_share_the_global_bucket() {
    let limits = StunLimits {
        per_source: Rate::new(1_000, 1_000),
        global: Rate::new(20, 50),
        ..StunLimits::default()
    };
    let (r, addr) = responder(limits);
    // Five sources: 127.0.0.2 to 127.0.0.6 (all loopback), 40 requests each.
    let clients: Vec<UdpSocket> = (2..=6)
        .map(|i| UdpSocket::bind(format!("127.0.0.{i}:0")).unwrap())
        .collect();
    let start = Instant::now();
    let mut total = 0;
    for c in &clients {
        total += flood(c, addr, 40).0;
    }
    let secs = start.elapsed().as_secs_f64();
    let ceiling = 50 + (20.0 * secs).ceil() as usize;
    assert!(
        (50..=ceiling).contains(&total),
        "{total} answers to 200 requests from 5 sources in {secs:.3} s, allowed 50..={ceiling}"
    );
    println!("5 sources: {total} answers to 200 requests in {secs:.3} s");
    assert!(
        r.counters()
            .global_limited
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    r.stop();
}
