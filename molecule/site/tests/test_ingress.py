"""Requests travel for real (#16, path 5): k3s's own Traefik (conftest.py: k3s's chart, rendered
with k3s's values and the HelmChartConfig the roles leave) reads the Ingress, Middlewares and
Secret the app chart and the roles applied, and routes to a real TaskPlaner running as its pod.
Clients call from their own loopback addresses (127.0.0.2, 127.0.0.3), as two people on the LAN
would: with the `externalTrafficPolicy: Local` the monitoring role sets, k3s's ServiceLB hands
Traefik the caller's own address.
"""

from __future__ import annotations

import base64
import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import bcrypt
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests" / "cluster"))
from k3s_traefik import Traefik, traefik_fixture  # noqa: F401 (a fixture)
from podrunner import kubectl, running_pod, wait_until

APP = "taskplaner"
LOKI = "loki"


class LokiStandIn(http.server.BaseHTTPRequestHandler):
    """STAND-IN for Loki (its module is AGPL-licensed and not available here): answers as Loki
    does on the paths the routes lead to (204 for a push, 200 for a query) and records what
    reached it. It shows what Traefik lets through, not what Loki does with it."""

    seen: ClassVar[list[tuple[str, str, str | None]]] = []

    def answer(self) -> None:
        self.seen.append((self.command, self.path, self.headers.get("Authorization")))
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.send_response(204 if self.path.startswith("/loki/api/v1/push") else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_DELETE = answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def loki() -> Iterator[type[LokiStandIn]]:
    """The stand-in at the address of the pod behind Loki's Service (the pod network is this
    host's), where Traefik's routes lead."""
    pod = wait_until("Loki pod", lambda: running_pod(LOKI, {"app.kubernetes.io/name": "loki"}))
    server = http.server.ThreadingHTTPServer((pod["status"]["podIP"], 3100), LokiStandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield LokiStandIn
    server.shutdown()
    server.server_close()


def loki_user(name: str) -> tuple[str, list[str]]:
    """The password and roles the site scenario's vault gives a Loki basic-auth user."""
    scenario = yaml.safe_load((Path(__file__).resolve().parents[1] / "group_vars/all.yml").read_text())
    [user] = [u for u in scenario["vault_loki_basic_auth_users"] if u["username"] == name]
    return user["password"], user.get("roles", ["push"])


def test_loki_behind_traefik_lets_each_role_reach_only_its_own_paths(traefik: Traefik, loki):
    """The seed request: Loki behind Traefik's basic auth, per role (the loki role's Ingresses,
    Middlewares and htpasswd Secrets, read by the real Traefik)."""
    host = json.loads(kubectl("get", "ingress", "loki-push", "-n", LOKI, "-o", "json"))["spec"]["rules"][0][
        "host"
    ]
    password, roles = loki_user("alloy-remote")
    assert roles == ["push"]  # the site's only user, as in vault.yml.example: nobody has `read`
    push, query, delete = (
        "/loki/api/v1/push",
        "/loki/api/v1/query?query=%7Bjob%3D%22x%22%7D",
        "/loki/api/v1/delete",
    )

    def call(path: str, *auth: str, method: str = "GET") -> str:
        return traefik.request(path, "-X", method, *auth, host=host)["status"]

    pusher, wrong = ("-u", f"alloy-remote:{password}"), ("-u", "alloy-remote:not-the-password")
    assert call(push, method="POST") == "401"
    assert call(push, *wrong, method="POST") == "401"
    assert loki.seen == []  # nothing reached Loki without the right password
    assert call(push, *pusher, method="POST") == "204"
    assert loki.seen[-1][:2] == ("POST", "/loki/api/v1/push")
    assert loki.seen[-1][2] is None  # the credentials stop at Traefik (removeHeader)
    # a push-only user cannot read, and a role nobody has lets nobody in
    assert call(query, *pusher) == "401"
    assert call(query) == "401"
    # deleting has no route at all
    assert call(delete, *pusher, method="POST") == "404"
    assert [path for _, path, _ in loki.seen] == ["/loki/api/v1/push"]

    # a reader, as the loki role writes one into the read role's Secret (its bcrypt line;
    # the role's output itself is checked in the loki scenario)
    secret = json.loads(kubectl("get", "secret", "loki-read-users", "-n", LOKI, "-o", "json"))
    hashed = bcrypt.hashpw(b"a-reader-password", bcrypt.gensalt()).decode().replace("$2b$", "$2y$", 1)
    line = f"grafana-cloud:{hashed}"  # the role writes $2y$ hashes, as htpasswd does
    patch = {"data": {"users": base64.b64encode(line.encode()).decode()}}
    kubectl("patch", "secret", "loki-read-users", "-n", LOKI, "--type=merge", "-p", json.dumps(patch))
    try:
        reader = ("-u", "grafana-cloud:a-reader-password")
        assert wait_until("the reader let in", lambda: call(query, *reader) == "200", timeout=30)
        assert loki.seen[-1][1].startswith("/loki/api/v1/query")
        assert call(push, *reader, method="POST") == "401"  # a reader cannot push
    finally:
        restore = {"data": {"users": secret["data"]["users"]}}
        kubectl("patch", "secret", "loki-read-users", "-n", LOKI, "--type=merge", "-p", json.dumps(restore))


def test_https_terminates_at_traefik_with_the_ingress_certificate(traefik: Traefik):
    # curl trusts only the test certificate, so this passes only with the Ingress's own Secret
    assert traefik.request("/healthz")["status"] == "200"


def test_plain_http_is_redirected_to_https(traefik: Traefik):
    answer = traefik.request("/notes?x=1", tls=False)
    assert answer["status"] in ("301", "308"), answer
    assert answer["location"] == f"https://{traefik.host}/notes?x=1", answer


def login(traefik: Traefik, password: str, caller: str, *extra: str) -> dict[str, str]:
    return traefik.request(
        "/api/v1/session", "-X", "POST", "-H", "Content-Type: application/json",
        "--data", json.dumps({"password": password}), *extra, caller=caller,
    )  # fmt: skip


def test_the_login_throttle_counts_each_caller_by_its_own_address(traefik: Traefik, taskplaner):
    env = {e["name"]: e for e in taskplaner["pod"]["spec"]["containers"][0]["env"]}
    ref = env["TASKPLANER_PASSWORD"]["valueFrom"]["secretKeyRef"]
    password = subprocess.run(
        ["kubectl", "get", "secret", ref["name"], "-n", APP, "-o", f"jsonpath={{.data.{ref['key']}}}"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    password = base64.b64decode(password).decode()

    # a stranger at 127.0.0.2 guesses, claiming to be someone else: Traefik does not pass a
    # client's own X-Forwarded-For on, so the app counts the guesses against 127.0.0.2
    statuses = [
        login(traefik, "wrong-guess-123", "127.0.0.2", "-H", "X-Forwarded-For: 203.0.113.7")["status"]
        for _ in range(6)
    ]
    assert statuses[:5] == ["401"] * 5 and statuses[5] == "429", statuses
    assert login(traefik, password, "127.0.0.2")["status"] == "429"  # that caller waits

    # the owner, at another address, is not locked out by the stranger's guesses
    owner = login(traefik, password, "127.0.0.3")
    assert owner["status"] == "201", owner
    assert "secure" in owner["set-cookie"].lower()  # the app saw HTTPS through X-Forwarded-Proto


def test_uploads_over_the_apps_limit_stop_at_traefik(traefik: Traefik, taskplaner, tmp_path):
    env = {e["name"]: e for e in taskplaner["pod"]["spec"]["containers"][0]["env"]}
    limit = int(env["TASKPLANER_MAX_UPLOAD_BYTES"]["value"])
    body = tmp_path / "big.bin"
    with body.open("wb") as out:
        out.truncate(limit + 1024 * 1024)
    answer = traefik.request(
        "/api/v1/attachments", "-X", "POST", "-H", "Content-Type: application/octet-stream",
        "--data-binary", f"@{body}", caller="127.0.0.3",
    )  # fmt: skip
    assert answer["status"] == "413", answer
