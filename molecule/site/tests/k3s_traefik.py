"""k3s's own Traefik, as a k3s host runs it after site.yml (#27): k3s's `traefik` HelmChart (the
file k3s writes into its manifests folder, ../../shared/k3s/traefik.yaml, applied as k3s applies
it) and the HelmChartConfig the monitoring role leaves, rendered into k3s's real Traefik chart
(39.0.7, the upstream of k3s's 39.0.701+up39.0.7) as helm-controller renders them; the real
Traefik (v3.6.12) then runs as the pod of the rendered Deployment, with its arguments, ports,
service account and ClusterRole.

What differs from a k3s host, and why (each a stand-in, named):
- **helm-controller's install Job is a stand-in**: kwok would mark the Job Complete without
  running klipper-helm, so `helm upgrade --install` runs here with what the Job would be given
  (the chart, the HelmChart's `set`, its valuesContent, then the HelmChartConfig's, in
  helm-controller's order). It cannot show helm-controller's own retries or its reinstall on
  failure.
- **ServiceLB is a stand-in**: curl connects to the pod's port behind the Service's port
  (`--connect-to`), which is where ServiceLB forwards with `externalTrafficPolicy: Local`, from
  the caller's own address. It cannot show ServiceLB choosing the nodes that advertise.
- Traefik's providers reach the API server out of the cluster (their `endpoint`, `token` and
  `certAuthFilePath` settings) as the pod's service account, where a pod reads the in-cluster
  address and token from fixed paths.
- Traefik's CRDs come with the test cluster (Traefik's module), where k3s installs them from its
  `traefik-crd` chart; `--skip-crds` keeps the chart from bringing a second copy.
- The TLS Secrets cert-manager would issue for the Ingresses are test certificates made here.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

CLUSTER = Path(__file__).resolve().parents[3] / "tests" / "cluster"
sys.path.insert(0, str(CLUSTER))
from podrunner import Pods, cluster_binary, kubectl, running_pod, versions, wait_until  # noqa: E402 (found through the path above)

TRAEFIK_NAMESPACE = "kube-system"
# k3s's chart versions name their upstream: 39.0.701+up39.0.7 is Traefik's chart 39.0.7
K3S_CHART = re.compile(r".*/(?P<name>[a-z-]+)-[0-9.]+\+up(?P<upstream>[0-9.]+)\.tgz")


def helm_controller_arguments(state: Path) -> list[str]:
    """What helm-controller hands helm for k3s's `traefik` HelmChart, read from the API as it
    reads it: the chart archive, the HelmChart's `set` (strings as --set-string), then its
    valuesContent and the HelmChartConfig's, in that order (its values-0-… and values-1-… files)."""
    chart = json.loads(kubectl("get", "helmchart", "traefik", "-n", TRAEFIK_NAMESPACE, "-o", "json"))["spec"]
    found = subprocess.run(
        ["kubectl", "get", "helmchartconfig", "traefik", "-n", TRAEFIK_NAMESPACE, "-o", "json",
         "--ignore-not-found"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    config = json.loads(found)["spec"] if found.strip() else {}
    match = K3S_CHART.fullmatch(chart["chart"])
    assert match, f"not a chart k3s bundles: {chart['chart']}"
    archive = Path(os.environ["TASKPLANER_CHART_CACHE"]) / f"{match['name']}-{match['upstream']}.tgz"
    assert archive.is_file(), f"k3s's Traefik chart {archive.name} is not in {archive.parent}"
    argv = [str(archive)]
    for key, value in chart.get("set", {}).items():
        argv += ["--set-string" if isinstance(value, str) else "--set", f"{key}={value}"]
    for index, source in enumerate((chart, config)):
        if source.get("valuesContent"):
            values = state / f"values-{index}.yaml"
            values.write_text(source["valuesContent"])
            argv += ["--values", str(values)]
    return argv


def rendered_traefik(state: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """k3s's Traefik chart as helm-controller would install it now: {(kind, name): object}."""
    done = subprocess.run(
        [cluster_binary("helm", "HELM_VERSION"), "template", "traefik", *helm_controller_arguments(state),
         "--namespace", TRAEFIK_NAMESPACE, "--kube-version", versions()["KUBERNETES_VERSION"], "--skip-crds"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(done.stdout) if o}


@dataclass(frozen=True)
class Traefik:
    host: str  # the app's host name
    address: str  # the pod's
    published: dict[int, int]  # the Service's port → the pod's port behind it
    ca: Path
    metrics: str  # the metrics entry point, ip:port

    def request(
        self, path: str, *curl: str, caller: str = "127.0.0.2", tls: bool = True, host: str = ""
    ) -> dict[str, str]:
        """curl from `caller`'s address to https://<host><path> (or http://; the app's host by
        default), connected as ServiceLB connects a client to the Service's :443 (or :80)."""
        port, scheme = (443, "https") if tls else (80, "http")
        host = host or self.host
        done = subprocess.run(
            ["curl", "-sS", "-o", "/dev/null", "-D", "-", "--interface", caller, "--max-time", "20",
             "--connect-to", f"{host}:{port}:{self.address}:{self.published[port]}", "--cacert", str(self.ca),
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


def ingress_certificates(state: Path) -> tuple[str, Path]:
    """The TLS Secrets cert-manager would issue for the app's and Loki's Ingresses (one test
    certificate for both hosts); returns the app's host and the certificate."""
    ingresses = [json.loads(kubectl("get", "ingress", name, "-n", ns, "-o", "json"))
                 for ns, name in (("taskplaner", "taskplaner"), ("loki", "loki-push"))]  # fmt: skip
    crt, key = make_certificate([i["spec"]["rules"][0]["host"] for i in ingresses], state)
    for ingress in ingresses:
        secret, namespace = ingress["spec"]["tls"][0]["secretName"], ingress["metadata"]["namespace"]
        kubectl("apply", "-f", "-", stdin=kubectl(
            "create", "secret", "tls", secret, "-n", namespace, f"--cert={crt}", f"--key={key}",
            "--dry-run=client", "-o", "yaml",
        ))  # fmt: skip
    return ingresses[0]["spec"]["rules"][0]["host"], crt


def api_access(account: str, state: Path) -> list[str]:
    """Both providers' out-of-cluster settings: the API server's address and CA, and a token of
    the pod's service account (bound by the chart to its own ClusterRole)."""
    token = kubectl("create", "token", account, "-n", TRAEFIK_NAMESPACE, "--duration=2h").strip()
    cluster = yaml.safe_load(Path(os.environ["KUBECONFIG"]).read_text())["clusters"][0]["cluster"]
    ca = state / "api-ca.crt"
    ca.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    settings = {"endpoint": cluster["server"], "token": token, "certauthfilepath": ca}
    return [
        f"--providers.{provider}.{key}={value}"
        for provider in ("kubernetesingress", "kubernetescrd")
        for key, value in settings.items()
    ]


def published_ports(service: dict[str, Any], pod: dict[str, Any]) -> dict[int, int]:
    """The Service's ports → the pod's container ports they target (by name or number)."""
    named = {p["name"]: p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    return {p["port"]: named.get(p["targetPort"], p["targetPort"]) for p in service["spec"]["ports"]}


# imported by the test modules that use it (as `traefik`): a conftest.py here would shadow the
# `conftest` module test_site.py imports its helpers from
@pytest.fixture(scope="module", name="traefik")
def traefik_fixture(
    pods: Pods, taskplaner: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Traefik:
    state = tmp_path_factory.mktemp("traefik")
    host, crt = ingress_certificates(state)
    helm = cluster_binary("helm", "HELM_VERSION")
    install = subprocess.run(
        [helm, "upgrade", "--install", "traefik", *helm_controller_arguments(state),
         "--namespace", TRAEFIK_NAMESPACE, "--skip-crds"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr

    deployment = json.loads(kubectl("get", "deployment", "traefik", "-n", TRAEFIK_NAMESPACE, "-o", "json"))
    selector = deployment["spec"]["selector"]["matchLabels"]
    pod = wait_until("Traefik pod", lambda: running_pod(TRAEFIK_NAMESPACE, selector))
    account = pod["spec"].get("serviceAccountName", "default")
    binary = cluster_binary("traefik", "TRAEFIK_VERSION")
    # without KUBECONFIG in its environment (the pod's own), Traefik uses what it was given
    process = pods.start(TRAEFIK_NAMESPACE, pod, "traefik", binary, api_access(account, state))
    ip = pod["status"]["podIP"]
    service = json.loads(kubectl("get", "service", "traefik", "-n", TRAEFIK_NAMESPACE, "-o", "json"))
    metrics = json.loads(kubectl("get", "service", "traefik-metrics", "-n", TRAEFIK_NAMESPACE, "-o", "json"))
    [metrics_port] = [p["port"] for p in metrics["spec"]["ports"] if p["name"] == "metrics"]
    scraped = f"{ip}:{published_ports(metrics, pod)[metrics_port]}"
    proxy = Traefik(host, ip, published_ports(service, pod), crt, scraped)

    def routed() -> bool:
        assert process.poll() is None, pods.log(pod, "traefik")
        try:
            return proxy.request("/healthz")["status"] == "200"
        except ConnectionError:
            return False

    try:
        wait_until("route to TaskPlaner through Traefik", routed, timeout=60)
    except AssertionError:
        raise AssertionError(pods.log(pod, "traefik")) from None
    yield proxy  # stopped with the module's other pods
