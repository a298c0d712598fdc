#!/usr/bin/env bash
# The local test cluster: a real Kubernetes control plane and a real Gitea on 127.0.0.1.
#
#   tests/cluster/cluster.sh up     start everything (builds first if needed), print how to use it
#   tests/cluster/cluster.sh down   stop everything; no process is left behind
#   tests/cluster/cluster.sh env    print the environment variables of the running cluster
#
# Components (binaries from tests/cluster/build.sh): kine (SQLite datastore, as in k3s) →
# kube-apiserver → kube-controller-manager + kube-scheduler; kwok runs one fake node so Pods get
# scheduled and become Ready; Gitea with an admin user, an API token and a repository; Argo CD
# as local processes once its chart is installed (podrunner.py).
# State lives in $TASKPLANER_CLUSTER_DIR (default ~/.cache/taskplaner-cluster/run), recreated
# on every `up`. Every wait has a timeout; a failure names the step and shows its log.
set -euo pipefail

# shellcheck source=paths.sh
source "$(dirname "${BASH_SOURCE[0]}")/paths.sh"
run="${TASKPLANER_CLUSTER_DIR:-$cache/run}"
START_TIMEOUT="${TASKPLANER_CLUSTER_TIMEOUT:-120}"
GITEA_ADMIN=tpadmin
GITEA_REPO=platform

log() { printf '[cluster] %s\n' "$*" >&2; }

