//! Shared by the hardening tests: the API behind `http_guard::serve` on an
//! ephemeral loopback port, and raw HTTP/1.1 requests from a chosen
//! loopback address (so one test can be several clients).
#![allow(dead_code, unused_imports)] // each test binary uses its own subset

use std::net::SocketAddr;
use std::time::Duration;

use scream_ice_host::config::Config;
use scream_ice_host::http::{AppState, router};
use scream_ice_host::http_guard;
use scream_ice_host::limits::HttpLimits;
use scream_ice_host::sessions::SessionSettings;

mod speaker;
pub use speaker::*;
mod rollout;
pub use rollout::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// The API with `config`, `settings` and `limits` on an ephemeral loopback
/// port; runs until the test's runtime ends.
pub async fn server_with(
    config: Config,
    settings: SessionSettings,
    limits: HttpLimits,
) -> (SocketAddr, AppState) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = AppState::with_sessions(config, None, settings);
    // As `serve` does: the bound address, whatever the config says.
    state.set_listeners(vec![addr]);
    tokio::spawn(http_guard::serve(
        listener,
        router(state.clone()),
        limits,
        std::future::pending(),
        Duration::from_millis(100),
    ));
    (addr, state)
}

/// The built-in config and session settings under `limits`.
pub async fn server(limits: HttpLimits) -> SocketAddr {
    server_with(Config::builtin(), SessionSettings::default(), limits)
        .await
        .0
}

/// A connection to `to` from the loopback address `from` (127.x.x.x).
pub async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::from((from, 0))).unwrap();
    s.connect(to).await.unwrap()
}

/// One request (`head`: request line and headers, each ending in CRLF) on
/// a new connection from `from`; the whole response, or what came within
/// 5 s.
pub async fn request(from: [u8; 4], to: SocketAddr, head: &str, body: &str) -> String {
    let mut s = connect_from(from, to).await;
    s.write_all(format!("{head}Connection: close\r\n\r\n{body}").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// `GET /api/ice-config` from `from`.
pub async fn ice_config(from: [u8; 4], to: SocketAddr) -> String {
    request(
        from,
        to,
        &format!("GET /api/ice-config HTTP/1.1\r\nHost: {to}\r\n"),
        "",
    )
    .await
}
