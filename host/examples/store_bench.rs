//! Benchmarks of the outcome store, on the real paths (docs/BENCHMARKS.md,
//! "Outcome store"):
//!
//! - ingest: outcomes pushed into the daemon's `OutcomeQueue`, through the
//!   batching writer task into the store, timed from the first push until
//!   the writer reports every one written; SQLite (a fresh file, WAL) and,
//!   given a URL, PostgreSQL (a fresh database);
//! - report: `scream-ice report --since 24h` (the built binary, as an
//!   operator runs it) over a SQLite store of 1,000,000 outcomes, median
//!   of 5 runs.
//!
//! ```text
//! cargo build --release -p scream-ice-host --bins --examples
//! target/release/examples/store_bench [postgres://scream_ice:scream_ice@127.0.0.1:5432/postgres]
//! STORE_BENCH=report target/release/examples/store_bench
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use scream_ice_host::metrics::Metrics;
use scream_ice_host::outcomes::{OutcomeQueue, spawn_writer};
use scream_ice_host::store::{OutcomeRow, Store, StoreConfig};

fn rows(n: usize, now_ms: i64) -> Vec<OutcomeRow> {
    let mut x: u64 = 1;
    let mut next = || {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    (0..n)
        .map(|i| {
            let r = next();
            let smart = r % 10 < 3;
            let local = (r >> 8) % 10 < 7;
            let ok = (r >> 16) % 100 != 0;
            OutcomeRow {
                timestamp_ms: now_ms - ((r >> 24) % 86_000_000) as i64,
                client_id: format!("{:032x}", u128::from(r) * 31 + i as u128),
                router_id: "bench".into(),
                experiment: "screamrouter-smart-ice".into(),
                stage: 25,
                arm: if smart { "treatment" } else { "control" }.into(),
                config_type: if smart { "smart" } else { "legacy" }.into(),
                mode: if smart { "auto" } else { "legacy" }.into(),
                success: ok,
                connection_time_ms: ok.then_some(((r >> 32) % 2000) as i64),
                failure_reason: (!ok).then(|| "ice_failed".into()),
                local_candidate_type: Some(if local { "host" } else { "srflx" }.into()),
                remote_candidate_type: Some("host".into()),
                stun_used: !local,
                network_type: if local { "local" } else { "nat" }.into(),
                source: "browser".into(),
            }
        })
        .collect()
}

async fn ingest(store: Store, n: usize) -> f64 {
    let data = rows(n, scream_ice_host::rollout::now_ms());
    let metrics = Arc::new(Metrics::new());
    let (queue, rx) = OutcomeQueue::new(n, metrics.clone());
    let writer = spawn_writer(store, rx, metrics.clone(), StoreConfig::default().batch);
    let t = Instant::now();
    for r in data {
        assert!(queue.push(r));
    }
    while metrics.written() < n as u64 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let s = t.elapsed().as_secs_f64();
    drop(queue);
    let _ = writer.await;
    assert_eq!(metrics.dropped(), 0);
    n as f64 / s
}

fn temp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("scream_ice_bench_{name}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::main]
async fn main() {
    let pg = std::env::args().nth(1);
    const N: usize = 200_000;
    // STORE_BENCH=report: only the report part.
    let ingest_too = std::env::var("STORE_BENCH").map_or(true, |v| v != "report");

    if ingest_too {
        ingest_both(pg.as_deref(), N).await;
    }
    report().await;
}

async fn ingest_both(pg: Option<&str>, n: usize) {
    let dir = temp("ingest");
    let store = Store::open(&StoreConfig::default(), &dir).await.unwrap();
    let rate = ingest(store.clone(), n).await;
    assert_eq!(store.attempt_count().await.unwrap(), n as i64);
    println!(
        "ingest sqlite: {n} outcomes, {rate:.0} outcomes/s (batches of {})",
        StoreConfig::default().batch
    );

    if let Some(admin) = pg {
        sqlx::any::install_default_drivers();
        let name = format!("scream_ice_bench_{}", std::process::id());
        let mut c = <sqlx::AnyConnection as sqlx::Connection>::connect(admin)
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut c)
            .await
            .unwrap();
        let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
        let store = Store::connect(&url).await.unwrap();
        let rate = ingest(store.clone(), n).await;
        assert_eq!(store.attempt_count().await.unwrap(), n as i64);
        println!("ingest postgres: {n} outcomes, {rate:.0} outcomes/s");
        store.pool().close().await;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name}")))
            .execute(&mut c)
            .await
            .unwrap();
    }
}

async fn report() {
    // The report over 1,000,000 rows, with the built binary.
    let dir = temp("report");
    let store = Store::open(&StoreConfig::default(), &dir).await.unwrap();
    let data = rows(1_000_000, scream_ice_host::rollout::now_ms());
    for chunk in data.chunks(2000) {
        store.insert_batch(chunk).await.unwrap();
    }
    store.pool().close().await;
    let cfg = dir.join("config.yaml");
    std::fs::write(
        &cfg,
        format!("server:\n  data_dir: \"{}\"\n", dir.display()),
    )
    .unwrap();
    let bin = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("scream-ice");
    let mut times = Vec::new();
    let mut last = String::new();
    for _ in 0..5 {
        let t = Instant::now();
        let out = std::process::Command::new(&bin)
            .args(["report", "--since", "24h", "--config"])
            .arg(&cfg)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (cargo build --release -p scream-ice-host)",
                    bin.display()
                )
            });
        times.push(t.elapsed());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        last = String::from_utf8_lossy(&out.stdout).to_string();
    }
    times.sort();
    println!("{last}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(temp("ingest"));
    println!(
        "report over 1,000,000 rows (SQLite): median {:.0} ms of 5 runs (min {:.0}, max {:.0})",
        times[2].as_secs_f64() * 1000.0,
        times[0].as_secs_f64() * 1000.0,
        times[4].as_secs_f64() * 1000.0
    );
}
