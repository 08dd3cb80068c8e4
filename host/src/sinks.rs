//! Sinks: where the router ingests Scream audio.
//!
//! Each configured sink (`sinks: [{name, listen}]`) has its own UDP socket,
//! unicast (`listen: "IP:PORT"`) or joined to a multicast group (`listen:
//! "239.255.77.77:4010"`, or the group alone for Scream's port 4010),
//! and its own ingest thread: it receives each Scream datagram, follows
//! the format in its header (a change is counted and marked in RTP),
//! frames it with the sink's [`Packetizer`] and hands it to the sink's
//! [`Relay`] for every subscribed speaker. One thread wake-up per ingested
//! datagram, whatever the number of speakers.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

use scream_ice_core::scream::{self, MAX_PREFIX_LEN, Packetizer, ScreamFormat};
use scream_ice_core::{Duration, Instant};

use crate::relay::{Forwarder, Relay};

/// A pause in the ingest longer than this is silence: the next datagram
/// carries the RTP marker and the timestamp jumps by the pause.
pub const SILENCE_GAP: Duration = Duration::from_millis(50);

/// Where a sink listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SinkListen {
    /// A unicast address and port.
    Unicast(SocketAddr),
    /// An IPv4 multicast group, joined on `interface` (unspecified: the
    /// kernel's choice).
    Multicast {
        /// The group.
        group: Ipv4Addr,
        /// The port.
        port: u16,
        /// The local interface address to join on.
        interface: Ipv4Addr,
    },
}

impl FromStr for SinkListen {
    type Err = String;

    /// `IP:PORT`, `[IPv6]:PORT`, or a multicast group with or without a
    /// port (default 4010).
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(group) = s.parse::<Ipv4Addr>() {
            return if group.is_multicast() {
                Ok(SinkListen::Multicast {
                    group,
                    port: scream::DEFAULT_PORT,
                    interface: Ipv4Addr::UNSPECIFIED,
                })
            } else {
                Err(format!(
                    "{s:?} has no port (only a multicast group may omit it)"
                ))
            };
        }
        let addr: SocketAddr = s
            .parse()
            .map_err(|_| format!("{s:?} is neither IP:PORT nor a multicast group"))?;
        Ok(match addr {
            SocketAddr::V4(v4) if v4.ip().is_multicast() => SinkListen::Multicast {
                group: *v4.ip(),
                port: v4.port(),
                interface: Ipv4Addr::UNSPECIFIED,
            },
            a if a.ip().is_multicast() => {
                return Err(format!("{s:?}: IPv6 multicast sinks are not supported"));
            }
            a => SinkListen::Unicast(a),
        })
    }
}

impl std::fmt::Display for SinkListen {
    /// The form [`SinkListen::from_str`] reads back: `IP:PORT`, or
    /// `GROUP:PORT` for multicast.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SinkListen::Unicast(a) => write!(f, "{a}"),
            SinkListen::Multicast { group, port, .. } => write!(f, "{group}:{port}"),
        }
    }
}

/// One configured sink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkConfig {
    /// The name speakers subscribe by.
    pub name: String,
    /// Where it listens.
    pub listen: SinkListen,
}

/// Bind a sink's socket: unicast as given; multicast with `SO_REUSEADDR`
/// on the group's port, joined on the configured interface.
pub fn bind(listen: &SinkListen) -> std::io::Result<UdpSocket> {
    match *listen {
        SinkListen::Unicast(a) => UdpSocket::bind(a),
        SinkListen::Multicast {
            group,
            port,
            interface,
        } => {
            use nix::sys::socket::{
                AddressFamily, SockFlag, SockType, SockaddrIn, bind, setsockopt, socket, sockopt,
            };
            let fd = socket(
                AddressFamily::Inet,
                SockType::Datagram,
                SockFlag::SOCK_CLOEXEC,
                None,
            )?;
            setsockopt(&fd, sockopt::ReuseAddr, &true)?;
            bind(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                &SockaddrIn::from(SocketAddrV4::new(group, port)),
            )?;
            let s = UdpSocket::from(fd);
            s.join_multicast_v4(&group, &interface)?;
            Ok(s)
        }
    }
}

