SELECT {day} AS day,
       COUNT(DISTINCT user_id) AS active_users,
       COUNT(*) AS total_events
FROM analytics_events
WHERE user_id IS NOT NULL
GROUP BY day
