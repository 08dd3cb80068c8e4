//! The outcome store: SQLite in the data dir by default, PostgreSQL when
//! `store.url: postgres://...` is set, through one code path (`sqlx::Any`).
//!
//! Sits behind the outcome queue ([`crate::outcomes`]): the writer task
//! hands it batches ([`Store::insert_batch`], one transaction, multi-row
//! `INSERT`s), the rollback monitor ([`crate::rollout_monitor`]) reads the
//! per-arm counts of the current stage and keeps the shared rollout state
//! and its decisions here, and `scream-ice report` runs the seed's two
//! monitoring queries ([`Store::success_by_config`],
//! [`Store::stun_by_network`]).
//!
//! # Schema
//!
//! Both backends get the same tables from their own migration
//! (`host/migrations/{sqlite,postgres}/`, applied by `sqlx`'s migrator):
//! `connection_attempts` and `connection_metrics` (one row each per
//! outcome; the seed's column names; `timestamp` is Unix milliseconds as a
//! 64-bit integer on both), `rollout_state` (one row per experiment) and
//! `rollout_decisions` (the monitor's log). Booleans are `BOOLEAN` on
//! PostgreSQL and `INTEGER` 0/1 on SQLite, so the seed's `success = true`
//! works on both. Every aggregate is cast to `DOUBLE PRECISION` so both
//! backends return the same type.
//!
//! SQLite runs in WAL mode with `synchronous = NORMAL` (a crash may lose
//! the last transactions, never corrupt the file), a 5 s busy timeout and
//! a 32 MiB page cache per connection (the default 2 MiB made batched
//! writes spill pages to the file and read them back).

use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

use scream_ice_core::rollout::ArmCounts;
use serde::{Deserialize, Serialize};
use serde_saphyr::{Location, Spanned};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, AssertSqlSafe, Executor, Row, SqlSafeStr};

use crate::config::{LocatedError, Origin};
use crate::rollout::RolloutStatus;

/// Default capacity of the outcome queue (outcomes waiting for the store).
pub const DEFAULT_QUEUE_CAPACITY: usize = 100_000;
/// Default largest batch one transaction writes.
pub const DEFAULT_BATCH: usize = 2_000;
/// The SQLite file in the data dir.
pub const SQLITE_FILE: &str = "scream-ice.sqlite3";

/// `store`: where outcomes go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// `url`: `postgres://...` or `sqlite://...`; `None` = SQLite in the
    /// data dir.
    pub url: Option<String>,
    /// `queue_capacity`: outcomes buffered while the database is slow or
    /// away; beyond it they are dropped and counted.
    pub queue_capacity: usize,
    /// `batch`: outcomes per transaction, at most.
    pub batch: usize,
    /// `rate_per_client`: outcomes per second one client address may post.
    pub rate_per_client: u32,
    /// `burst_per_client`: outcomes one client may post at once.
    pub burst_per_client: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: None,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            batch: DEFAULT_BATCH,
            rate_per_client: crate::rollout::DEFAULT_OUTCOME_RATE,
            burst_per_client: crate::rollout::DEFAULT_OUTCOME_BURST,
        }
    }
}

/// The YAML form of `store`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileStore {
    #[serde(default)]
    url: Option<Spanned<String>>,
    #[serde(default)]
    queue_capacity: Option<Spanned<usize>>,
    #[serde(default)]
    batch: Option<Spanned<usize>>,
    #[serde(default)]
    rate_per_client: Option<Spanned<u32>>,
    #[serde(default)]
    burst_per_client: Option<Spanned<u32>>,
}

/// Fold the YAML `store` section over the defaults.
pub(crate) fn fold_store(
    file: FileStore,
    at: &dyn Fn(&Location) -> Origin,
    errors: &mut Vec<LocatedError>,
) -> StoreConfig {
    let mut c = StoreConfig::default();
    if let Some(u) = file.url {
        if u.value.starts_with("postgres://")
            || u.value.starts_with("postgresql://")
            || u.value.starts_with("sqlite:")
        {
            c.url = Some(u.value);
        } else {
            errors.push(LocatedError::new(
                at(&u.referenced),
                "store.url: expected postgres://... or sqlite:...",
            ));
        }
    }
    if let Some(v) = file.queue_capacity {
        if (1..=10_000_000).contains(&v.value) {
            c.queue_capacity = v.value;
        } else {
            errors.push(LocatedError::new(
                at(&v.referenced),
                "store.queue_capacity: 1..=10000000",
            ));
        }
    }
    if let Some(v) = file.batch {
        if (1..=MAX_BATCH).contains(&v.value) {
            c.batch = v.value;
        } else {
            errors.push(LocatedError::new(
                at(&v.referenced),
                format!("store.batch: 1..={MAX_BATCH}"),
            ));
        }
    }
    for (key, v, dst) in [
        (
            "rate_per_client",
            file.rate_per_client,
            &mut c.rate_per_client,
        ),
        (
            "burst_per_client",
            file.burst_per_client,
            &mut c.burst_per_client,
        ),
    ] {
        if let Some(v) = v {
            if v.value >= 1 {
                *dst = v.value;
            } else {
                errors.push(LocatedError::new(
                    at(&v.referenced),
                    format!("store.{key}: at least 1"),
                ));
            }
        }
    }
    c
}

