SELECT add_retention_policy('analytics_event_keys', INTERVAL '90 days', if_not_exists => TRUE);
