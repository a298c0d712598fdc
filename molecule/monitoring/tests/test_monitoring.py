"""monitoring against the local test cluster (the real kube-prometheus-stack chart)."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from pathlib import Path

import yaml

NS = "monitoring"
RELEASE = "kube-prometheus-stack"


def test_k3s_components_scraped_at_the_node_ip_keeping_only_their_own_families(cluster):
    values = cluster.values(RELEASE, NS)
    assert values["kubeEtcd"]["enabled"] is False
    own = {}
    for component, port in [("kubeControllerManager", 10257), ("kubeScheduler", 10259), ("kubeProxy", 10249)]:
        assert values[component]["endpoints"] == ["10.0.0.5"], component
        assert values[component]["service"]["port"] == port
        [keep] = values[component]["serviceMonitor"]["metricRelabelings"]
        assert keep["action"] == "keep" and keep["sourceLabels"] == ["__name__"]
        own[component] = keep["regex"]
    assert own["kubeScheduler"] == "scheduler_.*"
    assert own["kubeProxy"] == "kubeproxy_.*"
    assert "workqueue" in own["kubeControllerManager"]
    assert values["kubelet"]["serviceMonitor"]["cAdvisor"] is True


def test_prometheus_selects_from_every_namespace_and_keeps_bounded_data(cluster):
    spec = cluster.values(RELEASE, NS)["prometheus"]["prometheusSpec"]
    for kind in ["serviceMonitor", "podMonitor", "rule", "probe", "scrapeConfig"]:
        assert spec[f"{kind}SelectorNilUsesHelmValues"] is False, kind
    assert spec["serviceMonitorNamespaceSelector"] == {} and spec["ruleNamespaceSelector"] == {}
    assert spec["retention"] == "15d" and spec["retentionSize"] == "8GB"
    claim = spec["storageSpec"]["volumeClaimTemplate"]["spec"]
    assert claim["storageClassName"] == "local-path"
    assert claim["resources"]["requests"]["storage"] == "10Gi"


def test_grafana_uses_the_role_secret_loki_and_labelled_dashboards(cluster):
    grafana = cluster.values(RELEASE, NS)["grafana"]
    assert grafana["admin"] == {
        "existingSecret": "grafana-admin",
        "userKey": "admin-user",
        "passwordKey": "admin-password",
    }
    assert "adminPassword" not in grafana
    assert grafana["ingress"]["hosts"] == ["grafana.example.test"]
    assert grafana["ingress"]["annotations"] == {
        "cert-manager.io/cluster-issuer": "test-issuer",
        "traefik.ingress.kubernetes.io/router.middlewares": f"{NS}-redirect-https@kubernetescrd",
    }
    redirect = cluster.get("middleware.traefik.io", "redirect-https", NS)
    assert redirect["spec"]["redirectScheme"] == {"scheme": "https", "permanent": True}
    assert grafana["sidecar"]["dashboards"]["label"] == "grafana_dashboard"
    assert grafana["sidecar"]["dashboards"]["labelValue"] == "1"
    [loki] = grafana["additionalDataSources"]
    assert loki["type"] == "loki" and loki["url"].startswith("http://loki.loki.svc")
    data = cluster.get("secret", "grafana-admin", NS)["data"]
    assert base64.b64decode(data["admin-password"]).decode() == "grafana-admin-for-tests"
    assert base64.b64decode(data["admin-user"]).decode() == "admin"


def grafana_pod_template(cluster) -> dict:
    return cluster.get("deployment", f"{RELEASE}-grafana", NS)["spec"]["template"]


def test_grafana_sets_the_vaults_admin_password_on_every_start(cluster):
    """Grafana takes GF_SECURITY_ADMIN_PASSWORD only when it creates its database; the init
    container resets the password of an existing one from the role's Secret, with Grafana's own
    CLI in Grafana's image, on the database the main container uses. (No Grafana process runs
    in the test cluster: this checks the pod the chart renders, not the reset itself.)"""
    spec = grafana_pod_template(cluster)["spec"]
    main = next(c for c in spec["containers"] if c["name"] == "grafana")
    names = [c["name"] for c in spec["initContainers"]]
    assert names.index("admin-password") > names.index("init-chown-data")  # owner fixed first
    init = spec["initContainers"][names.index("admin-password")]
    assert init["image"] == main["image"]
    assert init["env"] == [
        {
            "name": "GF_SECURITY_ADMIN_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "grafana-admin", "key": "admin-password"}},
        }
    ]
    script = " ".join(init["command"] + init["args"])
    assert "if [ -f /var/lib/grafana/grafana.db ]" in script  # a new database takes it itself
    assert "admin reset-admin-password --password-from-stdin" in script
    mounts = {m["name"]: m for m in init["volumeMounts"]}
    main_mounts = {m["name"]: m for m in main["volumeMounts"]}
    assert mounts["storage"] == main_mounts["storage"] and mounts["config"] == main_mounts["config"]
    ini = cluster.get("configmap", f"{RELEASE}-grafana", NS)["data"]["grafana.ini"]
    assert "data = /var/lib/grafana/" in ini
    assert init["resources"] == main["resources"]


class GrafanaUserStandIn:
    """STAND-IN for Grafana's GET /api/user (no Grafana runs here: AGPL): 200 with the user for
    basic auth with a password in ``accepted``, else 401 as Grafana answers. It shows the role's
    check after a rotation; it cannot show Grafana's reset itself."""

    def __init__(self, accepted: set[str]) -> None:
        import http.server
        import threading

        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                sent = self.headers.get("Authorization", "").removeprefix("Basic ")
                user, _, password = base64.b64decode(sent or b"").decode().partition(":")
                ok = self.path == "/api/user" and password in stand_in.accepted
                body = json.dumps({"login": user} if ok else {"message": "invalid username or password"})
                self.send_response(200 if ok else 401)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args) -> None:
                pass

        self.accepted = accepted
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _rotate(converge, password: str, grafana: GrafanaUserStandIn, *extra: str):
    return converge("-e", json.dumps({"monitoring_grafana_admin_password": password,
                                      "monitoring_grafana_check_url": grafana.url,
                                      "monitoring_wait_timeout": 30}), *extra)


