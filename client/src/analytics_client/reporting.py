"""Counting what happens to events, and saying so: counters, the failure callback, the log.

Drops are logged at WARNING on the `analytics_client` logger, at most once per reason every
`interval` seconds with the number since the last line, so a full queue says so without
flooding the log.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from analytics_client.results import Counters, Failure

log = logging.getLogger("analytics_client")

FailureCallback = Callable[[Failure], None]


class Tally:
    """The running counters, guarded by the client's lock."""

    def __init__(self) -> None:
        self.tracked = 0
        self.dropped: Counter[str] = Counter()
        self.delivered = 0
        self.duplicates = 0
        self.rejected = 0
        self.retries = 0
        self.requests = 0
        self.spooled = 0

    def snapshot(self, pending: int) -> Counters:
        return Counters(
            tracked=self.tracked,
            dropped={str(reason): count for reason, count in self.dropped.items() if count},
            delivered=self.delivered,
            duplicates=self.duplicates,
            rejected=self.rejected,
            retries=self.retries,
            requests=self.requests,
            spooled=self.spooled,
            pending=pending,
        )


class RateLimitedLog:
    """One WARNING line per reason per `interval`, counting what it did not say."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._next_line_at: dict[str, float] = {}
        self._unsaid: Counter[str] = Counter()

    def line_due(self, reason: str, now: float) -> int:
        """How many drops of `reason` to report now (this one included), or 0 to keep quiet."""
        self._unsaid[reason] += 1
        if now < self._next_line_at.get(reason, -float("inf")):
            return 0
        self._next_line_at[reason] = now + self.interval
        return self._unsaid.pop(reason)


def log_drops(reason: str, count: int, detail: str) -> None:
    log.warning(
        "analytics events dropped: %d x %s%s", count, reason, f" ({detail})" if detail else ""
    )


def notify(callback: FailureCallback | None, failures: list[Failure]) -> None:
    """Hand failures to the caller's callback; what it raises is logged, never passed on."""
    if callback is None:
        return
    for failure in failures:
        try:
            callback(failure)
        except Exception:
            log.exception("the analytics on_failure callback raised")
