from __future__ import annotations

import json
import logging

from analytics_ingestion.logs import JSONFormatter, TextFormatter


def record(**extra: object) -> logging.LogRecord:
    entry = logging.makeLogRecord(
        {"name": "analytics_ingestion.app", "levelname": "INFO", "msg": "POST /events/batch %d"}
    )
    entry.args = (200,)
    entry.__dict__.update(extra)
    return entry


def test_json_lines_carry_the_extra_fields() -> None:
    line = JSONFormatter().format(record(status=200, duration_ms=12.5, accepted=100))
    entry = json.loads(line)
    assert entry["message"] == "POST /events/batch 200"
    assert (entry["level"], entry["logger"]) == ("INFO", "analytics_ingestion.app")
    assert (entry["status"], entry["duration_ms"], entry["accepted"]) == (200, 12.5, 100)
    assert "\n" not in line


def test_text_lines_append_the_extra_fields() -> None:
    line = TextFormatter().format(record(status=200, accepted=100))
    assert line.endswith("analytics_ingestion.app: POST /events/batch 200 status=200 accepted=100")
