"""Over HTTP into a real database (plain PostgreSQL and TimescaleDB), reading the rows back."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from analytics_ingestion.samples import CATALOG, event_object, shape_a, shape_b
from analytics_ingestion.wire import idempotent_event_id, parse_timestamp
from tests.integration.conftest import Service, post


async def stored(db: asyncpg.Connection, where: str = "TRUE") -> list[asyncpg.Record]:
    return await db.fetch(f"SELECT * FROM analytics_events WHERE {where} ORDER BY id")


async def test_health_and_ready(service: Service) -> None:
    async with service.client() as client:
        health = await client.get("/health")
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        ready = await client.get("/ready")
        assert ready.status_code == 200
        assert ready.json()["status"] == "ready"


async def test_every_catalog_type_gives_the_contract_row(
    service: Service, db: asyncpg.Connection
) -> None:
    rng = random.Random(34)
    moment = datetime(2026, 11, 26, 11, 47, 34, 723533, tzinfo=UTC)
    elements = []
    for event_type in CATALOG.types:
        for nulls in (False, True):
            elements.append(
                {
                    "timestamp": moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "862Z",
                    "event": event_object(event_type, rng, nulls=nulls),
                    "hostname": "web-1" if nulls else None,
                    "environment": "production",
                }
            )
    before = datetime.now(UTC)
    async with service.client() as client:
        response = await post(client, elements)
    assert response.status_code == 200, response.text
    assert response.json() == {"received": 68, "accepted": 68, "duplicates": 0, "rejected": []}

    rows = await stored(db)
    assert len(rows) == 68
    for element, row in zip(elements, rows, strict=True):
        event = element["event"]
        known = CATALOG.find(event["type"])
        assert known is not None
        assert row["timestamp"] == moment  # .723533862 is stored as .723533: truncated
        assert row["event_type"] == known.event_type
        assert row["service"] == event.get("service", "unknown")
        assert row["user_id"] == (uuid.UUID(event["user_id"]) if event.get("user_id") else None)
        assert json.loads(row["data"]) == event
        assert row["hostname"] == element["hostname"]
        assert row["environment"] == "production"
        assert row["event_id"].version == 7
        assert before <= row["received_at"] <= datetime.now(UTC)
    assert {row["event_type"] for row in rows} >= {"oauth_flow_started", "oauth_flow_completed"}


async def test_shape_b_row(service: Service, db: asyncpg.Connection) -> None:
    element = shape_b(random.Random(2))
    element["event_type"] = "OAuthFlowStarted"
    async with service.client() as client:
        assert (await post(client, [element])).json()["accepted"] == 1
    [row] = await stored(db)
    assert row["event_id"] == uuid.UUID(element["event_id"])
    assert row["event_type"] == "oauth_flow_started"
    assert row["service"] == "platform-api"
    assert row["user_id"] == uuid.UUID(element["user_id"])
    assert json.loads(row["data"]) == element["data"]
    assert row["timestamp"] == parse_timestamp(element["timestamp"])
    assert (row["hostname"], row["environment"]) == (None, None)


async def test_a_malformed_event_among_99_good_ones(
    service: Service, db: asyncpg.Connection
) -> None:
    events = [shape_a(rng=random.Random(n)) for n in range(100)]
    events[37] = {"timestamp": "yesterday", "event": {"type": "task_created"}}
    async with service.client() as client:
        response = await post(client, events)
    assert response.status_code == 200
    body = response.json()
    assert (body["received"], body["accepted"], body["duplicates"]) == (100, 99, 0)
    assert body["rejected"] == [{"index": 37, "error": "event.task_id: required for task_created"}]
    assert len(await stored(db)) == 99
    [letter] = await db.fetch("SELECT * FROM analytics_dead_letters")
    assert letter["event_index"] == 37
    assert letter["reason"] == "event.task_id: required for task_created"
    assert json.loads(letter["payload"]) == events[37]
    assert letter["received_at"] > datetime.now(UTC) - timedelta(minutes=1)
    async with service.client() as client:
        metrics = (await client.get("/metrics")).text
    assert 'analytics_events_rejected_total{reason="invalid_field"} 1\n' in metrics
    assert "analytics_events_accepted_total 99\n" in metrics


async def test_nothing_valid_is_422_and_dead_lettered(
    service: Service, db: asyncpg.Connection
) -> None:
    async with service.client() as client:
        response = await post(client, [1, {"event_type": "x", "timestamp": "2026-11-26T11:47:34"}])
    assert response.status_code == 422
    body = response.json()
    assert (body["received"], body["accepted"]) == (2, 0)
    assert [r["index"] for r in body["rejected"]] == [0, 1]
    assert "offset" in body["rejected"][1]["error"]
    assert await db.fetchval("SELECT count(*) FROM analytics_dead_letters") == 2
    assert await stored(db) == []


async def test_empty_batch(service: Service) -> None:
    async with service.client() as client:
        response = await post(client, [])
    assert (response.status_code, response.json()) == (
        200,
        {"received": 0, "accepted": 0, "duplicates": 0, "rejected": []},
    )


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        pytest.param(
            b"[]",
            {"content-type": "text/plain"},
            415,
            "Content-Type must be application/json",
            id="content-type",
        ),
        pytest.param(b"[]", {}, 415, "got none", id="no-content-type"),
        pytest.param(
            b'[{"a": 1},',
            {"content-type": "application/json"},
            400,
            "invalid JSON at line 1",
            id="truncated",
        ),
        pytest.param(
            b'{"events": []}',
            {"content-type": "application/json; charset=utf-8"},
            400,
            "expected a JSON array",
            id="object",
        ),
    ],
)
async def test_request_errors(
    service: Service,
    db: asyncpg.Connection,
    body: bytes,
    headers: dict[str, str],
    status: int,
    message: str,
) -> None:
    async with service.client() as client:
        response = await client.post("/events/batch", content=body, headers=headers)
    assert response.status_code == status
    assert message in response.json()["error"]
    letters = await db.fetch("SELECT reason, payload FROM analytics_dead_letters")
    if status == 400:  # an unreadable body is kept whole
        assert [(r["reason"], r["payload"]) for r in letters] == [(response.json()["error"], body)]
    else:
        assert letters == []


async def test_body_size_limit(database: str, db: asyncpg.Connection) -> None:
    from tests.integration.conftest import running_service

    with running_service(database, MAX_BODY_BYTES="2048") as service:
        async with service.client() as client:
            big = [shape_a(rng=random.Random(n)) for n in range(20)]
            response = await post(client, big)
            assert response.status_code == 413
            assert response.json() == {
                "error": "request body exceeds the limit of 2048 bytes (MAX_BODY_BYTES)",
                "limit_bytes": 2048,
            }
            assert (await post(client, big[:2])).status_code == 200
    assert len(await stored(db)) == 2


async def test_same_event_ids_twice_store_nothing_twice(
    service: Service, db: asyncpg.Connection
) -> None:
    events = [shape_b(random.Random(n)) for n in range(50)]
    async with service.client() as client:
        first = (await post(client, events)).json()
        again = (await post(client, events)).json()
        overlap = (await post(client, [*events[40:], shape_b(random.Random(99))])).json()
    assert (first["accepted"], first["duplicates"]) == (50, 0)
    assert (again["accepted"], again["duplicates"]) == (0, 50)
    assert (overlap["accepted"], overlap["duplicates"]) == (1, 10)
    assert await db.fetchval("SELECT count(*) FROM analytics_events") == 51


async def test_same_idempotency_key_twice_stores_nothing_twice(
    service: Service, db: asyncpg.Connection
) -> None:
    events = [shape_a(rng=random.Random(n)) for n in range(30)]
    async with service.client() as client:
        first = (await post(client, events, **{"Idempotency-Key": "batch-7"})).json()
        again = (await post(client, events, **{"Idempotency-Key": "batch-7"})).json()
        other = (await post(client, events, **{"Idempotency-Key": "batch-8"})).json()
    assert (first["accepted"], again["accepted"], again["duplicates"]) == (30, 0, 30)
    assert other["accepted"] == 30  # another key is another batch
    ids = {row["event_id"] for row in await stored(db)}
    assert len(ids) == 60
    assert uuid.UUID(idempotent_event_id("batch-7", 29)) in ids


async def test_duplicates_inside_one_batch(service: Service, db: asyncpg.Connection) -> None:
    event = shape_b(random.Random(5))
    async with service.client() as client:
        body = (await post(client, [event, shape_b(random.Random(6)), event])).json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (2, 1, [])
    assert await db.fetchval("SELECT count(*) FROM analytics_events") == 2


async def test_an_event_the_database_refuses_is_isolated(
    service: Service, db: asyncpg.Connection
) -> None:
    # A rule of the database that validation cannot know about: the write path must find the
    # one event that breaks it, dead-letter it, and store the rest of the flush.
    await db.execute(
        "ALTER TABLE analytics_events ADD CONSTRAINT no_forbidden CHECK (data->>'command' <> 'forbidden')"
    )
    rng = random.Random(8)
    task_created = CATALOG.find("task_created")
    assert task_created is not None
    events = [shape_a(task_created, rng) for _ in range(40)]
    events[13]["event"]["command"] = "forbidden"
    events[14] = shape_b(rng)
    async with service.client() as client:
        duplicate = await post(client, [events[14]])
        response = await post(client, events)
    assert duplicate.json()["accepted"] == 1
    body = response.json()
    assert response.status_code == 200
    assert (body["accepted"], body["duplicates"]) == (38, 1)
    [rejected] = body["rejected"]
    assert rejected["index"] == 13
    assert "refused by the database" in rejected["error"] and "no_forbidden" in rejected["error"]
    assert await db.fetchval("SELECT count(*) FROM analytics_events") == 39
    letter = await db.fetchrow("SELECT event_index, reason, payload FROM analytics_dead_letters")
    assert (letter["event_index"], letter["reason"]) == (13, rejected["error"])
    assert json.loads(letter["payload"])["data"]["command"] == "forbidden"


async def test_the_aggregate_views_answer(service: Service, db: asyncpg.Connection) -> None:
    rng = random.Random(11)
    events = [
        shape_a(t, rng, datetime(2026, 11, 25, 10, tzinfo=UTC))
        for t in CATALOG.types
        for _ in range(3)
    ]
    async with service.client() as client:
        assert (await post(client, events)).json()["accepted"] == len(events)
    stats = await db.fetchrow("SELECT * FROM analytics_task_stats_daily")
    assert stats["day"] == datetime(2026, 11, 25, tzinfo=UTC)
    assert (stats["created"], stats["completed"], stats["cancelled"]) == (3, 3, 3)
    assert 0 < stats["avg_duration_ms"] <= 5_000_000
    assert stats["p95_duration_ms"] is not None
    for name, columns in {
        "analytics_daily_active_users": "day, active_users, total_events",
        "analytics_api_latency_hourly": "hour, service, endpoint, method, request_count, avg_duration_ms, "
        "p50_duration_ms, p95_duration_ms, p99_duration_ms, error_5xx_count, error_4xx_count",
        "analytics_integration_health_daily": "day, provider, connections, disconnections, uses, errors, unique_users",
        "analytics_auth_events_daily": "day, login_attempts, successful_logins, failed_logins, code_verifications, "
        "token_refreshes, unique_users_authenticated",
        "analytics_cocoon_activity_daily": "day, registrations, connections, disconnections, claims, "
        "avg_session_duration_seconds, unique_cocoons",
        "analytics_errors_hourly": "hour, service, error_type, error_count, affected_users, sample_error_message",
    }.items():
        rows = await db.fetch(f"SELECT {columns} FROM {name}")
        assert rows, name
    errors = await db.fetchrow("SELECT * FROM analytics_errors_hourly")
    assert (errors["error_count"], errors["sample_error_message"]) == (
        3,
        "task runner exited unexpectedly",
    )


async def test_concurrent_retries_in_opposite_order_all_succeed(
    service: Service, db: asyncpg.Connection
) -> None:
    # The same events in two concurrent requests, in opposite orders: their transactions wait
    # on each other's keys; the deadlock PostgreSQL may detect is retried, never answered 503.
    rng = random.Random(21)
    for _ in range(5):
        events = [shape_b(rng) for _ in range(200)]
        async with service.client() as first, service.client() as second:
            answers = await asyncio.gather(post(first, events), post(second, events[::-1]))
        assert [a.status_code for a in answers] == [200, 200]
        bodies = [a.json() for a in answers]
        assert sum(b["accepted"] for b in bodies) == 200
        assert sum(b["duplicates"] for b in bodies) == 200
    assert await db.fetchval("SELECT count(*) FROM analytics_events") == 1000
