//! `GET /dashboard`: the seed's `MigrationMetrics` at a glance, drawn by
//! the daemon as one HTML page with inline SVG charts (no script, no CDN,
//! nothing fetched: everything is in the page, so it works on a router
//! with no internet).
//!
//! Served to the admin token or to a loopback client
//! ([`crate::auth::AdminOrLoopback`]). It reads the last 24 h from the
//! store: connections per arm, success rate per arm against the stage's
//! threshold line (over time, hourly), average and p95 time to connect,
//! local vs STUN-required connections, failure reasons, the stage, the
//! monitor's last decision and any rollback, and the seed's KPIs against
//! their targets. Every figure also sits in an element with an `id` (for
//! example `#treatment-attempts`), which the Chromium test reads back.

use std::fmt::Write;

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::auth::AdminOrLoopback;
use crate::http::AppState;
use crate::store::{ArmSummary, StoreError};

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

/// HTML-escape.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn pct(n: i64, d: i64) -> Option<f64> {
    (d > 0).then(|| n as f64 * 100.0 / d as f64)
}

fn fmt_opt(v: Option<f64>, digits: usize, unit: &str) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{v:.digits$}{unit}"))
}

const ARM_COLOURS: [(&str, &str); 2] = [("control", "#8a8f98"), ("treatment", "#1f77b4")];

fn colour(arm: &str) -> &'static str {
    ARM_COLOURS
        .iter()
        .find(|(a, _)| *a == arm)
        .map_or("#999", |(_, c)| c)
}

/// A line chart of the failure rate per arm per hour, with the stage's
/// threshold as a dashed red line. `points`: (hour index 0..24, arm,
/// attempts, failures).
fn failure_chart(points: &[(usize, String, i64, i64)], threshold_pct: Option<f64>) -> String {
    let (w, h, pad) = (720.0, 220.0, 40.0);
    let mut max: f64 = threshold_pct.unwrap_or(1.0) * 2.0;
    for (_, _, n, f) in points {
        if *n > 0 {
            max = max.max(*f as f64 * 100.0 / *n as f64);
        }
    }
    let max = (max * 1.1).max(0.5);
    let x = |i: usize| pad + (w - 2.0 * pad) * i as f64 / 23.0;
    let y = |v: f64| h - pad - (h - 2.0 * pad) * v / max;
    let mut s = format!(
        r##"<svg id="failure-chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="failure rate per arm per hour"><rect width="{w}" height="{h}" fill="#fff"/>"##
    );
    for k in 0..=4 {
        let v = max * f64::from(k) / 4.0;
        let _ = write!(
            s,
            r##"<line x1="{pad}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/><text x="4" y="{:.1}" font-size="11" fill="#666">{v:.1}%</text>"##,
            w - pad,
            y(v) + 4.0,
            y = y(v)
        );
    }
    let _ = write!(
        s,
        r##"<text x="{pad}" y="{}" font-size="11" fill="#666">24 h ago</text><text x="{}" y="{}" font-size="11" fill="#666" text-anchor="end">now</text>"##,
        h - 10.0,
        w - pad,
        h - 10.0
    );
    if let Some(t) = threshold_pct {
        let _ = write!(
            s,
            r##"<line id="threshold-line" x1="{pad}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#d62728" stroke-dasharray="6 4"/><text x="{}" y="{:.1}" font-size="11" fill="#d62728" text-anchor="end">rollback threshold {t}%</text>"##,
            w - pad,
            w - pad,
            y(t) - 4.0,
            y = y(t)
        );
    }
    for (arm, c) in ARM_COLOURS {
        let pts: Vec<String> = points
            .iter()
            .filter(|(_, a, n, _)| a == arm && *n > 0)
            .map(|(i, _, n, f)| format!("{:.1},{:.1}", x(*i), y(*f as f64 * 100.0 / *n as f64)))
            .collect();
        if pts.is_empty() {
            continue;
        }
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2.5" points="{}"/>"#,
            pts.join(" ")
        );
        for p in &pts {
            let (px, py) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = write!(s, r#"<circle cx="{px}" cy="{py}" r="3" fill="{c}"/>"#);
        }
    }
    s.push_str("</svg>");
    s
}

