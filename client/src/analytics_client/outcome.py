"""What an answer of `POST /events/batch` means for the batch that was sent. Pure.

    200, 422      Answered: the service judged each event; those in `rejected` are refused
                  (final, reported with their reason), the others are stored
    408, 429, 5xx Retry, after `Retry-After` when the answer gives one
    413           Split in two halves, each sent on its own; a single event is Refused
    401, 403      Refused, `key_refused`: the write key, not the events (a spooled batch is
                  kept in the spool)
    other         Refused: the whole batch, final (a body the service cannot read...)

A network error (no answer, or none in time) is a Retry too: the service may have stored the
batch, and the same bytes with the same ids and key are stored once however often they come.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from analytics_client.retry import parse_retry_after

RETRIED_STATUSES = frozenset({408, 429})


@dataclass(frozen=True)
class Answered:
    duplicates: int
    rejections: tuple[tuple[int, str], ...]  # (index in the batch, reason)


@dataclass(frozen=True)
class Retry:
    reason: str
    retry_after: float | None = None


@dataclass(frozen=True)
class Split:
    reason: str


@dataclass(frozen=True)
class Refused:
    reason: str
    key_refused: bool = False  # the write key was refused: it says nothing of the events


Outcome = Answered | Retry | Split | Refused


def interpret(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    event_count: int,
    now_unix: float,
) -> Outcome:
    """`headers` with lowercase names."""
    if status in (200, 422):
        return _answered(status, body, event_count)
    if 200 <= status < 300:
        return Answered(0, ())  # the contract: any 2xx is a success
    reason = f"HTTP {status}{_error_text(body)}"
    if status in RETRIED_STATUSES or status >= 500:
        return Retry(reason, parse_retry_after(headers.get("retry-after"), now_unix))
    if status == 413 and event_count > 1:
        return Split(reason)
    return Refused(reason, key_refused=status in (401, 403))


def network_failure(error: BaseException) -> Retry:
    return Retry(f"{type(error).__name__}: {error}" if str(error) else type(error).__name__)


def _answered(status: int, body: bytes, event_count: int) -> Answered:
    document = _json(body)
    rejected = document.get("rejected") if isinstance(document, dict) else None
    duplicates = document.get("duplicates") if isinstance(document, dict) else None
    rejections: dict[int, str] = {}
    if isinstance(rejected, list):
        for entry in rejected:
            if not isinstance(entry, dict):
                continue
            index, error = entry.get("index"), entry.get("error")
            if isinstance(index, int) and 0 <= index < event_count:
                rejections[index] = str(error) if error is not None else "rejected"
    if status == 422:
        # No event was valid: any the body does not name are refused as well.
        for index in range(event_count):
            rejections.setdefault(index, f"HTTP 422{_error_text(body)}")
    return Answered(
        duplicates if isinstance(duplicates, int) and duplicates >= 0 else 0,
        tuple(sorted(rejections.items())),
    )


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def _error_text(body: bytes) -> str:
    document = _json(body)
    error = document.get("error") if isinstance(document, dict) else None
    return f": {error}" if isinstance(error, str) else ""
