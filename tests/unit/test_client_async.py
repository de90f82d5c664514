"""AsyncAnalyticsClient: the same behaviour, with the sender as a task of the loop."""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
import uuid
from pathlib import Path

import pytest

from analytics_client import (
    AsyncAnalyticsClient,
    Failure,
    Options,
    RecordingTransport,
    Refusal,
)
from analytics_client.events import TaskStarted
from analytics_client.recording import RecordedRequest, accept_all
from analytics_client.testing import AnalyticsRecorder
from analytics_client.transport import HttpResponse
from tests.unit.client_transports import (
    UNREADABLE_ANSWER,
    AsyncSilentTransport,
    ScriptedTransport,
    answer,
    gzip_failing,
    unreadable_answers,
)

ENDPOINT = "http://analytics.invalid"
QUICK = Options(backoff_base=0.001, backoff_cap=0.001, hostname=None)


def task_started() -> TaskStarted:
    return TaskStarted(task_id=uuid.uuid4(), user_id=uuid.uuid4())


async def test_events_are_delivered_by_a_task_started_with_the_first() -> None:
    recording = RecordingTransport()
    client = AsyncAnalyticsClient(ENDPOINT, QUICK, transport=recording.asynchronous())
    assert client._task is None
    first = client.track(task_started())
    second = client.track_flat("custom", {"n": 1})
    assert first and second and client._task is not None
    report = await client.flush(timeout=5)
    assert (report.delivered, report.pending) == (2, 0)
    assert [e["event_id"] for e in recording.events] == [first.event_id, second.event_id]
    await client.shutdown(timeout=1)


async def test_a_retried_batch_is_the_same_request() -> None:
    scripted = ScriptedTransport(answer(503, retry_after="0"), answer(502))
    client = AsyncAnalyticsClient(ENDPOINT, QUICK, transport=scripted.asynchronous())
    ids = [client.track(task_started()).event_id for _ in range(3)]
    assert (await client.flush(timeout=5)).delivered == 3
    assert len({(r.body, r.headers["Idempotency-Key"]) for r in scripted.requests}) == 1
    assert [e["event_id"] for e in scripted.events] == ids
    assert client.counters().retries == 2
    await client.shutdown(timeout=1)


async def test_an_answer_that_cannot_be_read_is_a_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    failures: list[Failure] = []
    scripted = unreadable_answers(monkeypatch)
    options = Options(retry_deadline=0.0, backoff_base=0.001, backoff_cap=0.001, hostname=None)
    client = AsyncAnalyticsClient(
        ENDPOINT, options, transport=scripted.asynchronous(), on_failure=failures.append
    )
    client.track(task_started())
    report = await client.flush(timeout=5)  # settled: tried once, then past its retry deadline
    assert (report.lost, report.pending, len(scripted.requests)) == (1, 0, 1)
    assert [f.reason for f in failures] == [UNREADABLE_ANSWER]
    await client.shutdown(timeout=1)


async def test_events_that_cannot_be_sealed_are_lost_and_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gzip_failing(monkeypatch, range(1))
    failures: list[Failure] = []
    recording = RecordingTransport()
    client = AsyncAnalyticsClient(
        ENDPOINT, QUICK, transport=recording.asynchronous(), on_failure=failures.append
    )
    lost = client.track(task_started())
    report = await client.flush(timeout=5)
    assert (report.lost, report.pending) == (1, 0)
    assert [f.event_ids for f in failures] == [(lost.event_id,)]
    delivered = client.track(task_started())
    assert (await client.flush(timeout=5)).delivered == 1
    assert [e["event_id"] for e in recording.events] == [delivered.event_id]
    await client.shutdown(timeout=1)


async def test_shutdown_is_bounded_when_the_service_never_answers(tmp_path: Path) -> None:
    silent = AsyncSilentTransport()
    options = Options(spool_directory=tmp_path, hostname=None)
    client = AsyncAnalyticsClient(ENDPOINT, options, transport=silent)
    for _ in range(3):
        client.track(task_started())
    await client.flush(timeout=0)
    await asyncio.wait_for(silent.sending.wait(), 5)
    client.track(task_started())
    report = await client.shutdown(timeout=0.1)
    assert silent.cancelled  # the request in progress was cancelled, not waited for
    assert (report.spooled, report.lost, report.pending) == (4, 0, 4)
    assert len(os.listdir(tmp_path)) == 2
    assert client.track(task_started()).reason is Refusal.SHUT_DOWN


