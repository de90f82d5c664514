"""What each answer of POST /events/batch means for the batch."""

from __future__ import annotations

import json

import pytest

from analytics_client.outcome import (
    Answered,
    Outcome,
    Refused,
    Retry,
    Split,
    interpret,
    network_failure,
)


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


ANSWER = body(
    received=3, accepted=1, duplicates=1, rejected=[{"index": 2, "error": "event.x: bad"}]
)


@pytest.mark.parametrize(
    ("status", "headers", "content", "count", "outcome"),
    [
        pytest.param(
            200, {}, ANSWER, 3, Answered(1, ((2, "event.x: bad"),)), id="200-with-rejection"
        ),
        pytest.param(200, {}, b"not json", 3, Answered(0, ()), id="200-unreadable-is-success"),
        pytest.param(204, {}, b"", 3, Answered(0, ()), id="other-2xx"),
        pytest.param(
            200,
            {},
            body(duplicates=-1, rejected=[{"index": 9, "error": "x"}, "junk"]),
            3,
            Answered(0, ()),
            id="200-nonsense-ignored",
        ),
        pytest.param(
            422,
            {},
            body(rejected=[{"index": 0, "error": "bad"}]),
            2,
            Answered(0, ((0, "bad"), (1, "HTTP 422"))),
            id="422-all-refused",
        ),
        pytest.param(
            503,
            {"retry-after": "7"},
            body(error="queue full"),
            3,
            Retry("HTTP 503: queue full", 7.0),
            id="503-retry-after",
        ),
        pytest.param(500, {}, b"", 3, Retry("HTTP 500", None), id="500"),
        pytest.param(502, {}, b"<html>", 3, Retry("HTTP 502", None), id="502-html"),
        pytest.param(408, {}, b"", 3, Retry("HTTP 408", None), id="408"),
        pytest.param(429, {"retry-after": "2"}, b"", 3, Retry("HTTP 429", 2.0), id="429"),
        pytest.param(
            413, {}, body(error="too large"), 3, Split("HTTP 413: too large"), id="413-splits"
        ),
        pytest.param(
            413,
            {},
            body(error="too large"),
            1,
            Refused("HTTP 413: too large"),
            id="413-single-event",
        ),
        pytest.param(
            400, {}, body(error="invalid JSON"), 3, Refused("HTTP 400: invalid JSON"), id="400"
        ),
        pytest.param(
            401,
            {},
            body(error="a write key is required"),
            3,
            Refused("HTTP 401: a write key is required", key_refused=True),
            id="401",
        ),
        pytest.param(403, {}, b"", 3, Refused("HTTP 403", key_refused=True), id="403"),
        pytest.param(415, {}, b"", 3, Refused("HTTP 415"), id="415"),
        pytest.param(404, {}, b"", 3, Refused("HTTP 404"), id="404"),
        pytest.param(301, {}, b"", 3, Refused("HTTP 301"), id="redirect-not-followed"),
    ],
)
def test_interpret(
    status: int, headers: dict[str, str], content: bytes, count: int, outcome: Outcome
) -> None:
    assert interpret(status, headers, content, count, now_unix=0.0) == outcome


def test_a_network_error_is_retried() -> None:
    assert network_failure(ConnectionRefusedError(111, "refused")) == Retry(
        "ConnectionRefusedError: [Errno 111] refused"
    )
    assert network_failure(TimeoutError()) == Retry("TimeoutError")
