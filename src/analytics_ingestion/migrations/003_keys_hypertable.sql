SELECT create_hypertable(
    'analytics_event_keys', 'timestamp',
    chunk_time_interval => INTERVAL '1 day',
    if_not_exists => TRUE
);
