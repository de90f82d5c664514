"""Schema migrations, recorded the way the existing deployment's tool records them.

`_migrations(version, name, applied_at)` lists what was applied. Versions 1 and 2 are the
existing tool's (the table and its hypertable, then the seven aggregates); a database it
migrated is left as it is, and this project's additions come as versions 3 and up.

What a migration runs depends on what the database offers (its *edition*):

- TimescaleDB with the Timescale license: everything (hypertable, compression, retention,
  continuous aggregates with refresh policies);
- TimescaleDB with the Apache license: the hypertable; the aggregates as ordinary views with
  the same names and columns, so the reader keeps working;
- plain PostgreSQL: an ordinary table with the same indexes, and the same views.

The SQL lives beside this file. Several instances may start at once: an advisory lock makes
one apply the migrations while the others wait and then find nothing pending.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any, Protocol

_ADVISORY_LOCK_KEY = 0x616E616C79746963  # "analytic"

_CREATE_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS _migrations (
    version BIGINT PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    applied_at BIGINT NOT NULL
)"""

AGGREGATES = (
    "analytics_daily_active_users",
    "analytics_task_stats_daily",
    "analytics_api_latency_hourly",
    "analytics_integration_health_daily",
    "analytics_auth_events_daily",
    "analytics_cocoon_activity_daily",
    "analytics_errors_hourly",
)


class Edition(enum.Enum):
    TIMESCALE = "TimescaleDB, Timescale license"
    APACHE = "TimescaleDB, Apache license"
    POSTGRES = "PostgreSQL without TimescaleDB"


ALL_EDITIONS = frozenset(Edition)
TIMESCALEDB = frozenset({Edition.TIMESCALE, Edition.APACHE})
TIMESCALE_LICENSE = frozenset({Edition.TIMESCALE})
WITHOUT_TIMESCALE_LICENSE = frozenset({Edition.APACHE, Edition.POSTGRES})


class Connection(Protocol):
    """What migrations need of a database connection (asyncpg's has it)."""

    async def execute(self, query: str, *args: Any) -> str: ...
    async def fetch(self, query: str, *args: Any) -> list[Any]: ...
    async def fetchval(self, query: str, *args: Any) -> Any: ...
    def transaction(self) -> Any: ...


@dataclass(frozen=True)
class Features:
    server_version: str
    timescaledb_version: str | None
    license: str | None
    note: str | None = None

    @property
    def edition(self) -> Edition:
        if self.timescaledb_version is None:
            return Edition.POSTGRES
        return Edition.TIMESCALE if self.license == "timescale" else Edition.APACHE

    def summary(self) -> str:
        text = f"PostgreSQL {self.server_version}"
        if self.timescaledb_version is not None:
            text += f", TimescaleDB {self.timescaledb_version} ({self.license} license)"
        return text + (f"; {self.note}" if self.note else "")


@dataclass(frozen=True)
class Step:
    description: str
    sql: Callable[[Edition], str]
    editions: frozenset[Edition] = ALL_EDITIONS


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    phase: str  # "pre": before the new code is deployed; "post": after
    steps: tuple[Step, ...]

    def steps_for(self, edition: Edition) -> list[Step]:
        return [step for step in self.steps if edition in step.editions]

    def left_out(self, edition: Edition) -> list[str]:
        return [step.description for step in self.steps if edition not in step.editions]

    def sql_for(self, edition: Edition) -> str:
        return "\n".join(step.sql(edition) for step in self.steps_for(edition))


def _file(name: str) -> Callable[[Edition], str]:
    def read(_: Edition) -> str:
        return resources.files(__name__).joinpath(name).read_text("utf-8")

    return read


_BUCKETS = {
    True: {
        "day": """time_bucket(INTERVAL '1 day', "timestamp")""",
        "hour": """time_bucket(INTERVAL '1 hour', "timestamp")""",
        "first_error_message": """first(data->>'error_message', "timestamp")""",
    },
    False: {
        "day": """date_trunc('day', "timestamp", 'UTC')""",
        "hour": """date_trunc('hour', "timestamp", 'UTC')""",
        "first_error_message": """(array_agg(data->>'error_message' ORDER BY "timestamp"))[1]""",
    },
}


def aggregate_select(name: str, continuous: bool) -> str:
    template = resources.files(__name__).joinpath(f"aggregates/{name}.sql").read_text("utf-8")
    return template.strip().format(**_BUCKETS[continuous])


