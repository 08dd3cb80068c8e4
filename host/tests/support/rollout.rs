//! Shared by the rollout/store tests: a PostgreSQL database of their own,
//! temp dirs, deterministic outcome rows, a `serve` child.
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use scream_ice_host::store::OutcomeRow;
use sqlx::Connection;

/// The server `.ci/run` starts (`pg_ctlcluster 15 main start`), with the
/// `scream_ice` role it creates; `SCREAM_ICE_TEST_PG` overrides it.
pub fn pg_admin_url() -> String {
    std::env::var("SCREAM_ICE_TEST_PG")
        .unwrap_or_else(|_| "postgres://scream_ice:scream_ice@127.0.0.1:5432/postgres".to_string())
}

static N: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

/// A fresh database on the test server; its URL. Fails the test if the
/// server is not reachable (never skips).
pub async fn pg_database(prefix: &str) -> String {
    sqlx::any::install_default_drivers();
    let admin = pg_admin_url();
    let name = unique(prefix);
    let mut c = sqlx::AnyConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin}: {e} (.ci/run starts it)"));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut c)
        .await
        .unwrap();
    let base = admin.rsplit_once('/').unwrap().0;
    format!("{base}/{name}")
}

/// Drop a database [`pg_database`] made (at the end of a test, so runs do
/// not accumulate them). `WITH (FORCE)` is refused while an autovacuum
/// worker (a superuser's backend) is in the database, so a refusal is
/// retried; cleanup is not what a test asserts, so a database that still
/// cannot be dropped after 5 s is reported and left.
pub async fn drop_pg_database(url: &str) {
    let name = url.rsplit_once('/').unwrap().1.to_string();
    let mut c = sqlx::AnyConnection::connect(&pg_admin_url()).await.unwrap();
    let mut last = None;
    for _ in 0..25 {
        match sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut c)
        .await
        {
            Ok(_) => return,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("test database {name} left behind: {last:?}");
}

/// A fresh temp dir.
pub fn temp_dir(prefix: &str) -> PathBuf {
    let d = std::env::temp_dir().join(unique(prefix));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// splitmix64.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// True with probability ppm / 10^6.
    pub fn chance(&mut self, ppm: u64) -> bool {
        self.next() % 1_000_000 < ppm
    }
}

/// `n` deterministic rows with timestamps spread over the last 48 h
/// before `now_ms`.
pub fn rows(n: usize, seed: u64, now_ms: i64) -> Vec<OutcomeRow> {
    let mut r = Rng(seed);
    (0..n)
        .map(|i| {
            let local = r.chance(700_000);
            let smart = r.chance(300_000);
            let success = r.chance(if smart { 990_000 } else { 970_000 });
            let stun = !local || r.chance(20_000);
            OutcomeRow {
                timestamp_ms: now_ms - (r.next() % (48 * 3_600_000)) as i64,
                client_id: format!("c{i}"),
                router_id: "test".to_string(),
                experiment: "exp".to_string(),
                stage: 25,
                arm: if smart { "treatment" } else { "control" }.to_string(),
                config_type: if smart { "smart" } else { "legacy" }.to_string(),
                mode: if smart { "auto" } else { "legacy" }.to_string(),
                success,
                connection_time_ms: success.then(|| (r.next() % 3000) as i64),
                failure_reason: (!success).then(|| "timeout".to_string()),
                local_candidate_type: Some(if stun { "srflx" } else { "host" }.to_string()),
                remote_candidate_type: Some("host".to_string()),
                stun_used: stun,
                network_type: if local { "local" } else { "nat" }.to_string(),
                source: "browser".to_string(),
            }
        })
        .collect()
}

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_scream-ice");
pub const TOKEN: &str = "e2e-admin-token-0123456789abcdef";

/// A running `scream-ice serve`.
pub struct Daemon {
    pub child: Child,
    pub http: SocketAddr,
    pub config: PathBuf,
}

impl Daemon {
    /// Start `serve --config config` and wait for its HTTP line.
    pub fn start(config: &std::path::Path) -> Daemon {
        Daemon::spawn(config, false)
    }

    /// As [`Daemon::start`], for a daemon the test may SIGKILL: under
    /// cargo-llvm-cov its coverage profile goes to a temp dir, so a
    /// half-written one never lands among the run's.
    pub fn start_killable(config: &std::path::Path) -> Daemon {
        Daemon::spawn(config, true)
    }

    fn spawn(config: &std::path::Path, killable: bool) -> Daemon {
        let mut cmd = Command::new(BIN);
        if killable {
            cmd.env(
                "LLVM_PROFILE_FILE",
                std::env::temp_dir().join("scream-ice-killed-%p.profraw"),
            );
        }
        let mut child = cmd
            .args(["serve", "--config"])
            .arg(config)
            .env("SCREAM_ICE_ADMIN_TOKEN", TOKEN)
            .env(
                "RUST_LOG",
                std::env::var("E2E_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let http = loop {
            let l = lines.next().expect("serve exited").unwrap();
            if let Some(i) = l.find("http://") {
                let rest = &l[i + 7..];
                break rest.split([' ', '/']).next().unwrap().parse().unwrap();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Daemon {
            child,
            http,
            config: config.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM and wait.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let _ = self.child.wait();
    }

    /// SIGKILL and wait (a router that dies).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: &str,
        admin: bool,
    ) -> (u16, String) {
        let auth = format!("Bearer {TOKEN}");
        let mut h = vec![("Content-Type", "application/json")];
        if admin {
            h.push(("Authorization", auth.as_str()));
        }
        let r = scream_ice_host::client::request(
            self.http,
            &self.http.to_string(),
            method,
            path,
            &h,
            body.as_bytes(),
            Duration::from_secs(20),
        )
        .await
        .unwrap();
        (r.status, r.text())
    }

    pub async fn rollout(&self) -> serde_json::Value {
        let (s, b) = self.request("GET", "/api/rollout", "", true).await;
        assert_eq!(s, 200, "{b}");
        serde_json::from_str(&b).unwrap()
    }

    pub async fn arm(&self, client_id: &str) -> String {
        let (s, b) = self
            .request(
                "GET",
                &format!("/api/ice-config?client_id={client_id}"),
                "",
                false,
            )
            .await;
        assert_eq!(s, 200, "{b}");
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        v["screamIce"]["arm"].as_str().unwrap().to_string()
    }

    pub async fn metrics(&self) -> String {
        self.request("GET", "/metrics", "", false).await.1
    }
}

impl Drop for Daemon {
    /// SIGTERM and wait (a test that failed midway); SIGKILL only if it
    /// does not stop within 5 s.
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let t = std::time::Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of a sample line `name{labels} value` in a metrics text.
pub fn metric(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(sample).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

/// One webhook call: headers (lowercase names) and body.
#[derive(Clone, Debug)]
pub struct Hook {
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Hook {
    pub fn header(&self, n: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    }
}

/// A local webhook receiver: records every request, answers 200.
pub fn webhook_receiver() -> (SocketAddr, Arc<Mutex<Vec<Hook>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut raw = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = s.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                raw.extend_from_slice(&buf[..n]);
                if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&raw[..end]).to_string();
                    let headers: Vec<(String, String)> = head
                        .lines()
                        .skip(1)
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                        .collect();
                    let len: usize = headers
                        .iter()
                        .find(|(k, _)| k == "content-length")
                        .map_or(0, |(_, v)| v.parse().unwrap());
                    if raw.len() >= end + 4 + len {
                        let body =
                            String::from_utf8_lossy(&raw[end + 4..end + 4 + len]).to_string();
                        g.lock().unwrap().push(Hook { headers, body });
                        let _ = s.write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        );
                        break;
                    }
                }
            }
        }
    });
    (addr, got)
}

