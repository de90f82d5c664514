-- New columns are nullable and without a default when added, so existing rows are not
-- rewritten and do not pretend to have been received at migration time.
ALTER TABLE analytics_events ADD COLUMN IF NOT EXISTS event_id UUID;
ALTER TABLE analytics_events ADD COLUMN IF NOT EXISTS received_at TIMESTAMPTZ;
ALTER TABLE analytics_events ALTER COLUMN received_at SET DEFAULT NOW();
ALTER TABLE analytics_events ADD COLUMN IF NOT EXISTS hostname TEXT;
ALTER TABLE analytics_events ADD COLUMN IF NOT EXISTS environment TEXT;
-- Exactly once: the same event can't be stored twice. Under a hypertable a unique index must
-- include the partitioning column. Rows written without an event_id (NULL) never conflict.
CREATE UNIQUE INDEX IF NOT EXISTS idx_analytics_events_event_id
    ON analytics_events (event_id, "timestamp");
