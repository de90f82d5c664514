"""`analytics-ingestion serve` as a user runs it: no database configured, then SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx

from analytics_ingestion.embedded import EmbeddedPostgres
from tests.integration.conftest import free_socket


def test_serve_with_the_embedded_database(cluster_root: Path) -> None:
    data_dir = cluster_root / "embedded-serve"
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
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

        import asyncio

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