/// A random-looking, repeatable client id (128 bits hex).
pub fn client_id(r: &mut Rng) -> String {
    format!("{:016x}{:016x}", r.next(), r.next())
}

/// Whether `id` is in the treatment arm at `percent` of the default
/// experiment (the core's bucketing, as the daemon computes it).
pub fn is_treatment(id: &str, percent: u8) -> bool {
    scream_ice_core::rollout::bucket(
        scream_ice_core::rollout::DEFAULT_EXPERIMENT,
        scream_ice_core::rollout::ClientIdentity::Id(id),
    )
    .is_below(percent)
}

/// `n` outcomes as a JSON array: treatment clients fail with
/// `treatment_ppm`, control with `control_ppm`. Returns (body, treatment
/// count).
pub fn outcome_batch(
    r: &mut Rng,
    n: usize,
    stage: u8,
    treatment_ppm: u64,
    control_ppm: u64,
) -> (String, usize) {
    let mut items = Vec::with_capacity(n);
    let mut t = 0;
    for _ in 0..n {
        let id = client_id(r);
        let treat = is_treatment(&id, stage);
        t += usize::from(treat);
        let fail = r.chance(if treat { treatment_ppm } else { control_ppm });
        items.push(if fail {
            format!(r#"{{"client_id":"{id}","success":false,"failure_reason":"ice_failed","network_type":"local"}}"#)
        } else {
            format!(
                r#"{{"client_id":"{id}","success":true,"connect_ms":{},"local_candidate_type":"host","remote_candidate_type":"host","stun_used":false,"network_type":"local"}}"#,
                20 + r.next() % 80
            )
        });
    }
    (format!("[{}]", items.join(",")), t)
}

/// A config file for an e2e daemon.
pub fn daemon_config(
    dir: &std::path::Path,
    extra_rollout: &str,
    store_url: Option<&str>,
) -> PathBuf {
    let store = match store_url {
        Some(u) => format!(
            "store:\n  url: \"{u}\"\n  rate_per_client: 10000000\n  burst_per_client: 10000000\n"
        ),
        None => "store:\n  rate_per_client: 10000000\n  burst_per_client: 10000000\n".to_string(),
    };
    let text = format!(
        "webrtc:\n  ice:\n    rollout:\n      check_interval_s: 1\n{extra_rollout}server:\n  http_listen: \"127.0.0.1:0\"\n  stun_listen: \"off\"\n  data_dir: \"{}\"\n{store}",
        dir.display()
    );
    let p = dir.join("config.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

/// A private PostgreSQL 15 server (initdb in a temp dir, run as the
/// `postgres` user, trust auth on 127.0.0.1, its own port), so a test may
/// stop and start it without disturbing the shared one.
pub struct PrivatePg {
    pub dir: PathBuf,
    pub port: u16,
}

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn as_postgres(args: &[&str]) -> std::process::Output {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl PrivatePg {
    pub fn start_new() -> PrivatePg {
        let dir = std::env::temp_dir().join(unique("scream_ice_pg"));
        std::fs::create_dir_all(&dir).unwrap();
        let _ = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&dir)
            .status();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let data = dir.join("data");
        as_postgres(&[
            &format!("{PG_BIN}/initdb"),
            "-D",
            data.to_str().unwrap(),
            "--auth=trust",
            "-U",
            "postgres",
        ]);
        let pg = PrivatePg { dir, port };
        pg.start();
        pg
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn start(&self) {
        let data = self.dir.join("data");
        as_postgres(&[
            &format!("{PG_BIN}/pg_ctl"),
            "-D",
            data.to_str().unwrap(),
            "-l",
            self.dir.join("log").to_str().unwrap(),
            "-o",
            &format!(
                "-p {} -c listen_addresses=127.0.0.1 -k {}",
                self.port,
                self.dir.display()
            ),
            "-w",
            "start",
        ]);
    }

    pub fn stop(&self) {
        let data = self.dir.join("data");
        as_postgres(&[
            &format!("{PG_BIN}/pg_ctl"),
            "-D",
            data.to_str().unwrap(),
            "-m",
            "immediate",
            "-w",
            "stop",
        ]);
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--", &format!("{PG_BIN}/pg_ctl"), "-D"])
            .arg(&data)
            .args(["-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the daemon's descriptors point at (for a failure message).
pub fn fd_targets(pid: u32) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|p| p.display().to_string())
        .collect();
    v.sort();
    v
}

/// The process's CPU time so far (utime + stime), in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the `(comm)`, which may hold spaces: state is field 3,
    // utime 14 and stime 15.
    let rest: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    rest[11].parse::<u64>().unwrap() + rest[12].parse::<u64>().unwrap()
}

/// Clock ticks per second (`getconf CLK_TCK`).
pub fn clock_ticks_per_second() -> f64 {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}
