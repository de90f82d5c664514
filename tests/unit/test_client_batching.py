"""The queue's bounds, the batch-closing policy, and sealed batches."""

from __future__ import annotations

import gzip
import json

import pytest

from analytics_client.batching import (
    BatchPolicy,
    EventQueue,
    QueuedEvent,
    in_batches,
    seal,
    seal_events,
    split,
)
from analytics_client.results import Refusal


def event(number: int, size: int = 10, at: float = 0.0) -> QueuedEvent:
    payload = json.dumps({"n": number, "pad": "x" * max(0, size - 20)}).encode()
    return QueuedEvent(f"id-{number}", payload, at)


def sized(number: int, size: int) -> QueuedEvent:
    """An event whose JSON is exactly `size` bytes."""
    payload = b'{"p":"' + b"x" * (size - 8) + b'"}'
    assert len(payload) == size
    return QueuedEvent(f"id-{number}", payload, 0.0)


@pytest.mark.parametrize(
    ("max_events", "max_bytes", "sizes", "refusal"),
    [
        pytest.param(2, 1000, [10, 10, 10], Refusal.QUEUE_FULL_EVENTS, id="by-events"),
        pytest.param(10, 25, [10, 10, 10], Refusal.QUEUE_FULL_BYTES, id="by-bytes"),
        pytest.param(3, 30, [10, 10, 10], None, id="exactly-full"),
    ],
)
def test_the_queue_refuses_past_either_bound(
    max_events: int, max_bytes: int, sizes: list[int], refusal: Refusal | None
) -> None:
    queue = EventQueue(max_events, max_bytes)
    for number, size in enumerate(sizes[:-1]):
        assert queue.offer(sized(number, size)) is None
    assert queue.offer(sized(99, sizes[-1])) is refusal
    assert queue.held_events == len(sizes) - (refusal is not None)


def test_taken_events_count_against_the_bounds_until_released() -> None:
    queue = EventQueue(2, 1000)
    queue.offer(sized(1, 10))
    queue.offer(sized(2, 10))
    assert len(queue.take(10, 1000)) == 2
    assert queue.offer(sized(3, 10)) is Refusal.QUEUE_FULL_EVENTS  # in flight, still held
    queue.release(2, 20)
    assert queue.offer(sized(3, 10)) is None


@pytest.mark.parametrize(
    ("sizes", "max_events", "max_body_bytes", "taken"),
    [
        pytest.param([10, 10, 10], 2, 1000, 2, id="by-count"),
        pytest.param([10, 10, 10], 10, 2 + 10 + 1 + 10, 2, id="by-bytes-exactly"),
        pytest.param([10, 10, 10], 10, 2 + 10 + 1 + 10 - 1, 1, id="by-bytes-one-short"),
        pytest.param([50, 10], 10, 20, 1, id="one-even-if-too-large"),
        pytest.param([], 10, 100, 0, id="empty"),
    ],
)
def test_take_fills_one_body_in_order(
    sizes: list[int], max_events: int, max_body_bytes: int, taken: int
) -> None:
    queue = EventQueue(100, 10_000)
    for number, size in enumerate(sizes):
        queue.offer(sized(number, size))
    batch = queue.take(max_events, max_body_bytes)
    assert [e.event_id for e in batch] == [f"id-{n}" for n in range(taken)]
    assert queue.waiting_events == len(sizes) - taken
    assert queue.waiting_bytes == sum(sizes[taken:])


def test_in_batches_cuts_in_order_within_the_limits() -> None:
    events = [sized(n, 10) for n in range(5)]
    cut = in_batches(events, 2, 1000)
    assert [[e.event_id for e in batch] for batch in cut] == [
        ["id-0", "id-1"],
        ["id-2", "id-3"],
        ["id-4"],
    ]


POLICY = BatchPolicy(max_events=3, max_bytes=100, max_age=1.0)


@pytest.mark.parametrize(
    ("waiting", "waiting_bytes", "age", "wait"),
    [
        pytest.param(0, 0, 0.0, None, id="nothing-waits"),
        pytest.param(1, 10, 0.0, 1.0, id="young"),
        pytest.param(1, 10, 0.75, 0.25, id="older"),
        pytest.param(1, 10, 1.0, 0.0, id="old-enough"),
        pytest.param(1, 10, 5.0, 0.0, id="overdue"),
        pytest.param(3, 30, 0.0, 0.0, id="enough-events"),
        pytest.param(2, 97, 0.0, 0.0, id="enough-bytes-with-separators"),
        pytest.param(2, 96, 0.0, 1.0, id="one-byte-short"),
    ],
)
def test_the_policy_closes_by_count_bytes_or_age(
    waiting: int, waiting_bytes: int, age: float, wait: float | None
) -> None:
    assert POLICY.wait_time(waiting, waiting_bytes, age) == wait


def test_a_sealed_batch_is_the_json_array_compressed_once() -> None:
    events = [event(1), event(2)]
    batch = seal_events("key", events, compress=True)
    assert json.loads(gzip.decompress(batch.body)) == [json.loads(e.payload) for e in events]
    assert batch.event_ids == ("id-1", "id-2")
    again = seal_events("key", events, compress=True)
    assert again.body == batch.body  # the same events give the same bytes (after a restart too)


def test_an_uncompressed_batch_is_the_array_itself() -> None:
    batch = seal_events("key", [event(1), event(2)], compress=False)
    assert batch.body == b"[" + event(1).payload + b"," + event(2).payload + b"]"


@pytest.mark.parametrize(
    ("count", "first", "second"),
    [
        pytest.param(2, ["id-0"], ["id-1"], id="two"),
        pytest.param(5, ["id-0", "id-1"], ["id-2", "id-3", "id-4"], id="odd"),
    ],
)
def test_split_gives_two_halves_with_keys_of_their_own(
    count: int, first: list[str], second: list[str]
) -> None:
    batch = seal_events("key", [event(n) for n in range(count)], compress=True)
    left, right = split(batch)
    assert (list(left.event_ids), list(right.event_ids)) == (first, second)
    assert (left.key, right.key) == ("key.1", "key.2")
    assert json.loads(gzip.decompress(left.body)) == [json.loads(p) for p in left.payloads]
    assert left.compressed and right.compressed


def test_a_single_event_cannot_be_split() -> None:
    with pytest.raises(ValueError, match="one event"):
        split(seal("key", ("id",), (b"{}",), compress=False))
