"""Export → wipe → import gives identical data; bad archives change nothing; CLI backup/restore."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile

from conftest import create_item, image_bytes


def everything(client, app):
    items = []
    cursor = None
    while True:
        params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        page = client.get(app.url("/api/v1/items"), params=params).json()
        items += [client.get(app.url(f"/api/v1/items/{i['id']}")).json() for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            return items, client.get(app.url("/api/v1/tags")).json()


def populate(client, app):
    a = create_item(client, app, title="Trip", body="pack **boots**", tags=["travel", "Home"])
    create_item(
        client, app, type="task", title="Renew passport", due="2027-01-05", priority=3, tags=["travel"]
    )
    img = image_bytes("PNG", (40, 40), "orange")
    client.post(
        app.url(f"/api/v1/items/{a['id']}/attachments"), files={"file": ("map.png", img, "image/png")}
    )


def test_export_wipe_import_is_identical(app, client):
    populate(client, app)
    before = everything(client, app)
    archive = client.get(app.url("/api/v1/export"))
    assert archive.status_code == 200
    assert archive.headers["Content-Type"] == "application/gzip"
    assert "attachment; filename=" in archive.headers["Content-Disposition"]
    for item in before[0]:
        client.delete(app.url(f"/api/v1/items/{item['id']}"))
    assert everything(client, app)[0] == []
    assert list(app.services.blobs.all_digests()) == []
    res = client.post(
        app.url("/api/v1/import"), data=archive.content, headers={"Content-Type": "application/gzip"}
    )
    assert res.status_code == 200, res.text
    assert res.json()["imported"] == {"items": 2, "attachments": 1}
    assert everything(client, app) == before
    att = before[0][-1]["attachments"][0]
    assert client.get(app.url(att["url"])).status_code == 200
    hits = client.get(app.url("/api/v1/search"), params={"q": "boots"}).json()["items"]
    assert [h["title"] for h in hits] == ["Trip"]


def _tar(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_bad_archives_are_refused_and_change_nothing(app, client):
    populate(client, app)
    before = everything(client, app)
    good = json.dumps({"format": "taskplaner-export", "version": 1, "items": [], "attachments": []}).encode()
    bad_item = json.dumps(
        {
            "format": "taskplaner-export",
            "version": 1,
            "attachments": [],
            "items": [{"id": 1, "type": "memo", "title": "x"}],
        }
    ).encode()
    missing_blob = json.dumps(
        {
            "format": "taskplaner-export",
            "version": 1,
            "items": [{"id": 1, "type": "note", "title": "x", "body": "", "created": "c", "updated": "u"}],
            "attachments": [
                {
                    "id": 1,
                    "item_id": 1,
                    "hash": "a" * 64,
                    "thumb_hash": "b" * 64,
                    "filename": "f",
                    "mime": "image/png",
                    "size": 1,
                    "width": 1,
                    "height": 1,
                    "created": "c",
                }
            ],
        }
    ).encode()
    cases = {
        "not gzip": b"hello",
        "traversal": _tar({"taskplaner.json": good, "../evil": b"x"}),
        "blob hash mismatch": _tar({"taskplaner.json": good, "blobs/aa/" + "a" * 64: b"x"}),
        "bad item": _tar({"taskplaner.json": bad_item}),
        "missing blob": _tar({"taskplaner.json": missing_blob}),
        "no data": _tar({"other.txt": b"x"}),
        "wrong format": _tar({"taskplaner.json": b'{"format": "other"}'}),
    }
    for name, data in cases.items():
        res = client.post(app.url("/api/v1/import"), data=data, headers={"Content-Type": "application/gzip"})
        assert res.status_code == 422, (name, res.text)
        assert res.json()["error"]["code"] == "bad_archive", name
    assert everything(client, app) == before
    assert list(app.services.blobs.tmp_dir.iterdir()) == []
    res = client.post(app.url("/api/v1/import"), data=b"x", headers={"Content-Type": "text/plain"})
    assert res.status_code == 415


def test_cli_backup_and_restore(app, client, tmp_path):
    populate(client, app)
    before = everything(client, app)
    env = {**os.environ, "TASKPLANER_DATA_DIR": str(app.services.settings.data_dir)}
    archive = tmp_path / "backup.tar.gz"
    run = lambda *args: subprocess.run(
        [sys.executable, "-m", "taskplaner", *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert run("backup", str(archive)).returncode == 0
    for item in before[0]:
        client.delete(app.url(f"/api/v1/items/{item['id']}"))
    result = run("restore", str(archive))
    assert result.returncode == 0, result.stderr
    assert "restored 2 items and 1 attachments" in result.stderr
    assert everything(client, app) == before
    check = run("check")
    assert check.returncode == 0 and "ok" in check.stderr
