"""Hostile and broken input through HTTP: every case is a 4xx or a per-event rejection with
its reason, never a 5xx; compressed bodies; write keys; clients too slow to send."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import os
import random
import socket
import subprocess
import sys
import time

import asyncpg
import httpx
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics_ingestion.samples import CATALOG, event_object, shape_a
from tests.integration.conftest import Service, running_service

KEY = "wk_test_0123456789abcdef"
JSON_TYPE = {"Content-Type": "application/json"}


def events(count: int, seed: int = 0) -> list[dict[str, object]]:
    rng = random.Random(seed)
    return [shape_a(rng=rng) for _ in range(count)]


async def test_gzip_and_zstd_bodies(service: Service, db: asyncpg.Connection) -> None:
    body = json.dumps(events(20)).encode()
    async with service.client() as client:
        for encoding, compressed in (
            ("gzip", gzip.compress(body)),
            ("zstd", zstandard.ZstdCompressor().compress(body)),
        ):
            answer = await client.post(
                "/events/batch",
                content=compressed,
                headers={
                    "Content-Type": "application/json",
                    "Content-Encoding": encoding,
                    "Idempotency-Key": "the-same-batch",
                },
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["accepted"] + answer.json()["duplicates"] == 20
        bomb = gzip.compress(b"[" + b" " * 100_000_000 + b"]")  # 100 MB in 100 kB
        refused = await client.post(
            "/events/batch",
            content=bomb,
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
        unsupported = await client.post(
            "/events/batch",
            content=body,
            headers={"Content-Type": "application/json", "Content-Encoding": "br"},
        )
    assert await db.fetchval("SELECT count(*) FROM analytics_events") == 20
    assert refused.status_code == 413
    assert "decompressed request body exceeds the limit" in refused.json()["error"]
    assert unsupported.status_code == 415


async def test_write_keys(database: str) -> None:
    basic = base64.b64encode(f"{KEY}:".encode()).decode()
    with running_service(database, WRITE_KEYS=f"other-key-0123456789,{KEY}") as service:
        async with service.client() as client:
            body = events(1)
            missing = await client.post("/events/batch", json=body)
            wrong = await client.post(
                "/events/batch", json=body, headers={"Authorization": f"Bearer {KEY}-not"}
            )
            bearer = await client.post(
                "/events/batch", json=body, headers={"Authorization": f"Bearer {KEY}"}
            )
            as_basic = await client.post(
                "/events/batch", json=events(1, 1), headers={"Authorization": f"Basic {basic}"}
            )
            health = await client.get("/health")
    assert (missing.status_code, wrong.status_code) == (401, 401)
    assert 'Bearer realm="analytics"' in missing.headers["www-authenticate"]
    assert KEY not in wrong.text
    assert (bearer.status_code, as_basic.status_code, health.status_code) == (200, 200, 200)


def raw_exchange(port: int, parts: list[bytes], pause: float, wait: float) -> tuple[bytes, float]:
    """Send `parts` with `pause` between them; return what came back and when it closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        started = time.monotonic()
        try:
            for part in parts:
                sock.sendall(part)
                time.sleep(pause)
        except OSError:
            pass  # the service closed the connection on us
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return answer, time.monotonic() - started


async def test_clients_too_slow_to_send_are_cut_off(database: str) -> None:
    with running_service(
        database, HEADER_TIMEOUT_SECONDS="0.5", BODY_TIMEOUT_SECONDS="0.5"
    ) as service:
        port = int(service.url.rsplit(":", 1)[1])
        trickle = [b"POST /events/batch HTTP/1.1\r\n", b"Host: x\r\n", b"Content-Ty", b"pe: a"]
        headers_answer, headers_closed = await asyncio.to_thread(
            raw_exchange, port, trickle, 0.3, 5
        )
        head = (
            b"POST /events/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n"
        )
        body_answer, _ = await asyncio.to_thread(raw_exchange, port, [head, b"[{"], 0.1, 5)
        # Refused at once for its declared size, a client that keeps sending is disconnected.
        too_large = head.replace(b"1000", b"999999999999")
        refused_answer, refused_closed = await asyncio.to_thread(
            raw_exchange, port, [too_large, *[b"x" * 10] * 20], 0.2, 10
        )
        async with service.client() as client:  # everyone else was served meanwhile
            assert (await client.post("/events/batch", json=events(1))).status_code == 200
    assert headers_answer.startswith(b"HTTP/1.1 408 ")
    assert b"HEADER_TIMEOUT_SECONDS" in headers_answer
    assert headers_closed < 2
    assert body_answer.startswith(b"HTTP/1.1 408 ")
    assert b"BODY_TIMEOUT_SECONDS" in body_answer
    assert refused_answer.startswith(b"HTTP/1.1 413 ")
    assert refused_closed < 2


async def test_a_timestamp_far_ahead_is_refused_with_its_reason(
    service: Service, db: asyncpg.Connection
) -> None:
    ahead = events(2)
    ahead[1]["timestamp"] = "2999-01-01T00:00:00Z"
    async with service.client() as client:
        answer = (await client.post("/events/batch", json=ahead)).json()
    assert answer["accepted"] == 1
    [rejected] = answer["rejected"]
    assert rejected["index"] == 1
    assert "ahead of the server's clock" in rejected["error"]
    assert "MAX_CLOCK_SKEW_SECONDS" in rejected["error"]
    assert await db.fetchval("SELECT count(*) FROM analytics_dead_letters") == 1


