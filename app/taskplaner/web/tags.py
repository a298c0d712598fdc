"""Tags. Names may hold '/', so the name is the rest of the path (``%2F`` arrives decoded)."""

from __future__ import annotations

from typing import Any

import bottle

from ..services import Services
from .bodies import json_body


def _path_name(raw: str) -> str:
    """Bottle decodes path segments as latin-1; tag names are UTF-8."""
    try:
        return raw.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return raw


def register(app: bottle.Bottle, s: Services) -> None:
    @app.get("/api/v1/tags")
    def list_tags() -> dict[str, Any]:
        return {"tags": s.tags.list()}

    @app.route("/api/v1/tags/<name:path>", method="PATCH", body="json")
    def rename_tag(name: str) -> dict[str, Any]:
        return s.tags.rename(_path_name(name), json_body(s.settings.max_json_bytes))

    @app.delete("/api/v1/tags/<name:path>")
    def delete_tag(name: str) -> str:
        s.tags.delete(_path_name(name))
        bottle.response.status = 204
        return ""
