from __future__ import annotations

from pathlib import Path

import pytest

from analytics_ingestion.errors import ConfigError
from analytics_ingestion.settings import Settings, default_data_dir


def test_defaults() -> None:
    settings = Settings.from_environ({"HOME": "/home/ana"})
    assert (settings.host, settings.port, settings.database_url) == ("0.0.0.0", 8094, None)
    assert settings.migrate_on_start is True
    assert settings.max_body_bytes == 64 * 1024 * 1024


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        pytest.param({"DATABASE_URL": "postgres://a/b"}, "postgres://a/b", id="database-url"),
        pytest.param(
            {"PLATFORM_DATABASE_URL": "postgresql://c/d"}, "postgresql://c/d", id="platform"
        ),
        pytest.param(
            {"DATABASE_URL": "postgres://a/b", "PLATFORM_DATABASE_URL": "postgres://c/d"},
            "postgres://a/b",
            id="database-url-first",
        ),
        pytest.param({"DATABASE_URL": " "}, None, id="blank-is-unset"),
    ],
)
def test_database_url(environ: dict[str, str], expected: str | None) -> None:
    assert Settings.from_environ(environ).database_url == expected


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        pytest.param(
            {"PORT": "http"},
            "invalid PORT='http': expected an integer >= 1 and <= 65535",
            id="port-text",
        ),
        pytest.param({"PORT": "70000"}, "invalid PORT='70000'", id="port-range"),
        pytest.param(
            {"MIGRATE_ON_START": "maybe"}, "invalid MIGRATE_ON_START='maybe'", id="boolean"
        ),
        pytest.param({"FLUSH_LINGER_SECONDS": "-1"}, "invalid FLUSH_LINGER_SECONDS", id="negative"),
        pytest.param(
            {"LOG_LEVEL": "loud"}, "invalid LOG_LEVEL='loud': expected one of", id="choice"
        ),
        pytest.param(
            {"DATABASE_URL": "mysql://user:secret@h/db"},
            "invalid DATABASE_URL: expected a URL",
            id="scheme",
        ),
        pytest.param(
            {"WRITE_KEYS": "good-key-0123456789,secret"},
            "invalid WRITE_KEYS: expected keys of at least 16 printable characters without "
            "spaces (key 2 is not)",
            id="short-key",
        ),
        pytest.param({"LOG_FORMAT": "xml"}, "invalid LOG_FORMAT='xml'", id="log-format"),
        pytest.param(
            {"MAX_CLOCK_SKEW_SECONDS": "1e12"},
            "invalid MAX_CLOCK_SKEW_SECONDS='1e12': expected a finite number >= 0.0 and <= 3.1622",
            id="skew-overflows",
        ),
    ],
)
def test_invalid_values_name_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_environ(environ)
    assert str(error.value).startswith(message)
    assert "secret" not in str(error.value)


def test_typed_values() -> None:
    settings = Settings.from_environ(
        {
            "PORT": "9000",
            "MIGRATE_ON_START": "off",
            "FLUSH_LINGER_SECONDS": "0.002",
            "MAX_BODY_BYTES": "1_048_576",
            "LOG_LEVEL": "debug",
            "EMBEDDED_DATA_DIR": "/srv/pg",
            "WRITE_KEYS": " key-one-0123456789 , key-two-0123456789 ",
            "LOG_FORMAT": "json",
            "MAX_CLOCK_SKEW_SECONDS": "60",
        }
    )
    assert settings.write_keys == ("key-one-0123456789", "key-two-0123456789")
    assert settings.log_format == "JSON"
    assert settings.max_clock_skew_seconds == 60
    assert settings.port == 9000
    assert settings.migrate_on_start is False
    assert settings.flush_linger_seconds == 0.002
    assert settings.max_body_bytes == 1_048_576
    assert settings.log_level == "DEBUG"
    assert settings.embedded_data_dir == Path("/srv/pg")


@pytest.mark.parametrize(
    ("environ", "is_root", "expected"),
    [
        pytest.param(
            {"HOME": "/home/ana"},
            False,
            "/home/ana/.local/share/adi-analytics-ingestion/postgres",
            id="user",
        ),
        pytest.param(
            {"HOME": "/home/ana", "XDG_DATA_HOME": "/data"},
            False,
            "/data/adi-analytics-ingestion/postgres",
            id="xdg",
        ),
        pytest.param(
            {"HOME": "/root"}, True, "/var/lib/adi-analytics-ingestion/postgres", id="root"
        ),
    ],
)
def test_default_data_dir(environ: dict[str, str], is_root: bool, expected: str) -> None:
    assert default_data_dir(environ, is_root) == Path(expected)
