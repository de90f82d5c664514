"""Event ids: time-ordered UUIDs (RFC 9562 version 7), and ids given by the caller.

Ids of one process increase strictly, even within a millisecond (the random part counts up
from a fresh draw, RFC 9562 section 6.2, method 3), so an event's id sorts with its time and
new ids land at the end of the service's index. A forked child draws anew (after a fork that
ran no at-fork hooks too, noticed by its process id): were it to continue its parent's
sequence, the two would hand out the same ids, and the service would take the child's events
for retries of the parent's and store them never.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from uuid import UUID

from analytics_client.processes import ProcessCheck

_RANDOM_BITS = 74  # rand_a (12 bits) and rand_b (62 bits) together
_RANDOM_LIMIT = 1 << _RANDOM_BITS
# A fresh draw leaves the top bit clear, so counting up from it within one millisecond
# practically never reaches the limit.
_FRESH_DRAW_BITS = _RANDOM_BITS - 1
_UUID_TEXT = re.compile(
    r"[0-9a-fA-F]{8}(-?)[0-9a-fA-F]{4}\1[0-9a-fA-F]{4}\1[0-9a-fA-F]{4}\1[0-9a-fA-F]{12}"
)


class Uuid7Generator:
    """Strictly increasing version-7 UUIDs; safe to share between threads."""

    def __init__(self, random_bits: Callable[[int], int] = secrets.randbits) -> None:
        self._random_bits = random_bits
        self._process = ProcessCheck()
        self._lock = threading.Lock()
        self._last_millisecond = -1
        self._last_random = 0

    def next(self, unix_milliseconds: int) -> str:
        if self._process.forked():
            self.reset()
        with self._lock:
            if unix_milliseconds > self._last_millisecond:
                self._last_millisecond = unix_milliseconds
                self._last_random = self._random_bits(_FRESH_DRAW_BITS)
            else:
                # The same millisecond, or the clock went back: count up, never down.
                self._last_random += 1
                if self._last_random >= _RANDOM_LIMIT:
                    self._last_millisecond += 1
                    self._last_random = self._random_bits(_FRESH_DRAW_BITS)
            return format_uuid7(self._last_millisecond, self._last_random)

    def reset(self) -> None:
        """Forget the sequence (in a forked child, whose lock may be held by a lost thread)."""
        self._process = ProcessCheck()
        self._lock = threading.Lock()
        self._last_millisecond = -1
        self._last_random = 0


def format_uuid7(unix_milliseconds: int, random: int) -> str:
    value = (
        (unix_milliseconds & 0xFFFF_FFFF_FFFF) << 80
        | 0x7 << 76
        | (random >> 62) << 64
        | 0b10 << 62
        | (random & ((1 << 62) - 1))
    )
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def canonical_uuid(given: object) -> str | None:
    """A UUID (or its text) in the form the service stores, lowercase and hyphenated; None
    when `given` is not one."""
    if isinstance(given, UUID):
        return str(given)
    if isinstance(given, str) and _UUID_TEXT.fullmatch(given):
        return str(UUID(given))
    return None


def normalise_event_id(given: UUID | str) -> str:
    """A caller's id in the form the service stores."""
    text = canonical_uuid(given)
    if text is None:
        raise ValueError(f"event_id: expected a UUID, got {given!r:.60}")
    return text


_GENERATOR = Uuid7Generator()


def new_event_id(unix_milliseconds: int) -> str:
    return _GENERATOR.next(unix_milliseconds)


def new_batch_key() -> str:
    """A batch's `Idempotency-Key`, from the same sequence as the event ids: the spool names
    its files by their keys, so they sort in the order their batches were closed."""
    return _GENERATOR.next(time.time_ns() // 1_000_000)


os.register_at_fork(after_in_child=_GENERATOR.reset)
