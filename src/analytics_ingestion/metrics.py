"""Counters of what the service did, served at `/metrics` in Prometheus' text format.

Kept in the process (one set per instance); a request adds to them once it is answered.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

_HELP = {
    "analytics_requests_total": ("counter", "POST /events/batch requests by answer status"),
    "analytics_events_received_total": ("counter", "events in answered requests"),
    "analytics_events_accepted_total": ("counter", "events stored"),
    "analytics_events_duplicate_total": ("counter", "events already stored (retries)"),
    "analytics_events_rejected_total": (
        "counter",
        "events refused and dead-lettered, by stage (validation or database)",
    ),
    "analytics_flushes_total": ("counter", "transactions written by the writer"),
    "analytics_flushed_rows_total": ("counter", "events and dead letters in those transactions"),
    "analytics_queue_events": ("gauge", "events waiting for a flush"),
}


@dataclass
class Metrics:
    counts: Counter[tuple[str, tuple[tuple[str, str], ...]]] = field(default_factory=Counter)

    def add(self, name: str, amount: int = 1, **labels: str) -> None:
        self.counts[(name, tuple(sorted(labels.items())))] += amount

    def value(self, name: str, **labels: str) -> int:
        return self.counts[(name, tuple(sorted(labels.items())))]

    def render(self, gauges: dict[str, int]) -> str:
        samples: dict[str, list[str]] = {name: [] for name in _HELP}
        for (name, labels), value in sorted(self.counts.items()):
            shown = ",".join(f'{key}="{label}"' for key, label in labels)
            samples[name].append(f"{name}{{{shown}}} {value:g}" if shown else f"{name} {value:g}")
        for name, value in gauges.items():
            samples[name].append(f"{name} {value:g}")
        lines = []
        for name, (kind, help_text) in _HELP.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *samples[name]]
        return "\n".join(lines) + "\n"
