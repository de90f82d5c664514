"""Faults under sustained concurrent load. Each test counts events sent, acknowledged (the
request was answered 2xx), stored, lost (acknowledged but not stored) and duplicated, and
records them in the report printed at the end of the run (reliability-report.json)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from analytics_ingestion.bench import free_port
from analytics_ingestion.embedded import EmbeddedPostgres
from analytics_ingestion.samples import shape_b
from tests.integration.conftest import (
    FAST_CLUSTER,
    Server,
    create_database,
    query,
    running_service,
    wait_until,
)

BATCH = 50


@dataclass
class Load:
    """Clients posting batches of shape-B events (their ids are known) until stopped. A batch
    answered with anything but 2xx is retried as it was: same ids, so never stored twice."""

    bases: list[str]
    clients: int = 8
    timeout: float = 10.0
    sent: set[str] = field(default_factory=set)
    acknowledged: set[str] = field(default_factory=set)
    answers: dict[str, int] = field(default_factory=dict)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def _client(self, number: int) -> None:
        rng = random.Random(number)
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            batch: list[dict[str, Any]] = []
            attempt = 0
            while not self._stop.is_set():
                if not batch:
                    batch = [shape_b(rng) for _ in range(BATCH)]
                    self.sent.update(event["event_id"] for event in batch)
                base = self.bases[(number + attempt) % len(self.bases)]
                attempt += 1
                try:
                    answer = await client.post(f"{base}/events/batch", json=batch)
                    outcome = str(answer.status_code)
                except httpx.TransportError as error:
                    outcome = type(error).__name__
                self.answers[outcome] = self.answers.get(outcome, 0) + 1
                if outcome.startswith("2"):
                    self.acknowledged.update(event["event_id"] for event in batch)
                    batch = []
                else:
                    await asyncio.sleep(0.05)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Load]:
        tasks = [asyncio.create_task(self._client(n)) for n in range(self.clients)]
        try:
            yield self
        finally:
            self._stop.set()
            await asyncio.gather(*tasks)

    async def count(self, url: str) -> dict[str, int]:
        rows = await query(url, "SELECT event_id::text, count(*) FROM analytics_events GROUP BY 1")
        stored = {row[0]: row[1] for row in rows}
        return {
            "sent": len(self.sent),
            "acknowledged": len(self.acknowledged),
            "stored": len(stored.keys() & self.sent),
            "lost": len(self.acknowledged - stored.keys()),
            "duplicated": sum(copies - 1 for copies in stored.values()),
        }


@contextlib.contextmanager
def service_process(url: str, port: int, **environ: str) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "analytics_ingestion", "serve"],
        env={
            **os.environ,
            "DATABASE_URL": url,
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "LOG_LEVEL": "WARNING",
            **environ,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                    break
            assert process.poll() is None, "the service exited"
            assert time.monotonic() < deadline, "the service did not become ready"
            time.sleep(0.05)
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


async def test_sigkill_during_load_loses_nothing_acknowledged(
    servers: dict[str, Server], reliability: dict[str, Any]
) -> None:
    url = await create_database(servers["timescaledb"])
    port = free_port()
    kills = 5
    async with Load([f"http://127.0.0.1:{port}"]).running() as load:
        for _ in range(kills):
            with service_process(url, port) as process:
                await asyncio.sleep(random.Random(kills).uniform(0.8, 1.5))
                process.send_signal(signal.SIGKILL)
                await asyncio.to_thread(process.wait)
        with service_process(url, port):  # the last one runs until the clients stop
            await asyncio.sleep(1.5)
    figures = await load.count(url)
    reliability[f"SIGKILL x{kills} under load"] = {**figures, "answers": load.answers}
    assert figures["acknowledged"] > 1000
    assert figures["lost"] == 0
    assert figures["duplicated"] == 0


async def test_two_instances_on_one_database(
    servers: dict[str, Server], reliability: dict[str, Any]
) -> None:
    url = await create_database(servers["postgres"], migrate=False)
    ports = [free_port(), free_port()]
    with contextlib.ExitStack() as stack:
        # Both start at once on an empty database: each tries to migrate it.
        starting = [
            asyncio.to_thread(stack.enter_context, service_process(url, port)) for port in ports
        ]
        await asyncio.gather(*starting)
        # Each client alternates instances, and retries go to the other one.
        async with Load([f"http://127.0.0.1:{port}" for port in ports]).running() as load:
            await asyncio.sleep(4)
    figures = await load.count(url)
    migrations = await query(url, "SELECT version, count(*) FROM _migrations GROUP BY 1")
    reliability["two instances, one database"] = {**figures, "answers": load.answers}
    assert figures["acknowledged"] > 1000
    assert (figures["lost"], figures["duplicated"]) == (0, 0)
    assert sorted((row[0], row[1]) for row in migrations) == [(v, 1) for v in range(1, 7)]


async def test_clients_that_time_out_and_retry_store_once(
    database: str, reliability: dict[str, Any]
) -> None:
    # Each flush waits 0.3 s for company, and clients give up after 0.1 s and retry the same
    # body: the first attempt commits while its client has stopped waiting.
    rng = random.Random(3)
    batches = [[shape_b(rng) for _ in range(20)] for _ in range(30)]
    keyed = [[{k: v for k, v in e.items() if k != "event_id"} for e in b] for b in batches[:15]]
    attempts = timeouts = 0
    with running_service(database, FLUSH_LINGER_SECONDS="0.3") as service:
        async with httpx.AsyncClient(base_url=service.url, timeout=0.1) as client:

            async def deliver(body: list[dict[str, Any]], key: str | None) -> None:
                nonlocal attempts, timeouts
                headers = {"Idempotency-Key": key} if key else {}
                while True:
                    attempts += 1
                    try:
                        answer = await client.post("/events/batch", json=body, headers=headers)
                        if answer.status_code == 200:
                            return
                    except httpx.TimeoutException:
                        timeouts += 1
                    client.timeout = httpx.Timeout(random.Random(attempts).choice([0.1, 2]))

            await asyncio.gather(
                *(deliver(body, None) for body in batches[15:]),
                *(deliver(body, f"batch-{n}") for n, body in enumerate(keyed)),
            )
    [row] = await query(database, "SELECT count(*), count(DISTINCT event_id) FROM analytics_events")
    stored, distinct = row
    reliability["client timeouts and retries"] = {
        "sent": 30 * 20,
        "attempts": attempts,
        "timed out": timeouts,
        "stored": stored,
        "duplicated": stored - distinct,
    }
    assert timeouts > 0
    assert (stored, distinct) == (600, 600)


async def test_postgresql_restart_during_load(
    cluster_root: Path, reliability: dict[str, Any]
) -> None:
    cluster = EmbeddedPostgres(
        cluster_root / f"restart-{uuid.uuid4().hex[:8]}", settings=dict(FAST_CLUSTER)
    )
    cluster.start()
    try:
        url = await create_database(Server("postgres", cluster.url(), cluster))
        with running_service(url, RETRY_AFTER_SECONDS="1") as service:
            async with Load([service.url], clients=6).running() as load:
                await asyncio.sleep(1)
                await asyncio.to_thread(cluster.stop)
                await asyncio.sleep(2)
                async with httpx.AsyncClient(base_url=service.url) as client:
                    away = await client.post("/events/batch", json=[shape_b()])
                    await asyncio.to_thread(cluster.start)
                    back = time.monotonic()

                    async def accepted() -> bool:
                        answer = await client.post("/events/batch", json=[shape_b()])
                        return answer.status_code == 200

                    await wait_until(accepted, within=10, interval=0.02)
                    recovered_in = time.monotonic() - back
                await asyncio.sleep(1)
        figures = await load.count(url)
    finally:
        cluster.stop()
    reliability["PostgreSQL restarted under load"] = {
        **figures,
        "writing again after (s)": round(recovered_in, 2),
        "answers": load.answers,
    }
    assert away.status_code == 503
    assert away.headers["retry-after"] == "1"
    assert recovered_in < 2
    assert (figures["lost"], figures["duplicated"]) == (0, 0)
    assert figures["acknowledged"] > 500
