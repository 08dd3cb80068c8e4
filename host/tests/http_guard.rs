//! The HTTP limits on real loopback connections (`http_guard::serve` with
//! the API router): half-sent requests are closed by the header timeout
//! while others are answered, connection caps, `Host` checks against DNS
//! rebinding, per-route body limits, CORS only for configured origins.

mod support;

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use scream_ice_host::limits::HttpLimits;
use support::{connect_from, ice_config, request, server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn nz(v: u32) -> NonZeroU32 {
    NonZeroU32::new(v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_are_closed_by_the_header_timeout_while_others_are_answered() {
    const HALF_SENT: usize = 800;
    let timeout = Duration::from_millis(1_500);
    let addr = server(HttpLimits {
        header_timeout_ms: nz(1_500),
        max_connections: nz(1_000),
        max_connections_per_client: nz(40),
        ..HttpLimits::default()
    })
    .await;
    // 800 connections from 20 loopback addresses (40 each, the per-client
    // cap), each sending half a request header and then nothing.
    let start = Instant::now();
    let mut held = Vec::new();
    for i in 0..HALF_SENT {
        let from = [127, 0, 1, 1 + (i / 40) as u8];
        let mut s = connect_from(from, addr).await;
        let opened_at = Instant::now();
        s.write_all(b"GET /api/ice-config HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .await
            .unwrap();
        held.push(tokio::spawn(async move {
            let mut buf = [0u8; 512];
            // Closed by the server: EOF (or a reset); how long it was open.
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return Instant::now() - opened_at,
                    Ok(_) => {}
                }
            }
        }));
    }
    let opened = start.elapsed();
    // Meanwhile another client is answered, again and again.
    let mut answered = 0;
    while start.elapsed() < timeout {
        let r = ice_config([127, 0, 0, 1], addr).await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        answered += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered >= 5, "only {answered} answers during the flood");
    // Every half-sent request was held open (not refused) and closed by the
    // header timeout: open for the timeout, give or take 1 s of scheduling
    // slack on a busy box.
    let (mut shortest, mut longest) = (Duration::MAX, Duration::ZERO);
    for h in held {
        let open_for = tokio::time::timeout(Duration::from_secs(10), h)
            .await
            .expect("a half-sent request still open 10 s later")
            .unwrap();
        shortest = shortest.min(open_for);
        longest = longest.max(open_for);
    }
    assert!(
        shortest >= timeout - Duration::from_millis(100)
            && longest <= timeout + Duration::from_secs(1),
        "half-sent requests open from {shortest:?} to {longest:?} (header timeout {timeout:?}; \
         opening all took {opened:?})"
    );
    println!(
        "{HALF_SENT} half-sent requests: open {shortest:?} to {longest:?} (header timeout {timeout:?}); {answered} answers to another client meanwhile"
    );
    // And the server still answers afterwards.
    assert!(
        ice_config([127, 0, 0, 1], addr)
            .await
            .starts_with("HTTP/1.1 200 OK\r\n")
    );
}

#[tokio::test]
async fn one_client_cannot_take_every_connection() {
    let addr = server(HttpLimits {
        max_connections_per_client: nz(8),
        ..HttpLimits::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(connect_from([127, 0, 0, 2], addr).await);
    }
    // The ninth from the same client is closed at once, unanswered.
    let mut ninth = connect_from([127, 0, 0, 2], addr).await;
    let _ = ninth
        .write_all(format!("GET /api/ice-config HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), ninth.read_to_end(&mut out)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "{read:?} {:?}",
        String::from_utf8_lossy(&out)
    );
    // Another client is still served.
    assert!(
        ice_config([127, 0, 0, 3], addr)
            .await
            .starts_with("HTTP/1.1 200 OK\r\n")
    );
    drop(held);
}

#[tokio::test]
async fn host_header_must_name_this_server() {
    let addr = server(HttpLimits {
        allowed_hosts: vec!["router.local".into()],
        ..HttpLimits::default()
    })
    .await;
    let get = |host: &str| format!("GET /api/ice-config HTTP/1.1\r\nHost: {host}\r\n");
    for ok in [
        addr.to_string(),
        "localhost:8188".into(),
        "router.local".into(),
    ] {
        let r = request([127, 0, 0, 1], addr, &get(&ok), "").await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}: {r}");
    }
    // A DNS-rebinding page: its own name in Host.
    for bad in [
        "attacker.example",
        "attacker.example:8188",
        "192.168.1.2:8188",
    ] {
        let r = request([127, 0, 0, 1], addr, &get(bad), "").await;
        assert!(r.starts_with("HTTP/1.1 421 "), "{bad}: {r}");
    }
}

#[tokio::test]
async fn bodies_are_limited_per_route() {
    let addr = server(HttpLimits::default()).await;
    let big = "x".repeat(17 * 1024);
    let r = request(
        [127, 0, 0, 1],
        addr,
        &format!(
            "POST /api/ice/sessions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/trickle-ice-sdpfrag\r\nContent-Length: {}\r\n",
            big.len()
        ),
        &big,
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 413 "), "{r}");
    // Chunked, without Content-Length: cut while reading.
    let chunked = format!("{:x}\r\n{big}\r\n0\r\n\r\n", big.len());
    let r = request(
        [127, 0, 0, 1],
        addr,
        &format!(
            "POST /api/ice/sessions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/trickle-ice-sdpfrag\r\nTransfer-Encoding: chunked\r\n"
        ),
        &chunked,
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 413 "), "{r}");
    // A GET carries no body worth more than 1 KiB.
    let r = request(
        [127, 0, 0, 1],
        addr,
        &format!("GET /api/ice-config HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 2000\r\n"),
        &"y".repeat(2000),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 413 "), "{r}");
}

#[tokio::test]
async fn cors_only_for_configured_origins() {
    let addr = server(HttpLimits {
        cors_origins: vec!["http://router.local:8188".into()],
        ..HttpLimits::default()
    })
    .await;
    let get = |origin: &str| {
        format!("GET /api/ice-config HTTP/1.1\r\nHost: {addr}\r\nOrigin: {origin}\r\n")
    };
    let r = request([127, 0, 0, 1], addr, &get("http://router.local:8188"), "").await;
    assert!(
        r.to_ascii_lowercase()
            .contains("access-control-allow-origin: http://router.local:8188\r\n"),
        "{r}"
    );
    let r = request([127, 0, 0, 1], addr, &get("http://attacker.example"), "").await;
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert!(
        !r.to_ascii_lowercase()
            .contains("access-control-allow-origin"),
        "{r}"
    );
    // Without configured origins there is no CORS at all.
    let plain = server(HttpLimits::default()).await;
    let r = request(
        [127, 0, 0, 1],
        plain,
        &format!(
            "GET /api/ice-config HTTP/1.1\r\nHost: {plain}\r\nOrigin: http://router.local:8188\r\n"
        ),
        "",
    )
    .await;
    assert!(
        !r.to_ascii_lowercase()
            .contains("access-control-allow-origin"),
        "{r}"
    );
}
