"""The database goes away and comes back while the service runs."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import asyncpg

from analytics_ingestion.samples import shape_b
from tests.integration.conftest import (
    Server,
    create_database,
    post,
    running_service,
    start_cluster,
    wait_until,
)


async def test_503_while_the_database_is_down_then_recovery(cluster_root: Path) -> None:
    cluster = start_cluster("timescaledb", cluster_root / "loss")
    try:
        url = await create_database(Server("timescaledb", cluster.url(), cluster))
        rng = random.Random(7)
        with running_service(url) as service:
            async with service.client() as client:
                assert (await post(client, [shape_b(rng)])).status_code == 200

                cluster.stop()
                started = time.monotonic()
                down = await post(client, [shape_b(rng)])
                answered_in = time.monotonic() - started
                assert down.status_code == 503
                assert down.headers["Retry-After"] == "1"
                assert "database unavailable" in down.json()["error"]
                assert answered_in < 2.0
                ready = await client.get("/ready")
                assert ready.status_code == 503
                assert ready.json()["reason"].startswith("database unavailable")
                assert (await client.get("/health")).status_code == 200  # the process stays up

                cluster.start()
                back = time.monotonic()
                kept = shape_b(rng)

                async def accepted() -> bool:
                    return (await post(client, [kept])).status_code == 200

                await wait_until(accepted, within=10)
                recovered_in = time.monotonic() - back
                assert recovered_in < 5.0
                assert (await client.get("/ready")).status_code == 200
        db = await asyncpg.connect(url)
        try:
            assert await db.fetchval("SELECT count(*) FROM analytics_events") == 2
        finally:
            await db.close()
    finally:
        cluster.stop()


def _signal_cluster(cluster_dir: Path, signal_number: int) -> None:
    postmaster = int((cluster_dir / "postmaster.pid").read_text().split()[0])
    children = subprocess.run(
        ["pgrep", "-P", str(postmaster)], capture_output=True, text=True
    ).stdout.split()
    for pid in [postmaster, *map(int, children)]:
        os.kill(pid, signal_number)


async def test_a_database_that_stops_answering_gets_503_not_a_hang(cluster_root: Path) -> None:
    cluster = start_cluster("postgres", cluster_root / "hang")
    try:
        url = await create_database(Server("postgres", cluster.url(), cluster))
        rng = random.Random(9)
        with running_service(url, FLUSH_TIMEOUT_SECONDS="1") as service:
            async with service.client() as client:
                assert (await post(client, [shape_b(rng)])).status_code == 200
                _signal_cluster(cluster.cluster_dir, signal.SIGSTOP)
                try:
                    started = time.monotonic()
                    frozen = await post(client, [shape_b(rng)])
                    answered_in = time.monotonic() - started
                finally:
                    _signal_cluster(cluster.cluster_dir, signal.SIGCONT)
                assert frozen.status_code == 503
                assert "did not finish within 1 s" in frozen.json()["error"]
                assert answered_in < 4

                async def accepted() -> bool:
                    return (await post(client, [shape_b(rng)])).status_code == 200

                await wait_until(accepted, within=10)
    finally:
        cluster.stop()


async def test_a_write_stuck_inside_its_transaction_is_cut_off(servers: dict[str, Server]) -> None:
    url = await create_database(servers["postgres"])
    db = await asyncpg.connect(url)
    try:
        # Every COPY into the table now blocks inside the transaction, on a lock held here.
        await db.execute("BEGIN; LOCK TABLE analytics_events IN ACCESS EXCLUSIVE MODE")
        rng = random.Random(10)
        with running_service(url, FLUSH_TIMEOUT_SECONDS="1", WRITER_CONNECTIONS="1") as service:
            async with service.client() as client:
                started = time.monotonic()
                stuck = await post(client, [shape_b(rng)])
                answered_in = time.monotonic() - started
                assert stuck.status_code == 503
                assert "did not finish within 1 s" in stuck.json()["error"]
                assert answered_in < 3
                await db.execute("ROLLBACK")

                async def accepted() -> bool:  # the one flush worker is free again
                    return (await post(client, [shape_b(rng)])).status_code == 200

                await wait_until(accepted, within=10)
    finally:
        await db.close()
