"""Search: a small query language parsed here, never passed raw to FTS5.

Pipeline: text → ``parse`` → ``Query`` (terms and filters) → SQL for one of two indexes.

Language::

    word            every word must match (prefix-free, diacritics ignored)
    "exact phrase"  words next to each other
    pre*            prefix of 2 or more characters, at most 8 in a query (a shorter prefix, or
                    one beyond the 8th, is searched as a word: one letter matches nearly every
                    note, and each prefix merges the lists of every word it starts)
    -word -"a b"    exclude
    a OR b          either (binds the terms on both sides)
    tag:name  type:note|task  status:open|done|archived   filters (-tag:name excludes)
    due:today|overdue|week|2027-01-15  is:pinned|repeating   filters; "today" is the user's

Two indexes back it (see db.py): ``items_fts`` (unicode61 words, ranked by bm25 with title over
tags over body) and ``items_trigram`` (substrings of 3+ characters, for CJK text and for parts of
words). A query with CJK text, or a word query with no results, runs as a substring search: the
trigram index, which keeps no positions, yields the notes holding all of a term's trigrams, and
each is checked for the term itself (``folded_contains``); terms shorter than 3 characters are
scanned with LIKE. Every user string is quoted as an FTS5 string, so no input can produce FTS5
syntax.

Latency bound: bm25 must score every match, so a word found in most notes would cost tens of
milliseconds. A query without filters that matches more than ``max_ranked`` notes (setting
``TASKPLANER_MAX_RANKED_MATCHES``, default 1,000) is ranked among its newest ``max_ranked``
matches; older ones are still reachable with a more specific query or a filter.
"""

from __future__ import annotations

import html
import re
import sqlite3
import time
import unicodedata
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from .db import Database
from .localtime import user_today
from .validation import decode_cursor, encode_cursor, strip_controls

MARK_OPEN, MARK_CLOSE = "\x02", "\x03"
SNIPPET_TOKENS = 12
SNIPPET_CHARS = 160
BM25_WEIGHTS = (10.0, 5.0, 1.0)  # title, tags, body
TRIGRAM = 3
_TOKEN_RE = re.compile(r'-?"[^"]*"?|\S+')
MIN_PREFIX_CHARS = 2
MAX_PREFIX_TERMS = 8
MAX_SCAN_TERMS = 4
MAX_PROBE_TRIGRAMS = 8
FILTERS = ("tag", "type", "status", "due", "is")
IS_FILTERS = {"pinned": "items.pinned = 1", "repeating": "items.repeat IS NOT NULL"}


@dataclass
class Term:
    text: str
    prefix: bool = False


@dataclass
class Query:
    groups: list[list[Term]] = field(default_factory=list)  # AND of ORs
    excluded: list[Term] = field(default_factory=list)
    filters: dict[str, list[str]] = field(default_factory=dict)
    excluded_tags: list[str] = field(default_factory=list)
    today: date | None = None  # the user's, for due: filters

    @property
    def terms(self) -> list[Term]:
        return [t for g in self.groups for t in g]


def _has_token_chars(text: str) -> bool:
    """Mirror unicode61: letters, numbers and private-use characters form tokens."""
    return any(unicodedata.category(c)[0] in "LN" or unicodedata.category(c) == "Co" for c in text)


def _needs_substring(text: str) -> bool:
    """CJK and other scripts written without spaces (and emoji) are not split into words."""
    return any(ord(c) >= 0x2E80 for c in text)


