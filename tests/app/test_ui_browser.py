"""The web UI in a real Chromium (Debian's, driven by Playwright) against a real TaskPlaner.

Every page a test opens is watched: a request to anything but 127.0.0.1 or a Content Security
Policy violation fails the test. Screenshots of the main screens, in both themes and on a phone,
are written to test-artifacts/screenshots/ (gitignored) for a person to look at."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from conftest import PASSWORD, Running, image_bytes, make_settings, start_server, stop_server

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts/screenshots"
WATCH = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__cspViolations.push(e.violatedDirective + " " + e.blockedURI));
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/bootstrap.sh test installs Debian's chromium")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Running]:
    running = start_server(make_settings(tmp_path))
    yield running
    stop_server(running)


class Watched:
    def __init__(self, page: Page) -> None:
        self.page = page
        self.requests: list[str] = []
        self.console_errors: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("console", lambda m: self.console_errors.append(m.text) if m.type == "error" else None)

    def check(self) -> None:
        outside = [
            u
            for u in self.requests
            if urlparse(u).hostname not in ("127.0.0.1", None) and not u.startswith(("data:", "blob:"))
        ]
        assert outside == [], outside
        violations = self.page.evaluate("window.__cspViolations || []")
        assert violations == [], violations
        assert [e for e in self.console_errors if "Content Security Policy" in e] == []


def open_page(browser: Browser, server: Running, **context: Any) -> tuple[Page, Watched]:
    ctx = browser.new_context(base_url=server.base_url, **context)
    ctx.add_init_script(WATCH)
    page = ctx.new_page()
    page.set_default_timeout(10_000)
    return page, Watched(page)


@pytest.fixture
def page(browser: Browser, server: Running) -> Iterator[Page]:
    page, watched = open_page(browser, server)
    yield page
    watched.check()
    page.context.close()


def login(page: Page) -> None:
    page.goto("/")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#capture-text")).to_be_visible()


def capture(page: Page, text: str) -> None:
    box = page.locator("#capture-text")
    box.click()
    lines = text.split("\n")
    for i, line in enumerate(lines):
        box.type(line)
        if i < len(lines) - 1:
            box.press("Shift+Enter")
    box.press("Enter")
    expect(box).to_have_value("")


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_login_says_wrong_password_then_lets_the_right_one_in(page):
    page.goto("/")
    shot(page, "login-light")
    page.get_by_label("Password").fill("not it")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#login-error")).to_have_text("Wrong password.")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#capture-text")).to_be_visible()
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_label("Password")).to_be_visible()


def test_throttled_login_says_when_to_try_again(browser, tmp_path):
    running = start_server(make_settings(tmp_path, login_max_failures=2))
    try:
        page, watched = open_page(browser, running)
        page.goto("/")
        for _ in range(3):
            page.get_by_label("Password").fill("wrong")
            page.get_by_role("button", name="Log in").click()
            page.wait_for_timeout(150)
        message = re.compile(r"Too many attempts\. Try again in \d+ s\.")
        expect(page.locator("#login-error")).to_have_text(message)
        watched.check()
        page.context.close()
    finally:
        stop_server(running)


def test_capture_a_note_with_a_tag_and_find_it_highlighted(page):
    login(page)
    capture(page, "Shopping list\noat milk and rye bread #groceries")
    card = page.locator("li.item").first
    expect(card.locator(".item-title")).to_have_text("Shopping list")
    expect(card.locator(".tag")).to_have_text("#groceries")
    expect(card.locator(".body")).to_contain_text("oat milk and rye bread")
    expect(page.locator("#tags a[data-tag='groceries'] .count")).to_have_text("1")
    page.keyboard.press("Escape")  # leave the capture box; shortcuts do not fire while typing
    page.keyboard.press("/")
    expect(page.locator("#search")).to_be_focused()
    page.keyboard.type("oat")
    mark = page.locator("#items li.result .snippet mark")
    expect(mark).to_have_text("oat")
    expect(page).to_have_url(re.compile(r"/\?q=oat$"))
    shot(page, "search-light")
    # the URL is bookmarkable: opening it renders the same results on the server
    page.goto("/?q=oat")
    expect(page.locator("#items li.result .snippet mark")).to_have_text("oat")
    expect(page.locator("#search")).to_have_value("oat")


def test_markdown_is_rendered_sanitized_and_previewed_while_editing(page):
    login(page)
    capture(page, "Markdown\n**bold** <script>window.pwned=1</script> [x](javascript:alert(1))")
    card = page.locator("li.item").first
    expect(card.locator(".body strong")).to_have_text("bold")
    expect(card.locator(".body")).to_contain_text("<script>")
    assert card.locator(".body a[href^='javascript']").count() == 0
    assert page.evaluate("window.pwned") is None
    card.get_by_role("button", name=re.compile("^Edit")).click()
    body = page.locator("#edit-body")
    body.fill("# Heading\n\n- one\n- two")
    expect(page.locator("#edit-preview h1")).to_have_text("Heading")
    expect(page.locator("#edit-preview li")).to_have_count(2)
    shot(page, "editor-light")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#editor")).not_to_be_visible()
    expect(card.locator(".body h1")).to_have_text("Heading")


def test_upload_shows_progress_thumbnail_markdown_reference_and_lightbox(page, tmp_path):
    login(page)
    capture(page, "Holiday photos")
    card = page.locator("li.item").first
    card.get_by_role("button", name=re.compile("^Edit")).click()
    picture = tmp_path / "beach.png"
    picture.write_bytes(image_bytes("PNG", size=(640, 480), color="teal"))
    page.locator("#edit-files").set_input_files(str(picture))
    row = page.locator("#uploads li")
    expect(row.locator("progress")).to_have_attribute("aria-label", "Uploading beach.png")
    expect(row).to_have_class(re.compile("done"))
    assert row.locator("progress").evaluate("p => p.value") == 100
    expect(page.locator("#edit-body")).to_have_value(re.compile(r"!\[beach\]\(/api/v1/blobs/[0-9a-f]{64}\)"))
    expect(page.locator("#edit-preview img")).to_have_count(1)
    page.locator("#editor-save").click()
    thumb = card.locator(".thumbs img")
    expect(thumb).to_be_visible()
    assert thumb.evaluate("i => i.complete && i.naturalWidth > 0")
    expect(card.locator(".body img")).to_have_count(1)
    thumb.click()
    expect(page.locator("#lightbox")).to_be_visible()
    assert page.locator("#lightbox-img").evaluate("i => i.complete && i.naturalWidth") == 640
    page.keyboard.press("Escape")
    shot(page, "list-light")


def test_many_files_at_once_all_arrive(page, tmp_path):
    """The server takes two uploads at a time; the page queues the rest instead of failing."""
    login(page)
    capture(page, "Album")
    page.locator("li.item").first.get_by_role("button", name=re.compile("^Edit")).click()
    files = []
    for n, colour in enumerate(("red", "green", "blue", "gray", "navy", "olive")):
        files.append(tmp_path / f"p{n}.png")
        files[-1].write_bytes(image_bytes("PNG", size=(900, 700), color=colour))
    page.locator("#edit-files").set_input_files([str(f) for f in files])
    rows = page.locator("#uploads li")
    expect(rows).to_have_count(6)
    expect(page.locator("#uploads li.done")).to_have_count(6, timeout=20_000)
    expect(page.locator("#uploads li.failed")).to_have_count(0)
    assert page.locator("#edit-body").input_value().count("/api/v1/blobs/") == 6


def test_ticking_a_task_is_saved_and_a_refused_tick_is_reverted(page, server):
    login(page)
    capture(page, "[ ] call the plumber #home")
    card = page.locator("li.item.task").first
    box = card.get_by_role("checkbox")
    box.check()
    expect(card).to_have_class(re.compile("status-done"))
    page.reload()
    expect(page.locator("li.item.task").first.get_by_role("checkbox")).to_be_checked()
    # the server refuses the next tick (the item is gone): the card goes back and says why
    capture(page, "[ ] doomed task")
    doomed = page.locator("li.item.task").first
    client = server.login()
    assert client.delete(server.url(f"/api/v1/items/{doomed.get_attribute('data-id')}")).status_code == 204
    # click, not check(): the box may already be back to unchecked when Playwright looks
    doomed.get_by_role("checkbox").click()
    expect(page.locator(".toast.error")).to_contain_text("Could not update the task")
    expect(doomed.get_by_role("checkbox")).not_to_be_checked()


def test_task_filters_due_dates_and_overdue(page, server):
    client = server.login()
    client.post(server.url("/api/v1/items"), json={"type": "task", "title": "late one", "due": "2020-01-01"})
    client.post(server.url("/api/v1/items"), json={"type": "task", "title": "finished", "status": "done"})
    client.post(server.url("/api/v1/items"), json={"title": "just a note"})
    login(page)
    page.locator("#views").get_by_role("link", name="Open tasks").click()
    expect(page.locator("li.item")).to_have_count(1)
    expect(page.locator("li.item .due")).to_have_text(re.compile(r"^overdue · Wed 1 Jan 2020$"))
    expect(page.locator("li.item .due")).to_have_attribute("title", "2020-01-01")
    page.locator("#views").get_by_role("link", name="Done").click()
    expect(page.locator("li.item .item-title")).to_have_text("finished")
    page.locator("#views").get_by_role("link", name="Notes").click()
    expect(page.locator("li.item .item-title")).to_have_text("just a note")
    expect(page).to_have_url(re.compile(r"view=notes"))


def test_delete_can_be_undone_and_nothing_is_lost(page, server):
    login(page)
    capture(page, "keep me")
    card = page.locator("li.item").first
    item_id = card.get_attribute("data-id")
    card.get_by_role("button", name=re.compile("^Delete")).click()
    expect(card).to_be_hidden()
    page.locator(".toast").get_by_role("button", name="Undo").click()
    expect(card).to_be_visible()
    page.wait_for_timeout(6500)
    assert server.login().get(server.url(f"/api/v1/items/{item_id}")).status_code == 200


def test_infinite_scroll_pages_through_the_cursor(page, server):
    client = server.login()
    for i in range(45):
        client.post(server.url("/api/v1/items"), json={"title": f"note {i:02d}"})
    login(page)
    expect(page.locator("li.item")).to_have_count(30)
    page.locator("li.more").scroll_into_view_if_needed()
    expect(page.locator("li.item")).to_have_count(45)
    expect(page.locator("li.item").last.locator(".item-title")).to_have_text("note 00")


def test_keyboard_shortcuts(page):
    login(page)
    page.locator("body").click(position={"x": 5, "y": 300})
    page.keyboard.press("t")
    expect(page.locator("#capture-type")).to_have_attribute("aria-pressed", "true")
    page.keyboard.type("pay rent")
    page.keyboard.press("Enter")
    expect(page.locator("li.item.task .item-title").first).to_have_text("pay rent")
    page.locator("body").click(position={"x": 5, "y": 300})
    page.keyboard.press("?")
    expect(page.locator("#shortcuts")).to_be_visible()
    page.keyboard.press("Escape")
    page.keyboard.press("e")
    expect(page.locator("#editor")).to_be_visible()
    expect(page.locator("#edit-title")).to_have_value("pay rent")


def test_dark_mode_follows_the_system_and_the_toggle(browser, server):
    page, watched = open_page(browser, server, color_scheme="dark")
    login(page)
    capture(page, "Dark mode note\nwith **some** text #look")
    capture(page, "[ ] a task in the dark #look")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(23, 24, 27)", background
    shot(page, "list-dark")
    page.get_by_role("button", name=re.compile("^Theme")).click()  # system → dark
    page.get_by_role("button", name=re.compile("^Theme")).click()  # dark → light
    assert page.evaluate("document.documentElement.dataset.theme") == "light"
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(246, 245, 242)"
    page.reload()
    assert page.evaluate("document.documentElement.dataset.theme") == "light"
    page.get_by_role("button", name=re.compile("^Theme")).click()  # light → system (dark here)
    page.locator("li.item").first.get_by_role("button", name=re.compile("^Edit")).click()
    shot(page, "editor-dark")
    page.keyboard.press("Escape")
    page.locator("#search").fill("dark")
    expect(page.locator("li.result").first).to_be_visible()
    shot(page, "search-dark")
    watched.check()
    page.context.close()


def test_usable_on_a_360px_phone(browser, server):
    page, watched = open_page(
        browser, server, viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True
    )
    login(page)
    capture(page, "From my phone #mobile")
    capture(page, "[ ] pick up the parcel")
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 360
    for control in ["#capture-text", "#search", "li.item .edit"]:
        box = page.locator(control).first.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 360, control
    shot(page, "phone-light")
    page.locator("li.item").first.get_by_role("button", name=re.compile("^Edit")).click()
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 360
    shot(page, "phone-editor")
    watched.check()
    page.context.close()


def test_every_control_has_a_label(page):
    login(page)
    capture(page, "[ ] labelled")
    unlabeled = page.evaluate("""() => [...document.querySelectorAll('input, textarea, select, button')]
        .filter((el) => !el.closest('[hidden]') && el.type !== 'hidden')
        .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                        && !el.textContent.trim())
        .map((el) => el.outerHTML.slice(0, 80))""")
    assert unlabeled == []


def test_installable_and_readable_offline(page):
    login(page)
    capture(page, "Readable offline")
    manifest = page.evaluate("fetch('/manifest.webmanifest').then((r) => r.json())")
    assert manifest["display"] == "standalone"
    assert {i["sizes"] for i in manifest["icons"]} >= {"192x192", "512x512"}
    page.wait_for_function("navigator.serviceWorker.controller !== null || navigator.serviceWorker.ready")
    page.evaluate("navigator.serviceWorker.ready")
    page.reload()  # now controlled by the worker, which keeps a copy of what it served
    page.wait_for_function("navigator.serviceWorker.controller !== null")
    page.reload()
    page.context.set_offline(True)
    try:
        page.reload()
        expect(page.locator("li.item .item-title").first).to_have_text("Readable offline")
        expect(page.locator("#capture-text")).to_be_visible()
    finally:
        page.context.set_offline(False)
