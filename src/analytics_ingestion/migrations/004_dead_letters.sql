-- Every event (or body) the service refused, with the reason and when, so nothing sent is lost.
-- payload holds the bytes as they came: they may not be valid JSON, or valid text.
CREATE TABLE IF NOT EXISTS analytics_dead_letters (
    id BIGSERIAL PRIMARY KEY,
    received_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    event_index INTEGER,
    reason TEXT NOT NULL,
    payload BYTEA NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_analytics_dead_letters_received_at
    ON analytics_dead_letters (received_at DESC);
