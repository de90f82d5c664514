"""The store: the only module that speaks to PostgreSQL (through asyncpg).

A flush is one transaction: the events with binary COPY straight into `analytics_events`,
the dead letters into `analytics_dead_letters`. That fast path fails as a whole when an event
is already stored (the unique index on `(event_id, timestamp)`) or when the database refuses
one event's data. Then, and only then, the flush is redone in a new transaction through a
temporary table with `INSERT … ON CONFLICT DO NOTHING RETURNING`, which tells which events
were duplicates; a refused part is split in halves under savepoints until the refused events
are alone, and those are dead-lettered while the rest is stored.

asyncpg's errors are translated here, once: losing the database becomes
`DatabaseUnavailable` (503), by SQLSTATE class, never by message text.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import asyncpg

from analytics_ingestion.errors import DatabaseUnavailable
from analytics_ingestion.wire import DeadLetter, EventRow
from analytics_ingestion.writer import WriteOutcome

EVENTS_TABLE = "analytics_events"
DEAD_LETTERS_TABLE = "analytics_dead_letters"
INCOMING_TABLE = "analytics_events_incoming"
EVENT_COLUMNS = EventRow._fields
DEAD_LETTER_COLUMNS = DeadLetter._fields

_COLUMN_LIST = ", ".join(f'"{column}"' for column in EVENT_COLUMNS)
_CREATE_INCOMING = (
    f"CREATE TEMP TABLE IF NOT EXISTS {INCOMING_TABLE} ON COMMIT DELETE ROWS AS "
    f"SELECT {_COLUMN_LIST} FROM {EVENTS_TABLE} WITH NO DATA"
)
_INSERT_NEW = (
    f"INSERT INTO {EVENTS_TABLE} ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM {INCOMING_TABLE} "
    'ON CONFLICT DO NOTHING RETURNING event_id::text, "timestamp"'
)

# SQLSTATE classes 22 data exception, 23 integrity constraint violation and 54 program limit
# exceeded mean one event's data was refused; any other error means the database cannot
# take the write now.
_DATA_CLASSES = ("22", "23", "54")
_UNIQUE_VIOLATION = "23505"


def _is_data_error(error: BaseException) -> bool:
    if not isinstance(error, asyncpg.PostgresError):
        return False
    sqlstate = error.sqlstate or ""
    return sqlstate[:2] in _DATA_CLASSES and sqlstate != _UNIQUE_VIOLATION


def _unavailable(error: BaseException) -> DatabaseUnavailable:
    if isinstance(error, asyncpg.PostgresError):
        return DatabaseUnavailable(f"{type(error).__name__} ({error.sqlstate}): {error}")
    if isinstance(error, OSError):
        return DatabaseUnavailable(f"cannot connect ({type(error).__name__}: {error})")
    return DatabaseUnavailable(f"{type(error).__name__}: {error}".rstrip(": "))


async def _init_connection(connection: asyncpg.Connection) -> None:
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
                init=_init_connection,
                timeout=10,
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as error:
            raise _unavailable(error) from error
        return cls(pool, flush_timeout)

    async def close(self) -> None:
        await self._pool.close()

    async def ping(self) -> None:
        try:
            async with self._pool.acquire(timeout=2) as connection:
                await connection.fetchval("SELECT 1", timeout=2)
        except Exception as error:
            raise _unavailable(error) from error

    async def write(
        self, rows: Sequence[EventRow], dead_letters: Sequence[DeadLetter]
    ) -> WriteOutcome:
        try:
            async with asyncio.timeout(self._flush_timeout):
                async with self._pool.acquire() as connection:
                    return await self._write(connection, rows, dead_letters)
        except TimeoutError:
            raise DatabaseUnavailable(
                f"the write did not finish within {self._flush_timeout:g} s (FLUSH_TIMEOUT_SECONDS)"
            ) from None
        except (OSError, asyncpg.InterfaceError) as error:
            raise _unavailable(error) from error
        except asyncpg.PostgresError as error:
            # Not a data error (those are handled below): the database cannot take writes.
            raise _unavailable(error) from error

    async def _write(
        self,
        connection: asyncpg.Connection,
        rows: Sequence[EventRow],
        dead_letters: Sequence[DeadLetter],
    ) -> WriteOutcome:
        try:
            async with connection.transaction():
                if rows:
                    await connection.copy_records_to_table(
                        EVENTS_TABLE, records=rows, columns=EVENT_COLUMNS
                    )
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
                DeadLetter(rows[p].received_at, None, reason, _row_payload(rows[p]))
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
                    INCOMING_TABLE, records=[rows[p] for p in positions], columns=EVENT_COLUMNS
                )
                inserted = await connection.fetch(_INSERT_NEW)
        except asyncpg.PostgresError as error:
            if not _is_data_error(error):
                raise
            if len(positions) == 1:
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
        raise _unavailable(error) from error


async def ensure_database(admin_url: str, name: str) -> None:
    """Create database `name` if it does not exist (used by the embedded server)."""
    connection = await connect(admin_url)
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
