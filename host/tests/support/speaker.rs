//! Speaker-session requests for the admission tests.

use std::net::SocketAddr;

use scream_ice_host::config::Config;
use scream_ice_host::sessions::SessionSettings;

use super::request;

/// Session settings binding the router's host sockets on 127.0.0.1 only.
pub fn loopback_settings(tweak: impl FnOnce(&mut SessionSettings)) -> SessionSettings {
    let mut s = SessionSettings::default();
    s.bind = Some(vec!["127.0.0.1".parse().unwrap()]);
    tweak(&mut s);
    s
}

pub fn config(yaml: &str) -> Config {
    Config::from_yaml("t.yaml", yaml).unwrap()
}

/// A speaker's first fragment with these candidate lines.
pub fn fragment(n: usize, candidates: &[String]) -> String {
    let mut f = format!("a=ice-ufrag:spk{n:04}\r\na=ice-pwd:speakerpasswordof22chars\r\n");
    for c in candidates {
        f.push_str(&format!("a={c}\r\n"));
    }
    f
}

pub async fn post(from: [u8; 4], to: SocketAddr, body: &str, extra: &str) -> String {
    request(
        from,
        to,
        &format!(
            "POST /api/ice/sessions HTTP/1.1\r\nHost: {to}\r\nContent-Type: application/trickle-ice-sdpfrag\r\nContent-Length: {}\r\n{extra}",
            body.len()
        ),
        body,
    )
    .await
}

pub fn status(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
