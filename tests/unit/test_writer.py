from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from analytics_ingestion import rows as copy_rows
from analytics_ingestion.errors import DatabaseUnavailable, Overloaded, ShuttingDown, WriteFailed
from analytics_ingestion.rows import EventRow
from analytics_ingestion.wire import Batch, DeadLetter
from analytics_ingestion.writer import FlushPolicy, WriteOutcome, Writer

NOW = datetime(2026, 11, 26, tzinfo=UTC)


def rows(count: int) -> Batch:
    batch = Batch(received=count)
    for index in range(count):
        row = EventRow(NOW, "t", "unknown", None, b"{}", str(uuid.uuid4()), NOW, None, None)
        batch.tuples.append(copy_rows.encode(row))
        batch.row_indexes.append(index)
    return batch


class FakeSink:
    """Records flushes; can be held, failed, or made to report duplicates."""

    def __init__(self) -> None:
        self.flushes: list[int] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.error: Exception | None = None
        self.ping_error: Exception | None = None
        self.outcomes: list[WriteOutcome] = []

    async def write(
        self,
        rows: Sequence[bytes],
        dead_letters: Sequence[DeadLetter],
        row_indexes: Sequence[int],
    ) -> WriteOutcome:
        await self.gate.wait()
        if self.error is not None:
            raise self.error
        self.flushes.append(len(rows) + len(dead_letters))
        return self.outcomes.pop(0) if self.outcomes else WriteOutcome()

    async def ping(self) -> None:
        if self.ping_error is not None:
            raise self.ping_error


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- the policy alone ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "queued", "age", "ready"),
    [
        pytest.param(FlushPolicy(100, 0.0), 1, 0.0, True, id="no-linger-flushes-at-once"),
        pytest.param(FlushPolicy(100, 0.5), 1, 0.1, False, id="lingers"),
        pytest.param(FlushPolicy(100, 0.5), 1, 0.5, True, id="linger-elapsed"),
        pytest.param(FlushPolicy(100, 0.5), 100, 0.0, True, id="full-before-linger"),
    ],
)
def test_policy_wait_time(policy: FlushPolicy, queued: int, age: float, ready: bool) -> None:
    assert (policy.wait_time(queued, age) <= 0) is ready


def test_policy_takes_whole_submissions_and_at_least_one() -> None:
    policy = FlushPolicy(max_events=100)
    assert policy.fits(0, 5000)
    assert policy.fits(60, 40)
    assert not policy.fits(60, 41)


# --- the writer ------------------------------------------------------------------------------


def make_writer(sink: FakeSink, **options: object) -> Writer:
    settings: dict[str, object] = {
        "queue_max_events": 1000,
        "connections": 1,
        "queue_timeout": 5.0,
        "probe_interval": 0.01,
    }
    settings.update(options)
    policy = settings.pop("policy", FlushPolicy(max_events=100))
    writer = Writer(sink, policy, **settings)  # type: ignore[arg-type]
    writer.start()
    return writer


async def test_answers_after_the_flush() -> None:
    sink = FakeSink()
    writer = make_writer(sink)
    delivery = await writer.submit(rows(3))
    assert (delivery.accepted, delivery.duplicates, delivery.rejections) == (3, 0, [])
    assert sink.flushes == [3]
    await writer.close(1)


async def test_batches_grow_while_a_flush_is_in_flight() -> None:
    sink = FakeSink()
    sink.gate.clear()
    writer = make_writer(sink)
    first = asyncio.create_task(writer.submit(rows(1)))
    await asyncio.sleep(0)
    others = [asyncio.create_task(writer.submit(rows(10))) for _ in range(5)]
    await asyncio.sleep(0)
    sink.gate.set()
    await asyncio.gather(first, *others)
    assert sink.flushes == [1, 50]
    await writer.close(1)


async def test_a_flush_never_splits_a_submission_and_respects_the_size() -> None:
    sink = FakeSink()
    sink.gate.clear()
    writer = make_writer(sink, policy=FlushPolicy(max_events=25))
    tasks = [asyncio.create_task(writer.submit(rows(n))) for n in (40, 10, 10, 10)]
    await asyncio.sleep(0)
    sink.gate.set()
    await asyncio.gather(*tasks)
    assert sink.flushes == [40, 20, 10]
    await writer.close(1)


async def test_linger_waits_for_the_clock() -> None:
    sink = FakeSink()
    clock = FakeClock()
    writer = make_writer(sink, policy=FlushPolicy(max_events=100, linger=0.05), clock=clock)
    task = asyncio.create_task(writer.submit(rows(2)))
    await asyncio.sleep(0.02)
    assert sink.flushes == []  # the fake clock has not moved
    clock.now += 0.1
    await asyncio.wait_for(task, 1)
    assert sink.flushes == [2]
    await writer.close(1)


