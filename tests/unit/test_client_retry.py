"""Backoff with full jitter, Retry-After, and the client-wide gate."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from analytics_client.retry import MAX_RETRY_AFTER, Backoff, Gate, parse_retry_after

BACKOFF = Backoff(base=0.5, cap=30.0)


def highest(low: float, high: float) -> float:
    return high


def lowest(low: float, high: float) -> float:
    return low


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [
        pytest.param(1, 0.5, id="first"),
        pytest.param(2, 1.0, id="doubles"),
        pytest.param(6, 16.0, id="sixth"),
        pytest.param(7, 30.0, id="capped"),
        pytest.param(10_000, 30.0, id="far-past-the-cap"),
    ],
)
def test_the_delay_is_drawn_up_to_an_exponential_ceiling(attempt: int, ceiling: float) -> None:
    assert BACKOFF.delay(attempt, highest) == ceiling
    assert BACKOFF.delay(attempt, lowest) == 0.0  # full jitter: down to nothing


@pytest.mark.parametrize(
    ("retry_after", "draw", "delay"),
    [
        pytest.param(None, highest, 1.0, id="no-retry-after"),
        pytest.param(5.0, highest, 5.0, id="retry-after-longer"),
        pytest.param(0.25, highest, 1.0, id="backoff-longer"),
        pytest.param(5.0, lowest, 5.0, id="never-shorter-than-asked"),
    ],
)
def test_retry_after_is_a_floor_for_the_delay(
    retry_after: float | None, draw: object, delay: float
) -> None:
    assert BACKOFF.delay_after(2, retry_after, draw) == delay  # type: ignore[arg-type]


NOW = datetime(2026, 11, 27, 11, 0, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        pytest.param("120", 120.0, id="seconds"),
        pytest.param(" 3 ", 3.0, id="spaces"),
        pytest.param("1.5", 1.5, id="fraction"),
        pytest.param("Fri, 27 Nov 2026 11:00:30 GMT", 30.0, id="http-date"),
        pytest.param("Fri, 27 Nov 2026 11:00:30 -0000", 30.0, id="http-date-minus-zero"),
        pytest.param("Fri, 27 Nov 2026 10:00:00 GMT", 0.0, id="date-in-the-past"),
        pytest.param(None, None, id="absent"),
        pytest.param("soon", None, id="garbage"),
        pytest.param("-5", None, id="negative"),
        pytest.param("nan", None, id="nan"),
        pytest.param("Fri, 99 Nov 2026 11:00:30 GMT", None, id="impossible-date"),
        pytest.param("86400", MAX_RETRY_AFTER, id="a-day-is-capped"),
        pytest.param("9" * 400, MAX_RETRY_AFTER, id="more-digits-than-a-float-holds"),
        pytest.param("Fri, 31 Dec 9999 23:59:59 GMT", MAX_RETRY_AFTER, id="far-future-date"),
        pytest.param("inf", None, id="infinity"),
        pytest.param("1e3", None, id="exponent"),
        pytest.param("-0", None, id="negative-zero"),
        pytest.param("\u00b2", None, id="superscript-two"),
        pytest.param("\u0661\u0662\u0660", None, id="arabic-indic-digits"),
        pytest.param("1\uff10", None, id="fullwidth-digit"),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, NOW) == seconds


def test_the_gate_holds_until_the_latest_moment_it_was_given() -> None:
    gate = Gate()
    assert gate.not_before < 0.0
    gate.hold_until(105.0)
    gate.hold_until(103.0)  # an earlier one does not shorten it
    assert gate.not_before == 105.0
