"""The wire model: a request body in, rows to store and rejected events out. Pure, no I/O.

A body is a JSON array whose elements are either of two shapes, mixed freely:

- shape A, what the platform's client sends:
  `{"timestamp", "event": {"type", ...fields}, "hostname", "environment"}`
- shape B, the flat event: `{"event_id", "event_type", "user_id", "service", "timestamp", "data"}`

The usual body (shape-A events of catalog types, as the platform's client sends them) is
decoded and validated whole, in C, by `decode_batch_fast`. Any other body, and any body that
path cannot judge exactly as the per-event path would, goes to `decode_batch_per_event`: the
array is split into its elements' raw bytes, and each element is decoded and validated on its
own, so one bad event is rejected with its index and reason while the rest of its batch is
stored. The `data` column receives the client's `event` (or `data`) object
byte for byte: nothing is re-encoded, and fields the catalog does not know yet are kept.
"""

from __future__ import annotations

import functools
import json
import random
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, NamedTuple, Union

import msgspec

from analytics_ingestion import duplicate_keys
from analytics_ingestion import rows as copy_rows
from analytics_ingestion.catalog import Catalog, EventType, canonical_event_type, load_catalog
from analytics_ingestion.errors import MalformedBody
from analytics_ingestion.rows import ONE_MICROSECOND, POSTGRES_EPOCH, EventRow

VARCHAR_LIMIT = 100  # event_type and service are VARCHAR(100)
UNKNOWN_SERVICE = "unknown"
# Names the event ids derived from an Idempotency-Key; fixed forever, or retries stop matching.
IDEMPOTENCY_NAMESPACE = uuid.UUID("5b0c7f1e-2f43-4c59-9a8e-6a1d3c2b9e47")


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

    @property
    def kind(self) -> str:
        """The reason in a word, for the metrics."""
        return rejection_kind(self.error)

    def to_json(self) -> dict[str, object]:
        return {"index": self.index, "error": self.error}


@dataclass
class Batch:
    """A decoded request: the rows to store and the events refused, with their positions."""

    received: int
    # The rows to store, each as its COPY tuple (see rows.py), encoded once, here.
    tuples: list[bytes] = field(default_factory=list)
    row_indexes: list[int] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)

    @property
    def rows(self) -> list[EventRow]:
        """The rows' values, decoded from their tuples."""
        return [copy_rows.decode(tuple_) for tuple_ in self.tuples]

    def reject(self, index: int, error: str, payload: bytes, received_at: datetime) -> None:
        self.rejections.append(Rejection(index, error))
        self.dead_letters.append(DeadLetter(received_at, index, error, payload))


def unreadable_body(body: bytes, error: MalformedBody, received_at: datetime) -> Batch:
    """A body that is not a JSON array, kept whole in the dead-letter table."""
    return Batch(received=0, dead_letters=[DeadLetter(received_at, None, error.message, body)])


_KINDS = (  # (a phrase of the reason, its kind), first match wins
    ("duplicate key", "duplicate_key"),
    ("ahead of the server's clock", "clock_skew"),
    ("refused by the database", "database"),
    ("timestamp:", "timestamp"),
    ("PostgreSQL cannot store", "unstorable_text"),
    ("outside the range PostgreSQL can store", "number_range"),
    ("invalid UTF-8", "malformed"),
    ("nested too deeply", "malformed"),
    ("the event:", "malformed"),
    ("expected an 'event' object", "unknown_shape"),
)


def rejection_kind(reason: str) -> str:
    for phrase, kind in _KINDS:
        if phrase in reason:
            return kind
    return "invalid_field"


class EventError(ValueError):
    """Why one event was refused; the message names the field."""


def decode_batch(
    body: bytes,
    *,
    received_at: datetime,
    idempotency_key: str | None = None,
    catalog: Catalog | None = None,
    max_clock_skew: timedelta | None = None,
) -> Batch:
    """Decode and validate a request body. Raises `MalformedBody` if it is not a JSON array.

    With `max_clock_skew`, an event timestamped further than that ahead of `received_at` is
    refused (a client clock gone wrong; its raw event is kept in the dead letters)."""
    catalog = catalog or load_catalog()
    latest = None if max_clock_skew is None else received_at + max_clock_skew
    fast = decode_batch_fast(body, received_at, idempotency_key, catalog, latest=latest)
    if fast is not None:
        return fast
    return decode_batch_per_event(body, received_at, idempotency_key, catalog, latest=latest)


