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

/// PostgreSQL down when `serve` starts: the daemon starts anyway and serves
/// ICE, holds the rollout at control (the stored state may be a rollback
/// it cannot read), refuses operators' changes with 503, queues outcomes;
/// when the database comes up it attaches the store, writes what queued
/// and follows the stored rollout state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_down_at_start_does_not_stop_ice() {
    let pg = PrivatePg::start_new();
    pg.stop();
    let dir = temp_dir("scream_ice_store_down");
    let cfg = daemon_config(&dir, "      stage: 50\n", Some(&pg.url()));
    let d = Daemon::start(&cfg);
    let mut rng = Rng(5);
    let ids: Vec<String> = (0..40).map(|_| client_id(&mut rng)).collect();
    let treated: Vec<&String> = ids.iter().filter(|id| is_treatment(id, 50)).collect();
    assert!(!treated.is_empty());
    for id in &ids {
        assert_eq!(d.arm(id).await, "control", "held at control: {id}");
    }
    let (status, body) = d
        .request("POST", "/api/rollout", r#"{"action":"pause"}"#, true)
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not open yet"), "{body}");
    let (body, _) = outcome_batch(&mut rng, 300, 50, 0, 0);
    assert_eq!(
        d.request("POST", "/api/ice/outcomes", &body, false).await.0,
        202
    );

    pg.start();
    let t = Instant::now();
    loop {
        let m = d.metrics().await;
        let written = metric(&m, "scream_ice_outcomes_written_total").unwrap_or(0.0) as u64;
        if written == 300 {
            break;
        }
        // The daemon tries every 5 s; the suite shares 2 cores.
        assert!(t.elapsed() < Duration::from_secs(60), "not written: {m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let store = Store::connect(&pg.url()).await.unwrap();
    assert_eq!(store.attempt_count().await.unwrap(), 300);
    assert_eq!(
        metric(&d.metrics().await, "scream_ice_outcomes_dropped_total").unwrap_or(0.0),
        0.0
    );
    // The stored state (the initial one, stage 50) is in force now.
    for id in &treated {
        assert_eq!(d.arm(id).await, "treatment", "{id}");
    }
    let r = d.rollout().await;
    assert_eq!(r["status"]["stage"], 50, "{r}");
    assert_eq!(r["state"], "active", "{r}");
    store.pool().close().await;
    d.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
