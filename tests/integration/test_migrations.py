"""Migrations on each kind of database: plain PostgreSQL, TimescaleDB (Apache license), and a
database the existing deployment's tool migrated. (The Timescale-licensed edition is not
available on this machine; its SQL is checked in tests/unit/test_migration_plan.py.)"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from analytics_ingestion import migrations
from analytics_ingestion.samples import shape_b
from tests.integration.conftest import Server, create_database, post, query, running_service

# The existing deployment's schema, as its tool created it (contract §4-§6), minus what the
# Apache edition refuses (compression, policies, continuous aggregates): its aggregates are
# stood in for by materialized views of the same names.
EXISTING_SCHEMA = """
CREATE EXTENSION IF NOT EXISTS timescaledb;
CREATE TABLE analytics_events (
    id BIGSERIAL,
    "timestamp" TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    event_type VARCHAR(100) NOT NULL,
    service VARCHAR(100) NOT NULL DEFAULT 'unknown',
    user_id UUID,
    data JSONB NOT NULL,
    PRIMARY KEY ("timestamp", id)
);
SELECT create_hypertable('analytics_events', 'timestamp', chunk_time_interval => INTERVAL '1 day');
CREATE INDEX idx_analytics_events_user_time ON analytics_events (user_id, "timestamp" DESC) WHERE user_id IS NOT NULL;
CREATE INDEX idx_analytics_events_type_time ON analytics_events (event_type, "timestamp" DESC);
CREATE INDEX idx_analytics_events_service_time ON analytics_events (service, "timestamp" DESC);
CREATE INDEX idx_analytics_events_data ON analytics_events USING GIN (data);
CREATE MATERIALIZED VIEW analytics_daily_active_users AS
    SELECT time_bucket(INTERVAL '1 day', "timestamp") AS day, COUNT(DISTINCT user_id) AS active_users,
           COUNT(*) AS total_events
    FROM analytics_events WHERE user_id IS NOT NULL GROUP BY day;
CREATE TABLE _migrations (version BIGINT PRIMARY KEY, name VARCHAR(255) NOT NULL, applied_at BIGINT NOT NULL);
INSERT INTO _migrations VALUES (1, '001_create_analytics_events', 1760000000),
                               (2, '002_create_analytics_aggregates', 1760000100);