def decode_batch_per_event(
    body: bytes,
    received_at: datetime,
    idempotency_key: str | None,
    catalog: Catalog,
    *,
    latest: datetime | None = None,
) -> Batch:
    """Each element decoded and judged on its own: the path that says what is wrong."""
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
                latest=latest,
            )
        except EventError as error:
            batch.reject(index, str(error), raw, received_at)
        except RecursionError:
            batch.reject(index, "nested too deeply", raw, received_at)
        else:
            batch.tuples.append(copy_rows.encode(row))
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
# PostgreSQL's numeric, which jsonb keeps numbers as, holds at most 131072 digits before the
# decimal point and 16383 after. Only a number written with a fraction or an exponent can
# exceed that within the body limit (msgspec refuses integers longer than a few thousand
# digits), and msgspec hands exactly those to the float hook, as their text.
_NUMERIC_MAX_INTEGER_DIGITS = 131072
_NUMERIC_MAX_SCALE = 16383
_FLOAT64_MAX = 1.7976931348623157e308


_NUMERIC_OVERFLOW = "number outside the range PostgreSQL can store"


def _numeric_overflow_path(raw: bytes, where: str) -> str:
    """Where in the object the first such number is (msgspec's path omits the keys)."""

    def overflows(value: Any) -> bool:
        try:
            _number(str(value))
        except ValueError:
            return True
        return False

    try:
        value = json.loads(raw, parse_float=Decimal)
    except (ValueError, RecursionError):  # invalid UTF-8 further on, say: name the object
        return where or "$"
    found = _find_value(value, where or "$", lambda v: isinstance(v, Decimal) and overflows(v))
    return found or where or "$"


def _number(text: str) -> float | Decimal:
    value = float(text)
    if len(text) < 24 and value != 0.0 and abs(value) < _FLOAT64_MAX and abs(value) > 1e-300:
        return value  # the usual case: nowhere near a limit
    exact = Decimal(text)
    _sign, digits, exponent = exact.as_tuple()
    assert isinstance(exponent, int)
    if (exponent < 0 and -exponent > _NUMERIC_MAX_SCALE) or (
        any(digits) and len(digits) + exponent > _NUMERIC_MAX_INTEGER_DIGITS
    ):
        raise ValueError(_NUMERIC_OVERFLOW)
    # Beyond a double's range the value is kept exact (jsonb stores it as sent).
    return value if abs(value) < float("inf") else exact


_OBJECT_DECODER = msgspec.json.Decoder(float_hook=_number)


def decode_event(
    raw: bytes,
    *,
    index: int,
    received_at: datetime,
    idempotency_key: str | None,
    catalog: Catalog,
    latest: datetime | None = None,
) -> EventRow:
    element = _decode_json(raw, _ELEMENT_DECODER, "the event")
    _reject_duplicate_keys(raw)
    if b"\\u0000" in raw:
        _reject_nul(raw)
    if element.event:
        event_type, service, user_id, data = _shape_a(element, catalog)
    elif element.event_type is not msgspec.UNSET:
        event_type, service, user_id, data = _shape_b(element, catalog)
    else:
        raise EventError(
            "expected an 'event' object (platform client shape) or an 'event_type' (flat shape)"
        )
    timestamp = _timestamp(element.timestamp)
    if latest is not None and timestamp > latest:
        ahead = (timestamp - received_at).total_seconds()
        raise EventError(
            f"timestamp: {element.timestamp} is {ahead:.0f} s ahead of the server's clock, more "
            f"than the {(latest - received_at).total_seconds():g} s allowed "
            "(MAX_CLOCK_SKEW_SECONDS)"
        )
    return EventRow(
        timestamp=timestamp,
        event_type=event_type,
        service=service,
        user_id=user_id,
        data=data,
        event_id=_event_id(element.event_id, index, idempotency_key),
        received_at=received_at,
        hostname=_optional_string("hostname", element.hostname),
        environment=_optional_string("environment", element.environment),
    )


_Columns = tuple[str, str, str | None, bytes]  # event_type, service, user_id, data


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
    except RecursionError:
        raise EventError(f"{prefix}nested too deeply") from None
    except msgspec.ValidationError as error:
        if str(error).startswith(_NUMERIC_OVERFLOW):
            raise EventError(f"{_numeric_overflow_path(raw, where)}: {_NUMERIC_OVERFLOW}") from None
        raise EventError(f"{prefix}{_rephrase(str(error))}") from None
    except (msgspec.DecodeError, UnicodeDecodeError) as error:
        # Invalid UTF-8 raises UnicodeDecodeError before msgspec 0.23, and a DecodeError
        # without the position since: find it either way.
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as invalid:
            raise EventError(f"{prefix}invalid UTF-8 at byte {invalid.start}") from None
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


