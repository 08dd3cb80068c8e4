//! `scream-ice report [--since DURATION] [--json]`: the seed's two
//! monitoring queries over the store, and its KPI targets against the
//! measured values, each marked met or not.
//!
//! KPIs (seed, "Success Metrics"): connection success above 99.5 % on
//! local networks and above 98 % for remote connections; connection time
//! below 2 s local and 5 s remote (the average over successful attempts
//! with a time, as the seed's query computes it); STUN dependency 0 % for
//! local connections and below 50 % overall. "Local" is `network_type =
//! 'local'`; every other network type counts as remote. A KPI with no
//! data is reported as `no data`, which is not met.

use std::time::Duration;

use serde::Serialize;

use crate::store::{ConfigRow, KpiRow, NetworkRow, Store, StoreError};

/// One KPI against its target.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Kpi {
    /// What is measured.
    pub name: &'static str,
    /// The target, as text (`> 99.5 %`).
    pub target: &'static str,
    /// The measured value, `None` without data.
    pub value: Option<f64>,
    /// The unit of `value`.
    pub unit: &'static str,
    /// Met.
    pub met: bool,
}

/// The whole report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// Rows after this Unix ms are counted.
    pub since_ms: i64,
    /// The first monitoring query.
    pub success_by_config: Vec<ConfigRow>,
    /// The second monitoring query.
    pub stun_by_network: Vec<NetworkRow>,
    /// The KPIs.
    pub kpis: Vec<Kpi>,
}

/// Parse `30s`, `15m`, `24h`, `7d` (a whole number and a unit).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("--since: expected a whole number with s, m, h or d (e.g. 24h): {s:?}");
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60).ok_or_else(bad)?,
        "h" => n.checked_mul(3600).ok_or_else(bad)?,
        "d" => n.checked_mul(86_400).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(secs))
}

fn kpi(
    name: &'static str,
    target: &'static str,
    unit: &'static str,
    value: Option<f64>,
    ok: impl Fn(f64) -> bool,
) -> Kpi {
    Kpi {
        name,
        target,
        value,
        unit,
        met: value.is_some_and(ok),
    }
}

/// The KPIs from the per-network figures.
pub fn kpis(rows: &[KpiRow], stun: &[NetworkRow]) -> Vec<Kpi> {
    let local: Vec<&KpiRow> = rows.iter().filter(|r| r.network_type == "local").collect();
    let remote: Vec<&KpiRow> = rows.iter().filter(|r| r.network_type != "local").collect();
    let rate = |rs: &[&KpiRow]| {
        let n: i64 = rs.iter().map(|r| r.attempts).sum();
        let s: i64 = rs.iter().map(|r| r.successes).sum();
        (n > 0).then(|| s as f64 * 100.0 / n as f64)
    };
    // Average over the groups, weighted by their successes (the attempts
    // that have a time).
    let avg = |rs: &[&KpiRow]| {
        let mut w = 0.0;
        let mut sum = 0.0;
        for r in rs {
            if let Some(a) = r.avg_time_ms {
                let weight = r.timed as f64;
                w += weight;
                sum += a * weight;
            }
        }
        (w > 0.0).then(|| sum / w / 1000.0)
    };
    let stun_local = stun
        .iter()
        .find(|r| r.network_type == "local")
        .map(|r| r.stun_percentage);
    let (n, s) = stun.iter().fold((0i64, 0i64), |(n, s), r| {
        (n + r.connections, s + r.stun_required)
    });
    let stun_all = (n > 0).then(|| s as f64 * 100.0 / n as f64);
    vec![
        kpi(
            "connection success, local",
            "> 99.5 %",
            "%",
            rate(&local),
            |v| v > 99.5,
        ),
        kpi(
            "connection success, remote",
            "> 98 %",
            "%",
            rate(&remote),
            |v| v > 98.0,
        ),
        kpi("connection time, local", "< 2 s", "s", avg(&local), |v| {
            v < 2.0
        }),
        kpi("connection time, remote", "< 5 s", "s", avg(&remote), |v| {
            v < 5.0
        }),
        kpi("STUN dependency, local", "0 %", "%", stun_local, |v| {
            v == 0.0
        }),
        kpi("STUN dependency, all", "< 50 %", "%", stun_all, |v| {
            v < 50.0
        }),
    ]
}

/// Run the queries for rows after `since_ms`.
pub async fn build(store: &Store, since_ms: i64) -> Result<Report, StoreError> {
    let success_by_config = store.success_by_config(since_ms).await?;
    let stun_by_network = store.stun_by_network(since_ms).await?;
    let rows = store.kpi_rows(since_ms).await?;
    Ok(Report {
        since_ms,
        kpis: kpis(&rows, &stun_by_network),
        success_by_config,
        stun_by_network,
    })
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.digits$}"))
}

impl Report {
    /// The human-readable form.
    pub fn text(&self) -> String {
        let mut o = String::new();
        o.push_str("Connection success rate by configuration type\n");
        o.push_str(&format!(
            "{:<16} {:>14} {:>12} {:>12} {:>13}\n",
            "config_type", "total_attempts", "successful", "avg_time_ms", "success_rate"
        ));
        for r in &self.success_by_config {
            o.push_str(&format!(
                "{:<16} {:>14} {:>12} {:>12} {:>12.3}%\n",
                r.config_type,
                r.total_attempts,
                r.successful,
                opt(r.avg_time_ms, 1),
                r.success_rate
            ));
        }
        o.push_str("\nSTUN server usage\n");
        o.push_str(&format!(
            "{:<16} {:>12} {:>14} {:>16}\n",
            "network_type", "connections", "stun_required", "stun_percentage"
        ));
        for r in &self.stun_by_network {
            o.push_str(&format!(
                "{:<16} {:>12} {:>14} {:>15.3}%\n",
                r.network_type, r.connections, r.stun_required, r.stun_percentage
            ));
        }
        o.push_str("\nKPI targets\n");
        for k in &self.kpis {
            o.push_str(&format!(
                "{:<28} target {:<9} measured {:>10}  {}\n",
                k.name,
                k.target,
                k.value
                    .map_or_else(|| "no data".to_string(), |v| format!("{v:.3} {}", k.unit)),
                if k.met { "met" } else { "NOT met" }
            ));
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("5w").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn kpis_marked() {
        let rows = [
            KpiRow {
                network_type: "local".into(),
                attempts: 1000,
                successes: 999,
                avg_time_ms: Some(40.0),
                timed: 999,
            },
            KpiRow {
                network_type: "nat".into(),
                attempts: 100,
                successes: 97,
                avg_time_ms: Some(6000.0),
                timed: 97,
            },
        ];
        let stun = [NetworkRow {
            network_type: "local".into(),
            connections: 1000,
            stun_required: 0,
            stun_percentage: 0.0,
        }];
        let k = kpis(&rows, &stun);
        let met: Vec<bool> = k.iter().map(|k| k.met).collect();
        assert_eq!(met, [true, false, true, false, true, true]);
        assert_eq!(k[1].value, Some(97.0));
    }
}
