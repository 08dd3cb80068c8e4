//! The HTTP server's accept loop and the checks every request passes before
//! the API sees it ([`HttpLimits`]):
//!
//! - connections: at most `max_connections` open, and at most
//!   `max_connections_per_client` from one client address; a connection
//!   over either cap is closed at accept, so one client holding hundreds
//!   open cannot keep the others out;
//! - timeouts: the request header must be complete within
//!   `header_timeout_ms` (hyper's header read timer; a half-sent request is
//!   closed then), the body within `body_timeout_ms`;
//! - body size: per route ([`body_limit`]), by `Content-Length` before
//!   reading (413) and while reading a chunked body;
//! - `Host`: an IP literal (of the listen address, or any when it listens on
//!   all addresses), `localhost`, or one of `allowed_hosts`; anything else
//!   gets 421, so a page on a rebinding DNS name cannot talk to the API;
//! - CORS: only `cors_origins` get `Access-Control-Allow-Origin` (tower-http
//!   `CorsLayer`); with none configured, no CORS headers are added.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::header::{CONTENT_LENGTH, HOST};
use axum::http::{HeaderValue, Method, Request, Response, StatusCode};
use axum::response::IntoResponse;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::ServiceExt;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::http::ConnAddrs;
use crate::limits::HttpLimits;

/// The largest body each route accepts, in bytes: trickle-ICE sdpfrag
/// bodies of the speaker sessions (a full fragment with 16 candidates is
/// under 2 KiB) get 16 KiB, a batch of outcomes 64 KiB, everything else
/// (GET, OPTIONS, DELETE and unknown routes) 1 KiB.
pub fn body_limit(method: &Method, path: &str) -> usize {
    match (method, path) {
        (&Method::POST | &Method::PATCH, p) if p.starts_with("/api/ice/sessions") => 16 * 1024,
        (&Method::POST, "/api/ice/outcomes") => 64 * 1024,
        _ => 1024,
    }
}

/// Whether `host` (a `Host` header value) names this server: an IP
/// literal equal to the listen address's (any IP literal when listening on
/// an unspecified address, which cannot be rebound: a page's origin is then
/// the IP itself), `localhost`, or one of `allowed` (case-insensitive, with
/// or without a port).
pub fn host_allowed(host: &str, listen: SocketAddr, allowed: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        // `[v6]` or `[v6]:port`
        Some(rest) => match rest.split_once(']') {
            Some((ip, tail)) if tail.is_empty() || tail.starts_with(':') => ip,
            _ => return false,
        },
        None => match host.rsplit_once(':') {
            Some((n, port)) if port.bytes().all(|b| b.is_ascii_digit()) => n,
            Some(_) => return false,
            None => host,
        },
    };
    if let Ok(ip) = name.parse::<IpAddr>() {
        return listen.ip().is_unspecified() || ip == listen.ip();
    }
    name.eq_ignore_ascii_case("localhost") || allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
}

/// Open connections, in total and per client address.
#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// One accepted connection's place; dropping it frees the place.
struct Slot {
    open: Arc<Mutex<Open>>,
    client: IpAddr,
}

impl Slot {
    /// A place for a connection from `client`, or `None` over a cap.
    fn take(open: &Arc<Mutex<Open>>, client: IpAddr, limits: &HttpLimits) -> Option<Slot> {
        let mut o = open.lock().unwrap_or_else(|e| e.into_inner());
        let mine = o.per_client.get(&client).copied().unwrap_or(0);
        if o.total >= limits.max_connections.get() as usize
            || mine >= limits.max_connections_per_client.get() as usize
        {
            return None;
        }
        o.total += 1;
        *o.per_client.entry(client).or_insert(0) += 1;
        Some(Slot {
            open: open.clone(),
            client,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut o = self.open.lock().unwrap_or_else(|e| e.into_inner());
        o.total = o.total.saturating_sub(1);
        if let Some(n) = o.per_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                o.per_client.remove(&self.client);
            }
        }
    }
}

