"""Markdown to safe HTML: markdown-it-py (CommonMark, raw HTML off) then nh3 (an allowlist).

Images may only point at this app's own blobs, links only at http(s)/mailto, and every link gets
rel="noopener noreferrer nofollow". The result is safe to insert into the page as HTML.

Rendering time grows faster than the text for some inputs (markdown-it-py spends ~11 s on
500,000 characters of "![", 1.2 s on ordinary text of that length), so only a bounded part is
rendered: ``PREVIEW_CHARS`` for a card in a list (the card shows its first 16rem anyway) and
``MAX_RENDER_CHARS`` for the editor's preview; the rest is marked as not shown."""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from markdown_it import MarkdownIt


@functools.cache
def _md() -> MarkdownIt:
    """The parser, built with the first note rendered (start-up does without it)."""
    from markdown_it import MarkdownIt

    # maxNesting 20 (CommonMark's preset: 100) bounds how far a run of "[" or "![" is re-scanned
    # for a link label: 4,000 characters of "![" render in ~90 ms instead of ~410 ms.
    from .checklist import render_rule

    md = MarkdownIt("commonmark", {"html": False, "maxNesting": 20}).enable(["table", "strikethrough"])
    md.core.ruler.push("checklist", render_rule)
    return md


def parse(text: str) -> list[Any]:
    """markdown-it's tokens for ``text`` (checklist.py finds the boxes in them)."""
    return _md().parse(text)

TAGS = {
    "p",
    "br",
    "hr",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "strong",
    "em",
    "del",
    "s",
    "code",
    "pre",
    "blockquote",
    "ul",
    "ol",
    "li",
    "a",
    "img",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "input",
    "label",  # a checklist box and its text (checklist.py)
}
ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "ol": {"start"},
    "th": {"align"},
    "td": {"align"},
    "input": {"type", "checked", "disabled", "data-check"},  # checklists (checklist.py)
}
BLOB_PREFIX = "/api/v1/blobs/"
BLOB_SRC = re.compile(re.escape(BLOB_PREFIX) + r"[0-9a-f]{64}")
PREVIEW_CHARS = 4_000
MAX_RENDER_CHARS = 100_000


def _only_own_images(tag: str, attribute: str, value: str) -> str | None:
    # the whole address, not its start: "/api/v1/blobs/../../api/v1/export" (or with %2e%2e)
    # begins like a blob and is resolved by the browser to another route
    if tag == "img" and attribute == "src" and not BLOB_SRC.fullmatch(value):
        return None
    if tag == "input" and attribute == "type" and value != "checkbox":
        return None
    return value


def render(text: str, max_chars: int = MAX_RENDER_CHARS, checkable: bool = False) -> str:
    """Safe HTML for the first ``max_chars`` characters (cut at a line end), with a note
    when more was left out. ``checkable``: checklist boxes can be ticked (a card, not the
    editor's preview)."""
    rest = ""
    if len(text) > max_chars:
        cut = text.rfind("\n", 0, max_chars)
        text = text[: cut if cut > max_chars // 2 else max_chars]
        rest = f'<p class="truncated">… (the first {len(text):,} characters are shown)</p>'
    return _clean(_md().render(text, {"checkable": checkable})) + rest


def _clean(html: str) -> str:
    import nh3

    return nh3.clean(
        html,
        tags=TAGS,
        attributes=ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
        attribute_filter=_only_own_images,
        # code blocks and tables scroll sideways inside a card: reachable by keyboard too
        set_tag_attribute_values={"pre": {"tabindex": "0"}, "table": {"tabindex": "0"}},
    )
