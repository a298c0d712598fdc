"""loki against the local test cluster (the real loki chart)."""

from __future__ import annotations

import base64
import json

import bcrypt

NS = "loki"


def test_single_binary_with_filesystem_tsdb_and_enforced_retention(cluster):
    values = cluster.values("loki", NS)
    assert values["deploymentMode"] == "SingleBinary"
    loki = values["loki"]
    assert loki["auth_enabled"] is False
    assert loki["storage"]["type"] == "filesystem"
    [schema] = loki["schemaConfig"]["configs"]
    assert (schema["store"], schema["schema"], schema["object_store"]) == ("tsdb", "v13", "filesystem")
    assert loki["compactor"] == {"retention_enabled": True, "delete_request_store": "filesystem"}
    assert loki["limits_config"]["retention_period"] == "7d"
    assert values["singleBinary"]["persistence"]["storageClass"] == "local-path"
    for off in ["chunksCache", "resultsCache", "lokiCanary", "test", "gateway"]:
        assert values[off]["enabled"] is False, off
    assert [values[p]["replicas"] for p in ("read", "write", "backend")] == [0, 0, 0]


def test_only_the_single_binary_runs_with_requests_and_a_limit(cluster):
    containers = cluster.containers(NS)
    [loki] = [c for c in containers if c["name"] == "loki"]
    assert loki["resources"] == {"requests": {"cpu": "50m", "memory": "192Mi"}, "limits": {"memory": "512Mi"}}
    assert {c["pod"] for c in containers} == {"loki-0"}, containers
    for c in containers:
        r = c["resources"]
        assert set(r.get("requests", {})) == {"cpu", "memory"} and "memory" in r.get("limits", {}), c


def test_basic_auth_secret_holds_bcrypt_htpasswd_lines_for_every_user(cluster):
    users = base64.b64decode(cluster.get("secret", "loki-basic-auth", NS)["data"]["users"]).decode()
    lines = dict(line.split(":", 1) for line in users.splitlines())
    assert set(lines) == {"alloy-remote", "grafana-cloud"}
    assert lines["alloy-remote"].startswith("$2y$")
    assert bcrypt.checkpw(b"remote-password-for-tests", lines["alloy-remote"].encode())
    assert bcrypt.checkpw(b"another-password-for-tests", lines["grafana-cloud"].encode())


def test_the_only_outside_route_goes_through_the_basic_auth_middleware(cluster):
    middleware = cluster.get("middleware.traefik.io", "loki-basic-auth", NS)
    assert middleware["spec"]["basicAuth"]["secret"] == "loki-basic-auth"
    ingress = cluster.get("ingress", "loki", NS)
    annotations = ingress["metadata"]["annotations"]
    assert (
        annotations["traefik.ingress.kubernetes.io/router.middlewares"]
        == "loki-loki-basic-auth@kubernetescrd"
    )
    assert annotations["cert-manager.io/cluster-issuer"] == "test-issuer"
    [rule] = ingress["spec"]["rules"]
    assert rule["host"] == "loki.example.test"
    assert rule["http"]["paths"][0]["backend"]["service"] == {"name": "loki", "port": {"number": 3100}}
    assert ingress["spec"]["tls"][0]["hosts"] == ["loki.example.test"]


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
    before = base64.b64decode(cluster.get("secret", "loki-basic-auth", NS)["data"]["users"]).decode()
    users = [
        {"username": "alloy-remote", "password": "remote-password-for-tests"},
        {"username": "grafana-cloud", "password": "a-rotated-password-for-tests"},
    ]
    try:
        result = converge("-e", json.dumps({"loki_basic_auth_users": users}))
        assert result.returncode == 0, result.stdout[-3000:]
        after = base64.b64decode(cluster.get("secret", "loki-basic-auth", NS)["data"]["users"]).decode()
        assert after.splitlines()[0] == before.splitlines()[0]
        assert bcrypt.checkpw(
            b"a-rotated-password-for-tests", after.splitlines()[1].split(":", 1)[1].encode()
        )
    finally:
        assert converge().returncode == 0


def test_bad_input_is_rejected_before_any_change(converge):
    result = converge("-e", json.dumps({"loki_basic_auth_users": [{"username": "x y", "password": "short"}]}))
    assert result.returncode != 0
    assert "loki: invalid input" in result.stdout
    assert "short" not in result.stdout
