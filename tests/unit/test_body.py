from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import AsyncIterator

import pytest
import zstandard

from analytics_ingestion.body import (
    Holding,
    MemoryBudget,
    content_encoding,
    decompress,
    read_body,
)
from analytics_ingestion.errors import (
    MalformedBody,
    Overloaded,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)

BODY = b'[{"timestamp": "2026-11-26T11:47:34Z", "event": {"type": "x"}}]' * 10


@pytest.mark.parametrize(
    ("encoding", "compressed"),
    [
        pytest.param("gzip", gzip.compress(BODY), id="gzip"),
        pytest.param("gzip", zlib.compress(BODY), id="zlib-as-gzip"),
        pytest.param("zstd", zstandard.ZstdCompressor().compress(BODY), id="zstd"),
        pytest.param("identity", BODY, id="identity"),
    ],
)
def test_decompress(encoding: str, compressed: bytes) -> None:
    assert decompress(compressed, encoding, limit=len(BODY)) == BODY


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        pytest.param("gzip", gzip.compress, id="gzip"),
        pytest.param("zstd", zstandard.ZstdCompressor().compress, id="zstd"),
    ],
)
def test_a_decompression_bomb_is_refused_at_the_limit(encoding: str, compress: object) -> None:
    bomb = compress(b"[" + b" " * 50_000_000 + b"]")  # type: ignore[operator]
    assert len(bomb) < 100_000
    with pytest.raises(
        PayloadTooLarge, match="decompressed request body exceeds the limit of 1048576"
    ):
        decompress(bomb, encoding, limit=1024 * 1024)


@pytest.mark.parametrize(
    ("encoding", "broken", "message"),
    [
        pytest.param("gzip", gzip.compress(BODY)[:-12], "truncated", id="gzip-truncated"),
        pytest.param("gzip", b"not gzip at all", "cannot be decompressed", id="gzip-garbage"),
        pytest.param("gzip", gzip.compress(BODY) + b"junk", "data after the end", id="gzip-trailing"),
        pytest.param("zstd", b"not zstd at all", "cannot be decompressed", id="zstd-garbage"),
        pytest.param(
            "zstd", zstandard.ZstdCompressor().compress(BODY)[:-5], "cannot be decompressed",
            id="zstd-truncated",
        ),
    ],
)  # fmt: skip
def test_a_broken_compressed_body_is_a_400(encoding: str, broken: bytes, message: str) -> None:
    with pytest.raises(MalformedBody, match=message):
        decompress(broken, encoding, limit=10 * len(BODY))


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, "identity"), ("", "identity"), ("GZIP", "gzip"), (" zstd ", "zstd")],
)
def test_content_encoding(header: str | None, expected: str) -> None:
    assert content_encoding(header) == expected


@pytest.mark.parametrize("header", ["br", "deflate", "gzip, zstd", "x-unknown"])
def test_unsupported_content_encoding_is_a_415(header: str) -> None:
    with pytest.raises(UnsupportedMediaType, match="send gzip, zstd or identity"):
        content_encoding(header)


async def chunks(*parts: bytes, pause: float = 0.0) -> AsyncIterator[bytes]:
    for part in parts:
        await asyncio.sleep(pause)
        yield part


def holding(limit: int = 100) -> Holding:
    return Holding(MemoryBudget(limit))


async def test_read_body_limits() -> None:
    read = await read_body(
        chunks(b"ab", b"cd"), declared_length="4", limit=4, within=1, holding=holding()
    )
    assert read == b"abcd"
    with pytest.raises(PayloadTooLarge):  # refused before reading, by its declared length
        await read_body(chunks(), declared_length="5", limit=4, within=1, holding=holding())
    with pytest.raises(PayloadTooLarge):  # or while reading, whatever was declared
        await read_body(
            chunks(b"abc", b"de"), declared_length=None, limit=4, within=1, holding=holding()
        )


async def test_a_body_trickling_in_is_cut_off() -> None:
    slow = chunks(b"a", b"b", b"c", pause=0.08)
    with pytest.raises(
        RequestTimeout, match=r"within 0.2 s \(BODY_TIMEOUT_SECONDS\); 2 bytes came"
    ):
        await read_body(slow, declared_length=None, limit=9, within=0.2, holding=holding())


async def test_bodies_held_at_once_stay_within_the_memory_budget() -> None:
    budget = MemoryBudget(10)
    first, second = Holding(budget), Holding(budget)
    read = await read_body(
        chunks(b"12345", b"678"), declared_length=None, limit=9, within=1, holding=first
    )
    assert read == b"12345678"
    with pytest.raises(Overloaded, match="MAX_INFLIGHT_BYTES"):
        await read_body(chunks(b"abc"), declared_length=None, limit=9, within=1, holding=second)
    first.release()
    second.release()
    assert budget.held == 0
    third = Holding(budget)
    await read_body(chunks(b"abcdefgh"), declared_length=None, limit=9, within=1, holding=third)
    assert budget.held == 8


def test_a_zstd_frame_declaring_too_much_is_refused_before_decompressing() -> None:
    declared = zstandard.ZstdCompressor(write_content_size=True).compress(b" " * 2_000_000)
    with pytest.raises(PayloadTooLarge):
        decompress(declared, "zstd", limit=1_000_000)
    streamed = zstandard.ZstdCompressor().compressobj()
    undeclared = streamed.compress(b" " * 2_000_000) + streamed.flush()
    assert zstandard.frame_content_size(undeclared) == -1
    with pytest.raises(PayloadTooLarge):
        decompress(undeclared, "zstd", limit=1_000_000)
    assert decompress(undeclared, "zstd", limit=2_000_000) == b" " * 2_000_000


@pytest.mark.parametrize(
    "after",
    [
        pytest.param(b"junk", id="junk"),
        pytest.param(zstandard.ZstdCompressor().compress(b"[]"), id="second-frame"),
    ],
)
def test_data_after_the_zstd_frame_is_refused(after: bytes) -> None:
    with pytest.raises(MalformedBody, match="data after the end of the zstd frame"):
        decompress(zstandard.ZstdCompressor().compress(BODY) + after, "zstd", limit=len(BODY))