/// What a sink has ingested.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// Scream datagrams ingested and forwarded.
    pub datagrams: u64,
    /// Datagrams that were not valid Scream (counted, dropped).
    pub invalid: u64,
    /// Format changes followed (the first format not counted).
    pub format_changes: u64,
    /// Silences detected (the stream paused longer than [`SILENCE_GAP`]).
    pub silences: u64,
    /// Bytes of partial frames dropped: the start of a 5- or 7-channel
    /// frame whose rest never came (the format changed or the stream
    /// paused in between; [`scream::Reframer::dropped_bytes`]).
    pub partial_bytes_dropped: u64,
    /// The current format.
    pub format: Option<ScreamFormat>,
}

/// The receive buffer a sink asks for: about 400 ms of 48 kHz 16-bit
/// stereo Scream (each datagram takes ~2.3 KiB of buffer in the kernel).
pub const SINK_RECV_BUFFER: usize = 1 << 20;

/// The process's monotonic epoch for core `Instant`s.
pub fn now() -> Instant {
    static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();
    let e = EPOCH.get_or_init(std::time::Instant::now);
    Instant::from_micros(e.elapsed().as_micros() as u64)
}

/// A running sink: its socket, ingest thread and relay.
#[derive(Debug)]
pub struct Sink {
    name: String,
    local: SocketAddr,
    recv_buffer: usize,
    relay: Relay,
    stats: Arc<Mutex<SinkStats>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    /// Bind `config.listen` and start ingesting into `relay`.
    pub fn start(config: &SinkConfig, relay: Relay) -> std::io::Result<Sink> {
        Self::start_on(config.name.clone(), bind(&config.listen)?, relay)
    }

