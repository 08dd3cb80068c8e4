//! `scream-ice scream ...` on loopback (the namespace runs are in
//! scream_netns.rs): errors are one line with a non-zero exit, and a tone
//! through `relay` comes out of `receive` whole.

use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_scream-ice");

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn bad_input_is_one_line_and_fails() {
    for args in [
        &["scream", "tone", "--to", "127.0.0.1:9", "--rate", "22050"][..],
        &["scream", "tone", "--to", "127.0.0.1:9", "--bits", "8"],
        &[
            "scream",
            "send",
            "/nonexistent/a.wav",
            "--to",
            "127.0.0.1:9",
        ],
        &[
            "scream",
            "relay",
            "--listen",
            "nowhere",
            "--to",
            "127.0.0.1:9",
        ],
    ] {
        let o = run(args);
        assert!(!o.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("scream-ice: "), "{args:?}: {err}");
    }
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn tone_through_relay_to_receive_on_loopback() {
    let dir = std::env::temp_dir().join(format!("scream-ice-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wav = dir.join("tone.wav");
    let (sink, speaker) = (free_udp_port(), free_udp_port());
    let rx = Command::new(BIN)
        .args([
            "scream",
            "receive",
            "--listen",
            &format!("127.0.0.1:{speaker}"),
        ])
        .args([
            "--wav",
            wav.to_str().unwrap(),
            "--idle-stop-ms",
            "500",
            "--seconds",
            "20",
        ])
        .args(["--target-ms", "80", "--max-correction-ppm", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut relay = Command::new(BIN)
        .args(["scream", "relay", "--listen", &format!("127.0.0.1:{sink}")])
        .args(["--to", &format!("127.0.0.1:{speaker}"), "--seconds", "20"])
        .args(["--idle-stop-ms", "500"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let tone = run(&[
        "scream",
        "tone",
        "--to",
        &format!("127.0.0.1:{sink}"),
        "--seconds",
        "1",
    ]);
    assert!(tone.status.success());
    assert_eq!(
        String::from_utf8_lossy(&tone.stdout).trim(),
        "sent 167 datagrams"
    );
    let out = rx.wait_with_output().unwrap();
    // It stops by itself once the stream paused (no SIGKILL: coverage).
    assert!(relay.wait().unwrap().success());
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert!(
        report.contains("received 167 datagrams, lost 0"),
        "{report}"
    );
    assert!(
        report.contains("(48000 Hz, 16-bit, 2 ch, 48000 frames)"),
        "{report}"
    );
    let r = hound::WavReader::open(&wav).unwrap();
    assert_eq!(r.len(), 96_000);
    std::fs::remove_dir_all(&dir).ok();
}
