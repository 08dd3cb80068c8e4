//! Speaker ICE sessions over real HTTP: the `serve` router on an ephemeral
//! 127.0.0.1 port, driven with raw HTTP/1.1 requests (replies parsed with
//! httparse and the core's `signal::read_response`), and the built
//! `scream-ice connect` against the built `scream-ice serve`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use scream_ice_core::sdpfrag::SdpFrag;
use scream_ice_host::config::Config;
use scream_ice_host::connect::{ConnectOptions, run};
use scream_ice_host::http::{AppState, ConnAddrs, router};
use scream_ice_host::sessions::{SDPFRAG, SessionSettings};

const BIN: &str = env!("CARGO_BIN_EXE_scream-ice");

/// The speaker's fragment: credentials, one host candidate that nobody
/// answers (the discard port), optionally end-of-candidates.
const OFFER: &str = "a=ice-options:trickle\r\n\
                     a=ice-ufrag:spk1\r\n\
                     a=ice-pwd:speakerpassword0123456789\r\n\
                     a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n";

/// Serve the API on 127.0.0.1:0 with host sockets on 127.0.0.1.
async fn server(tweak: impl FnOnce(&mut SessionSettings)) -> (SocketAddr, AppState) {
    server_with("server:\n  stun_listen: off\n", tweak).await
}

/// As [`server`], with this config.
async fn server_with(
    yaml: &str,
    tweak: impl FnOnce(&mut SessionSettings),
) -> (SocketAddr, AppState) {
    let config = Config::from_yaml("t.yaml", yaml).unwrap();
    let mut settings = SessionSettings::default();
    settings.bind = Some(vec!["127.0.0.1".parse().unwrap()]);
    tweak(&mut settings);
    let state = AppState::with_sessions(config, None, settings);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(state.clone()).into_make_service_with_connect_info::<ConnAddrs>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, state)
}

/// One reply: status, header fields (names lowercased), body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on its own connection (`Connection: close`), any headers.
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl AsRef<[u8]>,
) -> Reply {
    use scream_ice_core::signal::{Progress, read_response};
    let body = body.as_ref();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut req = req.into_bytes();
    req.extend_from_slice(body);
    let exchange = async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(&req).await.unwrap();
        let mut raw = Vec::new();
        tcp.read_to_end(&mut raw).await.unwrap();
        raw
    };
    let raw = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .expect("a reply within 5 s");
    let mut fields = [httparse::EMPTY_HEADER; 32];
    let mut head = httparse::Response::new(&mut fields);
    head.parse(&raw).unwrap();
    let headers = head
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let mut body = vec![0u8; 1 << 20];
    let Ok(Progress::Complete { response, .. }) = read_response(&raw, &mut body, true) else {
        panic!("incomplete reply: {raw:?}");
    };
    Reply {
        status: response.status,
        headers,
        body: response.body.to_vec(),
    }
}

async fn post(addr: SocketAddr, body: &str) -> Reply {
    call(
        addr,
        "POST",
        "/api/ice/sessions",
        &[("Content-Type", SDPFRAG)],
        body,
    )
    .await
}

async fn patch(addr: SocketAddr, path: &str, if_match: Option<&str>, body: &str) -> Reply {
    let mut h = vec![("Content-Type", SDPFRAG)];
    if let Some(m) = if_match {
        h.push(("If-Match", m));
    }
    call(addr, "PATCH", path, &h, body).await
}

/// (Location, ETag) of a 201.
fn created(r: &Reply) -> (String, String) {
    assert_eq!(r.status, 201, "{}", r.text());
    (
        r.header("location").unwrap().to_string(),
        r.header("etag").unwrap().to_string(),
    )
}

fn one_line(r: &Reply) -> String {
    let t = r.text();
    assert!(
        t.ends_with('\n') && t.trim_end().lines().count() == 1,
        "{t:?}"
    );
    t.trim_end().to_string()
}

