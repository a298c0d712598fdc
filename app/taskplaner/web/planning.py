"""Planning: settings (the time zone), the agenda, quick add, and the calendar feed.

The feed's URL carries its own token, so a phone calendar can subscribe without a login; the
route is public and answers 404 to any other token, as for a page that does not exist.
"""

from __future__ import annotations

from typing import Any

import bottle

from ..services import Services
from .bodies import json_body
from .core import no_route

FEED_PATH = "/calendar/{token}.ics"


def register(app: bottle.Bottle, s: Services) -> None:
    max_json = s.settings.max_json_bytes

    @app.get("/api/v1/settings")
    def get_settings() -> dict[str, Any]:
        return s.planning.settings()

    @app.route("/api/v1/settings", method="PATCH", body="json")
    def update_settings() -> dict[str, Any]:
        return s.planning.update_settings(json_body(max_json))

    @app.get("/api/v1/agenda")
    def agenda() -> dict[str, Any]:
        return s.planning.agenda()

    @app.post("/api/v1/quick-add/preview", body="json")
    def quick_add_preview() -> dict[str, Any]:
        return s.planning.quick_parse(json_body(max_json)).public()

    @app.post("/api/v1/quick-add", body="json")
    def quick_add() -> dict[str, Any]:
        item = s.planning.quick_add(json_body(max_json))
        bottle.response.status = 201
        bottle.response.set_header("Location", f"/api/v1/items/{item['id']}")
        return item

    @app.post("/api/v1/calendar-feed")
    def new_feed() -> dict[str, Any]:
        path = FEED_PATH.format(token=s.planning.new_feed_token())
        bottle.response.status = 201
        return {"path": path, "url": bottle.request.urlparts.scheme + "://"
                + bottle.request.urlparts.netloc + path}

    @app.delete("/api/v1/calendar-feed")
    def revoke_feed() -> str:
        s.planning.revoke_feed()
        bottle.response.status = 204
        return ""

    @app.get("/calendar/<token:re:[A-Za-z0-9_-]{1,100}>.ics", public=True)
    def feed(token: str) -> Any:
        document = s.planning.feed(token)
        if document is None:
            raise no_route(404)
        bottle.response.content_type = "text/calendar; charset=utf-8"
        bottle.response.set_header("Cache-Control", "no-store")
        return document
