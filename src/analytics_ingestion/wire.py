"""The wire model: a request body in, rows to store and rejected events out. Pure, no I/O.

A body is a JSON array whose elements are either of two shapes, mixed freely:

- shape A, what the platform's client sends:
  `{"timestamp", "event": {"type", ...fields}, "hostname", "environment"}`
- shape B, the flat event: `{"event_id", "event_type", "user_id", "service", "timestamp", "data"}`

The array is split into its elements' raw bytes first, and each element is decoded and
validated on its own, so one bad event is rejected with its index and reason while the rest
of its batch is stored. The `data` column receives the client's `event` (or `data`) object
byte for byte: nothing is re-encoded, and fields the catalog does not know yet are kept.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, NamedTuple

import msgspec

from analytics_ingestion.catalog import Catalog, EventType, canonical_event_type, load_catalog
from analytics_ingestion.errors import MalformedBody

VARCHAR_LIMIT = 100  # event_type and service are VARCHAR(100)
UNKNOWN_SERVICE = "unknown"
# Names the event ids derived from an Idempotency-Key; fixed forever, or retries stop matching.
IDEMPOTENCY_NAMESPACE = uuid.UUID("5b0c7f1e-2f43-4c59-9a8e-6a1d3c2b9e47")


class EventRow(NamedTuple):
    """One row of `analytics_events`, in the column order the store copies them."""

    timestamp: datetime
    event_type: str
    service: str
    user_id: uuid.UUID | None
    data: bytes
    event_id: uuid.UUID
    received_at: datetime
    hostname: str | None
    environment: str | None


class DeadLetter(NamedTuple):
    """One row of `analytics_dead_letters`: what was refused, why, and when."""

    received_at: datetime
    event_index: int | None
    reason: str
    payload: bytes


@dataclass(frozen=True)
class Rejection:
    index: int
    error: str

    def to_json(self) -> dict[str, object]:
        return {"index": self.index, "error": self.error}


@dataclass
class Batch:
    """A decoded request: the rows to store and the events refused, with their positions."""

    received: int
    rows: list[EventRow] = field(default_factory=list)
    row_indexes: list[int] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)

    def reject(self, index: int, error: str, payload: bytes, received_at: datetime) -> None:
        self.rejections.append(Rejection(index, error))
        self.dead_letters.append(DeadLetter(received_at, index, error, payload))


def unreadable_body(body: bytes, error: MalformedBody, received_at: datetime) -> Batch:
    """A body that is not a JSON array, kept whole in the dead-letter table."""
    return Batch(received=0, dead_letters=[DeadLetter(received_at, None, error.message, body)])


class EventError(ValueError):
    """Why one event was refused; the message names the field."""


def decode_batch(
    body: bytes,
    *,
    received_at: datetime,
    idempotency_key: str | None = None,
    catalog: Catalog | None = None,
) -> Batch:
    """Decode and validate a request body. Raises `MalformedBody` if it is not a JSON array."""
    catalog = catalog or load_catalog()
    elements = split_array(body)
    batch = Batch(received=len(elements))
    for index, raw in enumerate(elements):
        try:
            row = decode_event(
                raw,
                index=index,
                received_at=received_at,
                idempotency_key=idempotency_key,
                catalog=catalog,
            )
        except EventError as error:
            batch.reject(index, str(error), raw, received_at)
        except RecursionError:
            batch.reject(index, "nested too deeply", raw, received_at)
        else:
            batch.rows.append(row)
            batch.row_indexes.append(index)
    return batch


# --- splitting the array ------------------------------------------------------------------

_ARRAY_DECODER = msgspec.json.Decoder(list[msgspec.Raw])


def split_array(body: bytes) -> list[bytes]:
    """The raw bytes of each element of a JSON array."""
    try:
        return [bytes(element) for element in _ARRAY_DECODER.decode(body)]
    except msgspec.ValidationError:
        raise MalformedBody(
            f"expected a JSON array of events, got {_json_type_of_document(body)}"
        ) from None
    except (msgspec.DecodeError, RecursionError):
        # The fast parser refuses the whole array when one element is bad (an unpaired
        # surrogate escape, nesting too deep, a syntax error). Find the elements by their
        # brackets instead, so each can be judged alone; only a broken array is a 400.
        return _split_array_by_brackets(body)


def _json_type_of_document(body: bytes) -> str:
    stripped = body.lstrip()
    first = stripped[:1]
    return {b"{": "an object", b'"': "a string", b"t": "a boolean", b"f": "a boolean"}.get(
        first, "null" if stripped.startswith(b"null") else "a number"
    )


# Deeper than this, an array is refused whole: finding the end of such an element would cost
# a scan of the rest of the body. Less deep but past what the decoder takes (about 900
# levels), the element alone is rejected. No event of this platform nests beyond a few.
MAX_NESTING = 1024
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{},]|"', re.DOTALL)
_CLOSER = {b"[": b"]", b"{": b"}"}
_JSON_WHITESPACE = b" \t\n\r"


def _split_array_by_brackets(body: bytes) -> list[bytes]:
    """Split a JSON array into its elements' bytes without parsing them (no recursion)."""
    position = len(body) - len(body.lstrip(_JSON_WHITESPACE))
    if position == len(body):
        raise MalformedBody("the body is empty; expected a JSON array of events", 0)
    if body[position : position + 1] != b"[":
        raise _malformed("expected a JSON array of events", position, body)
    expected_closers: list[bytes] = []
    elements: list[bytes] = []
    start = position + 1
    for match in _TOKEN.finditer(body, position + 1):
        token, at = match.group(), match.start()
        if token[:1] == b'"':
            if len(token) == 1:
                raise _malformed("unterminated string", at, body)
        elif token in _CLOSER:
            expected_closers.append(_CLOSER[token])
            if len(expected_closers) > MAX_NESTING:
                raise _malformed(f"nested deeper than {MAX_NESTING} levels", at, body)
        elif token == b"," and not expected_closers:
            element = body[start:at].strip(_JSON_WHITESPACE)
            if not element:
                raise _malformed("expected a value before ','", at, body)
            elements.append(element)
            start = at + 1
        elif expected_closers:
            if token != b"," and expected_closers.pop() != token:
                raise _malformed(f"unexpected '{token.decode()}'", at, body)
        elif token == b"]":
            element = body[start:at].strip(_JSON_WHITESPACE)
            if element:
                elements.append(element)
            elif elements:
                raise _malformed("expected a value after ','", at, body)
            if body[at + 1 :].strip(_JSON_WHITESPACE):
                raise _malformed("unexpected data after the array", at + 1, body)
            return elements
        else:
            raise _malformed(f"unexpected '{token.decode()}'", at, body)
    raise _malformed("the array is not closed", len(body), body)


