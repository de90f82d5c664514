"""The store: the only module that speaks to PostgreSQL (through asyncpg).

A flush is one transaction: binary COPY of each event's key `(event_id, timestamp)` into
`analytics_event_keys` (its primary key is what makes storing an event twice impossible),
of the events into `analytics_events`, and of the dead letters into `analytics_dead_letters`.
That fast path fails as a whole when an event is already stored (a retry) or when the
database refuses one event's data. Then, and only then, the flush is redone in a new
transaction through a temporary table: the keys with `INSERT … ON CONFLICT DO NOTHING
RETURNING`, which tells which events are new, and only those events; a refused part is split
in halves under savepoints until the refused events are alone, and those are dead-lettered
while the rest is stored.

Why a table of keys rather than a unique index on `analytics_events`: TimescaleDB cannot add
a unique index to a hypertable once compression is enabled, which the existing deployment's
table is. The key table is a hypertable too, with the same chunks and retention.

asyncpg's errors are translated here, once, by SQLSTATE class: losing the database becomes
`DatabaseUnavailable`, any other refusal `WriteFailed` (both 503).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from typing import Any

import asyncpg

from analytics_ingestion.errors import DatabaseUnavailable, Unavailable, WriteFailed
from analytics_ingestion.wire import DeadLetter, EventRow
from analytics_ingestion.writer import WriteOutcome

log = logging.getLogger(__name__)

EVENTS_TABLE = "analytics_events"
KEYS_TABLE = "analytics_event_keys"
DEAD_LETTERS_TABLE = "analytics_dead_letters"
INCOMING_TABLE = "analytics_events_incoming"
EVENT_COLUMNS = EventRow._fields
KEY_COLUMNS = ("event_id", "timestamp")
DEAD_LETTER_COLUMNS = DeadLetter._fields

_COLUMN_LIST = ", ".join(f'"{column}"' for column in EVENT_COLUMNS)
_CREATE_INCOMING = (
    f"CREATE TEMP TABLE IF NOT EXISTS {INCOMING_TABLE} ON COMMIT DELETE ROWS AS "
    f"SELECT {_COLUMN_LIST}, 0 AS position FROM {EVENTS_TABLE} WITH NO DATA"
)
# The first of equal events (by position) is the one stored; ids follow request order.
_INSERT_NEW = f"""
WITH new_keys AS (
    INSERT INTO {KEYS_TABLE} (event_id, "timestamp")
    SELECT event_id, "timestamp" FROM {INCOMING_TABLE} ORDER BY position
    ON CONFLICT DO NOTHING
    RETURNING event_id, "timestamp"
)
INSERT INTO {EVENTS_TABLE} ({_COLUMN_LIST})
SELECT {_COLUMN_LIST} FROM (
    SELECT DISTINCT ON (i.event_id, i."timestamp") i.*
    FROM {INCOMING_TABLE} i JOIN new_keys USING (event_id, "timestamp")
    ORDER BY i.event_id, i."timestamp", i.position
) AS new_events
ORDER BY position
RETURNING event_id::text, "timestamp"
"""

# SQLSTATE classes. 22 data exception, 23 integrity constraint violation, 54 program limit
# exceeded: one event's data was refused. 08 connection exception, 53 insufficient
# resources, 57 operator intervention, 58 system error: the database is out of reach.
# 40 transaction rollback (deadlock, serialization failure): try again.
_DATA_CLASSES = ("22", "23", "54")
_UNAVAILABLE_CLASSES = ("08", "53", "57", "58")
_CONFLICT_CLASS = "40"
_UNIQUE_VIOLATION = "23505"
_ATTEMPTS = 3


def _sqlstate(error: BaseException) -> str:
    return (
        (getattr(error, "sqlstate", None) or "") if isinstance(error, asyncpg.PostgresError) else ""
    )


def _is_data_error(error: BaseException) -> bool:
    sqlstate = _sqlstate(error)
    return sqlstate[:2] in _DATA_CLASSES and sqlstate != _UNIQUE_VIOLATION


def _translate(error: BaseException) -> Unavailable:
    """The service's error for a database error; its text goes to the log, not to clients,
    unless it only says the database is out of reach."""
    sqlstate = _sqlstate(error)
    if isinstance(error, OSError):
        return DatabaseUnavailable(f"cannot connect ({type(error).__name__}: {error})")
    if isinstance(error, asyncpg.InterfaceError | TimeoutError):
        return DatabaseUnavailable(f"{type(error).__name__}: {error}".rstrip(": "))
    if sqlstate[:2] in _UNAVAILABLE_CLASSES:
        return DatabaseUnavailable(f"{type(error).__name__} ({sqlstate}): {error}")
    log.error("the database refused a write: %s (%s): %s", type(error).__name__, sqlstate, error)
    return WriteFailed(f"the database refused the write ({type(error).__name__}, {sqlstate})")


async def copy_events(
    connection: asyncpg.Connection, rows: Sequence[EventRow], *, with_keys: bool = True
) -> None:
    """Binary COPY of the events, after their keys (the fast path's whole write)."""
    if with_keys:
        await connection.copy_records_to_table(
            KEYS_TABLE, records=[(row.event_id, row.timestamp) for row in rows], columns=KEY_COLUMNS
        )
    await connection.copy_records_to_table(EVENTS_TABLE, records=rows, columns=EVENT_COLUMNS)


class _Conflict(Exception):
    """A deadlock or serialization failure with a concurrent write: worth another try."""


async def prepare_connection(connection: asyncpg.Connection) -> None:
    # Event data arrives as the client's JSON bytes: hand them to jsonb's binary input
    # (a version byte, then the text) without decoding them to str first.
    await connection.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        encoder=lambda data: b"\x01" + data,
        decoder=lambda data: data[1:],
        format="binary",
    )


