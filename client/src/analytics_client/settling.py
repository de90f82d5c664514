"""What the sender does beside sending: the spool's files, the failure callback and the log,
for a settled, an expired or a left-over batch. Blocking file I/O: the asyncio client runs
these in a worker thread."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from analytics_client.batching import in_batches, seal_events
from analytics_client.identifiers import new_batch_key
from analytics_client.options import Options
from analytics_client.pipeline import Leftovers, Scheduled, Settlement
from analytics_client.reporting import FailureCallback, RateLimitedLog, log, notify
from analytics_client.results import Failure, FailureKind, Loss
from analytics_client.spool import Spool, SpooledBatch, SpoolError


@dataclass(frozen=True)
class Expiry:
    spooled: bool
    loss: Loss
    reason: str


def spool_expired(scheduled: Scheduled, spool: Spool | None) -> Expiry:
    """A batch past its retry deadline: into the spool when there is one."""
    reason = f"not delivered within the retry deadline (last: {scheduled.last_error or 'none'})"
    if scheduled.spooled is not None or spool is None:
        return Expiry(False, Loss.RETRY_DEADLINE, reason)
    try:
        spool.store(scheduled.batch)
    except SpoolError as error:
        return Expiry(False, Loss.SPOOL_FAILED, f"{reason}; {error}")
    return Expiry(True, Loss.RETRY_DEADLINE, reason)


def update_spool(settlement: Settlement, spool: Spool | None) -> None:
    """Remove the spool files that are done with; give back those given up for now."""
    if spool is None:
        return
    for done in settlement.spool_done:
        spool.remove(done)
    for undone in settlement.spool_give_back:
        spool.give_back(undone)


def report_failures(
    failures: list[Failure], callback: FailureCallback | None, failure_log: RateLimitedLog
) -> None:
    for failure in failures:
        count = failure_log.line_due(failure.kind, time.monotonic())
        if count:
            log.warning(
                "analytics events %s: %s (%d such failures since the last line)",
                failure.kind,
                failure.reason,
                count,
            )
    notify(callback, failures)


@dataclass
class Disposal:
    """Shutdown's leftovers: how many of this process's events went to the spool, how many
    are lost, and the failures to report."""

    spooled: int = 0
    lost: int = 0
    failures: list[Failure] = field(default_factory=list)


def dispose(leftovers: Leftovers, spool: Spool | None, options: Options) -> Disposal:
    """Into the spool, or counted as lost. Spool files still held are given back."""
    disposal = Disposal()
    given_back: set[int] = set()
    batches = []
    for scheduled in leftovers.scheduled:
        if scheduled.spooled is not None:
            if spool is not None and id(scheduled.spooled) not in given_back:
                given_back.add(id(scheduled.spooled))
                spool.give_back(scheduled.spooled)
        else:
            batches.append(scheduled.batch)
    for events in in_batches(leftovers.events, options.max_batch_events, options.max_batch_bytes):
        batches.append(seal_events(new_batch_key(), events, compress=options.compress))
    for batch in batches:
        reason = "still held when shutdown's time ran out"
        if spool is not None:
            try:
                spool.store(batch)
            except SpoolError as error:
                reason = f"{reason}; {error}"
            else:
                disposal.spooled += len(batch)
                continue
        disposal.lost += len(batch)
        disposal.failures.append(Failure(FailureKind.LOST, batch.event_ids, reason))
    return disposal


def load_from_spool(spool: Spool) -> SpooledBatch | None:
    try:
        return spool.claim_next()
    except OSError:
        return None


class SpoolWatch:
    """When the sender looks into the spool: at its start, and then, once the spool was found
    empty (or its batches given back for now), every `interval` seconds."""

    def __init__(self, spool: Spool | None, interval: float) -> None:
        self.spool = spool
        self.interval = interval
        self._waiting = spool is not None
        self._scan_at = 0.0

    def waiting(self, now: float) -> bool:
        """Whether the spool may hold batches to send now."""
        if self.spool is not None and not self._waiting and now >= self._scan_at:
            self._waiting = True
        return self._waiting

    def found_nothing(self, now: float, rest: float = 0.0) -> None:
        """Nothing to take now: look again after the interval, or `rest` if longer."""
        self._waiting = False
        self._scan_at = now + max(self.interval, rest)

    def wait_time(self, now: float, seconds: float | None) -> float | None:
        """How long the sender may sleep, given it would sleep `seconds` (None: until woken)."""
        if self.spool is None:
            return seconds
        until_scan = max(0.0, self._scan_at - now)
        return until_scan if seconds is None else min(seconds, until_scan)
