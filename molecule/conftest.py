"""Helpers shared by every scenario's testinfra tests: re-run the scenario's converge playbook
with extra arguments (check mode, bad input) and read its recap; read the cluster; run its pods
as processes (tests/cluster/podrunner.py; the site scenario's telemetry and ingress tests)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT / "tests" / "cluster"))
from podrunner import Pods, answers, kubectl, running_pod, wait_until  # noqa: E402 (found through the path above)

APP = "taskplaner"

Converge = Callable[..., subprocess.CompletedProcess[str]]


def run_playbook(
    playbook: Path, inventory: str, *extra: str, isolated_network: bool = False
) -> subprocess.CompletedProcess[str]:
    """ansible-playbook as the scenarios run it (local connection, this project's roles and
    ansible.cfg), with one-line JSON results, no colour and stderr merged (molecule sends failed
    tasks there), so tests can read what it said. isolated_network: in a network namespace of
    its own (loopback only, no route), as on a host without a network."""
    return subprocess.run(
        [
            *(["unshare", "--net"] if isolated_network else []),
            "ansible-playbook",
            "-i",
            inventory,
            "-c",
            "local",
            str(playbook),
            "-e",
            "ansible_python_interpreter=" + os.environ.get("MOLECULE_PYTHON", sys.executable),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
        check=False,
        cwd=PROJECT,
        env={
            **os.environ,
            "ANSIBLE_ROLES_PATH": str(PROJECT / "roles"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
        },
    )


@pytest.fixture
def playbook(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Any]:
    """Runs one of the scenario's playbooks by file name: playbook("converge.yml", "--check")."""
    scenario = Path(request.path).resolve().parent.parent
    # localhost in the group site.yml's plays target, as in molecule's own inventory, with the
    # scenario's group_vars (the site scenario keeps its settings there) next to it
    folder = tmp_path_factory.mktemp("inventory")
    inventory = folder / "hosts.yml"
    inventory.write_text(json.dumps({"all": {"children": {"k3s_server": {"hosts": {"localhost": {}}}}}}))
    if (scenario / "group_vars").is_dir():
        (folder / "group_vars").symlink_to(scenario / "group_vars")

    def run(name: str, *extra: str, isolated_network: bool = False) -> subprocess.CompletedProcess[str]:
        return run_playbook(scenario / name, str(inventory), *extra, isolated_network=isolated_network)

    return run


@pytest.fixture
def converge(playbook: Callable[..., subprocess.CompletedProcess[str]]) -> Converge:
    return lambda *extra, **options: playbook("converge.yml", *extra, **options)


def extra_vars(**values: object) -> tuple[str, str]:
    return "-e", json.dumps(values)


@pytest.fixture
def check_mode_changes(converge: Converge) -> Callable[[], str]:
    """Runs converge with --check --diff and returns its output after asserting it succeeded."""

    def run() -> str:
        result = converge("--check", "--diff")
        assert result.returncode == 0, result.stdout[-3000:]
        return result.stdout

    return run


