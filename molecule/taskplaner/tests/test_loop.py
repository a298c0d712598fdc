"""The GitOps loop with a real Argo CD (tests/cluster/podrunner.py runs the chart's controller,
repo-server and API server): the Application the role made syncs the chart from Gitea, a push
reaches Argo CD through the webhook the argocd role made, a broken chart fails without harm."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests" / "cluster"))
from gitea_repo import CHART, Repository
from podrunner import wait_until

NS = "taskplaner"
SERVER = os.environ["ARGOCD_SERVER_URL"]
WEBHOOK_DEPLOY_SECONDS = 30


def application(cluster) -> dict[str, Any]:
    return cluster.get("application", "taskplaner", "argocd")


def wait_for(what: str, check: Callable[[], Any], timeout: float = 90) -> Any:
    return wait_until(what, check, timeout)


def synced_and_healthy(cluster, revision: str | None = None) -> dict[str, Any] | None:
    status = application(cluster).get("status", {})
    ok = (
        status.get("sync", {}).get("status") == "Synced"
        and status.get("health", {}).get("status") == "Healthy"
    )
    if revision:
        ok = ok and status["sync"].get("revision") == revision
    return status if ok else None


def image_of(cluster) -> str:
    [container] = cluster.get("deployment", "taskplaner", NS)["spec"]["template"]["spec"]["containers"]
    return container["image"]


@pytest.fixture(scope="module")
def repo() -> Repository:
    return Repository()


def test_application_is_synced_and_healthy_with_the_objects_the_chart_renders(cluster, repo, tmp_path):
    head = repo.git("rev-parse", "HEAD").strip()
    status = wait_for("Synced/Healthy at Gitea's HEAD", lambda: synced_and_healthy(cluster, head))
    values = application(cluster)["spec"]["source"]["helm"]["valuesObject"]
    (tmp_path / "values.json").write_text(json.dumps(values))
    rendered = subprocess.run(
        [
            "helm",
            "template",
            "taskplaner",
            str(repo.work / CHART),
            "-n",
            NS,
            "-f",
            str(tmp_path / "values.json"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    objects = [d for d in yaml.safe_load_all(rendered) if d]
    assert len(objects) >= 8
    assert {(o["kind"], o["metadata"]["name"]) for o in objects} == {
        (r["kind"], r["name"]) for r in status["resources"]
    }
    assert all(r["status"] == "Synced" for r in status["resources"]), status["resources"]
    for obj in objects:
        live = cluster.get(
            obj["kind"].lower() + "." + obj["apiVersion"].split("/")[0]
            if "/" in obj["apiVersion"]
            else obj["kind"].lower(),
            obj["metadata"]["name"],
            NS,
        )
        assert live["metadata"]["labels"] == {
            **obj["metadata"].get("labels", {}),
            **live["metadata"]["labels"],
        }
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    assert image_of(cluster) == deployment["spec"]["template"]["spec"]["containers"][0]["image"]


def test_a_pushed_image_tag_is_deployed_within_seconds_through_the_webhook(cluster, repo):
    # polling every hour: only Gitea's webhook can explain a deploy within seconds
    assert cluster.get("configmap", "argocd-cm", "argocd")["data"]["timeout.reconciliation"] == "1h"
    wait_for("a settled app", lambda: synced_and_healthy(cluster))
    tag = f"webhook-{int(time.time())}"
    started = time.monotonic()
    commit = repo.set_tag(tag)
    wait_for(
        f"image tag {tag}", lambda: image_of(cluster).endswith(f":{tag}"), timeout=WEBHOOK_DEPLOY_SECONDS
    )
    elapsed = time.monotonic() - started
    wait_for("Synced/Healthy at the pushed commit", lambda: synced_and_healthy(cluster, commit))
    results = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / "bench/results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "gitops.json").write_text(json.dumps({"push_to_deployed_s": round(elapsed, 1)}))
    assert elapsed < WEBHOOK_DEPLOY_SECONDS


def test_a_broken_chart_fails_the_sync_and_the_running_release_stays(cluster, repo):
    wait_for("a settled app", lambda: synced_and_healthy(cluster))
    before = image_of(cluster)
    broken = Path(CHART) / "templates/broken.yaml"
    repo.write(str(broken), '{{ required "broken on purpose" .Values.noSuchValue }}\n', "a broken chart")
    try:

        def comparison_error() -> str | None:
            status = application(cluster).get("status", {})
            messages = [c["message"] for c in status.get("conditions", []) if c["type"] == "ComparisonError"]
            return next((m for m in messages if "broken on purpose" in m), None)

        wait_for("the Application to report the broken chart", comparison_error, timeout=60)
        assert image_of(cluster) == before
        deployment = cluster.get("deployment", "taskplaner", NS)
        assert deployment["status"].get("readyReplicas") == 1
    finally:
        (repo.work / broken).unlink()
        fixed = repo.commit_and_push("the chart mended")
    wait_for("Synced/Healthy after the fix", lambda: synced_and_healthy(cluster, fixed))


def test_api_server_takes_the_vault_admin_password_over_plain_http():
    login = f"{SERVER}/api/v1/session"
    good = requests.post(
        login,
        json={"username": "admin", "password": "admin-password-for-tests"},
        timeout=10,
        allow_redirects=False,
    )
    assert good.status_code == 200, good.text
    assert good.json()["token"].count(".") == 2  # a JWT
    bad = requests.post(
        login, json={"username": "admin", "password": "not-the-password"}, timeout=10, allow_redirects=False
    )
    assert bad.status_code == 401
    # server.insecure: plain HTTP is served, not redirected to https (Traefik terminates TLS)
    version = requests.get(f"{SERVER}/api/version", timeout=10, allow_redirects=False)
    assert version.status_code == 200 and version.json()["Version"].startswith("v3.")


def test_a_second_run_of_the_role_changes_nothing_while_argo_cd_owns_the_app(converge, cluster):
    wait_for("a settled app", lambda: synced_and_healthy(cluster))
    result = converge()
    assert result.returncode == 0 and "changed=0" in result.stdout, result.stdout[-3000:]
    assert synced_and_healthy(cluster)


def test_the_delivery_check_sees_a_push_arrive_and_names_the_cause_when_none_can(playbook, cluster):
    """With polling at 1 h, only the test push Gitea sends can refresh the Application. A hook
    Gitea cannot deliver through (here a closed port; on a host, Gitea's default
    ALLOWED_HOST_LIST refusing a private address looks the same from Argo CD's side) stops the
    play with the cause; the right hook passes again."""
    wait_for("a settled app", lambda: synced_and_healthy(cluster))
    ok = playbook("delivery.yml")
    assert ok.returncode == 0, ok.stdout[-3000:]
    assert "TASK [argocd : Wait for Argo CD to refresh taskplaner]" in ok.stdout
    dead = {"argocd_webhook_url": "http://127.0.0.1:9/api/webhook", "argocd_delivery_timeout": 5}
    try:
        refused = playbook("delivery.yml", "-e", json.dumps(dead))
        assert refused.returncode != 0
        assert "Gitea's test push did not reach Argo CD within 5 s" in refused.stdout
        assert "ALLOWED_HOST_LIST" in refused.stdout
    finally:
        restored = playbook("delivery.yml")
        assert restored.returncode == 0, restored.stdout[-3000:]
