//! Faults under the outcome store of a running `scream-ice serve` (SQLite in
//! its data dir): `kill -9` while batches are being written, and a data dir
//! that runs out of space. What the writer reported written
//! (`scream_ice_outcomes_written_total`: committed transactions) is never
//! lost, the rows and their hourly rollups always agree (one transaction),
//! the database stays intact, and ICE is served throughout.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use scream_ice_host::store::{Store, StoreConfig};
use sqlx::Row;
use support::*;

/// Rows, the rollups' sums of both tables, and SQLite's integrity check.
async fn census(data_dir: &Path) -> (i64, i64, i64, String) {
    let store = Store::open(&StoreConfig::default(), data_dir)
        .await
        .unwrap();
    let one = |sql: &'static str| {
        let pool = store.pool().clone();
        async move { sqlx::query(sql).fetch_one(&pool).await.unwrap() }
    };
    let rows: i64 = one("SELECT COUNT(*) FROM connection_attempts").await.get(0);
    let metrics: i64 = one("SELECT COUNT(*) FROM connection_metrics").await.get(0);
    assert_eq!(rows, metrics, "both tables are written in one transaction");
    let attempts: i64 =
        one("SELECT CAST(COALESCE(SUM(attempts), 0) AS BIGINT) FROM attempts_hourly")
            .await
            .get(0);
    let connections: i64 =
        one("SELECT CAST(COALESCE(SUM(connections), 0) AS BIGINT) FROM metrics_hourly")
            .await
            .get(0);
    let check: String = one("PRAGMA integrity_check").await.get(0);
    store.pool().close().await;
    (rows, attempts, connections, check)
}

/// `n` batches of 500 outcomes posted; returns how many were accepted.
async fn post(d: &Daemon, rng: &mut Rng, batches: usize) -> u64 {
    let mut accepted = 0;
    for _ in 0..batches {
        let (body, _) = outcome_batch(rng, 500, 25, 10_000, 10_000);
        let (status, text) = d.request("POST", "/api/ice/outcomes", &body, false).await;
        assert_eq!(status, 202, "{text}");
        accepted += 500;
    }
    accepted
}

async fn written(d: &Daemon) -> u64 {
    metric(&d.metrics().await, "scream_ice_outcomes_written_total").unwrap_or(0.0) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_writing_loses_nothing_written() {
    let dir = temp_dir("scream_ice_kill9");
    let cfg = daemon_config(&dir, "", None);
    let mut rng = Rng(21);
    let mut rounds = Vec::new();
    for round in 0..3 {
        let d = Daemon::start_killable(&cfg);
        post(&d, &mut rng, 20).await;
        // Some batches are committed, more are queued or mid-transaction.
        let t = Instant::now();
        while written(&d).await == 0 {
            assert!(t.elapsed() < Duration::from_secs(30), "nothing written");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        post(&d, &mut rng, 4).await;
        let reported = written(&d).await;
        d.kill();
        let (rows, attempts, connections, check) = census(&dir).await;
        println!("round {round}: written {reported} before kill -9, {rows} rows after");
        assert_eq!(check, "ok");
        assert_eq!(
            (attempts, connections),
            (rows, rows),
            "rollups and rows agree"
        );
        rounds.push((reported, rows));
    }
    // Each round's rows include every earlier round's and what this round
    // reported written.
    let mut before = 0;
    for (reported, rows) in &rounds {
        assert!(*rows as u64 >= before + reported, "{rounds:?}");
        before = *rows as u64;
    }
    // The daemon starts again on the same data dir and writes.
    let d = Daemon::start(&cfg);
    assert!(!d.arm("after-kill").await.is_empty());
    post(&d, &mut rng, 1).await;
    let t = Instant::now();
    while written(&d).await < 500 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "not written after restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    d.stop();
    let (rows, attempts, _, check) = census(&dir).await;
    assert_eq!((check.as_str(), attempts), ("ok", rows));
    assert_eq!(rows as u64, before + 500);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A tmpfs of `kib` KiB on a fresh directory; unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(kib: u32) -> Tmpfs {
        let d = temp_dir("scream_ice_full");
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={kib}k,mode=0700"),
                "tmpfs",
            ])
            .arg(&d)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount tmpfs on {} (the test needs root)", d.display());
        Tmpfs(d)
    }

    fn resize(&self, kib: u32) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={kib}k")])
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
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_data_dir_keeps_ice_serving_and_writes_once_space_returns() {
    let fs = Tmpfs::mount(1024);
    let conf_dir = temp_dir("scream_ice_full_conf");
    let cfg = conf_dir.join("config.yaml");
    std::fs::write(
        &cfg,
        format!(
            "webrtc:\n  ice:\n    rollout:\n      check_interval_s: 1\nserver:\n  http_listen: \"127.0.0.1:0\"\n  stun_listen: \"off\"\n  data_dir: \"{}\"\nstore:\n  queue_capacity: 50000\n  rate_per_client: 10000000\n  burst_per_client: 10000000\n",
            fs.0.display()
        ),
    )
    .unwrap();
    let d = Daemon::start(&cfg);
    let mut rng = Rng(22);
    // About 20,000 outcomes do not fit in 1 MiB with their indexes.
    let posted = post(&d, &mut rng, 40).await;
    let t = Instant::now();
    let stuck = loop {
        let w = written(&d).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        if w == written(&d).await && w < posted {
            break w;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the disk never filled"
        );
    };
    // Full: ICE keeps being served at once.
    let mut worst = Duration::ZERO;
    for i in 0..20 {
        let t = Instant::now();
        assert!(!d.arm(&format!("full-{i}")).await.is_empty());
        worst = worst.max(t.elapsed());
    }
    println!("disk full after {stuck} of {posted} outcomes; ice-config worst {worst:?}");
    assert!(worst < Duration::from_millis(500), "{worst:?}");

    fs.resize(65_536);
    let t = Instant::now();
    while written(&d).await < posted {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "not drained after space returned: {}",
            d.metrics().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let dropped = metric(&d.metrics().await, "scream_ice_outcomes_dropped_total").unwrap_or(0.0);
    assert_eq!(dropped, 0.0, "the queue held everything");
    d.stop();
    let (rows, attempts, connections, check) = census(&fs.0).await;
    assert_eq!(check, "ok");
    assert_eq!(rows as u64, posted);
    assert_eq!((attempts, connections), (rows, rows));
    let _ = std::fs::remove_dir_all(&conf_dir);
}
