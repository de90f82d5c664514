"""The rows of `analytics_events`, in the form the store copies them: PostgreSQL's binary
COPY format (one tuple per row). Pure, no I/O.

A row is encoded once, by the decoder that validated it (wire.py), and a flush only joins the
tuples of its requests: the usual body's events never exist as Python values between the
request and the database. `EventRow` is a row's values, for the per-event path, for the
store's rare sorting out of duplicates and refusals, and for tests; `encode` and `decode`
turn one into the other.

The columns come in `COLUMNS` order: the fixed-size ones first, so that a tuple's key
`("timestamp", event_id)` is a fixed slice of it (for the key table), then the texts and
`data`, jsonb's binary input (version 1, then the client's bytes untouched).
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import NamedTuple


class EventRow(NamedTuple):
    """One row of `analytics_events`: its values."""

    timestamp: datetime
    event_type: str
    service: str
    user_id: str | None  # UUIDs as text: lowercase, hyphenated
    data: bytes
    event_id: str
    received_at: datetime
    hostname: str | None
    environment: str | None


COLUMNS = (
    "timestamp",
    "event_id",
    "received_at",
    "user_id",
    "event_type",
    "service",
    "hostname",
    "environment",
    "data",
)
KEY_COLUMNS = COLUMNS[:2]
# PostgreSQL counts time in microseconds from 2000-01-01.
POSTGRES_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
ONE_MICROSECOND = timedelta(microseconds=1)

HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, no header extension
TRAILER = b"\xff\xff"
NULL = b"\xff\xff\xff\xff"
FIELD_COUNT = len(COLUMNS).to_bytes(2, "big")
_FIELD_COUNT_WITH_POSITION = (len(COLUMNS) + 1).to_bytes(2, "big")
_KEY_FIELD_COUNT = len(KEY_COLUMNS).to_bytes(2, "big")
_KEY_END = 2 + (4 + 8) + (4 + 16)  # field count, timestamp, event_id
_length = struct.Struct(">i").pack
_int64_field = struct.Struct(">iq").pack  # length 8, then the value
_int32_field = struct.Struct(">ii").pack
# jsonb's binary input: the length (with the version byte), version 1, then the JSON text.
jsonb_prefix = struct.Struct(">iB").pack
_int64 = struct.Struct(">q").unpack_from
_int32 = struct.Struct(">i").unpack_from
# A UUID's field as one integer: its length (16) above its 128 bits; `to_bytes(20)` writes it.
_UUID_FIELD_TAG = 16 << 128


def microseconds(moment: datetime) -> int:
    """`moment` as PostgreSQL stores a timestamptz: microseconds since 2000-01-01 UTC."""
    return (moment - POSTGRES_EPOCH) // ONE_MICROSECOND


def timestamp_field(moment: datetime) -> bytes:
    return _int64_field(8, microseconds(moment))


def uuid_field(text: str | None) -> bytes:
    """A UUID given as text, hyphenated or not (known to be well formed)."""
    if text is None:
        return NULL
    return uuid_value_field(int(text.replace("-", ""), 16))


def uuid_value_field(value: int) -> bytes:
    """A UUID given as its 128-bit value."""
    return (_UUID_FIELD_TAG | value).to_bytes(20, "big")


def text_field(value: str | None) -> bytes:
    if value is None:
        return NULL
    encoded = value.encode()
    return _length(len(encoded)) + encoded


class TextFields(dict[str | None, bytes]):
    """Text fields by value, each encoded once (types, services, hosts repeat)."""

    def __missing__(self, value: str | None) -> bytes:
        field = self[value] = text_field(value)
        return field


def assemble(
    timestamp: bytes,
    event_id: bytes,
    received_at: bytes,
    user_id: bytes,
    event_type: bytes,
    service: bytes,
    hostname: bytes,
    environment: bytes,
    data: bytes,
) -> bytes:
    """A tuple from its fields, each already encoded but `data` (the JSON text), in COLUMNS
    order: the one place that order is written."""
    return b"".join(
        (
            FIELD_COUNT,
            timestamp,
            event_id,
            received_at,
            user_id,
            event_type,
            service,
            hostname,
            environment,
            jsonb_prefix(len(data) + 1, 1),
            data,
        )
    )


def encode(row: EventRow) -> bytes:
    """One row's tuple."""
    return assemble(
        timestamp_field(row.timestamp),
        uuid_field(row.event_id),
        timestamp_field(row.received_at),
        uuid_field(row.user_id),
        text_field(row.event_type),
        text_field(row.service),
        text_field(row.hostname),
        text_field(row.environment),
        row.data,
    )


def decode(tuple_: bytes) -> EventRow:
    """The values of a tuple that `encode` (or the fast decoder) made."""
    fields: list[bytes | None] = []
    at = 2
    for _ in COLUMNS:
        (length,) = _int32(tuple_, at)
        at += 4
        fields.append(None if length == -1 else tuple_[at : at + length])
        at += max(length, 0)
    timestamp, event_id, received_at, user_id, event_type, service, hostname, environment, data = (
        fields
    )
    assert timestamp and event_id and received_at and event_type and service and data
    return EventRow(
        timestamp=_moment(timestamp),
        event_type=event_type.decode(),
        service=service.decode(),
        user_id=None if user_id is None else str(uuid.UUID(bytes=user_id)),
        data=data[1:],
        event_id=str(uuid.UUID(bytes=event_id)),
        received_at=_moment(received_at),
        hostname=None if hostname is None else hostname.decode(),
        environment=None if environment is None else environment.decode(),
    )


def _moment(field: bytes) -> datetime:
    microseconds: int = _int64(field)[0]
    return POSTGRES_EPOCH + microseconds * ONE_MICROSECOND


def stream(tuples: Iterable[bytes]) -> bytes:
    """A whole COPY stream of `tuples`, in COLUMNS order."""
    return b"".join((HEADER, *tuples, TRAILER))


def with_position(tuple_: bytes, position: int) -> bytes:
    """The tuple with one more int4 column, its position (for the store's temporary table)."""
    return _FIELD_COUNT_WITH_POSITION + tuple_[2:] + _int32_field(4, position)


def key_stream(tuples: Iterable[bytes]) -> bytes:
    """A COPY stream of the tuples' keys, in KEY_COLUMNS order (for the key table)."""
    return stream(_KEY_FIELD_COUNT + tuple_[2:_KEY_END] for tuple_ in tuples)
