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
    # planning fields, and a completed repeating task with the occurrence it created
    weekly = create_item(client, app, type="task", title="Bins", due="2027-01-04", due_time="07:30",
                         repeat="FREQ=WEEKLY;BYDAY=MO", repeat_from="done", pinned=True)
    client.patch(app.url(f"/api/v1/items/{weekly['id']}"), json={"status": "done"})
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
    assert res.json()["imported"] == {"items": 4, "attachments": 1}
    assert everything(client, app) == before
    assert {i["title"]: i.get("next_id") is not None for i in before[0]}["Bins"] is True
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
    assert "restored 4 items and 1 attachments" in result.stderr
    assert everything(client, app) == before
    check = run("check")
    assert check.returncode == 0 and "ok" in check.stderr


def _v2(items: list, attachments: list, blobs: dict[str, bytes] | None = None,
        manifest: dict | None = None) -> bytes:
    lines = lambda rows: "".join(json.dumps(r) + "\n" for r in rows).encode()
    manifest = manifest or {"format": "taskplaner-export", "version": 2}
    members = {"taskplaner.json": json.dumps(manifest).encode(), "attachments.jsonl": lines(attachments)}
    members.update({f"blobs/{h[:2]}/{h}": data for h, data in (blobs or {}).items()})
    members["items.jsonl"] = lines(items)
    return _tar(members)


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


NOTE = {"id": 1, "type": "note", "title": "x", "body": "", "created": "c", "updated": "u"}


def _attachment(**fields):
    img = image_bytes("PNG", (8, 8))
    row = {"id": 1, "item_id": 1, "hash": _sha(img), "thumb_hash": _sha(img), "filename": "f",
           "mime": "image/png", "size": len(img), "width": 8, "height": 8, "created": "c"}
    row.update(fields)
    return row, img


def test_import_refuses_bad_shapes_and_leaves_no_file(app, client):
    populate(client, app)
    before = everything(client, app)
    blobs_before = sorted(app.services.blobs.all_digests())
    row, img = _attachment()
    big = b"\0" * (app.services.settings.max_upload_bytes + 1)
    cases = {
        "tags not a list": _v2([{**NOTE, "tags": 5}], []),
        "item id not a number": _v2([{**NOTE, "id": "abc"}], []),
        "item id huge": _v2([{**NOTE, "id": 10**30}], []),
        "item ids repeat": _v2([NOTE, NOTE], []),
        "attachment item_id a list": _v2([NOTE], [_attachment(item_id=[1])[0]], {row["hash"]: img}),
        "attachment size null": _v2([NOTE], [_attachment(size=None)[0]], {row["hash"]: img}),
        "attachment ids repeat": _v2([NOTE], [row, {**row, "thumb_hash": row["hash"]}], {row["hash"]: img}),
        "attachment of no item": _v2([NOTE], [_attachment(item_id=7)[0]], {row["hash"]: img}),
        "unreferenced member": _v2([NOTE], [row], {row["hash"]: img, _sha(b"junk"): b"junk"}),
        "member over the upload limit": _v2([NOTE], [_attachment(hash=_sha(big))[0]],
                                            {_sha(big): big, row["hash"]: img}),
        "items before blobs": _tar({"taskplaner.json": b'{"format": "taskplaner-export", "version": 2}',
                                    "items.jsonl": b"", "attachments.jsonl": b""}),
        "deep json line": _tar({
            "taskplaner.json": b'{"format": "taskplaner-export", "version": 2}',
            "attachments.jsonl": b"[" * 10_000 + b"]" * 10_000 + b"\n", "items.jsonl": b""}),
        "surrogate in a title": _tar({
            "taskplaner.json": b'{"format": "taskplaner-export", "version": 2}', "attachments.jsonl": b"",
            "items.jsonl": b'{"id": 1, "type": "note", "title": "\\ud800", "created": "c"}\n'}),
        "big manifest": _v2([], [], manifest={"format": "taskplaner-export", "version": 2,
                                              "pad": "x" * 70_000}),
        "version 3": _v2([], [], manifest={"format": "taskplaner-export", "version": 3}),
    }
    for name, data in cases.items():
        res = client.post(app.url("/api/v1/import"), data=data, headers={"Content-Type": "application/gzip"})
        assert res.status_code == 422, (name, res.text)
        assert res.json()["error"]["code"] == "bad_archive", name
        assert list(app.services.blobs.tmp_dir.iterdir()) == [], name
        assert sorted(app.services.blobs.all_digests()) == blobs_before, name
    assert everything(client, app) == before


def test_version_1_archives_still_import(app, client):
    row, img = _attachment()
    archive = _tar({"taskplaner.json": json.dumps({
        "format": "taskplaner-export", "version": 1, "items": [{**NOTE, "tags": ["old"]}],
        "attachments": [row]}).encode(), f"blobs/{row['hash'][:2]}/{row['hash']}": img})
    res = client.post(app.url("/api/v1/import"), data=archive, headers={"Content-Type": "application/gzip"})
    assert res.status_code == 200, res.text
    assert res.json()["imported"] == {"items": 1, "attachments": 1}
    item = client.get(app.url("/api/v1/items/1")).json()
    assert item["tags"] == ["old"] and item["attachments"][0]["hash"] == row["hash"]


def test_an_export_streams_as_manifest_attachments_blobs_items(app, client):
    populate(client, app)
    res = client.get(app.url("/api/v1/export"))
    with tarfile.open(fileobj=io.BytesIO(res.content), mode="r:gz") as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("taskplaner.json").read())
        items = tar.extractfile("items.jsonl").read().decode().splitlines()
    assert names[:2] == ["taskplaner.json", "attachments.jsonl"] and names[-1] == "items.jsonl"
    assert all(n.startswith("blobs/") for n in names[2:-1]) and len(names) == 5
    assert manifest["version"] == 2 and manifest["counts"] == {"items": 4, "attachments": 1}
    assert len(items) == 4
    assert {json.loads(line)["title"] for line in items} == {"Trip", "Renew passport", "Bins"}


def test_cli_restore_says_what_is_wrong_in_one_line(app, tmp_path):
    env = {**os.environ, "TASKPLANER_DATA_DIR": str(app.services.settings.data_dir)}
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(_tar({"taskplaner.json": b'{"format": "taskplaner-export", "version": 2}',
                          "attachments.jsonl": b"{}\n", "items.jsonl": b""}))
    for path in (tmp_path / "missing.tar.gz", bad, tmp_path):
        result = subprocess.run([sys.executable, "-m", "taskplaner", "restore", str(path)], env=env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 1, (path, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("taskplaner: "), result.stderr
        assert "Traceback" not in result.stderr
