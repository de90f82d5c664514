"""The store: the only module that speaks to PostgreSQL (through asyncpg).

A flush is one transaction: a binary COPY of the events into `analytics_events` and of the
dead letters into `analytics_dead_letters`. The events arrive as COPY tuples, encoded once
where they were decoded (rows.py): a flush joins them into one stream, cheaper than any
per-value encoding, and the client's event bytes go to jsonb's binary input untouched.

Exactly once rests on a unique key `(event_id, timestamp)`:
- a unique index on `analytics_events` where TimescaleDB allows one (plain PostgreSQL, and
  hypertables without compression);
- where compression is enabled (the Timescale license's schema), TimescaleDB refuses unique
  indexes, so the keys go to `analytics_event_keys` instead (its primary key), in the same
  transaction. Which of the two the database has is read when the store opens.

That fast path fails as a whole when an event is already stored (a retry) or when the
database refuses one event's data. Then, and only then, the flush is redone in a new
transaction through a temporary table: `INSERT … ON CONFLICT DO NOTHING RETURNING` tells
which events are new and stores only those; a refused part is split in halves under
savepoints until the refused events are alone, and those are dead-lettered while the rest is
stored.

asyncpg's errors are translated here, once, by SQLSTATE class: losing the database becomes
`DatabaseUnavailable`, any other refusal `WriteFailed` (both 503).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg

from analytics_ingestion import rows as copy_rows
from analytics_ingestion.errors import DatabaseUnavailable, Unavailable, WriteFailed
from analytics_ingestion.rows import EventRow
from analytics_ingestion.wire import DeadLetter
from analytics_ingestion.writer import WriteOutcome

log = logging.getLogger(__name__)

EVENTS_TABLE = "analytics_events"
KEYS_TABLE = "analytics_event_keys"
DEAD_LETTERS_TABLE = "analytics_dead_letters"
INCOMING_TABLE = "analytics_events_incoming"
EVENT_COLUMNS = copy_rows.COLUMNS
DEAD_LETTER_COLUMNS = DeadLetter._fields

IDENTITY_INDEX = "idx_analytics_events_event_identity"

_COLUMN_LIST = ", ".join(f'"{column}"' for column in EVENT_COLUMNS)
_CREATE_INCOMING = (
    f"CREATE TEMP TABLE IF NOT EXISTS {INCOMING_TABLE} ON COMMIT DELETE ROWS AS "
    f"SELECT {_COLUMN_LIST}, 0 AS position FROM {EVENTS_TABLE} WITH NO DATA"
)
# Inserting in request order makes the first of equal events the one stored.
_INSERT_NEW_BY_INDEX = f"""
INSERT INTO {EVENTS_TABLE} ({_COLUMN_LIST})
SELECT {_COLUMN_LIST} FROM {INCOMING_TABLE} ORDER BY position
ON CONFLICT (event_id, "timestamp") DO NOTHING
RETURNING event_id::text, "timestamp"
"""
_INSERT_NEW_BY_KEYS = f"""
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
_UNDEFINED_TABLE = "42P01"
_ATTEMPTS = 3

# The GIN index on `data` gathers new entries in a pending list, and the insert that finds
# the list over this size (kB; PostgreSQL's default is 4096) merges it into the index while
# its transaction waits. Smaller lists are merged more often, in shorter pauses: the
# benchmark's p99 latency at half load fell from about 200 ms to about 100 ms.
WRITE_SESSION_SETTINGS = {"gin_pending_list_limit": "256"}


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


# --- the binary COPY streams ---------------------------------------------------------------


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def copy_stream(
    connection: asyncpg.Connection, table: str, columns: Sequence[str], data: bytes
) -> None:
    await connection.copy_to_table(table, source=_chunks(data), columns=columns, format="binary")


async def copy_events(
    connection: asyncpg.Connection, tuples: Sequence[bytes], *, with_keys: bool
) -> None:
    """The fast path's whole write of the rows (keys first, where the key table is used)."""
    if with_keys:
        await copy_stream(
            connection, KEYS_TABLE, copy_rows.KEY_COLUMNS, copy_rows.key_stream(tuples)
        )
    await copy_stream(connection, EVENTS_TABLE, EVENT_COLUMNS, copy_rows.stream(tuples))


async def uses_key_table(connection: asyncpg.Connection) -> bool:
    """Whether exactly once goes through `analytics_event_keys` (no unique index here)."""
    return bool(await connection.fetchval("SELECT to_regclass($1) IS NULL", IDENTITY_INDEX))


class _Conflict(Exception):
    """A deadlock or serialization failure with a concurrent write: worth another try."""


