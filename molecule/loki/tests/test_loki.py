"""loki against the local test cluster (the real loki chart)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import bcrypt

NS = "loki"


def test_single_binary_with_filesystem_tsdb_and_enforced_retention(cluster):
    values = cluster.values("loki", NS)
    assert values["deploymentMode"] == "Monolithic"  # SingleBinary is the deprecated alias
    loki = values["loki"]
    assert loki["auth_enabled"] is False
    assert loki["storage"]["type"] == "filesystem"
    [schema] = loki["schemaConfig"]["configs"]
    assert (schema["store"], schema["schema"], schema["object_store"]) == ("tsdb", "v13", "filesystem")
    assert loki["compactor"] == {"retention_enabled": True, "delete_request_store": "filesystem"}
    assert loki["limits_config"]["retention_period"] == "7d"
    limits = loki["limits_config"]
    assert (limits["ingestion_rate_mb"], limits["ingestion_burst_size_mb"]) == (0.02, 2)
    assert values["singleBinary"]["persistence"]["storageClass"] == "local-path"
    for off in ["chunksCache", "resultsCache", "lokiCanary", "test", "gateway"]:
        assert values[off]["enabled"] is False, off
    assert [values[p]["replicas"] for p in ("read", "write", "backend")] == [0, 0, 0]


def test_the_current_mode_name_renders_what_the_deprecated_one_did(cluster, tmp_path):
    """deploymentMode Monolithic, without singleBinary.replicas, renders the same objects as
    SingleBinary with one replica did: the real chart, from the chart cache, both ways."""
    [chart] = Path(os.environ["TASKPLANER_CHART_CACHE"]).glob("loki-*.tgz")
    values = cluster.values("loki", NS)
    assert "replicas" not in values["singleBinary"]
    old = {**values, "deploymentMode": "SingleBinary",
           "singleBinary": {**values["singleBinary"], "replicas": 1}}
    rendered = []
    for name, variant in (("current", values), ("deprecated", old)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(variant))
        rendered.append(subprocess.run(
            ["helm", "template", "loki", str(chart), "-n", NS, "-f", str(path),
             "--kube-version", "1.34.0"], capture_output=True, text=True, check=True).stdout)
    assert rendered[0] == rendered[1]
    assert "kind: StatefulSet" in rendered[0] and "replicas: 1" in rendered[0]


def test_only_the_single_binary_runs_with_requests_and_a_limit(cluster):
    containers = cluster.containers(NS)
    [loki] = [c for c in containers if c["name"] == "loki"]
    assert loki["resources"] == {"requests": {"cpu": "50m", "memory": "192Mi"}, "limits": {"memory": "512Mi"}}
    assert {c["pod"] for c in containers} == {"loki-0"}, containers
    for c in containers:
        r = c["resources"]
        assert set(r.get("requests", {})) == {"cpu", "memory"} and "memory" in r.get("limits", {}), c


def htpasswd(cluster, role: str) -> dict[str, str]:
    users = base64.b64decode(cluster.get("secret", f"loki-{role}-users", NS)["data"]["users"]).decode()
    return dict(line.split(":", 1) for line in users.splitlines())


def test_each_roles_secret_holds_bcrypt_lines_for_its_users_only(cluster):
    push, read = htpasswd(cluster, "push"), htpasswd(cluster, "read")
    assert set(push) == {"alloy-remote"}  # no roles given: push only
    assert set(read) == {"grafana-cloud"}
    assert push["alloy-remote"].startswith("$2y$")
    assert bcrypt.checkpw(b"remote-password-for-tests", push["alloy-remote"].encode())
    assert bcrypt.checkpw(b"another-password-for-tests", read["grafana-cloud"].encode())


def routed_role(cluster, path: str) -> str | None:
    """Which role's route an outside request for `path` takes (Ingress Prefix semantics: whole
    path elements), or None when no route takes it."""
    matches = []
    for role in ("push", "read"):
        ingress = cluster.get("ingress", f"loki-{role}", NS)
        for rule in ingress["spec"]["rules"]:
            assert rule["host"] == "loki.example.test"
            for p in rule["http"]["paths"]:
                assert p["pathType"] == "Prefix"
                assert p["backend"]["service"] == {"name": "loki", "port": {"number": 3100}}
                if path == p["path"] or path.startswith(p["path"].rstrip("/") + "/"):
                    matches.append((len(p["path"]), role))
    return max(matches)[1] if matches else None


def test_push_users_can_only_push_readers_can_only_read_and_nobody_deletes(cluster):
    """Who may reach what of Loki's API from outside, read from the objects the role applied."""
    table = {
        "/loki/api/v1/push": "push",
        "/loki/api/v1/query": "read",
        "/loki/api/v1/query_range": "read",
        "/loki/api/v1/labels": "read",
        "/loki/api/v1/label/app/values": "read",
        "/loki/api/v1/series": "read",
        "/loki/api/v1/tail": "read",
        "/loki/api/v1/delete": None,
        "/loki/api/v1/delete/cancel": None,
        "/compactor/ring": None,
        "/config": None,
        "/": None,
    }
    assert {path: routed_role(cluster, path) for path in table} == table
    for role in ("push", "read"):
        middleware = cluster.get("middleware.traefik.io", f"loki-{role}-auth", NS)
        assert middleware["spec"]["basicAuth"]["secret"] == f"loki-{role}-users"
        ingress = cluster.get("ingress", f"loki-{role}", NS)
        annotations = ingress["metadata"]["annotations"]
        assert annotations["traefik.ingress.kubernetes.io/router.middlewares"] == (
            f"loki-loki-{role}-auth@kubernetescrd"
        )
        assert annotations["traefik.ingress.kubernetes.io/router.entrypoints"] == "websecure"
        assert ingress["spec"]["tls"][0] == {"hosts": ["loki.example.test"], "secretName": "loki-tls"}
    # the single route of earlier versions, open to every user, is gone
    gone = subprocess.run(["kubectl", "get", "ingress", "loki", "-n", NS], capture_output=True, text=True)
    assert "NotFound" in gone.stderr


