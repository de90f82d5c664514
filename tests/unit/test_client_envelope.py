"""One event as the service reads it: both shapes, checked fields, the bytes."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from analytics_client import envelope, events
from analytics_client.validation import InvalidEvent, event_object, flat_data

TASK = uuid.UUID("0b8f8f5e-3c8a-4d51-9d47-1f0e2f3c4a5b")
USER = "5D3F0C1E-7A2B-4C6D-8E9F-0A1B2C3D4E5F"


def test_a_shape_a_event_carries_its_tag_then_its_fields_in_order() -> None:
    event = events.TaskCreated(task_id=TASK, user_id=USER, command="ls -la")
    element = envelope.shape_a(
        event_object(event),
        event_id="e",
        timestamp="2026-11-26T11:47:34.723533Z",
        hostname="web-1",
        environment="production",
    )
    assert list(element) == ["timestamp", "event", "hostname", "environment", "event_id"]
    assert json.dumps(element["event"]) == json.dumps(
        {
            "type": "task_created",
            "task_id": str(TASK),
            "user_id": USER.lower(),
            "project_id": None,
            "cocoon_id": None,
            "command": "ls -la",
        }
    )


def test_a_shape_b_event_has_the_flat_fields() -> None:
    element = envelope.shape_b(
        "TaskCreated",
        {"task_id": str(TASK)},
        event_id="e",
        user_id=None,
        service="platform-api",
        timestamp="2026-11-26T11:47:34Z",
    )
    assert list(element) == ["event_id", "event_type", "user_id", "service", "timestamp", "data"]


@pytest.mark.parametrize(
    ("event", "message"),
    [
        pytest.param(
            events.TaskCreated(task_id="nope", user_id=USER, command="x"),
            "event.task_id: expected a UUID",
            id="uuid",
        ),
        pytest.param(
            events.TaskCreated(task_id=TASK, user_id=None, command="x"),
            "event.user_id: must not be null",
            id="null",
        ),  # type: ignore[arg-type]
        pytest.param(
            events.TaskCreated(task_id=TASK, user_id=USER, command=3),
            "event.command: expected a string",
            id="string",
        ),  # type: ignore[arg-type]
        pytest.param(
            events.ApiRequest(
                service="s", endpoint="/", method="GET", status_code=65536, duration_ms=1
            ),
            "outside the uint16 range",
            id="uint16-range",
        ),
        pytest.param(
            events.TaskCompleted(task_id=TASK, user_id=USER, duration_ms=1, exit_code=2**31),
            "outside the int32 range",
            id="int32-range",
        ),
        pytest.param(
            events.TaskCompleted(task_id=TASK, user_id=USER, duration_ms=True, exit_code=0),
            "expected an integer (int64)",
            id="bool-is-not-int",
        ),
        pytest.param(
            events.TaskCompleted(task_id=TASK, user_id=USER, duration_ms=1.5, exit_code=0),
            "expected an integer",
            id="float-is-not-int",
        ),  # type: ignore[arg-type]
        pytest.param(
            events.AuthSessionValidated(user_id=USER, valid=1), "expected a boolean", id="boolean"
        ),  # type: ignore[arg-type]
        pytest.param(
            events.ProxyRequest(
                proxy_token_id=TASK,
                user_id=USER,
                request_id="r",
                provider_type="p",
                key_mode="k",
                endpoint="e",
                latency_ms=1,
                is_streaming=False,
                status="ok",
                reported_cost_usd=float("inf"),
            ),
            "expected a finite number",
            id="float64-infinite",
        ),
        pytest.param(
            events.ProxyRequest(
                proxy_token_id=TASK,
                user_id=USER,
                request_id="r",
                provider_type="p",
                key_mode="k",
                endpoint="e",
                latency_ms=1,
                is_streaming=False,
                status="ok",
                reported_cost_usd="1",
            ),
            "expected a number",
            id="float64-text",
        ),  # type: ignore[arg-type]
    ],
)
def test_wrong_field_values_are_refused_with_the_field_named(
    event: events.Event, message: str
) -> None:
    with pytest.raises(InvalidEvent, match=re.escape(message)):
        event_object(event)


def test_values_of_every_catalog_type_pass() -> None:
    event = events.ProxyRequest(
        proxy_token_id=TASK,
        user_id=USER,
        request_id="r",
        provider_type="p",
        key_mode="k",
        endpoint="e",
        latency_ms=-(2**31),
        is_streaming=True,
        status="ok",
        reported_cost_usd=3,
    )
    assert event_object(event)["reported_cost_usd"] == 3
    context = {"nested": [1, {"deep": None}]}
    error = events.ApplicationError(service="s", error_type="t", error_message="m", context=context)
    assert event_object(error)["context"] == context


@pytest.mark.parametrize(
    ("event_type", "data", "expected"),
    [
        pytest.param(
            events.TaskCreated,
            {"task_id": TASK},
            {"task_id": str(TASK)},
            id="catalog-uuid-normalised",
        ),
        pytest.param(events.TaskCreated, {"extra": 1}, {"extra": 1}, id="absent-fields-allowed"),
        pytest.param(
            None,
            {"anything": float("nan")},
            {"anything": float("nan")},
            id="unknown-type-unchecked",
        ),
    ],
)
def test_flat_data_checks_the_catalog_fields_it_has(
    event_type: type[events.Event] | None, data: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert repr(flat_data(event_type, data)) == repr(expected)


def test_flat_data_refuses_a_wrong_catalog_field() -> None:
    with pytest.raises(InvalidEvent, match=r"data\.exit_code"):
        flat_data(events.TaskCompleted, {"exit_code": "0"})


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        pytest.param(
            datetime(2026, 11, 26, 11, 47, 34, 723533, tzinfo=UTC),
            "2026-11-26T11:47:34.723533Z",
            id="utc",
        ),
        pytest.param(
            datetime(2026, 11, 26, 12, 47, 34, tzinfo=timezone(timedelta(hours=1))),
            "2026-11-26T11:47:34.000000Z",
            id="offset-converted",
        ),
        pytest.param(
            datetime(999, 1, 2, tzinfo=UTC), "0999-01-02T00:00:00.000000Z", id="four-digit-year"
        ),
    ],
)
def test_timestamps_are_rfc3339_in_utc(moment: datetime, text: str) -> None:
    assert envelope.timestamp_text(moment) == text


def test_a_naive_timestamp_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        envelope.timestamp_text(datetime(2026, 11, 26))


def test_the_clock_reading_is_written_to_the_microsecond() -> None:
    assert (
        envelope.timestamp_from_unix_nanoseconds(1_795_000_000_123_456_789)
        == "2026-11-18T11:06:40.123456Z"
    )


def test_events_are_compact_utf8_json() -> None:
    encoded = envelope.encode(
        {"a": "é", "b": [1, 2], "id": TASK, "at": datetime(2026, 1, 1, tzinfo=UTC)}
    )
    assert (
        encoded
        == '{"a":"é","b":[1,2],"id":"0b8f8f5e-3c8a-4d51-9d47-1f0e2f3c4a5b","at":"2026-01-01T00:00:00.000000Z"}'.encode()
    )


@pytest.mark.parametrize(
    ("element", "reason"),
    [
        pytest.param({"x": float("nan")}, "Out of range float", id="nan"),
        pytest.param({"x": float("-inf")}, "Out of range float", id="infinity"),
        pytest.param({"x": object()}, "object is not JSON", id="not-json"),
        pytest.param({"x": "\ud800"}, "unpaired UTF-16 surrogate", id="surrogate"),
        pytest.param({"x": ["a\x00b"]}, "NUL character", id="nul"),
        pytest.param({"a\x00": 1}, "NUL character", id="nul-in-key"),
    ],
)
def test_what_the_service_cannot_store_is_refused(element: dict[str, Any], reason: str) -> None:
    with pytest.raises(envelope.NotSerialisable, match=reason):
        envelope.encode(element)


def test_a_backslash_before_u0000_text_is_not_a_nul() -> None:
    assert envelope.encode({"x": "\\u0000"}) == b'{"x":"\\\\u0000"}'


def test_a_cycle_is_refused() -> None:
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    with pytest.raises(envelope.NotSerialisable, match="Circular"):
        envelope.encode(cyclic)


@pytest.mark.parametrize(
    ("event_type", "service", "message"),
    [
        pytest.param("x" * 101, None, "event_type: longer than 100", id="long-type"),
        pytest.param("x", "s" * 101, "service: longer than 100", id="long-service"),
        pytest.param("", None, "event_type: must not be empty", id="empty-type"),
    ],
)
def test_flat_names_must_fit_their_columns(
    event_type: str, service: str | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        envelope.shape_b(event_type, {}, event_id="e", user_id=None, service=service, timestamp="t")
