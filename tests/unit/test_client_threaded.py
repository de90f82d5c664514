"""AnalyticsClient with transports that record, script answers, or never answer."""

from __future__ import annotations

import gzip
import json
import logging
import os
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from analytics_client import (
    AnalyticsClient,
    Failure,
    FailureKind,
    Options,
    RecordingTransport,
    Refusal,
    envelope,
    events,
)
from analytics_client.batching import seal
from analytics_client.spool import Spool
from analytics_client.transport import HttpRequest, HttpResponse, TransportError
from tests.unit.client_transports import (
    UNREADABLE_ANSWER,
    ScriptedTransport,
    SilentTransport,
    answer,
    gzip_failing,
    unreadable_answers,
)

ENDPOINT = "http://analytics.invalid"
USER = uuid.UUID("5d3f0c1e-7a2b-4c6d-8e9f-0a1b2c3d4e5f")
# Retries come at once: these tests count requests, they do not measure time.
QUICK = Options(backoff_base=0.001, backoff_cap=0.001, hostname="web-1", environment="test")


def task_created(command: str = "ls") -> events.TaskCreated:
    return events.TaskCreated(task_id=uuid.uuid4(), user_id=USER, command=command)


@pytest.fixture
def clients() -> Iterator[list[AnalyticsClient]]:
    """Clients made by a test, shut down after it."""
    made: list[AnalyticsClient] = []
    yield made
    for client in made:
        client.shutdown(timeout=1.0)


def make(
    clients: list[AnalyticsClient],
    transport: Any,
    options: Options = QUICK,
    failures: list[Failure] | None = None,
) -> AnalyticsClient:
    client = AnalyticsClient(
        ENDPOINT,
        options,
        transport=transport,
        on_failure=None if failures is None else failures.append,
    )
    clients.append(client)
    return client


def test_events_of_both_shapes_are_delivered(clients: list[AnalyticsClient]) -> None:
    transport = RecordingTransport()
    client = make(clients, transport)
    moment = datetime(2026, 11, 26, 11, 47, 34, 723533, tzinfo=UTC)
    given = uuid.UUID("8c1e2d3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f")
    first = client.track(task_created(), timestamp=moment, event_id=given)
    second = client.track_flat(
        "TaskCreated", {"task_id": uuid.uuid4()}, user_id=USER, service="api"
    )
    assert first and second
    report = client.flush(timeout=5)
    assert (report.delivered, report.rejected, report.pending) == (2, 0, 0)
    shape_a, shape_b = transport.events
    assert shape_a["event_id"] == first.event_id == str(given)
    assert (shape_a["timestamp"], shape_a["hostname"], shape_a["environment"]) == (
        "2026-11-26T11:47:34.723533Z",
        "web-1",
        "test",
    )
    assert shape_b["event_id"] == second.event_id
    assert (shape_b["event_type"], shape_b["user_id"], shape_b["service"]) == (
        "TaskCreated",
        str(USER),
        "api",
    )


def test_requests_carry_the_key_the_write_key_and_gzip(clients: list[AnalyticsClient]) -> None:
    transport = RecordingTransport()
    client = make(clients, transport, Options(write_key="k" * 20, hostname=None))
    client.track(task_created())
    client.flush(timeout=5)
    [request] = transport.requests
    assert request.headers["Authorization"] == "Bearer " + "k" * 20
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Content-Encoding"] == "gzip"
    uuid.UUID(request.headers["Idempotency-Key"])
    assert len(json.loads(gzip.decompress(request.body))) == 1