def _malformed(message: str, position: int, body: bytes) -> MalformedBody:
    line = body.count(b"\n", 0, position) + 1
    column = position - (body.rfind(b"\n", 0, position) + 1) + 1
    return MalformedBody(
        f"invalid JSON at line {line} column {column} (byte {position}): {message}", position
    )


# --- one event -----------------------------------------------------------------------------


class _Element(msgspec.Struct):
    """Every top-level field of either shape; which are present decides the shape."""

    timestamp: Any = msgspec.UNSET
    event: msgspec.Raw = msgspec.Raw(b"")
    hostname: Any = None
    environment: Any = None
    event_id: Any = None
    event_type: Any = msgspec.UNSET
    user_id: Any = None
    service: Any = None
    data: msgspec.Raw = msgspec.Raw(b"")


_ELEMENT_DECODER = msgspec.json.Decoder(_Element)
_OBJECT_DECODER = msgspec.json.Decoder()
# Numbers beyond a double's range are valid JSON and PostgreSQL's jsonb keeps them.
_WIDE_OBJECT_DECODER = msgspec.json.Decoder(float_hook=Decimal)


def decode_event(
    raw: bytes,
    *,
    index: int,
    received_at: datetime,
    idempotency_key: str | None,
    catalog: Catalog,
) -> EventRow:
    element = _decode_json(raw, _ELEMENT_DECODER, "the event")
    if b"\\u0000" in raw:
        _reject_nul(raw)
    if _LONG_NUMBER.search(raw):
        _reject_numeric_overflow(raw)
    if element.event:
        event_type, service, user_id, data = _shape_a(element, catalog)
    elif element.event_type is not msgspec.UNSET:
        event_type, service, user_id, data = _shape_b(element, catalog)
    else:
        raise EventError(
            "expected an 'event' object (platform client shape) or an 'event_type' (flat shape)"
        )
    return EventRow(
        timestamp=_timestamp(element.timestamp),
        event_type=event_type,
        service=service,
        user_id=user_id,
        data=data,
        event_id=_event_id(element.event_id, index, idempotency_key),
        received_at=received_at,
        hostname=_optional_string("hostname", element.hostname),
        environment=_optional_string("environment", element.environment),
    )


