"""taskplaner role against the local test cluster, with the real argo-cd chart and Argo CD running."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from conftest import run_playbook

NS = "taskplaner"
REPO = f"{os.environ['GITEA_URL']}/{os.environ['GITEA_REPO']}.git"


def test_namespace_and_secret_from_vault(cluster):
    assert cluster.get("namespace", NS)["status"]["phase"] == "Active"
    data = cluster.get("secret", "taskplaner", NS)["data"]
    assert {k: base64.b64decode(v).decode() for k, v in data.items()} == {
        "password": "app-password-for-tests",
        "secret-key": "a-secret-key-for-tests-that-is-32-chars-or-more",
        "metrics-token": "metrics-token-for-tests",
    }


def test_project_limited_to_this_repository_and_namespace(cluster):
    spec = cluster.get("appproject", "taskplaner", "argocd")["spec"]
    assert spec["sourceRepos"] == [REPO]
    assert spec["destinations"] == [{"server": "https://kubernetes.default.svc", "namespace": NS}]
    assert spec["clusterResourceWhitelist"] == [{"group": "", "kind": "Namespace"}]


def test_application_syncs_the_chart_automatically(cluster):
    spec = cluster.get("application", "taskplaner", "argocd")["spec"]
    assert spec["project"] == "taskplaner"
    source = spec["source"]
    assert (source["repoURL"], source["targetRevision"], source["path"]) == (REPO, "main", "app/chart")
    assert source["helm"]["valuesObject"]["host"] == "task.example.test"
    assert source["helm"]["valuesObject"]["existingSecret"] == "taskplaner"
    assert source["helm"]["valuesObject"]["imagePullSecrets"] == []  # a public image (the default)
    assert source["helm"]["valuesObject"]["persistence"] == {"storageClass": "local-path", "size": "5Gi"}
    assert spec["destination"] == {"server": "https://kubernetes.default.svc", "namespace": NS}
    assert spec["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}
    assert spec["syncPolicy"]["syncOptions"] == ["CreateNamespace=true", "ServerSideApply=true"]


def test_the_chart_path_exists_and_its_values_take_the_keys_the_application_sets():
    import yaml

    chart = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / "app/chart"
    values = yaml.safe_load((chart / "values.yaml").read_text())
    for key in ["host", "ingressClassName", "tlsIssuer", "existingSecret", "persistence"]:
        assert key in values, key


def test_check_mode_after_converge_reports_no_change(check_mode_changes):
    assert "changed=0" in check_mode_changes()


def test_a_changed_vault_value_changes_the_secret_then_nothing(converge, cluster):
    try:
        first = converge("-e", json.dumps({"taskplaner_metrics_token": "a-rotated-metrics-token"}))
        assert first.returncode == 0 and "changed=1" in first.stdout, first.stdout[-2000:]
        data = cluster.get("secret", "taskplaner", NS)["data"]
        assert base64.b64decode(data["metrics-token"]).decode() == "a-rotated-metrics-token"
    finally:
        assert converge().returncode == 0


def test_bad_input_is_rejected_before_any_change(converge):
    weak = {"taskplaner_secret_key": "too-short", "taskplaner_password": "change-me"}
    result = converge("-e", json.dumps(weak))
    assert result.returncode != 0
    assert (
        "taskplaner: weak secrets: taskplaner_password is still the placeholder from vault.yml.example; "
        "taskplaner_secret_key is shorter than 32 characters" in result.stdout
    )
    assert "too-short" not in result.stdout and "change-me" not in result.stdout


def test_the_wait_stops_with_argo_cds_and_the_pods_words_when_the_app_is_not_healthy(tmp_path):
    """The path a first deploy takes when the image is not built yet (kwok pulls no image, so an
    Application that never becomes Healthy stands in): the wait ends, reads the pods, and says why."""
    playbook = tmp_path / "wait.yml"
    playbook.write_text(
        json.dumps(
            [
                {
                    "hosts": "localhost",
                    "gather_facts": False,
                    "tasks": [
                        {
                            "ansible.builtin.include_role": {"name": "taskplaner", "tasks_from": "verify"},
                            "vars": {"taskplaner_app_name": "never-healthy", "taskplaner_wait_timeout": 1},
                        }
                    ],
                }
            ]
        )
    )
    result = run_playbook(playbook, "localhost,")
    assert result.returncode != 0
    assert "taskplaner: Argo CD reports the app Unknown/Unknown" in result.stdout, result.stdout[-3000:]
    assert "kubectl -n taskplaner get pods" in result.stdout