def test_a_rotated_grafana_password_restarts_grafana_and_is_proven_by_a_login(converge, cluster):
    before = grafana_pod_template(cluster)["metadata"]["annotations"]["taskplaner/admin-password-sha256"]
    rotated_password = "a-rotated-grafana-password-42"
    grafana = GrafanaUserStandIn({rotated_password, "grafana-admin-for-tests"})
    try:
        rotated = _rotate(converge, rotated_password, grafana)
        assert rotated.returncode == 0, rotated.stdout[-3000:]
        assert "Log in to Grafana's API as admin" in rotated.stdout  # the check ran
        data = cluster.get("secret", "grafana-admin", NS)["data"]
        assert base64.b64decode(data["admin-password"]).decode() == rotated_password
        after = grafana_pod_template(cluster)["metadata"]["annotations"]["taskplaner/admin-password-sha256"]
        assert after != before  # a new pod template: the Deployment rolls Grafana
    finally:
        restored = _rotate(converge, "grafana-admin-for-tests", grafana)
        grafana.close()
        assert restored.returncode == 0, restored.stdout[-3000:]
    assert (
        grafana_pod_template(cluster)["metadata"]["annotations"]["taskplaner/admin-password-sha256"] == before
    )


def test_a_rotation_grafana_did_not_take_stops_the_role_with_the_reason(converge):
    """The reset exited 0 but Grafana still has the old password (grafana/grafana#102549)."""
    grafana = GrafanaUserStandIn({"grafana-admin-for-tests"})
    try:
        failed = _rotate(converge, "a-rotation-that-did-not-take-7", grafana)
        assert failed.returncode != 0
        assert "did not accept the vault's new admin password (HTTP 401)" in failed.stdout, \
            failed.stdout[-3000:]
        assert "a-rotation-that-did-not-take-7" not in failed.stdout  # no_log
    finally:
        restored = _rotate(converge, "grafana-admin-for-tests", grafana)
        grafana.close()
        assert restored.returncode == 0, restored.stdout[-3000:]


def test_every_container_has_requests_and_a_memory_limit(cluster):
    containers = cluster.containers(NS)
    names = {c["name"] for c in containers}
    # the real chart's pods with their sidecars and init containers, and the operator's
    assert {
        "prometheus",
        "alertmanager",
        "config-reloader",
        "init-config-reloader",
        "grafana",
        "grafana-sc-dashboard",
        "init-chown-data",
        "kube-state-metrics",
        "node-exporter",
    } <= names, names
    for c in containers:
        r = c["resources"]
        assert set(r.get("requests", {})) == {"cpu", "memory"} and "memory" in r.get("limits", {}), c


def test_traefik_dashboard_is_a_labelled_configmap_with_valid_json(cluster):
    cm = cluster.get("configmap", "dashboard-traefik", NS)
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    [text] = cm["data"].values()
    dashboard = json.loads(text)
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for metric in ["traefik_router_requests_total", "traefik_router_request_duration_seconds_bucket"]:
        assert metric in exprs