#[tokio::test]
async fn lifecycle_create_trickle_restart_delete() {
    let (addr, state) = server(|_| {}).await;
    let r = post(addr, OFFER).await;
    let (location, etag) = created(&r);
    let id = location.strip_prefix("/api/ice/sessions/").unwrap();
    assert_eq!(id.len(), 32, "{id}");
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2,
        "{etag}"
    );
    assert_eq!(r.header("content-type"), Some(SDPFRAG));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("x-scream-ice-network"), Some("local"));
    let answer = r.text();
    let f = SdpFrag::parse(&answer).unwrap();
    let router_ufrag = f.ice_ufrag().unwrap().to_string();
    assert!(f.ice_pwd().is_some());
    assert!(f.has_ice_option("trickle"));
    // Loopback client, no STUN: the loopback host candidate, and gathering
    // already complete.
    let cands: Vec<String> = f.candidates().map(|c| c.to_string()).collect();
    assert_eq!(cands.len(), 1, "{answer}");
    assert!(cands[0].contains(" 127.0.0.1 ") && cands[0].ends_with("typ host"));
    assert!(f.end_of_candidates(), "{answer}");
    assert_eq!(state.sessions().len(), 1);

    // GET: the same fragment and ETag.
    let g = call(addr, "GET", &location, &[], "").await;
    assert_eq!(g.status, 200);
    assert_eq!(g.header("etag"), Some(etag.as_str()));
    assert_eq!(g.text(), answer);

    // Trickle: a candidate, then end-of-candidates; with the ETag and with *.
    let more = "a=ice-ufrag:spk1\r\na=ice-pwd:speakerpassword0123456789\r\n\
                a=candidate:2 1 udp 2130706175 127.0.0.1 7 typ host\r\n";
    assert_eq!(patch(addr, &location, Some(&etag), more).await.status, 204);
    let eoc = "a=end-of-candidates\r\n";
    assert_eq!(patch(addr, &location, Some("*"), eoc).await.status, 204);
    let list = format!("\"nope\", {etag}");
    assert_eq!(patch(addr, &location, Some(&list), "").await.status, 204);

    // Preconditions.
    let r = patch(addr, &location, None, more).await;
    assert_eq!(r.status, 428);
    one_line(&r);
    let r = patch(addr, &location, Some("\"other\""), more).await;
    assert_eq!(r.status, 412);
    one_line(&r);
    let weak = format!("W/{etag}");
    assert_eq!(patch(addr, &location, Some(&weak), more).await.status, 412);
    // Media type, malformed body, size.
    let r = call(
        addr,
        "PATCH",
        &location,
        &[("Content-Type", "application/sdp"), ("If-Match", "*")],
        more,
    )
    .await;
    assert_eq!(r.status, 415);
    let r = patch(addr, &location, Some("*"), "a=ice-ufrag:x\r\n").await;
    assert_eq!(r.status, 400);
    assert_eq!(
        one_line(&r),
        "sdpfrag line 1: ice-ufrag is not 4..=256 ice-chars"
    );
    let r = patch(
        addr,
        &location,
        Some("*"),
        "a=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\na=candidate:broken\r\n",
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(one_line(&r).starts_with("sdpfrag line 2: "));
    let big = "a=x-pad:".to_string() + &"p".repeat(20_000) + "\r\n";
    assert_eq!(patch(addr, &location, Some("*"), &big).await.status, 413);
    // A changed pwd alone is no restart.
    let r = patch(
        addr,
        &location,
        Some("*"),
        "a=ice-ufrag:spk1\r\na=ice-pwd:anotherpassword0123456789\r\n",
    )
    .await;
    assert_eq!(r.status, 400);
    one_line(&r);
    // None of this changed the session.
    let g = call(addr, "GET", &location, &[], "").await;
    assert_eq!(g.status, 200);
    assert_eq!(g.header("etag"), Some(etag.as_str()));
    assert_eq!(
        SdpFrag::parse(&g.text()).unwrap().ice_ufrag(),
        Some(router_ufrag.as_str())
    );

    // ICE restart: new credentials -> 200, new fragment, new ETag.
    let restart = "a=ice-ufrag:spk2\r\na=ice-pwd:restartpassword0123456789\r\n\
                   a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n";
    let r = patch(addr, &location, Some("*"), restart).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some(SDPFRAG));
    let new_etag = r.header("etag").unwrap().to_string();
    assert_ne!(new_etag, etag);
    let text = r.text();
    let f = SdpFrag::parse(&text).unwrap();
    assert_ne!(f.ice_ufrag().unwrap(), router_ufrag);
    assert_eq!(f.candidates().count(), 1, "{text}");
    assert!(f.end_of_candidates());
    // The old ETag is stale now.
    assert_eq!(patch(addr, &location, Some(&etag), eoc).await.status, 412);
    assert_eq!(
        patch(addr, &location, Some(&new_etag), eoc).await.status,
        204
    );
    let g = call(addr, "GET", &location, &[], "").await;
    assert_eq!(g.header("etag"), Some(new_etag.as_str()));

    // DELETE, then it is gone.
    let d = call(addr, "DELETE", &location, &[], "").await;
    assert_eq!(d.status, 204);
    assert_eq!(call(addr, "GET", &location, &[], "").await.status, 404);
    assert_eq!(call(addr, "DELETE", &location, &[], "").await.status, 404);
    assert_eq!(patch(addr, &location, Some("*"), eoc).await.status, 404);
    wait_until(|| state.sessions().is_empty(), Duration::from_secs(2)).await;
}

