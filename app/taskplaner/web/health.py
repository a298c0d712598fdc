"""Probes, metrics and the API description: the routes that need no login."""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import bottle
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .. import __version__, openapi
from ..auth import same_secret
from ..errors import AppError
from ..services import Services
from .core import header, principal_of


def register(app: bottle.Bottle, s: Services) -> None:
    settings = s.settings

    @app.get("/healthz", public=True)
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/readyz", public=True)
    def readyz() -> dict[str, Any]:
        checks: dict[str, str] = {}
        try:
            s.db.conn.execute("SELECT 1 FROM items LIMIT 1").fetchall()
            checks["database"] = "ok"
        except Exception as exc:  # readiness must report, not raise
            checks["database"] = f"failed: {type(exc).__name__}"
        checks["data_dir"] = "ok" if os.access(settings.data_dir, os.W_OK) else "not writable"
        free = shutil.disk_usage(settings.data_dir).free
        checks["disk"] = "ok" if free >= settings.min_free_bytes else f"only {free} bytes free"
        ready = all(v == "ok" for v in checks.values())
        bottle.response.status = 200 if ready else 503
        return {"status": "ready" if ready else "not ready", "checks": checks}

    @app.get("/metrics", public=True)
    def metrics() -> bytes:
        if not settings.metrics_public:
            environ = bottle.request.environ
            token = settings.metrics_token
            token_ok = bool(token) and same_secret(header(environ, "Authorization"), f"Bearer {token}")
            if not token_ok and principal_of(s.auth, environ) is None:
                raise AppError(401, "unauthorized", "metrics need the metrics token or a login")
        bottle.response.content_type = CONTENT_TYPE_LATEST
        return generate_latest(s.metrics.registry)

    spec = json.dumps(openapi.document()).encode()

    @app.get("/api/openapi.json", public=True)
    def openapi_json() -> bytes:
        bottle.response.content_type = "application/json"
        return spec