/// Horizontal bars: (label, value, colour).
fn bars(id: &str, rows: &[(String, f64, &str)], unit: &str) -> String {
    let max = rows.iter().map(|r| r.1).fold(0.0, f64::max).max(1e-9);
    let (w, row_h) = (520.0, 26.0);
    let h = row_h * rows.len().max(1) as f64 + 8.0;
    let mut s =
        format!(r#"<svg id="{id}" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img">"#);
    for (i, (label, v, c)) in rows.iter().enumerate() {
        let y = 4.0 + row_h * i as f64;
        let bw = (w - 200.0) * v / max;
        let _ = write!(
            s,
            r##"<text x="0" y="{:.1}" font-size="12" fill="#333">{}</text><rect x="150" y="{y:.1}" width="{bw:.1}" height="{:.1}" fill="{c}"/><text x="{:.1}" y="{:.1}" font-size="12" fill="#333">{}</text>"##,
            y + 15.0,
            esc(label),
            row_h - 8.0,
            156.0 + bw,
            y + 15.0,
            if unit == "%" {
                format!("{v:.2}%")
            } else {
                format!("{v:.0}{unit}")
            }
        );
    }
    if rows.is_empty() {
        s.push_str(r##"<text x="0" y="18" font-size="12" fill="#666">none</text>"##);
    }
    s.push_str("</svg>");
    s
}

/// The page, from the store.
pub async fn render(state: &AppState) -> Result<String, StoreError> {
    let hub = state.hub();
    let now = crate::rollout::now_ms();
    let since = now - DAY_MS;
    let ro = crate::rollout_api::rollout_json(state);
    let threshold_pct = ro.threshold_ppm.map(|p| f64::from(p) / 10_000.0);
    let (arms, reasons, timeline, report) = match hub.store() {
        Some(store) => (
            store.arm_summary(since).await?,
            store.failure_reasons(since).await?,
            store.timeline(now - 24 * HOUR_MS, HOUR_MS).await?,
            Some(crate::report::build(store, since).await?),
        ),
        None => (Vec::new(), Vec::new(), Vec::new(), None),
    };
    let first_hour = (now - 24 * HOUR_MS) / HOUR_MS;
    let points: Vec<(usize, String, i64, i64)> = timeline
        .into_iter()
        .map(|(b, arm, n, f)| {
            (
                ((b / HOUR_MS - first_hour).clamp(0, 23)) as usize,
                arm,
                n,
                f,
            )
        })
        .collect();
    let get = |arm: &str| arms.iter().find(|a| a.arm == arm).cloned();
    let empty = |arm: &str| ArmSummary {
        arm: arm.to_string(),
        attempts: 0,
        successes: 0,
        avg_time_ms: None,
        p95_time_ms: None,
        local: 0,
        stun_required: 0,
    };
    let t = get("treatment").unwrap_or_else(|| empty("treatment"));
    let c = get("control").unwrap_or_else(|| empty("control"));
    let total = t.attempts + c.attempts;
    let stun = t.stun_required + c.stun_required;

    let mut h = String::new();
    h.push_str(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>scream-ice rollout</title><style>
body{font-family:system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:20px;margin:0 0 8px}h2{font-size:15px;margin:24px 0 8px}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px 14px;min-width:150px}
.card b{display:block;font-size:22px}.small{color:#666;font-size:12px}
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #ddd;padding:4px 8px;font-size:13px;text-align:left}
.met{color:#2ca02c;font-weight:bold}.not{color:#d62728;font-weight:bold}
.banner{background:#d62728;color:#fff;padding:10px 14px;border-radius:6px;margin:8px 0}.warn{background:#ff9f1a;color:#222;padding:8px 12px;border-radius:6px}
</style></head><body>"#,
    );
    let _ = write!(
        h,
        r#"<h1>scream-ice rollout: <span id="experiment">{}</span></h1><div class="small">router {} · last 24 h · generated at {}</div>"#,
        esc(ro
            .experiment
            .as_deref()
            .unwrap_or("no experiment configured")),
        esc(&ro.router_id),
        now
    );
    if let Some(from) = ro.status.as_ref().and_then(|s| s.rolled_back_from) {
        let _ = write!(
            h,
            r#"<div class="banner" id="rollback-banner">ROLLED BACK from {from} %: every client gets legacy ICE until an operator restarts the rollout.</div>"#
        );
    }
    if let Some(w) = &ro.srm_warning {
        let _ = write!(h, r#"<div class="warn" id="srm-warning">{}</div>"#, esc(w));
    }
    let stage = ro.status.as_ref().map_or(100, |s| s.stage);
    let _ = write!(
        h,
        r#"<div class="cards">
<div class="card">stage<b id="stage">{stage}</b><span class="small">% of clients get smart ICE; state <span id="state">{}</span>, in force <span id="treatment-percent">{}</span> %</span></div>
<div class="card">connections<b id="total-attempts">{total}</b><span class="small">smart <span id="treatment-attempts">{}</span> · legacy <span id="control-attempts">{}</span></span></div>
<div class="card">success, smart<b id="treatment-success">{}</b><span class="small">legacy <span id="control-success">{}</span>; threshold failure <span id="threshold">{}</span></span></div>
<div class="card">connect time, smart<b id="treatment-avg">{}</b><span class="small">p95 <span id="treatment-p95">{}</span>; legacy avg <span id="control-avg">{}</span>, p95 <span id="control-p95">{}</span></span></div>
<div class="card">local network<b id="local-connections">{}</b><span class="small">STUN required <span id="stun-connections">{stun}</span></span></div>
</div>"#,
        ro.state,
        ro.treatment_percent,
        t.attempts,
        c.attempts,
        fmt_opt(pct(t.successes, t.attempts), 2, " %"),
        fmt_opt(pct(c.successes, c.attempts), 2, " %"),
        fmt_opt(threshold_pct, 2, " %"),
        fmt_opt(t.avg_time_ms, 0, " ms"),
        t.p95_time_ms
            .map_or_else(|| "–".to_string(), |v| format!("{v} ms")),
        fmt_opt(c.avg_time_ms, 0, " ms"),
        c.p95_time_ms
            .map_or_else(|| "–".to_string(), |v| format!("{v} ms")),
        t.local + c.local,
    );
    h.push_str("<h2>Failure rate per arm, hourly, against the stage's rollback threshold</h2>");
    h.push_str(r##"<div class="small"><span style="color:#1f77b4">■ smart (treatment)</span> <span style="color:#8a8f98">■ legacy (control)</span></div>"##);
    h.push_str(&failure_chart(&points, threshold_pct));
    h.push_str("<h2>Connections per arm</h2>");
    h.push_str(&bars(
        "arms-chart",
        &[
            ("smart".to_string(), t.attempts as f64, colour("treatment")),
            ("legacy".to_string(), c.attempts as f64, colour("control")),
        ],
        "",
    ));
    h.push_str("<h2>Local vs STUN-required connections</h2>");
    h.push_str(&bars(
        "stun-chart",
        &[
            (
                "local network".to_string(),
                (t.local + c.local) as f64,
                "#2ca02c",
            ),
            ("STUN required".to_string(), stun as f64, "#ff7f0e"),
        ],
        "",
    ));
    h.push_str("<h2>Failure reasons</h2>");
    let reason_rows: Vec<(String, f64, &str)> = reasons
        .iter()
        .map(|(r, n)| (r.clone(), *n as f64, "#d62728"))
        .collect();
    h.push_str(&bars("reasons-chart", &reason_rows, ""));
    h.push_str(r#"<table id="failure-reasons"><tr><th>reason</th><th>count</th></tr>"#);
    for (r, n) in &reasons {
        let _ = write!(
            h,
            r#"<tr><td>{}</td><td class="count">{n}</td></tr>"#,
            esc(r)
        );
    }
    h.push_str("</table>");
    h.push_str("<h2>Monitor</h2>");
    match &ro.last_decision {
        Some(d) => {
            let _ = write!(
                h,
                r#"<p id="last-decision"><b id="verdict">{}</b> at stage {} % by {}: treatment {} attempts, {} failures (lower bound {} ppm), threshold {} ppm, control {} attempts, {} failures (upper bound {} ppm)</p>"#,
                esc(&d.verdict),
                d.stage,
                esc(&d.router_id),
                d.treatment_n,
                d.treatment_failures,
                d.treatment_lower_ppm,
                d.threshold_ppm,
                d.control_n,
                d.control_failures,
                d.control_upper_ppm
            );
        }
        None => h.push_str(r#"<p id="last-decision"><b id="verdict">no decision yet</b></p>"#),
    }
    h.push_str("<h2>KPI targets</h2><table id=\"kpis\"><tr><th>KPI</th><th>target</th><th>measured</th><th></th></tr>");
    if let Some(r) = &report {
        for k in &r.kpis {
            let _ = write!(
                h,
                r#"<tr><td>{}</td><td>{}</td><td>{}</td><td class="{}">{}</td></tr>"#,
                esc(k.name),
                esc(k.target),
                k.value
                    .map_or_else(|| "no data".to_string(), |v| format!("{v:.3} {}", k.unit)),
                if k.met { "met" } else { "not" },
                if k.met { "met" } else { "not met" }
            );
        }
    }
    h.push_str("</table></body></html>");
    Ok(h)
}

/// `GET /dashboard`.
pub async fn dashboard(_: AdminOrLoopback, State(state): State<AppState>) -> Response {
    match render(&state).await {
        Ok(html) => {
            let mut r = html.into_response();
            let hd = r.headers_mut();
            hd.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            hd.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            // Nothing to load from anywhere: inline style only, no script.
            hd.insert(
                CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
                ),
            );
            r
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}\n")).into_response(),
    }
}