#[tokio::test]
async fn unknown_sessions_and_bad_posts() {
    let (addr, state) = server(|_| {}).await;
    let nobody = "/api/ice/sessions/00000000000000000000000000000000";
    assert_eq!(call(addr, "GET", nobody, &[], "").await.status, 404);
    let r = patch(addr, nobody, Some("*"), "").await;
    assert_eq!(r.status, 404);
    one_line(&r);
    assert_eq!(call(addr, "DELETE", nobody, &[], "").await.status, 404);
    assert_eq!(
        call(addr, "GET", "/api/ice/sessions/../../etc", &[], "")
            .await
            .status,
        404
    );

    let r = call(addr, "POST", "/api/ice/sessions", &[], OFFER).await;
    assert_eq!(r.status, 415);
    one_line(&r);
    let r = call(
        addr,
        "POST",
        "/api/ice/sessions",
        &[("Content-Type", "text/plain")],
        OFFER,
    )
    .await;
    assert_eq!(r.status, 415);
    let r = post(addr, "a=ice-ufrag:spk1\r\nnot a line\r\n").await;
    assert_eq!(r.status, 400);
    assert_eq!(one_line(&r), "sdpfrag line 2: malformed line");
    let r = post(addr, "a=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n").await;
    assert_eq!(r.status, 400);
    assert_eq!(one_line(&r), "sdpfrag needs a=ice-ufrag and a=ice-pwd");
    let r = post(addr, "a=ice-ufrag:spk1\r\na=ice-pwd:\u{e9}\r\n").await;
    assert_eq!(r.status, 400);
    let big = format!("{OFFER}{}", "a=x:y\r\n".repeat(4000));
    assert_eq!(post(addr, &big).await.status, 413);
    assert!(state.sessions().is_empty());
}

#[tokio::test]
async fn cap_answers_503() {
    let (addr, state) = server_with(
        "server:\n  stun_listen: off\nlimits:\n  sessions:\n    max: 2\n",
        |_| {},
    )
    .await;
    let (a, _) = created(&post(addr, OFFER).await);
    created(&post(addr, OFFER).await);
    let r = post(addr, OFFER).await;
    assert_eq!(r.status, 503);
    assert_eq!(one_line(&r), "too many ICE sessions (at most 2)");
    assert_eq!(state.sessions().len(), 2);
    assert_eq!(call(addr, "DELETE", &a, &[], "").await.status, 204);
    created(&post(addr, OFFER).await);
}

