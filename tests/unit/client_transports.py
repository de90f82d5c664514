"""Transports for the client's unit tests (scripted answers, and one that never answers), and
failures to inject: a compression, the reading of an answer."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import threading

import pytest

from analytics_client import outcome
from analytics_client.recording import RecordedRequest, RecordingTransport, accept_all
from analytics_client.transport import HttpRequest, HttpResponse, TransportError


def answer(status: int, body: object = None, **headers: str) -> HttpResponse:
    content = b"" if body is None else json.dumps(body).encode()
    return HttpResponse(
        status, {name.replace("_", "-"): value for name, value in headers.items()}, content
    )


class ScriptedTransport(RecordingTransport):
    """Answers from a script, one entry per request (an exception is raised), then accepts."""

    def __init__(self, *script: HttpResponse | Exception) -> None:
        super().__init__(self._next)
        self.script = list(script)

    def _next(self, request: RecordedRequest) -> HttpResponse:
        if self.script:
            entry = self.script.pop(0)
            if isinstance(entry, Exception):
                raise entry
            return entry
        return accept_all(request)


class SilentTransport(RecordingTransport):
    """Never answers: a send blocks until `abort`, like a request to a hung server."""

    def __init__(self) -> None:
        super().__init__()
        self.aborted = threading.Event()
        self.sending = threading.Event()

    def send(self, request: HttpRequest, timeout: float) -> HttpResponse:
        self.sending.set()
        self.aborted.wait()
        raise TransportError("aborted")

    def abort(self) -> None:
        self.aborted.set()


class AsyncSilentTransport:
    def __init__(self) -> None:
        self.sending = asyncio.Event()
        self.cancelled = False

    async def send(self, request: HttpRequest, timeout: float) -> HttpResponse:  # noqa: ASYNC109
        self.sending.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        raise AssertionError("unreachable")

    async def close(self) -> None:
        pass


def gzip_failing(monkeypatch: pytest.MonkeyPatch, calls: range) -> None:
    """`gzip.compress` raises MemoryError at these calls (counted from 0)."""
    compress = gzip.compress
    numbers = itertools.count()

    def failing(data: bytes, compresslevel: int = 9, *, mtime: float | None = None) -> bytes:
        if next(numbers) in calls:
            raise MemoryError
        return compress(data, compresslevel, mtime=mtime)

    monkeypatch.setattr(gzip, "compress", failing)


# What a batch answered only so is lost with, once past its retry deadline.
UNREADABLE_ANSWER = (
    "not delivered within the retry deadline (last: HTTP 503 with an answer that cannot be"
    " read: ValueError: no such number)"
)


def unreadable_answers(monkeypatch: pytest.MonkeyPatch) -> ScriptedTransport:
    """Every answer a 503 whose `Retry-After` cannot be read: reading it raises."""

    def unreadable(value: str | None, now_unix: float) -> float:
        raise ValueError("no such number")

    monkeypatch.setattr(outcome, "parse_retry_after", unreadable)
    return ScriptedTransport(*[answer(503, retry_after="1")] * 100)
