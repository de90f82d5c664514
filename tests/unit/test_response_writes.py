"""Each HTTP answer leaves in one write: its head is held until its body comes."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from analytics_ingestion.cli import _OneWriteResponse

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def writer() -> tuple[_OneWriteResponse, FakeTransport]:
    transport = FakeTransport()
    return _OneWriteResponse(cast(asyncio.Transport, transport)), transport


def test_head_and_body_leave_together() -> None:
    response, transport = writer()
    response.write(HEAD)
    assert transport.writes == []
    response.write(b"{}")
    assert transport.writes == [HEAD + b"{}"]
    response.flush()
    assert transport.writes == [HEAD + b"{}"], "nothing more to send"


def test_an_interim_answer_is_not_held() -> None:
    response, transport = writer()
    response.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]


def test_a_head_without_body_leaves_on_flush_or_close() -> None:
    response, transport = writer()
    response.write(HEAD)
    response.flush()  # a HEAD request's answer: uvicorn writes no body
    assert transport.writes == [HEAD]
    response.write(HEAD)
    response.close()
    assert transport.writes == [HEAD, HEAD]
    assert transport.closed


def test_everything_else_is_the_transport() -> None:
    response, transport = writer()
    transport.closed = True
    assert cast(Any, response).is_closing() is True
