//! The built `scream-ice` binary: exit codes, one-line errors, and `serve`
//! answering STUN and HTTP on ephemeral ports, then stopping on SIGTERM.

use std::io::{BufRead, BufReader, Lines, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

use scream_ice_core::stun::{Message, MessageBuilder, MessageType, Repr, TransactionId};

const BIN: &str = env!("CARGO_BIN_EXE_scream-ice");

fn tmp(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("scream-ice-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Run with a clean SCREAMROUTER_* environment plus `env`.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_remove("SCREAMROUTER_ICE_MODE")
        .env_remove("SCREAMROUTER_ENABLE_LOCAL_PRIORITY")
        .env_remove("SCREAMROUTER_LEGACY_ICE_MODE");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn config_check_ok_and_errors() {
    let good = tmp("good.yaml", "webrtc:\n  ice:\n    mode: local-only\n");
    let out = run(&["config", "check", good.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), format!("{}: ok\n", good.display()));

    let bad = tmp(
        "bad.yaml",
        "webrtc:\n  ice:\n    mode: full\n    stun_servers:\n      - url: stun://x\n",
    );
    let out = run(&["config", "check", bad.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    let p = bad.display();
    assert_eq!(
        text(&out.stderr),
        format!(
            "{p}:5:14: stun_servers[0]: bad URL: no \"//\" after the scheme: RFC 7064/7065 URIs are written stun:host[:port], not stun://host\n\
             {p}:3:11: mode full needs at least one enabled, valid TURN server\n"
        )
    );
    assert!(out.stdout.is_empty());

    // check ignores the environment.
    let out = run(
        &["config", "check", good.to_str().unwrap()],
        &[("SCREAMROUTER_ICE_MODE", "bogus")],
    );
    assert_eq!(out.status.code(), Some(0));

    let out = run(&["config", "check", "/nonexistent/x.yaml"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("/nonexistent/x.yaml:1:1: cannot read file: "),
        "{err}"
    );
}

#[test]
fn config_show_names_origins() {
    let f = tmp(
        "show.yaml",
        "webrtc:\n  ice:\n    stun_gather_cap_ms: 300\n",
    );
    let out = run(
        &["config", "show", "--config", f.to_str().unwrap()],
        &[("SCREAMROUTER_ICE_MODE", "full")],
    );
    // full without TURN: an error located at the variable.
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "env SCREAMROUTER_ICE_MODE: mode full needs at least one enabled, valid TURN server\n"
    );
    let out = run(
        &["config", "show", "--config", f.to_str().unwrap()],
        &[
            ("SCREAMROUTER_ICE_MODE", "local-only"),
            ("SCREAMROUTER_ENABLE_LOCAL_PRIORITY", "yes"),
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    let shown = text(&out.stdout);
    assert!(
        shown.contains("    mode: local-only  # env SCREAMROUTER_ICE_MODE\n"),
        "{shown}"
    );
    assert!(
        shown.contains(
            "    local_network_priority: false  # env SCREAMROUTER_ENABLE_LOCAL_PRIORITY\n"
        ),
        "{shown}"
    );
    assert!(
        shown.contains(&format!(
            "    stun_gather_cap_ms: 300  # {}:3:25\n",
            f.display()
        )),
        "{shown}"
    );
    assert!(
        shown.contains("  http_listen: \"127.0.0.1:8188\"  # default\n"),
        "{shown}"
    );
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("SCREAMROUTER_ENABLE_LOCAL_PRIORITY=\"yes\""),
        "{err}"
    );
    // Default config.
    let out = run(&["config", "show"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("    mode: auto  # default\n"));
}

#[test]
fn bad_arguments_are_one_line() {
    for args in [
        &["serve", "--bogus"][..],
        &["serve", "--http-listen", "nope"],
        &["stun", "probe"],
        &["frobnicate"],
    ] {
        let out = run(args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("scream-ice: "), "{err}");
    }
    let out = run(
        &[
            "serve",
            "--stun-listen",
            "nope",
            "--http-listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr).lines().count(), 1);
    let out = run(&["serve"], &[("SCREAMROUTER_ICE_MODE", "smart")]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr).lines().count(), 1);
    // A port in use: one line, exit 1, nothing logged before it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(
        &[
            "serve",
            "--http-listen",
            &addr,
            "--stun-listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr)
            .strip_prefix(&format!("scream-ice: cannot listen on tcp (HTTP) {addr}: "))
            .map(|r| r.lines().count()),
        Some(1),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["--version"], &[]);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn stun_probe_errors_are_one_line() {
    // Nothing listens on this port (bound, then closed).
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = run(
        &[
            "stun",
            "probe",
            &format!("127.0.0.1:{port}"),
            "--timeout-ms",
            "300",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("scream-ice: stun probe: "), "{err}");
    // A silent server: timeout.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let t = Instant::now();
    let out = run(&["stun", "probe", &addr, "--timeout-ms", "300"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(t.elapsed() < Duration::from_secs(3));
    assert_eq!(
        text(&out.stderr),
        format!("scream-ice: stun probe: no answer from {addr} within 300 ms (1 requests sent)\n")
    );
    let out = run(&["stun", "probe", "no-port-here"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr).lines().count(), 1);
}

fn binding(socket: &UdpSocket, to: SocketAddr) -> SocketAddr {
    let mut req = [0u8; 64];
    let tid = TransactionId([7; 12]);
    let mut b = MessageBuilder::new(&mut req, MessageType::BINDING_REQUEST, tid);
    // The responder sends its SOFTWARE only to a request that carries one.
    b.add(&scream_ice_core::stun::Attribute::Software("cli-test"));
    b.add_fingerprint();
    let n = b.finish().unwrap();
    socket.send_to(&req[..n], to).unwrap();
    let mut buf = [0u8; 1500];
    let (n, from) = socket.recv_from(&mut buf).unwrap();
    assert_eq!(from, to);
    let m = Message::new_checked(&buf[..n]).unwrap();
    assert_eq!(m.transaction_id(), tid);
    let r = Repr::parse(&m).unwrap();
    assert_eq!(r.message_type, MessageType::BINDING_SUCCESS);
    assert!(r.software.unwrap().starts_with("scream-ice/"));
    r.xor_mapped_address.unwrap()
}

/// `serve` on ephemeral loopback ports: the child, its remaining stdout
/// lines, and its first line (where the STUN responder listens).
fn spawn_serve(stderr: Stdio) -> (Child, Lines<BufReader<ChildStdout>>, String) {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--http-listen",
            "127.0.0.1:0",
            "--stun-listen",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let stun_line = lines.next().unwrap().unwrap();
    (child, lines, stun_line)
}

#[test]
fn serve_answers_stun_and_http_then_stops_on_sigterm() {
    let (mut child, mut lines, stun_line) = spawn_serve(Stdio::piped());
    let http_line = lines.next().unwrap().unwrap();
    let addr_after = |line: &str, key: &str| -> SocketAddr {
        let rest = &line[line.find(key).unwrap() + key.len()..];
        rest.split([' ', '/']).next().unwrap().parse().unwrap()
    };
    assert!(
        stun_line.contains("STUN responder listening on udp "),
        "{stun_line}"
    );
    assert!(
        http_line.contains("no endpoint needs a token yet"),
        "{http_line}"
    );
    let stun = addr_after(&stun_line, "udp ");
    let http = addr_after(&http_line, "http://");

    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    assert_eq!(binding(&client, stun), client.local_addr().unwrap());

    let mut tcp = TcpStream::connect(http).unwrap();
    write!(
        tcp,
        "GET /api/ice-config HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    tcp.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(resp.contains("cache-control: no-store\r\n"), "{resp}");
    // A loopback client is local: no server.
    assert!(
        resp.ends_with(r#"{"iceServers":[],"iceTransportPolicy":"all"}"#),
        "{resp}"
    );

    let t = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "still running 1 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "{status:?}");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!err.contains("ERROR"), "{err}");
}

#[test]
fn stun_probe_against_serve_then_sigint() {
    let (mut child, _lines, stun_line) = spawn_serve(Stdio::null());
    let addr = stun_line
        .split("udp ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    let out = run(&["stun", "probe", &addr], &[]);
    // SIGINT (Ctrl-C) stops it too.
    let t = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > Duration::from_secs(1) {
            let _ = child.kill();
            panic!("still running 1 s after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "{status:?}");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let line = text(&out.stdout);
    assert!(
        line.starts_with(&format!("{addr}: mapped address 127.0.0.1:")),
        "{line}"
    );
    assert!(
        line.contains(" rtt ") && line.contains("(software: scream-ice/"),
        "{line}"
    );
}

/// coturn's own STUN client (`turnutils_stunclient`, Debian `coturn`) is an
/// independent client of our responder: it must read back its reflexive
/// address. Skipped with a message only when SCREAM_ICE_SKIP_PEERS=1.
#[test]
fn coturn_stunclient_reads_its_address_from_our_responder() {
    if Command::new("turnutils_stunclient")
        .arg("-h")
        .output()
        .is_err()
    {
        if std::env::var("SCREAM_ICE_SKIP_PEERS").is_ok_and(|v| v == "1") {
            // Past the output capture: `.ci/run` counts this line as skipped.
            use std::io::Write;
            let _ = writeln!(
                std::io::stdout().lock(),
                "\nSCREAM_ICE_SKIPPED: turnutils_stunclient not installed"
            );
            return;
        }
        panic!(
            "turnutils_stunclient not found: apt-get install coturn (or set SCREAM_ICE_SKIP_PEERS=1)"
        );
    }
    let (mut child, _lines, stun_line) = spawn_serve(Stdio::null());
    let addr: SocketAddr = stun_line
        .split("udp ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let out = Command::new("timeout")
        .args([
            "10",
            "turnutils_stunclient",
            "-p",
            &addr.port().to_string(),
            "127.0.0.1",
        ])
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "turnutils_stunclient: {stdout}{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("UDP reflexive addr: 127.0.0.1:"),
        "{stdout}"
    );
}
