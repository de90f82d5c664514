"""The asyncio client's transport: HTTP/1.1 `POST` with a `Content-Length` body over
`asyncio.open_connection`, plain or TLS, one kept-alive connection.

Only what `POST /events/batch` needs is spoken: a status line, headers, and a body sized by
`Content-Length`, sent in chunks, or ended by the connection's close. The timeout bounds the
whole exchange.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from analytics_client.processes import ProcessCheck
from analytics_client.transport import (
    STALE_CONNECTION_ERRORS,
    Endpoint,
    HttpRequest,
    HttpResponse,
    TransportError,
    describe,
)

_MAX_HEADERS = 100
_MAX_BODY_BYTES = 16 * 1024 * 1024  # the service's answers are small; this bounds a wrong one


class ProtocolError(Exception):
    """The answer is not HTTP/1.1 as this transport reads it."""


class _NoAnswer(TransportError):
    def __init__(self, message: str, *, stale: bool) -> None:
        super().__init__(message)
        self.stale = stale


# The connection closed before an answer began: the service closed it while it was idle.
_STALE = (*STALE_CONNECTION_ERRORS, EOFError)


class AsyncHttpTransport:
    def __init__(self, endpoint: str, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.endpoint = Endpoint.parse(endpoint)
        self._ssl_context = ssl_context
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._process = ProcessCheck()

    async def send(self, request: HttpRequest, timeout: float) -> HttpResponse:  # noqa: ASYNC109
        if self._process.forked():
            # The connection is the parent's; leave it to the parent.
            self._reader = self._writer = None
        reused = self._writer is not None
        try:
            return await self._attempt(request, timeout)
        except _NoAnswer as error:
            if not (reused and error.stale):
                raise
        return await self._attempt(request, timeout)

    async def close(self) -> None:
        writer = self._writer
        self._drop()
        if writer is not None:
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _attempt(self, request: HttpRequest, timeout: float) -> HttpResponse:  # noqa: ASYNC109
        try:
            async with asyncio.timeout(timeout):
                return await self._exchange(request)
        except (OSError, EOFError, ProtocolError) as error:  # TimeoutError is an OSError
            self._drop()
            raise _NoAnswer(describe(error), stale=isinstance(error, _STALE)) from error
        except BaseException:
            self._drop()  # cancelled mid-exchange: the connection is in an unknown state
            raise

    async def _exchange(self, request: HttpRequest) -> HttpResponse:
        if self._writer is None or self._reader is None:
            endpoint = self.endpoint
            tls = None
            if endpoint.scheme == "https":
                tls = self._ssl_context or ssl.create_default_context()
            self._reader, self._writer = await asyncio.open_connection(
                endpoint.host,
                endpoint.port,
                ssl=tls,
                server_hostname=endpoint.host if tls else None,
            )
        reader, writer = self._reader, self._writer
        lines = [
            f"POST {self.endpoint.path} HTTP/1.1",
            f"Host: {self.endpoint.host_header}",
            f"Content-Length: {len(request.body)}",
            *(f"{name}: {value}" for name, value in request.headers.items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + request.body)
        await writer.drain()
        status, headers = await _read_head(reader)
        body, until_close = await _read_body(reader, status, headers)
        if until_close or headers.get("connection", "").lower() == "close":
            self._drop()
        return HttpResponse(status, headers, body)

    def _drop(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    status_line = await reader.readline()
    if not status_line:
        raise EOFError("the connection closed before an answer")
    parts = status_line.decode("latin-1").split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"not an HTTP/1.1 status line: {status_line[:80]!r}")
    headers: dict[str, str] = {}
    for _ in range(_MAX_HEADERS):
        line = await reader.readline()
        if line in (b"\r\n", b"\n"):
            return int(parts[1]), headers
        if not line:
            raise EOFError("the connection closed within the headers")
        name, separator, value = line.decode("latin-1").partition(":")
        if not separator:
            raise ProtocolError(f"not a header line: {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    raise ProtocolError(f"more than {_MAX_HEADERS} headers")


async def _read_body(
    reader: asyncio.StreamReader, status: int, headers: dict[str, str]
) -> tuple[bytes, bool]:
    """The body, and whether it was ended by the connection's close."""
    if status in (204, 304) or 100 <= status < 200:
        return b"", False
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return await _read_chunks(reader), False
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit() or int(length) > _MAX_BODY_BYTES:
            raise ProtocolError(f"unusable Content-Length {length[:20]!r}")
        return await reader.readexactly(int(length)), False
    return await reader.read(_MAX_BODY_BYTES), True


async def _read_chunks(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        size_line = (await reader.readline()).split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise ProtocolError(f"not a chunk size: {size_line[:20]!r}") from None
        if size == 0:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        total += size
        if total > _MAX_BODY_BYTES:
            raise ProtocolError("the answer is too large")
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)  # the chunk's CRLF
