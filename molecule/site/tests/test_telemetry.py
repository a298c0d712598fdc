"""Metrics travel for real (#16, path 3): the real prometheus-operator turns the ServiceMonitors
and PrometheusRules the roles and the app chart applied into a Prometheus configuration, a real
Prometheus runs it, and it scrapes a real TaskPlaner with the chart's metrics token.

Each program runs as the pod the test cluster holds for it (podrunner.container_process): bound
to its pod's address (the test cluster routes its pod network to this host), with the pod's
arguments, environment and volume files, read from the cluster. The operator makes the Prometheus
StatefulSet; kwok schedules its pod; the processes below are that pod's containers.

What differs from a real node, and why (addresses and credentials, never a chart setting):
- the operator reaches the API server with the test cluster's client certificate (its
  out-of-cluster flags --apiserver, --cert-file, --key-file, --ca-file), where a pod would use its
  service account; the admission webhook's certificate, which the chart's certgen Job would
  write into its Secret, is written here (kwok only marks Jobs Complete);
- Prometheus's Kubernetes discovery is given the test cluster's kubeconfig (`kubeconfig_file`
  added to each `kubernetes_sd_configs` entry of the file the operator's own config-reloader
  wrote out): in a pod it reads the API server's address and a token from fixed paths;
- of the Prometheus pod, the init container (config-reloader, writing the configuration out) and
  the `prometheus` container run; the config-reloader sidecar does not (nothing changes the
  configuration during the test);
- k3s's Traefik runs (k3s_traefik.py); Alertmanager, Grafana, kube-state-metrics, node-exporter
  and k3s's other components do not: their targets are down here. The duplicate-series check
  covers what is up; k3s's shared registry is checked against the real components' metric
  names in test_site.py.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from PIL import Image

CLUSTER = Path(__file__).resolve().parents[3] / "tests" / "cluster"
sys.path.insert(0, str(CLUSTER))
from k3s_traefik import Traefik, traefik_fixture  # noqa: E402, F401 (beside this file; a fixture)
from podrunner import Pods, PodView, answers, cluster_binary, kubectl, running_pod, wait_until  # noqa: E402 (found through the path above)

MONITORING = "monitoring"
APP = "taskplaner"
TRAEFIK_METRICS = "traefik-metrics"  # the job: the Service's name (the ServiceMonitor sets no jobLabel)


def api_credentials(state: Path) -> list[str]:
    """The operator's out-of-cluster flags for the test cluster's API server and client cert."""
    config = yaml.safe_load(Path(os.environ["KUBECONFIG"]).read_text())
    cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
    files = {}
    for flag, data in (
        ("ca-file", cluster["certificate-authority-data"]),
        ("cert-file", user["client-certificate-data"]),
        ("key-file", user["client-key-data"]),
    ):
        files[flag] = state / f"api-{flag}"
        files[flag].write_bytes(base64.b64decode(data))
        files[flag].chmod(0o600)
    return [f"--apiserver={cluster['server']}", *(f"--{flag}={path}" for flag, path in files.items())]


def webhook_certificate(deployment: dict[str, Any], state: Path) -> None:
    """The Secret the chart's admission-webhook certgen Job writes (ca, cert, key)."""
    volumes = deployment["spec"]["template"]["spec"].get("volumes", [])
    [secret] = [v["secret"]["secretName"] for v in volumes if "secret" in v]
    service = deployment["metadata"]["name"]
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={service}",
         "-addext", f"subjectAltName=DNS:{service},DNS:{service}.{MONITORING}.svc",
         "-keyout", state / "webhook.key", "-out", state / "webhook.crt"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    crt, key = (state / "webhook.crt").read_text(), (state / "webhook.key").read_text()
    manifest = kubectl(
        "create", "secret", "generic", secret, "-n", MONITORING, "--dry-run=client", "-o", "yaml",
        f"--from-literal=ca={crt}", f"--from-literal=cert={crt}", f"--from-literal=key={key}",
    )  # fmt: skip
    kubectl("apply", "-f", "-", stdin=manifest)


@pytest.fixture(scope="module")
def operator(pods: Pods) -> dict[str, Any]:
    """The chart's prometheus-operator Deployment, its pod running the real operator."""
    [deployment] = [
        d
        for d in json.loads(kubectl("get", "deployments", "-n", MONITORING, "-o", "json"))["items"]
        if any("--prometheus-config-reloader" in a for c in d["spec"]["template"]["spec"]["containers"]
               for a in c.get("args", []))
    ]  # fmt: skip
    webhook_certificate(deployment, pods.state)
    pod = wait_until(
        "operator pod", lambda: running_pod(MONITORING, deployment["spec"]["selector"]["matchLabels"])
    )
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    binary = cluster_binary("prometheus-operator", "PROMETHEUS_OPERATOR_VERSION")
    process = pods.start(MONITORING, pod, container["name"], binary, api_credentials(pods.state))
    time.sleep(2)
    assert process.poll() is None, pods.log(pod, container["name"])
    return pod