def test_ids_are_time_ordered_and_unique(clients: list[AnalyticsClient]) -> None:
    client = make(clients, RecordingTransport())
    ids = [client.track(task_created()).event_id for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert ids == sorted(ids)  # type: ignore[type-var]
    assert {uuid.UUID(i).version for i in ids if i} == {7}


def test_a_retried_batch_is_the_same_request(clients: list[AnalyticsClient]) -> None:
    transport = ScriptedTransport(
        answer(503, {"error": "queue full"}, retry_after="0"),
        TransportError("connection reset"),
        answer(500),
    )
    client = make(clients, transport)
    ids = [client.track(task_created()).event_id for _ in range(3)]
    report = client.flush(timeout=5)
    assert (report.delivered, report.pending) == (3, 0)
    requests = transport.requests
    assert len(requests) == 4
    assert len({request.body for request in requests}) == 1
    assert len({request.headers["Idempotency-Key"] for request in requests}) == 1
    assert [event["event_id"] for event in transport.events] == ids
    counters = client.counters()
    assert (counters.requests, counters.retries, counters.delivered) == (4, 3, 3)


def test_a_413_splits_until_each_part_fits(clients: list[AnalyticsClient]) -> None:
    def too_large_above_two(request: Any) -> HttpResponse:
        if len(request.events) > 2:
            return answer(413, {"error": "request body exceeds the limit"})
        return ScriptedTransport()._next(request)

    transport = RecordingTransport(too_large_above_two)
    client = make(clients, transport)
    ids = [client.track(task_created()).event_id for _ in range(5)]
    assert client.flush(timeout=5).delivered == 5
    assert [event["event_id"] for event in transport.events] == ids
    keys = [request.headers["Idempotency-Key"] for request in transport.requests]
    first = keys[0]
    assert keys[1:] == [f"{first}.1", f"{first}.2", f"{first}.2.1", f"{first}.2.2"]
    assert [len(request.events) for request in transport.requests] == [5, 2, 3, 1, 2]


def test_a_single_event_answered_413_is_rejected(clients: list[AnalyticsClient]) -> None:
    failures: list[Failure] = []
    transport = ScriptedTransport(answer(413, {"error": "too large"}))
    client = make(clients, transport, failures=failures)
    event_id = client.track(task_created()).event_id
    assert client.flush(timeout=5).rejected == 1
    assert failures == [Failure(FailureKind.REJECTED, (str(event_id),), "HTTP 413: too large")]


def test_rejections_are_reported_never_retried(clients: list[AnalyticsClient]) -> None:
    failures: list[Failure] = []
    transport = ScriptedTransport(
        answer(
            200,
            {
                "received": 2,
                "accepted": 1,
                "duplicates": 0,
                "rejected": [{"index": 1, "error": "event.x: bad"}],
            },
        )
    )
    client = make(clients, transport, failures=failures)
    client.track(task_created())
    second = client.track(task_created())
    report = client.flush(timeout=5)
    assert (report.delivered, report.rejected) == (1, 1)
    assert failures == [Failure(FailureKind.REJECTED, (str(second.event_id),), "event.x: bad")]
    assert len(transport.requests) == 1


@pytest.mark.parametrize(
    "status",
    [pytest.param(400, id="400"), pytest.param(401, id="401"), pytest.param(415, id="415")],
)
def test_other_4xx_are_final(clients: list[AnalyticsClient], status: int) -> None:
    failures: list[Failure] = []
    transport = ScriptedTransport(answer(status, {"error": "no"}))
    client = make(clients, transport, failures=failures)
    client.track(task_created())
    client.track(task_created())
    assert client.flush(timeout=5).rejected == 2
    assert [(f.kind, len(f.event_ids), f.reason) for f in failures] == [
        (FailureKind.REJECTED, 2, f"HTTP {status}: no")
    ]
    assert len(transport.requests) == 1


def test_a_batch_past_its_retry_deadline_is_dropped_and_reported(
    clients: list[AnalyticsClient],
) -> None:
    failures: list[Failure] = []
    transport = ScriptedTransport(*[answer(503)] * 1000)
    options = Options(retry_deadline=0.0, backoff_base=0.001, backoff_cap=0.001, hostname=None)
    client = make(clients, transport, options, failures)
    client.track(task_created())
    report = client.flush(timeout=5)
    assert (report.lost, report.pending) == (1, 0)
    assert client.counters().dropped == {"retry_deadline": 1}
    assert [(f.kind, f.reason) for f in failures] == [
        (FailureKind.LOST, "not delivered within the retry deadline (last: HTTP 503)")
    ]


def test_an_answer_that_cannot_be_read_is_a_retry(
    clients: list[AnalyticsClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    failures: list[Failure] = []
    transport = unreadable_answers(monkeypatch)
    options = Options(retry_deadline=0.0, backoff_base=0.001, backoff_cap=0.001, hostname=None)
    client = make(clients, transport, options, failures)
    client.track(task_created())
    report = client.flush(timeout=5)  # settled: tried once, then past its retry deadline
    assert (report.lost, report.pending) == (1, 0)
    assert (client.counters().requests, len(transport.requests)) == (1, 1)
    assert [f.reason for f in failures] == [UNREADABLE_ANSWER]


def test_events_that_cannot_be_sealed_are_lost_reported_and_released(
    clients: list[AnalyticsClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    gzip_failing(monkeypatch, range(1))
    failures: list[Failure] = []
    transport = RecordingTransport()
    options = Options(max_queue_events=2, max_batch_events=2, hostname=None)
    client = make(clients, transport, options, failures)
    ids = [client.track(task_created()).event_id for _ in range(2)]
    report = client.flush(timeout=5)
    assert (report.lost, report.pending) == (2, 0)
    assert client.counters().dropped == {"seal_failed": 2}
    assert failures == [Failure(FailureKind.LOST, tuple(ids), "cannot be sealed: MemoryError")]
    later = [client.track(task_created()) for _ in range(2)]  # the queue holds them no more
    assert all(later)
    assert client.flush(timeout=5).delivered == 2
    assert [event["event_id"] for event in transport.events] == [r.event_id for r in later]


def test_a_batch_whose_halves_cannot_be_sealed_is_lost_not_split_forever(
    clients: list[AnalyticsClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    gzip_failing(monkeypatch, range(1, 1000))  # the batch is sealed, its halves are not
    failures: list[Failure] = []
    transport = ScriptedTransport(answer(413, {"error": "too large"}))
    client = make(clients, transport, failures=failures)
    client.track(task_created())
    client.track(task_created())
    report = client.flush(timeout=5)
    assert (report.lost, report.pending, len(transport.requests)) == (2, 0, 1)
    assert [(f.kind, f.reason) for f in failures] == [
        (FailureKind.LOST, "its halves cannot be sealed: MemoryError")
    ]


@pytest.mark.parametrize(
    ("call", "refusal"),
    [
        pytest.param(lambda c: c.track("task_created"), Refusal.INVALID, id="not-an-event"),
        pytest.param(lambda c: c.track(None), Refusal.INVALID, id="none"),
        pytest.param(
            lambda c: c.track(task_created(), event_id="nope"), Refusal.INVALID, id="bad-id"
        ),
        pytest.param(
            lambda c: c.track(task_created(), timestamp=datetime(2026, 1, 1)),
            Refusal.INVALID,
            id="naive-time",
        ),
        pytest.param(
            lambda c: c.track(task_created(), timestamp="yesterday"),
            Refusal.INVALID,
            id="time-not-datetime",
        ),
        pytest.param(
            lambda c: c.track(events.TaskCreated(task_id=1, user_id=USER, command="x")),
            Refusal.INVALID,
            id="bad-field",
        ),
        pytest.param(
            lambda c: c.track_flat("x", {"v": float("nan")}), Refusal.NOT_SERIALISABLE, id="nan"
        ),
        pytest.param(
            lambda c: c.track_flat("x", {"v": {1, 2}}), Refusal.NOT_SERIALISABLE, id="a-set"
        ),
        pytest.param(
            lambda c: c.track_flat("x", ["not", "a", "mapping"]),
            Refusal.INVALID,
            id="data-not-a-mapping",
        ),
        pytest.param(
            lambda c: c.track_flat("x", user_id="someone"), Refusal.INVALID, id="bad-user-id"
        ),
        pytest.param(
            lambda c: c.track_flat("x", {"pad": "x" * 300_000}), Refusal.TOO_LARGE, id="too-large"
        ),
        pytest.param(lambda c: c.track_flat(None), Refusal.INVALID, id="no-type"),
    ],
)
def test_track_refuses_without_raising(
    clients: list[AnalyticsClient], call: Any, refusal: Refusal
) -> None:
    transport = RecordingTransport()
    client = make(clients, transport)
    result = call(client)
    assert not result
    assert result.reason is refusal
    assert result.detail
    assert client.counters().dropped == {refusal.value: 1}
    assert client.counters().tracked == 0
    assert client._sender is None  # nothing was queued, so nothing started


def test_track_never_raises_even_when_the_client_itself_fails(
    clients: list[AnalyticsClient],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(element: Any) -> bytes:
        raise RuntimeError("a bug")

    monkeypatch.setattr(envelope, "encode", broken)
    client = make(clients, RecordingTransport())
    result = client.track(task_created())
    assert (bool(result), result.reason) == (False, Refusal.INTERNAL_ERROR)
    assert "a bug" in caplog.text


@pytest.mark.parametrize(
    ("options", "refusal"),
    [
        pytest.param(
            Options(max_queue_events=3, max_batch_events=3, hostname=None),
            Refusal.QUEUE_FULL_EVENTS,
            id="events",
        ),
        pytest.param(
            Options(max_queue_bytes=1000, max_batch_bytes=1000, max_event_bytes=900, hostname=None),
            Refusal.QUEUE_FULL_BYTES,
            id="bytes",
        ),
    ],
)
def test_a_full_queue_drops_counts_and_logs_once(
    clients: list[AnalyticsClient],
    caplog: pytest.LogCaptureFixture,
    options: Options,
    refusal: Refusal,
) -> None:
    transport = SilentTransport()  # the first batch hangs: nothing leaves the queue
    client = make(clients, transport, options)
    results = [client.track_flat("x", {"pad": "x" * 200}) for _ in range(50)]
    refused = [result for result in results if not result]
    assert refused and all(result.reason is refusal for result in refused)
    assert client.counters().dropped == {refusal.value: len(refused)}
    assert client.counters().tracked == 50 - len(refused)
    drop_lines = [
        r for r in caplog.records if r.name == "analytics_client" and r.levelno == logging.WARNING
    ]
    assert len(drop_lines) == 1  # rate-limited: one line, not one per event


def test_the_failure_callback_may_raise_and_may_flush(
    clients: list[AnalyticsClient], caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[Failure] = []
    client_holder: list[AnalyticsClient] = []

    def callback(failure: Failure) -> None:
        calls.append(failure)
        client_holder[0].flush(timeout=5)  # from the sender's thread: must not wait on itself
        raise ValueError("the callback broke")

    transport = ScriptedTransport(answer(400), answer(400))
    client = AnalyticsClient(ENDPOINT, QUICK, transport=transport, on_failure=callback)
    clients.append(client)
    client_holder.append(client)
    client.track(task_created())
    assert client.flush(timeout=5).rejected == 1
    client.track(task_created())
    assert client.flush(timeout=5).rejected == 1  # the sender carried on
    assert len(calls) == 2
    assert "on_failure callback raised" in caplog.text


def test_disabled_checks_and_names_events_and_sends_nothing(
    clients: list[AnalyticsClient],
) -> None:
    transport = RecordingTransport()
    client = make(clients, transport, Options(enabled=False, hostname=None))
    result = client.track(task_created())
    assert result and uuid.UUID(str(result.event_id)).version == 7
    assert client.track_flat("x", {"v": float("nan")}).reason is Refusal.NOT_SERIALISABLE
    assert client.flush(timeout=5).delivered == 0
    assert client._sender is None
    assert transport.requests == []
    assert client.counters().tracked == 1


def test_no_thread_runs_before_the_first_event(clients: list[AnalyticsClient]) -> None:
    client = make(clients, RecordingTransport())
    client.flush(timeout=1)
    client.counters()
    assert client._sender is None
    client.track(task_created())
    assert client._sender is not None and client._sender.daemon


def test_a_sender_thread_that_could_not_start_is_started_again(
    clients: list[AnalyticsClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    start = threading.Thread.start
    attempts: list[str] = []

    def failing_once(thread: threading.Thread) -> None:
        attempts.append(thread.name)
        if len(attempts) == 1:
            raise RuntimeError("can't start new thread")
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", failing_once)
    transport = RecordingTransport()
    client = make(clients, transport)
    result = client.track(task_created())
    assert result  # queued, so accepted
    assert client.flush(timeout=5).delivered == 1
    assert attempts == ["analytics-client-sender"] * 2
    assert [event["event_id"] for event in transport.events] == [result.event_id]


def test_shutdown_without_a_sender_thread_spools_or_counts_what_is_left(
    clients: list[AnalyticsClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(thread: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", failing)
    failures: list[Failure] = []
    client = make(clients, RecordingTransport(), failures=failures)
    assert client.track(task_created())
    report = client.shutdown(timeout=5)
    assert (report.lost, report.pending) == (1, 1)
    assert [f.kind for f in failures] == [FailureKind.LOST]


def test_shutdown_is_bounded_when_the_service_never_answers(
    clients: list[AnalyticsClient],
) -> None:
    failures: list[Failure] = []
    transport = SilentTransport()
    client = make(clients, transport, failures=failures)
    for _ in range(3):
        client.track(task_created())
    client.flush(timeout=0)  # closes the batch now
    assert transport.sending.wait(5)
    report = client.shutdown(timeout=0.1)
    assert transport.aborted.is_set()  # the request in progress was ended, not waited for
    assert (report.delivered, report.lost, report.pending) == (0, 3, 3)
    assert client.counters().dropped == {"shutdown": 3}
    assert client.counters().pending == 0  # all accounted for: lost
    assert [len(f.event_ids) for f in failures] == [3]
    assert not client.track(task_created())


def test_shutdown_spools_what_it_could_not_send_and_a_new_client_sends_it(
    clients: list[AnalyticsClient], tmp_path: Path
) -> None:
    options = Options(
        spool_directory=tmp_path, backoff_base=0.001, backoff_cap=0.001, hostname=None
    )
    silent = SilentTransport()
    first = make(clients, silent, options)
    ids = [first.track(task_created()).event_id for _ in range(3)]
    first.flush(timeout=0)
    assert silent.sending.wait(5)
    first.track(task_created())  # still in the queue at shutdown
    report = first.shutdown(timeout=0.1)
    assert (report.spooled, report.lost, report.pending) == (4, 0, 4)
    assert len(list(tmp_path.glob("*.batch"))) == 2

    recording = RecordingTransport()
    second = make(clients, recording, options)
    second.track(task_created())  # starts the sender, which finds the spool
    second.flush(timeout=5)
    delivered = {event["event_id"] for event in recording.events}
    assert set(ids) <= delivered
    assert len(delivered) == 5
    spooled_keys = {r.headers["Idempotency-Key"] for r in silent.requests}
    assert spooled_keys <= {r.headers["Idempotency-Key"] for r in recording.requests}
    assert sorted(tmp_path.iterdir()) == []


def test_spooled_batches_are_sent_again_in_the_order_they_were_tracked(
    clients: list[AnalyticsClient], tmp_path: Path
) -> None:
    options = Options(spool_directory=tmp_path, max_batch_events=2, hostname=None)
    silent = SilentTransport()
    first = make(clients, silent, options)
    ids = [first.track(task_created()).event_id for _ in range(12)]
    first.flush(timeout=0)
    assert silent.sending.wait(5)
    assert first.shutdown(timeout=0.1).spooled == 12
    assert len(list(tmp_path.glob("*.batch"))) == 6  # the one in flight, then the queue's

    recording = RecordingTransport()
    second = make(clients, recording, options)
    last = second.track(task_created()).event_id
    assert second.flush(timeout=5).pending == 0
    assert [event["event_id"] for event in recording.events] == [*ids, last]


def test_a_spooled_batch_split_and_partly_given_up_stays_in_the_spool(
    clients: list[AnalyticsClient], tmp_path: Path
) -> None:
    payloads = tuple(b'{"n":%d}' % n for n in range(3))
    Spool(tmp_path, 1_000_000).store(seal("old", ("a", "b", "c"), payloads, compress=True))
    transport = ScriptedTransport(answer(413), answer(503))  # the whole, then its first half
    options = Options(
        spool_directory=tmp_path,
        retry_deadline=0.0,
        backoff_base=0.001,
        backoff_cap=0.001,
        hostname=None,
    )
    client = make(clients, transport, options)
    client.track(task_created())  # starts the sender, which finds the spool
    assert client.flush(timeout=5).pending == 0
    assert [len(request.events) for request in transport.requests] == [3, 1, 2, 1]
    assert [path.name for path in tmp_path.iterdir()] == ["old.batch"]  # "a" is still in it


def test_a_spooled_batch_is_kept_when_the_write_key_is_refused(
    clients: list[AnalyticsClient], tmp_path: Path
) -> None:
    payloads = tuple(b'{"n":%d}' % n for n in range(2))
    Spool(tmp_path, 1_000_000).store(seal("old", ("a", "b"), payloads, compress=True))
    failures: list[Failure] = []
    transport = ScriptedTransport(answer(401, {"error": "unknown write key"}))
    client = make(clients, transport, Options(spool_directory=tmp_path, hostname=None), failures)
    client.track(task_created())  # starts the sender, which finds the spool
    assert client.flush(timeout=5).delivered == 1  # the new event, with the next request
    assert [path.name for path in tmp_path.iterdir()] == ["old.batch"]
    assert failures == [
        Failure(FailureKind.KEPT_IN_SPOOL, ("a", "b"), "HTTP 401: unknown write key")
    ]
    assert len(transport.requests) == 2  # the spool was not taken again at once


def test_a_forked_child_starts_clean(
    clients: list[AnalyticsClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    transport = SilentTransport()
    client = make(clients, transport)
    client.track(task_created())
    client.flush(timeout=0)
    assert transport.sending.wait(5)
    parent_sender = client._sender
    parent_pid = os.getpid()
    # What the child sees: another pid, the parent's state copied, its threads gone.
    monkeypatch.setattr(os, "getpid", lambda: parent_pid + 1)
    child_transport = RecordingTransport()
    client._transport = child_transport
    result = client.track(task_created())
    assert result
    assert client._sender is not parent_sender
    assert client.counters().tracked == 1
    client.flush(timeout=5)
    assert [event["event_id"] for event in child_transport.events] == [result.event_id]
    transport.abort()


def test_the_client_is_a_context_manager() -> None:
    transport = RecordingTransport()
    with AnalyticsClient(ENDPOINT, QUICK, transport=transport) as client:
        client.track(task_created())
    assert len(transport.events) == 1
    assert not client.track(task_created())


def test_the_recorder_fixture_sees_what_the_code_tracked(analytics_recorder: Any) -> None:
    analytics_recorder.client.track(events.AuthLoginAttempt(email="dev@example.com", success=True))
    analytics_recorder.client.track_flat("custom_event", {"n": 1})
    [login] = analytics_recorder.events_of(events.AuthLoginAttempt)
    assert login["event"] == {
        "type": "auth_login_attempt",
        "user_id": None,
        "email": "dev@example.com",
        "success": True,
        "error": None,
    }
    assert [e["data"] for e in analytics_recorder.events_of("custom_event")] == [{"n": 1}]


def test_invalid_options_are_said_at_once() -> None:
    with pytest.raises(ValueError, match="max_queue_events=0"):
        Options(max_queue_events=0)
    with pytest.raises(ValueError, match="invalid endpoint"):
        AnalyticsClient("analytics:8094")


def test_the_write_key_never_shows_in_the_options_repr() -> None:
    assert "secret-key-value" not in repr(Options(write_key="secret-key-value"))


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("secret\r\nX-Injected: 1", id="header-injection"),
        pytest.param("secret key", id="space"),
        pytest.param("", id="empty"),
        pytest.param("sécret", id="not-ascii"),
    ],
)
def test_a_write_key_that_cannot_be_a_header_is_refused_without_showing_it(key: str) -> None:
    with pytest.raises(ValueError, match="write_key") as refused:
        Options(write_key=key)
    assert "secret" not in str(refused.value) and "sécret" not in str(refused.value)


class ExplodingTransport:
    def send(self, request: HttpRequest, timeout: float) -> HttpResponse:
        raise KeyError("not even a transport error")

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_any_transport_failure_is_retried(clients: list[AnalyticsClient]) -> None:
    client = make(clients, ExplodingTransport())
    client.track(task_created())
    report = client.flush(timeout=0.2)
    assert report.pending == 1
    assert client.counters().retries >= 1


def test_threads_tracking_at_once_lose_nothing(clients: list[AnalyticsClient]) -> None:
    transport = RecordingTransport()
    client = make(clients, transport, Options(max_batch_events=50, hostname=None))
    ids: list[list[str | None]] = [[] for _ in range(8)]

    def work(number: int) -> None:
        ids[number] = [client.track(task_created()).event_id for _ in range(500)]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert client.flush(timeout=10).pending == 0
    sent = [event["event_id"] for event in transport.events]
    assert sorted(sent) == sorted(i for chunk in ids for i in chunk)  # type: ignore[type-var]
    assert sum(len(request.events) for request in transport.requests) == 4000
