"""Requests travel for real (#16, path 5): a real Traefik reads the Ingress, Middlewares and
Secret the app chart and the roles applied, and routes to a real TaskPlaner running as its pod
(conftest.py). Clients call from their own loopback addresses (127.0.0.2, 127.0.0.3), as two
people on the LAN would: with the `externalTrafficPolicy: Local` the monitoring role sets, k3s's
ServiceLB hands Traefik the caller's own address.

What differs from k3s, and why (each named a stand-in):
- **Traefik's static configuration is a stand-in** for what k3s's Traefik chart passes (that
  chart is not available here): its entry points (web, websecure with TLS), its Ingress and CRD
  providers, and the IngressClass `traefik` it creates. Entry points listen on 127.0.0.1 at free
  ports, where ServiceLB would publish :80 and :443. What the roles put into that chart through
  the HelmChartConfig (checked as an object in the monitoring scenario) is not applied by a chart
  here.
- Traefik reaches the API server out of the cluster (its `endpoint`, `token` and
  `certAuthFilePath` settings) with a service account bound to Traefik's own ClusterRole, from
  Traefik's module.
- The TLS Secret cert-manager would issue for the Ingress is a test certificate made here.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import bcrypt
import pytest
import yaml

CLUSTER = Path(__file__).resolve().parents[3] / "tests" / "cluster"
sys.path.insert(0, str(CLUSTER))
from podrunner import answers, cluster_binary, free_port, kubectl, running_pod, versions, wait_until  # noqa: E402 (found through the path above)

APP = "taskplaner"
LOKI = "loki"
TRAEFIK_NAMESPACE = "kube-system"


def go_module(module: str, version: str) -> Path:
    gomodcache = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True)
    return Path(gomodcache.stdout.strip()) / f"{module}@{version}"


class Traefik:
    def __init__(self, host: str, web: int, websecure: int, ca: Path, metrics: int) -> None:
        self.host, self.web, self.websecure, self.ca, self.metrics = host, web, websecure, ca, metrics

    def request(
        self, path: str, *curl: str, caller: str = "127.0.0.2", tls: bool = True, host: str = ""
    ) -> dict[str, str]:
        """curl from `caller`'s address to https://<host><path> (or http://; the app's host by
        default), connected to Traefik's entry point as ServiceLB's :443 (or :80) would be."""
        port, default, scheme = (self.websecure, 443, "https") if tls else (self.web, 80, "http")
        host = host or self.host
        done = subprocess.run(
            ["curl", "-sS", "-o", "/dev/null", "-D", "-", "--interface", caller, "--max-time", "20",
             "--connect-to", f"{host}:{default}:127.0.0.1:{port}", "--cacert", str(self.ca),
             "-w", "\n%{http_code}", *curl, f"{scheme}://{host}{path}"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        # curl fails when a server answers before the whole body is sent (Traefik's 413); the
        # answer still counts. No answer at all (000) is an error.
        out = done.stdout
        if out.rstrip().endswith("000"):
            raise ConnectionError(f"no answer from Traefik: {done.stderr.strip()}")
        *headers, status = out.rstrip("\n").split("\n")
        fields = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in headers if ":" in h)}
        return {"status": status, **fields}


def make_certificate(hosts: list[str], state: Path) -> tuple[Path, Path]:
    crt, key = state / "ingress.crt", state / "ingress.key"
    names = ",".join(f"DNS:{host}" for host in hosts)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={hosts[0]}",
         "-addext", f"subjectAltName={names}", "-keyout", key, "-out", crt],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return crt, key


def apply(manifest: dict[str, Any]) -> None:
    kubectl("apply", "-f", "-", stdin=json.dumps(manifest))


def traefik_access(state: Path) -> list[str]:
    """Traefik's providers reach the API server as a service account bound to Traefik's own
    ClusterRole (from its module): the flags for both providers."""
    source = go_module("github.com/traefik/traefik/v3", versions()["TRAEFIK_VERSION"])
    kubectl(
        "apply", "-f", str(source / "docs/content/reference/dynamic-configuration/kubernetes-crd-rbac.yml")
    )
    apply({"apiVersion": "v1", "kind": "ServiceAccount",
           "metadata": {"name": "traefik", "namespace": TRAEFIK_NAMESPACE}})  # fmt: skip
    role = "traefik-ingress-controller"
    apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
           "metadata": {"name": role},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
           "subjects": [{"kind": "ServiceAccount", "name": "traefik",
                         "namespace": TRAEFIK_NAMESPACE}]})  # fmt: skip
    token = state / "token"
    token.write_text(kubectl("create", "token", "traefik", "-n", TRAEFIK_NAMESPACE, "--duration=2h").strip())
    cluster = yaml.safe_load(Path(os.environ["KUBECONFIG"]).read_text())["clusters"][0]["cluster"]
    ca = state / "api-ca.crt"
    ca.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    settings = {"endpoint": cluster["server"], "token": token, "certauthfilepath": ca}
    return [
        f"--providers.{provider}.{key}={value}"
        for provider in ("kubernetesingress", "kubernetescrd")
        for key, value in settings.items()
    ]


@pytest.fixture(scope="module")
def traefik(taskplaner: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traefik]:
    state = tmp_path_factory.mktemp("traefik")
    ingresses = [json.loads(kubectl("get", "ingress", name, "-n", ns, "-o", "json"))
                 for ns, name in ((APP, APP), (LOKI, "loki-push"))]  # fmt: skip
    crt, key = make_certificate([i["spec"]["rules"][0]["host"] for i in ingresses], state)
    for ingress in ingresses:  # the Secrets cert-manager would issue on a host
        secret, namespace = ingress["spec"]["tls"][0]["secretName"], ingress["metadata"]["namespace"]
        kubectl("apply", "-f", "-", stdin=kubectl(
            "create", "secret", "tls", secret, "-n", namespace, f"--cert={crt}", f"--key={key}",
            "--dry-run=client", "-o", "yaml",
        ))  # fmt: skip
    host = ingresses[0]["spec"]["rules"][0]["host"]
    # the IngressClass k3s's Traefik chart creates
    apply({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "traefik"},
           "spec": {"controller": "traefik.io/ingress-controller"}})  # fmt: skip

    web, websecure, metrics = free_port(), free_port(), free_port()
    binary = cluster_binary("traefik", "TRAEFIK_VERSION")
    logfile = state / "traefik.log"
    with logfile.open("wb") as log:
        process = subprocess.Popen(
            [binary, f"--entryPoints.web.address=127.0.0.1:{web}",
             f"--entryPoints.websecure.address=127.0.0.1:{websecure}",
             "--entryPoints.websecure.http.tls=true",
             "--providers.kubernetescrd", "--providers.kubernetescrd.allowEmptyServices=true",
             "--providers.kubernetesingress", "--providers.kubernetesingress.allowEmptyServices=true",
             # what the monitoring role's HelmChartConfig asks of k3s's chart
             f"--entryPoints.metrics.address=127.0.0.1:{metrics}", "--metrics.prometheus=true",
             "--metrics.prometheus.entryPoint=metrics", "--metrics.prometheus.addRoutersLabels=true",
             "--log.level=INFO", *traefik_access(state)],
            # without KUBECONFIG, Traefik uses the endpoint, token and CA it was given
            env={k: v for k, v in os.environ.items() if k != "KUBECONFIG"},
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    proxy = Traefik(host, web, websecure, crt, metrics)

    def routed() -> bool:
        assert process.poll() is None, logfile.read_text()[-3000:]
        try:
            return proxy.request("/healthz")["status"] == "200"
        except ConnectionError:
            return False

    try:
        wait_until("route to TaskPlaner through Traefik", routed, timeout=60)
    except AssertionError:
        raise AssertionError(logfile.read_text()[-4000:]) from None
    yield proxy
    process.terminate()
    process.wait(timeout=15)


class LokiStandIn(http.server.BaseHTTPRequestHandler):
    """STAND-IN for Loki (its module is AGPL-licensed and not available here): answers as Loki
    does on the paths the routes lead to (204 for a push, 200 for a query) and records what
    reached it. It shows what Traefik lets through, not what Loki does with it."""

    seen: ClassVar[list[tuple[str, str, str | None]]] = []

    def answer(self) -> None:
        self.seen.append((self.command, self.path, self.headers.get("Authorization")))
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.send_response(204 if self.path.startswith("/loki/api/v1/push") else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_DELETE = answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def loki() -> Iterator[type[LokiStandIn]]:
    """The stand-in at the address of the pod behind Loki's Service (the pod network is this
    host's), where Traefik's routes lead."""
    pod = wait_until("Loki pod", lambda: running_pod(LOKI, {"app.kubernetes.io/name": "loki"}))
    server = http.server.ThreadingHTTPServer((pod["status"]["podIP"], 3100), LokiStandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield LokiStandIn
    server.shutdown()
    server.server_close()


def loki_user(name: str) -> tuple[str, list[str]]:
    """The password and roles the site scenario's vault gives a Loki basic-auth user."""
    scenario = yaml.safe_load((Path(__file__).resolve().parents[1] / "group_vars/all.yml").read_text())
    [user] = [u for u in scenario["vault_loki_basic_auth_users"] if u["username"] == name]
    return user["password"], user.get("roles", ["push"])


