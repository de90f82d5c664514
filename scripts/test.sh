#!/usr/bin/env bash
# The whole test suite, from a fresh machine: PostgreSQL 15 and TimescaleDB (installed if
# missing), the project in .venv with its dev tools, then formatting, lint, types and tests.
# Arguments go to pytest (e.g. scripts/test.sh tests/unit -x).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-postgres.sh
scripts/venv.sh dev
.venv/bin/ruff format --check src tests client
.venv/bin/ruff check src tests client
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
