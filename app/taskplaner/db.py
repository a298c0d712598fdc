"""SQLite storage: one connection per thread, WAL, numbered migrations.

All SQL of the app lives in this module and the service modules that import it; nothing here
knows about HTTP. Write transactions use ``BEGIN IMMEDIATE`` so concurrent writers queue on
``busy_timeout`` instead of failing with "database is locked" halfway through.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

BUSY_TIMEOUT_MS = 30_000

# Each entry is one migration; its 1-based position is the schema version it produces.
# Never edit a released entry: append a new one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);

    CREATE TABLE items (
      id        INTEGER PRIMARY KEY,
      type      TEXT NOT NULL CHECK (type IN ('note', 'task')),
      title     TEXT NOT NULL DEFAULT '',
      body      TEXT NOT NULL DEFAULT '',
      tags_text TEXT NOT NULL DEFAULT '',  -- tag names, denormalised for the search index
      status    TEXT CHECK (status IN ('open', 'done', 'archived')),
      due       TEXT,
      priority  INTEGER NOT NULL DEFAULT 0 CHECK (priority BETWEEN 0 AND 3),
      created   TEXT NOT NULL,
      updated   TEXT NOT NULL,
      CHECK ((type = 'task') = (status IS NOT NULL))
    );
    CREATE INDEX items_type_status ON items (type, status, id);

    CREATE TABLE tags (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE COLLATE NOCASE);
    CREATE TABLE item_tags (
      item_id INTEGER NOT NULL REFERENCES items (id) ON DELETE CASCADE,
      tag_id  INTEGER NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
      PRIMARY KEY (item_id, tag_id)
    ) WITHOUT ROWID;
    CREATE INDEX item_tags_tag ON item_tags (tag_id, item_id);

    CREATE TABLE attachments (
      id         INTEGER PRIMARY KEY,
      item_id    INTEGER NOT NULL REFERENCES items (id) ON DELETE CASCADE,
      hash       TEXT NOT NULL,
      thumb_hash TEXT NOT NULL,
      filename   TEXT NOT NULL,
      mime       TEXT NOT NULL,
      size       INTEGER NOT NULL,
      width      INTEGER NOT NULL,
      height     INTEGER NOT NULL,
      created    TEXT NOT NULL
    );
    CREATE INDEX attachments_item ON attachments (item_id);
    CREATE INDEX attachments_hash ON attachments (hash);
    CREATE INDEX attachments_thumb ON attachments (thumb_hash);

    CREATE TABLE sessions (
      id_hash TEXT PRIMARY KEY,
      csrf    TEXT NOT NULL,
      expires REAL NOT NULL
    );
    CREATE TABLE tokens (
      id         INTEGER PRIMARY KEY,
      name       TEXT NOT NULL,
      token_hash TEXT NOT NULL UNIQUE,
      created    TEXT NOT NULL,
      last_used  TEXT
    );

    -- Two external-content indexes over the same columns: words (ranked) and trigrams
    -- (CJK and substrings). Columns are ordered title, tags, body for bm25 weights.
    CREATE VIRTUAL TABLE items_fts USING fts5 (
      title, tags_text, body, content = 'items', content_rowid = 'id',
      tokenize = 'unicode61 remove_diacritics 2'
    );
    CREATE VIRTUAL TABLE items_trigram USING fts5 (
      title, tags_text, body, content = 'items', content_rowid = 'id', tokenize = 'trigram',
      columnsize = 0  -- never ranked, so no per-row size table to maintain
    );
    CREATE TRIGGER items_ai AFTER INSERT ON items BEGIN
      INSERT INTO items_fts (rowid, title, tags_text, body)
        VALUES (new.id, new.title, new.tags_text, new.body);
      INSERT INTO items_trigram (rowid, title, tags_text, body)
        VALUES (new.id, new.title, new.tags_text, new.body);
    END;
    CREATE TRIGGER items_ad AFTER DELETE ON items BEGIN
      INSERT INTO items_fts (items_fts, rowid, title, tags_text, body)
        VALUES ('delete', old.id, old.title, old.tags_text, old.body);
      INSERT INTO items_trigram (items_trigram, rowid, title, tags_text, body)
        VALUES ('delete', old.id, old.title, old.tags_text, old.body);
    END;
    CREATE TRIGGER items_au AFTER UPDATE OF title, tags_text, body ON items BEGIN
      INSERT INTO items_fts (items_fts, rowid, title, tags_text, body)
        VALUES ('delete', old.id, old.title, old.tags_text, old.body);
      INSERT INTO items_trigram (items_trigram, rowid, title, tags_text, body)
        VALUES ('delete', old.id, old.title, old.tags_text, old.body);
      INSERT INTO items_fts (rowid, title, tags_text, body)
        VALUES (new.id, new.title, new.tags_text, new.body);
      INSERT INTO items_trigram (rowid, title, tags_text, body)
        VALUES (new.id, new.title, new.tags_text, new.body);
    END;
    """,
    # 2: prefix indexes for 2-, 3- and 4-letter prefixes. Without them `pro*` merges the doclist
    # of every word starting with "pro"; with them it reads one (bench/run.py, 100,000 notes:
    # p95 of prefix queries 136 ms → 8 ms). The triggers name the table, so they carry over.
    """
    DROP TABLE items_fts;
    CREATE VIRTUAL TABLE items_fts USING fts5 (
      title, tags_text, body, content = 'items', content_rowid = 'id',
      tokenize = 'unicode61 remove_diacritics 2', prefix = '2 3 4'
    );
    INSERT INTO items_fts (items_fts) VALUES ('rebuild');
    """,
    # 3: let the 'merge' command (merge_search_index) merge levels that hold two segments;
    # the default, four, leaves up to three b-trees per level for every query to probe.
    """
    INSERT INTO items_fts (items_fts, rank) VALUES ('usermerge', 2);
    INSERT INTO items_trigram (items_trigram, rank) VALUES ('usermerge', 2);
    """,
    # 4: the trigram index keeps which notes hold a trigram, not where (detail=none): 220 MB
    # → 34 MB on the bench corpus. A substring is found as the notes holding all its trigrams,
    # then checked in their text (search.py); that is also faster than matching a phrase of
    # trigrams, whose position lists were most of the index.
    """
    DROP TABLE items_trigram;
    CREATE VIRTUAL TABLE items_trigram USING fts5 (
      title, tags_text, body, content = 'items', content_rowid = 'id', tokenize = 'trigram',
      columnsize = 0, detail = 'none'
    );
    INSERT INTO items_trigram (items_trigram) VALUES ('rebuild');
    INSERT INTO items_trigram (items_trigram, rank) VALUES ('usermerge', 2);
    """,
    # 5: planning. Pinned items lead every list (hence pinned in the list indexes); a task may
    # have a time on its due day and a repetition rule (recurrence.py); completing a repeating
    # task records the occurrence it created (next_id), so completing it again creates none.
    """
    ALTER TABLE items ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0 CHECK (pinned IN (0, 1));
    ALTER TABLE items ADD COLUMN due_time TEXT;
    ALTER TABLE items ADD COLUMN repeat TEXT;
    ALTER TABLE items ADD COLUMN repeat_from TEXT NOT NULL DEFAULT 'due'
      CHECK (repeat_from IN ('due', 'done'));
    ALTER TABLE items ADD COLUMN completed TEXT;
    ALTER TABLE items ADD COLUMN next_id INTEGER;
    DROP INDEX items_type_status;
    CREATE INDEX items_type_status ON items (type, status, pinned, id);
    CREATE INDEX items_pinned ON items (pinned, id);
    CREATE INDEX items_open_due ON items (due) WHERE status = 'open';
    """,
    # 6: which Markdown files were imported (by SHA-256), so importing them again adds nothing;
    # deleting the item forgets the file, so it can be brought back
    """
    CREATE TABLE imported_files (
      fingerprint TEXT PRIMARY KEY,
      item_id     INTEGER NOT NULL REFERENCES items (id) ON DELETE CASCADE
    ) WITHOUT ROWID;
    CREATE INDEX imported_files_item ON imported_files (item_id);
    """,
]

