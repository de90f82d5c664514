from __future__ import annotations

import json
import random
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from analytics_ingestion.errors import MalformedBody
from analytics_ingestion.samples import CATALOG, event_object, shape_a, shape_b
from analytics_ingestion.wire import (
    decode_batch,
    idempotent_event_id,
    parse_timestamp,
    rejection_kind,
    split_array,
    uuid7,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
TASK = "0b8f8f5e-3c8a-4d51-9d47-1f0e2f3c4a5b"
USER = "5d3f0c1e-7a2b-4c6d-8e9f-0a1b2c3d4e5f"


def decode(events: object, **options: object) -> object:
    body = events if isinstance(events, bytes) else json.dumps(events).encode()
    return decode_batch(body, received_at=NOW, **options)  # type: ignore[arg-type]


def one_error(element: object) -> str:
    batch = decode([element])
    assert not batch.rows, "expected the event to be rejected"
    assert batch.rejections[0].index == 0
    return batch.rejections[0].error


def task_created(**changes: object) -> dict[str, object]:
    event = {
        "type": "task_created",
        "task_id": TASK,
        "user_id": USER,
        "project_id": None,
        "cocoon_id": None,
        "command": "ls",
    }
    event.update(changes)
    return {
        "timestamp": "2026-11-26T11:47:34.723533862Z",
        "event": event,
        "hostname": "web-1",
        "environment": "production",
    }


# --- timestamps ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "2026-11-26T11:47:34Z", datetime(2026, 11, 26, 11, 47, 34, tzinfo=UTC), id="no-fraction"
        ),
        pytest.param(
            "2026-11-26T11:47:34.723Z",
            datetime(2026, 11, 26, 11, 47, 34, 723000, tzinfo=UTC),
            id="millis",
        ),
        pytest.param(
            "2026-11-26T11:47:34.723533862Z",
            datetime(2026, 11, 26, 11, 47, 34, 723533, tzinfo=UTC),
            id="nanos-truncated",
        ),
        pytest.param(
            "2026-11-26T11:47:34.999999999Z",
            datetime(2026, 11, 26, 11, 47, 34, 999999, tzinfo=UTC),
            id="no-rounding-up",
        ),
        pytest.param(
            "2026-11-26T13:47:34+02:00",
            datetime(2026, 11, 26, 11, 47, 34, tzinfo=UTC),
            id="offset-to-utc",
        ),
        pytest.param(
            "2026-11-26t11:47:34-00:30",
            datetime(2026, 11, 26, 12, 17, 34, tzinfo=UTC),
            id="negative-offset",
        ),
        pytest.param(
            "2026-11-26 11:47:34z",
            datetime(2026, 11, 26, 11, 47, 34, tzinfo=UTC),
            id="space-and-lower-z",
        ),
        pytest.param(
            "1999-12-31T23:59:59.9999995Z",
            datetime(2000, 1, 1, tzinfo=UTC),
            id="before-2000-cut-toward-2000",
        ),
        pytest.param(
            "1999-12-31T23:59:59.999999500Z",
            datetime(2000, 1, 1, tzinfo=UTC),
            id="before-2000-nanos",
        ),
        pytest.param(
            "1999-12-31T23:59:59.999999000Z",
            datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            id="before-2000-nanos-exact",
        ),
        pytest.param(
            "1999-12-31T23:59:59.1234560Z",
            datetime(1999, 12, 31, 23, 59, 59, 123456, tzinfo=UTC),
            id="before-2000-exact",
        ),
    ],
)
def test_parse_timestamp(text: str, expected: datetime) -> None:
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param("2026-11-26T11:47:34", "with an offset", id="no-offset"),
        pytest.param("2026-11-26", "RFC 3339", id="date-only"),
        pytest.param("2026-13-26T11:47:34Z", "month", id="bad-month"),
        pytest.param("2026-11-26T11:47:60Z", "leap", id="leap-second"),
        pytest.param("0001-01-01T00:00:00+01:00", "range", id="before-year-1"),
        pytest.param("9999-12-31T23:59:59-01:00", "range", id="after-year-9999"),
        pytest.param("2026-11-26T11:47:34+24:00", "offset", id="bad-offset"),
        pytest.param("1764157654", "RFC 3339", id="epoch-number-as-string"),
        pytest.param("2026-11-26T11:47:34.72353386\u0662Z", "RFC 3339", id="non-ascii-nanos"),
        pytest.param("2026-11-26T11:47:34.7235x3862Z", "RFC 3339", id="letter-in-fraction"),
        pytest.param("\u0662\u0660\u0662\u0666-11-26T11:47:34Z", "RFC 3339", id="non-ascii-digits"),
    ],
)
def test_parse_timestamp_rejects(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_timestamp(text)


# --- shape A ---------------------------------------------------------------------------------


def test_shape_a_row() -> None:
    element = task_created()
    batch = decode([element])
    assert batch.rejections == []
    [row] = batch.rows
    assert row.timestamp == datetime(2026, 11, 26, 11, 47, 34, 723533, tzinfo=UTC)
    assert row.event_type == "task_created"
    assert row.service == "unknown"
    assert row.user_id == USER
    assert json.loads(row.data) == element["event"]
    assert row.received_at == NOW
    assert (row.hostname, row.environment) == ("web-1", "production")
    assert uuid.UUID(row.event_id).version == 7


def test_data_is_the_clients_bytes() -> None:
    body = (
        b'[{"timestamp":"2026-11-26T11:47:34Z","event":{"type":"future_type", "n" : 1.50,'
        b' "big": 123456789012345678901234567890, "f": 1e400},"hostname":null,"environment":null}]'
    )
    [row] = decode(body).rows
    assert (
        row.data
        == b'{"type":"future_type", "n" : 1.50, "big": 123456789012345678901234567890, "f": 1e400}'
    )


@pytest.mark.parametrize("event_type", CATALOG.types, ids=lambda t: t.wire_type)
def test_every_catalog_type(event_type) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(event_type.wire_type)
    for nulls in (False, True):
        event = event_object(event_type, rng, nulls=nulls)
        [row] = decode([{"timestamp": "2026-11-26T11:47:34Z", "event": event}]).rows
        assert row.event_type == event_type.event_type
        assert row.service == event.get("service", "unknown")
        expected_user = event.get("user_id")
        assert row.user_id == expected_user


@pytest.mark.parametrize(
    ("wire_type", "stored"),
    [
        pytest.param("o_auth_flow_started", "oauth_flow_started", id="oauth-started"),
        pytest.param("o_auth_flow_completed", "oauth_flow_completed", id="oauth-completed"),
        pytest.param("brand_new_type", "brand_new_type", id="unknown-kept-as-sent"),
    ],
)
def test_event_type_naming(wire_type: str, stored: str) -> None:
    event = {
        "type": wire_type,
        "user_id": USER,
        "provider": "github",
        "state": "s",
        "success": True,
    }
    [row] = decode([{"timestamp": "2026-11-26T11:47:34Z", "event": event}]).rows
    assert row.event_type == stored


@pytest.mark.parametrize(
    ("element", "reason"),
    [
        pytest.param(
            task_created(task_id="not-a-uuid"), "event.task_id: expected a UUID", id="bad-uuid"
        ),
        pytest.param(
            task_created(user_id=None), "event.user_id: must not be null", id="null-required"
        ),
        pytest.param(
            {**task_created(), "timestamp": None}, "timestamp: required", id="no-timestamp"
        ),
        pytest.param(
            {**task_created(), "timestamp": 1764157654},
            "timestamp: expected an RFC 3339 string",
            id="numeric-timestamp",
        ),
        pytest.param(
            {**task_created(), "hostname": 5},
            "hostname: expected a string or null",
            id="bad-hostname",
        ),
        pytest.param(
            {
                "timestamp": "2026-11-26T11:47:34Z",
                "event": {
                    "type": "task_completed",
                    "task_id": TASK,
                    "user_id": USER,
                    "duration_ms": "12",
                    "exit_code": 0,
                },
            },
            "event.duration_ms: expected an integer",
            id="string-number",
        ),
        pytest.param(
            {
                "timestamp": "2026-11-26T11:47:34Z",
                "event": {
                    "type": "task_completed",
                    "task_id": TASK,
                    "user_id": USER,
                    "duration_ms": 1,
                    "exit_code": 2**31,
                },
            },
            "outside the int32 range",
            id="int32-overflow",
        ),
        pytest.param(
            {
                "timestamp": "2026-11-26T11:47:34Z",
                "event": {
                    "type": "task_completed",
                    "task_id": TASK,
                    "user_id": USER,
                    "duration_ms": 1.5,
                    "exit_code": 0,
                },
            },
            "expected an integer (int64)",
            id="float-for-int",
        ),
        pytest.param(
            {
                "timestamp": "2026-11-26T11:47:34Z",
                "event": {
                    "type": "api_request",
                    "service": "s",
                    "endpoint": "/",
                    "method": "GET",
                    "status_code": 70000,
                    "duration_ms": 3,
                    "user_id": None,
                },
            },
            "outside the uint16 range",
            id="uint16-overflow",
        ),
        pytest.param(
            {"timestamp": "2026-11-26T11:47:34Z", "event": {"type": "task_created"}},
            "event.task_id: required",
            id="missing-field",
        ),
        pytest.param(
            {"timestamp": "2026-11-26T11:47:34Z", "event": {"type": ""}},
            "event.type: expected a non-empty string",
            id="empty-type",
        ),
        pytest.param(
            {"timestamp": "2026-11-26T11:47:34Z", "event": {"type": "x" * 101}},
            "longer than 100",
            id="long-type",
        ),
        pytest.param(
            {"timestamp": "2026-11-26T11:47:34Z", "event": {"type": "x", "service": "s" * 101}},
            "event.service: longer than 100",
            id="long-service",
        ),
        pytest.param(
            {"timestamp": "2026-11-26T11:47:34Z", "event": {"type": "x", "user_id": "bob"}},
            "event.user_id: expected a UUID",
            id="unknown-type-bad-user",
        ),
        pytest.param(
            {"timestamp": "2026-11-26T11:47:34Z", "event": [1]},
            "event: expected an object",
            id="event-array",
        ),
        pytest.param(
            {"timestamp": "2026-11-26T11:47:34Z", "event": None},
            "event: expected an object",
            id="event-null",
        ),
        pytest.param(
            {"timestamp": "2026-11-26T11:47:34Z", "event": {"type": "x", "note": "a\u0000b"}},
            "$.event.note: contains the NUL character",
            id="nul-in-value",
        ),
        pytest.param(
            {"timestamp": "2026-11-26T11:47:34Z", "event": {"type": "x", "a\u0000": 1}},
            "contains the NUL character",
            id="nul-in-key",
        ),
        pytest.param(
            {"timestamp": "2026-11-26T11:47:34Z"}, "expected an 'event' object", id="neither-shape"
        ),
        pytest.param(7, "expected object, got int", id="not-an-object"),
    ],
)
def test_shape_a_rejections(element: object, reason: str) -> None:
    assert reason in one_error(element)


def test_unpaired_surrogate_rejects_only_its_event() -> None:
    good = json.dumps(task_created())
    body = f'[{good}, {{"timestamp": "2026-11-26T11:47:34Z", "event": {{"type": "x", "s": "\\ud800"}}}}, {good}]'
    batch = decode(body.encode())
    assert [r.index for r in batch.rejections] == [1]
    assert "unpaired UTF-16 surrogate" in batch.rejections[0].error
    assert "$.event.s" in batch.rejections[0].error
    assert batch.row_indexes == [0, 2]


def test_invalid_utf8_rejects_only_its_event() -> None:
    good = json.dumps(task_created()).encode()
    bad = b'{"timestamp": "2026-11-26T11:47:34Z", "event": {"type": "x", "s": "\xff"}}'
    batch = decode(b"[" + good + b"," + bad + b"]")
    assert [r.index for r in batch.rejections] == [1]
    assert "invalid UTF-8" in batch.rejections[0].error
    assert batch.dead_letters[0].payload == bad


def test_float64_accepts_integers_and_rejects_overflow() -> None:
    base = {"type": "proxy_request", **{f.name: None for f in CATALOG.find("proxy_request").fields}}  # type: ignore[union-attr]
    base.update(
        proxy_token_id=TASK,
        user_id=USER,
        request_id="r",
        provider_type="p",
        key_mode="k",
        endpoint="/",
        latency_ms=3,
        is_streaming=False,
        status="ok",
    )
    assert decode(
        [{"timestamp": "2026-11-26T11:47:34Z", "event": {**base, "reported_cost_usd": 2}}]
    ).rows
    body = json.dumps(
        [{"timestamp": "2026-11-26T11:47:34Z", "event": {**base, "reported_cost_usd": 0}}]
    )
    batch = decode(body.replace('"reported_cost_usd": 0', '"reported_cost_usd": 1e400').encode())
    assert "within float64 range" in batch.rejections[0].error


# --- shape B ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "stored"),
    [
        pytest.param("TaskCreated", "task_created", id="variant"),
        pytest.param("task_created", "task_created", id="stored-name"),
        pytest.param("OAuthFlowStarted", "oauth_flow_started", id="oauth-variant"),
        pytest.param("oauth_flow_completed", "oauth_flow_completed", id="oauth-stored"),
        pytest.param("SomethingNewHappened", "something_new_happened", id="unknown-variant"),
    ],
)
def test_shape_b_event_type(name: str, stored: str) -> None:
    element = {
        "event_id": TASK,
        "event_type": name,
        "user_id": None,
        "service": "auth",
        "timestamp": "2026-11-26T11:47:34Z",
        "data": {},
    }
    [row] = decode([element]).rows
    assert row.event_type == stored
    assert row.event_id == TASK
    assert row.service == "auth"
    assert row.user_id is None
    assert row.data == b"{}"


