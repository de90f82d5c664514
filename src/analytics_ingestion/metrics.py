"""What the service did, served at `/metrics` in Prometheus' text format.

Counters and histograms kept in the process (one set per instance); a request adds to them
once it is answered, a flush once it is written.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field

_HELP = {
    "analytics_requests_total": ("counter", "POST /events/batch requests by answer status"),
    "analytics_request_seconds": ("histogram", "time to answer POST /events/batch"),
    "analytics_events_received_total": ("counter", "events in answered requests"),
    "analytics_events_accepted_total": ("counter", "events stored"),
    "analytics_events_duplicate_total": ("counter", "events already stored (retries)"),
    "analytics_events_rejected_total": ("counter", "events refused and dead-lettered, by reason"),
    "analytics_flushes_total": ("counter", "transactions written by the writer"),
    "analytics_flushed_rows_total": ("counter", "events and dead letters in those transactions"),
    "analytics_flush_events": ("histogram", "events and dead letters per flush"),
    "analytics_flush_seconds": ("histogram", "time to write one flush"),
    "analytics_database_errors_total": (
        "counter",
        "flushes that failed, by kind (unavailable, refused, unexpected)",
    ),
    "analytics_queue_events": ("gauge", "events waiting for a flush"),
}
_BUCKETS = {
    "analytics_request_seconds": (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    "analytics_flush_seconds": (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    "analytics_flush_events": (1, 10, 100, 500, 1000, 2500, 5000, 10000, 50000),
}

_Key = tuple[str, tuple[tuple[str, str], ...]]


def _number(value: float) -> str:
    """Every digit: an int as it is, a float as repr gives it (the shortest exact form)."""
    return str(value) if isinstance(value, int) else repr(float(value))


@dataclass
class _Histogram:
    bounds: tuple[float, ...]
    counts: list[int]
    total: float = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value


@dataclass
class Metrics:
    counts: Counter[_Key] = field(default_factory=Counter)
    histograms: dict[str, _Histogram] = field(default_factory=dict)

    def add(self, name: str, amount: int = 1, **labels: str) -> None:
        self.counts[(name, tuple(sorted(labels.items())))] += amount

    def value(self, name: str, **labels: str) -> int:
        return self.counts[(name, tuple(sorted(labels.items())))]

    def observe(self, name: str, value: float) -> None:
        histogram = self.histograms.get(name)
        if histogram is None:
            bounds = _BUCKETS[name]
            histogram = self.histograms[name] = _Histogram(bounds, [0] * (len(bounds) + 1))
        histogram.observe(value)

    def render(self, gauges: dict[str, int]) -> str:
        samples: dict[str, list[str]] = {name: [] for name in _HELP}
        for (name, labels), value in sorted(self.counts.items()):
            shown = ",".join(f'{key}="{label}"' for key, label in labels)
            samples[name].append(
                f"{name}{{{shown}}} {_number(value)}" if shown else f"{name} {_number(value)}"
            )
        for name, histogram in sorted(self.histograms.items()):
            cumulative = 0
            for bound, count in zip(
                [*histogram.bounds, float("inf")], histogram.counts, strict=True
            ):
                cumulative += count
                le = "+Inf" if bound == float("inf") else f"{bound:g}"
                samples[name].append(f'{name}_bucket{{le="{le}"}} {cumulative}')
            samples[name] += [
                f"{name}_sum {_number(histogram.total)}",
                f"{name}_count {cumulative}",
            ]
        for name, value in gauges.items():
            samples[name].append(f"{name} {_number(value)}")
        lines = []
        for name, (kind, help_text) in _HELP.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *samples[name]]
        return "\n".join(lines) + "\n"
