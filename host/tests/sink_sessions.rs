//! Scream audio over a speaker's ICE session, with the built binaries on
//! loopback: `scream-ice scream send` -> a sink of `scream-ice serve` ->
//! the speaker session that subscribed with `POST
//! /api/ice/sessions?sink=NAME` -> `scream-ice connect --sink --wav`.
//!
//! - the WAV the speaker simulator writes equals the WAV sent, sample for
//!   sample (drift correction off: sender and speaker share this
//!   machine's clock, so there is no drift to correct);
//! - an ICE restart mid-stream (`PATCH` with a new ufrag/pwd) loses
//!   nothing, and its audio gap (the longest interval between two
//!   datagrams arriving within 1 s after the restart began) stays under
//!   [`RESTART_GAP_BOUND_MS`];
//! - an unknown or empty sink name is refused with one line (404 / 400).
//!
//! `serve` is stopped with SIGTERM and waited for (never SIGKILL: the
//! coverage run needs its profile written).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use scream_ice_core::scream::ScreamFormat;
use scream_ice_host::scream_cli::{default_mask, tone};

const BIN: &str = env!("CARGO_BIN_EXE_scream-ice");

/// The bound on an ICE restart's audio gap on loopback. Audio keeps
/// flowing on the old route while the new checks run (the relay moves a
/// route only when a new pair is selected), so the gap is one datagram
/// period (6 ms at 48 kHz/16-bit stereo) plus scheduling delay of a
/// loaded 2-core machine; 60 ms is ten periods, and more than the
/// playout's 80 ms target could not hide anyway.
const RESTART_GAP_BOUND_MS: f64 = 60.0;

struct Serve {
    child: Child,
    http: SocketAddr,
    sink: SocketAddr,
    dir: PathBuf,
}

