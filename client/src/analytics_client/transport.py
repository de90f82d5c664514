"""Sending a request body to the service: the types every transport shares, the request the
client sends, and the threaded client's transport on `http.client`.

    TransportError      no answer: the connection failed or the answer did not come in time

A transport sends one request and returns the answer, whatever its status; what the answer
means is `outcome.py`'s business, and the client retries.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from analytics_client.batching import ClosedBatch
from analytics_client.options import Options
from analytics_client.processes import ProcessCheck

PATH = "/events/batch"
USER_AGENT = "adi-analytics-client/0.1.0"


class TransportError(Exception):
    """The request got no answer: the connection failed, broke, or timed out."""


@dataclass(frozen=True)
class HttpRequest:
    body: bytes
    headers: Mapping[str, str]


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]  # names in lowercase
    body: bytes


class Transport(Protocol):
    """What the threaded client sends with."""

    def send(self, request: HttpRequest, timeout: float) -> HttpResponse:
        """Raises `TransportError` when there is no answer within `timeout` seconds."""
        ...

    def abort(self) -> None:
        """Called from another thread at shutdown: end a `send` in progress, now."""
        ...

    def close(self) -> None: ...


class AsyncTransport(Protocol):
    """What the asyncio client sends with."""

    # The timeout is the client's to choose per request (bounded by shutdown's deadline).
    async def send(self, request: HttpRequest, timeout: float) -> HttpResponse: ...  # noqa: ASYNC109

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Endpoint:
    """Where `POST /events/batch` goes, from the service's base URL."""

    scheme: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"invalid endpoint {url!r}: expected http://host[:port] or https://")
        path = parts.path.rstrip("/")
        if not path.endswith(PATH):
            path += PATH
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port, path)

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default_port = 443 if self.scheme == "https" else 80
        return host if self.port == default_port else f"{host}:{self.port}"


def batch_request(batch: ClosedBatch, options: Options) -> HttpRequest:
    headers = {
        "Content-Type": "application/json",
        "Idempotency-Key": batch.key,
        "User-Agent": USER_AGENT,
    }
    if batch.compressed:
        headers["Content-Encoding"] = "gzip"
    if options.write_key:
        headers["Authorization"] = f"Bearer {options.write_key}"
    return HttpRequest(batch.body, headers)


# A kept-alive connection the service has closed in the meantime fails with one of these
# before any answer: the request is sent again at once, on a new connection.
STALE_CONNECTION_ERRORS = (
    http.client.RemoteDisconnected,
    ConnectionResetError,
    BrokenPipeError,
    ConnectionAbortedError,
)


class HttpTransport:
    """HTTP/1.1 over `http.client`, one kept-alive connection. The timeout bounds the connect
    and each read."""

    def __init__(self, endpoint: str, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.endpoint = Endpoint.parse(endpoint)
        self._ssl_context = ssl_context
        self._connection: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()  # between send and abort, which run in different threads
        self._aborted = False
        self._process = ProcessCheck()

    def send(self, request: HttpRequest, timeout: float) -> HttpResponse:
        self._check_process()
        with self._lock:
            self._aborted = False
            reused = self._connection is not None
        try:
            return self._exchange(request, timeout)
        except (OSError, http.client.HTTPException) as error:
            self._drop()
            if not (reused and isinstance(error, STALE_CONNECTION_ERRORS) and not self._aborted):
                raise TransportError(describe(error)) from error
        try:
            return self._exchange(request, timeout)
        except (OSError, http.client.HTTPException) as error:
            self._drop()
            raise TransportError(describe(error)) from error

    def abort(self) -> None:
        self._check_process()
        with self._lock:
            self._aborted = True
            connection = self._connection
        sock = connection.sock if connection is not None else None
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked reading it

    def close(self) -> None:
        self._check_process()
        self._drop()

    def _check_process(self) -> None:
        if self._process.forked():
            # The connection is the parent's, and so may be the lock (held by a thread that did
            # not come along). Leave both to the parent.
            self._connection = None
            self._lock = threading.Lock()

    def _exchange(self, request: HttpRequest, timeout: float) -> HttpResponse:
        with self._lock:
            if self._aborted:
                raise TransportError("aborted")
            connection = self._connection
            if connection is None:
                connection = self._connection = self._new_connection(timeout)
        if connection.sock is not None:
            connection.sock.settimeout(timeout)
        else:
            connection.timeout = timeout
        connection.request("POST", self.endpoint.path, body=request.body, headers=request.headers)
        response = connection.getresponse()
        body = response.read()
        headers = {name.lower(): value for name, value in response.getheaders()}
        if response.will_close:
            self._drop()
        return HttpResponse(response.status, headers, body)

    def _new_connection(self, timeout: float) -> http.client.HTTPConnection:
        endpoint = self.endpoint
        if endpoint.scheme == "https":
            return http.client.HTTPSConnection(
                endpoint.host,
                endpoint.port,
                timeout=timeout,
                context=self._ssl_context or ssl.create_default_context(),
            )
        return http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=timeout)

    def _drop(self) -> None:
        with self._lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


def describe(error: BaseException) -> str:
    """An error as a failure's reason: its type, and its message when it has one."""
    text = str(error) or ("no answer in time" if isinstance(error, TimeoutError) else "")
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
