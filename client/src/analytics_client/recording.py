"""A transport that keeps what it is sent instead of sending it, for tests.

    transport = RecordingTransport()
    client = AnalyticsClient("http://analytics.test", transport=transport)
    ...
    client.flush()
    assert [event["event"]["type"] for event in transport.events] == ["task_created"]

It answers as the service does, 200 with the counts; `respond` answers otherwise (a 503, a
rejected event...). `asynchronous()` is the same recording for the asyncio client.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from analytics_client.events import Event
from analytics_client.transport import HttpRequest, HttpResponse


@dataclass
class RecordedRequest:
    headers: dict[str, str]
    body: bytes  # as sent (compressed when the client compresses)
    response: HttpResponse | None = None  # None while answering, or when answering raised

    @property
    def events(self) -> list[dict[str, Any]]:
        body = self.body
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        document: list[dict[str, Any]] = json.loads(body)
        return document


Responder = Callable[[RecordedRequest], HttpResponse]


def accept_all(request: RecordedRequest) -> HttpResponse:
    count = len(request.events)
    body = {"received": count, "accepted": count, "duplicates": 0, "rejected": []}
    return HttpResponse(200, {"content-type": "application/json"}, json.dumps(body).encode())


class RecordingTransport:
    """Records every request, and answers with `respond` (by default, everything stored)."""

    def __init__(self, respond: Responder = accept_all) -> None:
        self.respond = respond
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()

    def send(self, request: HttpRequest, timeout: float) -> HttpResponse:
        recorded = RecordedRequest(dict(request.headers), request.body)
        with self._lock:
            self._requests.append(recorded)
        recorded.response = self.respond(recorded)
        return recorded.response

    def abort(self) -> None:
        pass  # a recording never blocks

    def close(self) -> None:
        pass

    def asynchronous(self) -> AsyncRecordingTransport:
        """The same recording, for `AsyncAnalyticsClient`."""
        return AsyncRecordingTransport(self)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def events(self) -> list[dict[str, Any]]:
        """The events a service answering so would hold: those of requests answered 2xx and
        not rejected, once each (retries stored once), in the order sent."""
        seen: set[Any] = set()
        events = []
        for request in self.requests:
            response = request.response
            if response is None or not 200 <= response.status < 300:
                continue
            rejected = _rejected_indexes(response)
            for index, event in enumerate(request.events):
                if index not in rejected and event.get("event_id") not in seen:
                    seen.add(event.get("event_id"))
                    events.append(event)
        return events

    def events_of(self, event_type: type[Event] | str) -> list[dict[str, Any]]:
        """The events of one type: a helper class, a shape-A tag or a flat event's name."""
        name = event_type if isinstance(event_type, str) else event_type.wire_type
        return [event for event in self.events if _type_of(event) == name]

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()


class AsyncRecordingTransport:
    def __init__(self, recording: RecordingTransport) -> None:
        self.recording = recording

    async def send(self, request: HttpRequest, timeout: float) -> HttpResponse:  # noqa: ASYNC109
        return self.recording.send(request, timeout)

    async def close(self) -> None:
        pass


def _rejected_indexes(response: HttpResponse) -> set[int]:
    try:
        document = json.loads(response.body)
        return {int(entry["index"]) for entry in document.get("rejected", [])}
    except (ValueError, TypeError, KeyError, AttributeError):
        return set()


def _type_of(event: dict[str, Any]) -> Any:
    inner = event.get("event")
    return inner.get("type") if isinstance(inner, dict) else event.get("event_type")
