CREATE TABLE IF NOT EXISTS analytics_events (
    id BIGSERIAL,
    "timestamp" TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    event_type VARCHAR(100) NOT NULL,
    service VARCHAR(100) NOT NULL DEFAULT 'unknown',
    user_id UUID,
    data JSONB NOT NULL,
    PRIMARY KEY ("timestamp", id)
);
