//! Speaker-session requests for the admission tests.

use std::net::SocketAddr;
use std::time::Duration;

use scream_ice_core::agent::Role;
use scream_ice_core::sdpfrag::SdpFrag;
use scream_ice_host::config::Config;
use scream_ice_host::sessions::{SessionSettings, write_sdpfrag};
use scream_ice_tokio::{Driver, HostAddresses, Output, SessionConfig, SessionEvent};

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

/// Speaker `i` (a controlling session on 127.0.0.1) POSTs its offer to
/// `path` (`/api/ice/sessions`, with a query if any) of the daemon at
/// `http`, takes only the router's loopback candidates (the tests send
/// nowhere else) and waits until a pair is selected. The driver and the
/// session's `Location`.
pub async fn connect_speaker(
    http: SocketAddr,
    path: &str,
    i: usize,
) -> Result<(Driver, String), String> {
    let mut c = SessionConfig::new(Role::Controlling);
    c.hosts = HostAddresses::Explicit(vec!["127.0.0.1:0".parse().unwrap()]);
    let mut d = Driver::start(c).await.map_err(|e| e.to_string())?;
    let mut local = Vec::new();
    while let Some(o) = d.try_next() {
        if let Output::Event(SessionEvent::LocalCandidate(c)) = o {
            local.push(c);
        }
    }
    let creds = d.local_credentials();
    let offer = write_sdpfrag(&creds.ufrag, &creds.pwd, &local, true).unwrap();
    let r = scream_ice_host::client::request(
        http,
        &http.to_string(),
        "POST",
        path,
        &[("Content-Type", "application/trickle-ice-sdpfrag")],
        offer.as_bytes(),
        Duration::from_secs(20),
    )
    .await
    .map_err(|e| format!("speaker {i}: POST: {e}"))?;
    if r.status != 201 {
        return Err(format!("speaker {i}: POST {}: {}", r.status, r.text()));
    }
    let location = r.location.clone().unwrap();
    let answer = r.text();
    let f = SdpFrag::parse(&answer).map_err(|e| format!("{e:?}"))?;
    d.set_remote_credentials(f.ice_ufrag().unwrap(), f.ice_pwd().unwrap())
        .unwrap();
    for line in f.candidates() {
        if line
            .to_candidate()
            .is_ok_and(|c| c.address.ip().is_loopback())
        {
            d.add_remote_candidate_line(&line.to_string())
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    d.end_of_remote_candidates();
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Output::Event(SessionEvent::Selected { .. }) = d.next().await {
                break;
            }
        }
    })
    .await
    .map_err(|_| format!("speaker {i}: no pair selected in 20 s"))?;
    Ok((d, location))
}

/// `DELETE location` on the daemon at `http`: the status.
pub async fn delete_session(http: SocketAddr, location: &str) -> Result<u16, String> {
    let r = scream_ice_host::client::request(
        http,
        &http.to_string(),
        "DELETE",
        location,
        &[],
        b"",
        Duration::from_secs(20),
    )
    .await
    .map_err(|e| format!("DELETE: {e}"))?;
    Ok(r.status)
}

/// Wait until `connected` counts `n` speakers (each speaker task counts
/// itself in once its pair is selected), at most `limit`; the tasks back.
/// If a speaker task ends first, `stop` the others and panic with the
/// error it returned.
pub async fn all_connected<T>(
    tasks: Vec<tokio::task::JoinHandle<Result<T, String>>>,
    connected: &std::sync::atomic::AtomicUsize,
    n: usize,
    limit: Duration,
    stop: &tokio::sync::watch::Sender<bool>,
) -> Vec<tokio::task::JoinHandle<Result<T, String>>> {
    use std::sync::atomic::Ordering;
    let start = std::time::Instant::now();
    while connected.load(Ordering::SeqCst) < n {
        if tasks.iter().any(|t| t.is_finished()) {
            // A speaker ended before the run: its error says why (below).
            break;
        }
        assert!(
            start.elapsed() < limit,
            "{} of {n} connected",
            connected.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if connected.load(Ordering::SeqCst) < n {
        let _ = stop.send(true);
        for t in tasks {
            if let Err(e) = t.await.unwrap() {
                panic!("{e}");
            }
        }
        unreachable!("a speaker ended early without an error");
    }
    tasks
}

/// A `serve` config in `dir` for `speakers` speakers on loopback: HTTP on
/// an ephemeral loopback port, no STUN responder, data in `dir`, the
/// connection and session caps raised for them. `server` is more YAML
/// under `server:` (indented two spaces), `rest` more top-level YAML.
pub fn many_speakers_config(
    dir: &std::path::Path,
    speakers: usize,
    server: &str,
    rest: &str,
) -> std::path::PathBuf {
    let cap = speakers + 16;
    let cfg = dir.join("config.yaml");
    std::fs::write(
        &cfg,
        format!(
            "server:\n  http_listen: \"127.0.0.1:0\"\n  stun_listen: \"off\"\n  data_dir: \"{}\"\n{server}{rest}\
             limits:\n  http:\n    max_connections: {cap}\n    max_connections_per_client: {cap}\n\
             \x20 sessions:\n    max: {cap}\n    per_client: {cap}\n    post_rate: {{per_second: {cap}, burst: {cap}}}\n",
            dir.display(),
        ),
    )
    .unwrap();
    cfg
}
