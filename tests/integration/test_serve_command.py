"""`analytics-ingestion serve` as a user runs it: no database configured, then SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from analytics_ingestion.bench import free_port
from analytics_ingestion.embedded import EmbeddedPostgres
from analytics_ingestion.samples import CATALOG, shape_a
from tests.integration.conftest import copies_by_task


def test_serve_with_the_embedded_database(cluster_root: Path) -> None:
    data_dir = cluster_root / "embedded-serve"
    port = free_port()
    environ = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PLATFORM_DATABASE_URL")
    }
    environ.update(PORT=str(port), HOST="127.0.0.1", EMBEDDED_DATA_DIR=str(data_dir))
    process = subprocess.Popen(
        [sys.executable, "-m", "analytics_ingestion", "serve"],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stdout.read()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the service did not start"
            time.sleep(0.1)
        shape_a = {
            "timestamp": "2026-11-26T11:47:34.723533862Z",
            "event": {
                "type": "api_request",
                "service": "platform-api",
                "endpoint": "/health",
                "method": "GET",
                "status_code": 200,
                "duration_ms": 3,
                "user_id": None,
            },
            "hostname": "web-1",
            "environment": "production",
        }
        shape_b = {
            "event_id": "8c1e2d3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f",
            "event_type": "TaskCreated",
            "user_id": None,
            "service": "platform-api",
            "timestamp": "2026-11-26T11:47:34Z",
            "data": {"task_id": "0b8f8f5e-3c8a-4d51-9d47-1f0e2f3c4a5b"},
        }
        for element in (shape_a, shape_b):
            response = httpx.post(
                f"{base}/events/batch",
                content=json.dumps([element]),
                headers={"Content-Type": "application/json"},
            )
            assert response.status_code == 200, response.text
            assert response.json()["accepted"] == 1

        async def rows() -> list[asyncpg.Record]:
            url = f"postgresql://postgres@/analytics?host={data_dir / 'run'}"
            connection = await asyncpg.connect(url)
            try:
                return await connection.fetch(
                    "SELECT event_type, service FROM analytics_events ORDER BY id"
                )
            finally:
                await connection.close()

        assert [tuple(r) for r in asyncio.run(rows())] == [
            ("api_request", "platform-api"),
            ("task_created", "platform-api"),
        ]
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
        assert process.returncode == 0, output
        assert "using an embedded PostgreSQL" in output
        assert "writer drained and closed" in output
        assert not (data_dir / "pgdata" / "postmaster.pid").exists()  # and it stopped the server
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if (data_dir / "pgdata").exists():
            EmbeddedPostgres(data_dir).stop(even_if_not_started_here=True)


async def test_sigterm_under_load_answers_and_keeps_what_it_acknowledged(
    timescale_database: str, reliability: dict[str, Any]
) -> None:
    port = free_port()
    environ = {
        **os.environ,
        "DATABASE_URL": timescale_database,
        "PORT": str(port),
        "HOST": "127.0.0.1",
    }
    process = subprocess.Popen(  # noqa: ASYNC220 (started before any load)
        [sys.executable, "-m", "analytics_ingestion", "serve"],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    acknowledged: list[str] = []
    outcomes: dict[str, int] = {}
    rng = random.Random(15)
    task_created = CATALOG.find("task_created")
    assert task_created is not None
    try:
        async with httpx.AsyncClient(base_url=base) as probe:
            for _ in range(600):
                try:
                    if (await probe.get("/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)

        async def client_loop() -> None:
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                while True:
                    events = [shape_a(task_created, rng) for _ in range(50)]
                    try:
                        response = await client.post("/events/batch", json=events)
                    except httpx.TransportError as error:
                        outcomes[type(error).__name__] = outcomes.get(type(error).__name__, 0) + 1
                        return  # the server is gone: nothing was acknowledged
                    outcomes[str(response.status_code)] = (
                        outcomes.get(str(response.status_code), 0) + 1
                    )
                    if response.status_code == 200:
                        acknowledged.extend(e["event"]["task_id"] for e in events)
                    elif response.status_code == 503:
                        return

        clients = [asyncio.create_task(client_loop()) for _ in range(30)]
        for _ in range(400):  # until the load is flowing
            if len(acknowledged) >= 2000:
                break
            await asyncio.sleep(0.05)
        acknowledged_before = len(acknowledged)
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*clients), 60)
        output, _ = await asyncio.to_thread(process.communicate, None, 60)
        exited_in = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output
    assert exited_in < 25
    assert acknowledged_before > 0, outcomes
    stored = await copies_by_task(timescale_database)
    reliability["SIGTERM under load"] = {
        "acknowledged": len(acknowledged),
        "stored": len(stored),
        "lost": sum(1 for task in acknowledged if task not in stored),
        "duplicated": sum(copies - 1 for copies in stored.values()),
        "exited after (s)": round(exited_in, 2),
        "answers": outcomes,
    }
    assert all(stored.get(task) == 1 for task in acknowledged)