_Columns = tuple[str, str, uuid.UUID | None, bytes]  # event_type, service, user_id, data


def _shape_a(element: _Element, catalog: Catalog) -> _Columns:
    data = bytes(element.event)
    event = _decode_object(data, "event")
    wire_type = event.get("type")
    if not isinstance(wire_type, str) or not wire_type:
        raise EventError(f"event.type: expected a non-empty string, got {_describe(wire_type)}")
    known = catalog.find(wire_type)
    if known is not None:
        _check_fields(known, event, "event", require=True)
    service = event.get("service")
    user_id = event.get("user_id")
    return (
        # A type the catalog does not know is stored as it came (contract §4).
        _bounded("event.type", known.event_type if known else wire_type),
        _bounded("event.service", service) if isinstance(service, str) else UNKNOWN_SERVICE,
        None if user_id is None else _uuid("event.user_id", user_id),
        data,
    )


def _shape_b(element: _Element, catalog: Catalog) -> _Columns:
    name = element.event_type
    if not isinstance(name, str) or not name:
        raise EventError(f"event_type: expected a non-empty string, got {_describe(name)}")
    data = bytes(element.data) if element.data else b"{}"
    fields = _decode_object(data, "data")
    known = catalog.find(name)
    if known is not None:
        _check_fields(known, fields, "data", require=False)
    service = _optional_string("service", element.service)
    return (
        _bounded("event_type", canonical_event_type(name, catalog)),
        UNKNOWN_SERVICE if service is None else _bounded("service", service),
        None if element.user_id is None else _uuid("user_id", element.user_id),
        data,
    )


def _decode_json(raw: bytes, decoder: msgspec.json.Decoder[Any], where: str) -> Any:
    prefix = f"{where}: " if where else ""
    try:
        return decoder.decode(raw)
    except UnicodeDecodeError as error:
        raise EventError(f"{prefix}invalid UTF-8 at byte {error.start}") from None
    except RecursionError:
        raise EventError(f"{prefix}nested too deeply") from None
    except msgspec.ValidationError as error:
        if decoder is _OBJECT_DECODER and str(error).startswith("Number out of range"):
            return _decode_json(raw, _WIDE_OBJECT_DECODER, where)
        raise EventError(f"{prefix}{_rephrase(str(error))}") from None
    except msgspec.DecodeError as error:
        surrogate = _find_surrogate(raw)
        if surrogate is not None:
            raise EventError(
                f"{surrogate}: contains an unpaired UTF-16 surrogate, which PostgreSQL cannot store"
            ) from None
        raise EventError(f"{prefix}{error}") from None


def _rephrase(message: str) -> str:
    # msgspec says "Expected `object`, got `int`"; the client needs the same in plain words.
    return message.replace("`", "").replace("Expected", "expected")


def _decode_object(raw: bytes, where: str) -> dict[str, Any]:
    value = _decode_json(raw, _OBJECT_DECODER, where)
    if not isinstance(value, dict):
        raise EventError(f"{where}: expected an object, got {_describe(value)}")
    return value