_ANY_JSON_DECODER = msgspec.json.Decoder()


def _reject_duplicate_keys(raw: bytes) -> None:
    try:
        decoded = _ANY_JSON_DECODER.decode(raw)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        decoded = None  # a number out of range, say: the exact scan decides, and the checks
        # that follow name what else is wrong
    path = duplicate_keys.find_duplicate_key(raw, decoded)
    if path is not None:
        raise EventError(f"{path}: duplicate key (an object may name each key only once)")


def _reject_nul(raw: bytes) -> None:
    value = _decode_json(raw, _OBJECT_DECODER, "")
    path = _find_string(value, "$", lambda s: "\x00" in s)
    if path is not None:
        raise EventError(
            f"{path}: contains the NUL character (\\u0000), which PostgreSQL cannot store"
        )


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

# Hyphenated, or the 32 digits alone (both PostgreSQL's uuid and the client's uuid crate read
# that form too).
_UUID = re.compile(
    r"[0-9a-fA-F]{8}(-?)[0-9a-fA-F]{4}\1[0-9a-fA-F]{4}\1[0-9a-fA-F]{4}\1[0-9a-fA-F]{12}"
)
_INTEGER_RANGES = {
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint16": (0, 2**16 - 1),
}


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


_Check = Callable[[Any], str | None]  # what is wrong with a value, or None


def _integer_check(field_type: str) -> _Check:
    low, high = _INTEGER_RANGES[field_type]

    def check(value: Any) -> str | None:
        if type(value) is not int:  # bool is an int too, and not one here
            return f"expected an integer ({field_type})"
        if not low <= value <= high:
            return f"{value} is outside the {field_type} range [{low}, {high}]"
        return None

    return check


