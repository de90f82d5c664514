"""The fast path must take the platform client's events and give exactly the per-event
path's rows; anything it cannot judge the same way it must hand over (return None)."""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from analytics_ingestion.samples import CATALOG, event_object, shape_a, shape_b
from analytics_ingestion.wire import (
    Batch,
    decode_batch_fast,
    decode_batch_per_event,
    parse_rfc3339,
    parse_timestamp,
    uuid7_range,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
KEY = "retry-safe"  # the same key gives both paths the same ids


def both(body: bytes) -> tuple[Batch | None, Batch]:
    fast = decode_batch_fast(body, NOW, KEY, CATALOG)
    return fast, decode_batch_per_event(body, NOW, KEY, CATALOG)


def test_every_catalog_type_takes_the_fast_path_with_the_same_rows() -> None:
    rng = random.Random(1)
    events = [
        {**shape_a(rng=rng), "event": event_object(event_type, rng, nulls=nulls)}
        for event_type in CATALOG.types
        for nulls in (False, True)
    ]
    events.append(
        {"timestamp": "2026-11-26T11:47:34Z", "event": event_object(CATALOG.types[0], rng)}
    )
    fast, per_event = both(json.dumps(events).encode())
    assert fast is not None
    assert fast == per_event
    assert len(fast.rows) == len(events)


def valid_event(**event_changes: Any) -> dict[str, Any]:
    task = CATALOG.find("task_created")
    assert task is not None
    event = {**event_object(task, random.Random(2)), **event_changes}
    return {**shape_a(task, random.Random(2)), "event": event}


@pytest.mark.parametrize(
    "element",
    [
        pytest.param(valid_event(extra="field"), id="unknown-field"),
        pytest.param(valid_event(type="TaskCreated"), id="variant-name"),
        pytest.param(valid_event(type="not_in_the_catalog"), id="unknown-type"),
        pytest.param(valid_event(command="a\u0000b"), id="nul"),
        pytest.param(valid_event(command="\ud800"), id="unpaired-surrogate"),
        pytest.param(valid_event(command=7), id="wrong-type"),
        pytest.param(valid_event(task_id="not-a-uuid"), id="bad-uuid"),
        pytest.param(valid_event(service="s" * 101), id="long-service"),
        pytest.param({**valid_event(), "timestamp": "2026-11-26T11:47:60Z"}, id="leap-second"),
        pytest.param({**valid_event(), "timestamp": "2026-11-26"}, id="date-only"),
        pytest.param({**valid_event(), "hostname": 3}, id="hostname-not-a-string"),
        pytest.param(shape_b(random.Random(3)), id="shape-b"),
    ],
)
def test_what_the_fast_path_hands_over(element: dict[str, Any]) -> None:
    body = json.dumps([valid_event(), element]).encode()
    fast, per_event = both(body)
    assert fast is None
    assert len(per_event.rows) + len(per_event.rejections) == 2


@pytest.mark.parametrize(
    ("name", "first", "last"),
    [
        pytest.param("command", '"ls"', '"rm"', id="event-field"),
        pytest.param("type", '"task_created"', '"task_created"', id="type-tag"),
        pytest.param("project_id", "null", "null", id="null-twice"),
    ],
)
def test_a_key_named_twice_is_handed_over_and_refused(name: str, first: str, last: str) -> None:
    event = {k: v for k, v in valid_event()["event"].items() if k != name}

    def body(*values: str) -> bytes:
        keys = ", ".join(f'"{name}": {value}' for value in values)
        element = (
            f'{{"timestamp": "2026-11-26T11:47:34Z", "event": {{{keys}, {json.dumps(event)[1:]}}}'
        )
        return f"[{json.dumps(valid_event())}, {element}]".encode()

    assert decode_batch_fast(body(last), NOW, KEY, CATALOG) is not None
    fast, per_event = both(body(first, last))
    assert fast is None
    assert [r.to_json() for r in per_event.rejections] == [
        {
            "index": 1,
            "error": f"event.{name}: duplicate key (an object may name each key only once)",
        }
    ]


def test_a_key_named_twice_inside_any_json_is_handed_over() -> None:
    error = CATALOG.find("application_error")
    assert error is not None
    event = {**event_object(error, random.Random(5)), "context": {"retry": {"n": 1}}}
    body = json.dumps([{**shape_a(error, random.Random(5)), "event": event}]).encode()
    assert decode_batch_fast(body, NOW, KEY, CATALOG) is not None
    twice = body.replace(b'{"n": 1}', b'{"n": 1, "n": 2}')
    fast, per_event = both(twice)
    assert fast is None
    assert per_event.rejections[0].error.startswith("event.context.retry.n: duplicate key")


def test_invalid_utf8_is_handed_over() -> None:
    text = json.dumps([valid_event(command="ü")], ensure_ascii=False)
    body = text.encode().replace("ü".encode(), b"\xfc")
    assert decode_batch_fast(body, NOW, KEY, CATALOG) is None


_AWKWARD_VALUES: list[Any] = [
    None, True, 0, -1, 2**31, -(2**31) - 1, 2**63, 2**64, 65536, 1.5, -0.0, 1e308, "",
    "ü", "😀", "a\u0000", [], {}, [[[]]], {"a": {"b": None}}, "2026-11-26T11:47:34Z",
    "0b8f8f5e-3c8a-4d51-9d47-1f0e2f3c4a5b", "0B8F8F5E-3C8A-4D51-9D47-1F0E2F3C4A5B",
    "0b8f8f5e3c8a4d519d471f0e2f3c4a5b", "0b8f8f5e-3c8a-4d51-9d47-1f0e2f3c4a5b\n",
    "0b8f8f5e-3c8a4d51-9d47-1f0e2f3c4a5b", "{0b8f8f5e-3c8a-4d51-9d47-1f0e2f3c4a5b}",
]  # fmt: skip
_AWKWARD_NUMBERS = [b"1e400", b"-1e400", b"1" + b"0" * 400, b"1e131072", b"0." + b"1" * 17000,
                    b"1E5", b"-0", b"1.0", b"1e-20000", b"0." + b"0" * 17000 + b"1"]  # fmt: skip
_AWKWARD_TIMESTAMPS = [
    "2026-11-26T11:47:34Z", "2026-11-26t11:47:34z", "2026-11-26 11:47:34Z", "2026-11-26T11:47:34.Z",
    "2026-11-26T11:47:34,5Z", "2026-11-26T11:47:34.123456789+02:00", "2026-11-26T11:47:34-00:00",
    "1999-12-31T23:59:59.9999999Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z",
    "2026-11-26T24:00:00Z", "2026-13-01T00:00:00Z", "20261126T114734Z", "2026-W48-4T11:47:34Z",
    "2026-11-26T11:47Z", "2026-11-26T11:47:34.+00:00", "\uff12026-11-26T11:47:34Z", "",
]  # fmt: skip


def mutate(events: list[dict[str, Any]], rng: random.Random) -> bytes:
    """One body with one awkward change (values, fields, tags, timestamps, or bytes)."""
    events = json.loads(json.dumps(events))
    target = rng.choice(events)
    kind = rng.randrange(8)
    if kind == 0:
        target["event"][rng.choice(list(target["event"]))] = rng.choice(_AWKWARD_VALUES)
    elif kind == 1:
        del target["event"][rng.choice(list(target["event"]))]
    elif kind == 2:
        target["event"][rng.choice(["extra", "user_id", "service", "type"])] = rng.choice(
            _AWKWARD_VALUES
        )
    elif kind == 3:
        target["timestamp"] = rng.choice(_AWKWARD_TIMESTAMPS)
    elif kind == 4:
        top = ["hostname", "environment", "event_id", "event", "data", "service", "user_id"]
        target[rng.choice(top)] = rng.choice(_AWKWARD_VALUES)
    elif kind == 7:  # a key named twice, in the envelope or the event
        where = rng.choice([target, target["event"]])
        name = rng.choice(list(where))
        again = json.dumps({name: rng.choice([where[name], *_AWKWARD_VALUES])})[1:-1]
        text = json.dumps(where)
        where.clear()
        where["twice"] = None
        return json.dumps(events).replace('{"twice": null}', f"{text[:-1]}, {again}}}").encode()
    body = json.dumps(events, ensure_ascii=rng.random() < 0.5).encode()
    if kind == 5:
        at = body.index(b'": ', rng.randrange(len(body) // 2)) + 3
        end = min(found for c in (b",", b"}") if (found := body.find(c, at)) != -1)
        return body[:at] + rng.choice(_AWKWARD_NUMBERS) + body[end:]
    if kind == 6:
        at = rng.randrange(len(body))
        return body[:at] + bytes([rng.randrange(256)]) + body[at + 1 :]
    return body


def test_where_the_fast_path_answers_it_answers_as_the_per_event_path() -> None:
    rng = random.Random(4)
    answered = 0
    for _ in range(3000):
        events = [shape_a(rng=rng) for _ in range(rng.randrange(1, 6))]
        body = mutate(events, rng)
        try:
            fast, per_event = both(body)
        except Exception as error:  # the body is not an array at all: both must say so
            assert type(error).__name__ == "MalformedBody", body
            continue
        if fast is not None:
            answered += 1
            assert fast == per_event, body
            assert not fast.rejections
    assert 300 < answered < 2700  # both outcomes were exercised


@pytest.mark.parametrize("text", _AWKWARD_TIMESTAMPS)
def test_the_quick_timestamp_parse_agrees_with_the_long_way(text: str) -> None:
    def outcome(parse: Any) -> object:
        try:
            return parse(text)
        except ValueError:
            return ValueError

    assert outcome(parse_timestamp) == outcome(parse_rfc3339)


def test_uuid7s_count_up_within_a_batch() -> None:
    ids = [str(uuid.UUID(int=value)) for value in uuid7_range(1000, 1_700_000_000_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 1000
    assert all(i[14] == "7" and i[19] in "89ab" for i in ids)


def proxy_request(cost: bytes) -> bytes:
    event_type = CATALOG.find("proxy_request")
    assert event_type is not None
    event = event_object(event_type, random.Random(5), nulls=True)
    event["reported_cost_usd"] = 0.5
    body = json.dumps([{"timestamp": "2026-11-26T11:47:34Z", "event": event}]).encode()
    return body.replace(b'"reported_cost_usd": 0.5', b'"reported_cost_usd": ' + cost)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(proxy_request(b"1e-20000"), id="float64-underflow"),
        pytest.param(proxy_request(b"0." + b"0" * 17000 + b"1"), id="float64-scale"),
        pytest.param(
            proxy_request(b"0.5").replace(b'[{"timestamp"', b'[{"service": 1e400, "timestamp"'),
            id="number-out-of-range-beside-the-event",
        ),
    ],
)
def test_numbers_the_per_event_path_refuses_are_handed_over(body: bytes) -> None:
    fast, per_event = both(body)
    assert fast is None
    assert per_event.rejections and not per_event.rows


def test_ids_of_32_digits_are_stored_hyphenated_by_both_paths() -> None:
    event = valid_event()
    event["event"]["user_id"] = "0B8F8F5E3C8A4D519D471F0E2F3C4A5B"
    event["event_id"] = "1b8f8f5e3c8a4d519d471f0e2f3c4a5b"
    fast, per_event = both(json.dumps([event]).encode())
    assert fast is not None and fast == per_event
    [row] = fast.rows
    assert row.user_id == "0b8f8f5e-3c8a-4d51-9d47-1f0e2f3c4a5b"
    assert row.event_id == "1b8f8f5e-3c8a-4d51-9d47-1f0e2f3c4a5b"
