"""Notes and tasks."""

from __future__ import annotations

from typing import Any

import bottle

from ..services import Services
from ..validation import page_limit
from .bodies import json_body


def register(app: bottle.Bottle, s: Services) -> None:
    settings = s.settings

    @app.get("/api/v1/items")
    def list_items() -> dict[str, Any]:
        q = bottle.request.query
        return s.items.list(
            type_=q.get("type") or None,
            status=q.get("status") or None,
            tag=q.getunicode("tag") or None,
            cursor=q.get("cursor"),
            limit=page_limit(q.get("limit"), settings.default_page_size, settings.max_page_size),
        )

    @app.post("/api/v1/items", body="json")
    def create_item() -> dict[str, Any]:
        item = s.items.create(json_body(settings.max_json_bytes))
        bottle.response.status = 201
        bottle.response.set_header("Location", f"/api/v1/items/{item['id']}")
        return item

    @app.get("/api/v1/items/<item_id:id>")
    def get_item(item_id: int) -> dict[str, Any]:
        return s.items.get(item_id)

    @app.route("/api/v1/items/<item_id:id>", method="PATCH", body="json")
    def update_item(item_id: int) -> dict[str, Any]:
        return s.items.update(item_id, json_body(settings.max_json_bytes))

    @app.post("/api/v1/items/<item_id:id>/checklist", body="json")
    def tick_box(item_id: int) -> dict[str, Any]:
        return s.items.tick(item_id, json_body(settings.max_json_bytes))

    @app.delete("/api/v1/items/<item_id:id>")
    def delete_item(item_id: int) -> str:
        s.items.delete(item_id)
        bottle.response.status = 204
        return ""
