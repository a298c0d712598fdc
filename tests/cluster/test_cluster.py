"""The harness itself: the real API server, kwok, helm and Gitea answer as the roles expect."""

from __future__ import annotations

import json
import subprocess
import time

import requests
import yaml

from conftest import HERE, apply_chart_crds, chart_archive, run

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


def test_api_server_accepts_a_real_crd_and_validates_custom_resources_with_it(cluster_env):
    # kube-prometheus-stack's: the monitoring role applies these server-side too, so the shared
    # cluster keeps them (the argo-cd chart's CRDs must be created by its helm release)
    apply_chart_crds(cluster_env, "monitoring")
    run(
        cluster_env,
        "kubectl",
        "wait",
        "--for=condition=Established",
        "crd/prometheusrules.monitoring.coreos.com",
        "--timeout=60s",
    )
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "demo", "namespace": "default"},
        "spec": {"groups": [{"name": "demo", "rules": [{"alert": "Demo", "expr": "vector(1)"}]}]},
    }
    run(cluster_env, "kubectl", "apply", "-f", "-", input=json.dumps(rule))
    got = json.loads(run(cluster_env, "kubectl", "get", "prometheusrule", "demo", "-o", "json").stdout)
    assert got["spec"]["groups"][0]["rules"][0]["expr"] == "vector(1)"
    # the real schema: a rule without an expression is refused
    del rule["spec"]["groups"][0]["rules"][0]["expr"]
    rule["metadata"]["name"] = "invalid"
    refused = subprocess.run(
        ["kubectl", "apply", "-f", "-"],
        input=json.dumps(rule),
        env=cluster_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0 and "expr" in refused.stderr, refused.stderr
    run(cluster_env, "kubectl", "delete", "prometheusrule", "demo")


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


def test_the_pinned_upstream_charts_are_in_the_chart_cache(cluster_env):
    for role in ("argocd", "monitoring", "loki", "alloy"):
        archive = chart_archive(cluster_env, role)
        assert archive.is_file(), archive
        chart = yaml.safe_load(run(cluster_env, "helm", "show", "chart", str(archive)).stdout)
        assert archive.name == f"{chart['name']}-{chart['version']}.tgz"


def test_helm_installs_a_real_upstream_chart_whose_pods_become_ready(cluster_env):
    archive = str(chart_archive(cluster_env, "alloy"))
    run(
        cluster_env,
        "helm",
        "install",
        "probe",
        archive,
        "--namespace",
        "helm-probe",
        "--create-namespace",
        "--set",
        "alloy.resources.requests.cpu=7m",
        "--wait",
        "--timeout",
        "90s",
        timeout=150,
    )
    try:
        values = json.loads(
            run(cluster_env, "helm", "get", "values", "probe", "-n", "helm-probe", "-o", "json").stdout
        )
        assert values == {"alloy": {"resources": {"requests": {"cpu": "7m"}}}}
        [daemonset] = json.loads(
            run(
                cluster_env,
                "kubectl",
                "get",
                "daemonset",
                "-n",
                "helm-probe",
                "-l",
                "app.kubernetes.io/instance=probe",
                "-o",
                "json",
            ).stdout
        )["items"]
        assert daemonset["status"]["numberReady"] == 1
        [alloy] = [c for c in daemonset["spec"]["template"]["spec"]["containers"] if c["name"] == "alloy"]
        assert alloy["resources"]["requests"]["cpu"] == "7m"
    finally:
        run(cluster_env, "helm", "uninstall", "probe", "-n", "helm-probe", "--wait")
    listed = json.loads(run(cluster_env, "helm", "list", "-n", "helm-probe", "-o", "json").stdout)
    assert listed == []
    run(cluster_env, "kubectl", "delete", "namespace", "helm-probe", "--wait=false")


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


def test_the_crds_k3s_and_traefik_bring_are_the_real_ones(cluster_env):
    """No CRD is a stand-in: k3s's HelmChart and HelmChartConfig come from helm-controller's
    module, Traefik's from its own, installed with the cluster, each with its schema."""
    assert not list(HERE.glob("crds/*.yaml")), "a project-written CRD is back"
    names = run(cluster_env, "kubectl", "get", "crd", "-o", "name").stdout.split()
    for expected in ("middlewares.traefik.io", "ingressroutes.traefik.io",
                     "helmchartconfigs.helm.cattle.io", "helmcharts.helm.cattle.io"):
        assert f"customresourcedefinition.apiextensions.k8s.io/{expected}" in names
    middleware = run(cluster_env, "kubectl", "get", "crd", "middlewares.traefik.io", "-o", "json").stdout
    assert "redirectScheme" in middleware  # the real schema, not one that takes anything
    config = json.loads(run(cluster_env, "kubectl", "get", "crd", "helmchartconfigs.helm.cattle.io",
                            "-o", "json").stdout)
    [version] = config["spec"]["versions"]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["valuesContent"]["type"] == "string"
    assert "x-kubernetes-preserve-unknown-fields" not in version["schema"]["openAPIV3Schema"]
