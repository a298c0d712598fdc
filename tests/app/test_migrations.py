"""Schema migrations applied to a database made by an older TaskPlaner keep every item
findable and the indexes consistent."""

from __future__ import annotations

from taskplaner.db import MIGRATIONS, Database, _split_sql, integrity_problems
from taskplaner.search import Search


def _database_at_version_1(path) -> Database:
    db = Database(path)
    conn = db.conn
    conn.execute("BEGIN IMMEDIATE")
    for statement in _split_sql(MIGRATIONS[0]):
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("COMMIT")
    with db.write() as w:
        for i, (title, body) in enumerate(
            [
                ("Project plan", "prototype the prompt"),
                ("Groceries", "oat milk"),
                ("進捗報告", "日本語のメモ"),
            ]
        ):
            w.execute(
                "INSERT INTO items (type, title, body, tags_text, created, updated)"
                " VALUES ('note', ?, ?, '', ?, ?)",
                (title, body, f"2026-01-0{i + 1}", f"2026-01-0{i + 1}"),
            )
    return db


def test_upgrade_adds_prefix_indexes_and_keeps_everything_findable(tmp_path):
    db = _database_at_version_1(tmp_path / "old.db")
    assert db.migrate() == len(MIGRATIONS) == 3
    conn = db.conn
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
    sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'items_fts'").fetchone()[0]
    assert "prefix = '2 3 4'" in sql
    for table in ("items_fts", "items_trigram"):  # migration 3, on the recreated table too
        usermerge = conn.execute(f"SELECT v FROM {table}_config WHERE k = 'usermerge'")
        assert usermerge.fetchone()[0] == 2
    assert integrity_problems(conn) == []
    search = Search(db)
    assert [r["title"] for r in search.search("pro*")["items"]] == ["Project plan"]
    assert [r["title"] for r in search.search("oat")["items"]] == ["Groceries"]
    assert [r["title"] for r in search.search("日本語")["items"]] == ["進捗報告"]
    # the triggers still feed the recreated index
    with db.write() as w:
        w.execute("UPDATE items SET body = 'protein shake' WHERE title = 'Groceries'")
    assert {r["title"] for r in search.search("prot*")["items"]} == {"Groceries", "Project plan"}
    assert integrity_problems(conn) == []
    db.close()


def test_migrating_twice_changes_nothing(tmp_path):
    db = Database(tmp_path / "new.db")
    assert db.migrate() == 3
    assert db.migrate() == 3
    assert integrity_problems(db.conn) == []
    db.close()
