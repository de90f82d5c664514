from __future__ import annotations

import pytest

from analytics_ingestion.migrations import (
    AGGREGATES,
    MIGRATIONS,
    Edition,
    aggregate_select,
    pending,
)


def test_versions_continue_the_existing_tool() -> None:
    assert [(m.version, m.name, m.phase) for m in MIGRATIONS[:2]] == [
        (1, "001_create_analytics_events", "pre"),
        (2, "002_create_analytics_aggregates", "post"),
    ]
    assert [m.version for m in MIGRATIONS] == sorted({m.version for m in MIGRATIONS})


@pytest.mark.parametrize(
    ("applied", "phase", "expected"),
    [
        pytest.param([], "all", [1, 2, 3, 4, 5, 6], id="empty-all"),
        pytest.param([], "pre", [1, 3, 4, 5], id="empty-pre"),
        pytest.param([], "post", [2, 6], id="empty-post"),
        pytest.param([1, 2], "all", [3, 4, 5, 6], id="existing-deployment"),
        pytest.param([1, 2, 3, 4], "all", [5, 6], id="previous-release"),
        pytest.param([1, 2, 3, 4, 5, 6], "all", [], id="up-to-date"),
    ],
)
def test_pending(applied: list[int], phase: str, expected: list[int]) -> None:
    assert [m.version for m in pending(applied, phase)] == expected


def test_pending_until_a_version() -> None:
    assert [m.version for m in pending([], "all", until=4)] == [1, 2, 3, 4]


@pytest.mark.parametrize("edition", list(Edition), ids=lambda e: e.name)
def test_exactly_once_by_unique_index_unless_compression_rules_it_out(edition: Edition) -> None:
    index = MIGRATIONS[4].sql_for(edition)
    dropped = MIGRATIONS[5].sql_for(edition)
    if edition is Edition.TIMESCALE:
        assert (index, dropped) == ("", "")  # the key table stays
    else:
        assert "UNIQUE INDEX IF NOT EXISTS idx_analytics_events_event_identity" in index
        assert 'ON analytics_events (event_id, "timestamp")' in index
        assert "DROP TABLE IF EXISTS analytics_event_keys" in dropped


def test_timescale_license_gets_everything() -> None:
    first, second = MIGRATIONS[0], MIGRATIONS[1]
    assert first.left_out(Edition.TIMESCALE) == []
    sql = first.sql_for(Edition.TIMESCALE) + second.sql_for(Edition.TIMESCALE)
    for fragment in (
        "create_hypertable",
        "INTERVAL '1 day'",
        "add_compression_policy",
        "INTERVAL '7 days'",
        "add_retention_policy",
        "INTERVAL '90 days'",
        "timescaledb.compress_segmentby = 'event_type, service'",
    ):
        assert fragment in sql
    assert sql.count("WITH (timescaledb.continuous)") == 7
    assert sql.count("add_continuous_aggregate_policy") == 7
    assert "start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour'" in sql
    assert sql.count("CREATE INDEX IF NOT EXISTS idx_analytics_") == 4 + 7


@pytest.mark.parametrize("edition", [Edition.APACHE, Edition.POSTGRES], ids=lambda e: e.name)
def test_other_editions_get_views_and_say_what_is_left_out(edition: Edition) -> None:
    sql = MIGRATIONS[1].sql_for(edition)
    assert sql.count("CREATE OR REPLACE VIEW") == 7
    assert "timescaledb" not in sql
    left_out = MIGRATIONS[0].left_out(edition) + MIGRATIONS[1].left_out(edition)
    assert "compression after 7 days and retention of 90 days" in left_out
    assert ("create_hypertable" in MIGRATIONS[0].sql_for(edition)) is (edition is Edition.APACHE)


@pytest.mark.parametrize("name", AGGREGATES)
def test_aggregate_templates_fill_every_placeholder(name: str) -> None:
    for continuous in (True, False):
        select = aggregate_select(name, continuous)
        assert "{" not in select
        assert ("time_bucket" in select) is continuous