def _reject_nul(raw: bytes) -> None:
    value = _decode_json(raw, _OBJECT_DECODER, "")
    path = _find_string(value, "$", lambda s: "\x00" in s)
    if path is not None:
        raise EventError(
            f"{path}: contains the NUL character (\\u0000), which PostgreSQL cannot store"
        )


# PostgreSQL's numeric, which jsonb stores numbers as, holds at most 131072 digits before the
# decimal point and 16383 after. Only a long exponent or a very long fraction can exceed that.
_LONG_NUMBER = re.compile(rb"[0-9][eE][+-]?[0-9]{5}|\.[0-9]{16384}")
_NUMERIC_MAX_INTEGER_DIGITS = 131072
_NUMERIC_MAX_SCALE = 16383


def _reject_numeric_overflow(raw: bytes) -> None:
    value = _decode_json(raw, _WIDE_OBJECT_DECODER, "")

    def overflows(number: Any) -> bool:
        if not isinstance(number, Decimal):
            return False
        _sign, digits, exponent = number.as_tuple()
        assert isinstance(exponent, int)
        if exponent < 0:
            return -exponent > _NUMERIC_MAX_SCALE
        return any(digits) and len(digits) + exponent > _NUMERIC_MAX_INTEGER_DIGITS

    path = _find_value(value, "$", overflows)
    if path is not None:
        raise EventError(f"{path}: number outside the range PostgreSQL can store")


def _find_surrogate(raw: bytes) -> str | None:
    try:
        value = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    return _find_string(value, "$", lambda s: any("\ud800" <= c <= "\udfff" for c in s))


def _find_string(value: Any, path: str, bad: Callable[[str], bool]) -> str | None:
    """The path of the first string (key or value) inside `value` for which `bad` is true."""
    return _find_value(value, path, lambda item: isinstance(item, str) and bad(item))


def _find_value(value: Any, path: str, bad: Callable[[Any], bool]) -> str | None:
    """The path of the first scalar or key inside `value` for which `bad` is true."""
    if isinstance(value, dict):
        for key, item in value.items():
            if bad(key):
                return f"{path} (a key)"
            found = _find_value(item, f"{path}.{key}", bad)
            if found is not None:
                return found
        return None
    if isinstance(value, list):
        for position, item in enumerate(value):
            found = _find_value(item, f"{path}[{position}]", bad)
            if found is not None:
                return found
        return None
    return path if bad(value) else None


# --- field values --------------------------------------------------------------------------

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_INTEGER_RANGES = {
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint16": (0, 2**16 - 1),
}
_FLOAT64_MAX = Decimal("1.7976931348623157e308")


def _describe(value: Any) -> str:
    if value is None or value is msgspec.UNSET:
        return "null" if value is None else "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | Decimal):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _check_value(field_type: str, value: Any) -> str | None:
    """What is wrong with `value` for a catalog field type, or None."""
    if field_type == "any-json":
        return None
    if field_type == "string":
        return None if isinstance(value, str) else "expected a string"
    if field_type == "uuid":
        ok = isinstance(value, str) and _UUID.fullmatch(value) is not None
        return None if ok else "expected a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"
    if field_type == "boolean":
        return None if isinstance(value, bool) else "expected a boolean"
    if field_type == "float64":
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            return "expected a number"
        if value != value or abs(Decimal(value)) > _FLOAT64_MAX:
            return "expected a finite number within float64 range"
        return None
    low, high = _INTEGER_RANGES[field_type]
    if isinstance(value, bool) or not isinstance(value, int):
        return f"expected an integer ({field_type})"
    if not low <= value <= high:
        return f"{value} is outside the {field_type} range [{low}, {high}]"
    return None


def _check_fields(
    event_type: EventType, values: dict[str, Any], where: str, *, require: bool
) -> None:
    for spec in event_type.fields:
        if spec.name not in values:
            if require and not spec.nullable:
                raise EventError(f"{where}.{spec.name}: required for {event_type.wire_type}")
            continue
        value = values[spec.name]
        if value is None:
            if not spec.nullable:
                raise EventError(
                    f"{where}.{spec.name}: must not be null for {event_type.wire_type}"
                )
            continue
        problem = _check_value(spec.type, value)
        if problem is not None:
            raise EventError(f"{where}.{spec.name}: {problem}, got {_describe(value)}")


