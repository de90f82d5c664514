"""The HTTP app: thin handlers that read, decode, submit and answer.

The store and the writer are created in the lifespan and reach the handlers through
`request.state`; errors become responses in one place, `_answer_error`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from analytics_ingestion import access, body, migrations, store, wire
from analytics_ingestion.errors import (
    IngestionError,
    MalformedBody,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
)
from analytics_ingestion.metrics import Metrics
from analytics_ingestion.settings import Settings
from analytics_ingestion.store import Store
from analytics_ingestion.writer import FlushPolicy, Writer

log = logging.getLogger(__name__)

_DECODE_INLINE_BYTES = 256 * 1024


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    writer: Writer = request.state.writer
    problem = writer.problem()
    if problem is None:
        try:
            await request.state.store.ping()
        except Unavailable as error:
            problem = error.message
    if problem is not None:
        return JSONResponse({"status": "unavailable", "reason": problem}, status_code=503)
    return JSONResponse({"status": "ready", "queued_events": writer.queued_events})


async def metrics(request: Request) -> Response:
    writer: Writer = request.state.writer
    text = request.state.metrics.render({"analytics_queue_events": writer.queued_events})
    return Response(text, media_type="text/plain; version=0.0.4")


async def ingest_batch(request: Request) -> Response:
    settings: Settings = request.state.settings
    writer: Writer = request.state.writer
    counts: Metrics = request.state.metrics
    started = time.perf_counter()
    received = accepted = duplicates = rejected_count = 0
    problem = None
    holding = body.Holding(request.state.memory)
    try:
        access.authorize(request.headers.get("authorization"), settings.write_keys)
        _require_json(request)
        encoding = body.content_encoding(request.headers.get("content-encoding"))
        sent = await body.read_body(
            request.stream(),
            declared_length=request.headers.get("content-length"),
            limit=settings.max_body_bytes,
            within=settings.body_timeout_seconds,
            holding=holding,
        )
        received_at = datetime.now(UTC)
        if encoding != "identity":  # beside the event loop: a bomb takes time to refuse too
            sent = await asyncio.to_thread(body.decompress, sent, encoding, settings.max_body_bytes)
            holding.take(len(sent))
        decode = functools.partial(
            wire.decode_batch,
            sent,
            received_at=received_at,
            idempotency_key=request.headers.get("idempotency-key"),
            max_clock_skew=timedelta(seconds=settings.max_clock_skew_seconds),
        )
        try:
            # A large body is decoded beside the event loop, which keeps answering meanwhile.
            batch = (
                decode() if len(sent) < _DECODE_INLINE_BYTES else await asyncio.to_thread(decode)
            )
        except MalformedBody as error:
            await writer.submit(wire.unreadable_body(sent, error, received_at))
            raise
        delivery = await writer.submit(batch)
    except IngestionError as error:
        problem = error.message
        response = _answer_error(error, settings)
    else:
        rejected = sorted([*batch.rejections, *delivery.rejections], key=lambda r: r.index)
        received, accepted, duplicates = batch.received, delivery.accepted, delivery.duplicates
        rejected_count = len(rejected)
        status_code = 422 if received and not accepted + duplicates else 200
        counts.add("analytics_events_received_total", received)
        counts.add("analytics_events_accepted_total", accepted)
        counts.add("analytics_events_duplicate_total", duplicates)
        for rejection in rejected:
            counts.add("analytics_events_rejected_total", reason=rejection.kind)
        response = JSONResponse(
            {
                "received": received,
                "accepted": accepted,
                "duplicates": duplicates,
                "rejected": [rejection.to_json() for rejection in rejected],
            },
            status_code=status_code,
        )
    finally:
        holding.release()
    elapsed = time.perf_counter() - started
    counts.add("analytics_requests_total", status=str(response.status_code))
    counts.observe("analytics_request_seconds", elapsed)
    if log.isEnabledFor(logging.INFO):  # the line's fields cost more than the check
        log.info(
            "POST /events/batch %d",
            response.status_code,
            extra={
                "status": response.status_code,
                "duration_ms": round(elapsed * 1000, 1),
                "received": received,
                "accepted": accepted,
                "duplicates": duplicates,
                "rejected": rejected_count,
                "client": request.client.host if request.client else None,
                **({"error": problem} if problem else {}),
            },
        )
    return response


def _answer_error(error: IngestionError, settings: Settings) -> Response:
    headers = {}
    if isinstance(error, Unavailable):
        headers["Retry-After"] = str(settings.retry_after_seconds)
    if isinstance(error, Unauthorized):
        headers["WWW-Authenticate"] = access.CHALLENGE
    # The body may be unread or still arriving: close rather than keep reading a client that
    # was refused (each byte it sends would keep the connection alive).
    headers["Connection"] = "close"
    return JSONResponse(error.body(), status_code=error.status_code, headers=headers)


def _require_json(request: Request) -> None:
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, got {content_type or 'none'}"
        )


def create_app(settings: Settings, database_url: str) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        if settings.migrate_on_start:
            connection = await store.connect(database_url)
            try:
                await migrations.migrate(connection, "all", report=log.info)
            finally:
                await connection.close()
        event_store = await Store.open(
            database_url,
            connections=settings.writer_connections,
            flush_timeout=settings.flush_timeout_seconds,
        )
        counts = Metrics()
        writer = Writer(
            event_store,
            FlushPolicy(settings.flush_max_events, settings.flush_linger_seconds),
            queue_max_events=settings.queue_max_events,
            connections=settings.writer_connections,
            queue_timeout=settings.queue_timeout_seconds,
            write_timeout=settings.flush_timeout_seconds + 5,
            metrics=counts,
        )
        writer.start()
        log.info("accepting events")
        try:
            yield {
                "settings": settings,
                "store": event_store,
                "writer": writer,
                "metrics": counts,
                "memory": body.MemoryBudget(settings.max_inflight_bytes),
            }
        finally:
            await writer.close(settings.shutdown_timeout_seconds)
            await event_store.close()
            log.info("writer drained and closed")

    return Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/ready", ready, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/events/batch", ingest_batch, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
