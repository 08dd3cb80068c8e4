//! The HTTP API called in-process (`tower::ServiceExt::oneshot`), with the
//! connection's addresses set as axum's `ConnectInfo`.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use scream_ice_host::config::Config;
use scream_ice_host::http::{AppState, ConnAddrs, RtcConfigurationJson, router};
use tower::ServiceExt;

const OWN_STUN: &str = "0.0.0.0:3478";

fn state(yaml: &str) -> AppState {
    let config = Config::from_yaml("t.yaml", yaml).expect("valid config");
    AppState::new(config, Some(OWN_STUN.parse().unwrap()))
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn call(
    state: &AppState,
    method: Method,
    uri: &str,
    client: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut req = req.body(Body::empty()).unwrap();
    req.extensions_mut().insert(ConnectInfo(ConnAddrs {
        remote: client.parse::<SocketAddr>().unwrap(),
        local: "192.168.1.2:8188".parse().unwrap(),
    }));
    let resp = router(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

async fn ice_config(state: &AppState, client: &str, headers: &[(&str, &str)]) -> Reply {
    call(state, Method::GET, "/api/ice-config", client, headers).await
}

const SERVERS: &str = "\
webrtc:
  ice:
    stun_servers:
      - url: stun:stun1.example.org
      - url: stun:off.example.org
        enabled: false
    turn_servers:
      - url: turn:turn.example.org?transport=udp
        username: speaker
        credential: 'se\"cret'
";

#[tokio::test]
async fn lan_client_in_auto_mode_gets_no_server() {
    let s = state("");
    let r = ice_config(&s, "192.168.1.20:50000", &[("host", "192.168.1.2:8188")]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, r#"{"iceServers":[],"iceTransportPolicy":"all"}"#);
    assert_eq!(r.headers["cache-control"], "no-store");
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.headers["x-scream-ice-network"], "local");
    // Same with servers configured: a LAN peer never waits on them.
    let r = ice_config(&state(SERVERS), "192.168.1.20:50000", &[]).await;
    assert_eq!(r.body, r#"{"iceServers":[],"iceTransportPolicy":"all"}"#);
}

#[tokio::test]
async fn remote_client_gets_our_stun_responder_at_the_host_it_used() {
    let s = state("");
    let r = ice_config(
        &s,
        "81.2.69.160:40000",
        &[("host", "router.example.net:8188")],
    )
    .await;
    assert_eq!(r.headers["x-scream-ice-network"], "nat");
    assert_eq!(
        r.body,
        r#"{"iceServers":[{"urls":["stun:router.example.net:3478"]}],"iceTransportPolicy":"all"}"#
    );
    // No usable Host header: our address on the connection.
    let r = ice_config(&s, "81.2.69.160:40000", &[("host", "bad host!")]).await;
    assert!(
        r.body.contains(r#""urls":["stun:192.168.1.2:3478"]"#),
        "{}",
        r.body
    );
    // IPv6 Host header keeps its brackets.
    let r = ice_config(&s, "[2001:db8::1]:40000", &[("host", "[2001:db8::2]:8188")]).await;
    assert!(
        r.body.contains(r#""urls":["stun:[2001:db8::2]:3478"]"#),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn remote_client_gets_configured_stun_and_turn() {
    let s = state(SERVERS);
    let r = ice_config(&s, "81.2.69.160:40000", &[("host", "192.0.2.10:8188")]).await;
    let json: RtcConfigurationJson = serde_json::from_str(&r.body).unwrap();
    assert_eq!(json.ice_transport_policy, "all");
    // The configured TURN server has static credentials: withheld from this
    // unauthenticated endpoint (admission::withhold_static_turn).
    assert_eq!(json.ice_servers.len(), 1, "{}", r.body);
    assert_eq!(
        json.ice_servers[0].urls,
        ["stun:stun1.example.org", "stun:192.0.2.10:3478"]
    );
    assert_eq!(json.ice_servers[0].username, None);
    assert!(!r.body.contains("se\\\"cret"), "{}", r.body);
    // An unknown peer (auto): STUN but no TURN.
    let r = ice_config(&s, "0.0.0.0:40000", &[("host", "192.0.2.10:8188")]).await;
    let json: RtcConfigurationJson = serde_json::from_str(&r.body).unwrap();
    assert_eq!(json.ice_servers.len(), 1);
    assert_eq!(r.headers["x-scream-ice-network"], "unknown");
}

#[tokio::test]
async fn stage_query_widens_and_bad_stage_is_400() {
    let s = state(SERVERS);
    let r = call(
        &s,
        Method::GET,
        "/api/ice-config?stage=with-stun",
        "192.168.1.20:1",
        &[("host", "192.168.1.2")],
    )
    .await;
    let json: RtcConfigurationJson = serde_json::from_str(&r.body).unwrap();
    assert_eq!(json.ice_servers.len(), 1, "{}", r.body);
    assert_eq!(r.headers["x-scream-ice-stage"], "with-stun");
    let r = call(
        &s,
        Method::GET,
        "/api/ice-config?stage=full",
        "192.168.1.20:1",
        &[],
    )
    .await;
    let json: RtcConfigurationJson = serde_json::from_str(&r.body).unwrap();
    // The full stage adds TURN, whose static credentials this endpoint
    // withholds (admission::withhold_static_turn): still only STUN here.
    assert_eq!(json.ice_servers.len(), 1, "{}", r.body);
    assert_eq!(r.headers["x-scream-ice-stage"], "full");
    let r = call(
        &s,
        Method::GET,
        "/api/ice-config?stage=max",
        "192.168.1.20:1",
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body.lines().count(), 1);
}

#[tokio::test]
async fn local_only_mode_never_offers_a_server() {
    let s = state(
        "webrtc:\n  ice:\n    mode: local-only\n    stun_servers: [{url: 'stun:a.example'}]\n",
    );
    for stage in ["local-only", "with-stun", "full"] {
        let r = call(
            &s,
            Method::GET,
            &format!("/api/ice-config?stage={stage}"),
            "81.2.69.160:1",
            &[],
        )
        .await;
        assert_eq!(r.body, r#"{"iceServers":[],"iceTransportPolicy":"all"}"#);
    }
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let untrusted = state("");
    // A LAN client cannot make itself remote (or vice versa) by a header.
    let r = ice_config(
        &untrusted,
        "127.0.0.1:1",
        &[("x-forwarded-for", "81.2.69.160")],
    )
    .await;
    assert_eq!(r.headers["x-scream-ice-network"], "local");
    let trusted = state("server:\n  trusted_proxies: ['127.0.0.0/8', '10.0.0.0/8']\n");
    let r = ice_config(
        &trusted,
        "127.0.0.1:1",
        &[("x-forwarded-for", "81.2.69.160")],
    )
    .await;
    assert_eq!(r.headers["x-scream-ice-network"], "nat");
    // Right-most untrusted entry wins; a forged left entry is ignored.
    let r = ice_config(
        &trusted,
        "127.0.0.1:1",
        &[("x-forwarded-for", "192.168.1.5, 81.2.69.160, 10.1.2.3")],
    )
    .await;
    assert_eq!(r.headers["x-scream-ice-network"], "nat");
    let r = ice_config(
        &trusted,
        "127.0.0.1:1",
        &[("x-forwarded-for", "81.2.69.160, 192.168.1.5")],
    )
    .await;
    assert_eq!(r.headers["x-scream-ice-network"], "local");
}

#[tokio::test]
async fn whep_options_sends_rfc9725_link_headers() {
    let s = state(SERVERS);
    let r = call(
        &s,
        Method::OPTIONS,
        "/api/whep/living-room",
        "81.2.69.160:40000",
        &[("host", "192.0.2.10")],
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let links: Vec<&str> = r
        .headers
        .get_all("link")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        links,
        [
            r#"<stun:stun1.example.org>; rel="ice-server""#,
            r#"<stun:192.0.2.10:3478>; rel="ice-server""#,
            // No TURN: its static credentials go to admitted sessions only.
        ]
    );
    assert_eq!(r.headers["access-control-expose-headers"], "Link");
    assert_eq!(r.headers["access-control-allow-methods"], "OPTIONS");
    assert_eq!(r.headers["cache-control"], "no-store");
    // LAN client: no Link header at all.
    let r = call(
        &s,
        Method::OPTIONS,
        "/api/whep/living-room",
        "192.168.1.20:1",
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.headers.get("link").is_none());
    assert_eq!(r.headers["access-control-expose-headers"], "Link");
}

#[tokio::test]
async fn whep_post_is_not_registered_but_sessions_are() {
    let s = state("");
    let r = call(
        &s,
        Method::POST,
        "/api/whep/living-room",
        "192.168.1.20:1",
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    // The session endpoint exists (and wants an sdpfrag).
    let r = call(&s, Method::POST, "/api/ice/sessions", "192.168.1.20:1", &[]).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn own_stun_not_advertised_when_off() {
    let config = Config::from_yaml("t.yaml", "server:\n  advertise_own_stun: false\n").unwrap();
    let s = AppState::new(config, None);
    let r = ice_config(&s, "81.2.69.160:1", &[]).await;
    assert_eq!(r.body, r#"{"iceServers":[],"iceTransportPolicy":"all"}"#);
}