def _float64_check(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return "expected a number"
    try:
        if value != value or abs(float(value)) > _FLOAT64_MAX:
            raise OverflowError
    except OverflowError:  # an integer too long for a double raises it too
        return "expected a finite number within float64 range"
    return None


_CHECKS: dict[str, _Check] = {
    "any-json": lambda value: None,
    "string": lambda value: None if type(value) is str else "expected a string",
    "uuid": lambda value: (
        None
        if type(value) is str and _UUID.fullmatch(value)
        else "expected a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"
    ),
    "boolean": lambda value: None if type(value) is bool else "expected a boolean",
    "float64": _float64_check,
    **{name: _integer_check(name) for name in _INTEGER_RANGES},
}
_FIELD_CHECKS: dict[str, tuple[tuple[str, bool, _Check], ...]] = {}


def _check_fields(
    event_type: EventType, values: dict[str, Any], where: str, *, require: bool
) -> None:
    checks = _FIELD_CHECKS.get(event_type.wire_type)
    if checks is None:
        checks = tuple((f.name, f.nullable, _CHECKS[f.type]) for f in event_type.fields)
        _FIELD_CHECKS[event_type.wire_type] = checks
    for name, nullable, check in checks:
        value = values.get(name, msgspec.UNSET)
        if value is None or value is msgspec.UNSET:
            if nullable or (value is msgspec.UNSET and not require):
                continue
            if value is None:
                raise EventError(f"{where}.{name}: must not be null for {event_type.wire_type}")
            raise EventError(f"{where}.{name}: required for {event_type.wire_type}")
        problem = check(value)
        if problem is not None:
            raise EventError(f"{where}.{name}: {problem}, got {_describe(value)}")


def _bounded(name: str, value: str) -> str:
    if len(value) > VARCHAR_LIMIT:
        raise EventError(f"{name}: longer than {VARCHAR_LIMIT} characters ({len(value)})")
    return value


def _optional_string(name: str, value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise EventError(f"{name}: expected a string or null, got {_describe(value)}")


def _uuid(name: str, value: Any) -> str:
    """A UUID as PostgreSQL prints it: lowercase, hyphenated."""
    if type(value) is str and _UUID.fullmatch(value):
        return canonical_uuid(value)
    raise EventError(f"{name}: expected a UUID, got {_describe(value)}")


def canonical_uuid(text: str) -> str:
    """A UUID known to be well formed, in PostgreSQL's form (the 32 digits alone get hyphens)."""
    text = text.lower()
    if len(text) == 36:
        return text
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _event_id(given: Any, index: int, idempotency_key: str | None) -> str:
    if given is not None:
        return _uuid("event_id", given)
    if idempotency_key is not None:
        return idempotent_event_id(idempotency_key, index)
    return uuid7()


def idempotent_event_id(idempotency_key: str, index: int) -> str:
    """The same key and position give the same id, so a retried request stores nothing twice."""
    return str(_idempotent_uuid(idempotency_key, index))


def _idempotent_uuid(idempotency_key: str, index: int) -> uuid.UUID:
    return uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{idempotency_key}\x1f{index}")


def uuid7(unix_ms: int | None = None) -> str:
    """A time-ordered UUID (RFC 9562 version 7): new ids land at the end of the index."""
    return str(uuid.UUID(int=uuid7_range(1, unix_ms).start))


_LAST_GROUP = 2**48 - 1  # the last 12 hex digits


def uuid7_range(count: int, unix_ms: int | None = None) -> range:
    """`count` version-7 UUIDs of one millisecond, in increasing order, as integers.

    Random bits are drawn once and the ids of a batch count up from them in their last 48
    bits (RFC 9562's "monotonic random" method, 6.2), starting low enough never to carry into
    the rest: unique within the process, and 74 random bits apart across processes. random's
    module generator is seeded from the OS and reseeded in a forked child, so two processes
    never share a sequence; ids need uniqueness, not secrecy.
    """
    milliseconds = time.time_ns() // 1_000_000 if unix_ms is None else unix_ms
    bits = random.getrandbits(74)
    start = bits & _LAST_GROUP
    if start + count > _LAST_GROUP:
        start -= count
    first = (
        (milliseconds & 0xFFFF_FFFF_FFFF) << 80
        | 0x7 << 76  # version
        | (bits >> 62) << 64  # 12 random bits
        | 0b10 << 62  # variant
        | (bits & (2**62 - 1) & ~_LAST_GROUP)  # 14 random bits
        | start
    )
    return range(first, first + count)


# --- the fast path --------------------------------------------------------------------------
#
# The usual body, shape-A events of catalog types from the platform's client, is decoded and
# validated whole by two msgspec calls: one into typed structs (a tagged union of the catalog
# types, field types and ranges checked in C), one for each event's raw bytes. It stands in
# for the per-event path only where both agree: a struct has every field the catalog gives
# its type and no other (unknown fields, variant names, shape B go the per-event way), and a
# body containing what the per-event path names precisely (a NUL or surrogate escape,
# invalid UTF-8, any refused event) is handed to it whole.

# The user_id and event_id columns need the text; msgspec matches it with `re.search`, so
# anchored with \Z (a "$" would let a trailing newline through).
_UUID_TEXT = Annotated[str, msgspec.Meta(pattern=f"^{_UUID.pattern}\\Z")]
_FAST_FIELD_TYPES: dict[str, Any] = {
    "uuid": uuid.UUID,  # parsed in C: the same two forms as _UUID
    "string": str,
    "boolean": bool,
    # msgspec's float turns 1e-20000 into 0.0: float64 fields are checked as the per-event
    # path checks them (the float hook sees their text, then _float64_check).
    "float64": Any,
    "any-json": Any,
    **{
        name: Annotated[int, msgspec.Meta(ge=low, le=high)]
        for name, (low, high) in _INTEGER_RANGES.items()
    },
}
# Read from every shape-A event whether the catalog lists them or not (see _shape_a). Here and
# in the envelope, UNSET tells a field left out from one sent, for counting the keys.
_SHAPE_A_EXTRAS: tuple[tuple[str, Any, Any], ...] = (
    ("user_id", _UUID_TEXT | None | msgspec.UnsetType, msgspec.UNSET),
    ("service", Any, msgspec.UNSET),
)
_UNSET = msgspec.UNSET


class _RawEvent(msgspec.Struct):
    event: msgspec.Raw = msgspec.Raw(b"")


_RAW_EVENTS_DECODER = msgspec.json.Decoder(list[_RawEvent])


class _TypePlan(NamedTuple):
    """What the fast path needs to know of one catalog type's struct."""

    type_field: bytes  # the event_type column, as its COPY field
    # The keys every event of the type has ("type" and its fields but the extras) plus the
    # envelope's two required ones (timestamp, event).
    key_count: int
    float64_fields: tuple[tuple[str, bool], ...]  # (name, nullable)
    any_json_fields: tuple[str, ...]  # fields that may hold objects of their own


@dataclass(frozen=True)
class _FastDecoder:
    decoder: msgspec.json.Decoder[Any]
    plans: dict[type, _TypePlan]


@functools.lru_cache(maxsize=8)
def _fast_decoder(catalog: Catalog) -> _FastDecoder:
    plans: dict[type, _TypePlan] = {}
    for event_type in catalog.types:
        if any(f.type == "any-json" and not f.nullable for f in event_type.fields):
            continue  # msgspec's Any takes null; the per-event path refuses it
        fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
        for f in event_type.fields:
            # user_id is also a column, always a UUID (see _shape_a), wanted as text.
            annotation = _UUID_TEXT if f.name == "user_id" else _FAST_FIELD_TYPES[f.type]
            # Required even when nullable (the platform's client sends null): an event that
            # leaves one out has fewer keys than counted, and goes the per-event way.
            fields.append((f.name, annotation | None if f.nullable else annotation))
        declared = {f.name for f in event_type.fields}
        extras = [extra for extra in _SHAPE_A_EXTRAS if extra[0] not in declared]
        fields += extras
        struct = msgspec.defstruct(
            f"_Fast_{event_type.wire_type}",
            fields,
            tag_field="type",
            tag=event_type.wire_type,
            forbid_unknown_fields=True,
            kw_only=True,
            gc=False,  # decoded JSON holds no reference cycles: spare the collector
        )
        plans[struct] = _TypePlan(
            type_field=copy_rows.text_field(event_type.event_type),
            key_count=3 + len(event_type.fields) - (len(_SHAPE_A_EXTRAS) - len(extras)),
            float64_fields=tuple(
                (f.name, f.nullable) for f in event_type.fields if f.type == "float64"
            ),
            any_json_fields=tuple(f.name for f in event_type.fields if f.type == "any-json"),
        )
    element = msgspec.defstruct(
        "_FastElement",
        [
            ("timestamp", str),
            ("event", Union[tuple(plans)]),  # noqa: UP007 (a Union of a runtime tuple)
            ("hostname", str | None | msgspec.UnsetType, _UNSET),
            ("environment", str | None | msgspec.UnsetType, _UNSET),
            ("event_id", _UUID_TEXT | None | msgspec.UnsetType, _UNSET),
        ],
        kw_only=True,
        # Anything else beside the event (shape B's fields, say) goes the per-event way.
        forbid_unknown_fields=True,
        gc=False,
    )
    elements = list[element]  # type: ignore[valid-type]  # a struct made at run time
    return _FastDecoder(msgspec.json.Decoder(elements, float_hook=_number), plans)


def decode_batch_fast(
    body: bytes,
    received_at: datetime,
    idempotency_key: str | None,
    catalog: Catalog,
    *,
    latest: datetime | None = None,
) -> Batch | None:
    """The batch, if every event in it is a valid shape-A event of a catalog type; else None."""
    # Escapes are rare in the client's JSON (it writes non-ASCII as UTF-8): one search for a
    # backslash (memchr, 20 times faster than searching for two bytes) usually settles it.
    if (
        b"\\" in body
        and b"\\u" in body
        and (b"\\u0000" in body or b"\\ud" in body or b"\\uD" in body)
    ):
        return None
    if not body.isascii():
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            return None
    fast = _fast_decoder(catalog)
    try:
        elements = fast.decoder.decode(body)
        raw_events = _RAW_EVENTS_DECODER.decode(body)
    except (msgspec.DecodeError, RecursionError):  # ValidationError is a DecodeError
        return None
    count = len(elements)
    if idempotency_key is None:
        new_ids: range | list[int] = uuid7_range(count)
    else:
        new_ids = [_idempotent_uuid(idempotency_key, index).int for index in range(count)]
    plans = fast.plans
    unset = _UNSET
    keys = 0  # as the decoder saw them: an object naming one twice counts it once
    tuples: list[bytes] = []
    append = tuples.append
    # Each row's COPY tuple is built here: the loop is hot, so the field helpers are bound to
    # locals. Texts repeat: each is encoded once.
    texts = copy_rows.TextFields()
    assemble = copy_rows.assemble
    timestamp_field = copy_rows.timestamp_field
    uuid_field = copy_rows.uuid_field
    uuid_value_field = copy_rows.uuid_value_field
    received_field = timestamp_field(received_at)
    latest = latest or _LATEST_TIMESTAMP
    try:
        for element, raw_event, new_id in zip(elements, raw_events, new_ids, strict=True):
            event = element.event
            service = event.service
            user_id = event.user_id
            event_id = element.event_id
            hostname = element.hostname
            environment = element.environment
            type_field, key_count, float64_fields, any_json_fields = plans[type(event)]
            keys += (
                key_count
                + (service is not unset)
                + (user_id is not unset)
                + (event_id is not unset)
                + (hostname is not unset)
                + (environment is not unset)
            )
            if type(service) is not str:
                service = UNKNOWN_SERVICE
            elif len(service) > VARCHAR_LIMIT:
                return None
            timestamp = parse_timestamp(element.timestamp)
            if timestamp > latest:
                return None
            for name, nullable in float64_fields:
                value = getattr(event, name)
                if (value is None and not nullable) or (
                    value is not None and _float64_check(value) is not None
                ):
                    return None
            for name in any_json_fields:
                keys += duplicate_keys.count_keys(getattr(event, name))
            if user_id is unset:
                user_id = None
            if hostname is unset:
                hostname = None
            if environment is unset:
                environment = None
            append(
                assemble(
                    timestamp_field(timestamp),
                    uuid_value_field(new_id)
                    if event_id is None or event_id is unset
                    else uuid_field(event_id),
                    received_field,
                    uuid_field(user_id),
                    type_field,
                    texts[service],
                    texts[hostname],
                    texts[environment],
                    raw_event.event,
                )
            )
    except ValueError:  # a timestamp; the per-event path says what is wrong with it
        return None
    # A key named twice, or a string holding '":', makes the text's count the larger: the
    # per-event path then finds which (see duplicate_keys).
    if duplicate_keys.key_ends(body) != keys:
        return None
    return Batch(received=count, tuples=tuples, row_indexes=list(range(count)))


# --- timestamps ----------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))"
)
# PostgreSQL counts time in microseconds from 2000-01-01 (POSTGRES_EPOCH); the service this
# one replaces cut the extra digits toward that epoch, which before it means one microsecond
# later.
_LATEST_TIMESTAMP = datetime.max.replace(tzinfo=UTC)


def parse_timestamp(text: str) -> datetime:
    """An RFC 3339 date-time with an offset, in UTC, cut to the microsecond.

    Digits past the microsecond are dropped, not rounded, as the service this one replaces did.
    """
    if (
        # UTC with a "Z" (chrono's Utc::now(): 2026-11-26T11:47:34.723533862Z), the usual case
        len(text) >= 20
        and text[-1] == "Z"
        and text[4] == text[7] == "-"
        and text[10] == "T"
        and text[13] == ":"
        and text[16] == ":"
        and text.isascii()
        and (len(text) == 20 or (text[19] == "." and text[20:-1].isdigit()))
    ):
        # datetime's C parser checks the rest (digits, ranges) and drops digits past the
        # microsecond. What it refuses goes the long way, for the precise reason.
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return parse_rfc3339(text)
        if moment < POSTGRES_EPOCH and text[26:-1].strip("0"):
            moment += ONE_MICROSECOND
        return moment
    return parse_rfc3339(text)


def parse_rfc3339(text: str) -> datetime:
    """parse_timestamp's long way: any offset, and the reason for a refusal."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError("expected an RFC 3339 date-time with an offset, e.g. 2026-11-26T11:47:34Z")
    year, month, day, hour, minute, second, fraction, sign, off_hours, off_minutes = match.groups()
    if second == "60":
        raise ValueError("leap seconds (:60) are not supported")
    offset = "+00:00" if sign is None else f"{sign}{off_hours}:{off_minutes}"
    microseconds = (fraction or "")[:6].ljust(6, "0")
    try:
        # The text is known to be well formed: let the C parser build the value.
        moment = datetime.fromisoformat(
            f"{year}-{month}-{day}T{hour}:{minute}:{second}.{microseconds}{offset}"
        )
        if sign is not None:
            moment = moment.astimezone(UTC)
        if moment < POSTGRES_EPOCH and fraction and fraction[6:].strip("0"):
            moment += ONE_MICROSECOND
        return moment
    except OverflowError:
        raise ValueError("outside the supported range 0001-01-01 to 9999-12-31 (UTC)") from None


def _timestamp(value: Any) -> datetime:
    if value is msgspec.UNSET or value is None:
        raise EventError("timestamp: required")
    if not isinstance(value, str):
        raise EventError(f"timestamp: expected an RFC 3339 string, got {_describe(value)}")
    try:
        return parse_timestamp(value)
    except ValueError as error:
        raise EventError(f"timestamp: {error}") from None