def test_loki_behind_traefik_lets_each_role_reach_only_its_own_paths(traefik: Traefik, loki):
    """The seed request: Loki behind Traefik's basic auth, per role (the loki role's Ingresses,
    Middlewares and htpasswd Secrets, read by the real Traefik)."""
    host = json.loads(kubectl("get", "ingress", "loki-push", "-n", LOKI, "-o", "json"))["spec"]["rules"][0][
        "host"
    ]
    password, roles = loki_user("alloy-remote")
    assert roles == ["push"]  # the site's only user, as in vault.yml.example: nobody has `read`
    push, query, delete = (
        "/loki/api/v1/push",
        "/loki/api/v1/query?query=%7Bjob%3D%22x%22%7D",
        "/loki/api/v1/delete",
    )

    def call(path: str, *auth: str, method: str = "GET") -> str:
        return traefik.request(path, "-X", method, *auth, host=host)["status"]

    pusher, wrong = ("-u", f"alloy-remote:{password}"), ("-u", "alloy-remote:not-the-password")
    assert call(push, method="POST") == "401"
    assert call(push, *wrong, method="POST") == "401"
    assert loki.seen == []  # nothing reached Loki without the right password
    assert call(push, *pusher, method="POST") == "204"
    assert loki.seen[-1][:2] == ("POST", "/loki/api/v1/push")
    assert loki.seen[-1][2] is None  # the credentials stop at Traefik (removeHeader)
    # a push-only user cannot read, and a role nobody has lets nobody in
    assert call(query, *pusher) == "401"
    assert call(query) == "401"
    # deleting has no route at all
    assert call(delete, *pusher, method="POST") == "404"
    assert [path for _, path, _ in loki.seen] == ["/loki/api/v1/push"]

    # a reader, as the loki role writes one into the read role's Secret (its bcrypt line;
    # the role's output itself is checked in the loki scenario)
    secret = json.loads(kubectl("get", "secret", "loki-read-users", "-n", LOKI, "-o", "json"))
    hashed = bcrypt.hashpw(b"a-reader-password", bcrypt.gensalt()).decode().replace("$2b$", "$2y$", 1)
    line = f"grafana-cloud:{hashed}"  # the role writes $2y$ hashes, as htpasswd does
    patch = {"data": {"users": base64.b64encode(line.encode()).decode()}}
    kubectl("patch", "secret", "loki-read-users", "-n", LOKI, "--type=merge", "-p", json.dumps(patch))
    try:
        reader = ("-u", "grafana-cloud:a-reader-password")
        assert wait_until("the reader let in", lambda: call(query, *reader) == "200", timeout=30)
        assert loki.seen[-1][1].startswith("/loki/api/v1/query")
        assert call(push, *reader, method="POST") == "401"  # a reader cannot push
    finally:
        restore = {"data": {"users": secret["data"]["users"]}}
        kubectl("patch", "secret", "loki-read-users", "-n", LOKI, "--type=merge", "-p", json.dumps(restore))


