"""Large and concurrent writes: every acknowledged event is present exactly once."""

from __future__ import annotations

import asyncio
import random

import asyncpg
import orjson

from analytics_ingestion.samples import CATALOG, shape_a
from tests.integration.conftest import Service, copies_by_task, running_service

TASK_CREATED = CATALOG.find("task_created")


async def test_one_request_of_50000_events(timescale_database: str) -> None:
    rng = random.Random(50)
    events = [shape_a(rng=rng) for _ in range(50_000)]
    body = orjson.dumps(events)
    with running_service(timescale_database) as service:
        async with service.client() as client:
            response = await client.post(
                "/events/batch", content=body, headers={"content-type": "application/json"}
            )
    assert response.status_code == 200, response.text[:500]
    assert response.json() == {
        "received": 50_000,
        "accepted": 50_000,
        "duplicates": 0,
        "rejected": [],
    }
    db = await asyncpg.connect(timescale_database)
    try:
        assert await db.fetchval("SELECT count(*) FROM analytics_events") == 50_000
    finally:
        await db.close()


async def test_200_concurrent_clients_every_acknowledged_event_once(
    timescale_database: str,
) -> None:
    clients, batches, size = 200, 20, 10
    rng = random.Random(200)
    assert TASK_CREATED is not None
    bodies = [
        [[shape_a(TASK_CREATED, rng) for _ in range(size)] for _ in range(batches)]
        for _ in range(clients)
    ]
    acknowledged: list[str] = []

    async def client_loop(service: Service, mine: list[list[dict[str, object]]]) -> None:
        async with service.client() as client:  # one connection each, as separate services have
            for events in mine:
                response = await client.post("/events/batch", json=events)
                if 200 <= response.status_code < 300:
                    assert response.json()["accepted"] == size
                    acknowledged.extend(e["event"]["task_id"] for e in events)  # type: ignore[index]

    with running_service(timescale_database) as service:
        await asyncio.gather(*(client_loop(service, mine) for mine in bodies))
    stored = await copies_by_task(timescale_database)
    assert len(acknowledged) == clients * batches * size  # nothing was refused here
    assert all(stored.get(task) == 1 for task in acknowledged), (
        "an acknowledged event is missing or doubled"
    )
    assert len(stored) == len(acknowledged)