class Cluster:
    """Reads what a role left in the local test cluster, through kubectl and helm."""

    @staticmethod
    def _json(*argv: str) -> Any:
        out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60)
        return json.loads(out.stdout)

    def get(self, kind: str, name: str, namespace: str | None = None) -> Any:
        ns = ["-n", namespace] if namespace else []
        return self._json("kubectl", "get", kind, name, *ns, "-o", "json")

    def items(self, kind: str, namespace: str | None = None, selector: str | None = None) -> list[Any]:
        """Every object of a kind, in a namespace or (None) in all of them."""
        where = ["-n", namespace] if namespace else ["-A"]
        labels = ["-l", selector] if selector else []
        return self._json("kubectl", "get", kind, *where, *labels, "-o", "json")["items"]

    def values(self, release: str, namespace: str) -> Any:
        return self._json("helm", "get", "values", release, "-n", namespace, "-o", "json")

    def containers(self, namespace: str) -> list[dict[str, Any]]:
        """Every container the namespace's pods run: {pod, name, init, resources}.

        Unless a test runs the real prometheus-operator, the Prometheus and Alertmanager pods it
        would create are missing, so they are added from their resources as the operator builds
        them: the main container from the custom resource's spec, the config-reloader sidecar
        and init container from the operator's --config-reloader-* arguments ("0" means none)."""
        pods = self.items("pods", namespace)
        found = [
            {
                "pod": pod["metadata"]["name"],
                "name": c["name"],
                "init": init,
                "resources": c.get("resources", {}),
            }
            for pod in pods
            for init, key in ((False, "containers"), (True, "initContainers"))
            for c in pod["spec"].get(key, [])
        ]
        return found + self._operator_made(namespace, pods)

    def _operator_made(self, namespace: str, pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
        args = [
            a
            for pod in pods
            for c in pod["spec"]["containers"]
            for a in c.get("args", [])
            if a.startswith("--config-reloader-")
        ]
        if not args:
            return []
        reloader: dict[str, dict[str, str]] = {}
        for arg in args:
            key, value = arg.removeprefix("--config-reloader-").split("=", 1)
            resource, kind = key.split("-")  # cpu-request, memory-limit, ...
            if value != "0":
                reloader.setdefault(kind + "s", {})[resource] = value
        made = []
        present = {pod["metadata"]["name"] for pod in pods}
        for kind, main in (("prometheus", "prometheus"), ("alertmanager", "alertmanager")):
            for item in self.items(kind, namespace):
                pod = f"{kind}-{item['metadata']['name']}-0"
                if pod in present:  # a real operator made it (site's telemetry test runs one)
                    continue
                made += [
                    {"pod": pod, "name": main, "init": False, "resources": item["spec"].get("resources", {})},
                    {"pod": pod, "name": "config-reloader", "init": False, "resources": reloader},
                    {"pod": pod, "name": "init-config-reloader", "init": True, "resources": reloader},
                ]
        return made


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    return Cluster()


Pod = tuple[str, dict[str, str]]  # (namespace, labels)


def alloy_relabel(config: str, folder: Path, pods: list[dict[str, str]]) -> list[dict[str, str]]:
    """Pod labels, as Kubernetes discovery names them (``__meta_kubernetes_pod_label_…``), through
    the discovery.relabel "pods" rules of an Alloy configuration: tests/alloy evaluates them with
    Alloy's own evaluator and applies them with Prometheus's relabel package (Alloy runs a copy
    of it). The results, one per pod, in order."""
    path = folder / "config.alloy"
    path.write_text(config)
    targets = [{"__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", k): v
                for k, v in labels.items()} for labels in pods]
    result = subprocess.run(["alloy-syntax-check", "-relabel", "pods", str(path)],
                            input=json.dumps(targets), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout))


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) against labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        present, value = e["key"] in labels, labels.get(e["key"])
        ok = {
            "In": present and value in e.get("values", []),
            "NotIn": not present or value not in e.get("values", []),
            "Exists": present,
            "DoesNotExist": not present,
        }[e["operator"]]
        if not ok:
            return False
    return True


def network_policy_allows(policies: list[dict[str, Any]], source: Pod, target: Pod, port: int) -> bool:
    """Whether NetworkPolicies (Ingress only; what the platform writes) let `source` reach
    `target` on a TCP port, as the API defines it: a pod no policy selects takes everything; a
    selected pod takes what one of the selecting policies' rules allows. Namespaces are matched
    by their kubernetes.io/metadata.name label, which the API server sets on every namespace."""
    (src_ns, src_labels), (dst_ns, dst_labels) = source, target
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == dst_ns
        and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
        and _selects(p["spec"]["podSelector"], dst_labels)
    ]
    if not selecting:
        return True

    def peer_matches(peer: dict[str, Any]) -> bool:
        if "ipBlock" in peer:
            return False  # pods reach pods by pod address; no policy here names one
        ns_ok = (
            _selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": src_ns})
            if "namespaceSelector" in peer
            else src_ns == dst_ns
        )
        return ns_ok and _selects(peer.get("podSelector", {}), src_labels)

    for policy in selecting:
        for rule in policy["spec"].get("ingress", []):
            peers = rule.get("from", [])
            ports = [p.get("port") for p in rule.get("ports", [])]
            if (not peers or any(peer_matches(peer) for peer in peers)) and (not ports or port in ports):
                return True
    return False


@dataclass(frozen=True)
class ScrapeTarget:
    job: str
    address: str  # ip:port
    path: str
    metric_relabelings: tuple[tuple[tuple[str, ...], str, str], ...]  # (sourceLabels, regex, action)

    def keeps(self, name: str) -> bool:
        """Whether the target's keep/drop rules on __name__ let a series of that name through
        (Prometheus anchors every regex, as re.fullmatch does)."""
        for labels, regex, action in self.metric_relabelings:
            if labels != ("__name__",) or action not in ("keep", "drop"):
                continue  # rules on other labels drop single series (buckets), not families
            if (re.fullmatch(regex, name) is not None) != (action == "keep"):
                return False
        return True


