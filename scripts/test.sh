#!/usr/bin/env bash
# The whole suite, in order: app tests, the local test cluster (its own tests, then every
# Molecule scenario against the same running cluster), lint. Run through `make test`, which
# installs everything first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PWD/.venv/bin:$PATH"

# Each phase's wall time, printed when the next starts and together at the end (also when a
# phase fails), so a slower phase shows in every CI log (#33).
suite_started=$SECONDS phase_started=$SECONDS phase_name="" phase_times=()
phase() {
  phase_end
  phase_name="$1" phase_started=$SECONDS
  echo "== $phase_name"
}
phase_end() {
  [[ -n "$phase_name" ]] || return 0
  phase_times+=("$(printf '%5d s  %s' $((SECONDS - phase_started)) "$phase_name")")
  phase_name=""
}
phase_summary() {  # once: a failing scenario prints it before its failed tests, which stay last
  [[ -z "${summarized:-}" ]] || return 0
  summarized=1
  phase_end
  echo "== time per phase (total $((SECONDS - suite_started)) s)"
  printf '%s\n' "${phase_times[@]}"
}

trap phase_summary EXIT
phase "pytest: app (real SQLite, real files, real waitress)"
pytest tests/app tests/scripts -q

phase "pytest: the image (scripts/image.sh, podman: read-only, restarts, compose)"
pytest tests/image -q

phase "local test cluster: start once for the cluster tests and every Molecule scenario"
# CI keeps only the tail of the output, and Molecule's recap fills it: a failing scenario's
# failed tests and their first assertion lines are repeated last (from scenario_log).
scenario_log="$(mktemp)"
trap 'rm -f "$scenario_log"; tests/cluster/cluster.sh down; phase_summary' EXIT
tests/cluster/cluster.sh up >/dev/null
eval "$(tests/cluster/cluster.sh env)"
export TASKPLANER_CLUSTER_SHARED=1

phase "pytest: cluster harness (real kube-apiserver, kwok, helm, Gitea)"
pytest tests/cluster -q

scenarios=()
for dir in molecule/*/; do
  # molecule/default only answers Molecule's start-up read (see its molecule.yml)
  [[ -f "$dir/molecule.yml" && "$(basename "$dir")" != default ]] && scenarios+=("$(basename "$dir")")
done
if [[ ${#scenarios[@]} -eq 0 ]]; then
  echo "no Molecule scenario found under molecule/" >&2
  exit 1
fi
for scenario in "${scenarios[@]}"; do
  phase "molecule: $scenario"
  if ! molecule test -s "$scenario" 2>&1 | tee "$scenario_log"; then
    phase_summary
    echo "== molecule: $scenario failed; its failed tests and first assertion lines:"
    sed 's/\x1b\[[0-9;]*m//g; s/^[[:space:]]*│[[:space:]]\{0,1\}//' "$scenario_log" \
      | grep -a -E '^(FAILED|ERROR) |^E  |^fatal: ' | head -n 30
    exit 1
  fi
done

phase "lint"
scripts/lint.sh
