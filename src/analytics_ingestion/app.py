"""The HTTP app: thin handlers that read, decode, submit and answer.

The store and the writer are created in the lifespan and reach the handlers through
`request.state`; errors become responses in one place, `_answer_error`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from analytics_ingestion import migrations, store, wire
from analytics_ingestion.errors import (
    IngestionError,
    MalformedBody,
    PayloadTooLarge,
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
    try:
        _require_json(request)
        body = await _read_body(request, settings.max_body_bytes)
        received_at = datetime.now(UTC)
        decode = functools.partial(
            wire.decode_batch,
            body,
            received_at=received_at,
            idempotency_key=request.headers.get("idempotency-key"),
        )
        try:
            # A large body is decoded beside the event loop, which keeps answering meanwhile.
            batch = (
                decode() if len(body) < _DECODE_INLINE_BYTES else await asyncio.to_thread(decode)
            )
        except MalformedBody as error:
            await writer.submit(wire.unreadable_body(body, error, received_at))
            raise
        delivery = await writer.submit(batch)
    except IngestionError as error:
        counts.add("analytics_requests_total", status=str(error.status_code))
        return _answer_error(error, settings)
    rejected = sorted([*batch.rejections, *delivery.rejections], key=lambda r: r.index)
    stored = delivery.accepted + delivery.duplicates
    status_code = 422 if batch.received and not stored else 200
    counts.add("analytics_requests_total", status=str(status_code))
    counts.add("analytics_events_received_total", batch.received)
    counts.add("analytics_events_accepted_total", delivery.accepted)
    counts.add("analytics_events_duplicate_total", delivery.duplicates)
    counts.add("analytics_events_rejected_total", len(batch.rejections), stage="validation")
    counts.add("analytics_events_rejected_total", len(delivery.rejections), stage="database")
    return JSONResponse(
        {
            "received": batch.received,
            "accepted": delivery.accepted,
            "duplicates": delivery.duplicates,
            "rejected": [rejection.to_json() for rejection in rejected],
        },
        status_code=status_code,
    )


def _answer_error(error: IngestionError, settings: Settings) -> Response:
    headers = {}
    if isinstance(error, Unavailable):
        headers["Retry-After"] = str(settings.retry_after_seconds)
        log.warning("refused a batch: %s", error.message)
    return JSONResponse(error.body(), status_code=error.status_code, headers=headers)


def _require_json(request: Request) -> None:
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, got {content_type or 'none'}"
        )


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(limit)
    chunks = bytearray()
    async for chunk in request.stream():
        chunks += chunk
        if len(chunks) > limit:
            raise PayloadTooLarge(limit)
    return bytes(chunks)


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
            yield {"settings": settings, "store": event_store, "writer": writer, "metrics": counts}
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
