from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from analytics_client.identifiers import Uuid7Generator, format_uuid7, normalise_event_id


def counting_bits(values: list[int]) -> Iterator[int]:
    yield from values


def generator_drawing(*draws: int) -> Uuid7Generator:
    supply = iter(draws)
    return Uuid7Generator(random_bits=lambda bits: next(supply))


def test_a_uuid7_carries_its_millisecond_version_and_variant() -> None:
    value = uuid.UUID(format_uuid7(1_795_000_000_123, 12345))
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert value.int >> 80 == 1_795_000_000_123


def test_ids_within_one_millisecond_count_up() -> None:
    generator = generator_drawing(41)
    ids = [generator.next(1000) for _ in range(3)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 3
    assert [uuid.UUID(i).int & 0xFF for i in ids] == [41, 42, 43]


def test_a_clock_going_back_never_makes_ids_go_back() -> None:
    generator = generator_drawing(5, 9)
    later = generator.next(2000)
    earlier_clock = generator.next(1999)
    assert earlier_clock > later
    assert uuid.UUID(earlier_clock).int >> 80 == 2000


def test_the_random_part_running_out_moves_to_the_next_millisecond() -> None:
    generator = generator_drawing(2**74 - 1, 7)
    generator.next(3000)  # the largest random part: the next must carry
    carried = uuid.UUID(generator.next(3000))
    assert carried.int >> 80 == 3001
    assert carried.int & 0xFF == 7


def test_a_reset_draws_again_instead_of_continuing() -> None:
    generator = generator_drawing(100, 500)
    first = generator.next(4000)
    generator.reset()  # what a forked child does
    assert uuid.UUID(generator.next(4000)).int & 0xFFFF == 500
    assert uuid.UUID(first).int & 0xFFFF == 100


def test_a_fork_that_ran_no_hooks_draws_again(monkeypatch: pytest.MonkeyPatch) -> None:
    generator = generator_drawing(100, 500)
    generator.next(4000)
    parent = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: parent + 1)  # a C extension's fork
    assert uuid.UUID(generator.next(4000)).int & 0xFFFF == 500  # not the parent's 101


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        pytest.param(uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001", id="uuid-object"),
        pytest.param(
            "0B8F8F5E-3C8A-4D51-9D47-1F0E2F3C4A5B",
            "0b8f8f5e-3c8a-4d51-9d47-1f0e2f3c4a5b",
            id="uppercase",
        ),
        pytest.param(
            "0b8f8f5e3c8a4d519d471f0e2f3c4a5b",
            "0b8f8f5e-3c8a-4d51-9d47-1f0e2f3c4a5b",
            id="no-hyphens",
        ),
    ],
)
def test_given_ids_are_stored_in_the_services_form(given: uuid.UUID | str, stored: str) -> None:
    assert normalise_event_id(given) == stored


@pytest.mark.parametrize(
    "given",
    [
        pytest.param("not-a-uuid", id="text"),
        pytest.param("{0b8f8f5e-3c8a-4d51-9d47-1f0e2f3c4a5b}", id="braces"),
        pytest.param("0b8f8f5e-3c8a4d51-9d47-1f0e2f3c4a5b", id="mixed-hyphens"),
        pytest.param(42, id="number"),
    ],
)
def test_other_ids_are_refused(given: object) -> None:
    with pytest.raises(ValueError, match="event_id"):
        normalise_event_id(given)  # type: ignore[arg-type]