def test_servicemonitor_and_network_policy(cluster):
    monitor = cluster.get("servicemonitor", "loki", NS)
    assert monitor["spec"]["endpoints"][0]["port"] == "http-metrics"
    policy = cluster.get("networkpolicy", "loki-clients", NS)["spec"]
    [rule] = policy["ingress"]
    sources = [f["podSelector"] for f in rule["from"]]
    assert sources[0] == {"matchLabels": {"app.kubernetes.io/name": "alloy"}}
    assert sources[1]["matchExpressions"][0]["values"] == ["grafana", "prometheus"]
    assert sources[2] == {"matchLabels": {"app.kubernetes.io/name": "traefik"}}
    assert rule["ports"] == [{"port": 3100, "protocol": "TCP"}]


def test_loki_is_ready(cluster):
    assert cluster.get("statefulset", "loki", NS)["status"]["readyReplicas"] == 1


def test_check_mode_after_converge_reports_no_change(check_mode_changes):
    assert "changed=0" in check_mode_changes()


def test_a_changed_password_changes_only_that_users_line(converge, cluster):
    before = htpasswd(cluster, "push")
    users = [
        {"username": "alloy-remote", "password": "remote-password-for-tests"},
        {"username": "grafana-cloud", "password": "a-rotated-password-for-tests", "roles": ["read"]},
    ]
    try:
        result = converge("-e", json.dumps({"loki_basic_auth_users": users}))
        assert result.returncode == 0, result.stdout[-3000:]
        assert htpasswd(cluster, "push") == before
        rotated = htpasswd(cluster, "read")["grafana-cloud"]
        assert bcrypt.checkpw(b"a-rotated-password-for-tests", rotated.encode())
    finally:
        assert converge().returncode == 0


def test_limits_whose_worst_case_would_fill_the_volume_are_refused_before_any_change(converge, cluster):
    before = cluster.values("loki", NS)
    result = converge("-e", json.dumps({"loki_ingestion_rate_mb": 1, "loki_retention_period": "14d"}))
    assert result.returncode != 0
    # 1 MiB/s for 14 days at 3.5x is 337.5 GiB: the message says so, with what to change
    assert "take 337.5 GiB, more than 80 % of loki_storage_size 10Gi" in result.stdout, result.stdout[-2000:]
    assert cluster.values("loki", NS) == before


def test_bad_input_is_rejected_before_any_change(converge):
    bad_users = [
        {"username": "x y", "password": "short"},
        {"username": "b", "password": "a-long-enough-password", "roles": ["admin"]},
    ]
    result = converge("-e", json.dumps({"loki_basic_auth_users": bad_users}))
    assert result.returncode != 0
    assert "loki: invalid input" in result.stdout
    assert "short" not in result.stdout
