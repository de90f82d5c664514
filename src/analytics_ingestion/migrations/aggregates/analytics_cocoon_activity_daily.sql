SELECT {day} AS day,
       COUNT(*) FILTER (WHERE event_type = 'cocoon_registered') AS registrations,
       COUNT(*) FILTER (WHERE event_type = 'cocoon_connected') AS connections,
       COUNT(*) FILTER (WHERE event_type = 'cocoon_disconnected') AS disconnections,
       COUNT(*) FILTER (WHERE event_type = 'cocoon_claimed') AS claims,
       AVG((data->>'duration_seconds')::DOUBLE PRECISION)
           FILTER (WHERE event_type = 'cocoon_disconnected') AS avg_session_duration_seconds,
       COUNT(DISTINCT data->>'cocoon_id') AS unique_cocoons
FROM analytics_events
WHERE event_type IN ('cocoon_registered', 'cocoon_connected', 'cocoon_disconnected', 'cocoon_claimed')
GROUP BY day
