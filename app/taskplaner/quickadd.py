"""Quick add: one line as typed ("Renew passport due next week !high #admin") → an item.

Recognised in the first line only (the rest is the body, as typed), in its first
``SCANNED_CHARS`` characters:
- a date: ``today``, ``tomorrow``, ``fri``/``friday`` (the coming one, today included),
  ``next fri`` (a week later), ``next week`` (its Monday), ``next month``/``next year`` (their
  first day), ``weekend``, ``in 3 days``/``in a week``, ``2027-01-15``, ``15 Jan``/``Jan 15``
  (with an optional year; without one, the next such day), optionally after ``due``/``on``/``by``;
- a time: ``9am``, ``5:30pm``, ``17:30``, optionally after ``at``; ``at noon``, ``at midnight``;
- a priority: ``!1``..``!3`` or ``!low``/``!medium``/``!high``;
- a repetition: ``every day|week|month|year``, ``every 2 weeks``, ``every other week``,
  ``every monday``, ``every mon and thu``, ``every weekday`` ("weekly" is left alone: it is
  as often an adjective, "weekly review");
- ``#tags`` anywhere, and ``[ ]`` at the start for a task.

Words are never taken for dates on their own: a month name needs a day beside it ("Ask May"
stays text), and the weekday abbreviations that are also words (sat, sun, wed) need ``on``,
``due``, ``by``, ``next`` or ``this`` before them. A recognised part the user rejected (its
chip removed in the UI) is passed back in ``ignore`` and stays text. A date, time, priority or
repetition makes the item a task.

Why not a date-parsing library: dateparser's ``search_dates``, the kept library for dates in
free text, reads "Ask May about the taxes" as 2 May, "Sat on the report" as Saturday and
"Review chapter 3 tomorrow" as the 3rd. This grammar is small and exact; python-dateutil does
the calendar arithmetic.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from dateutil.relativedelta import relativedelta

from . import recurrence

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
PRIORITIES = {"1": 1, "2": 2, "3": 3, "low": 1, "med": 2, "medium": 2, "high": 3}
NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
           "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12}
MAX_IGNORED = 20
# Dates, times, priorities and repetition are looked for in this much of the first line (a
# title holds 500 characters); the rest is text. Tags are found in all of it.
SCANNED_CHARS = 2_000
TAG_RE = re.compile(r"(?<!\S)#([^\W_][\w\-./]{0,63})(?![\w\-./])")

_MONTH = r"(?P<mon>jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?" \
         r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
_DAY = r"(?P<day>[0-3]?[0-9])(?:st|nd|rd|th)?"
_YEAR = r"(?:,?\s+(?P<year>\d{4}))?"
_WEEKDAY = r"(?P<wd>mon(?:day)?|tue(?:s(?:day)?)?|wed(?:nesday)?|thu(?:r(?:s(?:day)?)?)?" \
           r"|fri(?:day)?|sat(?:urday)?|sun(?:day)?)"
_WORDLIKE_DAYS = {"sat", "sun", "wed"}  # English words too: a date only after a connector
_UNIT = r"(?P<unit>day|week|month|year)s?"
_LEAD = r"(?:(?P<lead>due|on|by)\s+)?"


@dataclass(frozen=True)
class Part:
    """One recognised piece of the line, as typed, with what it means."""

    kind: str  # date, time, priority, repeat
    start: int
    end: int
    text: str
    label: str
    value: Any

    def public(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text, "label": self.label}


@dataclass
class Parsed:
    type: str
    title: str
    body: str
    tags: list[str]
    due: str | None = None
    due_time: str | None = None
    priority: int = 0
    repeat: str | None = None
    parts: list[Part] = field(default_factory=list)

    def item(self) -> dict[str, Any]:
        """The fields to create the item with."""
        item: dict[str, Any] = {"type": self.type, "title": self.title, "body": self.body,
                                "tags": self.tags}
        if self.type == "task":
            item.update(due=self.due, due_time=self.due_time, priority=self.priority,
                        repeat=self.repeat)
        return item

    def public(self) -> dict[str, Any]:
        return {**self.item(), "parts": [p.public() for p in self.parts]}


def _weekday_index(name: str) -> int:
    return WEEKDAYS.index(name[:3].lower())


def _coming(today: date, weekday: int) -> date:
    return today + timedelta(days=(weekday - today.weekday()) % 7)


def _day_month(today: date, month: int, day: int, year: int | None) -> date | None:
    """The date, or None when there is no such day; without a year, the next one from today
    (29 February: the next leap year's)."""
    years = [year] if year else range(today.year, today.year + 9)
    for candidate_year in years:
        try:
            found = date(candidate_year, month, day)
        except ValueError:
            continue
        if year or found >= today:
            return found
    return None


def _month_of(text: str) -> int:
    return MONTHS.index(text[:3].lower()) + 1


def _date_rules(today: date) -> list[tuple[str, Callable[[re.Match[str]], date | None]]]:
    def relative_word(m: re.Match[str]) -> date | None:
        word = m["word"].lower()
        return today if word == "today" else today + timedelta(days=1)

    def weekday(m: re.Match[str]) -> date | None:
        name, which = m["wd"].lower(), (m["which"] or "").lower()
        if name in _WORDLIKE_DAYS and not (m["lead"] or which):
            return None
        found = _coming(today, _weekday_index(name))
        return found + timedelta(days=7) if which == "next" else found

    def next_period(m: re.Match[str]) -> date | None:
        unit = m["unit"].lower()
        if unit == "week":
            return _coming(today + timedelta(days=1), 0)
        if unit == "month":
            return (today + relativedelta(months=1)).replace(day=1)
        return date(today.year + 1, 1, 1)

    def weekend(m: re.Match[str]) -> date | None:
        found = today if today.weekday() >= 5 else _coming(today, 5)
        return found + timedelta(days=7) if (m["which"] or "").lower() == "next" else found

    def in_n(m: re.Match[str]) -> date | None:
        count = m["n"].lower()
        n = int(count) if count.isdigit() else NUMBERS[count]
        if not 0 < n <= 3660:
            return None
        return today + relativedelta(**{m["unit"].lower() + "s": n})

    def iso(m: re.Match[str]) -> date | None:
        try:
            return date.fromisoformat(m["iso"])
        except ValueError:
            return None

    def day_month(m: re.Match[str]) -> date | None:
        return _day_month(today, _month_of(m["mon"]), int(m["day"]),
                          int(m["year"]) if m["year"] else None)

    numbers = "|".join(NUMBERS)
    return [
        (_LEAD + r"(?P<word>today|tomorrow|tmrw|tmr)", relative_word),
        (_LEAD + r"(?:(?P<which>next|this)\s+)?" + _WEEKDAY, weekday),
        (_LEAD + r"next\s+" + r"(?P<unit>week|month|year)", next_period),
        (_LEAD + r"(?:(?P<which>next|this)\s+)?weekend", weekend),
        (_LEAD + rf"in\s+(?P<n>\d{{1,4}}|{numbers})\s+" + _UNIT, in_n),
        (_LEAD + r"(?P<iso>\d{4}-\d{2}-\d{2})", iso),
        (_LEAD + _DAY + r"\s+" + _MONTH + _YEAR, day_month),
        (_LEAD + _MONTH + r"\s+" + _DAY + _YEAR, day_month),
    ]


def _time(m: re.Match[str]) -> str | None:
    if m["named"]:
        return "12:00" if m["named"].lower() == "noon" else "00:00"
    hour, minute = int(m["h"]), int(m["m"] or 0)
    if m["ampm"]:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if m["ampm"].lower().startswith("p") else 0)
    elif m["m"] is None:
        return None
    if hour > 23 or minute > 59:
        return None
    return f"{hour:02d}:{minute:02d}"


