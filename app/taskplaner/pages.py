"""The browser UI: one HTML shell plus static CSS/JS served by the app itself (no CDN)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bottle

STATIC = Path(__file__).with_name("static")


def register(app: bottle.Bottle) -> None:
    @app.get("/", public=True)
    def index() -> Any:
        response = bottle.static_file("index.html", root=str(STATIC), mimetype="text/html")
        response.set_header("Cache-Control", "no-cache")
        return response

    @app.get("/static/<path:path>", public=True)
    def static(path: str) -> Any:
        response = bottle.static_file(path, root=str(STATIC))
        if response.status_code == 404:
            return bottle.HTTPError(404)
        response.set_header("Cache-Control", "no-cache")
        return response
