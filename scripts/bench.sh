#!/usr/bin/env bash
# The benchmark: a private PostgreSQL (or DATABASE_URL), the COPY ceiling, the service under
# wrk, latency at half load, CPU and memory. Arguments go to `analytics-ingestion bench`
# (e.g. --runs 5 --seconds 30 --without-gin).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-postgres.sh
if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then apt-get install -y -qq wrk >&2; else sudo apt-get install -y -qq wrk >&2; fi
fi
scripts/venv.sh
exec .venv/bin/analytics-ingestion bench "$@"
