//! A fleet on one PostgreSQL: three `scream-ice serve` share the rollout.
//! A failing treatment gives exactly one rollback decision and one webhook
//! call, and all three serve legacy within one check interval; then the
//! deciding daemon is killed mid-stage and another takes over (and
//! decides the next rollback).

mod support;

use std::time::{Duration, Instant};

use scream_ice_host::store::Store;
use support::*;

/// The stored roll_back decisions, newest first, and every decision.
async fn stored_rollbacks(
    store: &Store,
) -> (
    Vec<scream_ice_host::store::DecisionRow>,
    Vec<scream_ice_host::store::DecisionRow>,
) {
    let all = store
        .decisions("screamrouter-smart-ice", 10_000)
        .await
        .unwrap();
    (
        all.iter()
            .filter(|d| d.verdict == "roll_back")
            .cloned()
            .collect(),
        all,
    )
}

async fn post_all(
    ds: &[&Daemon],
    rng: &mut Rng,
    stage: u8,
    t_ppm: u64,
    c_ppm: u64,
    batches: usize,
) {
    for i in 0..batches {
        let (body, _) = outcome_batch(rng, 200, stage, t_ppm, c_ppm);
        let (s, b) = ds[i % ds.len()]
            .request("POST", "/api/ice/outcomes", &body, false)
            .await;
        assert_eq!(s, 202, "{b}");
    }
}

/// Wait until every daemon serves legacy to a treatment client; the time
/// each took after the stored rollback.
async fn all_legacy(ds: &[&Daemon], rolled_back_at_ms: i64, stage: u8) -> Vec<i64> {
    let mut r = Rng(4242);
    let id = loop {
        let id = client_id(&mut r);
        if is_treatment(&id, stage) {
            break id;
        }
    };
    let mut lags = Vec::new();
    for d in ds {
        let t = Instant::now();
        while d.arm(&id).await != "control" {
            assert!(t.elapsed() < Duration::from_secs(10));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        lags.push(scream_ice_host::rollout::now_ms() - rolled_back_at_ms);
    }
    lags
}

async fn wait_rolled_back(store: &Store, ds: &[&Daemon], rng: &mut Rng, stage: u8) -> i64 {
    let t = Instant::now();
    loop {
        if let Some(s) = store.load_status("screamrouter-smart-ice").await.unwrap()
            && let Some(at) = s.rolled_back_at_ms
        {
            return at;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "no rollback");
        post_all(ds, rng, stage, 60_000, 15_000, ds.len()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_routers_one_decision_one_webhook_and_takeover() {
    let url = pg_database("scream_ice_fleet").await;
    let (hook_addr, hooks) = webhook_receiver();
    let extra = format!(
        "      stage: 25\n      webhooks:\n        - url: http://{hook_addr}/hook\n          secret: fleet\n"
    );
    let daemons: Vec<Daemon> = (0..3)
        .map(|_| {
            let dir = temp_dir("scream_ice_fleet");
            Daemon::start_killable(&daemon_config(&dir, &extra, Some(&url)))
        })
        .collect();
    let store = Store::connect(&url).await.unwrap();
    let ds: Vec<&Daemon> = daemons.iter().collect();
    let mut rng = Rng(3);

    // Phase 1: the treatment fails; one decision, one call, all follow.
    let at = wait_rolled_back(&store, &ds, &mut rng, 25).await;
    let lags = all_legacy(&ds, at, 25).await;
    println!("followers served legacy {lags:?} ms after the stored rollback");
    for lag in &lags {
        assert!(
            *lag <= 1_300,
            "a router took {lag} ms (check interval 1000 ms)"
        );
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rollbacks, decisions) = stored_rollbacks(&store).await;
    assert_eq!(rollbacks.len(), 1, "{rollbacks:?}");
    let deciders: std::collections::BTreeSet<_> =
        decisions.iter().map(|d| d.router_id.clone()).collect();
    assert_eq!(
        deciders.len(),
        1,
        "more than one router decided: {deciders:?}"
    );
    assert_eq!(hooks.lock().unwrap().len(), 1);

    // Phase 2: start over, kill the decider mid-stage, another takes over.
    let (s, b) = ds[1]
        .request("POST", "/api/rollout", r#"{"action":"restart"}"#, true)
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = ds[2]
        .request(
            "POST",
            "/api/rollout",
            r#"{"action":"set","stage":25}"#,
            true,
        )
        .await;
    assert_eq!(s, 200, "{b}");
    post_all(&ds, &mut rng, 25, 15_000, 15_000, 6).await;
    let decider = deciders.into_iter().next().unwrap();
    let pid: u32 = decider.rsplit(':').next().unwrap().parse().unwrap();
    let mut rest = Vec::new();
    for d in daemons {
        if d.pid() == pid {
            d.kill();
        } else {
            rest.push(d);
        }
    }
    assert_eq!(rest.len(), 2, "decider {decider} not among the daemons");
    let killed_at = scream_ice_host::rollout::now_ms();
    let ds: Vec<&Daemon> = rest.iter().collect();
    let t = Instant::now();
    let new_decider = loop {
        let d = store.decisions("screamrouter-smart-ice", 1).await.unwrap();
        if let Some(d) = d.first()
            && d.timestamp_ms > killed_at
        {
            break d.router_id.clone();
        }
        assert!(t.elapsed() < Duration::from_secs(15), "nobody took over");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(new_decider, decider);
    println!(
        "{new_decider} took over {} ms after {decider} was killed",
        scream_ice_host::rollout::now_ms() - killed_at
    );
    let at = wait_rolled_back(&store, &ds, &mut rng, 25).await;
    all_legacy(&ds, at, 25).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rollbacks, _) = stored_rollbacks(&store).await;
    assert_eq!(rollbacks.len(), 2);
    assert_eq!(rollbacks[0].router_id, new_decider);
    assert_eq!(hooks.lock().unwrap().len(), 2);
    drop(rest);
    store.pool().close().await;
    drop_pg_database(&url).await;
}
