#!/usr/bin/env bash
# The one definition of how TaskPlaner's image is built: `make image`, the image tests
# (tests/image) and the Gitea pipeline all call this.
#
#   scripts/image.sh build [TAG]   build app/Dockerfile (context: this repository) as TAG
#                                  (default localhost/taskplaner:dev) and print TAG
#   scripts/image.sh engine        print the container engine it uses: podman, else docker
#                                  (TASKPLANER_IMAGE_ENGINE=docker chooses)
#
# The Dockerfile's base (FROM) is pulled when a registry serves it. When none does (a machine
# that reaches only Debian's and PyPI's packages), it is made here from Debian's packages:
# `debootstrap --variant=minbase bookworm`, then python3 and pip, tagged with the base's own
# name so the Dockerfile builds as shipped. That base is a STAND-IN for the python image: the
# same Debian release and Python minor version (3.11), but Debian's build of Python (3.11.2)
# instead of python.org's latest 3.11, and Debian's pip. It cannot show a difference between
# those two builds of Python. It is labelled org.taskplaner.base=debian-packages, and replaced
# by the real base as soon as a registry serves it.
#
# podman runs with runc and without default ulimits when runc is installed (crun, podman's
# default, fails on hosts with cgroups v1 and on some rlimit setups): a containers.conf under
# the cache says so, unless CONTAINERS_CONF already names one.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cache="${XDG_CACHE_HOME:-$HOME/.cache}/taskplaner-image"
say() { echo "image: $*" >&2; }

engine() {
  if [[ -n "${TASKPLANER_IMAGE_ENGINE:-}" ]]; then echo "$TASKPLANER_IMAGE_ENGINE"
  elif command -v podman >/dev/null; then echo podman
  elif command -v docker >/dev/null; then echo docker
  else echo "image: neither podman nor docker is installed" >&2; return 1
  fi
}

podman_settings() {
  [[ -n "${CONTAINERS_CONF:-}" || ! -x /usr/sbin/runc ]] && return 0
  mkdir -p "$cache"
  printf '[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\n' >"$cache/containers.conf"
  export CONTAINERS_CONF="$cache/containers.conf"
}

has_image() { "$ENGINE" image inspect "$1" >/dev/null 2>&1; }

stand_in() {
  [[ "$("$ENGINE" image inspect --format '{{ index .Config.Labels "org.taskplaner.base" }}' "$1" \
    2>/dev/null)" == debian-packages ]]
}

# The base from Debian's packages (see the header), tagged as the Dockerfile's base.
debian_base() {
  local base="$1" tarball="$cache/bookworm-minbase.tar" root
  command -v debootstrap >/dev/null || { say "no registry serves $base, and debootstrap is missing"; return 1; }
  mkdir -p "$cache"
  if [[ ! -s "$tarball" ]]; then
    say "no registry serves $base: making it from Debian's packages (debootstrap, once)"
    root="$(mktemp -d)"
    # shellcheck disable=SC2064 # the path is fixed now
    trap "rm -rf '$root'" RETURN
    debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >"$cache/debootstrap.log" 2>&1 \
      || { tail -n 20 "$cache/debootstrap.log" >&2; return 1; }
    # package lists, caches, docs and translations are not part of an image
    tar -C "$root" --exclude=./var/cache/apt/archives/'*.deb' --exclude=./var/lib/apt/lists/'*' \
      --exclude=./usr/share/doc/'*' --exclude=./usr/share/man/'*' --exclude=./usr/share/locale/'*' \
      -cf "$tarball.part" .
    mv "$tarball.part" "$tarball"
  fi
  "$ENGINE" import "$tarball" localhost/taskplaner-minbase:bookworm >/dev/null
  mkdir -p "$cache/base"
  cat >"$cache/base/Containerfile" <<'EOF'
FROM localhost/taskplaner-minbase:bookworm
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-pip ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/lib/python3.11/EXTERNALLY-MANAGED \
 && ln -s /usr/bin/python3 /usr/local/bin/python && ln -s /usr/bin/pip3 /usr/local/bin/pip
EOF
  "$ENGINE" build --network host -t "$base" --label org.taskplaner.base=debian-packages \
    "$cache/base" >"$cache/base-build.log" 2>&1 || { tail -n 20 "$cache/base-build.log" >&2; return 1; }
}

ensure_base() {
  local base="$1"
  if has_image "$base" && ! stand_in "$base"; then return 0; fi
  if "$ENGINE" pull -q "$base" >/dev/null 2>&1; then return 0; fi
  has_image "$base" || debian_base "$base"
}

build() {
  local tag="${1:-localhost/taskplaner:dev}" base
  base="$(sed -n 's/^FROM \([^ ]*\).*/\1/p' app/Dockerfile | head -n 1)"
  [[ "$base" == */* ]] || base="docker.io/library/$base"
  ensure_base "$base"
  local args=(build -f app/Dockerfile -t "$tag")
  if [[ "$ENGINE" == podman ]]; then
    # docker's image format keeps the Dockerfile's HEALTHCHECK (OCI's has no such field)
    args+=(--format docker --network host)
    # a machine whose TLS is re-signed on its way out names its CA bundle in PIP_CERT; pip in
    # the build needs it too (mounted beside the image's own bundle, which apt manages)
    if [[ -n "${PIP_CERT:-}" && -r "$PIP_CERT" ]]; then
      args+=(-v "$PIP_CERT:/run/taskplaner-host-ca.crt:ro" --env PIP_CERT=/run/taskplaner-host-ca.crt)
    fi
  fi
  "$ENGINE" "${args[@]}" . >&2
  echo "$tag"
}

ENGINE="$(engine)"
[[ "$ENGINE" == podman ]] && podman_settings
case "${1:-}" in
  build) build "${2:-}" ;;
  engine) echo "$ENGINE" ;;
  *) echo "usage: scripts/image.sh build [TAG] | engine" >&2; exit 2 ;;
esac