#[tokio::test]
async fn reaper_removes_sessions_that_never_connect() {
    let (addr, state) = server(|s| s.connect_timeout = Duration::from_millis(800)).await;
    let (location, _) = created(&post(addr, OFFER).await);
    assert_eq!(call(addr, "GET", &location, &[], "").await.status, 200);
    let t = Instant::now();
    wait_until(|| state.sessions().is_empty(), Duration::from_secs(5)).await;
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(500), "{took:?}");
    assert_eq!(call(addr, "GET", &location, &[], "").await.status, 404);
}

#[tokio::test]
async fn reaper_removes_failed_sessions() {
    // No candidates and end-of-candidates: no pair can be formed, and the
    // agent fails after its no-pair grace (10 s), well before the 60 s
    // connect timeout.
    let (addr, state) = server(|_| {}).await;
    let body = "a=ice-ufrag:spk1\r\na=ice-pwd:speakerpassword0123456789\r\na=end-of-candidates\r\n";
    let (location, _) = created(&post(addr, body).await);
    let t = Instant::now();
    wait_until(|| state.sessions().is_empty(), Duration::from_secs(20)).await;
    let took = t.elapsed();
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert_eq!(call(addr, "GET", &location, &[], "").await.status, 404);
    println!("failed session removed after {took:?}");
}

