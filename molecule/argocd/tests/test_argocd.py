"""argocd against the local test cluster (the real argo-cd chart, Argo CD running) and the real Gitea."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import bcrypt

NAMESPACE = "argocd"
SECRET = "webhook-secret-for-tests-0123456789"
PASSWORD = "admin-password-for-tests"  # molecule/argocd/vars/main.yml
HOOK_PORT = int((Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "hook_port").read_text())
HOOK_URL = f"http://127.0.0.1:{HOOK_PORT}/api/webhook"


def hook_url(secret: str) -> str:
    """The URL the role gives the hook: the secret's fingerprint rides along as a query."""
    fingerprint = hashlib.sha256(f"argocd-webhook:{secret}".encode()).hexdigest()[:16]
    return f"{HOOK_URL}?secret_sha256={fingerprint}"


def gitea(method: str, path: str, body: dict[str, Any] | None = None, instance: str = "GITEA") -> Any:
    request = urllib.request.Request(
        f"{os.environ[instance + '_URL']}/api/v1/repos/{os.environ[instance + '_REPO']}{path}",
        method=method,
        headers={
            "Authorization": f"token {os.environ[instance + '_TOKEN']}",
            "Content-Type": "application/json",
        },
        data=json.dumps(body).encode() if body is not None else None,
    )
    with urllib.request.urlopen(request, timeout=15) as response:
        body = response.read()
    return json.loads(body) if body else None


def test_plain_http_to_the_ingress_is_redirected_to_https(cluster):
    """The Ingress names a redirect middleware that exists in its namespace (Traefik refers to it
    as <namespace>-<name>@kubernetescrd) and sends plain HTTP to HTTPS for good."""
    middleware = cluster.get("middleware.traefik.io", "redirect-https", NAMESPACE)
    assert middleware["spec"]["redirectScheme"] == {"scheme": "https", "permanent": True}
    ingress = cluster.get("ingress", "argocd-server", NAMESPACE)
    assert ingress["metadata"]["annotations"]["traefik.ingress.kubernetes.io/router.middlewares"] == (
        f"{NAMESPACE}-redirect-https@kubernetescrd"
    )