impl Serve {
    fn start(tag: &str) -> Serve {
        let dir =
            std::env::temp_dir().join(format!("scream-ice-sinks-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.join("router.yaml");
        std::fs::write(
            &config,
            format!(
                "server:\n  http_listen: 127.0.0.1:0\n  stun_listen: off\n\
                 sinks:\n  - name: living\n    listen: 127.0.0.1:{port}\n"
            ),
        )
        .unwrap();
        let mut child = Command::new(BIN)
            .args(["serve", "--config", config.to_str().unwrap()])
            .env("RUST_LOG", "warn")
            .env(
                "LLVM_PROFILE_FILE",
                dir.join("serve-%p.profraw").to_str().unwrap(),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut http = None;
        let mut sink = None;
        for l in lines.by_ref() {
            let l = l.unwrap();
            if let Some(i) = l.find("HTTP listening on http://") {
                let rest = &l[i + "HTTP listening on http://".len()..];
                http = rest.split([' ', '/']).next().map(|a| a.parse().unwrap());
            }
            if let Some(i) = l.find("sink living listening on udp ") {
                let rest = &l[i + "sink living listening on udp ".len()..];
                sink = rest.split(' ').next().map(|a| a.parse().unwrap());
                break;
            }
        }
        // Keep reading stdout so serve never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Serve {
            child,
            http: http.expect("serve printed its HTTP address"),
            sink: sink.expect("serve printed the sink"),
            dir,
        }
    }

    /// SIGTERM and wait: serve stops within a second.
    fn stop(mut self) {
        let st = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "serve exited {status}");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A WAV of distinct values per channel and frame, so any misplaced,
/// dropped or altered sample shows.
fn write_wav(path: &Path, format: &ScreamFormat, seconds: f64) {
    let pcm = tone(format, 440.0, seconds);
    let spec = hound::WavSpec {
        channels: u16::from(format.channels()),
        sample_rate: format.sample_rate(),
        bits_per_sample: u16::from(format.bits()),
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for (i, s) in pcm.chunks_exact(2).enumerate() {
        let v = i16::from_le_bytes([s[0], s[1]]);
        let ch = (i % usize::from(format.channels())) as i16;
        w.write_sample(v ^ (ch << 2) ^ ((i / 2) as i16 & 0xff))
            .unwrap();
    }
    w.finalize().unwrap();
}

fn samples(path: &Path) -> Vec<i32> {
    let mut r = hound::WavReader::open(path).unwrap();
    r.samples::<i32>().map(|s| s.unwrap()).collect()
}

/// `scream-ice connect` to `serve`, playing `sink` into `wav`, from
/// loopback.
fn connect(serve: &Serve, sink: &str, wav: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.args(["connect", &format!("http://{}", serve.http)])
        .args(["--bind", "127.0.0.1", "--sink", sink])
        .args(["--wav", wav.to_str().unwrap()]);
    c
}

/// `connect --sink living` against `serve`, then `scream send` of
/// `seconds` of audio into the sink; returns connect's stdout and the
/// sent and received samples.
fn play(serve: &Serve, seconds: f64, extra: &[&str]) -> (String, Vec<i32>, Vec<i32>) {
    let format = ScreamFormat::new(48_000, 16, 2, default_mask(2)).unwrap();
    play_format(serve, &format, seconds, extra)
}

/// As [`play`], for a 16-bit `format`.
fn play_format(
    serve: &Serve,
    format: &ScreamFormat,
    seconds: f64,
    extra: &[&str],
) -> (String, Vec<i32>, Vec<i32>) {
    let format = *format;
    let sent = serve.dir.join("sent.wav");
    write_wav(&sent, &format, seconds);
    let got = serve.dir.join("got.wav");
    let connect = connect(serve, "living", &got)
        .args(["--seconds", "30", "--idle-stop-ms", "600"])
        .args(["--target-ms", "80", "--max-correction-ppm", "0"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Start sending once the speaker is subscribed: serve logs nothing
    // to us, so give connect (a few ms on loopback) ample time.
    std::thread::sleep(Duration::from_millis(700));
    let st = Command::new(BIN)
        .args(["scream", "send", sent.to_str().unwrap()])
        .args(["--to", &serve.sink.to_string()])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let out = connect.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let (a, b) = (samples(&sent), samples(&got));
    (stdout, a, b)
}

fn assert_bit_exact(stdout: &str, sent: &[i32], got: &[i32]) {
    assert!(
        stdout.contains(", lost 0, late 0, duplicates 0"),
        "{stdout}"
    );
    assert!(stdout.contains("concealed 0 (loss)"), "{stdout}");
    assert_eq!(sent.len(), got.len(), "{stdout}");
    let first_diff = sent.iter().zip(got).position(|(a, b)| a != b);
    assert_eq!(first_diff, None, "samples differ\n{stdout}");
}

/// 5 and 7 channels: the driver's 1152-byte datagrams (what `scream send`
/// sends) split frames of 10 and 14 bytes between datagrams; the router
/// joins them into whole frames (`scream::Reframer`) and the speaker plays
/// the stream bit exact.
#[test]
fn five_and_seven_channel_streams_play_bit_exact() {
    let serve = Serve::start("odd-channels");
    for channels in [5, 7] {
        let format = ScreamFormat::new(48_000, 16, channels, default_mask(channels)).unwrap();
        assert_ne!(
            scream_ice_core::scream::PCM_PAYLOAD_LEN % format.frame_bytes(),
            0
        );
        let (stdout, sent, got) = play_format(&serve, &format, 1.0, &[]);
        println!(
            "{channels} channels: {}",
            stdout
                .lines()
                .find(|l| l.starts_with("received "))
                .unwrap_or_default()
        );
        assert_bit_exact(&stdout, &sent, &got);
        // The datagrams were the driver's 1152 bytes (whole-frame chunks
        // of 1150 or 1148 would be one datagram more).
        let bytes = 48_000 * format.frame_bytes();
        let datagrams = bytes.div_ceil(scream_ice_core::scream::PCM_PAYLOAD_LEN);
        assert!(
            stdout.contains(&format!("received {datagrams} datagrams")),
            "{stdout}"
        );
    }
    serve.stop();
}

#[test]
fn speaker_session_plays_the_sink_bit_exact() {
    let serve = Serve::start("exact");
    let (stdout, sent, got) = play(&serve, 2.0, &[]);
    assert!(stdout.contains("selected pair 127.0.0.1:"), "{stdout}");
    assert_bit_exact(&stdout, &sent, &got);
    // 2 s at 48 kHz, 288 frames per datagram.
    assert!(stdout.contains("received 334 datagrams"), "{stdout}");
    // Now that the sink has had audio, a new session's answer announces
    // its format (the stream stopped, so this connect gets none and fails).
    let out = connect(&serve, "living", &serve.dir.join("none.wav"))
        .args(["--seconds", "0.3"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let format = ScreamFormat::new(48_000, 16, 2, default_mask(2)).unwrap();
    let rtpmap = scream_ice_core::scream::Rtpmap(format).to_string();
    assert_eq!(rtpmap, "a=rtpmap:102 X-SCREAM/48000/2");
    assert!(
        stdout.contains(&format!("stream format: {rtpmap}")),
        "{stdout}"
    );
    assert!(!out.status.success());
    serve.stop();
}

#[test]
fn ice_restart_mid_stream_loses_nothing_and_the_gap_is_bounded() {
    let serve = Serve::start("restart");
    // The stream starts ~700 ms after connect; restart 1.5 s in.
    let (stdout, sent, got) = play(&serve, 3.0, &["--restart-after-ms", "1500"]);
    assert_bit_exact(&stdout, &sent, &got);
    let (gap, line) = scream_ice_tests::restart_gap(&stdout);
    println!("{line}");
    assert!(
        gap > 0.0 && gap < RESTART_GAP_BOUND_MS,
        "gap {gap} ms, bound {RESTART_GAP_BOUND_MS} ms\n{stdout}"
    );
    assert!(line.contains("pair selected again after "), "{stdout}");
    serve.stop();
}

/// A session that plays a sink announces the sink's format of now: its
/// `GET` carries the `a=rtpmap` of the last format ingested, also after a
/// format change (the POST's answer had only the first).
#[test]
fn a_get_announces_the_sinks_format_after_a_change() {
    use scream_ice_core::scream::{self, Rtpmap};
    let serve = Serve::start("format");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let call = |method: &str, path: &str, body: &str| {
        rt.block_on(scream_ice_host::client::request(
            serve.http,
            &serve.http.to_string(),
            method,
            path,
            &[("Content-Type", "application/trickle-ice-sdpfrag")],
            body.as_bytes(),
            Duration::from_secs(5),
        ))
        .unwrap()
    };
    let offer = "a=ice-ufrag:spk1\r\na=ice-pwd:speakerpasswordof22chars\r\n";
    let r = call("POST", "/api/ice/sessions?sink=living", offer);
    assert_eq!(r.status, 201, "{}", r.text());
    let location = r.location.clone().unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let announced_after_sending = |format: &ScreamFormat| {
        let mut buf = [0u8; 1500];
        let n = scream::emit(format, &[0u8; scream::PCM_PAYLOAD_LEN], &mut buf).unwrap();
        for _ in 0..3 {
            udp.send_to(&buf[..n], serve.sink).unwrap();
        }
        let want = Rtpmap(*format).to_string();
        let t = std::time::Instant::now();
        loop {
            let r = call("GET", &location, "");
            assert_eq!(r.status, 200, "{}", r.text());
            let text = r.text();
            let lines: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with("a=rtpmap:"))
                .collect();
            if lines == [want.as_str()] {
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(3),
                "want {want:?}, GET has {lines:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    announced_after_sending(&ScreamFormat::STEREO_48K_16);
    announced_after_sending(&ScreamFormat::new(44_100, 24, 6, default_mask(6)).unwrap());
    assert_eq!(call("DELETE", &location, "").status, 204);
    drop(rt);
    serve.stop();
}

#[test]
fn unknown_or_empty_sink_is_refused_in_one_line() {
    let serve = Serve::start("unknown");
    for (sink, reason) in [
        ("nope", "404 no sink named \"nope\" on this router"),
        ("", "400 the sink parameter is empty"),
    ] {
        let out = connect(&serve, sink, Path::new("/nonexistent/x.wav"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(reason), "{stderr}");
    }
    serve.stop();
}
