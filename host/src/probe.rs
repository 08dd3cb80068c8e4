//! `scream-ice stun probe`: one STUN Binding transaction (RFC 8489 §6.2.1)
//! against a server, with the core's codec.
//!
//! Used by operators to check that a configured STUN server (or our own
//! responder) answers and what address it reflects, before and after a
//! migration.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use scream_ice_core::stun::{
    Class, Message, MessageBuilder, MessageType, Method, Repr, TransactionId,
};
use tokio::net::UdpSocket;

/// The result of a successful probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeResult {
    /// The server's address the request went to.
    pub server: SocketAddr,
    /// Our address as the server saw it (XOR-MAPPED-ADDRESS, or
    /// MAPPED-ADDRESS from an old server).
    pub mapped: SocketAddr,
    /// Round-trip time, from the first transmission.
    pub rtt: Duration,
    /// How many times the request was retransmitted.
    pub retransmissions: u32,
    /// The server's SOFTWARE attribute, if any.
    pub software: Option<String>,
}

/// Why a probe failed. Each prints as one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The target is not `HOST:PORT` or does not resolve.
    #[error("cannot resolve {target:?}: {reason}")]
    Resolve {
        /// The target as given.
        target: String,
        /// Why.
        reason: String,
    },
    /// Socket error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// The server's host answered with ICMP port unreachable.
    #[error("{server} refused (ICMP port unreachable: nothing listens there)")]
    Refused {
        /// The server.
        server: SocketAddr,
    },
    /// No answer in time.
    #[error("no answer from {server} within {timeout_ms} ms ({sent} requests sent)")]
    Timeout {
        /// The server.
        server: SocketAddr,
        /// The timeout.
        timeout_ms: u64,
        /// How many requests were sent.
        sent: u32,
    },
    /// The server answered with an error response.
    #[error("{server} answered with error {code} {reason:?}")]
    ErrorResponse {
        /// The server.
        server: SocketAddr,
        /// The ERROR-CODE number.
        code: u16,
        /// The reason phrase.
        reason: String,
    },
    /// A success response without a mapped address.
    #[error("{server} answered without XOR-MAPPED-ADDRESS or MAPPED-ADDRESS")]
    NoMappedAddress {
        /// The server.
        server: SocketAddr,
    },
}

/// Resolve `target` (`HOST:PORT`), send a Binding request with FINGERPRINT
/// from an ephemeral port, retransmit per RFC 8489 §6.2.1 (RTO 500 ms,
/// doubling) and wait at most `timeout` for the matching response.
/// Responses with another transaction id, or whose FINGERPRINT does not
/// verify, are ignored.
pub async fn probe(target: &str, timeout: Duration) -> Result<ProbeResult, ProbeError> {
    let server = tokio::net::lookup_host(target)
        .await
        .map_err(|e| ProbeError::Resolve {
            target: target.to_string(),
            reason: e.to_string(),
        })?
        .next()
        .ok_or_else(|| ProbeError::Resolve {
            target: target.to_string(),
            reason: "no address".to_string(),
        })?;
    let bind: SocketAddr = if server.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let io = |context: &str| {
        let context = context.to_string();
        move |source| ProbeError::Io { context, source }
    };
    let socket = UdpSocket::bind(bind).await.map_err(io("bind"))?;
    // Connected, so that an ICMP port unreachable comes back as an error.
    socket.connect(server).await.map_err(io("connect"))?;
    let mut tid = [0u8; 12];
    getrandom::fill(&mut tid).map_err(|e| ProbeError::Io {
        context: "random transaction id".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let tid = TransactionId(tid);
    let mut request = [0u8; 64];
    let len = {
        let mut b = MessageBuilder::new(&mut request, MessageType::BINDING_REQUEST, tid);
        // Our SOFTWARE asks for the server's (ours answers with SOFTWARE only
        // to a request that carries one: see `stun::server::answer`).
        b.add(&scream_ice_core::stun::Attribute::Software(crate::SOFTWARE));
        b.add_fingerprint();
        b.finish().map_err(|e| ProbeError::Io {
            context: "encode".into(),
            source: std::io::Error::other(e.to_string()),
        })?
    };
    let request = &request[..len];
    let start = Instant::now();
    let deadline = start + timeout;
    let mut rto = Duration::from_millis(500);
    let mut sent = 0u32;
    let mut next_send = start;
    let mut buf = [0u8; 1500];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(ProbeError::Timeout {
                server,
                timeout_ms: timeout.as_millis() as u64,
                sent,
            });
        }
        if now >= next_send {
            socket.send_to(request, server).await.map_err(io("send"))?;
            sent += 1;
            next_send = now + rto;
            rto *= 2;
        }
        let wait = next_send.min(deadline);
        let received = tokio::time::timeout_at(wait.into(), socket.recv(&mut buf)).await;
        let n = match received {
            Err(_) => continue,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(ProbeError::Refused { server });
            }
            Ok(Err(_)) => continue,
            Ok(Ok(n)) => n,
        };
        let Ok(message) = Message::new_checked(&buf[..n]) else {
            continue;
        };
        if message.transaction_id() != tid || message.method() != Method::BINDING {
            continue;
        }
        let Ok(repr) = Repr::parse(&message) else {
            continue;
        };
        if repr.has_fingerprint() && repr.verify_fingerprint().is_err() {
            continue;
        }
        let rtt = start.elapsed();
        match message.class() {
            Class::SuccessResponse => {
                let mapped = repr
                    .xor_mapped_address
                    .or(repr.mapped_address)
                    .ok_or(ProbeError::NoMappedAddress { server })?;
                return Ok(ProbeResult {
                    server,
                    mapped,
                    rtt,
                    retransmissions: sent - 1,
                    software: repr.software.map(str::to_string),
                });
            }
            Class::ErrorResponse => {
                let (code, reason) = repr
                    .error_code
                    .map(|e| (e.code, e.reason.to_string()))
                    .unwrap_or((0, String::new()));
                return Err(ProbeError::ErrorResponse {
                    server,
                    code,
                    reason,
                });
            }
            _ => continue,
        }
    }
}
