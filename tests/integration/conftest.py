"""Real databases and a real server for the integration tests.

Two throwaway PostgreSQL clusters are started for the session from the machine's own server
binaries: one with TimescaleDB preloaded, one without (plain PostgreSQL). A test that needs
TimescaleDB fails, never skips, when the extension is not installed: scripts/install-postgres.sh
installs it. Set TEST_POSTGRES_URL / TEST_TIMESCALEDB_URL (a superuser URL) to use servers of
your own instead.

Each test gets a database of its own, and the service runs in-process on a real socket.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import uvicorn

from analytics_ingestion import migrations
from analytics_ingestion.app import create_app
from analytics_ingestion.cli import server_config
from analytics_ingestion.embedded import EmbeddedPostgres
from analytics_ingestion.settings import Settings

# The tests check behaviour, not durability: a faster cluster keeps the suite short.
FAST_CLUSTER = {"fsync": "off", "full_page_writes": "off", "max_connections": "300"}
EDITIONS = ("postgres", "timescaledb")
# Where the Timescale license's compression rules out a unique index, exactly once goes
# through the table of keys. That schema is the Apache edition's before migration 5.
KEY_TABLE = "timescaledb-key-table"
KEY_TABLE_UNTIL = 4


@dataclass
class Server:
    edition: str
    admin_url: str
    embedded: EmbeddedPostgres | None = None

    def url(self, database: str) -> str:
        parts = urlsplit(self.admin_url)
        return urlunsplit(parts._replace(path=f"/{database}"))


def start_cluster(edition: str, root: Path) -> EmbeddedPostgres:
    settings = dict(FAST_CLUSTER)
    if edition == "postgres":
        settings["shared_preload_libraries"] = "''"
    root.mkdir(mode=0o755, exist_ok=True)
    cluster = EmbeddedPostgres(root / edition, settings=settings)
    if edition == "timescaledb" and not cluster.has_timescaledb:
        pytest.fail(
            f"TimescaleDB is not installed for the PostgreSQL in {cluster.bin_dir}: "
            "run scripts/install-postgres.sh (the test command does)"
        )
    cluster.start()
    return cluster


@pytest.fixture(scope="session")
def cluster_root() -> Iterator[Path]:
    # Under /tmp so the unprivileged user the clusters run as (when root) can reach it.
    root = Path(tempfile.mkdtemp(prefix="analytics-tests-", dir="/tmp"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def servers(cluster_root: Path) -> Iterator[dict[str, Server]]:
    started: list[EmbeddedPostgres] = []
    found = {}
    try:
        for edition, variable in (
            ("postgres", "TEST_POSTGRES_URL"),
            ("timescaledb", "TEST_TIMESCALEDB_URL"),
        ):
            given = os.environ.get(variable)
            if given:
                found[edition] = Server(edition, given)
                continue
            cluster = start_cluster(edition, cluster_root)
            started.append(cluster)
            found[edition] = Server(edition, cluster.url(), cluster)
        yield found
    finally:
        for cluster in started:
            cluster.stop()


async def create_database(server: Server, *, migrate: bool = True, until: int | None = None) -> str:
    name = f"test_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(server.admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = server.url(name)
    if migrate:
        connection = await asyncpg.connect(url)
        try:
            await migrations.migrate(connection, "all", report=lambda _: None, until=until)
        finally:
            await connection.close()
    return url


@pytest.fixture(params=[*EDITIONS, KEY_TABLE])
async def database(request: pytest.FixtureRequest, servers: dict[str, Server]) -> str:
    """A migrated database of each edition, and of the key-table schema: tests using it run
    once for each."""
    if request.param == KEY_TABLE:
        return await create_database(servers["timescaledb"], until=KEY_TABLE_UNTIL)
    return await create_database(servers[request.param])


@pytest.fixture
async def timescale_database(servers: dict[str, Server]) -> str:
    return await create_database(servers["timescaledb"])


@pytest.fixture
async def db(database: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database)
    yield connection
    await connection.close()


# --- the service -----------------------------------------------------------------------------


@dataclass
class Service:
    url: str
    server: uvicorn.Server

    def client(self, **options: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=60, **options)


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def running_service(database_url: str, **environ: str) -> Iterator[Service]:
    """The app on a real socket, in a thread with its own event loop."""
    settings = Settings.from_environ(
        {"MIGRATE_ON_START": "true", "LOG_LEVEL": "warning", **environ}
    )
    server = uvicorn.Server(server_config(settings, create_app(settings, database_url)))
    sock = free_socket()
    port = sock.getsockname()[1]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the service did not start")
        time.sleep(0.01)
    try:
        yield Service(f"http://127.0.0.1:{port}", server)
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@pytest.fixture
def service(database: str) -> Iterator[Service]:
    with running_service(database, MIGRATE_ON_START="false") as running:
        yield running


async def query(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(url)
    try:
        return await connection.fetch(sql, *args)
    finally:
        await connection.close()


async def copies_by_task(url: str) -> dict[str, int]:
    """How many rows hold each `data->>'task_id'`: exactly once means 1 for every one."""
    rows = await query(
        url, "SELECT data->>'task_id' AS task, count(*) AS copies FROM analytics_events GROUP BY 1"
    )
    return {row["task"]: row["copies"] for row in rows}


async def post(client: httpx.AsyncClient, events: Any, **headers: str) -> httpx.Response:
    return await client.post("/events/batch", json=events, headers=headers)


async def wait_until(predicate: Any, within: float, interval: float = 0.05) -> float:
    """Poll an async predicate; return the seconds it took, or fail."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        if await predicate():
            return time.monotonic() - start
        await asyncio.sleep(interval)
    pytest.fail(f"condition not met within {within} s")


# --- the reliability report ------------------------------------------------------------------

RELIABILITY = pytest.StashKey[dict[str, Any]]()
REPORT = Path("reliability-report.json")


@pytest.fixture
def reliability(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Where a fault test records its counts (sent, acknowledged, stored, lost, duplicated)."""
    return request.config.stash.setdefault(RELIABILITY, {})


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    report = config.stash.get(RELIABILITY, None)
    if not report:
        return
    terminalreporter.section("reliability")
    for fault, figures in report.items():
        shown = ", ".join(f"{name} {value}" for name, value in figures.items())
        terminalreporter.write_line(f"{fault}: {shown}")
    REPORT.write_text(json.dumps(report, indent=2) + "\n")
