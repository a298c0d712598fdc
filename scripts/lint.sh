#!/usr/bin/env bash
# Every linter the project promises to be clean under. Fails on the first dirty one.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PWD/.venv/bin:$PATH"

echo "== ruff"
ruff check app tests bench molecule roles scripts plugins
echo "== role argument specs in step with defaults"
python scripts/role_specs.py --check
echo "== mypy"
mypy --config-file app/pyproject.toml app/taskplaner
echo "== yamllint"
yamllint -s .
echo "== ansible-lint (production profile)"
ANSIBLE_COLLECTIONS_PATH="" ansible-lint --profile production --offline -q
echo "== ansible-playbook --syntax-check"
ansible-playbook --syntax-check site.yml
echo "lint: all clean"