#[tokio::test]
async fn connect_in_process_echoes_everything() {
    let (addr, state) = server(|_| {}).await;
    let mut o = ConnectOptions::new(format!("http://{addr}"));
    o.bind = vec!["127.0.0.1".parse().unwrap()];
    o.count = 20;
    o.interval = Duration::from_millis(2);
    let mut out = Vec::new();
    let r = run(&o, &mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(r.sent, 20, "{text}");
    assert_eq!(r.echoed, 20, "{text}");
    assert_eq!(r.loss_percent(), 0.0);
    assert_eq!(r.selected.0.ip().to_string(), "127.0.0.1");
    assert!(text.contains("connected in "), "{text}");
    assert!(text.contains("DELETE /api/ice/sessions/"), "{text}");
    wait_until(|| state.sessions().is_empty(), Duration::from_secs(2)).await;
    println!("in-process connect: {:?} to connected", r.time_to_connected);
}

#[tokio::test]
async fn stun_required_answer_completes_later_via_get() {
    // The router gathers srflx from a STUN server (ours, on loopback), so
    // its answer may go out before gathering is complete; GET on the
    // Location then shows end-of-candidates, and connect still connects.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let stun = socket.local_addr().unwrap();
    let responder = scream_ice_host::stun_responder::Responder::spawn(socket, "test").unwrap();
    let yaml = format!(
        "webrtc:\n  ice:\n    mode: stun-required\n    stun_servers:\n      - url: \"stun:{stun}\"\nserver:\n  stun_listen: off\n"
    );
    let (addr, _state) = server_with(&yaml, |_| {}).await;
    let r = post(addr, OFFER).await;
    let (location, _) = created(&r);
    assert_eq!(r.header("x-scream-ice-stage"), Some("with-stun"));
    assert_eq!(
        r.header("link"),
        Some(format!("<stun:{stun}>; rel=\"ice-server\"").as_str())
    );
    println!(
        "stun-required answer had end-of-candidates: {}",
        SdpFrag::parse(&r.text()).unwrap().end_of_candidates()
    );
    let t = Instant::now();
    loop {
        let g = call(addr, "GET", &location, &[], "").await;
        assert_eq!(g.status, 200);
        if SdpFrag::parse(&g.text()).unwrap().end_of_candidates() {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(3), "{}", g.text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(call(addr, "DELETE", &location, &[], "").await.status, 204);

    let mut o = ConnectOptions::new(format!("http://{addr}"));
    o.bind = vec!["127.0.0.1".parse().unwrap()];
    o.count = 5;
    let mut out = Vec::new();
    let r = run(&o, &mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(r.echoed, 5, "{text}");
    // (Whether the router's end-of-candidates arrived through GET before
    // the pair was selected is a race: connecting does not wait for it.)
    assert!(text.contains("connected in "), "{text}");
    responder.stop();
}

#[tokio::test]
async fn connect_fails_with_one_line_when_nobody_listens() {
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = unused.local_addr().unwrap();
    drop(unused);
    let out = Command::new(BIN)
        .args(["connect", &format!("http://{addr}"), "--bind", "127.0.0.1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("scream-ice: connect: POST /api/ice/sessions: "),
        "{err}"
    );
}

async fn wait_until(mut f: impl FnMut() -> bool, limit: Duration) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "condition not met within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The built binaries end to end: `serve` on an ephemeral port, `connect`
/// with 50 datagrams.
#[test]
fn connect_binary_against_serve_binary() {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--http-listen",
            "127.0.0.1:0",
            "--stun-listen",
            "off",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let http_line = lines
        .by_ref()
        .map(|l| l.unwrap())
        .find(|l| l.contains("HTTP listening on http://"))
        .unwrap();
    let key = "http://";
    let rest = &http_line[http_line.find(key).unwrap() + key.len()..];
    let http: SocketAddr = rest.split([' ', '/']).next().unwrap().parse().unwrap();

    let out = Command::new(BIN)
        .args([
            "connect",
            &format!("http://{http}"),
            "--bind",
            "127.0.0.1",
            "--count",
            "50",
            "--interval-ms",
            "5",
        ])
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("decision: router"), "{stdout}");
    assert!(stdout.contains("network local"), "{stdout}");
    assert!(stdout.contains("STUN no"), "{stdout}");
    assert!(stdout.contains("local candidate: candidate:"), "{stdout}");
    assert!(stdout.contains("remote candidate: candidate:"), "{stdout}");
    assert!(stdout.contains("connected in "), "{stdout}");
    assert!(stdout.contains("selected pair 127.0.0.1:"), "{stdout}");
    assert!(
        stdout.contains("datagrams: 50 sent, 50 echoed, loss 0.0 %, rtt min "),
        "{stdout}"
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("connected in "))
        .unwrap();
    println!("{line}");
}

/// Junk bodies and headers get a 4xx answer (a panicking handler would
/// drop the connection instead), and leave the session as it was.
#[tokio::test]
async fn junk_never_panics() {
    let (addr, state) = server(|_| {}).await;
    let (location, etag) = created(&post(addr, OFFER).await);
    let mut bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"\r\n\r\n\n".to_vec(),
        vec![0xff, 0xfe, 0x00, 0x41],
        b"a=".to_vec(),
        b"=\r\n".to_vec(),
        b"a=candidate:\r\n".to_vec(),
        b"a=candidate:1 1 udp 1 :: 0 typ host\r\n".to_vec(),
        b"a=candidate:1 1 udp 99999999999 127.0.0.1 9 typ host\r\n".to_vec(),
        b"a=candidate:1 1 tcp 1 127.0.0.1 9 typ host tcptype active\r\n".to_vec(),
        b"a=candidate:1 2 udp 1 127.0.0.1 9 typ host\r\n".to_vec(),
        b"a=candidate:1 1 udp 1 nowhere.invalid 9 typ host\r\n".to_vec(),
        b"a=end-of-candidates:x\r\n".to_vec(),
        b"a=end-of-candidates\r\na=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n".to_vec(),
        b"a=ice-ufrag:spk1\r\na=ice-ufrag:spk2\r\n".to_vec(),
        b"m=audio\r\n".to_vec(),
        "a=ice-ufrag:\u{1F600}\r\n".as_bytes().to_vec(),
    ];
    bodies.push(vec![b'a'; 16 * 1024 + 1]);
    for body in &bodies {
        for (method, path, extra) in [
            ("POST", "/api/ice/sessions", None),
            ("PATCH", location.as_str(), Some(etag.as_str())),
        ] {
            let mut h = vec![("Content-Type", SDPFRAG)];
            if let Some(m) = extra {
                h.push(("If-Match", m));
            }
            let r = call(addr, method, path, &h, body).await;
            assert!(
                r.status < 500 && r.status != 201,
                "{method} {:?}: {} {}",
                String::from_utf8_lossy(body),
                r.status,
                r.text()
            );
        }
    }
    // Header junk.
    for m in ["", "\"", "W/", ",,,", "*,*"] {
        let r = patch(addr, &location, Some(m), "").await;
        assert!(r.status == 412 || r.status == 204, "{m:?}: {}", r.status);
    }
    let g = call(addr, "GET", &location, &[], "").await;
    assert_eq!(g.status, 200);
    assert_eq!(g.header("etag"), Some(etag.as_str()));
    assert_eq!(state.sessions().len(), 1);
}

/// A speaker built from the adapter directly on 127.0.0.1, connected to
/// the router at `addr`: its driver, its session's location and the
/// router's address.
async fn adapter_speaker(addr: SocketAddr) -> (scream_ice_tokio::Driver, String, SocketAddr) {
    use scream_ice_host::sessions::write_sdpfrag;
    use scream_ice_tokio::scream_ice_core::agent::Role;
    use scream_ice_tokio::{Driver, HostAddresses, Output, SessionConfig, SessionEvent};
    let mut c = SessionConfig::new(Role::Controlling);
    c.hosts = HostAddresses::Explicit(vec!["127.0.0.1:0".parse().unwrap()]);
    let mut speaker = Driver::start(c).await.unwrap();
    let mut local = Vec::new();
    while let Some(o) = speaker.try_next() {
        if let Output::Event(SessionEvent::LocalCandidate(c)) = o {
            local.push(c);
        }
    }
    let creds = speaker.local_credentials();
    let offer = write_sdpfrag(&creds.ufrag, &creds.pwd, &local, true).unwrap();
    let r = post(addr, &offer).await;
    let (location, _) = created(&r);
    let answer = r.text();
    let f = SdpFrag::parse(&answer).unwrap();
    speaker
        .set_remote_credentials(f.ice_ufrag().unwrap(), f.ice_pwd().unwrap())
        .unwrap();
    let mut router_addr = None;
    for c in f.candidates() {
        router_addr = c.to_candidate().ok().map(|c| c.address);
        speaker
            .add_remote_candidate_line(&c.to_string())
            .await
            .unwrap();
    }
    speaker.end_of_remote_candidates();
    let router_addr = router_addr.unwrap();
    let selected = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Output::Event(SessionEvent::Selected { remote, .. }) = speaker.next().await {
                break remote;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(selected, router_addr);
    (speaker, location, router_addr)
}

/// Drive the speaker until its next application datagram.
async fn next_data(d: &mut scream_ice_tokio::Driver) -> scream_ice_tokio::Datagram {
    loop {
        if let scream_ice_tokio::Output::Data(x) = d.next().await {
            return x;
        }
    }
}

/// The router-wide check budget cannot be used to keep speakers out: with
/// it spent (1/s, burst 1) by a session that names silent ports, a speaker
/// that checks the router still connects at once, because checks toward an
/// address that checked us are not counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_router_wide_check_budget_does_not_keep_a_speaker_out() {
    let (addr, state) = server_with(
        "server:\n  stun_listen: off\nlimits:\n  sessions:\n    unanswered_check_rate: {per_second: 1, burst: 1}\n",
        |_| {},
    )
    .await;
    let silent: Vec<std::net::UdpSocket> = (0..4)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let mut frag = String::from("a=ice-ufrag:evil\r\na=ice-pwd:evilpasswordof22charsxx\r\n");
    for (i, s) in silent.iter().enumerate() {
        let port = s.local_addr().unwrap().port();
        frag.push_str(&format!(
            "a=candidate:{i} 1 udp 2130706431 127.0.0.1 {port} typ host\r\n"
        ));
    }
    created(&post(addr, &frag).await);
    let held = || state.hub().metrics.checks_held().get();
    wait_until(|| held() > 0, Duration::from_secs(5)).await;
    let t = Instant::now();
    let (mut speaker, location, _) = adapter_speaker(addr).await;
    // The router selected too: it echoes only for its selected peer.
    let (socket, _, remote) = speaker.selected_path().unwrap();
    socket.send_to(b"ping", remote).await.unwrap();
    let echo = tokio::time::timeout(Duration::from_secs(2), next_data(&mut speaker))
        .await
        .expect("the router echoes: it selected the pair");
    assert_eq!(echo.data, b"ping");
    println!(
        "router-wide budget spent ({} checks held): a speaker connected and was echoed in {:?}",
        held(),
        t.elapsed()
    );
    assert_eq!(call(addr, "DELETE", &location, &[], "").await.status, 204);
    drop(speaker);
}

/// A speaker that goes away without a DELETE: with
/// `consent_timeout_ms: 10000` its session ends within 10 s of the last
/// consent answer (media alone would keep it 60 s here).
#[tokio::test]
async fn a_speaker_gone_silent_ends_by_the_consent_timeout() {
    let (addr, state) = server_with(
        "server:\n  stun_listen: off\nlimits:\n  sessions:\n    consent_timeout_ms: 10000\n    media_timeout_ms: 60000\n",
        |_| {},
    )
    .await;
    let (mut speaker, _, _) = adapter_speaker(addr).await;
    // Consent answered for a while (the router checks every 4 to 6 s).
    let _ = tokio::time::timeout(Duration::from_secs(7), async {
        loop {
            speaker.next().await;
        }
    })
    .await;
    assert_eq!(state.sessions().len(), 1);
    drop(speaker);
    let gone = std::time::Instant::now();
    wait_until(|| state.sessions().is_empty(), Duration::from_secs(12)).await;
    let after = gone.elapsed();
    println!("consent timeout 10 s: the session ended {after:?} after its speaker went silent");
    assert!(after >= Duration::from_secs(3), "{after:?}");
}

/// A speaker built from the adapter directly: the router echoes what the
/// selected peer sends, and nothing a stranger sends to the same port.
#[tokio::test]
async fn echo_only_for_the_selected_peer() {
    let (addr, _state) = server(|_| {}).await;
    let (mut speaker, location, router_addr) = adapter_speaker(addr).await;

    let stranger = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    stranger.send_to(b"not yours", router_addr).await.unwrap();
    let mut buf = [0u8; 64];
    let got = tokio::time::timeout(Duration::from_millis(300), stranger.recv_from(&mut buf)).await;
    assert!(got.is_err(), "the stranger got an answer");

    let (socket, _, remote) = speaker.selected_path().unwrap();
    socket.send_to(b"ping", remote).await.unwrap();
    let d = tokio::time::timeout(Duration::from_secs(2), next_data(&mut speaker))
        .await
        .unwrap();
    assert_eq!(d.data, b"ping");
    assert_eq!(d.from, router_addr);
    // The stranger's datagram was not relayed to the speaker either.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), next_data(&mut speaker))
            .await
            .is_err()
    );
    assert_eq!(call(addr, "DELETE", &location, &[], "").await.status, 204);
    drop(speaker);
}

/// Several speakers at once, each with its own session and echo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_speakers_at_once() {
    // All eight come from 127.0.0.1: above the default per-client cap (4).
    let (addr, state) = server_with(
        "server:\n  stun_listen: off\nlimits:\n  sessions:\n    per_client: 8\n",
        |_| {},
    )
    .await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        tasks.push(tokio::spawn(async move {
            let mut o = ConnectOptions::new(format!("http://{addr}"));
            o.bind = vec!["127.0.0.1".parse().unwrap()];
            o.count = 20;
            o.interval = Duration::from_millis(2);
            let mut out = Vec::new();
            let r = run(&o, &mut out).await;
            (r, String::from_utf8(out).unwrap())
        }));
    }
    let mut selected = Vec::new();
    for t in tasks {
        let (r, text) = t.await.unwrap();
        let r = r.unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(r.echoed, 20, "{text}");
        selected.push(r.selected);
    }
    selected.sort();
    selected.dedup();
    assert_eq!(selected.len(), 8);
    wait_until(|| state.sessions().is_empty(), Duration::from_secs(2)).await;
}

