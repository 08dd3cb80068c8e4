//! STUN Binding load generator: keeps a window of requests outstanding on a
//! few sockets for a fixed time and reports the answer rate, and, given the
//! server's PID, the server's CPU time (utime + stime from /proc/PID/stat)
//! and requests answered per server CPU-second.
//!
//! ```text
//! cargo run --release -p scream-ice-host --example stun_load -- ADDR \
//!     [--seconds 10] [--sockets 4] [--window 32] [--pid PID]
//! ```

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use scream_ice_core::stun::{Attribute, MessageBuilder, MessageType, TransactionId};

fn usage() -> ! {
    eprintln!(
        "usage: stun_load ADDR [--seconds N] [--sockets N] [--window N] [--pid PID] [--clk-tck N]"
    );
    std::process::exit(2)
}

/// utime + stime of `pid` in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of proc(5), counted from `state` (field 3).
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| usage());
    let (mut seconds, mut sockets, mut window, mut pid, mut clk_tck) =
        (10u64, 4usize, 32usize, None, 100u64);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--seconds" => seconds = value.parse().unwrap_or_else(|_| usage()),
            "--sockets" => sockets = value.parse().unwrap_or_else(|_| usage()),
            "--window" => window = value.parse().unwrap_or_else(|_| usage()),
            "--pid" => pid = Some(value.parse::<u32>().unwrap_or_else(|_| usage())),
            "--clk-tck" => clk_tck = value.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let timeouts = Arc::new(AtomicU64::new(0));
    let before = pid.and_then(cpu_ticks);
    let start = Instant::now();
    let threads: Vec<_> = (0..sockets)
        .map(|k| {
            let (stop, answered, sent, timeouts) = (
                stop.clone(),
                answered.clone(),
                sent.clone(),
                timeouts.clone(),
            );
            std::thread::spawn(move || {
                let bind: SocketAddr = if addr.is_ipv4() {
                    "0.0.0.0:0".parse().unwrap()
                } else {
                    "[::]:0".parse().unwrap()
                };
                let s = UdpSocket::bind(bind).expect("bind");
                s.connect(addr).expect("connect");
                s.set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                let mut counter = 0u64;
                let mut req = [0u8; 48];
                let mut send = |s: &UdpSocket, req: &mut [u8; 48]| {
                    counter += 1;
                    let mut tid = [0u8; 12];
                    tid[..4].copy_from_slice(&(k as u32).to_be_bytes());
                    tid[4..].copy_from_slice(&counter.to_be_bytes());
                    let mut b =
                        MessageBuilder::new(req, MessageType::BINDING_REQUEST, TransactionId(tid));
                    // With SOFTWARE, so both servers answer with theirs
                    // (scream-ice only answers it in kind).
                    b.add(&Attribute::Software("stun_load"));
                    let n = b.finish().expect("encode");
                    let _ = s.send(&req[..n]);
                };
                for _ in 0..window {
                    send(&s, &mut req);
                }
                let (mut n_sent, mut n_timeouts) = (window as u64, 0u64);
                let mut buf = [0u8; 1500];
                while !stop.load(Ordering::Relaxed) {
                    match s.recv(&mut buf) {
                        Ok(n) if n >= 20 && buf[0] == 0x01 && buf[1] == 0x01 => {
                            answered.fetch_add(1, Ordering::Relaxed);
                            send(&s, &mut req);
                            n_sent += 1;
                        }
                        Ok(_) => {}
                        Err(_) => {
                            // Lost requests: refill the window.
                            n_timeouts += 1;
                            for _ in 0..window {
                                send(&s, &mut req);
                            }
                            n_sent += window as u64;
                        }
                    }
                }
                sent.fetch_add(n_sent, Ordering::Relaxed);
                timeouts.fetch_add(n_timeouts, Ordering::Relaxed);
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    let after = pid.and_then(cpu_ticks);
    let answered = answered.load(Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let (sent, timeouts) = (
        sent.load(Ordering::Relaxed),
        timeouts.load(Ordering::Relaxed),
    );
    println!(
        "{addr}: {answered} answered / {sent} sent in {elapsed:.2} s = {:.0} answers/s ({sockets} sockets x window {window}, {timeouts} window timeouts)",
        answered as f64 / elapsed
    );
    if let (Some(b), Some(a)) = (before, after) {
        let cpu = (a - b) as f64 / clk_tck as f64;
        println!(
            "server pid {}: {cpu:.2} CPU-s => {:.0} requests per server CPU-second",
            pid.unwrap_or(0),
            if cpu > 0.0 {
                answered as f64 / cpu
            } else {
                f64::NAN
            }
        );
    }
}
