CREATE INDEX IF NOT EXISTS idx_analytics_events_user_time
    ON analytics_events (user_id, "timestamp" DESC) WHERE user_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_analytics_events_type_time
    ON analytics_events (event_type, "timestamp" DESC);
CREATE INDEX IF NOT EXISTS idx_analytics_events_service_time
    ON analytics_events (service, "timestamp" DESC);
CREATE INDEX IF NOT EXISTS idx_analytics_events_data
    ON analytics_events USING GIN (data);
