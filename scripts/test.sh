#!/usr/bin/env bash
# The whole suite in two lanes side by side (#33): the local test cluster (its own tests, then
# every Molecule scenario against the same running cluster), and beside it what needs no cluster
# (the app and browser tests, the image, lint). Run through `make test`, which installs
# everything first.
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

# The lane that needs no cluster: one phase after another, its output in $side_log (shown when
# the cluster's lane is done), each phase's time in $side_times. The cluster's phases wait on
# the API server, Ansible and helm as much as on the CPU, so on two cores the two lanes take
# little more than the longer one.
side_log="$(mktemp)" side_times="$(mktemp)" side_rc="$(mktemp)"
side_phase() {  # side_phase NAME COMMAND...: run it, record its time; the lane stops at a failure
  local name="$1" started=$SECONDS
  shift
  echo "== $name"
  "$@" || { echo "$?" >"$side_rc"; printf '%5d s  %s (FAILED)\n' $((SECONDS - started)) "$name" >>"$side_times"; return 1; }
  printf '%5d s  %s\n' $((SECONDS - started)) "$name" >>"$side_times"
}
side_lane() {
  side_phase "pytest: app (real SQLite, real files, real waitress; beside the cluster)" \
      pytest tests/app -q \
    && side_phase "pytest: the image (scripts/image.sh, podman: read-only, restarts, compose; beside the cluster)" \
      pytest tests/image -q \
    && side_phase "lint (beside the cluster)" scripts/lint.sh
}
# in a session of its own, so that stopping it stops its pytest and podman too
export side_times side_rc
export -f side_phase side_lane
setsid bash -c side_lane >"$side_log" 2>&1 &
side_pid=$!
side_done() {  # wait for the side lane once; show its output and times; fail if it failed
  [[ -n "${side_pid:-}" ]] || return 0
  wait "$side_pid" || true
  side_pid=""
  echo "== the lane beside the cluster (app, image, lint): its output"
  cat "$side_log"
  phase_times+=("$(cat "$side_times")")
  [[ ! -s "$side_rc" ]]
}
side_stop() { [[ -z "${side_pid:-}" ]] || kill -- "-$side_pid" 2>/dev/null || true; }
trap 'side_stop; phase_summary' EXIT

# Molecule's state files are per scenario: tests/scripts runs `molecule syntax` on one, so it runs
# here, before the cluster's lane runs that scenario.
phase "pytest: scripts"
pytest tests/scripts -q

phase "local test cluster: start once for the cluster tests and every Molecule scenario"
# CI keeps only the tail of the output, and Molecule's recap fills it: a failing scenario's
# failed tests and their first assertion lines are repeated last (from scenario_log).
scenario_log="$(mktemp)"
trap 'side_stop; rm -f "$scenario_log"; tests/cluster/cluster.sh down; phase_summary' EXIT
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
    side_stop
    phase_summary
    echo "== molecule: $scenario failed; its failed tests and first assertion lines:"
    sed 's/\x1b\[[0-9;]*m//g; s/^[[:space:]]*│[[:space:]]\{0,1\}//' "$scenario_log" \
      | grep -a -E '^(FAILED|ERROR) |^E  |^fatal: ' | head -n 30
    exit 1
  fi
done

phase_end
if ! side_done; then
  phase_summary
  echo "== the lane beside the cluster failed; its failed tests and first assertion lines:"
  grep -a -E '^(FAILED|ERROR) |^E  ' "$side_log" | head -n 30
  exit 1
fi
