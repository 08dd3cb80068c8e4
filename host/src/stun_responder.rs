//! The router's own STUN Binding responder (RFC 8489 §6.3, no credentials).
//!
//! It runs beside the HTTP server for the whole life of `scream-ice serve`,
//! so that a peer which needs a server-reflexive candidate can get one from
//! the router itself instead of an external server. The loop is the thinnest
//! possible adapter around `scream_ice_core::stun::server::answer`: receive
//! into a fixed buffer, answer into another, send; nothing is allocated per
//! request.
//!
//! It runs on its own OS thread with a blocking socket rather than as a
//! tokio task: a request then costs exactly two system calls (`recvfrom`,
//! `sendto`) and no readiness polling or task wake-ups, which is what makes
//! it cheaper per request than coturn (see docs/BENCHMARKS.md).
//!
//! Every datagram first meets two token buckets ([`StunLimits`]): one per
//! source (address, or IPv6 /64) and one for the whole responder. Over
//! either, it is dropped unanswered, so the responder cannot be turned into
//! a reflector beyond the global rate, nor monopolised by one source; and
//! `answer` keeps each reply as small as the request allows.

use std::io;
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use scream_ice_core::stun::server::{Answer, answer};

use crate::limits::{KeyedLimiter, StunLimits, source_key};

/// Largest datagram read. A STUN message sent over UDP should fit in 548
/// bytes (RFC 8489 §6.1) but may be up to the path MTU; a longer datagram is
/// truncated by the kernel and then fails STUN's length check (ignored).
pub const MAX_DATAGRAM: usize = 1500;

/// Output buffer size: `answer` guarantees 548 bytes always suffice.
pub const ANSWER_BUFFER: usize = 548;

/// How often an idle responder looks at its stop flag: the upper bound on
/// how long [`Responder::stop`] takes.
pub const STOP_POLL: Duration = Duration::from_millis(100);

/// A running responder; stop it with [`Responder::stop`] (dropping it
/// leaves the thread running until the process exits).
#[derive(Debug)]
pub struct Responder {
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    thread: Option<JoinHandle<()>>,
}

/// What a responder did so far (relaxed counters, for tests and metrics).
#[derive(Debug, Default)]
pub struct Counters {
    /// Datagrams answered.
    pub answered: AtomicU64,
    /// Datagrams dropped by the per-source bucket.
    pub source_limited: AtomicU64,
    /// Datagrams dropped by the global bucket.
    pub global_limited: AtomicU64,
}

impl Responder {
    /// Answer Binding requests on `socket` (a bound, blocking std socket)
    /// on a new thread named `stun-responder`, with SOFTWARE `software` and
    /// the default [`StunLimits`].
    pub fn spawn(socket: UdpSocket, software: &'static str) -> io::Result<Responder> {
        Responder::spawn_limited(socket, software, StunLimits::default())
    }

    /// [`Responder::spawn`] with the given limits.
    pub fn spawn_limited(
        socket: UdpSocket,
        software: &'static str,
        limits: StunLimits,
    ) -> io::Result<Responder> {
        socket.set_nonblocking(false)?;
        socket.set_read_timeout(Some(STOP_POLL))?;
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let (flag, count) = (stop.clone(), counters.clone());
        let thread = std::thread::Builder::new()
            .name("stun-responder".into())
            .spawn(move || serve(&socket, software, limits, &flag, &count))?;
        Ok(Responder {
            stop,
            counters,
            thread: Some(thread),
        })
    }

    /// The responder's counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Stop the loop and wait for the thread (at most about [`STOP_POLL`]).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The loop: until `stop` is set, receive one datagram, drop it if its
/// source or the responder is over its [`StunLimits`], else answer it per
/// `scream_ice_core::stun::server::answer` and send the answer back to its
/// source. Receive and send errors (e.g. an ICMP error reported on the
/// socket) are logged at debug level and do not stop the loop. No allocation
/// per request once a source is known (the source table is bounded by
/// `limits.max_sources`).
pub fn serve(
    socket: &UdpSocket,
    software: &str,
    limits: StunLimits,
    stop: &AtomicBool,
    counters: &Counters,
) {
    let mut input = [0u8; MAX_DATAGRAM];
    let mut output = [0u8; ANSWER_BUFFER];
    let mut limiter = KeyedLimiter::new(
        limits.per_source,
        limits.global,
        limits.max_sources,
        Instant::now(),
    );
    while !stop.load(Ordering::Relaxed) {
        let (n, source) = match socket.recv_from(&mut input) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => {
                tracing::debug!("stun: recv_from: {e}");
                continue;
            }
        };
        let Some(datagram) = input.get(..n) else {
            continue;
        };
        match limiter.check(source_key(source.ip()), Instant::now()) {
            Ok(()) => {}
            Err(crate::limits::Limited::Source) => {
                counters.source_limited.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Err(crate::limits::Limited::Global) => {
                counters.global_limited.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        }
        match answer(datagram, source, Some(software), &mut output) {
            Ok(Answer::Reply(len)) => {
                if let Some(reply) = output.get(..len) {
                    match socket.send_to(reply, source) {
                        Ok(_) => {
                            counters.answered.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => tracing::debug!("stun: send_to {source}: {e}"),
                    }
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!("stun: cannot answer {source}: {e}"),
        }
    }
}
