"""Checklists in notes: ``- [ ] item`` lines render as checkboxes that can be ticked in place.

Each box is found by markdown-it's own parse (so a ``[ ]`` in a code block or in running text is
no box), numbered in document order, and carries a fingerprint of its text. Ticking sends both;
the body changes only when the box with that number still has that text, so a note changed in
another tab meanwhile is never ticked in the wrong place (409 instead). Ticking is "set to done"
or "set to open", so a retried request changes nothing more.

Written here rather than taken from mdit-py-plugins' tasklists: ticking needs each box's source
line and a stable fingerprint, which that plugin does not give.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .errors import AppError, invalid

MARKER = re.compile(r"^\[([ xX])\][ \t]")
# the marker on its source line: quote marks, indentation and the list bullet come first
LINE_END = re.compile(r"(\r\n|\r|\n)")
SOURCE_MARKER = re.compile(r"^((?:[ \t]*>)*[ \t]*(?:[-*+]|\d{1,9}[.)])[ \t]+)\[([ xX])\]")


@dataclass(frozen=True)
class Box:
    index: int
    line: int
    done: bool
    fingerprint: str
    token: int  # the inline token's position in the parse


def fingerprint(text: str) -> str:
    return hashlib.sha256(text.strip().encode()).hexdigest()[:12]


def boxes(tokens: list[Any]) -> Iterator[Box]:
    """The checkboxes of a parsed document: list items whose paragraph starts with [ ] or [x]."""
    index = 0
    for i, token in enumerate(tokens):
        if (token.type == "inline" and i >= 2 and tokens[i - 1].type == "paragraph_open"
                and tokens[i - 2].type == "list_item_open" and token.map
                and (m := MARKER.match(token.content))):
            yield Box(index, token.map[0], m[1] != " ", fingerprint(token.content[m.end():]), i)
            index += 1


def render_rule(state: Any) -> None:
    """markdown-it core rule: each box's marker becomes an <input type="checkbox">."""
    from markdown_it.token import Token

    checkable = bool(state.env.get("checkable"))
    for box in boxes(state.tokens):
        inline = state.tokens[box.token]
        first = inline.children[0] if inline.children else None
        marker = MARKER.match(first.content) if first is not None and first.type == "text" else None
        if first is None or marker is None:
            continue
        first.content = first.content[marker.end():]
        attrs = f' data-check="{box.index}:{box.fingerprint}"' + (" checked" if box.done else "")
        # the box and its text in one <label>: the text names the box (screen readers, axe's
        # `label` rule) and is a tap target as wide as the line
        opening, closing = Token("html_inline", "", 0), Token("html_inline", "", 0)
        opening.content = f'<label><input type="checkbox"{attrs}{"" if checkable else " disabled"}>'
        closing.content = "</label>"
        inline.children.insert(0, opening)
        inline.children.append(closing)


def set_box(body: str, tokens: list[Any], index: Any, done: Any, expected: Any) -> str:
    """``body`` with box ``index`` set to ``done``; 409 when that box is not the one the client
    saw (``expected``, its fingerprint)."""
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise invalid("index", "index must be a whole number from 0")
    if not isinstance(done, bool):
        raise invalid("done", "done must be true or false")
    if not isinstance(expected, str):
        raise invalid("fingerprint", "fingerprint must be the box's data-check fingerprint")
    found = next((b for b in boxes(tokens) if b.index == index), None)
    if found is None or found.fingerprint != expected:
        raise AppError(409, "conflict", "the note changed meanwhile: reload it and tick again")
    # lines as markdown-it counts them (\r\n, \r and \n all end one), separators kept
    pieces = LINE_END.split(body)
    position = found.line * 2
    m = SOURCE_MARKER.match(pieces[position]) if position < len(pieces) else None
    if m is None:  # a box markdown-it found on a line this cannot place: leave the text alone
        raise AppError(409, "conflict", "this checkbox cannot be ticked here; edit the note")
    pieces[position] = m[1] + ("[x]" if done else "[ ]") + pieces[position][m.end():]
    return "".join(pieces)