/// The largest batch: 2,000 rows of 16 parameters stay below SQLite's
/// 32,766 bound parameters per statement.
pub const MAX_BATCH: usize = 2_000;

/// Why the store failed; one line each.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Connecting, a query or a migration failed.
    #[error("{0}")]
    Sql(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The data dir could not be created.
    #[error("cannot create {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Which database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// SQLite (one router).
    Sqlite,
    /// PostgreSQL (a fleet).
    Postgres,
}

/// One connection outcome, as both tables store it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutcomeRow {
    /// Unix ms.
    pub timestamp_ms: i64,
    /// The client's identity (its `client_id` or IP).
    pub client_id: String,
    /// The router that recorded it.
    pub router_id: String,
    /// The experiment name (empty without a rollout).
    pub experiment: String,
    /// The treatment share in force, percent.
    pub stage: i64,
    /// `control` or `treatment`: the arm the server assigned.
    pub arm: String,
    /// What the client says it used (the seed's `config_type`); the
    /// assigned arm's `legacy`/`smart` when it says nothing.
    pub config_type: String,
    /// The mode the server gave (`legacy`, `auto`, ...).
    pub mode: String,
    /// Connected.
    pub success: bool,
    /// Time to connect, ms.
    pub connection_time_ms: Option<i64>,
    /// Why it failed.
    pub failure_reason: Option<String>,
    /// The selected pair's local candidate type.
    pub local_candidate_type: Option<String>,
    /// The selected pair's remote candidate type.
    pub remote_candidate_type: Option<String>,
    /// A STUN (or TURN) server was needed for the selected pair.
    pub stun_used: bool,
    /// `local`, `remote`, ... (what the client or the policy says).
    pub network_type: String,
    /// `browser` or `speaker`.
    pub source: String,
}

/// One row of the seed's first monitoring query.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConfigRow {
    /// `config_type`.
    pub config_type: String,
    /// `total_attempts`.
    pub total_attempts: i64,
    /// `successful`.
    pub successful: i64,
    /// `avg_time_ms` (over attempts with a time), `None` if none had one.
    pub avg_time_ms: Option<f64>,
    /// `success_rate`, percent.
    pub success_rate: f64,
}

/// One row of the seed's second monitoring query.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NetworkRow {
    /// `network_type`.
    pub network_type: String,
    /// `connections`.
    pub connections: i64,
    /// `stun_required`.
    pub stun_required: i64,
    /// `stun_percentage`.
    pub stun_percentage: f64,
}

/// One decision of the rollback monitor, as logged in `rollout_decisions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRow {
    /// Unix ms.
    pub timestamp_ms: i64,
    /// The router that decided.
    pub router_id: String,
    /// Stage, percent.
    pub stage: i64,
    /// `keep_going`, `insufficient_data`, `not_worse_than_control` or
    /// `roll_back`.
    pub verdict: String,
    /// Treatment attempts.
    pub treatment_n: i64,
    /// Treatment failures.
    pub treatment_failures: i64,
    /// Control attempts.
    pub control_n: i64,
    /// Control failures.
    pub control_failures: i64,
    /// Treatment failure rate, Wilson lower bound, ppm.
    pub treatment_lower_ppm: i64,
    /// Control failure rate, Wilson upper bound, ppm (-1 if no control).
    pub control_upper_ppm: i64,
    /// The stage's threshold, ppm.
    pub threshold_ppm: i64,
    /// The verdict's text.
    pub detail: String,
}

fn migration(version: i64, name: &'static str, sql: &'static str) -> Migration {
    Migration::new(
        version,
        Cow::Borrowed(name),
        MigrationType::Simple,
        sql.into_sql_str(),
        false,
    )
}

fn migrator(backend: Backend) -> Migrator {
    Migrator::with_migrations(match backend {
        Backend::Sqlite => vec![
            migration(
                1,
                "outcomes and rollout",
                include_str!("../migrations/sqlite/0001_init.sql"),
            ),
            migration(
                2,
                "covering indexes",
                include_str!("../migrations/sqlite/0002_covering_indexes.sql"),
            ),
            migration(
                3,
                "hourly rollups",
                include_str!("../migrations/sqlite/0003_hourly_rollups.sql"),
            ),
        ],
        Backend::Postgres => vec![
            migration(
                1,
                "outcomes and rollout",
                include_str!("../migrations/postgres/0001_init.sql"),
            ),
            migration(
                2,
                "covering indexes",
                include_str!("../migrations/postgres/0002_covering_indexes.sql"),
            ),
            migration(
                3,
                "hourly rollups",
                include_str!("../migrations/postgres/0003_hourly_rollups.sql"),
            ),
        ],
    })
}

/// The database handle; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    url: String,
}

/// `connection_attempts` over `timestamp > $1` as rows of (config_type,
/// network_type, n, ok, timed, tsum): whole hours from `attempts_hourly`
/// (`hour >= $2`), the partial first hour from the raw rows.
macro_rules! attempts_window {
    () => {
        "SELECT config_type, network_type, attempts AS n, successes AS ok, timed, time_sum_ms AS tsum \
         FROM attempts_hourly WHERE hour >= $2 \
         UNION ALL \
         SELECT config_type, network_type, 1, CASE WHEN success = true THEN 1 ELSE 0 END, \
           CASE WHEN connection_time_ms IS NULL THEN 0 ELSE 1 END, connection_time_ms \
         FROM connection_attempts WHERE timestamp > $1 AND timestamp < $2"
    };
}

