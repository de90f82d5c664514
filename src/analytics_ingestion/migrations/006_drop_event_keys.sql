-- After every instance writes through the unique index, the table of keys is redundant:
-- each of its keys is also the event_id and timestamp of its event.
DROP TABLE IF EXISTS analytics_event_keys;
