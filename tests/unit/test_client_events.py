"""The typed helpers against the service's catalog: they cannot drift apart."""

from __future__ import annotations

import dataclasses
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from analytics_client import events
from analytics_client.events import EVENT_TYPES, EVENT_TYPES_BY_NAME, Event

CATALOG = json.loads(
    (Path(__file__).parents[2] / "src/analytics_ingestion/catalog.json").read_text("utf-8")
)["events"]


def test_one_helper_per_catalog_type_in_the_catalogs_order() -> None:
    assert [helper.__name__ for helper in EVENT_TYPES] == [entry["variant"] for entry in CATALOG]


@pytest.mark.parametrize(
    ("helper", "entry"),
    [pytest.param(h, e, id=e["variant"]) for h, e in zip(EVENT_TYPES, CATALOG, strict=True)],
)
def test_helper_matches_its_catalog_entry(helper: type[Event], entry: dict[str, Any]) -> None:
    assert helper.wire_type == entry["wire_type"]
    assert helper.stored_name() == entry["event_type"]
    assert [(f.name, f.type, f.nullable) for f in helper.field_specs()] == [
        (f["name"], f["type"], f["nullable"]) for f in entry["fields"]
    ]


def test_nullable_fields_default_to_none_and_the_others_are_required() -> None:
    for helper in EVENT_TYPES:
        for spec, field in zip(helper.field_specs(), dataclasses.fields(helper), strict=True):
            has_default = field.default is not dataclasses.MISSING
            assert has_default is spec.nullable, f"{helper.__name__}.{spec.name}"


def test_helpers_are_frozen() -> None:
    event = events.ProjectDeleted(project_id=uuid.uuid4(), user_id=uuid.uuid4())
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.project_id = uuid.uuid4()  # type: ignore[misc]


@pytest.mark.parametrize(
    ("name", "helper"),
    [
        pytest.param("o_auth_flow_started", events.OAuthFlowStarted, id="wire-tag"),
        pytest.param("oauth_flow_started", events.OAuthFlowStarted, id="stored-name"),
        pytest.param("OAuthFlowStarted", events.OAuthFlowStarted, id="class-name"),
        pytest.param("task_created", events.TaskCreated, id="plain"),
    ],
)
def test_types_are_found_by_each_of_their_names(name: str, helper: type[Event]) -> None:
    assert EVENT_TYPES_BY_NAME[name] is helper
