"""The binary COPY stream the store builds (PostgreSQL's documented format, field by field);
the integration tests check what the server makes of it."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

from analytics_ingestion.store import encode_events
from analytics_ingestion.wire import EventRow

RECEIVED = datetime(2026, 11, 26, 12, 0, 0, 1, tzinfo=UTC)
ROW = EventRow(
    timestamp=datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    event_type="task_created",
    service="ünïcode",
    user_id="0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B".lower(),
    data=b'{"type":"task_created"}',
    event_id="01935f4e-0000-7000-8000-000000000001",
    received_at=RECEIVED,
    hostname=None,
    environment="prod",
)


def read_fields(stream: bytes) -> list[list[bytes | None]]:
    assert stream.startswith(b"PGCOPY\n\xff\r\n\x00" + bytes(8))
    assert stream.endswith(b"\xff\xff")
    rows, at = [], 19
    while stream[at : at + 2] != b"\xff\xff":
        (count,) = struct.unpack_from(">h", stream, at)
        at += 2
        fields: list[bytes | None] = []
        for _ in range(count):
            (length,) = struct.unpack_from(">i", stream, at)
            at += 4
            fields.append(None if length == -1 else stream[at : at + length])
            at += max(length, 0)
        rows.append(fields)
    assert at + 2 == len(stream)
    return rows


def test_each_column_in_postgresql_binary_form() -> None:
    [fields] = read_fields(encode_events([ROW]))
    microseconds_before_2000 = -1
    assert fields == [
        struct.pack(">q", microseconds_before_2000),
        b"task_created",
        "ünïcode".encode(),
        bytes.fromhex("0190a1b2c3d47e5f8a9b0c1d2e3f4a5b"),
        b'\x01{"type":"task_created"}',  # jsonb's binary input: version 1, then the text
        bytes.fromhex("01935f4e000070008000000000000001"),
        struct.pack(">q", 849_009_600_000_001),  # RECEIVED, in microseconds since 2000
        None,
        b"prod",
    ]


def test_positions_add_a_column_and_no_rows_is_an_empty_stream() -> None:
    rows = read_fields(encode_events([ROW, ROW._replace(user_id=None)], positions=[7, 9]))
    assert [len(fields) for fields in rows] == [10, 10]
    assert [fields[9] for fields in rows] == [struct.pack(">i", 7), struct.pack(">i", 9)]
    assert rows[1][3] is None
    assert read_fields(encode_events([])) == []
