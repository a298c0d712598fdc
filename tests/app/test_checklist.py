"""Checklists in notes: boxes are found as markdown-it finds list items, ticking changes only
that box's marker, and a box that changed meanwhile is never ticked (409)."""

from __future__ import annotations

import re

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from conftest import create_item
from taskplaner.checklist import boxes, set_box
from taskplaner.markdown import parse, render

NOTE = ("Packing\r\n\r\n- [ ] passport\r\n- [x] charger\r\n  1. [ ] socks\r\n\r\n"
        "```\r\n- [ ] in code\r\n```\r\n")


def data_checks(html: str) -> list[str]:
    return re.findall(r'data-check="([^"]+)"', html)


def tick(client, app, item_id, index, done, fingerprint):
    return client.post(app.url(f"/api/v1/items/{item_id}/checklist"),
                       json={"index": index, "done": done, "fingerprint": fingerprint})


def test_ticking_changes_only_that_box_and_a_retry_changes_nothing(app, client):
    note = create_item(client, app, title="Trip", body=NOTE)
    card = client.get(app.url(f"/ui/items/{note['id']}")).text
    checks = data_checks(card)
    assert len(checks) == 3  # not the one in the code block
    assert card.count('type="checkbox"') == 3 and card.count("checked") == 1
    index, fingerprint = checks[2].split(":")
    res = tick(client, app, note["id"], int(index), True, fingerprint)
    assert res.status_code == 200, res.text
    assert res.json()["body"] == NOTE.replace("1. [ ] socks", "1. [x] socks")
    assert tick(client, app, note["id"], 2, True, fingerprint).json()["body"] == res.json()["body"]
    first = checks[1].split(":")
    assert tick(client, app, note["id"], 1, False, first[1]).json()["body"] == NOTE.replace(
        "1. [ ] socks", "1. [x] socks").replace("- [x] charger", "- [ ] charger")


def test_a_box_that_changed_meanwhile_is_not_ticked(app, client):
    note = create_item(client, app, title="List", body="- [ ] milk\n- [ ] bread\n")
    _, bread = data_checks(client.get(app.url(f"/ui/items/{note['id']}")).text)[1].split(":")
    # another tab inserts a line above: box 1 is now "milk"
    changed = "- [ ] eggs\n- [ ] milk\n- [ ] bread\n"
    client.patch(app.url(f"/api/v1/items/{note['id']}"), json={"body": changed})
    res = tick(client, app, note["id"], 1, True, bread)
    assert res.status_code == 409 and res.json()["error"]["code"] == "conflict"
    assert client.get(app.url(f"/api/v1/items/{note['id']}")).json()["body"] == changed
    assert tick(client, app, note["id"], 2, True, bread).status_code == 200


def test_bad_tick_requests_are_refused_by_name(app, client):
    note = create_item(client, app, title="List", body="- [ ] milk\n")
    for body, status in [({"index": -1, "done": True, "fingerprint": "x"}, 422),
                         ({"index": True, "done": True, "fingerprint": "x"}, 422),
                         ({"index": 0, "done": "yes", "fingerprint": "x"}, 422),
                         ({"index": 0, "done": True}, 422),
                         ({"index": 0, "done": True, "fingerprint": "x", "more": 1}, 422),
                         ({"index": 7, "done": True, "fingerprint": "x"}, 409),
                         ([], 422)]:
        res = client.post(app.url(f"/api/v1/items/{note['id']}/checklist"), json=body)
        assert res.status_code == status, (body, res.text)
    assert tick(client, app, 999, 0, True, "x").status_code == 404


def test_the_editor_preview_shows_boxes_that_cannot_be_ticked():
    assert render("- [ ] a").count("disabled") == 1
    assert "disabled" not in render("- [ ] a", checkable=True)
    assert 'type="text"' not in render("- [ ] <input type=text>", checkable=True)


ITEM = st.tuples(st.sampled_from(["- ", "* ", "1. ", "  - ", "> - "]), st.sampled_from(["[ ]", "[x]", "[X]"]),
                 st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12))
LINE = st.one_of(ITEM.map(lambda t: f"{t[0]}{t[1]} {t[2]}"), st.text(max_size=20))


@settings(max_examples=300, deadline=None)
@given(st.lists(LINE, max_size=8), st.sampled_from(["\n", "\r\n"]), st.booleans(), st.data())
def test_ticking_any_box_changes_its_marker_and_nothing_else(lines, newline, done, data):
    body = newline.join(lines)
    found = list(boxes(parse(body)))
    assume(found)
    box = data.draw(st.sampled_from(found))
    try:
        changed = set_box(body, parse(body), box.index, done, box.fingerprint)
    except Exception as exc:  # a box on a line the marker pattern cannot place is refused
        assert getattr(exc, "status", None) == 409
        return
    after = list(boxes(parse(changed)))
    assert [(b.index, b.fingerprint) for b in after] == [(b.index, b.fingerprint) for b in found]
    assert [b.done for b in after] == [done if b.index == box.index else b.done for b in found]
    assert len(changed) == len(body)
    diff = [i for i, (a, b) in enumerate(zip(body, changed, strict=True)) if a != b]
    assert len(diff) <= 1
