//! The browser module (`/scream-ice.js`) in headless Chromium: the
//! daemon's own check page runs `ConnectionManager.connect()` 20 times
//! (a real `RTCPeerConnection` to a speaker session of the router, the
//! offer sent at once and candidates trickled by PATCH); each outcome,
//! read from `getStats()`, lands in the store with the selected pair's
//! candidate types. Prints the median time from createOffer to connected
//! (the goal is under 60 ms on loopback).

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use scream_ice_host::store::{Store, StoreConfig};
use sqlx::Row;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn module_connects_twenty_times_and_reports_each_outcome() {
    let dir = temp_dir("scream_ice_module");
    let cfg = daemon_config(&dir, "      stage: 100\n", None);
    // One browser opens all 20 sessions within seconds: above the default
    // admission of one client (4 at once, 1/s with a burst of 8).
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(
        "limits:\n  sessions:\n    per_client: 32\n    post_rate: {per_second: 20, burst: 32}\n",
    );
    std::fs::write(&cfg, text).unwrap();
    let d = Daemon::start(&cfg);
    let (s, js) = d.request("GET", "/scream-ice.js", "", false).await;
    assert_eq!(s, 200);
    assert!(js.contains("export class ConnectionManager"));

    let chromium = ["chromium", "chromium-browser"]
        .iter()
        .find(|n| {
            Command::new("sh")
                .args(["-c", &format!("command -v {n}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("no chromium on PATH: apt-get install -y chromium");
    let profile = temp_dir("scream_ice_module_profile");
    let log = dir.join("chromium.log");
    let mut browser = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--allow-loopback-in-peer-connection",
            "--disable-features=WebRtcHideLocalIpsWithMdns",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("http://{}/scream-ice-check?runs=20", d.http))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();

    let store = Store::open(&StoreConfig::default(), &dir).await.unwrap();
    let t = Instant::now();
    let rows = loop {
        let rows = sqlx::query(
            "SELECT success, connection_time_ms, local_candidate_type, remote_candidate_type, arm, config_type \
             FROM connection_attempts WHERE source = 'browser' ORDER BY id",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        if rows.len() >= 20 {
            break rows;
        }
        if t.elapsed() > Duration::from_secs(90) {
            let _ = browser.kill();
            panic!(
                "{} of 20 outcomes after 90 s; chromium log:\n{}",
                rows.len(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = browser.kill();
    let _ = browser.wait();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("Uncaught") || l.contains("ERROR:CONSOLE"))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");

    let mut times = Vec::new();
    for r in &rows {
        let ok: bool = r.get::<i64, _>(0) != 0;
        assert!(ok, "an attempt failed");
        times.push(r.get::<i64, _>(1));
        let local: String = r.get(2);
        let remote: String = r.get(3);
        assert!(
            ["host", "srflx", "prflx", "relay"].contains(&local.as_str()),
            "{local}"
        );
        assert!(
            ["host", "srflx", "prflx", "relay"].contains(&remote.as_str()),
            "{remote}"
        );
        assert_eq!(r.get::<String, _>(4), "treatment");
        assert_eq!(r.get::<String, _>(5), "smart");
    }
    let stun: i64 = sqlx::query("SELECT COUNT(*) FROM connection_metrics WHERE stun_used = true")
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get(0);
    assert_eq!(stun, 0, "no STUN on loopback");
    // The router recorded its side of the same 20 sessions, exactly once
    // each, all connected (its writer may still hold the last ones: wait up
    // to 10 s). The browser (controlling) sees `connected` on its own check
    // and DELETEs the session at once, often before the router's
    // triggered check returns: the router then counts the pair the browser
    // nominated, so a session that connected is never recorded as failed.
    let t = Instant::now();
    let speaker = loop {
        let speaker: Vec<RouterRow> = sqlx::query(
            "SELECT success, failure_reason, local_candidate_type, remote_candidate_type \
             FROM connection_attempts WHERE source = 'speaker'",
        )
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get::<i64, _>(0) != 0, r.get(1), r.get(2), r.get(3)))
        .collect();
        if speaker.len() >= 20 {
            break speaker;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{} router-side outcomes: {speaker:?}",
            speaker.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(speaker.len(), 20, "{speaker:?}");
    for (ok, reason, local, remote) in &speaker {
        assert!(*ok && reason.is_none(), "{speaker:?}");
        for kind in [local, remote] {
            assert!(
                kind.as_deref()
                    .is_some_and(|k| ["host", "srflx", "prflx", "relay"].contains(&k)),
                "{speaker:?}"
            );
        }
    }
    let pairs: Vec<(String, String)> = rows.iter().map(|r| (r.get(2), r.get(3))).collect();
    times.sort();
    let median = (times[9] + times[10]) as f64 / 2.0;
    println!(
        "createOffer to connected over 20 runs: median {median} ms, min {} ms, max {} ms; pairs {:?}",
        times[0], times[19], pairs[0]
    );
    // A loose ceiling that only a broken path exceeds; the 60 ms goal is
    // reported, not asserted (the machine is shared).
    assert!(median < 2000.0, "median {median} ms");
    d.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// One router-side outcome: success, failure reason, local and remote
/// candidate type.
type RouterRow = (bool, Option<String>, Option<String>, Option<String>);
