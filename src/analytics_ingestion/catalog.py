"""The event types the platform's client sends, loaded from `catalog.json`.

The catalog maps the client's `event.type` tag (the wire type) to the name stored in
`analytics_events.event_type`, and lists each type's fields with their types. The two
differ only for the OAuth pair: serde writes `OAuthFlowStarted` as `o_auth_flow_started`,
the table holds `oauth_flow_started`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

FIELD_TYPES = ("uuid", "string", "boolean", "int32", "int64", "uint16", "float64", "any-json")


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    nullable: bool


@dataclass(frozen=True)
class EventType:
    variant: str
    wire_type: str
    event_type: str
    fields: tuple[Field, ...]


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one per process
class Catalog:
    types: tuple[EventType, ...]
    by_name: dict[str, EventType]  # wire tag, stored name and variant name -> type

    @classmethod
    def of(cls, types: tuple[EventType, ...]) -> Catalog:
        by_name: dict[str, EventType] = {}
        for event_type in types:
            for name in (event_type.wire_type, event_type.event_type, event_type.variant):
                by_name.setdefault(name, event_type)
        return cls(types, by_name)

    def find(self, name: str) -> EventType | None:
        """The type for a wire tag, a stored name or a variant name."""
        return self.by_name.get(name)


_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def snake_case(name: str) -> str:
    """`TaskCreated` -> `task_created`; `HTTPRequestSent` -> `http_request_sent`."""
    return _CAMEL_BOUNDARY.sub("_", name).lower()


def canonical_event_type(name: str, catalog: Catalog) -> str:
    """The stored name for an event type given by wire tag, stored name or variant name.

    A type the catalog does not know yet keeps its snake_case spelling: the catalog grows,
    and an unknown type is not a malformed one.
    """
    known = catalog.find(name)
    if known is not None:
        return known.event_type
    return snake_case(name) if any(c.isupper() for c in name) else name


def parse_catalog(document: dict[str, object]) -> Catalog:
    events = document["events"]
    if not isinstance(events, list):
        raise ValueError("catalog: 'events' must be a list")
    types = []
    for entry in events:
        fields = tuple(
            Field(name=f["name"], type=f["type"], nullable=bool(f["nullable"]))
            for f in entry["fields"]
        )
        for field in fields:
            if field.type not in FIELD_TYPES:
                raise ValueError(f"catalog: {entry['variant']}.{field.name}: type {field.type}")
        types.append(
            EventType(
                variant=entry["variant"],
                wire_type=entry["wire_type"],
                event_type=entry["event_type"],
                fields=fields,
            )
        )
    return Catalog.of(tuple(types))


@cache
def load_catalog() -> Catalog:
    text = resources.files("analytics_ingestion").joinpath("catalog.json").read_text("utf-8")
    return parse_catalog(json.loads(text))
