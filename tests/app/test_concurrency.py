"""Many parallel writers through waitress: no "database is locked", no lost write."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from conftest import create_item, image_bytes, make_settings, start_server, stop_server

WRITERS = 16
WRITES_EACH = 25


def test_parallel_writers_lose_nothing(tmp_path):
    running = start_server(make_settings(tmp_path, threads=16, sqlite_synchronous="FULL"))
    try:
        clients = [running.login() for _ in range(4)]
        shared = create_item(clients[0], running, title="shared", type="task")

        def writer(n: int) -> list[int]:
            client = clients[n % len(clients)]
            ids = []
            for i in range(WRITES_EACH):
                res = client.post(
                    running.url("/api/v1/items"), json={"title": f"w{n}-{i}", "tags": [f"t{n % 3}"]}
                )
                assert res.status_code == 201, res.text
                ids.append(res.json()["id"])
                res = client.patch(
                    running.url(f"/api/v1/items/{shared['id']}"),
                    json={"body": f"{n}-{i}", "tags": [f"t{i % 4}"]},
                )
                assert res.status_code == 200, res.text
            return ids

        with ThreadPoolExecutor(WRITERS) as pool:
            all_ids = [i for ids in pool.map(writer, range(WRITERS)) for i in ids]
        assert len(set(all_ids)) == WRITERS * WRITES_EACH
        listed = clients[0].get(running.url("/api/v1/items"), params={"limit": 200})
        total = 0
        cursor = None
        while True:
            page = clients[0].get(
                running.url("/api/v1/items"), params={"limit": 200, **({"cursor": cursor} if cursor else {})}
            )
            total += len(page.json()["items"])
            cursor = page.json()["next_cursor"]
            if not cursor:
                break
        assert listed.status_code == 200 and total == WRITERS * WRITES_EACH + 1
        counts = {t["name"]: t["count"] for t in clients[0].get(running.url("/api/v1/tags")).json()["tags"]}
        assert sum(counts.values()) == WRITERS * WRITES_EACH + 1
        assert running.services.db.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        stop_server(running)


def test_parallel_uploads_of_the_same_image_share_one_blob(app):
    clients = [app.login() for _ in range(4)]
    item = create_item(clients[0], app)
    data = image_bytes("PNG", (200, 200), "teal")

    def up(n: int) -> str:
        while True:  # as a client should: beyond the parallel limit, wait as told and retry
            res = clients[n % 4].post(app.url(f"/api/v1/items/{item['id']}/attachments"),
                                      files={"file": ("x.png", data, "image/png")})
            if res.status_code != 429:
                break
            time.sleep(float(res.headers["Retry-After"]) / 10)
        assert res.status_code == 201, res.text
        return res.json()["hash"]

    with ThreadPoolExecutor(8) as pool:
        hashes = set(pool.map(up, range(16)))
    assert len(hashes) == 1
    assert len(list(app.services.blobs.all_digests())) == 2