def _aggregates_sql(edition: Edition) -> str:
    statements = []
    for name in AGGREGATES:
        if edition is Edition.TIMESCALE:
            bucket = "hour" if name.endswith("_hourly") else "day"
            statements += [
                f"CREATE MATERIALIZED VIEW IF NOT EXISTS {name} WITH (timescaledb.continuous) AS\n"
                f"{aggregate_select(name, continuous=True)}\nWITH NO DATA;",
                f"SELECT add_continuous_aggregate_policy('{name}', start_offset => INTERVAL "
                "'3 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL "
                "'1 hour', if_not_exists => TRUE);",
                f"CREATE INDEX IF NOT EXISTS idx_{name}_{bucket} ON {name} ({bucket} DESC);",
            ]
        else:
            statements.append(
                f"CREATE OR REPLACE VIEW {name} AS\n{aggregate_select(name, continuous=False)};"
            )
    return "\n".join(statements)


MIGRATIONS = (
    Migration(
        1,
        "001_create_analytics_events",
        "pre",
        (
            Step("the timescaledb extension", _file("001_extension.sql"), TIMESCALEDB),
            Step("table analytics_events", _file("001_table.sql")),
            Step("hypertable with 1-day chunks", _file("001_hypertable.sql"), TIMESCALEDB),
            Step("indexes", _file("001_indexes.sql")),
            Step(
                "compression after 7 days and retention of 90 days",
                _file("001_compression_retention.sql"),
                TIMESCALE_LICENSE,
            ),
        ),
    ),
    Migration(
        2,
        "002_create_analytics_aggregates",
        "post",
        (
            Step(
                "the seven continuous aggregates with hourly refresh policies",
                _aggregates_sql,
                TIMESCALE_LICENSE,
            ),
            Step(
                "the seven aggregates as ordinary views", _aggregates_sql, WITHOUT_TIMESCALE_LICENSE
            ),
        ),
    ),
    Migration(
        3,
        "003_add_event_identity",
        "pre",
        (
            Step(
                "columns event_id, received_at, hostname, environment; "
                "table analytics_event_keys (unique event keys)",
                _file("003_event_identity.sql"),
            ),
            Step(
                "analytics_event_keys as a hypertable with 1-day chunks",
                _file("003_keys_hypertable.sql"),
                TIMESCALEDB,
            ),
            Step(
                "retention of 90 days for analytics_event_keys",
                _file("003_keys_retention.sql"),
                TIMESCALE_LICENSE,
            ),
        ),
    ),
    Migration(
        4,
        "004_create_dead_letters",
        "pre",
        (Step("table analytics_dead_letters", _file("004_dead_letters.sql")),),
    ),
    # A unique index cannot be added to a hypertable with compression enabled (the Timescale
    # license's schema), so there the table of keys stays. The index comes before the new
    # code is deployed and the key table goes after, so old and new instances agree.
    Migration(
        5,
        "005_add_event_identity_index",
        "pre",
        (
            Step(
                "unique index on analytics_events (event_id, timestamp)",
                _file("005_event_identity_index.sql"),
                WITHOUT_TIMESCALE_LICENSE,
            ),
        ),
    ),
    Migration(
        6,
        "006_drop_event_keys",
        "post",
        (
            Step(
                "drop analytics_event_keys (replaced by the unique index)",
                _file("006_drop_event_keys.sql"),
                WITHOUT_TIMESCALE_LICENSE,
            ),
        ),
    ),
)

PHASES = {"all": ("pre", "post"), "pre": ("pre",), "post": ("post",)}


def pending(applied: Iterable[int], phase: str, until: int | None = None) -> list[Migration]:
    done = set(applied)
    return [
        m
        for m in MIGRATIONS
        if m.version not in done
        and m.phase in PHASES[phase]
        and (until is None or m.version <= until)
    ]


# --- talking to the database -----------------------------------------------------------------


async def detect_features(connection: Connection) -> Features:
    version = await connection.fetchval("SHOW server_version")
    installed = await connection.fetchval(
        "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
    )
    if installed is not None:
        license = await connection.fetchval("SELECT current_setting('timescaledb.license', true)")
        return Features(version, installed, license or "apache")
    available = await connection.fetchval(
        "SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'"
    )
    if available is None:
        return Features(version, None, None)
    preload = await connection.fetchval("SHOW shared_preload_libraries")
    if "timescaledb" not in preload:
        return Features(
            version,
            None,
            None,
            note=f"TimescaleDB {available} is installed on the server but not in "
            "shared_preload_libraries, so it is not used",
        )
    license = await connection.fetchval("SELECT current_setting('timescaledb.license', true)")
    return Features(version, available, license or "apache", note="extension not yet created")