def parse(text: str, max_chars: int = 1000, max_terms: int = 32) -> Query:
    """Parse any string into a Query; never raises. Excess length and terms are dropped."""
    query = Query()
    tokens = _TOKEN_RE.findall(unicodedata.normalize("NFC", strip_controls(text[:max_chars])))
    join_next = False
    for token in tokens:
        if len(query.terms) + len(query.excluded) >= max_terms:
            break
        if token == "OR":  # noqa: S105 - the query operator, not a secret
            join_next = bool(query.groups)
            continue
        negated = token.startswith("-") and len(token) > 1
        body = token[1:] if negated else token
        key, sep, value = body.partition(":")
        if sep and key.lower() in FILTERS and value and not body.startswith('"'):
            if negated and key.lower() == "tag":
                query.excluded_tags.append(value)
            elif not negated:
                query.filters.setdefault(key.lower(), []).append(value)
            join_next = False
            continue
        if body.startswith('"'):
            term = Term(body.strip('"'))
        elif body.endswith("*") and len(body.rstrip("*")) > 0:
            prefixes = sum(t.prefix for t in query.terms + query.excluded)
            text = body.rstrip("*")
            term = Term(text, prefix=len(text) >= MIN_PREFIX_CHARS and prefixes < MAX_PREFIX_TERMS)
        else:
            term = Term(body)
        if not term.text.strip():
            continue
        # Half-width katakana and full-width Latin in a query also match their usual forms
        same = [term] + [Term(alt, term.prefix) for alt in _compatibility_form(term.text)]
        if negated:
            query.excluded += same
        elif join_next:
            query.groups[-1] += same
        else:
            query.groups.append(same)
        join_next = False
    return query


def _compatibility_form(text: str) -> list[str]:
    alt = unicodedata.normalize("NFKC", text)
    return [alt] if alt != text and alt.strip() else []


def _quoted(text: str) -> str:
    """Any text as one FTS5 string: no input can become FTS5 syntax."""
    return '"' + text.replace('"', '""') + '"'


def _fts_string(term: Term) -> str:
    return _quoted(term.text) + ("*" if term.prefix else "")


def word_match(query: Query) -> str | None:
    """The FTS5 expression for the word index, or None if no term has word characters."""
    groups = []
    for group in query.groups:
        terms = [_fts_string(t) for t in group if _has_token_chars(t.text)]
        if terms:
            groups.append(terms[0] if len(terms) == 1 else "(" + " OR ".join(terms) + ")")
    if not groups:
        return None
    expr = " AND ".join(groups)
    excluded = [_fts_string(t) for t in query.excluded if _has_token_chars(t.text)]
    if excluded:
        expr = f"({expr}) NOT ({' OR '.join(excluded)})"
    return expr


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _like_condition(term: Term, args: list[Any]) -> str:
    args.extend([_like(term.text)] * 3)
    return (
        "(items.title LIKE ? ESCAPE '\\' OR items.body LIKE ? ESCAPE '\\'"
        " OR items.tags_text LIKE ? ESCAPE '\\')"
    )


def trigram_probe(text: str) -> str:
    """The FTS5 expression for the notes that hold every trigram of ``text`` (at most
    MAX_PROBE_TRIGRAMS of them, spread over it). The index keeps no positions (detail=none),
    so it cannot tell whether they are adjacent: ``folded_contains`` checks that."""
    grams = list(dict.fromkeys(text[i : i + TRIGRAM] for i in range(len(text) - TRIGRAM + 1)))
    if len(grams) > MAX_PROBE_TRIGRAMS:
        step = (len(grams) - 1) / (MAX_PROBE_TRIGRAMS - 1)
        grams = [grams[round(i * step)] for i in range(MAX_PROBE_TRIGRAMS)]
    return " AND ".join(_quoted(g) for g in grams)


def _contains_condition(term: Term, args: list[Any]) -> str:
    """The exact test of one term against a note's text, ignoring case in every script.
    A term shorter than a trigram is a scan of every note: LIKE (in C) where the term is
    ASCII, whose case LIKE knows; ``folded_contains`` otherwise (ΑΒ finds αβ)."""
    if len(term.text) < TRIGRAM and term.text.isascii():
        return _like_condition(term, args)
    args.append(term.text.lower())
    return "folded_contains(?, items.title, items.tags_text, items.body)"


def _group_condition(group: list[Term], args: list[Any]) -> str:
    return "(" + " OR ".join(_contains_condition(t, args) for t in group) + ")"


class _ScanBudget:
    """At most MAX_SCAN_TERMS terms shorter than a trigram per query: each one is a LIKE scan
    of every note (the rest are left out, as terms beyond ``max_terms`` are)."""

    def __init__(self) -> None:
        self.left = MAX_SCAN_TERMS

    def keep(self, term: Term) -> bool:
        if len(term.text) >= TRIGRAM:
            return True
        self.left -= 1
        return self.left >= 0


