"""Configuration: the only module that reads the environment.

Every setting is read by `Settings.from_environ`, which takes a mapping so tests pass a
dict. An invalid value raises `ConfigError` naming the variable, the value and what was
expected.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from analytics_ingestion.errors import ConfigError

T = TypeVar("T")

APP_DIR_NAME = "adi-analytics-ingestion"


def default_data_dir(environ: Mapping[str, str], is_root: bool) -> Path:
    """Where the embedded PostgreSQL keeps its files when no directory is configured.

    Root gets a system directory: PostgreSQL refuses to run as root, and the user it runs
    as cannot enter root's home.
    """
    if is_root:
        return Path("/var/lib") / APP_DIR_NAME / "postgres"
    home = Path(environ.get("HOME") or Path.home())
    base = Path(environ["XDG_DATA_HOME"]) if environ.get("XDG_DATA_HOME") else home / ".local/share"
    return base / APP_DIR_NAME / "postgres"


@dataclass(frozen=True)
class Settings:
    host: str = "0.0.0.0"
    port: int = 8094
    database_url: str | None = None
    migrate_on_start: bool = True
    embedded_data_dir: Path = Path("postgres")
    embedded_postgres_bin: Path | None = None
    embedded_os_user: str | None = None
    max_body_bytes: int = 64 * 1024 * 1024
    max_inflight_bytes: int = 256 * 1024 * 1024
    queue_max_events: int = 200_000
    flush_max_events: int = 5_000
    flush_linger_seconds: float = 0.0
    writer_connections: int = 2
    queue_timeout_seconds: float = 5.0
    flush_timeout_seconds: float = 10.0
    retry_after_seconds: int = 1
    shutdown_timeout_seconds: float = 20.0
    log_level: str = "INFO"
    log_format: str = "TEXT"
    write_keys: tuple[str, ...] = ()
    max_clock_skew_seconds: float = 3600.0
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        read = _Reader(env)
        max_body_bytes = read.integer("MAX_BODY_BYTES", cls.max_body_bytes, minimum=1024)
        return cls(
            host=read.text("HOST", cls.host),
            port=read.integer("PORT", cls.port, minimum=1, maximum=65535),
            database_url=read.database_url(),
            migrate_on_start=read.boolean("MIGRATE_ON_START", cls.migrate_on_start),
            embedded_data_dir=read.path("EMBEDDED_DATA_DIR")
            or default_data_dir(env, is_root=os.geteuid() == 0),
            embedded_postgres_bin=read.path("EMBEDDED_POSTGRES_BIN"),
            embedded_os_user=read.optional_text("EMBEDDED_OS_USER"),
            max_body_bytes=max_body_bytes,
            max_inflight_bytes=read.integer(
                "MAX_INFLIGHT_BYTES", cls.max_inflight_bytes, minimum=max_body_bytes
            ),
            queue_max_events=read.integer("QUEUE_MAX_EVENTS", cls.queue_max_events, minimum=1),
            flush_max_events=read.integer("FLUSH_MAX_EVENTS", cls.flush_max_events, minimum=1),
            flush_linger_seconds=read.number(
                "FLUSH_LINGER_SECONDS", cls.flush_linger_seconds, minimum=0.0
            ),
            writer_connections=read.integer(
                "WRITER_CONNECTIONS", cls.writer_connections, minimum=1, maximum=64
            ),
            queue_timeout_seconds=read.number(
                "QUEUE_TIMEOUT_SECONDS", cls.queue_timeout_seconds, minimum=0.01
            ),
            flush_timeout_seconds=read.number(
                "FLUSH_TIMEOUT_SECONDS", cls.flush_timeout_seconds, minimum=0.1
            ),
            retry_after_seconds=read.integer(
                "RETRY_AFTER_SECONDS", cls.retry_after_seconds, minimum=1, maximum=3600
            ),
            shutdown_timeout_seconds=read.number(
                "SHUTDOWN_TIMEOUT_SECONDS", cls.shutdown_timeout_seconds, minimum=0.0
            ),
            log_level=read.choice(
                "LOG_LEVEL", cls.log_level, ("DEBUG", "INFO", "WARNING", "ERROR")
            ),
            log_format=read.choice("LOG_FORMAT", cls.log_format, ("TEXT", "JSON")),
            write_keys=read.secrets("WRITE_KEYS"),
            max_clock_skew_seconds=read.number(
                "MAX_CLOCK_SKEW_SECONDS",
                cls.max_clock_skew_seconds,
                minimum=0.0,
                maximum=366 * 86400 * 100,  # a century: beyond, the dates overflow
            ),
            header_timeout_seconds=read.number(
                "HEADER_TIMEOUT_SECONDS", cls.header_timeout_seconds, minimum=0.1
            ),
            body_timeout_seconds=read.number(
                "BODY_TIMEOUT_SECONDS", cls.body_timeout_seconds, minimum=0.1
            ),
        )


class _Reader:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def _raw(self, name: str) -> str | None:
        value = self._environ.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def _convert(self, name: str, default: T, convert: Callable[[str], T], expected: str) -> T:
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            return convert(raw)
        except ValueError:
            raise ConfigError(name, raw, expected) from None

    def text(self, name: str, default: str) -> str:
        return self._raw(name) or default

    def optional_text(self, name: str) -> str | None:
        return self._raw(name)

    def path(self, name: str) -> Path | None:
        raw = self._raw(name)
        return Path(raw).expanduser() if raw is not None else None

    def integer(self, name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
        expected = f"an integer >= {minimum}" + (f" and <= {maximum}" if maximum else "")

        def convert(raw: str) -> int:
            value = int(raw.replace("_", ""))
            if value < minimum or (maximum is not None and value > maximum):
                raise ValueError
            return value

        return self._convert(name, default, convert, expected)

    def number(
        self, name: str, default: float, *, minimum: float, maximum: float = float("inf")
    ) -> float:
        def convert(raw: str) -> float:
            value = float(raw)
            if not minimum <= value < float("inf") or value > maximum:
                raise ValueError
            return value

        bounds = f">= {minimum}" + (f" and <= {maximum:g}" if maximum < float("inf") else "")
        return self._convert(name, default, convert, f"a finite number {bounds}")

    def boolean(self, name: str, default: bool) -> bool:
        def convert(raw: str) -> bool:
            lowered = raw.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError

        return self._convert(name, default, convert, "one of true/false, 1/0, yes/no, on/off")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        def convert(raw: str) -> str:
            if raw.upper() not in choices:
                raise ValueError
            return raw.upper()

        return self._convert(name, default, convert, "one of " + ", ".join(choices))

    def secrets(self, name: str) -> tuple[str, ...]:
        """A comma-separated list of keys; a bad one is named by position, never echoed."""
        raw = self._raw(name)
        if raw is None:
            return ()
        keys = tuple(key.strip() for key in raw.split(","))
        for position, key in enumerate(keys, 1):
            if len(key) < 16 or not key.isprintable() or " " in key:
                raise ConfigError(
                    name, None, f"keys of at least 16 printable characters without spaces "
                    f"(key {position} is not)"
                )  # fmt: skip
        return keys

    def database_url(self) -> str | None:
        for name in ("DATABASE_URL", "PLATFORM_DATABASE_URL"):
            raw = self._raw(name)
            if raw is None:
                continue
            if not raw.startswith(("postgres://", "postgresql://")):
                # The value is a credential: name the variable, never echo it.
                raise ConfigError(name, None, "a URL starting with postgres:// or postgresql://")
            return raw
        return None