FTS_TABLES = ("items_fts", "items_trigram")


def now_iso() -> str:
    """UTC timestamp with milliseconds, sortable as text."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Database:
    """Hands each thread its own connection to one SQLite file.

    Each connection keeps its own page cache of ``cache_kib``, so the memory they hold grows
    with the number of threads that ever queried. Pages beyond it come from the operating
    system's file cache, which all connections share; a bigger cache barely speeds up search
    (README, "Memory").
    """

    def __init__(self, path: Path, synchronous: str = "FULL", cache_kib: int = 512) -> None:
        self.path = path
        self.synchronous = synchronous
        self.cache_kib = cache_kib
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
        )
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        conn.execute(f"PRAGMA cache_size = -{int(self.cache_kib)}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.create_function("folded_contains", -1, folded_contains, deterministic=True)
        return conn

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: takes the write lock up front, commits or rolls back whole."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees the same committed state."""
        conn = self.conn
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def migrate(self) -> int:
        """Apply pending migrations in one transaction each; return the schema version."""
        conn = self.conn
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise RuntimeError(
                f"database schema {version} is newer than this TaskPlaner ({len(MIGRATIONS)})"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _split_sql(script):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        return len(MIGRATIONS)

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements (trigger bodies contain ';', so use sqlite's parser)."""
    statements, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                statements.append(buf.strip())
            buf = ""
    if buf.strip():
        statements.append(buf.strip())
    return statements


def folded_contains(folded_needle: str, *texts: str | None) -> bool:
    """Whether any of ``texts`` contains ``folded_needle`` (given in lower case, once per query
    rather than once per row), ignoring case in every script. SQL's LIKE ignores it in ASCII
    only; the trigram index, in every script (search.py)."""
    return any(folded_needle in text.lower() for text in texts if text)


def get_setting(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def set_setting(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO settings (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def integrity_problems(conn: sqlite3.Connection) -> list[str]:
    """SQLite's integrity check plus FTS5's own; an empty list means healthy."""
    problems = [
        str(r[0]) for r in conn.execute("PRAGMA integrity_check").fetchall() if r[0] != "ok"
    ]
    problems += [f"foreign key: {tuple(r)}" for r in conn.execute("PRAGMA foreign_key_check")]
    for table in FTS_TABLES:
        try:
            conn.execute(f"INSERT INTO {table} ({table}, rank) VALUES ('integrity-check', 1)")
        except sqlite3.DatabaseError as exc:
            problems.append(f"{table}: {exc}")
    return problems


def rebuild_search_index(conn: sqlite3.Connection) -> None:
    for table in FTS_TABLES:
        conn.execute(f"INSERT INTO {table} ({table}) VALUES ('rebuild')")


MERGE_PAGES = 500  # per write transaction: ~35 ms of merging, so writers wait little


def merge_search_index(db: Database) -> int:
    """Merge each FTS5 index down to one b-tree per level, in short write transactions.

    Every commit adds a small b-tree (segment) that FTS5 merges only in batches of four, so a
    long-lived index is spread over dozens that each query probes (bench corpus: 26 segments,
    search p50 3.8 ms; merged: 2 segments, 2.3 ms). Returns the number of steps taken.

    Not 'optimize', nor 'merge' with a negative count (its incremental form): on SQLite 3.40
    each of those after new writes adds an empty level to the index structure, and after about
    a thousand such runs the index reads as "database disk image is malformed"
    (tests/app/test_upkeep.py). A positive 'merge' with ``usermerge`` 2 (set by
    migration 3) merges any level holding two or more segments and adds no levels. A step that
    changes fewer than two rows found nothing left to merge.
    """
    steps = 0
    for table in FTS_TABLES:
        while True:
            with db.write() as conn:
                before = conn.total_changes
                conn.execute(
                    f"INSERT INTO {table} ({table}, rank) VALUES ('merge', ?)", (MERGE_PAGES,)
                )
                done = conn.total_changes - before < 2
            steps += 1
            if done:
                break
    db.conn.execute("PRAGMA optimize")  # refresh the query planner's statistics
    return steps


def release_free_pages(db: Database) -> int:
    """Give the disk back the pages a smaller index left free (migration 4 frees about half a
    database), when they are a quarter of the file or more; returns the bytes released.
    SQLite reuses free pages for new writes anyway, so below that it is not worth VACUUM's
    copy of the whole file, during which writers wait."""
    conn = db.conn
    pages, free = (conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "freelist_count"))
    if free == 0 or free * 4 < pages:
        return 0
    before = db.path.stat().st_size
    conn.execute("VACUUM")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return before - db.path.stat().st_size