fail() {  # fail STEP LOGFILE
  log "FAILED: $1"
  [[ -n "${2:-}" && -f "$2" ]] && { log "last lines of $2:"; tail -n 30 "$2" >&2; }
  stop_all
  exit 1
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# wait_for STEP LOGFILE CMD...: retry CMD until it succeeds or START_TIMEOUT passes.
wait_for() {
  local step="$1" logf="$2"; shift 2
  local deadline=$((SECONDS + START_TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    (( SECONDS < deadline )) || fail "$step (no answer after ${START_TIMEOUT}s)" "$logf"
    sleep 0.3
  done
}

start() {  # start NAME CMD...: run in the background, remember the pid
  local name="$1"; shift
  "$@" >"$run/logs/$name.log" 2>&1 &
  echo $! >"$run/pids/$name"
}

stop_all() {
  [[ -d "$run/pids" ]] || return 0
  local pidfile pid
  for pidfile in "$run"/pids/*; do
    [[ -f "$pidfile" ]] || continue
    pid="$(cat "$pidfile")"
    kill "$pid" 2>/dev/null || true
  done
  for pidfile in "$run"/pids/*; do
    [[ -f "$pidfile" ]] || continue
    pid="$(cat "$pidfile")"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
  done
}

make_pki() {
  local pki="$run/pki"
  mkdir -p "$pki"
  (
    cd "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=taskplaner-test-ca" \
      -keyout ca.key -out ca.crt
    openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout apiserver.key \
      -out apiserver.csr
    printf 'subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\n' >san.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
      -extfile san.ext -out apiserver.crt
    openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=admin" -keyout admin.key \
      -out admin.csr
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
      -out admin.crt
    openssl genrsa -out sa.key 2048
    openssl rsa -in sa.key -pubout -out sa.pub
  ) >"$run/logs/pki.log" 2>&1 || fail "generating certificates" "$run/logs/pki.log"
}

write_kubeconfig() {
  local port="$1" pki="$run/pki"
  cat >"$run/kubeconfig" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority-data: $(base64 -w0 "$pki/ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $(base64 -w0 "$pki/admin.crt")
    client-key-data: $(base64 -w0 "$pki/admin.key")
contexts:
- name: test
  context: {cluster: test, user: admin}
current-context: test
KCFG
  chmod 600 "$run/kubeconfig"
}

kubectl_() { "$bin/kubectl-$KUBERNETES_VERSION" --kubeconfig "$run/kubeconfig" "$@"; }

up_kubernetes() {
  local kine_port api_port cm_port scheduler_port pki="$run/pki"
  kine_port="$(free_port)"
  api_port="$(free_port)"
  cm_port="$(free_port)"
  scheduler_port="$(free_port)"
  start kine "$bin/kine-$KINE_VERSION" --listen-address "127.0.0.1:$kine_port" \
    --endpoint "sqlite://$run/kine.db?_journal=WAL&cache=shared&_busy_timeout=30000" \
    --metrics-bind-address 0
  wait_for "kine listening on $kine_port" "$run/logs/kine.log" \
    bash -c "exec 3<>/dev/tcp/127.0.0.1/$kine_port"
  start kube-apiserver "$bin/kube-apiserver-$KUBERNETES_VERSION" \
    --etcd-servers "http://127.0.0.1:$kine_port" --storage-backend etcd3 \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" --authorization-mode RBAC \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range 10.96.0.0/16 --endpoint-reconciler-type none \
    --allow-privileged=true --enable-priority-and-fairness=false --profiling=false
  write_kubeconfig "$api_port"
  wait_for "kube-apiserver /readyz" "$run/logs/kube-apiserver.log" \
    kubectl_ get --raw /readyz
  local open_metrics=(--authorization-always-allow-paths /healthz,/readyz,/livez,/metrics)
  start kube-controller-manager "$bin/kube-controller-manager-$KUBERNETES_VERSION" \
    --kubeconfig "$run/kubeconfig" --authentication-kubeconfig "$run/kubeconfig" \
    --authorization-kubeconfig "$run/kubeconfig" --leader-elect=false \
    --bind-address 127.0.0.1 --secure-port "$cm_port" "${open_metrics[@]}" \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --use-service-account-credentials=false --enable-hostpath-provisioner \
    --controllers '*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-service-lb-controller'
  start kube-scheduler "$bin/kube-scheduler-$KUBERNETES_VERSION" \
    --kubeconfig "$run/kubeconfig" --authentication-kubeconfig "$run/kubeconfig" \
    --authorization-kubeconfig "$run/kubeconfig" --leader-elect=false \
    --bind-address 127.0.0.1 --secure-port "$scheduler_port" "${open_metrics[@]}"
  # The real components' metric families: tests check which job each one reaches Prometheus from.
  echo "kube-controller-manager=https://127.0.0.1:$cm_port/metrics" \
    "kube-scheduler=https://127.0.0.1:$scheduler_port/metrics" >"$run/component-metrics"
  # kwok's own "fast" stages (from its module source): nodes become Ready, pods Running
  local stages="$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage" stage_args=()
  for f in node/fast/node-initialize pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
    stage_args+=(--config "$stages/$f.yaml")
  done
  start kwok "$bin/kwok-$KWOK_VERSION" --kubeconfig "$run/kubeconfig" \
    --manage-single-node kwok-node-0 --server-address 127.0.0.1:0 "${stage_args[@]}"
  wait_for "default service account" "$run/logs/kube-controller-manager.log" \
    kubectl_ get serviceaccount default -n default
  kubectl_ apply -f - >"$run/logs/node.log" 2>&1 <<NODE || fail "creating the kwok node" "$run/logs/node.log"
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-0
  # the labels every kubelet sets; upstream charts select nodes by kubernetes.io/os
  labels: {kubernetes.io/hostname: kwok-node-0, kubernetes.io/os: linux, kubernetes.io/arch: amd64,
           type: kwok}
  annotations: {kwok.x-k8s.io/node: fake}
spec:
  podCIDR: $POD_CIDR
status:
  allocatable: {cpu: "8", memory: 32Gi, pods: "110"}
  capacity: {cpu: "8", memory: 32Gi, pods: "110"}
NODE
  wait_for "kwok node Ready" "$run/logs/kwok.log" \
    kubectl_ wait --for=condition=Ready node/kwok-node-0 --timeout=2s
  # Admission taints new nodes not-ready; the node-lifecycle controller that would lift it is
  # off (kwok sends no kubelet heartbeats), so lift it once the node reports Ready.
  kubectl_ taint node kwok-node-0 node.kubernetes.io/not-ready:NoSchedule- \
    >"$run/logs/node.log" 2>&1 || fail "removing the not-ready taint" "$run/logs/node.log"
}

# Traefik's own CRDs (IngressRoute, Middleware, TLSOption, ...), from the module its binary is built
# from, as k3s installs them with its Traefik chart: the roles' Middlewares are checked against
# the real schema, and the Traefik the site scenario runs finds every kind it watches.
up_traefik_crds() {
  local crds
  crds="$(go env GOMODCACHE)/github.com/traefik/traefik/v3@$TRAEFIK_VERSION/docs/content/reference/dynamic-configuration/kubernetes-crd-definition-v1.yml"
  kubectl_ apply --server-side -f "$crds" >"$run/logs/traefik-crds.log" 2>&1 \
    || fail "applying Traefik's CRDs from $crds" "$run/logs/traefik-crds.log"
}

# k3s's own CRDs, HelmChart and HelmChartConfig, from helm-controller's module (the YAML it
# generates and k3s installs): the monitoring role's HelmChartConfig is checked against k3s's
# real schema.
up_k3s_crds() {
  local dir
  dir="$(go env GOMODCACHE)/github.com/k3s-io/helm-controller@$HELM_CONTROLLER_VERSION/pkg/crds/yaml/generated"
  kubectl_ apply --server-side -f "$dir/helm.cattle.io_helmcharts.yaml" \
    -f "$dir/helm.cattle.io_helmchartconfigs.yaml" >"$run/logs/k3s-crds.log" 2>&1 \
    || fail "applying k3s's CRDs from $dir" "$run/logs/k3s-crds.log"
}

# Pods get their addresses from the node's podCIDR (kwok takes it from there), a range this host
# takes as its own (a "local" route on the loopback device, as AnyIP): a process bound to a
# pod's address is that pod to every client. RFC 2544's benchmarking range, which no LAN uses.
POD_CIDR=198.18.0.0/16
up_pod_network() {
  local sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo -n)
  ip route show table local | grep -q "^local $POD_CIDR dev lo" && return 0
  "${sudo[@]}" ip route add local "$POD_CIDR" dev lo 2>"$run/logs/pod-network.log" \
    || fail "routing the pod network $POD_CIDR to this host (needs root or sudo: ip route add local $POD_CIDR dev lo)" \
      "$run/logs/pod-network.log"
}

down_pod_network() {
  local sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo -n)
  if ip route show table local | grep -q "^local $POD_CIDR dev lo"; then
    "${sudo[@]}" ip route del local "$POD_CIDR" dev lo || true
  fi
}

# up_gitea NAME VERSION PREFIX: a Gitea with an admin, a token and an empty repository, its
# settings in $run/NAME.env as PREFIX_URL, PREFIX_TOKEN, ...
up_gitea() {
  local name="$1" version="$2" prefix="$3"
  local port gitea_run="$run/$name" src
  port="$(free_port)"
  src="$(go env GOMODCACHE)/code.gitea.io/gitea@$version"
  mkdir -p "$gitea_run/custom/conf"
  cat >"$gitea_run/custom/conf/app.ini" <<INI
APP_NAME = taskplaner-test
RUN_MODE = prod
; the test machines and CI run as root; this Gitea only listens on loopback
I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = true
WORK_PATH = $gitea_run
[server]
HTTP_ADDR = 127.0.0.1
HTTP_PORT = $port
ROOT_URL = http://127.0.0.1:$port/
STATIC_ROOT_PATH = $src
DISABLE_SSH = true
OFFLINE_MODE = true
[database]
DB_TYPE = sqlite3
PATH = $gitea_run/gitea.db
[repository]
ROOT = $gitea_run/repos
[security]
INSTALL_LOCK = true
SECRET_KEY = $(head -c 32 /dev/urandom | base64 -w0 | tr -d '/+=')
INTERNAL_TOKEN = $(head -c 48 /dev/urandom | base64 -w0 | tr -d '/+=')
[service]
DISABLE_REGISTRATION = true
[webhook]
ALLOWED_HOST_LIST = *
[log]
MODE = console
LEVEL = warn
[cron]
ENABLED = false
INI
  local gitea=("$bin/gitea-$version" --work-path "$gitea_run" --config "$gitea_run/custom/conf/app.ini")
  timeout 120 "${gitea[@]}" migrate >"$run/logs/$name-migrate.log" 2>&1 \
    || fail "$name migrate" "$run/logs/$name-migrate.log"
  local password
  password="$(head -c 18 /dev/urandom | base64 -w0 | tr -d '/+=')"
  timeout 60 "${gitea[@]}" admin user create --admin --username "$GITEA_ADMIN" \
    --password "$password" --email "$GITEA_ADMIN@example.test" --must-change-password=false \
    >"$run/logs/$name-user.log" 2>&1 || fail "$name admin user" "$run/logs/$name-user.log"
  local token
  token="$(timeout 60 "${gitea[@]}" admin user generate-access-token --username "$GITEA_ADMIN" \
    --token-name test --scopes all --raw 2>"$run/logs/$name-token.log" | tail -n 1 \
    | tr -d '[:space:]')" || fail "$name token" "$run/logs/$name-token.log"
  [[ "$token" =~ ^[0-9a-f]{40}$ ]] || fail "$name token (unexpected output)" "$run/logs/$name-token.log"
  start "$name" "${gitea[@]}" web
  wait_for "$name API" "$run/logs/$name.log" curl -sf "http://127.0.0.1:$port/api/v1/version"
  local code
  code="$(curl -s -o "$run/logs/$name-repo.log" -w '%{http_code}' -X POST \
    -H "Authorization: token $token" -H "Content-Type: application/json" \
    -d "{\"name\": \"$GITEA_REPO\", \"auto_init\": true, \"default_branch\": \"main\"}" \
    "http://127.0.0.1:$port/api/v1/user/repos")" || true
  [[ "$code" == 201 ]] || fail "$name repository (HTTP $code)" "$run/logs/$name-repo.log"
  cat >"$run/$name.env" <<ENV
${prefix}_URL=http://127.0.0.1:$port
${prefix}_TOKEN=$token
${prefix}_ADMIN_USER=$GITEA_ADMIN
${prefix}_ADMIN_PASSWORD=$password
${prefix}_REPO=$GITEA_ADMIN/$GITEA_REPO
ENV
  chmod 600 "$run/$name.env"
}

# The archives of the upstream charts the roles pin, for the scenarios to install as a user's
# host would: $TASKPLANER_CHART_CACHE, else the workplace's read-only copy beside the project
# (../shared/charts), else `helm pull` from each role's repository into the cache.
find_charts() {
  local dir="${TASKPLANER_CHART_CACHE:-}" role ref url version
  [[ -z "$dir" && -d "$here/../../../shared/charts" ]] && dir="$(cd "$here/../../../shared/charts" && pwd)"
  [[ -n "$dir" ]] || dir="$cache/charts"
  for role in argocd monitoring loki alloy; do
    ref="$(role_default "$role" chart_ref)" url="$(role_default "$role" chart_repo_url)"
    version="$(role_default "$role" chart_version)"
    [[ -f "$dir/$ref-$version.tgz" ]] && continue
    [[ "$dir" == "$cache/charts" ]] || fail "chart $ref-$version.tgz missing from $dir"
    mkdir -p "$dir"
    "$bin/helm-$HELM_VERSION" pull "$ref" --repo "$url" --version "$version" -d "$dir" \
      >"$run/logs/charts.log" 2>&1 || fail "helm pull $ref $version from $url" "$run/logs/charts.log"
  done
  echo "$dir" >"$run/charts"
}

role_default() {  # role_default ROLE NAME: a plain value from roles/ROLE/defaults/main.yml
  sed -n "s/^$1_$2: *//p" "$here/../../roles/$1/defaults/main.yml"
}

# Argo CD's controller, repo-server and API server (and its Redis) as local processes, started
# by tests/cluster/podrunner.py whenever the argo-cd chart is installed (see that file).
up_argocd_runner() {
  local state="$run/argocd"
  mkdir -p "$state"
  printf '{"redis": %s, "repo": %s, "server": %s, "metrics": %s}\n' \
    "$(free_port)" "$(free_port)" "$(free_port)" "$(free_port)" >"$state/ports.json"
  PATH="$bin/links:$PATH" KUBECONFIG="$run/kubeconfig" TASKPLANER_ARGOCD_BIN="$bin/argocd-$ARGOCD_VERSION" \
    start argocd-podrunner python3 "$here/podrunner.py" "$state"
}

# Stand-in for k3s's Traefik publishing its address in every Ingress's status (no Traefik runs
# here): without it Argo CD counts an Ingress as Progressing forever, never Healthy.
up_ingress_status() {
  local pending='{{range .items}}{{if not .status.loadBalancer.ingress}}{{.metadata.namespace}} {{.metadata.name}}{{"\n"}}{{end}}{{end}}'
  # shellcheck disable=SC2016 # expanded by the inner bash
  KUBECONFIG="$run/kubeconfig" start ingress-status bash -c '
    while sleep 2; do
      "$0" get ingress -A -o go-template="$1" 2>/dev/null | while read -r ns name; do
        "$0" patch ingress "$name" -n "$ns" --subresource=status --type=merge \
          -p "{\"status\":{\"loadBalancer\":{\"ingress\":[{\"ip\":\"127.0.0.1\"}]}}}" >/dev/null
      done
    done' "$bin/kubectl-$KUBERNETES_VERSION" "$pending"
}

print_env() {
  echo "export KUBECONFIG=$run/kubeconfig"
  echo "export TASKPLANER_CHART_CACHE=$(cat "$run/charts")"
  echo "export ARGOCD_SERVER_URL=http://127.0.0.1:$(sed 's/.*"server": \([0-9]*\).*/\1/' "$run/argocd/ports.json")"
  echo "export PATH=$bin/links:\$PATH"
  echo "export TASKPLANER_COMPONENT_METRICS=\"$(cat "$run/component-metrics")\""
  sed 's/^/export /' "$run/gitea.env" "$run/gitea-previous.env"
}

link_tools() {  # plain names (helm, kubectl) for tools that look them up on PATH
  mkdir -p "$bin/links"
  ln -sf "$bin/helm-$HELM_VERSION" "$bin/links/helm"
  ln -sf "$bin/kubectl-$KUBERNETES_VERSION" "$bin/links/kubectl"
  ln -sf "$bin/alloy-syntax-check-$ALLOY_CHECK_VERSION" "$bin/links/alloy-syntax-check"
  ln -sf "$bin/k3s-deploy-$K3S_DEPLOY_VERSION" "$bin/links/k3s-deploy"
}

case "${1:-}" in
  up)
    "$here/build.sh" all
    stop_all
    rm -rf "$run"
    mkdir -p "$run/logs" "$run/pids"
    link_tools
    started=$SECONDS
    make_pki
    find_charts
    up_pod_network
    up_kubernetes
    up_traefik_crds
    up_k3s_crds
    up_gitea gitea "$GITEA_VERSION" GITEA
    up_gitea gitea-previous "$GITEA_PREVIOUS_VERSION" GITEA_PREVIOUS
    up_argocd_runner
    up_ingress_status
    log "cluster up in $((SECONDS - started)) s; use it with:"
    print_env
    ;;
  down)
    stop_all
    down_pod_network
    log "cluster stopped"
    ;;
  env)
    [[ -f "$run/gitea.env" ]] || { log "no cluster is running (tests/cluster/cluster.sh up)"; exit 1; }
    print_env
    ;;
  *) echo "usage: $0 up|down|env" >&2; exit 2 ;;
esac
