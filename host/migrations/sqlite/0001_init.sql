-- scream-ice outcome store, SQLite. Timestamps: Unix milliseconds (INTEGER).
-- Booleans: INTEGER 0/1 (so `success = true` works as on PostgreSQL).
CREATE TABLE connection_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp INTEGER NOT NULL,
    client_id TEXT NOT NULL,
    router_id TEXT NOT NULL,
    experiment TEXT NOT NULL,
    stage INTEGER NOT NULL,
    arm TEXT NOT NULL,
    config_type TEXT NOT NULL,
    mode TEXT NOT NULL,
    success INTEGER NOT NULL,
    connection_time_ms INTEGER,
    failure_reason TEXT,
    local_candidate_type TEXT,
    remote_candidate_type TEXT,
    network_type TEXT NOT NULL,
    source TEXT NOT NULL
);
-- The first monitoring query (time window, grouped by config_type).
CREATE INDEX connection_attempts_time ON connection_attempts (timestamp, config_type);
-- The rollback monitor (per experiment and stage since the stage began).
CREATE INDEX connection_attempts_stage ON connection_attempts (experiment, stage, timestamp, arm);

CREATE TABLE connection_metrics (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp INTEGER NOT NULL,
    client_id TEXT NOT NULL,
    router_id TEXT NOT NULL,
    arm TEXT NOT NULL,
    network_type TEXT NOT NULL,
    stun_used INTEGER NOT NULL,
    local_candidate_type TEXT,
    remote_candidate_type TEXT
);
-- The second monitoring query (time window, grouped by network_type).
CREATE INDEX connection_metrics_time ON connection_metrics (timestamp, network_type);

CREATE TABLE rollout_state (
    experiment TEXT PRIMARY KEY,
    stage INTEGER NOT NULL,
    paused INTEGER NOT NULL,
    rolled_back_from INTEGER,
    rolled_back_at INTEGER,
    stage_started_at INTEGER NOT NULL,
    version INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE rollout_decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp INTEGER NOT NULL,
    router_id TEXT NOT NULL,
    experiment TEXT NOT NULL,
    stage INTEGER NOT NULL,
    verdict TEXT NOT NULL,
    treatment_n INTEGER NOT NULL,
    treatment_failures INTEGER NOT NULL,
    control_n INTEGER NOT NULL,
    control_failures INTEGER NOT NULL,
    treatment_lower_ppm INTEGER NOT NULL,
    control_upper_ppm INTEGER NOT NULL,
    threshold_ppm INTEGER NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX rollout_decisions_experiment ON rollout_decisions (experiment, id);
