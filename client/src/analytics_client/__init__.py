"""A client for the analytics ingestion service: track events without blocking, deliver each
exactly once.

    from analytics_client import AnalyticsClient, Options
    from analytics_client.events import TaskCreated

    client = AnalyticsClient("http://analytics:8094", Options(write_key="..."))
    client.track(TaskCreated(task_id=task.id, user_id=user.id, command="ls -la"))
"""

from analytics_client.aio import AsyncAnalyticsClient
from analytics_client.client import AnalyticsClient
from analytics_client.options import Options
from analytics_client.recording import RecordingTransport
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
    "AnalyticsClient",
    "AsyncAnalyticsClient",
    "Counters",
    "Failure",
    "FailureKind",
    "FlushReport",
    "Loss",
    "Options",
    "RecordingTransport",
    "Refusal",
    "TrackResult",
]
__version__ = "0.1.0"
