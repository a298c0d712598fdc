"""Search over notes and tasks (the query language is described in ``taskplaner.search``)."""

from __future__ import annotations

from typing import Any

import bottle

from ..services import Services
from ..validation import page_limit


def register(app: bottle.Bottle, s: Services) -> None:
    @app.get("/api/v1/search")
    def search() -> dict[str, Any]:
        q = bottle.request.query
        limit = page_limit(q.get("limit"), 20, s.settings.max_page_size)
        return s.search.search(q.getunicode("q") or "", limit=limit, cursor=q.get("cursor"))
