"""Items through the HTTP API: create, read, list with pagination, update, delete."""

from __future__ import annotations

from conftest import create_item, image_bytes


def test_create_note_returns_it_with_location(app, client):
    res = client.post(
        app.url("/api/v1/items"), json={"title": "Groceries", "body": "milk\neggs", "tags": ["home", "Shop"]}
    )
    assert res.status_code == 201
    item = res.json()
    assert res.headers["Location"] == f"/api/v1/items/{item['id']}"
    assert item["type"] == "note" and item["title"] == "Groceries"
    assert item["tags"] == ["home", "Shop"]
    assert "status" not in item
    fetched = client.get(app.url(f"/api/v1/items/{item['id']}")).json()
    assert fetched["body"] == "milk\neggs" and fetched["attachments"] == []


def test_task_defaults_to_open_and_can_be_done(app, client):
    task = create_item(client, app, type="task", title="Pay rent", due="2026-12-01", priority=2)
    assert task["status"] == "open" and task["due"] == "2026-12-01" and task["priority"] == 2
    res = client.patch(app.url(f"/api/v1/items/{task['id']}"), json={"status": "done"})
    assert res.status_code == 200 and res.json()["status"] == "done"
    assert res.json()["updated"] >= task["updated"]


def test_turning_a_task_into_a_note_clears_task_fields(app, client):
    task = create_item(client, app, type="task", title="x", due="2026-01-01")
    note = client.patch(app.url(f"/api/v1/items/{task['id']}"), json={"type": "note"}).json()
    assert note["type"] == "note" and "status" not in note and "due" not in note


def test_list_is_newest_first_with_keyset_pagination(app, client):
    ids = [create_item(client, app, title=f"n{i}")["id"] for i in range(7)]
    seen, cursor = [], None
    while True:
        params = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = client.get(app.url("/api/v1/items"), params=params).json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))


def test_list_filters_by_type_status_and_tag(app, client):
    create_item(client, app, title="plain note", tags=["work"])
    t = create_item(client, app, type="task", title="work task", tags=["Work"])
    create_item(client, app, type="task", title="home task", tags=["home"])
    client.patch(app.url(f"/api/v1/items/{t['id']}"), json={"status": "done"})
    get = lambda **p: [i["title"] for i in client.get(app.url("/api/v1/items"), params=p).json()["items"]]
    assert get(type="task") == ["home task", "work task"]
    assert get(status="done") == ["work task"]
    assert get(tag="WORK") == ["work task", "plain note"]
    assert get(type="task", tag="work") == ["work task"]


def test_delete_item_then_404(app, client):
    item = create_item(client, app)
    assert client.delete(app.url(f"/api/v1/items/{item['id']}")).status_code == 204
    res = client.get(app.url(f"/api/v1/items/{item['id']}"))
    assert res.status_code == 404 and res.json()["error"]["code"] == "not_found"


def test_bad_input_gets_json_errors_with_the_field(app, client):
    url = app.url("/api/v1/items")
    cases = [
        ({"title": ""}, 422, "title"),
        ({"title": "x", "type": "memo"}, 422, "type"),
        ({"title": "x", "type": "task", "status": "later"}, 422, "status"),
        ({"title": "x", "type": "task", "due": "tomorrow"}, 422, "due"),
        ({"title": "x", "type": "task", "priority": 9}, 422, "priority"),
        ({"title": "x", "type": "task", "priority": True}, 422, "priority"),
        ({"title": "x", "tags": "notalist"}, 422, "tags"),
        ({"title": "x", "tags": ["has space"]}, 422, "tags"),
        ({"title": "x", "owner": "me"}, 422, "owner"),
        ({"title": 5}, 422, "title"),
        ({"title": "x" * 501}, 422, "title"),
        ({"title": "note", "status": "done"}, 422, "status"),
    ]
    for body, status, field in cases:
        res = client.post(url, json=body)
        assert res.status_code == status, (body, res.text)
        assert res.json()["error"]["field"] == field, body
    assert client.post(url, data="{not json", headers={"Content-Type": "application/json"}).status_code == 400
    assert client.post(url, data="[1]", headers={"Content-Type": "application/json"}).status_code == 400
    assert client.post(url, data="title=x").status_code == 415
    huge = '{"title": "' + "x" * (2 * 1024 * 1024) + '"}'
    res = client.post(url, data=huge, headers={"Content-Type": "application/json"})
    assert res.status_code == 413 and res.json()["error"]["code"] == "too_large"


def test_bad_ids_and_cursors_are_4xx_not_500(app, client):
    assert client.get(app.url("/api/v1/items/99999999999999999999999")).status_code == 404
    assert client.get(app.url("/api/v1/items/abc")).status_code == 404
    assert client.get(app.url("/api/v1/items"), params={"cursor": "%%%"}).status_code == 400
    assert client.get(app.url("/api/v1/items"), params={"limit": "0"}).status_code == 400
    assert client.get(app.url("/api/v1/items"), params={"limit": "x"}).status_code == 400
    assert client.get(app.url("/api/v1/items"), params={"type": "x"}).status_code == 422
    res = client.put(app.url("/api/v1/items"))
    assert res.status_code == 405 and res.json()["error"]["code"] == "method_not_allowed"
    res = client.get(app.url("/nowhere"))
    assert res.status_code == 404 and res.headers["Content-Type"].startswith("application/json")


def test_control_characters_are_removed_from_text(app, client):
    item = create_item(client, app, title="a\x00b\x02c", body="line\x1b\nnext\ttab")
    assert item["title"] == "abc" and item["body"] == "line\nnext\ttab"


def test_listed_items_equal_the_items_read_one_by_one(app, client):
    """The list builds its items apart from the single read (one query for the page, counts
    instead of attachments); every field must come out the same."""
    tricky = [
        {"title": 'quotes " and \\ backslash', "body": "line\nbreak\ttab 🦊 ü 東京 \u2028"},
        {"type": "task", "title": "task", "due": "2026-12-01", "priority": 3, "tags": ["Ä-b", "z"]},
        {"type": "task", "title": "done", "status": "done"},
        {"body": "only a body, {\"json\": [1, 2]}"},
    ]
    for fields in tricky:
        create_item(client, app, **fields)
    with_image = create_item(client, app, title="with an image")
    upload = client.post(
        app.url(f"/api/v1/items/{with_image['id']}/attachments"),
        files={"file": ("a.png", image_bytes(), "image/png")},
    )
    assert upload.status_code == 201, upload.text

    listed = client.get(app.url("/api/v1/items")).json()["items"]
    assert len(listed) == len(tricky) + 1
    for item in listed:
        single = client.get(app.url(f"/api/v1/items/{item['id']}")).json()
        attachments = single.pop("attachments")
        assert item.pop("attachment_count") == len(attachments)
        assert item == single
    assert [i["id"] for i in listed] == sorted((i["id"] for i in listed), reverse=True)