    /// Start ingesting from an already bound socket. SSRC, first sequence
    /// number and first timestamp are random (RFC 3550 §5.1).
    pub fn start_on(name: String, socket: UdpSocket, relay: Relay) -> std::io::Result<Sink> {
        let packetizer = random_packetizer()?;
        socket.set_read_timeout(Some(std::time::Duration::from_millis(100)))?;
        // The ingest thread also does the fan-out: while one round of
        // `sendmmsg` runs (~7 ms to 1,000 speakers on loopback here), the
        // sender's next datagrams wait in this buffer. The kernel caps the
        // request at net.core.rmem_max; a smaller buffer is no error.
        if let Err(e) = nix::sys::socket::setsockopt(
            &socket,
            nix::sys::socket::sockopt::RcvBuf,
            &SINK_RECV_BUFFER,
        ) {
            tracing::debug!("sink {name}: SO_RCVBUF not raised: {e}");
        }
        let recv_buffer =
            nix::sys::socket::getsockopt(&socket, nix::sys::socket::sockopt::RcvBuf).unwrap_or(0);
        let local = socket.local_addr()?;
        let stats = Arc::new(Mutex::new(SinkStats::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name(format!("sink-{name}"))
            .spawn({
                let (stats, stop, relay) = (stats.clone(), stop.clone(), relay.clone());
                move || run_ingest(&socket, packetizer, relay.forwarder(), &stats, &stop)
            })?;
        Ok(Sink {
            name,
            local,
            recv_buffer,
            relay,
            stats,
            stop,
            thread: Some(thread),
        })
    }

    /// The sink's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address its socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Its socket's receive buffer as the kernel granted it (Linux counts
    /// its bookkeeping in: twice what was asked, up to twice
    /// net.core.rmem_max).
    pub fn recv_buffer(&self) -> usize {
        self.recv_buffer
    }

    /// The relay its audio goes out through (subscribe speakers here).
    pub fn relay(&self) -> &Relay {
        &self.relay
    }

    /// What it has ingested so far.
    pub fn stats(&self) -> SinkStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Its counters and its relay's, for `/metrics`.
    pub fn sample(&self) -> crate::metrics::SinkSample {
        let s = self.stats();
        let r = self.relay.stats();
        crate::metrics::SinkSample {
            name: self.name.clone(),
            datagrams: s.datagrams,
            invalid: s.invalid,
            messages: r.messages,
            send_errors: r.errors,
            syscalls: r.syscalls,
            partial_bytes_dropped: s.partial_bytes_dropped,
            speakers: self.relay.len(),
        }
    }

    /// A handle that reads this sink's current format, for as long as the
    /// holder wants (a subscribed session announcing it).
    pub fn format_handle(&self) -> FormatHandle {
        FormatHandle(Arc::clone(&self.stats))
    }
}

/// Reads a sink's current format ([`Sink::format_handle`]).
#[derive(Clone, Debug)]
pub struct FormatHandle(Arc<Mutex<SinkStats>>);

impl FormatHandle {
    /// The format of the last datagram ingested, if any came yet.
    pub fn current(&self) -> Option<ScreamFormat> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).format
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A packetizer with a random SSRC, first sequence number and first
/// timestamp (RFC 3550 §5.1).
pub fn random_packetizer() -> std::io::Result<Packetizer> {
    let mut r = [0u8; 10];
    getrandom::fill(&mut r).map_err(|e| std::io::Error::other(e.to_string()))?;
    let ssrc = u32::from_le_bytes([r[0], r[1], r[2], r[3]]);
    let seq = u16::from_le_bytes([r[4], r[5]]);
    let ts = u32::from_le_bytes([r[6], r[7], r[8], r[9]]);
    Ok(Packetizer::new(ssrc, seq, ts, SILENCE_GAP))
}

/// The ingest loop a [`Sink`] runs on its thread, public so a caller
/// can run it on a thread it measures (the fan-out benchmark does): until
/// `stop`, receive Scream from `socket` (whose read timeout bounds how
/// long `stop` takes to be seen), frame it, forward it.
pub fn run_ingest(
    socket: &UdpSocket,
    mut packetizer: Packetizer,
    mut fwd: Forwarder,
    stats: &Mutex<SinkStats>,
    stop: &AtomicBool,
) {
    // One datagram, with room to spare so oversized input is seen whole
    // rather than silently cut.
    let mut buf = [0u8; 4096];
    let mut prefix = [0u8; MAX_PREFIX_LEN];
    // Frames that straddle datagrams (5 and 7 channels) are joined here.
    let mut reframer = scream::Reframer::new(SILENCE_GAP);
    let mut joined = [0u8; 4096 + scream::MAX_FRAME_BYTES];
    let mut dropped = 0;
    while !stop.load(Ordering::Relaxed) {
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "sink socket failed; ingest stops");
                return;
            }
        };
        let at = now();
        let framed = reframer
            .push(at, &buf[..n], &mut joined)
            .and_then(|r| match r {
                Some((format, pcm)) => packetizer
                    .packetize_pcm(at, format, pcm, &mut prefix)
                    .map(|p| Some((p, pcm))),
                None => Ok(None),
            });
        match framed {
            Ok(None) => {}
            Ok(Some((p, pcm))) => {
                fwd.forward(&prefix[..p.prefix_len], pcm);
                let mut s = stats.lock().unwrap_or_else(|e| e.into_inner());
                s.datagrams += 1;
                if p.format_changed {
                    s.format_changes += 1;
                } else if p.header.marker && s.datagrams > 1 {
                    s.silences += 1;
                }
                s.format = Some(p.format);
            }
            Err(_) => {
                stats.lock().unwrap_or_else(|e| e.into_inner()).invalid += 1;
            }
        }
        if reframer.dropped_bytes() != dropped {
            dropped = reframer.dropped_bytes();
            stats
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .partial_bytes_dropped = dropped;
        }
    }
}

/// Every configured sink of a router, by name: what the session layer
/// subscribes a speaker to (`POST /api/ice/sessions?sink=NAME`, once the
/// speaker sessions carry audio).
#[derive(Debug, Default)]
pub struct SinkSet {
    sinks: Vec<Sink>,
}

impl SinkSet {
    /// Start every sink in `configs`, each relaying from `sockets` (the
    /// router's media sockets, one per local address).
    pub fn start(configs: &[SinkConfig], sockets: &[Arc<UdpSocket>]) -> std::io::Result<SinkSet> {
        let mut sinks = Vec::with_capacity(configs.len());
        for c in configs {
            let relay = Relay::new(sockets.to_vec())?;
            let sink = Sink::start(c, relay).map_err(|e| {
                std::io::Error::new(e.kind(), format!("sink {:?}: cannot listen: {e}", c.name))
            })?;
            sinks.push(sink);
        }
        Ok(SinkSet { sinks })
    }

    /// The sink called `name`.
    pub fn get(&self, name: &str) -> Option<&Sink> {
        self.sinks.iter().find(|s| s.name() == name)
    }

