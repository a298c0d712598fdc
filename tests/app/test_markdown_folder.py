"""Notes you can take with you: the Markdown folder export reads well anywhere, imports back
into an empty TaskPlaner as the same items, and a second import adds nothing."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile

import yaml

from conftest import create_item, image_bytes, make_settings, start_server, stop_server


def export_zip(client, app) -> zipfile.ZipFile:
    res = client.get(app.url("/api/v1/export/markdown"))
    assert res.status_code == 200 and res.headers["Content-Type"] == "application/zip"
    assert res.headers["Content-Disposition"].startswith('attachment; filename="taskplaner-markdown-')
    return zipfile.ZipFile(io.BytesIO(res.content))


def import_zip(client, app, data: bytes):
    return client.post(app.url("/api/v1/import/markdown"), data=data,
                       headers={"Content-Type": "application/zip"})


def front(text: str) -> tuple[dict, str]:
    _, meta, body = text.split("---\n", 2)
    return yaml.safe_load(meta), body


def populate(client, app):
    note = create_item(client, app, title="Trip: Lisbon/Porto", body="pack *boots*\n", tags=["travel"])
    tram = ("tram.png", image_bytes("PNG", (30, 20), "gold"), "image/png")
    picture = client.post(app.url(f"/api/v1/items/{note['id']}/attachments"),
                          files={"file": tram}).json()
    client.patch(app.url(f"/api/v1/items/{note['id']}"),
                 json={"body": f"pack *boots*\n\n![tram]({picture['url']})\n", "pinned": True})
    create_item(client, app, type="task", title="Renew passport", due="2027-01-05", due_time="09:30",
                priority=3, repeat="FREQ=YEARLY;INTERVAL=10", tags=["admin", "travel"])
    create_item(client, app, title="Trip: Lisbon/Porto", body="a second note with the same title")
    create_item(client, app, title="", body="只有正文的笔记")
    return picture


def comparable(client, app):
    items = client.get(app.url("/api/v1/items"), params={"limit": 100}).json()["items"]
    out = []
    for listed in items:
        item = client.get(app.url(f"/api/v1/items/{listed['id']}")).json()
        item["attachments"] = [(a["hash"], a["filename"]) for a in item["attachments"]]
        for key in ("id", "next_id", "completed"):
            item.pop(key, None)
        out.append(item)
    return sorted(out, key=lambda i: (i["created"], i["title"]))


def test_the_export_is_a_readable_folder_and_imports_back_the_same(app, client, tmp_path):
    picture = populate(client, app)
    archive = export_zip(client, app)
    names = sorted(archive.namelist())
    assert names == sorted([
        "Trip Lisbon Porto.md", "Trip Lisbon Porto (3).md", "Renew passport.md", "只有正文的笔记.md",
        f"files/{picture['hash']}.png"])
    meta, body = front(archive.read("Renew passport.md").decode())
    assert meta == {"id": 2, "type": "task", "title": "Renew passport", "status": "open",
                    "due": "2027-01-05", "due_time": "09:30", "priority": 3,
                    "repeat": "FREQ=YEARLY;INTERVAL=10", "tags": ["admin", "travel"],
                    "created": meta["created"], "updated": meta["updated"]}
    meta, body = front(archive.read("Trip Lisbon Porto.md").decode())
    assert meta["pinned"] is True
    assert meta["attachments"] == [{"file": f"files/{picture['hash']}.png", "name": "tram.png"}]
    assert body == f"pack *boots*\n\n![tram](files/{picture['hash']}.png)\n"
    assert archive.read(f"files/{picture['hash']}.png")[:4] == b"\x89PNG"

    data = client.get(app.url("/api/v1/export/markdown")).content
    before = comparable(client, app)
    fresh = start_server(make_settings(tmp_path / "fresh"))
    try:
        other = fresh.login()
        report = import_zip(other, fresh, data).json()
        assert report["counts"] == {"imported": 4, "skipped": 0}, report
        assert comparable(other, fresh) == before
        again = import_zip(other, fresh, data).json()
        assert again["counts"] == {"imported": 0, "skipped": 4}
        assert {s["reason"].split(" (")[0] for s in again["skipped"]} == {"already imported"}
    finally:
        stop_server(fresh)
    # back into the TaskPlaner it came from: every item is still here
    here = import_zip(client, app, data).json()
    assert here["counts"] == {"imported": 0, "skipped": 4}
    assert {s["reason"].split(" (")[0] for s in here["skipped"]} == {"already here"}


def test_an_obsidian_folder_imports_with_titles_tags_and_images(app, tmp_path):
    vault = tmp_path / "vault"
    (vault / "daily").mkdir(parents=True)
    (vault / "attachments").mkdir()
    (vault / ".obsidian").mkdir()
    (vault / ".obsidian" / "workspace.md").write_text("# not a note")
    (vault / "attachments" / "cat.png").write_bytes(image_bytes("PNG", (20, 20), "black"))
    (vault / "attachments" / "notes.txt").write_text("not an image")
    (vault / "Recipes.md").write_text(
        "# Pancakes\n\nflour, #baking and #Breakfast\n\n```\n#not-a-tag\n```\n"
        "![cat](attachments/cat.png) ![gone](attachments/missing.png) ![txt](attachments/notes.txt)\n")
    (vault / "daily" / "2026-12-01.md").write_text(
        "---\ntags: journal, work\ndue: 2026-12-24\nstatus: open\ndue_time: 9:30\n---\nwrite the report\n")
    (vault / "empty.md").write_text("")
    (vault / "latin1.md").write_bytes("caf\xe9".encode("latin-1"))
    (vault / "broken.md").write_text("---\ntags: [unclosed\n---\ntext\n")
    (vault / "bad task.md").write_text("---\ntype: task\npriority: 9\n---\ntext\n")
    (vault / "image.png").write_bytes(b"\x89PNG not markdown")
    env = {**os.environ, "TASKPLANER_DATA_DIR": str(app.services.settings.data_dir)}
    run = subprocess.run([sys.executable, "-m", "taskplaner", "import-markdown", str(vault)],
                         env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stderr.splitlines()[-1] == "imported 3 notes, skipped 3", run.stderr
    assert "skipped latin1.md: not UTF-8 text" in run.stderr
    assert "skipped broken.md: the front matter is not YAML" in run.stderr
    assert "skipped bad task.md: priority must be a whole number from 0 to 3" in run.stderr
    client = app.login()
    items = {i["title"]: client.get(app.url(f"/api/v1/items/{i['id']}")).json()
             for i in client.get(app.url("/api/v1/items")).json()["items"]}
    assert set(items) == {"Pancakes", "2026-12-01", "empty"}  # an empty file is a title
    pancakes = items["Pancakes"]
    assert set(pancakes["tags"]) == {"baking", "Breakfast"}
    assert [a["filename"] for a in pancakes["attachments"]] == ["cat.png"]
    assert f"![cat]({pancakes['attachments'][0]['url']})" in pancakes["body"]
    assert "![gone](attachments/missing.png)" in pancakes["body"]  # left as written
    daily = items["2026-12-01"]
    assert (daily["type"], daily["due"], daily["due_time"], daily["tags"]) == (
        "task", "2026-12-24", "09:30", ["journal", "work"])
    # the folder again: nothing new
    again = subprocess.run([sys.executable, "-m", "taskplaner", "import-markdown", str(vault)],
                           env=env, capture_output=True, text=True, timeout=60)
    assert again.stderr.splitlines()[-1] == "imported 0 notes, skipped 6"


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return out.getvalue()


def test_hostile_archives_get_clear_answers_and_change_nothing_else(app, client):
    assert import_zip(client, app, b"not a zip").status_code == 400
    res = client.post(app.url("/api/v1/import/markdown"), data=b"x", headers={"Content-Type": "text/plain"})
    assert res.status_code == 415
    laughs = "a: &a [x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True))
    huge = b"x" * (app.services.settings.max_body_chars * 4 + 20_000)
    report = import_zip(client, app, _zip({
        "../../../etc/evil.md": b"# Escaped\ntext",
        "bomb.md": b"0" * 0 + huge,
        "laughs.md": f"---\n{laughs}tags: *i\ntitle: *i\n---\nbody".encode(),
        "dir/../fine.md": b"fine",
    })).json()
    assert report["counts"] == {"imported": 2, "skipped": 2}, report
    assert {e["file"] for e in report["imported"]} == {"etc/evil.md", "fine.md"}
    assert report["skipped"] == [{"file": "bomb.md", "reason": "larger than a note can be"},
                                 {"file": "laughs.md", "reason": "title must be a string"}]
    titles = {i["title"] for i in client.get(app.url("/api/v1/items")).json()["items"]}
    assert titles == {"Escaped", "fine"}
