ALTER TABLE analytics_events SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'event_type, service',
    timescaledb.compress_orderby = '"timestamp" DESC'
);
SELECT add_compression_policy('analytics_events', INTERVAL '7 days', if_not_exists => TRUE);
SELECT add_retention_policy('analytics_events', INTERVAL '90 days', if_not_exists => TRUE);
