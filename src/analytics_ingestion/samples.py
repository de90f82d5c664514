"""Realistic events of every catalog type, as the platform's client sends them: for the
benchmark and the tests."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from analytics_ingestion.catalog import EventType, load_catalog

CATALOG = load_catalog()

_STRINGS = {
    "email": "dev@example.com",
    "provider": "github",
    "command": "cargo test --workspace",
    "endpoint": "/api/v1/projects/{id}/tasks",
    "method": "POST",
    "service": "platform-api",
    "error": "connection reset by peer",
    "error_message": "task runner exited unexpectedly",
    "error_type": "RunnerCrashed",
}


def field_value(field_type: str, name: str, rng: random.Random) -> Any:
    if field_type == "uuid":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    if field_type == "string":
        return _STRINGS.get(name, f"{name}-{rng.randrange(10_000)}")
    if field_type == "boolean":
        return rng.random() < 0.8
    if field_type == "int32":
        return rng.randrange(0, 60_000)
    if field_type == "int64":
        return rng.randrange(0, 5_000_000)
    if field_type == "uint16":
        return rng.choice([200, 201, 204, 400, 404, 500, 503])
    if field_type == "float64":
        return round(rng.random() * 3, 6)
    return {"request_id": f"req-{rng.randrange(1_000_000)}", "retries": rng.randrange(4)}


def event_object(event_type: EventType, rng: random.Random, nulls: bool = False) -> dict[str, Any]:
    """The client's `event`: `type` first, then the fields in declaration order."""
    event: dict[str, Any] = {"type": event_type.wire_type}
    for field in event_type.fields:
        if field.nullable and (nulls or rng.random() < 0.3):
            event[field.name] = None
        else:
            event[field.name] = field_value(field.type, field.name, rng)
    return event


def client_timestamp(moment: datetime) -> str:
    """As chrono prints `Utc::now()`: nine fractional digits and a Z."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


def shape_a(
    event_type: EventType | None = None,
    rng: random.Random | None = None,
    moment: datetime | None = None,
) -> dict[str, Any]:
    rng = rng or random.Random()
    event_type = event_type or rng.choice(CATALOG.types)
    moment = moment or datetime.now(UTC) - timedelta(seconds=rng.randrange(86_400))
    return {
        "timestamp": client_timestamp(moment),
        "event": event_object(event_type, rng),
        "hostname": f"web-{rng.randrange(8)}",
        "environment": "production",
    }


def shape_b(rng: random.Random | None = None, moment: datetime | None = None) -> dict[str, Any]:
    rng = rng or random.Random()
    moment = moment or datetime.now(UTC)
    return {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "event_type": "TaskCreated",
        "user_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "service": "platform-api",
        "timestamp": moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "data": {"task_id": str(uuid.UUID(int=rng.getrandbits(128), version=4))},
    }


def batch(count: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [shape_a(rng=rng) for _ in range(count)]