# --- fuzzing ---------------------------------------------------------------------------------

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(["2026-11-26T11:47:34Z", "0b8f8f5e-3c8a-4d51-9d47-1f0e2f3c4a5b", "\u0000"]),
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_TOKENS = [b"NaN", b"Infinity", b"-Infinity", b"1e999999", b"\xff\xfe", b'"\\ud800"', b"[" * 2000,
           b'{"a":1,"a":2}', b"\x00", b",", b"}", b"]", b'"', b"\\", b"null", b"1" * 500]  # fmt: skip


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """Realistic batches with a change, JSON of any shape, and broken bytes."""
    kind = draw(st.sampled_from(["event-change", "any-json", "spliced-bytes"]))
    batch = events(draw(st.integers(1, 5)), draw(st.integers(0, 10_000)))
    if kind == "event-change":
        target = draw(st.sampled_from(batch))
        where = draw(st.sampled_from(["event", "top"]))
        container = target["event"] if where == "event" else target
        assert isinstance(container, dict)
        container[draw(st.sampled_from([*container, "extra", "type"]))] = draw(_JSON)
        return json.dumps(batch, ensure_ascii=draw(st.booleans())).encode()
    if kind == "any-json":
        return json.dumps(draw(_JSON)).encode()
    text = json.dumps(batch).encode()
    at = draw(st.integers(0, len(text)))
    cut = draw(st.integers(0, 20))
    return text[:at] + draw(st.sampled_from(_TOKENS)) + text[at + cut :]


def test_fuzzed_bodies_get_a_4xx_or_reasons_never_a_5xx(timescale_database: str) -> None:
    seen: dict[int, int] = {}
    with (
        running_service(timescale_database) as service,
        httpx.Client(base_url=service.url) as client,
    ):

        @settings(
            max_examples=2000,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(bodies())
        def check(body: bytes) -> None:
            answer = client.post(
                "/events/batch", content=body, headers={"Content-Type": "application/json"}
            )
            seen[answer.status_code] = seen.get(answer.status_code, 0) + 1
            assert answer.status_code in (200, 400, 413, 422), (answer.status_code, body[:300])
            result = answer.json()
            if answer.status_code in (400, 413):
                assert result["error"]
                return
            rejected = result["rejected"]
            assert result["received"] == result["accepted"] + result["duplicates"] + len(rejected)
            assert all(r["error"] and 0 <= r["index"] < result["received"] for r in rejected)

        check()
    assert sum(seen.values()) >= 1000
    assert seen.get(200, 0) and (seen.get(400, 0) + seen.get(422, 0))  # both kinds exercised


async def test_a_key_named_twice_refuses_its_event_alone(
    service: Service, db: asyncpg.Connection
) -> None:
    # Parsers keep the last of equal keys silently (msgspec and jsonb alike): refused instead.
    task_created = CATALOG.find("task_created")
    assert task_created is not None
    event = {
        k: v for k, v in event_object(task_created, random.Random(7)).items() if k != "command"
    }
    base = json.dumps(event)[:-1]
    good = f'{{"timestamp": "2026-11-26T11:47:34Z", "event": {base}, "command": "ok"}}}}'
    twice = (
        f'{{"timestamp": "2026-11-26T11:47:34Z", "event": {base}, "command": 5, "command": "ok"}}}}'
    )
    async with service.client() as client:
        answer = await client.post(
            "/events/batch", content=f"[{good}, {twice}]".encode(), headers=JSON_TYPE
        )
        metrics = (await client.get("/metrics")).text
    assert answer.status_code == 200
    assert answer.json()["accepted"] == 1
    assert answer.json()["rejected"] == [
        {
            "index": 1,
            "error": "event.command: duplicate key (an object may name each key only once)",
        }
    ]
    assert await db.fetchval("SELECT count(*) FROM analytics_events") == 1
    kept = await db.fetchrow("SELECT event_index, reason, payload FROM analytics_dead_letters")
    assert (kept["event_index"], kept["payload"]) == (1, twice.encode())
    assert 'analytics_events_rejected_total{reason="duplicate_key"} 1' in metrics


def test_database_credentials_never_show() -> None:
    url = "postgresql://writer:s3cr3t-pa55@127.0.0.1:1/analytics"
    result = subprocess.run(
        [sys.executable, "-m", "analytics_ingestion", "serve"],
        env={**os.environ, "DATABASE_URL": url, "PORT": "1", "LOG_FORMAT": "json"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "cannot connect" in result.stderr + result.stdout
    assert "s3cr3t" not in result.stderr + result.stdout


async def test_large_bodies_at_once_stay_within_the_memory_budget(database: str) -> None:
    # Two clients each send most of a 90 kB body and wait: the second passes the budget.
    with running_service(database, MAX_BODY_BYTES="100000", MAX_INFLIGHT_BYTES="150000") as service:
        port = int(service.url.rsplit(":", 1)[1])
        body = json.dumps(events(300)).encode()[:90_000]
        head = (
            b"POST /events/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (len(body) + 10)
        )
        first = await asyncio.open_connection("127.0.0.1", port)
        first[1].write(head + body[:80_000])
        await first[1].drain()
        await asyncio.sleep(0.5)
        second = await asyncio.open_connection("127.0.0.1", port)
        second[1].write(head + body[:80_000])
        await second[1].drain()
        refused = await asyncio.wait_for(second[0].read(), 5)
        for _, writer in (first, second):
            writer.close()
        async with service.client() as client:  # the budget was given back
            assert (await client.post("/events/batch", json=events(1))).status_code == 200
    assert refused.startswith(b"HTTP/1.1 503 ")
    assert b"retry-after: 1" in refused.lower()
    assert b"MAX_INFLIGHT_BYTES" in refused
