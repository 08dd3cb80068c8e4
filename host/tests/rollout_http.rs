//! The rollout through the HTTP API, in process: 10,000 simulated clients
//! get arms whose shares match each stage within 1 point, keep them, and
//! never go from treatment back to control as the stage widens; the arm
//! decides `/api/ice-config`, the WHEP `Link` headers and `screamIce`;
//! `POST /api/ice/outcomes` validates and counts; the admin API needs its
//! token.

mod support;

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use scream_ice_host::auth::{AdminToken, TokenSource};
use scream_ice_host::config::Config;
use scream_ice_host::http::{AppState, ConnAddrs, router};
use scream_ice_host::rollout::Hub;
use scream_ice_host::sessions::SessionSettings;
use tower::ServiceExt;

const TOKEN: &str = "test-admin-token-0123456789";

fn state(yaml: &str) -> AppState {
    let config = Config::from_yaml("t.yaml", yaml).expect("valid config");
    let mut hub = Hub::without_store(&config);
    hub.admin = Some(AdminToken::from_secret(TOKEN, TokenSource::Env));
    AppState::with_hub(config, None, SessionSettings::default(), hub)
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    client: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut req = req.body(Body::from(body.to_string())).unwrap();
    req.extensions_mut().insert(ConnectInfo(ConnAddrs {
        remote: client.parse::<SocketAddr>().unwrap(),
        local: "192.168.1.2:8188".parse().unwrap(),
    }));
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

async fn admin(app: &Router, body: &str) -> Reply {
    let auth = format!("Bearer {TOKEN}");
    call(
        app,
        Method::POST,
        "/api/rollout",
        "127.0.0.1:1",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        body,
    )
    .await
}

/// The browser module's kind of id: 128 random bits in hex (here from a
/// seeded splitmix64, so the run is repeatable).
fn client_id(id: usize) -> String {
    support::client_id(&mut support::Rng(
        (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5EED,
    ))
}

async fn arm_of(app: &Router, id: usize, client: &str) -> (String, u64) {
    let r = call(
        app,
        Method::GET,
        &format!("/api/ice-config?client_id={}", client_id(id)),
        client,
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let s = &v["screamIce"];
    assert_eq!(r.headers["x-scream-ice-arm"], s["arm"].as_str().unwrap());
    (
        s["arm"].as_str().unwrap().to_string(),
        s["stage"].as_u64().unwrap(),
    )
}

#[tokio::test]
async fn ten_thousand_clients_follow_every_stage() {
    const N: usize = 10_000;
    let s = state("webrtc:\n  ice:\n    rollout: {}\n");
    let app = router(s.clone());
    let mut previous = vec![false; N];
    for (i, stage) in [10u64, 25, 50, 75, 100].into_iter().enumerate() {
        if i > 0 {
            let r = admin(&app, r#"{"action":"advance"}"#).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        }
        let mut treatment = 0usize;
        let mut now = vec![false; N];
        for id in 0..N {
            // Each client asks from a different address: its client_id,
            // not its IP, decides.
            let a = format!("10.{}.{}.{}:5000", id % 7, (id / 256) % 256, id % 256);
            let (arm, st) = arm_of(&app, id, &a).await;
            assert_eq!(st, stage);
            now[id] = arm == "treatment";
            treatment += usize::from(now[id]);
            assert!(
                !previous[id] || now[id],
                "client-{id} went from treatment back to control at {stage} %"
            );
        }
        let share = treatment as f64 * 100.0 / N as f64;
        assert!(
            (share - stage as f64).abs() <= 1.0,
            "stage {stage} %: treatment share {share:.2} %"
        );
        // Stable: the same answer on a second ask, from another address.
        for id in (0..N).step_by(7) {
            let (arm, _) = arm_of(&app, id, "172.16.0.9:4000").await;
            assert_eq!(arm == "treatment", now[id], "client-{id} changed arm");
        }
        println!("stage {stage} %: treatment share {share:.2} % of {N}");
        previous = now;
    }
    // Widening only: going back down is refused.
    let r = admin(&app, r#"{"action":"set","stage":50}"#).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.body.contains("below the stage in force"), "{}", r.body);
}

#[tokio::test]
async fn the_arm_decides_servers_links_and_the_notice() {
    let yaml = "webrtc:\n  ice:\n    stun_servers:\n      - url: stun:stun.example.org\n    rollout:\n      stage: 50\n";
    let s = state(yaml);
    let app = router(s.clone());
    let mut seen = [false, false];
    for id in 0..40 {
        // A LAN client: smart ICE needs no server; legacy gets the
        // configured STUN server, as before the migration.
        let r = call(
            &app,
            Method::GET,
            &format!("/api/ice-config?client_id=spk-{id}"),
            "192.168.1.20:5000",
            &[],
            "",
        )
        .await;
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        let smart = v["screamIce"]["arm"] == "treatment";
        seen[usize::from(smart)] = true;
        if smart {
            assert_eq!(v["iceServers"], serde_json::json!([]));
            assert_eq!(v["screamIce"]["mode"], "auto");
            assert_eq!(v["screamIce"]["deprecation"], serde_json::Value::Null);
        } else {
            assert_eq!(
                v["iceServers"],
                serde_json::json!([{"urls": ["stun:stun.example.org"]}])
            );
            assert_eq!(v["screamIce"]["mode"], "legacy");
            assert!(
                v["screamIce"]["deprecation"]["title"]
                    .as_str()
                    .unwrap()
                    .contains("ICE Configuration Update")
            );
        }
        assert_eq!(v["screamIce"]["experiment"], "screamrouter-smart-ice");
        let w = call(
            &app,
            Method::OPTIONS,
            &format!("/api/whep/sink1?client_id=spk-{id}"),
            "192.168.1.20:5000",
            &[],
            "",
        )
        .await;
        assert_eq!(
            w.headers.get_all("link").iter().count(),
            usize::from(!smart)
        );
    }
    assert_eq!(seen, [true, true]);
    let r = call(
        &app,
        Method::GET,
        "/api/ice-config?client_id=has%20space",
        "192.168.1.20:5000",
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Rolled back: everyone legacy.
    assert_eq!(
        admin(&app, r#"{"action":"rollback"}"#).await.status,
        StatusCode::OK
    );
    for id in 0..40 {
        let (arm, stage) = arm_of(&app, id, "192.168.1.20:5000").await;
        assert_eq!((arm.as_str(), stage), ("control", 0));
    }
    let r = admin(&app, r#"{"action":"advance"}"#).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = admin(&app, r#"{"action":"restart"}"#).await;
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        (v["state"].as_str(), v["treatment_percent"].as_u64()),
        (Some("active"), Some(10))
    );
}

#[tokio::test]
async fn outcomes_are_validated_limited_and_counted() {
    let s = state(
        "webrtc:\n  ice:\n    rollout:\n      stage: 100\nstore:\n  rate_per_client: 1\n  burst_per_client: 1500\n",
    );
    let app = router(s.clone());
    let post = |body: String, ct: &'static str| {
        let app = app.clone();
        async move {
            call(
                &app,
                Method::POST,
                "/api/ice/outcomes",
                "10.0.0.5:1",
                &[("content-type", ct)],
                &body,
            )
            .await
        }
    };
    let r = post(
        r#"{"success": true, "connect_ms": "fast"}"#.into(),
        "application/json",
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("outcome.connect_ms"), "{}", r.body);
    let r = post(
        r#"{"success": true, "colour": "red"}"#.into(),
        "application/json",
    )
    .await;
    assert!(
        r.body.contains("outcome.colour: unknown field"),
        "{}",
        r.body
    );
    assert_eq!(
        post("{}".into(), "text/plain").await.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    let big = format!("[{}]", vec![r#"{"success":true,"failure_reason":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#; 9000].join(","));
    assert_eq!(
        post(big, "application/json").await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let one = r#"{"client_id":"b1","success":true,"connect_ms":42,"local_candidate_type":"host","remote_candidate_type":"host","network_type":"local"}"#;
    let batch = format!("[{}]", vec![one; 1000].join(","));
    let r = post(batch.clone(), "application/json").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::ACCEPTED, r#"{"accepted":1000}"#)
    );
    // The burst of 1,500 is spent: the next 1,000 are refused.
    let r = post(batch, "application/json").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let m = call(&app, Method::GET, "/metrics", "127.0.0.1:1", &[], "").await;
    assert!(
        m.body.contains(r#"scream_ice_connection_attempts_total{arm="treatment",mode="auto",network_type="local"} 1000"#),
        "{}",
        m.body
    );
}

#[tokio::test]
async fn admin_api_needs_the_token() {
    let s = state("webrtc:\n  ice:\n    rollout: {}\n");
    let app = router(s);
    let r = call(&app, Method::GET, "/api/rollout", "127.0.0.1:1", &[], "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let r = call(
        &app,
        Method::GET,
        "/api/rollout",
        "127.0.0.1:1",
        &[("authorization", "Bearer nope")],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let auth = format!("Bearer {TOKEN}");
    let r = call(
        &app,
        Method::GET,
        "/api/rollout",
        "127.0.0.1:1",
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["state"], "active");
    assert_eq!(v["stages"], serde_json::json!([10, 25, 50, 75, 100]));
    let r = admin(&app, r#"{"action":"fly"}"#).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

/// Every state-changing admin call (`POST /api/rollout`: advance, set,
/// pause, resume) is refused without the bearer token or with a wrong
/// one, also from loopback, and leaves the rollout where it was.
#[tokio::test]
async fn rollout_changes_need_the_token() {
    let s = state("webrtc:\n  ice:\n    rollout: {}\n");
    let app = router(s.clone());
    let before = s.hub().rollout.status();
    for body in [
        r#"{"action":"advance"}"#,
        r#"{"action":"set","stage":50}"#,
        r#"{"action":"pause"}"#,
        r#"{"action":"resume"}"#,
    ] {
        for auth in [None, Some("Bearer nope"), Some("Basic YWRtaW46YWRtaW4=")] {
            let mut h = vec![("content-type", "application/json")];
            if let Some(a) = auth {
                h.push(("authorization", a));
            }
            let r = call(&app, Method::POST, "/api/rollout", "127.0.0.1:1", &h, body).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{body} with {auth:?}");
        }
    }
    assert_eq!(s.hub().rollout.status(), before);
    // The same call with the token does change it.
    let r = admin(&app, r#"{"action":"advance"}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_ne!(s.hub().rollout.status(), before);
}

/// `/metrics` after successes, failures, STUN use and a rollback passes
/// `promtool check metrics` (Debian package `prometheus`).
#[tokio::test]
async fn metrics_pass_promtool() {
    let s = state("webrtc:\n  ice:\n    rollout:\n      stage: 50\n");
    let app = router(s.clone());
    let body = r#"[{"client_id":"a","success":true,"connect_ms":42,"local_candidate_type":"srflx","remote_candidate_type":"host","network_type":"nat"},
                   {"client_id":"b","success":false,"failure_reason":"timeout","network_type":"local"},
                   {"client_id":"c","success":true,"connect_ms":7,"local_candidate_type":"host","remote_candidate_type":"host","network_type":"local"}]"#;
    let r = call(
        &app,
        Method::POST,
        "/api/ice/outcomes",
        "10.0.0.1:1",
        &[("content-type", "application/json")],
        body,
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    for id in 0..10 {
        arm_of(&app, id, "10.0.0.1:1").await;
    }
    assert_eq!(
        admin(&app, r#"{"action":"rollback"}"#).await.status,
        StatusCode::OK
    );
    let om = call(
        &app,
        Method::GET,
        "/metrics",
        "127.0.0.1:1",
        &[("accept", "application/openmetrics-text; version=1.0.0")],
        "",
    )
    .await;
    assert!(
        om.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    assert!(om.body.ends_with("# EOF\n"));
    assert!(om.body.contains("# TYPE scream_ice_rollbacks counter\n"));
    let m = call(&app, Method::GET, "/metrics", "127.0.0.1:1", &[], "").await;
    assert!(
        m.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    assert!(
        m.body
            .contains("# TYPE scream_ice_rollbacks_total counter\n")
    );
    for want in [
        "# TYPE scream_ice_time_to_connect_seconds histogram",
        r#"scream_ice_connection_failures_total{arm="#,
        r#"scream_ice_stun_used_total{arm="#,
        "scream_ice_rollbacks_total 1",
        r#"scream_ice_rollout_state{state="rolled_back"} 1"#,
        "scream_ice_rollout_stage_percent 50",
        "scream_ice_rollout_treatment_percent 0",
        "scream_ice_outcomes_dropped_total 0",
    ] {
        assert!(m.body.contains(want), "{want} not in\n{}", m.body);
    }
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; .ci/run installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(m.body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        m.body
    );
}

/// `deploy/grafana-rollout.json` is valid JSON and every metric it queries
/// is one `/metrics` exposes.
#[tokio::test]
async fn grafana_dashboard_queries_existing_metrics() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/grafana-rollout.json"
    ))
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let s = state("webrtc:\n  ice:\n    rollout: {}\n");
    let app = router(s);
    let body =
        r#"{"client_id":"a","success":false,"failure_reason":"x","connect_ms":5,"stun_used":true}"#;
    call(
        &app,
        Method::POST,
        "/api/ice/outcomes",
        "10.0.0.1:1",
        &[("content-type", "application/json")],
        body,
    )
    .await;
    let body = r#"{"client_id":"a","success":true,"connect_ms":5}"#;
    call(
        &app,
        Method::POST,
        "/api/ice/outcomes",
        "10.0.0.1:1",
        &[("content-type", "application/json")],
        body,
    )
    .await;
    arm_of(&app, 1, "10.0.0.1:1").await;
    let m = call(&app, Method::GET, "/metrics", "127.0.0.1:1", &[], "")
        .await
        .body;
    let mut n = 0;
    for p in v["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("scream_ice_") {
                    assert!(
                        m.contains(&format!("\n{word}")),
                        "{word} (panel {}) not exposed",
                        p["title"]
                    );
                    n += 1;
                }
            }
        }
    }
    assert!(n >= 12, "{n}");
}
