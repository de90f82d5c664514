-- New columns are nullable and without a default when added, so existing rows are not
-- rewritten and do not pretend to have been received at migration time.
ALTER TABLE analytics_events ADD COLUMN IF NOT EXISTS event_id UUID;
ALTER TABLE analytics_events ADD COLUMN IF NOT EXISTS received_at TIMESTAMPTZ;
ALTER TABLE analytics_events ALTER COLUMN received_at SET DEFAULT NOW();
ALTER TABLE analytics_events ADD COLUMN IF NOT EXISTS hostname TEXT;
ALTER TABLE analytics_events ADD COLUMN IF NOT EXISTS environment TEXT;
-- Exactly once: the key of every stored event, unique. A unique index on analytics_events
-- itself cannot be added once TimescaleDB compression is enabled on it, as it is in the
-- existing deployment; this table is written in the same transaction as the events.
CREATE TABLE IF NOT EXISTS analytics_event_keys (
    event_id UUID NOT NULL,
    "timestamp" TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (event_id, "timestamp")
);
