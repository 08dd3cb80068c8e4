//! `/dashboard` in headless Chromium: the page loads with no console
//! errors (no script, nothing fetched), shows the store's numbers (read
//! back from the rendered DOM), and a screenshot is kept at
//! `target/dashboard.png`, here after the monitor rolled a failing stage
//! back. Also: a non-loopback client needs the token.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser"] {
        if let Ok(out) = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            && out.status.success()
        {
            return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        }
    }
    panic!("no chromium on PATH: apt-get install -y chromium");
}

/// The text of the element with `id` in `dom`.
fn by_id(dom: &str, id: &str) -> String {
    let key = format!("id=\"{id}\">");
    let start = dom
        .find(&key)
        .unwrap_or_else(|| panic!("#{id} not in the page"))
        + key.len();
    let rest = &dom[start..];
    let end = rest.find('<').unwrap();
    rest[..end].to_string()
}

fn target_dir() -> PathBuf {
    // BIN is <target>/<profile>/scream-ice.
    PathBuf::from(BIN)
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_chromium_shows_the_stores_numbers() {
    let dir = temp_dir("scream_ice_dash");
    let cfg = daemon_config(&dir, "      stage: 50\n", None);
    let d = Daemon::start(&cfg);
    // Known figures: treatment 10 % failures, control 2 %.
    let mut rng = Rng(8);
    let mut posted = 0;
    for _ in 0..5 {
        let (body, _) = outcome_batch(&mut rng, 400, 50, 100_000, 20_000);
        assert_eq!(
            d.request("POST", "/api/ice/outcomes", &body, false).await.0,
            202
        );
        posted += 400;
    }
    let t = Instant::now();
    while metric(&d.metrics().await, "scream_ice_outcomes_written_total") != Some(f64::from(posted))
    {
        assert!(t.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the monitor decide once (check interval 1 s).
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let store =
        scream_ice_host::store::Store::open(&scream_ice_host::store::StoreConfig::default(), &dir)
            .await
            .unwrap();
    let arms = store.arm_summary(0).await.unwrap();
    let t_arm = arms.iter().find(|a| a.arm == "treatment").unwrap();
    let c_arm = arms.iter().find(|a| a.arm == "control").unwrap();
    let reasons = store.failure_reasons(0).await.unwrap();

    let url = format!("http://{}/dashboard", d.http);
    let profile = temp_dir("scream_ice_chromium_profile");
    let shot = target_dir().join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let base = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--enable-logging=stderr",
        "--v=0",
    ];
    let out = Command::new(chromium())
        .args(base)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout).to_string();
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{log}");
    let console: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Refused to") || l.contains("Uncaught"))
        .collect();
    assert!(console.is_empty(), "console messages: {console:#?}");

    assert_eq!(by_id(&dom, "stage"), "50");
    // 10 % treatment failures at the 2 % stage: the monitor rolled back,
    // and the page says so.
    assert_eq!(by_id(&dom, "state"), "rolled_back");
    assert_eq!(by_id(&dom, "treatment-percent"), "0");
    assert!(by_id(&dom, "rollback-banner").starts_with("ROLLED BACK from 50 %"));
    assert_eq!(by_id(&dom, "verdict"), "roll_back");
    assert_eq!(by_id(&dom, "total-attempts"), posted.to_string());
    assert_eq!(
        by_id(&dom, "treatment-attempts"),
        t_arm.attempts.to_string()
    );
    assert_eq!(by_id(&dom, "control-attempts"), c_arm.attempts.to_string());
    assert_eq!(
        by_id(&dom, "treatment-success"),
        format!(
            "{:.2} %",
            t_arm.successes as f64 * 100.0 / t_arm.attempts as f64
        )
    );
    assert_eq!(
        by_id(&dom, "treatment-p95"),
        format!("{} ms", t_arm.p95_time_ms.unwrap())
    );
    assert_eq!(by_id(&dom, "threshold"), "2.00 %");
    assert_eq!(by_id(&dom, "local-connections"), posted.to_string());
    assert_eq!(by_id(&dom, "stun-connections"), "0");
    assert!(dom.contains(&format!(
        "<td>ice_failed</td><td class=\"count\">{}</td>",
        reasons[0].1
    )));
    assert!(dom.contains("id=\"threshold-line\""));
    assert!(dom.contains("<polyline"));
    println!(
        "dashboard: {} treatment / {} control, verdict {}",
        t_arm.attempts,
        c_arm.attempts,
        by_id(&dom, "verdict")
    );

    let out = Command::new(chromium())
        .args(base)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1000,1600")
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    println!("screenshot: {}", shot.display());

    // Off loopback, the token is needed (a forwarded request counts as
    // not loopback).
    let r = scream_ice_host::client::request(
        d.http,
        &d.http.to_string(),
        "GET",
        "/dashboard",
        &[("X-Forwarded-For", "192.0.2.7")],
        b"",
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 401);
    let auth = format!("Bearer {TOKEN}");
    let r = scream_ice_host::client::request(
        d.http,
        &d.http.to_string(),
        "GET",
        "/dashboard",
        &[("X-Forwarded-For", "192.0.2.7"), ("Authorization", &auth)],
        b"",
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    d.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
