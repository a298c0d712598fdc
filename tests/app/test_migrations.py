"""Schema migrations applied to a database made by an older TaskPlaner keep every item
findable and the indexes consistent."""

from __future__ import annotations

from taskplaner.db import MIGRATIONS, Database, _split_sql, integrity_problems, release_free_pages
from taskplaner.search import Search


def _database_at_version(path, version: int) -> Database:
    db = Database(path)
    conn = db.conn
    conn.execute("BEGIN IMMEDIATE")
    for script in MIGRATIONS[:version]:
        for statement in _split_sql(script):
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {version}")
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
    db = _database_at_version(tmp_path / "old.db", 1)
    assert db.migrate() == len(MIGRATIONS)
    conn = db.conn
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
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


def test_upgrade_drops_the_trigram_positions_and_substrings_stay_exact(tmp_path):
    db = _database_at_version(tmp_path / "v3.db", 3)
    with db.write() as w:
        for title, body in [("Quarterly report", "the garden budget"), ("abc bcd", "ПРИВЕТ мир")]:
            w.execute(
                "INSERT INTO items (type, title, body, tags_text, created, updated)"
                " VALUES ('note', ?, ?, '', '2026-01-01', '2026-01-01')",
                (title, body),
            )
    db.migrate()
    sql = db.conn.execute("SELECT sql FROM sqlite_master WHERE name = 'items_trigram'").fetchone()[0]
    assert "detail = 'none'" in sql
    assert integrity_problems(db.conn) == []
    search = Search(db)
    assert [r["title"] for r in search.search("arterl")["items"]] == ["Quarterly report"]
    # both trigrams of "abcd" are in the second note, not next to each other: not a match
    assert search.search("abcd")["items"] == []
    # case in Cyrillic: SQL's LIKE would not match it, the trigram index and the check do
    found = search.search("ривет")
    assert ([r["title"] for r in found["items"]], found["mode"]) == (["abc bcd"], "substring")
    db.close()


def test_migrating_twice_changes_nothing(tmp_path):
    db = Database(tmp_path / "new.db")
    assert db.migrate() == len(MIGRATIONS)
    assert db.migrate() == len(MIGRATIONS)
    assert integrity_problems(db.conn) == []
    db.close()


def test_optimize_gives_back_the_pages_the_smaller_trigram_index_left(tmp_path):
    db = _database_at_version(tmp_path / "big.db", 3)
    with db.write() as w:
        for i in range(400):
            w.execute(
                "INSERT INTO items (type, title, body, tags_text, created, updated)"
                " VALUES ('note', ?, ?, '', '2026-01-01', '2026-01-01')",
                (f"note {i}", " ".join(f"word{i * 7 + j} text{j}" for j in range(60))),
            )
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = db.path.stat().st_size
    db.migrate()
    assert release_free_pages(db) > before / 4
    assert db.path.stat().st_size < before * 3 / 4
    assert release_free_pages(db) == 0  # nothing left to give back: no second copy
    assert integrity_problems(db.conn) == []
    assert [r["title"] for r in Search(db).search('"ote 399"')["items"]] == ["note 399"]
    db.close()
