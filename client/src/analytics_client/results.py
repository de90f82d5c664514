"""What the client hands back: to `track`, to `flush` and `shutdown`, to the failure callback,
and as a snapshot of its counters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Refusal(StrEnum):
    """Why `track` did not accept an event. Each is counted under its value."""

    QUEUE_FULL_EVENTS = "queue_full_events"
    QUEUE_FULL_BYTES = "queue_full_bytes"
    TOO_LARGE = "too_large"
    INVALID = "invalid"
    NOT_SERIALISABLE = "not_serialisable"
    SHUT_DOWN = "shut_down"
    INTERNAL_ERROR = "internal_error"


class Loss(StrEnum):
    """Why an accepted event was given up without reaching the service."""

    RETRY_DEADLINE = "retry_deadline"  # not delivered within the retry deadline, no spool
    SPOOL_FAILED = "spool_failed"  # the spool was full or could not be written
    SHUTDOWN = "shutdown"  # still held when shutdown's time ran out, no spool
    SEAL_FAILED = "seal_failed"  # the batch could not be built (out of memory...)


@dataclass(frozen=True, slots=True)
class TrackResult:
    """True when the event was accepted. `event_id` is the id it was (or would have been) sent
    with; `reason` and `detail` say why it was not accepted."""

    event_id: str | None
    reason: Refusal | None = None
    detail: str = ""

    def __bool__(self) -> bool:
        return self.reason is None


class FailureKind(StrEnum):
    REJECTED = "rejected"  # the service refused the events: final, never retried
    LOST = "lost"  # given up (see `Loss`): the events may not have reached the service
    # Spooled events sent with a write key the service refused (401, 403): left in the spool,
    # taken again after the retry deadline, or by a later start.
    KEPT_IN_SPOOL = "kept_in_spool"


@dataclass(frozen=True, slots=True)
class Failure:
    """Events that will not be delivered, handed to the `on_failure` callback."""

    kind: FailureKind
    event_ids: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class Counters:
    """A snapshot of the client's counters since it started (or since its process forked)."""

    tracked: int = 0  # accepted by track
    dropped: Mapping[str, int] = field(default_factory=dict)  # by Refusal or Loss value
    delivered: int = 0  # stored by the service, duplicates included
    duplicates: int = 0  # of which the service already held (a retry whose answer was lost)
    rejected: int = 0  # refused by the service
    retries: int = 0  # requests sent again
    requests: int = 0  # requests sent, retries included
    spooled: int = 0  # events written to the spool
    pending: int = 0  # accepted and not yet delivered, rejected, spooled or lost

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


@dataclass(frozen=True, slots=True)
class FlushReport:
    """What became of the events during a `flush` or `shutdown`: delivered, rejected, lost or
    spooled meanwhile; `pending`, still undelivered when it returned (after `shutdown`, those
    it spooled or counted as lost)."""

    delivered: int
    rejected: int
    lost: int
    spooled: int
    pending: int

    @property
    def complete(self) -> bool:
        """Nothing was left undelivered."""
        return self.pending == 0
