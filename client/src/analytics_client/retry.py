"""When to try again. Pure: the time and the random draw are passed in.

- `Backoff`: exponential backoff with full jitter (a delay drawn between 0 and
  `base * 2 ** (attempt - 1)`, at most `cap`), so clients that failed together do not come
  back together.
- `parse_retry_after`: the `Retry-After` header, as seconds or as an HTTP-date, at most
  `MAX_RETRY_AFTER`: a service may ask for a pause, not for the client to stop for good.
- `Gate`: a client-wide "not before": a service that says `Retry-After` is given that long by
  the whole client, not only by the batch that was answered.
"""

from __future__ import annotations

import email.utils
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC

Draw = Callable[[float, float], float]  # random.uniform's signature
# 2 ** 64 times any sensible base is past any cap; beyond it the power only costs time.
_MAX_EXPONENT = 64
# The longest wait a `Retry-After` gets (it holds the whole client): an hour asked for, or a
# date in the year 9999, is read as this. The batches held meanwhile reach their retry deadline
# (by default 5 minutes) and go to the spool; those tracked after it are sent.
MAX_RETRY_AFTER = 600.0
# ASCII only: `str.isdigit` and `float` also take other scripts' digits ("²", "١٢٠").
_SECONDS = re.compile(r"[0-9]+(\.[0-9]+)?")


@dataclass(frozen=True)
class Backoff:
    base: float
    cap: float

    def ceiling(self, attempt: int) -> float:
        """The longest delay after the `attempt`-th failed attempt (1 for the first)."""
        exponent = min(max(attempt - 1, 0), _MAX_EXPONENT)
        return min(self.cap, self.base * 2.0**exponent)

    def delay(self, attempt: int, draw: Draw) -> float:
        return draw(0.0, self.ceiling(attempt))

    def delay_after(self, attempt: int, retry_after: float | None, draw: Draw) -> float:
        """The delay before the next attempt: never shorter than the service asked for."""
        delay = self.delay(attempt, draw)
        return delay if retry_after is None else max(delay, retry_after)


def parse_retry_after(value: str | None, now_unix: float) -> float | None:
    """Seconds to wait, from `Retry-After: 120` or `Retry-After: Fri, 27 Nov 2026 11:00:00
    GMT`, at most `MAX_RETRY_AFTER`; None when absent or unreadable. A date in the past means
    no wait."""
    if value is None:
        return None
    text = value.strip()
    if _SECONDS.fullmatch(text):  # a fraction is not what the standard allows, but unambiguous
        return min(float(text), MAX_RETRY_AFTER)  # "9" * 400 is infinite as a float: the most
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:  # "-0000": HTTP-dates are in GMT anyway
        moment = moment.replace(tzinfo=UTC)
    return min(max(0.0, moment.timestamp() - now_unix), MAX_RETRY_AFTER)


class Gate:
    """The client-wide "not before", in monotonic seconds."""

    def __init__(self) -> None:
        self.not_before = -math.inf

    def hold_until(self, moment: float) -> None:
        self.not_before = max(self.not_before, moment)