    /// Every sink, in config order.
    pub fn iter(&self) -> impl Iterator<Item = &Sink> {
        self.sinks.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::Route;
    use scream_ice_core::scream::rtp;

    #[test]
    fn sink_set_by_name() {
        let out = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        let configs = [
            SinkConfig {
                name: "a".into(),
                listen: "127.0.0.1:0".parse().unwrap(),
            },
            SinkConfig {
                name: "b".into(),
                listen: "127.0.0.1:0".parse().unwrap(),
            },
        ];
        let set = SinkSet::start(&configs, &[out]).unwrap();
        assert_eq!(set.iter().count(), 2);
        let b = set.get("b").unwrap();
        assert_ne!(b.local_addr(), set.get("a").unwrap().local_addr());
        assert!(set.get("c").is_none());
        assert!(b.relay().is_empty());
    }

    #[test]
    fn listen_forms() {
        assert_eq!(
            "127.0.0.1:4010".parse::<SinkListen>(),
            Ok(SinkListen::Unicast("127.0.0.1:4010".parse().unwrap()))
        );
        assert_eq!(
            "239.255.77.77".parse::<SinkListen>(),
            Ok(SinkListen::Multicast {
                group: Ipv4Addr::new(239, 255, 77, 77),
                port: 4010,
                interface: Ipv4Addr::UNSPECIFIED
            })
        );
        assert!(matches!(
            "239.255.77.77:4011".parse::<SinkListen>(),
            Ok(SinkListen::Multicast { port: 4011, .. })
        ));
        assert!("127.0.0.1".parse::<SinkListen>().is_err());
        assert!("nonsense".parse::<SinkListen>().is_err());
        assert!("[ff02::1]:4010".parse::<SinkListen>().is_err());
    }

    #[test]
    fn ingest_follows_format_and_forwards_rtp() {
        let out = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        let relay = Relay::new(vec![out]).unwrap();
        let speaker = UdpSocket::bind("127.0.0.1:0").unwrap();
        speaker
            .set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        relay
            .subscribe(Route {
                socket: 0,
                destination: speaker.local_addr().unwrap(),
            })
            .unwrap();
        let sink = Sink::start(
            &SinkConfig {
                name: "living-room".into(),
                listen: "127.0.0.1:0".parse().unwrap(),
            },
            relay,
        )
        .unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut d = [5u8; scream::DATAGRAM_LEN];
        d[..5].copy_from_slice(&ScreamFormat::STEREO_48K_16.to_header());
        tx.send_to(&d, sink.local_addr()).unwrap();
        tx.send_to(&[1, 2, 3], sink.local_addr()).unwrap();
        // 1152 bytes of 5-channel 16-bit audio: 115 frames and 2 bytes of
        // the next, held for a datagram that never comes (the format
        // changes below), so those 2 bytes are dropped and counted.
        let five = ScreamFormat::new(48_000, 16, 5, 0x0037).unwrap();
        let mut d5 = d;
        d5[..5].copy_from_slice(&five.to_header());
        tx.send_to(&d5, sink.local_addr()).unwrap();
        let f = ScreamFormat::new(44_100, 24, 6, 0x060F).unwrap();
        d[..5].copy_from_slice(&f.to_header());
        tx.send_to(&d, sink.local_addr()).unwrap();
        let mut buf = [0u8; 2048];
        let n = speaker.recv(&mut buf).unwrap();
        let (h1, p1) = rtp::Header::parse(&buf[..n]).unwrap();
        assert!(h1.marker);
        assert_eq!((h1.payload_type, p1), (102, &d[5..]));
        let n = speaker.recv(&mut buf).unwrap();
        let (h5, p5) = rtp::Header::parse(&buf[..n]).unwrap();
        let (got, pcm) = scream::split_payload(h5.payload_type, p5).unwrap();
        assert_eq!((got, pcm.len()), (five, 115 * 10), "whole frames only");
        assert_eq!(h5.sequence, h1.sequence.wrapping_add(1));
        let n = speaker.recv(&mut buf).unwrap();
        let (h2, _) = rtp::Header::parse(&buf[..n]).unwrap();
        assert_eq!((h2.payload_type, h2.marker), (99, true));
        assert_eq!(h2.sequence, h1.sequence.wrapping_add(2));
        assert_eq!(h2.ssrc, h1.ssrc);
        // The stats are updated after each forward: wait for all four.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while (sink.stats().invalid, sink.stats().datagrams) != (1, 3)
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let s = sink.stats();
        let rmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            sink.recv_buffer() >= SINK_RECV_BUFFER.min(rmem_max),
            "{} < {SINK_RECV_BUFFER} (rmem_max {rmem_max})",
            sink.recv_buffer()
        );
        assert_eq!((s.datagrams, s.invalid, s.format_changes), (3, 1, 2));
        assert_eq!(s.partial_bytes_dropped, 2);
        assert_eq!(s.format, Some(f));
    }
}

