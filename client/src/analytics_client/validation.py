"""Field values checked against the catalog's types before an event is queued.

The service would refuse such an event on its own, but only after the batch holding it was
sent; refused here, the caller learns at once, from `track`'s result, what was wrong.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from analytics_client.events import Event, FieldSpec
from analytics_client.identifiers import canonical_uuid


class InvalidEvent(ValueError):
    """What is wrong with an event; the message names the field."""


_INTEGER_RANGES = {
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint16": (0, 2**16 - 1),
}
_FLOAT64_MAX = 1.7976931348623157e308


def _uuid(value: Any) -> Any:
    text = canonical_uuid(value)
    if text is None:
        raise InvalidEvent("expected a UUID")
    return text


def _string(value: Any) -> Any:
    if isinstance(value, str):
        return value
    raise InvalidEvent("expected a string")


def _boolean(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    raise InvalidEvent("expected a boolean")


def _integer(type_name: str) -> Callable[[Any], Any]:
    low, high = _INTEGER_RANGES[type_name]

    def check(value: Any) -> Any:
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidEvent(f"expected an integer ({type_name})")
        if not low <= value <= high:
            raise InvalidEvent(f"{value} is outside the {type_name} range [{low}, {high}]")
        return int(value)

    return check


def _float64(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidEvent("expected a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidEvent("expected a finite number")
    if isinstance(value, int) and abs(value) > _FLOAT64_MAX:
        raise InvalidEvent("outside the float64 range")
    return value


def _any_json(value: Any) -> Any:
    return value  # whether it is JSON is found out when it is encoded


# Each check returns the value as it goes on the wire (a UUID as its text).
_CHECKS: dict[str, Callable[[Any], Any]] = {
    "uuid": _uuid,
    "string": _string,
    "boolean": _boolean,
    "float64": _float64,
    "any-json": _any_json,
    **{name: _integer(name) for name in _INTEGER_RANGES},
}


def event_object(event: Event) -> dict[str, Any]:
    """The event as shape A's `event` object: its `type` tag, then its fields in order."""
    values: dict[str, Any] = {"type": event.wire_type}
    for spec in event.field_specs():
        values[spec.name] = _checked(spec, getattr(event, spec.name), "event")
    return values


def flat_data(event_type: type[Event] | None, data: Mapping[str, Any]) -> dict[str, Any]:
    """Shape B's `data`: for a catalog type, the fields it has are checked (as the service
    checks them, absent ones are allowed); other keys and other types pass as they are."""
    values = dict(data)
    if event_type is None:
        return values
    for spec in event_type.field_specs():
        if spec.name in values:
            values[spec.name] = _checked(spec, values[spec.name], "data")
    return values


def _checked(spec: FieldSpec, value: Any, where: str) -> Any:
    if value is None:
        if spec.nullable:
            return None
        raise InvalidEvent(f"{where}.{spec.name}: must not be null")
    try:
        return _CHECKS[spec.type](value)
    except InvalidEvent as error:
        raise InvalidEvent(
            f"{where}.{spec.name}: {error}, got {type(value).__name__} {value!r:.40}"
        ) from None
