//! Shared by the rollout/store tests: a PostgreSQL database of their own,
//! temp dirs, deterministic outcome rows.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use scream_ice_host::store::OutcomeRow;
use sqlx::Connection;

/// The server `.ci/run` starts (`pg_ctlcluster 15 main start`), with the
/// `scream_ice` role it creates; `SCREAM_ICE_TEST_PG` overrides it.
pub fn pg_admin_url() -> String {
    std::env::var("SCREAM_ICE_TEST_PG")
        .unwrap_or_else(|_| "postgres://scream_ice:scream_ice@127.0.0.1:5432/postgres".to_string())
}

static N: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

/// A fresh database on the test server; its URL. Fails the test if the
/// server is not reachable (never skips).
pub async fn pg_database(prefix: &str) -> String {
    sqlx::any::install_default_drivers();
    let admin = pg_admin_url();
    let name = unique(prefix);
    let mut c = sqlx::AnyConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin}: {e} (.ci/run starts it)"));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut c)
        .await
        .unwrap();
    let base = admin.rsplit_once('/').unwrap().0;
    format!("{base}/{name}")
}

/// A fresh temp dir.
pub fn temp_dir(prefix: &str) -> PathBuf {
    let d = std::env::temp_dir().join(unique(prefix));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// splitmix64.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// True with probability ppm / 10^6.
    pub fn chance(&mut self, ppm: u64) -> bool {
        self.next() % 1_000_000 < ppm
    }
}

/// `n` deterministic rows with timestamps spread over the last 48 h
/// before `now_ms`.
pub fn rows(n: usize, seed: u64, now_ms: i64) -> Vec<OutcomeRow> {
    let mut r = Rng(seed);
    (0..n)
        .map(|i| {
            let local = r.chance(700_000);
            let smart = r.chance(300_000);
            let success = r.chance(if smart { 990_000 } else { 970_000 });
            let stun = !local || r.chance(20_000);
            OutcomeRow {
                timestamp_ms: now_ms - (r.next() % (48 * 3_600_000)) as i64,
                client_id: format!("c{i}"),
                router_id: "test".to_string(),
                experiment: "exp".to_string(),
                stage: 25,
                arm: if smart { "treatment" } else { "control" }.to_string(),
                config_type: if smart { "smart" } else { "legacy" }.to_string(),
                mode: if smart { "auto" } else { "legacy" }.to_string(),
                success,
                connection_time_ms: success.then(|| (r.next() % 3000) as i64),
                failure_reason: (!success).then(|| "timeout".to_string()),
                local_candidate_type: Some(if stun { "srflx" } else { "host" }.to_string()),
                remote_candidate_type: Some("host".to_string()),
                stun_used: stun,
                network_type: if local { "local" } else { "nat" }.to_string(),
                source: "browser".to_string(),
            }
        })
        .collect()
}