# noon and midnight only after "at": "Midnight release" is a name
_TIME_RE = (r"at\s+(?P<named>noon|midnight)"
            r"|(?:at\s+)?(?P<h>\d{1,2})(?::(?P<m>\d{2}))?\s*(?P<ampm>[ap]\.?m\.?)?")


def _repeat(m: re.Match[str]) -> str | None:
    if m["weekday"]:
        return "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"
    if m["days"]:
        names = re.findall(r"[a-z]+", m["days"].lower())
        codes = {recurrence.WEEKDAYS[_weekday_index(n)] for n in names if n not in ("and",)}
        return "FREQ=WEEKLY;BYDAY=" + ",".join(c for c in recurrence.WEEKDAYS if c in codes)
    count = 2 if m["other"] else int(m["n"] or 1)
    freq = {"day": "DAILY", "week": "WEEKLY", "month": "MONTHLY", "year": "YEARLY"}[m["unit"].lower()]
    if not 1 <= count <= recurrence.MAX_INTERVAL:
        return None
    return f"FREQ={freq}" + (f";INTERVAL={count}" if count > 1 else "")


_ONE_DAY = (r"(?:monday|mon|tuesday|tues|tue|wednesday|wed|thursday|thurs|thur|thu|friday|fri"
            r"|saturday|sat|sunday|sun)")
_REPEAT_RE = (
    r"every\s+(?:(?P<weekday>weekday)|(?P<days>" + _ONE_DAY + r"(?:(?:\s*,\s*|\s+and\s+)" + _ONE_DAY + r")*)"
    r"|(?:(?P<other>other)\s+|(?P<n>\d{1,3})\s+)?" + _UNIT + r")"
)