/// `connection_metrics` over `timestamp > $1` as rows of (network_type, n,
/// stun), as [`attempts_window!`] does.
macro_rules! metrics_window {
    () => {
        "SELECT network_type, connections AS n, stun_used AS stun \
         FROM metrics_hourly WHERE hour >= $2 \
         UNION ALL \
         SELECT network_type, 1, CASE WHEN stun_used = true THEN 1 ELSE 0 END \
         FROM connection_metrics WHERE timestamp > $1 AND timestamp < $2"
    };
}

const ATTEMPT_COLUMNS: &str = "timestamp, client_id, router_id, experiment, stage, arm, \
     config_type, mode, success, connection_time_ms, failure_reason, local_candidate_type, \
     remote_candidate_type, network_type, source";
const ATTEMPT_PARAMS: usize = 15;
const METRIC_COLUMNS: &str = "timestamp, client_id, router_id, arm, network_type, stun_used, \
     local_candidate_type, remote_candidate_type";
const METRIC_PARAMS: usize = 8;

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// Bind one row's [`ATTEMPT_COLUMNS`], in order.
fn bind_attempt<'q>(q: AnyQuery<'q>, r: &OutcomeRow) -> AnyQuery<'q> {
    q.bind(r.timestamp_ms)
        .bind(r.client_id.clone())
        .bind(r.router_id.clone())
        .bind(r.experiment.clone())
        .bind(r.stage)
        .bind(r.arm.clone())
        .bind(r.config_type.clone())
        .bind(r.mode.clone())
        .bind(r.success)
        .bind(r.connection_time_ms)
        .bind(r.failure_reason.clone())
        .bind(r.local_candidate_type.clone())
        .bind(r.remote_candidate_type.clone())
        .bind(r.network_type.clone())
        .bind(r.source.clone())
}

/// Bind one row's [`METRIC_COLUMNS`], in order.
fn bind_metric<'q>(q: AnyQuery<'q>, r: &OutcomeRow) -> AnyQuery<'q> {
    q.bind(r.timestamp_ms)
        .bind(r.client_id.clone())
        .bind(r.router_id.clone())
        .bind(r.arm.clone())
        .bind(r.network_type.clone())
        .bind(r.stun_used)
        .bind(r.local_candidate_type.clone())
        .bind(r.remote_candidate_type.clone())
}

/// One hour in Unix ms: the rollups' granularity.
pub const HOUR_MS: i64 = 3_600_000;

/// The start of the hour holding `timestamp_ms` (as the migration computes
/// it: `timestamp - timestamp % 3600000`, for the non-negative timestamps
/// the router writes).
fn hour_of(timestamp_ms: i64) -> i64 {
    timestamp_ms - timestamp_ms % HOUR_MS
}

/// The first hour whose every timestamp is inside `timestamp > since_ms`:
/// the rollups cover `[first_full_hour, ..)`, the raw rows the rest.
fn first_full_hour(since_ms: i64) -> i64 {
    hour_of(since_ms) + HOUR_MS
}

/// Per-batch sums of `attempts_hourly`, keyed by (hour, arm, config_type,
/// network_type): attempts, successes, timed, time_sum_ms.
type AttemptGroups<'a> = std::collections::BTreeMap<(i64, &'a str, &'a str, &'a str), [i64; 4]>;
/// Per-batch sums of `metrics_hourly`, keyed by (hour, arm, network_type):
/// connections, stun_used.
type MetricGroups<'a> = std::collections::BTreeMap<(i64, &'a str, &'a str), [i64; 2]>;

fn rollup_groups(rows: &[OutcomeRow]) -> (AttemptGroups<'_>, MetricGroups<'_>) {
    let (mut a, mut m) = (AttemptGroups::new(), MetricGroups::new());
    for r in rows {
        let hour = hour_of(r.timestamp_ms);
        let g = a
            .entry((hour, &r.arm, &r.config_type, &r.network_type))
            .or_default();
        g[0] += 1;
        g[1] += i64::from(r.success);
        if let Some(ms) = r.connection_time_ms {
            g[2] += 1;
            g[3] += ms;
        }
        let g = m.entry((hour, &r.arm, &r.network_type)).or_default();
        g[0] += 1;
        g[1] += i64::from(r.stun_used);
    }
    (a, m)
}

/// `INSERT INTO table (cols) VALUES ($1, ..), (..)` for `rows` rows; on
/// SQLite with anonymous `?` placeholders instead, because SQLite looks a
/// numbered parameter's name up by walking a list (`$N` made a
/// 30,000-parameter batch quadratic: 400 rows/s).
fn insert_sql(backend: Backend, table: &str, columns: &str, params: usize, rows: usize) -> String {
    let mut s = format!("INSERT INTO {table} ({columns}) VALUES ");
    let mut n = 0;
    for r in 0..rows {
        if r > 0 {
            s.push(',');
        }
        s.push('(');
        for c in 0..params {
            if c > 0 {
                s.push(',');
            }
            n += 1;
            if backend == Backend::Sqlite {
                s.push('?');
            } else {
                s.push('$');
                s.push_str(&n.to_string());
            }
        }
        s.push(')');
    }
    s
}