def test_uuids_are_stored_lowercase() -> None:
    element = {
        "event_id": TASK.upper(),
        "event_type": "x",
        "user_id": USER.upper(),
        "timestamp": "2026-11-26T11:47:34Z",
    }
    [row] = decode([element]).rows
    assert (row.event_id, row.user_id) == (TASK, USER)


def test_shape_b_defaults() -> None:
    [row] = decode([{"event_type": "x", "timestamp": "2026-11-26T11:47:34Z"}]).rows
    assert (row.service, row.user_id, row.data) == ("unknown", None, b"{}")


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        pytest.param({"event_id": "nope"}, "event_id: expected a UUID", id="bad-id"),
        pytest.param({"user_id": 3}, "user_id: expected a UUID", id="bad-user"),
        pytest.param({"service": 3}, "service: expected a string", id="bad-service"),
        pytest.param({"data": [1]}, "data: expected an object", id="data-array"),
        pytest.param(
            {"event_type": None}, "event_type: expected a non-empty string", id="null-type"
        ),
        pytest.param(
            {"data": {"task_id": 5}}, "data.task_id: expected a UUID", id="catalog-field-type"
        ),
    ],
)
def test_shape_b_rejections(changes: dict[str, object], reason: str) -> None:
    element = {**shape_b(random.Random(1)), **changes}
    assert reason in one_error(element)


