"""The harness itself: the real API server, kwok, helm and Gitea answer as the roles expect."""

from __future__ import annotations

import json
import time

import requests
import yaml

from conftest import HERE, run

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: example.invalid/web:1}]
"""


def test_api_server_is_ready_and_reports_the_pinned_version(cluster_env):
    assert run(cluster_env, "kubectl", "get", "--raw", "/readyz").stdout.strip() == "ok"
    version = json.loads(run(cluster_env, "kubectl", "version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"].startswith("v1.")
    assert version["serverVersion"]["gitVersion"] == version["clientVersion"]["gitVersion"]


def test_api_server_accepts_a_crd_and_a_custom_resource(cluster_env):
    run(cluster_env, "kubectl", "apply", "-f", str(HERE / "crds/argocd-application.stand-in.yaml"))
    run(
        cluster_env,
        "kubectl",
        "wait",
        "--for=condition=Established",
        "crd/applications.argoproj.io",
        "--timeout=60s",
    )
    app = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "demo", "namespace": "default"},
        "spec": {"project": "default", "source": {"path": "app/chart"}},
    }
    run(cluster_env, "kubectl", "apply", "-f", "-", input=json.dumps(app))
    got = json.loads(run(cluster_env, "kubectl", "get", "application", "demo", "-o", "json").stdout)
    assert got["spec"]["source"]["path"] == "app/chart"


def test_a_deployment_becomes_available_on_the_kwok_node(cluster_env):
    run(cluster_env, "kubectl", "apply", "-f", "-", input=DEPLOYMENT)
    run(
        cluster_env,
        "kubectl",
        "wait",
        "--for=condition=Available",
        "deployment/web",
        "--timeout=90s",
        timeout=120,
    )
    pods = json.loads(run(cluster_env, "kubectl", "get", "pods", "-l", "app=web", "-o", "json").stdout)[
        "items"
    ]
    assert len(pods) == 2
    assert all(p["spec"]["nodeName"] == "kwok-node-0" for p in pods)
    assert all(p["status"]["phase"] == "Running" for p in pods)


def test_helm_installs_and_uninstalls_a_stand_in_chart(cluster_env):
    chart = str(HERE / "charts/standin")
    run(cluster_env, "helm", "version", "--short")
    run(
        cluster_env,
        "helm",
        "install",
        "probe",
        chart,
        "--namespace",
        "default",
        "--set",
        "greeting=hi",
        "--wait",
        "--timeout",
        "60s",
    )
    values = json.loads(run(cluster_env, "helm", "get", "values", "probe", "-o", "json").stdout)
    assert values == {"greeting": "hi"}
    cm = json.loads(run(cluster_env, "kubectl", "get", "configmap", "probe-values", "-o", "json").stdout)
    assert json.loads(cm["data"]["values.json"])["greeting"] == "hi"
    run(cluster_env, "helm", "uninstall", "probe", "--wait")
    listed = json.loads(run(cluster_env, "helm", "list", "-o", "json").stdout)
    assert [r["name"] for r in listed] == []


def test_gitea_api_creates_and_lists_a_webhook(cluster_env):
    base, token, repo = (cluster_env["GITEA_URL"], cluster_env["GITEA_TOKEN"], cluster_env["GITEA_REPO"])
    headers = {"Authorization": f"token {token}"}
    hook = {
        "type": "gitea",
        "active": True,
        "events": ["push"],
        "config": {
            "url": "https://argocd.example.test/api/webhook",
            "content_type": "json",
            "secret": "s3cret",
        },
    }
    res = requests.post(f"{base}/api/v1/repos/{repo}/hooks", json=hook, headers=headers, timeout=30)
    assert res.status_code == 201, res.text
    created = res.json()["id"]
    hooks = requests.get(f"{base}/api/v1/repos/{repo}/hooks", headers=headers, timeout=30).json()
    assert {h["id"]: h["config"]["url"] for h in hooks}[created] == "https://argocd.example.test/api/webhook"
    gone = requests.delete(f"{base}/api/v1/repos/{repo}/hooks/{created}", headers=headers, timeout=30)
    assert gone.status_code == 204
    bad = requests.get(
        f"{base}/api/v1/repos/{repo}/hooks", headers={"Authorization": "token wrong"}, timeout=30
    )
    assert bad.status_code == 401
    started = time.monotonic()
    assert requests.get(f"{base}/api/v1/version", timeout=30).ok
    assert time.monotonic() - started < 5


def test_every_stand_in_crd_is_accepted(cluster_env):
    for crd in sorted((HERE / "crds").glob("*.stand-in.yaml")):
        run(cluster_env, "kubectl", "apply", "--server-side", "-f", str(crd))
    names = run(cluster_env, "kubectl", "get", "crd", "-o", "name").stdout.split()
    for expected in (
        "servicemonitors.monitoring.coreos.com",
        "prometheusrules.monitoring.coreos.com",
        "middlewares.traefik.io",
        "appprojects.argoproj.io",
        "applications.argoproj.io",
        "helmchartconfigs.helm.cattle.io",
    ):
        assert f"customresourcedefinition.apiextensions.k8s.io/{expected}" in names


def test_every_stand_in_chart_lints_and_renders(cluster_env):
    charts = sorted(path.parent for path in (HERE / "charts").glob("*/Chart.yaml"))
    assert len(charts) == 5
    for chart in charts:
        run(cluster_env, "helm", "lint", str(chart))
        rendered = run(cluster_env, "helm", "template", "x", str(chart), "--set", "probe=1").stdout
        configmap = next(
            doc
            for doc in yaml.safe_load_all(rendered)
            if doc and doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "x-values"
        )
        assert json.loads(configmap["data"]["values.json"])["probe"] == 1, chart.name
