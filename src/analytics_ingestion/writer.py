"""Group commit: events of concurrent requests reach the database together.

Requests `submit` their decoded batch and wait. A fixed number of flush workers (one per
writer connection) each take what is queued, hand it to the sink as one transaction, and
answer every request in it once that transaction has committed. When a worker is idle, a
submission is flushed at once (no timer); while all are busy, the queue grows, so flushes get
larger exactly when the database is the bottleneck.

The queue is bounded: past `queue_max_events`, or after `queue_timeout` seconds without a
flush slot, a request is refused with `Overloaded` (503) and nothing of it is written. A
request is never split across flushes, so its events commit together or not at all.

No SQL here: the sink (the store) does the writing; tests pass a fake one and a fake clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from analytics_ingestion.errors import (
    DatabaseUnavailable,
    Overloaded,
    ShuttingDown,
    Unavailable,
    WriteFailed,
)
from analytics_ingestion.metrics import Metrics
from analytics_ingestion.wire import Batch, DeadLetter, Rejection

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WriteOutcome:
    """What the sink did with a flush, by position in its rows; every other row was stored."""

    duplicates: frozenset[int] = frozenset()
    failed: Mapping[int, str] = field(default_factory=dict)


class Sink(Protocol):
    async def write(
        self,
        rows: Sequence[bytes],
        dead_letters: Sequence[DeadLetter],
        row_indexes: Sequence[int],
    ) -> WriteOutcome:
        """Store rows (COPY tuples, see rows.py) and dead letters in one transaction. Raises
        `Unavailable` if it can't. `row_indexes` are the rows' positions in their requests
        (for dead letters)."""

    async def ping(self) -> None:
        """Return if the database answers; raise otherwise."""


@dataclass(frozen=True)
class Delivery:
    """The answer to one submission, given once its flush committed."""

    accepted: int
    duplicates: int
    rejections: list[Rejection]


@dataclass(frozen=True)
class FlushPolicy:
    """When a flush starts and what it takes.

    A flush starts when `max_events` are waiting or the oldest waiting submission is `linger`
    seconds old (0: at once, as soon as a worker is free). It takes whole submissions in
    arrival order up to `max_events`, and always at least one, however large.
    """

    max_events: int = 5_000
    linger: float = 0.0

    def wait_time(self, queued_events: int, oldest_age: float) -> float:
        """Seconds until a flush should start; 0 or less means now."""
        if queued_events >= self.max_events:
            return 0.0
        return self.linger - oldest_age

    def fits(self, taken_events: int, next_events: int) -> bool:
        return taken_events == 0 or taken_events + next_events <= self.max_events


@dataclass(eq=False)
class _Submission:
    batch: Batch
    future: asyncio.Future[Delivery]
    enqueued_at: float
    taken: bool = False

    @property
    def size(self) -> int:
        return len(self.batch.tuples) + len(self.batch.dead_letters)


class Writer:
    def __init__(
        self,
        sink: Sink,
        policy: FlushPolicy,
        *,
        queue_max_events: int,
        connections: int,
        queue_timeout: float,
        write_timeout: float = 30.0,
        probe_interval: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
    ) -> None:
        self._sink = sink
        self._policy = policy
        self._queue_max_events = queue_max_events
        self._connections = connections
        self._queue_timeout = queue_timeout
        self._write_timeout = write_timeout
        self._probe_interval = probe_interval
        self._clock = clock
        self._queue: deque[_Submission] = deque()
        self._queued_events = 0
        self._in_flight: set[_Submission] = set()
        self._wakeup = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._probe: asyncio.Task[None] | None = None
        self._closing = False
        self._unavailable: str | None = None
        self._metrics = metrics or Metrics()

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._workers = [
            asyncio.create_task(self._work(), name=f"flush-worker-{n}")
            for n in range(self._connections)
        ]

    async def close(self, timeout: float) -> None:  # noqa: ASYNC109 (a drain deadline)
        """Stop taking submissions, flush what is queued for up to `timeout` seconds, then
        answer whatever is left with `ShuttingDown`."""
        self._closing = True
        self._wakeup.set()
        unfinished: set[asyncio.Task[None]] = set()
        if self._workers:
            _, unfinished = await asyncio.wait(self._workers, timeout=timeout)
        left = [*self._queue, *self._in_flight]
        for task in [*unfinished, self._probe]:
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._queue.clear()
        self._queued_events = 0
        self._fail(left, ShuttingDown("the service shut down before these events were written"))

    def problem(self) -> str | None:
        """Why the writer cannot take events now, or None when it can."""
        if self._closing:
            return "shutting down"
        if self._unavailable is not None:
            return f"database unavailable: {self._unavailable}"
        if any(task.done() for task in self._workers):
            return "a flush worker stopped"
        return None

    @property
    def queued_events(self) -> int:
        return self._queued_events

    # --- submitting --------------------------------------------------------------------------

    async def submit(self, batch: Batch) -> Delivery:
        """Queue a batch and return once it is committed. Raises `Unavailable` (503)."""
        if self._closing:
            raise ShuttingDown("the service is shutting down")
        if self._unavailable is not None:
            raise DatabaseUnavailable(f"database unavailable: {self._unavailable}")
        submission = _Submission(batch, asyncio.get_running_loop().create_future(), self._clock())
        if submission.size == 0:
            return Delivery(0, 0, [])
        if self._queued_events and self._queued_events + submission.size > self._queue_max_events:
            raise Overloaded(
                f"the write queue is full ({self._queued_events} events waiting, "
                f"limit {self._queue_max_events}: QUEUE_MAX_EVENTS)"
            )
        self._queue.append(submission)
        self._queued_events += submission.size
        self._wakeup.set()
        try:
            return await asyncio.wait_for(asyncio.shield(submission.future), self._queue_timeout)
        except TimeoutError:
            pass
        if submission.future.done():  # resolved in the same loop iteration as the timeout
            return submission.future.result()
        if submission.taken:
            # Its flush has begun; the store bounds it, and this bounds the wait regardless.
            try:
                return await asyncio.wait_for(
                    asyncio.shield(submission.future), self._write_timeout
                )
            except TimeoutError:
                raise DatabaseUnavailable(
                    f"the write did not finish within {self._write_timeout:g} s"
                ) from None
        self._queue.remove(submission)
        self._queued_events -= submission.size
        raise Overloaded(f"no write slot within {self._queue_timeout:g} s (QUEUE_TIMEOUT_SECONDS)")

    # --- flushing ----------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            submissions = await self._next_flush()
            if submissions is None:
                return
            await self._flush(submissions)

    async def _next_flush(self) -> list[_Submission] | None:
        while True:
            wait: float | None = None
            if self._queue:
                oldest_age = self._clock() - self._queue[0].enqueued_at
                wait = (
                    0.0
                    if self._closing
                    else self._policy.wait_time(self._queued_events, oldest_age)
                )
                if wait <= 0:
                    return self._take()
            elif self._closing:
                return None
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), wait)

    def _take(self) -> list[_Submission]:
        taken: list[_Submission] = []
        events = 0
        while self._queue and self._policy.fits(events, self._queue[0].size):
            submission = self._queue.popleft()
            submission.taken = True
            events += submission.size
            taken.append(submission)
        self._queued_events -= events
        self._in_flight.update(taken)
        if self._queue:
            self._wakeup.set()  # more is waiting: let another idle worker take it
        return taken

    async def _flush(self, submissions: list[_Submission]) -> None:
        rows: list[bytes] = []
        row_indexes: list[int] = []
        dead_letters: list[DeadLetter] = []
        for submission in submissions:
            rows.extend(submission.batch.tuples)
            row_indexes.extend(submission.batch.row_indexes)
            dead_letters.extend(submission.batch.dead_letters)
        started = self._clock()
        try:
            outcome = await self._sink.write(rows, dead_letters, row_indexes)
        except DatabaseUnavailable as error:
            self._metrics.add("analytics_database_errors_total", kind="unavailable")
            self._mark_unavailable(error.message)
            self._fail(submissions, DatabaseUnavailable(f"database unavailable: {error.message}"))
        except Unavailable as error:  # this flush failed; the database is still there
            self._metrics.add("analytics_database_errors_total", kind="refused")
            self._fail(submissions, error)
        except Exception as error:
            self._metrics.add("analytics_database_errors_total", kind="unexpected")
            log.exception("flush of %d events failed: %s", len(rows), error)
            self._fail(submissions, WriteFailed("the write failed unexpectedly (see the log)"))
        else:
            size = len(rows) + len(dead_letters)
            self._metrics.add("analytics_flushes_total")
            self._metrics.add("analytics_flushed_rows_total", size)
            self._metrics.observe("analytics_flush_events", size)
            self._metrics.observe("analytics_flush_seconds", self._clock() - started)
            self._deliver(submissions, outcome)
        finally:
            self._in_flight.difference_update(submissions)

    def _deliver(self, submissions: list[_Submission], outcome: WriteOutcome) -> None:
        start = 0
        for submission in submissions:
            rows = submission.batch.tuples
            end = start + len(rows)
            duplicates = 0
            rejections: list[Rejection] = []
            if outcome.duplicates or outcome.failed:
                for position in range(start, end):
                    if position in outcome.duplicates:
                        duplicates += 1
                    elif position in outcome.failed:
                        index = submission.batch.row_indexes[position - start]
                        rejections.append(Rejection(index, outcome.failed[position]))
            accepted = len(rows) - duplicates - len(rejections)
            if not submission.future.done():
                submission.future.set_result(Delivery(accepted, duplicates, rejections))
            start = end

    @staticmethod
    def _fail(submissions: list[_Submission], error: Exception) -> None:
        for submission in submissions:
            if not submission.future.done():
                submission.future.set_exception(error)
                # Mark retrieved: a request that went away must not log "never retrieved".
                submission.future.exception()

    # --- when the database is away -----------------------------------------------------------

    def _mark_unavailable(self, reason: str) -> None:
        self._unavailable = reason
        waiting = list(self._queue)
        self._queue.clear()
        self._queued_events = 0
        self._fail(waiting, DatabaseUnavailable(f"database unavailable: {reason}"))
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._wait_for_database(), name="database-probe")

    async def _wait_for_database(self) -> None:
        while self._unavailable is not None and not self._closing:
            await asyncio.sleep(self._probe_interval)
            try:
                await self._sink.ping()
            except Exception as error:
                self._unavailable = str(error) or type(error).__name__
            else:
                log.info("database is reachable again; accepting writes")
                self._unavailable = None