async def _keep_session(connection: asyncpg.Connection) -> None:
    pass


class Store:
    def __init__(self, pool: asyncpg.Pool, flush_timeout: float, *, key_table: bool) -> None:
        self._pool = pool
        self._flush_timeout = flush_timeout
        self._use_key_table(key_table)

    def _use_key_table(self, key_table: bool) -> None:
        self._key_table = key_table
        self._insert_new = _INSERT_NEW_BY_KEYS if key_table else _INSERT_NEW_BY_INDEX

    @classmethod
    async def open(cls, url: str, *, connections: int, flush_timeout: float) -> Store:
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=1,
                max_size=connections + 1,  # one more than the writers, for /ready
                server_settings=WRITE_SESSION_SETTINGS,
                # The writes leave no session state behind (an open transaction is rolled
                # back on release regardless): skip asyncpg's reset query, a round trip.
                reset=_keep_session,
                timeout=10,
            )
            async with pool.acquire() as connection:
                key_table = await uses_key_table(connection)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as error:
            raise _translate(error) from error
        return cls(pool, flush_timeout, key_table=key_table)

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
        rows: Sequence[bytes],
        dead_letters: Sequence[DeadLetter],
        row_indexes: Sequence[int],
    ) -> WriteOutcome:
        """Store rows (COPY tuples) and dead letters in one transaction; `row_indexes` are the
        rows' positions in their requests, for the dead letters of rows the database refuses.

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
        rows: Sequence[bytes],
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
            if _sqlstate(error) == _UNDEFINED_TABLE and self._key_table:
                # Migration 6 dropped the key table while this instance ran: the unique
                # index has replaced it. Write through the index from now on.
                self._use_key_table(await uses_key_table(connection))
                if not self._key_table:
                    raise _Conflict from error
            raise _translate(error) from error
        finally:
            watchdog.cancel()
            with contextlib.suppress(Exception):
                await self._pool.release(connection, timeout=1)

    async def _write(
        self,
        connection: asyncpg.Connection,
        rows: Sequence[bytes],
        dead_letters: Sequence[DeadLetter],
        row_indexes: Sequence[int],
    ) -> WriteOutcome:
        try:
            if dead_letters or self._key_table:
                async with connection.transaction():
                    if rows:
                        await copy_events(connection, rows, with_keys=self._key_table)
                    await self._copy_dead_letters(connection, dead_letters)
            elif rows:
                # One statement is a transaction of its own: no BEGIN and COMMIT round trips,
                # each a wait for a busy server.
                await copy_events(connection, rows, with_keys=False)
            return WriteOutcome()
        except asyncpg.PostgresError as error:
            if error.sqlstate != _UNIQUE_VIOLATION and not _is_data_error(error):
                raise
        # Some events are stored already, or one was refused: sort them out.
        values = [copy_rows.decode(row) for row in rows]
        async with connection.transaction():
            await connection.execute(_CREATE_INCOMING)
            duplicates, failed = await self._insert_sorting(
                connection, rows, values, list(range(len(rows)))
            )
            refused = [
                DeadLetter(values[p].received_at, row_indexes[p], reason, _row_payload(values[p]))
                for p, reason in failed.items()
            ]
            await self._copy_dead_letters(connection, [*dead_letters, *refused])
        return WriteOutcome(frozenset(duplicates), failed)

    async def _insert_sorting(
        self,
        connection: asyncpg.Connection,
        rows: Sequence[bytes],
        values: Sequence[EventRow],
        positions: list[int],
    ) -> tuple[set[int], dict[int, str]]:
        """Insert rows[positions] (whose values are `values`) skipping stored ones; return
        (duplicates, refused)."""
        try:
            async with connection.transaction():  # a savepoint
                await connection.execute(f"TRUNCATE {INCOMING_TABLE}")
                await copy_stream(
                    connection,
                    INCOMING_TABLE,
                    (*EVENT_COLUMNS, "position"),
                    copy_rows.stream(copy_rows.with_position(rows[p], p) for p in positions),
                )
                inserted = await connection.fetch(self._insert_new)
        except asyncpg.PostgresError as error:
            if not _is_data_error(error):
                raise
            if len(positions) == 1:
                log.debug("the database refused an event: %s", error)
                return set(), {positions[0]: f"refused by the database: {error}"}
            middle = len(positions) // 2
            first = await self._insert_sorting(connection, rows, values, positions[:middle])
            second = await self._insert_sorting(connection, rows, values, positions[middle:])
            return first[0] | second[0], {**first[1], **second[1]}
        new = {(record[0], record[1]) for record in inserted}
        duplicates = set()
        for position in positions:
            key = (values[position].event_id, values[position].timestamp)
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
