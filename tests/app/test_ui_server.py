"""The UI's server side: sanitized markdown, the pages and fragments, and their access rules."""

from __future__ import annotations

import pytest

from conftest import create_item
from taskplaner.markdown import MAX_RENDER_CHARS, PREVIEW_CHARS, render


@pytest.mark.parametrize(
    ("source", "absent"),
    [
        ("<script>alert(1)</script>", "<script"),
        ("<img src=x onerror=alert(1)>", "<img"),
        ("[x](javascript:alert(1))", 'href="javascript'),
        ("![tracker](https://evil.example/p.gif)", "evil.example"),
        ('<a href="#" onclick="x()">a</a>', "<a "),
        ("<iframe src=//evil></iframe>", "<iframe"),
    ],
)
def test_markdown_drops_everything_unsafe(source, absent):
    assert absent not in render(source)


def test_markdown_keeps_formatting_own_images_and_safe_links():
    html = render(
        "# T\n\n**b** ~~s~~ `c`\n\n![me](/api/v1/blobs/" + "a" * 64 + ")\n\n[site](https://example.org)"
    )
    assert "<h1>T</h1>" in html and "<strong>b</strong>" in html and "<s>s</s>" in html
    assert f'src="/api/v1/blobs/{"a" * 64}"' in html
    assert 'href="https://example.org"' in html and 'rel="noopener noreferrer nofollow"' in html


def test_pages_and_fragments_need_a_session(app):
    anon = app.anon()
    login_page = anon.get(app.url("/"))
    assert login_page.status_code == 200 and 'id="login"' in login_page.text
    for path in ["/ui/items", "/ui/items/1", "/ui/search?q=x", "/ui/tags"]:
        res = anon.get(app.url(path))
        assert res.status_code == 401 and res.json()["error"]["code"] == "unauthorized", path


def test_index_renders_items_escaped_with_the_csrf_token(app, client):
    create_item(client, app, title="<b>not bold</b>", body="*em*", tags=["x"])
    page = client.get(app.url("/"))
    assert page.status_code == 200
    assert "&lt;b&gt;not bold&lt;/b&gt;" in page.text and "<em>em</em>" in page.text
    assert f'<meta name="csrf-token" content="{client.headers["X-CSRF-Token"]}">' in page.text
    assert page.headers["Content-Security-Policy"].startswith("default-src 'self'")


def test_fragments_filter_page_and_search(app, client):
    for i in range(35):
        create_item(client, app, title=f"note {i}")
    create_item(client, app, type="task", title="open task")
    first = client.get(app.url("/ui/items?view=all")).text
    assert first.count('class="card item') == 30 and 'class="more"' in first
    assert client.get(app.url("/ui/items?view=open")).text.count('class="card item') == 1
    assert client.get(app.url("/ui/items?view=nonsense")).status_code == 400
    found = client.get(app.url("/ui/search?q=task")).text
    assert "<mark>task</mark>" in found
    # a match in a title with no text: the title shows the highlight, once (#31)
    assert found.count("open <mark>task</mark>") == 1 and found.count("open task") == 0


def test_preview_needs_csrf_and_a_string(app, client):
    ok = client.post(app.url("/ui/preview"), json={"markdown": "**hi** <script>"})
    assert ok.status_code == 200 and ok.json()["html"] == "<p><strong>hi</strong> &lt;script&gt;</p>\n"
    assert client.post(app.url("/ui/preview"), json={"markdown": 3}).status_code == 400
    no_csrf = app.anon()
    no_csrf.cookies.update(client.cookies)
    assert no_csrf.post(app.url("/ui/preview"), json={"markdown": "x"}).status_code == 403


def test_manifest_and_service_worker_are_served(app):
    anon = app.anon()
    manifest = anon.get(app.url("/manifest.webmanifest"))
    assert manifest.headers["Content-Type"].startswith("application/manifest+json")
    assert manifest.json()["start_url"] == "/"
    worker = anon.get(app.url("/sw.js"))
    assert worker.status_code == 200 and "javascript" in worker.headers["Content-Type"]
    assert anon.get(app.url("/static/../config.py")).status_code in (403, 404)


def test_long_bodies_render_a_bounded_part(app, client):
    """A card shows its first 16rem, so a list renders the start of each body; the editor's
    preview renders up to MAX_RENDER_CHARS. Pathological markdown ("![" repeated) is the case
    whose cost grows fastest."""
    body = "![" * 250_000
    item = create_item(client, app, title="long", body=body)
    card = client.get(app.url(f"/ui/items/{item['id']}")).text
    assert len(card) < PREVIEW_CHARS * 2 and "characters are shown" in card
    page = client.get(app.url("/")).text
    assert len(page) < 100_000 and "characters are shown" in page
    res = client.post(app.url("/ui/preview"), json={"markdown": "word " * 40_000})
    html = res.json()["html"]
    assert res.status_code == 200 and "characters are shown" in html
    assert html.count("word") <= MAX_RENDER_CHARS // 5 + 10
    short = client.post(app.url("/ui/preview"), json={"markdown": "*hi*"}).json()["html"]
    assert short == "<p><em>hi</em></p>\n"