def test_release_values_hold_the_intended_settings(cluster):
    values = cluster.values("argocd", NAMESPACE)
    assert values["configs"]["params"]["server.insecure"] is True
    assert values["configs"]["secret"]["gogsSecret"] == SECRET
    # set when the password was first stored, then kept (see the rotation test)
    mtime = values["configs"]["secret"]["argocdServerAdminPasswordMtime"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", mtime)
    admin_hash = values["configs"]["secret"]["argocdServerAdminPassword"]
    assert bcrypt.checkpw(PASSWORD.encode(), admin_hash.encode())
    ingress = values["server"]["ingress"]
    assert ingress["enabled"] is True and ingress["hostname"] == "argocd.example.test"
    assert ingress["ingressClassName"] == "traefik"
    assert ingress["annotations"] == {
        "cert-manager.io/cluster-issuer": "test-issuer",
        "traefik.ingress.kubernetes.io/router.middlewares": f"{NAMESPACE}-redirect-https@kubernetescrd",
    }
    assert values["dex"]["enabled"] is False


def test_every_container_has_requests_and_a_memory_limit_and_unused_parts_are_off(cluster):
    containers = cluster.containers(NAMESPACE)
    names = {c["name"] for c in containers}
    assert {
        "application-controller",
        "server",
        "repo-server",
        "copyutil",
        "redis",
        "applicationset-controller",
    } <= names, names
    # Dex and the notifications controller stay off until configured
    assert not names & {"dex-server", "notifications-controller"}, names
    for c in containers:
        r = c["resources"]
        assert set(r.get("requests", {})) == {"cpu", "memory"} and "memory" in r.get("limits", {}), c


def test_argocd_server_is_available_with_its_resources(cluster):
    deployment = cluster.get("deployment", "argocd-server", NAMESPACE)
    conditions = {c["type"]: c["status"] for c in deployment["status"]["conditions"]}
    assert conditions["Available"] == "True"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["memory"] == "192Mi"


def test_argocd_secret_carries_the_webhook_secret(cluster):
    data = cluster.get("secret", "argocd-secret", NAMESPACE)["data"]
    assert base64.b64decode(data["webhook.gogs.secret"]).decode() == SECRET
    assert base64.b64decode(data["admin.password"]).startswith(b"$2")


def test_repository_secret_is_registered(cluster):
    secret = cluster.get("secret", "argocd-repo-gitea", NAMESPACE)
    assert secret["metadata"]["labels"]["argocd.argoproj.io/secret-type"] == "repository"
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {
        "type": "git",
        "name": os.environ["GITEA_REPO"],
        "url": f"{os.environ['GITEA_URL']}/{os.environ['GITEA_REPO']}.git",
        "username": "argocd-reader",
        "password": "reader-password-for-tests",
    }


def test_one_webhook_with_the_right_settings_and_the_users_hook_kept():
    hooks = gitea("GET", "/hooks")
    ours = [h for h in hooks if h["config"]["url"].startswith(HOOK_URL)]
    assert len(ours) == 1
    hook = ours[0]
    assert hook["config"]["url"] == hook_url(SECRET)
    assert hook["type"] == "gitea" and hook["active"] is True
    assert hook["events"] == ["push"]
    assert hook["config"]["content_type"] == "json"
    assert hook["name"] == "argocd"
    assert [h["config"]["url"] for h in hooks if h is not hook] == ["https://ci.example.test/hook"]


class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((dict(self.headers), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_gitea_delivers_a_push_signed_with_the_shared_secret():
    server = HTTPServer(("127.0.0.1", HOOK_PORT), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        hook = next(h for h in gitea("GET", "/hooks") if h["config"]["url"] == hook_url(SECRET))
        gitea("POST", f"/hooks/{hook['id']}/tests")
        for _ in range(100):
            if _Receiver.received:
                break
            threading.Event().wait(0.1)
    finally:
        server.shutdown()
    headers, body = _Receiver.received[0]
    assert headers["X-Gitea-Event"] == "push"
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Gitea-Signature"] == expected


def test_check_mode_after_converge_reports_no_change(check_mode_changes):
    assert "changed=0" in check_mode_changes()


def test_a_changed_secret_updates_the_hook_then_nothing_changes(converge, cluster):
    new = {"argocd_webhook_secret": "a-rotated-webhook-secret-9876543210"}
    try:
        first = converge("-e", json.dumps(new))
        assert first.returncode == 0, first.stdout[-3000:]
        assert "TASK [argocd : Create the webhook]" in first.stdout
        second = converge("-e", json.dumps(new))
        assert "changed=0" in second.stdout, second.stdout[-3000:]
    finally:
        restored = converge()
        assert restored.returncode == 0, restored.stdout[-3000:]
    assert cluster.values("argocd", NAMESPACE)["configs"]["secret"]["gogsSecret"] == SECRET


def test_a_hook_edited_by_hand_is_corrected_in_place_or_replaced(converge):
    hook = next(h for h in gitea("GET", "/hooks") if h["config"]["url"] == hook_url(SECRET))
    gitea(
        "PATCH",
        f"/hooks/{hook['id']}",
        {"config": {"url": hook_url(SECRET), "content_type": "form"}, "active": False},
    )
    check = converge("--check")
    assert check.returncode == 0, check.stdout[-3000:]
    assert "would remove 0 hook(s), correct the Argo CD hook" in check.stdout
    assert next(h for h in gitea("GET", "/hooks") if h["id"] == hook["id"])["active"] is False
    result = converge()
    assert result.returncode == 0, result.stdout[-3000:]
    assert "TASK [argocd : Correct the webhook (events or state differ)]" in result.stdout
    again = next(h for h in gitea("GET", "/hooks") if h["id"] == hook["id"])
    assert again["config"] == {"url": hook_url(SECRET), "content_type": "json"}
    assert again["active"] is True
    # a hand-edited URL loses the fingerprint: whether its secret still matches is unknowable
    gitea("PATCH", f"/hooks/{hook['id']}", {"config": {"url": HOOK_URL, "content_type": "json"}})
    replaced = converge()
    assert replaced.returncode == 0, replaced.stdout[-3000:]
    ours = [h for h in gitea("GET", "/hooks") if h["config"]["url"].startswith(HOOK_URL)]
    assert [h["config"]["url"] for h in ours] == [hook_url(SECRET)] and ours[0]["id"] != hook["id"]


def test_hooks_without_names_on_gitea_before_1_26(converge):
    """Gitea 1.25 (built like today's) returns hooks without a name; the role finds its own by
    URL: creates one, leaves the user's alone, changes nothing on a second run and replaces
    the hook when the secret is rotated."""
    previous = {
        "argocd_gitea_url": os.environ["GITEA_PREVIOUS_URL"],
        "argocd_gitea_repo": os.environ["GITEA_PREVIOUS_REPO"],
        "argocd_gitea_token": os.environ["GITEA_PREVIOUS_TOKEN"],
    }
    with urllib.request.urlopen(f"{os.environ['GITEA_PREVIOUS_URL']}/api/v1/version", timeout=15) as response:
        assert json.loads(response.read())["version"].startswith("1.25")
    users = gitea(
        "POST",
        "/hooks",
        {
            "type": "gitea",
            "config": {"url": "https://ci.example.test/hook", "content_type": "json"},
            "events": ["push"],
            "active": True,
        },
        instance="GITEA_PREVIOUS",
    )
    assert "name" not in users
    run = ("--tags", "argocd_webhook", "-e")
    first = converge(*run, json.dumps(previous))
    assert first.returncode == 0, first.stdout[-3000:]
    assert "TASK [argocd : Create the webhook]" in first.stdout
    hooks = gitea("GET", "/hooks", instance="GITEA_PREVIOUS")
    assert sorted(h["config"]["url"] for h in hooks) == sorted(
        [hook_url(SECRET), "https://ci.example.test/hook"]
    )
    second = converge(*run, json.dumps(previous))
    assert "changed=0" in second.stdout, second.stdout[-3000:]
    rotated = "a-rotated-webhook-secret-9876543210"
    third = converge(*run, json.dumps({**previous, "argocd_webhook_secret": rotated}))
    assert third.returncode == 0, third.stdout[-3000:]
    hooks = gitea("GET", "/hooks", instance="GITEA_PREVIOUS")
    assert sorted(h["config"]["url"] for h in hooks) == sorted(
        [hook_url(rotated), "https://ci.example.test/hook"]
    )


def test_unreachable_gitea_and_bad_token_fail_with_a_message_that_says_which(converge):
    unreachable = converge("-e", json.dumps({"argocd_gitea_url": "http://127.0.0.1:9"}))
    assert unreachable.returncode != 0
    assert "Gitea is unreachable at http://127.0.0.1:9" in unreachable.stdout
    bad_token = converge("-e", json.dumps({"argocd_gitea_token": "0" * 40}))
    assert bad_token.returncode != 0
    assert "refused the API token (HTTP 401)" in bad_token.stdout


def test_bad_input_is_rejected_before_any_change(converge):
    result = converge("-e", json.dumps({"argocd_webhook_secret": "short", "argocd_namespace": "Not_Valid"}))
    assert result.returncode != 0
    assert "argocd: invalid input" in result.stdout
    assert "short" not in result.stdout


def argocd_session(password: str) -> str:
    """A session token from the running Argo CD API server."""
    request = urllib.request.Request(
        f"{os.environ['ARGOCD_SERVER_URL']}/api/v1/session",
        data=json.dumps({"username": "admin", "password": password}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["token"]


def logged_in(token: str) -> bool:
    request = urllib.request.Request(
        f"{os.environ['ARGOCD_SERVER_URL']}/api/v1/session/userinfo",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response).get("loggedIn", False)


def test_a_rotated_admin_password_ends_the_old_sessions_and_a_rerun_ends_none(converge):
    old = argocd_session(PASSWORD)
    rerun = converge()
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    assert logged_in(old), "a run that changed nothing logged the admin out"
    rotated = "a-rotated-admin-password"
    try:
        result = converge("-e", json.dumps({"argocd_admin_password": rotated}))
        assert result.returncode == 0, result.stdout[-3000:]
        # the server reads argocd-secret through its informer: give it a moment
        deadline = time.monotonic() + 20
        while logged_in(old) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not logged_in(old), "a session from before the rotation is still valid"
        assert logged_in(argocd_session(rotated))
    finally:
        restored = converge()
        assert restored.returncode == 0, restored.stdout[-3000:]
