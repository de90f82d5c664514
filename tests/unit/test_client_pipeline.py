"""The sender's state machine, step by step, with a fake clock."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from analytics_client.batching import seal, seal_events, split
from analytics_client.options import Options
from analytics_client.outcome import Answered, Refused, Retry, Split, interpret
from analytics_client.pipeline import (
    Close,
    Expire,
    Pipeline,
    Scheduled,
    Send,
    SplitInTwo,
    Step,
    Wait,
)
from analytics_client.results import Failure, FailureKind, Loss, Refusal
from analytics_client.retry import MAX_RETRY_AFTER
from analytics_client.spool import SpooledBatch

OPTIONS = Options(
    max_queue_events=10,
    max_queue_bytes=10_000,
    max_batch_events=3,
    max_batch_bytes=1000,
    max_event_bytes=500,
    flush_interval=1.0,
    backoff_base=0.5,
    backoff_cap=4.0,
    retry_deadline=60.0,
    hostname=None,
    environment=None,
)


def pipeline(options: Options = OPTIONS, draw: Any = None) -> Pipeline:
    keys = (f"key-{n}" for n in itertools.count())
    return Pipeline(options, new_key=lambda: next(keys), draw=draw or (lambda low, high: high))


def offer(pipe: Pipeline, count: int, now: float = 0.0, start: int = 0) -> None:
    for number in range(start, start + count):
        assert pipe.offer(f"id-{number}", b'{"n":%d}' % number, now) is None


def close_and_add(pipe: Pipeline, now: float) -> Scheduled:
    """Run the Close step as a client would, and return the batch now at the head."""
    step = pipe.next_step(now)
    assert isinstance(step, Close), step
    pipe.add_closed(seal_events(step.key, step.events, compress=False), now)
    return pipe.ready[-1]


def sending(pipe: Pipeline, now: float) -> Scheduled:
    step = pipe.next_step(now)
    assert isinstance(step, Send), step
    return step.scheduled


def test_an_event_waits_for_company_then_goes() -> None:
    pipe = pipeline()
    offer(pipe, 1, now=0.0)
    assert pipe.next_step(0.25) == Wait(0.75)
    scheduled = close_and_add(pipe, 1.0)
    assert sending(pipe, 1.0) is scheduled
    settlement = pipe.settle(scheduled, Answered(0, ()), 1.1)
    assert settlement.failures == []
    assert pipe.next_step(1.1) == Wait(None)
    counters = pipe.tally.snapshot(pipe.pending)
    assert (counters.tracked, counters.delivered, counters.requests, counters.pending) == (
        1,
        1,
        1,
        0,
    )


def test_a_full_batch_closes_at_once_and_wakes_the_sender() -> None:
    pipe = pipeline()
    offer(pipe, 1)
    assert pipe.sender_wanted()  # the first event: the sender sets its timer
    offer(pipe, 1, start=1)
    assert not pipe.sender_wanted()
    offer(pipe, 1, start=2)
    assert pipe.sender_wanted()  # a batch's worth
    assert close_and_add(pipe, 0.0).batch.event_ids == ("id-0", "id-1", "id-2")


def test_a_flush_closes_young_batches_until_its_events_are_taken() -> None:
    pipe = pipeline()
    offer(pipe, 4)
    target = pipe.request_flush()
    first = close_and_add(pipe, 0.0)
    pipe.settle(sending(pipe, 0.0), Answered(0, ()), 0.0)
    assert not pipe.flushed(target)
    offer(pipe, 1, start=4)  # tracked after the flush began: it rides along
    second = close_and_add(pipe, 0.0)
    assert (len(first.batch), len(second.batch)) == (3, 2)
    pipe.settle(sending(pipe, 0.0), Answered(0, ()), 0.0)
    assert pipe.flushed(target)
    offer(pipe, 1, start=5)
    assert pipe.next_step(0.0) == Wait(1.0)  # no flush forces it


def test_the_queue_bound_counts_what_is_in_flight() -> None:
    pipe = pipeline(Options(max_queue_events=3, max_batch_events=3, hostname=None))
    offer(pipe, 3)
    close_and_add(pipe, 0.0)
    assert pipe.offer("late", b"{}", 0.0) is Refusal.QUEUE_FULL_EVENTS
    pipe.settle(sending(pipe, 0.0), Answered(0, ()), 0.0)
    assert pipe.offer("late", b"{}", 0.0) is None
    assert pipe.tally.snapshot(0).dropped == {"queue_full_events": 1}


def test_a_retry_waits_with_backoff_and_resends_the_same_batch() -> None:
    pipe = pipeline()
    offer(pipe, 3)
    scheduled = close_and_add(pipe, 0.0)
    body = scheduled.batch.body
    pipe.settle(sending(pipe, 0.0), Retry("HTTP 500"), 0.0)
    assert pipe.next_step(0.0) == Wait(0.5)
    pipe.settle(sending(pipe, 0.5), Retry("HTTP 500"), 0.5)
    assert pipe.next_step(0.5) == Wait(1.0)  # doubled
    again = sending(pipe, 1.5)
    assert again is scheduled and again.batch.body == body
    pipe.settle(again, Answered(3, ()), 1.5)
    counters = pipe.tally.snapshot(pipe.pending)
    assert (counters.requests, counters.retries, counters.delivered, counters.duplicates) == (
        3,
        2,
        3,
        3,
    )


def test_retry_after_holds_every_batch_of_the_client() -> None:
    pipe = pipeline(Options(retry_deadline=2.0, max_batch_events=3, hostname=None))
    offer(pipe, 3)
    first = close_and_add(pipe, 0.0)
    offer(pipe, 1, start=3, now=0.5)
    pipe.settle(sending(pipe, 0.0), Retry("HTTP 503", retry_after=10.0), 0.0)
    steps: list[tuple[float, Step]] = []
    now = 0.0
    while now <= 12.0:
        step = pipe.next_step(now)
        steps.append((now, step))
        if isinstance(step, Close):
            pipe.add_closed(seal_events(step.key, step.events, compress=False), now)
        elif isinstance(step, Expire):
            pipe.settle_expired(step.scheduled, spooled=False, loss=Loss.RETRY_DEADLINE, reason="r")
        now += 0.25
    expired = [(at, step.scheduled) for at, step in steps if isinstance(step, Expire)]
    assert [(at, scheduled.batch.event_ids) for at, scheduled in expired] == [
        (2.0, first.batch.event_ids),
        # The second batch, never answered 503 itself, was held too: past its own deadline
        # before the service's Retry-After, it was never sent.
        (4.25, ("id-3",)),
    ]
    assert not [step for _, step in steps if isinstance(step, Send)]


@pytest.mark.parametrize(
    "retry_after",
    [
        pytest.param("9" * 400, id="more-digits-than-a-float-holds"),
        pytest.param("Fri, 31 Dec 9999 23:59:59 GMT", id="far-future-date"),
    ],
)
def test_a_retry_after_holds_the_client_ten_minutes_at_most(retry_after: str) -> None:
    pipe = pipeline()
    offer(pipe, 3)
    close_and_add(pipe, 0.0)
    answer = interpret(503, {"retry-after": retry_after}, b"", 3, now_unix=0.0)
    pipe.settle(sending(pipe, 0.0), answer, 0.0)
    assert pipe.gate.not_before == MAX_RETRY_AFTER
    step = pipe.next_step(OPTIONS.retry_deadline)  # held past its deadline: given up
    assert isinstance(step, Expire)
    pipe.settle_expired(step.scheduled, spooled=False, loss=Loss.RETRY_DEADLINE, reason="r")
    offer(pipe, 3, now=MAX_RETRY_AFTER, start=3)
    later = close_and_add(pipe, MAX_RETRY_AFTER)
    assert sending(pipe, MAX_RETRY_AFTER) is later  # the gate opened again


def test_a_rejected_event_is_reported_with_its_id_and_never_retried() -> None:
    pipe = pipeline()
    offer(pipe, 3)
    close_and_add(pipe, 0.0)
    settlement = pipe.settle(sending(pipe, 0.0), Answered(0, ((1, "event.x: bad"),)), 0.0)
    assert settlement.failures == [Failure(FailureKind.REJECTED, ("id-1",), "event.x: bad")]
    counters = pipe.tally.snapshot(pipe.pending)
    assert (counters.delivered, counters.rejected, counters.pending) == (2, 1, 0)
    assert pipe.next_step(0.0) == Wait(None)


@pytest.mark.parametrize(
    "refused",
    [
        pytest.param(Refused("HTTP 400: invalid JSON"), id="400"),
        pytest.param(Refused("HTTP 401: a write key is required", key_refused=True), id="401"),
    ],
)
def test_a_refused_batch_is_reported_whole(refused: Refused) -> None:
    pipe = pipeline()
    offer(pipe, 2)
    pipe.request_flush()
    close_and_add(pipe, 0.0)
    settlement = pipe.settle(sending(pipe, 0.0), refused, 0.0)
    assert settlement.failures == [Failure(FailureKind.REJECTED, ("id-0", "id-1"), refused.reason)]
    counters = pipe.tally.snapshot(pipe.pending)
    assert (counters.rejected, counters.pending) == (2, 0)


def test_a_413_splits_the_batch_and_each_half_goes_on_its_own() -> None:
    pipe = pipeline()
    offer(pipe, 3)
    whole = close_and_add(pipe, 0.0)
    pipe.settle(sending(pipe, 0.0), Split("HTTP 413"), 0.0)
    step = pipe.next_step(0.0)
    assert step == SplitInTwo(whole)
    pipe.replace_split(whole, split(whole.batch))
    first = sending(pipe, 0.0)
    assert (first.batch.key, first.batch.event_ids) == ("key-0.1", ("id-0",))
    pipe.settle(first, Answered(0, ()), 0.0)
    second = sending(pipe, 0.0)
    assert (second.batch.key, second.batch.event_ids) == ("key-0.2", ("id-1", "id-2"))
    assert second.deadline == whole.deadline


@pytest.mark.parametrize(
    ("spooled", "loss", "counted"),
    [
        pytest.param(
            False,
            Loss.RETRY_DEADLINE,
            {"dropped": {"retry_deadline": 2}, "spooled": 0},
            id="dropped",
        ),
        pytest.param(
            False,
            Loss.SPOOL_FAILED,
            {"dropped": {"spool_failed": 2}, "spooled": 0},
            id="spool-failed",
        ),
        pytest.param(True, Loss.RETRY_DEADLINE, {"dropped": {}, "spooled": 2}, id="spooled"),
    ],
)
def test_a_batch_past_its_deadline_is_spooled_or_lost(
    spooled: bool, loss: Loss, counted: dict[str, Any]
) -> None:
    pipe = pipeline(Options(retry_deadline=5.0, max_batch_events=3, hostname=None))
    offer(pipe, 2)
    pipe.request_flush()
    scheduled = close_and_add(pipe, 0.0)
    pipe.settle(sending(pipe, 0.0), Retry("refused"), 0.0)
    assert pipe.next_step(4.9) != Expire(scheduled)
    step = pipe.next_step(5.0)
    assert step == Expire(scheduled)
    settlement = pipe.settle_expired(scheduled, spooled=spooled, loss=loss, reason="too late")
    counters = pipe.tally.snapshot(pipe.pending)
    assert {"dropped": counters.dropped, "spooled": counters.spooled} == counted
    assert counters.pending == 0
    lost = [] if spooled else [Failure(FailureKind.LOST, ("id-0", "id-1"), "too late")]
    assert settlement.failures == lost


def test_every_batch_is_tried_once_even_with_no_retry_time() -> None:
    pipe = pipeline(Options(retry_deadline=0.0, hostname=None))
    offer(pipe, 1)
    pipe.request_flush()
    scheduled = close_and_add(pipe, 0.0)
    pipe.settle(sending(pipe, 0.0), Retry("down"), 0.0)
    assert pipe.next_step(0.0) == Expire(scheduled)


def test_shutdown_refuses_new_events_and_hands_over_the_rest() -> None:
    pipe = pipeline()
    offer(pipe, 5)
    pipe.request_flush()
    in_flight = close_and_add(pipe, 0.0)
    sending(pipe, 0.0)
    target = pipe.begin_shutdown()
    assert pipe.offer("late", b"{}", 0.0) is Refusal.SHUT_DOWN
    leftovers = pipe.take_leftovers()
    assert leftovers.scheduled == [in_flight]
    assert [event.event_id for event in leftovers.events] == ["id-3", "id-4"]
    # The request in flight is answered after all: it was counted by shutdown already.
    assert pipe.settle(in_flight, Answered(0, ()), 0.0).failures == []
    pipe.settle_leftovers(spooled_events=3, lost_events=2)
    counters = pipe.tally.snapshot(pipe.pending)
    assert (counters.spooled, counters.dropped, counters.pending, counters.delivered) == (
        3,
        {"shut_down": 1, "shutdown": 2},
        0,
        0,
    )
    assert pipe.flushed(target)


def test_events_being_sealed_are_not_lost_at_shutdown() -> None:
    pipe = pipeline()
    offer(pipe, 2)
    pipe.request_flush()
    step = pipe.next_step(0.0)
    assert isinstance(step, Close)
    leftovers = pipe.take_leftovers()  # shutdown, while the sender seals them
    assert [event.event_id for event in leftovers.events] == ["id-0", "id-1"]


def test_events_that_cannot_be_sealed_are_lost_reported_and_released() -> None:
    pipe = pipeline(Options(max_queue_events=3, max_batch_events=3, hostname=None))
    offer(pipe, 3)
    step = pipe.next_step(0.0)
    assert isinstance(step, Close)
    settlement = pipe.seal_failed(step.events, "MemoryError")
    assert settlement.failures == [
        Failure(FailureKind.LOST, ("id-0", "id-1", "id-2"), "MemoryError")
    ]
    counters = pipe.tally.snapshot(pipe.pending)
    assert (counters.dropped, counters.pending) == ({"seal_failed": 3}, 0)
    offer(pipe, 3, start=3)  # the queue no longer holds them
    again = pipe.next_step(0.0)
    assert isinstance(again, Close) and again.key != step.key
    assert pipe.seal_failed(step.events, "late").failures == []  # settled once only


def test_events_being_sealed_when_shutdown_took_them_are_left_to_it() -> None:
    pipe = pipeline()
    offer(pipe, 2)
    pipe.request_flush()
    step = pipe.next_step(0.0)
    assert isinstance(step, Close)
    pipe.take_leftovers()
    assert pipe.seal_failed(step.events, "MemoryError").failures == []
    assert pipe.tally.snapshot(pipe.pending).dropped == {}


@pytest.mark.parametrize(
    ("from_spool", "lost", "given_back"),
    [pytest.param(False, 1, 0, id="tracked-here"), pytest.param(True, 0, 1, id="spooled")],
)
def test_a_batch_whose_halves_cannot_be_sealed_is_given_up(
    tmp_path: Path, from_spool: bool, lost: int, given_back: int
) -> None:
    pipe = pipeline()
    if from_spool:
        pipe.add_from_spool(spooled_batch(tmp_path / "old.batch", 3), 0.0)
        whole = pipe.ready[0]
    else:
        offer(pipe, 3)
        whole = close_and_add(pipe, 0.0)
    pipe.settle(sending(pipe, 0.0), Split("HTTP 413"), 0.0)
    assert pipe.next_step(0.0) == SplitInTwo(whole)
    settlement = pipe.split_failed(whole, "MemoryError")
    assert (len(settlement.failures), len(settlement.spool_give_back)) == (lost, given_back)
    assert pipe.next_step(0.0) == Wait(None)  # not split again, and again
    assert pipe.pending == 0


def spooled_batch(path: Path, count: int) -> SpooledBatch:
    ids = tuple(f"old-{n}" for n in range(count))
    return SpooledBatch(seal("old", ids, tuple(b"{}" for _ in ids), compress=False), path)


def test_a_spooled_batch_is_done_with_when_its_last_part_settles(tmp_path: Path) -> None:
    pipe = pipeline()
    spooled = spooled_batch(tmp_path / "old.batch", 3)
    pipe.add_from_spool(spooled, 0.0)
    whole = sending(pipe, 0.0)
    pipe.settle(whole, Split("HTTP 413"), 0.0)
    pipe.replace_split(whole, split(whole.batch))
    assert pipe.settle(sending(pipe, 0.0), Answered(0, ()), 0.0).spool_done == []
    assert pipe.settle(sending(pipe, 0.0), Answered(0, ()), 0.0).spool_done == [spooled]
    counters = pipe.tally.snapshot(pipe.pending)
    # Another process's events: delivered, but never pending in this one.
    assert (counters.delivered, counters.pending, pipe.settled) == (3, 0, 0)


def test_a_spooled_batch_past_its_deadline_is_given_back(tmp_path: Path) -> None:
    pipe = pipeline(Options(retry_deadline=1.0, hostname=None))
    spooled = spooled_batch(tmp_path / "old.batch", 2)
    pipe.add_from_spool(spooled, 0.0)
    pipe.settle(sending(pipe, 0.0), Retry("down"), 0.0)
    step = pipe.next_step(1.0)
    assert isinstance(step, Expire)
    settlement = pipe.settle_expired(
        step.scheduled, spooled=False, loss=Loss.RETRY_DEADLINE, reason="r"
    )
    assert (settlement.spool_give_back, settlement.failures) == ([spooled], [])
    assert pipe.tally.snapshot(0).dropped == {}


def test_a_spooled_batch_partly_given_up_stays_in_the_spool(tmp_path: Path) -> None:
    pipe = pipeline(Options(retry_deadline=1.0, hostname=None))
    spooled = spooled_batch(tmp_path / "old.batch", 3)
    pipe.add_from_spool(spooled, 0.0)
    whole = sending(pipe, 0.0)
    pipe.settle(whole, Split("HTTP 413"), 0.0)
    pipe.replace_split(whole, split(whole.batch))
    first = sending(pipe, 0.0)
    pipe.settle(first, Retry("HTTP 503"), 0.0)
    assert pipe.next_step(1.0) == Expire(first)
    expired = pipe.settle_expired(first, spooled=False, loss=Loss.RETRY_DEADLINE, reason="r")
    assert (expired.spool_done, expired.spool_give_back) == ([], [])
    delivered = pipe.settle(sending(pipe, 1.0), Answered(0, ()), 1.0)
    # The file is kept whole: its first part was never delivered.
    assert (delivered.spool_done, delivered.spool_give_back) == ([], [spooled])


@pytest.mark.parametrize(
    "refused",
    [
        pytest.param(Refused("HTTP 401: unknown write key", key_refused=True), id="401"),
        pytest.param(Refused("HTTP 403", key_refused=True), id="403"),
    ],
)
def test_a_spooled_batch_whose_write_key_is_refused_stays_in_the_spool(
    tmp_path: Path, refused: Refused
) -> None:
    pipe = pipeline()
    spooled = spooled_batch(tmp_path / "old.batch", 2)
    pipe.add_from_spool(spooled, 0.0)
    settlement = pipe.settle(sending(pipe, 0.0), refused, 0.0)
    assert (settlement.spool_done, settlement.spool_give_back) == ([], [spooled])
    assert settlement.failures == [
        Failure(FailureKind.KEPT_IN_SPOOL, ("old-0", "old-1"), refused.reason)
    ]
    assert settlement.spool_rest == OPTIONS.retry_deadline  # not taken again at once
    assert pipe.tally.snapshot(pipe.pending).rejected == 0
    assert pipe.next_step(0.0) == Wait(None)
