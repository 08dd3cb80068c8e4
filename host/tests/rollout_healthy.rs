//! The opposite of a trip: at every stage, 100,000 outcomes with both arms
//! failing at half the stage's threshold go through the real queue, the
//! SQLite store and the monitor (a round every 10,000 outcomes), and the
//! rollout is never rolled back.

mod support;

use scream_ice_host::config::Config;
use scream_ice_host::http::AppState;
use scream_ice_host::outcomes::{Observed, row};
use scream_ice_host::rollout::{Hub, changes};
use scream_ice_host::rollout_monitor::round;
use scream_ice_host::sessions::SessionSettings;
use scream_ice_host::store::Store;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_streams_never_roll_back() {
    let dir = temp_dir("scream_ice_healthy");
    let yaml = format!(
        "webrtc:\n  ice:\n    rollout: {{}}\nserver:\n  data_dir: \"{}\"\nstore:\n  batch: 2000\n",
        dir.display()
    );
    let config = Config::from_yaml("t.yaml", &yaml).unwrap();
    let store = Store::open(&config.store, &dir).await.unwrap();
    let hub = Hub::with_store(&config, store, "healthy".into())
        .await
        .unwrap();
    let state = AppState::with_hub(config.clone(), None, SessionSettings::default(), hub);
    let hub = state.hub().clone();
    let mut leader = None;
    let mut rng = Rng(100);
    let ip = "127.0.0.1".parse().unwrap();
    let mut total = 0u64;
    for (i, (stage, threshold_ppm)) in [
        (10u8, 50_000u64),
        (25, 30_000),
        (50, 20_000),
        (75, 10_000),
        (100, 5_000),
    ]
    .into_iter()
    .enumerate()
    {
        if i > 0 {
            hub.change(&config, changes::advance).await.unwrap();
        }
        assert_eq!(hub.rollout.status().stage, stage);
        for _ in 0..10 {
            for _ in 0..10_000 {
                let id = client_id(&mut rng);
                let a = hub.rollout.assign(&config, Some(&id), ip);
                let ok = !rng.chance(threshold_ppm / 2);
                assert!(hub.outcomes.push(row(
                    &a,
                    "healthy",
                    "browser",
                    Observed {
                        success: ok,
                        connect_ms: ok.then_some(30),
                        failure_reason: (!ok).then(|| "ice_failed".to_string()),
                        local_candidate_type: Some("host".into()),
                        remote_candidate_type: Some("host".into()),
                        stun_used: Some(false),
                        network_type: "local".into(),
                        config_type: None,
                    },
                )));
            }
            total += 10_000;
            while hub.metrics.written() < total {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            round(&state, &mut leader).await;
            let s = hub.rollout.status();
            assert_eq!(s.rolled_back_from, None, "false rollback at {stage} %");
        }
        let d = hub.last_decision.read().unwrap().clone().unwrap();
        println!(
            "stage {stage} %: {} after {} treatment / {} control outcomes",
            d.verdict, d.treatment_n, d.control_n
        );
        assert_eq!(d.stage, i64::from(stage));
        assert_ne!(d.verdict, "roll_back");
    }
    assert_eq!(hub.metrics.dropped(), 0);
    drop((state, hub));
    let _ = std::fs::remove_dir_all(&dir);
}
