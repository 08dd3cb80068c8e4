//! The soak of issue 12 on loopback: `SOAK_SESSIONS` speakers (default 200)
//! hold concurrent sessions with the built `scream-ice serve` for
//! `SOAK_SECONDS` (default 60) after all have connected, each with its
//! consent checks (RFC 7675, both sides) and a media datagram every
//! `SOAK_MEDIA_MS` (default 500) that the router echoes. The daemon's RSS,
//! descriptor count and CPU time are sampled from `/proc/PID`; after a
//! warm-up (a tenth of the run, at least 10 s) the RSS and descriptor
//! slopes are fitted by least squares and must be flat, no session may be
//! lost (no disconnect, failure or missing echoes) and every session must
//! still be there to `DELETE` at the end.
//!
//! By default each session binds sockets of its own (`server.ice_port:
//! per-session`), where a descriptor leak would show; `SOAK_ICE_PORT=1`
//! runs every session on the daemon's shared socket (`server.ice_port: 0`,
//! the daemon's default). The full soak of docs/BENCHMARKS.md:
//! `SOAK_SESSIONS=1000 SOAK_SECONDS=600 cargo test --release -p scream-ice-host --test soak -- --nocapture`

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use scream_ice_core::agent::ConnectionState;
use scream_ice_tokio::{Output, SessionEvent};
use support::{
    Daemon, all_connected, clock_ticks_per_second, connect_speaker, cpu_ticks, delete_session,
    fd_targets, many_speakers_config, temp_dir,
};
use tokio::sync::{Semaphore, watch};

fn env_or(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// One reading of the daemon's `/proc/PID`.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// Seconds since all sessions connected.
    t: f64,
    rss_kib: f64,
    fds: f64,
    /// utime + stime, in clock ticks.
    cpu_ticks: u64,
}

fn sample(pid: u32, t: f64) -> Sample {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as f64;
    let cpu_ticks = cpu_ticks(pid);
    Sample {
        t,
        rss_kib,
        fds,
        cpu_ticks,
    }
}

/// The least-squares slope of `y` over `t`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (mt, my) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (t, y)| (a + t / n, b + y / n));
    let (mut num, mut den) = (0.0, 0.0);
    for (t, y) in points {
        num += (t - mt) * (y - my);
        den += (t - mt) * (t - mt);
    }
    if den == 0.0 { 0.0 } else { num / den }
}

/// What one speaker saw.
#[derive(Debug, Default)]
struct Seen {
    sent: u64,
    echoed: u64,
    /// Disconnected, Failed or a session failure after selection.
    lost: Vec<String>,
}

