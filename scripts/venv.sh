#!/usr/bin/env bash
# Creates .venv with the project installed (editable) and the given extras, e.g. "dev".
# Re-installs only when pyproject.toml changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:-}
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)-${extras:-runtime}
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip >&2
  .venv/bin/python -m pip install -q -e ".${extras:+[$extras]}" >&2
  rm -f .venv/.installed-*
  touch "$stamp"
fi