def test_shapes_mix_and_bad_events_do_not_sink_the_batch() -> None:
    rng = random.Random(3)
    elements = [shape_a(rng=rng), shape_b(rng), 42, shape_a(rng=rng), {"event": {}}]
    batch = decode(elements)
    assert batch.received == 5
    assert batch.row_indexes == [0, 1, 3]
    assert [r.index for r in batch.rejections] == [2, 4]
    assert [d.event_index for d in batch.dead_letters] == [2, 4]
    assert batch.dead_letters[0].payload == b"42"


# --- event ids -------------------------------------------------------------------------------


def test_idempotency_key_gives_the_same_ids() -> None:
    events = [shape_a(rng=random.Random(n)) for n in range(3)]
    first = decode(events, idempotency_key="k-1")
    again = decode(events, idempotency_key="k-1")
    other = decode(events, idempotency_key="k-2")
    assert [r.event_id for r in first.rows] == [r.event_id for r in again.rows]
    assert [r.event_id for r in first.rows] == [idempotent_event_id("k-1", i) for i in range(3)]
    assert not {r.event_id for r in first.rows} & {r.event_id for r in other.rows}


def test_uuid7_is_time_ordered() -> None:
    earlier, later = uuid.UUID(uuid7(1_700_000_000_000)), uuid.UUID(uuid7(1_700_000_000_001))
    assert earlier.version == later.version == 7
    assert earlier.variant == uuid.RFC_4122
    assert earlier < later
    assert len({uuid7() for _ in range(1000)}) == 1000


