"""The sender's state: what to do next, and what each answer changes.

Shared by the threaded and the asyncio client, which differ only in how they wait and how
they send; this module does neither (no threads, no I/O, the time passed in). It is not
thread-safe: the clients call it holding their lock, and do the slow work (sealing a batch,
the request, the spool) between calls, without it.

One batch is in flight at a time, the oldest: batches are settled in the order their events
were tracked, so "every event accepted before the flush is settled" is a count. Closed
batches wait in `ready`; a batch answered 413 is replaced there by its two halves.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from analytics_client.batching import (
    BatchPolicy,
    ClosedBatch,
    EventQueue,
    QueuedEvent,
    payload_bytes,
)
from analytics_client.options import Options
from analytics_client.outcome import Answered, Outcome, Refused, Retry, Split
from analytics_client.reporting import Tally
from analytics_client.results import Failure, FailureKind, FlushReport, Loss, Refusal
from analytics_client.retry import Backoff, Draw, Gate
from analytics_client.spool import SpooledBatch


@dataclass(eq=False)
class Scheduled:
    """A closed batch with its retry state."""

    batch: ClosedBatch
    deadline: float  # monotonic: past it the batch is given up (spooled or dropped)
    spooled: SpooledBatch | None = None  # the spool file it came from
    attempts: int = 0
    not_before: float = -math.inf
    needs_split: bool = False
    last_error: str = ""


@dataclass(frozen=True)
class Send:
    scheduled: Scheduled


@dataclass(frozen=True)
class Close:
    """Seal these events into a batch (outside the lock), then `add_closed` it."""

    events: list[QueuedEvent]
    key: str


@dataclass(frozen=True)
class SplitInTwo:
    """Seal the halves of this batch (outside the lock), then `replace_split` it."""

    scheduled: Scheduled


@dataclass(frozen=True)
class Expire:
    """Past its retry deadline: spool it or drop it (outside the lock), then `settle_expired`."""

    scheduled: Scheduled


@dataclass(frozen=True)
class LoadFromSpool:
    """Take the oldest spooled batch (outside the lock), then `add_from_spool` it."""


@dataclass(frozen=True)
class Wait:
    """Nothing to do for `seconds` (None: until woken)."""

    seconds: float | None


Step = Send | Close | SplitInTwo | Expire | LoadFromSpool | Wait


@dataclass
class Settlement:
    """What the clients do once the lock is released."""

    failures: list[Failure] = field(default_factory=list)
    spool_done: list[SpooledBatch] = field(default_factory=list)  # remove these files
    spool_give_back: list[SpooledBatch] = field(default_factory=list)  # send these later
    spool_rest: float = 0.0  # and leave the spool alone this long (at least the scan interval)


@dataclass(frozen=True)
class Leftovers:
    """What shutdown found undelivered when its time ran out."""

    scheduled: list[Scheduled]
    events: list[QueuedEvent]


class Pipeline:
    def __init__(self, options: Options, *, new_key: Callable[[], str], draw: Draw) -> None:
        self.options = options
        self.queue = EventQueue(options.max_queue_events, options.max_queue_bytes)
        self.policy = BatchPolicy(
            options.max_batch_events, options.max_batch_bytes, options.flush_interval
        )
        self.backoff = Backoff(options.backoff_base, options.backoff_cap)
        self.gate = Gate()
        self.tally = Tally()
        self.ready: deque[Scheduled] = deque()
        self._new_key = new_key
        self._draw = draw
        # Counted in events of this process, in the order they were accepted.
        self.accepted = 0
        self.taken = 0  # out of the queue, into batches
        self.settled = 0  # delivered, rejected, spooled or lost
        self.flush_target = 0
        self.shutting_down = False
        self.closing: list[QueuedEvent] = []  # taken, being sealed
        self.expiring: Scheduled | None = None  # being spooled
        # Spool files of which a part was given up: kept when their last part settles.
        self._spool_files_kept: set[Path] = set()

    # --- track --------------------------------------------------------------------------

    def offer(self, event_id: str, payload: bytes, now: float) -> Refusal | None:
        refusal = (
            Refusal.SHUT_DOWN
            if self.shutting_down
            else self.queue.offer(QueuedEvent(event_id, payload, now))
        )
        if refusal is not None:
            self.tally.dropped[refusal] += 1
            return refusal
        self.accepted += 1
        self.tally.tracked += 1
        return None

    def count_refusal(self, refusal: Refusal) -> None:
        self.tally.dropped[refusal] += 1

    def sender_wanted(self) -> bool:
        """After an offer: whether to wake the sender, which otherwise sleeps until the oldest
        event is due."""
        waiting = self.queue.waiting_events
        return waiting == 1 or self.policy.wait_time(waiting, self.queue.waiting_bytes, 0.0) == 0

    # --- flush and shutdown -------------------------------------------------------------

    @property
    def pending(self) -> int:
        return self.accepted - self.settled

    def request_flush(self) -> int:
        """Close batches now, until every event accepted so far is taken; the target to wait
        for with `flushed`."""
        self.flush_target = max(self.flush_target, self.accepted)
        return self.accepted

    def flushed(self, target: int) -> bool:
        return self.settled >= target

    def begin_shutdown(self) -> int:
        self.shutting_down = True
        return self.request_flush()

    def report_since(self, before: FlushReport) -> FlushReport:
        now = self.totals()
        return FlushReport(
            delivered=now.delivered - before.delivered,
            rejected=now.rejected - before.rejected,
            lost=now.lost - before.lost,
            spooled=now.spooled - before.spooled,
            pending=self.pending,
        )

    def totals(self) -> FlushReport:
        """The counters as a report since the start; `report_since` takes differences."""
        tally = self.tally
        lost = sum(tally.dropped[loss] for loss in Loss)
        return FlushReport(tally.delivered, tally.rejected, lost, tally.spooled, self.pending)

    def take_leftovers(self) -> Leftovers:
        """Everything not settled, for shutdown to spool or count as lost."""
        scheduled = list(self.ready)
        self.ready.clear()
        if self.expiring is not None:
            scheduled.append(self.expiring)
            self.expiring = None
        events = [*self.closing, *self.queue.clear()]
        self.closing = []
        return Leftovers(scheduled, events)

    # --- the sender ---------------------------------------------------------------------

    def next_step(self, now: float, *, spool_waiting: bool = False) -> Step:
        """`spool_waiting`: the spool may hold batches. Being older than anything queued, they
        go first."""
        if not self.ready and spool_waiting and not self.shutting_down:
            return LoadFromSpool()
        if self.ready:
            head = self.ready[0]
            if head.needs_split:
                return SplitInTwo(head)
            start_at = max(head.not_before, self.gate.not_before)
            # Every batch is tried at least once, unless the gate holds it past its deadline.
            if now >= head.deadline and (head.attempts or start_at > now):
                self.ready.popleft()
                self.expiring = head
                return Expire(head)
            if now >= start_at:
                return Send(head)
            return Wait(min(start_at, head.deadline) - now)
        waiting = self.queue.waiting_events
        if waiting:
            oldest = self.queue.oldest_enqueued_at()
            assert oldest is not None
            wait = (
                0.0
                if self.taken < self.flush_target
                else self.policy.wait_time(waiting, self.queue.waiting_bytes, now - oldest)
            )
            if not wait:
                events = self.queue.take(
                    self.options.max_batch_events, self.options.max_batch_bytes
                )
                self.taken += len(events)
                self.closing = events
                return Close(events, self._new_key())
            return Wait(wait)
        return Wait(None)

    def add_closed(self, batch: ClosedBatch, now: float) -> None:
        self.closing = []
        self.ready.append(Scheduled(batch, deadline=now + self.options.retry_deadline))

    def add_from_spool(self, spooled: SpooledBatch, now: float) -> None:
        deadline = now + self.options.retry_deadline
        self.ready.append(Scheduled(spooled.batch, deadline=deadline, spooled=spooled))

    def replace_split(self, scheduled: Scheduled, halves: tuple[ClosedBatch, ClosedBatch]) -> None:
        if not self.ready or self.ready[0] is not scheduled:
            return  # taken by shutdown meanwhile
        self.ready.popleft()
        for half in reversed(halves):
            self.ready.appendleft(Scheduled(half, scheduled.deadline, scheduled.spooled))

    def settle(self, scheduled: Scheduled, outcome: Outcome, now: float) -> Settlement:
        """Apply the answer to the batch at the head of `ready`."""
        settlement = Settlement()
        if not self.ready or self.ready[0] is not scheduled:
            return settlement  # taken by shutdown meanwhile: it is spooled or counted there
        batch = scheduled.batch
        self.tally.requests += 1
        if scheduled.attempts:
            self.tally.retries += 1
        scheduled.attempts += 1
        if isinstance(outcome, Retry):
            delay = self.backoff.delay_after(scheduled.attempts, outcome.retry_after, self._draw)
            scheduled.not_before = now + delay
            scheduled.last_error = outcome.reason
            if outcome.retry_after is not None:
                self.gate.hold_until(now + outcome.retry_after)
            return settlement
        if isinstance(outcome, Split):
            scheduled.needs_split = True
            return settlement
        self.ready.popleft()
        if isinstance(outcome, Refused) and outcome.key_refused and scheduled.spooled is not None:
            # A write key refused says nothing of the events: a wrong key deployed must not
            # empty the spool. The file stays for a later attempt, or a client with another key.
            settlement.failures = [
                Failure(FailureKind.KEPT_IN_SPOOL, batch.event_ids, outcome.reason)
            ]
            settlement.spool_rest = self.options.retry_deadline
            self._release(scheduled, settlement, file_done=False)
            return settlement
        if isinstance(outcome, Answered):
            rejected = len(outcome.rejections)
            delivered = len(batch) - rejected
            self.tally.delivered += delivered
            self.tally.duplicates += min(outcome.duplicates, delivered)
            self.tally.rejected += rejected
            settlement.failures = [
                Failure(FailureKind.REJECTED, (batch.event_ids[index],), reason)
                for index, reason in outcome.rejections
            ]
        elif isinstance(outcome, Refused):
            self.tally.rejected += len(batch)
            settlement.failures = [Failure(FailureKind.REJECTED, batch.event_ids, outcome.reason)]
        self._release(scheduled, settlement)
        return settlement

    def settle_expired(
        self, scheduled: Scheduled, *, spooled: bool, loss: Loss, reason: str
    ) -> Settlement:
        if self.expiring is not scheduled:
            return Settlement()
        self.expiring = None
        return self._give_up(scheduled, spooled=spooled, loss=loss, reason=reason)

    def seal_failed(self, events: list[QueuedEvent], reason: str) -> Settlement:
        """The events of a `Close` could not be sealed (out of memory...): lost, counted and
        reported. Not queued again, where they might fail again and again."""
        settlement = Settlement()
        if self.closing is not events:
            return settlement  # taken by shutdown meanwhile
        self.closing = []
        self.queue.release(len(events), payload_bytes(events))
        self.settled += len(events)
        self.tally.dropped[Loss.SEAL_FAILED] += len(events)
        event_ids = tuple(event.event_id for event in events)
        settlement.failures = [Failure(FailureKind.LOST, event_ids, reason)]
        return settlement

    def split_failed(self, scheduled: Scheduled, reason: str) -> Settlement:
        """The halves of a `SplitInTwo` could not be sealed: the batch is given up (a spooled
        one given back), not split again and again."""
        if not self.ready or self.ready[0] is not scheduled:
            return Settlement()
        self.ready.popleft()
        return self._give_up(scheduled, spooled=False, loss=Loss.SEAL_FAILED, reason=reason)

    def _give_up(
        self, scheduled: Scheduled, *, spooled: bool, loss: Loss, reason: str
    ) -> Settlement:
        settlement = Settlement()
        batch = scheduled.batch
        if scheduled.spooled is None:
            if spooled:
                self.tally.spooled += len(batch)
            else:
                self.tally.dropped[loss] += len(batch)
                settlement.failures = [Failure(FailureKind.LOST, batch.event_ids, reason)]
        self._release(scheduled, settlement, file_done=False)
        return settlement

    def settle_leftovers(self, spooled_events: int, lost_events: int) -> None:
        """Shutdown's accounting for what `take_leftovers` gave it."""
        self.tally.spooled += spooled_events
        if lost_events:
            self.tally.dropped[Loss.SHUTDOWN] += lost_events
        self.queue.release(self.queue.held_events, self.queue.held_bytes)
        self.settled = self.accepted

    def _release(
        self, scheduled: Scheduled, settlement: Settlement, *, file_done: bool = True
    ) -> None:
        batch = scheduled.batch
        origin = scheduled.spooled
        if origin is None:
            self.queue.release(len(batch), batch.payload_bytes)
            self.settled += len(batch)
            return
        if not file_done:
            self._spool_files_kept.add(origin.path)
        if any(other.spooled is origin for other in self.ready):
            return  # a part of the same file (it was split) is still to come
        # The last part of a spool file: done with, unless a part of it was given up; then it is
        # kept for a later attempt, whole (the delivered parts again too, which the service
        # counts as duplicates).
        if origin.path in self._spool_files_kept:
            self._spool_files_kept.discard(origin.path)
            settlement.spool_give_back.append(origin)
        else:
            settlement.spool_done.append(origin)
