//! `scream-ice migrate` and `rollback`: the three input shapes, the
//! never-lose-a-file write path under injected faults at every step, a
//! full disk, a read-only directory, `kill -9` during 1,000 migrations,
//! every malformed input refused with nothing changed, and TURN
//! credentials round-tripping exactly through `config show --show-secrets`.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use scream_ice_host::atomic::{self, FileMeta, Fs, OsFs, Step, WriteFile};
use scream_ice_host::config::Config;
use scream_ice_host::migrate::{self, MigrateError, MigrateOptions};

const BIN: &str = env!("CARGO_BIN_EXE_scream-ice");

/// The seed's phase1.yaml template, as operators have it.
const PHASE1: &str = "# config/migration/phase1.yaml
webrtc:
  ice:
    mode: \"auto\"  # Start with auto mode
    legacy_mode: true  # Keep legacy behavior initially
    stun_servers:
      - url: \"stun:stun.l.google.com:19302\"
    migration:
      enable_new_features: false
      log_migration_events: true
";

/// What PHASE1 becomes.
const PHASE1_MIGRATED: &str = "# scream-ice config written by `scream-ice migrate` from config.yaml
webrtc:
  ice:
    mode: \"auto\"
    legacy_mode: false
    local_network_priority: true
    stun_servers:
      - url: \"stun:stun.l.google.com:19302\"
    migration:
      enable_new_features: true
      log_migration_events: true
";

/// A fresh, empty directory for one test.
fn fresh_dir(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "scream-ice-migrate-{}-{name}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Every file in `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn names(dir: &Path) -> Vec<String> {
    snapshot(dir).into_keys().collect()
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("SCREAMROUTER_ICE_MODE")
        .env_remove("SCREAMROUTER_ENABLE_LOCAL_PRIORITY")
        .env_remove("SCREAMROUTER_LEGACY_ICE_MODE")
        .env_remove("SCREAMROUTER_USE_SMART_ICE")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn opts(input: &Path) -> MigrateOptions {
    MigrateOptions {
        input: input.to_path_buf(),
        output: None,
        dry_run: false,
        drop_unknown: false,
    }
}

// ---------------------------------------------------------------------------
// Fault injection
// ---------------------------------------------------------------------------

/// How an injected fault behaves.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// The call fails with this error kind.
    Error(io::ErrorKind),
    /// A write stores this many bytes, then fails with ENOSPC.
    DiskFullAfter(usize),
    /// A read returns the bytes with one flipped (a bad disk).
    Corrupt,
}

/// The real filesystem, with one fault at the `nth` call of `step`; it
/// counts every step's calls.
struct FaultyFs {
    fault: Option<(Step, usize, Fault)>,
    calls: RefCell<HashMap<Step, usize>>,
}

impl FaultyFs {
    fn new(fault: Option<(Step, usize, Fault)>) -> FaultyFs {
        FaultyFs {
            fault,
            calls: RefCell::new(HashMap::new()),
        }
    }

    /// The fault for this call of `step`, if it is the chosen one.
    fn hit(&self, step: Step) -> Option<Fault> {
        let mut calls = self.calls.borrow_mut();
        let n = calls.entry(step).or_insert(0);
        let this = *n;
        *n += 1;
        match self.fault {
            Some((s, nth, f)) if s == step && nth == this => Some(f),
            _ => None,
        }
    }

    fn error(&self, step: Step) -> io::Result<()> {
        match self.hit(step) {
            Some(Fault::Error(kind)) => Err(io::Error::new(kind, format!("injected at {step}"))),
            _ => Ok(()),
        }
    }
}

struct FaultyFile {
    inner: Box<dyn WriteFile>,
    fault: Option<Fault>,
    sync_fault: Option<Fault>,
}

impl WriteFile for FaultyFile {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self.fault {
            Some(Fault::DiskFullAfter(n)) => {
                self.inner.write_all(&bytes[..n.min(bytes.len())])?;
                Err(io::Error::from_raw_os_error(28)) // ENOSPC
            }
            Some(Fault::Error(kind)) => Err(io::Error::new(kind, "injected write")),
            _ => self.inner.write_all(bytes),
        }
    }
    fn sync_all(&mut self) -> io::Result<()> {
        match self.sync_fault {
            Some(Fault::Error(kind)) => Err(io::Error::new(kind, "injected fsync")),
            _ => self.inner.sync_all(),
        }
    }
}