/// A controlling speaker may select on its own check and close the session
/// before the router's triggered check on the nominated pair returns. The
/// router counts that session as connected (the peer's check validated the
/// pair), never as `closed_before_connected`.
#[tokio::test]
async fn a_close_right_after_the_peers_nomination_is_a_connection() {
    use scream_ice_core::stun::{
        Attribute, IntegrityKey, Message, MessageBuilder, MessageType, Repr, TransactionId,
    };
    let (addr, state) = server(|_| {}).await;
    let speaker = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = speaker.local_addr().unwrap().port();
    let offer = format!(
        "a=ice-options:trickle\r\n\
         a=ice-ufrag:spk1\r\n\
         a=ice-pwd:speakerpassword0123456789\r\n\
         a=candidate:1 1 udp 2130706431 127.0.0.1 {port} typ host\r\n\
         a=end-of-candidates\r\n"
    );
    let r = post(addr, &offer).await;
    let (location, _) = created(&r);
    let text = r.text();
    let answer = SdpFrag::parse(&text).unwrap();
    let (ufrag, pwd) = (answer.ice_ufrag().unwrap(), answer.ice_pwd().unwrap());
    let router = answer
        .candidates()
        .find_map(|c| c.to_candidate().ok())
        .unwrap()
        .address;
    // The speaker's nominating check (regular nomination: it had validated
    // the pair), answered by the router.
    let mut buf = [0u8; 512];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::BINDING_REQUEST,
        TransactionId([3; 12]),
    );
    let username = format!("{ufrag}:spk1");
    b.add(&Attribute::Username(&username));
    b.add(&Attribute::Priority(0x6e00_01ff));
    b.add(&Attribute::IceControlling(7));
    b.add(&Attribute::UseCandidate);
    b.add_message_integrity(&IntegrityKey::short_term(pwd.as_bytes()));
    b.add_fingerprint();
    let n = b.finish().unwrap();
    speaker.send_to(&buf[..n], router).await.unwrap();
    let answered = tokio::time::timeout(Duration::from_secs(2), async {
        let mut rx = [0u8; 1500];
        loop {
            let (len, _) = speaker.recv_from(&mut rx).await.unwrap();
            let m = Message::new_checked(&rx[..len]).unwrap();
            let r = Repr::parse(&m).unwrap();
            if r.transaction_id == TransactionId([3; 12]) {
                break r.message_type;
            }
            // The router's own (triggered) check: left unanswered.
        }
    })
    .await
    .unwrap();
    assert_eq!(answered, MessageType::BINDING_SUCCESS);
    assert_eq!(call(addr, "DELETE", &location, &[], "").await.status, 204);
    let metrics = &state.hub().metrics;
    wait_until(
        || {
            metrics
                .encode(None)
                .contains("scream_ice_connection_successes_total{")
        },
        Duration::from_secs(2),
    )
    .await;
    let text = metrics.encode(None);
    assert!(!text.contains("closed_before_connected"), "{text}");
    assert!(
        !text.contains("scream_ice_connection_failures_total{"),
        "{text}"
    );
}
