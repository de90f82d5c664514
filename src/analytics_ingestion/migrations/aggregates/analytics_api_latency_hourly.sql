SELECT {hour} AS hour,
       service,
       data->>'endpoint' AS endpoint,
       data->>'method' AS method,
       COUNT(*) AS request_count,
       AVG((data->>'duration_ms')::DOUBLE PRECISION) AS avg_duration_ms,
       PERCENTILE_CONT(0.50) WITHIN GROUP (ORDER BY (data->>'duration_ms')::DOUBLE PRECISION) AS p50_duration_ms,
       PERCENTILE_CONT(0.95) WITHIN GROUP (ORDER BY (data->>'duration_ms')::DOUBLE PRECISION) AS p95_duration_ms,
       PERCENTILE_CONT(0.99) WITHIN GROUP (ORDER BY (data->>'duration_ms')::DOUBLE PRECISION) AS p99_duration_ms,
       COUNT(*) FILTER (WHERE (data->>'status_code')::INTEGER >= 500) AS error_5xx_count,
       COUNT(*) FILTER (WHERE (data->>'status_code')::INTEGER BETWEEN 400 AND 499) AS error_4xx_count
FROM analytics_events
WHERE event_type = 'api_request'
GROUP BY hour, service, endpoint, method
