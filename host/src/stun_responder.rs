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

use std::io;
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use scream_ice_core::stun::server::{Answer, answer};

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
    thread: Option<JoinHandle<()>>,
}

impl Responder {
    /// Answer Binding requests on `socket` (a bound, blocking std socket)
    /// on a new thread named `stun-responder`, with SOFTWARE `software`.
    pub fn spawn(socket: UdpSocket, software: &'static str) -> io::Result<Responder> {
        socket.set_nonblocking(false)?;
        socket.set_read_timeout(Some(STOP_POLL))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("stun-responder".into())
            .spawn(move || serve(&socket, software, &flag))?;
        Ok(Responder {
            stop,
            thread: Some(thread),
        })
    }

    /// Stop the loop and wait for the thread (at most about [`STOP_POLL`]).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The loop: until `stop` is set, receive one datagram, answer it per
/// `scream_ice_core::stun::server::answer`, send the answer back to its
/// source. Receive and send errors (e.g. an ICMP error reported on the
/// socket) are logged at debug level and do not stop the loop. No allocation
/// per request.
pub fn serve(socket: &UdpSocket, software: &str, stop: &AtomicBool) {
    let mut input = [0u8; MAX_DATAGRAM];
    let mut output = [0u8; ANSWER_BUFFER];
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
        match answer(datagram, source, Some(software), &mut output) {
            Ok(Answer::Reply(len)) => {
                if let Some(reply) = output.get(..len)
                    && let Err(e) = socket.send_to(reply, source)
                {
                    tracing::debug!("stun: send_to {source}: {e}");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!("stun: cannot answer {source}: {e}"),
        }
    }
}