# --- the body --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(b"", "empty", id="empty"),
        pytest.param(b'{"a": 1}', "expected a JSON array of events, got an object", id="object"),
        pytest.param(b'"x"', "got a string", id="string"),
        pytest.param(b"[1, 2", "the array is not closed", id="truncated"),
        pytest.param(b"[1,]", "expected a value after ','", id="trailing-comma"),
        pytest.param(b"[1,,2]", "expected a value before ','", id="empty-element"),
        pytest.param(b"[1] x", "unexpected data after the array", id="trailing-data"),
        pytest.param(b'["abc]', "unterminated string", id="unterminated-string"),
        pytest.param(b"[" * 64 * 1024 * 1024, "nested deeper than 1024 levels", id="nesting-cap"),
        pytest.param(
            b'[\n{"a": 1},\n{"b": [2}]', "line 3 column 9 (byte 20): unexpected '}'", id="position"
        ),
    ],
)
def test_malformed_body(body: bytes, message: str) -> None:
    with pytest.raises(MalformedBody, match=re.escape(message)):
        split_array(body)


@pytest.mark.parametrize(
    ("element", "reason"),
    [
        pytest.param(
            b'{"timestamp": "2026-11-26T11:47:34Z", "event": {"type": "x", "n": '
            + b"[" * 1000
            + b"]" * 1000
            + b"}}",
            "nested too deeply",
            id="deep-nesting",
        ),
        pytest.param(
            b'{"timestamp": "2026-11-26T11:47:34Z", "event": {"type": "x", "n": '
            + b"[" * 300
            + b"1e999999"
            + b"]" * 300
            + b"}}",
            "event.n[0]",
            id="deep-and-overflowing",
        ),
        pytest.param(b"NaN", "malformed", id="nan"),
        pytest.param(b'{"event": {"type": "x", "n": 1 2}}', "malformed", id="syntax-inside"),
    ],
)
def test_a_broken_element_is_rejected_alone(element: bytes, reason: str) -> None:
    good = json.dumps(task_created()).encode()
    batch = decode(b"[" + good + b", " + element + b", " + good + b"]")
    assert batch.row_indexes == [0, 2]
    assert [r.index for r in batch.rejections] == [1]
    assert reason in batch.rejections[0].error