async def test_track_from_another_thread_wakes_the_loops_sender() -> None:
    recording = RecordingTransport()
    client = AsyncAnalyticsClient(
        ENDPOINT, Options(max_batch_events=2, hostname=None), transport=recording.asynchronous()
    )
    client.track(task_started())  # starts the task in this loop
    results = []
    thread = threading.Thread(target=lambda: results.append(client.track(task_started())))
    thread.start()
    thread.join()
    assert results[0]
    assert (await client.flush(timeout=5)).pending == 0
    assert len(recording.events) == 2
    await client.shutdown(timeout=1)


async def test_events_tracked_only_from_worker_threads_are_sent() -> None:
    """A sync endpoint's thread, or asyncio.to_thread: the sender starts in the client's loop."""
    sent = asyncio.Event()

    def accept(request: RecordedRequest) -> HttpResponse:
        sent.set()
        return accept_all(request)

    recording = RecordingTransport(accept)
    options = Options(max_batch_events=2, hostname=None)
    client = AsyncAnalyticsClient(ENDPOINT, options, transport=recording.asynchronous())
    first = [await asyncio.to_thread(client.track, task_started()) for _ in range(2)]
    await asyncio.wait_for(sent.wait(), 5)  # a full batch went without a flush
    last = await asyncio.to_thread(client.track, task_started())
    assert (await client.flush(timeout=5)).pending == 0
    assert [e["event_id"] for e in recording.events] == [r.event_id for r in [*first, last]]
    await client.shutdown(timeout=1)


def test_events_tracked_before_any_loop_wait_for_one(monkeypatch: pytest.MonkeyPatch) -> None:
    registered: list[object] = []
    monkeypatch.setattr(atexit, "register", registered.append)
    recording = RecordingTransport()
    client = AsyncAnalyticsClient(ENDPOINT, QUICK, transport=recording.asynchronous())
    results = []
    thread = threading.Thread(target=lambda: results.append(client.track(task_started())))
    thread.start()
    thread.join()
    assert results[0] and recording.requests == []
    assert registered == [client._at_exit]  # flushed at exit, should no loop come

    async def flush() -> int:
        return (await client.flush(timeout=5)).delivered

    assert asyncio.run(flush()) == 1


async def test_disabled_sends_nothing_and_starts_nothing() -> None:
    recording = RecordingTransport()
    client = AsyncAnalyticsClient(
        ENDPOINT, Options(enabled=False, hostname=None), transport=recording.asynchronous()
    )
    assert client.track(task_started())
    assert (await client.flush(timeout=1)).delivered == 0
    assert client._task is None and recording.requests == []


def test_a_client_outlives_its_loop() -> None:
    """asyncio.run twice: the second loop gets a sender of its own."""
    recording = RecordingTransport()
    client = AsyncAnalyticsClient(ENDPOINT, QUICK, transport=recording.asynchronous())

    async def track_and_flush() -> int:
        client.track(task_started())
        return (await client.flush(timeout=5)).delivered

    assert asyncio.run(track_and_flush()) == 1
    assert asyncio.run(track_and_flush()) == 1
    assert len(recording.events) == 2


def test_at_exit_what_the_loop_left_is_spooled(tmp_path: Path) -> None:
    recording = RecordingTransport()
    options = Options(spool_directory=tmp_path, hostname=None)
    client = AsyncAnalyticsClient(ENDPOINT, options, transport=recording.asynchronous())

    async def track_only() -> None:
        client.track(task_started())  # and the loop ends before it is sent

    asyncio.run(track_only())
    client._at_exit()
    counters = client.counters()
    assert (counters.spooled, counters.pending) == (1, 0)
    assert len(list(tmp_path.glob("*.batch"))) == 1


def test_the_recorder_shuts_its_asyncio_client_down() -> None:
    recorder = AnalyticsRecorder()

    async def track() -> str | None:
        return recorder.async_client.track(task_started()).event_id

    event_id = asyncio.run(track())  # and the loop ends before it is sent
    recorder.close()
    assert [event["event_id"] for event in recorder.transport.events] == [event_id]
    assert recorder.async_client.track(task_started()).reason is Refusal.SHUT_DOWN


async def test_the_recorder_shuts_its_asyncio_client_down_from_within_a_loop() -> None:
    recorder = AnalyticsRecorder()
    event_id = recorder.async_client.track(task_started()).event_id
    sender = recorder.async_client._task
    recorder.close()  # blocking, in the loop's thread
    assert [event["event_id"] for event in recorder.transport.events] == [event_id]
    assert recorder.async_client.track(task_started()).reason is Refusal.SHUT_DOWN
    assert sender is not None
    await asyncio.wait([sender], timeout=5)  # the task of this loop was stopped too
    assert sender.done()
