"""Logging in and out, and API tokens."""

from __future__ import annotations

from typing import Any

import bottle

from ..services import Services
from .bodies import json_body
from .core import LOGIN_BODY_BYTES, SESSION_COOKIE, check_csrf, client_ip, cookie, current_principal


def register(app: bottle.Bottle, s: Services) -> None:
    settings = s.settings

    @app.post("/api/v1/session", public=True, body="login")
    def login() -> dict[str, Any]:
        body = json_body(LOGIN_BODY_BYTES)
        password = body.get("password") if isinstance(body, dict) else None
        session_cookie, csrf = s.auth.login(password, client_ip())
        secure = settings.secure_cookies
        if secure is None:
            secure = bottle.request.urlparts.scheme == "https"
        bottle.response.set_cookie(
            SESSION_COOKIE, session_cookie, httponly=True, samesite="lax", secure=secure,
            path="/", max_age=settings.session_days * 86400,
        )
        bottle.response.status = 201
        return {"csrf_token": csrf}

    @app.get("/api/v1/session")
    def session_info() -> dict[str, Any]:
        principal = current_principal()
        return {"authenticated": True, "kind": principal.kind, "csrf_token": principal.csrf}

    @app.delete("/api/v1/session", public=True)
    def logout() -> Any:
        value = cookie(bottle.request.environ, SESSION_COOKIE)
        principal = s.auth.session(value)
        if principal is not None:
            check_csrf(principal)
            s.auth.logout(value)
        bottle.response.delete_cookie(SESSION_COOKIE, path="/")
        bottle.response.status = 204
        return ""

    @app.get("/api/v1/tokens")
    def list_tokens() -> dict[str, Any]:
        return {"tokens": s.auth.list_tokens()}

    @app.post("/api/v1/tokens", body="json")
    def create_token() -> dict[str, Any]:
        body = json_body(settings.max_json_bytes)
        bottle.response.status = 201
        return s.auth.create_token(body.get("name") if isinstance(body, dict) else None)

    @app.delete("/api/v1/tokens/<token_id:id>")
    def delete_token(token_id: int) -> str:
        s.auth.delete_token(token_id)
        bottle.response.status = 204
        return ""
