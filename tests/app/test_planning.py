"""Planning over HTTP: pinned items, repeating tasks, the agenda in the user's time zone,
quick add, the calendar feed and its token, and the due:/is: search filters."""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar
import pytest

from conftest import create_item
from taskplaner.db import MIGRATIONS, Database, _split_sql, integrity_problems


def today_in(zone: str = "UTC") -> date:
    return datetime.now(ZoneInfo(zone)).date()


def days(n: int) -> str:
    return (today_in() + timedelta(days=n)).isoformat()


def patch(client, app, item_id, **fields):
    res = client.patch(app.url(f"/api/v1/items/{item_id}"), json=fields)
    assert res.status_code == 200, res.text
    return res.json()


def titles(page):
    return [i["title"] for i in page["items"]]


# --- pinned -----------------------------------------------------------------------------------

def test_pinned_items_lead_the_list_and_pages_show_each_item_once(app, client):
    ids = [create_item(client, app, title=f"n{i}")["id"] for i in range(7)]
    patch(client, app, ids[1], pinned=True)
    patch(client, app, ids[4], pinned=True)
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get(app.url("/api/v1/items"), params=params).json()
        seen += [(i["title"], i["pinned"]) for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [("n4", True), ("n1", True), ("n6", False), ("n5", False), ("n3", False),
                    ("n2", False), ("n0", False)]
    tasks = client.get(app.url("/api/v1/items"), params={"limit": 1}).json()
    assert titles(tasks) == ["n4"]


def test_the_list_uses_an_index_for_pinned_first(app):
    conn = app.services.db.conn
    for sql in ("SELECT * FROM items ORDER BY pinned DESC, id DESC LIMIT 30",
                "SELECT * FROM items WHERE type = 'task' AND status = 'open'"
                " ORDER BY pinned DESC, id DESC LIMIT 30"):
        plan = " ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql))
        assert "USING INDEX" in plan and "TEMP B-TREE" not in plan, plan


# --- repeating tasks --------------------------------------------------------------------------

def test_completing_a_repeating_task_creates_the_next_one_once(app, client):
    task = create_item(client, app, type="task", title="Water plants", due=days(-1),
                       repeat="FREQ=DAILY", tags=["home"], priority=2, due_time="08:00")
    done = patch(client, app, task["id"], status="done")
    assert done["status"] == "done" and done["completed"] and done["next_id"]
    following = client.get(app.url(f"/api/v1/items/{done['next_id']}")).json()
    assert {k: following[k] for k in ("title", "status", "due", "due_time", "repeat", "tags",
                                      "priority")} == {
        "title": "Water plants", "status": "open", "due": days(1), "due_time": "08:00",
        "repeat": "FREQ=DAILY", "tags": ["home"], "priority": 2}
    # ticked again, reopened and ticked: still one next occurrence
    patch(client, app, task["id"], status="done")
    patch(client, app, task["id"], status="open")
    again = patch(client, app, task["id"], status="done")
    assert again["next_id"] == done["next_id"]
    assert len(client.get(app.url("/api/v1/items"), params={"type": "task"}).json()["items"]) == 2


def test_a_double_click_creates_one_next_occurrence(app, client):
    task = create_item(client, app, type="task", title="Pay rent", due=days(0), repeat="FREQ=MONTHLY")
    barrier = threading.Barrier(6)
    answers = []

    def tick():
        barrier.wait()
        answers.append(client.patch(app.url(f"/api/v1/items/{task['id']}"), json={"status": "done"}))

    threads = [threading.Thread(target=tick) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in answers] == [200] * 6
    assert len({r.json()["next_id"] for r in answers}) == 1
    items = client.get(app.url("/api/v1/items"), params={"type": "task"}).json()["items"]
    assert sorted(i["status"] for i in items) == ["done", "open"]


def test_repeating_from_completion_counts_from_today(app, client):
    task = create_item(client, app, type="task", title="Haircut", due=days(-20),
                       repeat="FREQ=WEEKLY;INTERVAL=4", repeat_from="done")
    following = client.get(app.url(
        f"/api/v1/items/{patch(client, app, task['id'], status='done')['next_id']}")).json()
    assert following["due"] == days(28)


def test_a_late_weekly_task_comes_back_on_its_weekday(app, client):
    anchor = today_in() - timedelta(days=17)
    code = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")[anchor.weekday()]
    task = create_item(client, app, type="task", title="Bins", due=anchor.isoformat(),
                       repeat=f"FREQ=WEEKLY;BYDAY={code}")
    due = date.fromisoformat(client.get(app.url(
        f"/api/v1/items/{patch(client, app, task['id'], status='done')['next_id']}")).json()["due"])
    assert due.weekday() == anchor.weekday() and 0 < (due - today_in()).days <= 7


@pytest.mark.parametrize(("fields", "field"), [
    ({"repeat": "FREQ=HOURLY"}, "repeat"),
    ({"repeat": "FREQ=DAILY;BYDAY=MO"}, "repeat"),
    ({"repeat": "FREQ=WEEKLY;INTERVAL=0"}, "repeat"),
    ({"repeat": "FREQ=WEEKLY;COUNT=3"}, "repeat"),
    ({"repeat": 7}, "repeat"),
    ({"repeat_from": "start"}, "repeat_from"),
    ({"due_time": "9:00", "due": "2027-01-01"}, "due_time"),
    ({"due_time": "24:00", "due": "2027-01-01"}, "due_time"),
    ({"due_time": "09:00"}, "due_time"),
    ({"pinned": "yes"}, "pinned"),
])
def test_bad_planning_fields_are_refused_by_name(app, client, fields, field):
    res = client.post(app.url("/api/v1/items"), json={"type": "task", "title": "x", **fields})
    assert res.status_code == 422, res.text
    assert res.json()["error"]["field"] == field


def test_a_note_has_no_task_fields_and_a_task_turned_note_loses_them(app, client):
    res = client.post(app.url("/api/v1/items"), json={"title": "x", "repeat": "FREQ=DAILY"})
    assert res.status_code == 422 and res.json()["error"]["field"] == "repeat"
    task = create_item(client, app, type="task", title="t", due="2027-01-01", due_time="10:00",
                       repeat="FREQ=DAILY", pinned=True)
    note = patch(client, app, task["id"], type="note")
    assert note["pinned"] is True and "repeat" not in note and "due_time" not in note
    row = app.services.db.conn.execute("SELECT repeat, due_time, due FROM items WHERE id = ?",
                                       (task["id"],)).fetchone()
    assert tuple(row) == (None, None, None)


# --- agenda and time zone ---------------------------------------------------------------------

def test_the_agenda_sorts_open_tasks_by_day_in_the_users_zone(app, client):
    # 25 hours apart: at any moment these two zones are on different dates
    for zone in ("Pacific/Kiritimati", "Pacific/Pago_Pago"):
        res = client.patch(app.url("/api/v1/settings"), json={"timezone": zone})
        assert res.status_code == 200 and res.json()["timezone"] == zone
        assert client.get(app.url("/api/v1/agenda")).json()["today"] == today_in(zone).isoformat()
    client.patch(app.url("/api/v1/settings"), json={"timezone": "UTC"})
    made = {}
    for title, due in [("late", days(-3)), ("now", days(0)), ("soon", days(7)),
                       ("far", days(8)), ("someday", None), ("sooner", days(2))]:
        made[title] = create_item(client, app, type="task", title=title, due=due)
    patch(client, app, create_item(client, app, type="task", title="finished", due=days(0))["id"],
          status="done")
    create_item(client, app, title="a note")
    agenda = client.get(app.url("/api/v1/agenda")).json()
    assert [(s["name"], s["count"], titles(s)) for s in agenda["sections"]] == [
        ("overdue", 1, ["late"]), ("today", 1, ["now"]), ("week", 2, ["sooner", "soon"]),
        ("later", 1, ["far"]), ("nodate", 1, ["someday"])]
    assert app.services.planning.counts() == {"overdue": 1, "today": 1, "week": 2, "later": 1,
                                              "nodate": 1}


def test_a_zone_that_does_not_exist_is_refused(app, client):
    for bad in ("Mars/Olympus", "../../etc/passwd", "", 5, "/etc/localtime"):
        res = client.patch(app.url("/api/v1/settings"), json={"timezone": bad})
        assert res.status_code == 422 and res.json()["error"]["field"] == "timezone", bad
    assert client.get(app.url("/api/v1/settings")).json()["timezone"] == "UTC"


# --- quick add --------------------------------------------------------------------------------

def test_quick_add_previews_then_saves_what_it_showed(app, client):
    client.patch(app.url("/api/v1/settings"), json={"timezone": "Pacific/Kiritimati"})
    body = {"text": "Renew passport due tomorrow !high every year #admin"}
    preview = client.post(app.url("/api/v1/quick-add/preview"), json=body).json()
    tomorrow = (today_in("Pacific/Kiritimati") + timedelta(days=1)).isoformat()
    assert (preview["title"], preview["due"], preview["priority"], preview["repeat"]) == (
        "Renew passport", tomorrow, 3, "FREQ=YEARLY")
    assert [p["kind"] for p in preview["parts"]] == ["date", "priority", "repeat"]
    res = client.post(app.url("/api/v1/quick-add"), json=body)
    assert res.status_code == 201
    item = res.json()
    assert {k: item[k] for k in ("type", "title", "due", "priority", "repeat", "tags")} == {
        "type": "task", "title": "Renew passport", "due": tomorrow, "priority": 3,
        "repeat": "FREQ=YEARLY", "tags": ["admin"]}
    kept = client.post(app.url("/api/v1/quick-add"),
                       json={"text": "Ask May about it tomorrow", "ignore": ["tomorrow"]}).json()
    assert (kept["type"], kept["title"]) == ("note", "Ask May about it tomorrow")


@pytest.mark.parametrize("body", [
    {"text": 5}, {"text": "x", "ignore": "tomorrow"}, {"text": "x", "ignore": [1]},
    {"text": "x", "task": "yes"}, {"text": "x", "other": 1}, {"text": "   "},
    {"text": "x", "ignore": ["a"] * 21}, {"text": "x" * 600_000},
])
def test_quick_add_refuses_bad_input_by_name(app, client, body):
    res = client.post(app.url("/api/v1/quick-add"), json=body)
    assert res.status_code in (413, 422), res.text
    assert res.json()["error"]["message"]


# --- calendar feed ----------------------------------------------------------------------------

def test_the_calendar_feed_lists_due_tasks_with_reminders(app, client):
    client.patch(app.url("/api/v1/settings"), json={"timezone": "Europe/Berlin"})
    create_item(client, app, type="task", title="Dentist", due="2027-01-15", due_time="09:30",
                priority=3, body="bring the card")
    create_item(client, app, type="task", title="Taxes, due; really", due="2027-05-31")
    create_item(client, app, type="task", title="No date")
    patch(client, app, create_item(client, app, type="task", title="Done", due="2027-01-01")["id"],
          status="done")
    create_item(client, app, title="a note")
    url = client.post(app.url("/api/v1/calendar-feed")).json()["url"]
    res = app.anon().get(url)
    assert res.status_code == 200 and res.headers["Content-Type"].startswith("text/calendar")
    assert all(len(line) <= 75 for line in res.content.split(b"\r\n"))  # RFC 5545 folding
    cal = icalendar.Calendar.from_ical(res.content)
    assert (str(cal["version"]), "prodid" in cal) == ("2.0", True)
    events = {str(e["summary"]): e for e in cal.walk("VEVENT")}
    assert set(events) == {"Dentist", "Taxes, due; really"}
    dentist = events["Dentist"]
    assert dentist.decoded("dtstart") == datetime(2027, 1, 15, 8, 30, tzinfo=ZoneInfo("UTC"))
    assert str(dentist["description"]) == "bring the card" and int(dentist["priority"]) == 1
    alarm = dentist.walk("VALARM")[0]
    assert (str(alarm["action"]), alarm.decoded("trigger")) == ("DISPLAY", timedelta(minutes=-15))
    taxes = events["Taxes, due; really"]
    assert taxes.decoded("dtstart") == date(2027, 5, 31) and taxes.walk("VALARM")
    assert all(str(e["uid"]).endswith("@taskplaner") and "dtstamp" in e for e in events.values())


def test_the_feed_token_reads_the_feed_and_nothing_else(app, client):
    first = client.post(app.url("/api/v1/calendar-feed")).json()
    token = first["path"].removeprefix("/calendar/").removesuffix(".ics")
    stranger = app.anon()
    assert stranger.get(app.url(first["path"])).status_code == 200
    bearer = {"Authorization": f"Bearer {token}"}
    for path in ("/api/v1/items", "/api/v1/agenda", "/api/v1/settings", "/api/v1/export"):
        assert stranger.get(app.url(path), headers=bearer).status_code == 401, path
    assert stranger.get(app.url("/calendar/" + "A" * 43 + ".ics")).status_code == 404
    assert stranger.get(app.url("/calendar/%C3%A9.ics")).status_code == 404
    second = client.post(app.url("/api/v1/calendar-feed")).json()
    assert stranger.get(app.url(first["path"])).status_code == 404  # a new URL revokes the old
    assert stranger.get(app.url(second["path"])).status_code == 200
    assert client.get(app.url("/api/v1/settings")).json()["calendar_feed"] is True
    assert client.delete(app.url("/api/v1/calendar-feed")).status_code == 204
    assert stranger.get(app.url(second["path"])).status_code == 404
    assert client.get(app.url("/api/v1/settings")).json()["calendar_feed"] is False


# --- search filters ---------------------------------------------------------------------------

def test_search_filters_for_due_dates_pins_and_repetition(app, client):
    create_item(client, app, type="task", title="late report", due=days(-2))
    create_item(client, app, type="task", title="today report", due=days(0), repeat="FREQ=DAILY")
    create_item(client, app, type="task", title="next report", due=days(5))
    patch(client, app, create_item(client, app, title="pinned report")["id"], pinned=True)
    patch(client, app, create_item(client, app, type="task", title="old report",
                                   due=days(-9))["id"], status="done")

    def found(q):
        return sorted(titles(client.get(app.url("/api/v1/search"), params={"q": q}).json()))

    assert found("due:overdue") == ["late report"]
    assert found("report due:today") == ["today report"]
    assert found("due:week") == ["next report", "today report"]
    assert found(f"due:{days(5)}") == ["next report"]
    assert found("is:pinned") == ["pinned report"]
    assert found("report is:repeating") == ["today report"]
    assert found("due:someday") == [] and found("is:nothing") == []


# --- upgrade ----------------------------------------------------------------------------------

def test_upgrading_keeps_tasks_and_adds_planning(tmp_path):
    db = Database(tmp_path / "v4.db")
    conn = db.conn
    conn.execute("BEGIN IMMEDIATE")
    for script in MIGRATIONS[:4]:
        for statement in _split_sql(script):
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 4")
    conn.execute("INSERT INTO items (type, title, status, due, priority, created, updated)"
                 " VALUES ('task', 'old task', 'open', '2026-01-01', 2, 'x', 'x')")
    conn.execute("COMMIT")
    db.migrate()
    row = conn.execute("SELECT * FROM items").fetchone()
    assert (row["title"], row["due"], row["priority"], row["pinned"], row["repeat"],
            row["repeat_from"]) == ("old task", "2026-01-01", 2, 0, None, "due")
    assert integrity_problems(conn) == []
    db.close()
