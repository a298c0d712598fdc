"""Planning in a real Chromium: quick add's chips, the agenda in the browser's time zone,
repeating tasks, pins and the calendar feed. Screenshots in both themes and on a phone go to
test-artifacts/screenshots/ like the rest of the UI's."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import requests
import test_ui_browser
from playwright.sync_api import expect
from test_ui_browser import login, open_page, shot

from taskplaner.localtime import day_words

# the browser, a fresh server and a watched page: the same fixtures as the rest of the UI's tests
browser, server, page = test_ui_browser.browser, test_ui_browser.server, test_ui_browser.page

pytestmark = pytest.mark.browser
ZONE = "Pacific/Kiritimati"  # UTC+14: its date differs from the server's UTC date most of the day


def zone_day(n: int = 0) -> str:
    return (datetime.now(ZoneInfo(ZONE)).date() + timedelta(days=n)).isoformat()


def type_into_capture(page, text):
    box = page.locator("#capture-text")
    box.click()
    box.type(text)


def test_quick_add_shows_what_it_read_and_a_removed_chip_stays_text(page):
    login(page)
    type_into_capture(page, "Renew passport due next week !high every 10 years #admin")
    chips = page.locator("#capture-parts li.part")
    expect(chips).to_have_count(3)
    expect(chips.nth(1)).to_contain_text("high")
    expect(chips.nth(2)).to_contain_text("every 10 years")
    expect(page.locator("#capture-type")).to_have_text("Task")
    shot(page, "quick-add-light")
    chips.nth(0).get_by_role("button", name="Keep “due next week” as text").click()
    expect(chips).to_have_count(2)
    page.locator("#capture-text").press("Enter")
    expect(page.locator("#capture-text")).to_have_value("")
    expect(chips).to_have_count(0)
    card = page.locator("li.item").first
    expect(card.locator(".item-title")).to_have_text("Renew passport due next week")
    expect(card.locator(".badge.prio-3")).to_have_text("high")
    expect(card.locator(".badge.repeat")).to_have_text("↻ every 10 years")
    expect(card.locator(".tag")).to_have_text("#admin")
    # a name is not a month
    type_into_capture(page, "Ask May about the taxes")
    page.wait_for_timeout(400)
    expect(chips).to_have_count(0)
    page.locator("#capture-text").press("Enter")
    expect(page.locator("li.item").first).to_have_class(re.compile(r"\bnote\b"))


def test_the_agenda_counts_and_sorts_by_the_browsers_day(browser, server):
    client = server.login()
    for title, due in [("late", zone_day(-2)), ("now", zone_day(0)), ("soon", zone_day(3)),
                       ("far", zone_day(30)), ("someday", None)]:
        client.post(server.url("/api/v1/items"), json={"type": "task", "title": title, "due": due})
    client.post(server.url("/api/v1/items"), json={"title": "a note"})
    for scheme, name in (("light", "agenda-light"), ("dark", "agenda-dark")):
        page, watched = open_page(browser, server, timezone_id=ZONE, color_scheme=scheme)
        login(page)
        expect(page.locator("#settings-timezone")).to_have_text(ZONE)  # the browser's zone, stored
        counts = page.locator(".agenda-links .count")
        expect(counts).to_have_text(["1", "1", "1", "1", "1"])
        page.locator("#views").get_by_role("link", name="Agenda", exact=True).click()
        expect(page).to_have_url(re.compile(r"view=agenda"))
        heads = page.locator("li.section-head h2")
        expect(heads).to_have_text([re.compile(n) for n in
                                    ("Overdue", "Today", "Next 7 days", "Later", "No date")])
        expect(page.locator("li.item .item-title")).to_have_text(["late", "now", "soon", "far",
                                                                   "someday"])
        expect(page.locator("#agenda-today + li .due")).to_have_text("today")
        shot(page, name)
        watched.check()
        page.context.close()
    assert client.get(server.url("/api/v1/settings")).json()["timezone"] == ZONE


def test_agenda_on_a_phone(browser, server):
    client = server.login()
    client.post(server.url("/api/v1/items"), json={"type": "task", "title": "water the plants",
                                                    "due": zone_day(0), "repeat": "FREQ=DAILY"})
    page, watched = open_page(browser, server, viewport={"width": 360, "height": 740},
                              is_mobile=True, has_touch=True, timezone_id=ZONE)
    login(page)
    type_into_capture(page, "Dentist fri 9:30am")
    expect(page.locator("#capture-parts li.part")).to_have_count(2)
    shot(page, "phone-quick-add")
    page.locator("#capture-text").press("Enter")
    page.goto("/?view=agenda")
    expect(page.locator("li.section-head")).to_have_count(5)
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 360
    shot(page, "phone-agenda")
    watched.check()
    page.context.close()


def test_ticking_a_repeating_task_brings_the_next_one(page, server):
    client = server.login()
    task = client.post(server.url("/api/v1/items"), json={
        "type": "task", "title": "take the bins out", "due": "2026-01-05",
        "repeat": "FREQ=WEEKLY"}).json()
    login(page)
    card = page.locator(f"#item-{task['id']}")
    card.get_by_role("checkbox").check()
    # in words, as the card says it, not 2026-01-12
    words = r"(today|tomorrow|[A-Z][a-z]{2} \d{1,2} [A-Z][a-z]{2}( \d{4})?)"
    expect(page.locator(".toast").first).to_have_text(re.compile(rf"^Done\. Next one is due {words}\.\s*"))
    titles = page.locator("li.item .item-title", has_text="take the bins out")
    expect(titles).to_have_count(2)
    expect(page.locator("li.item.status-open .badge.repeat")).to_have_text("↻ every week")
    # ticking the done one off and on again creates nothing more
    done = page.locator(f"#item-{task['id']}").get_by_role("checkbox")
    done.uncheck()
    page.wait_for_timeout(300)
    page.locator(f"#item-{task['id']}").get_by_role("checkbox").check()
    page.wait_for_timeout(500)
    items = client.get(server.url("/api/v1/items"), params={"type": "task"}).json()["items"]
    assert len(items) == 2


def test_pinning_moves_an_item_to_the_top_and_the_editor_sets_planning(page, server):
    client = server.login()
    for title in ("oldest", "middle", "newest"):
        client.post(server.url("/api/v1/items"), json={"title": title})
    login(page)
    cards = page.locator("li.item .item-title")
    expect(cards).to_have_text(["newest", "middle", "oldest"])
    page.locator("li.item", has_text="oldest").get_by_role("button", name="Pin oldest").click()
    expect(cards).to_have_text(["oldest", "newest", "middle"])
    expect(page.locator("li.item").first).to_have_class(re.compile("pinned"))
    shot(page, "pinned-light")
    # the editor: a task with a time, repeating from completion, unpinned
    page.locator("li.item", has_text="middle").get_by_role("button", name="Edit middle").click()
    page.locator("#edit-is-task").check()
    page.locator("#edit-due").fill("2027-03-01")
    page.locator("#edit-time").fill("08:15")
    page.locator("#edit-repeat").select_option(label="Every month")
    page.locator("#edit-repeat-from").select_option("done")
    page.locator("#editor-save").click()
    expect(page.locator("#editor")).not_to_be_visible()
    middle = next(i for i in client.get(server.url("/api/v1/items")).json()["items"]
                  if i["title"] == "middle")
    assert (middle["due"], middle["due_time"], middle["repeat"], middle["repeat_from"]) == (
        "2027-03-01", "08:15", "FREQ=MONTHLY", "done")
    words = day_words("2027-03-01", zone_day(0))  # "Mon 1 Mar" (with 2027 before that year)
    expect(page.locator("li.item", has_text="middle").locator(".due")).to_have_text(f"{words} 08:15")


def test_the_calendar_feed_is_turned_on_and_off_in_settings(page, server):
    client = server.login()
    client.post(server.url("/api/v1/items"), json={"type": "task", "title": "dentist",
                                                    "due": "2027-01-15", "due_time": "09:30"})
    login(page)
    page.get_by_role("button", name="Settings").click()
    expect(page.locator("#feed-state")).to_have_text("The feed is off.")
    page.get_by_role("button", name="Turn on").click()
    url = page.locator("#feed-url")
    expect(url).to_have_value(re.compile(r"^http://127\.0\.0\.1:\d+/calendar/[\w-]+\.ics$"))
    shot(page, "settings-feed-light")
    feed = requests.get(url.input_value(), timeout=10)
    assert feed.status_code == 200 and b"SUMMARY:dentist" in feed.content
    page.get_by_role("button", name="Turn off").click()
    expect(page.locator("#feed-state")).to_have_text("The feed is off.")
    assert requests.get(url.input_value() or feed.url, timeout=10).status_code == 404


def test_checklist_boxes_tick_in_the_card_and_a_stale_one_is_refused(page, server):
    client = server.login()
    note = client.post(server.url("/api/v1/items"), json={
        "title": "Packing", "body": "- [ ] passport\n- [ ] charger\n- [x] tickets"}).json()
    login(page)
    boxes = page.locator(f"#item-{note['id']} .body input[type=checkbox]")
    expect(boxes).to_have_count(3)
    boxes.nth(1).check()
    for _ in range(50):
        if "- [x] charger" in client.get(server.url(f"/api/v1/items/{note['id']}")).json()["body"]:
            break
        page.wait_for_timeout(100)
    assert client.get(server.url(f"/api/v1/items/{note['id']}")).json()["body"] == (
        "- [ ] passport\n- [x] charger\n- [x] tickets")
    shot(page, "checklist-light")
    # another device renames the first box: ticking the stale one is refused and the card reloads
    client.patch(server.url(f"/api/v1/items/{note['id']}"),
                 json={"body": "- [ ] passport and visa\n- [x] charger\n- [x] tickets"})
    boxes.nth(0).check()
    expect(page.locator(".toast.error")).to_contain_text("changed meanwhile")
    expect(page.locator(f"#item-{note['id']} .body")).to_contain_text("passport and visa")
    expect(page.locator(f"#item-{note['id']} .body input[type=checkbox]").nth(0)).not_to_be_checked()


def test_markdown_export_and_import_from_settings(page, server, tmp_path):
    client = server.login()
    client.post(server.url("/api/v1/items"), json={"title": "Recipe", "body": "flour #baking"})
    login(page)
    page.get_by_role("button", name="Settings").click()
    with page.expect_download() as download:
        page.get_by_role("link", name="Export as Markdown").click()
    exported = tmp_path / "notes.zip"
    download.value.save_as(exported)
    import zipfile

    assert zipfile.ZipFile(exported).namelist() == ["Recipe.md"]
    vault = tmp_path / "vault.zip"
    with zipfile.ZipFile(vault, "w") as z:
        z.writestr("Ideas.md", "# Garden ideas\n\nraised beds #garden\n")
        z.writestr("bad.md", b"\xff\xfe")
    page.locator("#import-markdown").set_input_files(str(vault))
    expect(page.locator("#import-report")).to_contain_text("Imported 1 note, skipped 1.")
    expect(page.locator("#import-report li")).to_have_text(["bad.md: not UTF-8 text"])
    shot(page, "settings-import-light")
    page.keyboard.press("Escape")
    expect(page.locator("li.item .item-title").first).to_have_text("Garden ideas")
    expect(page.locator("#tags a[data-tag='garden']")).to_be_visible()


def test_planning_screens_in_the_dark(browser, server):
    client = server.login()
    client.post(server.url("/api/v1/items"), json={
        "title": "Packing", "body": "- [ ] passport\n- [x] charger", "pinned": True})
    client.post(server.url("/api/v1/items"), json={"type": "task", "title": "Pay rent",
                                                    "due": zone_day(-1), "repeat": "FREQ=MONTHLY"})
    page, watched = open_page(browser, server, color_scheme="dark", timezone_id=ZONE)
    login(page)
    type_into_capture(page, "Call Ana tomorrow at 5pm !2 every week")
    expect(page.locator("#capture-parts li.part")).to_have_count(4)
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(23, 24, 27)"
    shot(page, "quick-add-dark")
    page.locator("#capture-text").press("Enter")
    expect(page.locator("#capture-parts li.part")).to_have_count(0)
    expect(page.locator("li.item .item-title")).to_have_text(["Packing", "Call Ana", "Pay rent"])
    shot(page, "list-planning-dark")
    page.get_by_role("button", name="Settings").click()
    page.get_by_role("button", name="Turn on").click()
    expect(page.locator("#feed-url")).to_have_value(re.compile(r"\.ics$"))
    shot(page, "settings-dark")
    watched.check()
    page.context.close()


def test_a_completion_can_be_undone_and_leaves_no_extra_occurrence(page, server):
    """#31: completing a task shows Undo; Undo opens it again, and for a repeating task removes
    the occurrence the completion brought, so the list is as it was."""
    client = server.login()
    today = zone_day(0)
    items = server.url("/api/v1/items")
    plain = client.post(items, json={"type": "task", "title": "water the plants", "due": today}).json()
    weekly = client.post(items, json={"type": "task", "title": "bins out", "due": today,
                                      "repeat": "FREQ=WEEKLY"}).json()  # fmt: skip
    login(page)

    def tasks() -> list[dict]:
        return client.get(server.url("/api/v1/items"), params={"type": "task"}).json()["items"]

    page.locator(f"#item-{plain['id']}").get_by_role("checkbox").check()
    done = page.locator(".toast", has_text="Done: “water the plants”.")
    expect(done).to_be_visible()
    done.get_by_role("button", name="Undo").click()
    expect(page.locator(f"#item-{plain['id']}").get_by_role("checkbox")).not_to_be_checked()
    assert next(t for t in tasks() if t["id"] == plain["id"])["status"] == "open"

    page.locator(f"#item-{weekly['id']}").get_by_role("checkbox").check()
    brought = page.locator(".toast", has_text="Next one is due")
    expect(brought).to_be_visible()
    expect(page.locator("li.item .item-title", has_text="bins out")).to_have_count(2)
    brought.get_by_role("button", name="Undo").click()
    expect(page.locator("li.item .item-title", has_text="bins out")).to_have_count(1)
    expect(page.locator(f"#item-{weekly['id']}").get_by_role("checkbox")).not_to_be_checked()
    bins = [t for t in tasks() if t["title"] == "bins out"]
    assert [(t["id"], t["status"], t["due"]) for t in bins] == [(weekly["id"], "open", today)]
    # completing it again brings one occurrence, as the first time
    page.locator(f"#item-{weekly['id']}").get_by_role("checkbox").check()
    expect(page.locator("li.item .item-title", has_text="bins out")).to_have_count(2)
