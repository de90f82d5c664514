"""A row's COPY tuple (PostgreSQL's documented binary format, field by field), the streams
made of tuples, and the values read back; the integration tests check what the server makes
of them."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

from analytics_ingestion import rows
from analytics_ingestion.rows import EventRow

RECEIVED = datetime(2026, 11, 26, 12, 0, 0, 1, tzinfo=UTC)
ROW = EventRow(
    timestamp=datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    event_type="task_created",
    service="ünïcode",
    user_id="0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
    data=b'{"type":"task_created"}',
    event_id="01935f4e-0000-7000-8000-000000000001",
    received_at=RECEIVED,
    hostname=None,
    environment="prod",
)


def read_fields(stream: bytes) -> list[list[bytes | None]]:
    assert stream.startswith(b"PGCOPY\n\xff\r\n\x00" + bytes(8))
    assert stream.endswith(b"\xff\xff")
    tuples, at = [], 19
    while stream[at : at + 2] != b"\xff\xff":
        (count,) = struct.unpack_from(">h", stream, at)
        at += 2
        fields: list[bytes | None] = []
        for _ in range(count):
            (length,) = struct.unpack_from(">i", stream, at)
            at += 4
            fields.append(None if length == -1 else stream[at : at + length])
            at += max(length, 0)
        tuples.append(fields)
    assert at + 2 == len(stream)
    return tuples


def test_each_column_in_postgresql_binary_form() -> None:
    [fields] = read_fields(rows.stream([rows.encode(ROW)]))
    microseconds_before_2000 = -1
    assert rows.COLUMNS[:4] == ("timestamp", "event_id", "received_at", "user_id")
    assert fields == [
        struct.pack(">q", microseconds_before_2000),
        bytes.fromhex("01935f4e000070008000000000000001"),
        struct.pack(">q", 849_009_600_000_001),  # RECEIVED, in microseconds since 2000
        bytes.fromhex("0190a1b2c3d47e5f8a9b0c1d2e3f4a5b"),
        b"task_created",
        "ünïcode".encode(),
        None,
        b"prod",
        b'\x01{"type":"task_created"}',  # jsonb's binary input: version 1, then the text
    ]


def test_a_tuple_reads_back_as_its_values() -> None:
    for row in (ROW, ROW._replace(user_id=None, hostname="web-1", environment=None)):
        assert rows.decode(rows.encode(row)) == row


def test_ids_written_without_hyphens_or_in_capitals_are_the_same_field() -> None:
    assert rows.uuid_field("0190A1B2C3D47E5F8A9B0C1D2E3F4A5B") == rows.uuid_field(ROW.user_id)
    assert rows.uuid_field(None) == rows.NULL


def test_positions_add_a_column_and_keys_are_timestamp_and_event_id() -> None:
    tuples = [rows.encode(ROW), rows.encode(ROW._replace(user_id=None))]
    with_positions = (rows.with_position(t, p) for t, p in zip(tuples, [7, 9], strict=True))
    positioned = read_fields(rows.stream(with_positions))
    assert [len(fields) for fields in positioned] == [10, 10]
    assert [fields[9] for fields in positioned] == [struct.pack(">i", 7), struct.pack(">i", 9)]
    assert positioned[1][3] is None
    assert (
        read_fields(rows.key_stream(tuples))
        == [[struct.pack(">q", -1), bytes.fromhex("01935f4e000070008000000000000001")]] * 2
    )
    assert read_fields(rows.stream([])) == []


def test_text_fields_are_encoded_once_per_value() -> None:
    texts = rows.TextFields()
    assert texts["web-1"] is texts["web-1"]
    assert texts["web-1"] == struct.pack(">i", 5) + b"web-1"
    assert texts[None] == rows.NULL