async def applied_migrations(connection: Connection) -> dict[int, tuple[str, int]]:
    exists = await connection.fetchval("SELECT to_regclass('_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await connection.fetch("SELECT version, name, applied_at FROM _migrations")
    return {row[0]: (row[1], row[2]) for row in rows}


async def migrate(
    connection: Connection,
    phase: str = "all",
    report: Callable[[str], None] = print,
    until: int | None = None,
) -> list[Migration]:
    """Apply the pending migrations of `phase` (up to version `until`); return those applied."""
    await connection.execute("SELECT pg_advisory_lock($1)", _ADVISORY_LOCK_KEY)
    try:
        await connection.execute(_CREATE_BOOKKEEPING)
        features = await detect_features(connection)
        todo = pending(await applied_migrations(connection), phase, until)
        for migration in todo:
            async with connection.transaction():
                await connection.execute(migration.sql_for(features.edition))
                await connection.execute(
                    "INSERT INTO _migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    int(time.time()),
                )
            left_out = migration.left_out(features.edition)
            report(
                f"applied {migration.version} {migration.name}"
                + (f" (left out: {'; '.join(left_out)})" if left_out else "")
            )
        return todo
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", _ADVISORY_LOCK_KEY)


async def status(connection: Connection) -> str:
    """What the database offers, what is applied, what is pending, what is there."""
    features = await detect_features(connection)
    edition = features.edition
    applied = await applied_migrations(connection)
    lines = [f"database: {features.summary()}", f"edition:  {edition.value}"]
    left_out = [d for m in MIGRATIONS for d in m.left_out(edition)]
    if left_out:
        lines.append("left out for this edition: " + "; ".join(left_out))
    lines.append("applied:" if applied else "applied:  nothing (no _migrations rows)")
    for version, (name, applied_at) in sorted(applied.items()):
        when = datetime.fromtimestamp(applied_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        lines.append(f"  {version} {name} at {when}")
    todo = pending(applied, "all")
    lines.append("pending:" if todo else "pending:  nothing")
    for migration in todo:
        will = "; ".join(step.description for step in migration.steps_for(edition))
        lines.append(f"  {migration.version} {migration.name} ({migration.phase}): {will}")
    lines.append("present:")
    lines += [f"  {line}" for line in await _inventory(connection)]
    return "\n".join(lines)


async def dry_run(connection: Connection) -> str:
    features = await detect_features(connection)
    todo = pending(await applied_migrations(connection), "all")
    if not todo:
        return "-- nothing pending"
    parts = [f"-- {features.summary()}: {features.edition.value}"]
    for migration in todo:
        parts.append(f"-- {migration.version} {migration.name} ({migration.phase})")
        parts.append(migration.sql_for(features.edition))
    return "\n".join(parts)


async def _inventory(connection: Connection) -> list[str]:
    lines = []
    table = await connection.fetchval("SELECT to_regclass('analytics_events') IS NOT NULL")
    if not table:
        return ["analytics_events: missing"]
    kind = "ordinary table"
    installed = await connection.fetchval(
        "SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'"
    )
    if installed:
        row = await connection.fetch(
            "SELECT compression_enabled FROM timescaledb_information.hypertables "
            "WHERE hypertable_name = 'analytics_events'"
        )
        if row:
            kind = "hypertable" + (", compression enabled" if row[0][0] else "")
            jobs = await connection.fetch(
                "SELECT proc_name FROM timescaledb_information.jobs "
                "WHERE hypertable_name = 'analytics_events' ORDER BY proc_name"
            )
            if jobs:
                kind += ", policies: " + ", ".join(job[0] for job in jobs)
    lines.append(f"analytics_events: {kind}")
    columns = await connection.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'analytics_events' "
        "AND column_name IN ('event_id', 'received_at', 'hostname', 'environment')"
    )
    added = sorted(row[0] for row in columns)
    lines.append("added columns: " + (", ".join(added) if added else "none"))
    # Exactly once comes from the unique index, or where there cannot be one, the key table.
    for relation in (
        "idx_analytics_events_event_identity",
        "analytics_event_keys",
        "analytics_dead_letters",
    ):
        present = await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", relation)
        lines.append(f"{relation}: {'present' if present else 'missing'}")
    kinds = {
        row[0]: row[1]
        for row in await connection.fetch(
            "SELECT relname::text, relkind::text FROM pg_class WHERE relname = ANY($1::text[])",
            list(AGGREGATES),
        )
    }
    names = {"v": "view", "m": "materialized view"}
    if installed:
        continuous = await connection.fetch(
            "SELECT view_name FROM timescaledb_information.continuous_aggregates"
        )
        for row in continuous:
            kinds[row[0]] = "c"
        names["c"] = "continuous aggregate"
    described = [f"{name} ({names.get(kinds.get(name, ''), 'missing')})" for name in AGGREGATES]
    lines.append("aggregates: " + ", ".join(described))
    return lines