class Store:
    def __init__(self, pool: asyncpg.Pool, flush_timeout: float) -> None:
        self._pool = pool
        self._flush_timeout = flush_timeout

    @classmethod
    async def open(cls, url: str, *, connections: int, flush_timeout: float) -> Store:
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=1,
                max_size=connections + 1,  # one more than the writers, for /ready
                init=prepare_connection,
                timeout=10,
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as error:
            raise _translate(error) from error
        return cls(pool, flush_timeout)

    async def close(self) -> None:
        await self._pool.close()

    async def ping(self) -> None:
        try:
            async with self._pool.acquire(timeout=2) as connection:
                await connection.fetchval("SELECT 1", timeout=2)
        except Exception as error:
            raise _translate(error) from error

    async def write(
        self,
        rows: Sequence[EventRow],
        dead_letters: Sequence[DeadLetter],
        row_indexes: Sequence[int],
    ) -> WriteOutcome:
        """Store rows and dead letters in one transaction; `row_indexes` are the rows'
        positions in their requests, for the dead letters of rows the database refuses.

        Bounded by FLUSH_TIMEOUT_SECONDS in all, retries included."""
        deadline = asyncio.get_running_loop().time() + self._flush_timeout
        for _ in range(_ATTEMPTS):
            try:
                return await self._write_once(rows, dead_letters, row_indexes, deadline)
            except _Conflict:
                continue
        raise WriteFailed(f"the write conflicted with concurrent writes {_ATTEMPTS} times")

    async def _write_once(
        self,
        rows: Sequence[EventRow],
        dead_letters: Sequence[DeadLetter],
        row_indexes: Sequence[int],
        deadline: float,
    ) -> WriteOutcome:
        loop = asyncio.get_running_loop()
        timed_out = DatabaseUnavailable(
            f"the write did not finish within {self._flush_timeout:g} s (FLUSH_TIMEOUT_SECONDS)"
        )
        try:
            connection = await self._pool.acquire(timeout=max(deadline - loop.time(), 0.001))
        except TimeoutError:
            raise timed_out from None
        except Exception as error:
            raise _translate(error) from error
        expired = False

        def expire() -> None:
            # Closing the connection fails whatever waits on it, the rollback included; a
            # cancellation would wait for a server that stopped answering.
            nonlocal expired
            expired = True
            connection.terminate()

        watchdog = loop.call_at(deadline, expire)
        try:
            return await self._write(connection, rows, dead_letters, row_indexes)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            if expired:
                raise timed_out from None
            if _sqlstate(error)[:2] == _CONFLICT_CLASS:
                raise _Conflict from error
            raise _translate(error) from error
        finally:
            watchdog.cancel()
            with contextlib.suppress(Exception):
                await self._pool.release(connection, timeout=1)

    async def _write(
        self,
        connection: asyncpg.Connection,
        rows: Sequence[EventRow],
        dead_letters: Sequence[DeadLetter],
        row_indexes: Sequence[int],
    ) -> WriteOutcome:
        try:
            async with connection.transaction():
                if rows:
                    await copy_events(connection, rows)
                await self._copy_dead_letters(connection, dead_letters)
            return WriteOutcome()
        except asyncpg.PostgresError as error:
            if error.sqlstate != _UNIQUE_VIOLATION and not _is_data_error(error):
                raise
        # Some events are stored already, or one was refused: sort them out.
        async with connection.transaction():
            await connection.execute(_CREATE_INCOMING)
            duplicates, failed = await self._insert_sorting(
                connection, rows, list(range(len(rows)))
            )
            refused = [
                DeadLetter(rows[p].received_at, row_indexes[p], reason, _row_payload(rows[p]))
                for p, reason in failed.items()
            ]
            await self._copy_dead_letters(connection, [*dead_letters, *refused])
        return WriteOutcome(frozenset(duplicates), failed)

    async def _insert_sorting(
        self, connection: asyncpg.Connection, rows: Sequence[EventRow], positions: list[int]
    ) -> tuple[set[int], dict[int, str]]:
        """Insert rows[positions] skipping stored ones; return (duplicates, refused)."""
        try:
            async with connection.transaction():  # a savepoint
                await connection.execute(f"TRUNCATE {INCOMING_TABLE}")
                await connection.copy_records_to_table(
                    INCOMING_TABLE,
                    records=[(*rows[p], p) for p in positions],
                    columns=(*EVENT_COLUMNS, "position"),
                )
                inserted = await connection.fetch(_INSERT_NEW)
        except asyncpg.PostgresError as error:
            if not _is_data_error(error):
                raise
            if len(positions) == 1:
                log.info("the database refused an event: %s", error)
                return set(), {positions[0]: f"refused by the database: {error}"}
            middle = len(positions) // 2
            first = await self._insert_sorting(connection, rows, positions[:middle])
            second = await self._insert_sorting(connection, rows, positions[middle:])
            return first[0] | second[0], {**first[1], **second[1]}
        new = {(record[0], record[1]) for record in inserted}
        duplicates = set()
        for position in positions:
            key = (str(rows[position].event_id), rows[position].timestamp)
            if key in new:
                new.discard(key)  # the first of equal events in a flush is the one stored
            else:
                duplicates.add(position)
        return duplicates, {}

    @staticmethod
    async def _copy_dead_letters(
        connection: asyncpg.Connection, dead_letters: Sequence[DeadLetter]
    ) -> None:
        if dead_letters:
            await connection.copy_records_to_table(
                DEAD_LETTERS_TABLE,
                records=[
                    letter._replace(reason=_storable(letter.reason)) for letter in dead_letters
                ],
                columns=DEAD_LETTER_COLUMNS,
            )


def _storable(text: str) -> str:
    """Text PostgreSQL accepts: no NUL, no unpaired surrogates."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def _row_payload(row: EventRow) -> bytes:
    envelope: dict[str, Any] = {
        "event_id": str(row.event_id),
        "timestamp": row.timestamp.isoformat(),
        "event_type": row.event_type,
        "service": row.service,
        "user_id": None if row.user_id is None else str(row.user_id),
        "hostname": row.hostname,
        "environment": row.environment,
    }
    return json.dumps(envelope)[:-1].encode() + b', "data": ' + row.data + b"}"


async def connect(url: str) -> asyncpg.Connection:
    """One plain connection, for migrations and administration."""
    try:
        return await asyncpg.connect(url, timeout=10)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as error:
        raise _translate(error) from error


async def ensure_database(admin_url: str, name: str) -> None:
    """Create database `name` if it does not exist (used by the embedded server)."""
    connection = await connect(admin_url)
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
