//! Fan-out benchmark: one sink at 166.7 datagrams/s to 1, 10, 100 and
//! 1,000 subscribers on loopback, three forwarders measured by the same
//! harness in one run:
//!
//! - `relay`: the router's real path, `sinks::run_ingest` (Scream in,
//!   `core::scream::Packetizer`, `relay::Forwarder` with `sendmmsg`);
//! - `sendto`: a plain per-subscriber `sendto` loop (what ScreamRouter's
//!   Scream sender does per receiver), same RTP bytes;
//! - `sendmmsg`: a bare `sendmmsg` loop (no framing, no lock, no
//!   per-subscriber state, one iovec): the floor.
//!
//! Per run: datagrams lost (sent x subscribers - received), added latency
//! from the harness's send to the sink socket to the kernel's receive
//! timestamp (`SO_TIMESTAMPNS`) at each subscriber socket (p50, p99,
//! max), and the forwarding thread's CPU time (`getrusage(RUSAGE_THREAD)`)
//! per forwarded datagram. On loopback the sender's system call also
//! runs the receive path into the subscriber socket, for all three alike.
//!
//! Subscribers are distinct destinations 127.0.k.j:P, received by one
//! socket per 250 subscribers bound to 0.0.0.0:P.
//!
//! `cargo bench -p scream-ice-host --bench fanout [-- SECONDS [REPEATS]]`

use std::io::{IoSlice, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg, setsockopt,
    sockopt,
};
use nix::sys::time::{TimeSpec, TimeValLike};
use scream_ice_core::scream::{self, ScreamFormat};
use scream_ice_host::relay::{Relay, Route, grow_receive_buffer};
use scream_ice_host::sinks::{SinkStats, random_packetizer, run_ingest};

const PERIOD: Duration = Duration::from_micros(6_000);
const RTP_LEN: usize = 12 + scream::PCM_PAYLOAD_LEN;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Relay,
    Sendto,
    Sendmmsg,
}

struct Outcome {
    sent: u64,
    received: u64,
    latencies_ns: Vec<u64>,
    cpu_ns: u64,
}

fn realtime_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn thread_cpu_ns() -> u64 {
    let u = getrusage(UsageWho::RUSAGE_THREAD).expect("getrusage");
    (u.user_time().num_microseconds() + u.system_time().num_microseconds()) as u64 * 1000
}

/// Subscriber destinations and the sockets that receive them.
fn destinations(n: usize) -> (Vec<SocketAddr>, Vec<UdpSocket>) {
    let mut dests = Vec::with_capacity(n);
    let mut socks = Vec::new();
    for k in 0..n.div_ceil(250) {
        let s = UdpSocket::bind("0.0.0.0:0").expect("bind receiver");
        grow_receive_buffer(&s, 64 << 20);
        setsockopt(&s, sockopt::ReceiveTimestampns, &true).expect("SO_TIMESTAMPNS");
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let port = s.local_addr().unwrap().port();
        for j in 0..250.min(n - k * 250) {
            let ip = Ipv4Addr::new(127, 0, k as u8 + 1, j as u8 + 1);
            dests.push(SocketAddr::new(ip.into(), port));
        }
        socks.push(s);
    }
    (dests, socks)
}

