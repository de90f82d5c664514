"""The transports: the endpoint, the request, HTTP/1.1 as the asyncio transport reads it, and
both HTTP transports against a local server (kept-alive connections, a server that closes
them, one that never answers)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from analytics_client import Options
from analytics_client.async_transport import (
    AsyncHttpTransport,
    ProtocolError,
    _read_body,
    _read_head,
)
from analytics_client.batching import seal
from analytics_client.transport import (
    Endpoint,
    HttpRequest,
    HttpTransport,
    TransportError,
    batch_request,
)


@pytest.mark.parametrize(
    ("url", "endpoint", "host_header"),
    [
        pytest.param(
            "http://analytics:8094",
            Endpoint("http", "analytics", 8094, "/events/batch"),
            "analytics:8094",
            id="base",
        ),
        pytest.param(
            "https://analytics.example/",
            Endpoint("https", "analytics.example", 443, "/events/batch"),
            "analytics.example",
            id="https-default-port",
        ),
        pytest.param(
            "http://proxy/analytics",
            Endpoint("http", "proxy", 80, "/analytics/events/batch"),
            "proxy",
            id="behind-a-prefix",
        ),
        pytest.param(
            "http://h:1/events/batch",
            Endpoint("http", "h", 1, "/events/batch"),
            "h:1",
            id="full-path",
        ),
        pytest.param(
            "http://[::1]:8094",
            Endpoint("http", "::1", 8094, "/events/batch"),
            "[::1]:8094",
            id="ipv6",
        ),
    ],
)
def test_endpoint_parse(url: str, endpoint: Endpoint, host_header: str) -> None:
    assert Endpoint.parse(url) == endpoint
    assert endpoint.host_header == host_header


@pytest.mark.parametrize("url", ["analytics:8094", "ftp://h", "http://", "/events/batch"])
def test_endpoint_refuses_what_is_not_an_http_url(url: str) -> None:
    with pytest.raises(ValueError, match="invalid endpoint"):
        Endpoint.parse(url)


def test_the_request_of_a_batch() -> None:
    batch = seal("key-1", ("a",), (b"{}",), compress=False)
    request = batch_request(batch, Options(hostname=None))
    assert request.body == b"[{}]"
    assert dict(request.headers) == {
        "Content-Type": "application/json",
        "Idempotency-Key": "key-1",
        "User-Agent": "adi-analytics-client/0.1.0",
    }


def reader_of(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


@pytest.mark.parametrize(
    ("raw", "status", "body", "until_close"),
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
            200,
            b"{}",
            False,
            id="content-length",
        ),
        pytest.param(
            b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\ncontent-length: 0\r\n\r\n",
            503,
            b"",
            False,
            id="empty",
        ),
        pytest.param(
            b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{"\r\n3;x=y\r\na"}\r\n0\r\nTrailer: t\r\n\r\n',
            200,
            b'{"a"}',
            False,
            id="chunked",
        ),
        pytest.param(
            b"HTTP/1.0 200 OK\r\n\r\nuntil the end", 200, b"until the end", True, id="until-close"
        ),
        pytest.param(b"HTTP/1.1 204 No Content\r\n\r\n", 204, b"", False, id="no-content"),
    ],
)
async def test_reading_an_answer(raw: bytes, status: int, body: bytes, until_close: bool) -> None:
    reader = reader_of(raw)
    read_status, headers = await _read_head(reader)
    assert read_status == status
    assert await _read_body(reader, read_status, headers) == (body, until_close)


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        pytest.param(b"", EOFError, id="closed-before-an-answer"),
        pytest.param(b"SSH-2.0-OpenSSH\r\n\r\n", ProtocolError, id="not-http"),
        pytest.param(b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", ProtocolError, id="bad-header"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 101 + b"\r\n",
            ProtocolError,
            id="too-many-headers",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n", EOFError, id="closed-within-the-headers"
        ),
    ],
)
async def test_reading_a_broken_answer(raw: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        await _read_head(reader_of(raw))


async def test_a_short_body_is_an_error() -> None:
    reader = reader_of(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}")
    status, headers = await _read_head(reader)
    with pytest.raises(asyncio.IncompleteReadError):
        await _read_body(reader, status, headers)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    close_after_answer = False

    def do_POST(self) -> None:
        server: Server = self.server  # type: ignore[assignment]
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server.requests.append((self.client_address[1], self.headers.get("Idempotency-Key"), body))
        content = json.dumps({"received": 1}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)
        # Closing without saying so: the client finds out on its next request.
        self.close_connection = server.close_after_answer

    def log_message(self, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, close_after_answer: bool) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[tuple[int, str | None, bytes]] = []
        self.close_after_answer = close_after_answer

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@contextmanager
def local_server(close_after_answer: bool = False) -> Iterator[Server]:
    server = Server(close_after_answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def silent_server() -> Iterator[str]:
    """Accepts connections (the kernel does) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