/// One speaker: POST its offer, connect to the router's loopback
/// candidate only, report `connected`, then send media and count echoes
/// until `stop`; DELETE the session at the end.
async fn speaker(
    http: SocketAddr,
    i: usize,
    media: Duration,
    setup: Arc<Semaphore>,
    connected: Arc<AtomicUsize>,
    mut stop: watch::Receiver<bool>,
) -> Result<Seen, String> {
    let permit = setup.acquire_owned().await.unwrap();
    let (mut d, location) = connect_speaker(http, "/api/ice/sessions", i).await?;
    let (socket, _, remote) = d.selected_path().unwrap();
    drop(permit);
    connected.fetch_add(1, Ordering::SeqCst);

    let mut seen = Seen::default();
    let mut tick = tokio::time::interval(media);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let payload = format!("soak media from speaker {i}");
    loop {
        tokio::select! {
            o = d.next() => match o {
                Output::Data(x) if x.data == payload.as_bytes() => seen.echoed += 1,
                Output::Event(SessionEvent::Connection(
                    s @ (ConnectionState::Disconnected | ConnectionState::Failed),
                )) => seen.lost.push(format!("{s:?}")),
                Output::Event(SessionEvent::Failed(r)) => seen.lost.push(format!("{r:?}")),
                _ => {}
            },
            _ = tick.tick() => {
                if socket.try_send_to(payload.as_bytes(), remote).is_ok() {
                    seen.sent += 1;
                }
            }
            _ = stop.changed() => break,
        }
    }
    // The last echoes in flight.
    let _ = tokio::time::timeout(Duration::from_millis(300), async {
        loop {
            if let Output::Data(x) = d.next().await
                && x.data == payload.as_bytes()
            {
                seen.echoed += 1;
            }
        }
    })
    .await;
    let status = delete_session(http, &location)
        .await
        .map_err(|e| format!("speaker {i}: {e}"))?;
    if status != 204 {
        seen.lost.push(format!("DELETE answered {status}"));
    }
    Ok(seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_speaker_sessions_hold_with_flat_memory_and_descriptors() {
    let sessions = env_or("SOAK_SESSIONS", 200) as usize;
    let seconds = env_or("SOAK_SECONDS", 60);
    let media = Duration::from_millis(env_or("SOAK_MEDIA_MS", 500));
    // `SOAK_ICE_PORT=1`: every session on the daemon's shared socket
    // (`server.ice_port: 0`, the daemon's default) instead of sockets of
    // its own.
    let shared = env_or("SOAK_ICE_PORT", 0) != 0;
    let dir = temp_dir("scream_ice_soak");
    let server = if shared {
        "  ice_port: 0\n"
    } else {
        "  ice_port: per-session\n"
    };
    let cfg = many_speakers_config(&dir, sessions, server, "");
    let daemon = Daemon::start(&cfg);
    let pid = daemon.pid();
    let ticks = clock_ticks_per_second();
    let idle = sample(pid, 0.0);
    let idle_fds = fd_targets(pid);

    let setup = Arc::new(Semaphore::new(32));
    let connected = Arc::new(AtomicUsize::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let start = Instant::now();
    let tasks: Vec<_> = (0..sessions)
        .map(|i| {
            tokio::spawn(speaker(
                daemon.http,
                i,
                media,
                setup.clone(),
                connected.clone(),
                stop_rx.clone(),
            ))
        })
        .collect();
    let limit = Duration::from_secs(120 + sessions as u64 / 10);
    let tasks = all_connected(tasks, &connected, sessions, limit, &stop_tx).await;
    let ramp = start.elapsed();

    // The run: a sample every second.
    let t0 = Instant::now();
    let mut samples = Vec::new();
    while t0.elapsed() < Duration::from_secs(seconds) {
        samples.push(sample(pid, t0.elapsed().as_secs_f64()));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    samples.push(sample(pid, t0.elapsed().as_secs_f64()));
    let _ = stop_tx.send(true);
    let mut seen = Vec::new();
    for t in tasks {
        seen.push(t.await.unwrap().unwrap_or_else(|e| panic!("{e}")));
    }
    // Every session gone again: its sockets are closed. (The store's
    // connection pool may have grown meanwhile: files, not sockets.)
    let sockets = |v: &[String]| v.iter().filter(|t| t.starts_with("socket:")).count();
    let mut after_fds = fd_targets(pid);
    let back = Instant::now();
    while sockets(&after_fds) > sockets(&idle_fds) && back.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after_fds = fd_targets(pid);
    }
    daemon.stop();
    let _ = std::fs::remove_dir_all(&dir);

    let warm = (seconds as f64 / 10.0).max(10.0).min(seconds as f64 / 2.0);
    let steady: Vec<&Sample> = samples.iter().filter(|s| s.t >= warm).collect();
    let (first, last) = (steady[0], steady[steady.len() - 1]);
    let window = last.t - first.t;
    let rss: Vec<(f64, f64)> = steady.iter().map(|s| (s.t, s.rss_kib)).collect();
    let fds: Vec<(f64, f64)> = steady.iter().map(|s| (s.t, s.fds)).collect();
    let rss_slope = slope(&rss) * 60.0; // KiB per minute
    let fd_slope = slope(&fds) * 60.0;
    let mean_rss = rss.iter().map(|p| p.1).sum::<f64>() / rss.len() as f64;
    let (fd_min, fd_max) = fds
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let cpu_s = (last.cpu_ticks - first.cpu_ticks) as f64 / ticks;
    let core_share = cpu_s / window;
    let sent: u64 = seen.iter().map(|s| s.sent).sum();
    let echoed: u64 = seen.iter().map(|s| s.echoed).sum();
    let lost: Vec<(usize, &Vec<String>)> = seen
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.lost.is_empty())
        .map(|(i, s)| (i, &s.lost))
        .collect();
    println!(
        "soak: {sessions} sessions{} connected in {:.1} s; {seconds} s with media every {} ms; warm-up {warm:.0} s",
        if shared {
            " on the shared ice_port"
        } else {
            ""
        },
        ramp.as_secs_f64(),
        media.as_millis()
    );
    println!(
        "soak: daemon RSS {:.1} MiB idle, {:.1} -> {:.1} MiB over {window:.0} s, slope {rss_slope:+.1} KiB/min",
        idle.rss_kib / 1024.0,
        first.rss_kib / 1024.0,
        last.rss_kib / 1024.0
    );
    println!(
        "soak: descriptors {} idle ({} sockets), {fd_min}..{fd_max} in the run (slope {fd_slope:+.2}/min), {} after DELETE ({} sockets)",
        idle.fds,
        sockets(&idle_fds),
        after_fds.len(),
        sockets(&after_fds)
    );
    println!(
        "soak: CPU {cpu_s:.2} s in {window:.0} s = {:.1} % of a core, {:.1} us per session per second",
        core_share * 100.0,
        core_share * 1e6 / sessions as f64
    );
    println!(
        "soak: media {sent} sent, {echoed} echoed ({:.3} % missing); sessions lost: {}",
        100.0 * (sent - echoed.min(sent)) as f64 / sent.max(1) as f64,
        lost.len()
    );

    assert!(lost.is_empty(), "sessions lost: {lost:?}");
    for (i, s) in seen.iter().enumerate() {
        // Loopback loses nothing; the slack is for the echoes of the last
        // tick still in flight when the speaker stopped counting.
        assert!(
            s.sent > 0 && s.echoed + 2 >= s.sent,
            "speaker {i}: {} sent, {} echoed",
            s.sent,
            s.echoed
        );
    }
    // Flat after warm-up: the descriptors do not move at all, and the RSS
    // fitted over the window grows by less than 1 % of itself (a leak of
    // one allocation per datagram or consent check would be 100 times that).
    assert_eq!(fd_min, fd_max, "descriptors moved during the run");
    assert!(
        rss_slope / 60.0 * window < 0.01 * mean_rss,
        "RSS slope {rss_slope:+.1} KiB/min over {window:.0} s, mean {mean_rss:.0} KiB"
    );
    assert!(
        sockets(&after_fds) <= sockets(&idle_fds),
        "descriptors after DELETE: {after_fds:?} (idle {idle_fds:?})"
    );
}
