"""The client's options, shared by the threaded and the asyncio client, with their defaults.

The only place the client reads the environment: `HOSTNAME` and `ENVIRONMENT` for shape A's
envelope, as the platform's client does.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

KIB = 1024
MIB = 1024 * KIB


def _hostname() -> str | None:
    return os.environ.get("HOSTNAME") or socket.gethostname() or None


def _environment() -> str | None:
    return os.environ.get("ENVIRONMENT") or None


@dataclass(frozen=True, kw_only=True)
class Options:
    # Sent as `Authorization: Bearer <key>`; kept out of the repr, so it never reaches a log.
    write_key: str | None = field(default=None, repr=False)
    enabled: bool = True  # False: events are checked and given ids, nothing is sent
    service: str | None = None  # the `service` of flat events that name none
    hostname: str | None = field(default_factory=_hostname)
    environment: str | None = field(default_factory=_environment)
    max_queue_events: int = 10_000
    max_queue_bytes: int = 8 * MIB
    max_batch_events: int = 500
    max_batch_bytes: int = 512 * KIB  # uncompressed
    flush_interval: float = 1.0  # seconds the oldest event waits for company
    max_event_bytes: int = 256 * KIB  # larger events are refused by track
    # Threaded: the connect and each read; asyncio: the whole exchange. Shutdown bounds both.
    http_timeout: float = 10.0
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    retry_deadline: float = 300.0  # then the batch is spooled, or dropped and counted
    exit_timeout: float = 2.0  # flushing at interpreter exit
    compress: bool = True  # gzip the request bodies
    spool_directory: str | Path | None = None  # undelivered batches kept across restarts
    spool_max_bytes: int = 64 * MIB

    def __post_init__(self) -> None:
        for name in ("max_queue_events", "max_queue_bytes", "max_batch_events"):
            self._require(name, getattr(self, name) >= 1, "at least 1")
        for name in ("max_batch_bytes", "max_event_bytes", "spool_max_bytes"):
            self._require(name, getattr(self, name) >= 64, "at least 64 bytes")
        for name in ("flush_interval", "http_timeout", "backoff_base", "backoff_cap"):
            self._require(name, getattr(self, name) > 0, "more than 0 seconds")
        for name in ("retry_deadline", "exit_timeout"):
            self._require(name, getattr(self, name) >= 0, "0 seconds or more")
        self._require(
            "max_event_bytes",
            self.max_event_bytes + 2 <= self.max_batch_bytes,
            "small enough for one event to fit a batch (max_batch_bytes)",
        )
        self._require(
            "max_batch_bytes",
            self.max_batch_bytes <= self.max_queue_bytes,
            "at most max_queue_bytes",
        )
        self._require(
            "max_batch_events",
            self.max_batch_events <= self.max_queue_events,
            "at most max_queue_events",
        )
        self._require("backoff_cap", self.backoff_cap >= self.backoff_base, "at least backoff_base")
        key = self.write_key
        if key is not None and not (key and key.isascii() and key.isprintable() and " " not in key):
            # Said without the value: it is a secret.
            raise ValueError("invalid option write_key: expected printable ASCII without spaces")

    def _require(self, name: str, holds: bool, expected: str) -> None:
        if not holds:
            raise ValueError(f"invalid option {name}={getattr(self, name)!r}: expected {expected}")
