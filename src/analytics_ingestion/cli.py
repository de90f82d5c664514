"""The command line: `analytics-ingestion serve | migrate [all|pre|post|status|dry-run] | bench`."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from analytics_ingestion import logs, migrations, store
from analytics_ingestion.embedded import EmbeddedError, EmbeddedPostgres
from analytics_ingestion.errors import ConfigError, Unavailable
from analytics_ingestion.settings import Settings

log = logging.getLogger("analytics_ingestion")

EMBEDDED_DATABASE = "analytics"


class StartupFailed(RuntimeError):
    pass


@contextmanager
def database_url(settings: Settings) -> Iterator[str]:
    """The configured database, or an embedded one started for as long as it is needed."""
    if settings.database_url is not None:
        yield settings.database_url
        return
    embedded = EmbeddedPostgres(
        settings.embedded_data_dir,
        bin_dir=settings.embedded_postgres_bin,
        os_user=settings.embedded_os_user,
    )
    log.warning(
        "no DATABASE_URL or PLATFORM_DATABASE_URL set: using an embedded PostgreSQL "
        "(binaries in %s, data in %s)",
        embedded.bin_dir,
        embedded.data_dir,
    )
    embedded.start()
    try:
        asyncio.run(store.ensure_database(embedded.url(), EMBEDDED_DATABASE))
        log.warning(
            "embedded database ready; look at it with: psql -h %s -U postgres %s",
            embedded.socket_dir,
            EMBEDDED_DATABASE,
        )
        yield embedded.url(EMBEDDED_DATABASE)
    finally:
        embedded.stop()


class _Server(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn re-raises SIGTERM once it has drained, which would kill the process before
        # the embedded database is stopped. The drain is done: exit normally instead.
        with super().capture_signals():
            yield
            self._captured_signals.clear()


_REQUEST_TIMEOUT_ANSWER = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s"
)


class _OneWriteResponse:
    """The connection as a request's cycle writes to it: the response's head is held back and
    sent with its body, so an answer costs one system call and one packet instead of two
    (uvicorn writes them apart). Everything else goes straight to the transport."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._head = b""

    def write(self, data: bytes) -> None:
        if not self._head and data.startswith(b"HTTP/1.1 ") and not data.startswith(b"HTTP/1.1 1"):
            self._head = data  # the status line and headers: the body follows
            return
        self.flush(data)

    def flush(self, data: bytes = b"") -> None:
        head, self._head = self._head, b""
        if head or data:
            self._transport.write(head + data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _protocol_with_header_timeout(seconds: float) -> type[HttpToolsProtocol]:
    """uvicorn's HTTP protocol, closing a connection whose request headers have not all
    arrived `seconds` after it opened or after the request's first byte: a client that
    trickles bytes (slowloris) holds a connection no longer than that. (uvicorn's keep-alive
    timeout only covers a connection idle between requests.) Each response goes out in one
    write (`_OneWriteResponse`)."""
    message = (
        b'{"error":"the request headers did not arrive within %g s (HEADER_TIMEOUT_SECONDS)"}'
        % seconds
    )
    answer = _REQUEST_TIMEOUT_ANSWER % (len(message), message)

    class Protocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(seconds, self._headers_too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if self.cycle is not None and not self.cycle.response_complete:
                self._arm()  # a pipelined request is still being answered
                return
            if not self.transport.is_closing():
                self.transport.write(answer)
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()
            self.cycle.transport = _OneWriteResponse(self.transport)  # type: ignore[assignment]

        def on_response_complete(self) -> None:
            if self.cycle is not None and isinstance(self.cycle.transport, _OneWriteResponse):
                self.cycle.transport.flush()  # a HEAD answer has no body to carry its head
            super().on_response_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return Protocol


def _tune_garbage_collector() -> None:
    """Each request allocates thousands of short-lived containers, nearly all freed by
    reference counting. At the default threshold (700 allocations) the cyclic collector ran
    many times per request and took about 15% of the service's CPU under load; everything
    allocated before serving (modules, the catalog, decoders) is never garbage."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def server_config(settings: Settings, app: Any) -> uvicorn.Config:
    """How uvicorn serves the app (the tests serve it the same way)."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        log_config=None,  # uvicorn's loggers go through ours (logs.configure)
        lifespan="on",
        # httptools (C parsing: half the CPU of h11 per 27 kB request), with a deadline for the
        # request headers.
        http=_protocol_with_header_timeout(settings.header_timeout_seconds),
        access_log=False,  # the app logs one line per request itself
        timeout_graceful_shutdown=max(1, math.ceil(settings.shutdown_timeout_seconds)),
    )


def serve(settings: Settings) -> None:
    from analytics_ingestion.app import create_app

    with database_url(settings) as url:
        server = _Server(server_config(settings, create_app(settings, url)))
        _tune_garbage_collector()
        server.run()
        if not server.started:
            raise StartupFailed("the service did not start; see the log above")


async def _migrate(url: str, command: str) -> None:
    connection = await store.connect(url)
    try:
        if command == "status":
            print(await migrations.status(connection))
        elif command == "dry-run":
            print(await migrations.dry_run(connection))
        else:
            applied = await migrations.migrate(connection, command)
            if not applied:
                print(f"nothing pending ({command})")
    finally:
        await connection.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="analytics-ingestion",
        description="Receives the platform's analytics events over HTTP and stores them.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the HTTP service")
    migrate = commands.add_parser("migrate", help="apply or inspect the schema migrations")
    migrate.add_argument(
        "action",
        nargs="?",
        default="all",
        choices=["all", "pre", "post", "status", "dry-run"],
        help="all (default), pre-deploy, post-deploy, status, or print the SQL (dry-run)",
    )
    commands.add_parser(
        "bench",
        help="measure the write path against the database's COPY ceiling (bench --help)",
        add_help=False,
    )
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        from analytics_ingestion import bench

        return bench.main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        settings = Settings.from_environ()
        logs.configure(settings.log_level, settings.log_format)
        if args.command == "serve":
            serve(settings)
        else:
            with database_url(settings) as url:
                asyncio.run(_migrate(url, args.action))
    except (ConfigError, EmbeddedError, Unavailable, StartupFailed) as error:
        print(f"analytics-ingestion: {error}", file=sys.stderr)
        return 2
    return 0