impl Fs for FaultyFs {
    fn read(&self, step: Step, path: &Path, limit: u64) -> io::Result<Vec<u8>> {
        match self.hit(step) {
            Some(Fault::Error(kind)) => Err(io::Error::new(kind, "injected read")),
            Some(Fault::Corrupt) => {
                let mut v = OsFs.read(step, path, limit)?;
                if let Some(b) = v.last_mut() {
                    *b ^= 0x20;
                }
                Ok(v)
            }
            _ => OsFs.read(step, path, limit),
        }
    }
    fn stat(&self, step: Step, path: &Path) -> io::Result<Option<FileMeta>> {
        OsFs.stat(step, path)
    }
    fn create_new(
        &self,
        step: Step,
        path: &Path,
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> io::Result<Box<dyn WriteFile>> {
        // Creation, the write and the fsync are three calls of one step
        // (or, for the temporary file, of TempWrite and TempSync).
        let create = self.hit(step);
        if let Some(Fault::Error(kind)) = create {
            return Err(io::Error::new(kind, "injected create"));
        }
        let inner = OsFs.create_new(step, path, mode, owner)?;
        let fault = self.hit(step);
        let sync_step = if step == Step::TempWrite {
            Step::TempSync
        } else {
            step
        };
        let sync_fault = self.hit(sync_step);
        Ok(Box::new(FaultyFile {
            inner,
            fault,
            sync_fault,
        }))
    }
    fn hard_link(&self, step: Step, from: &Path, to: &Path) -> io::Result<()> {
        self.error(step)?;
        OsFs.hard_link(step, from, to)
    }
    fn rename(&self, step: Step, from: &Path, to: &Path) -> io::Result<()> {
        self.error(step)?;
        OsFs.rename(step, from, to)
    }
    fn remove_file(&self, step: Step, path: &Path) -> io::Result<()> {
        OsFs.remove_file(step, path)
    }
    fn sync_dir(&self, step: Step, dir: &Path) -> io::Result<()> {
        self.error(step)?;
        OsFs.sync_dir(step, dir)
    }
    fn list_dir(&self, step: Step, dir: &Path) -> io::Result<Vec<String>> {
        OsFs.list_dir(step, dir)
    }
}

/// A clean migration's calls per step (what the fault loop walks).
fn calls_of_a_clean_run(dir: &Path, file: &str, content: &str) -> HashMap<Step, usize> {
    let p = dir.join(file);
    std::fs::write(&p, content).unwrap();
    let fs = FaultyFs::new(None);
    let m = migrate::migrate(&fs, &opts(&p), &mut Vec::new()).unwrap();
    assert!(m.changed);
    for n in names(dir) {
        std::fs::remove_file(dir.join(n)).unwrap();
    }
    fs.calls.into_inner()
}

#[test]
fn a_fault_at_every_step_leaves_the_original_and_no_stray_file() {
    let dir = fresh_dir("faults");
    let clean = calls_of_a_clean_run(&dir, "config.yaml", PHASE1);
    for step in [
        Step::Backup,
        Step::TempWrite,
        Step::TempSync,
        Step::Validate,
        Step::Rename,
        Step::DirSync,
    ] {
        assert!(
            clean.get(&step).copied().unwrap_or(0) > 0,
            "{step} never called"
        );
    }
    let mut injected = 0;
    for (&step, &count) in &clean {
        for nth in 0..count {
            for fault in [
                Fault::Error(io::ErrorKind::Other),
                Fault::DiskFullAfter(7),
                Fault::Corrupt,
            ] {
                let p = dir.join("config.yaml");
                std::fs::write(&p, PHASE1).unwrap();
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
                let before = snapshot(&dir);
                let fs = FaultyFs::new(Some((step, nth, fault)));
                let r = migrate::migrate(&fs, &opts(&p), &mut Vec::new());
                let hit = fs.calls.borrow().get(&step).copied().unwrap_or(0) > nth;
                match r {
                    Ok(m) => {
                        // The fault did not apply to this call (a corrupt
                        // read where nothing is read back, a short write on
                        // a call that does not write): the run succeeded.
                        assert_eq!(std::fs::read_to_string(&p).unwrap(), PHASE1_MIGRATED);
                        assert!(m.changed);
                        for n in names(&dir) {
                            if n != "config.yaml" {
                                std::fs::remove_file(dir.join(n)).unwrap();
                            }
                        }
                    }
                    Err(e) => {
                        injected += 1;
                        assert!(hit, "{step} #{nth}: failed without the fault: {e}");
                        let msg = e.to_string();
                        assert!(!msg.contains('\n'), "{msg}");
                        assert!(
                            msg.ends_with("; nothing changed"),
                            "{step} #{nth} {fault:?}: {msg}"
                        );
                        assert!(
                            msg.contains(step.as_str()) || step == Step::ReadTarget,
                            "{msg}"
                        );
                        assert_eq!(snapshot(&dir), before, "{step} #{nth} {fault:?}: {msg}");
                        assert_eq!(
                            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                            0o640
                        );
                    }
                }
            }
        }
    }
    assert!(injected >= 8, "only {injected} faults made a run fail");
}

#[test]
fn a_fault_while_writing_a_new_json_target_leaves_no_file() {
    let dir = fresh_dir("faults-json");
    let json = r#"{"iceServers":[{"urls":"turn:t.example","username":"u","credential":"c"}]}"#;
    let clean = calls_of_a_clean_run(&dir, "legacy.json", json);
    assert_eq!(clean.get(&Step::Backup), None, "no target, no backup");
    for (&step, &count) in &clean {
        for nth in 0..count {
            let p = dir.join("legacy.json");
            std::fs::write(&p, json).unwrap();
            let before = snapshot(&dir);
            let fs = FaultyFs::new(Some((step, nth, Fault::Error(io::ErrorKind::Other))));
            match migrate::migrate(&fs, &opts(&p), &mut Vec::new()) {
                Err(e) => {
                    assert_eq!(snapshot(&dir), before, "{step} #{nth}: {e}");
                    assert!(!dir.join("legacy.yaml").exists());
                }
                Ok(_) => {
                    std::fs::remove_file(dir.join("legacy.yaml")).unwrap();
                }
            }
        }
    }
}

#[test]
fn disk_full_through_the_injected_writer_names_the_cause() {
    let dir = fresh_dir("enospc");
    let p = dir.join("config.yaml");
    std::fs::write(&p, PHASE1).unwrap();
    let before = snapshot(&dir);
    let fs = FaultyFs::new(Some((Step::TempWrite, 1, Fault::DiskFullAfter(10))));
    let e = migrate::migrate(&fs, &opts(&p), &mut Vec::new()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("{}: write temporary file failed (", p.display())),
        "{msg}"
    );
    assert!(msg.contains("No space left on device"), "{msg}");
    assert_eq!(snapshot(&dir), before);
}

