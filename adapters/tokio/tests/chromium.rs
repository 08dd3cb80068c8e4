//! Interop with a real browser's ICE agent: headless Chromium's
//! RTCPeerConnection connects to our `Driver`, bound to 127.0.0.1 and
//! to this machine's addresses that Chromium offered (see [`our_hosts`]).
//!
//! The pieces, all on loopback and ephemeral ports:
//! - the daemon, `scream-ice serve`, for `GET /api/ice-config` (the
//!   `RTCConfiguration` a browser gets);
//! - a small HTTP server of this test's own that serves the page, proxies
//!   `/api/ice-config` to the daemon (same origin: the daemon sends no CORS
//!   headers), takes the page's offer and answers it, and receives the page's
//!   `iceConnectionState` reports;
//! - headless Chromium with the launch flags from PEERS.md, on that page:
//!   it creates an `RTCPeerConnection` with the daemon's configuration and
//!   one data channel, gathers, and POSTs the complete offer;
//! - our session (controlled: the browser offered), fed the offer's
//!   ufrag/pwd/candidates; the answer carries ours, `a=setup:active` and a
//!   well-formed but meaningless `a=fingerprint` (DTLS never starts; ICE does
//!   not need it).
//!
//! It passes when the page reports `connected` (or `completed`) and our
//! session has selected a pair, within 10 s of the offer. Two runs: the
//! page asks for the `local-only` stage (no ICE server for a loopback
//! client), and for `with-stun` (the daemon's own STUN responder, from which
//! Chromium must also gather a srflx candidate).
//!
//! Needs Chromium (Debian: `apt-get install -y chromium`; another binary
//! with `$SCREAM_ICE_CHROMIUM`); missing, the test fails with what to
//! install, unless `SCREAM_ICE_SKIP_PEERS=1`. Needs the daemon binary built
//! in the same target directory (`cargo build -p scream-ice-host`; `cargo
//! test --workspace` builds it), or `$SCREAM_ICE_BIN`; missing, it fails
//! saying so.
//!
//! `cargo test -p scream-ice-tokio --test chromium -- --nocapture` prints
//! the times from offer to connected on both sides, and each event.
//!
//! Our session binds 127.0.0.1 only. Chromium, bound to the wildcard,
//! offers only the machine's other addresses and answers our checks from
//! 127.0.0.1, so our own pairs fail as non-symmetric and the connection is
//! made by Chromium's checks (a peer-reflexive pair) — which needed the
//! agent's failure grace (before it, the agent gave up before Chromium had
//! our answer). `SCREAM_ICE_CHROMIUM_ALL_ADDRESSES=1` also binds the
//! addresses Chromium offered (see [`our_hosts`]).

