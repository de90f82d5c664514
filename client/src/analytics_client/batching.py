"""The queue and the batches. Pure: no threads, no I/O, the time passed in.

Events wait in a queue bounded by their number and their bytes; when full it refuses the new
event (counted and reported by the caller), it never grows and never blocks. Taken events
stay counted against the bounds until their batch is settled, so the bound holds for all the
client keeps in memory, not only for what waits.

A batch is closed when it has enough events or bytes, or its oldest event has waited long
enough (`BatchPolicy`). Closed, it is serialised and compressed once (`seal`): every attempt to
send it sends the same bytes under the same `Idempotency-Key`.
"""

from __future__ import annotations

import gzip
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from analytics_client.results import Refusal


@dataclass(frozen=True, slots=True)
class QueuedEvent:
    event_id: str
    payload: bytes  # the event's JSON
    enqueued_at: float  # monotonic seconds


class EventQueue:
    def __init__(self, max_events: int, max_bytes: int) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._waiting: deque[QueuedEvent] = deque()
        self.waiting_bytes = 0
        self.held_events = 0  # waiting, or taken and not yet released
        self.held_bytes = 0

    def offer(self, event: QueuedEvent) -> Refusal | None:
        if self.held_events >= self.max_events:
            return Refusal.QUEUE_FULL_EVENTS
        if self.held_bytes + len(event.payload) > self.max_bytes:
            return Refusal.QUEUE_FULL_BYTES
        self._waiting.append(event)
        self.waiting_bytes += len(event.payload)
        self.held_events += 1
        self.held_bytes += len(event.payload)
        return None

    @property
    def waiting_events(self) -> int:
        return len(self._waiting)

    def oldest_enqueued_at(self) -> float | None:
        return self._waiting[0].enqueued_at if self._waiting else None

    def take(self, max_events: int, max_body_bytes: int) -> list[QueuedEvent]:
        """The oldest events that fit one body: at least one, if any wait."""
        count = fitting(self._waiting, max_events, max_body_bytes)
        taken = [self._waiting.popleft() for _ in range(count)]
        self.waiting_bytes -= payload_bytes(taken)
        return taken

    def release(self, events: int, payload_bytes: int) -> None:
        """Taken events are settled: they no longer count against the bounds."""
        self.held_events -= events
        self.held_bytes -= payload_bytes

    def clear(self) -> list[QueuedEvent]:
        """Everything still waiting, taken out (and still held until released)."""
        taken = list(self._waiting)
        self._waiting.clear()
        self.waiting_bytes = 0
        return taken


def fitting(events: Iterable[QueuedEvent], max_events: int, max_body_bytes: int) -> int:
    """How many of the first events fit one body: at least one, if there are any."""
    count = 0
    size = 2  # the brackets
    for event in events:
        added = len(event.payload) + (1 if count else 0)  # and its comma
        if count == max_events or (count and size + added > max_body_bytes):
            break
        count += 1
        size += added
    return count


def in_batches(
    events: list[QueuedEvent], max_events: int, max_body_bytes: int
) -> list[list[QueuedEvent]]:
    """Events cut into bodies within the limits, in order."""
    batches = []
    start = 0
    while start < len(events):
        count = fitting(events[start:], max_events, max_body_bytes)
        batches.append(events[start : start + count])
        start += count
    return batches


@dataclass(frozen=True)
class BatchPolicy:
    """When to close a batch: `max_events` waiting, `max_bytes` of body, or the oldest event
    waiting for `max_age` seconds."""

    max_events: int
    max_bytes: int
    max_age: float

    def wait_time(self, waiting_events: int, waiting_bytes: int, oldest_age: float) -> float | None:
        """Seconds until a batch should be closed: 0 for now, None while nothing waits."""
        if waiting_events == 0:
            return None
        body_bytes = waiting_bytes + waiting_events + 1  # commas and brackets
        if waiting_events >= self.max_events or body_bytes >= self.max_bytes:
            return 0.0
        return max(0.0, self.max_age - oldest_age)


@dataclass(frozen=True, eq=False)
class ClosedBatch:
    """A batch as it is sent: its body is built once, here, and never again."""

    key: str  # the Idempotency-Key
    event_ids: tuple[str, ...]
    payloads: tuple[bytes, ...]
    body: bytes  # the JSON array, gzip-compressed when `compressed`
    compressed: bool

    @property
    def payload_bytes(self) -> int:
        return sum(len(payload) for payload in self.payloads)

    def __len__(self) -> int:
        return len(self.event_ids)


def array_body(payloads: tuple[bytes, ...] | list[bytes]) -> bytes:
    return b"[" + b",".join(payloads) + b"]"


def seal(
    key: str,
    event_ids: tuple[str, ...],
    payloads: tuple[bytes, ...],
    *,
    compress: bool,
) -> ClosedBatch:
    body = array_body(payloads)
    if compress:
        # mtime=0: the same events give the same bytes, in this process or after a restart.
        body = gzip.compress(body, compresslevel=6, mtime=0)
    return ClosedBatch(key, event_ids, payloads, body, compress)


def seal_events(key: str, events: list[QueuedEvent], *, compress: bool) -> ClosedBatch:
    return seal(
        key,
        tuple(event.event_id for event in events),
        tuple(event.payload for event in events),
        compress=compress,
    )


def split(batch: ClosedBatch) -> tuple[ClosedBatch, ClosedBatch]:
    """Two halves of a batch the service found too large, each with a key of its own derived
    from the batch's, so each half retried is still the same request."""
    if len(batch) < 2:
        raise ValueError("a batch of one event cannot be split")
    middle = len(batch) // 2

    def half(number: int, start: int, end: int) -> ClosedBatch:
        return seal(
            f"{batch.key}.{number}",
            batch.event_ids[start:end],
            batch.payloads[start:end],
            compress=batch.compressed,
        )

    return half(1, 0, middle), half(2, middle, len(batch))


def payload_bytes(events: Sequence[QueuedEvent]) -> int:
    """The bytes the events hold in the queue (what `max_queue_bytes` counts)."""
    return sum(len(event.payload) for event in events)
