#!/usr/bin/env bash
# Build the local test cluster's binaries from their upstream Go modules, once per version.
#
# Output: $TASKPLANER_CLUSTER_CACHE/bin/<name>-<version> (default ~/.cache/taskplaner-cluster).
# A warm cache builds nothing. Each build has a timeout and prints its log tail on failure.
set -euo pipefail

# shellcheck source=paths.sh
source "$(dirname "${BASH_SOURCE[0]}")/paths.sh"
build_timeout="${TASKPLANER_BUILD_TIMEOUT:-2400}"
mkdir -p "$bin" "$cache/logs"
export CGO_ENABLED="${CGO_ENABLED:-1}" GOFLAGS="-buildvcs=false"
# The compiler and linker collect garbage less often: helm from an empty build cache in 114 s
# instead of 151 s, at 953 MiB peak instead of 873 (GOGC=off: 108 s, 1.1 GiB); the binaries are
# byte for byte the same.
export GOGC="${GOGC:-400}"

log() { printf '[cluster-build] %s\n' "$*" >&2; }

# Each component has a fetch step (its modules: network-bound) and a build step (compiling:
# CPU-bound). `all` runs the fetches in a lane of their own, ahead of the builds, so that the
# CPU compiles one component while the network brings the next (#33). A fetch holds its step's
# lock file (components that share a wrapper share the step), so the build lane waits for a
# fetch in flight instead of starting a second one.

# run_fetch NAME VERSION FETCH [ARG]: FETCH, once per version, under its step's lock. The build
# lane calls it with fetch_quiet set: its own log line says how long it waited.
run_fetch() {
  local name="$1" version="$2" step="$3"; shift 3
  local done="$cache/fetched/$name-$version"
  [[ -x "$bin/$name-$version" || -f "$done" ]] && return 0
  local logf="$cache/logs/$name-$version.fetch.log" start=$SECONDS
  if ! flock "$cache/locks/$step" timeout "$build_timeout" "$0" _step fetch_once "$done" "$step" "$@" >>"$logf" 2>&1; then
    log "FAILED to fetch the modules of $name $version; last lines of $logf:"
    tail -n 40 "$logf" >&2
    return 1
  fi
  [[ -n "${fetch_quiet:-}" ]] || log "fetched $name $version in $((SECONDS - start)) s"
}

# fetch_once DONE STEP [ARG]: STEP, then DONE; nothing if DONE is there, which is checked again
# under the lock (the other lane may have fetched it while this one waited).
fetch_once() { local done="$1"; shift; [[ -f "$done" ]] || { "$@" && touch "$done"; }; }

# run_build NAME VERSION FETCH BUILD [ARG]: fetches (unless done), then runs BUILD under a
# timeout, logging to a file; on failure names the step and shows the log tail.
run_build() {
  local name="$1" version="$2" fetch="$3" step="$4"; shift 4
  local out="$bin/$name-$version" logf="$cache/logs/$name-$version.log"
  [[ -x "$out" ]] && return 0
  local start=$SECONDS fetch_quiet=1
  run_fetch "$name" "$version" "$fetch" "$@" || exit 1
  local fetched=$SECONDS
  log "building $name $version (first time only; this takes minutes) — log: $logf"
  if ! timeout "$build_timeout" "$0" _step "$step" "$@" >"$logf" 2>&1; then
    log "FAILED to build $name $version; last lines of $logf:"
    tail -n 40 "$logf" >&2
    exit 1
  fi
  log "built $name $version in $((SECONDS - fetched)) s (modules: $((fetched - start)) s more here)"
}

# `go install -n` loads every package the build needs, downloading their modules, and compiles
# nothing: the fetch step of the components built with `go install`.
fetch_install() { local gobin; gobin="$(mktemp -d)"; GOBIN="$gobin" go install -n "$@" >/dev/null; rmdir "$gobin"; }

