from __future__ import annotations

from analytics_ingestion.metrics import Metrics


def test_counts_render_as_prometheus_text() -> None:
    metrics = Metrics()
    metrics.add("analytics_requests_total", status="200")
    metrics.add("analytics_requests_total", status="200")
    metrics.add("analytics_events_rejected_total", 3, stage="validation")
    text = metrics.render({"analytics_queue_events": 7})
    assert 'analytics_requests_total{status="200"} 2\n' in text
    assert 'analytics_events_rejected_total{stage="validation"} 3\n' in text
    assert "# TYPE analytics_queue_events gauge\nanalytics_queue_events 7\n" in text
    assert metrics.value("analytics_requests_total", status="200") == 2


def test_histograms_render_cumulative_buckets() -> None:
    metrics = Metrics()
    for value in (0.003, 0.02, 0.02, 30.0):
        metrics.observe("analytics_flush_seconds", value)
    text = metrics.render({})
    assert "# TYPE analytics_flush_seconds histogram\n" in text
    assert 'analytics_flush_seconds_bucket{le="0.005"} 1\n' in text
    assert 'analytics_flush_seconds_bucket{le="0.025"} 3\n' in text
    assert 'analytics_flush_seconds_bucket{le="10"} 3\n' in text
    assert 'analytics_flush_seconds_bucket{le="+Inf"} 4\n' in text
    assert "analytics_flush_seconds_sum 30.043\nanalytics_flush_seconds_count 4\n" in text


def test_sums_keep_every_digit() -> None:
    metrics = Metrics()
    metrics.observe("analytics_flush_seconds", 1234567.25)
    metrics.add("analytics_events_accepted_total", 12_345_678_901)
    text = metrics.render({})
    assert "analytics_flush_seconds_sum 1234567.25\n" in text
    assert "analytics_events_accepted_total 12345678901\n" in text
