//! PostgreSQL stopped mid-run and started again: ICE configuration keeps
//! being served at once, outcomes buffer in the bounded queue and are
//! written afterwards, and every outcome is either in the database or in
//! the exact dropped count.

mod support;

use std::time::{Duration, Instant};

use scream_ice_host::store::Store;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_buffers_then_writes_and_counts_drops() {
    let pg = PrivatePg::start_new();
    let dir = temp_dir("scream_ice_outage");
    let cfg = daemon_config(&dir, "      stage: 50\n", Some(&pg.url()));
    // A small queue so the outage overflows it.
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("store:\n", "store:\n  queue_capacity: 3000\n  batch: 500\n");
    std::fs::write(&cfg, text).unwrap();
    let d = Daemon::start(&cfg);
    let mut rng = Rng(11);
    let mut posted = 0u64;
    for _ in 0..10 {
        let (body, _) = outcome_batch(&mut rng, 500, 50, 10_000, 10_000);
        assert_eq!(
            d.request("POST", "/api/ice/outcomes", &body, false).await.0,
            202
        );
        posted += 500;
    }
    let store = Store::connect(&pg.url()).await.unwrap();
    let t = Instant::now();
    while store.attempt_count().await.unwrap() < 5000 {
        // Generous: the suite runs tests in parallel on 2 shared cores.
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "first 5,000 not written"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    store.pool().close().await;

    pg.stop();
    // ICE keeps serving while the database is away, and quickly.
    let mut worst = Duration::ZERO;
    for i in 0..20 {
        let t = Instant::now();
        let arm = d.arm(&format!("outage-{i}")).await;
        worst = worst.max(t.elapsed());
        assert!(arm == "control" || arm == "treatment");
    }
    println!("ice-config during the outage: worst {worst:?}");
    assert!(worst < Duration::from_millis(500), "{worst:?}");
    for _ in 0..20 {
        let (body, _) = outcome_batch(&mut rng, 500, 50, 10_000, 10_000);
        assert_eq!(
            d.request("POST", "/api/ice/outcomes", &body, false).await.0,
            202
        );
        posted += 500;
    }
    let m = d.metrics().await;
    let dropped = metric(&m, "scream_ice_outcomes_dropped_total").unwrap() as u64;
    assert!(dropped > 0, "the queue should have overflowed: {m}");
    tokio::time::sleep(Duration::from_secs(2)).await;

    pg.start();
    let store = Store::connect(&pg.url()).await.unwrap();
    let t = Instant::now();
    let written = loop {
        let m = d.metrics().await;
        let queued = metric(&m, "scream_ice_outcomes_queued").unwrap();
        let written = metric(&m, "scream_ice_outcomes_written_total").unwrap() as u64;
        if queued == 0.0 && written + dropped == posted {
            break written;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "not drained: {m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let rows = store.attempt_count().await.unwrap() as u64;
    println!("posted {posted}, written {written}, dropped {dropped}, rows {rows}");
    assert_eq!(rows, written);
    assert_eq!(rows + dropped, posted);
    // No more drops after the database came back.
    assert_eq!(
        metric(&d.metrics().await, "scream_ice_outcomes_dropped_total").unwrap() as u64,
        dropped
    );
    d.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
