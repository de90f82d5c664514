-- Exactly once, where TimescaleDB allows it: a unique index on the events themselves, which
-- costs the database far less per event than a second table of keys. Rows stored before
-- migration 3 have no event_id; NULLs never conflict.
CREATE UNIQUE INDEX IF NOT EXISTS idx_analytics_events_event_identity
    ON analytics_events (event_id, "timestamp");
