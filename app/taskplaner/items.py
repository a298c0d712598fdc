"""Notes and tasks: create, read, list (keyset pagination), update, delete."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from . import tags as tags_service
from .attachments import Attachments
from .db import Database, now_iso
from .errors import AppError, invalid, not_found
from .validation import (
    choice,
    clean_text,
    decode_cursor,
    encode_cursor,
    int_range,
    iso_date,
)

TYPES = ("note", "task")
STATUSES = ("open", "done", "archived")
MAX_TAGS_PER_ITEM = 50
_EDITABLE = {"type", "title", "body", "tags", "status", "due", "priority"}


@dataclass(frozen=True)
class ItemLimits:
    max_title_chars: int = 500
    max_body_chars: int = 500_000


def _validated(data: Any, limits: ItemLimits, partial: bool) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise AppError(400, "bad_request", "the request body must be a JSON object")
    unknown = set(data) - _EDITABLE
    if unknown:
        name = sorted(unknown)[0]
        raise invalid(name, f"unknown field {name!r}")
    out: dict[str, Any] = {}
    if "type" in data or not partial:
        out["type"] = choice(data.get("type", "note"), "type", TYPES)
    if "title" in data:
        out["title"] = clean_text(data["title"], "title", limits.max_title_chars).strip()
    if "body" in data:
        out["body"] = clean_text(data["body"], "body", limits.max_body_chars)
    if "status" in data:
        out["status"] = choice(data["status"], "status", STATUSES)
    if "due" in data:
        out["due"] = iso_date(data["due"], "due")
    if "priority" in data:
        out["priority"] = int_range(data["priority"], "priority", 0, 3)
    if "tags" in data:
        raw = data["tags"]
        if not isinstance(raw, list) or len(raw) > MAX_TAGS_PER_ITEM:
            raise invalid("tags", f"tags must be a list of at most {MAX_TAGS_PER_ITEM} names")
        out["tags"] = tags_service.normalise(raw)
    if not partial and not out.get("title") and not out.get("body"):
        raise invalid("title", "an item needs a title or a body")
    return out


def _row_to_item(row: sqlite3.Row) -> dict[str, Any]:
    item = {
        "id": row["id"],
        "type": row["type"],
        "title": row["title"],
        "body": row["body"],
        "tags": row["tags_text"].split() if row["tags_text"] else [],
        "created": row["created"],
        "updated": row["updated"],
    }
    if row["type"] == "task":
        item.update(status=row["status"], due=row["due"], priority=row["priority"])
    return item


def _task_fields(fields: dict[str, Any], current_type: str | None) -> dict[str, Any]:
    """Notes carry no task state; a task always has a status."""
    new_type = fields.get("type", current_type)
    if new_type == "note":
        for name in ("status", "due", "priority"):
            if name in fields:
                raise invalid(name, f"{name} applies to tasks only")
        if current_type == "task":
            return {"status": None, "due": None, "priority": 0}
        return {}
    if current_type != "task" and "status" not in fields:
        return {"status": "open"}
    return {}


class Items:
    def __init__(self, db: Database, attachments: Attachments, limits: ItemLimits) -> None:
        self.db = db
        self.attachments = attachments
        self.limits = limits

    def create(self, data: Any) -> dict[str, Any]:
        fields = _validated(data, self.limits, partial=False)
        fields.update(_task_fields(fields, None))
        tag_names = fields.pop("tags", [])
        stamp = now_iso()
        with self.db.write() as conn:
            # tags are resolved first so the row is indexed once, with its tags
            resolved = tags_service.resolve(conn, tag_names)
            row = conn.execute(
                "INSERT INTO items (type, title, body, tags_text, status, due, priority, created,"
                " updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
                (fields["type"], fields.get("title") or "", fields.get("body") or "",
                 tags_service.tags_text([name for _, name in resolved]), fields.get("status"),
                 fields.get("due"), fields.get("priority") or 0, stamp, stamp),
            ).fetchone()
            conn.executemany("INSERT INTO item_tags (item_id, tag_id) VALUES (?, ?)",
                             [(row["id"], tag_id) for tag_id, _ in resolved])
        return {**_row_to_item(row), "attachments": []}

    def get(self, item_id: int) -> dict[str, Any]:
        with self.db.snapshot() as conn:
            return self._get(conn, item_id)

    def _get(self, conn: sqlite3.Connection, item_id: int) -> dict[str, Any]:
        row = conn.execute("SELECT * FROM items WHERE id = ?", (item_id,)).fetchone()
        if row is None:
            raise not_found("item")
        item = _row_to_item(row)
        item["attachments"] = self.attachments.for_item(conn, item_id)
        return item

    def list(
        self,
        *,
        type_: str | None = None,
        status: str | None = None,
        tag: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
        with_attachments: bool = False,
    ) -> dict[str, Any]:
        """A page of items, newest first. `with_attachments` adds each item's attachment list
        (the web UI shows thumbnails); the API gives only their count."""
        where: list[str] = []
        args: list[object] = []
        if type_:
            where.append("type = ?")
            args.append(choice(type_, "type", TYPES))
        if status:
            where.append("status = ?")
            args.append(choice(status, "status", STATUSES))
        if tag:
            where.append(
                "id IN (SELECT it.item_id FROM item_tags it JOIN tags t ON t.id = it.tag_id"
                " WHERE t.name = ?)"
            )
            args.append(tag)
        after = decode_cursor(cursor)
        if after is not None:
            where.append("id < ?")
            args.append(after)
        sql = "SELECT * FROM items"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        with self.db.snapshot() as conn:
            rows = conn.execute(sql, (*args, limit + 1)).fetchall()
            page = rows[:limit]
            items = [_row_to_item(r) for r in page]
            ids = [i["id"] for i in items]
            if with_attachments:
                attached = self.attachments.for_items(conn, ids)
                counts = {item_id: len(found) for item_id, found in attached.items()}
            else:
                counts = self.attachments.counts(conn, ids)
        for item in items:
            item["attachment_count"] = counts.get(item["id"], 0)
            if with_attachments:
                item["attachments"] = attached.get(item["id"], [])
        next_cursor = encode_cursor(page[-1]["id"]) if len(rows) > limit else None
        return {"items": items, "next_cursor": next_cursor}

    def update(self, item_id: int, data: Any) -> dict[str, Any]:
        fields = _validated(data, self.limits, partial=True)
        with self.db.write() as conn:
            row = conn.execute("SELECT type FROM items WHERE id = ?", (item_id,)).fetchone()
            if row is None:
                raise not_found("item")
            fields.update(_task_fields(fields, row["type"]))
            tag_names = fields.pop("tags", None)
            if fields:
                assignments = ", ".join(f"{name} = ?" for name in fields)
                conn.execute(
                    f"UPDATE items SET {assignments}, updated = ? WHERE id = ?",
                    (*fields.values(), now_iso(), item_id),
                )
            if tag_names is not None:
                tags_service.set_item_tags(conn, item_id, tag_names)
                conn.execute("UPDATE items SET updated = ? WHERE id = ?", (now_iso(), item_id))
            now = conn.execute("SELECT title, body FROM items WHERE id = ?", (item_id,)).fetchone()
            if not now["title"] and not now["body"]:
                raise invalid("title", "an item needs a title or a body")
            return self._get(conn, item_id)

    def delete(self, item_id: int) -> None:
        with self.attachments.blob_guard():
            with self.db.write() as conn:
                hashes = self.attachments.hashes_of_item(conn, item_id)
                tag_ids = tags_service.tag_ids_of(conn, item_id)
                cur = conn.execute("DELETE FROM items WHERE id = ?", (item_id,))
                if cur.rowcount == 0:
                    raise not_found("item")
                tags_service.delete_orphans(conn, tag_ids)
                unused = self.attachments.unreferenced(conn, hashes)
            self.attachments.release(unused)