fetch_kine() { fetch_install "github.com/k3s-io/kine@$KINE_VERSION"; }
fetch_kwok() { fetch_install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"; }
fetch_helm() { CGO_ENABLED=0 fetch_install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"; }

build_kine() {
  local gobin; gobin="$(mktemp -d)"
  GOBIN="$gobin" go install "github.com/k3s-io/kine@$KINE_VERSION"
  mv "$gobin/kine" "$bin/kine-$KINE_VERSION"; rmdir "$gobin"
}

build_kwok() {
  local gobin; gobin="$(mktemp -d)"
  GOBIN="$gobin" go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  mv "$gobin/kwok" "$bin/kwok-$KWOK_VERSION"; rmdir "$gobin"
}

build_helm() {
  local gobin; gobin="$(mktemp -d)"
  GOBIN="$gobin" CGO_ENABLED=0 go install \
    -ldflags "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  mv "$gobin/helm" "$bin/helm-$HELM_VERSION"; rmdir "$gobin"
}

# Wrapper modules: a module of our own in $cache/src/NAME-VERSION that requires the program's
# module, made once (.ready marks a complete one) by the fetch step; the build step compiles in it.
stub_main() { printf 'package main\n\nfunc main() {}\n' > main.go; }
wrapper_ready() { [[ -f "$cache/src/$1/.ready" ]]; }
wrapper_done() { touch "$cache/src/$1/.ready"; }
in_wrapper() { cd "$cache/src/$1"; }

# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces the staging modules with
# local paths and requires them at v0.0.0. A wrapper module pins each staging module to the
# matching published v0.Y.Z instead (the same trick rancher/rancher's go.mod uses). The four
# Kubernetes programs share it, so each package is compiled once for all of them.
fetch_kube() {
  local name="kubernetes-$KUBERNETES_VERSION"
  wrapper_ready "$name" && return 0
  local dir="$cache/src/$name" staging="v0.${KUBERNETES_VERSION#v1.}" gomod
  rm -rf "$dir"; mkdir -p "$dir"; cd "$dir"
  go mod init taskplaner.test/kubecluster
  gomod="$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  go mod edit -go="$(sed -n 's/^go //p' "$gomod")"
  go mod edit -require="k8s.io/kubernetes@$KUBERNETES_VERSION"
  while read -r mod; do
    go mod edit -replace="$mod=$mod@$staging"
  done < <(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => \./staging/.*#\1#p' "$gomod")
  stub_main
  go get "k8s.io/kubernetes/cmd/kube-apiserver@$KUBERNETES_VERSION" \
         "k8s.io/kubernetes/cmd/kube-controller-manager@$KUBERNETES_VERSION" \
         "k8s.io/kubernetes/cmd/kube-scheduler@$KUBERNETES_VERSION" \
         "k8s.io/kubernetes/cmd/kubectl@$KUBERNETES_VERSION"
  wrapper_done "$name"
}

build_kube() {
  local component="$1" v="$KUBERNETES_VERSION" minor pkg ldflags=""
  minor="$(echo "$v" | cut -d. -f2)"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  in_wrapper "kubernetes-$v"
  go build -mod=mod -trimpath -ldflags "-s -w $ldflags" -o "$bin/$component-$v" "k8s.io/kubernetes/cmd/$component"
}

# wrapper_module NAME MODULE VERSION: a fresh wrapper module (see above) that requires
# MODULE@VERSION and repeats its replace directives (single-line and block form), which a
# requiring module would otherwise ignore. Gitea and Argo CD both need this to build outside
# their own repos. Leaves the shell in the wrapper's folder.
wrapper_module() {
  local dir="$cache/src/$1" module="$2" version="$3" gomod
  rm -rf "$dir"; mkdir -p "$dir"
  cd "$dir"
  go mod init "taskplaner.test/$1"
  gomod="$(go mod download -json "$module@$version" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  go mod edit -go="$(sed -n 's/^go //p' "$gomod")"
  go mod edit -require="$module@$version"
  awk '/^replace \(/{blk=1;next} blk&&/^\)/{blk=0;next} blk{print;next} /^replace /{sub(/^replace /,"");print}' "$gomod" \
    | while read -r line; do
        line="${line%%//*}"; line="$(echo "$line" | xargs)"  # drop comments and padding
        [[ -z "$line" ]] && continue
        lhs="$(echo "$line" | sed 's/ *=>.*//' | tr -s ' ' '@')"
        rhs="$(echo "$line" | sed 's/.*=> *//' | tr -s ' ' '@')"
        go mod edit -replace="$lhs=$rhs"
      done
}

fetch_gitea() {
  local version="$1"
  wrapper_ready "gitea-$version" && return 0
  wrapper_module "gitea-$version" code.gitea.io/gitea "$version"
  stub_main
  go get "code.gitea.io/gitea@$version"
  wrapper_done "gitea-$version"
}

# Built with the sqlite tags; templates and assets are read from the module source at run
# time (no bindata build, no Node toolchain needed).
build_gitea() {
  local version="$1"
  in_wrapper "gitea-$version"
  go build -trimpath -tags 'sqlite sqlite_unlock_notify' \
    -ldflags "-s -w -X main.Version=${version#v}" -o "$bin/gitea-$version" code.gitea.io/gitea
}

fetch_argocd() {
  local name="argocd-$ARGOCD_VERSION"
  wrapper_ready "$name" && return 0
  wrapper_module "$name" github.com/argoproj/argo-cd/v3 "$ARGOCD_VERSION"
  cp "$here/argocd/main.go" main.go
  go get "github.com/argoproj/argo-cd/v3@$ARGOCD_VERSION"
  go mod tidy
  wrapper_done "$name"
}

# Argo CD's controller, repo-server and API server in one binary (tests/cluster/argocd/main.go
# picks the program by file name, as upstream's does), without the CLI and the components the
# test cluster does not run. The UI is embedded from the module's prebuilt ui/dist.
build_argocd() {
  local pkg=github.com/argoproj/argo-cd/v3/common
  in_wrapper "argocd-$ARGOCD_VERSION"
  go build -trimpath -ldflags "-s -w -X $pkg.version=${ARGOCD_VERSION#v} -X $pkg.gitTag=$ARGOCD_VERSION -X $pkg.gitCommit=module -X $pkg.gitTreeState=clean" \
    -o "$bin/argocd-$ARGOCD_VERSION" .
}

# The operator's go.mod points its API and client modules at local folders, which a module zip
# leaves out: the wrapper takes their published releases of the same version instead. One
# wrapper builds both of its programs: the operator, and the config-reloader its pods run.
fetch_prometheus_operator() {
  local module=github.com/prometheus-operator/prometheus-operator version="$PROMETHEUS_OPERATOR_VERSION"
  local name="prometheus-operator-$version" sub
  wrapper_ready "$name" && return 0
  wrapper_module "$name" "$module" "$version"
  for sub in pkg/apis/monitoring pkg/client; do
    go mod edit -replace="$module/$sub=$module/$sub@$version"
  done
  stub_main
  go get "$module/cmd/operator@$version" "$module/cmd/prometheus-config-reloader@$version"
  wrapper_done "$name"
}

build_prometheus_operator() {  # build_prometheus_operator CMD OUTPUT-NAME
  in_wrapper "prometheus-operator-$PROMETHEUS_OPERATOR_VERSION"
  go build -trimpath -ldflags "-s -w -X github.com/prometheus/common/version.Version=${PROMETHEUS_OPERATOR_VERSION#v}" \
    -o "$bin/$2-$PROMETHEUS_OPERATOR_VERSION" "github.com/prometheus-operator/prometheus-operator/cmd/$1"
}

# Prometheus vX.Y.Z is published as module v0.X0Y.Z (v3.14.0 = v0.314.0).
prometheus_module_version() { echo "$PROMETHEUS_VERSION" | awk -F. '{ printf "v0.%d%02d.%s", substr($1, 2), $2, $3 }'; }

fetch_prometheus() {
  local name="prometheus-$PROMETHEUS_VERSION" module_version
  wrapper_ready "$name" && return 0
  module_version="$(prometheus_module_version)"
  wrapper_module "$name" github.com/prometheus/prometheus "$module_version"
  stub_main
  go get "github.com/prometheus/prometheus/cmd/prometheus@$module_version"
  wrapper_done "$name"
}

# Built with its own lighter-build tags: every service discovery but Kubernetes's left out (the
# operator's configuration uses no other), the web UI read from the module source rather than
# embedded.
build_prometheus() {
  in_wrapper "prometheus-$PROMETHEUS_VERSION"
  go build -trimpath -tags 'remove_all_sd enable_kubernetes_sd' \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=${PROMETHEUS_VERSION#v}" \
    -o "$bin/prometheus-$PROMETHEUS_VERSION" github.com/prometheus/prometheus/cmd/prometheus
}

fetch_traefik() {
  local name="traefik-$TRAEFIK_VERSION"
  wrapper_ready "$name" && return 0
  wrapper_module "$name" github.com/traefik/traefik/v3 "$TRAEFIK_VERSION"
  stub_main
  go get "github.com/traefik/traefik/v3/cmd/traefik@$TRAEFIK_VERSION"
  wrapper_done "$name"
}

# Traefik, as k3s runs it in front of the apps (its Ingress and CRD providers); no cgo.
build_traefik() {
  in_wrapper "traefik-$TRAEFIK_VERSION"
  CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=${TRAEFIK_VERSION#v}" \
    -o "$bin/traefik-$TRAEFIK_VERSION" github.com/traefik/traefik/v3/cmd/traefik
}

# Our own small programs (modules in this repository): fetching is downloading their go.sum.
fetch_alloy_syntax_check() { cd "$here/../alloy" && go mod download; }
fetch_k3s_deploy() { cd "$here/../k3s-deploy" && go mod download; }

# Alloy's own configuration parser and evaluator, wrapped by tests/alloy (a small Go program, with
# Prometheus's relabel package for the rules): the alloy role's tests check the configuration it
# renders with it, and what its relabel rules make of real pods' labels.
build_alloy_syntax_check() {
  (cd "$here/../alloy" && go build -trimpath -ldflags "-s -w" \
    -o "$bin/alloy-syntax-check-$ALLOY_CHECK_VERSION" .)
}

# What k3s does with its manifests folder at each start (tests/k3s-deploy, wrangler's apply): the
# restart tests run it.
build_k3s_deploy() {
  (cd "$here/../k3s-deploy" && go build -trimpath -ldflags "-s -w" \
    -o "$bin/k3s-deploy-$K3S_DEPLOY_VERSION" .)
}

# k3s's HelmChart and HelmChartConfig CRDs ship in helm-controller's module (generated YAML):
# downloading the module is all (cluster.sh applies them from the module cache).
fetch_helm_controller() {
  go mod download "github.com/k3s-io/helm-controller@$HELM_CONTROLLER_VERSION" \
    || { log "FAILED to download github.com/k3s-io/helm-controller@$HELM_CONTROLLER_VERSION"; exit 1; }
}

# component COMPONENT: NAME VERSION FETCH BUILD [ARG], as run_fetch and run_build take them.
component() {
  case "$1" in
    kine) echo kine "$KINE_VERSION" fetch_kine build_kine ;;
    kwok) echo kwok "$KWOK_VERSION" fetch_kwok build_kwok ;;
    helm) echo helm "$HELM_VERSION" fetch_helm build_helm ;;
    kube-apiserver|kube-controller-manager|kube-scheduler|kubectl)
      echo "$1" "$KUBERNETES_VERSION" fetch_kube build_kube "$1" ;;
    gitea) echo gitea "$GITEA_VERSION" fetch_gitea build_gitea "$GITEA_VERSION" ;;
    gitea-previous) echo gitea "$GITEA_PREVIOUS_VERSION" fetch_gitea build_gitea "$GITEA_PREVIOUS_VERSION" ;;
    argocd) echo argocd "$ARGOCD_VERSION" fetch_argocd build_argocd ;;
    prometheus-operator)
      echo prometheus-operator "$PROMETHEUS_OPERATOR_VERSION" fetch_prometheus_operator \
        build_prometheus_operator operator prometheus-operator ;;
    prometheus-config-reloader)
      echo prometheus-config-reloader "$PROMETHEUS_OPERATOR_VERSION" fetch_prometheus_operator \
        build_prometheus_operator prometheus-config-reloader prometheus-config-reloader ;;
    prometheus) echo prometheus "$PROMETHEUS_VERSION" fetch_prometheus build_prometheus ;;
    traefik) echo traefik "$TRAEFIK_VERSION" fetch_traefik build_traefik ;;
    alloy-syntax-check) echo alloy-syntax-check "$ALLOY_CHECK_VERSION" fetch_alloy_syntax_check build_alloy_syntax_check ;;
    k3s-deploy) echo k3s-deploy "$K3S_DEPLOY_VERSION" fetch_k3s_deploy build_k3s_deploy ;;
    *) return 1 ;;
  esac
}

