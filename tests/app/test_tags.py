"""Tags: counts, case-insensitivity, rename, merge, delete — and search follows."""

from __future__ import annotations

from conftest import create_item


def tags(client, app):
    return client.get(app.url("/api/v1/tags")).json()["tags"]


def test_tags_are_listed_with_counts_case_insensitively(app, client):
    create_item(client, app, tags=["Work", "urgent"])
    create_item(client, app, tags=["work"])
    assert tags(client, app) == [{"name": "urgent", "count": 1}, {"name": "Work", "count": 2}]


def test_rename_updates_items_and_search(app, client):
    item = create_item(client, app, title="report", tags=["wrk"])
    res = client.patch(app.url("/api/v1/tags/wrk"), json={"name": "work"})
    assert res.status_code == 200 and res.json() == {"name": "work", "count": 1}
    assert client.get(app.url(f"/api/v1/items/{item['id']}")).json()["tags"] == ["work"]
    hits = client.get(app.url("/api/v1/search"), params={"q": "tag:work"}).json()["items"]
    assert [h["id"] for h in hits] == [item["id"]]
    words = client.get(app.url("/api/v1/search"), params={"q": "work"}).json()["items"]
    assert [h["id"] for h in words] == [item["id"]]


def test_rename_onto_existing_tag_needs_merge(app, client):
    a = create_item(client, app, title="a", tags=["todo"])
    b = create_item(client, app, title="b", tags=["todos", "todo"])
    c = create_item(client, app, title="c", tags=["todos"])
    res = client.patch(app.url("/api/v1/tags/todos"), json={"name": "todo"})
    assert res.status_code == 409 and res.json()["error"]["code"] == "conflict"
    res = client.patch(app.url("/api/v1/tags/todos"), json={"name": "TODO", "merge": True})
    assert res.status_code == 200 and res.json()["count"] == 3
    assert tags(client, app) == [{"name": "todo", "count": 3}]
    for item in (a, b, c):
        assert client.get(app.url(f"/api/v1/items/{item['id']}")).json()["tags"] == ["todo"]


def test_delete_tag_keeps_items(app, client):
    item = create_item(client, app, title="keep me", tags=["old", "new"])
    assert client.delete(app.url("/api/v1/tags/old")).status_code == 204
    assert client.get(app.url(f"/api/v1/items/{item['id']}")).json()["tags"] == ["new"]
    assert client.delete(app.url("/api/v1/tags/old")).status_code == 404


def test_unicode_tag_names_round_trip(app, client):
    create_item(client, app, tags=["café", "日本"])
    assert {t["name"] for t in tags(client, app)} == {"café", "日本"}
    res = client.patch(app.url("/api/v1/tags/café"), json={"name": "cafés"})
    assert res.status_code == 200, res.text
    assert client.patch(app.url("/api/v1/tags/x"), json={"name": "bad name"}).status_code == 422
    assert client.patch(app.url("/api/v1/tags/nope"), json={"name": "ok"}).status_code == 404


def test_removing_last_use_drops_the_tag(app, client):
    item = create_item(client, app, tags=["once"])
    client.patch(app.url(f"/api/v1/items/{item['id']}"), json={"tags": []})
    assert tags(client, app) == []
