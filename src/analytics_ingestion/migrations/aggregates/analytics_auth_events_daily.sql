SELECT {day} AS day,
       COUNT(*) FILTER (WHERE event_type = 'auth_login_attempt') AS login_attempts,
       COUNT(*) FILTER (WHERE event_type = 'auth_login_attempt' AND (data->>'success')::BOOLEAN) AS successful_logins,
       COUNT(*) FILTER (WHERE event_type = 'auth_login_attempt' AND NOT (data->>'success')::BOOLEAN) AS failed_logins,
       COUNT(*) FILTER (WHERE event_type = 'auth_code_verified') AS code_verifications,
       COUNT(*) FILTER (WHERE event_type = 'auth_token_refresh') AS token_refreshes,
       COUNT(DISTINCT user_id) FILTER (WHERE (data->>'success')::BOOLEAN) AS unique_users_authenticated
FROM analytics_events
WHERE event_type IN ('auth_login_attempt', 'auth_code_verified', 'auth_token_refresh')
GROUP BY day
