//! SIGHUP reload: a running `scream-ice serve` switches from legacy ICE to
//! `auto` when its config file is migrated and it gets SIGHUP, while a
//! connected `scream-ice connect` speaker session keeps running without
//! a lost datagram; a broken config keeps the old one; `rollback` and a
//! second SIGHUP bring legacy back. Also shows what
//! `migration.log_migration_events` does.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_scream-ice");

/// Lines a child writes to one of its pipes, collected by a thread.
#[derive(Clone, Default)]
struct Collected(Arc<Mutex<Vec<String>>>);

impl Collected {
    fn from(r: impl Read + Send + 'static) -> Collected {
        let c = Collected::default();
        let lines = c.0.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(r).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(l);
            }
        });
        c
    }

    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// Wait (at most 10 s) for a line containing `needle`, after the
    /// first `skip` lines.
    fn wait_for(&self, needle: &str, skip: usize) -> String {
        let t = Instant::now();
        loop {
            if let Some(l) = self.all().iter().skip(skip).find(|l| l.contains(needle)) {
                return l.clone();
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "no line with {needle:?} in {:#?}",
                self.all()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

struct Daemon {
    child: Child,
    http: SocketAddr,
    stderr: Collected,
}

impl Drop for Daemon {
    /// SIGTERM and a clean exit (which also lets an instrumented build
    /// write its coverage profile); SIGKILL only if it hangs.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(config: &std::path::Path) -> Daemon {
    let mut child = Command::new(BIN)
        .args(["serve", "--config", config.to_str().unwrap()])
        .args([
            "--http-listen",
            "127.0.0.1:0",
            "--stun-listen",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "info")
        .env_remove("SCREAMROUTER_ICE_MODE")
        .env_remove("SCREAMROUTER_ENABLE_LOCAL_PRIORITY")
        .env_remove("SCREAMROUTER_LEGACY_ICE_MODE")
        .env_remove("SCREAMROUTER_USE_SMART_ICE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = Collected::from(child.stdout.take().unwrap());
    let stderr = Collected::from(child.stderr.take().unwrap());
    let line = stdout.wait_for("HTTP listening on http://", 0);
    let rest = &line[line.find("http://").unwrap() + 7..];
    let http = rest.split([' ', '/']).next().unwrap().parse().unwrap();
    Daemon {
        child,
        http,
        stderr,
    }
}

fn get_ice_config(http: SocketAddr) -> String {
    let mut tcp = TcpStream::connect(http).unwrap();
    write!(
        tcp,
        "GET /api/ice-config HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    tcp.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    resp.split("\r\n\r\n").nth(1).unwrap().to_string()
}

fn hup(child: &Child) {
    let ok = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn config_file() -> PathBuf {
    let d = std::env::temp_dir().join(format!("scream-ice-reload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d.join("config.yaml")
}

#[test]
fn sighup_switches_mode_without_dropping_a_connected_speaker() {
    let cfg = config_file();
    // The seed's phase-1 template, with migration events logged.
    std::fs::write(
        &cfg,
        "webrtc:\n  ice:\n    mode: auto\n    legacy_mode: true\n    migration:\n      enable_new_features: false\n      log_migration_events: true\n",
    )
    .unwrap();
    let d = start(&cfg);
    let deprecation = d.stderr.wait_for("legacy ICE is deprecated", 0);
    assert!(deprecation.contains("scream-ice migrate"), "{deprecation}");

    // Legacy: even a loopback client gets the router's STUN responder.
    let legacy = get_ice_config(d.http);
    assert!(legacy.contains(r#""urls":["stun:127.0.0.1:"#), "{legacy}");
    d.stderr
        .wait_for("migration event: ice_config_used mode=legacy", 0);

    // A speaker connects and keeps sending for ~3 s across the reload.
    let mut speaker = Command::new(BIN)
        .args([
            "connect",
            &format!("http://{}", d.http),
            "--bind",
            "127.0.0.1",
        ])
        .args(["--count", "150", "--interval-ms", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let speaker_out = Collected::from(speaker.stdout.take().unwrap());
    let speaker_err = Collected::from(speaker.stderr.take().unwrap());
    speaker_out.wait_for("connected in ", 0);

    // Migrate the file and reload.
    let out = run(&["migrate", cfg.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = d.stderr.all().len();
    hup(&d.child);
    let reloaded = d.stderr.wait_for("SIGHUP: config reloaded", before);
    assert!(
        reloaded.contains("mode in force legacy -> auto; 1 speaker sessions keep running"),
        "{reloaded}"
    );
    d.stderr.wait_for(
        "migration event: config_reloaded from=legacy to=auto",
        before,
    );
    // Auto: a loopback client is local, no server at all.
    assert_eq!(
        get_ice_config(d.http),
        r#"{"iceServers":[],"iceTransportPolicy":"all"}"#
    );
    d.stderr
        .wait_for("migration event: ice_config_used mode=smart", before);

    // A broken file: the running config stays, one line says why.
    std::fs::write(&cfg, "webrtc:\n  ice:\n    mode: smart\n").unwrap();
    let before = d.stderr.all().len();
    hup(&d.child);
    let rejected = d.stderr.wait_for("SIGHUP: config not reloaded", before);
    assert!(
        rejected.contains(&format!(
            "the running config stays: {}:3:11: mode: unknown ICE mode",
            cfg.display()
        )),
        "{rejected}"
    );
    assert_eq!(
        get_ice_config(d.http),
        r#"{"iceServers":[],"iceTransportPolicy":"all"}"#
    );

    // The speaker finished its run over the same session: nothing lost.
    let t = Instant::now();
    let status = loop {
        if let Some(s) = speaker.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "connect hangs");
        std::thread::sleep(Duration::from_millis(20));
    };
    let summary = speaker_out.wait_for("datagrams: ", 0);
    assert!(
        status.success(),
        "{status:?} {:?} {:?}",
        speaker_out.all(),
        speaker_err.all()
    );
    assert!(
        summary.starts_with("datagrams: 150 sent, 150 echoed, loss 0.0 %"),
        "{summary}"
    );

    // Rollback (on a good file again) and SIGHUP: legacy again, events off.
    std::fs::write(
        &cfg,
        "webrtc:\n  ice:\n    mode: auto\n    migration:\n      log_migration_events: false\n",
    )
    .unwrap();
    let out = run(&[
        "rollback",
        "--config",
        cfg.to_str().unwrap(),
        "--reason",
        "test",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = d.stderr.all().len();
    hup(&d.child);
    let reloaded = d.stderr.wait_for("SIGHUP: config reloaded", before);
    assert!(reloaded.contains("auto -> legacy"), "{reloaded}");
    let legacy = get_ice_config(d.http);
    assert!(legacy.contains(r#""urls":["stun:127.0.0.1:"#), "{legacy}");
    // log_migration_events: false: no event line for that request.
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !d.stderr
            .all()
            .iter()
            .skip(before)
            .any(|l| l.contains("migration event")),
        "{:#?}",
        d.stderr.all()
    );
    assert!(
        d.stderr
            .all()
            .iter()
            .skip(before)
            .any(|l| l.contains("legacy ICE is deprecated")),
        "a reload into legacy warns again"
    );

    // SIGTERM still stops it cleanly after the reloads.
    let mut d = d;
    let status = {
        let _ = Command::new("kill")
            .args(["-TERM", &d.child.id().to_string()])
            .status();
        let t = Instant::now();
        loop {
            if let Some(s) = d.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                t.elapsed() < Duration::from_secs(2),
                "no stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    assert!(status.success(), "{status:?}");
}
