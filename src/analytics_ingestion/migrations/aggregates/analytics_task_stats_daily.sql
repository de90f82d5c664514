SELECT {day} AS day,
       COUNT(*) FILTER (WHERE event_type = 'task_created') AS created,
       COUNT(*) FILTER (WHERE event_type = 'task_started') AS started,
       COUNT(*) FILTER (WHERE event_type = 'task_completed') AS completed,
       COUNT(*) FILTER (WHERE event_type = 'task_failed') AS failed,
       COUNT(*) FILTER (WHERE event_type = 'task_cancelled') AS cancelled,
       AVG((data->>'duration_ms')::DOUBLE PRECISION)
           FILTER (WHERE event_type = 'task_completed') AS avg_duration_ms,
       PERCENTILE_CONT(0.95) WITHIN GROUP (ORDER BY (data->>'duration_ms')::DOUBLE PRECISION)
           FILTER (WHERE event_type = 'task_completed') AS p95_duration_ms
FROM analytics_events
WHERE event_type IN ('task_created', 'task_started', 'task_completed', 'task_failed', 'task_cancelled')
GROUP BY day
