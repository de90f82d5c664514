from __future__ import annotations

import pytest

from analytics_ingestion.catalog import canonical_event_type, load_catalog, snake_case


def test_the_catalog_has_34_types_with_unique_tags() -> None:
    catalog = load_catalog()
    assert len(catalog.types) == 34
    assert len({t.wire_type for t in catalog.types}) == 34


@pytest.mark.parametrize(
    ("name", "stored"),
    [
        pytest.param("o_auth_flow_started", "oauth_flow_started", id="oauth-wire-tag"),
        pytest.param("OAuthFlowCompleted", "oauth_flow_completed", id="oauth-variant"),
        pytest.param("ApiRequest", "api_request", id="variant"),
        pytest.param("api_request", "api_request", id="stored"),
        pytest.param("new_thing", "new_thing", id="unknown-snake"),
        pytest.param("NewThing", "new_thing", id="unknown-camel"),
    ],
)
def test_canonical_event_type(name: str, stored: str) -> None:
    assert canonical_event_type(name, load_catalog()) == stored


@pytest.mark.parametrize(
    ("name", "snake"),
    [("TaskCreated", "task_created"), ("HTTPRequestSent", "http_request_sent"), ("A1B", "a1_b")],
)
def test_snake_case(name: str, snake: str) -> None:
    assert snake_case(name) == snake