mod common;

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{find_program, loopback_config, missing_peer, ms};
use scream_ice_tokio::scream_ice_core::agent::{GatheringState, Role};
use scream_ice_tokio::scream_ice_core::candidate::{
    CandidateAttribute, CandidateKind, ConnectionAddress, Transport,
};
use scream_ice_tokio::{Driver, HostAddresses, Output, SessionEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// From the offer's arrival to both sides connected, at most.
const LIMIT: Duration = Duration::from_secs(10);
/// From Chromium's launch to the offer, at most (a cold start on a loaded
/// machine takes a few seconds).
const OFFER_LIMIT: Duration = Duration::from_secs(30);

/// The page. It reports to the test server: `/log` (the configuration it
/// got), `/offer` (the complete offer; the response is the answer),
/// `/state` (each `iceConnectionState`, with ms since `createOffer` and
/// since the answer was applied) and `/error`.
const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8"><title>scream-ice chromium interop</title>
<script>
const post = (path, body) => fetch(path, {method: "POST", body});
(async () => {
  // The page's own query (`?stage=...`) goes on to the daemon.
  const config = await (await fetch("/api/ice-config" + location.search)).json();
  await post("/log", "config " + JSON.stringify(config));
  const pc = new RTCPeerConnection(config);
  window.pc = pc;
  let tOffer = 0, tAnswer = 0, seq = 0;
  pc.oniceconnectionstatechange = () => {
    const now = performance.now();
    post("/state", [seq++, pc.iceConnectionState, (now - tOffer).toFixed(1),
                    tAnswer ? (now - tAnswer).toFixed(1) : "-"].join(" "));
  };
  pc.createDataChannel("scream");
  tOffer = performance.now();
  const gathered = new Promise(resolve => {
    pc.onicegatheringstatechange = () => {
      if (pc.iceGatheringState === "complete") resolve();
    };
  });
  await pc.setLocalDescription(await pc.createOffer());
  if (pc.iceGatheringState !== "complete") await gathered;
  const tGathered = performance.now();
  const resp = await fetch("/offer?gather_ms=" + (tGathered - tOffer).toFixed(1),
                           {method: "POST", body: pc.localDescription.sdp});
  if (!resp.ok) throw new Error("offer rejected: " + resp.status + " " + await resp.text());
  const answer = await resp.text();
  tAnswer = performance.now();
  await pc.setRemoteDescription({type: "answer", sdp: answer});
})().catch(e => post("/error", String(e && e.stack || e)));
</script>
"#;

/// What the page sent.
#[derive(Debug)]
enum FromPage {
    Log(String),
    Offer {
        sdp: String,
        gather_ms: String,
        answer: oneshot::Sender<String>,
    },
    State(String),
    Error(String),
}

/// A child process (and its process group) killed on drop, also when the
/// test panics.
struct Killed {
    name: &'static str,
    child: Child,
}

impl Killed {
    fn signal_group(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        // Each child leads its own process group (`process_group(0)`), so
        // Chromium's renderer, GPU and utility processes get the signal too.
        // SIGTERM first (Chromium then reaps its children), SIGKILL after 3 s
        // or for whatever is left in the group.
        self.signal_group("-TERM");
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.signal_group("-KILL");
        let _ = self.child.kill();
        if let Err(e) = self.child.wait() {
            eprintln!("waiting for {} ({}): {e}", self.name, self.child.id());
        }
    }
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The Chromium to run: `$SCREAM_ICE_CHROMIUM`, or `chromium` /
/// `chromium-browser` on PATH.
fn chromium() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("SCREAM_ICE_CHROMIUM") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("SCREAM_ICE_CHROMIUM={} is not a file", p.display()))
        };
    }
    find_program("chromium")
        .or_else(|| find_program("chromium-browser"))
        .ok_or_else(|| {
            "no chromium on PATH: install it (`apt-get install -y chromium`) \
             or set SCREAM_ICE_CHROMIUM"
                .to_owned()
        })
}

/// The daemon binary: `$SCREAM_ICE_BIN`, or `scream-ice` next to this test
/// binary's directory (`<target>/<profile>/deps/chromium-*` →
/// `<target>/<profile>/scream-ice`), which is where `cargo build -p
/// scream-ice-host` puts it for the same profile and target directory.
fn daemon_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("SCREAM_ICE_BIN") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("SCREAM_ICE_BIN={} is not a file", p.display()))
        };
    }
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot locate the target directory from the test binary")?;
    let bin = profile_dir.join("scream-ice");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "the daemon binary {} is not built: run `cargo build -p scream-ice-host` \
             (same profile and target directory as this test), or set SCREAM_ICE_BIN",
            bin.display()
        ))
    }
}

/// Start `scream-ice serve` on ephemeral loopback ports (default config, a
/// clean `SCREAMROUTER_*` environment) and read its HTTP address from the
/// lines it prints when listening.
fn start_daemon(bin: &Path) -> (Killed, SocketAddr) {
    use std::os::unix::process::CommandExt;
    let mut child = Command::new(bin)
        .args([
            "serve",
            "--http-listen",
            "127.0.0.1:0",
            "--stun-listen",
            "127.0.0.1:0",
        ])
        .env_remove("SCREAMROUTER_ICE_MODE")
        .env_remove("SCREAMROUTER_ENABLE_LOCAL_PRIORITY")
        .env_remove("SCREAMROUTER_LEGACY_ICE_MODE")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    let stdout = child.stdout.take().unwrap();
    let daemon = Killed {
        name: "scream-ice serve",
        child,
    };
    // The listening lines come first; read them on a thread so a silent
    // daemon cannot hang the test.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut found = false;
        // Read to the end, so the daemon never blocks on a full stdout.
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if !found && let Some(rest) = line.split("http://").nth(1) {
                found = true;
                let addr = rest.split([' ', '/']).next().unwrap_or("").to_owned();
                let _ = tx.send(Ok(addr));
            }
            seen.push(line);
        }
        if !found {
            let _ = tx.send(Err(seen.join("\n")));
        }
    });
    let addr = match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(a)) => a
            .parse()
            .unwrap_or_else(|e| panic!("daemon HTTP address {a:?}: {e}")),
        Ok(Err(out)) => panic!("scream-ice serve exited without an HTTP address; stdout:\n{out}"),
        Err(_) => panic!("scream-ice serve printed no HTTP address within 10 s"),
    };
    (daemon, addr)
}

