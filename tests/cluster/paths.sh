# Sourced by build.sh and cluster.sh: pinned versions and where binaries and state live.
# shellcheck shell=bash
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
cache="${TASKPLANER_CLUSTER_CACHE:-$HOME/.cache/taskplaner-cluster}"
bin="$cache/bin"
