"""Login, sessions, CSRF, API tokens, throttling, security headers, and what logs never hold."""

from __future__ import annotations

import io
import json
import logging

import pytest

from conftest import PASSWORD, make_settings, start_server, stop_server, wait_for
from taskplaner.logs import JsonFormatter


def test_everything_but_probes_needs_auth(app):
    anon = app.anon()
    for path in (
        "/api/v1/items",
        "/api/v1/tags",
        "/api/v1/search?q=x",
        "/api/v1/tokens",
        "/api/v1/export",
        "/api/v1/session",
        "/metrics",
    ):
        res = anon.get(app.url(path))
        assert res.status_code == 401, path
        assert res.json()["error"]["code"] == "unauthorized"
    assert anon.get(app.url("/healthz")).json()["status"] == "ok"
    assert anon.get(app.url("/readyz")).status_code == 200


def test_session_cookie_is_httponly_lax_and_logout_revokes_it(app):
    anon = app.anon()
    res = anon.post(app.url("/api/v1/session"), json={"password": PASSWORD})
    cookie = res.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
    assert "Secure" not in cookie  # plain http on loopback
    stolen = anon.cookies.get("tp_session")
    csrf = res.json()["csrf_token"]
    assert anon.get(app.url("/api/v1/items")).status_code == 200
    assert anon.delete(app.url("/api/v1/session"), headers={"X-CSRF-Token": csrf}).status_code == 204
    replay = app.anon()
    replay.cookies.set("tp_session", stolen)
    assert replay.get(app.url("/api/v1/items")).status_code == 401


def test_cookie_requests_need_the_csrf_header_for_changes(app):
    session = app.login()
    csrf = session.headers.pop("X-CSRF-Token")
    res = session.post(app.url("/api/v1/items"), json={"title": "x"})
    assert res.status_code == 403 and res.json()["error"]["code"] == "csrf"
    res = session.post(app.url("/api/v1/items"), json={"title": "x"}, headers={"X-CSRF-Token": "wrong"})
    assert res.status_code == 403
    assert (
        session.post(
            app.url("/api/v1/items"), json={"title": "x"}, headers={"X-CSRF-Token": csrf}
        ).status_code
        == 201
    )
    assert session.get(app.url("/api/v1/items")).status_code == 200  # reads need no token


def test_forged_cookie_is_refused(app):
    session = app.login()
    value = session.cookies.get("tp_session")
    session.cookies.set("tp_session", value[:-2] + ("AA" if not value.endswith("AA") else "BB"))
    assert session.get(app.url("/api/v1/items")).status_code == 401


def test_wrong_password_then_throttled_with_retry_after(tmp_path):
    running = start_server(make_settings(tmp_path, login_max_failures=3))
    try:
        anon = running.anon()
        for _ in range(3):
            res = anon.post(running.url("/api/v1/session"), json={"password": "nope-nope"})
            assert res.status_code == 401 and res.json()["error"]["code"] == "bad_password"
        res = anon.post(running.url("/api/v1/session"), json={"password": PASSWORD})
        assert res.status_code == 429
        assert int(res.headers["Retry-After"]) > 0
        assert res.json()["error"]["code"] == "too_many_attempts"
    finally:
        stop_server(running)


def test_api_tokens_work_as_bearer_without_csrf_and_can_be_revoked(app, client):
    res = client.post(app.url("/api/v1/tokens"), json={"name": "backup script"})
    assert res.status_code == 201
    token = res.json()["token"]
    assert token.startswith("tp_")
    bearer = app.anon()
    bearer.headers["Authorization"] = f"Bearer {token}"
    assert bearer.post(app.url("/api/v1/items"), json={"title": "from a script"}).status_code == 201
    listed = client.get(app.url("/api/v1/tokens")).json()["tokens"]
    assert [t["name"] for t in listed] == ["backup script"]
    assert "token" not in listed[0] and listed[0]["last_used"]
    assert client.delete(app.url(f"/api/v1/tokens/{listed[0]['id']}")).status_code == 204
    assert bearer.get(app.url("/api/v1/items")).status_code == 401
    assert client.post(app.url("/api/v1/tokens"), json={"name": ""}).status_code == 422
    assert client.delete(app.url("/api/v1/tokens/999")).status_code == 404


def test_security_headers_on_every_response(app, client):
    for res in (
        client.get(app.url("/")),
        client.get(app.url("/api/v1/items")),
        app.anon().get(app.url("/nowhere")),
    ):
        csp = res.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert res.headers["X-Content-Type-Options"] == "nosniff"
        assert res.headers["Referrer-Policy"] == "same-origin"
        assert len(res.headers["X-Request-ID"]) >= 8


def test_metrics_token_and_public_switch(tmp_path):
    running = start_server(make_settings(tmp_path, metrics_token="m" * 20))
    try:
        anon = running.anon()
        assert anon.get(running.url("/metrics")).status_code == 401
        res = anon.get(running.url("/metrics"), headers={"Authorization": "Bearer " + "m" * 20})
        assert res.status_code == 200 and "http_requests_total" in res.text
    finally:
        stop_server(running)
    running = start_server(make_settings(tmp_path / "b", metrics_public=True))
    try:
        assert running.anon().get(running.url("/metrics")).status_code == 200
    finally:
        stop_server(running)


def test_logs_are_json_and_hold_no_secrets(app):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("taskplaner")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        session = app.login()
        token = session.post(app.url("/api/v1/tokens"), json={"name": "t"}).json()["token"]
        session.get(app.url("/api/v1/search"), params={"q": "secret-query"})
        app.anon().post(app.url("/api/v1/session"), json={"password": "wrong-password-123"})
        feed = session.post(app.url("/api/v1/calendar-feed")).json()["path"]
        assert app.anon().get(app.url(feed)).status_code == 200
        # the access log line is written once the response is fully sent
        wait_for(lambda: stream.getvalue().count('"msg": "request"') >= 6)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    text = stream.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    requests_logged = [line for line in lines if line["msg"] == "request"]
    assert len(requests_logged) >= 6
    assert {"method", "route", "status", "duration_ms", "request_id"} <= set(requests_logged[0])
    assert any(line["route"] == "/api/v1/session" and line["status"] == 401 for line in requests_logged)
    for secret in (
        PASSWORD,
        "wrong-password-123",
        token,
        session.cookies.get("tp_session"),
        session.headers["X-CSRF-Token"],
        "secret-query",
        feed.removeprefix("/calendar/").removesuffix(".ics"),  # the route's template is logged
    ):
        assert secret not in text


@pytest.mark.parametrize("body", [{"password": 5}, {"password": None}, {}, [], "x"])
def test_login_with_malformed_body_is_401_not_500(app, body):
    res = app.anon().post(app.url("/api/v1/session"), json=body)
    assert res.status_code in (400, 401)
