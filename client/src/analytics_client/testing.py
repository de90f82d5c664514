"""A pytest plugin (registered by the package): the `analytics_recorder` fixture.

    def test_signup_tracks_the_login(analytics_recorder):
        app = create_app(analytics=analytics_recorder.client)
        app.sign_up("dev@example.com")
        [login] = analytics_recorder.events_of(AuthLoginAttempt)
        assert login["event"]["success"] is True

The recorder's client sends to a `RecordingTransport` instead of the network; reading the
events flushes it first. `async_client` is the asyncio twin, on the same recording.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterator
from typing import Any

import pytest

from analytics_client.aio import AsyncAnalyticsClient
from analytics_client.client import AnalyticsClient
from analytics_client.events import Event
from analytics_client.options import Options
from analytics_client.recording import RecordedRequest, RecordingTransport

ENDPOINT = "http://analytics.invalid"


class AnalyticsRecorder:
    def __init__(self, options: Options | None = None) -> None:
        self.transport = RecordingTransport()
        self.options = options or Options(hostname="test", environment="test")
        self.client = AnalyticsClient(ENDPOINT, self.options, transport=self.transport)
        self._async_client: AsyncAnalyticsClient | None = None

    @property
    def async_client(self) -> AsyncAnalyticsClient:
        if self._async_client is None:
            self._async_client = AsyncAnalyticsClient(
                ENDPOINT, self.options, transport=self.transport.asynchronous()
            )
        return self._async_client

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event either client sent, once each, in order; the threaded client is flushed
        first (for the asyncio client's, `await recorder.async_client.flush()` before)."""
        self.client.flush()
        return self.transport.events

    def events_of(self, event_type: type[Event] | str) -> list[dict[str, Any]]:
        self.client.flush()
        return self.transport.events_of(event_type)

    @property
    def requests(self) -> list[RecordedRequest]:
        self.client.flush()
        return self.transport.requests

    def close(self) -> None:
        """Shut both clients down: what they still hold is sent first."""
        self.client.shutdown(timeout=1.0)
        if self._async_client is not None:
            shutdown = self._async_client.shutdown(timeout=1.0)
            # In a thread of its own: this one may be running a loop (an async test's).
            with concurrent.futures.ThreadPoolExecutor(max_workers=1) as executor:
                executor.submit(asyncio.run, shutdown).result()


@pytest.fixture
def analytics_recorder() -> Iterator[AnalyticsRecorder]:
    recorder = AnalyticsRecorder()
    yield recorder
    recorder.close()