"""


async def status_of(url: str) -> str:
    connection = await asyncpg.connect(url)
    try:
        return await migrations.status(connection)
    finally:
        await connection.close()


async def migrate(url: str, phase: str = "all") -> list[int]:
    connection = await asyncpg.connect(url)
    try:
        return [
            m.version for m in await migrations.migrate(connection, phase, report=lambda _: None)
        ]
    finally:
        await connection.close()


async def test_plain_postgresql(servers: dict[str, Server]) -> None:
    url = await create_database(servers["postgres"], migrate=False)
    before = await status_of(url)
    assert "edition:  PostgreSQL without TimescaleDB" in before
    assert "applied:  nothing" in before
    assert "1 001_create_analytics_events (pre): table analytics_events; indexes" in before
    assert (
        "2 002_create_analytics_aggregates (post): the seven aggregates as ordinary views" in before
    )
    assert "analytics_events: missing" in before

    assert await migrate(url, "pre") == [1, 3, 4, 5]
    assert await migrate(url, "post") == [2, 6]
    after = await status_of(url)
    assert "pending:  nothing" in after
    assert "analytics_events: ordinary table" in after
    assert "analytics_daily_active_users (view)" in after
    assert (
        "left out for this edition: the timescaledb extension; hypertable with 1-day chunks"
        in after
    )
    indexes = await query(
        url, "SELECT indexname FROM pg_indexes WHERE tablename = 'analytics_events'"
    )
    assert {row[0] for row in indexes} == {
        "analytics_events_pkey",
        "idx_analytics_events_user_time",
        "idx_analytics_events_type_time",
        "idx_analytics_events_service_time",
        "idx_analytics_events_data",
        "idx_analytics_events_event_identity",
    }
    assert "analytics_event_keys: missing" in after


async def test_timescaledb_apache_license(servers: dict[str, Server]) -> None:
    url = await create_database(servers["timescaledb"], migrate=False)
    before = await status_of(url)
    assert "TimescaleDB 2.19.3 (apache license)" in before
    assert "edition:  TimescaleDB, Apache license" in before
    assert (
        "left out for this edition: compression after 7 days and retention of 90 days; "
        "the seven continuous aggregates with hourly refresh policies" in before
    )
    assert await migrate(url) == [1, 2, 3, 4, 5, 6]
    after = await status_of(url)
    assert "idx_analytics_events_event_identity: present" in after
    assert "analytics_events: hypertable" in after
    assert "analytics_errors_hourly (view)" in after
    connection = await asyncpg.connect(url)
    try:
        interval = await connection.fetchval(
            "SELECT time_interval FROM timescaledb_information.dimensions "
            "WHERE hypertable_name = 'analytics_events'"
        )
    finally:
        await connection.close()
    assert str(interval) == "1 day, 0:00:00"


async def test_existing_deployment_is_upgraded_without_touching_its_rows(
    servers: dict[str, Server],
) -> None:
    url = await create_database(servers["timescaledb"], migrate=False)
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(EXISTING_SCHEMA)
        for n in range(100):
            await connection.execute(
                "INSERT INTO analytics_events (timestamp, event_type, service, user_id, data) "
                "VALUES ($1, 'task_created', 'unknown', $2, $3)",
                datetime(2026, 11, 20 + n % 5, n % 24, tzinfo=UTC),
                uuid.UUID(int=n + 1),
                json.dumps({"type": "task_created", "n": n}),
            )
        old_rows = await connection.fetch("SELECT * FROM analytics_events ORDER BY id")
        before = await status_of(url)
        assert "1 001_create_analytics_events at 2025-10-09" in before
        assert "pending:\n  3 003_add_event_identity (pre)" in before
        assert "4 004_create_dead_letters (pre)" in before
        assert "added columns: none" in before
        assert "analytics_daily_active_users (materialized view)" in before

        assert await migrate(url) == [3, 4, 5, 6]
        versions = await connection.fetch(
            "SELECT version, name, applied_at FROM _migrations ORDER BY 1"
        )
        assert [(v["version"], v["name"]) for v in versions] == [
            (1, "001_create_analytics_events"),
            (2, "002_create_analytics_aggregates"),
            (3, "003_add_event_identity"),
            (4, "004_create_dead_letters"),
            (5, "005_add_event_identity_index"),
            (6, "006_drop_event_keys"),
        ]
        assert versions[0]["applied_at"] == 1760000000
        columns = list(old_rows[0].keys())
        new_rows = await connection.fetch(
            f"SELECT {', '.join(columns)} FROM analytics_events ORDER BY id"
        )
        assert new_rows == old_rows
        assert (
            await connection.fetchval(
                "SELECT count(*) FROM analytics_events WHERE event_id IS NULL AND received_at IS NULL"
            )
            == 100
        )
        # The aggregate the old tool made is left as it was.
        assert (
            await connection.fetchval(
                "SELECT relkind::text FROM pg_class WHERE relname = 'analytics_daily_active_users'"
            )
            == "m"
        )

        with running_service(url) as service:
            async with service.client() as client:
                event = {"timestamp": "2026-11-26T10:00:00Z", "event": {"type": "something_new"}}
                assert (await post(client, [event])).json()["accepted"] == 1
        assert await connection.fetchval("SELECT count(*) FROM analytics_events") == 101
        after = await status_of(url)
        assert "pending:  nothing" in after
        assert "added columns: environment, event_id, hostname, received_at" in after
    finally:
        await connection.close()


async def test_from_the_key_table_to_the_unique_index(servers: dict[str, Server]) -> None:
    # A database of the previous release: exactly once through analytics_event_keys. This
    # instance keeps running through both migrations, as in a rolling deploy.
    url = await create_database(servers["timescaledb"], until=4)
    events = [shape_b(random.Random(n)) for n in range(30)]
    with running_service(url, MIGRATE_ON_START="false") as service:
        async with service.client() as client:
            assert (await post(client, events[:10])).json()["accepted"] == 10
            assert await migrate(url, "pre") == [5]  # the index, beside the key table
            with running_service(url, MIGRATE_ON_START="false") as newer:
                async with newer.client() as newer_client:
                    body = (await post(newer_client, events[:20])).json()
            assert (body["accepted"], body["duplicates"]) == (10, 10)
            assert await migrate(url, "post") == [6]  # the key table goes
            after = (await post(client, events)).json()  # the old instance switches over
    assert (after["accepted"], after["duplicates"]) == (10, 20)
    status = await status_of(url)
    assert "idx_analytics_events_event_identity: present" in status
    assert "analytics_event_keys: missing" in status
    [count] = await query(url, "SELECT count(*) FROM analytics_events")
    assert count[0] == 30


@pytest.mark.parametrize("edition", ["postgres", "timescaledb"])
async def test_instances_starting_at_once_migrate_once(
    servers: dict[str, Server], edition: str
) -> None:
    url = await create_database(servers[edition], migrate=False)
    results = await asyncio.gather(*(migrate(url) for _ in range(5)))
    applied = sorted(v for result in results for v in result)
    assert applied == [1, 2, 3, 4, 5, 6]


def test_the_migrate_command(servers: dict[str, Server]) -> None:
    url = asyncio.run(create_database(servers["postgres"], migrate=False))
    environ = {**os.environ, "DATABASE_URL": url}
    command = [sys.executable, "-m", "analytics_ingestion", "migrate"]

    def run(*args: str) -> str:
        result = subprocess.run(
            [*command, *args], env=environ, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "pending:\n  1 001_create_analytics_events" in run("status")
    assert "CREATE TABLE IF NOT EXISTS analytics_events" in run("dry-run")
    assert "pending:\n  1" in run("status")  # dry-run changed nothing
    run("all")
    assert "pending:  nothing" in run("status")
    assert "nothing pending (all)" in run()
