//! Interop with aioice (PyPI, the ICE agent of aiortc) in both roles, on
//! 127.0.0.1: credentials and candidates go over the Python driver's
//! stdin/stdout (`tests/peers/aioice_peer.py`), then datagrams flow both
//! ways (aioice sends 100, and echoes the 100 we send).
//!
//! Python: `$AIOICE_PYTHON` if set, else `<target>/aioice-venv/bin/python`,
//! created on first use with `python3 -m venv` and `pip install aioice`.
//! Missing python3 (or venv, or PyPI) fails the test with what to install,
//! unless `SCREAM_ICE_SKIP_PEERS=1`.
//!
//! `cargo test -p scream-ice-tokio --test aioice -- --nocapture` prints the
//! connect times.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use common::{find_program, loopback_config, missing_peer, ms, send_selected};
use scream_ice_tokio::scream_ice_core::agent::{GatheringState, Role};
use scream_ice_tokio::{Driver, Output, SessionEvent};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::time::Instant;

const COUNT: usize = 100;

/// One venv setup at a time (both tests of this binary may ask at once).
static VENV: Mutex<()> = Mutex::new(());

fn imports_aioice(python: &Path) -> bool {
    std::process::Command::new(python)
        .args(["-c", "import aioice"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A Python interpreter that can import aioice, or what to install.
fn aioice_python() -> Result<PathBuf, String> {
    let _guard = VENV.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = std::env::var_os("AIOICE_PYTHON") {
        let p = PathBuf::from(p);
        return if imports_aioice(&p) {
            Ok(p)
        } else {
            Err(format!(
                "AIOICE_PYTHON={} cannot import aioice: run `{} -m pip install aioice`",
                p.display(),
                p.display()
            ))
        };
    }
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap_or(Path::new("target"))
        .to_path_buf();
    let venv = target.join("aioice-venv");
    let python = venv.join("bin").join("python");
    if python.is_file() && imports_aioice(&python) {
        return Ok(python);
    }
    let Some(system) = find_program("python3") else {
        return Err("python3 not found: install python3 and python3-venv \
                    (`apt-get install -y python3 python3-venv`), then the test \
                    creates a venv with aioice from PyPI"
            .into());
    };
    let status = std::process::Command::new(&system)
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if !status.success() {
        return Err(format!(
            "`python3 -m venv {}` failed: install python3-venv (`apt-get install -y python3-venv`)",
            venv.display()
        ));
    }
    let status = std::process::Command::new(venv.join("bin").join("pip"))
        .args(["install", "-q", "aioice"])
        .status()
        .map_err(|e| format!("cannot run pip: {e}"))?;
    if !status.success() || !imports_aioice(&python) {
        return Err(format!(
            "`{}/bin/pip install aioice` failed: aioice (PyPI) is needed",
            venv.display()
        ));
    }
    Ok(python)
}

/// The candidate-attribute value without the `candidate:` prefix, as
/// aioice's `Candidate.from_sdp` expects.
fn sdp_value(line: &str) -> &str {
    line.strip_prefix("candidate:").unwrap_or(line)
}

async fn interop(our_role: Role) {
    let python = match aioice_python() {
        Ok(p) => p,
        Err(what) => {
            missing_peer(&format!("aioice interop: {what}"));
            return;
        }
    };
    let their_role = match our_role {
        Role::Controlling => "controlled",
        Role::Controlled => "controlling",
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/aioice_peer.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .arg(their_role)
        .arg(COUNT.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the aioice driver");
    let mut to_py = child.stdin.take().unwrap();
    let mut from_py = BufReader::new(child.stdout.take().unwrap()).lines();

    let mut session = Driver::start(loopback_config(our_role))
        .await
        .expect("session start");
    let creds = session.local_credentials();
    to_py
        .write_all(format!("ufrag {}\npwd {}\n", creds.ufrag, creds.pwd).as_bytes())
        .await
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut their_ufrag: Option<String> = None;
    let mut their_eoc_at: Option<Instant> = None;
    let mut our_eoc_at: Option<Instant> = None;
    let mut selected_at: Option<Instant> = None;
    let mut py_connected_ms: Option<String> = None;
    let mut py_data: HashSet<String> = HashSet::new();
    let mut echoes: HashSet<String> = HashSet::new();
    let mut sent_ours = false;
    let mut bye_sent = false;
    let mut done: Option<String> = None;

    enum In {
        Line(Option<String>),
        Event(SessionEvent),
        Data(scream_ice_tokio::Datagram),
        Timeout,
    }
    while done.is_none() {
        let input = tokio::select! {
            l = from_py.next_line() => In::Line(l.expect("read the driver's stdout")),
            o = session.next() => match o {
                Output::Event(e) => In::Event(e),
                Output::Data(d) => In::Data(d),
                _ => continue,
            },
            () = tokio::time::sleep_until(deadline) => In::Timeout,
        };
        match input {
            In::Line(None) => panic!("the aioice driver exited early"),
            In::Line(Some(l)) => {
                let (word, rest) = l.split_once(' ').unwrap_or((l.as_str(), ""));
                match word {
                    "ufrag" => their_ufrag = Some(rest.to_owned()),
                    "pwd" => session
                        .set_remote_credentials(their_ufrag.as_deref().expect("ufrag first"), rest)
                        .expect("aioice credentials accepted"),
                    "cand" => session
                        .add_remote_candidate_line(rest)
                        .await
                        .expect("aioice candidate accepted"),
                    "eoc" => {
                        session.end_of_remote_candidates();
                        their_eoc_at = Some(Instant::now());
                    }
                    "connected" => py_connected_ms = Some(rest.to_owned()),
                    "sent" => {}
                    "done" => done = Some(rest.to_owned()),
                    "error" => panic!("aioice driver: {rest}"),
                    _ => {}
                }
            }
            In::Event(e) => match e {
                SessionEvent::LocalCandidate(c) => {
                    let line = c.to_attribute().to_string();
                    to_py
                        .write_all(format!("cand {}\n", sdp_value(&line)).as_bytes())
                        .await
                        .unwrap();
                }
                SessionEvent::Gathering(GatheringState::Complete) if our_eoc_at.is_none() => {
                    our_eoc_at = Some(Instant::now());
                    to_py.write_all(b"eoc\n").await.unwrap();
                }
                SessionEvent::Selected { .. } => {
                    selected_at.get_or_insert_with(Instant::now);
                }
                SessionEvent::Failed(r) => panic!("ICE with aioice failed: {r}"),
                _ => {}
            },
            In::Data(d) => {
                let s = String::from_utf8(d.data).expect("utf-8 datagram");
                if let Some(echo) = s.strip_prefix("echo:") {
                    assert!(echo.starts_with("rs-"), "{s}");
                    echoes.insert(echo.to_owned());
                } else {
                    assert!(s.starts_with("py-"), "{s}");
                    py_data.insert(s);
                }
            }
            In::Timeout => panic!(
                "aioice interop timed out: selected {}, aioice connected {:?}, \
                 {} of {COUNT} from aioice, {} of {COUNT} echoes",
                selected_at.is_some(),
                py_connected_ms,
                py_data.len(),
                echoes.len()
            ),
        }
        if !sent_ours && selected_at.is_some() && py_connected_ms.is_some() {
            sent_ours = true;
            for i in 0..COUNT {
                send_selected(&session, format!("rs-{i}").as_bytes())
                    .await
                    .unwrap();
            }
        }
        if !bye_sent && echoes.len() == COUNT && py_data.len() == COUNT {
            bye_sent = true;
            send_selected(&session, b"bye").await.unwrap();
        }
    }
    // From the moment both sides have every candidate to our selection.
    let signalled = their_eoc_at
        .max(our_eoc_at)
        .expect("both end-of-candidates");
    let ours = selected_at.unwrap().saturating_duration_since(signalled);
    println!(
        "aioice as {their_role}: we selected {:.2} ms after both end-of-candidates; \
         aioice's connect() took {} ms; {} datagrams from aioice, {} echoes",
        ms(ours),
        py_connected_ms.unwrap_or_default(),
        py_data.len(),
        echoes.len()
    );
    assert_eq!(py_data.len(), COUNT);
    assert_eq!(echoes.len(), COUNT);
    assert_eq!(done.as_deref(), Some(COUNT.to_string().as_str()));
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("aioice driver exits")
        .unwrap();
    assert!(status.success());
    drop(session);
}

#[tokio::test]
async fn aioice_controlled_we_control() {
    interop(Role::Controlling).await;
}

#[tokio::test]
async fn aioice_controlling_we_are_controlled() {
    interop(Role::Controlled).await;
}