/// `app` behind the configured CORS origins (none: `app` unchanged).
/// Origins that are not valid header values are skipped with a warning.
pub fn with_cors(app: Router, origins: &[String]) -> Router {
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| match HeaderValue::from_str(o) {
            Ok(v) => Some(v),
            Err(_) => {
                tracing::warn!("limits.http.cors_origins: {o:?} is not a valid origin, skipped");
                None
            }
        })
        .collect();
    if list.is_empty() {
        return app;
    }
    app.layer(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(list))
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PATCH,
                Method::DELETE,
                Method::OPTIONS,
            ])
            .allow_headers([
                axum::http::header::CONTENT_TYPE,
                axum::http::header::IF_MATCH,
                axum::http::header::AUTHORIZATION,
            ])
            .expose_headers([
                axum::http::header::LOCATION,
                axum::http::header::ETAG,
                axum::http::header::LINK,
            ]),
    )
}

/// The checks of one request before `app` sees it: `Host`, then the
/// route's body limit; the body is handed on capped and under its timeout.
async fn guarded(
    req: Request<hyper::body::Incoming>,
    app: Router,
    addrs: ConnAddrs,
    limits: Arc<HttpLimits>,
) -> Response<Body> {
    let host = req
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()));
    let listen = addrs.local;
    match host {
        Some(h) if host_allowed(&h, listen, &limits.allowed_hosts) => {}
        Some(h) => {
            tracing::debug!(client = %addrs.remote, "Host {h:?} refused");
            return (
                StatusCode::MISDIRECTED_REQUEST,
                "this server does not answer for that Host\n",
            )
                .into_response();
        }
        None => return (StatusCode::BAD_REQUEST, "a Host header is required\n").into_response(),
    }
    let limit = body_limit(req.method(), req.uri().path());
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("at most {limit} bytes on this route\n"),
        )
            .into_response();
    }
    let timeout = Duration::from_millis(u64::from(limits.body_timeout_ms.get()));
    let mut req = req.map(|body| {
        Body::new(http_body_util::Limited::new(
            tower_http::timeout::TimeoutBody::new(timeout, body),
            limit,
        ))
    });
    req.extensions_mut().insert(ConnectInfo(addrs));
    match app.oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

/// Serve `app` on `listener` under `limits` until `shutdown` resolves, then
/// let open connections finish their current request for at most `drain`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<()> {
    let app = with_cors(app, &limits.cors_origins);
    let limits = Arc::new(limits);
    let open = Arc::new(Mutex::new(Open::default()));
    let graceful = GracefulShutdown::new();
    let header_timeout = Duration::from_millis(u64::from(limits.header_timeout_ms.get()));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and similar: back off, keep serving.
                    tracing::warn!("http accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = Slot::take(&open, remote.ip(), &limits) else {
            tracing::debug!(client = %remote, "connection cap reached, closed");
            continue;
        };
        let local = stream
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let addrs = ConnAddrs { remote, local };
        let (app, limits) = (app.clone(), limits.clone());
        let service = hyper::service::service_fn(move |req| {
            let (app, limits) = (app.clone(), limits.clone());
            async move { Ok::<_, std::convert::Infallible>(guarded(req, app, addrs, limits).await) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = conn.await {
                tracing::debug!(client = %remote, "http connection: {e}");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::info!("open HTTP connections dropped after {drain:?}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let any: SocketAddr = "0.0.0.0:8188".parse().unwrap();
        let lo: SocketAddr = "127.0.0.1:8188".parse().unwrap();
        let names = vec!["Router.local".to_string()];
        for ok in [
            "192.168.1.2:8188",
            "192.168.1.2",
            "[fd00::1]:8188",
            "localhost:8188",
            "router.local",
            "ROUTER.LOCAL:80",
        ] {
            assert!(host_allowed(ok, any, &names), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8188",
            "router.local.evil.example",
            "[fd00::1",
            "192.168.1.2:http",
            "",
        ] {
            assert!(!host_allowed(bad, any, &names), "{bad}");
        }
        assert!(host_allowed("127.0.0.1:8188", lo, &[]));
        assert!(!host_allowed("192.168.1.2:8188", lo, &[]));
    }

    #[test]
    fn body_limits_per_route() {
        assert_eq!(body_limit(&Method::POST, "/api/ice/sessions"), 16 * 1024);
        assert_eq!(
            body_limit(&Method::PATCH, "/api/ice/sessions/abc"),
            16 * 1024
        );
        assert_eq!(body_limit(&Method::POST, "/api/ice/outcomes"), 64 * 1024);
        assert_eq!(body_limit(&Method::GET, "/api/ice-config"), 1024);
    }
}
