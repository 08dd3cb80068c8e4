//! The rollout end to end against the built `scream-ice serve`: a stage
//! whose treatment fails over the threshold trips the monitor within the
//! N of docs/BENCHMARKS.md, every client then gets legacy, a local webhook
//! receiver gets one signed call, `/metrics` shows it, a restart keeps it.

mod support;

use std::time::{Duration, Instant};

use support::*;

/// docs/BENCHMARKS.md, "Rollout rule": every seed trips within this many
/// treatment attempts at 25 % (twice the threshold).
const N_AT_25: i64 = 2000;

async fn wait_for(
    d: &Daemon,
    what: &str,
    f: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let t = Instant::now();
    loop {
        let v = d.rollout().await;
        if f(&v) {
            return v;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_25_trips_signs_its_webhook_and_stays_rolled_back() {
    let dir = temp_dir("scream_ice_e2e");
    let (hook_addr, hooks) = webhook_receiver();
    let cfg = daemon_config(
        &dir,
        &format!(
            "      stage: 25\n      webhooks:\n        - url: http://{hook_addr}/hook\n          secret: s3cret\n"
        ),
        None,
    );
    let d = Daemon::start(&cfg);
    let v = d.rollout().await;
    assert_eq!(
        (v["state"].as_str(), v["treatment_percent"].as_u64()),
        (Some("active"), Some(25))
    );

    // Treatment at twice the 3 % threshold, control at half of it; posted
    // in arrays of 400, each followed by one monitor round.
    let mut rng = Rng(25);
    let mut treatment_posted = 0usize;
    let mut tripped = None;
    for _ in 0..100 {
        let (body, t) = outcome_batch(&mut rng, 400, 25, 60_000, 15_000);
        let (s, b) = d.request("POST", "/api/ice/outcomes", &body, false).await;
        assert_eq!((s, b.as_str()), (202, r#"{"accepted":400}"#));
        treatment_posted += t;
        let v = wait_for(&d, "a decision over every posted outcome", |v| {
            v["state"] == "rolled_back"
                || v["last_decision"]["treatment_n"].as_u64() == Some(treatment_posted as u64)
        })
        .await;
        if v["state"] == "rolled_back" {
            tripped = Some(v);
            break;
        }
    }
    let v = tripped.expect("no rollback after 40,000 outcomes");
    let d0 = &v["last_decision"];
    println!("tripped: {d0}");
    assert_eq!(d0["verdict"], "roll_back");
    assert!(d0["treatment_n"].as_i64().unwrap() <= N_AT_25, "{d0}");
    assert!(d0["treatment_lower_ppm"].as_i64().unwrap() > 30_000);
    assert_eq!(v["status"]["rolled_back_from"], 25);

    // Every client gets legacy now, treatment ones included.
    let mut r = Rng(99);
    let mut checked = 0;
    while checked < 50 {
        let id = client_id(&mut r);
        if is_treatment(&id, 25) {
            assert_eq!(d.arm(&id).await, "control");
            checked += 1;
        }
    }
    // One signed webhook call.
    let t = Instant::now();
    while hooks.lock().unwrap().is_empty() {
        assert!(t.elapsed() < Duration::from_secs(10), "no webhook call");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = hooks.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    let h = &got[0];
    let body: serde_json::Value = serde_json::from_str(&h.body).unwrap();
    assert_eq!(body["component"], "ice_config");
    assert_eq!(body["reason"], "high_failure_rate");
    assert_eq!(body["stage"], 25);
    assert_eq!(body["figures"]["treatment_attempts"], d0["treatment_n"]);
    assert_eq!(
        h.header("idempotency-key"),
        body["idempotency_key"].as_str()
    );
    assert_eq!(
        h.header("x-scream-ice-signature").unwrap(),
        scream_ice_host::rollout_monitor::signature("s3cret", h.body.as_bytes())
    );

    // /metrics shows it.
    let m = d.metrics().await;
    assert_eq!(metric(&m, "scream_ice_rollbacks_total"), Some(1.0), "{m}");
    assert_eq!(
        metric(&m, r#"scream_ice_rollout_state{state="rolled_back"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "scream_ice_rollout_treatment_percent"),
        Some(0.0)
    );
    assert_eq!(metric(&m, "scream_ice_outcomes_dropped_total"), Some(0.0));

    // A restart stays rolled back.
    d.stop();
    let d = Daemon::start(&cfg);
    let v = d.rollout().await;
    assert_eq!(v["state"], "rolled_back", "{v}");
    let mut r = Rng(99);
    loop {
        let id = client_id(&mut r);
        if is_treatment(&id, 25) {
            assert_eq!(d.arm(&id).await, "control");
            break;
        }
    }
    // `scream-ice rollout status` reads the same.
    let out = std::process::Command::new(BIN)
        .args(["rollout", "status", "--config"])
        .arg(&cfg)
        .args(["--url", &format!("http://{}", d.http)])
        .env("SCREAM_ICE_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("rolled_back at stage 25 %"), "{text}");
    assert!(text.contains("rolled back from 25 %"), "{text}");
    d.stop();
    assert_eq!(hooks.lock().unwrap().len(), 1);
}

/// `scream-ice rollback` (the migration command) tells a running daemon:
/// every client on legacy at once, the state stored, the webhook called
/// with `operator_rollback`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scream_ice_rollback_tells_the_running_daemon() {
    let dir = temp_dir("scream_ice_rb");
    let (hook_addr, hooks) = webhook_receiver();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = daemon_config(
        &dir,
        &format!("      stage: 100\n      webhooks:\n        - url: http://{hook_addr}/hook\n"),
        None,
    );
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    std::fs::write(&cfg, text).unwrap();
    let d = Daemon::start(&cfg);
    assert_eq!(d.arm("someone").await, "treatment");
    let out = std::process::Command::new(BIN)
        .args(["rollback", "--config"])
        .arg(&cfg)
        .args(["--reason", "test"])
        .env("SCREAM_ICE_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("told the running daemon"), "{err}");
    assert_eq!(d.arm("someone").await, "control");
    assert_eq!(d.rollout().await["state"], "rolled_back");
    let t = Instant::now();
    while hooks.lock().unwrap().is_empty() {
        assert!(t.elapsed() < Duration::from_secs(10), "no webhook");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let body: serde_json::Value = serde_json::from_str(&hooks.lock().unwrap()[0].body).unwrap();
    assert_eq!(body["reason"], "operator_rollback");
    assert_eq!(body["component"], "ice_config");
    d.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
