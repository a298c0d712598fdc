"""app/chart: lint, render, and have the real API server of the local test cluster accept it
(server-side dry run, with the CRDs it uses present); its alerts checked and unit-tested with
promtool; its dashboard valid JSON over the app's real metric names."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import apply_chart_crds, run
from taskplaner.db import Database
from taskplaner.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "app/chart"
NS = "chart-check"

pytestmark = pytest.mark.cluster


def render(env: dict[str, str], *sets: str) -> list[dict[str, Any]]:
    args = [f"--set={s}" for s in sets]
    out = run(env, "helm", "template", "taskplaner", str(CHART), "-n", NS, *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [doc] = [d for d in docs if d["kind"] == kind]
    return doc


def test_chart_lints_strictly(cluster_env):
    run(cluster_env, "helm", "lint", "--strict", str(CHART))


def test_the_api_server_accepts_every_object(cluster_env, tmp_path):
    apply_chart_crds(cluster_env, "monitoring")  # ServiceMonitor, PrometheusRule: the real CRDs
    # Middleware: Traefik's real CRD, which cluster.sh installs from Traefik's module
    subprocess.run(["kubectl", "create", "namespace", NS], env=cluster_env, capture_output=True)
    manifest = tmp_path / "chart.yaml"
    manifest.write_text(run(cluster_env, "helm", "template", "taskplaner", str(CHART), "-n", NS).stdout)
    out = run(cluster_env, "kubectl", "apply", "--dry-run=server", "-n", NS, "-f", str(manifest)).stdout
    kinds = sorted(line.split("/")[0] for line in out.splitlines())
    assert kinds == sorted(
        [
            "configmap",
            "deployment.apps",
            "ingress.networking.k8s.io",
            "middleware.traefik.io",  # the upload limit
            "middleware.traefik.io",  # the HTTPS redirect
            "networkpolicy.networking.k8s.io",
            "persistentvolumeclaim",
            "prometheusrule.monitoring.coreos.com",
            "service",
            "servicemonitor.monitoring.coreos.com",
        ]
    ), out


def test_pod_is_locked_down_with_one_replica_recreated(cluster_env):
    deployment = by_kind(render(cluster_env), "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    [container] = pod["containers"]
    sc = container["securityContext"]
    assert sc == {
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert sorted(m["mountPath"] for m in container["volumeMounts"]) == ["/data", "/tmp"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}
    assert "memory" in container["resources"]["limits"]
    secrets = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert secrets == {
        "TASKPLANER_PASSWORD": {"name": "taskplaner", "key": "password"},
        "TASKPLANER_SECRET_KEY": {"name": "taskplaner", "key": "secret-key"},
        "TASKPLANER_METRICS_TOKEN": {"name": "taskplaner", "key": "metrics-token"},
    }


LARGE_LIBRARY = 500_000  # notes: a very large personal library must start within the probe


def test_a_start_that_rebuilds_the_search_indexes_fits_the_startup_probe(cluster_env, tmp_path):
    """A first start after an upgrade may rebuild both search indexes before the server
    listens. Measured on a database of 20,000 notes at schema 1 (both rebuilds pending), the
    time to the first 200 on /healthz, scaled to LARGE_LIBRARY notes, must fit the chart's
    startupProbe, which must end before the rollout's deadline; the liveness probe waits for it
    (no initial delay of its own). No kubelet runs here: the probe's budget is computed from the
    rendered Deployment, the start is a real `taskplaner serve`."""
    spec = by_kind(render(cluster_env), "Deployment")["spec"]
    [container] = spec["template"]["spec"]["containers"]
    probe = container["startupProbe"]
    assert probe["httpGet"]["path"] == "/healthz"
    budget = probe["periodSeconds"] * probe["failureThreshold"]
    assert budget < spec["progressDeadlineSeconds"]
    assert "initialDelaySeconds" not in container["livenessProbe"]
    notes = 20_000
    seconds = _start_seconds(tmp_path / "data", notes)
    assert seconds * LARGE_LIBRARY / notes < budget, (seconds, budget)


def _start_seconds(data: Path, notes: int) -> float:
    import os
    import socket
    import sys
    import time
    import urllib.request

    from taskplaner.db import MIGRATIONS, _split_sql

    data.mkdir(parents=True)
    db = Database(data / "taskplaner.db")
    db.conn.execute("BEGIN IMMEDIATE")
    for statement in _split_sql(MIGRATIONS[0]):
        db.conn.execute(statement)
    db.conn.execute("PRAGMA user_version = 1")
    words = "garden plan report budget travel ticket kitchen recipe invoice meeting idea".split()
    db.conn.executemany(
        "INSERT INTO items (type, title, body, tags_text, created, updated)"
        " VALUES ('note', ?, ?, '', '2026-01-01', '2026-01-01')",
        ((f"note {i}", " ".join(words[(i + k) % len(words)] for k in range(60)) + f" n{i}")
         for i in range(notes)))
    db.conn.execute("COMMIT")
    db.close()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "TASKPLANER_DATA_DIR": str(data), "TASKPLANER_PORT": str(port),
           "TASKPLANER_PASSWORD": "a-password-for-the-start"}
    started = time.monotonic()
    server = subprocess.Popen([sys.executable, "-m", "taskplaner", "serve"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.monotonic() - started < 120:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    return time.monotonic() - started
            except OSError:
                time.sleep(0.05)
        raise AssertionError("the server did not answer within 120 s")
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_rollout_that_cannot_start_is_reported_within_minutes_and_registries_can_be_private(cluster_env):
    """An image the pipeline has not built yet (first deploy) fails the rollout after 3 minutes,
    so Argo CD shows Degraded (the role's wait stops there); pull secrets reach the pod."""
    spec = by_kind(render(cluster_env), "Deployment")["spec"]
    assert spec["progressDeadlineSeconds"] == 180
    assert "imagePullSecrets" not in spec["template"]["spec"]
    private = by_kind(render(cluster_env, "imagePullSecrets[0].name=registry"), "Deployment")
    assert private["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "registry"}]


def test_upload_limit_is_the_same_in_traefik_and_the_app(cluster_env):
    docs = render(cluster_env, "maxUploadBytes=1048576", "host=task.example.test")
    [middleware] = [d for d in docs if d["kind"] == "Middleware" and "buffering" in d["spec"]]
    assert middleware["spec"]["buffering"]["maxRequestBodyBytes"] == 1048576
    env = {
        e["name"]: e.get("value")
        for e in by_kind(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["TASKPLANER_MAX_UPLOAD_BYTES"] == "1048576"
    ingress = by_kind(docs, "Ingress")
    middlewares = ingress["metadata"]["annotations"]["traefik.ingress.kubernetes.io/router.middlewares"]
    assert middlewares.split(",") == [
        f"{NS}-taskplaner-redirect-https@kubernetescrd",
        f"{NS}-taskplaner-upload-limit@kubernetescrd",
    ]
    assert ingress["spec"]["rules"][0]["host"] == "task.example.test"


def test_plain_http_is_redirected_to_https(cluster_env):
    """Traefik serves an Ingress on :80 as well; its first middleware sends such requests to
    HTTPS for good (a request already on HTTPS passes redirectScheme unchanged)."""
    docs = render(cluster_env)
    [redirect] = [d for d in docs if d["kind"] == "Middleware" and "redirectScheme" in d["spec"]]
    assert redirect["metadata"]["name"] == "taskplaner-redirect-https"
    assert redirect["spec"]["redirectScheme"] == {"scheme": "https", "permanent": True}
    annotations = by_kind(docs, "Ingress")["metadata"]["annotations"]
    middlewares = annotations["traefik.ingress.kubernetes.io/router.middlewares"]
    assert middlewares.split(",")[0] == f"{NS}-taskplaner-redirect-https@kubernetescrd"


def test_data_volume_survives_release_deletion_and_prune(cluster_env):
    pvc = by_kind(render(cluster_env), "PersistentVolumeClaim")
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert pvc["metadata"]["annotations"]["argocd.argoproj.io/sync-options"] == "Delete=false"


def test_only_the_ingress_controller_and_prometheus_reach_the_app(cluster_env):
    policy = by_kind(render(cluster_env), "NetworkPolicy")["spec"]
    [rule] = policy["ingress"]
    assert [f["podSelector"]["matchLabels"] for f in rule["from"]] == [
        {"app.kubernetes.io/name": "traefik"},
        {"app.kubernetes.io/name": "prometheus"},
    ]
    assert rule["ports"] == [{"port": 8080}]


def test_metrics_scraped_with_the_token_from_the_secret(cluster_env):
    monitor = by_kind(render(cluster_env), "ServiceMonitor")
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["authorization"]["credentials"] == {"name": "taskplaner", "key": "metrics-token"}


def test_dashboard_is_valid_json_over_metrics_the_app_exports(cluster_env, tmp_path):
    cm = by_kind(render(cluster_env), "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(cm["data"]["taskplaner.json"])
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    db = Database(tmp_path / "metrics.db")
    db.migrate()
    exported = {m.name for m in Metrics(db).registry.collect()}
    for family in [
        "http_requests",
        "http_request_duration_seconds",
        "taskplaner_search_duration_seconds",
        "taskplaner_items",
        "taskplaner_attachment_stored_bytes",
    ]:
        assert family in exported, family
        assert family in exprs, family
    logs = [p for p in dashboard["panels"] if p["type"] == "logs"]
    assert logs[0]["datasource"]["type"] == "loki" and "| json" in logs[0]["targets"][0]["expr"]


def _rules(cluster_env, tmp_path: Path) -> Path:
    rule = by_kind(render(cluster_env), "PrometheusRule")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    result = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 4 rules found" in result.stdout
    return path


def test_alerts_fire_on_the_conditions_they_describe(cluster_env, tmp_path):
    rules = _rules(cluster_env, tmp_path)
    ns = f'namespace="{NS}"'
    tests = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": f'up{{{ns}, job="taskplaner"}}', "values": "0x20"},
                    {"series": f'http_requests_total{{{ns}, status="200"}}', "values": "0+90x30"},
                    {"series": f'http_requests_total{{{ns}, status="500"}}', "values": "0+10x30"},
                    {
                        "series": f'http_request_duration_seconds_bucket{{{ns}, le="0.1"}}',
                        "values": "0+100x30",
                    },
                    {
                        "series": f'http_request_duration_seconds_bucket{{{ns}, le="+Inf"}}',
                        "values": "0+100x30",
                    },
                    {"series": f"taskplaner_upkeep_failures_total{{{ns}}}", "values": "0x10 1x20"},
                ],
                "alert_rule_test": [
                    {"eval_time": "3m", "alertname": "TaskPlanerDown", "exp_alerts": []},
                    {
                        "eval_time": "10m",
                        "alertname": "TaskPlanerDown",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "critical", "namespace": NS, "job": "taskplaner"},
                                "exp_annotations": {
                                    "summary": "TaskPlaner has not answered Prometheus for 5 minutes."
                                },
                            }
                        ],
                    },
                    {
                        "eval_time": "25m",
                        "alertname": "TaskPlanerErrorRatio",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning"},
                                "exp_annotations": {"summary": "More than 5% of TaskPlaner's requests fail."},
                            }
                        ],
                    },
                    {"eval_time": "25m", "alertname": "TaskPlanerSlow", "exp_alerts": []},
                    {"eval_time": "5m", "alertname": "TaskPlanerUpkeepFailing", "exp_alerts": []},
                    {
                        "eval_time": "25m",
                        "alertname": "TaskPlanerUpkeepFailing",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning", "namespace": NS},
                                "exp_annotations": {
                                    "summary": "TaskPlaner's daily upkeep (search index merge, blob gc)"
                                    " failed; see its log."
                                },
                            }
                        ],
                    },
                ],
            }
        ],
    }
    path = tmp_path / "tests.yaml"
    path.write_text(yaml.safe_dump(tests))
    result = subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
