//! The outcome store on SQLite and on a real PostgreSQL: the seed's two
//! monitoring queries give the same answers on the same data, and those
//! answers are the ones computed here by hand; the rollout state's
//! compare-and-set lets exactly one writer win.

mod support;

use scream_ice_host::rollout::RolloutStatus;
use scream_ice_host::store::{Store, StoreConfig};
use support::*;

const DAY_MS: i64 = 86_400_000;

async fn sqlite() -> Store {
    Store::open(&StoreConfig::default(), &temp_dir("scream_ice_store"))
        .await
        .unwrap()
}

#[tokio::test]
async fn monitoring_queries_agree_on_sqlite_and_postgres() {
    let now = 1_800_000_000_000;
    let data = rows(20_000, 7, now);
    let lite = sqlite().await;
    let pg_url = pg_database("scream_ice_q").await;
    let pg = Store::connect(&pg_url).await.unwrap();
    for s in [&lite, &pg] {
        for chunk in data.chunks(3000) {
            s.insert_batch(chunk).await.unwrap();
        }
        assert_eq!(s.attempt_count().await.unwrap(), 20_000);
    }
    // Windows on an hour boundary and off it (the rollups serve whole
    // hours, the raw rows the first partial one), and one inside an hour.
    for since in [
        now - DAY_MS,
        now - DAY_MS - 1_234_567,
        now - 47 * 3_600_000 - 17,
        now - 1_000,
    ] {
        let a = lite.success_by_config(since).await.unwrap();
        let b = pg.success_by_config(since).await.unwrap();
        let c = lite.stun_by_network(since).await.unwrap();
        let d = pg.stun_by_network(since).await.unwrap();
        // By hand, over the same rows.
        let recent: Vec<_> = data.iter().filter(|r| r.timestamp_ms > since).collect();
        // Groups the window holds, by hand: a missing or extra group fails.
        let groups = |key: fn(&scream_ice_host::store::OutcomeRow) -> &str| {
            recent
                .iter()
                .map(|r| key(r))
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        };
        for (rows, name) in [(&a, "sqlite"), (&b, "postgres")] {
            assert_eq!(rows.len(), groups(|r| r.config_type.as_str()), "{name}");
            for row in rows.iter() {
                let g: Vec<_> = recent
                    .iter()
                    .filter(|r| r.config_type == row.config_type)
                    .collect();
                let ok = g.iter().filter(|r| r.success).count() as i64;
                let times: Vec<i64> = g.iter().filter_map(|r| r.connection_time_ms).collect();
                let avg = times.iter().sum::<i64>() as f64 / times.len() as f64;
                assert_eq!(row.total_attempts, g.len() as i64, "{name}");
                assert_eq!(row.successful, ok, "{name}");
                assert!((row.avg_time_ms.unwrap() - avg).abs() < 1e-9, "{name}");
                assert!((row.success_rate - ok as f64 * 100.0 / g.len() as f64).abs() < 1e-9);
            }
        }
        for (rows, name) in [(&c, "sqlite"), (&d, "postgres")] {
            assert_eq!(rows.len(), groups(|r| r.network_type.as_str()), "{name}");
            for row in rows.iter() {
                let g: Vec<_> = recent
                    .iter()
                    .filter(|r| r.network_type == row.network_type)
                    .collect();
                let stun = g.iter().filter(|r| r.stun_used).count() as i64;
                assert_eq!(
                    (row.connections, row.stun_required),
                    (g.len() as i64, stun),
                    "{name}"
                );
                assert!((row.stun_percentage - stun as f64 * 100.0 / g.len() as f64).abs() < 1e-9);
            }
        }
        // Identical answers: integers equal, floats to 1e-9 relative.
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(
                (&x.config_type, x.total_attempts, x.successful),
                (&y.config_type, y.total_attempts, y.successful)
            );
            assert!((x.avg_time_ms.unwrap() - y.avg_time_ms.unwrap()).abs() < 1e-9);
            assert!((x.success_rate - y.success_rate).abs() < 1e-9);
        }
        assert_eq!(
            c.iter()
                .map(|r| (&r.network_type, r.connections, r.stun_required))
                .collect::<Vec<_>>(),
            d.iter()
                .map(|r| (&r.network_type, r.connections, r.stun_required))
                .collect::<Vec<_>>()
        );
    }

    // The per-arm counts the monitor reads.
    for s in [&lite, &pg] {
        let (t, c) = s.arm_counts("exp", 25, 0).await.unwrap();
        let tn = data.iter().filter(|r| r.arm == "treatment").count() as u32;
        let tf = data
            .iter()
            .filter(|r| r.arm == "treatment" && !r.success)
            .count() as u32;
        assert_eq!((t.attempts(), t.failures()), (tn, tf));
        assert_eq!(c.attempts(), 20_000 - tn);
    }
    pg.pool().close().await;
    drop_pg_database(&pg_url).await;
}

#[tokio::test]
async fn sqlite_runs_in_wal_mode() {
    let s = sqlite().await;
    let mode: String = sqlx::Row::get(
        &sqlx::query("PRAGMA journal_mode")
            .fetch_one(s.pool())
            .await
            .unwrap(),
        0,
    );
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn exactly_one_writer_wins_each_transition() {
    let url = pg_database("scream_ice_cas").await;
    let (a, b) = (
        Store::connect(&url).await.unwrap(),
        Store::connect(&url).await.unwrap(),
    );
    let mut s = RolloutStatus {
        stage: 25,
        paused: false,
        rolled_back_from: None,
        rolled_back_at_ms: None,
        stage_started_ms: 1,
        version: 1,
    };
    assert!(a.save_status("e", &s).await.unwrap());
    assert!(!b.save_status("e", &s).await.unwrap());
    s.version = 2;
    s.rolled_back_from = Some(25);
    let (x, y) = tokio::join!(a.save_status("e", &s), b.save_status("e", &s));
    assert_eq!(u8::from(x.unwrap()) + u8::from(y.unwrap()), 1);
    assert_eq!(b.load_status("e").await.unwrap(), Some(s));
    // The advisory lock: one decider at a time, handed over on release.
    let l1 = a.try_lead("e").await.unwrap();
    assert!(l1.is_some());
    assert!(b.try_lead("e").await.unwrap().is_none());
    l1.unwrap().release().await;
    // The server frees a closed session's locks asynchronously.
    let t = std::time::Instant::now();
    while b.try_lead("e").await.unwrap().is_none() {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(5),
            "lock not handed over"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop((a, b));
    drop_pg_database(&url).await;
}