def _bounded(name: str, value: str) -> str:
    if len(value) > VARCHAR_LIMIT:
        raise EventError(f"{name}: longer than {VARCHAR_LIMIT} characters ({len(value)})")
    return value


def _optional_string(name: str, value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise EventError(f"{name}: expected a string or null, got {_describe(value)}")


def _uuid(name: str, value: Any) -> uuid.UUID:
    if isinstance(value, str) and _UUID.fullmatch(value):
        return uuid.UUID(value)
    raise EventError(f"{name}: expected a UUID, got {_describe(value)}")


def _event_id(given: Any, index: int, idempotency_key: str | None) -> uuid.UUID:
    if given is not None:
        return _uuid("event_id", given)
    if idempotency_key is not None:
        return idempotent_event_id(idempotency_key, index)
    return uuid7()


def idempotent_event_id(idempotency_key: str, index: int) -> uuid.UUID:
    """The same key and position give the same id, so a retried request stores nothing twice."""
    return uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{idempotency_key}\x1f{index}")


def uuid7(unix_ms: int | None = None) -> uuid.UUID:
    """A time-ordered UUID (RFC 9562 version 7): new ids land at the end of the index."""
    milliseconds = time.time_ns() // 1_000_000 if unix_ms is None else unix_ms
    random = int.from_bytes(os.urandom(10), "big")
    value = (
        (milliseconds & 0xFFFF_FFFF_FFFF) << 80
        | 0x7 << 76
        | (random >> 64 & 0xFFF) << 64
        | 0b10 << 62
        | random & (2**62 - 1)
    )
    return uuid.UUID(int=value)


# --- timestamps ----------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))"
)
# PostgreSQL counts time in microseconds from 2000-01-01; the service this one replaces cut
# the extra digits toward that epoch, which before it means one microsecond later.
_POSTGRES_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_ONE_MICROSECOND = timedelta(microseconds=1)
_OFFSETS: dict[tuple[str, str, str], timezone] = {}


def parse_timestamp(text: str) -> datetime:
    """An RFC 3339 date-time with an offset, in UTC, cut to the microsecond.

    Digits past the microsecond are dropped, not rounded, as the service this one replaces did.
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError("expected an RFC 3339 date-time with an offset, e.g. 2026-11-26T11:47:34Z")
    year, month, day, hour, minute, second, fraction, sign, off_hours, off_minutes = match.groups()
    if second == "60":
        raise ValueError("leap seconds (:60) are not supported")
    microsecond = int((fraction or "")[:6].ljust(6, "0"))
    zone = UTC if sign is None else _offset(sign, off_hours, off_minutes)
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), microsecond, zone
        )
        if zone is not UTC:
            moment = moment.astimezone(UTC)
        if moment < _POSTGRES_EPOCH and fraction and fraction[6:].strip("0"):
            moment += _ONE_MICROSECOND
        return moment
    except OverflowError:
        raise ValueError("outside the supported range 0001-01-01 to 9999-12-31 (UTC)") from None


def _offset(sign: str, hours: str, minutes: str) -> timezone:
    key = (sign, hours, minutes)
    zone = _OFFSETS.get(key)
    if zone is None:
        if int(hours) > 23 or int(minutes) > 59:
            raise ValueError(f"invalid UTC offset {sign}{hours}:{minutes}")
        delta = timedelta(hours=int(hours), minutes=int(minutes))
        zone = UTC if not delta else timezone(delta if sign == "+" else -delta)
        _OFFSETS[key] = zone
    return zone


def _timestamp(value: Any) -> datetime:
    if value is msgspec.UNSET or value is None:
        raise EventError("timestamp: required")
    if not isinstance(value, str):
        raise EventError(f"timestamp: expected an RFC 3339 string, got {_describe(value)}")
    try:
        return parse_timestamp(value)
    except ValueError as error:
        raise EventError(f"timestamp: {error}") from None
