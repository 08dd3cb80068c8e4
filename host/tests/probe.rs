//! `scream-ice stun probe` against scripted loopback servers: it ignores
//! datagrams that are not the answer to its request, retransmits until
//! one comes, reads an old server's MAPPED-ADDRESS, and reports error
//! responses, answers without an address, silence and a closed port
//! each as one error.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use scream_ice_core::stun::{
    Attribute, ErrorCode, Message, MessageBuilder, MessageType, TransactionId,
};
use scream_ice_host::probe::{ProbeError, probe};

/// A server on 127.0.0.1 that answers each request it receives with the
/// datagrams `script` returns for it (request number, transaction id,
/// client address); an empty list means "drop it".
fn server(
    requests: usize,
    script: impl Fn(usize, TransactionId, SocketAddr) -> Vec<Vec<u8>> + Send + 'static,
) -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = s.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        for i in 0..requests {
            let Ok((n, from)) = s.recv_from(&mut buf) else {
                return;
            };
            let tid = Message::new_checked(&buf[..n]).unwrap().transaction_id();
            for d in script(i, tid, from) {
                s.send_to(&d, from).unwrap();
            }
        }
    });
    addr
}

fn message(ty: MessageType, tid: TransactionId, attrs: &[Attribute<'_>]) -> Vec<u8> {
    let mut b = [0u8; 512];
    let mut m = MessageBuilder::new(&mut b, ty, tid);
    for a in attrs {
        m.add(a);
    }
    m.add_fingerprint();
    let n = m.finish().unwrap();
    b[..n].to_vec()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn strays_are_ignored_and_a_dropped_request_is_retransmitted() {
    let addr = server(2, |i, tid, from| {
        if i == 0 {
            return Vec::new(); // lost: the client must retransmit
        }
        let mut other = tid.0;
        other[0] ^= 0xff;
        vec![
            b"not stun at all".to_vec(),
            // Someone else's transaction.
            message(
                MessageType::BINDING_SUCCESS,
                TransactionId(other),
                &[Attribute::XorMappedAddress(from)],
            ),
            // Ours, with a broken FINGERPRINT.
            {
                let mut m = message(
                    MessageType::BINDING_SUCCESS,
                    tid,
                    &[Attribute::XorMappedAddress(from)],
                );
                let last = m.len() - 1;
                m[last] ^= 1;
                m
            },
            // An indication is not an answer either.
            message(MessageType::BINDING_INDICATION, tid, &[]),
            // The answer: an old server's MAPPED-ADDRESS only.
            message(
                MessageType::BINDING_SUCCESS,
                tid,
                &[Attribute::MappedAddress(from), Attribute::Software("old/1")],
            ),
        ]
    });
    let r = rt()
        .block_on(probe(&addr.to_string(), Duration::from_secs(3)))
        .unwrap();
    assert_eq!(r.server, addr);
    assert_eq!(r.mapped.ip().to_string(), "127.0.0.1");
    assert_eq!(r.retransmissions, 1);
    assert_eq!(r.software.as_deref(), Some("old/1"));
    assert!(r.rtt >= Duration::from_millis(400), "{:?}", r.rtt);
}

#[test]
fn an_error_response_is_reported_with_its_code() {
    let addr = server(1, |_, tid, _| {
        vec![message(
            MessageType::BINDING_ERROR,
            tid,
            &[Attribute::ErrorCode(ErrorCode {
                code: 420,
                reason: "Unknown Attribute",
            })],
        )]
    });
    let e = rt()
        .block_on(probe(&addr.to_string(), Duration::from_secs(2)))
        .unwrap_err();
    assert!(
        matches!(&e, ProbeError::ErrorResponse { code: 420, reason, .. } if reason == "Unknown Attribute"),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        format!("{addr} answered with error 420 \"Unknown Attribute\"")
    );
}

#[test]
fn a_success_without_an_address_and_silence_are_errors() {
    let addr = server(1, |_, tid, _| {
        vec![message(MessageType::BINDING_SUCCESS, tid, &[])]
    });
    let e = rt()
        .block_on(probe(&addr.to_string(), Duration::from_secs(2)))
        .unwrap_err();
    assert!(matches!(e, ProbeError::NoMappedAddress { .. }), "{e:?}");

    // A server that never answers: a timeout, with the requests sent at
    // 0 and 500 ms counted.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let e = rt()
        .block_on(probe(
            &silent.local_addr().unwrap().to_string(),
            Duration::from_millis(1200),
        ))
        .unwrap_err();
    assert!(
        matches!(
            e,
            ProbeError::Timeout {
                timeout_ms: 1200,
                sent: 2,
                ..
            }
        ),
        "{e:?}"
    );

    // No one on the port: the ICMP port unreachable ends it at once.
    let closed = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let e = rt()
        .block_on(probe(&closed.to_string(), Duration::from_secs(2)))
        .unwrap_err();
    assert!(
        matches!(e, ProbeError::Refused { server } if server == closed),
        "{e:?}"
    );
}