def scrape_targets(cluster: Cluster) -> list[ScrapeTarget]:
    """The targets Prometheus scrapes for the cluster's ServiceMonitors, resolved as
    prometheus-operator's endpoints discovery does: namespaceSelector and selector pick Services,
    their EndpointSlices give the addresses of the named port, and the job is the Service label
    named by jobLabel, else the Service's name. Two objects a host has are added as made there:
    the kubelet Service the operator keeps (one address per node, port https-metrics 10250),
    unless a real operator made it, and the API server's slice for `default/kubernetes` (the
    test cluster's API server listens on loopback, which an EndpointSlice may not hold)."""
    services = cluster.items("services")
    slices = cluster.items("endpointslices")
    if not any(
        s["metadata"]["name"] == "kubernetes" and s["metadata"]["namespace"] == "default" for s in slices
    ):
        slices.append(
            {
                "metadata": {"namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes"}},
                "ports": [{"name": "https", "port": 6443}],
                "endpoints": [{"addresses": ["10.0.0.1"]}],
            }
        )
    # the operator's kubelet Service, unless a real operator made it (site's telemetry test)
    if not any(
        svc["metadata"]["namespace"] == "kube-system"
        and svc["metadata"].get("labels", {}).get("k8s-app") == "kubelet"
        for svc in services
    ):
        kubelet = {
            "metadata": {
                "name": "kubelet",
                "namespace": "kube-system",
                "labels": {"k8s-app": "kubelet", "app.kubernetes.io/name": "kubelet"},
            }
        }
        slices.append(
            {
                "metadata": {"namespace": "kube-system", "labels": {"kubernetes.io/service-name": "kubelet"}},
                "ports": [{"name": "https-metrics", "port": 10250}],
                "endpoints": [
                    {
                        "addresses": [
                            a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"
                        ]
                    }
                    for node in cluster.items("nodes")
                ],
            }
        )
        services.append(kubelet)
    targets = []
    for monitor in cluster.items("servicemonitors"):
        spec, home = monitor["spec"], monitor["metadata"]["namespace"]
        where = spec.get("namespaceSelector", {})
        namespaces = None if where.get("any") else set(where.get("matchNames", [home]))
        for svc in services:
            meta = svc["metadata"]
            labels = meta.get("labels", {})
            if (namespaces is not None and meta["namespace"] not in namespaces) or not _selects(
                spec["selector"], labels
            ):
                continue
            job = labels.get(spec.get("jobLabel", ""), meta["name"])
            for endpoint in spec["endpoints"]:
                rules = tuple(
                    (tuple(r.get("sourceLabels", ())), r.get("regex", "(.*)"), r.get("action", "replace"))
                    for r in endpoint.get("metricRelabelings", [])
                )
                for piece in slices:
                    owner = piece["metadata"].get("labels", {}).get("kubernetes.io/service-name")
                    if piece["metadata"]["namespace"] != meta["namespace"] or owner != meta["name"]:
                        continue
                    for port in piece.get("ports") or []:
                        if port.get("name") != endpoint.get("port"):
                            continue
                        for ep in piece.get("endpoints") or []:
                            targets += [
                                ScrapeTarget(
                                    job, f"{ip}:{port['port']}", endpoint.get("path", "/metrics"), rules
                                )
                                for ip in ep["addresses"]
                            ]
    return targets


@pytest.fixture(scope="module")
def pods(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pods]:
    running = Pods(tmp_path_factory.mktemp("pods"))
    yield running
    running.stop_all()


@pytest.fixture(scope="module")
def taskplaner(pods: Pods) -> dict[str, Any]:
    """The app's pod, run: TaskPlaner as the chart starts it (the venv's `taskplaner`, which the
    image's entrypoint is), on its pod's address, data in the pod's volume folder."""
    deployment = json.loads(kubectl("get", "deployment", APP, "-n", APP, "-o", "json"))
    pod = wait_until(
        "TaskPlaner pod", lambda: running_pod(APP, deployment["spec"]["selector"]["matchLabels"])
    )
    program = Path(sys.executable).with_name("taskplaner")
    process = pods.start(APP, pod, "taskplaner", program)
    url = f"http://{pod['status']['podIP']}:8080"

    wait_until("ready TaskPlaner", lambda: answers(process, f"{url}/readyz", pods.log(pod, "taskplaner")))
    return {"pod": pod, "process": process, "url": url}