#[cfg(test)]
mod route_change {
    use super::*;
    use crate::relay::Route;
    use scream_ice_core::scream::rtp;
    use std::time::Duration as StdDuration;

    /// A speaker's address changes mid-stream (what an ICE restart or a
    /// new selected pair does to the relay): the next datagram goes to the
    /// new address, sequence numbers continue with none missing, and the
    /// gap seen by the speaker stays within two datagram periods.
    #[test]
    fn moving_a_subscriber_mid_stream_loses_nothing() {
        let relay = Relay::new(vec![Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap())]).unwrap();
        let (a, b) = (
            UdpSocket::bind("127.0.0.1:0").unwrap(),
            UdpSocket::bind("127.0.0.1:0").unwrap(),
        );
        for s in [&a, &b] {
            s.set_read_timeout(Some(StdDuration::from_secs(2))).unwrap();
        }
        let id = relay
            .subscribe(Route {
                socket: 0,
                destination: a.local_addr().unwrap(),
            })
            .unwrap();
        let sink = Sink::start(
            &SinkConfig {
                name: "s".into(),
                listen: "127.0.0.1:0".parse().unwrap(),
            },
            relay.clone(),
        )
        .unwrap();
        let to = sink.local_addr();
        let sender = std::thread::spawn(move || {
            let mut p = crate::scream_cli::Pacer::new(to, 0.0).unwrap();
            let pcm = vec![0u8; 1152 * 100];
            p.send(&ScreamFormat::STEREO_48K_16, &pcm).unwrap();
        });
        // Both speakers' sockets record arrivals concurrently until the
        // stream has been quiet for 300 ms.
        let record = |s: UdpSocket| {
            std::thread::spawn(move || {
                s.set_read_timeout(Some(StdDuration::from_millis(300)))
                    .unwrap();
                let mut got = Vec::new();
                let mut buf = [0u8; 2048];
                while let Ok(len) = s.recv(&mut buf) {
                    let (h, _) = rtp::Header::parse(&buf[..len]).unwrap();
                    got.push((h.sequence, std::time::Instant::now()));
                }
                got
            })
        };
        let (ra, rb) = (record(a), record(b.try_clone().unwrap()));
        std::thread::sleep(StdDuration::from_millis(240));
        relay
            .set_route(
                id,
                Route {
                    socket: 0,
                    destination: b.local_addr().unwrap(),
                },
            )
            .unwrap();
        let (on_a, on_b) = (ra.join().unwrap(), rb.join().unwrap());
        sender.join().unwrap();
        assert!(
            on_a.len() > 10 && on_b.len() > 10,
            "{} then {}",
            on_a.len(),
            on_b.len()
        );
        assert_eq!(on_a.len() + on_b.len(), 100);
        let seqs: Vec<u16> = on_a.iter().chain(&on_b).map(|x| x.0).collect();
        for w in seqs.windows(2) {
            assert_eq!(w[1], w[0].wrapping_add(1), "sequence continues: {seqs:?}");
        }
        let gap = on_b[0].1.saturating_duration_since(on_a.last().unwrap().1);
        println!(
            "route change: last datagram on the old address to first on the new: {:.2} ms",
            gap.as_secs_f64() * 1e3
        );
        // The switch costs no more than an ordinary datagram interval:
        // bounded by the largest gap between consecutive arrivals on
        // either address (6 ms when the machine is quiet, more when its
        // scheduler delays the sender) plus 2 ms, and by 50 ms absolutely.
        let worst = |v: &[(u16, std::time::Instant)]| {
            v.windows(2)
                .map(|w| w[1].1.saturating_duration_since(w[0].1))
                .max()
                .unwrap_or_default()
        };
        let ordinary = worst(&on_a).max(worst(&on_b));
        assert!(
            gap <= ordinary + StdDuration::from_millis(2),
            "switch gap {gap:?}, ordinary worst {ordinary:?}"
        );
        assert!(gap < StdDuration::from_millis(50), "gap {gap:?}");
    }
}