async def test_full_queue_is_refused() -> None:
    sink = FakeSink()
    sink.gate.clear()
    writer = make_writer(sink, queue_max_events=20)
    held = asyncio.create_task(writer.submit(rows(5)))
    await asyncio.sleep(0.01)  # the worker has taken it and is blocked in the sink
    queued = asyncio.create_task(writer.submit(rows(15)))
    await asyncio.sleep(0)
    with pytest.raises(Overloaded, match="QUEUE_MAX_EVENTS"):
        await writer.submit(rows(6))
    sink.gate.set()
    await asyncio.gather(held, queued)
    await writer.close(1)


async def test_a_large_batch_is_taken_when_the_queue_is_empty() -> None:
    sink = FakeSink()
    writer = make_writer(sink, queue_max_events=10)
    assert (await writer.submit(rows(50))).accepted == 50
    await writer.close(1)


async def test_waiting_too_long_in_the_queue_is_refused_and_not_written() -> None:
    sink = FakeSink()
    sink.gate.clear()
    writer = make_writer(sink, queue_timeout=0.05)
    held = asyncio.create_task(writer.submit(rows(1)))
    await asyncio.sleep(0.01)  # the worker has taken it and is blocked in the sink
    with pytest.raises(Overloaded, match="QUEUE_TIMEOUT_SECONDS"):
        await writer.submit(rows(2))
    assert writer.queued_events == 0
    sink.gate.set()
    assert (await held).accepted == 1  # its flush had begun, so it waited for the outcome
    await writer.close(1)
    assert sink.flushes == [1]


async def test_database_loss_fails_fast_and_recovers() -> None:
    sink = FakeSink()
    writer = make_writer(sink)
    sink.error = DatabaseUnavailable("connection refused")
    sink.ping_error = OSError("connection refused")
    with pytest.raises(DatabaseUnavailable):
        await writer.submit(rows(1))
    assert writer.problem() == "database unavailable: connection refused"
    with pytest.raises(DatabaseUnavailable):
        await writer.submit(rows(1))  # refused at once, without a write
    sink.error = sink.ping_error = None
    for _ in range(100):
        if writer.problem() is None:
            break
        await asyncio.sleep(0.01)
    assert writer.problem() is None
    assert (await writer.submit(rows(1))).accepted == 1
    await writer.close(1)


async def test_outcome_is_split_between_submissions() -> None:
    sink = FakeSink()
    sink.gate.clear()
    writer = make_writer(sink)
    first = asyncio.create_task(writer.submit(rows(3)))
    await asyncio.sleep(0.01)
    second, third = (asyncio.create_task(writer.submit(rows(3))) for _ in range(2))
    await asyncio.sleep(0.01)
    # The second flush holds submissions two and three: positions 0-2 and 3-5.
    sink.outcomes = [WriteOutcome(), WriteOutcome(frozenset({0, 4}), {5: "refused"})]
    sink.gate.set()
    assert (await first).accepted == 3
    two, three = await second, await third
    assert (two.accepted, two.duplicates) == (2, 1)
    assert (three.accepted, three.duplicates) == (1, 1)
    assert [(r.index, r.error) for r in three.rejections] == [(2, "refused")]
    await writer.close(1)


async def test_close_flushes_what_is_queued_then_refuses() -> None:
    sink = FakeSink()
    sink.gate.clear()
    writer = make_writer(sink)
    tasks = [asyncio.create_task(writer.submit(rows(2))) for _ in range(3)]
    await asyncio.sleep(0)
    closing = asyncio.create_task(writer.close(5))
    await asyncio.sleep(0)
    with pytest.raises(ShuttingDown):
        await writer.submit(rows(1))
    sink.gate.set()
    await closing
    assert [t.result().accepted for t in tasks] == [2, 2, 2]


async def test_close_answers_everything_by_its_deadline() -> None:
    sink = FakeSink()
    sink.gate.clear()  # the database hangs
    writer = make_writer(sink)
    task = asyncio.create_task(writer.submit(rows(2)))
    await asyncio.sleep(0)
    await writer.close(0.05)
    with pytest.raises(ShuttingDown):
        await task


async def test_a_refused_write_fails_its_flush_only() -> None:
    sink = FakeSink()
    writer = make_writer(sink)
    sink.error = WriteFailed("the database refused the write (UndefinedTableError, 42P01)")
    with pytest.raises(WriteFailed):
        await writer.submit(rows(1))
    assert writer.problem() is None  # the database is still there: no fast refusals
    sink.error = None
    assert (await writer.submit(rows(1))).accepted == 1
    await writer.close(1)
