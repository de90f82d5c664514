"""One event as the service reads it, in either shape of the contract, and its bytes.

- shape A, what the platform's client sends:
  `{"timestamp", "event": {"type", ...fields}, "hostname", "environment", "event_id"}`
- shape B, the flat event: `{"event_id", "event_type", "user_id", "service", "timestamp", "data"}`

An event is encoded once, when it is tracked: the queue holds bytes, so its size is known (and
bounded) from the start, a value that is not JSON is refused to the caller rather than found
later in the sender, and later changes to the caller's objects cannot alter what is sent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

# The service's event_type and service columns are VARCHAR(100).
MAX_NAME_CHARACTERS = 100


class NotSerialisable(ValueError):
    """The event cannot be written as JSON the service can store."""


def timestamp_text(moment: datetime) -> str:
    """RFC 3339 in UTC with a `Z`, to the microsecond (what PostgreSQL keeps)."""
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise ValueError("timestamp: expected a timezone-aware datetime")
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def timestamp_from_unix_nanoseconds(unix_nanoseconds: int) -> str:
    seconds, nanoseconds = divmod(unix_nanoseconds, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, UTC).replace(microsecond=nanoseconds // 1000)
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def shape_a(
    event: dict[str, Any],
    *,
    event_id: str,
    timestamp: str,
    hostname: str | None,
    environment: str | None,
) -> dict[str, Any]:
    return {
        "timestamp": timestamp,
        "event": event,
        "hostname": hostname,
        "environment": environment,
        "event_id": event_id,
    }


def shape_b(
    event_type: str,
    data: dict[str, Any],
    *,
    event_id: str,
    user_id: str | None,
    service: str | None,
    timestamp: str,
) -> dict[str, Any]:
    for name, value in (("event_type", event_type), ("service", service)):
        if value is not None and len(value) > MAX_NAME_CHARACTERS:
            raise ValueError(f"{name}: longer than {MAX_NAME_CHARACTERS} characters")
    if not event_type:
        raise ValueError("event_type: must not be empty")
    return {
        "event_id": event_id,
        "event_type": event_type,
        "user_id": user_id,
        "service": service,
        "timestamp": timestamp,
        "data": data,
    }


def _json_default(value: Any) -> Any:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return timestamp_text(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def encode(element: Mapping[str, Any]) -> bytes:
    """Compact JSON in UTF-8. Raises `NotSerialisable` with the reason."""
    try:
        text = json.dumps(
            element,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
            default=_json_default,
        )
        encoded = text.encode("utf-8")
    except UnicodeEncodeError:  # a ValueError too: caught first
        raise NotSerialisable("a string holds an unpaired UTF-16 surrogate") from None
    except ValueError as error:  # NaN or infinity, a circular reference
        raise NotSerialisable(str(error)) from None
    except (TypeError, RecursionError) as error:
        raise NotSerialisable(str(error) or type(error).__name__) from None
    # JSON writes NUL as an escape; PostgreSQL's text and jsonb cannot hold it at all.
    if "\\u0000" in text and _holds_nul(element):
        raise NotSerialisable("a string holds the NUL character, which the service cannot store")
    return encoded


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return any(_holds_nul(item) for item in value)
    return False
