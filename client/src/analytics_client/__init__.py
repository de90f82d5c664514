"""A client for the analytics ingestion service: track events without blocking, deliver each
exactly once."""

from analytics_client.options import Options
from analytics_client.results import (
    Counters,
    Failure,
    FailureKind,
    FlushReport,
    Loss,
    Refusal,
    TrackResult,
)

__all__ = [
    "Counters",
    "Failure",
    "FailureKind",
    "FlushReport",
    "Loss",
    "Options",
    "Refusal",
    "TrackResult",
]
__version__ = "0.1.0"