impl Store {
    /// Open (and migrate) the store of `config`: `config.url`, or
    /// `data_dir/scream-ice.sqlite3` (creating the dir, mode 0700).
    pub async fn open(config: &StoreConfig, data_dir: &Path) -> Result<Store, StoreError> {
        let url = match &config.url {
            Some(u) => u.clone(),
            None => {
                create_private_dir(data_dir)?;
                format!("sqlite://{}?mode=rwc", data_dir.join(SQLITE_FILE).display())
            }
        };
        Store::connect(&url).await
    }

    /// Open (and migrate) the store at `url`.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let options: AnyConnectOptions = url.parse()?;
        let mut pool = AnyPoolOptions::new()
            .acquire_timeout(Duration::from_secs(5))
            .max_connections(if backend == Backend::Sqlite { 4 } else { 8 });
        if backend == Backend::Sqlite {
            pool = pool.after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                         PRAGMA busy_timeout = 5000; PRAGMA cache_size = -32768; \
                         PRAGMA temp_store = MEMORY;",
                    )
                    .await?;
                    Ok(())
                })
            });
        }
        let pool = pool.connect_with(options).await?;
        migrator(backend).run(&pool).await?;
        Ok(Store {
            pool,
            backend,
            url: url.to_string(),
        })
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL it was opened with (password included: do not log it).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The pool, for tests and tools.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Write `rows` in one transaction: both tables, multi-row `INSERT`s of
    /// at most [`MAX_BATCH`] rows. All or nothing.
    pub async fn insert_batch(&self, rows: &[OutcomeRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut conn = self.pool.acquire().await?;
        let written = self.write_rows(&mut conn, rows).await;
        if written.is_err() {
            // A transaction that failed mid-way (SQLite: "database or disk
            // is full", possibly at COMMIT, which leaves it open) must not go
            // back to the pool holding the write lock: closing the
            // connection ends it, and the next attempt starts clean.
            let _ = sqlx::Connection::close(conn.detach()).await;
        }
        written
    }

    async fn write_rows(
        &self,
        conn: &mut PoolConnection<Any>,
        rows: &[OutcomeRow],
    ) -> Result<(), StoreError> {
        let mut tx = sqlx::Connection::begin(&mut **conn).await?;
        for chunk in rows.chunks(MAX_BATCH) {
            let sql = insert_sql(
                self.backend,
                "connection_attempts",
                ATTEMPT_COLUMNS,
                ATTEMPT_PARAMS,
                chunk.len(),
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for r in chunk {
                q = bind_attempt(q, r);
            }
            q.execute(&mut *tx).await?;
            let sql = insert_sql(
                self.backend,
                "connection_metrics",
                METRIC_COLUMNS,
                METRIC_PARAMS,
                chunk.len(),
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for r in chunk {
                q = bind_metric(q, r);
            }
            q.execute(&mut *tx).await?;
        }
        // The rollups, in the same transaction: all or nothing with the rows.
        // Keys are unique within each statement (grouped here), as
        // PostgreSQL's ON CONFLICT requires.
        let (attempts, metrics) = rollup_groups(rows);
        let groups: Vec<_> = attempts.into_iter().collect();
        for chunk in groups.chunks(MAX_BATCH) {
            let mut sql = insert_sql(
                self.backend,
                "attempts_hourly",
                "hour, arm, config_type, network_type, attempts, successes, timed, time_sum_ms",
                8,
                chunk.len(),
            );
            sql.push_str(
                " ON CONFLICT (hour, arm, config_type, network_type) DO UPDATE SET \
                 attempts = attempts_hourly.attempts + excluded.attempts, \
                 successes = attempts_hourly.successes + excluded.successes, \
                 timed = attempts_hourly.timed + excluded.timed, \
                 time_sum_ms = attempts_hourly.time_sum_ms + excluded.time_sum_ms",
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for ((hour, arm, config, network), [n, ok, timed, sum]) in chunk {
                q = q
                    .bind(*hour)
                    .bind(arm.to_string())
                    .bind(config.to_string())
                    .bind(network.to_string())
                    .bind(*n)
                    .bind(*ok)
                    .bind(*timed)
                    .bind(*sum);
            }
            q.execute(&mut *tx).await?;
        }
        let groups: Vec<_> = metrics.into_iter().collect();
        for chunk in groups.chunks(MAX_BATCH) {
            let mut sql = insert_sql(
                self.backend,
                "metrics_hourly",
                "hour, arm, network_type, connections, stun_used",
                5,
                chunk.len(),
            );
            sql.push_str(
                " ON CONFLICT (hour, arm, network_type) DO UPDATE SET \
                 connections = metrics_hourly.connections + excluded.connections, \
                 stun_used = metrics_hourly.stun_used + excluded.stun_used",
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for ((hour, arm, network), [n, stun]) in chunk {
                q = q
                    .bind(*hour)
                    .bind(arm.to_string())
                    .bind(network.to_string())
                    .bind(*n)
                    .bind(*stun);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Run `sql` over the window `timestamp > since_ms`: `$1` is the
    /// window's start (Unix ms), `$2` the first hour the rollups cover
    /// whole ([`first_full_hour`]); map each row.
    async fn since<T>(
        &self,
        sql: &'static str,
        since_ms: i64,
        map: impl Fn(&sqlx::any::AnyRow) -> Result<T, sqlx::Error>,
    ) -> Result<Vec<T>, StoreError> {
        let rows = sqlx::query(sql)
            .bind(since_ms)
            .bind(first_full_hour(since_ms))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(map).collect::<Result<_, _>>()?)
    }

    /// The seed's first monitoring query ("connection success rate by
    /// configuration type") over `timestamp > since_ms`, ordered by
    /// `config_type`.
    pub async fn success_by_config(&self, since_ms: i64) -> Result<Vec<ConfigRow>, StoreError> {
        self.since(
            concat!(
                "SELECT config_type, \
               CAST(SUM(n) AS BIGINT) AS total_attempts, \
               CAST(SUM(ok) AS BIGINT) AS successful, \
               CAST(SUM(tsum) AS DOUBLE PRECISION) / NULLIF(CAST(SUM(timed) AS DOUBLE PRECISION), 0) \
                    AS avg_time_ms, \
               CAST(SUM(ok) * 100.0 / SUM(n) AS DOUBLE PRECISION) AS success_rate \
             FROM (", attempts_window!(), ") w \
             GROUP BY config_type \
             ORDER BY config_type"
            ),
            since_ms,
            |r| {
                Ok(ConfigRow {
                    config_type: r.try_get(0)?,
                    total_attempts: r.try_get(1)?,
                    successful: r.try_get(2)?,
                    avg_time_ms: r.try_get(3)?,
                    success_rate: r.try_get(4)?,
                })
            },
        )
        .await
    }

    /// The seed's second monitoring query ("STUN server usage") over
    /// `timestamp > since_ms`, ordered by `network_type`.
    pub async fn stun_by_network(&self, since_ms: i64) -> Result<Vec<NetworkRow>, StoreError> {
        self.since(
            concat!(
                "SELECT network_type, \
               CAST(SUM(n) AS BIGINT) AS connections, \
               CAST(SUM(stun) AS BIGINT) AS stun_required, \
               CAST(SUM(stun) * 100.0 / SUM(n) AS DOUBLE PRECISION) AS stun_percentage \
             FROM (",
                metrics_window!(),
                ") w \
             GROUP BY network_type \
             ORDER BY network_type"
            ),
            since_ms,
            |r| {
                Ok(NetworkRow {
                    network_type: r.try_get(0)?,
                    connections: r.try_get(1)?,
                    stun_required: r.try_get(2)?,
                    stun_percentage: r.try_get(3)?,
                })
            },
        )
        .await
    }

    /// Attempts, successes and average time to connect per network type
    /// since `since_ms`, for the report's KPIs.
    pub async fn kpi_rows(&self, since_ms: i64) -> Result<Vec<KpiRow>, StoreError> {
        self.since(
            concat!(
                "SELECT network_type, \
               CAST(SUM(n) AS BIGINT), \
               CAST(SUM(ok) AS BIGINT), \
               CAST(SUM(tsum) AS DOUBLE PRECISION) / NULLIF(CAST(SUM(timed) AS DOUBLE PRECISION), 0), \
               CAST(SUM(timed) AS BIGINT) \
             FROM (", attempts_window!(), ") w \
             GROUP BY network_type ORDER BY network_type"
            ),
            since_ms,
            |r| {
                Ok(KpiRow {
                    network_type: r.try_get(0)?,
                    attempts: r.try_get(1)?,
                    successes: r.try_get(2)?,
                    avg_time_ms: r.try_get(3)?,
                    timed: r.try_get(4)?,
                })
            },
        )
        .await
    }

    /// Attempts and failures per arm of `experiment` at `stage` since
    /// `since_ms` (inclusive): (treatment, control).
    pub async fn arm_counts(
        &self,
        experiment: &str,
        stage: u8,
        since_ms: i64,
    ) -> Result<(ArmCounts, ArmCounts), StoreError> {
        let rows = sqlx::query(
            "SELECT arm, COUNT(*), SUM(CASE WHEN success = true THEN 0 ELSE 1 END) \
             FROM connection_attempts \
             WHERE experiment = $1 AND stage = $2 AND timestamp >= $3 \
             GROUP BY arm",
        )
        .bind(experiment.to_string())
        .bind(i64::from(stage))
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        let (mut t, mut c) = (ArmCounts::EMPTY, ArmCounts::EMPTY);
        for r in &rows {
            let arm: String = r.try_get(0)?;
            let n: i64 = r.try_get(1)?;
            let f: i64 = r.try_get(2)?;
            let n = u32::try_from(n).unwrap_or(u32::MAX);
            let f = u32::try_from(f).unwrap_or(u32::MAX).min(n);
            let counts = ArmCounts::new(n, f).unwrap_or(ArmCounts::EMPTY);
            if arm == "treatment" {
                t = counts;
            } else {
                c = counts;
            }
        }
        Ok((t, c))
    }

    /// The stored rollout state of `experiment`, if any.
    pub async fn load_status(&self, experiment: &str) -> Result<Option<RolloutStatus>, StoreError> {
        let row = sqlx::query(
            "SELECT stage, CAST(CASE WHEN paused THEN 1 ELSE 0 END AS BIGINT), rolled_back_from, rolled_back_at, stage_started_at, version \
             FROM rollout_state WHERE experiment = $1",
        )
        .bind(experiment.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let stage: i64 = r.try_get(0)?;
        let from: Option<i64> = r.try_get(2)?;
        Ok(Some(RolloutStatus {
            stage: u8::try_from(stage).unwrap_or(0),
            paused: r.try_get::<i64, _>(1)? != 0,
            rolled_back_from: from.and_then(|f| u8::try_from(f).ok()),
            rolled_back_at_ms: r.try_get(3)?,
            stage_started_ms: r.try_get(4)?,
            version: r.try_get(5)?,
        }))
    }

    /// Store `next` if the stored version is still `next.version - 1` (or
    /// no row exists and `next.version == 1`). True when this call wrote
    /// it: with a fleet, exactly one router wins each transition.
    pub async fn save_status(
        &self,
        experiment: &str,
        next: &RolloutStatus,
    ) -> Result<bool, StoreError> {
        let now = crate::rollout::now_ms();
        let bind_all = |q: sqlx::query::Query<'static, Any, sqlx::any::AnyArguments>| {
            q.bind(i64::from(next.stage))
                .bind(next.paused)
                .bind(next.rolled_back_from.map(i64::from))
                .bind(next.rolled_back_at_ms)
                .bind(next.stage_started_ms)
                .bind(next.version)
                .bind(now)
                .bind(experiment.to_string())
        };
        let updated = bind_all(sqlx::query(
            "UPDATE rollout_state SET stage = $1, paused = $2, rolled_back_from = $3, \
               rolled_back_at = $4, stage_started_at = $5, version = $6, updated_at = $7 \
             WHERE experiment = $8 AND version = $9",
        ))
        .bind(next.version - 1)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated == 1 {
            return Ok(true);
        }
        if next.version != 1 {
            return Ok(false);
        }
        let inserted = bind_all(sqlx::query(
            "INSERT INTO rollout_state (stage, paused, rolled_back_from, rolled_back_at, \
               stage_started_at, version, updated_at, experiment) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (experiment) DO NOTHING",
        ))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    /// Append one decision of the monitor.
    pub async fn record_decision(
        &self,
        experiment: &str,
        d: &DecisionRow,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO rollout_decisions (timestamp, router_id, experiment, stage, verdict, \
               treatment_n, treatment_failures, control_n, control_failures, \
               treatment_lower_ppm, control_upper_ppm, threshold_ppm, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(d.timestamp_ms)
        .bind(d.router_id.clone())
        .bind(experiment.to_string())
        .bind(d.stage)
        .bind(d.verdict.clone())
        .bind(d.treatment_n)
        .bind(d.treatment_failures)
        .bind(d.control_n)
        .bind(d.control_failures)
        .bind(d.treatment_lower_ppm)
        .bind(d.control_upper_ppm)
        .bind(d.threshold_ppm)
        .bind(d.detail.clone())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The newest decisions of `experiment`, newest first.
    pub async fn decisions(
        &self,
        experiment: &str,
        limit: i64,
    ) -> Result<Vec<DecisionRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT timestamp, router_id, stage, verdict, treatment_n, treatment_failures, \
               control_n, control_failures, treatment_lower_ppm, control_upper_ppm, \
               threshold_ppm, detail \
             FROM rollout_decisions WHERE experiment = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(experiment.to_string())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DecisionRow {
                    timestamp_ms: r.try_get(0)?,
                    router_id: r.try_get(1)?,
                    stage: r.try_get(2)?,
                    verdict: r.try_get(3)?,
                    treatment_n: r.try_get(4)?,
                    treatment_failures: r.try_get(5)?,
                    control_n: r.try_get(6)?,
                    control_failures: r.try_get(7)?,
                    treatment_lower_ppm: r.try_get(8)?,
                    control_upper_ppm: r.try_get(9)?,
                    threshold_ppm: r.try_get(10)?,
                    detail: r.try_get(11)?,
                })
            })
            .collect()
    }

    /// Try to become the fleet's decider: on PostgreSQL a session-level
    /// advisory lock on a dedicated connection (released when that
    /// connection closes, so a router that dies hands over); on SQLite
    /// (one router) always granted. The returned guard holds the lock.
    pub async fn try_lead(&self, experiment: &str) -> Result<Option<Leader>, StoreError> {
        if self.backend == Backend::Sqlite {
            return Ok(Some(Leader { conn: None }));
        }
        let mut conn = self.pool.acquire().await?;
        let key = advisory_key(experiment);
        let got: bool = sqlx::query("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
        if got {
            Ok(Some(Leader { conn: Some(conn) }))
        } else {
            Ok(None)
        }
    }

    /// Per arm since `since_ms`: attempts, successes, average time to
    /// connect (ms) and the STUN-required count (for the dashboard).
    pub async fn arm_summary(&self, since_ms: i64) -> Result<Vec<ArmSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT arm, COUNT(*), SUM(CASE WHEN success = true THEN 1 ELSE 0 END), \
               CAST(AVG(connection_time_ms) AS DOUBLE PRECISION), \
               SUM(CASE WHEN network_type = 'local' THEN 1 ELSE 0 END) \
             FROM connection_attempts WHERE timestamp > $1 GROUP BY arm ORDER BY arm",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        let stun = sqlx::query(
            "SELECT arm, SUM(CASE WHEN stun_used = true THEN 1 ELSE 0 END) \
             FROM connection_metrics WHERE timestamp > $1 GROUP BY arm",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            let arm: String = r.try_get(0)?;
            let mut stun_required = 0;
            for s in &stun {
                let a: String = s.try_get(0)?;
                if a == arm {
                    stun_required = s.try_get(1)?;
                }
            }
            out.push(ArmSummary {
                p95_time_ms: self.percentile(&arm, since_ms, 95).await?,
                arm,
                attempts: r.try_get(1)?,
                successes: r.try_get(2)?,
                avg_time_ms: r.try_get(3)?,
                local: r.try_get(4)?,
                stun_required,
            });
        }
        Ok(out)
    }

    /// The `pct`-th percentile (nearest rank) of the time to connect of
    /// `arm` since `since_ms`, ms.
    pub async fn percentile(
        &self,
        arm: &str,
        since_ms: i64,
        pct: i64,
    ) -> Result<Option<i64>, StoreError> {
        let n: i64 = sqlx::query(
            "SELECT COUNT(connection_time_ms) FROM connection_attempts \
             WHERE arm = $1 AND timestamp > $2",
        )
        .bind(arm.to_string())
        .bind(since_ms)
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        if n == 0 {
            return Ok(None);
        }
        // Nearest rank: the ceil(pct/100 * n)-th smallest value.
        let rank = (pct * n + 99) / 100;
        let v: Option<i64> = sqlx::query(
            "SELECT connection_time_ms FROM connection_attempts \
             WHERE arm = $1 AND timestamp > $2 AND connection_time_ms IS NOT NULL \
             ORDER BY connection_time_ms LIMIT 1 OFFSET $3",
        )
        .bind(arm.to_string())
        .bind(since_ms)
        .bind(rank - 1)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
        Ok(v)
    }

    /// Failures by reason since `since_ms`, most frequent first.
    pub async fn failure_reasons(&self, since_ms: i64) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT COALESCE(failure_reason, 'unknown'), COUNT(*) FROM connection_attempts \
             WHERE timestamp > $1 AND success = false \
             GROUP BY COALESCE(failure_reason, 'unknown') ORDER BY 2 DESC, 1",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Attempts and failures per arm in buckets of `bucket_ms` since
    /// `since_ms`: (bucket start ms, arm, attempts, failures), in time order.
    pub async fn timeline(
        &self,
        since_ms: i64,
        bucket_ms: i64,
    ) -> Result<Vec<(i64, String, i64, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT (timestamp / $1) * $1 AS b, arm, COUNT(*), \
               SUM(CASE WHEN success = true THEN 0 ELSE 1 END) \
             FROM connection_attempts WHERE timestamp > $2 \
             GROUP BY b, arm ORDER BY b, arm",
        )
        .bind(bucket_ms)
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
            .collect()
    }

    /// Rows in `connection_attempts` (tests and benchmarks).
    pub async fn attempt_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT COUNT(*) FROM connection_attempts")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?)
    }
}

/// One arm's figures for the dashboard.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ArmSummary {
    /// `control` or `treatment`.
    pub arm: String,
    /// Attempts.
    pub attempts: i64,
    /// Successes.
    pub successes: i64,
    /// Average time to connect, ms.
    pub avg_time_ms: Option<f64>,
    /// 95th percentile time to connect, ms.
    pub p95_time_ms: Option<i64>,
    /// Connections on a local network.
    pub local: i64,
    /// Connections that needed a STUN/TURN server.
    pub stun_required: i64,
}

/// Success rate and average time of one network type (for the KPIs).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KpiRow {
    /// `network_type`.
    pub network_type: String,
    /// Attempts.
    pub attempts: i64,
    /// Successes.
    pub successes: i64,
    /// Average time to connect, ms.
    pub avg_time_ms: Option<f64>,
    /// Attempts with a time.
    pub timed: i64,
}

