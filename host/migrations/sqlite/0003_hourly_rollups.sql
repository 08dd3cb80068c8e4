-- Hourly rollups of both outcome tables, kept by the writer in the same
-- transaction as the rows (one upsert per group and batch). The report's
-- queries read whole hours of the window from here and only the partial
-- first hour from the raw rows, so they cost the same at any row count.
-- `hour` is the Unix ms of the hour's start (timestamp - timestamp % 3600000).
CREATE TABLE attempts_hourly (
    hour BIGINT NOT NULL,
    arm TEXT NOT NULL,
    config_type TEXT NOT NULL,
    network_type TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    successes BIGINT NOT NULL,
    timed BIGINT NOT NULL,
    time_sum_ms BIGINT NOT NULL,
    PRIMARY KEY (hour, arm, config_type, network_type)
);
CREATE TABLE metrics_hourly (
    hour BIGINT NOT NULL,
    arm TEXT NOT NULL,
    network_type TEXT NOT NULL,
    connections BIGINT NOT NULL,
    stun_used BIGINT NOT NULL,
    PRIMARY KEY (hour, arm, network_type)
);
INSERT INTO attempts_hourly (hour, arm, config_type, network_type, attempts, successes, timed, time_sum_ms)
SELECT timestamp - (timestamp % 3600000), arm, config_type, network_type,
       COUNT(*), SUM(CASE WHEN success = true THEN 1 ELSE 0 END),
       COUNT(connection_time_ms), COALESCE(SUM(connection_time_ms), 0)
FROM connection_attempts
GROUP BY timestamp - (timestamp % 3600000), arm, config_type, network_type;
INSERT INTO metrics_hourly (hour, arm, network_type, connections, stun_used)
SELECT timestamp - (timestamp % 3600000), arm, network_type,
       COUNT(*), SUM(CASE WHEN stun_used = true THEN 1 ELSE 0 END)
FROM connection_metrics
GROUP BY timestamp - (timestamp % 3600000), arm, network_type;
-- The covering indexes served the report's scans, which the rollups
-- replace; the raw rows are now read by time only (the first partial hour,
-- the dashboard's 24 h), so one timestamp index per table is enough and
-- each batch maintains three indexes fewer.
DROP INDEX connection_attempts_config;
DROP INDEX connection_attempts_network;
DROP INDEX connection_metrics_network;
CREATE INDEX connection_attempts_time ON connection_attempts (timestamp);
CREATE INDEX connection_metrics_time ON connection_metrics (timestamp);