def test_empty_array() -> None:
    batch = decode(b"[]")
    assert (batch.received, batch.rows, batch.rejections) == (0, [], [])


def test_offsets_are_converted() -> None:
    moment = datetime(2026, 11, 26, 11, 0, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    element = {**task_created(), "timestamp": moment.isoformat()}
    [row] = decode([element]).rows
    assert row.timestamp == moment.astimezone(UTC)


@pytest.mark.parametrize(
    ("number", "stored"),
    [
        pytest.param("1e131071", True, id="largest-exponent"),
        pytest.param("1e131072", False, id="too-large"),
        pytest.param("1e-16383", True, id="smallest-scale"),
        pytest.param("1.5e-16383", False, id="scale-too-large"),
        pytest.param("0e-99999", False, id="zero-with-huge-scale"),
        pytest.param("0e999999", True, id="zero-with-huge-exponent"),
        pytest.param("2.5e10000", True, id="long-exponent-in-range"),
    ],
)
def test_numbers_postgresql_cannot_store(number: str, stored: bool) -> None:
    body = f'[{{"timestamp": "2026-11-26T11:47:34Z", "event": {{"type": "x", "ok": "1e999999", "n": [{number}]}}}}]'
    batch = decode(body.encode())
    if stored:
        assert len(batch.rows) == 1
    else:
        assert (
            batch.rejections[0].error == "event.n[0]: number outside the range PostgreSQL can store"
        )


def test_an_overflowing_number_before_invalid_utf8() -> None:
    bad = (
        b'{"timestamp": "2026-11-26T11:47:34Z", "event": {"type": "x", "n": 1e999999, "s": "\xff"}}'
    )
    batch = decode(b"[" + bad + b"]")
    assert batch.rejections[0].error == "event: number outside the range PostgreSQL can store"


# --- clock skew and reasons ------------------------------------------------------------------


def test_a_timestamp_too_far_ahead_is_refused_and_kept_as_sent() -> None:
    ahead = task_created()
    ahead["timestamp"] = "2026-11-26T13:00:01Z"  # NOW is 12:00
    on_time = task_created()
    on_time["timestamp"] = "2026-11-26T13:00:00Z"
    for events in ([ahead, on_time], [shape_a(rng=random.Random(1), moment=NOW), ahead]):
        batch = decode_batch(
            json.dumps(events).encode(), received_at=NOW, max_clock_skew=timedelta(hours=1)
        )
        [rejection] = batch.rejections
        assert rejection.error == (
            "timestamp: 2026-11-26T13:00:01Z is 3601 s ahead of the server's clock, more than "
            "the 3600 s allowed (MAX_CLOCK_SKEW_SECONDS)"
        )
        assert rejection.kind == "clock_skew"
        assert b'"2026-11-26T13:00:01Z"' in batch.dead_letters[0].payload
        assert len(batch.rows) == 1


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("event.task_id: expected a UUID, got a string", "invalid_field"),
        ("timestamp: required", "timestamp"),
        ("timestamp: duplicate key (an object may name each key only once)", "duplicate_key"),
        ("refused by the database: value too long", "database"),
        ("the event: invalid JSON", "malformed"),
        (
            "$.a: contains the NUL character (\\u0000), which PostgreSQL cannot store",
            "unstorable_text",
        ),
    ],
)
def test_rejection_kinds(reason: str, kind: str) -> None:
    assert rejection_kind(reason) == kind