REQUEST = HttpRequest(b"[]", {"Content-Type": "application/json", "Idempotency-Key": "k"})


@pytest.mark.parametrize(
    ("close_after_answer", "connections"),
    [
        pytest.param(False, 1, id="kept-alive"),
        pytest.param(True, 3, id="closed-by-the-server-then-reconnected"),
    ],
)
def test_sync_transport_keeps_its_connection_and_recovers_a_stale_one(
    close_after_answer: bool, connections: int
) -> None:
    with local_server(close_after_answer) as server:
        transport = HttpTransport(server.url)
        answers = [transport.send(REQUEST, timeout=5) for _ in range(3)]
        transport.close()
    assert [a.status for a in answers] == [200, 200, 200]
    assert answers[0].headers["content-type"] == "application/json"
    assert len(server.requests) == 3
    assert len({port for port, _, _ in server.requests}) == connections


@pytest.mark.parametrize(
    ("close_after_answer", "connections"),
    [
        pytest.param(False, 1, id="kept-alive"),
        pytest.param(True, 3, id="closed-by-the-server-then-reconnected"),
    ],
)
async def test_async_transport_keeps_its_connection_and_recovers_a_stale_one(
    close_after_answer: bool, connections: int
) -> None:
    with local_server(close_after_answer) as server:
        transport = AsyncHttpTransport(server.url)
        answers = [await transport.send(REQUEST, timeout=5) for _ in range(3)]
        await transport.close()
    assert [a.status for a in answers] == [200, 200, 200]
    assert json.loads(answers[0].body) == {"received": 1}
    assert [(key, body) for _, key, body in server.requests] == [("k", b"[]")] * 3
    assert len({port for port, _, _ in server.requests}) == connections


def test_sync_transport_gives_up_on_a_server_that_never_answers() -> None:
    with silent_server() as url, pytest.raises(TransportError, match="timed out"):
        HttpTransport(url).send(REQUEST, timeout=0.2)


async def test_async_transport_gives_up_on_a_server_that_never_answers() -> None:
    with silent_server() as url, pytest.raises(TransportError, match="no answer in time"):
        await AsyncHttpTransport(url).send(REQUEST, timeout=0.2)


def test_abort_ends_a_send_in_progress() -> None:
    with silent_server() as url:
        transport = HttpTransport(url)
        errors: list[Exception] = []

        def send() -> None:
            try:
                transport.send(REQUEST, timeout=60)
            except TransportError as error:
                errors.append(error)

        sender = threading.Thread(target=send)
        sender.start()
        while transport._connection is None or transport._connection.sock is None:
            threading.Event().wait(0.01)
        transport.abort()
        sender.join(30)
        assert not sender.is_alive()
        assert len(errors) == 1


def test_a_refused_connection_is_a_transport_error() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with pytest.raises(TransportError, match="ConnectionRefusedError"):
        HttpTransport(f"http://127.0.0.1:{port}").send(REQUEST, timeout=5)