/// One HTTP/1.1 request: method, target, body. Enough for what Chromium
/// sends this page's server (no chunked request bodies: `fetch` with a
/// string body sets Content-Length).
async fn read_request(stream: &mut TcpStream) -> Option<(String, String, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 64 * 1024 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target) = (first.next()?.to_owned(), first.next()?.to_owned());
    let length: usize = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
    Some((method, target, body))
}

async fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &str) {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// `GET /api/ice-config?<query>` from the daemon: (status line, body).
async fn daemon_ice_config(daemon: SocketAddr, query: &str) -> Result<(String, String), String> {
    let mut s = TcpStream::connect(daemon)
        .await
        .map_err(|e| format!("connect to the daemon: {e}"))?;
    let req = format!(
        "GET /api/ice-config?{query} HTTP/1.1\r\nHost: {daemon}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("write to the daemon: {e}"))?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)
        .await
        .map_err(|e| format!("read from the daemon: {e}"))?;
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = resp
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP response from the daemon: {resp:?}"))?;
    let status = head.lines().next().unwrap_or("").to_owned();
    Ok((status, body.to_owned()))
}

async fn serve_one(mut stream: TcpStream, daemon: SocketAddr, to_test: mpsc::Sender<FromPage>) {
    let Some((method, target, body)) = read_request(&mut stream).await else {
        return;
    };
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let msg = match (method.as_str(), path) {
        ("GET", "/") => {
            respond(&mut stream, "200 OK", "text/html; charset=utf-8", PAGE).await;
            return;
        }
        ("GET", "/api/ice-config") => {
            match daemon_ice_config(daemon, query).await {
                Ok((status, body)) if status.contains(" 200 ") => {
                    respond(&mut stream, "200 OK", "application/json", &body).await;
                }
                Ok((status, body)) => {
                    let e = format!("daemon answered {status}: {body}");
                    respond(&mut stream, "502 Bad Gateway", "text/plain", &e).await;
                    let _ = to_test.send(FromPage::Error(e)).await;
                }
                Err(e) => {
                    respond(&mut stream, "502 Bad Gateway", "text/plain", &e).await;
                    let _ = to_test.send(FromPage::Error(e)).await;
                }
            }
            return;
        }
        ("POST", "/offer") => {
            let (answer, rx) = oneshot::channel();
            let gather_ms = query.strip_prefix("gather_ms=").unwrap_or("?").to_owned();
            let _ = to_test
                .send(FromPage::Offer {
                    sdp: body,
                    gather_ms,
                    answer,
                })
                .await;
            match rx.await {
                Ok(sdp) => respond(&mut stream, "200 OK", "application/sdp", &sdp).await,
                Err(_) => {
                    respond(&mut stream, "500 Internal Server Error", "text/plain", "").await;
                }
            }
            return;
        }
        ("POST", "/log") => FromPage::Log(body),
        ("POST", "/state") => FromPage::State(body),
        ("POST", "/error") => FromPage::Error(body),
        _ => {
            respond(&mut stream, "404 Not Found", "text/plain", "").await;
            return;
        }
    };
    respond(&mut stream, "204 No Content", "text/plain", "").await;
    let _ = to_test.send(msg).await;
}

/// The test's HTTP server on an ephemeral loopback port.
async fn start_page_server(daemon: SocketAddr) -> (SocketAddr, mpsc::Receiver<FromPage>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_one(stream, daemon, tx.clone()));
        }
    });
    (addr, rx)
}

/// Headless Chromium on `url`, with a fresh profile in `profile`.
fn start_chromium(exe: &Path, profile: &Path, url: &str) -> Killed {
    use std::os::unix::process::CommandExt;
    let child = Command::new(exe)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            // Else no 127.0.0.1 candidates.
            "--allow-loopback-in-peer-connection",
            // Else host candidates are `.local` names.
            "--disable-features=WebRtcHideLocalIpsWithMdns",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
    Killed {
        name: "chromium",
        child,
    }
}

