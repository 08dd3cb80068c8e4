//! The router's own STUN Binding responder (RFC 8489 §6.3, no credentials).
//!
//! It runs beside the HTTP server for the whole life of `scream-ice serve`,
//! so that a peer which needs a server-reflexive candidate can get one from
//! the router itself instead of an external server. The loop is the thinnest
//! possible adapter around `scream_ice_core::stun::server::answer`: receive
//! into a fixed buffer, answer into another, send; nothing is allocated per
//! request.

use std::io;

use scream_ice_core::stun::server::{Answer, answer};
use tokio::net::UdpSocket;

/// Largest datagram read. A STUN message sent over UDP should fit in 548
/// bytes (RFC 8489 §6.1) but may be up to the path MTU; a longer datagram is
/// truncated by the kernel and then fails STUN's length check (ignored).
pub const MAX_DATAGRAM: usize = 1500;

/// Output buffer size: `answer` guarantees 548 bytes always suffice.
pub const ANSWER_BUFFER: usize = 548;

/// Answer Binding requests on `socket` until the task is dropped or
/// aborted. Receive and send errors (e.g. ICMP unreachable reported on the
/// socket) are logged at debug level and do not stop the loop. No allocation
/// per request.
pub async fn run(socket: UdpSocket, software: &str) -> io::Result<()> {
    let mut input = [0u8; MAX_DATAGRAM];
    let mut output = [0u8; ANSWER_BUFFER];
    loop {
        let (n, source) = match socket.recv_from(&mut input).await {
            Ok(r) => r,
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
                    && let Err(e) = socket.send_to(reply, source).await
                {
                    tracing::debug!("stun: send_to {source}: {e}");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!("stun: cannot answer {source}: {e}"),
        }
    }
}
