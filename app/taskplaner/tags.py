"""Tags: case-insensitive names, many-to-many with items, renameable and mergeable.

Each item keeps its tag names in ``items.tags_text`` too, so the search index (which only sees
the items table) can match and rank tags; every change here rewrites that column.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from .db import Database, now_iso
from .errors import AppError, invalid, not_found
from .validation import tag_name


def normalise(raw: list[Any]) -> list[str]:
    """Validate names and drop case-insensitive duplicates, keeping the first spelling."""
    seen: dict[str, str] = {}
    for value in raw:
        name = tag_name(value)
        seen.setdefault(name.casefold(), name)
    return list(seen.values())


def tags_text(names: list[str]) -> str:
    """The denormalised form the search index sees: names ordered case-insensitively."""
    return " ".join(sorted(names, key=str.casefold))


def _write_tags_text(conn: sqlite3.Connection, item_id: int, names: list[str]) -> None:
    text = tags_text(names)
    # only an actual change fires the update trigger (and re-indexes the item)
    conn.execute("UPDATE items SET tags_text = ? WHERE id = ? AND tags_text != ?",
                 (text, item_id, text))


def _refresh_tags_text(conn: sqlite3.Connection, item_ids: list[int]) -> None:
    for item_id in item_ids:
        names = [r[0] for r in conn.execute(
            "SELECT t.name FROM item_tags it JOIN tags t ON t.id = it.tag_id WHERE it.item_id = ?",
            (item_id,))]
        _write_tags_text(conn, item_id, names)


def tag_ids_of(conn: sqlite3.Connection, item_id: int) -> list[int]:
    return [r[0] for r in conn.execute("SELECT tag_id FROM item_tags WHERE item_id = ?",
                                       (item_id,))]


def delete_orphans(conn: sqlite3.Connection, tag_ids: list[int]) -> None:
    """Drop those of ``tag_ids`` that no item uses any more."""
    for tag_id in tag_ids:
        conn.execute(
            "DELETE FROM tags WHERE id = ? AND NOT EXISTS"
            " (SELECT 1 FROM item_tags WHERE tag_id = ?)", (tag_id, tag_id))


def resolve(conn: sqlite3.Connection, names: list[str]) -> list[tuple[int, str]]:
    """Create missing tags; return (id, stored spelling) for each name."""
    resolved = []
    for name in names:
        row = conn.execute("SELECT id, name FROM tags WHERE name = ?", (name,)).fetchone()
        if row is None:
            row = conn.execute("INSERT INTO tags (name) VALUES (?) RETURNING id, name",
                               (name,)).fetchone()
        resolved.append((int(row[0]), str(row[1])))
    return resolved


def set_item_tags(conn: sqlite3.Connection, item_id: int, names: list[str]) -> None:
    old = tag_ids_of(conn, item_id)
    resolved = resolve(conn, names)
    conn.execute("DELETE FROM item_tags WHERE item_id = ?", (item_id,))
    conn.executemany("INSERT INTO item_tags (item_id, tag_id) VALUES (?, ?)",
                     [(item_id, tag_id) for tag_id, _ in resolved])
    _write_tags_text(conn, item_id, [name for _, name in resolved])
    kept = {tag_id for tag_id, _ in resolved}
    delete_orphans(conn, [t for t in old if t not in kept])


class Tags:
    def __init__(self, db: Database) -> None:
        self.db = db

    def list(self) -> list[dict[str, Any]]:
        rows = self.db.conn.execute(
            "SELECT t.name, count(it.item_id) AS count FROM tags t"
            " JOIN item_tags it ON it.tag_id = t.id GROUP BY t.id ORDER BY t.name COLLATE NOCASE"
        ).fetchall()
        return [{"name": r["name"], "count": r["count"]} for r in rows]

    def rename(self, name: str, data: Any) -> dict[str, Any]:
        """Rename a tag; renaming onto another existing tag merges only with ``merge: true``."""
        if not isinstance(data, dict) or "name" not in data:
            raise invalid("name", "give the new tag name as name")
        new_name = tag_name(data["name"], "name")
        merge = data.get("merge", False)
        if not isinstance(merge, bool):
            raise invalid("merge", "merge must be true or false")
        with self.db.write() as conn:
            source = conn.execute("SELECT id FROM tags WHERE name = ?", (name,)).fetchone()
            if source is None:
                raise not_found("tag")
            target = conn.execute("SELECT id FROM tags WHERE name = ?", (new_name,)).fetchone()
            affected = [
                r[0]
                for r in conn.execute(
                    "SELECT item_id FROM item_tags WHERE tag_id = ?", (source["id"],)
                )
            ]
            if target is None or target["id"] == source["id"]:
                conn.execute("UPDATE tags SET name = ? WHERE id = ?", (new_name, source["id"]))
            elif not merge:
                raise AppError(
                    409,
                    "conflict",
                    f"tag {new_name!r} exists; send merge: true to merge into it",
                    "name",
                )
            else:
                conn.execute(
                    "INSERT OR IGNORE INTO item_tags (item_id, tag_id)"
                    " SELECT item_id, ? FROM item_tags WHERE tag_id = ?",
                    (target["id"], source["id"]),
                )
                conn.execute("DELETE FROM tags WHERE id = ?", (source["id"],))
            _refresh_tags_text(conn, affected)
            conn.execute(
                f"UPDATE items SET updated = ? WHERE id IN ({','.join('?' * len(affected))})",
                (now_iso(), *affected),
            )
            row = conn.execute(
                "SELECT t.name, count(it.item_id) AS count FROM tags t"
                " LEFT JOIN item_tags it ON it.tag_id = t.id WHERE t.name = ? GROUP BY t.id",
                (new_name,),
            ).fetchone()
            return {"name": row["name"], "count": row["count"]}

    def delete(self, name: str) -> None:
        with self.db.write() as conn:
            tag = conn.execute("SELECT id FROM tags WHERE name = ?", (name,)).fetchone()
            if tag is None:
                raise not_found("tag")
            affected = [
                r[0]
                for r in conn.execute("SELECT item_id FROM item_tags WHERE tag_id = ?", (tag["id"],))
            ]
            conn.execute("DELETE FROM tags WHERE id = ?", (tag["id"],))
            _refresh_tags_text(conn, affected)
