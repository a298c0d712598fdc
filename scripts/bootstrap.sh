#!/usr/bin/env bash
# Set up what `make run` / `make test` need, skipping every step that is already done.
#   scripts/bootstrap.sh app    the Python venv with the app (for make run)
#   scripts/bootstrap.sh bench  the app + wrk (Debian) for the HTTP benchmark
#   scripts/bootstrap.sh test   + dev tools, Debian packages, the test cluster's binaries
#   scripts/bootstrap.sh deploy the venv with Ansible and its collections (make deploy), nothing else
#   scripts/bootstrap.sh image  a container engine for make image (podman, unless docker is there)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

what="${1:-app}"
venv=.venv
python="${PYTHON:-python3}"

say() { printf '[bootstrap] %s\n' "$*" >&2; }

# Debian packages the test suite drives for real (installed only when missing).
# prometheus ships promtool, which checks the alerting rules; chromium drives the browser tests;
# redis-server is the Redis the test cluster's Argo CD caches in (as the chart's redis pod does).
# sudo: the site scenario deploys as a non-root user with sudo, as on a real host.
# iproute2: the test cluster routes its pod network to this host (tests/cluster/cluster.sh).
# nftables: the k3s_metrics scenario loads the role's firewall rules for real, in a namespace.
DEBIAN_TEST_PACKAGES=(sqlite3 openssl ca-certificates git curl prometheus chromium fonts-dejavu-core
  redis-server sudo iproute2 nftables)
# The image tests build and run the image as a user would: podman (with runc, see
# scripts/image.sh), debootstrap for a base image where no registry serves one, podman-compose
# for docker-compose.yml.
DEBIAN_IMAGE_PACKAGES=(podman runc debootstrap podman-compose uidmap fuse-overlayfs slirp4netns)

ensure_debian_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  say "installing Debian packages: ${missing[*]}"
  local sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

ensure_venv() {
  local extra="$1" stamp key
  [[ -x "$venv/bin/python" ]] || { say "creating $venv"; "$python" -m venv "$venv"; }
  key="$(cat constraints.txt app/pyproject.toml | sha256sum | cut -c1-16)"
  stamp="$venv/.installed-$extra-$key"
  [[ -f "$stamp" ]] && return 0
  say "installing Python packages ($extra) from constraints.txt"
  "$venv/bin/pip" install -q --upgrade pip >/dev/null
  local target="app"
  [[ "$extra" == runtime ]] || target="app[$extra]"
  "$venv/bin/pip" install -q -c constraints.txt -e "$target"
  rm -f "$venv"/.installed-"$extra"-*
  touch "$stamp"
}

case "$what" in
  app) ensure_venv runtime ;;
  bench)
    ensure_debian_packages wrk "${DEBIAN_IMAGE_PACKAGES[@]}"
    ensure_venv runtime
    ;;
  test)  # each step's wall time (#33); the cluster build also logs each binary's
    started=$SECONDS
    # Compiling is CPU-bound, the Debian and pip installs network- and disk-bound: the binaries
    # build beside them (in a session of their own, so that a failure here stops all of it).
    setsid tests/cluster/build.sh all &
    builds=$!
    trap 'kill -- -"$builds" 2>/dev/null || true' EXIT
    ensure_debian_packages "${DEBIAN_TEST_PACKAGES[@]}" "${DEBIAN_IMAGE_PACKAGES[@]}"
    packages=$((SECONDS - started))
    ensure_venv dev
    venv_seconds=$((SECONDS - started - packages))
    wait "$builds" || { say "the cluster binaries did not build (see above)"; exit 1; }
    say "set up in $((SECONDS - started)) s: Debian packages ${packages} s and venv ${venv_seconds} s," \
        "beside the cluster binaries"
    ;;
  deploy) ensure_venv deploy ;;
  image) command -v docker >/dev/null || ensure_debian_packages "${DEBIAN_IMAGE_PACKAGES[@]}" ;;
  *) say "usage: $0 app|bench|test|deploy|image"; exit 2 ;;
esac
