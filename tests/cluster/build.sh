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

log() { printf '[cluster-build] %s\n' "$*" >&2; }

# run_build NAME VERSION STEP [ARG]: runs this script's internal STEP under a timeout, logging
# to a file; on failure names the step and shows the log tail.
run_build() {
  local name="$1" version="$2"; shift 2
  local out="$bin/$name-$version" logf="$cache/logs/$name-$version.log"
  if [[ -x "$out" ]]; then return 0; fi
  log "building $name $version (first time only; this takes minutes) — log: $logf"
  local start=$SECONDS
  if ! timeout "$build_timeout" "$0" _step "$@" >"$logf" 2>&1; then
    log "FAILED to build $name $version; last lines of $logf:"
    tail -n 40 "$logf" >&2
    exit 1
  fi
  log "built $name $version in $((SECONDS - start)) s"
}

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

# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces the staging modules with
# local paths and requires them at v0.0.0. A wrapper module pins each staging module to the
# matching published v0.Y.Z instead (the same trick rancher/rancher's go.mod uses).
kube_wrapper() {
  local dir="$cache/src/kubernetes-$KUBERNETES_VERSION"
  if [[ -f "$dir/.ready" ]]; then echo "$dir"; return; fi
  rm -rf "$dir"; mkdir -p "$dir"
  local staging="v0.${KUBERNETES_VERSION#v1.}"
  (
    cd "$dir"
    go mod init taskplaner.test/kubecluster >/dev/null 2>&1
    local gomod
    gomod="$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
    go mod edit -go="$(sed -n 's/^go //p' "$gomod")"
    go mod edit -require="k8s.io/kubernetes@$KUBERNETES_VERSION"
    while read -r mod; do
      go mod edit -replace="$mod=$mod@$staging"
    done < <(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => \./staging/.*#\1#p' "$gomod")
    printf 'package main\n\nfunc main() {}\n' > main.go
    go get "k8s.io/kubernetes/cmd/kube-apiserver@$KUBERNETES_VERSION" \
           "k8s.io/kubernetes/cmd/kube-controller-manager@$KUBERNETES_VERSION" \
           "k8s.io/kubernetes/cmd/kube-scheduler@$KUBERNETES_VERSION" \
           "k8s.io/kubernetes/cmd/kubectl@$KUBERNETES_VERSION"
  ) >&2
  touch "$dir/.ready"
  echo "$dir"
}

build_kube() {
  local component="$1" dir
  dir="$(kube_wrapper)"
  local v="$KUBERNETES_VERSION" minor
  minor="$(echo "$v" | cut -d. -f2)"
  local pkg ldflags=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  (cd "$dir" && go build -mod=mod -trimpath -ldflags "-s -w $ldflags" \
      -o "$bin/$component-$v" "k8s.io/kubernetes/cmd/$component")
}

# wrapper_module DIR MODULE VERSION: a fresh module in DIR that requires MODULE@VERSION and
# repeats its replace directives (single-line and block form), which a requiring module
# would otherwise ignore. Gitea and Argo CD both need this to build outside their own repos.
wrapper_module() {
  local dir="$1" module="$2" version="$3" gomod
  rm -rf "$dir"; mkdir -p "$dir"
  cd "$dir"
  go mod init "taskplaner.test/$(basename "$dir")"
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

# Built with the sqlite tags; templates and assets are read from the module source at run
# time (no bindata build, no Node toolchain needed).
build_gitea() {
  local version="$1"
  wrapper_module "$cache/src/gitea-$version" code.gitea.io/gitea "$version"
  printf 'package main\n\nfunc main() {}\n' > main.go
  go get "code.gitea.io/gitea@$version"
  go build -trimpath -tags 'sqlite sqlite_unlock_notify' \
    -ldflags "-s -w -X main.Version=${version#v}" -o "$bin/gitea-$version" code.gitea.io/gitea
}

# Argo CD's controller, repo-server and API server in one binary (tests/cluster/argocd/main.go
# picks the program by file name, as upstream's does), without the CLI and the components the
# test cluster does not run. The UI is embedded from the module's prebuilt ui/dist.
build_argocd() {
  wrapper_module "$cache/src/argocd-$ARGOCD_VERSION" github.com/argoproj/argo-cd/v3 "$ARGOCD_VERSION"
  cp "$here/argocd/main.go" main.go
  go get "github.com/argoproj/argo-cd/v3@$ARGOCD_VERSION"
  go mod tidy
  local pkg=github.com/argoproj/argo-cd/v3/common
  go build -trimpath -ldflags "-s -w -X $pkg.version=${ARGOCD_VERSION#v} -X $pkg.gitTag=$ARGOCD_VERSION -X $pkg.gitCommit=module -X $pkg.gitTreeState=clean" \
    -o "$bin/argocd-$ARGOCD_VERSION" .
}

# The operator's go.mod points its API and client modules at local folders, which a module zip
# leaves out: the wrapper takes their published releases of the same version instead. One
# wrapper builds both of its programs: the operator, and the config-reloader its pods run.
operator_wrapper() {
  local module=github.com/prometheus-operator/prometheus-operator version="$PROMETHEUS_OPERATOR_VERSION"
  local dir="$cache/src/prometheus-operator-$version" sub
  if [[ -f "$dir/.ready" ]]; then cd "$dir"; return; fi
  wrapper_module "$dir" "$module" "$version"
  for sub in pkg/apis/monitoring pkg/client; do
    go mod edit -replace="$module/$sub=$module/$sub@$version"
  done
  printf 'package main\n\nfunc main() {}\n' > main.go
  go get "$module/cmd/operator@$version" "$module/cmd/prometheus-config-reloader@$version"
  touch .ready
}

build_prometheus_operator() {  # build_prometheus_operator CMD OUTPUT-NAME
  operator_wrapper
  go build -trimpath -ldflags "-s -w -X github.com/prometheus/common/version.Version=${PROMETHEUS_OPERATOR_VERSION#v}" \
    -o "$bin/$2-$PROMETHEUS_OPERATOR_VERSION" "github.com/prometheus-operator/prometheus-operator/cmd/$1"
}

# Prometheus vX.Y.Z is published as module v0.X0Y.Z (v3.14.0 = v0.314.0). Built with its own
# lighter-build tags: every service discovery but Kubernetes's left out (the operator's
# configuration uses no other), the web UI read from the module source rather than embedded.
build_prometheus() {
  local version="$PROMETHEUS_VERSION" module_version
  module_version="$(echo "$version" | awk -F. '{ printf "v0.%d%02d.%s", substr($1, 2), $2, $3 }')"
  wrapper_module "$cache/src/prometheus-$version" github.com/prometheus/prometheus "$module_version"
  printf 'package main\n\nfunc main() {}\n' > main.go
  go get "github.com/prometheus/prometheus/cmd/prometheus@$module_version"
  go build -trimpath -tags 'remove_all_sd enable_kubernetes_sd' \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=${version#v}" \
    -o "$bin/prometheus-$version" github.com/prometheus/prometheus/cmd/prometheus
}

# Traefik, as k3s runs it in front of the apps (its Ingress and CRD providers); no cgo.
build_traefik() {
  wrapper_module "$cache/src/traefik-$TRAEFIK_VERSION" github.com/traefik/traefik/v3 "$TRAEFIK_VERSION"
  printf 'package main\n\nfunc main() {}\n' > main.go
  go get "github.com/traefik/traefik/v3/cmd/traefik@$TRAEFIK_VERSION"
  CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=${TRAEFIK_VERSION#v}" \
    -o "$bin/traefik-$TRAEFIK_VERSION" github.com/traefik/traefik/v3/cmd/traefik
}

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

what="${1:-all}"
if [[ "$what" == _step ]]; then shift; set -x; "$@"; exit; fi
case "$what" in
  kine) run_build kine "$KINE_VERSION" build_kine ;;
  kwok) run_build kwok "$KWOK_VERSION" build_kwok ;;
  helm) run_build helm "$HELM_VERSION" build_helm ;;
  kube-apiserver|kube-controller-manager|kube-scheduler|kubectl)
    run_build "$what" "$KUBERNETES_VERSION" build_kube "$what" ;;
  gitea) run_build gitea "$GITEA_VERSION" build_gitea "$GITEA_VERSION" ;;
  gitea-previous) run_build gitea "$GITEA_PREVIOUS_VERSION" build_gitea "$GITEA_PREVIOUS_VERSION" ;;
  argocd) run_build argocd "$ARGOCD_VERSION" build_argocd ;;
  prometheus-operator) run_build prometheus-operator "$PROMETHEUS_OPERATOR_VERSION" build_prometheus_operator operator prometheus-operator ;;
  prometheus-config-reloader)
    run_build prometheus-config-reloader "$PROMETHEUS_OPERATOR_VERSION" \
      build_prometheus_operator prometheus-config-reloader prometheus-config-reloader ;;
  prometheus) run_build prometheus "$PROMETHEUS_VERSION" build_prometheus ;;
  traefik) run_build traefik "$TRAEFIK_VERSION" build_traefik ;;
  alloy-syntax-check) run_build alloy-syntax-check "$ALLOY_CHECK_VERSION" build_alloy_syntax_check ;;
  helm-controller) fetch_helm_controller ;;
  k3s-deploy) run_build k3s-deploy "$K3S_DEPLOY_VERSION" build_k3s_deploy ;;
  all)
    for c in kine helm kwok kube-apiserver kube-controller-manager kube-scheduler kubectl gitea \
             gitea-previous argocd prometheus-operator prometheus-config-reloader prometheus traefik alloy-syntax-check \
             helm-controller k3s-deploy; do
      "$0" "$c"
    done ;;
  path) echo "$bin" ;;
  *) log "unknown component: $what"; exit 2 ;;
esac