/// The decider's lock (PostgreSQL: the connection holding the advisory
/// lock). Dropping it closes... no: returns the connection to the pool with
/// the lock held; call [`Leader::still_held`] each round and drop it with
/// [`Leader::release`].
#[derive(Debug)]
pub struct Leader {
    conn: Option<PoolConnection<Any>>,
}

impl Leader {
    /// Whether the connection holding the lock is still alive.
    pub async fn still_held(&mut self) -> bool {
        match &mut self.conn {
            None => true,
            Some(c) => sqlx::query("SELECT 1").execute(&mut **c).await.is_ok(),
        }
    }

    /// Give the lock up (closes the connection, so the server frees it).
    pub async fn release(self) {
        if let Some(c) = self.conn {
            let _ = sqlx::Connection::close_hard(c.detach()).await;
        }
    }
}

/// The advisory-lock key of an experiment: a fixed prefix hash, stable
/// across routers.
fn advisory_key(experiment: &str) -> i64 {
    let h = scream_ice_core::rollout::bucket_hash(
        "scream-ice-advisory-lock",
        scream_ice_core::rollout::ClientIdentity::Id(experiment),
    );
    i64::from_be_bytes(h.to_be_bytes())
}

/// Create `dir` (and parents) with mode 0700 if missing.
pub fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| StoreError::DataDir {
            path: dir.display().to_string(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_sql_numbers_every_parameter() {
        assert_eq!(
            insert_sql(Backend::Postgres, "t", "a, b", 2, 2),
            "INSERT INTO t (a, b) VALUES ($1,$2),($3,$4)"
        );
        assert_eq!(
            insert_sql(Backend::Sqlite, "t", "a, b", 2, 2),
            "INSERT INTO t (a, b) VALUES (?,?),(?,?)"
        );
        const { assert!(MAX_BATCH * (ATTEMPT_PARAMS + 1) < 32_766) };
    }

    fn row(timestamp_ms: i64, arm: &str, success: bool, ms: Option<i64>, stun: bool) -> OutcomeRow {
        OutcomeRow {
            timestamp_ms,
            client_id: "c".into(),
            router_id: "r".into(),
            experiment: "e".into(),
            stage: 10,
            arm: arm.into(),
            config_type: if arm == "treatment" {
                "smart"
            } else {
                "legacy"
            }
            .into(),
            mode: "auto".into(),
            success,
            connection_time_ms: ms,
            failure_reason: None,
            local_candidate_type: None,
            remote_candidate_type: None,
            stun_used: stun,
            network_type: "local".into(),
            source: "speaker".into(),
        }
    }

    async fn rollups(pool: &AnyPool) -> Vec<(i64, String, i64, i64, i64, i64)> {
        sqlx::query(
            "SELECT hour, arm, attempts, successes, timed, time_sum_ms FROM attempts_hourly \
             ORDER BY hour, arm",
        )
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect()
    }

    /// A store written before the rollups existed: migration 3 fills them
    /// from the rows already there, with the same sums the writer keeps.
    #[tokio::test]
    async fn the_rollup_migration_backfills_existing_rows_like_the_writer() {
        let data = [
            row(7_200_000, "control", true, Some(40), false),
            row(7_200_001, "control", false, None, true),
            row(10_799_999, "treatment", true, Some(10), false),
            row(10_800_000, "treatment", true, Some(30), true),
            row(10_800_500, "treatment", true, Some(50), false),
        ];
        let dir = std::env::temp_dir().join(format!("scream_ice_backfill_{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // Old schema (migrations 1 and 2), rows in both tables.
        let old = dir.join("old");
        create_private_dir(&old).unwrap();
        sqlx::any::install_default_drivers();
        let url = format!("sqlite://{}?mode=rwc", old.join(SQLITE_FILE).display());
        {
            let pool = AnyPoolOptions::new().connect(&url).await.unwrap();
            let mut m = migrator(Backend::Sqlite);
            m.migrations = m
                .migrations
                .iter()
                .take(2)
                .cloned()
                .collect::<Vec<_>>()
                .into();
            m.run(&pool).await.unwrap();
            let store = Store {
                pool: pool.clone(),
                backend: Backend::Sqlite,
                url: url.clone(),
            };
            // Rows as the old writer wrote them: the two tables only (the
            // rollup tables do not exist yet).
            for r in &data {
                let sql = insert_sql(
                    Backend::Sqlite,
                    "connection_attempts",
                    ATTEMPT_COLUMNS,
                    ATTEMPT_PARAMS,
                    1,
                );
                bind_attempt(sqlx::query(AssertSqlSafe(sql)), r)
                    .execute(store.pool())
                    .await
                    .unwrap();
                let sql = insert_sql(
                    Backend::Sqlite,
                    "connection_metrics",
                    METRIC_COLUMNS,
                    METRIC_PARAMS,
                    1,
                );
                bind_metric(sqlx::query(AssertSqlSafe(sql)), r)
                    .execute(store.pool())
                    .await
                    .unwrap();
            }
            pool.close().await;
        }
        let migrated = Store::connect(&url).await.unwrap();
        // A new store written by the writer.
        let fresh = Store::open(&StoreConfig::default(), &dir.join("new"))
            .await
            .unwrap();
        fresh.insert_batch(&data[..2]).await.unwrap();
        fresh.insert_batch(&data[2..]).await.unwrap();
        let want = vec![
            (7_200_000, "control".to_string(), 2, 1, 1, 40),
            (7_200_000, "treatment".to_string(), 1, 1, 1, 10),
            (10_800_000, "treatment".to_string(), 2, 2, 2, 80),
        ];
        assert_eq!(rollups(migrated.pool()).await, want);
        assert_eq!(rollups(fresh.pool()).await, want);
        for s in [&migrated, &fresh] {
            let stun = s.stun_by_network(0).await.unwrap();
            assert_eq!((stun[0].connections, stun[0].stun_required), (5, 2));
            // A window starting inside the first hour: raw rows for its
            // rest, rollups after it.
            let c = s.success_by_config(7_200_000).await.unwrap();
            let got: Vec<_> = c
                .iter()
                .map(|r| {
                    (
                        r.config_type.as_str(),
                        r.total_attempts,
                        r.successful,
                        r.avg_time_ms,
                    )
                })
                .collect();
            assert_eq!(got, [("legacy", 1, 0, None), ("smart", 3, 3, Some(30.0))]);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