def test_https_terminates_at_traefik_with_the_ingress_certificate(traefik: Traefik):
    # curl trusts only the test certificate, so this passes only with the Ingress's own Secret
    assert traefik.request("/healthz")["status"] == "200"


def test_plain_http_is_redirected_to_https(traefik: Traefik):
    answer = traefik.request("/notes?x=1", tls=False)
    assert answer["status"] in ("301", "308"), answer
    assert answer["location"] == f"https://{traefik.host}/notes?x=1", answer


def login(traefik: Traefik, password: str, caller: str, *extra: str) -> dict[str, str]:
    return traefik.request(
        "/api/v1/session", "-X", "POST", "-H", "Content-Type: application/json",
        "--data", json.dumps({"password": password}), *extra, caller=caller,
    )  # fmt: skip


def test_the_login_throttle_counts_each_caller_by_its_own_address(traefik: Traefik, taskplaner):
    env = {e["name"]: e for e in taskplaner["pod"]["spec"]["containers"][0]["env"]}
    ref = env["TASKPLANER_PASSWORD"]["valueFrom"]["secretKeyRef"]
    password = subprocess.run(
        ["kubectl", "get", "secret", ref["name"], "-n", APP, "-o", f"jsonpath={{.data.{ref['key']}}}"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    password = base64.b64decode(password).decode()

    # a stranger at 127.0.0.2 guesses, claiming to be someone else: Traefik does not pass a
    # client's own X-Forwarded-For on, so the app counts the guesses against 127.0.0.2
    statuses = [
        login(traefik, "wrong-guess-123", "127.0.0.2", "-H", "X-Forwarded-For: 203.0.113.7")["status"]
        for _ in range(6)
    ]
    assert statuses[:5] == ["401"] * 5 and statuses[5] == "429", statuses
    assert login(traefik, password, "127.0.0.2")["status"] == "429"  # that caller waits

    # the owner, at another address, is not locked out by the stranger's guesses
    owner = login(traefik, password, "127.0.0.3")
    assert owner["status"] == "201", owner
    assert "secure" in owner["set-cookie"].lower()  # the app saw HTTPS through X-Forwarded-Proto


def test_uploads_over_the_apps_limit_stop_at_traefik(traefik: Traefik, taskplaner, tmp_path):
    env = {e["name"]: e for e in taskplaner["pod"]["spec"]["containers"][0]["env"]}
    limit = int(env["TASKPLANER_MAX_UPLOAD_BYTES"]["value"])
    body = tmp_path / "big.bin"
    with body.open("wb") as out:
        out.truncate(limit + 1024 * 1024)
    answer = traefik.request(
        "/api/v1/attachments", "-X", "POST", "-H", "Content-Type: application/octet-stream",
        "--data-binary", f"@{body}", caller="127.0.0.3",
    )  # fmt: skip
    assert answer["status"] == "413", answer


def test_traefiks_dashboard_shows_the_traffic(traefik: Traefik, tmp_path):
    """#16 path 4 for the Traefik dashboard the monitoring role ships: after the requests above,
    each of its PromQL queries returns series. A real Prometheus scrapes the real Traefik's
    metrics entry point every second; its target is static here (the operator's discovery of
    Traefik's metrics Service, which k3s's chart makes, cannot run without that chart)."""
    dashboard = json.loads(
        (CLUSTER.parents[1] / "roles/monitoring/files/dashboards/traefik.json").read_text()
    )
    queries = [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(queries) >= 4
    for path in ("/healthz", "/no-such-page", "/readyz"):
        traefik.request(path)
    port = free_port()
    config = tmp_path / "prometheus.yml"
    target = {"targets": [f"127.0.0.1:{traefik.metrics}"]}
    scrape = {"job_name": "traefik", "static_configs": [target]}
    config.write_text(json.dumps({"global": {"scrape_interval": "1s"}, "scrape_configs": [scrape]}))
    with (tmp_path / "prometheus.log").open("wb") as log:
        prometheus = subprocess.Popen(
            [cluster_binary("prometheus", "PROMETHEUS_VERSION"), f"--config.file={config}",
             f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until("ready Prometheus", lambda: answers(prometheus, f"{url}/-/ready", ""), timeout=60)

        def results(promql: str) -> list[Any]:
            with urllib.request.urlopen(
                f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
            ) as r:
                return json.loads(r.read())["data"]["result"]

        # rate() needs two scrapes after the requests
        wait_until("two scrapes", lambda: results("count_over_time(up[1m]) >= 3"), timeout=30)
        for path in ("/healthz", "/notes"):  # traffic inside the window rate() reads
            traefik.request(path)
        time.sleep(2.5)
        assert [title for title, promql in queries if not results(promql)] == []
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=15)
