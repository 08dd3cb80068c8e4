-- scream-ice outcome store, PostgreSQL. Timestamps: Unix milliseconds (BIGINT).
-- Booleans: BOOLEAN.
CREATE TABLE connection_attempts (
    id BIGSERIAL PRIMARY KEY,
    timestamp BIGINT NOT NULL,
    client_id TEXT NOT NULL,
    router_id TEXT NOT NULL,
    experiment TEXT NOT NULL,
    stage BIGINT NOT NULL,
    arm TEXT NOT NULL,
    config_type TEXT NOT NULL,
    mode TEXT NOT NULL,
    success BOOLEAN NOT NULL,
    connection_time_ms BIGINT,
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
    id BIGSERIAL PRIMARY KEY,
    timestamp BIGINT NOT NULL,
    client_id TEXT NOT NULL,
    router_id TEXT NOT NULL,
    arm TEXT NOT NULL,
    network_type TEXT NOT NULL,
    stun_used BOOLEAN NOT NULL,
    local_candidate_type TEXT,
    remote_candidate_type TEXT
);
-- The second monitoring query (time window, grouped by network_type).
CREATE INDEX connection_metrics_time ON connection_metrics (timestamp, network_type);

CREATE TABLE rollout_state (
    experiment TEXT PRIMARY KEY,
    stage BIGINT NOT NULL,
    paused BOOLEAN NOT NULL,
    rolled_back_from BIGINT,
    rolled_back_at BIGINT,
    stage_started_at BIGINT NOT NULL,
    version BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE rollout_decisions (
    id BIGSERIAL PRIMARY KEY,
    timestamp BIGINT NOT NULL,
    router_id TEXT NOT NULL,
    experiment TEXT NOT NULL,
    stage BIGINT NOT NULL,
    verdict TEXT NOT NULL,
    treatment_n BIGINT NOT NULL,
    treatment_failures BIGINT NOT NULL,
    control_n BIGINT NOT NULL,
    control_failures BIGINT NOT NULL,
    treatment_lower_ppm BIGINT NOT NULL,
    control_upper_ppm BIGINT NOT NULL,
    threshold_ppm BIGINT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX rollout_decisions_experiment ON rollout_decisions (experiment, id);
