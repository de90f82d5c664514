SELECT {hour} AS hour,
       service,
       data->>'error_type' AS error_type,
       COUNT(*) AS error_count,
       COUNT(DISTINCT user_id) AS affected_users,
       {first_error_message} AS sample_error_message
FROM analytics_events
WHERE event_type = 'application_error'
GROUP BY hour, service, error_type