def _rules_file(cluster, tmp_path: Path) -> Path:
    spec = cluster.get("prometheusrule", "platform-alerts", NS)["spec"]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_alerting_rules_pass_promtool(cluster, tmp_path):
    path = _rules_file(cluster, tmp_path)
    result = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rules found" in result.stdout
    names = [r["alert"] for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]]
    assert names == ["VolumeDiskFillsWithin24h"]


def test_disk_alert_fires_when_the_volumes_disk_is_predicted_to_fill(cluster, tmp_path):
    """On node-exporter's series (local-path volumes report no kubelet_volume_stats_*)."""
    rules = _rules_file(cluster, tmp_path)
    disk = 'mountpoint="/",fstype="ext4",instance="10.0.0.5:9100"'
    other = 'mountpoint="/boot",fstype="vfat",instance="10.0.0.5:9100"'
    tests = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [  # 4 GB free of 10 GB, shrinking 20 MB a minute: empty in ~3.3 h
                    {"series": f"node_filesystem_avail_bytes{{{disk}}}", "values": "4000000000-20000000x120"},
                    {"series": f"node_filesystem_size_bytes{{{disk}}}", "values": "10000000000x120"},
                    # another filesystem filling as fast is not the volumes' disk
                    {
                        "series": f"node_filesystem_avail_bytes{{{other}}}",
                        "values": "4000000000-20000000x120",
                    },
                    {"series": f"node_filesystem_size_bytes{{{other}}}", "values": "10000000000x120"},
                ],
                "alert_rule_test": [
                    {"eval_time": "30m", "alertname": "VolumeDiskFillsWithin24h", "exp_alerts": []},
                    {
                        "eval_time": "2h",
                        "alertname": "VolumeDiskFillsWithin24h",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "mountpoint": "/",
                                    "fstype": "ext4",
                                    "instance": "10.0.0.5:9100",
                                },
                                "exp_annotations": {
                                    "summary": "The disk holding the volumes (/ on 10.0.0.5:9100) "
                                    "will be full within 24 hours."
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


def test_traefik_metrics_turned_on_and_scraped(cluster):
    config = cluster.get("helmchartconfig", "traefik", "kube-system")
    values = yaml.safe_load(config["spec"]["valuesContent"])
    # merged into the user's own values (prepare.yml), which k3s would otherwise lose
    assert values["logs"] == {"access": {"enabled": True}}
    assert values["metrics"]["prometheus"]["addEntryPointsLabels"] is False
    assert values["metrics"]["prometheus"]["entryPoint"] == "metrics"
    # clients keep their own addresses through ServiceLB (per-client login throttling)
    assert values["service"]["spec"]["externalTrafficPolicy"] == "Local"
    assert values["metrics"]["prometheus"]["service"]["enabled"] is True
    monitor = cluster.get("servicemonitor", "traefik", "kube-system")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


MANIFESTS = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "manifests"


def traefik_values(cluster) -> dict:
    return yaml.safe_load(cluster.get("helmchartconfig", "traefik", "kube-system")["spec"]["valuesContent"])


def file_documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def assert_the_roles_traefik_values(values: dict) -> None:
    assert values["logs"] == {"access": {"enabled": True}}  # the user's
    assert values["metrics"]["prometheus"]["addEntryPointsLabels"] is False  # the user's
    assert values["metrics"]["prometheus"]["service"]["enabled"] is True  # the role's
    assert values["service"]["spec"]["externalTrafficPolicy"] == "Local"  # the role's


def test_the_users_traefik_file_holds_the_merged_values_and_the_api_follows(cluster):
    """k3s re-applies its manifests folder at every start: the user's file is where the role's
    values go, their other object kept, a copy of the file as it was beside it."""
    [config, other] = file_documents(MANIFESTS / "traefik.yaml")
    assert config["kind"] == "HelmChartConfig" and other["metadata"]["name"] == "users-own-object"
    assert_the_roles_traefik_values(yaml.safe_load(config["spec"]["valuesContent"]))
    assert yaml.safe_load(config["spec"]["valuesContent"]) == traefik_values(cluster)
    [backup] = [p for p in MANIFESTS.iterdir() if p.name.startswith("traefik.yaml.")]
    assert backup.read_text().startswith("# my Traefik settings")
    assert not (MANIFESTS / "traefik-config.yaml").exists()  # the user's file is the one


def _k3s_starts(folder: Path) -> None:
    result = subprocess.run(["k3s-deploy", str(folder)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_traefiks_values_survive_a_k3s_restart_and_the_role_then_changes_nothing(cluster, converge):
    _k3s_starts(MANIFESTS)  # k3s's start: every file of the folder applied with wrangler's apply
    assert_the_roles_traefik_values(traefik_values(cluster))
    result = converge()
    assert result.returncode == 0, result.stdout[-3000:]
    assert "changed=0" in result.stdout, result.stdout[-3000:]


def test_without_a_file_of_the_users_the_role_writes_its_own_from_the_api_object(cluster, converge,
                                                                                 tmp_path):
    """A HelmChartConfig made with kubectl only: the role's file starts from its values, and a
    k3s start then keeps them."""
    result = converge("-e", json.dumps({"monitoring_k3s_manifests_dir": str(tmp_path)}))
    assert result.returncode == 0, result.stdout[-3000:]
    [config] = file_documents(tmp_path / "traefik-config.yaml")
    assert (config["metadata"]["name"], config["metadata"]["namespace"]) == ("traefik", "kube-system")
    assert_the_roles_traefik_values(yaml.safe_load(config["spec"]["valuesContent"]))
    _k3s_starts(tmp_path)
    assert_the_roles_traefik_values(traefik_values(cluster))


def test_check_mode_shows_the_change_to_the_users_file_without_making_it(converge):
    path = MANIFESTS / "traefik.yaml"
    before = path.read_text()
    path.write_text(before.replace("externalTrafficPolicy: Local", "externalTrafficPolicy: Cluster"))
    try:
        result = converge("--check", "--diff")
        assert result.returncode == 0, result.stdout[-3000:]
        assert "changed=0" not in result.stdout
        assert re.search(r"^\+\s+externalTrafficPolicy: Local$", result.stdout, re.M), result.stdout[-3000:]
        assert "externalTrafficPolicy: Cluster" in path.read_text()
    finally:
        path.write_text(before)


def test_network_policies_admit_only_traefik_and_prometheus_to_grafana_and_prometheus_to_exporters(cluster):
    """The objects as applied; molecule/site evaluates all the platform's policies as a table."""
    grafana = cluster.get("networkpolicy", "grafana-clients", NS)["spec"]
    [rule] = grafana["ingress"]
    assert rule["from"][0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "traefik"}
    assert rule["from"][1] == {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}
    assert rule["ports"] == [{"port": 3000, "protocol": "TCP"}]
    gone = subprocess.run(
        ["kubectl", "get", "networkpolicy", "grafana-from-traefik", "-n", NS], capture_output=True
    )
    assert gone.returncode != 0  # the policy of earlier versions, which kept Prometheus out
    exporters = cluster.get("networkpolicy", "exporters-from-prometheus", NS)["spec"]
    assert exporters["ingress"][0]["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}
    ]


def crd_state(name: str) -> tuple[str, dict[str, str]]:
    """The CRD's operator version and its field managers (manager → operation)."""
    out = subprocess.run(
        ["kubectl", "get", "crd", name, "-o", "json", "--show-managed-fields"],
        capture_output=True,
        text=True,
        check=True,
    )
    crd = json.loads(out.stdout)
    managers = {m["manager"]: m["operation"] for m in crd["metadata"]["managedFields"]}
    return crd["metadata"]["annotations"]["operator.prometheus.io/version"], managers


def test_crds_behind_the_chart_are_applied_server_side_then_left_alone(converge):
    """helm never upgrades CRDs: after a chart bump the role must. Here the installed CRDs are
    made to look older than the chart's (as before an upgrade of the pinned version)."""
    chart_version, _ = crd_state("servicemonitors.monitoring.coreos.com")
    subprocess.run(
        [
            "kubectl",
            "annotate",
            "crd",
            "prometheusrules.monitoring.coreos.com",
            "operator.prometheus.io/version=0.0.1",
            "--overwrite",
        ],
        check=True,
        capture_output=True,
    )
    upgraded = converge()
    assert upgraded.returncode == 0, upgraded.stdout[-3000:]
    for name in ("prometheusrules.monitoring.coreos.com", "servicemonitors.monitoring.coreos.com"):
        version, managers = crd_state(name)
        assert version == chart_version and managers.get("ansible-monitoring") == "Apply", (name, managers)
    again = converge()
    assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout[-3000:]


def test_grafana_and_operator_available(cluster):
    for name in [f"{RELEASE}-grafana", f"{RELEASE}-operator"]:
        status = cluster.get("deployment", name, NS)["status"]
        assert {c["type"]: c["status"] for c in status["conditions"]}["Available"] == "True"


def test_check_mode_after_converge_reports_no_change(check_mode_changes):
    assert "changed=0" in check_mode_changes()


def test_bad_input_is_rejected_before_any_change(converge):
    result = converge("-e", json.dumps({"monitoring_prometheus_retention": "two weeks"}))
    assert result.returncode != 0
    assert "monitoring: invalid input" in result.stdout