def _filter_sql(query: Query, args: list[Any]) -> list[str]:
    where = []
    for value in query.filters.get("type", []):
        where.append("items.type = ?")
        args.append(value.lower())
    for value in query.filters.get("status", []):
        where.append("items.status = ?")
        args.append(value.lower())
    tag_sql = (
        "items.id {} IN (SELECT it.item_id FROM item_tags it JOIN tags t ON t.id = it.tag_id"
        " WHERE t.name = ?)"
    )
    for value in query.filters.get("due", []):
        where.append(_due_condition(value, query.today or date.today(), args))
    for value in query.filters.get("is", []):
        where.append(IS_FILTERS.get(value.lower(), "0"))  # an unknown is: matches nothing
    for value in query.filters.get("tag", []):
        where.append(tag_sql.format(""))
        args.append(value.lstrip("#"))
    for value in query.excluded_tags:
        where.append(tag_sql.format("NOT"))
        args.append(value.lstrip("#"))
    return where


def _due_condition(value: str, today: date, args: list[Any]) -> str:
    """due:today, due:overdue (open tasks only), due:week (today and the 7 days after), or
    due:2027-01-15; any other value matches nothing."""
    word = value.lower()
    if word in ("today", "overdue"):
        args.append(today.isoformat())
        return "items.due = ?" if word == "today" else "(items.due < ? AND items.status = 'open')"
    if word == "week":
        args += [today.isoformat(), (today + timedelta(days=7)).isoformat()]
        return "items.due BETWEEN ? AND ?"
    try:
        args.append(date.fromisoformat(value).isoformat())
    except ValueError:
        return "0"
    return "items.due = ?"


def highlight_snippet(raw: str) -> str:
    """HTML-escape an FTS5 snippet, then turn its markers into <mark> tags."""
    return html.escape(raw).replace(MARK_OPEN, "<mark>").replace(MARK_CLOSE, "</mark>")