def _boundary(pattern: str) -> re.Pattern[str]:
    """A whole phrase: not inside a word, a #tag or a !priority, and not before 's."""
    return re.compile(r"(?<![\w#!/:.-])(?:" + pattern + r")(?![\w'’/:-])", re.IGNORECASE)


_REPEAT = _boundary(_REPEAT_RE)
_TIME = _boundary(_TIME_RE)
_PRIORITY = re.compile(r"(?<!\S)!(?P<p>[1-3]|low|med|medium|high)(?!\S)", re.IGNORECASE)


def _label_date(day: date, today: date) -> str:
    if day == today:
        return "today"
    if day > today and (day - today).days == 1:
        return "tomorrow"
    text = f"{WEEKDAYS[day.weekday()].capitalize()} {day.day} {MONTHS[day.month - 1].capitalize()}"
    return text if day.year == today.year else f"{text} {day.year}"


def _meaning(rule: Callable[[re.Match[str]], date | None], m: re.Match[str]) -> date | None:
    """What a date phrase means, or None when that day is past the calendar's end (9999)."""
    try:
        return rule(m)
    except (OverflowError, ValueError):
        return None


def _candidates(line: str, today: date) -> list[Part]:
    found: list[Part] = []
    for pattern, meaning in _date_rules(today):
        for m in _boundary(pattern).finditer(line):
            if (day := _meaning(meaning, m)) is not None:
                found.append(Part("date", m.start(), m.end(), m.group(), _label_date(day, today),
                                  day.isoformat()))
    for m in _TIME.finditer(line):
        is_time = m["named"] or m["m"] is not None or m["ampm"]
        if is_time and (clock := _time(m)) is not None:
            found.append(Part("time", m.start(), m.end(), m.group(), clock, clock))
    for m in _PRIORITY.finditer(line):
        level = PRIORITIES[m["p"].lower()]
        found.append(Part("priority", m.start(), m.end(), m.group(),
                          ("low", "medium", "high")[level - 1], level))
    for m in _REPEAT.finditer(line):
        if (rule := _repeat(m)) is not None:
            found.append(Part("repeat", m.start(), m.end(), m.group(), recurrence.describe(rule), rule))
    return found


def _choose(candidates: list[Part], taken: bytearray) -> list[Part]:
    """Longest first, then leftmost; one part of each kind; no overlaps with each other or
    with the ``taken`` characters (1 = ignored by the user). Linear: a part is checked against
    the characters it spans, not against every other span."""
    chosen: dict[str, Part] = {}
    for part in sorted(candidates, key=lambda p: (p.start - p.end, p.start)):
        if part.kind in chosen or taken.find(1, part.start, part.end) != -1:
            continue
        chosen[part.kind] = part
        taken[part.start:part.end] = b"\x01" * (part.end - part.start)
    return sorted(chosen.values(), key=lambda p: p.start)


def _ignored(line: str, ignore: list[str]) -> bytearray:
    """1 for each character of ``line`` inside a phrase the user kept as text, else 0."""
    taken = bytearray(len(line))
    for phrase in ignore:
        if needle := phrase.strip():
            for m in re.finditer(re.escape(needle), line, re.IGNORECASE):
                taken[m.start():m.end()] = b"\x01" * (m.end() - m.start())
    return taken


def parse(text: str, today: date, as_task: bool = False, ignore: list[str] | None = None,
          max_title_chars: int = 500) -> Parsed:
    """Parse what was typed into the capture box; never raises on any text."""
    rest = text.strip()
    task_marker = re.match(r"^\[ ?\]\s*", rest)
    if task_marker:
        rest = rest[task_marker.end():]
    first, _, body = rest.partition("\n")
    scanned = first[:SCANNED_CHARS]
    parts = _choose(_candidates(scanned, today), _ignored(scanned, (ignore or [])[:MAX_IGNORED]))
    tags = list(dict.fromkeys(m[1].lower() for m in TAG_RE.finditer(rest)))
    title = first
    for part in reversed(parts):
        title = title[: part.start] + " " + title[part.end:]
    title = " ".join(TAG_RE.sub("", title).split())
    if not title and tags:
        title = " ".join(f"#{t}" for t in tags)
    body = body.strip()
    if len(title) > max_title_chars:  # nothing typed is lost: the rest of the line leads the body
        title, body = title[:max_title_chars], (title[max_title_chars:] + "\n" + body).strip()
    values = {p.kind: p.value for p in parts}
    parsed = Parsed(type="task" if (as_task or task_marker or values) else "note", title=title,
                    body=body, tags=tags, due=values.get("date"), due_time=values.get("time"),
                    priority=values.get("priority", 0), repeat=values.get("repeat"), parts=parts)
    if parsed.type == "task" and parsed.due is None and (parsed.due_time or parsed.repeat):
        start = recurrence.first_on_or_after(parsed.repeat, today) if parsed.repeat else today
        parsed.due = (start or today).isoformat()
    return parsed