/// The offer's parts our session needs.
struct Offer {
    ufrag: String,
    pwd: String,
    mid: String,
    /// Every `a=candidate` line, as sent.
    candidates: Vec<String>,
}

fn parse_offer(sdp: &str) -> Offer {
    let attr = |name: &str| {
        sdp.lines()
            .find_map(|l| l.trim_end().strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in the offer:\n{sdp}"))
            .to_owned()
    };
    Offer {
        ufrag: attr("a=ice-ufrag:"),
        pwd: attr("a=ice-pwd:"),
        mid: attr("a=mid:"),
        candidates: sdp
            .lines()
            .map(str::trim_end)
            .filter(|l| l.starts_with("a=candidate:"))
            .map(str::to_owned)
            .collect(),
    }
}

/// Where our session binds: 127.0.0.1, plus every address of Chromium's
/// UDP host candidates that we can bind too (Chromium runs here, so they
/// are this machine's addresses; IPv6 link-local skipped).
///
/// 127.0.0.1 alone is not enough when the machine has another interface:
/// Chromium then offers only that interface's addresses, but its sockets are
/// bound to the wildcard address, so its answer to our check from
/// 127.0.0.1 to, say, 192.0.2.2:P comes back from 127.0.0.1:P. That pair
/// fails as non-symmetric (RFC 8445 section 7.2.5.2.1) within milliseconds,
/// and with both sides' candidates complete our agent then fails (every pair
/// failed) before Chromium, still waiting for our answer, has sent the
/// checks that would have made a peer-reflexive pair.
fn our_hosts(candidates: &[String]) -> Vec<SocketAddr> {
    let mut hosts: Vec<SocketAddr> = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    for line in candidates {
        let Ok(attr) = CandidateAttribute::parse(line) else {
            continue;
        };
        let ConnectionAddress::Ip(ip) = attr.connection_address else {
            continue;
        };
        let link_local = matches!(ip, IpAddr::V6(v6) if v6.is_unicast_link_local());
        let addr = SocketAddr::new(ip, 0);
        if attr.transport == Transport::Udp
            && attr.kind == CandidateKind::Host
            && !ip.is_loopback()
            && !link_local
            && !hosts.contains(&addr)
            && std::net::UdpSocket::bind(addr).is_ok()
        {
            hosts.push(addr);
        }
    }
    hosts
}

/// The answer: our credentials and candidates, `a=setup:active` and a
/// well-formed `a=fingerprint` (32 arbitrary bytes; DTLS never starts).
fn answer_sdp(mid: &str, ufrag: &str, pwd: &str, candidates: &[String]) -> String {
    let fingerprint = (0..32u32)
        .map(|i| format!("{:02X}", (i * 7) % 256))
        .collect::<Vec<_>>()
        .join(":");
    let mut lines = vec![
        "v=0".to_owned(),
        "o=- 1 1 IN IP4 127.0.0.1".to_owned(),
        "s=-".to_owned(),
        "t=0 0".to_owned(),
        format!("a=group:BUNDLE {mid}"),
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel".to_owned(),
        "c=IN IP4 0.0.0.0".to_owned(),
        format!("a=mid:{mid}"),
        format!("a=ice-ufrag:{ufrag}"),
        format!("a=ice-pwd:{pwd}"),
        format!("a=fingerprint:sha-256 {fingerprint}"),
        "a=setup:active".to_owned(),
        "a=sctp-port:5000".to_owned(),
    ];
    lines.extend(candidates.iter().map(|c| format!("a={c}")));
    lines.push("a=end-of-candidates".to_owned());
    lines.push(String::new());
    lines.join("\r\n")
}

/// The browser asks the daemon for `stage` (`?stage=`; `local-only`: no
/// ICE server for a loopback client; `with-stun`: the daemon's own STUN
/// responder, so Chromium also gathers a server-reflexive candidate from it).
async fn interop(stage: &str) {
    let tag = format!("[{stage}]");
    let chromium = match chromium() {
        Ok(p) => p,
        Err(what) => {
            missing_peer(&format!("chromium interop: {what}"));
            return;
        }
    };
    let daemon_bin = daemon_binary().unwrap_or_else(|e| panic!("chromium interop: {e}"));

    let (_daemon, daemon_http) = start_daemon(&daemon_bin);
    let (page_addr, mut from_page) = start_page_server(daemon_http).await;
    let profile = TempDir(std::env::temp_dir().join(format!(
        "scream-ice-chromium-{}-{}",
        std::process::id(),
        page_addr.port()
    )));
    std::fs::create_dir_all(&profile.0).unwrap();
    let launched = Instant::now();
    let _browser = start_chromium(
        &chromium,
        &profile.0,
        &format!("http://{page_addr}/?stage={stage}"),
    );

    // Configuration, then the offer.
    let mut rtc_config = None;
    let (offer_sdp, gather_ms, answer_tx) = loop {
        let msg = tokio::time::timeout_at(launched + OFFER_LIMIT, from_page.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no offer from the page within {} s of launching {} \
                     (configuration received: {rtc_config:?})",
                    OFFER_LIMIT.as_secs(),
                    chromium.display()
                )
            })
            .expect("page server running");
        match msg {
            FromPage::Log(l) => {
                if let Some(c) = l.strip_prefix("config ") {
                    rtc_config = Some(c.to_owned());
                }
            }
            FromPage::Offer {
                sdp,
                gather_ms,
                answer,
            } => break (sdp, gather_ms, answer),
            FromPage::State(s) => println!("{tag} page: early iceConnectionState {s}"),
            FromPage::Error(e) => panic!("page error: {e}"),
        }
    };
    let offered = Instant::now();
    let rtc_config = rtc_config.expect("the page reports its configuration before the offer");
    // The page's `JSON.stringify` of what it parsed is the daemon's compact
    // JSON again (same key order), so this proves where the page's
    // configuration came from.
    let (_, direct) = daemon_ice_config(daemon_http, &format!("stage={stage}"))
        .await
        .expect("the daemon answers GET /api/ice-config");
    assert_eq!(
        rtc_config, direct,
        "the page's RTCConfiguration is the daemon's"
    );
    println!(
        "{tag} chromium: offer after {:.0} ms from launch, its gathering took {gather_ms} ms; \
         RTCConfiguration from the daemon: {rtc_config}",
        ms(offered - launched)
    );

    // Our side: controlled (the browser offered), on 127.0.0.1 (and with
    // SCREAM_ICE_CHROMIUM_ALL_ADDRESSES=1 also on the addresses Chromium
    // offered, this machine's own; see `our_hosts`).
    let offer = parse_offer(&offer_sdp);
    let hosts = if std::env::var("SCREAM_ICE_CHROMIUM_ALL_ADDRESSES").is_ok_and(|v| v == "1") {
        our_hosts(&offer.candidates)
    } else {
        vec![SocketAddr::from(([127, 0, 0, 1], 0))]
    };
    println!("{tag} our host addresses: {hosts:?}");
    let mut config = loopback_config(Role::Controlled);
    config.hosts = HostAddresses::Explicit(hosts);
    let mut session = Driver::start(config).await.expect("session start");
    session
        .set_remote_credentials(&offer.ufrag, &offer.pwd)
        .expect("Chromium's credentials accepted");
    let mut usable = 0;
    for line in &offer.candidates {
        let attr = CandidateAttribute::parse(line)
            .unwrap_or_else(|e| panic!("Chromium's candidate {line:?} does not parse: {e}"));
        if attr.transport != Transport::Udp {
            continue; // Chromium's passive TCP candidates: UDP only here.
        }
        match session.add_remote_candidate_line(line).await {
            Ok(()) => usable += 1,
            Err(e) => println!("{tag} chromium candidate skipped: {line}: {e}"),
        }
    }
    session.end_of_remote_candidates();
    println!(
        "{tag} chromium offered {} candidates, {usable} added to our session",
        offer.candidates.len()
    );
    if stage == "with-stun" {
        assert!(
            offer.candidates.iter().any(|l| l.contains(" typ srflx ")),
            "Chromium gathered no srflx candidate from the daemon's STUN responder:\n{offer_sdp}"
        );
    }
    assert!(
        usable > 0,
        "no usable UDP candidate in Chromium's offer:\n{offer_sdp}"
    );
    for line in &offer.candidates {
        println!("{tag}   {line}");
    }

    // Gather ours, then answer.
    let mut ours = Vec::new();
    let mut selected_at = None;
    loop {
        let Output::Event(e) = tokio::time::timeout_at(offered + LIMIT, session.next())
            .await
            .expect("our gathering completes")
        else {
            continue;
        };
        println!("{tag} {:8.1} ms  ours: {e:?}", ms(offered.elapsed()));
        match e {
            SessionEvent::LocalCandidate(c) => ours.push(c.to_attribute().to_string()),
            SessionEvent::Gathering(GatheringState::Complete) => break,
            SessionEvent::Selected { .. } => {
                selected_at.get_or_insert_with(Instant::now);
            }
            SessionEvent::Failed(r) => panic!("ICE failed while gathering: {r}"),
            _ => {}
        }
    }
    assert!(!ours.is_empty(), "we gathered no candidate");
    let creds = session.local_credentials();
    let answer = answer_sdp(&offer.mid, &creds.ufrag, &creds.pwd, &ours);
    let answered = Instant::now();
    answer_tx
        .send(answer)
        .expect("the page waits for the answer");

    // Until the page reports connected and we selected a pair.
    let mut page_connected: Option<(Instant, String)> = None;
    let mut states = Vec::new();
    enum In {
        Page(Option<FromPage>),
        Event(SessionEvent),
        Timeout,
    }
    while page_connected.is_none() || selected_at.is_none() {
        let input = tokio::select! {
            m = from_page.recv() => In::Page(m),
            o = session.next() => match o {
                Output::Event(e) => In::Event(e),
                _ => continue,
            },
            () = tokio::time::sleep_until(offered + LIMIT) => In::Timeout,
        };
        match &input {
            In::Page(Some(FromPage::State(s))) => {
                println!("{tag} {:8.1} ms  page: {s}", ms(offered.elapsed()));
            }
            In::Event(e) => println!("{tag} {:8.1} ms  ours: {e:?}", ms(offered.elapsed())),
            _ => {}
        }
        match input {
            In::Page(None) => panic!("page server ended"),
            In::Page(Some(FromPage::State(s))) => {
                let mut w = s.split(' ');
                let (_seq, state) = (w.next(), w.next().unwrap_or(""));
                states.push(state.to_owned());
                match state {
                    "connected" | "completed" => {
                        page_connected.get_or_insert((Instant::now(), s.clone()));
                    }
                    "failed" | "closed" => {
                        panic!("Chromium's ICE went {state}; states so far: {states:?}")
                    }
                    _ => {}
                }
            }
            In::Page(Some(FromPage::Error(e))) => panic!("page error: {e}"),
            In::Page(Some(_)) => {}
            In::Event(SessionEvent::Selected { .. }) => {
                selected_at.get_or_insert_with(Instant::now);
            }
            In::Event(SessionEvent::Failed(r)) => panic!("our ICE failed: {r}"),
            In::Event(_) => {}
            In::Timeout => panic!(
                "not connected within {} s of the offer: Chromium's states {states:?}, \
                 we selected a pair: {}",
                LIMIT.as_secs(),
                selected_at.is_some()
            ),
        }
    }
    let (page_at, report) = page_connected.unwrap();
    let selected_at = selected_at.unwrap();
    let pair = session
        .session()
        .selected_pair()
        .expect("our session has a selected pair");
    // `<seq> <state> <ms since createOffer> <ms since the answer was applied>`
    let mut w = report.split(' ').skip(1);
    let (state, since_create, since_answer) = (
        w.next().unwrap_or(""),
        w.next().unwrap_or("?"),
        w.next().unwrap_or("?"),
    );
    println!(
        "{tag} chromium: {state} {since_create} ms after createOffer, {since_answer} ms after \
         setRemoteDescription began (page clock); states {states:?}"
    );
    println!(
        "{tag} test clock from the offer's arrival: answer sent {:.1} ms, we selected {:.1} ms \
         (pair {} -> {}), page's {state} report arrived {:.1} ms",
        ms(answered - offered),
        ms(selected_at - offered),
        pair.0,
        pair.1,
        ms(page_at - offered)
    );
    assert!(
        session.local_addresses().contains(&pair.0),
        "the selected pair starts at one of our sockets: {pair:?}"
    );
    drop(session);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_connects_to_our_agent() {
    interop("local-only").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_with_the_daemons_stun_connects_to_our_agent() {
    interop("with-stun").await;
}