# The order the `all` lanes take: what the cluster starts with first.
ALL=(kine helm kwok kube-apiserver kube-controller-manager kube-scheduler kubectl gitea gitea-previous
     argocd prometheus-operator prometheus-config-reloader prometheus traefik alloy-syntax-check k3s-deploy)

what="${1:-all}"
if [[ "$what" == _step ]]; then shift; set -x; "$@"; exit; fi
mkdir -p "$cache/locks" "$cache/fetched"
case "$what" in
  helm-controller) fetch_helm_controller ;;
  fetch)  # fetch COMPONENT: only its modules
    read -ra spec < <(component "$2") || { log "unknown component: $2"; exit 2; }
    run_fetch "${spec[@]:0:3}" "${spec[@]:4}" ;;
  all)
    started=$SECONDS
    (for c in "${ALL[@]}"; do "$0" fetch "$c" || true; done; fetch_helm_controller) &
    fetch_lane=$!
    trap 'kill "$fetch_lane" 2>/dev/null || true' EXIT
    for c in "${ALL[@]}"; do "$0" "$c"; done
    wait "$fetch_lane"
    log "all binaries there in $((SECONDS - started)) s" ;;
  path) echo "$bin" ;;
  *)
    read -ra spec < <(component "$what") || { log "unknown component: $what"; exit 2; }
    run_build "${spec[@]}" ;;
esac
