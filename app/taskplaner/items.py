"""Notes and tasks: create, read, list (keyset pagination), update, delete."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import date
from typing import Any

from . import checklist, recurrence
from . import tags as tags_service
from .attachments import Attachments
from .db import Database, now_iso
from .errors import AppError, invalid, not_found
from .localtime import user_today
from .markdown import parse as parse_markdown
from .validation import (
    choice,
    clean_text,
    clock_time,
    decode_key_cursor,
    encode_cursor,
    flag,
    int_range,
    iso_date,
)

TYPES = ("note", "task")
STATUSES = ("open", "done", "archived")
MAX_TAGS_PER_ITEM = 50
TASK_FIELDS = ("status", "due", "due_time", "priority", "repeat", "repeat_from")
_EDITABLE = {"type", "title", "body", "tags", "pinned", *TASK_FIELDS}
# what a note carries of a task's columns: nothing
_NO_TASK = {"status": None, "due": None, "due_time": None, "priority": 0, "repeat": None,
            "repeat_from": "due", "completed": None, "next_id": None}


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
    if "due_time" in data:
        out["due_time"] = clock_time(data["due_time"], "due_time")
    if "priority" in data:
        out["priority"] = int_range(data["priority"], "priority", 0, 3)
    if "repeat" in data:
        out["repeat"] = recurrence.canonical(data["repeat"])
    if "repeat_from" in data:
        out["repeat_from"] = choice(data["repeat_from"], "repeat_from", recurrence.REPEAT_FROM)
    if "pinned" in data:
        out["pinned"] = flag(data["pinned"], "pinned")
    if "tags" in data:
        raw = data["tags"]
        if not isinstance(raw, list) or len(raw) > MAX_TAGS_PER_ITEM:
            raise invalid("tags", f"tags must be a list of at most {MAX_TAGS_PER_ITEM} names")
        out["tags"] = tags_service.normalise(raw)
    if not partial and not out.get("title") and not out.get("body"):
        raise invalid("title", "an item needs a title or a body")
    return out


def row_to_item(row: sqlite3.Row) -> dict[str, Any]:
    item = {
        "id": row["id"],
        "type": row["type"],
        "title": row["title"],
        "body": row["body"],
        "tags": row["tags_text"].split() if row["tags_text"] else [],
        "pinned": bool(row["pinned"]),
        "created": row["created"],
        "updated": row["updated"],
    }
    if row["type"] == "task":
        item.update({name: row[name] for name in (*TASK_FIELDS, "completed", "next_id")})
    return item


def _task_fields(fields: dict[str, Any], current_type: str | None) -> dict[str, Any]:
    """Notes carry no task state; a task always has a status."""
    new_type = fields.get("type", current_type)
    if new_type == "note":
        for name in TASK_FIELDS:
            if name in fields:
                raise invalid(name, f"{name} applies to tasks only")
        return dict(_NO_TASK) if current_type == "task" else {}
    if current_type != "task" and "status" not in fields:
        return {"status": "open"}
    return {}


def _completion(fields: dict[str, Any], old_status: str | None) -> dict[str, Any]:
    """When the task was completed: set on the way to done, cleared on the way back."""
    new_status = fields.get("status", old_status)
    if new_status == "done" and old_status != "done":
        return {"completed": now_iso()}
    if new_status != "done" and old_status == "done":
        return {"completed": None}
    return {}


def _insert(conn: sqlite3.Connection, fields: dict[str, Any], tag_names: list[str]) -> sqlite3.Row:
    """One new item row with its tags; ``fields`` are validated columns."""
    # tags are resolved first so the row is indexed once, with its tags
    resolved = tags_service.resolve(conn, tag_names)
    columns = {**fields, "tags_text": tags_service.tags_text([name for _, name in resolved])}
    columns.setdefault("created", now_iso())
    columns.setdefault("updated", columns["created"])
    row: sqlite3.Row = conn.execute(
        f"INSERT INTO items ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        " RETURNING *",
        tuple(columns.values()),
    ).fetchone()
    conn.executemany("INSERT INTO item_tags (item_id, tag_id) VALUES (?, ?)",
                     [(row["id"], tag_id) for tag_id, _ in resolved])
    return row


def _check_task(row: sqlite3.Row) -> None:
    if row["due_time"] and not row["due"]:
        raise invalid("due_time", "due_time needs a due date")


def _next_occurrence(conn: sqlite3.Connection, done: sqlite3.Row) -> int | None:
    """Create the next occurrence of a repeating task just completed, once: a second
    completion (a double click, a retried request, ticking it again) finds ``next_id``."""
    if not done["repeat"]:
        return None
    if done["next_id"] is not None and conn.execute(
            "SELECT 1 FROM items WHERE id = ?", (done["next_id"],)).fetchone():
        return int(done["next_id"])
    today = user_today(conn)
    anchor = date.fromisoformat(done["due"]) if done["due"] and done["repeat_from"] == "due" else today
    due = recurrence.next_due(done["repeat"], anchor, today)
    if due is None:  # the calendar ends (9999-12-31) before the next one: the series ends
        return None
    copied = {name: done[name] for name in ("type", "title", "body", "priority", "due_time",
                                            "repeat", "repeat_from", "pinned")}
    row = _insert(conn, {**copied, "status": "open", "due": due.isoformat()},
                  done["tags_text"].split())
    conn.execute("UPDATE items SET next_id = ? WHERE id = ?", (row["id"], done["id"]))
    return int(row["id"])


class Items:
    def __init__(self, db: Database, attachments: Attachments, limits: ItemLimits) -> None:
        self.db = db
        self.attachments = attachments
        self.limits = limits

    def create(self, data: Any, stamps: tuple[str, str] | None = None) -> dict[str, Any]:
        """A new item; ``stamps`` (created, updated) keep an imported note's own times."""
        fields = _validated(data, self.limits, partial=False)
        fields.update(_task_fields(fields, None))
        fields.update(_completion(fields, None))
        if stamps is not None:
            fields["created"], fields["updated"] = stamps
        tag_names = fields.pop("tags", [])
        with self.db.write() as conn:
            row = _insert(conn, fields, tag_names)
            _check_task(row)
        return {**row_to_item(row), "attachments": []}

    def get(self, item_id: int) -> dict[str, Any]:
        with self.db.snapshot() as conn:
            return self._get(conn, item_id)

    def _get(self, conn: sqlite3.Connection, item_id: int) -> dict[str, Any]:
        row = conn.execute("SELECT * FROM items WHERE id = ?", (item_id,)).fetchone()
        if row is None:
            raise not_found("item")
        item = row_to_item(row)
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
        """A page of items, pinned ones first, then newest first. `with_attachments` adds each
        item's attachment list (the web UI shows thumbnails); the API gives only their count."""
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
        after = decode_key_cursor(cursor)
        if after is not None:
            where.append("(pinned, id) < (?, ?)")
            args.extend(after)
        sql = "SELECT * FROM items"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY pinned DESC, id DESC LIMIT ?"
        with self.db.snapshot() as conn:
            rows = conn.execute(sql, (*args, limit + 1)).fetchall()
            page = rows[:limit]
            items = [row_to_item(r) for r in page]
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
        last = page[-1] if page else None
        next_cursor = encode_cursor(last["pinned"], last["id"]) if last and len(rows) > limit else None
        return {"items": items, "next_cursor": next_cursor}

    def update(self, item_id: int, data: Any) -> dict[str, Any]:
        fields = _validated(data, self.limits, partial=True)
        with self.db.write() as conn:
            row = conn.execute("SELECT * FROM items WHERE id = ?", (item_id,)).fetchone()
            if row is None:
                raise not_found("item")
            fields.update(_task_fields(fields, row["type"]))
            fields.update(_completion(fields, row["status"]))
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
            now = conn.execute("SELECT * FROM items WHERE id = ?", (item_id,)).fetchone()
            if not now["title"] and not now["body"]:
                raise invalid("title", "an item needs a title or a body")
            _check_task(now)
            if now["status"] == "done" and row["status"] != "done":
                _next_occurrence(conn, now)
            return self._get(conn, item_id)

    def tick(self, item_id: int, data: Any) -> dict[str, Any]:
        """Tick or untick one checklist box in the body (checklist.py)."""
        if not isinstance(data, dict) or set(data) - {"index", "done", "fingerprint"}:
            raise invalid("index", "send index, done and fingerprint")
        with self.db.write() as conn:
            row = conn.execute("SELECT body FROM items WHERE id = ?", (item_id,)).fetchone()
            if row is None:
                raise not_found("item")
            body = row["body"]
            new_body = checklist.set_box(body, parse_markdown(body), data.get("index"),
                                         data.get("done"), data.get("fingerprint"))
            if new_body != body:
                conn.execute("UPDATE items SET body = ?, updated = ? WHERE id = ?",
                             (new_body, now_iso(), item_id))
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
