"""alloy against the local test cluster (the real alloy chart); its configuration is checked
with Alloy's own parser (tests/alloy, built by tests/cluster/build.sh)."""

from __future__ import annotations

import json
import subprocess

from conftest import alloy_relabel

NS = "alloy"


def _config(cluster) -> str:
    return cluster.values("alloy", NS)["alloy"]["configMap"]["content"]


def test_daemonset_reads_var_log_with_requests_and_limits(cluster):
    values = cluster.values("alloy", NS)
    assert values["controller"]["type"] == "daemonset"
    assert values["alloy"]["mounts"]["varlog"] is True
    containers = cluster.containers(NS)
    assert {"alloy", "config-reloader"} <= {c["name"] for c in containers}
    for c in containers:
        r = c["resources"]
        assert set(r.get("requests", {})) == {"cpu", "memory"} and "memory" in r.get("limits", {}), c
    status = cluster.get("daemonset", "alloy", NS)["status"]
    assert status["numberReady"] == status["desiredNumberScheduled"] == 1


def test_the_pod_reads_both_journals_and_keeps_its_positions_on_the_node(cluster):
    """Without /etc/machine-id Alloy cannot open the local journal; a volatile journal is under
    /run/log/journal; positions under /tmp were lost (and logs sent again) on every restart."""
    pod = cluster.get("daemonset", "alloy", NS)["spec"]["template"]["spec"]
    host_paths = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    [alloy] = [c for c in pod["containers"] if c["name"] == "alloy"]
    mounts = {m["mountPath"]: m["name"] for m in alloy["volumeMounts"]}
    for path in ["/var/log", "/run/log/journal", "/etc/machine-id", "/var/lib/alloy"]:
        assert host_paths[mounts[path]] == path, path
    assert "--storage.path=/var/lib/alloy" in alloy["args"]


def test_configuration_parses_with_alloys_own_parser(cluster, tmp_path):
    path = tmp_path / "config.alloy"
    path.write_text(_config(cluster))
    result = subprocess.run(["alloy-syntax-check", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "ok (" in result.stdout


def test_the_parser_catches_a_syntax_error(cluster, tmp_path):
    path = tmp_path / "broken.alloy"
    path.write_text(_config(cluster).replace('loki.write "default" {', 'loki.write "default" ', 1))
    result = subprocess.run(["alloy-syntax-check", str(path)], capture_output=True, text=True)
    assert result.returncode == 1
    assert "broken.alloy:" in result.stderr


def test_configuration_ships_this_nodes_pods_and_the_k3s_journal_to_loki(cluster):
    config = _config(cluster)
    assert 'field = "spec.nodeName=" + sys.env("HOSTNAME")' in config
    for label in ["namespace", "pod", "container", "app"]:
        assert f'target_label  = "{label}"' in config, label
    assert "stage.cri {}" in config  # unwraps CRI lines so TaskPlaner's JSON stays JSON for `| json`
    assert 'matches       = "_SYSTEMD_UNIT=k3s.service"' in config
    assert 'url = "http://loki.loki.svc.cluster.local:3100/loki/api/v1/push"' in config


def test_the_app_label_is_the_first_of_the_pods_names_that_is_set(cluster, tmp_path):
    pods = [{"app.kubernetes.io/name": "kube-prometheus-stack-prometheus-operator",
             "app": "kube-prometheus-stack-operator"},  # the operator's pod has both
            {"app": "only-app"}, {"app.kubernetes.io/name": "only-name"}, {"other": "x"},
            {"app.kubernetes.io/name": "", "app": "empty-name"}]
    apps = [target.get("app") for target in alloy_relabel(_config(cluster), tmp_path, pods)]
    assert apps == ["kube-prometheus-stack-prometheus-operator", "only-app", "only-name", None,
                    "empty-name"]


def test_check_mode_after_converge_reports_no_change(check_mode_changes):
    assert "changed=0" in check_mode_changes()


def test_bad_input_is_rejected_before_any_change(converge):
    result = converge("-e", json.dumps({"alloy_loki_push_url": "loki:3100"}))
    assert result.returncode != 0
    assert "alloy: invalid input" in result.stdout
