"""Every view at a small phone's, a phone's, a tablet's and a desktop's width, in both themes,
with content made to break layouts (#31): a 300-character code line, a long URL, an unbroken
word, a wide table, a checklist, tasks of every priority. No view is wider than the window,
every card stays in its column, and axe-core finds nothing critical or serious. Screenshots at
375 and 1280 px go to test-artifacts/screenshots/ for a person to look at."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest
import test_ui_browser
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect
from test_ui_browser import login, open_page, shot

from conftest import Running, create_item, make_settings, start_server, stop_server

browser = test_ui_browser.browser  # one Chromium for the module, as in the other UI tests
pytestmark = pytest.mark.browser

WIDTHS = [320, 375, 768, 1280]
SHOT_WIDTHS = {375, 1280}
WIDE_CODE = "```\nresult = compute(" + ", ".join(f"argument_{i}" for i in range(30)) + ")\n```"
TABLE = "| " + " | ".join(f"column {i}" for i in range(12)) + " |\n|" + "---|" * 12 + "\n|" + " x |" * 12


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """One server for the module, holding the adversarial content (the tests only read it)."""
    running = start_server(make_settings(tmp_path_factory.mktemp("layout")))
    client = running.login()
    day = date.today()
    create_item(client, running, title="Wide things", tags=["code"],
                body=f"{WIDE_CODE}\n\nhttps://example.org/{'a' * 300}\n\n{'x' * 300}\n\n{TABLE}")  # fmt: skip
    create_item(client, running, title="Packing list", body="- [ ] passport\n- [x] charger\n- [ ] socks")
    create_item(client, running, title="A pinned note", pinned=True, tags=["home"])
    for priority, offset in ((1, 0), (2, 1), (3, 3)):
        create_item(client, running, type="task", title=f"Task of priority {priority}", priority=priority,
                    due=(day + timedelta(days=offset)).isoformat(), tags=["errands"])  # fmt: skip
    create_item(client, running, type="task", title="Overdue one", due=(day - timedelta(days=2)).isoformat())
    create_item(client, running, type="task", title="Finished", status="done")
    yield running
    stop_server(running)


def serious_accessibility_problems(page: Page) -> list[str]:
    """What axe-core (the copy axe-playwright-python ships) finds critical or serious here."""
    found = Axe().run(page).response["violations"]
    return [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}"
        for v in found
        if v["impact"] in ("critical", "serious")
    ]


def layout_problems(page: Page) -> list[str]:
    """A page wider than the window, or a card wider than its list."""
    return list(
        page.evaluate(
            """() => {
      const out = [];
      const width = window.innerWidth;
      if (document.scrollingElement.scrollWidth > width)
        out.push(`page ${document.scrollingElement.scrollWidth} px wide in a ${width} px window`);
      const list = document.querySelector("#items");
      if (list) {
        const column = list.getBoundingClientRect();
        for (const card of list.querySelectorAll("li.item")) {
          const box = card.getBoundingClientRect();
          if (box.left < column.left - 0.5 || box.right > column.right + 0.5)
            out.push(`${card.id} (${box.left}-${box.right}) outside (${column.left}-${column.right})`);
        }
      }
      return out;
    }"""
        )
    )


def check(page: Page, name: str, width: int, theme: str) -> list[str]:
    problems = [f"{name}: {p}" for p in layout_problems(page) + serious_accessibility_problems(page)]
    if width in SHOT_WIDTHS:
        shot(page, f"layout-{name}-{width}-{theme}")
    return problems


# (name, address, the view's heading: one h1 per view, for screen readers)
VIEWS = [("list", "/", "All"), ("agenda", "/?view=agenda", "Agenda"), ("notes", "/?view=notes", "Notes"),
         ("tasks", "/?view=open", "Open tasks"), ("search", "/?q=priority", "Search: priority")]  # fmt: skip


@pytest.mark.parametrize("theme", ["light", "dark"])
@pytest.mark.parametrize("width", WIDTHS)
def test_every_view_fits_and_axe_finds_nothing_serious(browser, server, width: int, theme: str) -> None:
    mobile: dict[str, Any] = {"is_mobile": True, "has_touch": True} if width < 720 else {}
    page, watched = open_page(
        browser, server, viewport={"width": width, "height": 800}, color_scheme=theme, **mobile
    )
    login(page)
    problems: list[str] = []
    for name, path, heading in VIEWS:
        page.goto(path)
        expect(page.locator("li.item").first).to_be_visible()
        expect(page.locator("h1")).to_have_text(heading)
        problems += check(page, name, width, theme)
    page.locator("#views a[data-view=done]").click()  # a view changed in place names itself too
    expect(page.locator("h1")).to_have_text("Done")
    page.goto("/")
    page.locator("li.item").first.get_by_role("button", name="Edit").first.click()
    expect(page.locator("#editor[open]")).to_be_visible()
    problems += check(page, "editor", width, theme)
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Settings").click()
    expect(page.locator("#settings[open]")).to_be_visible()
    problems += check(page, "settings", width, theme)
    assert problems == [], "\n".join(problems)
    watched.check()
    page.context.close()