/// Receive until `stop`, collecting kernel-timestamp latencies; the send
/// time is the first 8 bytes of the PCM (after the 12-byte RTP header).
fn receive(sock: UdpSocket, stop: Arc<AtomicBool>) -> (u64, Vec<u64>) {
    const B: usize = 64;
    let mut headers: MultiHeaders<SockaddrStorage> =
        MultiHeaders::preallocate(B, Some(nix::cmsg_space!(TimeSpec)));
    let mut bufs = vec![[0u8; 1500]; B];
    let mut count = 0u64;
    let mut lat = Vec::new();
    loop {
        let mut iovs: Vec<[IoSliceMut<'_>; 1]> = bufs
            .iter_mut()
            .map(|b| [IoSliceMut::new(&mut b[..])])
            .collect();
        match recvmmsg(
            sock.as_raw_fd(),
            &mut headers,
            iovs.iter_mut(),
            MsgFlags::MSG_WAITFORONE,
            None,
        ) {
            Ok(msgs) => {
                for m in msgs {
                    count += 1;
                    let ts = m.cmsgs().ok().and_then(|mut c| {
                        c.find_map(|c| match c {
                            ControlMessageOwned::ScmTimestampns(t) => Some(t),
                            _ => None,
                        })
                    });
                    let sent = m.iovs().next().and_then(|b| {
                        b.get(12..20)
                            .map(|s| u64::from_le_bytes(s.try_into().unwrap()))
                    });
                    if let (Some(t), Some(s)) = (ts, sent) {
                        let rx = t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64;
                        lat.push(rx.saturating_sub(s));
                    }
                }
            }
            Err(_) => {
                if stop.load(Ordering::Relaxed) {
                    return (count, lat);
                }
            }
        }
    }
}

fn run(kind: Kind, n: usize, seconds: f64) -> Outcome {
    let (dests, rx_socks) = destinations(n);
    let stop_rx = Arc::new(AtomicBool::new(false));
    let receivers: Vec<_> = rx_socks
        .into_iter()
        .map(|s| {
            let stop = stop_rx.clone();
            std::thread::spawn(move || receive(s, stop))
        })
        .collect();
    let ingest = UdpSocket::bind("127.0.0.1:0").unwrap();
    ingest
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    grow_receive_buffer(&ingest, 1 << 20);
    let ingest_addr = ingest.local_addr().unwrap();
    let out = UdpSocket::bind("0.0.0.0:0").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let forwarder = {
        let stop = stop.clone();
        let dests = dests.clone();
        std::thread::spawn(move || {
            let t0 = thread_cpu_ns();
            match kind {
                Kind::Relay => {
                    let relay = Relay::new(vec![Arc::new(out)]).unwrap();
                    for &destination in &dests {
                        relay
                            .subscribe(Route {
                                socket: 0,
                                destination,
                            })
                            .unwrap();
                    }
                    let stats = Mutex::new(SinkStats::default());
                    run_ingest(
                        &ingest,
                        random_packetizer().unwrap(),
                        relay.forwarder(),
                        &stats,
                        &stop,
                    );
                }
                Kind::Sendto => {
                    let mut buf = [0u8; 2048];
                    let mut pkt = [0u8; RTP_LEN];
                    pkt[0] = 0x80;
                    pkt[1] = 102;
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(len) = ingest.recv(&mut buf) else {
                            continue;
                        };
                        pkt[12..12 + len - 5].copy_from_slice(&buf[5..len]);
                        for d in &dests {
                            let _ = out.send_to(&pkt[..12 + len - 5], d);
                        }
                    }
                }
                Kind::Sendmmsg => {
                    let addrs: Vec<Option<SockaddrStorage>> =
                        dests.iter().map(|d| Some((*d).into())).collect();
                    let mut headers: MultiHeaders<SockaddrStorage> =
                        MultiHeaders::preallocate(1024, None);
                    // Receive straight behind a fixed 12-byte header: the
                    // Scream header lands in bytes 7..12 and is overwritten.
                    let mut buf = [0u8; 2048];
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(len) = ingest.recv(&mut buf[7..]) else {
                            continue;
                        };
                        buf[..12].copy_from_slice(&[0x80, 102, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
                        let iov = [IoSlice::new(&buf[..len + 7])];
                        for chunk in addrs.chunks(1024) {
                            let _ = sendmmsg(
                                out.as_raw_fd(),
                                &mut headers,
                                std::iter::repeat_n(&iov, chunk.len()),
                                chunk,
                                [],
                                MsgFlags::empty(),
                            )
                            .map(|r| r.count());
                        }
                    }
                }
            }
            thread_cpu_ns() - t0
        })
    };
    // The sender: Scream datagrams paced like the driver, each carrying its
    // send time (CLOCK_REALTIME ns) in the first PCM bytes.
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut d = [0u8; scream::DATAGRAM_LEN];
    d[..5].copy_from_slice(&ScreamFormat::STEREO_48K_16.to_header());
    let count = (seconds / PERIOD.as_secs_f64()) as u64;
    let start = Instant::now() + Duration::from_millis(100);
    for i in 0..count {
        let due = start + PERIOD * i as u32;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        d[5..13].copy_from_slice(&realtime_ns().to_le_bytes());
        tx.send_to(&d, ingest_addr).unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let cpu_ns = forwarder.join().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    stop_rx.store(true, Ordering::Relaxed);
    let mut received = 0;
    let mut latencies_ns = Vec::new();
    for r in receivers {
        let (c, l) = r.join().unwrap();
        received += c;
        latencies_ns.extend(l);
    }
    Outcome {
        sent: count * n as u64,
        received,
        latencies_ns,
        cpu_ns,
    }
}

fn pct(v: &[u64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
}

fn main() {
    // `cargo bench` passes `--bench`; bare numbers are the seconds per run
    // and the repetitions (interleaved, to spread the machine's noise).
    let nums: Vec<f64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse::<f64>().ok())
        .collect();
    let seconds = nums.first().copied().unwrap_or(4.0);
    let repeats = nums.get(1).map_or(1, |r| *r as usize).max(1);
    println!(
        "fan-out, 166.7 datagrams/s of {RTP_LEN} bytes, {seconds} s per run, {repeats} repetition(s), loopback; latency = harness send -> kernel rx timestamp at the subscriber socket"
    );
    println!(
        "{:>5} {:>9} {:>10} {:>6} {:>9} {:>9} {:>9} {:>12}",
        "subs", "forwarder", "messages", "lost", "p50 µs", "p99 µs", "max µs", "CPU ns/msg"
    );
    let kinds = [Kind::Relay, Kind::Sendto, Kind::Sendmmsg];
    let mut summary = Vec::new();
    for n in [1usize, 10, 100, 1000] {
        let mut cpu: [Vec<f64>; 3] = Default::default();
        let mut lost = [0u64; 3];
        for _ in 0..repeats {
            for (k, &kind) in kinds.iter().enumerate() {
                let mut o = run(kind, n, seconds);
                o.latencies_ns.sort_unstable();
                let per = o.cpu_ns as f64 / o.sent.max(1) as f64;
                cpu[k].push(per);
                lost[k] += o.sent.saturating_sub(o.received);
                println!(
                    "{:>5} {:>9} {:>10} {:>6} {:>9.1} {:>9.1} {:>9.1} {:>12.0}",
                    n,
                    name(kind),
                    o.sent,
                    o.sent.saturating_sub(o.received),
                    pct(&o.latencies_ns, 0.5),
                    pct(&o.latencies_ns, 0.99),
                    pct(&o.latencies_ns, 1.0),
                    per
                );
            }
        }
        summary.push((
            n,
            cpu.map(|mut v| {
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            }),
            lost,
        ));
    }
    println!(
        "median CPU ns/message over the repetitions (ratio to the sendmmsg floor), total lost:"
    );
    for (n, med, lost) in summary {
        println!(
            "{:>5}  relay {:>7.0} ({:.2}x)  sendto {:>7.0} ({:.2}x)  sendmmsg {:>7.0}  lost {}/{}/{}",
            n,
            med[0],
            med[0] / med[2],
            med[1],
            med[1] / med[2],
            med[2],
            lost[0],
            lost[1],
            lost[2]
        );
    }
}

fn name(kind: Kind) -> &'static str {
    match kind {
        Kind::Relay => "relay",
        Kind::Sendto => "sendto",
        Kind::Sendmmsg => "sendmmsg",
    }
}
