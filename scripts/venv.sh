#!/usr/bin/env bash
# Creates .venv with the project and its client installed (editable), with the given extras
# of the project, e.g. "dev". Re-installs only when a pyproject.toml changed since the last
# install.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:-}
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml client/pyproject.toml | sha256sum | cut -c1-16)-${extras:-runtime}
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip >&2
  .venv/bin/python -m pip install -q -e ".${extras:+[$extras]}" -e client >&2
  rm -f .venv/.installed-*
  touch "$stamp"
fi