def substring_snippet(text: str, needles: list[str]) -> str:
    """A window of text around the first match of any needle, escaped, matches marked."""
    needles = [n for n in needles if n]
    low = text.casefold()
    hits = [(low.find(n.casefold()), n) for n in needles]
    hits = [(pos, n) for pos, n in hits if pos >= 0]
    start = max(0, min(pos for pos, _ in hits) - SNIPPET_CHARS // 3) if hits else 0
    window = text[start : start + SNIPPET_CHARS]
    if needles:
        pattern = re.compile("|".join(re.escape(n) for n in needles), re.IGNORECASE)
        parts, last = [], 0
        for m in pattern.finditer(window):
            parts += [html.escape(window[last : m.start()]), "<mark>", html.escape(m.group()),
                      "</mark>"]
            last = m.end()
        parts.append(html.escape(window[last:]))
        body = "".join(parts)
    else:
        body = html.escape(window)
    return ("…" if start else "") + body + ("…" if start + SNIPPET_CHARS < len(text) else "")


class Search:
    def __init__(self, db: Database, max_chars: int = 1000, max_terms: int = 32,
                 max_ranked: int = 1000) -> None:
        self.db = db
        self.max_chars = max_chars
        self.max_terms = max_terms
        self.max_ranked = max_ranked
        self.on_done: list[Any] = []  # callbacks(seconds) for metrics, whoever asked

    def search(self, text: str, limit: int = 20, cursor: str | None = None) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            return self._search(text, limit, cursor)
        finally:
            for callback in self.on_done:
                callback(time.perf_counter() - started)

    def _search(self, text: str, limit: int, cursor: str | None) -> dict[str, Any]:
        query = parse(text, self.max_chars, self.max_terms)
        offset = decode_cursor(cursor) or 0
        with self.db.snapshot() as conn:
            if "due" in query.filters:
                query.today = user_today(conn)
            if not query.groups and not query.excluded:
                rows, mode = self._substring(conn, query, limit, offset), "filter"
            elif query.groups and not any(
                _needs_substring(t.text) for t in query.terms + query.excluded
            ) and (
                expr := word_match(query)
            ):
                rows, mode = self._words(conn, query, expr, limit, offset), "words"
                if not rows and offset == 0:
                    rows, mode = self._substring(conn, query, limit, offset), "substring"
            else:
                rows, mode = self._substring(conn, query, limit, offset), "substring"
        page = rows[:limit]
        needles = [t.text for t in query.terms]
        results = []
        for row in page:
            snippet = (
                highlight_snippet(row["snip"])
                if mode == "words"
                else substring_snippet(row["body"] or row["title"], needles)
            )
            results.append(_result(row, snippet))
        next_cursor = encode_cursor(offset + limit) if len(rows) > limit else None
        return {"items": results, "next_cursor": next_cursor, "mode": mode}

    def _words(
        self, conn: sqlite3.Connection, query: Query, expr: str, limit: int, offset: int
    ) -> list[sqlite3.Row]:
        # Rank first without snippets: SQLite computes result columns for every match before
        # sorting, and snippet() is the expensive part. Snippets are made for the page only.
        args: list[Any] = [expr]
        filters = _filter_sql(query, args)
        if filters:  # filters live on items: join every match
            source = "items_fts JOIN items ON items.id = items_fts.rowid"
            where = ["items_fts MATCH ?", *filters]
        else:  # no join; very common words are ranked within their newest matches only
            source = "items_fts"
            where = ["items_fts MATCH ?"]
            floor = conn.execute(
                "SELECT rowid FROM items_fts WHERE items_fts MATCH ? ORDER BY rowid DESC"
                " LIMIT 1 OFFSET ?", (expr, self.max_ranked - 1)).fetchone()
            if floor is not None:
                where.append("items_fts.rowid >= ?")
                args.append(floor[0])
        ranked = conn.execute(
            f"SELECT items_fts.rowid AS id FROM {source} WHERE {' AND '.join(where)}"
            " ORDER BY bm25(items_fts, ?, ?, ?) LIMIT ? OFFSET ?",
            (*args, *BM25_WEIGHTS, limit + 1, offset),
        ).fetchall()
        ids = [r["id"] for r in ranked]
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = conn.execute(
            "SELECT items.*, snippet(items_fts, -1, ?, ?, ?, ?) AS snip"
            " FROM items_fts JOIN items ON items.id = items_fts.rowid"
            f" WHERE items_fts MATCH ? AND items_fts.rowid IN ({marks})",
            (MARK_OPEN, MARK_CLOSE, "…", SNIPPET_TOKENS, expr, *ids),
        ).fetchall()
        by_id = {r["id"]: r for r in rows}
        return [by_id[i] for i in ids if i in by_id]

    def _substring(
        self, conn: sqlite3.Connection, query: Query, limit: int, offset: int
    ) -> list[sqlite3.Row]:
        """Newest first. Groups whose terms all have a trigram drive the scan: the trigram
        index yields the notes holding all their trigrams, newest first, and each is checked
        until the page is full. Without such a group, every note is checked."""
        probes: list[str] = []
        args: list[Any] = []
        where = []
        budget = _ScanBudget()
        for group in query.groups:
            if kept := [t for t in group if budget.keep(t)]:
                if all(len(t.text) >= TRIGRAM for t in kept):
                    probes.append(" OR ".join(f"({trigram_probe(t.text)})" for t in kept))
                where.append(_group_condition(kept, args))
        for term in query.excluded:
            if budget.keep(term):
                where.append("NOT " + _contains_condition(term, args))
        where += _filter_sql(query, args)
        if probes:
            source = "items_trigram JOIN items ON items.id = items_trigram.rowid"
            order = "items_trigram.rowid"
            where.insert(0, "items_trigram MATCH ?")
            args.insert(0, " AND ".join(f"({p})" for p in probes))
        else:
            source, order = "items", "items.id"
        sql = (
            f"SELECT items.*, NULL AS snip FROM {source}"
            f" WHERE {' AND '.join(where) or '1'} ORDER BY {order} DESC LIMIT ? OFFSET ?"
        )
        return conn.execute(sql, (*args, limit + 1, offset)).fetchall()


def _result(row: sqlite3.Row, snippet: str) -> dict[str, Any]:
    result = {
        "id": row["id"],
        "type": row["type"],
        "title": row["title"],
        "tags": row["tags_text"].split() if row["tags_text"] else [],
        "snippet": snippet,
        "created": row["created"],
        "updated": row["updated"],
    }
    if row["type"] == "task":
        result.update(status=row["status"], due=row["due"], priority=row["priority"])
    return result
