"""A request body, read within limits: its size and its time as it arrives, and its size once
decompressed (`Content-Encoding: gzip` or `zstd`), so a slow or hostile client can neither
hold the service nor make it hold more than `MAX_BODY_BYTES`.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import zstandard

from analytics_ingestion.errors import (
    MalformedBody,
    Overloaded,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)

ENCODINGS = ("gzip", "zstd", "identity")
_GZIP_OR_ZLIB = 32 + zlib.MAX_WBITS  # zlib reads the header to tell the two apart
_ZSTD_READ = 1024 * 1024


class MemoryBudget:
    """Bytes of request bodies held at once, across all requests (`MAX_INFLIGHT_BYTES`): each
    request holds what it has read (and decompressed) until it is answered. Past the budget a
    request is refused with 503 and `Retry-After`, so memory stays bounded however many large
    requests arrive together."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, size: int) -> None:
        if self.held + size > self.limit:
            raise Overloaded(
                f"{self.held} bytes of request bodies are being processed; taking {size} more "
                f"would pass the limit of {self.limit} (MAX_INFLIGHT_BYTES)"
            )
        self.held += size

    def give(self, size: int) -> None:
        self.held -= size


@dataclass
class Holding:
    """What one request has taken from the budget, given back once, when it is answered."""

    budget: MemoryBudget
    size: int = 0

    def take(self, size: int) -> None:
        self.budget.take(size)
        self.size += size

    def release(self) -> None:
        self.budget.give(self.size)
        self.size = 0


async def read_body(
    chunks: AsyncIterator[bytes],
    *,
    declared_length: str | None,
    limit: int,
    within: float,
    holding: Holding,
) -> bytes:
    """The body as sent, refused past `limit` bytes (before reading, when the declared length
    says so) or when it has not all arrived within `within` seconds. What is read is taken
    from the memory budget as it arrives."""
    if declared_length is not None and declared_length.isdigit() and int(declared_length) > limit:
        raise PayloadTooLarge(limit)
    body = bytearray()
    try:
        async with asyncio.timeout(within):
            async for chunk in chunks:
                holding.take(len(chunk))
                body += chunk
                if len(body) > limit:
                    raise PayloadTooLarge(limit)
    except TimeoutError:
        raise RequestTimeout(
            f"the request body did not arrive within {within:g} s (BODY_TIMEOUT_SECONDS); "
            f"{len(body)} bytes came"
        ) from None
    return bytes(body)


def content_encoding(header: str | None) -> str:
    """The one encoding of the body; several, or one not supported, get 415."""
    encoding = (header or "identity").strip().lower() or "identity"
    if encoding not in ENCODINGS:
        raise UnsupportedMediaType(
            f"Content-Encoding {header!r} is not supported: send gzip, zstd or identity"
        )
    return encoding


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """The body decompressed, refused (413) as soon as it would exceed `limit` bytes, so a
    small bomb never grows beyond the limit in memory."""
    if encoding == "gzip":
        return _gunzip(body, limit)
    if encoding == "zstd":
        return _unzstd(body, limit)
    return body


def _gunzip(body: bytes, limit: int) -> bytes:
    decompressor = zlib.decompressobj(_GZIP_OR_ZLIB)
    try:
        data = decompressor.decompress(body, limit + 1)
    except zlib.error as error:
        raise MalformedBody(f"the gzip body cannot be decompressed: {error}") from None
    if len(data) > limit:
        raise PayloadTooLarge(limit, "decompressed request body")
    if not decompressor.eof:
        raise MalformedBody("the gzip body is truncated")
    if decompressor.unused_data.strip(b"\0"):
        raise MalformedBody("data after the end of the gzip body")
    return data


def _unzstd(body: bytes, limit: int) -> bytes:
    try:
        declared = zstandard.frame_content_size(body)  # -1 when the frame does not say
    except zstandard.ZstdError as error:
        raise MalformedBody(f"the zstd body cannot be decompressed: {error}") from None
    if declared > limit:
        raise PayloadTooLarge(limit, "decompressed request body")
    try:
        # Without a declared size, the output buffer is the limit, and filling it fails.
        data = zstandard.ZstdDecompressor().decompress(body, max_output_size=limit + 1)
    except zstandard.ZstdError as error:
        if _zstd_output_exceeds(body, limit):
            raise PayloadTooLarge(limit, "decompressed request body") from None
        raise MalformedBody(f"the zstd body cannot be decompressed: {error}") from None
    # That read one frame; whatever follows it (another frame, junk) is refused, not dropped.
    # The frame is known to fit the limit, so reading it again is bounded too.
    frame = zstandard.ZstdDecompressor().decompressobj()
    frame.decompress(body)
    if frame.unused_data:
        raise MalformedBody("data after the end of the zstd frame")
    return data


def _zstd_output_exceeds(body: bytes, limit: int) -> bool:
    """Whether `body` decompresses to more than `limit` bytes, holding at most that much."""
    seen = 0
    with (
        contextlib.suppress(zstandard.ZstdError),
        zstandard.ZstdDecompressor().stream_reader(body) as reader,
    ):
        while chunk := reader.read(_ZSTD_READ):
            seen += len(chunk)
            if seen > limit:
                return True
    return False