@pytest.fixture(scope="module")
def prometheus_cr(operator: dict[str, Any]) -> dict[str, Any]:
    [item] = json.loads(kubectl("get", "prometheuses", "-n", MONITORING, "-o", "json"))["items"]
    return item


def configuration(prometheus_cr: dict[str, Any]) -> dict[str, Any] | None:
    name = f"prometheus-{prometheus_cr['metadata']['name']}"
    found = subprocess.run(
        ["kubectl", "get", "secret", name, "-n", MONITORING, "-o", "jsonpath={.data.prometheus\\.yaml\\.gz}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if found.returncode or not found.stdout:
        return None
    return yaml.safe_load(gzip.decompress(base64.b64decode(found.stdout)))


def localised(value: Any, view: PodView, mounts: dict[str, Path]) -> Any:
    """The configuration with the pod's file paths (rule files, CA files, tokens) made local."""
    if isinstance(value, dict):
        return {k: localised(v, view, mounts) for k, v in value.items()}
    if isinstance(value, list):
        return [localised(v, view, mounts) for v in value]
    return view.localise(value, mounts) if isinstance(value, str) and value.startswith("/") else value


@pytest.fixture(scope="module")
def prometheus(pods: Pods, prometheus_cr: dict[str, Any]) -> str:
    """The operator's Prometheus pod, run: its init container writes the configuration out,
    then Prometheus starts on it. Returns Prometheus's URL."""
    name = prometheus_cr["metadata"]["name"]
    wait_until("configuration from the operator", lambda: configuration(prometheus_cr), timeout=180)
    selector = {"app.kubernetes.io/name": "prometheus", "app.kubernetes.io/instance": name}
    pod = wait_until("Prometheus pod", lambda: running_pod(MONITORING, selector), timeout=180)
    reloader = cluster_binary("prometheus-config-reloader", "PROMETHEUS_OPERATOR_VERSION")
    init = pods.start(MONITORING, pod, "init-config-reloader", reloader)
    assert init.wait(timeout=60) == 0, pods.log(pod, "init-config-reloader")

    view = pods.view(MONITORING)
    spec = pod["spec"]
    [container] = [c for c in spec["containers"] if c["name"] == "prometheus"]
    mounts = view.volumes(pod["metadata"]["name"], spec, container)
    written = mounts["/etc/prometheus/config_out"] / "prometheus.env.yaml"
    config = localised(yaml.safe_load(written.read_text()), view, mounts)
    for job in config.get("scrape_configs", []) + config.get("alerting", {}).get("alertmanagers", []):
        for sd in job.get("kubernetes_sd_configs", []):
            sd["kubeconfig_file"] = os.environ["KUBECONFIG"]
    written.write_text(yaml.safe_dump(config))

    ip = pod["status"]["podIP"]
    binary = cluster_binary("prometheus", "PROMETHEUS_VERSION")
    process = pods.start(MONITORING, pod, "prometheus", binary, [f"--web.listen-address={ip}:9090"])
    url = f"http://{ip}:9090"

    wait_until("ready Prometheus", lambda: answers(process, f"{url}/-/ready", pods.log(pod, "prometheus")))
    return url


def query(prometheus: str, promql: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(
        f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": promql}), timeout=10
    ) as response:
        return json.loads(response.read())["data"]["result"]


def api(prometheus: str, path: str) -> Any:
    with urllib.request.urlopen(f"{prometheus}/api/v1/{path}", timeout=10) as response:
        return json.loads(response.read())["data"]


def test_the_operator_writes_a_scrape_job_for_every_service_monitor(prometheus: str, prometheus_cr):
    config = configuration(prometheus_cr)
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    monitors = json.loads(kubectl("get", "servicemonitors", "-A", "-o", "json"))["items"]
    expected = {
        f"serviceMonitor/{m['metadata']['namespace']}/{m['metadata']['name']}/{i}"
        for m in monitors
        for i, _ in enumerate(m["spec"]["endpoints"])
    }
    assert f"serviceMonitor/{APP}/{APP}/0" in expected
    assert expected <= jobs, expected - jobs


def test_prometheus_scrapes_taskplaner_with_the_charts_token(prometheus: str, taskplaner):
    request = urllib.request.Request(f"{taskplaner['url']}/metrics")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 401  # without the token the app refuses to answer

    up = wait_until(
        "successful scrape of TaskPlaner",
        lambda: [
            r for r in query(prometheus, f'up{{namespace="{APP}", job="{APP}"}}') if r["value"][1] == "1"
        ],
        timeout=90,
        every=2,
    )
    assert up[0]["metric"]["pod"] == taskplaner["pod"]["metadata"]["name"]
    assert up[0]["metric"]["instance"] == f"{taskplaner['pod']['status']['podIP']}:8080"
    # the app's own series arrive with the labels the dashboard and alerts select on
    families = {r["metric"]["__name__"] for r in query(prometheus, f'{{namespace="{APP}", job="{APP}"}}')}
    assert {
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "taskplaner_upkeep_failures_total",
    } <= families


def app_rules(prometheus: str) -> dict[str, dict[str, Any]]:
    groups = [g for g in api(prometheus, "rules")["groups"] if g["name"] == "taskplaner"]
    evaluated = groups and not groups[0]["lastEvaluation"].startswith("0001")
    return {r["name"]: r for r in groups[0]["rules"]} if evaluated else {}


def test_the_apps_alert_rules_load_and_evaluate(prometheus: str, taskplaner):
    rules = wait_until("evaluated taskplaner rule group", lambda: app_rules(prometheus), timeout=90, every=2)
    assert set(rules) == {
        "TaskPlanerDown",
        "TaskPlanerErrorRatio",
        "TaskPlanerSlow",
        "TaskPlanerUpkeepFailing",
    }
    assert {name: r["health"] for name, r in rules.items() if r["health"] != "ok"} == {}
    # Until the first scrape, absent(up) holds and TaskPlanerDown is pending (its `for: 5m`
    # keeps that from firing); once the app has been scraped it is inactive.
    wait_until(
        "TaskPlanerDown inactive with the app up",
        lambda: app_rules(prometheus)["TaskPlanerDown"]["state"] == "inactive",
        timeout=120,
        every=3,
    )


def test_no_series_arrives_twice(prometheus: str, taskplaner):
    """Measured on what Prometheus really scraped. Every Go program serves its own runtime and
    process families (go_*, process_*): those names come from each program's job once (here
    Prometheus's and the operator's), which is right. What must not happen is one program's
    series arriving under two jobs (k3s's shared registry, a Service scraped twice): no address
    is a target of two scrape configurations, and apart from those runtime families no name
    comes from two jobs."""
    # TaskPlaner, Prometheus itself and the operator answer here (the other targets run nowhere)
    expected = {APP, "kube-prometheus-stack-prometheus", "kube-prometheus-stack-operator"}
    try:
        wait_until(
            "a scrape of each running program",
            lambda: {r["metric"]["job"] for r in query(prometheus, "up == 1")} >= expected,
            timeout=90,
            every=3,
        )
    except AssertionError:
        targets = api(prometheus, "targets")["activeTargets"]
        raise AssertionError(
            [(t["labels"].get("job"), t["scrapeUrl"], t["health"], t["lastError"]) for t in targets]
        ) from None

    # one address, one scrape configuration (two ServiceMonitors on one Service give two, even
    # with one job label)
    targets = api(prometheus, "targets")["activeTargets"]
    pools_of_url: dict[str, set[str]] = {}
    for target in targets:
        pools_of_url.setdefault(target["scrapeUrl"], set()).add(target["scrapePool"])
    assert len(targets) >= 10, len(targets)
    assert {url: pools for url, pools in pools_of_url.items() if len(pools) > 1} == {}

    # every scraped name, leaving out the series Prometheus makes about each target itself
    # (up, scrape_*) and recording rules' results (level:metric:operation names)
    scraped = '{__name__=~".+", __name__!~"up|scrape_.*|.*:.*"}'
    assert len(query(prometheus, f"count by (__name__) ({scraped})")) > 100
    twice = {
        r["metric"]["__name__"]
        for r in query(prometheus, f"count by (__name__) (count by (__name__, job) ({scraped})) > 1")
    }
    assert {name for name in twice if not name.startswith(("go_", "process_"))} == set()
    assert "go_goroutines" in twice  # two Go programs were scraped, so the check above can fail
    one_target_two_jobs = query(
        prometheus, f"count by (__name__, instance) (count by (__name__, instance, job) ({scraped})) > 1"
    )
    assert one_target_two_jobs == []


def app_traffic(url: str) -> None:
    """What a person does in a minute: log in, write, search, attach an image, try a file the
    app refuses."""
    env = json.loads(kubectl("get", "deployment", APP, "-n", APP, "-o", "json"))
    [container] = env["spec"]["template"]["spec"]["containers"]
    ref = next(e for e in container["env"] if e["name"] == "TASKPLANER_PASSWORD")["valueFrom"]["secretKeyRef"]
    secret = json.loads(kubectl("get", "secret", ref["name"], "-n", APP, "-o", "json"))
    session = requests.Session()
    answer = session.post(
        f"{url}/api/v1/session", json={"password": base64.b64decode(secret["data"][ref["key"]]).decode()}
    )
    assert answer.status_code == 201, answer.text
    session.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
    item = session.post(
        f"{url}/api/v1/items", json={"type": "note", "title": "Garden plan", "body": "tomatoes"}
    )
    assert item.status_code == 201, item.text
    for query in ("garden", "tomatoes", "plan*"):
        assert session.get(f"{url}/api/v1/search", params={"q": query}).status_code == 200
    png = io.BytesIO()
    Image.new("RGB", (64, 48), "red").save(png, "PNG")
    attachments = f"{url}/api/v1/items/{item.json()['id']}/attachments"
    assert (
        session.post(attachments, files={"file": ("plan.png", png.getvalue(), "image/png")}).status_code
        == 201
    )
    refused = session.post(attachments, files={"file": ("plan.png", b"not an image", "image/png")})
    assert refused.status_code in (400, 415, 422), refused.text


def dashboard_queries(path: str) -> list[tuple[str, str]]:
    """(panel title, PromQL) of a dashboard, its variables filled in as Grafana does (the
    namespace variable's default; the Prometheus data source)."""
    dashboard = json.loads((CLUSTER.parents[1] / path).read_text())
    variables = {v["name"]: v.get("current", {}).get("value") for v in dashboard["templating"]["list"]}
    return [
        (panel["title"], target["expr"].replace("$namespace", variables.get("namespace") or "$namespace"))
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if target.get("datasource", {}).get("type") == "prometheus"
    ]


def traefik_traffic(traefik: Traefik) -> None:
    for path in ("/healthz", "/no-such-page", "/readyz", "/notes"):
        traefik.request(path)


def test_prometheus_finds_k3s_traefik_through_the_rendered_metrics_service(prometheus: str, traefik: Traefik):
    """The monitoring role's ServiceMonitor selects the metrics Service k3s's chart renders with
    the role's HelmChartConfig: one target, Traefik's metrics entry point, up."""

    def up() -> list[dict[str, Any]]:
        return [r for r in query(prometheus, f'up{{job="{TRAEFIK_METRICS}"}}') if r["value"][1] == "1"]

    [target] = wait_until("Traefik's metrics scraped", up, timeout=90, every=3)
    assert target["metric"]["instance"] == traefik.metrics
    assert target["metric"]["namespace"] == "kube-system"


def test_every_dashboard_query_returns_series(prometheus: str, taskplaner, traefik: Traefik):
    """#16 path 4, its PromQL half: after a minute of use, each panel of TaskPlaner's dashboard
    and of the monitoring role's Traefik dashboard shows data (a query that returns nothing is a
    broken panel), Traefik's from the real Traefik through the ServiceMonitor. The Logs panel's
    LogQL needs a Loki, which cannot run here."""
    app = dashboard_queries("app/chart/dashboards/taskplaner.json")
    proxy = dashboard_queries("roles/monitoring/files/dashboards/traefik.json")
    assert len(app) >= 10 and len(proxy) >= 4
    app_traffic(taskplaner["url"])
    traefik_traffic(traefik)
    # rate() and increase() need two scrapes after the traffic (both are scraped every 30 s)
    after = time.time()
    for job in (APP, TRAEFIK_METRICS):
        wait_until(
            f"two scrapes of {job} after the traffic",
            lambda job=job: query(prometheus, f'timestamp(up{{job="{job}"}}) > {after + 31}'),
            timeout=120,
            every=3,
        )
    empty = [title for title, promql in app + proxy if not query(prometheus, promql)]
    assert empty == []


def test_taskplaner_down_fires_when_the_app_stops(prometheus: str, taskplaner):
    """Stopping the app's process makes the next scrape fail; TaskPlanerDown becomes pending at
    the next evaluation (it fires after its `for: 5m`, which promtool's test of the rule shows)."""
    taskplaner["process"].terminate()
    taskplaner["process"].wait(timeout=15)

    def pending() -> list[dict[str, Any]]:
        return [
            a
            for a in api(prometheus, "alerts")["alerts"]
            if a["labels"]["alertname"] == "TaskPlanerDown" and a["state"] in ("pending", "firing")
        ]

    [alert] = wait_until("TaskPlanerDown alert", pending, timeout=150, every=3)
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["namespace"] == APP
