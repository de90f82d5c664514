SELECT {day} AS day,
       data->>'provider' AS provider,
       COUNT(*) FILTER (WHERE event_type = 'integration_connected') AS connections,
       COUNT(*) FILTER (WHERE event_type = 'integration_disconnected') AS disconnections,
       COUNT(*) FILTER (WHERE event_type = 'integration_used') AS uses,
       COUNT(*) FILTER (WHERE event_type = 'integration_error') AS errors,
       COUNT(DISTINCT user_id) AS unique_users
FROM analytics_events
WHERE event_type IN ('integration_connected', 'integration_disconnected', 'integration_used', 'integration_error')
GROUP BY day, provider
