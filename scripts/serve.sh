#!/usr/bin/env bash
# Runs the service. With no DATABASE_URL (or PLATFORM_DATABASE_URL), it starts an embedded
# PostgreSQL from the machine's server binaries, installing them first if they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${DATABASE_URL:-}${PLATFORM_DATABASE_URL:-}" ]; then
  scripts/install-postgres.sh
fi
scripts/venv.sh
exec .venv/bin/analytics-ingestion serve "$@"
