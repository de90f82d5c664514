"""Receives the platform's analytics events over HTTP and stores them in PostgreSQL +
TimescaleDB, each exactly once.

The path of an event: `app` (HTTP) -> `wire` (decode, validate) -> `writer` (group commit)
-> `store` (COPY into PostgreSQL). `settings` reads the environment, `migrations` owns the
schema, `embedded` runs a local PostgreSQL when none is configured.
"""

__version__ = "0.1.0"