/// A tmpfs of `kib` KiB mounted on a fresh directory (root only); unmounted
/// on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(name: &str, kib: u32) -> Option<Tmpfs> {
        if !nix_is_root() {
            assert!(
                std::env::var_os("SCREAM_ICE_SKIP_NETNS").is_some(),
                "the tmpfs tests need root (to mount); set SCREAM_ICE_SKIP_NETNS=1 to skip them"
            );
            return None;
        }
        let d = fresh_dir(name);
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={kib}k,mode=0755"),
                "tmpfs",
            ])
            .arg(&d)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount tmpfs on {}", d.display());
        Some(Tmpfs(d))
    }

    fn remount_ro(&self) {
        let ok = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.0)
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

#[test]
fn disk_full_on_a_tiny_tmpfs_changes_nothing() {
    let Some(t) = Tmpfs::mount("tmpfs-full", 8) else {
        return;
    };
    // 8 KiB is two pages: the original takes one; the backup fills the
    // disk, so the temporary file cannot be written.
    let mut big = String::from(PHASE1);
    big.push_str("server:\n  trusted_proxies:\n");
    for i in 0..150 {
        big.push_str(&format!("    - \"10.{}.{}.0/24\"\n", i / 200, i % 200));
    }
    assert!(big.len() > 3000 && big.len() < 4096, "{}", big.len());
    let p = t.0.join("config.yaml");
    std::fs::write(&p, &big).unwrap();
    let before = snapshot(&t.0);
    let out = run(&["migrate", p.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.trim_end().ends_with("; nothing changed"), "{err}");
    assert_eq!(snapshot(&t.0), before, "{err}");
}

#[test]
fn a_read_only_directory_changes_nothing() {
    let Some(t) = Tmpfs::mount("tmpfs-ro", 64) else {
        return;
    };
    let p = t.0.join("config.yaml");
    std::fs::write(&p, PHASE1).unwrap();
    t.remount_ro();
    let before = snapshot(&t.0);
    let out = run(&["migrate", p.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("Read-only file system"), "{err}");
    assert_eq!(snapshot(&t.0), before);
}

// ---------------------------------------------------------------------------
// kill -9
// ---------------------------------------------------------------------------

/// A small deterministic generator for the kill delays (the seed is
/// printed, so a failure can be replayed).
struct SplitMix(u64);
impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[test]
fn kill_9_at_random_moments_of_1000_migrations_never_leaves_a_partial_file() {
    let dir = fresh_dir("kill9");
    let p = dir.join("config.yaml");
    // A config of a few KiB, so the write is not a single page copy.
    let mut old = String::from(PHASE1);
    old.push_str("server:\n  trusted_proxies:\n");
    for i in 0..200 {
        old.push_str(&format!("    - \"10.{}.{}.0/24\"\n", i / 100, i % 100));
    }
    let new = {
        let d = fresh_dir("kill9-expected");
        let q = d.join("config.yaml");
        std::fs::write(&q, &old).unwrap();
        assert!(run(&["migrate", q.to_str().unwrap()]).status.success());
        std::fs::read_to_string(&q).unwrap()
    };
    assert_ne!(old, new);

    // How long one migration takes here, so the kills spread over it.
    std::fs::write(&p, &old).unwrap();
    let t = Instant::now();
    for _ in 0..5 {
        std::fs::write(&p, &old).unwrap();
        assert!(run(&["migrate", p.to_str().unwrap()]).status.success());
    }
    let typical = t.elapsed() / 5;

    let profiles = fresh_dir("kill9-profiles");
    let seed = 0x5eed_0f10_0000;
    let mut rng = SplitMix(seed);
    let (mut saw_old, mut saw_new) = (0u32, 0u32);
    for i in 0..1000 {
        std::fs::write(&p, &old).unwrap();
        let mut child = Command::new(BIN)
            .args(["migrate", p.to_str().unwrap()])
            // Under cargo-llvm-cov a process killed while it writes its
            // coverage profile would leave a corrupt one among the
            // run's: profiles of the killed runs go elsewhere.
            .env("LLVM_PROFILE_FILE", profiles.join("killed-%p.profraw"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let delay = Duration::from_nanos(rng.next() % (typical.as_nanos() as u64 * 12 / 10 + 1));
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let now = std::fs::read_to_string(&p).unwrap();
        if now == old {
            saw_old += 1;
        } else if now == new {
            saw_new += 1;
        } else {
            panic!(
                "seed {seed:#x}, iteration {i}, kill after {delay:?}: partial target ({} bytes)",
                now.len()
            );
        }
    }
    // Every backup under its final name is complete (they are written to
    // a temporary file and linked into place).
    let mut backups = 0;
    for (name, bytes) in snapshot(&dir) {
        if name.ends_with(".migrate.bak") {
            backups += 1;
            assert_eq!(bytes, old.as_bytes(), "{name} is not a complete backup");
        }
    }
    eprintln!(
        "kill -9 x1000 (typical run {typical:?}): target old {saw_old}, new {saw_new}; {backups} complete backups"
    );
    assert!(
        saw_old > 0 && saw_new > 0,
        "kills did not spread: old {saw_old}, new {saw_new}"
    );
    // The next run cleans the temporary files the killed runs left.
    std::fs::write(&p, &old).unwrap();
    assert!(run(&["migrate", p.to_str().unwrap()]).status.success());
    let stray: Vec<String> = names(&dir)
        .into_iter()
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    let _ = std::fs::remove_dir_all(&profiles);
}

// ---------------------------------------------------------------------------
// Shapes, refusals, round trips
// ---------------------------------------------------------------------------

#[test]
fn the_three_input_shapes() {
    let dir = fresh_dir("shapes");
    // 1. An RTCConfiguration, urls as a string and as a list.
    let rtc = dir.join("rtc.json");
    std::fs::write(
        &rtc,
        r#"{
  "iceServers": [
    {"urls": "stun:stun.l.google.com:19302"},
    {"urls": ["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org"],
     "username": "speaker", "credential": "s3cret", "credentialType": "password"}
  ],
  "iceTransportPolicy": "all",
  "bundlePolicy": "max-bundle"
}"#,
    )
    .unwrap();
    let out = run(&["migrate", rtc.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        "scream-ice: migrate: note: bundlePolicy is a browser setting with no router equivalent; not carried\n"
    );
    let yaml = dir.join("rtc.yaml");
    assert!(text(&out.stdout).starts_with(&format!(
        "migrated {} -> {};",
        rtc.display(),
        yaml.display()
    )));
    assert_eq!(
        std::fs::read_to_string(&yaml).unwrap(),
        "# scream-ice config written by `scream-ice migrate` from rtc.json
webrtc:
  ice:
    mode: \"auto\"
    legacy_mode: false
    local_network_priority: true
    stun_servers:
      - url: \"stun:stun.l.google.com:19302\"
    turn_servers:
      - url: \"turn:turn.example.org:3478?transport=udp\"
        username: \"speaker\"
        credential: \"s3cret\"
      - url: \"turns:turn.example.org\"
        username: \"speaker\"
        credential: \"s3cret\"
"
    );
    // TURN credentials inside: 0600 although the input was 0644.
    assert_eq!(
        std::fs::metadata(&yaml).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let c = Config::from_file(&yaml).unwrap();
    assert_eq!(
        c.ice.mode_in_force(),
        scream_ice_core::policy::IceMode::Auto
    );

    // 2. A bare iceServers list, to --output.
    let list = dir.join("servers.json");
    std::fs::write(
        &list,
        r#"[{"urls": "stun:a.example"}, {"url": "stun:b.example:3479"}]"#,
    )
    .unwrap();
    let target = dir.join("out.yaml");
    let out = run(&[
        "migrate",
        list.to_str().unwrap(),
        "--output",
        target.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let c = Config::from_file(&target).unwrap();
    let urls: Vec<&str> = c
        .ice
        .stun_servers
        .value
        .iter()
        .map(|e| e.url.value.as_str())
        .collect();
    assert_eq!(urls, ["stun:a.example", "stun:b.example:3479"]);
    assert_eq!(
        std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
        0o644
    );

    // 3. The seed's phase1.yaml, in place, mode kept.
    let y = dir.join("config.yaml");
    std::fs::write(&y, PHASE1).unwrap();
    std::fs::set_permissions(&y, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = run(&["migrate", y.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&y).unwrap(), PHASE1_MIGRATED);
    assert_eq!(
        std::fs::metadata(&y).unwrap().permissions().mode() & 0o777,
        0o640
    );
    let backups = atomic::backups(&OsFs, &y, "migrate").unwrap();
    assert_eq!(backups.len(), 1);
    assert_eq!(std::fs::read_to_string(&backups[0]).unwrap(), PHASE1);
    assert_eq!(
        std::fs::metadata(&backups[0]).unwrap().permissions().mode() & 0o777,
        0o640,
        "the backup keeps the original's mode"
    );
    // config check is quiet about deprecation now, and was not before.
    let check = run(&["config", "check", backups[0].to_str().unwrap()]);
    assert!(
        text(&check.stderr).contains("legacy ICE is deprecated")
            && text(&check.stderr).contains("scream-ice migrate"),
        "{}",
        text(&check.stderr)
    );
    let check = run(&["config", "check", y.to_str().unwrap()]);
    assert!(
        check.status.success() && check.stderr.is_empty(),
        "{}",
        text(&check.stderr)
    );
}

#[test]
fn an_old_yaml_with_urls_lists_and_ice_servers_is_normalised() {
    let dir = fresh_dir("normalise");
    let y = dir.join("old.yaml");
    std::fs::write(
        &y,
        "iceServers:
  - urls: [\"stun:x.example\", \"turn:t.example\"]
    username: u
    credential: c
webrtc:
  ice:
    mode: legacy
    stun_servers:
      - url: [\"stun:a.example\", \"stun:x.example\"]
        enabled: false
      - url: \"turn:misplaced.example\"
    network_detection:
      local_subnets: [\"192.168.1.0/24\"]
server:
  http_listen: \"0.0.0.0:8188\"
",
    )
    .unwrap();
    let out = run(&["migrate", y.to_str().unwrap()]);
    let err = text(&out.stderr);
    // The misplaced TURN URL has no credentials: refused, nothing changed.
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        err,
        format!(
            "scream-ice: migrate: {}:11:9: webrtc.ice.stun_servers[1]: TURN server \"turn:misplaced.example\" without username (TURN needs both username and credential); nothing changed\n",
            y.display()
        )
    );
    let fixed = std::fs::read_to_string(&y).unwrap().replace(
        "      - url: \"turn:misplaced.example\"\n",
        "      - url: \"turn:misplaced.example\"\n        username: 0x1F\n        credential: n\n",
    );
    std::fs::write(&y, &fixed).unwrap();
    let out = run(&["migrate", y.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let c = Config::from_file(&y).unwrap();
    let stun: Vec<(&str, bool)> = c
        .ice
        .stun_servers
        .value
        .iter()
        .map(|e| (e.url.value.as_str(), e.enabled.value))
        .collect();
    // Each URL its own entry, `enabled` carried; the iceServers STUN URL
    // added once (exact duplicates are dropped only when identical).
    assert_eq!(
        stun,
        [
            ("stun:a.example", false),
            ("stun:x.example", false),
            ("stun:x.example", true)
        ]
    );
    let turn: Vec<&str> = c
        .ice
        .turn_servers
        .value
        .iter()
        .map(|e| e.url.value.as_str())
        .collect();
    assert_eq!(turn, ["turn:misplaced.example", "turn:t.example"]);
    // Plain scalars that look like other types are the strings they are
    // written as, to the daemon, before and after: not `31` and `false`.
    let t = &c.ice.turn_servers.value[0];
    assert_eq!(t.username.as_ref().unwrap().value, "0x1F");
    assert_eq!(t.credential.as_ref().unwrap().value, "n");
    assert_eq!(c.ice.mode.value, scream_ice_core::policy::IceMode::Auto);
    assert_eq!(c.server.http_listen.value.to_string(), "0.0.0.0:8188");
    assert_eq!(c.ice.local_subnets.value.len(), 1);
    assert!(!std::fs::read_to_string(&y).unwrap().contains("iceServers"));
}

#[test]
fn a_second_run_changes_nothing_and_dry_run_touches_nothing() {
    let dir = fresh_dir("idempotent");
    let y = dir.join("config.yaml");
    std::fs::write(&y, PHASE1).unwrap();

    let before = snapshot(&dir);
    let out = run(&["migrate", y.to_str().unwrap(), "--dry-run"]);
    assert!(out.status.success());
    assert_eq!(snapshot(&dir), before, "--dry-run wrote something");
    let shown = text(&out.stdout);
    assert!(shown.contains(PHASE1_MIGRATED), "{shown}");
    let p = y.display();
    for line in [
        format!("--- {p}\n"),
        format!("+++ {p} (migrated)\n"),
        "-    legacy_mode: true  # Keep legacy behavior initially\n".to_string(),
        "+    legacy_mode: false\n".to_string(),
        "+    local_network_priority: true\n".to_string(),
        "-      enable_new_features: false\n".to_string(),
        "+      enable_new_features: true\n".to_string(),
    ] {
        assert!(shown.contains(&line), "missing {line:?} in\n{shown}");
    }

    assert!(run(&["migrate", y.to_str().unwrap()]).status.success());
    let after_first = snapshot(&dir);
    let mtime = std::fs::metadata(&y).unwrap().modified().unwrap();
    let out = run(&["migrate", y.to_str().unwrap()]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        format!("{p}: already migrated, nothing changed\n")
    );
    assert_eq!(snapshot(&dir), after_first, "a second run wrote something");
    assert_eq!(std::fs::metadata(&y).unwrap().modified().unwrap(), mtime);
    // A hand-written config that is already new is left alone, comments and all.
    let mine = dir.join("mine.yaml");
    let text_with_comments = "# mine\nwebrtc:\n  ice:\n    mode: local-only  # LAN only\n    legacy_mode: false\n    local_network_priority: true\n";
    std::fs::write(&mine, text_with_comments).unwrap();
    assert!(run(&["migrate", mine.to_str().unwrap()]).status.success());
    assert_eq!(std::fs::read_to_string(&mine).unwrap(), text_with_comments);
}

#[test]
fn unknown_keys_are_refused_by_name_or_dropped() {
    let dir = fresh_dir("unknown");
    let y = dir.join("config.yaml");
    let input = "webrtc:
  ice:
    legacy_mode: true
    bogus: 1
    stun_servers:
      - url: \"stun:a.example\"
        weight: 3
  datachannel: {}
rollout_percent: 10
";
    std::fs::write(&y, input).unwrap();
    let before = snapshot(&dir);
    let out = run(&["migrate", y.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "scream-ice: migrate: {}: 4 unknown keys, refused (--drop-unknown drops them): webrtc.ice.bogus (4:5), webrtc.ice.stun_servers[0].weight (7:9), webrtc.datachannel (8:3), rollout_percent (9:1); nothing changed\n",
            y.display()
        )
    );
    assert_eq!(snapshot(&dir), before);

    let json = dir.join("rtc.json");
    std::fs::write(
        &json,
        r#"{"iceServers":[{"urls":"stun:a.example","priority":1}],"sdpSemantics":"unified-plan"}"#,
    )
    .unwrap();
    let out = run(&["migrate", json.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("2 unknown keys, refused (--drop-unknown drops them): iceServers[0].priority, sdpSemantics;"),
        "{}",
        text(&out.stderr)
    );

    let out = run(&["migrate", y.to_str().unwrap(), "--drop-unknown"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    for k in [
        "webrtc.ice.bogus (4:5)",
        "webrtc.ice.stun_servers[0].weight (7:9)",
        "webrtc.datachannel (8:3)",
        "rollout_percent (9:1)",
    ] {
        assert!(
            err.contains(&format!("note: dropped unknown key {k}\n")),
            "{err}"
        );
    }
    let c = Config::from_file(&y).unwrap();
    assert_eq!(c.ice.stun_servers.value.len(), 1);
}

/// Each malformed input: refused with exit 1, one line naming the
/// problem (located where the parser knows), the directory unchanged.
#[test]
fn malformed_inputs_are_refused_and_nothing_changes() {
    let dir = fresh_dir("malformed");
    let many_stun: String = {
        let list: Vec<String> = (0..33)
            .map(|i| format!(r#"{{"urls":"stun:s{i}.example"}}"#))
            .collect();
        format!(r#"{{"iceServers":[{}]}}"#, list.join(","))
    };
    let mut huge = String::from("webrtc:\n  ice:\n    legacy_mode: true\n");
    while huge.len() <= 1 << 20 {
        huge.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    let cases: Vec<(&str, Vec<u8>, String)> = vec![
        ("empty.yaml", Vec::new(), "empty.yaml: empty file, nothing to migrate".into()),
        ("blank.json", b"  \n\n".to_vec(), "blank.json: empty file".into()),
        ("garbage.yaml", vec![0x89, b'P', b'N', b'G', 0, 0xff, 0xfe, 1, 2], "garbage.yaml:1:1: not UTF-8 text".into()),
        ("nul.yaml", b"webrtc:\n\0\0".to_vec(), "nul.yaml:2:1: contains NUL bytes".into()),
        ("truncated.json", br#"{"iceServers": [{"urls": "stun:a.exam"#.to_vec(), "truncated.json:1:37: invalid JSON: EOF while parsing a string".into()),
        ("comma.json", b"{\n  \"iceServers\": [,]\n}".to_vec(), "comma.json:2:18: invalid JSON: expected value".into()),
        ("bad.yaml", b"webrtc:\n  ice:\n    mode: [x\n".to_vec(), "bad.yaml:3:11: invalid YAML".into()),
        ("scalar.json", b"42".to_vec(), "scalar.json: the JSON is a number, neither an RTCConfiguration object nor an iceServers list".into()),
        ("list.yaml", b"- a\n- b\n".to_vec(), "list.yaml:1:1: the YAML is a list, not a configuration mapping".into()),
        ("comments.yaml", b"# only\n# comments\n".to_vec(), "comments.yaml: no configuration in it".into()),
        ("huge.yaml", huge.into_bytes(), "huge.yaml: larger than 1048576 bytes (1 MiB), refusing to read it".into()),
        ("many.json", many_stun.into_bytes(), "many.json: webrtc.ice.stun_servers: 33 STUN servers, more than the 32 a config allows".into()),
        ("urls-number.json", br#"{"iceServers":[{"urls":5}]}"#.to_vec(), "urls-number.json: iceServers[0].urls: neither a string nor a list of strings (a number)".into()),
        ("urls-map.yaml", b"iceServers:\n  - urls: {a: 1}\n".to_vec(), "urls-map.yaml:2:11: iceServers[0].urls: neither a string nor a list of strings (a mapping)".into()),
        ("urls-empty.json", br#"{"iceServers":[{"urls":[]}]}"#.to_vec(), "urls-empty.json: iceServers[0].urls: an empty list of URLs".into()),
        ("urls-item.json", br#"{"iceServers":[{"urls":["stun:a.example", true]}]}"#.to_vec(), "urls-item.json: iceServers[0].urls[1]: a boolean is not a URL string".into()),
        ("scheme.json", br#"{"iceServers":[{"urls":"http://stun.example"}]}"#.to_vec(), "scheme.json: iceServers[0].urls: \"http://stun.example\": the scheme must be stun, stuns, turn or turns".into()),
        ("noscheme.yaml", b"webrtc:\n  ice:\n    stun_servers:\n      - url: stun.example.org\n".to_vec(), "noscheme.yaml:4:14: webrtc.ice.stun_servers[0].url: \"stun.example.org\": the scheme must be stun, stuns, turn or turns".into()),
        ("badurl.json", br#"{"iceServers":[{"urls":"stun://x.example"}]}"#.to_vec(), "badurl.json: iceServers[0].urls: bad URL \"stun://x.example\": no \"//\" after the scheme".into()),
        ("turn-nocred.json", br#"{"iceServers":[{"urls":"turn:t.example","username":"u"}]}"#.to_vec(), "turn-nocred.json: iceServers[0]: TURN server \"turn:t.example\" without credential".into()),
        ("turn-nouser.json", br#"{"iceServers":[{"urls":"turns:t.example","credential":"c"}]}"#.to_vec(), "turn-nouser.json: iceServers[0]: TURN server \"turns:t.example\" without username".into()),
        ("turn-null.yaml", b"webrtc:\n  ice:\n    turn_servers:\n      - url: turn:t.example\n        username: null\n        credential: c\n".to_vec(), "turn-null.yaml:4:9: webrtc.ice.turn_servers[0]: TURN server \"turn:t.example\" without username".into()),
        ("oauth.json", br#"{"iceServers":[{"urls":"turn:t.example","username":"u","credential":"c","credentialType":"oauth"}]}"#.to_vec(), "oauth.json: iceServers[0].credentialType: only \"password\" credentials can be migrated".into()),
        ("relay.json", br#"{"iceServers":[],"iceTransportPolicy":"relay"}"#.to_vec(), "relay.json: iceTransportPolicy: \"relay\" has no equivalent".into()),
        ("not-rtc.json", br#"{"servers":[]}"#.to_vec(), "not-rtc.json: iceServers: missing: this is not an RTCConfiguration".into()),
        ("servers-map.json", br#"{"iceServers":{"urls":"stun:a.example"}}"#.to_vec(), "servers-map.json: iceServers: a mapping where a list belongs".into()),
        ("server-str.json", br#"["stun:a.example"]"#.to_vec(), "server-str.json: iceServers[0]: a string where an RTCIceServer object belongs".into()),
        ("invalid-after.yaml", b"webrtc:\n  ice:\n    mode: full\n".to_vec(), "invalid-after.yaml:3:11: webrtc.ice.mode: mode full needs at least one enabled, valid TURN server (the migrated config would not load)".into()),
        ("typed.yaml", b"webrtc:\n  ice:\n    host_candidate_timeout_ms: abc\n".to_vec(), "typed.yaml:3:32: webrtc.ice.host_candidate_timeout_ms: not a whole number of 0 or more".into()),
        ("dup.yaml", b"webrtc:\n  ice:\n    mode: auto\n    mode: full\n".to_vec(), "dup.yaml:4:5: invalid YAML: duplicate mapping key".into()),
        ("webrtc-str.yaml", b"webrtc: 3\n".to_vec(), "webrtc-str.yaml:1:9: webrtc: not a mapping".into()),
    ];
    for (name, bytes, want) in &cases {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        let before = snapshot(&dir);
        let out = run(&["migrate", p.to_str().unwrap()]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(out.stdout.is_empty(), "{name}");
        assert_eq!(err.lines().count(), 1, "{name}: {err}");
        let want = format!("scream-ice: migrate: {}/{want}", dir.display());
        assert!(err.starts_with(&want), "{name}:\n got {err}\nwant {want}");
        assert!(
            err.trim_end().ends_with("; nothing changed"),
            "{name}: {err}"
        );
        assert_eq!(snapshot(&dir), before, "{name} changed the directory");
        std::fs::remove_file(&p).unwrap();
    }
    let out = run(&["migrate", dir.join("missing.json").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("missing.json: cannot read: No such file or directory"));
}

#[test]
fn turn_credentials_round_trip_exactly_through_config_show() {
    let dir = fresh_dir("secrets");
    let nasty = [
        ("plain", "s3cret"),
        ("with \"quotes\" and 'single'", "pa\"ss'wd"),
        ("user:with:colons", "cred:colon:s"),
        ("hash#user # comment?", "#not-a-comment"),
        ("Jürgen Ødegård 日本 💡", "pässwörd ☃ \u{1F511}"),
        ("back\\slash\\", "tab\tnew\\nline"),
        (" leading and trailing ", "   "),
    ];
    let servers: Vec<String> = nasty
        .iter()
        .enumerate()
        .map(|(i, (u, c))| {
            format!(
                r#"{{"urls":"turn:t{i}.example","username":{},"credential":{}}}"#,
                serde_json::to_string(u).unwrap(),
                serde_json::to_string(c).unwrap()
            )
        })
        .collect();
    // JSON escapes too: \u00e9 and a surrogate pair.
    let json = format!(
        r#"{{"iceServers":[{},{{"urls":"turn:esc.example","username":"caf\u00e9","credential":"\ud83d\udca1\/"}}]}}"#,
        servers.join(",")
    );
    let p = dir.join("rtc.json");
    std::fs::write(&p, json).unwrap();
    let out = run(&["migrate", p.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let yaml = dir.join("rtc.yaml");
    let show = run(&[
        "config",
        "show",
        "--config",
        yaml.to_str().unwrap(),
        "--show-secrets",
    ]);
    assert!(show.status.success(), "{}", text(&show.stderr));
    let shown = Config::from_yaml("shown", &text(&show.stdout)).unwrap();
    let got: Vec<(String, String)> = shown
        .ice
        .turn_servers
        .value
        .iter()
        .map(|t| {
            (
                t.username.as_ref().unwrap().value.clone(),
                t.credential.as_ref().unwrap().value.clone(),
            )
        })
        .collect();
    let mut want: Vec<(String, String)> = nasty
        .iter()
        .map(|(u, c)| (u.to_string(), c.to_string()))
        .collect();
    want.push(("café".into(), "💡/".into()));
    assert_eq!(got, want);
    // And a migration of the migrated file changes nothing.
    let again = run(&["migrate", yaml.to_str().unwrap()]);
    assert!(text(&again.stdout).ends_with("already migrated, nothing changed\n"));
}

// ---------------------------------------------------------------------------
// Rollback
// ---------------------------------------------------------------------------

#[test]
fn rollback_persists_legacy_and_restores_the_newest_backup() {
    let dir = fresh_dir("rollback");
    let y = dir.join("config.yaml");
    std::fs::write(&y, PHASE1).unwrap();
    assert!(run(&["migrate", y.to_str().unwrap()]).status.success());

    let out = run(&[
        "rollback",
        "--config",
        y.to_str().unwrap(),
        "--reason",
        "high failure rate",
    ]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.starts_with(&format!(
            "scream-ice: rollback: legacy_mode: true persisted in {}; previous file kept as ",
            y.display()
        )),
        "{err}"
    );
    assert!(err.contains("; reason: high failure rate\n"), "{err}");
    assert!(err.contains("systemctl reload scream-ice"), "{err}");
    let c = Config::from_file(&y).unwrap();
    assert_eq!(
        c.ice.mode_in_force(),
        scream_ice_core::policy::IceMode::Legacy
    );
    assert!(c.ice.legacy_mode.value);
    assert_eq!(atomic::backups(&OsFs, &y, "rollback").unwrap().len(), 1);
    // Again: already legacy, nothing written.
    let before = snapshot(&dir);
    let out = run(&["rollback", "--config", y.to_str().unwrap()]);
    assert!(
        text(&out.stderr).contains("already legacy (nothing changed)"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(snapshot(&dir), before);

    // --restore-backup: the newest migration backup, byte for byte.
    std::fs::write(&y, PHASE1_MIGRATED).unwrap();
    let out = run(&[
        "rollback",
        "--config",
        y.to_str().unwrap(),
        "--restore-backup",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&y).unwrap(), PHASE1);
    // The file it replaced is kept too.
    let kept: Vec<String> = atomic::backups(&OsFs, &y, "rollback")
        .unwrap()
        .iter()
        .map(|b| std::fs::read_to_string(b).unwrap())
        .collect();
    assert!(kept.contains(&PHASE1_MIGRATED.to_string()));

    // No migration backup: refused.
    let lonely = fresh_dir("rollback-none").join("config.yaml");
    std::fs::write(&lonely, PHASE1_MIGRATED).unwrap();
    let out = run(&[
        "rollback",
        "--config",
        lonely.to_str().unwrap(),
        "--restore-backup",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no backup made by `scream-ice migrate` beside it"));
    assert_eq!(std::fs::read_to_string(&lonely).unwrap(), PHASE1_MIGRATED);
}

#[test]
fn backups_are_never_overwritten_and_sort_by_time() {
    let dir = fresh_dir("backups");
    let y = dir.join("config.yaml");
    let mut contents = Vec::new();
    for i in 0..5 {
        let t = format!(
            "webrtc:\n  ice:\n    legacy_mode: true\n    host_candidate_timeout_ms: {}\n",
            100 + i
        );
        std::fs::write(&y, &t).unwrap();
        contents.push(t);
        let m = migrate::migrate(&OsFs, &opts(&y), &mut Vec::new()).unwrap();
        assert!(m.changed && m.backup.is_some());
    }
    let list = atomic::backups(&OsFs, &y, "migrate").unwrap();
    let got: Vec<String> = list
        .iter()
        .map(|b| std::fs::read_to_string(b).unwrap())
        .collect();
    assert_eq!(
        got, contents,
        "one backup per run, oldest first, none overwritten"
    );
}

#[test]
fn an_unwritable_target_is_a_clear_error() {
    let dir = fresh_dir("target-dir");
    let input = dir.join("rtc.json");
    std::fs::write(&input, r#"{"iceServers":[]}"#).unwrap();
    let target = dir.join("sub");
    std::fs::create_dir(&target).unwrap();
    let e = migrate::migrate(
        &OsFs,
        &MigrateOptions {
            output: Some(target.clone()),
            ..opts(&input)
        },
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(matches!(e, MigrateError::Input(_)), "{e}");
    assert!(e.to_string().contains("cannot read the target"), "{e}");
}

#[test]
fn a_second_writer_in_the_same_directory_waits_then_gives_up() {
    let dir = fresh_dir("locked");
    let p = dir.join("config.yaml");
    std::fs::write(&p, PHASE1).unwrap();
    // Another writer holds the directory lock for longer than a writer waits.
    let holder = std::fs::File::open(&dir).unwrap();
    holder.lock().unwrap();
    let before = snapshot(&dir);
    let t = Instant::now();
    let e = migrate::migrate(&OsFs, &opts(&p), &mut Vec::new()).unwrap_err();
    assert!(t.elapsed() >= atomic::LOCK_WAIT, "{:?}", t.elapsed());
    assert!(
        e.to_string().contains(
            "another scream-ice migrate or rollback is writing in this directory; nothing changed"
        ),
        "{e}"
    );
    assert_eq!(snapshot(&dir), before);
    // Released within the wait: the writer goes ahead.
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        drop(holder);
    });
    let m = migrate::migrate(&OsFs, &opts(&p), &mut Vec::new()).unwrap();
    assert!(m.changed);
    release.join().unwrap();
}
