"""Server upkeep on a real SQLite and real files: merging keeps results identical and the index
flat; the blob gc removes what a crash left; failures are counted, never fatal."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import sqlite3
import time

import pytest
from prometheus_client import generate_latest

from conftest import image_bytes, make_settings, wait_for
from taskplaner.db import FTS_TABLES, integrity_problems, merge_search_index
from taskplaner.services import Services, open_services

WORDS = "garden river invoice coffee winter planet market camera".split()


@pytest.fixture
def services(tmp_path):
    opened = open_services(make_settings(tmp_path))
    yield opened
    opened.close()


def add_notes(services: Services, count: int, start: int = 0) -> None:
    for i in range(start, start + count):  # one transaction each, as the API writes them
        body = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(5))
        services.items.create({"title": f"note {i} {WORDS[i % len(WORDS)]}", "body": body})


def segments(conn: sqlite3.Connection, table: str) -> int:
    return conn.execute(f"SELECT count(DISTINCT segid) FROM {table}_idx").fetchone()[0]


def structure_bytes(conn: sqlite3.Connection, table: str) -> int:
    """Size of FTS5's structure record (row 10), which grows with the index's levels."""
    return len(conn.execute(f"SELECT block FROM {table}_data WHERE id = 10").fetchone()[0])


def results(services: Services) -> list[list[int]]:
    queries = [*WORDS, "gar*", "note", '"coffee winter"', "arden", "-river planet"]
    return [[r["id"] for r in services.search.search(q, limit=50)["items"]] for q in queries]


def test_merge_leaves_few_btrees_and_the_same_results(services):
    add_notes(services, 300)
    conn = services.db.conn
    unmerged = [segments(conn, t) for t in FTS_TABLES]
    assert min(unmerged) >= 5
    before = results(services)
    assert any(before), "the queries must find something for the comparison to mean anything"

    merge_search_index(services.db)

    merged = [segments(conn, t) for t in FTS_TABLES]
    assert max(merged) <= 3, (unmerged, merged)
    assert results(services) == before
    assert integrity_problems(conn) == []
    # Nothing left to merge: one step per index that changes nothing.
    assert merge_search_index(services.db) == len(FTS_TABLES)


def test_repeated_merges_after_writes_keep_the_structure_small(services):
    # 'optimize' (or a negative 'merge') grows it by ~4 bytes per such cycle on SQLite 3.40,
    # and the index was found corrupt after ~1,000 cycles.
    conn = services.db.conn
    sizes = []
    for cycle in range(300):
        add_notes(services, 2, start=2 * cycle)
        merge_search_index(services.db)
        sizes.append(max(structure_bytes(conn, t) for t in FTS_TABLES))
    assert max(sizes) <= 64, sizes[-5:]
    assert max(segments(conn, t) for t in FTS_TABLES) <= 8
    assert integrity_problems(conn) == []


def test_server_upkeep_merges_only_after_writes(services):
    upkeep = services.upkeep(interval=0.05, first_delay=0)
    upkeep.start()
    try:
        assert wait_for(lambda: upkeep.runs == 1)
        with services.db.write() as conn:  # one commit, from another connection than its own
            conn.executemany(
                "INSERT INTO items (type, title, body, tags_text, created, updated)"
                " VALUES ('note', ?, 'garden', '', '2026-01-01', '2026-01-01')",
                [(f"note {i}",) for i in range(20)],
            )
        assert wait_for(lambda: upkeep.runs == 2)
        wait_for(lambda: upkeep.runs > 2, timeout=0.5)
        assert upkeep.runs == 2, "no writes since the last merge: nothing to do"
    finally:
        upkeep.stop()


def _metric(services: Services, name: str) -> float:
    for line in generate_latest(services.metrics.registry).decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


def test_upkeep_removes_what_a_crash_left_and_keeps_what_is_referenced(services):
    item = services.items.create({"title": "photo"})
    kept = services.attachments.add(item["id"], "a.png", io.BytesIO(image_bytes()))
    orphan_bytes = b"left behind by a crash between commit and unlink"
    orphan = services.blobs.path_for(hashlib.sha256(orphan_bytes).hexdigest())
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(orphan_bytes)
    stale_upload = services.settings.tmp_dir / "upload-crashed.part"
    stale_upload.write_bytes(b"half an upload")
    an_hour_ago = time.time() - 3600
    for path in (orphan, stale_upload):
        os.utime(path, (an_hour_ago, an_hour_ago))

    upkeep = services.upkeep(interval=60, first_delay=0)
    upkeep.start()
    try:
        assert wait_for(lambda: upkeep.runs == 1)
        assert wait_for(lambda: _metric(services, "taskplaner_upkeep_last_success_timestamp_seconds") > 0)
    finally:
        upkeep.stop()
    assert not orphan.exists() and not stale_upload.exists()
    assert services.blobs.exists(kept["hash"])
    assert services.attachments.missing_blobs() == []  # the image and its thumbnail
    assert _metric(services, "taskplaner_upkeep_failures_total") == 0


def test_upkeep_failures_are_counted_and_the_thread_keeps_going(services):
    shutil.rmtree(services.settings.tmp_dir)  # a damaged data dir: the blob gc cannot list it
    upkeep = services.upkeep(interval=0.05, first_delay=0)
    upkeep.start()
    try:
        assert wait_for(lambda: _metric(services, "taskplaner_upkeep_failures_total") >= 2)
        assert upkeep._thread is not None and upkeep._thread.is_alive()
        services.settings.tmp_dir.mkdir()  # repaired: the next run succeeds
        assert wait_for(lambda: upkeep.runs == 1)
    finally:
        upkeep.stop()
    assert _metric(services, "taskplaner_upkeep_last_success_timestamp_seconds") > 0


def test_blob_gc_during_an_export_leaves_the_blobs_until_it_ends(services):
    item = services.items.create({"title": "photo"})
    attachment = services.attachments.add(item["id"], "a.png", io.BytesIO(image_bytes()))
    blob = services.blobs.path_for(attachment["hash"])
    with services.attachments.pinned():  # an export is reading the blobs
        services.items.delete(item["id"])
        an_hour_ago = time.time() - 3600
        os.utime(blob, (an_hour_ago, an_hour_ago))
        services.attachments.gc()
        assert blob.exists(), "the export may still read it"
    assert not blob.exists()
